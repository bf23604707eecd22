//! YouTube: Google's endpoints and client, the channel as the account.

use serde_json::Value;

use super::support::{Harness, assert_no_token, json_body, only, sorted_strings};
use crate::on_both_backends;
use crate::support::Backend;

const READONLY: &str = "https://www.googleapis.com/auth/youtube.readonly";

/// The caller's channel, as the YouTube Data API shows it to `access_token`.
async fn my_channel(h: &Harness, access_token: &str) -> Value {
    let url = format!("{}/youtube/v3/channels?part=snippet&mine=true", h.google.base_url);
    let response = h.app.client.get(url).bearer_auth(access_token).send().await.unwrap();
    json_body(response, 200).await["items"][0].clone()
}

async fn youtube_connection_lives_from_connect_to_revocation(backend: Backend) {
    let h = Harness::start(backend).await;
    let id = h.connect("youtube").await;

    let handed = h.token_body(id, 60).await;
    let first = handed["access_token"].as_str().unwrap().to_owned();
    assert!(h.google.handle.is_access_token_live(&first), "the handed-out token works at YouTube");
    assert_eq!(handed["provider"], "youtube");
    let channel = my_channel(&h, &first).await;

    let listed = json_body(h.get("/integrations").await, 200).await;
    let integration = only(&listed);
    assert_eq!(integration["provider"], "youtube");
    assert_eq!(integration["status"], "active");
    assert_eq!(integration["has_refresh_token"], true);
    let channel_id = integration["account"]["provider_user_id"].as_str().unwrap();
    assert!(channel_id.starts_with("UC"), "{integration}");
    assert_eq!(channel_id, channel["id"].as_str().unwrap());
    assert_eq!(sorted_strings(&integration["scopes"]), [READONLY]);

    for round in 1..=2 {
        let refreshed = json_body(h.refresh(id).await, 200).await;
        assert_eq!(refreshed["integration"]["status"], "active", "round {round}: {refreshed}");
    }
    assert_eq!(h.google.handle.counters().refreshes, 2);
    let current = h.token_body(id, 60).await["access_token"].as_str().unwrap().to_owned();
    assert_ne!(current, first);
    assert!(h.google.handle.is_access_token_live(&current));

    let deleted = json_body(h.delete(&format!("/integrations/{id}?reason=done")).await, 200).await;
    assert_eq!(deleted["provider_revocation"], "revoked", "{deleted}");
    assert_eq!(h.google.handle.counters().revocations, 1);
    assert!(!h.google.handle.is_access_token_live(&current), "revoked at Google");

    assert_eq!(only(&h.all_integrations().await)["status"], "revoked");
    assert_no_token(h.token(id, 60).await).await;
}

on_both_backends!(youtube_connection_lives_from_connect_to_revocation);

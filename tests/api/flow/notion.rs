//! Notion: workspace metadata, tokens without expiry, rotation of the whole token pair.

use provider_emulators::DEFAULT_LOGIN;
use serde_json::json;

use super::support::{API, Harness, assert_no_token, json_body, only, problem};
use crate::on_both_backends;
use crate::support::Backend;

async fn notion_connection_lives_from_connect_to_revocation(backend: Backend) {
    let h = Harness::start(backend).await;
    let id = h.connect("notion").await;

    let listed = json_body(h.get("/integrations").await, 200).await;
    let integration = only(&listed);
    assert_eq!(integration["provider"], "notion");
    assert_eq!(integration["status"], "active");
    assert_eq!(integration["has_refresh_token"], true);
    assert_eq!(integration["account"]["email"], DEFAULT_LOGIN);
    assert!(
        integration["account"]["provider_user_id"].as_str().is_some_and(|b| !b.is_empty()),
        "bot_id: {integration}"
    );
    assert_eq!(integration["account"]["details"]["workspace_name"], "Alice's Notion", "{integration}");
    assert!(integration["account"]["details"]["workspace_id"].is_string(), "{integration}");
    assert_eq!(integration["expires_at"], json!(null), "Notion tokens do not expire: {integration}");

    let handed = h.token_body(id, 60).await;
    let first = handed["access_token"].as_str().unwrap().to_owned();
    assert!(h.notion.handle.is_access_token_live(&first), "the handed-out token works at Notion");
    assert_eq!(handed["expires_at"], json!(null), "{handed}");
    assert_eq!(handed["provider"], "notion");
    assert_eq!(h.notion.handle.counters().refreshes, 0, "a token without expiry is not refreshed for min_ttl");

    // Notion's refresh replaces both tokens: the second refresh works only if the first one's
    // new refresh token was stored.
    for round in 1..=2 {
        let refreshed = json_body(h.refresh(id).await, 200).await;
        assert_eq!(refreshed["integration"]["status"], "active", "round {round}: {refreshed}");
        assert_eq!(refreshed["integration"]["expires_at"], json!(null), "round {round}: {refreshed}");
    }
    assert_eq!(h.notion.handle.counters().refreshes, 2);
    let current = h.token_body(id, 60).await["access_token"].as_str().unwrap().to_owned();
    assert!(!h.notion.handle.is_access_token_live(&first), "Notion killed the old access token");
    assert!(h.notion.handle.is_access_token_live(&current), "the stored access token is the new one");

    let url = h.app.url(&format!("{API}/integrations/{id}"));
    let request = h.app.client.delete(url).bearer_auth(&h.user.token).json(&json!({"reason": "workspace archived"}));
    let deleted = json_body(request.send().await.unwrap(), 200).await;
    assert_eq!(deleted["provider_revocation"], "revoked", "{deleted}");
    assert_eq!(h.notion.handle.counters().revocations, 1);
    assert!(!h.notion.handle.is_access_token_live(&current), "revoked at Notion");

    assert_eq!(only(&h.all_integrations().await)["status"], "revoked");
    assert_no_token(h.token(id, 60).await).await;
}

async fn notion_without_credentials_is_not_configured(backend: Backend) {
    let h = Harness::start_with(backend, |mut config| {
        config.env.remove("NOTION_CLIENT_ID");
        config.env.remove("NOTION_CLIENT_SECRET");
        config
    })
    .await;

    let body = problem(h.initiate("notion", json!({})).await, 503, "provider_not_configured").await;
    assert!(body["detail"].as_str().unwrap().contains("OAuth credentials not configured"), "{body}");
    let providers = json_body(h.get("/providers").await, 200).await;
    let configured =
        |name: &str| providers.as_array().unwrap().iter().find(|p| p["name"] == name).map(|p| p["configured"].clone());
    assert_eq!(configured("notion"), Some(json!(false)), "{providers}");
    assert_eq!(configured("google"), Some(json!(true)), "{providers}");
    assert_eq!(h.notion.handle.counters().authorizations, 0);
}

on_both_backends!(notion_connection_lives_from_connect_to_revocation, notion_without_credentials_is_not_configured);

//! Microsoft: tenant-qualified identity, refresh-token rotation, no revocation endpoint.

use provider_emulators::{DEFAULT_LOGIN, DEFAULT_TENANT_ID};
use serde_json::{Value, json};

use super::support::{Harness, assert_no_token, json_body, only, problem, sorted_strings};
use crate::on_both_backends;
use crate::support::Backend;

/// Microsoft Graph `/me` with `access_token`, as the host application would call it.
async fn graph_me(h: &Harness, access_token: &str) -> Value {
    let response =
        h.app.client.get(format!("{}/v1.0/me", h.microsoft.base_url)).bearer_auth(access_token).send().await.unwrap();
    json_body(response, 200).await
}

async fn microsoft_connection_lives_from_connect_to_disconnect(backend: Backend) {
    let h = Harness::start(backend).await;
    let id = h.connect("microsoft").await;

    let handed = h.token_body(id, 60).await;
    let first = handed["access_token"].as_str().unwrap().to_owned();
    assert!(h.microsoft.handle.is_access_token_live(&first), "the handed-out token works at Microsoft");
    assert_eq!(handed["provider"], "microsoft");
    assert!(handed["expires_at"].is_string(), "{handed}");
    let oid = graph_me(&h, &first).await["id"].as_str().unwrap().to_owned();

    let listed = json_body(h.get("/integrations").await, 200).await;
    let integration = only(&listed);
    assert_eq!(integration["provider"], "microsoft");
    assert_eq!(integration["status"], "active");
    assert_eq!(integration["has_refresh_token"], true);
    assert_eq!(integration["account"]["email"], DEFAULT_LOGIN);
    // The account is the tenant's object id (tid + oid), not the per-app pairwise `sub`.
    let account_id = integration["account"]["provider_user_id"].as_str().unwrap();
    assert!(account_id.contains(DEFAULT_TENANT_ID) && account_id.contains(&oid), "{integration}");
    assert_eq!(sorted_strings(&integration["scopes"]), ["User.Read", "email", "offline_access", "openid", "profile"]);

    // Every Microsoft refresh rotates the refresh token: the second refresh works only if the
    // first one's new refresh token was stored.
    for round in 1..=2 {
        let refreshed = json_body(h.refresh(id).await, 200).await;
        assert_eq!(refreshed["integration"]["status"], "active", "round {round}: {refreshed}");
    }
    assert_eq!(h.microsoft.handle.counters().refreshes, 2);
    let current = h.token_body(id, 60).await["access_token"].as_str().unwrap().to_owned();
    assert_ne!(current, first);
    assert!(h.microsoft.handle.is_access_token_live(&current));

    let deleted = json_body(h.delete(&format!("/integrations/{id}")).await, 200).await;
    assert_eq!(deleted["integration_id"], id);
    assert_eq!(deleted["provider_revocation"], "not_supported", "{deleted}");
    let message = deleted["message"].as_str().unwrap().to_lowercase();
    assert!(message.contains("revoke"), "the message says Microsoft could not revoke it: {deleted}");
    assert_eq!(h.microsoft.handle.counters().revocations, 0);

    assert_eq!(only(&h.all_integrations().await)["status"], "revoked");
    assert_no_token(h.token(id, 60).await).await;
}

async fn microsoft_interaction_required_needs_reauth(backend: Backend) {
    let h = Harness::start(backend).await;
    let id = h.connect("microsoft").await;
    h.microsoft.handle.set_refresh_error(Some("interaction_required".into()));

    problem(h.refresh(id).await, 400, "needs_reauth").await;
    let integration = h.integration(id).await;
    assert_eq!(integration["needs_reauth"], true, "{integration}");
    assert_eq!(integration["status"], "error", "{integration}");
    assert!(integration["last_error"].is_string(), "{integration}");
    assert_eq!(json_body(h.get("/integrations?active_only=true").await, 200).await, json!([]));
    assert_no_token(h.token(id, 60).await).await;
}

on_both_backends!(microsoft_connection_lives_from_connect_to_disconnect, microsoft_interaction_required_needs_reauth);

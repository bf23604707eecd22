//! Google: the whole life of a connection, and Google's quirks (granted scopes, dead grants).

use provider_emulators::DEFAULT_LOGIN;
use serde_json::json;

use super::support::{API, Harness, assert_no_token, json_body, only, problem, service_get, sorted_strings};
use crate::on_both_backends;
use crate::support::Backend;

const CALENDAR: &str = "https://www.googleapis.com/auth/calendar.readonly";

async fn google_connection_lives_from_connect_to_revocation(backend: Backend) {
    let h = Harness::start(backend).await;
    let id = h.connect("google").await;

    let listed = json_body(h.get("/integrations").await, 200).await;
    let integration = only(&listed);
    assert_eq!(integration["id"], id);
    assert_eq!(integration["user_id"], h.user.id);
    assert_eq!(integration["provider"], "google");
    assert_eq!(integration["status"], "active");
    assert_eq!(integration["is_active"], true);
    assert_eq!(integration["needs_reauth"], false);
    assert_eq!(integration["has_refresh_token"], true);
    assert_eq!(integration["account"]["email"], DEFAULT_LOGIN);
    let sub = integration["account"]["provider_user_id"].as_str().unwrap();
    assert!(sub.len() == 21 && sub.chars().all(|c| c.is_ascii_digit()), "Google's sub: {integration}");
    assert_eq!(sorted_strings(&integration["scopes"]), ["email", "openid", "profile"]);
    assert!(integration["expires_at"].is_string(), "{integration}");

    let handed = h.token_body(id, 60).await;
    let first = handed["access_token"].as_str().unwrap().to_owned();
    assert!(h.google.handle.is_access_token_live(&first), "the handed-out token works at Google");
    assert!(handed["token_type"].as_str().unwrap().eq_ignore_ascii_case("bearer"), "{handed}");
    assert!(handed["expires_at"].is_string(), "{handed}");
    assert_eq!(handed["integration_id"], id);
    assert_eq!(handed["provider"], "google");
    assert_eq!(sorted_strings(&handed["scopes"]), ["email", "openid", "profile"]);
    let by_owner = json_body(
        service_get(&h.app, &format!("{API}/users/{}/integrations/google/token?min_ttl=60", h.user.id)).await,
        200,
    )
    .await;
    assert_eq!(by_owner["access_token"], first.as_str());

    // Google answers a refresh without a new refresh token: the stored one must be kept, so a
    // second refresh works too.
    for round in 1..=2 {
        let refreshed = json_body(h.refresh(id).await, 200).await;
        assert!(refreshed["message"].is_string(), "{refreshed}");
        assert_eq!(refreshed["integration"]["id"], id);
        assert_eq!(refreshed["integration"]["status"], "active", "round {round}: {refreshed}");
        assert_eq!(refreshed["integration"]["has_refresh_token"], true, "round {round}: {refreshed}");
    }
    assert_eq!(h.google.handle.counters().refreshes, 2);
    let current = h.token_body(id, 60).await["access_token"].as_str().unwrap().to_owned();
    assert_ne!(current, first, "the refresh replaced the access token");
    assert!(h.google.handle.is_access_token_live(&current));

    let deleted = json_body(h.delete(&format!("/integrations/{id}?reason=user+request")).await, 200).await;
    assert_eq!(deleted["integration_id"], id);
    assert_eq!(deleted["provider_revocation"], "revoked", "{deleted}");
    assert!(deleted["message"].as_str().is_some_and(|m| !m.is_empty()), "{deleted}");
    assert_eq!(h.google.handle.counters().revocations, 1);
    assert!(!h.google.handle.is_access_token_live(&current), "revoked at Google");

    assert_eq!(only(&h.all_integrations().await)["status"], "revoked");
    assert_eq!(json_body(h.get("/integrations").await, 200).await, json!([]), "active_only defaults to true");
    assert_no_token(h.token(id, 60).await).await;

    let again = json_body(h.delete(&format!("/integrations/{id}")).await, 200).await;
    assert_eq!(again["integration_id"], id, "{again}");
    assert_eq!(h.google.handle.counters().revocations, 1, "a second DELETE does not call Google again");
}

async fn google_stores_only_the_scopes_the_user_granted(backend: Backend) {
    let h = Harness::start(backend).await;
    let flow = h.initiated("google", json!({"scopes": ["openid", "email", "profile", CALENDAR]})).await;
    assert_eq!(sorted_strings(&flow["scopes"]), ["email", CALENDAR, "openid", "profile"]);
    let callback = h.approve(flow["authorization_url"].as_str().unwrap(), None, Some("openid email")).await;
    let connected = json_body(h.callback(&callback).await, 200).await;
    let id = connected["integration_id"].as_i64().unwrap();

    assert_eq!(sorted_strings(&h.integration(id).await["scopes"]), ["email", "openid"]);
    assert_eq!(sorted_strings(&h.token_body(id, 60).await["scopes"]), ["email", "openid"]);
}

async fn google_dead_grant_needs_reauth_without_retrying(backend: Backend) {
    let h = Harness::start(backend).await;
    let id = h.connect("google").await;
    h.google.handle.revoke_all_grants();

    problem(h.refresh(id).await, 400, "needs_reauth").await;
    let integration = h.integration(id).await;
    assert_eq!(integration["needs_reauth"], true, "{integration}");
    assert_eq!(integration["status"], "error", "{integration}");
    assert_eq!(integration["is_active"], false, "{integration}");
    let calls = h.google.handle.counters();
    assert_eq!(calls.failed_token_requests, 1);

    // Already known to need re-authorisation: 400 like the first refusal, or 409 for the state it is in.
    let again = h.refresh(id).await;
    let status = again.status().as_u16();
    assert!(status == 400 || status == 409, "status {status}");
    problem(again, status, "needs_reauth").await;
    assert_eq!(h.google.handle.counters(), calls, "invalid_grant is final: Google is not asked again");
    assert_no_token(h.token(id, 60).await).await;
}

async fn google_connects_through_the_shared_callback_path(backend: Backend) {
    let h = Harness::start(backend).await;
    let redirect_uri = h.app.url(&format!("{API}/callback"));
    let flow = h.initiated("google", json!({"redirect_uri": redirect_uri})).await;
    let callback = h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;
    assert!(callback.starts_with(&format!("{redirect_uri}?")), "{callback}");
    let connected = json_body(h.callback(&callback).await, 200).await;
    assert_eq!(connected["provider"], "google");
    assert_eq!(connected["status"], "active");
}

async fn status_sync_and_consents_follow_the_connection(backend: Backend) {
    let h = Harness::start(backend).await;
    let id = h.connect("google").await;

    let status = json_body(h.get("/status").await, 200).await;
    assert_eq!(status["integrations"]["total_integrations"], 1, "{status}");
    assert_eq!(status["integrations"]["active_integrations"], 1, "{status}");
    assert_eq!(status["integrations"]["providers"]["google"]["active"], 1, "{status}");
    assert_eq!(status["consents"]["granted_consents"], 1, "{status}");
    assert_eq!(json_body(h.get("/consents").await, 200).await.as_array().unwrap().len(), 1);

    let synced = json_body(h.post("/integrations/sync").await, 200).await;
    let results = synced["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{synced}");
    assert_eq!(results[0]["integration_id"], id);
    assert_eq!(results[0]["provider"], "google");
    assert_eq!(h.google.handle.counters().refreshes, 0, "a fresh token is not refreshed by sync");

    json_body(h.delete(&format!("/integrations/{id}")).await, 200).await;
    let status = json_body(h.get("/status").await, 200).await;
    assert_eq!(status["integrations"]["active_integrations"], 0, "{status}");
    assert_eq!(status["integrations"]["inactive_integrations"], 1, "{status}");
    assert_eq!(status["consents"]["granted_consents"], 0, "{status}");
    assert_eq!(status["consents"]["revoked_consents"], 1, "{status}");
}

on_both_backends!(
    google_connection_lives_from_connect_to_revocation,
    google_stores_only_the_scopes_the_user_granted,
    google_dead_grant_needs_reauth_without_retrying,
    google_connects_through_the_shared_callback_path,
    status_sync_and_consents_follow_the_connection,
);

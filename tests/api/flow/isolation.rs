//! Users see only their own integrations, and raw tokens leave only through the token endpoints.

use serde_json::json;

use super::support::{API, Harness, json_body, problem, service_get};
use crate::on_both_backends;
use crate::support::Backend;

/// Google's access and refresh tokens from the emulator start with these.
const GOOGLE_TOKEN_PREFIXES: [&str; 2] = ["ya29.emu-", "1//emu-"];

async fn another_users_integration_is_404_everywhere(backend: Backend) {
    let h = Harness::start(backend).await;
    let id = h.connect("google").await;
    let stranger = h.app.user("stranger@example.com").await;
    let client = &h.app.client;
    let url = |path: &str| h.app.url(&format!("{API}{path}"));

    let read = client.get(url(&format!("/integrations/{id}"))).bearer_auth(&stranger.token).send().await.unwrap();
    problem(read, 404, "not_found").await;
    let refresh =
        client.post(url(&format!("/integrations/{id}/refresh"))).bearer_auth(&stranger.token).send().await.unwrap();
    problem(refresh, 404, "not_found").await;
    let delete = client.delete(url(&format!("/integrations/{id}"))).bearer_auth(&stranger.token).send().await.unwrap();
    problem(delete, 404, "not_found").await;

    let audit =
        client.get(url(&format!("/audit?integration_id={id}"))).bearer_auth(&stranger.token).send().await.unwrap();
    match audit.status().as_u16() {
        404 => drop(problem(audit, 404, "not_found").await),
        _ => assert_eq!(json_body(audit, 200).await["events"], json!([]), "no event of another user's integration"),
    }
    let listed = client.get(url("/integrations?active_only=false")).bearer_auth(&stranger.token).send().await.unwrap();
    assert_eq!(json_body(listed, 200).await, json!([]));
    let consents = client.get(url("/consents")).bearer_auth(&stranger.token).send().await.unwrap();
    assert_eq!(json_body(consents, 200).await, json!([]));
    let status = json_body(client.get(url("/status")).bearer_auth(&stranger.token).send().await.unwrap(), 200).await;
    assert_eq!(status["integrations"]["total_integrations"], 0, "{status}");

    let untouched = h.integration(id).await;
    assert_eq!(untouched["status"], "active", "the stranger's DELETE changed nothing: {untouched}");
    let calls = h.google.handle.counters();
    assert_eq!((calls.refreshes, calls.revocations), (0, 0), "the stranger never reached Google");
}

async fn token_endpoints_refuse_user_jwts(backend: Backend) {
    let h = Harness::start(backend).await;
    let id = h.connect("google").await;
    let stranger = h.app.user("stranger@example.com").await;
    let by_id = format!("{API}/integrations/{id}/token?min_ttl=60");
    let by_owner = format!("{API}/users/{}/integrations/google/token?min_ttl=60", h.user.id);

    for path in [&by_id, &by_owner] {
        // Not even the owner's browser gets the raw token (README: API, Callers).
        problem(h.app.get(path, Some(&h.user.token)).await, 403, "forbidden").await;
        problem(h.app.get(path, Some(&stranger.token)).await, 403, "forbidden").await;
        problem(h.app.get(path, None).await, 401, "authentication_required").await;
        problem(h.app.get(path, Some("not-the-service-key")).await, 401, "authentication_required").await;
    }
    problem(service_get(&h.app, &format!("{API}/integrations/999999/token")).await, 404, "not_found").await;
    let nobody = format!("{API}/users/{}/integrations/notion/token", h.user.id);
    problem(service_get(&h.app, &nobody).await, 404, "not_found").await;
}

async fn no_endpoint_but_the_token_endpoints_reveals_a_token(backend: Backend) {
    let h = Harness::start(backend).await;
    let mut texts: Vec<(String, String)> = Vec::new();

    let connected = h.attempt_connect("google").await.text().await.unwrap();
    let id = serde_json::from_str::<serde_json::Value>(&connected).unwrap()["integration_id"].as_i64().unwrap();
    texts.push(("callback".into(), connected));
    let first = h.token_body(id, 60).await["access_token"].as_str().unwrap().to_owned();
    texts.push(("refresh".into(), h.refresh(id).await.text().await.unwrap()));
    let current = h.token_body(id, 60).await["access_token"].as_str().unwrap().to_owned();
    assert_ne!(first, current);

    let paths = [
        "/integrations".to_owned(),
        "/integrations?active_only=false".to_owned(),
        format!("/integrations/{id}"),
        "/status".to_owned(),
        "/consents".to_owned(),
        "/audit".to_owned(),
        format!("/audit?integration_id={id}"),
        "/providers".to_owned(),
    ];
    for path in &paths {
        texts.push((path.clone(), h.get(path).await.text().await.unwrap()));
    }
    texts.push(("sync".into(), h.post("/integrations/sync").await.text().await.unwrap()));
    texts.push(("delete".into(), h.delete(&format!("/integrations/{id}")).await.text().await.unwrap()));
    for path in &paths {
        texts.push((format!("{path} after revocation"), h.get(path).await.text().await.unwrap()));
    }

    for (what, text) in &texts {
        assert!(!text.contains(&first) && !text.contains(&current), "{what} leaks an access token: {text}");
        for prefix in GOOGLE_TOKEN_PREFIXES {
            assert!(!text.contains(prefix), "{what} shows something like a Google token ({prefix}): {text}");
        }
    }
}

on_both_backends!(
    another_users_integration_is_404_everywhere,
    token_endpoints_refuse_user_jwts,
    no_endpoint_but_the_token_endpoints_reveals_a_token,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_answers_and_api_answers_are_never_cached() {
    let h = Harness::start(Backend::Sqlite).await;
    let id = h.connect("google").await;
    let token = h.token(id, 60).await;
    assert_eq!(token.status(), 200);
    assert_eq!(token.headers()["cache-control"], "no-store");
    assert_eq!(h.get("/integrations").await.headers()["cache-control"], "no-store");
}

//! The audit's findings, one test each: every one failed before its fix.

use std::time::{Duration, Instant};

use provider_emulators::{Fault, IdTokenFault};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::support::{API, Harness, json_body, problem, service_get};
use crate::on_both_backends;
use crate::support::{Backend, TestApp, config_file};

/// Finding 1: A refresh token that does not decrypt (its key removed from the ring) is the operator's
/// problem: 500, nothing marked, and it works again as soon as the key is back.
async fn an_undecryptable_refresh_token_is_an_operators_500_and_recovers_with_the_key(backend: Backend) {
    let h = Harness::start_without_token_cache(backend).await;
    let id = h.connect("google").await;
    h.set_token_times(id, Some(-60), 3600).await;
    let without_the_key =
        TestApp::spawn(h.config().set("OAUTH_ENCRYPTION_KEY", format!("k2:{}", "22".repeat(32)))).await;

    let path = format!("{API}/integrations/{id}/token");
    problem(service_get(&without_the_key, &path).await, 500, "internal_error").await;
    let manual = without_the_key
        .client
        .post(without_the_key.url(&format!("{API}/integrations/{id}/refresh")))
        .bearer_auth(&h.user.token)
        .send()
        .await
        .unwrap();
    problem(manual, 500, "internal_error").await;
    let integration = h.integration(id).await;
    assert_eq!(integration["status"], "active", "not the user's fault: {integration}");
    assert_eq!(integration["needs_reauth"], false);
    assert_eq!(integration["last_error"], Value::Null);
    assert_eq!(h.google.handle.counters().refreshes, 0, "the provider was not asked with garbage");

    // The key is back (the first app has it): the very same connection refreshes.
    let token = h.token_body(id, 60).await;
    assert!(h.google.handle.is_access_token_live(token["access_token"].as_str().unwrap()));
}

/// Finding 2a: `return_to` is capped (2 KB by default): a flow cannot store 45 KB of it.
async fn an_oversized_return_to_is_refused_and_stores_nothing(backend: Backend) {
    let h = Harness::start(backend).await;
    let before = h.count_rows("oauth_state").await;
    let return_to = format!("http://app.test/{}", "a".repeat(45_000));
    let refused = h.initiate("google", json!({ "return_to": return_to })).await;
    let body = problem(refused, 400, "invalid_return_to").await;
    assert!(body["detail"].as_str().unwrap().contains("2048"), "{body}");
    assert_eq!(h.count_rows("oauth_state").await, before);
}

/// Finding 2b: One user cannot pile up open states: beyond the cap, 429 `too_many_flows` until one ends.
async fn a_user_cannot_pile_up_open_flows(backend: Backend) {
    let limits = config_file("[limits]\nopen_flows_per_user = 3\n");
    let h = Harness::start_with(backend, |config| config.set("OAUTH_CONFIG_FILE", limits)).await;
    let mut flows = Vec::new();
    for _ in 0..3 {
        flows.push(h.initiated("google", json!({})).await);
    }
    let refused = h.initiate("google", json!({})).await;
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=600).contains(&retry_after), "Retry-After until the first state expires: {retry_after}");
    problem(refused, 429, "too_many_flows").await;
    assert_eq!(h.count_rows("oauth_state").await, 3);
    // Finishing one frees a place.
    let callback = h.approve(flows[0]["authorization_url"].as_str().unwrap(), None, None).await;
    json_body(h.callback(&callback).await, 200).await;
    json_body(h.initiate("google", json!({})).await, 200).await;
}

/// Finding 2c: `initiate` is rate-limited per user and `callback` per address, with `Retry-After`.
async fn initiate_and_callback_are_rate_limited(backend: Backend) {
    let limits = config_file("[limits]\ninitiate_per_user_per_minute = 2\ncallback_per_address_per_minute = 3\n");
    let h = Harness::start_with(backend, |config| config.set("OAUTH_CONFIG_FILE", limits)).await;
    json_body(h.initiate("google", json!({})).await, 200).await;
    json_body(h.initiate("google", json!({})).await, 200).await;
    let refused = h.initiate("google", json!({})).await;
    assert!(refused.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    problem(refused, 429, "rate_limited").await;
    // Another user is not slowed down by the first.
    let other = h.app.user("other@example.com").await;
    json_body(h.initiate_as(&other.token, "google", json!({})).await, 200).await;

    let unknown = h.app.url(&format!("{API}/callback?state=unknown&code=x"));
    for _ in 0..3 {
        problem(h.callback(&unknown).await, 400, "invalid_state").await;
    }
    problem(h.callback(&unknown).await, 429, "rate_limited").await;
}

/// Finding 2d: Expired states are purged promptly, not after a day.
async fn expired_states_are_purged_within_the_interval(backend: Backend) {
    let settings = config_file("[flow]\nstate_ttl_seconds = 1\npurge_interval_seconds = 1\nkeep_expired_seconds = 0\n");
    let h = Harness::start_with(backend, |config| config.set("OAUTH_CONFIG_FILE", settings)).await;
    h.initiated("google", json!({})).await;
    assert_eq!(h.count_rows("oauth_state").await, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.count_rows("oauth_state").await > 0 {
        assert!(Instant::now() < deadline, "the expired state was not purged within 10 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

on_both_backends!(
    an_undecryptable_refresh_token_is_an_operators_500_and_recovers_with_the_key,
    an_oversized_return_to_is_refused_and_stores_nothing,
    a_user_cannot_pile_up_open_flows,
    initiate_and_callback_are_rate_limited,
    expired_states_are_purged_within_the_interval,
);

/// Finding 3: Clients that send their headers slowly are cut off, and connections beyond the cap are
/// answered 503 at once: neither can starve `/healthz`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_cannot_lock_the_service_out() {
    let settings = config_file("[http]\nheader_read_timeout_seconds = 1\nmax_connections = 50\n");
    let app = TestApp::spawn(
        crate::support::TestConfig::new(&crate::support::fresh_sqlite_url()).set("OAUTH_CONFIG_FILE", settings),
    )
    .await;
    let mut half_sent = Vec::new();
    for _ in 0..140 {
        let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n").await.unwrap();
        half_sent.push(stream);
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let started = Instant::now();
    let full = client.get(app.url("/healthz")).send().await;
    let full = full.unwrap_or_else(|error| panic!("answered at once, not queued: {error:?}"));
    assert_eq!(full.status(), 503, "the cap is reached");
    let body: Value = full.json().await.unwrap();
    assert_eq!(body["code"], "overloaded");
    // The header-read timeout frees the slow connections' places.
    let mut healthy = false;
    while started.elapsed() < Duration::from_secs(5) {
        if client.get(app.url("/healthz")).send().await.is_ok_and(|r| r.status() == 200) {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "/healthz answers again within 5 s while 140 half-sent requests are held open");
    drop(half_sent);
}

/// Finding 4: A disconnect while a rotating provider answers a refresh waits for it, then revokes the
/// grant the refresh got: nothing stays alive at the provider.
async fn disconnect_during_a_rotating_refresh_leaves_no_live_grant(backend: Backend) {
    let h = Harness::start_without_token_cache(backend).await;
    let id = h.connect("notion").await;
    h.set_token_times(id, None, 3600).await; // long ago, so force_refresh is not debounced
    h.notion.handle.set_fault(Fault::Slow(Duration::from_millis(800)));
    let refresh = h
        .app
        .client
        .get(h.app.url(&format!("{API}/integrations/{id}/token?force_refresh=true")))
        .bearer_auth(crate::support::SERVICE_KEY)
        .send();
    let refreshing = tokio::spawn(refresh);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let disconnected = json_body(h.delete(&format!("/integrations/{id}")).await, 200).await;
    assert_eq!(disconnected["provider_revocation"], "revoked", "{disconnected}");
    let _ = refreshing.await.unwrap();
    assert_eq!(h.notion.handle.counters().refreshes, 1, "the refresh ran, rotating the refresh token");
    assert_eq!(h.notion.handle.live_grants(), 0, "the rotated grant was revoked too");
}

/// Finding 5a: A client hanging up during `DELETE` (slow revocation endpoint) does not stop it half-way.
async fn a_client_hanging_up_during_disconnect_does_not_stop_it(backend: Backend) {
    let h = Harness::start(backend).await;
    let id = h.connect("google").await;
    h.google.handle.set_fault(Fault::Slow(Duration::from_millis(700)));
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(150)).build().unwrap();
    let hung_up =
        impatient.delete(h.app.url(&format!("{API}/integrations/{id}"))).bearer_auth(&h.user.token).send().await;
    assert!(hung_up.is_err(), "the client gave up before the answer");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let integration = h.integration(id).await;
    assert_eq!(integration["status"], "revoked", "{integration}");
    let audit = json_body(h.get(&format!("/audit?integration_id={id}")).await, 200).await;
    let actions: Vec<&str> =
        audit["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"revoke") && actions.contains(&"disconnect"), "{actions:?}");
    assert_eq!(h.google.handle.live_grants(), 0);
}

/// Finding 5b: A client hanging up during the code exchange does not leave a spent state and nothing.
async fn a_client_hanging_up_during_the_code_exchange_still_connects(backend: Backend) {
    let h = Harness::start(backend).await;
    let flow = h.initiated("google", json!({})).await;
    let callback = h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;
    h.google.handle.set_fault(Fault::Slow(Duration::from_millis(700)));
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(150)).build().unwrap();
    let cookie = h.flow_cookies();
    assert!(impatient.get(&callback).header("cookie", cookie).send().await.is_err(), "the browser went away");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let integrations = h.all_integrations().await;
    let google: Vec<&Value> = integrations.as_array().unwrap().iter().filter(|i| i["provider"] == "google").collect();
    assert_eq!(google.len(), 1, "the exchange finished and the connection is stored: {integrations}");
    assert_eq!(google[0]["status"], "active");
}

on_both_backends!(
    disconnect_during_a_rotating_refresh_leaves_no_live_grant,
    a_client_hanging_up_during_disconnect_does_not_stop_it,
    a_client_hanging_up_during_the_code_exchange_still_connects,
);

/// Finding 7: A provider field the column cannot hold (a 25-character `token_type`; VARCHAR(20)) no longer
/// rolls back the write of a refresh token the provider has already rotated.
async fn an_oversized_token_type_does_not_lose_a_rotated_refresh_token(backend: Backend) {
    let h = Harness::start_without_token_cache(backend).await;
    let id = h.connect("microsoft").await;
    h.microsoft.handle.set_token_type(Some("X".repeat(25)));
    h.set_token_times(id, Some(-60), 3600).await;
    let odd = h.token_body(id, 60).await;
    assert_eq!(odd["token_type"].as_str().unwrap().len(), 20, "{odd}");
    h.microsoft.handle.set_token_type(None);
    h.set_token_times(id, Some(-60), 3600).await;
    // The rotated refresh token was stored: the next refresh works (it was invalid_grant).
    let next = h.token_body(id, 60).await;
    assert!(h.microsoft.handle.is_access_token_live(next["access_token"].as_str().unwrap()));
    assert_eq!(h.microsoft.handle.counters().refreshes, 2);
}

/// Finding 8: A cross-site form carrying the user's cookie cannot change anything.
async fn a_cross_site_request_cannot_use_the_users_cookie(backend: Backend) {
    let h = Harness::start(backend).await;
    let id = h.connect("google").await;
    let cookie = format!("access_token={}", h.user.token);
    let refresh_url = h.app.url(&format!("{API}/integrations/{id}/refresh"));
    let forged = h
        .app
        .client
        .post(&refresh_url)
        .header("cookie", &cookie)
        .header("origin", "https://evil.test")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("x=1")
        .send()
        .await
        .unwrap();
    problem(forged, 403, "cross_site_request").await;
    let forged_delete = h
        .app
        .client
        .delete(h.app.url(&format!("{API}/integrations/{id}")))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    problem(forged_delete, 403, "cross_site_request").await;
    let integration = h.integration(id).await;
    assert_eq!(integration["status"], "active");
    assert_eq!(h.google.handle.counters().refreshes, 0, "nothing was refreshed");

    // The service's own pages, and a Bearer header from anywhere, still work.
    let own_origin = h.app.url("");
    let own =
        h.app.client.post(&refresh_url).header("cookie", &cookie).header("origin", own_origin.trim_end_matches('/'));
    json_body(own.send().await.unwrap(), 200).await;
    let bearer = h.app.client.post(&refresh_url).bearer_auth(&h.user.token).header("origin", "https://evil.test");
    json_body(bearer.send().await.unwrap(), 200).await;
}

/// Finding 9: A provider outage does not break a token that is still valid: it is handed out, and the
/// answer says the refresh failed.
async fn a_provider_outage_hands_out_the_still_valid_token(backend: Backend) {
    let h = Harness::start_without_token_cache(backend).await;
    let id = h.connect("google").await;
    let current = h.token_body(id, 0).await["access_token"].clone();
    h.set_token_times(id, Some(40), 3600).await;
    h.google.handle.set_fault(Fault::ServerError);
    let response = h.token(id, 60).await;
    assert_eq!(response.headers()["x-token-refresh-failed"], "provider_unavailable");
    let body = json_body(response, 200).await;
    assert_eq!(body["access_token"], current, "the current token, still valid for 40 s");
    // Once it has expired there is nothing valid to hand out.
    h.set_token_times(id, Some(-1), 3600).await;
    problem(h.token(id, 60).await, 502, "provider_unavailable").await;
}

on_both_backends!(
    an_oversized_token_type_does_not_lose_a_rotated_refresh_token,
    a_cross_site_request_cannot_use_the_users_cookie,
    a_provider_outage_hands_out_the_still_valid_token,
);

/// Finding 11a: ID tokens the provider would not have issued to us are refused, whatever else is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_for_another_party_or_out_of_time_or_unsigned_are_refused() {
    let h = Harness::start(Backend::Postgres).await;
    for fault in [
        IdTokenFault::ForeignAuthorizedParty,
        IdTokenFault::IssuerArray,
        IdTokenFault::NotYetValid,
        IdTokenFault::IssuedInTheFuture,
        IdTokenFault::Unsigned,
    ] {
        h.google.handle.set_id_token_fault(fault);
        let body = problem(h.attempt_connect("google").await, 400, "invalid_id_token").await;
        assert!(!body["detail"].as_str().unwrap().is_empty(), "{fault:?}");
    }
    h.assert_nothing_written("forged ID tokens").await;
}

/// Finding 11b: Callbacks arriving together with a `kid` not seen before fetch the JWKS once, not once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callbacks_with_an_unknown_key_fetch_the_jwks_once() {
    let h = Harness::start(Backend::Postgres).await;
    h.connect("google").await;
    h.google.handle.rotate_signing_key();
    let mut callbacks = Vec::new();
    for _ in 0..20 {
        let flow = h.initiated("google", json!({})).await;
        callbacks.push(h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await);
    }
    let before = h.google.handle.counters().jwks_fetches;
    let cookie = h.flow_cookies();
    let tasks: Vec<_> = callbacks
        .into_iter()
        .map(|url| {
            let request = h.app.client.get(url).header("cookie", cookie.clone());
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            })
        })
        .collect();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(h.google.handle.counters().jwks_fetches - before, 1, "one fetch for the 20 callbacks");
}

/// Finding 11c: Google's ID tokens carry `iss` in either documented form; both connect.
async fn both_of_googles_issuer_forms_connect(backend: Backend) {
    let h = Harness::start(backend).await;
    h.connect("google").await; // iss = the issuer URL
    h.connect("google").await; // iss = the same without its scheme, as Google also sends it
}

on_both_backends!(both_of_googles_issuer_forms_connect);

//! Provider faults, as a suite with a figure: every way a token endpoint can fail during a refresh
//! ends in a clean 502 within a bounded time, with the stored tokens unchanged, the failure counted
//! on the integration and audited; slow providers never exhaust the database pool.

use std::time::{Duration, Instant};

use provider_emulators::Fault;
use serde_json::Value;

use super::support::{API, Harness, json_body};
use crate::on_both_backends;
use crate::support::{Backend, TestApp, config_file};

/// Each provider call gives up after this long in these tests.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(2);

fn faults() -> Vec<(&'static str, Fault)> {
    vec![
        ("5xx", Fault::ServerError),
        ("HTML instead of JSON", Fault::Garbage),
        ("429 with Retry-After", Fault::RateLimited),
        ("truncated JSON", Fault::Truncated),
        ("JSON labelled text/plain", Fault::WrongContentType),
        ("a 2 MB body", Fault::HugeBody(2 * 1024 * 1024)),
        ("a body slower than the timeout", Fault::SlowBody(Duration::from_millis(60))),
        ("no answer within the timeout", Fault::Slow(Duration::from_secs(4))),
    ]
}

async fn every_token_endpoint_fault_is_a_clean_502_that_changes_no_token(backend: Backend) {
    let settings = config_file(&format!("[http]\nprovider_timeout_seconds = {}\n", PROVIDER_TIMEOUT.as_secs()));
    let h =
        Harness::start_with(backend, |config| config.set("OAUTH_CONFIG_FILE", settings).without_token_cache()).await;
    let id = h.connect("microsoft").await;
    let store = &h.app.state.vault.store;
    let cases = faults();
    let mut slowest = Duration::ZERO;
    for (count, (name, fault)) in cases.iter().enumerate() {
        h.set_token_times(id, Some(-60), 3600).await;
        let before = store.get_token(id as i32).await.unwrap().unwrap();
        h.microsoft.handle.set_fault(fault.clone());
        let started = Instant::now();
        let response = h.token(id, 60).await;
        let took = started.elapsed();
        slowest = slowest.max(took);
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert!(matches!(status, 502..=504), "{name}: {status} {body}");
        assert_eq!(body["code"], "provider_unavailable", "{name}: {body}");
        assert!(took < PROVIDER_TIMEOUT + Duration::from_secs(2), "{name}: answered after {took:?}");
        let after = store.get_token(id as i32).await.unwrap().unwrap();
        assert_eq!(
            (&after.access_token, &after.refresh_token),
            (&before.access_token, &before.refresh_token),
            "{name}: the stored tokens are untouched"
        );
        let integration = store.get_integration(id as i32).await.unwrap().unwrap();
        assert_eq!(integration.error_count, count as i32 + 1, "{name}: the failure is counted");
        assert_eq!(integration.status, oauth_manager::store::IntegrationStatus::Active, "{name}: not a dead grant");
        let audit = json_body(h.get(&format!("/audit?integration_id={id}&action=error")).await, 200).await;
        assert_eq!(audit["events"].as_array().unwrap().len(), count + 1, "{name}: the failure is audited");
    }
    h.microsoft.handle.set_fault(Fault::None);
    let healed = h.token_body(id, 60).await;
    assert!(h.microsoft.handle.is_access_token_live(healed["access_token"].as_str().unwrap()));
    assert_eq!(store.get_integration(id as i32).await.unwrap().unwrap().error_count, 0, "a good refresh clears it");
    println!(
        "provider faults ({backend:?}): {} token-endpoint faults, each a clean 502 within {slowest:?} \
         (timeout {PROVIDER_TIMEOUT:?}), tokens unchanged, failures counted and audited",
        cases.len()
    );
}

/// A provider that refuses connections outright is a clean 502 as well.
async fn a_provider_refusing_connections_is_a_clean_502(backend: Backend) {
    let h = Harness::start_without_token_cache(backend).await;
    let id = h.connect("microsoft").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = h.config();
    let token_url = format!("{}/{{tenant}}/oauth2/v2.0/token", h.microsoft.base_url);
    let providers = config.providers_toml.take().unwrap();
    assert!(providers.contains(&token_url));
    config.providers_toml = Some(providers.replace(&token_url, &format!("http://127.0.0.1:{closed}/token")));
    let app = TestApp::spawn(config).await;
    h.set_token_times(id, Some(-60), 3600).await;
    let started = Instant::now();
    let response = super::support::service_get(&app, &format!("{API}/integrations/{id}/token")).await;
    let body = json_body(response, 502).await;
    assert_eq!(body["code"], "provider_unavailable");
    assert!(body["detail"].as_str().unwrap().contains("could not be reached"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(6));
}

/// Refreshes waiting on a slow provider never take the connections the rest of the API needs.
async fn slow_refreshes_never_exhaust_the_database_pool(backend: Backend) {
    let settings = config_file("[http]\nprovider_timeout_seconds = 5\n");
    let h = Harness::start_with(backend, |config| {
        config.set("DATABASE_MAX_CONNECTIONS", "4").set("OAUTH_CONFIG_FILE", settings).without_token_cache()
    })
    .await;
    let ids = expired_microsoft_integrations(&h, 6).await;
    h.microsoft.handle.set_fault(Fault::Slow(Duration::from_secs(3)));
    let hand_outs = spawn_hand_outs(&h, &ids);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    json_body(h.get("/integrations").await, 200).await;
    assert_eq!(h.app.get("/readyz", None).await.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1), "the API answered in {:?}", started.elapsed());
    for hand_out in hand_outs {
        let _ = hand_out.await;
    }
}

/// A refresh holds no database connection while the provider answers, so the refreshes in
/// flight are bound by `refresh.max_in_flight`, not by the pool: on a pool of 4, six refreshes wait
/// on the provider together (before, half the pool, 2, did).
async fn refreshes_in_flight_are_not_bound_by_the_database_pool(backend: Backend) {
    let h =
        Harness::start_with(backend, |config| config.set("DATABASE_MAX_CONNECTIONS", "4").without_token_cache()).await;
    let ids = expired_microsoft_integrations(&h, 6).await;
    h.microsoft.handle.set_fault(Fault::Slow(Duration::from_millis(1500)));
    let mut tokens = std::collections::HashSet::new();
    for hand_out in spawn_hand_outs(&h, &ids) {
        let body = json_body(hand_out.await.unwrap().unwrap(), 200).await;
        tokens.insert(body["access_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(tokens.len(), 6, "each integration got its own fresh token");
    let counters = h.microsoft.handle.counters();
    assert_eq!(counters.refreshes, 6);
    assert_eq!(counters.most_held_at_once, 6, "all six refreshes waited on the provider at once");
}

/// Connects `count` users' Microsoft accounts and makes their stored access tokens expired.
async fn expired_microsoft_integrations(h: &Harness, count: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for n in 0..count {
        let user = h.app.user(&format!("user{n}@example.com")).await;
        let flow = json_body(h.initiate_as(&user.token, "microsoft", serde_json::json!({})).await, 200).await;
        let login = format!("user{n}@example.com");
        let callback = h.approve(flow["authorization_url"].as_str().unwrap(), Some(&login), None).await;
        let connected = json_body(h.callback(&callback).await, 200).await;
        ids.push(connected["integration_id"].as_i64().unwrap());
    }
    for id in &ids {
        h.set_token_times(*id, Some(-60), 3600).await;
    }
    ids
}

/// Starts a backend's hand-out of each of `ids` at once.
fn spawn_hand_outs(h: &Harness, ids: &[i64]) -> Vec<tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>> {
    ids.iter()
        .map(|id| {
            let request = h
                .app
                .client
                .get(h.app.url(&format!("{API}/integrations/{id}/token")))
                .bearer_auth(crate::support::SERVICE_KEY);
            tokio::spawn(request.send())
        })
        .collect()
}

on_both_backends!(
    every_token_endpoint_fault_is_a_clean_502_that_changes_no_token,
    a_provider_refusing_connections_is_a_clean_502,
    slow_refreshes_never_exhaust_the_database_pool,
    refreshes_in_flight_are_not_bound_by_the_database_pool,
);

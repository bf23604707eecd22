//! One refresh per integration across processes: concurrent callers share its result.

use std::collections::HashSet;

use sqlx::Connection;

use super::support::{API, Harness, json_body};
use crate::support::{Backend, SERVICE_KEY, TestApp};

/// How many token requests race each other.
const CALLERS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_hand_outs_across_two_apps_share_one_refresh() {
    let h = Harness::start_without_token_cache(Backend::Postgres).await;
    let second = TestApp::spawn(h.config()).await;
    let id = h.connect("google").await;
    let first = h.token_body(id, 60).await["access_token"].as_str().unwrap().to_owned();
    assert_eq!(h.google.handle.counters().refreshes, 0);

    // The stored token expires: every caller needs a fresh one, and whichever app's caller gets
    // the lock first refreshes; everybody else, in either app, must share its result (README: Refresh
    // concurrency), including callers that arrive after the refresh has committed.
    expire_stored_token(&h, id).await;
    let path = format!("{API}/integrations/{id}/token?min_ttl=60");
    let urls = [h.app.url(&path), second.url(&path)];
    let tokens = hand_out_concurrently(&h, &urls).await;

    assert_eq!(tokens.len(), 1, "all {CALLERS} callers got the same token: {tokens:?}");
    assert!(!tokens.contains(&first), "the token was refreshed");
    assert!(h.google.handle.is_access_token_live(tokens.iter().next().unwrap()));
    assert_eq!(h.google.handle.counters().refreshes, 1, "one refresh for everybody");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_hand_outs_across_two_service_processes_share_one_refresh() {
    let h = Harness::start_without_token_cache(Backend::Postgres).await;
    let id = h.connect("google").await;

    // Two real `oauth-manager serve` processes on the same database and emulators.
    let env = h.service_process_env();
    let first_process = crate::support::ServiceProcess::start(&env).await;
    let second_process = crate::support::ServiceProcess::start(&env).await;

    expire_stored_token(&h, id).await;
    // A slow provider keeps the first refresh in flight while every request arrives, so a missing
    // lock between the processes shows as a second refresh instead of hiding behind a fast one.
    h.google.handle.set_fault(provider_emulators::Fault::Slow(std::time::Duration::from_millis(300)));
    let path = format!("{API}/integrations/{id}/token");
    let urls = [format!("{}{path}", first_process.base_url), format!("{}{path}", second_process.base_url)];
    let tokens = hand_out_concurrently(&h, &urls).await;
    assert_eq!(tokens.len(), 1, "all {CALLERS} callers of both processes got the same token: {tokens:?}");
    assert_eq!(h.google.handle.counters().refreshes, 1, "one refresh across both processes");
    assert!(first_process.terminate().success() && second_process.terminate().success());
}

/// Makes the stored access token of `id` expired, as time passing would.
async fn expire_stored_token(h: &Harness, id: i64) {
    h.assert_rows_may_be_rewritten();
    let mut database = sqlx::PgConnection::connect(&h.database_url).await.unwrap();
    sqlx::query(
        "UPDATE oauth_tokens SET expires_at = now() AT TIME ZONE 'utc' - interval '1 minute' WHERE integration_id = $1",
    )
    .bind(id as i32)
    .execute(&mut database)
    .await
    .unwrap();
}

/// `CALLERS` concurrent service hand-outs alternating between `urls`; the distinct tokens received.
async fn hand_out_concurrently(h: &Harness, urls: &[String; 2]) -> HashSet<String> {
    let callers: Vec<_> = (0..CALLERS)
        .map(|i| {
            let request = h.app.client.get(&urls[i % 2]).bearer_auth(SERVICE_KEY);
            tokio::spawn(async move { json_body(request.send().await.unwrap(), 200).await })
        })
        .collect();
    let mut tokens = HashSet::new();
    for caller in callers {
        tokens.insert(caller.await.unwrap()["access_token"].as_str().unwrap().to_owned());
    }
    tokens
}

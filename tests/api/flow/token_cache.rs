//! The token cache's promises (README: Token cache): a change that has answered is never served
//! stale, on the replica that made it at once and on every other within 100 ms; a replica that
//! cannot hear the changes reads the database; the operator can turn it off.
//!
//! Whether a hand-out came from the cache is seen by rewriting the token row's `scope` behind
//! the service's back (a write it cannot hear): a cached hand-out still shows the old scopes, a
//! database read shows the marker.

use std::time::{Duration, Instant};

use reqwest::Response;
use serde_json::Value;

use super::support::{API, Harness, json_body, problem, service_get};
use crate::on_both_backends;
use crate::support::{Backend, SERVICE_KEY, ServiceProcess};

/// How soon another replica must stop serving a changed token (the bound).
const OTHER_REPLICA_BOUND: Duration = Duration::from_millis(100);

/// Sets the stored `scope` of `id` to `marker` without the service hearing of it.
async fn rewrite_scope_behind_the_service(h: &Harness, id: i64, marker: &str) {
    let sql = "UPDATE oauth_tokens SET scope = $2 WHERE integration_id = $1";
    if h.database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&h.database_url).await.unwrap();
        sqlx::query(sql).bind(id as i32).bind(marker).execute(&pool).await.unwrap();
    } else {
        let pool = sqlx::SqlitePool::connect(&h.database_url).await.unwrap();
        sqlx::query(sql).bind(id as i32).bind(marker).execute(&pool).await.unwrap();
    }
}

fn scopes(body: &Value) -> Vec<String> {
    body["scopes"].as_array().unwrap().iter().map(|scope| scope.as_str().unwrap().to_owned()).collect()
}

async fn hand_out_at(base_url: &str, id: i64) -> Response {
    let url = format!("{base_url}{API}/integrations/{id}/token");
    reqwest::Client::new().get(url).bearer_auth(SERVICE_KEY).send().await.unwrap()
}

async fn cache_state(base_url: &str) -> String {
    let ready = reqwest::get(format!("{base_url}/readyz")).await.unwrap();
    json_body(ready, 200).await["token_cache"].as_str().unwrap().to_owned()
}

/// Waits (up to 10 s) until the cache of the service at `base_url` is in `state`.
async fn wait_for_cache(base_url: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache_state(base_url).await != state {
        assert!(Instant::now() < deadline, "the token cache of {base_url} never became {state}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asks `base_url` for `id`'s token until `done` accepts the answer or `bound` has passed since
/// `since`; how long after `since` the accepted answer came.
async fn first_answer_within(
    base_url: &str,
    id: i64,
    since: Instant,
    bound: Duration,
    done: impl Fn(u16, &Value) -> bool,
) -> Result<Duration, (u16, Value)> {
    loop {
        let response = hand_out_at(base_url, id).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        let elapsed = since.elapsed();
        if done(status, &body) {
            return Ok(elapsed);
        }
        if elapsed > bound {
            return Err((status, body));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_service_processes_never_serve_a_changed_token_past_100_ms() {
    let h = Harness::start(Backend::Postgres).await;
    let id = h.connect("google").await;
    let env = h.service_process_env();
    let a = ServiceProcess::start(&env).await;
    let b = ServiceProcess::start(&env).await;
    wait_for_cache(&a.base_url, "live").await;
    wait_for_cache(&b.base_url, "live").await;

    // B caches the token: a rewrite it cannot hear does not reach its answers; A, which has not
    // read this token yet, shows the rewrite.
    let first = json_body(hand_out_at(&b.base_url, id).await, 200).await;
    rewrite_scope_behind_the_service(&h, id, "cache-probe").await;
    assert_eq!(scopes(&json_body(hand_out_at(&b.base_url, id).await, 200).await), scopes(&first), "B serves its cache");
    assert_eq!(scopes(&json_body(hand_out_at(&a.base_url, id).await, 200).await), ["cache-probe"]);

    // A refreshes; from the moment A has answered, B hands out the new token within the bound.
    let refresh_url = format!("{}{API}/integrations/{id}/refresh", a.base_url);
    let refreshed = reqwest::Client::new().post(refresh_url).bearer_auth(&h.user.token).send().await.unwrap();
    let answered = Instant::now();
    assert_eq!(refreshed.status(), 200);
    let old_token = first["access_token"].clone();
    let seen = first_answer_within(&b.base_url, id, answered, OTHER_REPLICA_BOUND, |status, body| {
        status == 200 && body["access_token"] != old_token
    })
    .await
    .unwrap_or_else(|last| {
        panic!("B still served the replaced token {OTHER_REPLICA_BOUND:?} after A's refresh: {last:?}")
    });
    eprintln!("B handed out the refreshed token {seen:?} after A's refresh answered");
    let renewed = json_body(hand_out_at(&b.base_url, id).await, 200).await;
    assert!(h.google.handle.is_access_token_live(renewed["access_token"].as_str().unwrap()));
    assert_eq!(h.google.handle.counters().refreshes, 1);

    // A disconnects; from the moment A has answered, B refuses within the bound.
    let delete_url = format!("{}{API}/integrations/{id}", a.base_url);
    let deleted = reqwest::Client::new().delete(delete_url).bearer_auth(&h.user.token).send().await.unwrap();
    let answered = Instant::now();
    assert_eq!(deleted.status(), 200);
    let seen = first_answer_within(&b.base_url, id, answered, OTHER_REPLICA_BOUND, |status, body| {
        status == 409 && body["code"] == "integration_revoked"
    })
    .await
    .unwrap_or_else(|last| panic!("B still handed out a token {OTHER_REPLICA_BOUND:?} after A's disconnect: {last:?}"));
    eprintln!("B refused the disconnected integration {seen:?} after A's disconnect answered");
    assert!(a.terminate().success() && b.terminate().success());
}

/// The process that makes a change never serves the old token once the change has answered:
/// reconnect, refresh, disconnect.
async fn the_replica_that_changes_a_token_never_serves_the_old_one(backend: Backend) {
    let h = Harness::start(backend).await;
    wait_for_cache(&h.app.url(""), "live").await;
    let id = h.connect("google").await;
    let first = h.token_body(id, 60).await;
    rewrite_scope_behind_the_service(&h, id, "cache-probe").await;
    assert_eq!(scopes(&h.token_body(id, 60).await), scopes(&first), "the hand-out came from the cache");

    assert_eq!(h.connect("google").await, id, "a reconnect keeps the integration");
    let reconnected = h.token_body(id, 60).await;
    assert_ne!(reconnected["access_token"], first["access_token"], "the reconnect's token at once");

    json_body(h.refresh(id).await, 200).await;
    let refreshed = h.token_body(id, 60).await;
    assert_ne!(refreshed["access_token"], reconnected["access_token"], "the refresh's token at once");
    assert!(h.google.handle.is_access_token_live(refreshed["access_token"].as_str().unwrap()));

    json_body(h.delete(&format!("/integrations/{id}")).await, 200).await;
    problem(h.token(id, 60).await, 409, "integration_revoked").await;
    // The hand-out by owner is cached by its own key, and dropped with it.
    let by_owner = format!("{API}/users/{}/integrations/google/token", h.user.id);
    assert_eq!(service_get(&h.app, &by_owner).await.status(), 409);
}

/// A replica whose change listener loses the database stops using its cache at once, reads the
/// database meanwhile, and starts afresh when the listener is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_loses_its_change_listener_reads_the_database_until_it_is_back() {
    let h = Harness::start(Backend::Postgres).await;
    let base_url = h.app.url("");
    wait_for_cache(&base_url, "live").await;
    let id = h.connect("google").await;
    let first = h.token_body(id, 60).await;
    rewrite_scope_behind_the_service(&h, id, "probe-1").await;
    assert_eq!(scopes(&h.token_body(id, 60).await), scopes(&first), "the hand-out came from the cache");

    let database = sqlx::PgPool::connect(&h.database_url).await.unwrap();
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN %'",
    )
    .fetch_all(&database)
    .await
    .unwrap();
    assert_eq!(terminated, [true], "the app's one listener connection was found and ended");
    wait_for_cache(&base_url, "bypassed").await;
    assert_eq!(scopes(&h.token_body(id, 60).await), ["probe-1"], "bypassed: the database's row");
    rewrite_scope_behind_the_service(&h, id, "probe-2").await;
    assert_eq!(scopes(&h.token_body(id, 60).await), ["probe-2"], "bypassed: nothing was cached meanwhile");

    wait_for_cache(&base_url, "live").await;
    assert_eq!(scopes(&h.token_body(id, 60).await), ["probe-2"]);
    rewrite_scope_behind_the_service(&h, id, "probe-3").await;
    assert_eq!(scopes(&h.token_body(id, 60).await), ["probe-2"], "live again: served from the cache");
}

/// `OAUTH_TOKEN_CACHE=off`: every hand-out reads the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cache_off_every_hand_out_reads_the_database() {
    let h = Harness::start_without_token_cache(Backend::Postgres).await;
    assert_eq!(cache_state(&h.app.url("")).await, "off");
    let id = h.connect("google").await;
    h.token_body(id, 60).await;
    rewrite_scope_behind_the_service(&h, id, "cache-probe").await;
    assert_eq!(scopes(&h.token_body(id, 60).await), ["cache-probe"]);
}

on_both_backends!(the_replica_that_changes_a_token_never_serves_the_old_one);

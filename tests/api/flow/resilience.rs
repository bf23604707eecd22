//! Providers that fail, hang or rotate keys; the background flusher and refresher; Notion's
//! refresh-on-401; the sandbox loop served from one server, and its grants across a restart.

use std::time::{Duration, Instant};

use provider_emulators::Fault;
use serde_json::{Value, json};

use super::support::{API, Harness, json_body, problem};
use crate::on_both_backends;
use crate::support::{
    Backend, SERVICE_KEY, ServiceProcess, TestApp, TestConfig, config_file, fresh_sqlite_url, user_token,
};

/// Polls `check` every 100 ms for up to `seconds`; true once it holds.
async fn eventually<F, Fut>(seconds: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn a_failing_provider_refresh_is_502_and_keeps_the_integration_usable(backend: Backend) {
    let h = Harness::start(backend).await;
    let id = h.connect("microsoft").await;
    for fault in [Fault::ServerError, Fault::Garbage] {
        h.microsoft.handle.set_fault(fault);
        problem(h.refresh(id).await, 502, "provider_unavailable").await;
    }
    let integration = h.integration(id).await;
    assert_eq!(integration["status"], "active", "a provider outage is not a dead grant");
    assert_eq!(integration["needs_reauth"], false);
    assert!(integration["last_error"].as_str().is_some_and(|e| !e.is_empty()));

    h.microsoft.handle.set_fault(Fault::None);
    json_body(h.refresh(id).await, 200).await;
    let integration = h.integration(id).await;
    assert_eq!(integration["last_error"], Value::Null, "a good refresh clears the error");
    assert_eq!(h.microsoft.handle.counters().refreshes, 1);
    let errors = json_body(h.get(&format!("/audit?integration_id={id}&action=error")).await, 200).await;
    assert_eq!(errors["events"].as_array().unwrap().len(), 2, "each failure is an audited error");
}

async fn a_hanging_provider_times_out_as_502(backend: Backend) {
    let path = config_file("[http]\nprovider_timeout_seconds = 1\n");
    let h = Harness::start_with(backend, |config| config.set("OAUTH_CONFIG_FILE", path)).await;
    let id = h.connect("google").await;
    h.google.handle.set_fault(Fault::Slow(Duration::from_secs(5)));
    let started = Instant::now();
    problem(h.refresh(id).await, 502, "provider_unavailable").await;
    assert!(started.elapsed() < Duration::from_secs(4), "gave up after the provider timeout");
}

async fn a_rotated_signing_key_is_fetched_again(backend: Backend) {
    let h = Harness::start(backend).await;
    h.connect("google").await;
    h.google.handle.rotate_signing_key();
    // The cache may re-fetch once a second: a rotation is picked up, a flood of unknown kids is not.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.connect("google").await;
    assert_eq!(h.all_integrations().await.as_array().unwrap().len(), 1, "reconnecting updates the one integration");
}

async fn hand_outs_are_counted_in_aggregate_by_the_flusher(backend: Backend) {
    let h = Harness::start(backend).await;
    let id = h.connect("google").await;
    for _ in 0..5 {
        json_body(h.token(id, 60).await, 200).await;
    }
    let counted = eventually(5, || async {
        let audit = json_body(h.get(&format!("/audit?integration_id={id}&action=api_call")).await, 200).await;
        audit["events"].as_array().is_some_and(|events| events.len() == 1 && events[0]["details"]["hand_outs"] == 5)
    })
    .await;
    assert!(counted, "one api_call row carrying the 5 hand-outs");
    let (usage, last_used) = h.app.state.vault.store.token_usage(id as i32).await.unwrap().unwrap();
    assert_eq!(usage, 5);
    assert!(last_used.is_some());
}

async fn a_rejected_notion_token_is_refreshed_on_request(backend: Backend) {
    let h = Harness::start_without_token_cache(backend).await;
    let id = h.connect("notion").await;
    let before = h.token_body(id, 60).await["access_token"].as_str().unwrap().to_owned();
    h.notion.handle.expire_access_tokens();
    assert!(!h.notion.handle.is_access_token_live(&before));
    // A minute later the backend calls Notion, gets 401, and asks for a fresh token.
    h.set_token_times(id, None, 60).await;
    assert_eq!(h.integration(id).await["expires_at"], Value::Null, "still the never-expires sentinel");
    let path = format!("{API}/integrations/{id}/token?force_refresh=true");
    let after = json_body(crate::flow::support::service_get(&h.app, &path).await, 200).await;
    let after = after["access_token"].as_str().unwrap();
    assert_ne!(after, before);
    assert!(h.notion.handle.is_access_token_live(after));
    // A second report of the same rejection right after shares the new token.
    let again = json_body(crate::flow::support::service_get(&h.app, &path).await, 200).await;
    assert_eq!(again["access_token"], after);
    assert_eq!(h.notion.handle.counters().refreshes, 1);
}

async fn sync_refreshes_a_notion_token_the_provider_rejects(backend: Backend) {
    let h = Harness::start(backend).await;
    let id = h.connect("notion").await;
    let google = h.connect("google").await;
    h.notion.handle.expire_access_tokens();
    let answer = json_body(h.post("/integrations/sync").await, 200).await;
    let status_of = |wanted: i64| {
        answer["results"].as_array().unwrap().iter().find(|r| r["integration_id"] == wanted).unwrap()["status"].clone()
    };
    assert_eq!(status_of(id), "refreshed");
    assert_eq!(status_of(google), "ok");
    assert_eq!(h.notion.handle.counters().refreshes, 1);
}

on_both_backends!(
    a_failing_provider_refresh_is_502_and_keeps_the_integration_usable,
    a_hanging_provider_times_out_as_502,
    a_rotated_signing_key_is_fetched_again,
    hand_outs_are_counted_in_aggregate_by_the_flusher,
    a_rejected_notion_token_is_refreshed_on_request,
    sync_refreshes_a_notion_token_the_provider_rejects,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proactive_refresher_renews_tokens_before_they_expire() {
    let path = config_file("[refresh]\ninterval_seconds = 1\nlead_seconds = 300\nconcurrency = 2\n");
    let h =
        Harness::start_with(Backend::Postgres, |config| config.set("OAUTH_CONFIG_FILE", path).without_token_cache())
            .await;
    let id = h.connect("google").await;
    h.token_body(id, 0).await; // used: the flusher records it within a second
    h.set_token_times(id, Some(120), 3000).await;
    let renewed = eventually(6, || async {
        let integration = h.integration(id).await;
        let expires_at: chrono::DateTime<chrono::Utc> = integration["expires_at"].as_str().unwrap().parse().unwrap();
        expires_at > chrono::Utc::now() + chrono::Duration::minutes(30)
    })
    .await;
    assert!(renewed, "the token expiring in 2 minutes was renewed in the background");
    assert_eq!(h.google.handle.counters().refreshes, 1, "and only once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_integration_is_not_renewed_ahead_of_expiry_but_on_its_next_hand_out() {
    let path = config_file("[refresh]\ninterval_seconds = 1\nlead_seconds = 300\nconcurrency = 2\n");
    let h =
        Harness::start_with(Backend::Postgres, |config| config.set("OAUTH_CONFIG_FILE", path).without_token_cache())
            .await;
    let id = h.connect("google").await; // connected, never handed out
    h.set_token_times(id, Some(120), 3000).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(h.google.handle.counters().refreshes, 0, "nobody uses it: no provider call, no audit row");
    let token = h.token_body(id, 600).await; // needs 10 minutes: refreshed now
    assert!(h.google.handle.is_access_token_live(token["access_token"].as_str().unwrap()));
    assert_eq!(h.google.handle.counters().refreshes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_that_dies_unused_gets_a_keep_alive_refresh() {
    let path = config_file("[refresh]\ninterval_seconds = 1\nlead_seconds = 300\nconcurrency = 2\n");
    let h =
        Harness::start_with(Backend::Postgres, |config| config.set("OAUTH_CONFIG_FILE", path).without_token_cache())
            .await;
    let microsoft = h.connect("microsoft").await; // refresh_token_idle_days = 90
    let google = h.connect("google").await; // no idle limit
    // Both untouched for 70 days (past two thirds of Microsoft's 90), neither used, both valid.
    for id in [microsoft, google] {
        h.set_token_times(id, Some(3000), 70 * 24 * 3600).await;
    }
    let kept_alive = eventually(6, || async { h.microsoft.handle.counters().refreshes == 1 }).await;
    assert!(kept_alive, "Microsoft's refresh token is renewed before it dies of disuse");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.microsoft.handle.counters().refreshes, 1, "once, not every round");
    assert_eq!(h.google.handle.counters().refreshes, 0, "Google's does not die unused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_serves_the_whole_loop_from_one_server() {
    let app = TestApp::spawn_sandbox(TestConfig::new(&fresh_sqlite_url()).set("OAUTH_SANDBOX", "on")).await;
    let user = app.user("demo@example.com").await;
    for provider in ["google", "microsoft", "notion", "youtube"] {
        let id = connect_in_sandbox(&app.client, &app.url(""), &user.token, provider).await;
        let token_path = app.url(&format!("{API}/integrations/{id}/token"));
        let token = json_body(app.client.get(&token_path).bearer_auth(SERVICE_KEY).send().await.unwrap(), 200).await;
        assert!(token["access_token"].as_str().is_some_and(|t| !t.is_empty()));
        let refresh_path = app.url(&format!("{API}/integrations/{id}/refresh"));
        json_body(app.client.post(&refresh_path).bearer_auth(&user.token).send().await.unwrap(), 200).await;
        let delete_path = app.url(&format!("{API}/integrations/{id}"));
        json_body(app.client.delete(&delete_path).bearer_auth(&user.token).send().await.unwrap(), 200).await;
    }
}

/// Connects `provider` through the sandbox of the service at `base_url` as the holder of `token`:
/// initiate, approve on the emulator's consent page, land on the callback. The integration id.
async fn connect_in_sandbox(client: &reqwest::Client, base_url: &str, token: &str, provider: &str) -> i64 {
    let initiated = client
        .post(format!("{base_url}{API}/initiate"))
        .bearer_auth(token)
        .json(&json!({"provider": provider}))
        .send()
        .await
        .unwrap();
    let cookie = crate::flow::support::flow_cookie(&initiated).expect("initiate sets the flow cookie");
    let initiated = json_body(initiated, 200).await;
    let link = initiated["authorization_url"].as_str().unwrap();
    let url = url::Url::parse(&crate::flow::support::provider_url(client, link, Some(&cookie)).await).unwrap();
    assert!(url.path().starts_with("/_sandbox/"), "{url}");
    let consent_page = client.get(url.clone()).send().await.unwrap();
    assert!(consent_page.text().await.unwrap().contains("Approve"), "a consent page stands in for the provider");
    let mut form: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    form.push(("decision".into(), "approve".into()));
    let mut action = url.clone();
    action.set_query(None);
    let approved = client.post(action).form(&form).send().await.unwrap();
    assert_eq!(approved.status(), 303, "{provider}: the consent form redirects back");
    let callback = approved.headers()["location"].to_str().unwrap().to_owned();
    let connected = json_body(client.get(&callback).header("cookie", cookie).send().await.unwrap(), 200).await;
    assert_eq!(connected["status"], "active", "{provider}: {connected}");
    connected["integration_id"].as_i64().unwrap()
}

/// `POST /integrations/{id}/refresh` on the service at `base_url`: its body, once it answered 200.
async fn refresh_at(client: &reqwest::Client, base_url: &str, token: &str, id: i64) -> Value {
    let url = format!("{base_url}{API}/integrations/{id}/refresh");
    json_body(client.post(url).bearer_auth(token).send().await.unwrap(), 200).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_connections_still_refresh_after_the_service_restarts() {
    let database_url = fresh_sqlite_url();
    let config = TestConfig::new(&database_url).set("OAUTH_SANDBOX", "on");
    let data_dir = std::path::PathBuf::from(&config.env["OAUTH_DATA_DIR"]);
    let env: Vec<(String, String)> = config.env.into_iter().collect();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    let first = ServiceProcess::start(&env).await;
    // The user exists in the host application's table, which the service has just migrated.
    let user_id = {
        use oauth_manager::store::Store as _;
        let store = oauth_manager::store::SqliteStore::connect(&database_url, 1).await.unwrap();
        store.create_user("demo@example.com").await.unwrap()
    };
    let token = user_token(user_id, "demo@example.com", &[]);
    let mut integrations = Vec::new();
    for provider in ["google", "microsoft", "notion"] {
        let id = connect_in_sandbox(&client, &first.base_url, &token, provider).await;
        // Microsoft and Notion rotate the refresh token: the one the service holds at the
        // restart is not the one it got at the callback.
        refresh_at(&client, &first.base_url, &token, id).await;
        integrations.push((provider, id));
    }
    assert!(first.terminate().success(), "SIGTERM ends the first process cleanly");
    for provider in ["google", "microsoft", "notion"] {
        let file = data_dir.join(format!("sandbox-{provider}.json"));
        assert!(file.exists(), "{} holds the {provider} emulator's grants", file.display());
    }

    let second = ServiceProcess::start(&env).await;
    for (provider, id) in integrations {
        let refreshed = refresh_at(&client, &second.base_url, &token, id).await;
        assert_eq!(refreshed["integration"]["status"], "active", "{provider}: {refreshed}");
        let url = format!("{}{API}/integrations/{id}", second.base_url);
        let integration = json_body(client.get(url).bearer_auth(&token).send().await.unwrap(), 200).await;
        assert_eq!(integration["status"], "active", "{provider}: {integration}");
    }
    drop(second);
    std::fs::remove_dir_all(data_dir).ok();
}

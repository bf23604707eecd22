//! Health, readiness, request ids and problem JSON for errors made outside our handlers.

use crate::support::{Backend, TestApp, expect_problem};

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let app = TestApp::start(Backend::Postgres).await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["primary_key_id"], "k1");
}

#[tokio::test]
async fn request_ids_are_set_and_propagated() {
    let app = TestApp::start(Backend::Sqlite).await;
    let generated = app.get("/healthz", None).await;
    assert!(!generated.headers()["x-request-id"].is_empty());
    let given = app.client.get(app.url("/healthz")).header("x-request-id", "trace-me-42").send().await.unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-me-42");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problem_json() {
    let app = TestApp::start(Backend::Sqlite).await;
    expect_problem(app.get("/api/v1/oauth/nope", None).await, 404, "not_found").await;
    let response = app.client.delete(app.url("/healthz")).send().await.unwrap();
    expect_problem(response, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn a_malformed_path_parameter_is_a_400_problem() {
    let app = TestApp::start(Backend::Sqlite).await;
    let user = app.user("u@example.com").await;
    let response = app.get("/api/v1/oauth/integrations/not-a-number", Some(&user.token)).await;
    expect_problem(response, 400, "invalid_request").await;
    let response = app.get("/api/v1/oauth/integrations?active_only=maybe", Some(&user.token)).await;
    expect_problem(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_user_missing_from_the_users_table_gets_an_empty_list_not_a_500() {
    let app = TestApp::start(Backend::Postgres).await;
    let ghost = crate::support::user_token(777, "ghost@example.com", &[]);
    let response = app.get("/api/v1/oauth/integrations", Some(&ghost)).await;
    assert_eq!(response.status(), 200);
}

async fn initiate_google(app: &TestApp, token: &str) -> reqwest::Response {
    let body = serde_json::json!({"provider": "google"});
    app.client.post(app.url("/api/v1/oauth/initiate")).bearer_auth(token).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn a_user_missing_from_the_users_table_cannot_start_a_flow() {
    let ghost = crate::support::user_token(777, "ghost@example.com", &[]);
    let unconfigured = TestApp::start(Backend::Postgres).await;
    let response = initiate_google(&unconfigured, &ghost).await;
    assert_eq!(response.status(), 503, "unconfigured providers are refused before any write");

    let database = crate::support::existing_schema_database().await;
    let config =
        crate::support::TestConfig::new(&database).set("GOOGLE_CLIENT_ID", "id").set("GOOGLE_CLIENT_SECRET", "secret");
    let app = TestApp::spawn(config).await;
    expect_problem(initiate_google(&app, &ghost).await, 403, "unknown_user").await;
}

#[test]
fn the_flow_cookie_follows_a_public_base_url_with_a_path() {
    let data_dir = std::env::temp_dir().join(format!("oam-path-{}", oauth_manager::crypto::random_token(6)));
    let config = |base: &str| {
        let env = [("PUBLIC_BASE_URL", base), ("OAUTH_DATA_DIR", data_dir.to_str().unwrap())];
        oauth_manager::config::Config::load(&|name| {
            env.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string())
        })
        .unwrap()
    };
    // Plain http below a path: the API under that path, no prefix (it needs Secure).
    let http = config("http://apps.example.com/oam/");
    assert_eq!(oauth_manager::http::flow::flow_cookie_path(&http), "/oam/api/v1/oauth");
    assert!(oauth_manager::http::flow::flow_cookie_name(&http, "state").starts_with("oam_flow_"));
    // https, even below a path: `__Host-` at `/`, so no sibling subdomain can plant one.
    let https = config("https://apps.example.com/oam/");
    assert_eq!(oauth_manager::http::flow::flow_cookie_path(&https), "/");
    assert!(oauth_manager::http::flow::flow_cookie_name(&https, "state").starts_with("__Host-oam_flow_"));
    assert_eq!(https.callback_url(Some("google")), "https://apps.example.com/oam/api/v1/oauth/callback/google");
    std::fs::remove_dir_all(data_dir).ok();
}

/// Every endpoint that reads integrations answers 503 `busy` (never a 500) when the database
/// cannot give it the rows in time: here another session holds the table beyond the
/// connections' `lock_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_database_is_503_busy_on_every_endpoint_that_reads_integrations() {
    use sqlx::{Connection, Executor};

    let url = crate::support::existing_schema_database().await;
    let app = TestApp::spawn(crate::support::TestConfig::new(&format!("{url}?options[lock_timeout]=200ms"))).await;
    let user = app.user("owner@example.com").await;
    let record = crate::store_fixtures::connect_record(user.id, "google");
    let id = app.state.vault.store.complete_connect(&record).await.unwrap().id;

    let mut blocker = sqlx::PgConnection::connect(&url).await.unwrap();
    blocker.execute("BEGIN; LOCK TABLE oauth_integrations IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let service = crate::support::SERVICE_KEY;
    let requests = [
        ("GET", "/api/v1/oauth/integrations".to_owned(), &user.token[..]),
        ("GET", format!("/api/v1/oauth/integrations/{id}"), &user.token),
        ("POST", format!("/api/v1/oauth/integrations/{id}/refresh"), &user.token),
        ("DELETE", format!("/api/v1/oauth/integrations/{id}"), &user.token),
        ("POST", "/api/v1/oauth/integrations/sync".to_owned(), &user.token),
        ("GET", "/api/v1/oauth/status".to_owned(), &user.token),
        ("GET", "/api/v1/oauth/consents".to_owned(), &user.token),
        ("GET", format!("/api/v1/oauth/integrations/{id}/token"), service),
        ("GET", format!("/api/v1/oauth/users/{}/integrations/google/token", user.id), service),
    ];
    for (method, path, token) in requests {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = app.client.request(method.clone(), app.url(&path)).bearer_auth(token).send().await.unwrap();
        let body = expect_problem(response, 503, "busy").await;
        assert!(body["detail"].as_str().unwrap().contains("try again"), "{method} {path}: {body}");
    }
    blocker.execute("ROLLBACK").await.unwrap();
    let response = app.get("/api/v1/oauth/integrations", Some(&user.token)).await;
    assert_eq!(response.status(), 200, "served again once the lock is gone");
}

#[test]
fn at_an_https_root_the_flow_cookie_is_host_prefixed() {
    let config = oauth_manager::config::Config::load(&|name| {
        (name == "PUBLIC_BASE_URL").then(|| "https://oauth.example.com".to_owned())
    })
    .unwrap();
    // RFC 6265bis: __Host- cookies must be Secure, Path=/ and without Domain (set by /initiate).
    assert!(oauth_manager::http::flow::flow_cookie_name(&config, "state").starts_with("__Host-oam_flow_"));
    assert_eq!(oauth_manager::http::flow::flow_cookie_path(&config), "/");
}

#[tokio::test]
async fn oversized_request_targets_and_headers_are_problem_json() {
    let app = TestApp::start(Backend::Sqlite).await;
    let long_query = format!("/healthz?x={}", "a".repeat(10_000));
    expect_problem(app.get(&long_query, None).await, 414, "uri_too_long").await;
    let big = "b".repeat(8_000);
    let mut request = app.client.get(app.url("/healthz"));
    for name in ["x-one", "x-two", "x-three", "x-four", "x-five"] {
        request = request.header(name, &big);
    }
    expect_problem(request.send().await.unwrap(), 431, "headers_too_large").await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);
}

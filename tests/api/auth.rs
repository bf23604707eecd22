//! Who may call: the host application's JWT, its cookie, and what is refused.

use serde_json::json;

use crate::support::{Backend, JWT_SECRET, SERVICE_KEY, TestApp, expect_problem, sign};

fn claims(user_id: i32, token_type: &str, exp_offset: i64) -> serde_json::Value {
    json!({"user_id": user_id, "type": token_type, "sub": "u@example.com", "exp": chrono::Utc::now().timestamp() + exp_offset})
}

#[tokio::test]
async fn no_credential_is_401_problem_json() {
    let app = TestApp::start(Backend::Sqlite).await;
    let response = app.get("/api/v1/oauth/integrations", None).await;
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body = expect_problem(response, 401, "authentication_required").await;
    assert_eq!(body["detail"], "Authentication required");
}

#[tokio::test]
async fn a_valid_jwt_lists_the_callers_empty_integrations() {
    let app = TestApp::start(Backend::Postgres).await;
    let user = app.user("u@example.com").await;
    let response = app.get("/api/v1/oauth/integrations", Some(&user.token)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap(), json!([]));
}

#[tokio::test]
async fn the_access_token_cookie_is_accepted() {
    let app = TestApp::start(Backend::Sqlite).await;
    let user = app.user("u@example.com").await;
    let response = app
        .client
        .get(app.url("/api/v1/oauth/integrations"))
        .header("cookie", format!("theme=dark; access_token={}", user.token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn bad_tokens_are_all_401() {
    let app = TestApp::start(Backend::Sqlite).await;
    let user = app.user("u@example.com").await;
    let expired = sign(&claims(user.id, "access", -120), JWT_SECRET);
    let wrong_signature = sign(&claims(user.id, "access", 3600), "another-secret-entirely");
    let refresh_type = sign(&claims(user.id, "refresh", 3600), JWT_SECRET);
    let no_user = sign(&json!({"type": "access", "exp": chrono::Utc::now().timestamp() + 60}), JWT_SECRET);
    // alg "none": header {"alg":"none","typ":"JWT"}, no signature.
    let unsigned = {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = engine.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = engine.encode(claims(user.id, "access", 3600).to_string());
        format!("{header}.{payload}.")
    };
    for (name, token) in [
        ("expired", expired),
        ("wrongly signed", wrong_signature),
        ("type refresh", refresh_type),
        ("no user_id", no_user),
        ("alg none", unsigned),
        ("garbage", "not-a-jwt".to_owned()),
        ("a service key", SERVICE_KEY.to_owned()),
    ] {
        let response = app.get("/api/v1/oauth/integrations", Some(&token)).await;
        assert_eq!(response.status(), 401, "{name}");
        expect_problem(response, 401, "authentication_required").await;
    }
}

#[tokio::test]
async fn another_users_integration_is_404_and_admins_see_it() {
    let app = TestApp::start(Backend::Sqlite).await;
    let owner = app.user("owner@example.com").await;
    let stranger = app.user("stranger@example.com").await;
    let admin = app.admin("admin@example.com").await;
    let record = crate::store_fixtures::connect_record(owner.id, "google");
    let integration = app.state.vault.store.complete_connect(&record).await.unwrap();
    let path = format!("/api/v1/oauth/integrations/{}", integration.id);

    expect_problem(app.get(&path, Some(&stranger.token)).await, 404, "not_found").await;
    expect_problem(app.get("/api/v1/oauth/integrations/999999", Some(&stranger.token)).await, 404, "not_found").await;
    assert_eq!(app.get(&path, Some(&owner.token)).await.status(), 200);
    assert_eq!(app.get(&path, Some(&admin.token)).await.status(), 200);

    let listing = format!("/api/v1/oauth/integrations?user_id={}", owner.id);
    expect_problem(app.get(&listing, Some(&stranger.token)).await, 403, "forbidden").await;
    let listed: serde_json::Value = app.get(&listing, Some(&admin.token)).await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let shown = serde_json::to_string(&listed).unwrap();
    assert!(!shown.contains("ciphertext"), "no token material in listings");
}

async fn with_host_rbac_tables(url: &str) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE roles (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE);
         CREATE TABLE user_roles (user_id INTEGER NOT NULL REFERENCES users(id), role_id INTEGER NOT NULL REFERENCES roles(id));
         INSERT INTO roles (name) VALUES ('user'), ('premium'), ('administrator');",
    )
    .execute(&pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn roles_can_come_from_the_host_applications_tables() {
    let url = crate::support::existing_schema_database().await;
    with_host_rbac_tables(&url).await;
    let app = TestApp::spawn(crate::support::TestConfig::new(&url).set("OAUTH_ROLES_SOURCE", "database")).await;
    let owner = app.user("owner@example.com").await;
    let admin = app.user("admin@example.com").await; // no roles claim in its JWT
    let premium = app.user("premium@example.com").await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE name = 'administrator'")
        .bind(admin.id)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE name = 'premium'")
        .bind(premium.id)
        .execute(&pool)
        .await
        .unwrap();
    let integration = app
        .state
        .vault
        .store
        .complete_connect(&crate::store_fixtures::connect_record(owner.id, "google"))
        .await
        .unwrap();
    let path = format!("/api/v1/oauth/integrations/{}", integration.id);
    assert_eq!(app.get(&path, Some(&admin.token)).await.status(), 200, "administrator per the tables");
    expect_problem(app.get(&path, Some(&premium.token)).await, 404, "not_found").await;
}

#[tokio::test]
async fn a_roles_query_that_fails_stops_start_up() {
    let url = crate::support::existing_schema_database().await; // no roles tables here
    let env = crate::support::TestConfig::new(&url).set("OAUTH_ROLES_SOURCE", "database").env;
    let config = oauth_manager::config::Config::load(&|name| env.get(name).cloned()).unwrap();
    let providers = oauth_manager::oauth::Providers::load(None, &|_| None).unwrap();
    let secrets = oauth_manager::startup::Secrets::resolve(&config).unwrap();
    let error = oauth_manager::startup::build_state(config, providers, secrets).await.err().expect("start-up refuses");
    assert!(format!("{error:#}").contains("OAUTH_ROLES_QUERY"), "{error:#}");
}

#[tokio::test]
async fn a_jwt_that_is_not_valid_yet_is_refused() {
    let app = TestApp::start(Backend::Sqlite).await;
    let user = app.user("early@example.com").await;
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "user_id": user.id, "type": "access", "sub": "early@example.com", "exp": now + 7200, "nbf": now + 3600,
    });
    let token = crate::support::sign(&claims, crate::support::JWT_SECRET);
    expect_problem(app.get("/api/v1/oauth/integrations", Some(&token)).await, 401, "authentication_required").await;
}

//! Offboarding: a user's data exported (never a token) and erased: every grant revoked at its
//! provider, every row of theirs gone from the `oauth_*` tables, so the host application can
//! delete the user; nobody else's rows touched.

use std::time::Duration;

use serde_json::{Value, json};

use super::support::{API, Harness, json_body, problem};
use crate::on_both_backends;
use crate::support::{Backend, SERVICE_KEY};

/// `COUNT(*)` of `sql` (the test's own text, ids only) on the harness's database.
async fn count(h: &Harness, sql: &str) -> i64 {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if h.database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&h.database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    } else {
        let pool = sqlx::SqlitePool::connect(&h.database_url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    }
}

/// Rows of `user_id` (and of the integrations `ids`, which were theirs) in each table.
async fn rows_of(h: &Harness, user_id: i32, ids: &[i64]) -> Vec<(&'static str, i64)> {
    let ids = ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let mut rows = Vec::new();
    for (table, sql) in [
        ("oauth_integrations", format!("SELECT COUNT(*) FROM oauth_integrations WHERE user_id = {user_id}")),
        ("oauth_tokens", format!("SELECT COUNT(*) FROM oauth_tokens WHERE integration_id IN ({ids})")),
        ("oauth_consents", format!("SELECT COUNT(*) FROM oauth_consents WHERE integration_id IN ({ids})")),
        (
            "oauth_audit_log",
            format!("SELECT COUNT(*) FROM oauth_audit_log WHERE user_id = {user_id} OR integration_id IN ({ids})"),
        ),
        ("oauth_state", format!("SELECT COUNT(*) FROM oauth_state WHERE user_id = {user_id}")),
    ] {
        rows.push((table, count(h, &sql).await));
    }
    rows
}

async fn as_service(h: &Harness, method: reqwest::Method, path: &str) -> reqwest::Response {
    h.app.client.request(method, h.app.url(&format!("{API}{path}"))).bearer_auth(SERVICE_KEY).send().await.unwrap()
}

async fn a_user_is_exported_without_tokens_and_erased_with_every_grant_revoked(backend: Backend) {
    let h = Harness::start(backend).await;
    let ids = [h.connect("google").await, h.connect("notion").await, h.connect("microsoft").await];
    let handed = h.token_body(ids[0], 60).await;
    let access_token = handed["access_token"].as_str().unwrap().to_owned();
    h.initiated("youtube", json!({})).await; // an authorization left open
    let stranger = h.app.user("stranger@example.com").await;
    let flow = json_body(h.initiate_as(&stranger.token, "google", json!({})).await, 200).await;
    let url = h.approve(flow["authorization_url"].as_str().unwrap(), Some("bob@example.com"), None).await;
    let strangers = json_body(h.callback(&url).await, 200).await["integration_id"].as_i64().unwrap();
    let owner = h.user.id;

    // Export: administrators and services; a user, even for themself, is refused.
    let path = format!("/users/{owner}/export");
    problem(h.get(&path).await, 403, "forbidden").await;
    let admin = h.app.admin("admin@example.com").await;
    assert_eq!(h.app.get(&format!("{API}{path}"), Some(&admin.token)).await.status(), 200);
    let exported = as_service(&h, reqwest::Method::GET, &path).await;
    let text = exported.text().await.unwrap();
    let export: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(export["user_id"], owner);
    assert_eq!(export["integrations"].as_array().unwrap().len(), 3, "{export}");
    assert_eq!(export["consents"].as_array().unwrap().len(), 3, "{export}");
    assert!(export["audit"].as_array().unwrap().len() >= 3, "{export}");
    assert_eq!(export["open_authorizations"], 1, "{export}");
    assert!(!text.contains(&access_token), "no token in an export");
    assert!(!text.contains("bob@example.com"), "nothing of another user");

    // Erase: each integration's revocation reported, then no row of the user anywhere.
    problem(h.delete(&format!("/users/{owner}")).await, 403, "forbidden").await;
    let erased = json_body(as_service(&h, reqwest::Method::DELETE, &format!("/users/{owner}")).await, 200).await;
    let outcome = |id: i64| {
        erased["integrations"].as_array().unwrap().iter().find(|i| i["integration_id"] == id).cloned().unwrap()
    };
    assert_eq!(outcome(ids[0])["provider_revocation"], "revoked", "{erased}");
    assert_eq!(outcome(ids[1])["provider_revocation"], "revoked", "{erased}");
    assert_eq!(outcome(ids[2])["provider_revocation"], "not_supported", "Microsoft has no revocation endpoint");
    assert_eq!(erased["deleted"]["integrations"], 3, "{erased}");
    assert!(!h.google.handle.is_access_token_live(&access_token), "Google's grant is revoked");
    problem(h.token(ids[0], 60).await, 404, "not_found").await;

    // The usage counted before the erasure is not written back afterwards (the flusher runs
    // every second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (table, rows) in rows_of(&h, owner, &ids).await {
        assert_eq!(rows, 0, "{table} still holds rows of the erased user");
    }
    // So the host application can delete the user (its foreign keys have no cascade).
    let deleted_user = count(&h, &format!("SELECT COUNT(*) FROM users WHERE id = {owner}")).await;
    assert_eq!(deleted_user, 1, "the users row is the host application's");
    let delete_user = sqlx::AssertSqlSafe(format!("DELETE FROM users WHERE id = {owner}"));
    if h.database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&h.database_url).await.unwrap();
        sqlx::query(delete_user).execute(&pool).await.expect("no row refers to the user any more");
    } else {
        let pool = sqlx::SqlitePool::connect(&h.database_url).await.unwrap();
        sqlx::query(delete_user).execute(&pool).await.expect("no row refers to the user any more");
    }

    // Nobody else's rows moved; a second erasure finds nothing.
    let theirs = json_body(h.app.get(&format!("{API}/integrations/{strangers}"), Some(&stranger.token)).await, 200);
    assert_eq!(theirs.await["status"], "active");
    let again = json_body(as_service(&h, reqwest::Method::DELETE, &format!("/users/{owner}")).await, 200).await;
    assert_eq!(again["integrations"], json!([]), "{again}");
    assert_eq!(again["deleted"]["integrations"], 0, "{again}");
}

on_both_backends!(a_user_is_exported_without_tokens_and_erased_with_every_grant_revoked);

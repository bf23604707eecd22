//! The flow attacks: what an attacker can send to `/initiate` and to the callbacks, and proof that
//! each refusal answers the documented status and code and writes exactly what the README says it
//! writes. PostgreSQL only (the checks read the tables with `row_to_json`).
//!
//! How a case is judged: before and after each attack every row of the six `oauth_*` tables is
//! read, keyed by table and id, and compared. Each scene starts with a Google connection already
//! stored, so "unchanged" covers an existing connection too. There are two expectations:
//!
//! - nothing changed (`invalid_state`, `provider_mismatch`, `issuer_mismatch`, request errors, and
//!   every refusal at `/initiate`); for the callback the state is then still usable, and the right
//!   response still finishes the flow;
//! - the state spent: only that state's `is_used`/`used_at` change, plus exactly one new `error`
//!   audit row with the right user, provider, `operation: connect` and code (`state_not_bound` and
//!   every failure from the code exchange on).
//!
//! Skipped here because `tests/api/flow/attacks.rs` and `hardening.rs` already cover them (and
//! count toward the total printed at the end): a used state replayed, an expired state, a foreign
//! user's JWT, another provider's callback path, PKCE code injection, a redirect_uri with another
//! host, a trailing slash or a query, the four return_to cases there (`https://evil.test/x`,
//! `http://app.test.evil.test/x`, `//evil.test/x`, `javascript:alert(1)`), the `iss` of another
//! provider, the ID-token faults on Google, `access_denied`, an HTML error code, no cookie and no
//! JWT, another flow's cookie.
//!
//! Two limits a client meets before the app's own code runs: a request target over 8 KiB is the
//! app's 414 `uri_too_long` problem JSON, and one over hyper's `http::Uri` limit (65,534 bytes) is
//! hyper's bare 414, answered before any layer of ours sees the request.

use std::collections::BTreeMap;
use std::time::Duration;

use oauth_manager::crypto::sha256_hex;
use provider_emulators::IdTokenFault;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use crate::flow_support::{API, Harness, json_body, problem, query_param, with_path, with_query_param};
use crate::support::{Backend, JWT_SECRET, TestApp, sign};

/// The tables oauth-manager writes.
const TABLES: [&str; 6] =
    ["oauth_integrations", "oauth_tokens", "oauth_scopes", "oauth_consents", "oauth_audit_log", "oauth_state"];
/// The origin `return_to` may point at in tests (`TestConfig`).
const ALLOWED_ORIGIN: &str = "http://app.test";

/// Every row of the six tables, as `row_to_json` renders it, keyed by table and id.
type Rows = BTreeMap<(&'static str, i32), Value>;

async fn read_rows(pool: &PgPool) -> Rows {
    let mut rows = Rows::new();
    for table in TABLES {
        let sql = sqlx::AssertSqlSafe(format!("SELECT id, row_to_json(t)::text FROM {table} t"));
        let found: Vec<(i32, String)> = sqlx::query_as(sql).fetch_all(pool).await.unwrap();
        for (id, json) in found {
            rows.insert((table, id), serde_json::from_str(&json).unwrap());
        }
    }
    rows
}

/// The differences between two readings, one line each; empty when they are equal.
fn differences(before: &Rows, after: &Rows) -> Vec<String> {
    let mut lines = Vec::new();
    for (key, old) in before {
        match after.get(key) {
            None => lines.push(format!("deleted {key:?}: {old}")),
            Some(new) if new != old => lines.push(format!("changed {key:?}: {old} -> {new}")),
            Some(_) => {}
        }
    }
    for (key, new) in after {
        if !before.contains_key(key) {
            lines.push(format!("added {key:?}: {new}"));
        }
    }
    lines
}

/// Expectation "nothing changed".
fn check_unchanged(before: &Rows, after: &Rows) -> Result<(), String> {
    let lines = differences(before, after);
    if lines.is_empty() { Ok(()) } else { Err(lines.join("\n")) }
}

/// The writes a refusal that spends its state may make.
struct Spent<'a> {
    /// The state value (its SHA-256 is stored).
    state: &'a str,
    user_id: i32,
    provider: &'a str,
    /// The code of the refusal, also in the audit row's metadata.
    code: &'a str,
}

/// The fields of two rows of one table that differ, sorted.
fn changed_fields<'a>(old: &'a Value, new: &Value) -> Vec<&'a str> {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else { return vec!["<not objects>"] };
    old.iter().filter(|(name, value)| new.get(name.as_str()) != Some(value)).map(|(name, _)| name.as_str()).collect()
}

/// Expectation "state spent": only that state's `is_used`/`used_at` changed, and exactly one
/// `error` audit row of the right user, provider, operation and code was added; that row.
fn check_spent(before: &Rows, after: &Rows, spent: &Spent) -> Result<Value, String> {
    let hash = sha256_hex(spent.state.as_bytes());
    let mut problems = Vec::new();
    let mut marked = 0;
    for (key, old) in before {
        match after.get(key) {
            None => problems.push(format!("deleted {key:?}: {old}")),
            Some(new) if new == old => {}
            Some(new) if key.0 == "oauth_state" && old["state_token"] == hash.as_str() => {
                let fields = changed_fields(old, new);
                let as_documented = fields == ["is_used", "used_at"]
                    && old["is_used"] == false
                    && new["is_used"] == true
                    && old["used_at"].is_null()
                    && new["used_at"].is_string();
                if as_documented {
                    marked += 1;
                } else {
                    problems.push(format!("the state changed more than is_used/used_at ({fields:?}): {old} -> {new}"));
                }
            }
            Some(new) => problems.push(format!("changed {key:?}: {old} -> {new}")),
        }
    }
    if marked != 1 {
        problems.push("the state was not marked used".to_owned());
    }
    let added: Vec<(&(&str, i32), &Value)> = after.iter().filter(|(key, _)| !before.contains_key(*key)).collect();
    let mut audit = None;
    for (key, row) in &added {
        if key.0 != "oauth_audit_log" {
            problems.push(format!("added {key:?}: {row}"));
            continue;
        }
        let expected = row["action"] == "error"
            && row["user_id"] == spent.user_id
            && row["provider"] == spent.provider
            && row["success"] == false
            && row["integration_id"].is_null()
            && row["action_metadata"]["operation"] == "connect"
            && row["action_metadata"]["code"] == spent.code;
        if expected && audit.is_none() {
            audit = Some((*row).clone());
        } else {
            problems.push(format!(
                "an audit row other than the one error row (user {}, {}, connect, {}): {row}",
                spent.user_id, spent.provider, spent.code
            ));
        }
    }
    if audit.is_none() {
        problems.push(format!("no error audit row with code {} was added", spent.code));
    }
    match (problems.is_empty(), audit) {
        (true, Some(row)) => Ok(row),
        _ => Err(problems.join("\n")),
    }
}

/// A flow started and approved at the provider: its state and the URL the provider sent the
/// browser back to.
struct Approved {
    state: String,
    callback: String,
}

/// An app with a stored Google connection, its emulators and a reader of its tables.
struct Scene {
    h: Harness,
    pool: PgPool,
}

impl Scene {
    async fn start() -> Self {
        let h = Harness::start(Backend::Postgres).await;
        h.connect("google").await;
        let pool = PgPoolOptions::new().max_connections(2).connect(&h.database_url).await.unwrap();
        Self { h, pool }
    }

    async fn rows(&self) -> Rows {
        read_rows(&self.pool).await
    }

    async fn approved(&self, provider: &str, extra: Value) -> Approved {
        let flow = self.h.initiated(provider, extra).await;
        let callback = self.h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;
        Approved { state: flow["state"].as_str().unwrap().to_owned(), callback }
    }

    async fn assert_unchanged(&self, before: &Rows, context: &str) {
        if let Err(differences) = check_unchanged(before, &self.rows().await) {
            panic!("{context}: the database changed:\n{differences}");
        }
    }

    /// Asserts the attack spent `state` and wrote only its `error` row; that row.
    async fn assert_spent(&self, before: &Rows, state: &str, provider: &str, code: &str, context: &str) -> Value {
        let spent = Spent { state, user_id: self.h.user.id, provider, code };
        check_spent(before, &self.rows().await, &spent)
            .unwrap_or_else(|problems| panic!("{context}: not only the documented writes:\n{problems}"))
    }

    /// Asserts the state survived: the right response from the right browser still connects.
    async fn assert_finishes(&self, callback: &str) {
        let connected = json_body(self.h.callback(callback).await, 200).await;
        assert!(connected["integration_id"].is_i64(), "{connected}");
    }
}

/// One line per case (run with `--nocapture`).
fn report(case: &str, outcome: &str) {
    println!("flow attack: {case:<70} -> {outcome}");
}

/// `url` with the raw `name=value` pieces of its query replaced by what `edit` makes of the raw
/// value (several pieces, none, or others): nothing is decoded or encoded on the way.
fn edit_raw_param(url: &str, name: &str, edit: impl Fn(&str) -> String) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let prefix = format!("{name}=");
    let pieces: Vec<String> = query
        .split('&')
        .map(|piece| match piece.strip_prefix(&prefix) {
            Some(value) => edit(value),
            None => piece.to_owned(),
        })
        .filter(|piece| !piece.is_empty())
        .collect();
    format!("{base}?{}", pieces.join("&"))
}

/// `url` without query parameter `name`.
fn without_query_param(url: &str, name: &str) -> String {
    edit_raw_param(url, name, |_| String::new())
}

/// `url`'s path and query, for another origin or a raw request line.
fn target_of(url: &str) -> String {
    let parsed = Url::parse(url).unwrap();
    format!("{}?{}", parsed.path(), parsed.query().unwrap_or_default())
}

/// Claims of the host application for the harness user, changed by `adjust`.
fn host_claims(scene: &Scene, adjust: impl FnOnce(&mut Value)) -> Value {
    let mut claims = json!({
        "user_id": scene.h.user.id,
        "type": "access",
        "sub": scene.h.user.email,
        "exp": chrono::Utc::now().timestamp() + 3600,
    });
    adjust(&mut claims);
    claims
}

/// Sends `GET target` over a plain socket (reqwest refuses to build a URI this long); the status
/// and the whole answer.
async fn raw_get(app: &TestApp, target: &str, cookie: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n", app.address);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).and_then(|status| status.parse().ok());
    (status.unwrap_or_else(|| panic!("an HTTP answer: {answer:.200}")), answer)
}

// Callback attacks refused with the state left usable (database identical).

/// Case 1: a state of another oauth-manager (its own database, JWT secret and key, the same user
/// id), sent here with that instance's flow cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_a_state_from_another_instance_and_changes_nothing() {
    let scene = Scene::start().await;
    const OTHER_SECRET: &str = "the-other-instance-jwt-secret-0123456789";
    let other = Harness::start_with(Backend::Postgres, |config| {
        config.set("JWT_SECRET_KEY", OTHER_SECRET).set("OAUTH_ENCRYPTION_KEY", format!("k1:{}", "22".repeat(32)))
    })
    .await;
    assert_eq!(other.user.id, scene.h.user.id, "the same user id on both instances");
    let token = sign(&host_claims(&scene, |_| {}), OTHER_SECRET);
    let flow = json_body(other.initiate_as(&token, "google", json!({})).await, 200).await;
    let callback = other.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;

    let before = scene.rows().await;
    let here = scene.h.app.url(&target_of(&callback));
    let response = scene.h.app.client.get(&here).header("cookie", other.flow_cookies()).send().await.unwrap();
    problem(response, 400, "invalid_state").await;
    scene.assert_unchanged(&before, "another instance's state").await;
    report("state of another instance, with its flow cookie", "400 invalid_state");
    // The other instance's flow is untouched too.
    json_body(other.callback(&callback).await, 200).await;
}

/// Case 2: the response at the callback of a provider that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_a_state_at_an_unknown_providers_callback_and_changes_nothing() {
    let scene = Scene::start().await;
    let flow = scene.approved("google", json!({})).await;
    let before = scene.rows().await;
    let elsewhere = with_path(&flow.callback, &format!("{API}/callback/myspace"));
    problem(scene.h.callback(&elsewhere).await, 400, "provider_mismatch").await;
    scene.assert_unchanged(&before, "/callback/myspace").await;
    report("state at /callback/myspace", "400 provider_mismatch");
    scene.assert_finishes(&flow.callback).await;
}

/// Case 3: a flow started with the shared `/callback` arriving at `/callback/google`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_a_shared_callback_flow_at_the_provider_callback_and_changes_nothing() {
    let scene = Scene::start().await;
    let shared = scene.h.app.url(&format!("{API}/callback"));
    let flow = scene.approved("google", json!({ "redirect_uri": shared })).await;
    assert!(flow.callback.starts_with(&format!("{shared}?")), "{}", flow.callback);
    let before = scene.rows().await;
    let elsewhere = with_path(&flow.callback, &format!("{API}/callback/google"));
    problem(scene.h.callback(&elsewhere).await, 400, "provider_mismatch").await;
    scene.assert_unchanged(&before, "shared flow at /callback/google").await;
    report("flow of /callback arriving at /callback/google", "400 provider_mismatch");
    scene.assert_finishes(&flow.callback).await;
}

/// Case 4: SQL in the state: it is only ever hashed and bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_sql_injection_in_the_state_and_changes_nothing() {
    let scene = Scene::start().await;
    let flow = scene.approved("google", json!({})).await;
    let before = scene.rows().await;
    for payload in [
        "' OR '1'='1".to_owned(),
        "x'; UPDATE oauth_state SET is_used = false; DROP TABLE oauth_tokens; --".to_owned(),
        format!("{}' UNION SELECT state_token FROM oauth_state --", flow.state),
    ] {
        let forged = with_query_param(&flow.callback, "state", &payload);
        problem(scene.h.callback(&forged).await, 400, "invalid_state").await;
        report(&format!("state {payload:.60}"), "400 invalid_state");
    }
    scene.assert_unchanged(&before, "SQL in the state").await;
    scene.assert_finishes(&flow.callback).await;
}

/// Case 5: NUL bytes in the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_nul_bytes_in_the_state_and_changes_nothing() {
    let scene = Scene::start().await;
    let flow = scene.approved("google", json!({})).await;
    let before = scene.rows().await;
    let state = &flow.state;
    for (case, forged) in [
        ("appended", format!("{state}\0")),
        ("appended with text", format!("{state}\0x")),
        ("prepended", format!("\0{state}")),
    ] {
        let url = with_query_param(&flow.callback, "state", &forged);
        problem(scene.h.callback(&url).await, 400, "invalid_state").await;
        report(&format!("NUL byte in the state, {case}"), "400 invalid_state");
    }
    scene.assert_unchanged(&before, "NUL in the state").await;
    scene.assert_finishes(&flow.callback).await;
}

/// Case 6: percent escapes that are not UTF-8 after the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_invalid_utf8_in_the_state_and_changes_nothing() {
    let scene = Scene::start().await;
    let flow = scene.approved("google", json!({})).await;
    let before = scene.rows().await;
    for escape in ["%FF", "%C0%AE", "%FF%FE%FD", "%ED%A0%80"] {
        let url = edit_raw_param(&flow.callback, "state", |value| format!("state={value}{escape}"));
        problem(scene.h.callback(&url).await, 400, "invalid_state").await;
        report(&format!("state followed by {escape}"), "400 invalid_state");
    }
    scene.assert_unchanged(&before, "invalid UTF-8 in the state").await;
    scene.assert_finishes(&flow.callback).await;
}

/// Case 7: two `state` parameters: which one a server reads differs, so neither is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_a_duplicated_state_and_changes_nothing() {
    let scene = Scene::start().await;
    let flow = scene.approved("google", json!({})).await;
    let before = scene.rows().await;
    let forged = "forged-state-0123456789";
    for (case, url) in [
        ("valid then forged", edit_raw_param(&flow.callback, "state", |value| format!("state={value}&state={forged}"))),
        ("forged then valid", edit_raw_param(&flow.callback, "state", |value| format!("state={forged}&state={value}"))),
        ("valid twice", edit_raw_param(&flow.callback, "state", |value| format!("state={value}&state={value}"))),
    ] {
        problem(scene.h.callback(&url).await, 400, "invalid_request").await;
        report(&format!("duplicated state, {case}"), "400 invalid_request");
    }
    scene.assert_unchanged(&before, "duplicated state").await;
    scene.assert_finishes(&flow.callback).await;
}

/// Case 8: the state in array syntax is another parameter, so there is no state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_a_state_smuggled_as_an_array_and_changes_nothing() {
    let scene = Scene::start().await;
    let flow = scene.approved("google", json!({})).await;
    let before = scene.rows().await;
    for name in ["state[]", "state[0]", "state%5B%5D"] {
        let url = edit_raw_param(&flow.callback, "state", |value| format!("{name}={value}"));
        problem(scene.h.callback(&url).await, 400, "invalid_state").await;
        report(&format!("{name}=<the state>"), "400 invalid_state");
    }
    scene.assert_unchanged(&before, "state as an array").await;
    scene.assert_finishes(&flow.callback).await;
}

/// Case 9: a 60 kB state or code: below hyper's limit, so the app's own 8 KiB limit answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_a_60_kb_state_or_code_with_problem_json_and_changes_nothing() {
    let scene = Scene::start().await;
    let flow = scene.approved("google", json!({})).await;
    let before = scene.rows().await;
    let huge = "A".repeat(60_000);
    for name in ["state", "code"] {
        let url = with_query_param(&flow.callback, name, &huge);
        problem(scene.h.callback(&url).await, 414, "uri_too_long").await;
        report(&format!("60 kB {name}"), "414 uri_too_long");
    }
    scene.assert_unchanged(&before, "60 kB parameters").await;
    scene.assert_finishes(&flow.callback).await;
}

/// Case 10: another site's page posting the authorization response as a form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_a_cross_site_form_post_of_the_response_and_changes_nothing() {
    let scene = Scene::start().await;
    let flow = scene.approved("google", json!({})).await;
    let before = scene.rows().await;
    let url = Url::parse(&flow.callback).unwrap();
    let form: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let mut action = url.clone();
    action.set_query(None);
    let response = scene
        .h
        .app
        .client
        .post(action)
        .header("origin", "https://evil.test")
        .header("sec-fetch-site", "cross-site")
        .header("cookie", scene.h.flow_cookies())
        .form(&form)
        .send()
        .await
        .unwrap();
    problem(response, 405, "method_not_allowed").await;
    scene.assert_unchanged(&before, "cross-site POST").await;
    report("cross-site form POST of the response", "405 method_not_allowed");
    scene.assert_finishes(&flow.callback).await;
}

/// Case 11: an `iss` that is almost Google's (RFC 9207 §2.4: simple string comparison).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_a_near_miss_issuer_and_changes_nothing() {
    let scene = Scene::start().await;
    let flow = scene.approved("google", json!({})).await;
    let before = scene.rows().await;
    let issuer = scene.h.google.base_url.clone();
    assert_eq!(query_param(&flow.callback, "iss").as_deref(), Some(issuer.as_str()));
    for (case, iss) in [
        ("trailing slash", format!("{issuer}/")),
        ("upper case", issuer.to_uppercase()),
        ("https", issuer.replacen("http://", "https://", 1)),
        (".evil.test suffix", format!("{issuer}.evil.test")),
        ("@evil.test", format!("{issuer}@evil.test")),
    ] {
        let url = with_query_param(&flow.callback, "iss", &iss);
        problem(scene.h.callback(&url).await, 400, "issuer_mismatch").await;
        report(&format!("iss with {case}: {iss}"), "400 issuer_mismatch");
    }
    scene.assert_unchanged(&before, "near-miss iss").await;
    assert_eq!(scene.h.google.handle.counters().code_exchanges, 1, "only the scene's own connection");
    scene.assert_finishes(&flow.callback).await;
}

/// Case 12: an empty `iss` is not an absent one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_an_empty_issuer_and_changes_nothing() {
    let scene = Scene::start().await;
    let flow = scene.approved("google", json!({})).await;
    let before = scene.rows().await;
    let url = edit_raw_param(&flow.callback, "iss", |_| "iss=".to_owned());
    problem(scene.h.callback(&url).await, 400, "issuer_mismatch").await;
    scene.assert_unchanged(&before, "empty iss").await;
    report("iss=", "400 issuer_mismatch");
    scene.assert_finishes(&flow.callback).await;
}

/// Case 13: Microsoft's issuer names a tenant: only one tenant segment, on Microsoft's host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_a_microsoft_issuer_with_a_forged_tenant_and_changes_nothing() {
    let scene = Scene::start().await;
    let flow = scene.approved("microsoft", json!({})).await;
    let before = scene.rows().await;
    let microsoft = scene.h.microsoft.base_url.clone();
    let iss = query_param(&flow.callback, "iss").unwrap();
    let tenant = iss.strip_prefix(&format!("{microsoft}/")).and_then(|rest| rest.strip_suffix("/v2.0")).unwrap();
    for (case, forged) in [
        ("empty tenant", format!("{microsoft}//v2.0")),
        ("../ before the tenant", format!("{microsoft}/../{tenant}/v2.0")),
        ("an extra segment", format!("{microsoft}/{tenant}/extra/v2.0")),
        ("Google's host", format!("{}/{tenant}/v2.0", scene.h.google.base_url)),
    ] {
        let url = with_query_param(&flow.callback, "iss", &forged);
        problem(scene.h.callback(&url).await, 400, "issuer_mismatch").await;
        report(&format!("Microsoft iss with {case}"), "400 issuer_mismatch");
    }
    scene.assert_unchanged(&before, "forged Microsoft tenant").await;
    scene.assert_finishes(&flow.callback).await;
}

/// Case 13, continued: a dot segment is not a tenant (tenants are GUIDs or domain names), and
/// `…/../v2.0` is not an issuer Microsoft ever sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_a_dot_segment_as_the_microsoft_tenant_and_changes_nothing() {
    let scene = Scene::start().await;
    let flow = scene.approved("microsoft", json!({})).await;
    let before = scene.rows().await;
    let microsoft = scene.h.microsoft.base_url.clone();
    for segment in ["..", ".", "%2e%2e"] {
        let url = with_query_param(&flow.callback, "iss", &format!("{microsoft}/{segment}/v2.0"));
        problem(scene.h.callback(&url).await, 400, "issuer_mismatch").await;
        report(&format!("Microsoft iss with {segment:?} as the tenant"), "400 issuer_mismatch");
    }
    scene.assert_unchanged(&before, "dot-segment Microsoft tenant").await;
    scene.assert_finishes(&flow.callback).await;
}

// Callback attacks refused with the state spent (only the documented writes).

/// Cases 14 to 16: a JWT of the right user that does not verify, instead of the flow cookie.
async fn refuses_an_unverifiable_jwt_of_the_right_user(case: &str, jwt: impl FnOnce(&Scene) -> String) {
    let scene = Scene::start().await;
    let flow = scene.approved("google", json!({})).await;
    let before = scene.rows().await;
    let cookie = format!("access_token={}", jwt(&scene));
    let response = scene.h.app.client.get(&flow.callback).header("cookie", cookie).send().await.unwrap();
    problem(response, 400, "state_not_bound").await;
    scene.assert_spent(&before, &flow.state, "google", "state_not_bound", case).await;
    assert_eq!(scene.h.google.handle.counters().code_exchanges, 1, "the code was not redeemed");
    report(case, "400 state_not_bound (state spent)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_an_expired_jwt_instead_of_the_flow_cookie_and_spends_only_the_state() {
    refuses_an_unverifiable_jwt_of_the_right_user("expired JWT of the user as access_token, no flow cookie", |scene| {
        let claims = host_claims(scene, |claims| claims["exp"] = json!(chrono::Utc::now().timestamp() - 3600));
        sign(&claims, JWT_SECRET)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_a_jwt_signed_with_another_secret_and_spends_only_the_state() {
    refuses_an_unverifiable_jwt_of_the_right_user("JWT of the user signed with another secret", |scene| {
        sign(&host_claims(scene, |_| {}), "another-secret-that-is-not-ours-0123456789")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_a_refresh_type_jwt_and_spends_only_the_state() {
    refuses_an_unverifiable_jwt_of_the_right_user("the host app's refresh-type JWT of the user", |scene| {
        sign(&host_claims(scene, |claims| claims["type"] = json!("refresh")), JWT_SECRET)
    })
    .await;
}

/// Case 17: the provider answers `error=server_error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_reports_a_provider_server_error_and_spends_only_the_state() {
    let scene = Scene::start().await;
    let flow = scene.h.initiated("google", json!({})).await;
    let state = flow["state"].as_str().unwrap();
    let denied = scene.h.deny(flow["authorization_url"].as_str().unwrap()).await;
    let before = scene.rows().await;
    let url = with_query_param(&without_query_param(&denied, "error_description"), "error", "server_error");
    problem(scene.h.callback(&url).await, 400, "authorization_denied").await;
    scene.assert_spent(&before, state, "google", "authorization_denied", "server_error").await;
    assert_eq!(scene.h.google.handle.counters().code_exchanges, 1);
    report("error=server_error", "400 authorization_denied (state spent)");
}

/// Case 18: an unknown error with a 5 kB description full of markup and header injection: none
/// of it reaches the answer or the audit row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_reduces_a_hostile_error_description_to_a_code_and_spends_only_the_state() {
    let scene = Scene::start().await;
    let flow = scene.h.initiated("google", json!({})).await;
    let state = flow["state"].as_str().unwrap();
    let denied = scene.h.deny(flow["authorization_url"].as_str().unwrap()).await;
    let before = scene.rows().await;
    let mut description =
        "<script>alert(document.cookie)</script>\r\nSet-Cookie: session=stolen; Path=/\r\n<b>DESCRIPTION-TEXT</b>"
            .to_owned();
    while description.len() < 5_000 {
        description.push_str(" DESCRIPTION-TEXT <img src=x onerror=alert(1)>\r\n");
    }
    let url =
        with_query_param(&with_query_param(&denied, "error", "mystery_failure"), "error_description", &description);
    let response = scene.h.callback(&url).await;
    let headers = response.headers().clone();
    let body = problem(response, 400, "authorization_denied").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.chars().count() < 200, "{detail}");
    let audit = scene.assert_spent(&before, state, "google", "authorization_denied", "hostile description").await;
    let forbidden = ["<", ">", "\n", "\r", "DESCRIPTION-TEXT", "Set-Cookie", "session=stolen", "script", "onerror"];
    for (what, text) in [("answer", body.to_string()), ("audit row", audit.to_string())] {
        for needle in forbidden {
            // JSON escapes a raw newline as `\n`: look for that too.
            let escaped = needle.replace('\n', "\\n").replace('\r', "\\r");
            assert!(!text.contains(needle) && !text.contains(&escaped), "{what} carries {needle:?}: {text}");
        }
    }
    for (name, value) in &headers {
        let value = value.to_str().unwrap_or_default();
        assert!(!value.contains("stolen") && !value.contains("DESCRIPTION"), "{name}: {value}");
        if name == "set-cookie" {
            assert!(
                value.starts_with("oam_flow_") && value.contains("Max-Age=0"),
                "only the flow cookie is cleared: {value}"
            );
        }
    }
    report("unknown error with a 5 kB HTML/CRLF/Set-Cookie description", "400 authorization_denied (state spent)");
}

/// Case 19: a code and an error together: the error wins and the code is never redeemed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_never_redeems_a_code_sent_with_an_error_and_spends_only_the_state() {
    let scene = Scene::start().await;
    let flow = scene.approved("google", json!({})).await;
    let before = scene.rows().await;
    let url = with_query_param(&flow.callback, "error", "access_denied");
    problem(scene.h.callback(&url).await, 400, "authorization_denied").await;
    scene.assert_spent(&before, &flow.state, "google", "authorization_denied", "code and error").await;
    assert_eq!(scene.h.google.handle.counters().code_exchanges, 1, "the code was never redeemed");
    report("code and error=access_denied together", "400 authorization_denied (state spent)");
}

/// Case 20: a response with a state but no code and no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_without_a_code_is_refused_and_spends_only_the_state() {
    let scene = Scene::start().await;
    let flow = scene.approved("google", json!({})).await;
    let before = scene.rows().await;
    let url = without_query_param(&flow.callback, "code");
    problem(scene.h.callback(&url).await, 400, "invalid_request").await;
    scene.assert_spent(&before, &flow.state, "google", "invalid_request", "no code").await;
    report("no code", "400 invalid_request (state spent)");
}

/// Cases 21 to 25: Microsoft ID tokens the provider would not have issued to us.
async fn refuses_a_microsoft_id_token(fault: IdTokenFault) {
    let scene = Scene::start().await;
    scene.h.microsoft.handle.set_id_token_fault(fault);
    let flow = scene.approved("microsoft", json!({})).await;
    let before = scene.rows().await;
    problem(scene.h.callback(&flow.callback).await, 400, "invalid_id_token").await;
    scene.assert_spent(&before, &flow.state, "microsoft", "invalid_id_token", &format!("{fault:?}")).await;
    report(&format!("Microsoft ID token {fault:?}"), "400 invalid_id_token (state spent)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_id_token_for_another_authorised_party_is_refused_and_spends_only_the_state() {
    refuses_a_microsoft_id_token(IdTokenFault::ForeignAuthorizedParty).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_id_token_with_an_issuer_array_is_refused_and_spends_only_the_state() {
    refuses_a_microsoft_id_token(IdTokenFault::IssuerArray).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_id_token_not_valid_before_a_future_time_is_refused_and_spends_only_the_state() {
    refuses_a_microsoft_id_token(IdTokenFault::NotYetValid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_id_token_issued_in_the_future_is_refused_and_spends_only_the_state() {
    refuses_a_microsoft_id_token(IdTokenFault::IssuedInTheFuture).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_microsoft_id_token_is_refused_and_spends_only_the_state() {
    refuses_a_microsoft_id_token(IdTokenFault::Unsigned).await;
}

/// Case 26: Microsoft's authorization code injected into a Google flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_a_microsoft_code_injected_into_a_google_flow_and_spends_only_the_state() {
    let scene = Scene::start().await;
    let microsoft = scene.approved("microsoft", json!({})).await;
    let google = scene.approved("google", json!({})).await;
    let before = scene.rows().await;
    let microsofts_code = query_param(&microsoft.callback, "code").unwrap();
    let injected = with_query_param(&google.callback, "code", &microsofts_code);
    problem(scene.h.callback(&injected).await, 400, "token_exchange_failed").await;
    scene.assert_spent(&before, &google.state, "google", "token_exchange_failed", "Microsoft's code").await;
    assert_eq!(scene.h.microsoft.handle.counters().code_exchanges, 0);
    report("Microsoft's code in a Google flow", "400 token_exchange_failed (state spent)");
}

/// Case 27: a code that was already redeemed, replayed with a fresh state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_refuses_a_redeemed_code_replayed_with_a_new_state_and_spends_only_the_state() {
    let scene = Scene::start().await;
    let first = scene.approved("google", json!({})).await;
    scene.assert_finishes(&first.callback).await;
    let second = scene.approved("google", json!({})).await;
    let before = scene.rows().await;
    let replayed = with_query_param(&first.callback, "state", &second.state);
    problem(scene.h.callback(&replayed).await, 400, "token_exchange_failed").await;
    scene.assert_spent(&before, &second.state, "google", "token_exchange_failed", "redeemed code").await;
    report("redeemed code replayed with a new state", "400 token_exchange_failed (state spent)");
}

// redirect_uri at /initiate: 400 invalid_redirect_uri, no state row and no cookie.

/// Asserts every `redirect_uri` (given as a function of the registered one and the app's
/// `host:port`) is refused without a state or a cookie.
async fn refuses_redirect_uris(class: &str, cases: impl FnOnce(&str, &str, u16) -> Vec<String>) {
    let scene = Scene::start().await;
    let registered = scene.h.app.url(&format!("{API}/callback/google"));
    let address = scene.h.app.address;
    let before = scene.rows().await;
    println!("redirect_uri, {class} (registered: {registered}):");
    for redirect_uri in cases(&registered, &address.ip().to_string(), address.port()) {
        let response = scene.h.initiate("google", json!({ "redirect_uri": redirect_uri })).await;
        assert!(response.headers().get("set-cookie").is_none(), "{redirect_uri:?}: no flow cookie");
        problem(response, 400, "invalid_redirect_uri").await;
        report(&format!("  {redirect_uri:?}"), "400 invalid_redirect_uri");
    }
    scene.assert_unchanged(&before, class).await;
    assert_eq!(scene.h.google.handle.counters().authorizations, 1, "only the scene's own connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_redirect_uri_with_another_path_and_changes_nothing() {
    refuses_redirect_uris("other path", |registered, _, _| {
        let base = registered.trim_end_matches("/google");
        vec![
            format!("{base}/microsoft"),
            format!("{base}/notion"),
            format!("{registered}/extra"),
            format!("{registered}x"),
            registered.replace("/callback/google", "/initiate"),
        ]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_redirect_uri_with_another_scheme_and_changes_nothing() {
    refuses_redirect_uris("other scheme", |registered, _, _| {
        let rest = registered.strip_prefix("http://").unwrap();
        vec![format!("https://{rest}"), format!("ws://{rest}"), format!("ftp://{rest}"), format!("http:{rest}")]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_redirect_uri_with_a_fragment_and_changes_nothing() {
    refuses_redirect_uris("fragment", |registered, _, _| {
        vec![format!("{registered}#"), format!("{registered}#x"), format!("{registered}#@evil.test")]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_redirect_uri_in_other_letter_case_and_changes_nothing() {
    refuses_redirect_uris("letter case", |registered, ip, port| {
        vec![
            registered.replacen("http://", "HTTP://", 1),
            format!("http://{ip}:{port}{}", format!("{API}/callback/google").to_uppercase()),
            registered.replace("/google", "/Google"),
        ]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_redirect_uri_on_another_port_and_changes_nothing() {
    refuses_redirect_uris("other port", |_, ip, port| {
        let path = format!("{API}/callback/google");
        vec![
            format!("http://{ip}:{}{path}", port + 1),
            format!("http://{ip}:80{path}"),
            format!("http://{ip}:0{port}{path}"),
            format!("http://{ip}:{path}"),
        ]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_redirect_uri_with_userinfo_and_changes_nothing() {
    refuses_redirect_uris("userinfo", |registered, _, _| {
        let rest = registered.strip_prefix("http://").unwrap();
        vec![format!("http://evil.test@{rest}"), format!("http://user:password@{rest}"), format!("http://@{rest}")]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_redirect_uri_with_dot_segments_and_changes_nothing() {
    refuses_redirect_uris("dot segments", |registered, ip, port| {
        vec![
            registered.replace("/google", "/microsoft/../google"),
            registered.replace("/google", "/./google"),
            format!("{registered}/."),
            format!("http://{ip}:{port}/{API}/callback/google"),
        ]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_percent_encoded_redirect_uri_and_changes_nothing() {
    refuses_redirect_uris("percent-encoding", |registered, ip, port| {
        let encoded_ip: String = ip.bytes().map(|byte| format!("%{byte:02X}")).collect();
        vec![
            registered.replace("/google", "/%67oogle"),
            registered.replace("/callback/google", "/callback%2Fgoogle"),
            format!("http://{encoded_ip}:{port}{API}/callback/google"),
            format!("{registered}%00"),
        ]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_redirect_uri_with_whitespace_or_control_characters_and_changes_nothing() {
    refuses_redirect_uris("whitespace and control characters", |registered, _, _| {
        vec![
            format!(" {registered}"),
            format!("{registered} "),
            format!("{registered}\n"),
            format!("{registered}\r\nSet-Cookie: session=stolen"),
            registered.replace("/google", "/\tgoogle"),
            format!("{registered}\0"),
            registered.replace("/google", "/goo\u{200b}gle"),
        ]
    })
    .await;
}

// return_to at /initiate: 400 invalid_return_to, one class per test, each case printed.

/// Asserts every `return_to` of `cases` is refused without a state or a cookie.
async fn refuses_return_tos(class: &str, cases: &[String]) {
    let scene = Scene::start().await;
    let before = scene.rows().await;
    println!("return_to, {class} (allowed origin {ALLOWED_ORIGIN}):");
    for return_to in cases {
        let response = scene.h.initiate("google", json!({ "return_to": return_to })).await;
        assert!(response.headers().get("set-cookie").is_none(), "{return_to:?}: no flow cookie");
        let status = response.status();
        let body = json_body(response, status.as_u16()).await;
        assert!(status == 400 && body["code"] == "invalid_return_to", "{return_to:?} was not refused: {status} {body}");
        report(&format!("  {return_to:?}"), "400 invalid_return_to");
    }
    scene.assert_unchanged(&before, class).await;
}

fn strings(cases: &[&str]) -> Vec<String> {
    cases.iter().map(|case| (*case).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_return_to_with_another_scheme_and_changes_nothing() {
    refuses_return_tos(
        "other schemes",
        &strings(&[
            "data:text/html,<script>alert(document.cookie)</script>",
            "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
            "JAVASCRIPT:alert(1)",
            "java\tscript:alert(1)",
            "javascript://app.test/%0aalert(document.domain)",
            "vbscript:msgbox(1)",
            "file:///etc/passwd",
            "ftp://app.test/x",
            "ws://app.test/x",
            "https://app.test/x",
            "blob:https://evil.test/0b5e7a2c-3d4f-4a8e-9c1b-2f6d8e0a1b3c",
            // The origin of a blob: URL is that of the URL inside it, but it is not a page address.
            "blob:http://app.test/0b5e7a2c-3d4f-4a8e-9c1b-2f6d8e0a1b3c",
        ]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_return_to_with_a_percent_encoded_foreign_host_and_changes_nothing() {
    refuses_return_tos(
        "percent-encoded foreign host",
        &strings(&[
            "http://%65vil.test/x",
            "http://app.test%2Eevil.test/x",
            "http://evil%2Etest/x",
            "http://%61pp.test.evil.test/x",
            "http://evil.test%2Fapp.test/x",
            "http://app.test%40evil.test/x",
            "http://%2565vil.test/x",
        ]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_return_to_with_userinfo_and_changes_nothing() {
    refuses_return_tos(
        "userinfo",
        &strings(&[
            "http://app.test@evil.test/x",
            "http://evil.test@app.test/x",
            "http://user:password@app.test/x",
            "http://:password@app.test/x",
            "http://app.test:80@evil.test/x",
            "http://app.test%2F@evil.test/x",
        ]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_return_to_with_backslashes_leading_elsewhere_and_changes_nothing() {
    refuses_return_tos(
        "backslashes leading elsewhere",
        &strings(&[
            "http:\\\\evil.test",
            "http:/\\evil.test/x",
            "http:\\/evil.test/x",
            "\\\\evil.test/x",
            "/\\evil.test/x",
            "http://evil.test\\@app.test/x",
        ]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_return_to_on_another_port_and_changes_nothing() {
    refuses_return_tos(
        "other ports",
        &strings(&[
            "http://app.test:8080/x",
            "http://app.test:81/x",
            "http://app.test:443/x",
            "http://app.test:8443/x",
            "http://app.test:0/x",
            "http://app.test:65535/x",
        ]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_return_to_with_a_lookalike_host_and_changes_nothing() {
    // The punycode form of the Cyrillic lookalike, as the URL parser itself writes it.
    let punycode = Url::parse("http://\u{430}pp.test/").unwrap().host_str().unwrap().to_owned();
    assert!(punycode.starts_with("xn--"), "{punycode}");
    let mut cases = strings(&[
        "http://\u{430}pp.test/x",
        "http://app.t\u{435}st/x",
        "http://app\u{301}.test/x",
        "http://app.test\u{3002}evil.test/x",
        "http://\u{ff41}\u{ff50}\u{ff50}.\u{ff54}\u{ff45}\u{ff53}\u{ff54}.evil.test/x",
        "http://app.test\u{ff0e}evil.test/x",
        "http://app.test./x",
        "http://[::1]/x",
        "http://0x7f.1/x",
        "http://2130706433/x",
    ]);
    cases.insert(2, format!("http://{punycode}/x"));
    refuses_return_tos("lookalike hosts", &cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_return_to_with_whitespace_or_control_characters_leading_elsewhere_and_changes_nothing() {
    refuses_return_tos(
        "whitespace and control characters leading elsewhere",
        &strings(&[
            " https://evil.test/x",
            "\0http://evil.test/x",
            "\u{1f}https://evil.test/x",
            "http://app.test\n.evil.test/x",
            "http://app.test\r\n.evil.test/x",
            "http://app.test\t.evil.test/x",
            "http:/\t/evil.test/x",
            "http://app.test\0.evil.test/x",
            "http://app.test\u{200b}.evil.test/x",
            "http://app.test\u{ad}.evil.test/x",
            "http://evil.test\u{b}@app.test/x",
            "http://app.test\u{3000}.evil.test/x",
        ]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_a_relative_or_schemeless_return_to_and_changes_nothing() {
    refuses_return_tos(
        "relative or schemeless",
        &strings(&[
            "",
            "/settings/integrations",
            "settings",
            "./x",
            "../x",
            "?oauth_status=success",
            "#x",
            "app.test/x",
            "//app.test/x",
            "///app.test/x",
        ]),
    )
    .await;
}

/// Case 45: disguises that the URL parser (which parses as browsers do) turns into an address
/// under the allowed origin are accepted, and the browser lands there, on the parsed form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_neutralises_return_to_disguises_of_the_allowed_origin_and_lands_on_it() {
    let scene = Scene::start().await;
    println!("return_to, disguises of {ALLOWED_ORIGIN} (accepted, and neutralised):");
    for return_to in [
        "http://app.test\\@evil.test/x",
        "http://%61pp.test/x",
        "http://app.te\tst/x",
        "http://app.test/x\r\nSet-Cookie: session=stolen",
        "http://app\u{200b}.test/x",
        "http://\u{ff41}\u{ff50}\u{ff50}.\u{ff54}\u{ff45}\u{ff53}\u{ff54}/x",
        "HTTP://APP.TEST/x",
        "http://app.test:80/x",
        "http://app.test:080/x",
        "http:app.test/x",
        "http:\\\\app.test\\x",
        " http://app.test/x ",
        "http://app.test/x\0",
        "http://app\u{3002}test/x",
        "http://@app.test/x",
        "http://app.test/x\\..\\..\\evil.test",
    ] {
        let flow = scene.approved("google", json!({ "return_to": return_to })).await;
        let response = scene.h.callback(&flow.callback).await;
        assert_eq!(response.status(), 303, "{return_to:?}");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with(&format!("{ALLOWED_ORIGIN}/")), "{return_to:?} -> {location}");
        let landed = Url::parse(&location).unwrap();
        assert_eq!(landed.origin(), Url::parse(ALLOWED_ORIGIN).unwrap().origin(), "{location}");
        assert!(landed.username().is_empty() && landed.password().is_none(), "no userinfo: {location}");
        assert!(
            !location.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control() || c == '\u{200b}'),
            "{return_to:?} -> {location}"
        );
        assert_eq!(query_param(&location, "oauth_status").as_deref(), Some("success"), "{location}");
        report(&format!("  {return_to:?}"), &format!("200, lands on {}", location.split('?').next().unwrap()));
    }
}

/// Case 46: a scope list too big to read, and one that is read but names unknown scopes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initiate_refuses_oversized_and_unknown_scope_lists_and_changes_nothing() {
    let scene = Scene::start().await;
    let before = scene.rows().await;
    let catalogue: Vec<&str> = (0..10_000).map(|i| if i % 2 == 0 { "profile" } else { "email" }).collect();
    let size = serde_json::to_vec(&json!({"provider": "google", "scopes": catalogue})).unwrap().len();
    assert!(size > 85_000, "{size}");
    let response = scene.h.initiate("google", json!({ "scopes": catalogue })).await;
    assert!(response.headers().get("set-cookie").is_none());
    problem(response, 413, "payload_too_large").await;
    report(&format!("10,000 catalogue scopes ({size} bytes)"), "413 payload_too_large");

    let digit = |n: usize| char::from_digit((n % 36) as u32, 36).unwrap();
    let unknown: Vec<String> =
        (0..10_000).map(|i| [digit(i / 1296), digit(i / 36), digit(i)].iter().collect()).collect();
    let size = serde_json::to_vec(&json!({"provider": "google", "scopes": unknown})).unwrap().len();
    assert!(size < 65_536, "under the body limit: {size}");
    let response = scene.h.initiate("google", json!({ "scopes": unknown })).await;
    assert!(response.headers().get("set-cookie").is_none());
    let body = problem(response, 400, "unknown_scope").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("\"000\""), "names the first: {detail}");
    assert!(!detail.contains(&unknown[1]) && !detail.contains(&unknown[9_999]), "only the first: {detail}");
    assert!(detail.len() < 200, "{detail}");
    report(&format!("10,000 unknown scopes ({size} bytes)"), "400 unknown_scope, naming only the first");
    scene.assert_unchanged(&before, "scope lists").await;
}

// Request targets beyond hyper's limit.

/// A callback whose `name` parameter is 100 kB: beyond hyper's `http::Uri` limit (65,534 bytes),
/// so hyper answers a bare 414 (no problem JSON, no headers of ours) before any layer of the app
/// runs. That is the documented limit; the database is unchanged and the flow still finishes.
async fn a_100_kb_parameter_gets_hypers_bare_414(name: &str) {
    let scene = Scene::start().await;
    let flow = scene.approved("google", json!({})).await;
    let before = scene.rows().await;
    let huge = "A".repeat(100_000);
    let target = edit_raw_param(&target_of(&flow.callback), name, |_| format!("{name}={huge}"));
    assert!(target.len() > 65_534, "{}", target.len());
    let (status, answer) = raw_get(&scene.h.app, &target, &scene.h.flow_cookies()).await;
    assert_eq!(status, 414, "{answer:.300}");
    scene.assert_unchanged(&before, &format!("100 kB {name}")).await;
    report(&format!("100 kB {name} (raw socket)"), "414 from hyper, not problem JSON");
    scene.assert_finishes(&flow.callback).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_with_a_100_kb_state_gets_hypers_bare_414_and_changes_nothing() {
    a_100_kb_parameter_gets_hypers_bare_414("state").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_with_a_100_kb_code_gets_hypers_bare_414_and_changes_nothing() {
    a_100_kb_parameter_gets_hypers_bare_414("code").await;
}

// The total.

/// How many lines of `text` start with `prefix`.
const fn lines_starting_with(text: &str, prefix: &str) -> usize {
    let (text, prefix) = (text.as_bytes(), prefix.as_bytes());
    let (mut count, mut at, mut line_start) = (0, 0, true);
    while at < text.len() {
        if line_start && at + prefix.len() <= text.len() {
            let mut same = true;
            let mut i = 0;
            while i < prefix.len() {
                if text[at + i] != prefix[i] {
                    same = false;
                    break;
                }
                i += 1;
            }
            if same {
                count += 1;
            }
        }
        line_start = text[at] == b'\n';
        at += 1;
    }
    count
}

/// The cases of `tests/api/flow/attacks.rs` and `hardening.rs`: their `async fn`s.
const EXISTING: usize = lines_starting_with(include_str!("../api/flow/attacks.rs"), "async fn ")
    + lines_starting_with(include_str!("../api/flow/hardening.rs"), "async fn ");
/// The cases of this suite: its tokio tests, minus those ignored.
const HERE: usize = lines_starting_with(include_str!("flow_attacks.rs"), "#[tokio::test")
    - lines_starting_with(include_str!("flow_attacks.rs"), "#[ignore");

#[test]
fn flow_attacks_total() {
    let total = HERE + EXISTING;
    println!(
        "flow attacks: {total} cases ({HERE} in this suite, {EXISTING} in tests/api/flow/attacks.rs and hardening.rs)"
    );
    assert!(total >= 40, "{total}");
}

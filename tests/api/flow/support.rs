//! The connect-flow harness: an app pointed at one emulator per provider flavor, a user, and
//! the browser's steps (initiate, consent, callback) as plain HTTP calls.

use oauth_manager::oauth::sandbox::{credentials, emulator_config};
use provider_emulators::{Flavor, RunningEmulator};
use reqwest::Response;
use serde_json::{Value, json};
use url::Url;

use crate::support::{Backend, SERVICE_KEY, TestApp, TestConfig, TestUser, existing_schema_database, fresh_sqlite_url};

/// The API prefix.
pub const API: &str = "/api/v1/oauth";

/// An app whose four built-in providers are served by loopback emulators, and a user of it.
pub struct Harness {
    pub app: TestApp,
    /// Google's emulator, also serving YouTube.
    pub google: RunningEmulator,
    pub microsoft: RunningEmulator,
    pub notion: RunningEmulator,
    /// The user who connects (`owner@example.com`; the provider login defaults to alice@example.com).
    pub user: TestUser,
    /// The app's database, for a second app on the same one.
    pub database_url: String,
    /// Whether the app caches tokens (then no test may rewrite token rows behind its back).
    token_cache: bool,
    /// Flow cookies `/initiate` set, sent back at the callback as the user's browser would.
    browser_cookies: std::sync::Mutex<Vec<String>>,
}

impl Harness {
    /// A harness on a fresh database of `backend`.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |config| config).await
    }

    /// A harness whose app does not cache tokens, for tests that rewrite token rows.
    pub async fn start_without_token_cache(backend: Backend) -> Self {
        Self::start_with(backend, TestConfig::without_token_cache).await
    }

    /// Fails a test that rewrites token rows behind a caching app's back.
    pub fn assert_rows_may_be_rewritten(&self) {
        assert!(!self.token_cache, "this test rewrites token rows: start the harness without the token cache");
    }

    /// A harness whose app configuration `adjust` changes before start.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(TestConfig) -> TestConfig) -> Self {
        let database_url = match backend {
            Backend::Postgres => existing_schema_database().await,
            Backend::Sqlite => fresh_sqlite_url(),
        };
        let google = provider_emulators::spawn(emulator_config(Flavor::Google)).await.unwrap();
        let microsoft = provider_emulators::spawn(emulator_config(Flavor::Microsoft)).await.unwrap();
        let notion = provider_emulators::spawn(emulator_config(Flavor::Notion)).await.unwrap();
        let config = adjust(app_config(&database_url, &google, &microsoft, &notion));
        let token_cache = config.env.get("OAUTH_TOKEN_CACHE").is_none_or(|value| value != "off");
        let app = TestApp::spawn(config).await;
        let user = app.user("owner@example.com").await;
        Self { app, google, microsoft, notion, user, database_url, token_cache, browser_cookies: Default::default() }
    }

    /// The configuration of another app on the same database and emulators (caching tokens as
    /// the harness's app does).
    pub fn config(&self) -> TestConfig {
        let config = app_config(&self.database_url, &self.google, &self.microsoft, &self.notion);
        if self.token_cache { config } else { config.without_token_cache() }
    }

    /// The environment of a real `oauth-manager serve` process on the harness's database and
    /// emulators (`ServiceProcess::start`).
    pub fn service_process_env(&self) -> Vec<(String, String)> {
        let config = self.config();
        let providers_file = crate::support::config_file(config.providers_toml.as_deref().unwrap());
        let mut env: Vec<(String, String)> = config.env.into_iter().collect();
        env.push(("OAUTH_PROVIDERS_FILE".into(), providers_file));
        env
    }

    /// `POST /initiate` as the harness user, `extra` merged into `{provider}`.
    pub async fn initiate(&self, provider: &str, extra: Value) -> Response {
        self.initiate_as(&self.user.token, provider, extra).await
    }

    /// `POST /initiate` as the holder of `token`.
    pub async fn initiate_as(&self, token: &str, provider: &str, extra: Value) -> Response {
        let mut body = json!({ "provider": provider });
        if let Value::Object(fields) = extra {
            body.as_object_mut().unwrap().extend(fields);
        }
        let response = self
            .app
            .client
            .post(self.app.url(&format!("{API}/initiate")))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        if let Some(cookie) = flow_cookie(&response) {
            self.browser_cookies.lock().unwrap().push(cookie);
        }
        response
    }

    /// A successful `POST /initiate`: its body.
    pub async fn initiated(&self, provider: &str, extra: Value) -> Value {
        json_body(self.initiate(provider, extra).await, 200).await
    }

    /// The user approves at the provider (`login`, `granted_scope` optional); the callback URL.
    pub async fn approve(&self, authorization_url: &str, login: Option<&str>, granted_scope: Option<&str>) -> String {
        let mut extra = vec![("decision", "approve")];
        extra.extend(login.map(|login| ("login", login)));
        extra.extend(granted_scope.map(|scope| ("granted_scope", scope)));
        consent(&self.app.client, authorization_url, &self.flow_cookies(), &extra).await
    }

    /// The user denies at the provider; the callback URL (carrying `error=access_denied`).
    pub async fn deny(&self, authorization_url: &str) -> String {
        consent(&self.app.client, authorization_url, &self.flow_cookies(), &[("decision", "deny")]).await
    }

    /// The browser that initiated arrives at our callback `url` (no JWT, its flow cookies).
    pub async fn callback(&self, url: &str) -> Response {
        let cookies = self.browser_cookies.lock().unwrap().join("; ");
        let mut request = self.app.client.get(url);
        if !cookies.is_empty() {
            request = request.header("cookie", cookies);
        }
        request.send().await.unwrap()
    }

    /// The `Cookie` header of the browser that initiated: every flow cookie `/initiate` set.
    pub fn flow_cookies(&self) -> String {
        self.browser_cookies.lock().unwrap().join("; ")
    }

    /// Another browser (the victim of a forwarded authorization link) arrives at `url`.
    pub async fn callback_from_another_browser(&self, url: &str) -> Response {
        self.app.client.get(url).send().await.unwrap()
    }

    /// Initiate, approve as the default login, and land on the callback: its response.
    pub async fn attempt_connect(&self, provider: &str) -> Response {
        let flow = self.initiated(provider, json!({})).await;
        let callback_url = self.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;
        self.callback(&callback_url).await
    }

    /// A completed connection of `provider`: its integration id.
    pub async fn connect(&self, provider: &str) -> i64 {
        let body = json_body(self.attempt_connect(provider).await, 200).await;
        assert_eq!(body["provider"], provider, "{body}");
        assert_eq!(body["status"], "active", "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        body["integration_id"].as_i64().unwrap_or_else(|| panic!("integration_id in {body}"))
    }

    /// `GET /integrations/{id}/token?min_ttl=` with the service key.
    pub async fn token(&self, id: i64, min_ttl: u64) -> Response {
        service_get(&self.app, &format!("{API}/integrations/{id}/token?min_ttl={min_ttl}")).await
    }

    /// A token hand-out that succeeded: its body.
    pub async fn token_body(&self, id: i64, min_ttl: u64) -> Value {
        json_body(self.token(id, min_ttl).await, 200).await
    }

    /// `GET API + path` as the harness user.
    pub async fn get(&self, path: &str) -> Response {
        self.app.get(&format!("{API}{path}"), Some(&self.user.token)).await
    }

    /// `POST API + path` as the harness user, no body.
    pub async fn post(&self, path: &str) -> Response {
        self.app.client.post(self.app.url(&format!("{API}{path}"))).bearer_auth(&self.user.token).send().await.unwrap()
    }

    /// `DELETE API + path` as the harness user.
    pub async fn delete(&self, path: &str) -> Response {
        self.app
            .client
            .delete(self.app.url(&format!("{API}{path}")))
            .bearer_auth(&self.user.token)
            .send()
            .await
            .unwrap()
    }

    /// `POST /integrations/{id}/refresh` as the harness user.
    pub async fn refresh(&self, id: i64) -> Response {
        self.post(&format!("/integrations/{id}/refresh")).await
    }

    /// One integration, as the harness user sees it.
    pub async fn integration(&self, id: i64) -> Value {
        json_body(self.get(&format!("/integrations/{id}")).await, 200).await
    }

    /// All the harness user's integrations, revoked ones included.
    pub async fn all_integrations(&self) -> Value {
        json_body(self.get("/integrations?active_only=false").await, 200).await
    }

    /// Moves the stored token's timestamps, as time passing would (`None` keeps `expires_at`).
    pub async fn set_token_times(&self, id: i64, expires_in_seconds: Option<i64>, written_seconds_ago: i64) {
        self.assert_rows_may_be_rewritten();
        let now = chrono::Utc::now().naive_utc();
        let expires_at = expires_in_seconds.map(|seconds| now + chrono::Duration::seconds(seconds));
        let updated_at = now - chrono::Duration::seconds(written_seconds_ago);
        let sql =
            "UPDATE oauth_tokens SET expires_at = COALESCE($2, expires_at), updated_at = $3 WHERE integration_id = $1";
        if self.database_url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
            sqlx::query(sql).bind(id as i32).bind(expires_at).bind(updated_at).execute(&pool).await.unwrap();
        } else {
            let pool = sqlx::SqlitePool::connect(&self.database_url).await.unwrap();
            sqlx::query(sql).bind(id as i32).bind(expires_at).bind(updated_at).execute(&pool).await.unwrap();
        }
    }

    /// How many rows `table` holds (a name from the schema, never input).
    pub async fn count_rows(&self, table: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        if self.database_url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
        } else {
            let pool = sqlx::SqlitePool::connect(&self.database_url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
        }
    }

    /// Asserts a refused flow wrote nothing: no integration, no `connect` audit event.
    pub async fn assert_nothing_written(&self, context: &str) {
        assert_eq!(self.all_integrations().await, json!([]), "{context}: no integration");
        let audit = json_body(self.get("/audit?action=connect").await, 200).await;
        assert_eq!(audit["events"], json!([]), "{context}: no connect event");
    }
}

/// The test configuration pointing the built-ins at the three emulators.
fn app_config(
    database_url: &str,
    google: &RunningEmulator,
    microsoft: &RunningEmulator,
    notion: &RunningEmulator,
) -> TestConfig {
    let mut config = TestConfig::new(database_url);
    config.providers_toml = Some(providers_toml(&google.base_url, &microsoft.base_url, &notion.base_url));
    for (prefix, flavor) in [("GOOGLE", Flavor::Google), ("MICROSOFT", Flavor::Microsoft), ("NOTION", Flavor::Notion)] {
        let (client_id, client_secret) = credentials(flavor);
        config = config
            .set(&format!("{prefix}_CLIENT_ID"), client_id)
            .set(&format!("{prefix}_CLIENT_SECRET"), client_secret);
    }
    config
}

/// An operator providers file pointing the four built-ins at emulators at these base URLs, as an
/// operator would write it (YouTube shares Google's emulator, as it shares Google's endpoints).
fn providers_toml(google: &str, microsoft: &str, notion: &str) -> String {
    let google_block = |name: &str| {
        format!(
            "[providers.{name}]\n\
             authorization_url = \"{google}/authorize\"\n\
             token_url = \"{google}/token\"\n\
             revocation_url = \"{google}/revoke\"\n\
             issuer = \"{google}\"\n"
        )
    };
    format!(
        "{google_provider}\
         userinfo_url = \"{google}/userinfo\"\n\
         jwks_uri = \"{google}/jwks\"\n\
         issuer_aliases = [\"{google_bare}\"]\n\n\
         {youtube_provider}\
         identity = {{ url = \"{google}/youtube/v3/channels?part=snippet&mine=true\" }}\n\n\
         [providers.microsoft]\n\
         authorization_url = \"{microsoft}/{{tenant}}/oauth2/v2.0/authorize\"\n\
         token_url = \"{microsoft}/{{tenant}}/oauth2/v2.0/token\"\n\
         userinfo_url = \"{microsoft}/v1.0/me\"\n\
         issuer = \"{microsoft}/{{tid}}/v2.0\"\n\
         jwks_uri = \"{microsoft}/{{tenant}}/discovery/v2.0/keys\"\n\n\
         [providers.notion]\n\
         authorization_url = \"{notion}/v1/oauth/authorize\"\n\
         token_url = \"{notion}/v1/oauth/token\"\n\
         revocation_url = \"{notion}/v1/oauth/revoke\"\n\
         userinfo_url = \"{notion}/v1/users/me\"\n",
        google_bare = google.trim_start_matches("http://"),
        google_provider = google_block("google"),
        youtube_provider = google_block("youtube"),
    )
}

/// The provider's URL behind `authorization_url`: a flow started where its cookie cannot reach
/// the browser (no `Origin`, as here) gets an authorization link through the service
/// (`GET /handoff/{state}`). The browser that opens it here carries `cookie` (the flow cookie
/// `/initiate` set, as a cookie jar would), which is what lets a browser that came from no page
/// open it.
pub async fn provider_url(client: &reqwest::Client, authorization_url: &str, cookie: Option<&str>) -> String {
    if !authorization_url.contains("/api/v1/oauth/handoff/") {
        return authorization_url.to_owned();
    }
    let mut request = client.get(authorization_url);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
    assert_eq!(status, 303, "the authorization link redirects to the provider: {}", response.text().await.unwrap());
    location.unwrap()
}

/// Posts the consent form for `authorization_url` with `extra` fields; the 303's Location.
async fn consent(client: &reqwest::Client, authorization_url: &str, cookie: &str, extra: &[(&str, &str)]) -> String {
    let url = Url::parse(&provider_url(client, authorization_url, Some(cookie)).await).unwrap();
    let mut form: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    form.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut action = url.clone();
    action.set_query(None);
    let response = client.post(action).form(&form).send().await.unwrap();
    let status = response.status();
    let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 303, "the consent form redirects back: {body}");
    location.unwrap()
}

/// `GET path` with the service key.
pub async fn service_get(app: &TestApp, path: &str) -> Response {
    app.client.get(app.url(path)).bearer_auth(SERVICE_KEY).send().await.unwrap()
}

/// The `name=value` of the flow cookie an `/initiate` response sets.
pub fn flow_cookie(response: &Response) -> Option<String> {
    let header = response.headers().get("set-cookie")?.to_str().ok()?;
    assert!(header.contains("HttpOnly") && header.contains("SameSite=Lax"), "{header}");
    assert!(header.contains("Path=/api/v1/oauth;"), "{header}");
    header.split(';').next().map(str::to_owned)
}

/// Asserts `status` and returns the JSON body (the body is shown when the status differs).
pub async fn json_body(response: Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("JSON body ({error}): {text}"))
}

/// Asserts a problem-JSON answer with `status` and `code`; returns the body.
pub async fn problem(response: Response, status: u16, code: &str) -> Value {
    let content_type = response.headers().get("content-type").map(|c| c.to_str().unwrap().to_owned());
    let body = json_body(response, status).await;
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{body}");
    body
}

/// Asserts the token endpoint refused to hand out a token for a revoked or broken integration.
pub async fn assert_no_token(response: Response) {
    let status = response.status().as_u16();
    let body = json_body(response, status).await;
    let refused = matches!(
        (status, body["code"].as_str()),
        (409, Some("needs_reauth" | "integration_revoked")) | (404, Some("not_found" | "integration_revoked"))
    );
    assert!(refused, "no token is handed out, got {status}: {body}");
    assert!(body.get("access_token").is_none(), "{body}");
}

/// The value of query parameter `name` in `url`.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    Url::parse(url).unwrap().query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// `url` with query parameter `name` set to `value` (replacing it where present).
pub fn with_query_param(url: &str, name: &str, value: &str) -> String {
    let mut parsed = Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> =
        parsed.query_pairs().filter(|(key, _)| key != name).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs).append_pair(name, value);
    parsed.to_string()
}

/// `url` with its path replaced.
pub fn with_path(url: &str, path: &str) -> String {
    let mut parsed = Url::parse(url).unwrap();
    parsed.set_path(path);
    parsed.to_string()
}

/// Sorted strings of a JSON array, for order-insensitive comparisons.
pub fn sorted_strings(value: &Value) -> Vec<String> {
    let mut strings: Vec<String> = value
        .as_array()
        .unwrap_or_else(|| panic!("an array: {value}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    strings.sort();
    strings
}

/// The single integration in a list, asserting there is exactly one.
pub fn only(list: &Value) -> &Value {
    let items = list.as_array().unwrap_or_else(|| panic!("an array: {list}"));
    assert_eq!(items.len(), 1, "exactly one integration: {list}");
    &items[0]
}

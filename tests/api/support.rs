//! Test support: databases, a running app on loopback, and credentials.
#![allow(dead_code)] // Helpers serve tests that arrive with the connect flow.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use jsonwebtoken::{EncodingKey, Header, encode};
use oauth_manager::auth::Claims;
use oauth_manager::config::Config;
use oauth_manager::oauth::Providers;
use oauth_manager::oauth::sandbox;
use oauth_manager::startup::Secrets;
use oauth_manager::state::AppState;
use oauth_manager::store::{PgStore, SqliteStore, Store};
use sqlx::{Connection, Executor, PgConnection};

/// The JWT secret every test app uses.
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef";
/// A service key every test app accepts.
pub const SERVICE_KEY: &str = "test-service-key-0123456789";
/// The host application's schema, as in production (a copy of the contract's
/// `existing_schema.sql`; `schema::the_fixture_is_the_contracts_schema` keeps them equal).
pub const EXISTING_SCHEMA: &str = include_str!("../fixtures/existing_schema.sql");

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

static DATABASE_COUNTER: AtomicUsize = AtomicUsize::new(0);
static STALE_DATABASES_DROPPED: AtomicBool = AtomicBool::new(false);

/// A fresh, empty PostgreSQL database; its URL. Databases of test processes that are gone are
/// dropped on the way, so repeated runs do not pile them up.
pub async fn fresh_postgres_database() -> String {
    let admin = admin_url();
    let mut connection = PgConnection::connect(&admin).await.expect("PostgreSQL is running (see .ci/run)");
    // Once per test process: the first test cleans up after earlier runs, the rest go on.
    if !STALE_DATABASES_DROPPED.swap(true, Ordering::SeqCst) {
        drop_stale_databases(&mut connection).await;
    }
    let name = format!(
        "oam_test_{}_{}_{}",
        std::process::id(),
        DATABASE_COUNTER.fetch_add(1, Ordering::Relaxed),
        oauth_manager::crypto::random_token(4).to_lowercase().replace(['-', '_'], "x")
    );
    connection.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

async fn drop_stale_databases(connection: &mut PgConnection) {
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'oam_test_%'")
        .fetch_all(&mut *connection)
        .await
        .unwrap_or_default();
    for name in names {
        let pid = name.split('_').nth(2).and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ =
                connection.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await;
        }
    }
}

/// A fresh PostgreSQL database built from `existing_schema.sql`; its URL.
pub async fn existing_schema_database() -> String {
    let url = fresh_postgres_database().await;
    let mut connection = PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(EXISTING_SCHEMA).execute(&mut connection).await.expect("existing_schema.sql applies");
    url
}

/// A fresh SQLite database file; its URL.
pub fn fresh_sqlite_url() -> String {
    let dir = std::env::temp_dir().join("oauth-manager-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}-{}.db", std::process::id(), oauth_manager::crypto::random_token(6)));
    format!("sqlite://{}", file.display())
}

/// Which database a test runs against.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A migrated store on a fresh database of `backend` (PostgreSQL: built from existing_schema.sql).
pub async fn store(backend: Backend) -> Arc<dyn Store> {
    let store: Arc<dyn Store> = match backend {
        Backend::Postgres => Arc::new(PgStore::connect(&existing_schema_database().await, 5).await.unwrap()),
        Backend::Sqlite => Arc::new(SqliteStore::connect(&fresh_sqlite_url(), 5).await.unwrap()),
    };
    store.migrate().await.unwrap();
    store
}

/// Settings of a test app; tests change what they need before `spawn`.
pub struct TestConfig {
    pub env: HashMap<String, String>,
    pub providers_toml: Option<String>,
}

impl TestConfig {
    /// Defaults: the given database, fixed secrets, a temp data dir, no sandbox.
    pub fn new(database_url: &str) -> Self {
        let data_dir = std::env::temp_dir().join(format!("oam-data-{}", oauth_manager::crypto::random_token(6)));
        let env = [
            ("DATABASE_URL", database_url.to_owned()),
            ("JWT_SECRET_KEY", JWT_SECRET.to_owned()),
            ("OAUTH_ENCRYPTION_KEY", format!("k1:{}", "11".repeat(32))),
            ("OAUTH_SERVICE_API_KEYS", SERVICE_KEY.to_owned()),
            ("OAUTH_DATA_DIR", data_dir.display().to_string()),
            ("OAUTH_SANDBOX", "off".to_owned()),
            ("OAUTH_ALLOWED_RETURN_ORIGINS", "http://app.test".to_owned()),
        ];
        Self { env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(), providers_toml: None }
    }

    /// Turns the token cache off: for tests that rewrite rows behind the service's back, which
    /// a cache cannot hear (README: Token cache).
    pub fn without_token_cache(self) -> Self {
        self.set("OAUTH_TOKEN_CACHE", "off")
    }

    /// Sets an environment variable of the app.
    pub fn set(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.insert(name.to_owned(), value.into());
        self
    }
}

/// A running app on a loopback port.
pub struct TestApp {
    pub address: SocketAddr,
    pub state: AppState,
    pub client: reqwest::Client,
    /// Dropping it stops the background tasks (usage flusher, refresher), as shutdown does.
    _background: tokio::sync::watch::Sender<bool>,
}

impl TestApp {
    /// The app whose server is serving: starts the background tasks, as `serve` does.
    fn running(address: SocketAddr, state: AppState) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        oauth_manager::startup::spawn_background(&state, stopped);
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { address, state, client, _background: stop }
    }

    /// Starts an app on a fresh database of `backend`.
    pub async fn start(backend: Backend) -> Self {
        let url = match backend {
            Backend::Postgres => existing_schema_database().await,
            Backend::Sqlite => fresh_sqlite_url(),
        };
        Self::spawn(TestConfig::new(&url)).await
    }

    /// Starts an app with `config`, bound to 127.0.0.1:0.
    pub async fn spawn(config: TestConfig) -> Self {
        Self::serve(config, false).await
    }

    /// Starts an app in sandbox mode: the emulators nested under `/_sandbox` of the same server,
    /// exactly as `cargo run` serves them.
    pub async fn spawn_sandbox(config: TestConfig) -> Self {
        Self::serve(config, true).await
    }

    async fn serve(config: TestConfig, sandbox: bool) -> Self {
        let env = config.env;
        let lookup = |name: &str| env.get(name).cloned();
        let mut settings = Config::load(&lookup).expect("test configuration is valid");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        settings.public_base_url = format!("http://{address}").parse().unwrap();
        let mut providers = Providers::load(config.providers_toml.as_deref(), &lookup).expect("providers load");
        let emulators = sandbox.then(|| {
            let (router, bases) = sandbox::emulators(settings.public_base_url.as_str(), &settings.data_dir);
            sandbox::point_at_emulators(&mut providers, &bases);
            router
        });
        let secrets = Secrets::resolve(&settings).expect("test secrets are valid");
        let state = oauth_manager::startup::build_state(settings, providers, secrets).await.expect("app state builds");
        // As `serve` mounts them: the emulators and the demo sign-in under `/_sandbox`.
        let app = oauth_manager::http::router_with_sandbox(state.clone(), emulators);
        let limits = state.config.http.clone();
        tokio::spawn(async move {
            oauth_manager::startup::server::run(listener, app, &limits, std::future::pending()).await.unwrap();
        });
        Self::running(address, state)
    }

    /// Absolute URL of `path` on this app.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// A user that exists in the `users` table, with a valid access token.
    pub async fn user(&self, email: &str) -> TestUser {
        let id = self.state.vault.store.create_user(email).await.unwrap();
        TestUser { id, email: email.to_owned(), token: user_token(id, email, &[]) }
    }

    /// An administrator that exists in the `users` table.
    pub async fn admin(&self, email: &str) -> TestUser {
        let mut user = self.user(email).await;
        user.token = user_token(user.id, email, &["administrator"]);
        user
    }

    /// `GET path` as `token` (None: anonymous).
    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }
}

/// A user known to the test app.
pub struct TestUser {
    pub id: i32,
    pub email: String,
    pub token: String,
}

/// Signs host-application claims with the test secret.
pub fn sign(claims: &serde_json::Value, secret: &str) -> String {
    encode(&Header::default(), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// A valid access token for `user_id`.
pub fn user_token(user_id: i32, email: &str, roles: &[&str]) -> String {
    let claims = Claims {
        user_id,
        token_type: "access".into(),
        sub: email.into(),
        exp: (chrono::Utc::now().timestamp() + 3600) as u64,
        roles: roles.iter().map(|r| r.to_string()).collect(),
    };
    encode(&Header::default(), &claims, &EncodingKey::from_secret(JWT_SECRET.as_bytes())).unwrap()
}

/// Asserts `response` is problem JSON with `status` and `code`; returns the body.
pub async fn expect_problem(response: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    body
}

/// Generates one test per backend from `async fn check(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::support::Backend::Postgres).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::support::Backend::Sqlite).await;
                }
            }
        )*
    };
}

/// An operator config file (`OAUTH_CONFIG_FILE`) with `toml` in a temp dir; its path.
pub fn config_file(toml: &str) -> String {
    let path = std::env::temp_dir().join(format!("oam-config-{}.toml", oauth_manager::crypto::random_token(6)));
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}

/// The real `oauth-manager` binary serving on a free loopback port; killed when dropped.
pub struct ServiceProcess {
    pub child: std::process::Child,
    pub base_url: String,
}

impl ServiceProcess {
    /// Starts `oauth-manager serve` with exactly `env` (plus HOST/PORT), and waits until it is ready.
    pub async fn start(env: &[(String, String)]) -> Self {
        Self::start_logging_to(env, None).await
    }

    /// `start`, writing its stdout (the log; `RUST_LOG` from `env`, else `warn`) to `log`.
    pub async fn start_logging_to(env: &[(String, String)], log: Option<&std::path::Path>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let stdout = match log {
            Some(path) => std::process::Stdio::from(std::fs::File::create(path).unwrap()),
            None => std::process::Stdio::null(),
        };
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_oauth-manager"))
            .arg("serve")
            .env_clear()
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .stdout(stdout)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        // Owned by the guard at once: every path, a failed start included, kills and reaps it.
        let service = Self { child, base_url: format!("http://127.0.0.1:{port}") };
        let client = reqwest::Client::new();
        for _ in 0..100 {
            let ready = client.get(format!("{}/readyz", service.base_url)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return service;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("oauth-manager did not become ready on port {port}");
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

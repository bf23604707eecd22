//! Settings: `config/default.toml` (compiled in), an optional operator file, then the environment.
//!
//! A malformed setting stops start-up with one line naming it. Each kind of setting is read by
//! one helper, so every setting of a kind accepts the same words: a flag is `on`/`off` (also
//! `true`/`false`, `yes`/`no`, `1`/`0`). Secrets are read as `SecretString` (so `Debug` prints
//! `[REDACTED]`) and checked, generated or refused where they are used: `startup::secrets`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

const DEFAULTS: &str = include_str!("../config/default.toml");

/// A setting that is missing or malformed: `setting` names it, `problem` says what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

/// The error for `setting`.
pub fn invalid(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { setting, problem: problem.into() }
}

/// Which database `DATABASE_URL` points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabaseKind {
    Postgres,
    Sqlite,
}

impl DatabaseKind {
    /// The kind a `DATABASE_URL` names, if it names one this service supports.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else {
            None
        }
    }
}

/// Output format of the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Where user roles come from when the JWT carries no `roles` claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolesSource {
    /// Only the JWT's `roles` claim.
    Claim,
    /// The host application's tables, with this query (`$1` is the user id; it returns role names).
    Database { query: String },
}

/// The default query over the host application's RBAC tables.
pub const DEFAULT_ROLES_QUERY: &str =
    "SELECT r.name FROM roles r JOIN user_roles ur ON ur.role_id = r.id WHERE ur.user_id = $1";

/// Whether the built-in providers are served by the local emulators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    Auto,
    On,
    Off,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    host: IpAddr,
    port: u16,
    data_dir: PathBuf,
    database_max_connections: u32,
    log_format: LogFormat,
    sandbox: SandboxMode,
    expose_tokens_to_users: bool,
    browser_binding: bool,
    http: HttpSettings,
    flow: FlowSettings,
    refresh: RefreshSettings,
    token_cache: TokenCacheSettings,
    limits: LimitSettings,
    webhooks: WebhookTiming,
}

/// How webhooks are delivered and retried (`[webhooks]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTiming {
    pub timeout_seconds: u64,
    pub first_retry_seconds: u64,
    pub max_retry_seconds: u64,
    pub max_attempts: u32,
    pub poll_interval_seconds: u64,
}

/// Where events are sent (`OAUTH_WEBHOOK_URLS`), and how.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub endpoints: Vec<Url>,
    /// `OAUTH_WEBHOOK_SECRET`: signs every body (required when there are endpoints).
    pub secret: Option<SecretString>,
    pub timing: WebhookTiming,
}

/// The hand-out cache (`store::token_cache`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCacheSettings {
    /// `OAUTH_TOKEN_CACHE` overrides it.
    pub enabled: bool,
    pub max_megabytes: u64,
    pub max_age_seconds: u64,
}

/// Limits of the HTTP server and of the provider client.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub request_timeout_seconds: u64,
    pub body_limit_bytes: usize,
    pub provider_timeout_seconds: u64,
    /// Open connections at most; one more is answered 503 `overloaded`.
    pub max_connections: usize,
    /// A client has this long to send a request's headers.
    pub header_read_timeout_seconds: u64,
    /// Longest request target (path and query) answered; longer is 414 `uri_too_long`.
    pub max_uri_bytes: usize,
    /// Most header bytes a request may carry; more is 431 `headers_too_large`.
    pub max_header_bytes: usize,
    /// The server's read buffer; a request head beyond it is refused by hyper itself.
    pub max_buffer_bytes: usize,
}

/// Settings of the authorization flow.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSettings {
    pub state_ttl_seconds: u64,
    /// How often expired states are purged.
    pub purge_interval_seconds: u64,
    /// How long an expired state is kept, so a late callback still hears `state_expired`.
    pub keep_expired_seconds: u64,
    /// How long an authorization URL that passes through the service may bind a browser.
    pub handoff_seconds: u64,
    /// A connect link's lifetime when the backend asks for none, and the longest it may ask for.
    pub connect_link_default_seconds: u64,
    pub connect_link_max_seconds: u64,
}

/// What one client may ask for (0 turns a rate limit off).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    pub initiate_per_user_per_minute: u32,
    /// Per client address as the service sees it (behind a proxy: the proxy's).
    pub initiate_per_address_per_minute: u32,
    pub callback_per_address_per_minute: u32,
    /// Refreshes a user asks for (manual refresh and sync), which reach the provider.
    pub refresh_per_user_per_minute: u32,
    /// Unfinished, unexpired flows a user may have open at once.
    pub open_flows_per_user: u32,
    /// Longest `return_to` stored with a flow.
    pub return_to_max_bytes: usize,
}

/// Settings of the background refresher.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshSettings {
    pub interval_seconds: u64,
    pub lead_seconds: u64,
    pub concurrency: usize,
    /// Only integrations handed out within this many hours are renewed ahead of expiry (0: all);
    /// a hand-out of any other refreshes it when it needs to.
    pub used_within_hours: u64,
    /// Keep-alive refreshes (providers whose refresh tokens die unused) per round, at most.
    pub keep_alive_per_round: i64,
    /// Refreshes talking to providers at once in this process (a refresh holds no database
    /// connection while it waits for the provider).
    pub max_in_flight: u32,
    /// PostgreSQL connections of their own on which refresh outcomes are written.
    pub write_connections: u32,
}

/// The database: `DATABASE_URL` (default: a SQLite file in the data directory) and its pool.
#[derive(Debug)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub kind: DatabaseKind,
    pub max_connections: u32,
}

impl DatabaseSettings {
    fn from_env(env: &Env<'_>, data_dir: &std::path::Path, file: &FileSettings) -> Result<Self, ConfigError> {
        let url = env
            .text("DATABASE_URL")
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", data_dir.join("oauth-manager.db").display()));
        let kind = DatabaseKind::of_url(&url)
            .ok_or_else(|| invalid("DATABASE_URL", "must start with postgres://, postgresql:// or sqlite:"))?;
        let max_connections = match env.text("DATABASE_MAX_CONNECTIONS") {
            Some(value) => value
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid("DATABASE_MAX_CONNECTIONS", "must be a positive integer"))?,
            None => file.database_max_connections,
        };
        Ok(Self { url: SecretString::from(url), kind, max_connections })
    }
}

/// The secrets as set in the environment, unchecked (see `startup::secrets`).
#[derive(Debug, Default)]
pub struct SecretSettings {
    /// `JWT_SECRET_KEY`: the HS256 secret of the host application's access tokens.
    pub jwt_secret: Option<SecretString>,
    /// `OAUTH_ENCRYPTION_KEY`: one key or a key ring.
    pub encryption_keys: Option<SecretString>,
    /// `OAUTH_SERVICE_API_KEYS`: the backends' keys.
    pub service_api_keys: Option<SecretString>,
}

impl SecretSettings {
    fn from_env(env: &Env<'_>) -> Self {
        Self {
            jwt_secret: env.secret("JWT_SECRET_KEY"),
            encryption_keys: env.secret("OAUTH_ENCRYPTION_KEY"),
            service_api_keys: env.secret("OAUTH_SERVICE_API_KEYS"),
        }
    }
}

/// The whole configuration, loaded once at start-up.
#[derive(Debug)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub public_base_url: Url,
    pub database: DatabaseSettings,
    /// SQLite files and generated development secrets.
    pub data_dir: PathBuf,
    pub secrets: SecretSettings,
    pub providers_file: Option<PathBuf>,
    /// The product frontend's origins: allowed as `return_to`, answered with CORS headers, and
    /// trusted to send cookie-authenticated writes.
    pub allowed_return_origins: Vec<url::Origin>,
    /// Where the callback's HTML page sends the browser back to when the flow had no `return_to`.
    pub default_return_url: Url,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`OAUTH_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub sandbox: SandboxMode,
    pub log_format: LogFormat,
    pub expose_tokens_to_users: bool,
    /// Require the callback to come from the browser that started the flow.
    pub browser_binding: bool,
    /// Where roles come from when the JWT has no `roles` claim.
    pub roles_source: RolesSource,
    pub http: HttpSettings,
    pub flow: FlowSettings,
    pub refresh: RefreshSettings,
    pub token_cache: TokenCacheSettings,
    pub limits: LimitSettings,
    pub webhooks: WebhookSettings,
}

impl Config {
    /// Loads from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
    }

    /// Loads with `lookup` standing in for the environment (tests use a map).
    pub fn load(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        let file = read_file_settings(env.text("OAUTH_CONFIG_FILE").as_deref())?;
        let port = env.parsed("PORT", file.port, "a port number")?;
        let data_dir = env.text("OAUTH_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| file.data_dir.clone());
        let public_base_url = env.text("PUBLIC_BASE_URL").unwrap_or_else(|| format!("http://localhost:{port}"));
        let public_base_url = Url::parse(public_base_url.trim_end_matches('/'))
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .ok_or_else(|| invalid("PUBLIC_BASE_URL", "must be an absolute http(s) URL"))?;
        let allowed_return_origins =
            env.text("OAUTH_ALLOWED_RETURN_ORIGINS").map(|list| parse_origins(&list)).transpose()?.unwrap_or_default();
        let default_return_url = match env.text("OAUTH_DEFAULT_RETURN_URL") {
            Some(text) => {
                Url::parse(&text).ok().filter(|url| matches!(url.scheme(), "http" | "https")).ok_or_else(|| {
                    invalid("OAUTH_DEFAULT_RETURN_URL", format!("{text:?} is not an absolute http(s) URL"))
                })?
            }
            // The frontend when one is configured, else this service's own connect page.
            None => match allowed_return_origins.first() {
                Some(origin) => Url::parse(&origin.ascii_serialization()).unwrap_or_else(|_| public_base_url.clone()),
                None => public_base_url.join("/").unwrap_or_else(|_| public_base_url.clone()),
            },
        };
        let trusted_proxies =
            env.text("OAUTH_TRUSTED_PROXIES").map(|list| parse_networks(&list)).transpose()?.unwrap_or_default();
        let webhooks = WebhookSettings::from_env(&env, file.webhooks.clone())?;
        let sandbox = match env.text("OAUTH_SANDBOX").as_deref() {
            None => file.sandbox,
            Some("auto") => SandboxMode::Auto,
            Some(value) => match parse_flag(value) {
                Some(true) => SandboxMode::On,
                Some(false) => SandboxMode::Off,
                None => return Err(invalid("OAUTH_SANDBOX", format!("{value:?} is not auto, on or off"))),
            },
        };
        let roles_source = match env.choice("OAUTH_ROLES_SOURCE", "claim", &["claim", "database"])? {
            "database" => RolesSource::Database {
                query: env.text("OAUTH_ROLES_QUERY").unwrap_or_else(|| DEFAULT_ROLES_QUERY.to_owned()),
            },
            _ => RolesSource::Claim,
        };
        let log_format = match env.text("LOG_FORMAT") {
            None => file.log_format,
            Some(_) => match env.choice("LOG_FORMAT", "text", &["text", "json"])? {
                "json" => LogFormat::Json,
                _ => LogFormat::Text,
            },
        };
        Ok(Self {
            host: env.parsed("HOST", file.host, "an IP address")?,
            port,
            public_base_url,
            database: DatabaseSettings::from_env(&env, &data_dir, &file)?,
            data_dir,
            secrets: SecretSettings::from_env(&env),
            providers_file: env.text("OAUTH_PROVIDERS_FILE").map(PathBuf::from),
            allowed_return_origins,
            default_return_url,
            trusted_proxies,
            sandbox,
            log_format,
            expose_tokens_to_users: env.flag("OAUTH_EXPOSE_TOKENS_TO_USERS", file.expose_tokens_to_users)?,
            browser_binding: env.flag("OAUTH_BROWSER_BINDING", file.browser_binding)?,
            roles_source,
            http: file.http,
            flow: file.flow,
            refresh: file.refresh,
            token_cache: TokenCacheSettings {
                enabled: env.flag("OAUTH_TOKEN_CACHE", file.token_cache.enabled)?,
                ..file.token_cache
            },
            limits: file.limits,
            webhooks,
        })
    }

    /// The callback URL the provider redirects to: `PUBLIC_BASE_URL` + `/api/v1/oauth/callback`.
    pub fn callback_url(&self, provider: Option<&str>) -> String {
        let base = self.public_base_url.as_str().trim_end_matches('/');
        match provider {
            Some(provider) => format!("{base}/api/v1/oauth/callback/{provider}"),
            None => format!("{base}/api/v1/oauth/callback"),
        }
    }

    /// Whether `origin` is this service's own or one of the app's (`OAUTH_ALLOWED_RETURN_ORIGINS`).
    pub fn is_app_origin(&self, origin: &url::Origin) -> bool {
        *origin == self.public_base_url.origin() || self.allowed_return_origins.contains(origin)
    }

    /// Timeout of each provider call.
    pub fn provider_timeout(&self) -> Duration {
        Duration::from_secs(self.http.provider_timeout_seconds)
    }
}

/// A flag's value: `on`/`off`, `true`/`false`, `yes`/`no` or `1`/`0` (any case).
pub fn parse_flag(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// The environment (or what stands in for it), read one kind of setting at a time.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// A text setting, if set.
    fn text(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }

    /// A secret setting, if set.
    fn secret(&self, name: &str) -> Option<SecretString> {
        self.text(name).map(SecretString::from)
    }

    /// A setting parsed with `FromStr`, or `default`; `what` says what it must be.
    fn parsed<T: FromStr>(&self, name: &'static str, default: T, what: &str) -> Result<T, ConfigError> {
        match self.text(name) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|_| invalid(name, format!("{value:?} is not {what}"))),
        }
    }

    /// A flag (`parse_flag`), or `default`.
    fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.text(name) {
            None => Ok(default),
            Some(value) => parse_flag(&value).ok_or_else(|| {
                invalid(name, format!("{value:?} is not on or off (true/false, yes/no and 1/0 work too)"))
            }),
        }
    }

    /// One of `options`, or `default`.
    fn choice(
        &self,
        name: &'static str,
        default: &'static str,
        options: &[&'static str],
    ) -> Result<&'static str, ConfigError> {
        match self.text(name) {
            None => Ok(default),
            Some(value) => options
                .iter()
                .find(|option| **option == value)
                .copied()
                .ok_or_else(|| invalid(name, format!("{value:?} is not {}", options.join(" or ")))),
        }
    }
}

fn read_file_settings(operator_file: Option<&str>) -> Result<FileSettings, ConfigError> {
    let mut merged: toml::Table = toml::from_str(DEFAULTS).expect("config/default.toml is valid TOML");
    if let Some(path) = operator_file {
        let text = std::fs::read_to_string(path)
            .map_err(|error| invalid("OAUTH_CONFIG_FILE", format!("cannot read {path}: {error}")))?;
        let overrides: toml::Table =
            toml::from_str(&text).map_err(|error| invalid("OAUTH_CONFIG_FILE", format!("{path}: {error}")))?;
        merge_tables(&mut merged, overrides);
    }
    merged.try_into().map_err(|error: toml::de::Error| invalid("OAUTH_CONFIG_FILE", error.message().to_owned()))
}

/// Overlays `overrides` onto `base`, table by table, so a file names only what it changes.
pub fn merge_tables(base: &mut toml::Table, overrides: toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(patch)) => merge_tables(existing, patch),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn parse_origins(list: &str) -> Result<Vec<url::Origin>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            Url::parse(entry)
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https") && url.path() == "/" && url.query().is_none())
                .map(|url| url.origin())
                .ok_or_else(|| {
                    invalid(
                        "OAUTH_ALLOWED_RETURN_ORIGINS",
                        format!("{entry:?} is not an origin like https://app.example.com"),
                    )
                })
        })
        .collect()
}

impl WebhookSettings {
    fn from_env(env: &Env<'_>, timing: WebhookTiming) -> Result<Self, ConfigError> {
        let endpoints = match env.text("OAUTH_WEBHOOK_URLS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .map(|entry| {
                    Url::parse(entry)
                        .ok()
                        .filter(|url| {
                            url.scheme() == "https"
                                || (url.scheme() == "http"
                                    && matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")))
                        })
                        .ok_or_else(|| {
                            invalid(
                                "OAUTH_WEBHOOK_URLS",
                                format!("{entry:?} is not an https URL (http only to localhost)"),
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let secret = env.secret("OAUTH_WEBHOOK_SECRET");
        use secrecy::ExposeSecret;
        match &secret {
            None if !endpoints.is_empty() => {
                return Err(invalid(
                    "OAUTH_WEBHOOK_SECRET",
                    "must be set when OAUTH_WEBHOOK_URLS is (it signs every delivery)",
                ));
            }
            Some(secret) if secret.expose_secret().len() < 32 => {
                return Err(invalid("OAUTH_WEBHOOK_SECRET", "must be at least 32 characters"));
            }
            _ => {}
        }
        if timing.max_attempts == 0 || timing.first_retry_seconds == 0 {
            return Err(invalid(
                "OAUTH_CONFIG_FILE",
                "webhooks.max_attempts and webhooks.first_retry_seconds must be positive",
            ));
        }
        Ok(Self { endpoints, secret, timing })
    }
}

/// `OAUTH_TRUSTED_PROXIES`: addresses (`10.0.0.5`) or networks (`10.0.0.0/8`), comma-separated.
fn parse_networks(list: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry.parse::<ipnet::IpNet>().or_else(|_| entry.parse::<IpAddr>().map(ipnet::IpNet::from)).map_err(|_| {
                invalid("OAUTH_TRUSTED_PROXIES", format!("{entry:?} is not an IP address or CIDR network"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load(&|name| map.get(name).cloned())
    }

    #[test]
    fn webhook_endpoints_need_https_and_a_long_secret() {
        let secret = ("OAUTH_WEBHOOK_SECRET", "a-webhook-secret-of-at-least-32-characters");
        let ok =
            load(&[("OAUTH_WEBHOOK_URLS", "https://hooks.example.com/a, http://localhost:9000/b"), secret]).unwrap();
        assert_eq!(ok.webhooks.endpoints.len(), 2);
        let unsigned = load(&[("OAUTH_WEBHOOK_URLS", "https://hooks.example.com/a")]).unwrap_err();
        assert_eq!(unsigned.setting, "OAUTH_WEBHOOK_SECRET");
        let short = load(&[("OAUTH_WEBHOOK_URLS", "https://hooks.example.com/a"), ("OAUTH_WEBHOOK_SECRET", "short")]);
        assert_eq!(short.unwrap_err().setting, "OAUTH_WEBHOOK_SECRET");
        let plain = load(&[("OAUTH_WEBHOOK_URLS", "http://hooks.example.com/a"), secret]).unwrap_err();
        assert_eq!(plain.setting, "OAUTH_WEBHOOK_URLS");
        assert!(load(&[]).unwrap().webhooks.endpoints.is_empty());
    }

    #[test]
    fn a_bad_port_and_database_url_are_named() {
        assert_eq!(load(&[("PORT", "eighty")]).unwrap_err().setting, "PORT");
        assert_eq!(load(&[("DATABASE_URL", "mysql://x")]).unwrap_err().setting, "DATABASE_URL");
    }

    #[test]
    fn nothing_set_means_the_embedded_sqlite_default_on_port_8000() {
        let config = load(&[]).unwrap();
        assert_eq!(config.database.kind, DatabaseKind::Sqlite);
        assert_eq!(config.port, 8000);
        assert!(config.secrets.jwt_secret.is_none(), "secrets are generated by an explicit start-up step");
    }

    #[test]
    fn every_flag_takes_the_same_words() {
        for (value, expected) in [("on", true), ("off", false), ("true", true), ("0", false), ("YES", true)] {
            let config = load(&[("OAUTH_EXPOSE_TOKENS_TO_USERS", value), ("OAUTH_BROWSER_BINDING", value)]).unwrap();
            assert_eq!(config.expose_tokens_to_users, expected, "{value}");
            assert_eq!(config.browser_binding, expected, "{value}");
        }
        let error = load(&[("OAUTH_BROWSER_BINDING", "maybe")]).unwrap_err();
        assert_eq!(error.setting, "OAUTH_BROWSER_BINDING");
        assert_eq!(load(&[("OAUTH_SANDBOX", "true")]).unwrap().sandbox, SandboxMode::On);
        assert_eq!(load(&[("OAUTH_SANDBOX", "maybe")]).unwrap_err().setting, "OAUTH_SANDBOX");
    }

    #[test]
    fn return_origins_must_be_bare_origins() {
        let ok = load(&[("OAUTH_ALLOWED_RETURN_ORIGINS", "https://app.example.com, http://localhost:3000")]).unwrap();
        assert_eq!(ok.allowed_return_origins.len(), 2);
        let error = load(&[("OAUTH_ALLOWED_RETURN_ORIGINS", "https://app.example.com/path")]).unwrap_err();
        assert_eq!(error.setting, "OAUTH_ALLOWED_RETURN_ORIGINS");
    }
}

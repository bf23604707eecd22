//! Settings: `config/default.toml` (compiled in), an optional operator file, then the environment.
//!
//! A missing or malformed required setting stops start-up with one line naming it. Secrets are
//! held as `SecretString` so `Debug` prints `[REDACTED]`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::auth::ServiceKeys;
use crate::crypto::KeyRing;

const DEFAULTS: &str = include_str!("../config/default.toml");

/// A setting that is missing or malformed: `setting` names it, `problem` says what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

fn invalid(setting: &'static str, problem: impl Into<String>) -> ConfigError {
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
}

/// Limits of the HTTP server and of the provider client.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub request_timeout_seconds: u64,
    pub body_limit_bytes: usize,
    pub provider_timeout_seconds: u64,
}

/// Settings of the authorization flow.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSettings {
    pub state_ttl_seconds: u64,
}

/// Settings of the background refresher.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshSettings {
    pub interval_seconds: u64,
    pub lead_seconds: u64,
    pub concurrency: usize,
}

/// The whole configuration, loaded once at start-up.
#[derive(Debug)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub public_base_url: Url,
    pub database_url: SecretString,
    pub database_kind: DatabaseKind,
    pub database_max_connections: u32,
    pub data_dir: PathBuf,
    pub jwt_secret: SecretString,
    pub encryption_keys: SecretString,
    pub service_keys: ServiceKeys,
    pub providers_file: Option<PathBuf>,
    pub allowed_return_origins: Vec<url::Origin>,
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
    /// Settings that were generated into the data directory because they were missing (dev only).
    pub generated_secrets: Vec<&'static str>,
}

impl Config {
    /// Loads from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
    }

    /// Loads with `lookup` standing in for the environment (tests use a map).
    pub fn load(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let file = read_file_settings(lookup("OAUTH_CONFIG_FILE").as_deref())?;

        let port = match lookup("PORT") {
            Some(port) => port.parse().map_err(|_| invalid("PORT", format!("{port:?} is not a port number")))?,
            None => file.port,
        };
        let host = match lookup("HOST") {
            Some(host) => host.parse().map_err(|_| invalid("HOST", format!("{host:?} is not an IP address")))?,
            None => file.host,
        };
        let data_dir = lookup("OAUTH_DATA_DIR").map(PathBuf::from).unwrap_or(file.data_dir);

        let database_url = lookup("DATABASE_URL")
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", data_dir.join("oauth-manager.db").display()));
        let database_kind = if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            DatabaseKind::Postgres
        } else if database_url.starts_with("sqlite:") {
            DatabaseKind::Sqlite
        } else {
            return Err(invalid("DATABASE_URL", "must start with postgres://, postgresql:// or sqlite:"));
        };
        let database_max_connections = match lookup("DATABASE_MAX_CONNECTIONS") {
            Some(value) => value
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid("DATABASE_MAX_CONNECTIONS", "must be a positive integer"))?,
            None => file.database_max_connections,
        };

        let public_base_url = lookup("PUBLIC_BASE_URL").unwrap_or_else(|| format!("http://localhost:{port}"));
        let public_base_url = Url::parse(public_base_url.trim_end_matches('/'))
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .ok_or_else(|| invalid("PUBLIC_BASE_URL", "must be an absolute http(s) URL"))?;

        // Secrets: from the environment; with the embedded SQLite default only, generated once.
        let mut dev_secrets = DevSecrets::new(&data_dir, database_kind == DatabaseKind::Sqlite);
        let jwt_secret = dev_secrets.get_or_generate(lookup, "JWT_SECRET_KEY", || crate::crypto::random_token(32))?;
        let encryption_keys = dev_secrets.get_or_generate(lookup, "OAUTH_ENCRYPTION_KEY", KeyRing::generate_key)?;
        KeyRing::parse(&encryption_keys).map_err(|error| invalid("OAUTH_ENCRYPTION_KEY", error.to_string()))?;
        let service_keys_spec = match lookup("OAUTH_SERVICE_API_KEYS") {
            Some(spec) => SecretString::from(spec),
            None if database_kind == DatabaseKind::Sqlite => {
                dev_secrets.get_or_generate(lookup, "OAUTH_SERVICE_API_KEYS", || {
                    format!("dev-service-{}", crate::crypto::random_token(24))
                })?
            }
            None => SecretString::from(String::new()),
        };
        let service_keys = ServiceKeys::parse(service_keys_spec.expose_secret())
            .map_err(|problem| invalid("OAUTH_SERVICE_API_KEYS", problem))?;

        let allowed_return_origins =
            lookup("OAUTH_ALLOWED_RETURN_ORIGINS").map(|list| parse_origins(&list)).transpose()?.unwrap_or_default();

        let sandbox = match lookup("OAUTH_SANDBOX").as_deref() {
            None => file.sandbox,
            Some("auto") => SandboxMode::Auto,
            Some("on" | "true" | "1") => SandboxMode::On,
            Some("off" | "false" | "0") => SandboxMode::Off,
            Some(other) => return Err(invalid("OAUTH_SANDBOX", format!("{other:?} is not auto, on or off"))),
        };
        let log_format = match lookup("LOG_FORMAT").as_deref() {
            None => file.log_format,
            Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(invalid("LOG_FORMAT", format!("{other:?} is not text or json"))),
        };
        let expose_tokens_to_users = match lookup("OAUTH_EXPOSE_TOKENS_TO_USERS").as_deref() {
            None => file.expose_tokens_to_users,
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(_) => return Err(invalid("OAUTH_EXPOSE_TOKENS_TO_USERS", "must be true or false")),
        };

        let browser_binding = match lookup("OAUTH_BROWSER_BINDING").as_deref() {
            None => file.browser_binding,
            Some("true" | "1" | "on") => true,
            Some("false" | "0" | "off") => false,
            Some(_) => return Err(invalid("OAUTH_BROWSER_BINDING", "must be on or off")),
        };

        let roles_source = match lookup("OAUTH_ROLES_SOURCE").as_deref() {
            None | Some("claim") => RolesSource::Claim,
            Some("database") => RolesSource::Database {
                query: lookup("OAUTH_ROLES_QUERY").unwrap_or_else(|| DEFAULT_ROLES_QUERY.to_owned()),
            },
            Some(other) => return Err(invalid("OAUTH_ROLES_SOURCE", format!("{other:?} is not claim or database"))),
        };

        Ok(Self {
            host,
            port,
            public_base_url,
            database_url: SecretString::from(database_url),
            database_kind,
            database_max_connections,
            data_dir,
            jwt_secret,
            encryption_keys,
            service_keys,
            providers_file: lookup("OAUTH_PROVIDERS_FILE").map(PathBuf::from),
            allowed_return_origins,
            sandbox,
            log_format,
            expose_tokens_to_users,
            browser_binding,
            roles_source,
            http: file.http,
            flow: file.flow,
            refresh: file.refresh,
            generated_secrets: dev_secrets.generated,
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

    /// Timeout of each provider call.
    pub fn provider_timeout(&self) -> Duration {
        Duration::from_secs(self.http.provider_timeout_seconds)
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

/// Secrets generated once into `<data_dir>/dev-secrets.toml`, only for the embedded SQLite default,
/// so that `cargo run` works on a fresh machine. With PostgreSQL a missing secret is an error.
struct DevSecrets {
    path: PathBuf,
    allowed: bool,
    stored: Option<toml::Table>,
    generated: Vec<&'static str>,
}

impl DevSecrets {
    fn new(data_dir: &Path, allowed: bool) -> Self {
        Self { path: data_dir.join("dev-secrets.toml"), allowed, stored: None, generated: Vec::new() }
    }

    fn get_or_generate(
        &mut self,
        lookup: &dyn Fn(&str) -> Option<String>,
        name: &'static str,
        generate: impl FnOnce() -> String,
    ) -> Result<SecretString, ConfigError> {
        if let Some(value) = lookup(name) {
            return Ok(SecretString::from(value));
        }
        if !self.allowed {
            return Err(invalid(name, "is required when DATABASE_URL is PostgreSQL"));
        }
        let stored = match self.stored.take() {
            Some(table) => table,
            None => self.read()?,
        };
        let mut table = stored;
        let value = match table.get(name).and_then(toml::Value::as_str) {
            Some(value) => value.to_owned(),
            None => {
                let value = generate();
                table.insert(name.to_owned(), toml::Value::String(value.clone()));
                self.write(&table).map_err(|error| {
                    invalid(
                        name,
                        format!("is not set and could not be generated into {}: {error}", self.path.display()),
                    )
                })?;
                value
            }
        };
        self.stored = Some(table);
        self.generated.push(name);
        Ok(SecretString::from(value))
    }

    fn read(&self) -> Result<toml::Table, ConfigError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|error| invalid("OAUTH_DATA_DIR", format!("{} is corrupt: {error}", self.path.display()))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(toml::Table::new()),
            Err(error) => Err(invalid("OAUTH_DATA_DIR", format!("cannot read {}: {error}", self.path.display()))),
        }
    }

    fn write(&self, table: &toml::Table) -> std::io::Result<()> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let text = format!(
            "# Development secrets generated by oauth-manager for the embedded SQLite setup.\n\
             # Never use these in production: set the environment variables instead.\n{}",
            toml::to_string(table).expect("a table of strings serialises")
        );
        let temporary = self.path.with_extension("tmp");
        write_private(&temporary, text.as_bytes())?;
        std::fs::rename(temporary, &self.path)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load(&|name| map.get(name).cloned())
    }

    fn temp_dir() -> String {
        std::env::temp_dir().join(format!("oam-config-{}", crate::crypto::random_token(6))).display().to_string()
    }

    #[test]
    fn postgres_without_a_jwt_secret_names_the_setting() {
        let error = load(&[("DATABASE_URL", "postgres://localhost/db")]).unwrap_err();
        assert_eq!(error.setting, "JWT_SECRET_KEY");
    }

    #[test]
    fn postgres_without_an_encryption_key_names_the_setting() {
        let error = load(&[("DATABASE_URL", "postgres://localhost/db"), ("JWT_SECRET_KEY", "x")]).unwrap_err();
        assert_eq!(error.setting, "OAUTH_ENCRYPTION_KEY");
    }

    #[test]
    fn a_malformed_encryption_key_is_refused_without_echoing_it() {
        let error = load(&[
            ("DATABASE_URL", "postgres://localhost/db"),
            ("JWT_SECRET_KEY", "x"),
            ("OAUTH_ENCRYPTION_KEY", "hunter2"),
        ])
        .unwrap_err();
        assert_eq!(error.setting, "OAUTH_ENCRYPTION_KEY");
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn a_bad_port_and_database_url_are_named() {
        assert_eq!(load(&[("PORT", "eighty")]).unwrap_err().setting, "PORT");
        assert_eq!(load(&[("DATABASE_URL", "mysql://x")]).unwrap_err().setting, "DATABASE_URL");
    }

    #[test]
    fn sqlite_default_generates_secrets_once_and_reuses_them() {
        let dir = temp_dir();
        let first = load(&[("OAUTH_DATA_DIR", &dir)]).unwrap();
        let second = load(&[("OAUTH_DATA_DIR", &dir)]).unwrap();
        assert_eq!(first.database_kind, DatabaseKind::Sqlite);
        assert_eq!(first.port, 8000);
        assert!(first.generated_secrets.contains(&"OAUTH_ENCRYPTION_KEY"));
        assert_eq!(first.encryption_keys.expose_secret(), second.encryption_keys.expose_secret());
        assert_eq!(first.jwt_secret.expose_secret(), second.jwt_secret.expose_secret());
        assert!(!format!("{first:?}").contains(first.jwt_secret.expose_secret()));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn return_origins_must_be_bare_origins() {
        let dir = temp_dir();
        let ok = load(&[
            ("OAUTH_DATA_DIR", &dir),
            ("OAUTH_ALLOWED_RETURN_ORIGINS", "https://app.example.com, http://localhost:3000"),
        ])
        .unwrap();
        assert_eq!(ok.allowed_return_origins.len(), 2);
        let error = load(&[("OAUTH_DATA_DIR", &dir), ("OAUTH_ALLOWED_RETURN_ORIGINS", "https://app.example.com/path")])
            .unwrap_err();
        assert_eq!(error.setting, "OAUTH_ALLOWED_RETURN_ORIGINS");
        std::fs::remove_dir_all(dir).ok();
    }
}

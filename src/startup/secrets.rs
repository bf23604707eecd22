//! The secrets, checked once at start-up: the JWT secret, the key ring and the service keys.
//!
//! With the embedded SQLite default only, a missing secret is generated once into
//! `<data dir>/dev-secrets.toml` (mode 0600), so `cargo run` works on a fresh machine; with
//! PostgreSQL a missing JWT secret or encryption key stops start-up naming it.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use crate::auth::ServiceKeys;
use crate::config::{Config, ConfigError, DatabaseKind, invalid};
use crate::crypto::{KeyRing, random_token};

/// The checked secrets.
pub struct Secrets {
    pub jwt_secret: SecretString,
    pub keys: KeyRing,
    pub service_keys: ServiceKeys,
    /// The service key when it was generated here (`demo-credentials` prints it).
    pub generated_service_key: Option<SecretString>,
    /// The settings that were generated because they were not set (development only).
    pub generated: Vec<&'static str>,
    /// Where generated secrets are kept.
    pub file: PathBuf,
}

impl Secrets {
    /// Checks the secrets of `config`, generating missing ones for the embedded SQLite default.
    pub fn resolve(config: &Config) -> Result<Self, ConfigError> {
        let mut development = DevSecrets::new(&config.data_dir, config.database.kind == DatabaseKind::Sqlite);
        let given = &config.secrets;
        let jwt_secret = development.get_or_generate(&given.jwt_secret, "JWT_SECRET_KEY", || random_token(32))?;
        let encryption_keys =
            development.get_or_generate(&given.encryption_keys, "OAUTH_ENCRYPTION_KEY", KeyRing::generate_key)?;
        let keys =
            KeyRing::parse(&encryption_keys).map_err(|error| invalid("OAUTH_ENCRYPTION_KEY", error.to_string()))?;
        let (service_keys_spec, generated_service_key) = match &given.service_api_keys {
            Some(spec) => (spec.clone(), None),
            None if config.database.kind == DatabaseKind::Sqlite => {
                let generated = development
                    .get_or_generate(&None, "OAUTH_SERVICE_API_KEYS", || format!("dev-service-{}", random_token(24)))?;
                (generated.clone(), Some(generated))
            }
            // No key: the token endpoints refuse every backend.
            None => (SecretString::from(String::new()), None),
        };
        let service_keys = ServiceKeys::parse(service_keys_spec.expose_secret())
            .map_err(|problem| invalid("OAUTH_SERVICE_API_KEYS", problem))?;
        Ok(Self {
            jwt_secret,
            keys,
            service_keys,
            generated_service_key,
            generated: development.generated,
            file: development.path,
        })
    }
}

/// Secrets generated once into `<data_dir>/dev-secrets.toml`, only for the embedded SQLite default.
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

    /// `given` when set; otherwise the stored or a newly generated value (SQLite only).
    fn get_or_generate(
        &mut self,
        given: &Option<SecretString>,
        name: &'static str,
        generate: impl FnOnce() -> String,
    ) -> Result<SecretString, ConfigError> {
        if let Some(value) = given {
            return Ok(value.clone());
        }
        if !self.allowed {
            return Err(invalid(name, "is required when DATABASE_URL is PostgreSQL"));
        }
        let mut table = match self.stored.take() {
            Some(table) => table,
            None => self.read()?,
        };
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

    fn resolve(pairs: &[(&str, &str)]) -> Result<Secrets, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Secrets::resolve(&Config::load(&|name| map.get(name).cloned())?)
    }

    fn temp_dir() -> String {
        std::env::temp_dir().join(format!("oam-config-{}", random_token(6))).display().to_string()
    }

    #[test]
    fn postgres_without_a_jwt_secret_names_the_setting() {
        let error = resolve(&[("DATABASE_URL", "postgres://localhost/db")]).err().unwrap();
        assert_eq!(error.setting, "JWT_SECRET_KEY");
    }

    #[test]
    fn postgres_without_an_encryption_key_names_the_setting() {
        let error = resolve(&[("DATABASE_URL", "postgres://localhost/db"), ("JWT_SECRET_KEY", "x")]).err().unwrap();
        assert_eq!(error.setting, "OAUTH_ENCRYPTION_KEY");
    }

    #[test]
    fn a_malformed_encryption_key_is_refused_without_echoing_it() {
        let error = resolve(&[
            ("DATABASE_URL", "postgres://localhost/db"),
            ("JWT_SECRET_KEY", "x"),
            ("OAUTH_ENCRYPTION_KEY", "hunter2"),
        ])
        .err()
        .unwrap();
        assert_eq!(error.setting, "OAUTH_ENCRYPTION_KEY");
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn sqlite_default_generates_secrets_once_and_reuses_them() {
        let dir = temp_dir();
        let first = resolve(&[("OAUTH_DATA_DIR", &dir)]).unwrap();
        let second = resolve(&[("OAUTH_DATA_DIR", &dir)]).unwrap();
        assert!(first.generated.contains(&"OAUTH_ENCRYPTION_KEY"));
        let sealed = first.keys.encrypt("secret", &crate::crypto::Aad::code_verifier("row"));
        assert_eq!(
            second.keys.decrypt(&sealed, &crate::crypto::Aad::code_verifier("row")).unwrap().expose_secret(),
            "secret",
            "the same encryption key both times"
        );
        assert_eq!(first.jwt_secret.expose_secret(), second.jwt_secret.expose_secret());
        assert!(!format!("{:?}", first.jwt_secret).contains(first.jwt_secret.expose_secret()));
        std::fs::remove_dir_all(dir).unwrap();
    }
}

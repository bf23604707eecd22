//! SQLite, the embedded database: one process owns the file, so the refresh lock is in-process
//! and write transactions start `IMMEDIATE` (no lock upgrades, so no upgrade deadlocks); arrays
//! and JSON are JSON text, INET is text, timestamps UTC text.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::types::Json;
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::codecs::{CarriedBy, IpAddress, JsonDoc, Scopes};
use super::dialect::{BackgroundTask, Dialect, RefreshHold};
use super::token_cache::{TokenCache, TokenChange};
use super::{DatabaseKind, KeyedLocks, StoreResult};

fn connect_options(url: &str) -> anyhow::Result<SqliteConnectOptions> {
    SqliteConnectOptions::from_str(url)
        .map_err(|error| anyhow::anyhow!("DATABASE_URL is not a valid SQLite URL: {error}"))
}

impl Dialect for Sqlite {
    const KIND: DatabaseKind = DatabaseKind::Sqlite;
    type RefreshLocks = Arc<KeyedLocks>;
    // No row locks: `BEGIN IMMEDIATE` already holds the database's only write lock.
    const LOCK_FOR_REVOKE: &'static str =
        "SELECT user_id, provider, status, scopes FROM oauth_integrations WHERE id = $1";
    // One process owns the file, and the write transaction serialises claims anyway.
    const CLAIM_WEBHOOKS: &'static str = "UPDATE oam_webhook_outbox SET next_attempt_at = $2
             WHERE id IN (SELECT id FROM oam_webhook_outbox
                          WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1
                          ORDER BY next_attempt_at, id LIMIT $3)
             RETURNING id, endpoint, event_id, event_type, payload, attempts";
    const LOCK_FOR_ERASE: &'static str =
        "SELECT id, user_id, provider, status FROM oauth_integrations WHERE user_id = $1 ORDER BY id";
    const LOCK_STATE_FOR_CONNECT: &'static str = "SELECT id FROM oauth_state WHERE id = $1";
    const LOCK_FOR_CONNECT: &'static str =
        "SELECT provider_user_id FROM oauth_integrations WHERE user_id = $1 AND provider = $2";
    const LOCK_FOR_REFRESH_OUTCOME: &'static str = "SELECT status FROM oauth_integrations WHERE id = $1";
    const LOCK_FOR_USAGE: &'static str = "SELECT id FROM oauth_integrations WHERE id = $1";

    async fn probe(url: &str) -> anyhow::Result<String> {
        use sqlx::Connection;
        let options = connect_options(url)?.read_only(true);
        let file = options.get_filename().to_owned();
        if !file.exists() {
            return Ok(format!("SQLite file {} (created on first start)", file.display()));
        }
        let connection = sqlx::SqliteConnection::connect_with(&options)
            .await
            .map_err(|error| anyhow::anyhow!("opening {}: {error}", file.display()))?;
        connection.close().await.ok();
        Ok(format!("SQLite file {}", file.display()))
    }

    async fn connect(url: &str, max_connections: u32) -> anyhow::Result<SqlitePool> {
        let options = connect_options(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let file = options.get_filename();
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|error| anyhow::anyhow!("creating {}: {error}", parent.display()))?;
        }
        create_private(file).map_err(|error| anyhow::anyhow!("creating {}: {error}", file.display()))?;
        SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|error| anyhow::anyhow!("opening SQLite database: {error}"))
    }

    async fn begin_write(pool: &SqlitePool) -> sqlx::Result<Transaction<'static, Sqlite>> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    fn refresh_writer_pool(_pool: &SqlitePool, _connections: u32) -> Option<SqlitePool> {
        None
    }

    fn refresh_locks(_pool: &SqlitePool) -> Arc<KeyedLocks> {
        Arc::default()
    }

    async fn hold_for_refresh(locks: &Arc<KeyedLocks>, id: i32) -> StoreResult<RefreshHold> {
        // One process owns the file: an in-process lock is the whole lock.
        Ok(RefreshHold(Box::new(locks.lock(id).await)))
    }

    async fn notify_change(_tx: &mut Transaction<'static, Sqlite>, _change: &TokenChange) -> StoreResult<()> {
        // One process owns the file: its own invalidation after the commit is all there is.
        Ok(())
    }

    fn watch_changes(_pool: &SqlitePool, cache: Arc<TokenCache>) -> Option<BackgroundTask> {
        cache.go_live();
        None
    }

    async fn lock_usage(_tx: &mut Transaction<'static, Sqlite>, _id: i32) -> StoreResult<()> {
        // The IMMEDIATE transaction holds the only write lock there is.
        Ok(())
    }

    async fn migrate(pool: &SqlitePool) -> anyhow::Result<()> {
        sqlx::migrate!("./migrations/sqlite").run(pool).await?;
        Ok(())
    }

    async fn allow_custom_providers(_pool: &SqlitePool) -> anyhow::Result<()> {
        // SQLite cannot drop a CHECK constraint without rebuilding every table; the embedded
        // store is for trying the service, so it keeps the four built-ins.
        anyhow::bail!("custom providers need PostgreSQL: SQLite cannot relax the schema's provider constraints")
    }
}

/// Creates the database file readable by its owner only (SQLite gives its `-wal` and `-shm` files
/// the same mode): it holds ciphertexts, audit data and e-mail addresses.
fn create_private(file: &std::path::Path) -> std::io::Result<()> {
    if file.as_os_str().is_empty() || file == std::path::Path::new(":memory:") {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

impl CarriedBy<Sqlite> for Scopes {
    type Carrier = Json<Vec<String>>;
    fn to_carrier(&self) -> Json<Vec<String>> {
        Json(self.0.clone())
    }
    fn from_carrier(scopes: Json<Vec<String>>) -> Result<Self, BoxDynError> {
        Ok(Self(scopes.0))
    }
}

impl CarriedBy<Sqlite> for JsonDoc {
    type Carrier = Json<Value>;
    fn to_carrier(&self) -> Json<Value> {
        Json(self.0.clone())
    }
    fn from_carrier(document: Json<Value>) -> Result<Self, BoxDynError> {
        Ok(Self(document.0))
    }
}

impl CarriedBy<Sqlite> for IpAddress {
    type Carrier = String;
    fn to_carrier(&self) -> String {
        self.0.to_string()
    }
    fn from_carrier(text: String) -> Result<Self, BoxDynError> {
        Ok(Self(text.parse()?))
    }
}

//! All SQL lives here: one `Store` trait, a PostgreSQL and a SQLite implementation.
//!
//! The trait is deliberately "dumb": it reads and writes rows, each write in one explicit
//! transaction; every decision (what to refresh, who may see what) is made above it, so the two
//! backends cannot drift apart in behaviour.

mod locks;
mod models;
mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use secrecy::ExposeSecret;

pub use locks::KeyedLocks;
pub use models::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::config::{Config, DatabaseKind};

/// What can go wrong in the store, with constraint violations mapped to meaning.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A foreign key to `users(id)` failed: the caller's user does not exist in this database.
    #[error("user does not exist")]
    UnknownUser,
    /// A provider CHECK constraint failed: the provider is not allowed by the schema.
    #[error("provider is not allowed by the database schema")]
    ProviderNotAllowed,
    /// The row the operation needs is gone.
    #[error("not found")]
    NotFound,
    /// A lock could not be had in time, or the database broke a deadlock: retry later.
    #[error("the database is busy")]
    Busy,
    /// Any other database failure.
    #[error(transparent)]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &error {
            // PostgreSQL lock_not_available (lock_timeout) and deadlock_detected.
            if matches!(db.code().as_deref(), Some("55P03" | "40P01")) {
                return Self::Busy;
            }
            let constraint = db.constraint().unwrap_or_default();
            match db.kind() {
                // PostgreSQL names the constraint; SQLite does not, and the only foreign keys our
                // writes can break there point at users (integration rows are written first).
                sqlx::error::ErrorKind::ForeignKeyViolation
                    if constraint.is_empty() || constraint.ends_with("user_id_fkey") =>
                {
                    return Self::UnknownUser;
                }
                sqlx::error::ErrorKind::CheckViolation
                    if constraint.is_empty() || constraint.ends_with("provider_check") =>
                {
                    return Self::ProviderNotAllowed;
                }
                _ => {}
            }
        }
        Self::Database(error)
    }
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Persistence of integrations, tokens, states, consents, audit and scopes.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which database this is.
    fn kind(&self) -> DatabaseKind;
    /// Round trip to the database (readiness).
    async fn ping(&self) -> StoreResult<()>;
    /// Creates the tables where they are missing (see `migrations/`).
    async fn migrate(&self) -> anyhow::Result<()>;
    /// The explicit opt-in that lets providers beyond the four built-ins be stored (relaxes the
    /// schema's provider CHECK constraints). PostgreSQL only.
    async fn allow_custom_providers(&self) -> anyhow::Result<()>;

    /// Inserts a `users` row. The host application owns users: this is for the sandbox and tests.
    async fn create_user(&self, email: &str) -> StoreResult<i32>;
    /// The id of the user with this e-mail, if any.
    async fn find_user(&self, email: &str) -> StoreResult<Option<i32>>;

    /// Role names of a user, from the host application's tables with the operator's `query`.
    async fn user_roles(&self, user_id: i32, query: &str) -> StoreResult<Vec<String>>;

    /// Upserts a provider's scope catalogue into `oauth_scopes`.
    async fn seed_scopes(&self, provider: &str, scopes: &[ScopeEntry]) -> StoreResult<()>;
    /// A provider's scope catalogue as stored.
    async fn list_scopes(&self, provider: &str) -> StoreResult<Vec<ScopeEntry>>;

    /// Records a new authorization state.
    async fn insert_state(&self, state: &NewState) -> StoreResult<()>;
    /// Looks a state up by the hash of its value (used or not, expired or not).
    async fn find_state(&self, state_hash: &str) -> StoreResult<Option<StateRecord>>;
    /// Marks a state used; `false` when it was already used or has expired (single use).
    async fn consume_state(&self, id: i32, now: NaiveDateTime) -> StoreResult<bool>;
    /// Deletes states that expired before `cutoff`; returns how many.
    async fn delete_expired_states(&self, cutoff: NaiveDateTime) -> StoreResult<u64>;

    /// Upserts the integration on `(user_id, provider)` as active, stores its tokens and writes the
    /// consent and `connect` audit rows, all in one transaction.
    async fn complete_connect(&self, record: &ConnectRecord) -> StoreResult<Integration>;
    /// One integration by id.
    async fn get_integration(&self, id: i32) -> StoreResult<Option<Integration>>;
    /// A user's integrations, oldest first.
    async fn list_integrations(&self, user_id: i32, filter: &IntegrationFilter) -> StoreResult<Vec<Integration>>;

    /// The token of an integration (the hot path: one indexed read).
    async fn get_token(&self, integration_id: i32) -> StoreResult<Option<StoredToken>>;
    /// The token of a user's integration with a provider.
    async fn find_token_by_owner(&self, user_id: i32, provider: &str) -> StoreResult<Option<StoredToken>>;
    /// `usage_count` and `last_used_at` of an integration's token.
    async fn token_usage(&self, integration_id: i32) -> StoreResult<Option<(i32, Option<NaiveDateTime>)>>;
    /// Runs `decide` while holding the integration's refresh lock (across processes on
    /// PostgreSQL), then applies its decision and the audit row in the same transaction, so a
    /// rotated refresh token is stored with the refresh that produced it.
    async fn refresh_locked(
        &self,
        integration_id: i32,
        audit: RefreshAudit,
        decide: RefreshFn,
    ) -> StoreResult<RefreshStep>;
    /// Active integrations with a refresh token whose access token expires before `cutoff`.
    async fn integrations_expiring_before(&self, cutoff: NaiveDateTime, limit: i64) -> StoreResult<Vec<i32>>;

    /// Deletes the token row, marks the integration revoked, revokes its consents and writes the
    /// `revoke` and `disconnect` audit rows. `false` when it was already revoked (nothing written).
    async fn revoke_integration(&self, id: i32, record: &RevokeRecord) -> StoreResult<bool>;

    /// Writes one audit row on its own.
    async fn record_audit(&self, entry: &AuditEntry) -> StoreResult<()>;
    /// Audit rows, newest first.
    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;
    /// A user's consent records, newest first.
    async fn list_consents(&self, user_id: i32) -> StoreResult<Vec<Consent>>;
    /// Counts of a user's integrations and consents.
    async fn status_counts(&self, user_id: i32) -> StoreResult<StatusCounts>;

    /// Adds token hand-outs to `usage_count`/`last_used_at` (saturating at the INTEGER maximum) and
    /// folds them into at most one `api_call` audit row per integration and minute.
    async fn flush_usage(&self, deltas: &[UsageDelta]) -> StoreResult<()>;
}

/// Opens the configured database.
pub async fn connect(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = config.database_url.expose_secret();
    Ok(match config.database_kind {
        DatabaseKind::Postgres => Arc::new(PgStore::connect(url, config.database_max_connections).await?),
        DatabaseKind::Sqlite => Arc::new(SqliteStore::connect(url, config.database_max_connections).await?),
    })
}

/// `count` as an `INTEGER` increment: the column saturates instead of overflowing.
fn saturating_i32(count: u64) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

/// The `details` of an `api_call` row after adding `delta` to what it held.
fn merged_usage_details(existing: Option<&serde_json::Value>, delta: &UsageDelta) -> serde_json::Value {
    let previous = existing.and_then(|details| details.get("hand_outs")).and_then(|v| v.as_u64()).unwrap_or(0);
    let first_at = existing
        .and_then(|details| details.get("first_at"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| delta.first_at.and_utc().to_rfc3339());
    serde_json::json!({
        "hand_outs": previous.saturating_add(delta.count),
        "first_at": first_at,
        "last_at": delta.last_at.and_utc().to_rfc3339(),
    })
}

/// What a revocation record writes into the `revoke` audit row.
fn revocation_audit(outcome: &ProviderRevocation) -> (bool, Option<String>, serde_json::Value) {
    match outcome {
        ProviderRevocation::Revoked => (true, None, serde_json::json!({"provider_revocation": "revoked"})),
        ProviderRevocation::NotSupported => (true, None, serde_json::json!({"provider_revocation": "not_supported"})),
        ProviderRevocation::NothingToRevoke => {
            (true, None, serde_json::json!({"provider_revocation": "nothing_to_revoke"}))
        }
        ProviderRevocation::Failed(message) => {
            (false, Some(message.clone()), serde_json::json!({"provider_revocation": "failed"}))
        }
    }
}

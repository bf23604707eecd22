//! All SQL: the `Store` the rest of the service uses, written once over two thin dialects.
//!
//! `sql_store` holds every operation and every rule of the store (one text of SQL in `sql`, typed
//! rows in `rows`), generic over the database. `postgres` and `sqlite` hold only what truly
//! differs: how a refresh holds its integration, row locks, column codecs and migrations. The
//! trait stays "dumb": it reads and writes rows, each write in one explicit transaction; what to
//! refresh and who may see what is decided above it.

mod advisory_locks;
mod change_feed;
mod codecs;
mod dialect;
mod locks;
mod models;
mod postgres;
mod rows;
mod rules;
mod sql;
mod sql_store;
mod sqlite;
mod token_cache;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDateTime;

pub use locks::KeyedLocks;
pub use models::*;
pub use sql_store::{PgStore, SqlStore, SqliteStore};
pub use token_cache::{TokenCacheLimits, TokenCacheState, TokenChange};

use crate::config::DatabaseKind;

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
    /// The database cannot be reached (restarting, the connection broke, no connection free in
    /// time): retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// Any other database failure.
    #[error(transparent)]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if matches!(error, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) {
            return Self::Unavailable(error);
        }
        if let sqlx::Error::Database(db) = &error {
            // PostgreSQL: connection exceptions (class 08), and the server shutting down or
            // restarting (admin_shutdown, crash_shutdown, cannot_connect_now).
            let lost = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some()
                && db
                    .code()
                    .is_some_and(|code| code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03"));
            if lost {
                return Self::Unavailable(error);
            }
            let code = db.code();
            // SQLite's BUSY and LOCKED (its extended codes keep the primary code in the low byte);
            // only SQLite's codes are numbers of that kind (PostgreSQL's 22021 is not a BUSY).
            let sqlite_busy = db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                && code.as_deref().and_then(|code| code.parse::<i32>().ok()).is_some_and(|code| {
                    matches!(code & 0xff, 5 | 6) // SQLITE_BUSY, SQLITE_LOCKED
                });
            // PostgreSQL lock_not_available (lock_timeout) and deadlock_detected.
            let postgres_busy = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some()
                && matches!(code.as_deref(), Some("55P03" | "40P01"));
            if sqlite_busy || postgres_busy {
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

impl StoreError {
    /// Whether the same operation may succeed later (a lock, a deadlock, the database away).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Busy | Self::Unavailable(_))
    }

    /// The stable code callers are told.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownUser => "unknown_user",
            Self::ProviderNotAllowed => "provider_not_allowed",
            Self::NotFound => "not_found",
            Self::Busy => "busy",
            Self::Unavailable(_) => "database_unavailable",
            Self::Database(_) => "internal_error",
        }
    }

    /// What callers may be told: never SQL, never a value.
    pub fn public_detail(&self) -> &'static str {
        match self {
            Self::UnknownUser => "Your user account does not exist in this service's database; ask an administrator.",
            Self::ProviderNotAllowed => {
                "The database schema does not allow this provider; an operator must run the opt-in migration."
            }
            Self::NotFound => "Integration not found",
            Self::Busy => "Another operation on this connection is in progress; try again shortly.",
            Self::Unavailable(_) => "The database is not reachable; try again shortly.",
            Self::Database(_) => "internal error",
        }
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
    /// How many refresh outcomes may be written at once (`RefreshTx::commit`).
    fn refresh_write_slots(&self) -> u32;
    /// Whether hand-outs are served from the token cache now.
    fn token_cache(&self) -> TokenCacheState;
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
    /// How many unused states of `user_id` have not expired at `now`, and when the first of them
    /// expires.
    async fn open_states(&self, user_id: i32, now: NaiveDateTime) -> StoreResult<(i64, Option<NaiveDateTime>)>;
    /// Replaces state `id`'s metadata with `claimed` and its expiry with `expires_at` if it is
    /// unused and its metadata is still `read`: whether this call won (`flow::hand_off`).
    async fn claim_handoff(
        &self,
        id: i32,
        read: &serde_json::Value,
        claimed: &serde_json::Value,
        expires_at: NaiveDateTime,
    ) -> StoreResult<bool>;
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
    /// Takes the integration's refresh lock (across processes on PostgreSQL) and reads its token
    /// as it stands under the lock. The caller talks to the provider while holding it, then
    /// commits the outcome, so a rotated refresh token is stored with the refresh that produced
    /// it. Dropping the refresh without committing releases the lock and writes nothing.
    async fn begin_refresh(&self, integration_id: i32) -> StoreResult<Box<dyn RefreshTx>>;
    /// Active integrations with a refresh token whose access token expires before `cutoff` and
    /// that were handed out since `used_since` (`None`: used or not).
    async fn integrations_expiring_before(
        &self,
        cutoff: NaiveDateTime,
        used_since: Option<NaiveDateTime>,
        limit: i64,
    ) -> StoreResult<Vec<i32>>;
    /// Active integrations of `provider` with a refresh token not renewed since `before`.
    async fn integrations_unrenewed_since(
        &self,
        provider: &str,
        before: NaiveDateTime,
        limit: i64,
    ) -> StoreResult<Vec<i32>>;

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
    /// Deletes every row of `user_id` from the `oauth_*` tables in one transaction (the `users`
    /// row stays: it is the host application's), telling every replica's token cache; `None`
    /// (nothing deleted) when an integration of theirs is not revoked (connected again since it
    /// was disconnected): disconnect it and try again.
    async fn erase_user(&self, user_id: i32) -> StoreResult<Option<ErasedRows>>;
    /// Queues webhook deliveries, each due at once.
    async fn enqueue_webhooks(&self, deliveries: &[NewWebhook]) -> StoreResult<()>;
    /// Up to `limit` deliveries due at `now`, leased to this process until `lease_until` (another
    /// replica takes one over only if this one has not finished it by then).
    async fn claim_webhooks(
        &self,
        now: NaiveDateTime,
        lease_until: NaiveDateTime,
        limit: i64,
    ) -> StoreResult<Vec<WebhookDelivery>>;
    /// Deletes deliveries done with before `cutoff`; how many.
    async fn purge_webhooks(&self, cutoff: NaiveDateTime) -> StoreResult<u64>;
    /// Delivery `id` succeeded at `now`.
    async fn webhook_delivered(&self, id: i64, now: NaiveDateTime) -> StoreResult<()>;
    /// Delivery `id` failed (`attempts` made in all): tried again at `retry_at`, or given up at
    /// `now` when there is none.
    async fn webhook_failed(
        &self,
        id: i64,
        attempts: i32,
        error: &str,
        retry_at: Option<NaiveDateTime>,
        now: NaiveDateTime,
    ) -> StoreResult<()>;
    /// Every user's integrations: (provider, status, count).
    async fn count_integrations(&self) -> StoreResult<Vec<(String, String, i64)>>;

    /// Token rows after `after` holding a value not encrypted under `key_id`, oldest first.
    async fn tokens_not_under(&self, key_id: &str, after: i32, limit: i64) -> StoreResult<Vec<TokenSecrets>>;
    /// Replaces a token row's ciphertexts, unless a refresh or reconnect wrote it since `old` was
    /// read (`false`: nothing written).
    async fn reencrypt_token(&self, old: &TokenSecrets, access: &str, refresh: Option<&str>) -> StoreResult<bool>;
    /// Unused states after `after` whose verifier is not encrypted under `key_id`.
    async fn verifiers_not_under(&self, key_id: &str, after: i32, limit: i64) -> StoreResult<Vec<VerifierSecret>>;
    /// Replaces a state's encrypted verifier, unless it changed since `old` was read.
    async fn reencrypt_verifier(&self, old: &VerifierSecret, verifier: &str) -> StoreResult<bool>;
    /// How many stored secrets are encrypted under `key_id` (`None`: all of them).
    async fn secrets_under(&self, key_id: Option<&str>) -> StoreResult<i64>;

    /// Adds token hand-outs to `usage_count`/`last_used_at` (saturating at the INTEGER maximum) and
    /// folds them into at most one `api_call` audit row per integration and minute.
    async fn flush_usage(&self, deltas: &[UsageDelta]) -> StoreResult<()>;
}

/// A refresh in progress: the integration's lock is held until `commit` or drop.
#[async_trait]
pub trait RefreshTx: Send {
    /// The token as stored when the lock was taken.
    fn current(&self) -> &StoredToken;
    /// Writes the outcome and its audit row (nothing for `AlreadyFresh`, and nothing when the
    /// connection was disconnected or reconnected meanwhile), then releases the lock.
    async fn commit(self: Box<Self>, step: &RefreshStep, audit: &RefreshAudit) -> StoreResult<RefreshWrite>;
}

/// How the service opens its store.
#[derive(Clone, Copy, Debug)]
pub struct StoreOptions {
    pub max_connections: u32,
    /// Connections of their own for refresh outcomes (PostgreSQL).
    pub refresh_writers: u32,
    /// A token cache within these limits; `None`: none.
    pub cache: Option<TokenCacheLimits>,
}

/// Which database `url` names, or the error that says which URLs are understood.
fn kind_of(url: &str) -> anyhow::Result<DatabaseKind> {
    DatabaseKind::of_url(url)
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL must start with postgres://, postgresql:// or sqlite:"))
}

/// What the database at `url` is, or why it cannot be reached; creates nothing.
pub async fn probe(url: &str) -> anyhow::Result<String> {
    use dialect::Dialect;
    match kind_of(url)? {
        DatabaseKind::Postgres => sqlx::Postgres::probe(url).await,
        DatabaseKind::Sqlite => sqlx::Sqlite::probe(url).await,
    }
}

/// Opens the database at `url` as `options` say.
pub async fn connect(url: &str, options: StoreOptions) -> anyhow::Result<Arc<dyn Store>> {
    fn configured<D: dialect::Dialect>(store: SqlStore<D>, options: StoreOptions) -> SqlStore<D> {
        let store = store.with_refresh_writers(options.refresh_writers);
        match options.cache {
            Some(limits) => store.with_token_cache(limits),
            None => store,
        }
    }
    let max = options.max_connections;
    Ok(match kind_of(url)? {
        DatabaseKind::Postgres => Arc::new(configured(PgStore::connect(url, max).await?, options)),
        DatabaseKind::Sqlite => Arc::new(configured(SqliteStore::connect(url, max).await?, options)),
    })
}

//! What differs between PostgreSQL and SQLite, behind the one trait the shared store is generic
//! over: connecting, how a write transaction begins, how a refresh holds its integration, the
//! row locks, and migrations. Everything else is in `sql_store`.

use std::future::Future;
use std::sync::Arc;

use sqlx::{Database, Pool, Transaction};

use super::token_cache::{TokenCache, TokenChange};
use super::{DatabaseKind, StoreResult};

/// An integration held for a refresh: released when dropped, after the outcome is written. It
/// holds no pooled connection, so refreshes waiting on providers never starve the pool.
pub struct RefreshHold(pub Box<dyn Send + Sync>);

/// A task that runs as long as its owner: aborted when dropped.
pub struct BackgroundTask(tokio::task::JoinHandle<()>);

impl BackgroundTask {
    pub fn spawn(work: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(tokio::spawn(work))
    }
}

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A database the shared store runs on.
pub trait Dialect: Database {
    /// Which database this is.
    const KIND: DatabaseKind;
    /// What serialises refreshes of one integration (in this process and, on PostgreSQL, across
    /// processes).
    type RefreshLocks: Send + Sync + 'static;
    /// Reads the integration a revoke changes (`RevokedIntegrationRow`), holding its row until
    /// the transaction ends.
    const LOCK_FOR_REVOKE: &'static str;
    /// Reads the provider account of a user's integration with a provider before a connect
    /// writes it, holding its row, so two callbacks of one user cannot both decide on it.
    const LOCK_FOR_CONNECT: &'static str;
    /// Reads an integration's status before a refresh outcome is written, holding its row.
    const LOCK_FOR_REFRESH_OUTCOME: &'static str;
    /// Reads a user's integrations (id, user, provider, status) before an erasure deletes them,
    /// holding their rows in id order.
    const LOCK_FOR_ERASE: &'static str;
    /// Reads the spent state a connect completes, holding its row: an erasure deletes the user's
    /// states first, so a connect still in flight either commits before it or finds its state gone.
    const LOCK_STATE_FOR_CONNECT: &'static str;
    /// Leases due webhook deliveries (`$1` now, `$2` lease end, `$3` how many), rows another
    /// process is leasing at the same moment skipped where the database can.
    const CLAIM_WEBHOOKS: &'static str;
    /// Takes the lock usage writes need on an integration before they touch its token row, so
    /// every writer locks the integration row first (no deadlocks).
    const LOCK_FOR_USAGE: &'static str;

    /// What the database at `url` is ("PostgreSQL 15.2"), or why it cannot be reached, without
    /// creating or changing anything (`check-config`).
    fn probe(url: &str) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// A pool of `max_connections` to the database at `url`.
    fn connect(url: &str, max_connections: u32) -> impl Future<Output = anyhow::Result<Pool<Self>>> + Send;
    /// A pool of `connections` of its own for refresh outcomes, so a storm of refreshes commits
    /// many at once (the database flushes concurrent commits together) without taking the
    /// hand-outs' connections; `None` where writes share `pool` (SQLite has one writer anyway).
    fn refresh_writer_pool(pool: &Pool<Self>, connections: u32) -> Option<Pool<Self>>;
    /// The refresh locks of the database `pool` connects to.
    fn refresh_locks(pool: &Pool<Self>) -> Self::RefreshLocks;
    /// Begins a transaction that will write.
    fn begin_write(pool: &Pool<Self>) -> impl Future<Output = sqlx::Result<Transaction<'static, Self>>> + Send;
    /// Takes integration `id`'s refresh lock, waiting (bounded) for another holder.
    fn hold_for_refresh(locks: &Self::RefreshLocks, id: i32) -> impl Future<Output = StoreResult<RefreshHold>> + Send;
    /// Tells every process on this database, once `tx` commits, that `change` happened (their
    /// token caches drop it).
    fn notify_change(
        tx: &mut Transaction<'static, Self>,
        change: &TokenChange,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Keeps `cache` live exactly while this process hears every other process's changes (with
    /// the task it returns, if it needs one).
    fn watch_changes(pool: &Pool<Self>, cache: Arc<TokenCache>) -> Option<BackgroundTask>;
    /// Serialises usage writes of integration `id` across processes, within `tx`.
    fn lock_usage(tx: &mut Transaction<'static, Self>, id: i32) -> impl Future<Output = StoreResult<()>> + Send;
    /// Creates the tables where they are missing.
    fn migrate(pool: &Pool<Self>) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Relaxes the provider CHECK constraints (the opt-in for custom providers).
    fn allow_custom_providers(pool: &Pool<Self>) -> impl Future<Output = anyhow::Result<()>> + Send;
}

//! PostgreSQL, the production database: advisory locks across replicas (session-level ones for
//! refreshes, on a connection of their own), row locks, and the column codecs (`TEXT[]`,
//! `JSONB`, `INET`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::Value;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::change_feed::{self, CHANGES_CHANNEL};
use super::codecs::{CarriedBy, IpAddress, JsonDoc, Scopes};
use super::dialect::{BackgroundTask, Dialect, RefreshHold};
use super::token_cache::{TokenCache, TokenChange};
use super::{DatabaseKind, KeyedLocks, StoreError, StoreResult};

/// Namespaces of the two-key advisory locks, so ours never collide with the host app's.
const REFRESH_LOCK: i32 = 0x6f61_7201;
const USAGE_LOCK: i32 = 0x6f61_7202;

impl Dialect for Postgres {
    const KIND: DatabaseKind = DatabaseKind::Postgres;
    type RefreshLocks = Arc<AdvisoryLocks>;
    const LOCK_FOR_REVOKE: &'static str =
        "SELECT user_id, provider, status, scopes FROM oauth_integrations WHERE id = $1 FOR UPDATE";
    const LOCK_FOR_CONNECT: &'static str =
        "SELECT provider_user_id FROM oauth_integrations WHERE user_id = $1 AND provider = $2 FOR UPDATE";
    const LOCK_FOR_REFRESH_OUTCOME: &'static str =
        "SELECT status FROM oauth_integrations WHERE id = $1 FOR NO KEY UPDATE";
    // The audit row's foreign key takes this share lock anyway; taking it first keeps the order.
    const LOCK_FOR_USAGE: &'static str = "SELECT id FROM oauth_integrations WHERE id = $1 FOR KEY SHARE";

    async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|error| anyhow::anyhow!("connecting to PostgreSQL: {error}"))
    }

    async fn begin_write(pool: &PgPool) -> sqlx::Result<Transaction<'static, Postgres>> {
        pool.begin().await
    }

    fn refresh_locks(pool: &PgPool) -> Arc<AdvisoryLocks> {
        Arc::new(AdvisoryLocks::new(pool.connect_options()))
    }

    async fn hold_for_refresh(locks: &Arc<AdvisoryLocks>, id: i32) -> StoreResult<RefreshHold> {
        Ok(RefreshHold(Box::new(locks.acquire(id).await?)))
    }

    async fn notify_change(tx: &mut Transaction<'static, Postgres>, change: &TokenChange) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)").bind(CHANGES_CHANNEL).bind(change.payload()).execute(&mut **tx).await?;
        Ok(())
    }

    fn watch_changes(pool: &PgPool, cache: Arc<TokenCache>) -> Option<BackgroundTask> {
        Some(BackgroundTask::spawn(change_feed::listen(pool.connect_options(), cache)))
    }

    async fn lock_usage(tx: &mut Transaction<'static, Postgres>, id: i32) -> StoreResult<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)").bind(USAGE_LOCK).bind(id).execute(&mut **tx).await?;
        Ok(())
    }

    async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
        sqlx::migrate!("./migrations/postgres").run(pool).await?;
        Ok(())
    }

    async fn allow_custom_providers(pool: &PgPool) -> anyhow::Result<()> {
        sqlx::raw_sql(include_str!("../../migrations/optional/postgres_custom_providers.sql")).execute(pool).await?;
        Ok(())
    }
}

/// How long a refresh waits for another process's refresh of the same integration.
const REFRESH_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Session-level advisory locks (one per integration, across every replica) held on one
/// connection of their own, outside the pool: a refresh keeps its integration locked while the
/// provider answers without keeping a pooled connection, so the number of refreshes in flight is
/// not bound by the pool. A session may take its own advisory lock twice, so an in-process lock
/// per integration comes first. Should the connection break, PostgreSQL releases its locks; a
/// refresh still in flight then finds the row written by the other one and discards its outcome
/// (`rules::refresh_outcome_applies`).
pub struct AdvisoryLocks {
    options: Arc<PgConnectOptions>,
    connection: AsyncMutex<Option<PgConnection>>,
    in_process: KeyedLocks,
}

/// An integration's advisory lock; released (in the background) when dropped.
struct AdvisoryLock {
    locks: Arc<AdvisoryLocks>,
    id: i32,
    _in_process: OwnedMutexGuard<()>,
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let (locks, id) = (self.locks.clone(), self.id);
        tokio::spawn(async move { locks.release(id).await });
    }
}

impl AdvisoryLocks {
    fn new(options: Arc<PgConnectOptions>) -> Self {
        Self { options, connection: AsyncMutex::new(None), in_process: KeyedLocks::default() }
    }

    async fn acquire(self: &Arc<Self>, id: i32) -> StoreResult<AdvisoryLock> {
        let in_process = self.in_process.lock(id).await;
        let deadline = Instant::now() + REFRESH_LOCK_WAIT;
        loop {
            if self.try_lock(id).await? {
                return Ok(AdvisoryLock { locks: self.clone(), id, _in_process: in_process });
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Busy);
            }
            // Another replica refreshes it: it takes about one provider call.
            tokio::time::sleep(Duration::from_millis(rand::random_range(10..40))).await;
        }
    }

    async fn try_lock(&self, id: i32) -> StoreResult<bool> {
        let mut connection = self.connection.lock().await;
        if connection.is_none() {
            *connection = Some(PgConnection::connect_with(&self.options).await?);
        }
        let query = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)").bind(REFRESH_LOCK).bind(id);
        let result = query.fetch_one(connection.as_mut().expect("connected above")).await;
        if result.is_err() {
            // A broken connection released its locks anyway; the next caller reconnects.
            *connection = None;
        }
        Ok(result?)
    }

    async fn release(&self, id: i32) {
        let mut connection = self.connection.lock().await;
        let Some(held) = connection.as_mut() else { return };
        let query = sqlx::query("SELECT pg_advisory_unlock($1, $2)").bind(REFRESH_LOCK).bind(id);
        if let Err(error) = query.execute(held).await {
            tracing::warn!(%error, "the refresh lock connection broke (its locks are released with it)");
            *connection = None;
        }
    }
}

impl CarriedBy<Postgres> for Scopes {
    type Carrier = Vec<String>;
    fn to_carrier(&self) -> Vec<String> {
        self.0.clone()
    }
    fn from_carrier(scopes: Vec<String>) -> Result<Self, BoxDynError> {
        Ok(Self(scopes))
    }
}

impl CarriedBy<Postgres> for JsonDoc {
    type Carrier = Value;
    fn to_carrier(&self) -> Value {
        self.0.clone()
    }
    fn from_carrier(document: Value) -> Result<Self, BoxDynError> {
        Ok(Self(document))
    }
}

impl CarriedBy<Postgres> for IpAddress {
    type Carrier = IpNet;
    fn to_carrier(&self) -> IpNet {
        IpNet::from(self.0)
    }
    /// The host address of what the column holds (`host(ip_address)`), netmask or not.
    fn from_carrier(network: IpNet) -> Result<Self, BoxDynError> {
        Ok(Self(network.addr()))
    }
}

//! PostgreSQL, the production database: advisory locks across replicas (for refreshes see
//! `advisory_locks`), row locks, change notifications, and the column codecs (`TEXT[]`, `JSONB`,
//! `INET`).

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::Value;
use sqlx::error::BoxDynError;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};

use super::advisory_locks::AdvisoryLocks;
use super::change_feed::{self, CHANGES_CHANNEL};
use super::codecs::{CarriedBy, IpAddress, JsonDoc, Scopes};
use super::dialect::{BackgroundTask, Dialect, RefreshHold};
use super::token_cache::{TokenCache, TokenChange};
use super::{DatabaseKind, StoreResult};

/// The namespace of the usage writes' two-key advisory locks, so ours never collide with the host
/// app's (the refresh locks' is `advisory_locks::REFRESH_LOCK`, 0x6f61_7201).
const USAGE_LOCK: i32 = 0x6f61_7202;
/// Connections for flow states: a state insert that does not wait for the disk takes a fraction
/// of a millisecond, so four keep up with thousands of `POST /initiate` a second.
const FLOW_STATE_CONNECTIONS: u32 = 4;

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

    fn refresh_writer_pool(pool: &PgPool, connections: u32) -> Option<PgPool> {
        let options = pool.connect_options().as_ref().clone();
        // The writes queue here rather than fail: an outcome (a rotated refresh token) must land.
        Some(
            PgPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_secs(60))
                .connect_lazy_with(options),
        )
    }

    fn flow_state_pool(pool: &PgPool) -> Option<PgPool> {
        // Only this pool's commits are asynchronous (`synchronous_commit` is per session): a
        // rotated refresh token, a connection or an audit row is never written here.
        let options = pool.connect_options().as_ref().clone().options([("synchronous_commit", "off")]);
        Some(
            PgPoolOptions::new()
                .max_connections(FLOW_STATE_CONNECTIONS)
                .acquire_timeout(pool.options().get_acquire_timeout())
                .connect_lazy_with(options),
        )
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

//! PostgreSQL, the production database: advisory locks across replicas (for refreshes see
//! `advisory_locks`), row locks, change notifications, and the column codecs (`TEXT[]`, `JSONB`,
//! `INET`).

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::Value;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};

use super::advisory_locks::AdvisoryLocks;
use super::change_feed::{self, CHANGES_CHANNEL};
use super::codecs::{CarriedBy, IpAddress, JsonDoc, Scopes};
use super::dialect::{BackgroundTask, Dialect, RefreshHold};
use super::token_cache::{TokenCache, TokenChange};
use super::{DatabaseKind, StoreResult};

/// The namespace of the usage writes' two-key advisory locks, so ours never collide with the host
/// app's (the refresh locks' is `advisory_locks::REFRESH_LOCK`, 0x6f61_7201).
const USAGE_LOCK: i32 = 0x6f61_7202;

/// How long connecting may take before start-up (or `check-config`) gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection to the server `options` name: its error says what is wrong (refused, no such
/// database, authentication), where a pool only reports that it timed out.
async fn first_connection(options: &PgConnectOptions) -> anyhow::Result<PgConnection> {
    let server = format!("PostgreSQL at {}:{}", options.get_host(), options.get_port());
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Err(_) => anyhow::bail!("connecting to {server}: no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        Ok(Err(error)) => {
            let hint = match &error {
                sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000") => {
                    "; create it (createdb) or fix DATABASE_URL"
                }
                sqlx::Error::Io(_) => "; is the server running, and is DATABASE_URL's host and port right?",
                _ => "",
            };
            anyhow::bail!("connecting to {server}: {error}{hint}")
        }
        Ok(Ok(connection)) => Ok(connection),
    }
}

fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    // The URL is not echoed: it may carry a password.
    url.parse().map_err(|_| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL"))
}

impl Dialect for Postgres {
    const KIND: DatabaseKind = DatabaseKind::Postgres;
    type RefreshLocks = Arc<AdvisoryLocks>;
    const LOCK_FOR_REVOKE: &'static str =
        "SELECT user_id, provider, status, scopes FROM oauth_integrations WHERE id = $1 FOR UPDATE";
    const CLAIM_WEBHOOKS: &'static str = "UPDATE oam_webhook_outbox SET next_attempt_at = $2
             WHERE id IN (SELECT id FROM oam_webhook_outbox
                          WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1
                          ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id, endpoint, event_id, event_type, payload, attempts";
    const LOCK_FOR_ERASE: &'static str =
        "SELECT id, user_id, provider, status FROM oauth_integrations WHERE user_id = $1 ORDER BY id FOR UPDATE";
    const LOCK_STATE_FOR_CONNECT: &'static str = "SELECT id FROM oauth_state WHERE id = $1 FOR UPDATE";
    const LOCK_FOR_CONNECT: &'static str =
        "SELECT provider_user_id FROM oauth_integrations WHERE user_id = $1 AND provider = $2 FOR UPDATE";
    const LOCK_FOR_REFRESH_OUTCOME: &'static str =
        "SELECT status FROM oauth_integrations WHERE id = $1 FOR NO KEY UPDATE";
    // The audit row's foreign key takes this share lock anyway; taking it first keeps the order.
    const LOCK_FOR_USAGE: &'static str = "SELECT id FROM oauth_integrations WHERE id = $1 FOR KEY SHARE";

    async fn probe(url: &str) -> anyhow::Result<String> {
        let mut connection = first_connection(&connect_options(url)?).await?;
        let (version,): (String,) = sqlx::query_as("SHOW server_version").fetch_one(&mut connection).await?;
        connection.close().await.ok();
        Ok(format!("PostgreSQL {version}"))
    }

    async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
        let options = connect_options(url)?;
        first_connection(&options).await?.close().await.ok();
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
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

//! PostgreSQL's refresh locks: session-level advisory locks (one per integration, across every
//! replica) held on a few connections of their own, outside the pool. A refresh keeps its
//! integration locked while the provider answers without keeping a pooled connection, so the
//! refreshes in flight are not bound by the pool.
//!
//! Every lock and unlock is a round trip on its connection, one at a time; integrations are
//! spread over `SHARDS` connections so that a storm of refreshes does not queue behind one. A
//! session may take its own advisory lock twice, so an in-process lock per integration comes
//! first. Should a connection break, PostgreSQL releases its locks; a refresh still in flight
//! then finds the row written by the other one and discards its outcome
//! (`rules::refresh_outcome_applies`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::{KeyedLocks, StoreError, StoreResult};

/// The namespace of the two-key advisory locks, so ours never collide with the host app's.
const REFRESH_LOCK: i32 = 0x6f61_7201;
/// How long a refresh waits for another process's refresh of the same integration.
const REFRESH_LOCK_WAIT: Duration = Duration::from_secs(30);
/// How long opening a shard's connection may take before the refresh answers `busy`.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// Connections holding the locks, per process.
pub const SHARDS: usize = 4;

pub struct AdvisoryLocks {
    options: Arc<PgConnectOptions>,
    shards: [AsyncMutex<Option<PgConnection>>; SHARDS],
    in_process: KeyedLocks,
}

/// An integration's advisory lock; released (in the background) when dropped.
pub struct AdvisoryLock {
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
    pub fn new(options: Arc<PgConnectOptions>) -> Self {
        Self { options, shards: Default::default(), in_process: KeyedLocks::default() }
    }

    /// Takes integration `id`'s lock, waiting up to `REFRESH_LOCK_WAIT` for another replica.
    pub async fn acquire(self: &Arc<Self>, id: i32) -> StoreResult<AdvisoryLock> {
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

    fn shard(&self, id: i32) -> &AsyncMutex<Option<PgConnection>> {
        &self.shards[id.rem_euclid(SHARDS as i32) as usize]
    }

    async fn try_lock(&self, id: i32) -> StoreResult<bool> {
        let mut connection = self.shard(id).lock().await;
        if connection.is_none() {
            // Bounded: the shard's other refreshes wait on this mutex meanwhile.
            let connect = tokio::time::timeout(CONNECT_WAIT, PgConnection::connect_with(&self.options));
            *connection = Some(connect.await.map_err(|_| StoreError::Busy)??);
        }
        let query = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)").bind(REFRESH_LOCK).bind(id);
        let result = query.fetch_one(connection.as_mut().expect("connected above")).await;
        if let Err(error) = &result
            && connection_broke(error)
        {
            // A broken connection released its locks anyway; the next caller reconnects. On any
            // other error (out of shared memory for locks, a cancelled statement) the
            // connection and the locks the shard's other refreshes hold on it are kept.
            *connection = None;
        }
        Ok(result?)
    }

    async fn release(&self, id: i32) {
        let mut connection = self.shard(id).lock().await;
        let Some(held) = connection.as_mut() else { return };
        let query = sqlx::query("SELECT pg_advisory_unlock($1, $2)").bind(REFRESH_LOCK).bind(id);
        if let Err(error) = query.execute(held).await {
            // Whatever failed, the lock must not stay held: closing the connection releases it
            // (and the shard's other locks, whose refreshes then find a changed row if another
            // replica got in meanwhile).
            tracing::warn!(%error, "releasing a refresh lock failed; its connection is closed");
            *connection = None;
        }
    }
}

/// Whether `error` means the connection itself is gone (and PostgreSQL released its locks).
fn connection_broke(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_))
}

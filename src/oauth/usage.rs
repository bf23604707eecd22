//! Token hand-outs counted in memory and written in aggregate by a background flusher: the hot
//! path never waits for a write per hand-out (README: Storage and security).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDateTime, Timelike, Utc};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::store::{Store, StoredToken, UsageDelta};

/// How often pending counts are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

struct Pending {
    user_id: i32,
    provider: String,
    count: u64,
    first_at: NaiveDateTime,
    last_at: NaiveDateTime,
}

/// At most this many (integration, minute) entries wait in memory; beyond it, during a long
/// database outage, new hand-outs are served but not counted (and the loss is logged).
const MAX_PENDING: usize = 100_000;

/// Entries per flush transaction: small enough that its row locks are held for a fraction of a
/// second.
const FLUSH_BATCH: usize = 200;
/// Flush transactions at once: each takes a pooled connection from the hand-outs meanwhile.
const FLUSH_PARALLELISM: usize = 3;

/// Hand-outs not yet written, per integration and minute.
#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<(i32, NaiveDateTime), Pending>>,
    uncounted: AtomicU64,
}

impl UsageRecorder {
    /// Counts one hand-out of `token` now.
    pub fn record(&self, token: &StoredToken) {
        let now = Utc::now().naive_utc();
        let minute = now.with_second(0).and_then(|m| m.with_nanosecond(0)).unwrap_or(now);
        let mut pending = self.pending.lock().expect("usage map poisoned");
        if pending.len() >= MAX_PENDING && !pending.contains_key(&(token.integration_id, minute)) {
            self.uncounted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let entry = pending.entry((token.integration_id, minute)).or_insert_with(|| Pending {
            user_id: token.user_id,
            provider: token.provider.clone(),
            count: 0,
            first_at: now,
            last_at: now,
        });
        entry.count = entry.count.saturating_add(1);
        entry.last_at = now;
    }

    /// Drops what is pending for `user_id` (an erased user: nothing of theirs may be written).
    pub fn forget_user(&self, user_id: i32) {
        self.pending.lock().expect("usage map poisoned").retain(|_, pending| pending.user_id != user_id);
    }

    /// How many (integration, minute) entries wait to be written.
    pub fn pending(&self) -> usize {
        self.pending.lock().expect("usage map poisoned").len()
    }

    fn take(&self) -> Vec<UsageDelta> {
        let drained = std::mem::take(&mut *self.pending.lock().expect("usage map poisoned"));
        drained
            .into_iter()
            .map(|((integration_id, minute), p)| UsageDelta {
                integration_id,
                user_id: p.user_id,
                provider: p.provider,
                minute,
                count: p.count,
                first_at: p.first_at,
                last_at: p.last_at,
            })
            .collect()
    }

    fn put_back(&self, deltas: Vec<UsageDelta>) {
        let mut pending = self.pending.lock().expect("usage map poisoned");
        for delta in deltas {
            let entry = pending.entry((delta.integration_id, delta.minute)).or_insert_with(|| Pending {
                user_id: delta.user_id,
                provider: delta.provider.clone(),
                count: 0,
                first_at: delta.first_at,
                last_at: delta.last_at,
            });
            entry.count = entry.count.saturating_add(delta.count);
            entry.first_at = entry.first_at.min(delta.first_at);
            entry.last_at = entry.last_at.max(delta.last_at);
        }
    }

    /// Writes everything pending, in batches of at most `FLUSH_BATCH` entries (one transaction
    /// each, `FLUSH_PARALLELISM` at once). An entry costs a few statements in sequence, so one
    /// transaction for everything held its locks for a minute after 40,000 integrations were
    /// handed out, and wrote a few hundred entries a second (`bench/run`).
    ///
    /// When a batch fails, each of its entries is tried alone: an entry that fails for good
    /// while others succeed cannot be written (its integration is gone) and is dropped with a
    /// warning; one that meets a busy or unreachable database, or a batch whose every entry
    /// fails, is kept for later. A commit that fails after the server committed is retried
    /// entry by entry and counted twice: the counts are an aggregate, not a ledger.
    pub async fn flush(&self, store: &dyn Store) {
        let uncounted = self.uncounted.swap(0, Ordering::Relaxed);
        if uncounted > 0 {
            tracing::warn!(
                uncounted,
                "token hand-outs not counted: too many waiting while the database was unavailable"
            );
        }
        let mut deltas = self.take();
        // Every transaction takes its locks in this one order (integration, then minute), so
        // batches running at once, here or on another replica, cannot deadlock.
        deltas.sort_by_key(|delta| (delta.integration_id, delta.minute));
        futures_util::stream::iter(deltas.chunks(FLUSH_BATCH))
            .for_each_concurrent(FLUSH_PARALLELISM, |batch| self.flush_batch(store, batch))
            .await;
    }

    async fn flush_batch(&self, store: &dyn Store, deltas: &[UsageDelta]) {
        let Err(error) = store.flush_usage(deltas).await else { return };
        tracing::warn!(error = %error, pending = deltas.len(), "usage flush failed; trying entries one by one");
        let mut failed = Vec::new();
        let mut written = 0usize;
        for delta in deltas {
            match store.flush_usage(std::slice::from_ref(delta)).await {
                Ok(()) => written += 1,
                Err(error) => failed.push((delta.clone(), error)),
            }
        }
        if written == 0 {
            self.put_back(failed.into_iter().map(|(delta, _)| delta).collect());
            return;
        }
        // A busy or unreachable database may take the entry later; any other failure means the
        // entry itself cannot be written (its integration is gone).
        let (later, lost): (Vec<_>, Vec<_>) = failed.into_iter().partition(|(_, error)| error.is_transient());
        self.put_back(later.into_iter().map(|(delta, _)| delta).collect());
        for (delta, error) in lost {
            tracing::warn!(integration_id = delta.integration_id, hand_outs = delta.count, error = %error, "usage cannot be written; dropped");
        }
    }
}

/// Flushes every `FLUSH_INTERVAL` until `shutdown` turns true, then once more.
pub async fn run_flusher(recorder: Arc<UsageRecorder>, store: Arc<dyn Store>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(FLUSH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => recorder.flush(store.as_ref()).await,
            _ = shutdown.changed() => break,
        }
    }
    recorder.flush(store.as_ref()).await;
}

//! Token hand-outs counted in memory and written in aggregate by a background flusher (CONTRACT §1:
//! never a synchronous write per hand-out).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDateTime, Timelike, Utc};
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

/// Hand-outs not yet written, per integration and minute.
#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<(i32, NaiveDateTime), Pending>>,
}

impl UsageRecorder {
    /// Counts one hand-out of `token` now.
    pub fn record(&self, token: &StoredToken) {
        let now = Utc::now().naive_utc();
        let minute = now.with_second(0).and_then(|m| m.with_nanosecond(0)).unwrap_or(now);
        let mut pending = self.pending.lock().expect("usage map poisoned");
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

    /// Writes everything pending; on failure keeps it for the next attempt (nothing is lost).
    pub async fn flush(&self, store: &dyn Store) {
        let deltas = self.take();
        if deltas.is_empty() {
            return;
        }
        if let Err(error) = store.flush_usage(&deltas).await {
            tracing::warn!(error = %error, pending = deltas.len(), "usage flush failed; will retry");
            self.put_back(deltas);
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

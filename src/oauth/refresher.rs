//! The proactive refresher: renews tokens shortly before they expire so hand-outs rarely wait,
//! with jitter (replicas do not stampede), bounded concurrency, and backoff after failures. Only
//! integrations handed out recently are renewed ahead of time (an idle one costs no provider
//! call: its next hand-out refreshes it), plus a keep-alive refresh, spread over rounds, for
//! providers whose refresh tokens die unused.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::watch;

use super::Vault;
use super::refresh::{self, RefreshError};
use crate::store::ClientInfo;

const BATCH: i64 = 200;
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Runs until `shutdown` turns true.
pub async fn run(vault: Vault, mut shutdown: watch::Receiver<bool>) {
    let settings = vault.config.refresh.clone();
    let interval = Duration::from_secs(settings.interval_seconds.max(1));
    let mut backoff: HashMap<i32, (u32, Instant)> = HashMap::new();
    loop {
        let jitter = rand::rng().random_range(0.8..1.2);
        tokio::select! {
            () = tokio::time::sleep(interval.mul_f64(jitter)) => {},
            _ = shutdown.changed() => return,
        }
        // Ask for enough rows that integrations in backoff cannot crowd out the others.
        let wanted = BATCH + backoff.len() as i64;
        let due = match due(&vault, wanted).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(error = %error, "refresher: cannot list expiring tokens");
                continue;
            }
        };
        let now = Instant::now();
        // Integrations no longer due were fixed or reconnected: forget their failures.
        backoff.retain(|id, _| due.contains(id));
        let due: Vec<i32> = due.into_iter().filter(|id| backoff.get(id).is_none_or(|(_, next)| *next <= now)).collect();
        let results: Vec<(i32, Result<(), RefreshError>)> = futures_util::stream::iter(due)
            .map(|id| {
                let vault = vault.clone();
                async move { (id, refresh_one(&vault, id).await) }
            })
            .buffer_unordered(settings.concurrency.max(1))
            .collect()
            .await;
        for (id, result) in results {
            match result {
                Ok(()) => {
                    backoff.remove(&id);
                }
                // A dead grant is marked for re-authorisation and is not picked again.
                Err(error) if error.is_dead_grant() => {
                    backoff.remove(&id);
                }
                Err(error) => {
                    let failures = backoff.get(&id).map_or(1, |(failures, _)| failures + 1);
                    // Exponential, capped and jittered, so failing integrations of many replicas
                    // do not come back together.
                    let delay = interval.saturating_mul(2u32.saturating_pow(failures)).min(MAX_BACKOFF);
                    let delay = delay.mul_f64(rand::rng().random_range(0.8..1.2));
                    tracing::warn!(integration_id = id, failures, retry_in_s = delay.as_secs(), error = %error, "proactive refresh failed");
                    backoff.insert(id, (failures, Instant::now() + delay));
                }
            }
        }
    }
}

/// The integrations to renew this round: those expiring within the lead time and handed out
/// recently, then those of providers with idle-dying refresh tokens not renewed for two thirds
/// of that time.
async fn due(vault: &Vault, wanted: i64) -> crate::store::StoreResult<Vec<i32>> {
    let settings = &vault.config.refresh;
    let now = Utc::now().naive_utc();
    let cutoff = now + chrono::Duration::seconds(settings.lead_seconds as i64);
    let used_since =
        (settings.used_within_hours > 0).then(|| now - chrono::Duration::hours(settings.used_within_hours as i64));
    let mut due = vault.store.integrations_expiring_before(cutoff, used_since, wanted).await?;
    for provider in vault.providers.iter() {
        let Some(idle_days) = provider.refresh_token_idle_days else { continue };
        let before = now - chrono::Duration::hours(i64::from(idle_days) * 24 * 2 / 3);
        for id in
            vault.store.integrations_unrenewed_since(&provider.name, before, settings.keep_alive_per_round).await?
        {
            if !due.contains(&id) {
                due.push(id);
            }
        }
    }
    Ok(due)
}

async fn refresh_one(vault: &Vault, integration_id: i32) -> Result<(), RefreshError> {
    let Some(token) = vault.store.get_token(integration_id).await? else {
        return Ok(());
    };
    refresh::refresh(vault, token, "proactive", &ClientInfo::default()).await.map(|_| ())
}

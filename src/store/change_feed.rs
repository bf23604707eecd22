//! The token cache's feed of every replica's changes on PostgreSQL: `LISTEN` on a connection of
//! its own (outside the pool, so a busy pool never delays it), and pings that prove it alive.
//!
//! A write's `NOTIFY` reaches every listening session when the write commits, so a listening
//! replica drops a changed entry within a network round trip of the commit. What it cannot hear
//! it must not cache: the cache is live only between the first notification heard after `LISTEN`
//! (a ping at the latest) and the first sign of
//! trouble (an error, a closed connection, or no message at all, not even this process's own
//! ping, for `SILENCE_LIMIT`), and going live again clears it, since changes may have been missed.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use super::dialect::BackgroundTask;
use super::token_cache::{TokenCache, TokenChange};

/// The channel of token changes.
pub const CHANGES_CHANNEL: &str = "oauth_manager_token_changes";
/// A ping's payload; every replica hears every replica's pings.
const PING: &str = "";
const PING_EVERY: Duration = Duration::from_millis(500);
/// Silence this long means the connection is dead, even if TCP has not said so yet.
const SILENCE_LIMIT: Duration = Duration::from_secs(2);
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Keeps `cache` live while listening works; runs until aborted.
pub async fn listen(options: Arc<PgConnectOptions>, cache: Arc<TokenCache>) {
    let _pinger = BackgroundTask::spawn(ping(single_connection(&options)));
    let mut failures = 0u32;
    loop {
        // A fresh pool per attempt: a dead listener's connection may take minutes to give up.
        match subscribe(&single_connection(&options)).await {
            Ok(mut listener) => {
                failures = 0;
                let why = follow(&mut listener, &cache).await;
                cache.bypass();
                tracing::warn!(
                    why,
                    "token cache off: the change listener lost the database; tokens are read from the database until it is back"
                );
            }
            Err(error) => {
                failures += 1;
                // Once, then every minute: the database being down is logged elsewhere too.
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(%error, "token cache off: cannot listen for changes");
                }
            }
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

fn single_connection(options: &PgConnectOptions) -> PgPool {
    PgPoolOptions::new().max_connections(1).acquire_timeout(SILENCE_LIMIT).connect_lazy_with(options.clone())
}

async fn subscribe(pool: &PgPool) -> sqlx::Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection must end `follow` (and clear the cache), not be replaced silently.
    listener.eager_reconnect(false);
    listener.listen(CHANGES_CHANNEL).await?;
    Ok(listener)
}

/// Applies notifications until the connection is lost; says why it ended. The cache goes live
/// at the first notification heard, not at `LISTEN`: a proxy or pooler may accept `LISTEN` and
/// never deliver anything.
async fn follow(listener: &mut PgListener, cache: &TokenCache) -> &'static str {
    let mut heard = false;
    loop {
        match tokio::time::timeout(SILENCE_LIMIT, listener.try_recv()).await {
            Ok(Ok(Some(notification))) => {
                if !heard {
                    heard = true;
                    cache.go_live();
                    tracing::info!("token cache on: hearing every replica's changes");
                }
                apply(notification.payload(), cache);
            }
            Ok(Ok(None)) => return "connection closed",
            Ok(Err(_)) => return "connection error",
            Err(_) => return "no message, not even a ping, within the silence limit",
        }
    }
}

fn apply(payload: &str, cache: &TokenCache) {
    if payload == PING {
        return;
    }
    match TokenChange::parse(payload) {
        Some(change) => cache.invalidate(&change),
        // Not ours to read (a newer version's format?): forgetting everything is always safe.
        None => cache.clear(),
    }
}

async fn ping(pool: PgPool) {
    let mut every = tokio::time::interval(PING_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // A failed ping shows as the listener's silence.
        let _ = sqlx::query("SELECT pg_notify($1, $2)").bind(CHANGES_CHANNEL).bind(PING).execute(&pool).await;
    }
}

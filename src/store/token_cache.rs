//! The hand-out cache: tokens as stored (still encrypted), so that a backend asking again for the
//! same connection's token costs no database read.
//!
//! It is safe across replicas because every write that changes what a hand-out returns (connect,
//! refresh, disconnect) does two things: inside its transaction it sends a change notification
//! (PostgreSQL `NOTIFY`, delivered to every replica when the transaction commits), and after the
//! commit, before it answers, it drops the entry here. A replica only uses its cache while it is
//! listening: until its listener is up, and whenever the listener loses the database, the cache
//! is cleared and bypassed. SQLite has one process, so the second half suffices.
//!
//! A read that misses races the writes: it may read the row just before a write commits and
//! insert it after the write's invalidation has passed. A generation counter, bumped by every
//! invalidation, settles it: an insert whose read began before the latest invalidation is not made.
//! The check and the insert happen under a shared lock that invalidations take exclusively, so
//! an invalidation cannot fall between them.
//!
//! `quick_cache` holds the entries: bounded by their bytes, sharded, no background threads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::StoredToken;

/// What a change notification names: the integration and its owner's (user, provider) slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenChange {
    pub integration_id: i32,
    pub user_id: i32,
    pub provider: String,
}

impl TokenChange {
    /// The change of `token`'s integration.
    pub fn of(token: &StoredToken) -> Self {
        Self { integration_id: token.integration_id, user_id: token.user_id, provider: token.provider.clone() }
    }

    /// The notification payload: `<integration id> <user id> <provider>`.
    pub fn payload(&self) -> String {
        format!("{} {} {}", self.integration_id, self.user_id, self.provider)
    }

    /// Reads a payload; `None` for anything else (the listener then clears the whole cache).
    pub fn parse(payload: &str) -> Option<Self> {
        let mut parts = payload.splitn(3, ' ');
        let integration_id = parts.next()?.parse().ok()?;
        let user_id = parts.next()?.parse().ok()?;
        let provider = parts.next().filter(|provider| !provider.is_empty())?.to_owned();
        Some(Self { integration_id, user_id, provider })
    }
}

/// How big and how old entries may be.
#[derive(Clone, Copy, Debug)]
pub struct TokenCacheLimits {
    pub max_bytes: u64,
    /// An entry older than this is read again: a bound on what a write the service cannot see
    /// (another program changing the tables) leaves stale.
    pub max_age: Duration,
}

#[derive(Clone)]
struct Entry {
    token: Arc<StoredToken>,
    stored_at: Instant,
}

#[derive(Clone)]
struct EntryBytes;

impl Weighter<i32, Entry> for EntryBytes {
    fn weight(&self, _: &i32, entry: &Entry) -> u64 {
        let token = &entry.token;
        let text = token.access_token.len()
            + token.refresh_token.as_ref().map_or(0, String::len)
            + token.provider.len()
            + token.token_type.len()
            + token.scope.as_ref().map_or(0, String::len);
        // Strings' own headers, the entry and the map's slot.
        (text + 192) as u64
    }
}

/// What `/readyz` reports of the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenCacheState {
    /// Turned off by the operator.
    Off,
    /// On, but not listening for changes (yet, or any more): every hand-out reads the database.
    Bypassed,
    /// Serving hand-outs.
    Live,
}

/// The cache of one process.
pub struct TokenCache {
    by_id: Cache<i32, Entry, EntryBytes>,
    /// (user, provider) to integration id, for the hand-out by owner.
    by_owner: Cache<(i32, String), i32>,
    /// Bumped by every invalidation (see the module's doc).
    generation: AtomicU64,
    /// Held shared by `insert` from its generation check to its insert, and exclusively by
    /// invalidations, so no stale entry is ever visible, not even for an instant.
    writes: RwLock<()>,
    /// Listening for other replicas' changes; off, nothing is read or stored.
    live: AtomicBool,
    max_age: Duration,
    /// False for the stand-in of a store without a cache, which never goes live.
    enabled: bool,
}

/// The generation a read began in; an insert is kept only if no invalidation came since.
#[derive(Clone, Copy, Debug)]
pub struct ReadTicket(u64);

impl TokenCache {
    /// A store's stand-in when the operator turned the cache off: never live, never holds anything.
    pub fn disabled() -> Self {
        Self { enabled: false, ..Self::new(TokenCacheLimits { max_bytes: 0, max_age: Duration::ZERO }) }
    }

    pub fn new(limits: TokenCacheLimits) -> Self {
        // Estimated entries, for the shard layout: a Google token row is about 1 KiB.
        let estimated = (limits.max_bytes / 1024).max(16) as usize;
        Self {
            by_id: Cache::with_weighter(estimated, limits.max_bytes, EntryBytes),
            by_owner: Cache::new(estimated),
            generation: AtomicU64::new(0),
            writes: RwLock::new(()),
            live: AtomicBool::new(false),
            max_age: limits.max_age,
            enabled: true,
        }
    }

    /// Whether the cache is in use (its listener is up).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    pub fn state(&self) -> TokenCacheState {
        match (self.enabled, self.is_live()) {
            (false, _) => TokenCacheState::Off,
            (true, false) => TokenCacheState::Bypassed,
            (true, true) => TokenCacheState::Live,
        }
    }

    /// Starts using the cache: the listener is up, so from now on no change goes unseen. Whatever
    /// was cached before may have missed changes, so it goes.
    pub fn go_live(&self) {
        if !self.enabled {
            return;
        }
        self.clear();
        self.live.store(true, Ordering::SeqCst);
    }

    /// Stops using the cache (the listener lost the database) and empties it.
    pub fn bypass(&self) {
        self.live.store(false, Ordering::SeqCst);
        self.clear();
    }

    /// Drops every entry.
    pub fn clear(&self) {
        let _exclusive = self.writes.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.by_id.clear();
        self.by_owner.clear();
    }

    /// Drops what `change` touched.
    pub fn invalidate(&self, change: &TokenChange) {
        let _exclusive = self.writes.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.by_id.remove(&change.integration_id);
        self.by_owner.remove(&(change.user_id, change.provider.clone()));
    }

    /// Taken before reading the database, for `insert`.
    pub fn ticket(&self) -> ReadTicket {
        ReadTicket(self.generation.load(Ordering::SeqCst))
    }

    /// The token of integration `id`, if cached and young enough.
    pub fn get(&self, id: i32) -> Option<StoredToken> {
        if !self.is_live() {
            return None;
        }
        let entry = self.by_id.get(&id)?;
        (entry.stored_at.elapsed() < self.max_age).then(|| StoredToken::clone(&entry.token))
    }

    /// The token of `user_id`'s integration with `provider`, if cached.
    pub fn get_by_owner(&self, user_id: i32, provider: &str) -> Option<StoredToken> {
        if !self.is_live() {
            return None;
        }
        let id = self.by_owner.get(&(user_id, provider.to_owned()))?;
        self.get(id).filter(|token| token.user_id == user_id && token.provider == provider)
    }

    /// Caches `token`, read from the database after `ticket` was taken; `by_owner` also files it
    /// under its owner.
    pub fn insert(&self, ticket: ReadTicket, token: &StoredToken, by_owner: bool) {
        if !self.is_live() {
            return;
        }
        // An invalidation either came before the check (the generation moved: not inserted) or
        // waits for the insert and then removes it.
        let _shared = self.writes.read().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::SeqCst) != ticket.0 {
            return;
        }
        let id = token.integration_id;
        self.by_id.insert(id, Entry { token: Arc::new(token.clone()), stored_at: Instant::now() });
        if by_owner {
            self.by_owner.insert((token.user_id, token.provider.clone()), id);
        }
    }

    /// Entries held (metrics, tests).
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::store::IntegrationStatus;

    fn token(id: i32) -> StoredToken {
        let now = Utc::now().naive_utc();
        StoredToken {
            integration_id: id,
            user_id: 7,
            provider: "google".into(),
            status: IntegrationStatus::Active,
            access_token: "v1:k:ciphertext".into(),
            refresh_token: None,
            token_type: "Bearer".into(),
            expires_at: now,
            scope: None,
            updated_at: now,
        }
    }

    fn live_cache() -> TokenCache {
        let cache = TokenCache::new(TokenCacheLimits { max_bytes: 1 << 20, max_age: Duration::from_secs(60) });
        cache.go_live();
        cache
    }

    #[test]
    fn a_change_payload_round_trips_and_garbage_is_refused() {
        let change = TokenChange { integration_id: 12, user_id: 7, provider: "my provider".into() };
        assert_eq!(TokenChange::parse(&change.payload()), Some(change));
        for garbage in ["", "12", "12 7", "12 7 ", "x 7 google", "12 y google"] {
            assert_eq!(TokenChange::parse(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn a_read_that_began_before_an_invalidation_is_not_kept() {
        let cache = live_cache();
        let ticket = cache.ticket();
        cache.invalidate(&TokenChange { integration_id: 1, user_id: 7, provider: "google".into() });
        cache.insert(ticket, &token(1), true);
        assert!(cache.get(1).is_none());
        assert!(cache.get_by_owner(7, "google").is_none());

        let ticket = cache.ticket();
        cache.insert(ticket, &token(1), true);
        assert_eq!(cache.get(1).map(|t| t.integration_id), Some(1));
        assert_eq!(cache.get_by_owner(7, "google").map(|t| t.integration_id), Some(1));
    }

    #[test]
    fn a_bypassed_cache_neither_serves_nor_stores() {
        let cache = live_cache();
        cache.insert(cache.ticket(), &token(1), false);
        cache.bypass();
        assert!(cache.get(1).is_none());
        cache.insert(cache.ticket(), &token(2), false);
        assert!(cache.is_empty());
        cache.go_live();
        assert!(cache.get(1).is_none(), "what was cached before going live again is gone");
    }

    #[test]
    fn an_entry_older_than_max_age_is_not_served() {
        let cache = TokenCache::new(TokenCacheLimits { max_bytes: 1 << 20, max_age: Duration::ZERO });
        cache.go_live();
        cache.insert(cache.ticket(), &token(1), false);
        assert!(cache.get(1).is_none());
    }

    #[test]
    fn the_cache_stays_within_its_bytes() {
        let cache = TokenCache::new(TokenCacheLimits { max_bytes: 64 * 1024, max_age: Duration::from_secs(60) });
        cache.go_live();
        for id in 0..10_000 {
            cache.insert(cache.ticket(), &token(id), false);
        }
        assert!(cache.by_id.weight() <= 64 * 1024, "weight {}", cache.by_id.weight());
        assert!(cache.len() < 10_000 && !cache.is_empty());
    }
}

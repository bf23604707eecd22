//! The state every handler receives.

use std::sync::Arc;

use crate::auth::JwtVerifier;
use crate::config::Config;
use crate::crypto::KeyRing;
use crate::oauth::Providers;
use crate::oauth::id_token::JwksCache;
use crate::oauth::usage::UsageRecorder;
use crate::store::{KeyedLocks, Store};

/// Shared, cheaply cloned application state.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyRing>,
    pub jwt: Arc<JwtVerifier>,
    pub providers: Arc<Providers>,
    /// The one HTTP client for provider calls: rustls, timeouts, never follows redirects.
    pub http: reqwest::Client,
    /// Provider signing keys for ID tokens.
    pub jwks: Arc<JwksCache>,
    /// In-process single flight of refreshes, in front of the store's cross-process lock.
    pub refresh_locks: Arc<KeyedLocks>,
    /// Bounds concurrent refreshes, each of which holds a database connection while the provider
    /// answers, below the pool size so the hand-out path always finds a connection.
    pub refresh_slots: Arc<tokio::sync::Semaphore>,
    /// Administrator flags read from the host application's tables (`OAUTH_ROLES_SOURCE=database`).
    pub roles: Arc<crate::auth::RoleDirectory>,
    /// Token hand-outs waiting for the flusher.
    pub usage: Arc<UsageRecorder>,
}

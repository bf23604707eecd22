//! The state every handler receives.

use std::sync::Arc;

use crate::auth::JwtVerifier;
use crate::config::Config;
use crate::crypto::KeyRing;
use crate::oauth::Providers;
use crate::store::Store;

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
}

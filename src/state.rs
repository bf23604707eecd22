//! The state every handler receives: the vault and who may call.

use std::sync::Arc;

use crate::auth::{DemoUser, JwtVerifier, RoleDirectory, ServiceKeys};
use crate::config::Config;
use crate::http::limits::RateLimits;
use crate::oauth::Vault;

/// Shared application state: one `Arc`, so that the clone every extractor and middleware makes
/// costs one reference count, not one per field (those atomics are contended on every request).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What `AppState` shares.
pub struct Shared {
    pub config: Arc<Config>,
    /// The store, keys, providers and provider client the flows work with.
    pub vault: Vault,
    /// Verifies the host application's access tokens.
    pub jwt: Arc<JwtVerifier>,
    /// Signs the sandbox demo user's tokens (served only in sandbox mode).
    pub demo: Arc<DemoUser>,
    /// The backends' service keys.
    pub service_keys: Arc<ServiceKeys>,
    /// Administrator flags read from the host application's tables (`OAUTH_ROLES_SOURCE=database`).
    pub roles: Arc<RoleDirectory>,
    /// How fast one client may start and finish flows.
    pub limits: Arc<RateLimits>,
}

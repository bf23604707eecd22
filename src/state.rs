//! The state every handler receives: the vault and who may call.

use std::sync::Arc;

use crate::auth::{JwtVerifier, RoleDirectory, ServiceKeys};
use crate::config::Config;
use crate::http::limits::RateLimits;
use crate::oauth::Vault;

/// Shared, cheaply cloned application state.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// The store, keys, providers and provider client the flows work with.
    pub vault: Vault,
    /// Verifies the host application's access tokens.
    pub jwt: Arc<JwtVerifier>,
    /// The backends' service keys.
    pub service_keys: Arc<ServiceKeys>,
    /// Administrator flags read from the host application's tables (`OAUTH_ROLES_SOURCE=database`).
    pub roles: Arc<RoleDirectory>,
    /// How fast one client may start and finish flows.
    pub limits: Arc<RateLimits>,
}

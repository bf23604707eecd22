//! The OAuth side: providers as data, the flows that use them, and the vault they work on. It
//! speaks no HTTP of its own: requests arrive as validated values (`input`), failures leave as
//! domain errors (`error`, `refresh::RefreshError`, `tokens::HandOutError`).

pub mod client;
pub mod disconnect;
pub mod error;
pub mod flow;
mod grant;
pub mod id_token;
pub mod identity;
pub mod input;
pub mod offboarding;
mod providers;
pub mod refresh;
pub mod refresher;
pub mod sandbox;
pub mod sync;
pub mod tokens;
pub mod usage;
pub mod webhooks;

use std::sync::Arc;
use std::time::Instant;

pub use error::{FlowError, ProviderFailure, ProviderStep};
pub use providers::{ClientAuth, Credentials, IdentitySource, Provider, Providers, RequestFormat};

use crate::config::Config;
use crate::crypto::KeyRing;
use crate::store::Store;
use id_token::JwksCache;
use refresh::Refreshes;
use usage::UsageRecorder;

/// The token vault: everything the flows, refreshes and hand-outs work with. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyRing>,
    pub providers: Arc<Providers>,
    /// The one HTTP client for provider calls: rustls, timeouts, never follows redirects.
    pub http: reqwest::Client,
    /// Provider signing keys for ID tokens.
    pub jwks: Arc<JwksCache>,
    /// In-process single flight of refreshes, in front of the store's cross-process lock.
    pub refreshes: Arc<Refreshes>,
    /// Token hand-outs waiting for the flusher.
    pub usage: Arc<UsageRecorder>,
    /// Events for the configured webhook endpoints.
    pub webhooks: Arc<webhooks::Webhooks>,
}

impl Vault {
    /// A configured provider with credentials: unknown names and missing credentials are refused.
    pub fn configured_provider(&self, name: &input::ProviderName) -> Result<&Provider, FlowError> {
        let provider =
            self.providers.get(name.as_str()).ok_or_else(|| FlowError::UnknownProvider(name.as_str().to_owned()))?;
        if provider.credentials.is_none() {
            return Err(FlowError::ProviderNotConfigured(provider.display_name.clone()));
        }
        Ok(provider)
    }
}

/// Runs `work` in a task of its own, so that it finishes even when the request that started it
/// is cancelled (the client hung up, the request timed out). A panic in it is the caller's panic.
pub async fn run_to_end<F>(work: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match tokio::spawn(work).await {
        Ok(output) => output,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("a task that must run to its end was cancelled: {error}"),
    }
}

/// Milliseconds since `started`, for `duration_ms`.
pub fn elapsed_ms(started: Instant) -> i32 {
    i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX)
}

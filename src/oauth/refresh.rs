//! Refreshing a connection's tokens (RFC 6749 §6). At most one refresh per integration is in
//! flight: an in-process keyed lock, then the store's lock across processes. Each runs in its own
//! task, so no caller can cancel it half-way, and below the pool size, so the hand-out path always
//! finds a database connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use super::client::{self, ProviderError};
use super::grant::{expires_at_from, split_scopes};
use super::providers::Provider;
use super::{Vault, elapsed_ms};
use crate::crypto::Aad;
use crate::store::{
    ClientInfo, Integration, IntegrationStatus, KeyedLocks, RefreshAudit, RefreshFailure, RefreshStep, RefreshedTokens,
    StoreError, StoredToken,
};

/// Why a refresh did not give a usable token.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The integration's provider was removed from the configuration.
    #[error("The provider is no longer configured.")]
    ProviderGone,
    /// The provider gave no refresh token: the grant cannot be renewed.
    #[error("The provider gave no refresh token for this connection; connect again to renew it.")]
    NoRefreshToken,
    /// The stored refresh token does not decrypt with any key of the ring.
    #[error("The stored refresh token cannot be decrypted; connect again.")]
    Undecryptable,
    /// The provider refused the refresh token with an error that means the grant is dead.
    #[error("The provider refused the refresh token ({0}); connect again.")]
    GrantRevoked(String),
    /// The provider failed, timed out or refused for another reason: the grant may still live.
    #[error("Refreshing failed: {0}.")]
    ProviderUnavailable(ProviderError),
    /// The integration was found marked for re-authorisation after the refresh.
    #[error("The provider no longer accepts this connection; the user must connect again.")]
    NeedsReauth,
    /// A manual refresh of an integration already marked for re-authorisation (its reason).
    #[error("{0}")]
    MarkedForReauth(String),
    /// A manual refresh of a disconnected integration.
    #[error("The integration was disconnected.")]
    Disconnected,
    /// The token row is gone (disconnected meanwhile).
    #[error("Integration token not found")]
    TokenGone,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The refresh task failed: logged, never shown.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl RefreshError {
    /// Whether the grant is dead: only a new connection helps, and retrying is pointless.
    pub fn is_dead_grant(&self) -> bool {
        matches!(
            self,
            Self::NoRefreshToken
                | Self::Undecryptable
                | Self::GrantRevoked(_)
                | Self::NeedsReauth
                | Self::MarkedForReauth(_)
        )
    }

    /// What the store records of this failure.
    fn as_failure(&self) -> RefreshFailure {
        let message = match self {
            Self::ProviderUnavailable(error) => error.to_string(),
            other => other.to_string(),
        };
        RefreshFailure { needs_reauth: self.is_dead_grant(), message }
    }
}

/// The in-process side of single-flight refreshes: a lock per integration and a bound on how
/// many refreshes hold a database connection at once.
pub struct Refreshes {
    locks: KeyedLocks,
    slots: Arc<Semaphore>,
    capacity: u32,
}

impl Refreshes {
    /// At most half of `max_connections` refreshes at once, leaving the rest to the hand-out path.
    pub fn new(max_connections: u32) -> Self {
        let capacity = (max_connections / 2).max(1);
        Self { locks: KeyedLocks::default(), slots: Arc::new(Semaphore::new(capacity as usize)), capacity }
    }

    /// Waits up to `patience` until no refresh is talking to a provider; `false` if some still are.
    pub async fn wait_idle(&self, patience: Duration) -> bool {
        tokio::time::timeout(patience, self.slots.acquire_many(self.capacity)).await.is_ok()
    }
}

/// Refreshes the integration of `seen` unless another caller already did since `seen` was read;
/// returns the token as stored afterwards. Without a refresh token the integration is marked for
/// re-authorisation.
#[tracing::instrument(skip_all, fields(integration_id = seen.integration_id, reason))]
pub async fn refresh(
    vault: &Vault,
    seen: StoredToken,
    reason: &'static str,
    client: &ClientInfo,
) -> Result<StoredToken, RefreshError> {
    let integration_id = seen.integration_id;
    let provider = vault.providers.get(&seen.provider).cloned().ok_or(RefreshError::ProviderGone)?;
    let started = Instant::now();
    let (task_vault, client, seen_access) = (vault.clone(), client.clone(), seen.access_token.clone());
    // Its own task: a caller that goes away (request timeout, client hang-up) must not cancel a
    // refresh whose provider call may already have rotated the refresh token (RFC 9700 §4.14.2).
    let decision = tokio::spawn(async move {
        let vault = task_vault;
        let _in_process = vault.refreshes.locks.lock(integration_id).await;
        // Each refresh holds a database connection while the provider answers: never all of them.
        let _slot = vault.refreshes.slots.clone().acquire_owned().await.expect("the refresh semaphore is never closed");
        let refresh = vault.store.begin_refresh(integration_id).await?;
        let decision = decide(&vault, &provider, refresh.current(), &seen_access).await;
        let step = match &decision {
            Ok(step) => step.clone(),
            Err(error) => RefreshStep::Failed(error.as_failure()),
        };
        let audit = RefreshAudit { client, duration_ms: elapsed_ms(started), reason };
        refresh.commit(&step, &audit).await?;
        Ok::<_, StoreError>(decision)
    })
    .await
    .map_err(|error| anyhow::anyhow!("refresh task of integration {integration_id} failed: {error}"))??;
    tracing::info!(duration_ms = elapsed_ms(started), outcome = outcome_name(&decision), "refresh");
    if decision.is_err() {
        // The failure may belong to a grant the user replaced meanwhile (it was then discarded):
        // the new connection is what the caller wants.
        if let Ok(Some(current)) = vault.store.get_token(integration_id).await
            && current.access_token != seen.access_token
            && current.status == IntegrationStatus::Active
        {
            return Ok(current);
        }
    }
    decision?;
    match vault.store.get_token(integration_id).await? {
        Some(token) if token.status == IntegrationStatus::Error => Err(RefreshError::NeedsReauth),
        Some(token) => Ok(token),
        None => Err(RefreshError::TokenGone),
    }
}

/// A refresh asked for now (`POST /integrations/{id}/refresh`). A disconnected integration is
/// refused; one already marked for re-authorisation answers as the refresh that found the grant
/// dead did, without asking the provider again.
pub async fn refresh_now(vault: &Vault, integration: &Integration, client: &ClientInfo) -> Result<(), RefreshError> {
    match integration.status {
        IntegrationStatus::Revoked => return Err(RefreshError::Disconnected),
        IntegrationStatus::Error => {
            let why = integration.error_message.clone();
            return Err(RefreshError::MarkedForReauth(
                why.unwrap_or_else(|| "The connection needs re-authorisation.".into()),
            ));
        }
        _ => {}
    }
    let token = vault.store.get_token(integration.id).await?.ok_or(RefreshError::TokenGone)?;
    refresh(vault, token, "manual", client).await.map(|_| ())
}

/// What to do with the token as it stands under the refresh lock: nothing when someone else
/// refreshed (or the user reconnected) while we waited, else ask the provider.
async fn decide(
    vault: &Vault,
    provider: &Provider,
    current: &StoredToken,
    seen_access: &str,
) -> Result<RefreshStep, RefreshError> {
    if current.access_token != seen_access || current.status == IntegrationStatus::Error {
        return Ok(RefreshStep::AlreadyFresh);
    }
    let ciphertext = current.refresh_token.as_deref().ok_or(RefreshError::NoRefreshToken)?;
    let refresh_token =
        vault.keys.decrypt(ciphertext, &Aad::refresh_token(current.user_id, &current.provider)).map_err(|error| {
            tracing::error!(integration_id = current.integration_id, error = %error, "stored refresh token does not decrypt");
            RefreshError::Undecryptable
        })?;
    let tokens = match client::refresh(&vault.http, provider, &refresh_token).await {
        Ok(tokens) => tokens,
        Err(ProviderError::Rejected { error, .. }) if provider.is_reauth_error(&error) => {
            return Err(RefreshError::GrantRevoked(error));
        }
        Err(error) => return Err(RefreshError::ProviderUnavailable(error)),
    };
    let encrypt = |value: &SecretString, aad: Aad| vault.keys.encrypt(value.expose_secret(), &aad);
    Ok(RefreshStep::Refreshed(RefreshedTokens {
        access_token: encrypt(&tokens.access_token, Aad::access_token(current.user_id, &current.provider)),
        // Rotating providers (Microsoft, Notion) send a new one: always keep it.
        refresh_token: tokens
            .refresh_token
            .as_ref()
            .map(|token| encrypt(token, Aad::refresh_token(current.user_id, &current.provider))),
        token_type: tokens.token_type,
        expires_at: expires_at_from(Utc::now().naive_utc(), tokens.expires_in),
        scopes: tokens.scope.as_deref().map(split_scopes),
        scope: tokens.scope,
    }))
}

/// The log's name of a refresh outcome.
fn outcome_name(decision: &Result<RefreshStep, RefreshError>) -> &'static str {
    match decision {
        Ok(RefreshStep::AlreadyFresh) => "shared",
        Ok(_) => "refreshed",
        Err(error) if error.is_dead_grant() => "needs_reauth",
        Err(_) => "failed",
    }
}

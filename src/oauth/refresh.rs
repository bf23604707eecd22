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
use super::webhooks::{Event, Subject};
use super::{Vault, elapsed_ms, run_to_end};
use crate::crypto::{Aad, CipherError};
use crate::store::{
    ClientInfo, Integration, IntegrationStatus, KeyedLocks, RefreshAudit, RefreshFailure, RefreshStep, RefreshTx,
    RefreshWrite, RefreshedTokens, StoreError, StoredToken,
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
    /// The stored refresh token does not decrypt: a key is missing from the ring, or the value was
    /// damaged. An operator's problem, not the user's: nothing is marked, and the refresh works
    /// again once the key is back.
    #[error("The stored refresh token of integration {integration_id} does not decrypt: {cause}")]
    Undecryptable { integration_id: i32, cause: CipherError },
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
        matches!(self, Self::NoRefreshToken | Self::GrantRevoked(_) | Self::NeedsReauth | Self::MarkedForReauth(_))
    }

    /// Whether the provider may answer differently soon: the current token, while valid, is
    /// still worth handing out.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Self::ProviderUnavailable(_) | Self::Store(StoreError::Busy | StoreError::Unavailable(_)))
    }

    /// What the store records of this failure: the integration's error and an `error` audit row.
    /// A stored value that does not decrypt records nothing: the integration is not at fault.
    fn recorded(&self) -> RefreshStep {
        let message = match self {
            Self::Undecryptable { .. } => return RefreshStep::AlreadyFresh,
            Self::ProviderUnavailable(error) => error.to_string(),
            other => other.to_string(),
        };
        RefreshStep::Failed(RefreshFailure { needs_reauth: self.is_dead_grant(), message })
    }
}

/// The in-process side of refreshes: a lock per integration, a bound on refreshes in flight
/// (they hold no database connection while the provider answers, so the bound is the
/// providers' and the process's, not the pool's), and a bound on refreshes writing at once (each
/// holds a connection for its transaction: on PostgreSQL one of the refresh writers' own, on
/// SQLite one of the pool's, so the hand-out path always finds one).
pub struct Refreshes {
    locks: KeyedLocks,
    slots: Arc<Semaphore>,
    capacity: u32,
    writers: Semaphore,
}

impl Refreshes {
    /// At most `in_flight` refreshes at once, and `write_slots` writing (`Store::refresh_write_slots`).
    pub fn new(in_flight: u32, write_slots: u32) -> Self {
        let capacity = in_flight.max(1);
        let writers = Semaphore::new(write_slots.max(1) as usize);
        Self { locks: KeyedLocks::default(), slots: Arc::new(Semaphore::new(capacity as usize)), capacity, writers }
    }

    /// Holds integration `id` against refreshes in this process (a disconnect takes it too).
    pub async fn hold(&self, id: i32) -> tokio::sync::OwnedMutexGuard<()> {
        self.locks.lock(id).await
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
    let (task_vault, client, seen_written) = (vault.clone(), client.clone(), seen.updated_at);
    // Its own task: a caller that goes away (request timeout, client hang-up) must not cancel a
    // refresh whose provider call may already have rotated the refresh token (RFC 9700 §4.14.2).
    let decision = run_to_end(async move {
        let vault = task_vault;
        let _in_process = vault.refreshes.hold(integration_id).await;
        let _slot = vault.refreshes.slots.clone().acquire_owned().await.expect("the refresh semaphore is never closed");
        let refresh = vault.store.begin_refresh(integration_id).await?;
        let decided_on = refresh.current().clone();
        // Boxed: thousands of refreshes may wait for a slot, each holding this task; the big
        // futures (the provider call, the write) take memory only once they run.
        let decision = Box::pin(decide(&vault, &provider, &decided_on, seen_written)).await;
        let (step, rotated) = match &decision {
            Ok(answer) => (answer.step.clone(), answer.rotated.clone()),
            Err(error) => (error.recorded(), None),
        };
        let audit = RefreshAudit { client, duration_ms: elapsed_ms(started), reason };
        let written = {
            // Writing holds a pooled connection: only so many at once.
            let _writing = vault.refreshes.writers.acquire().await.expect("the writer semaphore is never closed");
            Box::pin(commit(&vault, refresh, &decided_on, &step, &audit, rotated.is_some())).await?
        };
        if written == RefreshWrite::Written
            && let Err(error) = &decision
            && error.is_dead_grant()
        {
            let subject = Subject {
                integration_id,
                user_id: decided_on.user_id,
                provider: &decided_on.provider,
                status: "error",
                reason: Some("needs_reauth"),
            };
            vault.webhooks.emit(vault.store.as_ref(), Event::RefreshFailed, subject).await;
        }
        if written == RefreshWrite::DiscardedDisconnected
            && let Some(orphan) = rotated
        {
            // Disconnected while the provider rotated: the new grant must not stay alive there.
            revoke_orphan(&vault, &provider, integration_id, &orphan).await;
        }
        let decision = decision.map(|answer| answer.step);
        Ok::<_, StoreError>(decision)
    })
    .await?;
    let outcome = outcome_name(&decision);
    tracing::info!(duration_ms = elapsed_ms(started), outcome, "refresh");
    metrics::counter!(crate::prometheus::REFRESHES, "provider" => seen.provider.clone(), "outcome" => outcome)
        .increment(1);
    if decision.is_err() {
        // The failure may belong to a grant the user replaced meanwhile (it was then discarded):
        // the new connection is what the caller wants.
        if let Ok(Some(current)) = vault.store.get_token(integration_id).await
            && current.updated_at != seen.updated_at
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

/// What a refresh decided: the step to commit, and the provider's new refresh token when it
/// rotated one (in the clear, to revoke it should the outcome find no connection to belong to).
struct Answer {
    step: RefreshStep,
    rotated: Option<SecretString>,
}

/// What to do with the token as it stands under the refresh lock: nothing when someone else
/// refreshed (or the user reconnected) while we waited (the row was written since it was seen),
/// else ask the provider.
async fn decide(
    vault: &Vault,
    provider: &Provider,
    current: &StoredToken,
    seen_written: chrono::NaiveDateTime,
) -> Result<Answer, RefreshError> {
    if current.updated_at != seen_written || current.status == IntegrationStatus::Error {
        return Ok(Answer { step: RefreshStep::AlreadyFresh, rotated: None });
    }
    let ciphertext = current.refresh_token.as_deref().ok_or(RefreshError::NoRefreshToken)?;
    let refresh_token =
        vault.keys.decrypt(ciphertext, &Aad::refresh_token(current.user_id, &current.provider)).map_err(|cause| {
            // An alert for the operator: a key is missing from OAUTH_ENCRYPTION_KEY, or the value
            // was damaged. The user can do nothing about it, so the integration is left as it is.
            tracing::error!(
                integration_id = current.integration_id,
                error = %cause,
                "ALERT: a stored refresh token does not decrypt; check OAUTH_ENCRYPTION_KEY"
            );
            RefreshError::Undecryptable { integration_id: current.integration_id, cause }
        })?;
    let tokens = match client::refresh(&vault.http, provider, &refresh_token).await {
        Ok(tokens) => tokens,
        Err(ProviderError::Rejected { error, .. }) if provider.is_reauth_error(&error) => {
            return Err(RefreshError::GrantRevoked(error));
        }
        Err(error) => return Err(RefreshError::ProviderUnavailable(error)),
    };
    let encrypt = |value: &SecretString, aad: Aad| vault.keys.encrypt(value.expose_secret(), &aad);
    let step = RefreshStep::Refreshed(RefreshedTokens {
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
    });
    Ok(Answer { step, rotated: tokens.refresh_token })
}

/// How often the write of a refresh whose provider rotated the refresh token is tried: the old
/// one is dead at the provider, so losing the new one loses the grant.
const ROTATED_WRITE_ATTEMPTS: u32 = 6;

/// Commits `step`. When the provider rotated the refresh token and the write fails (the database
/// restarted, a connection broke), it is tried again under a fresh lock while the row still holds
/// the token the refresh decided on.
async fn commit(
    vault: &Vault,
    refresh: Box<dyn RefreshTx>,
    decided_on: &StoredToken,
    step: &RefreshStep,
    audit: &RefreshAudit,
    rotated: bool,
) -> Result<RefreshWrite, StoreError> {
    let mut error = match refresh.commit(step, audit).await {
        Ok(written) => return Ok(written),
        Err(error) if !rotated => return Err(error),
        Err(error) => error,
    };
    for attempt in 1..ROTATED_WRITE_ATTEMPTS {
        tracing::warn!(integration_id = decided_on.integration_id, attempt, error = %error, "writing a rotated refresh token failed; retrying");
        tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(attempt))).await;
        let again = match vault.store.begin_refresh(decided_on.integration_id).await {
            Ok(again) => again,
            Err(StoreError::NotFound) => return Ok(RefreshWrite::DiscardedDisconnected),
            Err(next) => {
                error = next;
                continue;
            }
        };
        if again.current().updated_at != decided_on.updated_at {
            // Someone connected again meanwhile: the rotated token belongs to the old grant.
            return Ok(RefreshWrite::DiscardedReconnected);
        }
        match again.commit(step, audit).await {
            Ok(written) => return Ok(written),
            Err(next) => error = next,
        }
    }
    tracing::error!(
        integration_id = decided_on.integration_id,
        error = %error,
        "ALERT: a refresh token the provider rotated could not be stored; the connection may need re-authorisation"
    );
    Err(error)
}

/// Revokes a rotated refresh token whose connection was disconnected meanwhile (best effort).
async fn revoke_orphan(vault: &Vault, provider: &Provider, integration_id: i32, token: &SecretString) {
    let Some(url) = provider.revocation_url.as_deref() else { return };
    match client::revoke(&vault.http, provider, url, token, "refresh_token").await {
        Ok(()) => tracing::info!(integration_id, "revoked the refresh token of a refresh that outlived its connection"),
        Err(error) => tracing::warn!(integration_id, error = %error, "could not revoke an orphaned refresh token"),
    }
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

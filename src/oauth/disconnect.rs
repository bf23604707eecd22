//! Disconnecting: revoke at the provider where possible (RFC 7009; best effort, recorded), then
//! delete the tokens, mark the integration revoked and revoke its consents.

use std::time::Instant;

use chrono::Utc;

use super::webhooks::{Event, Subject};
use super::{Vault, client, elapsed_ms, run_to_end};
use crate::crypto::Aad;
use crate::store::{
    ClientInfo, Integration, IntegrationStatus, ProviderRevocation, RevokeRecord, StoreError, StoreResult, StoredToken,
};

/// A finished disconnect.
#[derive(Debug)]
pub struct Disconnection {
    pub integration_id: i32,
    /// How revoking at the provider went (`NothingToRevoke` when it was already disconnected).
    pub revocation: ProviderRevocation,
    /// It was disconnected before: nothing was done again.
    pub already_disconnected: bool,
}

/// Disconnects `integration`; a second call answers without doing anything again. It runs to its
/// end in its own task: a client that hangs up must not leave a grant revoked at the provider
/// while the integration stays active here.
#[tracing::instrument(skip_all, fields(integration_id = integration.id))]
pub async fn disconnect(
    vault: &Vault,
    integration: Integration,
    reason: String,
    client: &ClientInfo,
) -> StoreResult<Disconnection> {
    if integration.status == IntegrationStatus::Revoked {
        return Ok(Disconnection {
            integration_id: integration.id,
            revocation: ProviderRevocation::NothingToRevoke,
            already_disconnected: true,
        });
    }
    let (vault, client) = (vault.clone(), client.clone());
    run_to_end(async move { disconnect_now(&vault, integration.id, reason, &client).await }).await
}

/// Revokes and forgets the grant under the refresh lock, so no refresh is in flight meanwhile: a
/// provider that rotates would otherwise hand a refresh a new grant nobody revokes.
async fn disconnect_now(
    vault: &Vault,
    integration_id: i32,
    reason: String,
    client: &ClientInfo,
) -> StoreResult<Disconnection> {
    let started = Instant::now();
    let _in_process = vault.refreshes.hold(integration_id).await;
    let held = match vault.store.begin_refresh(integration_id).await {
        Ok(held) => Some(held),
        // No token row: nothing to refresh, nothing to revoke.
        Err(StoreError::NotFound) => None,
        Err(error) => return Err(error),
    };
    let revocation = match &held {
        Some(held) => revoke_at_provider(vault, held.current()).await,
        None => ProviderRevocation::NothingToRevoke,
    };
    let record = RevokeRecord {
        reason,
        provider_revocation: revocation.clone(),
        client: client.clone(),
        duration_ms: elapsed_ms(started),
        now: Utc::now().naive_utc(),
    };
    let revoked = vault.store.revoke_integration(integration_id, &record).await?;
    let owner = held.as_ref().map(|held| (held.current().user_id, held.current().provider.clone()));
    drop(held);
    if revoked && let Some((user_id, provider)) = &owner {
        let subject =
            Subject { integration_id, user_id: *user_id, provider, status: "revoked", reason: Some(&record.reason) };
        vault.webhooks.emit(vault.store.as_ref(), Event::Revoked, subject).await;
    }
    Ok(Disconnection { integration_id, revocation, already_disconnected: !revoked })
}

/// Revokes the stored grant at the provider, if the provider can.
async fn revoke_at_provider(vault: &Vault, token: &StoredToken) -> ProviderRevocation {
    let provider = vault.providers.get(&token.provider);
    let Some((provider, url)) = provider.and_then(|p| p.revocation_url.as_deref().map(|url| (p, url))) else {
        return ProviderRevocation::NotSupported;
    };
    // The refresh token names the whole grant (Google revokes everything issued from it).
    let (ciphertext, aad, hint) = match &token.refresh_token {
        Some(refresh) => (refresh.as_str(), Aad::refresh_token(token.user_id, &token.provider), "refresh_token"),
        None => (token.access_token.as_str(), Aad::access_token(token.user_id, &token.provider), "access_token"),
    };
    match vault.keys.decrypt(ciphertext, &aad) {
        Err(error) => ProviderRevocation::Failed(format!("stored token unreadable: {error}")),
        Ok(secret) => match client::revoke(&vault.http, provider, url, &secret, hint).await {
            Ok(()) => ProviderRevocation::Revoked,
            Err(error) => ProviderRevocation::Failed(error.to_string()),
        },
    }
}

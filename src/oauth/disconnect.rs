//! Disconnecting: revoke at the provider where possible (RFC 7009; best effort, recorded), then
//! delete the tokens, mark the integration revoked and revoke its consents.

use std::time::Instant;

use chrono::Utc;

use super::{Vault, client, elapsed_ms};
use crate::crypto::Aad;
use crate::store::{ClientInfo, Integration, IntegrationStatus, ProviderRevocation, RevokeRecord, StoreResult};

/// A finished disconnect.
#[derive(Debug)]
pub struct Disconnection {
    pub integration_id: i32,
    /// How revoking at the provider went (`NothingToRevoke` when it was already disconnected).
    pub revocation: ProviderRevocation,
    /// It was disconnected before: nothing was done again.
    pub already_disconnected: bool,
}

/// Disconnects `integration`; a second call answers without doing anything again.
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
    let started = Instant::now();
    let revocation = revoke_at_provider(vault, integration.id).await?;
    let record = RevokeRecord {
        reason,
        provider_revocation: revocation.clone(),
        client: client.clone(),
        duration_ms: elapsed_ms(started),
        now: Utc::now().naive_utc(),
    };
    vault.store.revoke_integration(integration.id, &record).await?;
    Ok(Disconnection { integration_id: integration.id, revocation, already_disconnected: false })
}

/// Revokes the stored grant at the provider, if there is one and the provider can.
async fn revoke_at_provider(vault: &Vault, integration_id: i32) -> StoreResult<ProviderRevocation> {
    let Some(token) = vault.store.get_token(integration_id).await? else {
        return Ok(ProviderRevocation::NothingToRevoke);
    };
    let provider = vault.providers.get(&token.provider);
    let Some((provider, url)) = provider.and_then(|p| p.revocation_url.as_deref().map(|url| (p, url))) else {
        return Ok(ProviderRevocation::NotSupported);
    };
    // The refresh token names the whole grant (Google revokes everything issued from it).
    let (ciphertext, aad, hint) = match &token.refresh_token {
        Some(refresh) => (refresh.as_str(), Aad::refresh_token(token.user_id, &token.provider), "refresh_token"),
        None => (token.access_token.as_str(), Aad::access_token(token.user_id, &token.provider), "access_token"),
    };
    Ok(match vault.keys.decrypt(ciphertext, &aad) {
        Err(error) => ProviderRevocation::Failed(format!("stored token unreadable: {error}")),
        Ok(secret) => match client::revoke(&vault.http, provider, url, &secret, hint).await {
            Ok(()) => ProviderRevocation::Revoked,
            Err(error) => ProviderRevocation::Failed(error.to_string()),
        },
    })
}

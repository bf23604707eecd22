//! Disconnecting: revoke at the provider where possible (best effort, recorded), then delete
//! the tokens, mark the integration revoked and revoke its consents.

use std::time::Instant;

use chrono::Utc;
use serde::Serialize;

use super::client;
use super::flow::{elapsed_ms, store_error, token_column};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{ClientInfo, Integration, IntegrationStatus, ProviderRevocation, RevokeRecord};

/// Answer of `DELETE /integrations/{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Disconnected {
    pub message: String,
    pub integration_id: i32,
    /// `revoked`, `not_supported`, `failed` or `nothing_to_revoke`.
    pub provider_revocation: &'static str,
}

/// Disconnects `integration`; a second call answers without doing anything again.
pub async fn disconnect(
    state: &AppState,
    integration: Integration,
    reason: String,
    client: &ClientInfo,
) -> Result<Disconnected, ApiError> {
    let display = state.providers.display_name(&integration.provider).to_owned();
    if integration.status == IntegrationStatus::Revoked {
        return Ok(Disconnected {
            message: format!("{display} was already disconnected."),
            integration_id: integration.id,
            provider_revocation: "nothing_to_revoke",
        });
    }
    let started = Instant::now();
    let token = state.store.get_token(integration.id).await.map_err(store_error)?;
    let provider = state.providers.get(&integration.provider);
    let revocation = match (token, provider.and_then(|p| p.revocation_url.as_deref().map(|url| (p, url)))) {
        (None, _) => ProviderRevocation::NothingToRevoke,
        (Some(_), None) => ProviderRevocation::NotSupported,
        (Some(token), Some((provider, url))) => {
            // The refresh token names the whole grant (Google revokes everything issued from it).
            let (ciphertext, column, hint) = match &token.refresh_token {
                Some(refresh) => (refresh.as_str(), "oauth_tokens.refresh_token", "refresh_token"),
                None => (token.access_token.as_str(), "oauth_tokens.access_token", "access_token"),
            };
            match state.keys.decrypt(ciphertext, &token_column(column, token.user_id, &token.provider)) {
                Err(error) => ProviderRevocation::Failed(format!("stored token unreadable: {error}")),
                Ok(secret) => match client::revoke(&state.http, provider, url, &secret, hint).await {
                    Ok(()) => ProviderRevocation::Revoked,
                    Err(error) => ProviderRevocation::Failed(error.to_string()),
                },
            }
        }
    };
    let record = RevokeRecord {
        reason,
        provider_revocation: revocation.clone(),
        client: client.clone(),
        duration_ms: elapsed_ms(started),
        now: Utc::now().naive_utc(),
    };
    state.store.revoke_integration(integration.id, &record).await.map_err(store_error)?;
    let (message, provider_revocation) = match revocation {
        ProviderRevocation::Revoked => (format!("Disconnected {display}; access was revoked at {display}."), "revoked"),
        ProviderRevocation::NotSupported => (
            format!(
                "Disconnected {display} and deleted its tokens here. {display} offers no revocation endpoint, so \
                 the grant could not be revoked at the provider: remove the app in the account's {display} settings."
            ),
            "not_supported",
        ),
        ProviderRevocation::NothingToRevoke => (format!("Disconnected {display}."), "nothing_to_revoke"),
        ProviderRevocation::Failed(reason) => (
            format!("Disconnected {display} and deleted its tokens here, but revoking at {display} failed ({reason})."),
            "failed",
        ),
    };
    Ok(Disconnected { message, integration_id: integration.id, provider_revocation })
}

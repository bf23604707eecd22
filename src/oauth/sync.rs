//! Checking every connection of a user (`POST /integrations/sync`): refresh those about to
//! expire, probe those that never expire, and report the broken ones.

use chrono::{Duration, Utc};

use super::refresh::{self, RefreshError};
use super::{Vault, client};
use crate::crypto::Aad;
use crate::store::{
    ClientInfo, Integration, IntegrationFilter, IntegrationStatus, NEVER_EXPIRES, StoreResult, StoredToken,
};

/// Tokens expiring within this many seconds are refreshed.
const SYNC_LEAD_SECONDS: i64 = 300;

/// How one connection is.
#[derive(Debug)]
pub enum SyncOutcome {
    /// The token is valid.
    Valid,
    /// The token was refreshed.
    Refreshed,
    /// The token expires soon and there is nothing to renew it with.
    Expiring,
    /// Only a new connection helps: why.
    NeedsReauth(String),
    /// Checking failed; the connection may be fine.
    Failed(RefreshError),
}

/// The outcome of one integration.
#[derive(Debug)]
pub struct SyncResult {
    pub integration_id: i32,
    pub provider: String,
    pub outcome: SyncOutcome,
}

/// Checks every integration of `user_id` that is not disconnected.
#[tracing::instrument(skip_all, fields(user_id))]
pub async fn sync_user(vault: &Vault, user_id: i32, client: &ClientInfo) -> StoreResult<Vec<SyncResult>> {
    let filter = IntegrationFilter { provider: None, active_only: false };
    let integrations = vault.store.list_integrations(user_id, &filter).await?;
    let mut results = Vec::new();
    for integration in integrations.into_iter().filter(|i| i.status != IntegrationStatus::Revoked) {
        let outcome = sync_one(vault, &integration, client).await;
        results.push(SyncResult { integration_id: integration.id, provider: integration.provider, outcome });
    }
    Ok(results)
}

async fn sync_one(vault: &Vault, integration: &Integration, client: &ClientInfo) -> SyncOutcome {
    if integration.status == IntegrationStatus::Error {
        let why = integration.error_message.clone().unwrap_or_else(|| "The connection is broken.".into());
        return SyncOutcome::NeedsReauth(why);
    }
    let token = match vault.store.get_token(integration.id).await {
        Ok(Some(token)) => token,
        Ok(None) => return SyncOutcome::NeedsReauth("No token is stored; connect again.".into()),
        Err(error) => return SyncOutcome::Failed(error.into()),
    };
    let now = Utc::now().naive_utc();
    let due = if token.expires_at >= NEVER_EXPIRES {
        // A token without expiry is only known dead when the provider refuses it (Notion).
        rejected_by_provider(vault, &token).await
    } else {
        token.expires_at - now < Duration::seconds(SYNC_LEAD_SECONDS)
    };
    if !due {
        return SyncOutcome::Valid;
    }
    // Still valid but nothing to renew it with: report, do not break it early.
    if token.refresh_token.is_none() && token.expires_at > now && token.expires_at < NEVER_EXPIRES {
        return SyncOutcome::Expiring;
    }
    // Otherwise refresh; without a refresh token this marks the integration for re-authorisation.
    match refresh::refresh(vault, token, "sync", client).await {
        Ok(_) => SyncOutcome::Refreshed,
        Err(error) if error.is_dead_grant() => SyncOutcome::NeedsReauth(error.to_string()),
        Err(error) => SyncOutcome::Failed(error),
    }
}

/// Whether the provider's identity endpoint refuses the token (only for providers that have one).
async fn rejected_by_provider(vault: &Vault, token: &StoredToken) -> bool {
    let Some(provider) = vault.providers.get(&token.provider) else { return false };
    let Some(url) = provider.userinfo_url.as_deref() else { return false };
    let Ok(access) = vault.keys.decrypt(&token.access_token, &Aad::access_token(token.user_id, &token.provider)) else {
        return true;
    };
    matches!(
        client::fetch_json(&vault.http, provider, url, &access).await,
        Err(client::ProviderError::Rejected { status: 401, .. })
    )
}

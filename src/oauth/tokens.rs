//! Handing out access tokens to backends (the hot path), refreshing first when the token is about
//! to expire or the caller reports it rejected.

use chrono::{Duration, NaiveDateTime, Utc};
use secrecy::SecretString;

use super::Vault;
use super::refresh::{self, RefreshError};
use crate::crypto::Aad;
use crate::store::{ClientInfo, IntegrationStatus, NEVER_EXPIRES, StoredToken};

/// An access token for a backend.
pub struct HandOut {
    pub access_token: SecretString,
    pub token_type: String,
    /// `NEVER_EXPIRES` for tokens that never expire.
    pub expires_at: NaiveDateTime,
    pub scopes: Vec<String>,
    pub integration_id: i32,
    pub provider: String,
    /// A refresh was due and failed for a reason that may pass (the provider is down): this is
    /// the current token, still valid, handed out meanwhile.
    pub refresh_failed: Option<RefreshError>,
}

/// Why no token was handed out.
#[derive(Debug, thiserror::Error)]
pub enum HandOutError {
    /// The grant is dead, whether this request or an earlier one found out.
    #[error("The provider no longer accepts this connection; the user must connect again.")]
    NeedsReauth,
    #[error("The integration was disconnected.")]
    Disconnected,
    #[error(transparent)]
    Refresh(RefreshError),
    /// The stored access token does not decrypt: logged, never shown.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<RefreshError> for HandOutError {
    /// On the token endpoints a dead connection is one answer, however it was found dead.
    fn from(error: RefreshError) -> Self {
        if error.is_dead_grant() { Self::NeedsReauth } else { Self::Refresh(error) }
    }
}

/// Hands out the access token of `stored`, refreshing first when it expires within `min_ttl`
/// seconds or when the caller reports it rejected (`force_refresh`).
pub async fn hand_out(
    vault: &Vault,
    stored: StoredToken,
    min_ttl: i64,
    force_refresh: bool,
    client: &ClientInfo,
) -> Result<HandOut, HandOutError> {
    let now = Utc::now().naive_utc();
    let mut refresh_failed = None;
    let stored = match stored.status {
        IntegrationStatus::Error => return Err(HandOutError::NeedsReauth),
        IntegrationStatus::Revoked => return Err(HandOutError::Disconnected),
        _ if force_refresh && !recently_written(&stored) => {
            refresh::refresh(vault, stored, "rejected_by_provider", client).await?
        }
        // Nothing to renew it with, but still valid: the caller gets what there is.
        _ if stored.refresh_token.is_none() && stored.expires_at > now => stored,
        _ if expires_within(&stored, min_ttl) => {
            match refresh::refresh(vault, stored.clone(), "hand_out", client).await {
                Ok(refreshed) => refreshed,
                // A provider outage must not break a token that still works: hand it out and say so.
                Err(error) if error.is_temporary() && stored.expires_at > Utc::now().naive_utc() => {
                    tracing::warn!(integration_id = stored.integration_id, error = %error, "refresh failed; handing out the current token");
                    refresh_failed = Some(error);
                    stored
                }
                Err(error) => return Err(error.into()),
            }
        }
        _ => stored,
    };
    let access_token =
        vault.keys.decrypt(&stored.access_token, &Aad::access_token(stored.user_id, &stored.provider)).map_err(
            |error| anyhow::anyhow!("decrypting the access token of integration {}: {error}", stored.integration_id),
        )?;
    vault.usage.record(&stored);
    metrics::counter!(crate::prometheus::TOKEN_HANDOUTS, "provider" => stored.provider.clone()).increment(1);
    Ok(HandOut {
        access_token,
        token_type: stored.token_type,
        expires_at: stored.expires_at,
        scopes: stored.scope.as_deref().map(super::grant::split_scopes).unwrap_or_default(),
        integration_id: stored.integration_id,
        provider: stored.provider,
        refresh_failed,
    })
}

/// Whether the token expires within `min_ttl` seconds. `min_ttl` is capped at half the lifetime
/// the provider granted: a caller asking for more than a provider ever gives would otherwise
/// trigger a refresh on every hand-out.
fn expires_within(stored: &StoredToken, min_ttl: i64) -> bool {
    if stored.expires_at >= NEVER_EXPIRES {
        return false;
    }
    let lifetime = (stored.expires_at - stored.updated_at).max(Duration::zero());
    let wanted = Duration::seconds(min_ttl).min(lifetime / 2);
    stored.expires_at - Utc::now().naive_utc() <= wanted
}

/// A `force_refresh` this soon after the token was written is served the new token: callers
/// that all saw the same rejected token share one refresh.
const FORCE_REFRESH_DEBOUNCE_SECONDS: i64 = 30;

fn recently_written(stored: &StoredToken) -> bool {
    Utc::now().naive_utc() - stored.updated_at < Duration::seconds(FORCE_REFRESH_DEBOUNCE_SECONDS)
}

//! Handing out access tokens to backends, and refreshing them: lazily here, proactively in
//! `refresher`. At most one refresh per integration is in flight (in-process keyed lock, then the
//! store's cross-process lock); callers that waited share the winner's result.

use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::client::{self, ProviderError};
use super::flow::{elapsed_ms, provider_failure, store_error, token_column};
use crate::crypto::KeyRing;
use crate::error::ApiError;
use crate::http::views::expiry;
use crate::oauth::Provider;
use crate::state::AppState;
use crate::store::NEVER_EXPIRES;
use crate::store::{
    ClientInfo, IntegrationStatus, RefreshAudit, RefreshFailure, RefreshStep, RefreshedTokens, StoredToken,
};

/// Answer of the token endpoints.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HandedOutToken {
    pub access_token: String,
    pub token_type: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
    pub integration_id: i32,
    pub provider: String,
}

impl std::fmt::Debug for HandedOutToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandedOutToken").field("integration_id", &self.integration_id).finish_non_exhaustive()
    }
}

/// Hands out the access token of `stored`, refreshing first when it expires within `min_ttl`
/// seconds or when the caller reports it rejected (`force_refresh`).
pub async fn hand_out(
    state: &AppState,
    stored: StoredToken,
    min_ttl: i64,
    force_refresh: bool,
    client: &ClientInfo,
) -> Result<HandedOutToken, ApiError> {
    let now = Utc::now().naive_utc();
    let stored = match stored.status {
        IntegrationStatus::Error => return Err(needs_reauth()),
        IntegrationStatus::Revoked => {
            return Err(ApiError::Conflict {
                code: "integration_revoked",
                detail: "The integration was disconnected.".into(),
            });
        }
        _ if force_refresh && !recently_written(&stored) => {
            refresh(state, stored, "rejected_by_provider", client).await.map_err(for_hand_out)?
        }
        // Nothing to renew it with, but still valid: the caller gets what there is.
        _ if stored.refresh_token.is_none() && stored.expires_at > now => stored,
        _ if expires_within(&stored, min_ttl) => {
            refresh(state, stored, "hand_out", client).await.map_err(for_hand_out)?
        }
        _ => stored,
    };
    let access_token = state
        .keys
        .decrypt(&stored.access_token, &token_column("oauth_tokens.access_token", stored.user_id, &stored.provider))
        .map_err(|error| {
            anyhow::anyhow!("decrypting the access token of integration {}: {error}", stored.integration_id)
        })?;
    state.usage.record(&stored);
    Ok(HandedOutToken {
        access_token: access_token.expose_secret().to_owned(),
        token_type: stored.token_type,
        expires_at: expiry(stored.expires_at),
        scopes: stored.scope.as_deref().map(split_scopes).unwrap_or_default(),
        integration_id: stored.integration_id,
        provider: stored.provider,
    })
}

/// The scopes of a provider's `scope` string (space separated; some use commas).
pub fn split_scopes(scope: &str) -> Vec<String> {
    scope.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// `expires_at` for a token answer's `expires_in`: none means never; absurd values are clamped
/// to ten years rather than overflowing.
pub fn expires_at_from(now: NaiveDateTime, expires_in: Option<i64>) -> NaiveDateTime {
    const TEN_YEARS: i64 = 10 * 366 * 24 * 3600;
    match expires_in {
        None => NEVER_EXPIRES,
        Some(seconds) => now + Duration::seconds(seconds.clamp(0, TEN_YEARS)),
    }
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

/// On the token endpoints a dead connection is always 409 `needs_reauth`, whether this request
/// discovered it or an earlier one did.
fn for_hand_out(error: ApiError) -> ApiError {
    match error.code() {
        "needs_reauth" | "no_refresh_token" => needs_reauth(),
        _ => error,
    }
}

fn needs_reauth() -> ApiError {
    ApiError::Conflict {
        code: "needs_reauth",
        detail: "The provider no longer accepts this connection; the user must connect again.".into(),
    }
}

/// Refreshes the integration of `seen` unless another caller already did since `seen` was read;
/// returns the token as stored afterwards. Without a refresh token the integration is marked for
/// re-authorisation (CONTRACT §3).
pub async fn refresh(
    state: &AppState,
    seen: StoredToken,
    reason: &'static str,
    client: &ClientInfo,
) -> Result<StoredToken, ApiError> {
    let integration_id = seen.integration_id;
    let provider = state
        .providers
        .get(&seen.provider)
        .cloned()
        .ok_or_else(|| ApiError::bad_request("unknown_provider", "The provider is no longer configured."))?;
    let started = Instant::now();
    let (store, locks, slots) = (state.store.clone(), state.refresh_locks.clone(), state.refresh_slots.clone());
    let (http, keys, client) = (state.http.clone(), state.keys.clone(), client.clone());
    let seen_access = seen.access_token.clone();
    // Its own task: a caller that goes away (request timeout, client hang-up) must not cancel a
    // refresh whose provider call may already have rotated the refresh token (RFC 9700 §4.14.2).
    let step = tokio::spawn(async move {
        let _in_process = locks.lock(integration_id).await;
        // Each refresh holds a database connection while the provider answers: never all of them.
        let _slot = slots.acquire_owned().await.expect("the refresh semaphore is never closed");
        let refresh = store.begin_refresh(integration_id).await?;
        let step = decide(&http, &keys, &provider, refresh.current(), &seen_access).await;
        let audit = RefreshAudit { client, duration_ms: elapsed_ms(started), reason };
        refresh.commit(&step, &audit).await?;
        Ok::<_, crate::store::StoreError>(step)
    })
    .await
    .map_err(|error| anyhow::anyhow!("refresh task of integration {integration_id} failed: {error}"))?
    .map_err(store_error)?;
    tracing::info!(integration_id, reason, duration_ms = elapsed_ms(started), outcome = step_name(&step), "refresh");
    if let RefreshStep::Failed(_) = &step {
        // The failure may belong to a grant the user replaced meanwhile (it was then discarded):
        // the new connection is what the caller wants.
        if let Ok(Some(current)) = state.store.get_token(integration_id).await
            && current.access_token != seen.access_token
            && current.status == IntegrationStatus::Active
        {
            return Ok(current);
        }
    }
    match step {
        RefreshStep::Failed(failure) if failure.needs_reauth => {
            let code = if seen.refresh_token.is_none() { "no_refresh_token" } else { "needs_reauth" };
            Err(ApiError::bad_request(code, failure.message))
        }
        RefreshStep::Failed(failure) => {
            Err(provider_failure(ProviderError::Unavailable(failure.message), "refresh_failed", "Refreshing failed"))
        }
        _ => {
            let token = state.store.get_token(integration_id).await.map_err(store_error)?;
            match token {
                Some(token) if token.status == IntegrationStatus::Error => Err(needs_reauth()),
                Some(token) => Ok(token),
                None => Err(ApiError::NotFound("Integration token")),
            }
        }
    }
}

/// What to do with the token as it stands under the refresh lock: nothing when someone else
/// refreshed (or the user reconnected) while we waited, else ask the provider.
async fn decide(
    http: &reqwest::Client,
    keys: &KeyRing,
    provider: &Provider,
    current: &StoredToken,
    seen_access: &str,
) -> RefreshStep {
    if current.access_token != seen_access || current.status == IntegrationStatus::Error {
        return RefreshStep::AlreadyFresh;
    }
    let Some(ciphertext) = current.refresh_token.as_deref() else {
        return RefreshStep::Failed(RefreshFailure {
            needs_reauth: true,
            message: "The provider gave no refresh token for this connection; connect again to renew it.".into(),
        });
    };
    let refresh_column = token_column("oauth_tokens.refresh_token", current.user_id, &current.provider);
    let refresh_token = match keys.decrypt(ciphertext, &refresh_column) {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(integration_id = current.integration_id, error = %error, "stored refresh token does not decrypt");
            return RefreshStep::Failed(RefreshFailure {
                needs_reauth: true,
                message: "The stored refresh token cannot be decrypted; connect again.".into(),
            });
        }
    };
    match client::refresh(http, provider, &refresh_token).await {
        Ok(tokens) => {
            let encrypt = |column: &str, value: &SecretString| {
                keys.encrypt(value.expose_secret(), &token_column(column, current.user_id, &current.provider))
            };
            RefreshStep::Refreshed(RefreshedTokens {
                access_token: encrypt("oauth_tokens.access_token", &tokens.access_token),
                // Rotating providers (Microsoft, Notion) send a new one: always keep it.
                refresh_token: tokens.refresh_token.as_ref().map(|t| encrypt("oauth_tokens.refresh_token", t)),
                token_type: tokens.token_type,
                expires_at: expires_at_from(Utc::now().naive_utc(), tokens.expires_in),
                scopes: tokens.scope.as_deref().map(split_scopes),
                scope: tokens.scope,
            })
        }
        Err(ProviderError::Rejected { error, .. }) if provider.is_reauth_error(&error) => {
            RefreshStep::Failed(RefreshFailure {
                needs_reauth: true,
                message: format!("The provider refused the refresh token ({error}); connect again."),
            })
        }
        Err(error) => RefreshStep::Failed(RefreshFailure { needs_reauth: false, message: error.to_string() }),
    }
}

fn step_name(step: &RefreshStep) -> &'static str {
    match step {
        RefreshStep::AlreadyFresh => "shared",
        RefreshStep::Refreshed(_) => "refreshed",
        RefreshStep::Failed(failure) if failure.needs_reauth => "needs_reauth",
        RefreshStep::Failed(_) => "failed",
    }
}

//! The service token endpoints: the hot path of backends asking for a fresh access token.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::json::Json;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::RequestClient;
use super::error::{ApiError, ApiResult, Problem};
use super::views::expiry;
use crate::auth::Caller;
use crate::oauth::input::ProviderName;
use crate::oauth::refresh::RefreshError;
use crate::oauth::tokens::{self, HandOut};
use crate::state::AppState;
use crate::store::{IntegrationFilter, IntegrationStatus, StoredToken};

const DEFAULT_MIN_TTL: i64 = 60;
const MAX_MIN_TTL: i64 = 86_400;

/// `GET /integrations/{id}/token`, `GET /users/{user_id}/integrations/{provider}/token`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/integrations/{id}/token", get(by_integration))
        .route("/users/{user_id}/integrations/{provider}/token", get(by_owner))
}

/// Answer of the token endpoints.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HandedOutToken {
    pub access_token: String,
    pub token_type: String,
    /// `null` for tokens that never expire (Notion).
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

/// Set when a due refresh failed for a reason that may pass and the current, still valid token
/// was handed out instead; its value is the failure's code (`provider_unavailable`, `busy`).
pub const REFRESH_FAILED_HEADER: &str = "x-token-refresh-failed";

/// The token endpoints' answer: the token, and the header that says a due refresh failed.
fn answer(token: HandOut) -> Response {
    let failed = match &token.refresh_failed {
        None => None,
        Some(RefreshError::Store(error)) => Some(error.code()),
        Some(_) => Some("provider_unavailable"),
    };
    let mut response = Json(HandedOutToken::from(token)).into_response();
    if let Some(code) = failed {
        response.headers_mut().insert(REFRESH_FAILED_HEADER, HeaderValue::from_static(code));
    }
    response
}

impl From<HandOut> for HandedOutToken {
    fn from(token: HandOut) -> Self {
        Self {
            access_token: token.access_token.expose_secret().to_owned(),
            token_type: token.token_type,
            expires_at: expiry(token.expires_at),
            scopes: token.scopes,
            integration_id: token.integration_id,
            provider: token.provider,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct TokenQuery {
    /// Refresh first when the token expires within this many seconds (0-86400, default 60).
    min_ttl: Option<i64>,
    /// The provider rejected the token you were given (HTTP 401): refresh it now. Concurrent
    /// callers reporting the same token share one refresh.
    force_refresh: Option<bool>,
}

impl TokenQuery {
    fn min_ttl(&self) -> Result<i64, ApiError> {
        match self.min_ttl {
            None => Ok(DEFAULT_MIN_TTL),
            Some(seconds) if (0..=MAX_MIN_TTL).contains(&seconds) => Ok(seconds),
            Some(_) => {
                Err(ApiError::bad_request("invalid_min_ttl", format!("min_ttl must be 0 to {MAX_MIN_TTL} seconds.")))
            }
        }
    }
}

/// Only service keys may read raw tokens, unless the operator lets users read their own. Decided
/// before any lookup, so the answer says nothing about which integrations exist.
fn gate(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    match caller {
        Caller::User(_) if !state.config.expose_tokens_to_users => {
            Err(ApiError::Forbidden("Only backend services may read raw access tokens.".into()))
        }
        _ => Ok(()),
    }
}

/// With user access enabled, a user reads only their own tokens (others' are 404).
fn authorise(caller: &Caller, token: &StoredToken) -> Result<(), ApiError> {
    match caller {
        Caller::User(user) if user.user_id != token.user_id => Err(ApiError::NotFound("Integration")),
        _ => Ok(()),
    }
}

#[utoipa::path(get, path = "/api/v1/oauth/integrations/{id}/token", tag = "tokens", params(("id" = i32, Path), TokenQuery), security(("service_key" = [])),
    responses((status = 200, body = HandedOutToken, headers(("x-token-refresh-failed" = String, description = "A due refresh failed for a reason that may pass (provider_unavailable, busy); this is the current token, still valid"))), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, description = "needs_reauth or integration_revoked", body = Problem)))]
pub(super) async fn by_integration(
    State(state): State<AppState>,
    caller: Caller,
    RequestClient(client): RequestClient,
    Path(id): Path<i32>,
    Query(query): Query<TokenQuery>,
) -> ApiResult<Response> {
    gate(&state, &caller)?;
    let min_ttl = query.min_ttl()?;
    let stored = match state.vault.store.get_token(id).await? {
        Some(stored) => stored,
        None => return Err(missing_token(&state, &caller, id).await),
    };
    if let Caller::User(user) = &caller
        && !user.may_access(stored.user_id)
    {
        return Err(ApiError::NotFound("Integration"));
    }
    authorise(&caller, &stored)?;
    let token = tokens::hand_out(&state.vault, stored, min_ttl, query.force_refresh.unwrap_or(false), &client).await?;
    Ok(answer(token))
}

#[utoipa::path(get, path = "/api/v1/oauth/users/{user_id}/integrations/{provider}/token", tag = "tokens", params(("user_id" = i32, Path), ("provider" = String, Path), TokenQuery), security(("service_key" = [])),
    responses((status = 200, body = HandedOutToken, headers(("x-token-refresh-failed" = String, description = "A due refresh failed for a reason that may pass (provider_unavailable, busy); this is the current token, still valid"))), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub(super) async fn by_owner(
    State(state): State<AppState>,
    caller: Caller,
    RequestClient(client): RequestClient,
    Path((user_id, provider)): Path<(i32, String)>,
    Query(query): Query<TokenQuery>,
) -> ApiResult<Response> {
    gate(&state, &caller)?;
    let min_ttl = query.min_ttl()?;
    if let Caller::User(user) = &caller
        && !user.may_access(user_id)
    {
        return Err(ApiError::NotFound("Integration"));
    }
    let Some(provider) =
        ProviderName::parse(&provider).filter(|name| state.vault.providers.get(name.as_str()).is_some())
    else {
        return Err(ApiError::NotFound("Integration"));
    };
    let Some(stored) = state.vault.store.find_token_by_owner(user_id, provider.as_str()).await? else {
        // A disconnected integration has no token row: say so, as the endpoint by id does.
        let filter = IntegrationFilter { provider: Some(provider.as_str().to_owned()), active_only: false };
        let integrations = state.vault.store.list_integrations(user_id, &filter).await?;
        return Err(match integrations.first() {
            Some(integration) => missing_token(&state, &caller, integration.id).await,
            None => ApiError::NotFound("Integration"),
        });
    };
    authorise(&caller, &stored)?;
    let token = tokens::hand_out(&state.vault, stored, min_ttl, query.force_refresh.unwrap_or(false), &client).await?;
    Ok(answer(token))
}

/// Why there is no token: a disconnected integration (409) or none at all (404). A user (when
/// users may read tokens at all) hears about their own integrations only, as `authorise` allows.
async fn missing_token(state: &AppState, caller: &Caller, id: i32) -> ApiError {
    match state.vault.store.get_integration(id).await {
        Ok(Some(integration))
            if integration.status == IntegrationStatus::Revoked
                && !matches!(caller, Caller::User(user) if user.user_id != integration.user_id) =>
        {
            ApiError::Conflict { code: "integration_revoked", detail: "The integration was disconnected.".into() }
        }
        Ok(_) => ApiError::NotFound("Integration"),
        Err(error) => error.into(),
    }
}

//! `/integrations`: the caller's connections.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::RequestClient;
use super::views::IntegrationView;
use crate::auth::UserCaller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::oauth::disconnect::{self, Disconnected};
use crate::oauth::flow::store_error;
use crate::oauth::tokens;
use crate::state::AppState;
use crate::store::{Integration, IntegrationFilter, IntegrationStatus, NEVER_EXPIRES};

/// Tokens expiring within this many seconds are refreshed by `POST /integrations/sync`.
const SYNC_LEAD_SECONDS: i64 = 300;
/// `oauth_consents.revoked_reason` is VARCHAR(100).
const REASON_MAX: usize = 100;

/// Routes under `/api/v1/oauth/integrations`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/integrations", get(list))
        .route("/integrations/sync", post(sync))
        .route("/integrations/{id}", get(show).delete(remove))
        .route("/integrations/{id}/refresh", post(refresh))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    provider: Option<String>,
    active_only: Option<bool>,
    /// Administrators may list another user's integrations.
    user_id: Option<i32>,
}

/// `GET /integrations`: the caller's integrations (`active_only` defaults to true).
#[utoipa::path(get, path = "/api/v1/oauth/integrations", tag = "integrations", params(ListQuery), security(("user_jwt" = [])),
    responses((status = 200, description = "The caller's integrations", body = [IntegrationView]), (status = 401, body = Problem)))]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: UserCaller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Vec<IntegrationView>>> {
    let user_id = match query.user_id {
        Some(other) if other != caller.user_id && !caller.is_admin => {
            return Err(ApiError::Forbidden("Only administrators may list another user's integrations.".into()));
        }
        Some(other) => other,
        None => caller.user_id,
    };
    if let Some(provider) = query.provider.as_deref().filter(|name| state.providers.get(name).is_none()) {
        return Err(ApiError::bad_request("unknown_provider", format!("Unknown provider {provider:?}.")));
    }
    let filter = IntegrationFilter { provider: query.provider, active_only: query.active_only.unwrap_or(true) };
    let integrations = state.store.list_integrations(user_id, &filter).await.map_err(anyhow::Error::from)?;
    Ok(Json(integrations.into_iter().map(|i| IntegrationView::new(i, &state.providers)).collect()))
}

/// `GET /integrations/{id}`: one integration of the caller (404 for anybody else's).
#[utoipa::path(get, path = "/api/v1/oauth/integrations/{id}", tag = "integrations", params(("id" = i32, Path)), security(("user_jwt" = [])),
    responses((status = 200, body = IntegrationView), (status = 404, body = Problem)))]
pub(super) async fn show(
    State(state): State<AppState>,
    caller: UserCaller,
    Path(id): Path<i32>,
) -> ApiResult<Json<IntegrationView>> {
    let integration = owned_integration(&state, &caller, id).await?;
    Ok(Json(IntegrationView::new(integration, &state.providers)))
}

/// The integration `id` if the caller owns it (or is an administrator); 404 otherwise, so that
/// ids of other users' integrations cannot be probed.
pub async fn owned_integration(state: &AppState, caller: &UserCaller, id: i32) -> ApiResult<Integration> {
    match state.store.get_integration(id).await.map_err(anyhow::Error::from)? {
        Some(integration) if caller.may_access(integration.user_id) => Ok(integration),
        _ => Err(ApiError::NotFound("Integration")),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Refreshed {
    message: String,
    integration: IntegrationView,
}

/// `POST /integrations/{id}/refresh`: refresh now.
#[utoipa::path(post, path = "/api/v1/oauth/integrations/{id}/refresh", tag = "integrations", params(("id" = i32, Path)), security(("user_jwt" = [])),
    responses((status = 200, body = Refreshed), (status = 400, description = "no_refresh_token or needs_reauth", body = Problem), (status = 404, body = Problem), (status = 502, body = Problem)))]
pub(super) async fn refresh(
    State(state): State<AppState>,
    caller: UserCaller,
    RequestClient(client): RequestClient,
    Path(id): Path<i32>,
) -> ApiResult<Json<Refreshed>> {
    let integration = owned_integration(&state, &caller, id).await?;
    match integration.status {
        IntegrationStatus::Revoked => {
            return Err(ApiError::Conflict {
                code: "integration_revoked",
                detail: "The integration was disconnected.".into(),
            });
        }
        // The same answer as the refresh that found the grant dead; the provider is not asked again.
        IntegrationStatus::Error => {
            let why = integration.error_message.unwrap_or_else(|| "The connection needs re-authorisation.".into());
            return Err(ApiError::bad_request("needs_reauth", why));
        }
        _ => {}
    }
    let token = state.store.get_token(id).await.map_err(store_error)?.ok_or(ApiError::NotFound("Integration token"))?;
    tokens::refresh(&state, token, "manual", &client).await?;
    let integration = owned_integration(&state, &caller, id).await?;
    let display = state.providers.display_name(&integration.provider).to_owned();
    Ok(Json(Refreshed {
        message: format!("Refreshed the {display} connection."),
        integration: IntegrationView::new(integration, &state.providers),
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ReasonQuery {
    reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: Option<String>,
}

/// `DELETE /integrations/{id}?reason=` (or JSON body `{reason}`): disconnect; idempotent.
#[utoipa::path(delete, path = "/api/v1/oauth/integrations/{id}", tag = "integrations", params(("id" = i32, Path), ReasonQuery), security(("user_jwt" = [])),
    responses((status = 200, description = "Disconnected (idempotent)", body = Disconnected), (status = 404, body = Problem)))]
pub(super) async fn remove(
    State(state): State<AppState>,
    caller: UserCaller,
    RequestClient(client): RequestClient,
    Path(id): Path<i32>,
    Query(query): Query<ReasonQuery>,
    body: Bytes,
) -> ApiResult<Json<Disconnected>> {
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<ReasonBody>(&body)
            .map_err(|error| {
                ApiError::bad_request("invalid_body", format!("The body must be {{\"reason\": \"...\"}}: {error}"))
            })?
            .reason
    };
    let reason = query.reason.or(from_body).unwrap_or_else(|| "user_request".to_owned());
    if reason.chars().any(char::is_control) {
        return Err(ApiError::bad_request("invalid_reason", "reason may not contain control characters."));
    }
    if reason.chars().count() > REASON_MAX {
        return Err(ApiError::bad_request(
            "reason_too_long",
            format!("reason may have at most {REASON_MAX} characters."),
        ));
    }
    let integration = owned_integration(&state, &caller, id).await?;
    Ok(Json(disconnect::disconnect(&state, integration, reason, &client).await?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct SyncResult {
    integration_id: i32,
    provider: String,
    status: &'static str,
    detail: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct SyncAnswer {
    message: String,
    results: Vec<SyncResult>,
}

/// `POST /integrations/sync`: check every integration of the caller, refreshing those that need it.
#[utoipa::path(post, path = "/api/v1/oauth/integrations/sync", tag = "integrations", security(("user_jwt" = [])),
    responses((status = 200, body = SyncAnswer)))]
pub(super) async fn sync(
    State(state): State<AppState>,
    caller: UserCaller,
    RequestClient(client): RequestClient,
) -> ApiResult<Json<SyncAnswer>> {
    let filter = IntegrationFilter { provider: None, active_only: false };
    let integrations = state.store.list_integrations(caller.user_id, &filter).await.map_err(store_error)?;
    let mut results = Vec::new();
    for integration in integrations.into_iter().filter(|i| i.status != IntegrationStatus::Revoked) {
        let (status, detail) = sync_one(&state, &integration, &client).await;
        results.push(SyncResult { integration_id: integration.id, provider: integration.provider, status, detail });
    }
    let broken = results.iter().filter(|r| r.status != "ok" && r.status != "refreshed").count();
    let message = match broken {
        0 => format!("Checked {} integration(s); all are working.", results.len()),
        n => format!("Checked {} integration(s); {n} need attention.", results.len()),
    };
    Ok(Json(SyncAnswer { message, results }))
}

async fn sync_one(
    state: &AppState,
    integration: &Integration,
    client: &crate::store::ClientInfo,
) -> (&'static str, String) {
    if integration.status == IntegrationStatus::Error {
        let why = integration.error_message.clone().unwrap_or_else(|| "The connection is broken.".into());
        return ("needs_reauth", why);
    }
    let token = match state.store.get_token(integration.id).await {
        Ok(Some(token)) => token,
        Ok(None) => return ("needs_reauth", "No token is stored; connect again.".into()),
        Err(error) => return ("error", store_error(error).to_string()),
    };
    let due = if token.expires_at >= NEVER_EXPIRES {
        // A token without expiry is only known dead when the provider refuses it (Notion).
        token_rejected_by_provider(state, &token).await
    } else {
        token.expires_at - chrono::Utc::now().naive_utc() < chrono::Duration::seconds(SYNC_LEAD_SECONDS)
    };
    if !due {
        return ("ok", "The token is valid.".into());
    }
    // Still valid but nothing to renew it with: report, do not break it early.
    if token.refresh_token.is_none()
        && token.expires_at > chrono::Utc::now().naive_utc()
        && token.expires_at < NEVER_EXPIRES
    {
        return ("expiring", "The token expires soon and the provider gave no refresh token.".into());
    }
    // Otherwise refresh; without a refresh token this marks the integration for re-authorisation.
    match tokens::refresh(state, token, "sync", client).await {
        Ok(_) => ("refreshed", "The token was refreshed.".into()),
        Err(error) if matches!(error.code(), "needs_reauth" | "no_refresh_token") => {
            ("needs_reauth", error.to_string())
        }
        Err(error) => ("error", error.to_string()),
    }
}

/// Whether the provider's identity endpoint refuses the token (only for providers that have one).
async fn token_rejected_by_provider(state: &AppState, token: &crate::store::StoredToken) -> bool {
    let Some(provider) = state.providers.get(&token.provider) else { return false };
    let Some(url) = provider.userinfo_url.as_deref() else { return false };
    let column = crate::oauth::flow::token_column("oauth_tokens.access_token", token.user_id, &token.provider);
    let Ok(access) = state.keys.decrypt(&token.access_token, &column) else { return true };
    matches!(
        crate::oauth::client::fetch_json(&state.http, provider, url, &access).await,
        Err(crate::oauth::client::ProviderError::Rejected { status: 401, .. })
    )
}

//! `/integrations`: the caller's connections.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};

use super::json::Json;
use serde::{Deserialize, Serialize};

use super::RequestClient;
use super::error::{ApiError, ApiResult, Problem};
use super::views::IntegrationView;
use crate::auth::UserCaller;
use crate::oauth::input::ProviderName;
use crate::oauth::sync::{self, SyncOutcome};
use crate::oauth::{FlowError, disconnect, refresh};
use crate::state::AppState;
use crate::store::{Integration, IntegrationFilter, ProviderRevocation};

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
    let provider = query
        .provider
        .map(|raw| match ProviderName::parse(&raw).filter(|name| state.vault.providers.get(name.as_str()).is_some()) {
            Some(name) => Ok(name),
            None => Err(FlowError::UnknownProvider(raw)),
        })
        .transpose()?;
    let filter = IntegrationFilter {
        provider: provider.map(|name| name.as_str().to_owned()),
        active_only: query.active_only.unwrap_or(true),
    };
    let integrations = state.vault.store.list_integrations(user_id, &filter).await?;
    Ok(Json(integrations.into_iter().map(|i| IntegrationView::new(i, &state.vault.providers)).collect()))
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
    Ok(Json(IntegrationView::new(integration, &state.vault.providers)))
}

/// The integration `id` if the caller owns it (or is an administrator); 404 otherwise, so that
/// ids of other users' integrations cannot be probed.
pub async fn owned_integration(state: &AppState, caller: &UserCaller, id: i32) -> ApiResult<Integration> {
    match state.vault.store.get_integration(id).await? {
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
    state.limits.refresh(caller.user_id)?;
    refresh::refresh_now(&state.vault, &integration, &client).await?;
    let integration = owned_integration(&state, &caller, id).await?;
    let display = state.vault.providers.display_name(&integration.provider).to_owned();
    Ok(Json(Refreshed {
        message: format!("Refreshed the {display} connection."),
        integration: IntegrationView::new(integration, &state.vault.providers),
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
    let display = state.vault.providers.display_name(&integration.provider).to_owned();
    let done = disconnect::disconnect(&state.vault, integration, reason, &client).await?;
    Ok(Json(Disconnected::new(&display, done)))
}

/// Answer of `DELETE /integrations/{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Disconnected {
    message: String,
    integration_id: i32,
    /// `revoked`, `not_supported`, `failed` or `nothing_to_revoke`.
    provider_revocation: &'static str,
}

impl Disconnected {
    fn new(display: &str, done: disconnect::Disconnection) -> Self {
        let (message, provider_revocation) = match done.revocation {
            _ if done.already_disconnected => (format!("{display} was already disconnected."), "nothing_to_revoke"),
            ProviderRevocation::Revoked => {
                (format!("Disconnected {display}; access was revoked at {display}."), "revoked")
            }
            ProviderRevocation::NotSupported => (
                format!(
                    "Disconnected {display} and deleted its tokens here. {display} offers no revocation endpoint, so \
                     the grant could not be revoked at the provider: remove the app in the account's {display} settings."
                ),
                "not_supported",
            ),
            ProviderRevocation::NothingToRevoke => (format!("Disconnected {display}."), "nothing_to_revoke"),
            ProviderRevocation::Failed(reason) => (
                format!(
                    "Disconnected {display} and deleted its tokens here, but revoking at {display} failed ({reason})."
                ),
                "failed",
            ),
        };
        Self { message, integration_id: done.integration_id, provider_revocation }
    }
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
    state.limits.refresh(caller.user_id)?;
    let results: Vec<SyncResult> = sync::sync_user(&state.vault, caller.user_id, &client)
        .await?
        .into_iter()
        .map(|result| {
            let (status, detail) = match result.outcome {
                SyncOutcome::Valid => ("ok", "The token is valid.".to_owned()),
                SyncOutcome::Refreshed => ("refreshed", "The token was refreshed.".to_owned()),
                SyncOutcome::Expiring => {
                    ("expiring", "The token expires soon and the provider gave no refresh token.".to_owned())
                }
                SyncOutcome::NeedsReauth(why) => ("needs_reauth", why),
                SyncOutcome::Failed(error) => ("error", ApiError::from(error).to_string()),
            };
            SyncResult { integration_id: result.integration_id, provider: result.provider, status, detail }
        })
        .collect();
    let broken = results.iter().filter(|r| r.status != "ok" && r.status != "refreshed").count();
    let message = match broken {
        0 => format!("Checked {} integration(s); all are working.", results.len()),
        n => format!("Checked {} integration(s); {n} need attention.", results.len()),
    };
    Ok(Json(SyncAnswer { message, results }))
}

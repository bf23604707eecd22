//! `/integrations`: the caller's connections.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::views::IntegrationView;
use crate::auth::UserCaller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{Integration, IntegrationFilter};

/// Routes under `/api/v1/oauth/integrations`.
pub fn router() -> Router<AppState> {
    Router::new().route("/integrations", get(list)).route("/integrations/{id}", get(show))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    provider: Option<String>,
    active_only: Option<bool>,
    /// Administrators may list another user's integrations.
    user_id: Option<i32>,
}

/// `GET /integrations`: the caller's integrations (`active_only` defaults to true).
async fn list(
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
    let filter = IntegrationFilter { provider: query.provider, active_only: query.active_only.unwrap_or(true) };
    let integrations = state.store.list_integrations(user_id, &filter).await.map_err(anyhow::Error::from)?;
    Ok(Json(integrations.into_iter().map(|i| IntegrationView::new(i, &state.providers)).collect()))
}

/// `GET /integrations/{id}`: one integration of the caller (404 for anybody else's).
async fn show(
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

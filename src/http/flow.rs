//! `/initiate` and `/callback`: the browser's part of connecting an account.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::LOCATION;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use url::Url;

use super::RequestClient;
use crate::auth::{MaybeUser, UserCaller};
use crate::error::{ApiResult, Problem};
use crate::oauth::flow::{self, CallbackFailure, CallbackQuery, InitiateRequest, InitiateResponse};
use crate::state::AppState;

/// `POST /initiate`, `GET /callback`, `GET /callback/{provider}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/initiate", post(initiate))
        .route("/callback", get(callback))
        .route("/callback/{provider}", get(callback_for_provider))
}

#[utoipa::path(post, path = "/api/v1/oauth/initiate", tag = "flow", request_body = InitiateRequest, security(("user_jwt" = [])),
    responses((status = 200, body = InitiateResponse), (status = 400, body = Problem), (status = 503, description = "OAuth credentials not configured", body = Problem)))]
pub(super) async fn initiate(
    State(state): State<AppState>,
    caller: UserCaller,
    Json(request): Json<InitiateRequest>,
) -> ApiResult<Json<InitiateResponse>> {
    Ok(Json(flow::initiate(&state, &caller, request).await?))
}

#[utoipa::path(get, path = "/api/v1/oauth/callback", tag = "flow", params(CallbackQuery),
    responses((status = 200, description = "{message, integration_id, provider, status}"), (status = 303, description = "Back to return_to with oauth_status"), (status = 400, body = Problem), (status = 502, body = Problem)))]
pub(super) async fn callback(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    RequestClient(client): RequestClient,
    Query(query): Query<CallbackQuery>,
) -> Response {
    finish(&state, query, None, user, client).await
}

/// RFC 9700 §4.4.2.2: a distinct redirect URI per provider defends against mix-up attacks.
#[utoipa::path(get, path = "/api/v1/oauth/callback/{provider}", tag = "flow", params(("provider" = String, Path), CallbackQuery),
    responses((status = 200, description = "{message, integration_id, provider, status}"), (status = 303, description = "Back to return_to with oauth_status"), (status = 400, body = Problem), (status = 502, body = Problem)))]
pub(super) async fn callback_for_provider(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    MaybeUser(user): MaybeUser,
    RequestClient(client): RequestClient,
    Query(query): Query<CallbackQuery>,
) -> Response {
    finish(&state, query, Some(&provider), user, client).await
}

async fn finish(
    state: &AppState,
    query: CallbackQuery,
    provider: Option<&str>,
    user: Option<UserCaller>,
    client: crate::store::ClientInfo,
) -> Response {
    match flow::callback(state, query, provider, user.map(|u| u.user_id), client).await {
        Ok(connected) => {
            let integration = connected.integration;
            match connected.return_to {
                Some(target) => redirect(
                    &target,
                    &[
                        ("oauth_status", "success"),
                        ("provider", &integration.provider),
                        ("integration_id", &integration.id.to_string()),
                    ],
                ),
                None => Json(json!({
                    "message": format!("Connected {}.", state.providers.display_name(&integration.provider)),
                    "integration_id": integration.id,
                    "provider": integration.provider,
                    "status": integration.status,
                }))
                .into_response(),
            }
        }
        Err(CallbackFailure { error, return_to: Some(target) }) => {
            tracing::info!(code = error.code(), "callback refused; redirecting back");
            redirect(&target, &[("oauth_status", "error"), ("error", error.code())])
        }
        Err(CallbackFailure { error, return_to: None }) => error.into_response(),
    }
}

fn redirect(target: &str, pairs: &[(&str, &str)]) -> Response {
    let Ok(mut url) = Url::parse(target) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    url.query_pairs_mut().extend_pairs(pairs);
    (StatusCode::SEE_OTHER, [(LOCATION, url.as_str().to_owned())]).into_response()
}

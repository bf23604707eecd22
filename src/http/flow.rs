//! `/initiate` and `/callback`: the browser's part of connecting an account.

use axum::extract::{Path, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use url::Url;

use super::RequestClient;
use crate::auth::{MaybeUser, UserCaller, cookie};
use crate::error::{ApiResult, Problem};
use crate::oauth::flow::{self, Browser, CallbackFailure, CallbackQuery, InitiateRequest, InitiateResponse};
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
) -> ApiResult<Response> {
    let (answer, cookie) = flow::initiate(&state, &caller, request).await?;
    let secure = if state.config.public_base_url.scheme() == "https" { "; Secure" } else { "" };
    let set_cookie = format!(
        "{}={}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        cookie.name,
        cookie.value,
        flow::flow_cookie_path(&state.config),
        cookie.max_age_seconds
    );
    Ok(([(SET_COOKIE, set_cookie)], Json(answer)).into_response())
}

#[utoipa::path(get, path = "/api/v1/oauth/callback", tag = "flow", params(CallbackQuery),
    responses((status = 200, description = "{message, integration_id, provider, status}"), (status = 303, description = "Back to return_to with oauth_status"), (status = 400, body = Problem), (status = 502, body = Problem)))]
pub(super) async fn callback(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    RequestClient(client): RequestClient,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    finish(&state, query, None, user, &headers, client).await
}

/// RFC 9700 §4.4.2.2: a distinct redirect URI per provider defends against mix-up attacks.
#[utoipa::path(get, path = "/api/v1/oauth/callback/{provider}", tag = "flow", params(("provider" = String, Path), CallbackQuery),
    responses((status = 200, description = "{message, integration_id, provider, status}"), (status = 303, description = "Back to return_to with oauth_status"), (status = 400, body = Problem), (status = 502, body = Problem)))]
pub(super) async fn callback_for_provider(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    MaybeUser(user): MaybeUser,
    RequestClient(client): RequestClient,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    finish(&state, query, Some(&provider), user, &headers, client).await
}

async fn finish(
    state: &AppState,
    query: CallbackQuery,
    provider: Option<&str>,
    user: Option<UserCaller>,
    headers: &HeaderMap,
    client: crate::store::ClientInfo,
) -> Response {
    let cookie_name = query.state.as_deref().map(flow::flow_cookie_name);
    let browser = Browser {
        user_id: user.map(|u| u.user_id),
        flow_cookie: cookie_name.as_deref().and_then(|name| cookie(headers, name)).map(str::to_owned),
    };
    let outcome = flow::callback(state, query, provider, browser, client).await;
    let state_spent = outcome.as_ref().map_or_else(|failure| failure.state_spent, |_| true);
    let mut response = match outcome {
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
        Err(CallbackFailure { error, return_to: Some(target), .. }) => {
            tracing::info!(code = error.code(), "callback refused; redirecting back");
            redirect(&target, &[("oauth_status", "error"), ("error", error.code())])
        }
        Err(CallbackFailure { error, return_to: None, .. }) => error.into_response(),
    };
    // Once the state is spent this browser's cookie for it is useless: forget it. A refusal that
    // left the state usable keeps the cookie, so the right callback can still finish the flow.
    if let Some(name) = cookie_name.filter(|_| state_spent) {
        let path = flow::flow_cookie_path(&state.config);
        let expired = format!("{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Lax");
        if let Ok(value) = HeaderValue::from_str(&expired) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

fn redirect(target: &str, pairs: &[(&str, &str)]) -> Response {
    let Ok(mut url) = Url::parse(target) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    url.query_pairs_mut().extend_pairs(pairs);
    (StatusCode::SEE_OTHER, [(LOCATION, url.as_str().to_owned())]).into_response()
}

//! `/initiate` and `/callback`: the browser's part of connecting an account, and the flow cookie
//! that binds a flow to the browser that started it (RFC 9700 §4.7).

use axum::extract::{Path, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use super::RequestClient;
use super::error::{ApiError, ApiResult, Problem};
use super::extract::{MaybeUser, cookie};
use crate::auth::UserCaller;
use crate::config::Config;
use crate::crypto::sha256_hex;
use crate::oauth::FlowError;
use crate::oauth::flow::{self, Authorization, AuthorizationResponse, Browser, CallbackFailure};
use crate::oauth::input::{CallbackUrl, ProviderName, ReturnTo, Scope};
use crate::state::AppState;
use crate::store::ClientInfo;

/// `POST /initiate`, `GET /callback`, `GET /callback/{provider}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/initiate", post(initiate))
        .route("/callback", get(callback))
        .route("/callback/{provider}", get(callback_for_provider))
}

/// Body of `POST /initiate`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InitiateRequest {
    pub provider: String,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub redirect_uri: Option<String>,
    #[serde(default)]
    pub return_to: Option<String>,
}

/// Answer of `POST /initiate`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InitiateResponse {
    pub authorization_url: String,
    pub state: String,
    pub provider: String,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

/// Query of the callback (RFC 6749 §4.1.2 and §4.1.2.1, RFC 9207).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Whether the flow cookie can carry the `__Host-` prefix (RFC 6265bis §4.1.3.2): only over https
/// and at the host's root, where `Secure`, `Path=/` and no `Domain` pin it to this host alone.
fn host_prefixed(config: &Config) -> bool {
    config.public_base_url.scheme() == "https" && config.public_base_url.path().trim_end_matches('/').is_empty()
}

/// Path the flow cookie is sent to: both callback routes and nothing else, under whatever path
/// `PUBLIC_BASE_URL` itself has (a service behind a proxy at `/oam`); `/` for a `__Host-` cookie.
pub fn flow_cookie_path(config: &Config) -> String {
    if host_prefixed(config) {
        return "/".to_owned();
    }
    format!("{}/api/v1/oauth/callback", config.public_base_url.path().trim_end_matches('/'))
}

/// The flow cookie's name for a state: one per flow, so parallel flows in one browser coexist.
pub fn flow_cookie_name(config: &Config, state_value: &str) -> String {
    let prefix = if host_prefixed(config) { "__Host-" } else { "" };
    format!("{prefix}oam_flow_{}", &sha256_hex(state_value.as_bytes())[..16])
}

#[utoipa::path(post, path = "/api/v1/oauth/initiate", tag = "flow", request_body = InitiateRequest, security(("user_jwt" = [])),
    responses((status = 200, body = InitiateResponse), (status = 400, body = Problem), (status = 429, description = "rate_limited or too_many_flows; see Retry-After", body = Problem), (status = 503, description = "OAuth credentials not configured", body = Problem)))]
pub(super) async fn initiate(
    State(state): State<AppState>,
    caller: UserCaller,
    RequestClient(client): RequestClient,
    Json(request): Json<InitiateRequest>,
) -> ApiResult<Response> {
    state.limits.initiate(caller.user_id, client.ip_address)?;
    let vault = &state.vault;
    // Each value parsed once, in the order its errors are reported.
    let name = ProviderName::parse(&request.provider).ok_or_else(|| FlowError::UnknownProvider(request.provider))?;
    let provider = vault.configured_provider(&name)?;
    let authorization = Authorization {
        provider,
        scopes: Scope::requested(provider, request.scopes)?,
        redirect_uri: CallbackUrl::choose(&state.config, provider, request.redirect_uri)?,
        return_to: request
            .return_to
            .map(|target| {
                ReturnTo::parse(&target, &state.config.allowed_return_origins, state.config.limits.return_to_max_bytes)
            })
            .transpose()?,
    };
    let started = flow::initiate(vault, caller.user_id, authorization).await?;
    let secure = if state.config.public_base_url.scheme() == "https" { "; Secure" } else { "" };
    let set_cookie = format!(
        "{}={}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        flow_cookie_name(&state.config, &started.state),
        started.browser_binding,
        flow_cookie_path(&state.config),
        started.lifetime_seconds
    );
    let answer = InitiateResponse {
        authorization_url: started.authorization_url,
        state: started.state,
        provider: started.provider,
        scopes: started.scopes,
        expires_at: started.expires_at,
    };
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
    client: ClientInfo,
) -> Response {
    if let Err(refused) = state.limits.callback(client.ip_address) {
        return refused.into_response();
    }
    let cookie_name = query.state.as_deref().map(|value| flow_cookie_name(&state.config, value));
    let browser = Browser {
        user_id: user.map(|u| u.user_id),
        flow_cookie: cookie_name.as_deref().and_then(|name| cookie(headers, name)).map(str::to_owned),
    };
    let response = AuthorizationResponse { code: query.code, state: query.state, iss: query.iss, error: query.error };
    let outcome = flow::callback(&state.vault, response, provider, browser, client).await;
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
                    "message": format!("Connected {}.", state.vault.providers.display_name(&integration.provider)),
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
        Err(CallbackFailure { error, return_to: None, .. }) => ApiError::from(error).into_response(),
    };
    // Once the state is spent this browser's cookie for it is useless: forget it. A refusal that
    // left the state usable keeps the cookie, so the right callback can still finish the flow.
    if let Some(name) = cookie_name.filter(|_| state_spent) {
        let path = flow_cookie_path(&state.config);
        let secure = if state.config.public_base_url.scheme() == "https" { "; Secure" } else { "" };
        let expired = format!("{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Lax{secure}");
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

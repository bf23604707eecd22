//! `/initiate` and `/callback`: the browser's part of connecting an account, and the flow cookie
//! that binds a flow to the browser that started it (RFC 9700 §4.7).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header::{LOCATION, ORIGIN, REFERER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{MaybeUser, cookie};
use super::json::Json;
use super::{RequestClient, pages};
use crate::auth::UserCaller;
use crate::config::Config;
use crate::crypto::sha256_hex;
use crate::oauth::FlowError;
use crate::oauth::flow::{
    self, Authorization, AuthorizationResponse, Binding, Browser, CallbackFailure, CameFrom, Opener,
};
use crate::oauth::input::{CallbackUrl, ProviderName, ReturnTo, Scope};
use crate::state::AppState;
use crate::store::ClientInfo;

/// `POST /initiate`, `GET /handoff/{state}`, `GET /callback`, `GET /callback/{provider}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/initiate", post(initiate))
        .route("/handoff/{state}", get(handoff))
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

/// Whether the flow cookie carries the `__Host-` prefix (RFC 6265bis §4.1.3.2): always over
/// https (with `Secure`, `Path=/` and no `Domain`, which pin it to this host alone), even when
/// `PUBLIC_BASE_URL` has a path, so a sibling subdomain cannot plant one of its own.
fn host_prefixed(config: &Config) -> bool {
    config.public_base_url.scheme() == "https"
}

/// Path the flow cookie is sent to: the API (the authorization link and both callback routes
/// are under it), under whatever path `PUBLIC_BASE_URL` itself has (a service behind a proxy at
/// `/oam`); `/` for a `__Host-` cookie.
pub fn flow_cookie_path(config: &Config) -> String {
    if host_prefixed(config) {
        return "/".to_owned();
    }
    format!("{}/api/v1/oauth", config.public_base_url.path().trim_end_matches('/'))
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
    headers: HeaderMap,
    Json(request): Json<InitiateRequest>,
) -> ApiResult<Response> {
    state.limits.initiate(caller.user_id, client.ip_address)?;
    let binding = if !state.config.browser_binding || from_own_page(&headers, &state.config) {
        Binding::Cookie
    } else {
        Binding::Handoff
    };
    let started = start(&state, caller.user_id, request, binding).await?;
    let (state_value, binding, lifetime) = (started.state.clone(), started.browser_binding, started.lifetime_seconds);
    let answer = InitiateResponse {
        authorization_url: started.authorization_url,
        state: started.state,
        provider: started.provider,
        scopes: started.scopes,
        expires_at: started.expires_at,
    };
    let mut response = Json(answer).into_response();
    if let Some(binding) = &binding {
        append_flow_cookie(&mut response, &state.config, &state_value, binding, lifetime);
    }
    Ok(response)
}

/// Validates a request to connect an account and starts its flow for `user_id` (`/initiate`,
/// `/connect/{provider}` and connect links alike: the same state, consent and audit).
pub(super) async fn start(
    state: &AppState,
    user_id: i32,
    request: InitiateRequest,
    binding: Binding,
) -> ApiResult<flow::Initiated> {
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
                // The app's origins, and this service's own (its connect page).
                let mut origins = state.config.allowed_return_origins.clone();
                origins.push(state.config.public_base_url.origin());
                ReturnTo::parse(&target, &origins, state.config.limits.return_to_max_bytes)
            })
            .transpose()?,
        binding,
    };
    Ok(flow::initiate(vault, user_id, authorization).await?)
}

/// Whether a request comes from a page of this service's own origin, so that cookies its answer
/// sets reach the browser that will go to the provider. A browser names the page's origin in
/// `Origin` on every POST; a request without it (curl, a backend) has no such browser.
fn from_own_page(headers: &HeaderMap, config: &Config) -> bool {
    match headers.get(ORIGIN).and_then(|value| value.to_str().ok()) {
        Some(origin) => Url::parse(origin).is_ok_and(|origin| origin.origin() == config.public_base_url.origin()),
        None => headers.get("sec-fetch-site").is_some_and(|site| site == "same-origin"),
    }
}

/// Where the page that opened an authorization link was. `Sec-Fetch-Site` decides where the
/// browser sends it: a cross-site navigation (also one redirected through another site) is
/// another site's, whatever its `Referer`; a same-site one is the app's unless its `Referer`
/// names another origin; `none` is no page at all. Without fetch metadata (older browsers,
/// curl) the `Referer` alone tells, and its absence means no page.
pub(super) fn came_from(headers: &HeaderMap, config: &Config) -> CameFrom {
    let has_referer = headers.contains_key(REFERER);
    let from_app = referred_by_app(headers, config);
    match headers.get("sec-fetch-site").and_then(|value| value.to_str().ok()) {
        Some("same-origin" | "same-site") if has_referer && !from_app => CameFrom::OtherSite,
        Some("same-origin" | "same-site") => CameFrom::App,
        Some("none") => CameFrom::Nowhere,
        Some(_) => CameFrom::OtherSite,
        None if from_app => CameFrom::App,
        None if has_referer => CameFrom::OtherSite,
        None => CameFrom::Nowhere,
    }
}

/// Whether the `Referer` names this service's or the app's origin.
pub(super) fn referred_by_app(headers: &HeaderMap, config: &Config) -> bool {
    let referer = headers.get(REFERER).and_then(|value| value.to_str().ok()).and_then(|r| Url::parse(r).ok());
    referer.is_some_and(|url| config.is_app_origin(&url.origin()))
}

/// Adds flow `state_value`'s cookie (`value`, for `max_age` seconds; empty and 0 forget it) to
/// `response`.
pub(super) fn append_flow_cookie(
    response: &mut Response,
    config: &Config,
    state_value: &str,
    value: &str,
    max_age: u64,
) {
    if let Ok(cookie) = HeaderValue::from_str(&flow_cookie(config, state_value, value, max_age)) {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
}

/// The `Set-Cookie` value of flow `state_value`'s cookie.
fn flow_cookie(config: &Config, state_value: &str, value: &str, max_age: u64) -> String {
    let secure = if config.public_base_url.scheme() == "https" { "; Secure" } else { "" };
    format!(
        "{}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
        flow_cookie_name(config, state_value),
        flow_cookie_path(config),
    )
}

/// `GET /handoff/{state}`: the authorization link of a flow started where the flow cookie could
/// not reach the browser (another origin, curl, a backend, a connect link). The first browser
/// that opens it in time gets the flow cookie and goes on to the provider.
#[utoipa::path(get, path = "/api/v1/oauth/handoff/{state}", tag = "flow", params(("state" = String, Path)),
    responses((status = 303, description = "On to the provider, with the flow cookie"), (status = 400, description = "handoff_used, handoff_expired, handoff_foreign_site, state_used or invalid_state", body = Problem)))]
pub(super) async fn handoff(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    RequestClient(client): RequestClient,
    headers: HeaderMap,
    Path(state_value): Path<String>,
) -> Response {
    if let Err(refused) = state.limits.callback(client.ip_address) {
        return refused.into_response();
    }
    let cookie_name = flow_cookie_name(&state.config, &state_value);
    let opener = Opener {
        came_from: came_from(&headers, &state.config),
        flow_cookie: cookie(&headers, &cookie_name),
        user_id: user.map(|user| user.user_id),
    };
    match flow::hand_off(&state.vault, &state_value, opener).await {
        Ok(handed_off) => {
            let mut response = (StatusCode::SEE_OTHER, [(LOCATION, handed_off.provider_url)]).into_response();
            let (binding, lifetime) = (&handed_off.browser_binding, handed_off.lifetime_seconds);
            append_flow_cookie(&mut response, &state.config, &state_value, binding, lifetime);
            response
        }
        Err(error) => {
            tracing::info!(code = error.code(), "authorization link refused");
            pages::problem_for(&headers, &state.config, ApiError::from(error))
        }
    }
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
    let query_state = query.state.clone();
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
                None => {
                    let message = format!("Connected {}.", state.vault.providers.display_name(&integration.provider));
                    if pages::wants_html(headers) {
                        pages::outcome(StatusCode::OK, &message, None, &state.config.default_return_url)
                    } else {
                        Json(json!({
                            "message": message,
                            "integration_id": integration.id,
                            "provider": integration.provider,
                            "status": integration.status,
                        }))
                        .into_response()
                    }
                }
            }
        }
        Err(CallbackFailure { error, return_to: Some(target), .. }) => {
            tracing::info!(code = error.code(), "callback refused; redirecting back");
            redirect(&target, &[("oauth_status", "error"), ("error", error.code())])
        }
        Err(CallbackFailure { error, return_to: None, .. }) => {
            pages::problem_for(headers, &state.config, ApiError::from(error))
        }
    };
    // Once the state is spent this browser's cookie for it is useless: forget it. A refusal that
    // left the state usable keeps the cookie, so the right callback can still finish the flow.
    if let Some(value) = query_state.filter(|_| state_spent) {
        append_flow_cookie(&mut response, &state.config, &value, "", 0);
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

//! Connecting from the product in one browser: `GET /connect/{provider}` for a signed-in browser
//! (the Connect button: it starts the flow and redirects to the provider), and connect links that
//! a backend mints for a user (`POST /connect-links`), which open the same flow with no JWT in
//! the browser and bind it to the first browser that opens them (`GET /handoff/{state}`). Both
//! record the same state, consent and audit as `POST /initiate`.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult, Problem};
use super::extract::MaybeUser;
use super::flow::{InitiateRequest, append_flow_cookie, came_from, referred_by_app, start};
use super::json::Json;
use super::{RequestClient, pages};
use crate::auth::Caller;
use crate::oauth::flow::{Binding, CameFrom};
use crate::state::AppState;

/// `GET /connect/{provider}`, `POST /connect-links`.
pub fn router() -> Router<AppState> {
    Router::new().route("/connect/{provider}", get(connect)).route("/connect-links", post(mint_link))
}

/// Query of `GET /connect/{provider}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectQuery {
    /// Scopes separated by spaces or commas (default: the provider's default scopes).
    pub scopes: Option<String>,
    /// Where the browser goes after the callback (an allowed origin).
    pub return_to: Option<String>,
}

/// A connect button's target: the signed-in browser (the host application's `access_token`
/// cookie, or a Bearer header) starts a flow and is sent on to the provider with its flow cookie.
#[utoipa::path(get, path = "/api/v1/oauth/connect/{provider}", tag = "flow", params(("provider" = String, Path), ConnectQuery), security(("user_jwt" = [])),
    responses((status = 303, description = "On to the provider, with the flow cookie"), (status = 400, body = Problem), (status = 401, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)))]
pub(super) async fn connect(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    RequestClient(client): RequestClient,
    headers: HeaderMap,
    Path(provider): Path<String>,
    Query(query): Query<ConnectQuery>,
) -> Response {
    let outcome = async {
        let user = user.ok_or(ApiError::Unauthenticated)?;
        // Another site's page may not start flows in a signed-in browser (it would choose the
        // scopes the user is asked for); the app's pages may, also from another site.
        if came_from(&headers, &state.config) == CameFrom::OtherSite && !referred_by_app(&headers, &state.config) {
            return Err(ApiError::CrossSite);
        }
        state.limits.initiate(user.user_id, client.ip_address)?;
        let scopes = query.scopes.map(|list| {
            list.split([' ', ',']).filter(|scope| !scope.is_empty()).map(str::to_owned).collect::<Vec<_>>()
        });
        let request = InitiateRequest { provider, scopes, redirect_uri: None, return_to: query.return_to };
        start(&state, user.user_id, request, Binding::Cookie).await
    }
    .await;
    match outcome {
        Ok(started) => {
            let mut response = (StatusCode::SEE_OTHER, [(LOCATION, started.authorization_url.clone())]).into_response();
            if let Some(binding) = &started.browser_binding {
                append_flow_cookie(&mut response, &state.config, &started.state, binding, started.lifetime_seconds);
            }
            response
        }
        Err(error) => pages::problem_for(&headers, &state.config, error),
    }
}

/// Body of `POST /connect-links`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectLinkRequest {
    /// The user the connection will belong to.
    pub user_id: i32,
    pub provider: String,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub return_to: Option<String>,
    /// How long the link may wait to be opened (default and maximum: `flow.connect_link_*`).
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// Answer of `POST /connect-links`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectLink {
    /// Opens the flow once, in the first browser that opens it.
    pub url: String,
    pub provider: String,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

/// A single-use, expiring link to connect `provider` for `user_id`, to send by e-mail or SMS.
/// Whoever opens it first connects their provider account to that user: send it only to them.
#[utoipa::path(post, path = "/api/v1/oauth/connect-links", tag = "flow", request_body = ConnectLinkRequest, security(("service_key" = [])),
    responses((status = 201, body = ConnectLink), (status = 400, body = Problem), (status = 403, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)))]
pub(super) async fn mint_link(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<ConnectLinkRequest>,
) -> ApiResult<Response> {
    if !matches!(caller, Caller::Service(_)) {
        return Err(ApiError::Forbidden("Connect links are minted by backends with a service key.".into()));
    }
    let flow = &state.config.flow;
    let lifetime_seconds = request.expires_in.unwrap_or(flow.connect_link_default_seconds);
    if lifetime_seconds == 0 || lifetime_seconds > flow.connect_link_max_seconds {
        return Err(ApiError::bad_request(
            "invalid_expires_in",
            format!("expires_in must be between 1 and {} seconds.", flow.connect_link_max_seconds),
        ));
    }
    let ConnectLinkRequest { user_id, provider, scopes, return_to, .. } = request;
    let initiate = InitiateRequest { provider, scopes, redirect_uri: None, return_to };
    let started = start(&state, user_id, initiate, Binding::Link { lifetime_seconds }).await?;
    let link = ConnectLink {
        url: started.authorization_url,
        provider: started.provider,
        scopes: started.scopes,
        expires_at: started.expires_at,
    };
    Ok((StatusCode::CREATED, Json(link)).into_response())
}

//! The sandbox's one-click sign-in, for the connect page: `POST /_sandbox/sign-in` sets the
//! `access_token` cookie the host application's own login would set, for the demo user;
//! `POST /_sandbox/sign-out` clears it; `GET /_sandbox/sign-in` says whether this browser is
//! signed in. Mounted only in sandbox mode, where every provider is an emulator: never anywhere
//! else, since it signs anyone in.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::{ORIGIN, SET_COOKIE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use url::Url;

use super::error::{ApiError, ApiResult};
use super::extract::MaybeUser;
use super::json::Json;
use crate::auth::DEMO_EMAIL;
use crate::state::AppState;

/// How long the demo sign-in lasts.
const SESSION: std::time::Duration = std::time::Duration::from_secs(8 * 3600);

/// The sign-in routes, under `oauth::sandbox::PREFIX`.
pub fn router() -> Router<AppState> {
    Router::new().route("/sign-in", get(session).post(sign_in)).route("/sign-out", axum::routing::post(sign_out))
}

async fn session(MaybeUser(user): MaybeUser) -> Json<serde_json::Value> {
    match user {
        Some(user) => Json(json!({"sandbox": true, "signed_in": true, "user_id": user.user_id, "email": user.email})),
        None => Json(json!({"sandbox": true, "signed_in": false})),
    }
}

/// Another site's page may not sign a visitor in (or out): the request must come from this
/// service's own pages.
fn from_own_page(headers: &HeaderMap, state: &AppState) -> ApiResult<()> {
    let origin = headers.get(ORIGIN).and_then(|value| value.to_str().ok()).and_then(|value| Url::parse(value).ok());
    match origin {
        Some(origin) if origin.origin() != state.config.public_base_url.origin() => Err(ApiError::CrossSite),
        _ => Ok(()),
    }
}

fn cookie(state: &AppState, value: &str, max_age: u64) -> String {
    let secure = if state.config.public_base_url.scheme() == "https" { "; Secure" } else { "" };
    format!("access_token={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

async fn sign_in(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    from_own_page(&headers, &state)?;
    let (user_id, token) = state.demo.sign_in(state.vault.store.as_ref(), SESSION).await?;
    tracing::info!(user_id, "sandbox demo user signed in");
    let body = json!({"sandbox": true, "signed_in": true, "user_id": user_id, "email": DEMO_EMAIL});
    Ok(([(SET_COOKIE, cookie(&state, &token, SESSION.as_secs()))], Json(body)).into_response())
}

async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    from_own_page(&headers, &state)?;
    Ok(([(SET_COOKIE, cookie(&state, "", 0))], Json(json!({"signed_in": false}))).into_response())
}

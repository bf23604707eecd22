//! Axum extractors that turn a request's credentials into a typed caller (`auth`).

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use url::Url;

use super::error::ApiError;
use crate::auth::{Caller, ServiceCaller, UserCaller};
use crate::config::RolesSource;
use crate::state::AppState;

/// The token of an `Authorization: Bearer` header.
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value.trim_matches('"')))
}

/// The user of a request, from `Authorization: Bearer <jwt>` or the `access_token` cookie.
pub async fn user_from_parts(parts: &Parts, state: &AppState) -> Option<UserCaller> {
    user_and_how(parts, state).await.map(|(user, _)| user)
}

/// The user of a request and whether the browser sent the credential on its own (a cookie).
async fn user_and_how(parts: &Parts, state: &AppState) -> Option<(UserCaller, bool)> {
    let (token, by_cookie) = match bearer(parts) {
        Some(token) => (token, false),
        None => (cookie(&parts.headers, "access_token")?, true),
    };
    let claims = state.jwt.verify(token)?;
    // The claim decides when present; otherwise the host's tables, when so configured.
    let from_tables = match &state.config.roles_source {
        RolesSource::Database { query } if claims.roles.is_empty() => {
            state.roles.is_admin(state.vault.store.as_ref(), query, claims.user_id).await
        }
        _ => false,
    };
    let mut caller = UserCaller::from_claims(claims);
    caller.is_admin |= from_tables;
    Some((caller, by_cookie))
}

/// Whether a request that changes something, authenticated by a cookie the browser attaches on
/// its own, comes from another site (a cross-site form or script: CSRF, RFC 6749 §10.12). A
/// browser names the page's origin in `Origin` (or at least says `Sec-Fetch-Site`); it must be
/// this service's or an allowed one. A request with neither header is not a browser's.
fn forged_by_another_site(parts: &Parts, state: &AppState) -> bool {
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    if let Some(origin) = parts.headers.get(ORIGIN) {
        let Some(origin) = origin.to_str().ok().and_then(|origin| Url::parse(origin).ok()) else { return true };
        return !state.config.is_app_origin(&origin.origin());
    }
    match parts.headers.get("sec-fetch-site").and_then(|value| value.to_str().ok()) {
        Some(site) => !matches!(site, "same-origin" | "none"),
        None => false,
    }
}

impl FromRequestParts<AppState> for UserCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let (user, by_cookie) = user_and_how(parts, state).await.ok_or(ApiError::Unauthenticated)?;
        if by_cookie && forged_by_another_site(parts, state) {
            return Err(ApiError::CrossSite);
        }
        Ok(user)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(key_index) = bearer(parts).and_then(|token| state.service_keys.find(token)) {
            return Ok(Self::Service(ServiceCaller { key_index }));
        }
        let (user, by_cookie) = user_and_how(parts, state).await.ok_or(ApiError::Unauthenticated)?;
        if by_cookie && forged_by_another_site(parts, state) {
            return Err(ApiError::CrossSite);
        }
        Ok(Self::User(user))
    }
}

/// The user of a request if it carries valid credentials; never rejects (the OAuth callback is
/// reached without a JWT, but one that is present must belong to the state's user).
#[derive(Clone, Debug)]
pub struct MaybeUser(pub Option<UserCaller>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(user_from_parts(parts, state).await))
    }
}

//! Axum extractors that turn credentials into a typed caller.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;

use super::jwt::{Claims, Role};
use crate::config::RolesSource;
use crate::error::ApiError;
use crate::state::AppState;

/// An end user identified by the host application's JWT.
#[derive(Clone, Debug)]
pub struct UserCaller {
    pub user_id: i32,
    pub email: String,
    pub is_admin: bool,
}

impl UserCaller {
    fn from_claims(claims: Claims) -> Self {
        Self { user_id: claims.user_id, is_admin: claims.has_role(Role::Administrator), email: claims.sub }
    }

    /// Whether this caller may act on a resource owned by `owner`.
    pub fn may_access(&self, owner: i32) -> bool {
        self.is_admin || self.user_id == owner
    }
}

/// A backend authenticated with a service API key.
#[derive(Clone, Copy, Debug)]
pub struct ServiceCaller {
    /// Position of the key in `OAUTH_SERVICE_API_KEYS` (for logs; never the key).
    pub key_index: usize,
}

/// Either kind of caller (the token endpoints accept a user too when operators allow it).
#[derive(Clone, Debug)]
pub enum Caller {
    User(UserCaller),
    Service(ServiceCaller),
}

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
    let token = bearer(parts).or_else(|| cookie(&parts.headers, "access_token"))?;
    let claims = state.jwt.verify(token)?;
    // The claim decides when present; otherwise the host's tables, when so configured.
    let from_tables = match &state.config.roles_source {
        RolesSource::Database { query } if claims.roles.is_empty() => {
            state.roles.is_admin(state.store.as_ref(), query, claims.user_id).await
        }
        _ => false,
    };
    let mut caller = UserCaller::from_claims(claims);
    caller.is_admin |= from_tables;
    Some(caller)
}

impl FromRequestParts<AppState> for UserCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        user_from_parts(parts, state).await.ok_or(ApiError::Unauthenticated)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(key_index) = bearer(parts).and_then(|token| state.config.service_keys.find(token)) {
            return Ok(Self::Service(ServiceCaller { key_index }));
        }
        user_from_parts(parts, state).await.map(Self::User).ok_or(ApiError::Unauthenticated)
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

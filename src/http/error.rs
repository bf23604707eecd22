//! The one error type at the HTTP boundary, rendered as RFC 9457 problem JSON, and the one place
//! that says how each domain error becomes it (status and stable code).

use super::json::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::oauth::client::ProviderError;
use crate::oauth::refresh::RefreshError;
use crate::oauth::tokens::HandOutError;
use crate::oauth::{FlowError, ProviderFailure};
use crate::store::StoreError;

/// Media type of every error body (RFC 9457 §3).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error a client can act on: an HTTP status, a stable machine `code` and a human `detail`.
///
/// `Internal` is the only variant whose cause stays private: it is logged with its whole chain
/// and answered with an opaque 500.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No credential, or one that does not verify.
    #[error("Authentication required")]
    Unauthenticated,
    /// A valid caller that may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// A change authenticated by cookie that another site's page sent (CSRF).
    #[error(
        "A request authenticated by cookie must come from this service's pages or an allowed origin; \
         send the access token as a Bearer header instead."
    )]
    CrossSite,
    /// A valid JWT whose `user_id` has no row in the host application's `users` table.
    #[error("Your user account does not exist in this service's database; ask an administrator.")]
    UnknownUser,
    /// The resource does not exist, or belongs to somebody else (no existence oracle).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request is malformed or names something we do not know.
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    /// The request conflicts with the current state of a resource.
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// A dependency (provider, credentials) is not available.
    #[error("{detail}")]
    Unavailable { code: &'static str, detail: String },
    /// The provider answered badly or not at all.
    #[error("{detail}")]
    BadGateway { code: &'static str, detail: String },
    /// Too many requests of this kind from this caller: retry after the wait.
    #[error("{detail}")]
    RateLimited { code: &'static str, detail: String, retry_after: std::time::Duration },
    /// The request target is longer than the service reads.
    #[error("The request's path and query may have at most {max} bytes.")]
    UriTooLong { max: usize },
    /// The request's headers are larger than the service reads.
    #[error("The request's headers may have at most {max} bytes.")]
    HeadersTooLarge { max: usize },
    /// Anything else: logged, never shown.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 400 with the given stable code.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::BadRequest { code, detail: detail.into() }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::UnknownUser | Self::CrossSite => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "authentication_required",
            Self::Forbidden(_) => "forbidden",
            Self::CrossSite => "cross_site_request",
            Self::UnknownUser => "unknown_user",
            Self::NotFound(_) => "not_found",
            Self::BadRequest { code, .. }
            | Self::Conflict { code, .. }
            | Self::Unavailable { code, .. }
            | Self::BadGateway { code, .. }
            | Self::RateLimited { code, .. } => code,
            Self::UriTooLong { .. } => "uri_too_long",
            Self::HeadersTooLarge { .. } => "headers_too_large",
            Self::Internal(_) => "internal_error",
        }
    }
}

/// The RFC 9457 body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
}

impl Problem {
    /// A problem for `status` with a stable `code` and human `detail`.
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:oauth-manager:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            Self::Internal(error) => {
                // The chain may name tables or providers; it goes to the log only.
                tracing::error!(error = format!("{error:#}"), "request failed");
                "An internal error occurred; it has been logged.".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = Problem::new(status, self.code(), detail).into_response();
        match &self {
            Self::Unauthenticated => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // RFC 6585 §4: when to try again, in whole seconds.
            Self::RateLimited { retry_after, .. } => {
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            }
            _ => {}
        }
        response
    }
}

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl From<StoreError> for ApiError {
    /// Unknown users are the caller's problem, a busy database is worth a retry, the rest is ours.
    fn from(error: StoreError) -> Self {
        let (code, detail) = (error.code(), error.public_detail().to_owned());
        match error {
            StoreError::UnknownUser => Self::UnknownUser,
            StoreError::ProviderNotAllowed => Self::BadRequest { code, detail },
            StoreError::NotFound => Self::NotFound("Integration"),
            StoreError::Busy | StoreError::Unavailable(_) => Self::Unavailable { code, detail },
            StoreError::Database(error) => Self::Internal(error.into()),
        }
    }
}

impl From<ProviderFailure> for ApiError {
    /// A refusal is the request's (400), an outage the provider's (502).
    fn from(failure: ProviderFailure) -> Self {
        let (code, detail) = (failure.code(), failure.to_string());
        match failure.error {
            ProviderError::Rejected { .. } => Self::BadRequest { code, detail },
            ProviderError::Unavailable(_) => Self::BadGateway { code, detail },
            ProviderError::NotConfigured => Self::Unavailable { code, detail },
        }
    }
}

impl From<FlowError> for ApiError {
    fn from(error: FlowError) -> Self {
        let (code, detail) = (error.code(), error.to_string());
        match error {
            FlowError::Provider(failure) => failure.into(),
            FlowError::Store(error) => error.into(),
            FlowError::Internal(error) => Self::Internal(error),
            FlowError::ProviderNotConfigured(_) => Self::Unavailable { code, detail },
            FlowError::TooManyOpenFlows { retry_after, .. } => Self::RateLimited { code, detail, retry_after },
            FlowError::IdentityUnavailable => Self::BadGateway { code, detail },
            _ => Self::BadRequest { code, detail },
        }
    }
}

impl From<RefreshError> for ApiError {
    /// A dead grant found by this refresh is 400 (the request asked for the impossible); one found
    /// dead before, or a disconnected integration, is a 409 conflict with the resource's state.
    fn from(error: RefreshError) -> Self {
        let detail = error.to_string();
        match error {
            RefreshError::ProviderGone => Self::BadRequest { code: "unknown_provider", detail },
            RefreshError::NoRefreshToken => Self::BadRequest { code: "no_refresh_token", detail },
            RefreshError::GrantRevoked(_) | RefreshError::MarkedForReauth(_) => {
                Self::BadRequest { code: "needs_reauth", detail }
            }
            // The operator's problem: logged with its cause, answered as an opaque 500.
            RefreshError::Undecryptable { .. } => Self::Internal(anyhow::anyhow!(detail)),
            RefreshError::ProviderUnavailable(_) => Self::BadGateway { code: "provider_unavailable", detail },
            RefreshError::NeedsReauth => Self::Conflict { code: "needs_reauth", detail },
            RefreshError::Disconnected => Self::Conflict { code: "integration_revoked", detail },
            RefreshError::TokenGone => Self::NotFound("Integration token"),
            RefreshError::Store(error) => error.into(),
            RefreshError::Internal(error) => Self::Internal(error),
        }
    }
}

impl From<HandOutError> for ApiError {
    fn from(error: HandOutError) -> Self {
        let detail = error.to_string();
        match error {
            HandOutError::NeedsReauth => Self::Conflict { code: "needs_reauth", detail },
            HandOutError::Disconnected => Self::Conflict { code: "integration_revoked", detail },
            HandOutError::Refresh(error) => error.into(),
            HandOutError::Internal(error) => Self::Internal(error),
        }
    }
}

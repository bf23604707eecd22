//! OAuth error responses, shaped the way each provider shapes them.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::common::random_uuid;
use crate::config::Flavor;

/// An RFC 6749 §5.2 error, plus the AADSTS number Microsoft adds to it.
#[derive(Debug)]
pub(crate) struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) error: String,
    pub(crate) description: String,
    /// Microsoft's `error_codes` entry; other flavors ignore it.
    pub(crate) aadsts: u32,
}

impl OAuthError {
    /// A 400 with the given error code.
    pub(crate) fn bad_request(error: &str, aadsts: u32, description: &str) -> Self {
        Self { status: StatusCode::BAD_REQUEST, error: error.to_owned(), description: description.to_owned(), aadsts }
    }

    /// 400 `invalid_request`: a parameter is missing, repeated or malformed.
    pub(crate) fn invalid_request(description: &str) -> Self {
        Self::bad_request("invalid_request", 900144, description)
    }

    /// 400 `invalid_grant`: the code or refresh token is not (or no longer) acceptable.
    pub(crate) fn invalid_grant(aadsts: u32, description: &str) -> Self {
        Self::bad_request("invalid_grant", aadsts, description)
    }

    /// 401 `invalid_client`: client authentication failed.
    pub(crate) fn invalid_client(aadsts: u32, description: &str) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client".to_owned(),
            description: description.to_owned(),
            aadsts,
        }
    }

    /// Renders the error body the way `flavor` does.
    pub(crate) fn render(self, flavor: Flavor) -> Response {
        let body = match flavor {
            Flavor::Google => json!({
                "error": self.error,
                "error_description": self.description,
            }),
            Flavor::Microsoft => microsoft_body(&self),
            Flavor::Notion => json!({
                "error": self.error,
                "error_description": self.description,
                "request_id": random_uuid(),
            }),
        };
        let mut response = (self.status, no_store(Json(body))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6749 §5.2: a 401 invalid_client carries a WWW-Authenticate challenge.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"oauth-emulator\""));
        }
        response
    }
}

fn microsoft_body(error: &OAuthError) -> Value {
    let trace_id = random_uuid();
    let correlation_id = random_uuid();
    let timestamp = chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    json!({
        "error": error.error,
        "error_description": format!(
            "AADSTS{}: {} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}",
            error.aadsts, error.description
        ),
        "error_codes": [error.aadsts],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={}", error.aadsts),
    })
}

/// Adds RFC 6749 §5.1's `Cache-Control: no-store` and `Pragma: no-cache` to a token-endpoint answer.
pub(crate) fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

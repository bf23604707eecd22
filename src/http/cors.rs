//! CORS for the product frontend's origins (`OAUTH_ALLOWED_RETURN_ORIGINS`), so a frontend served
//! from another origin (a development server on its own port) can call the API from the browser.
//! Credentials are allowed from those origins only; every other origin gets no CORS headers, so
//! browsers keep its pages from reading any answer.

use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::Config;

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// The CORS layer of `/api/v1/oauth`.
pub fn layer(config: &Config) -> CorsLayer {
    let origins: Vec<HeaderValue> = config
        .allowed_return_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(&origin.ascii_serialization()).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([AUTHORIZATION, CONTENT_TYPE, ACCEPT, HeaderName::from_static("x-request-id")])
        .expose_headers([RETRY_AFTER, LOCATION, HeaderName::from_static("x-request-id")])
        .allow_credentials(true)
        .max_age(PREFLIGHT_MAX_AGE)
}

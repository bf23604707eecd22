//! Problem JSON for every error, including those made by axum and tower-http themselves.

use std::any::Any;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::{PROBLEM_JSON, Problem};

/// Rejections (bad JSON, bad query), unknown routes, wrong methods, timeouts and oversized
/// bodies come out of axum and tower-http as plain text; give them the same problem shape.
pub async fn problem_for_bare_errors<B>(response: Response<B>) -> Response
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let status = response.status();
    // Bare errors are plain text or empty. Anything else was written on purpose: our problem
    // JSON, or the sandbox emulators' OAuth error JSON (`invalid_grant` must reach the client
    // as the provider sent it, RFC 6749 §5.2) and HTML pages.
    let is_bare =
        response.headers().get(header::CONTENT_TYPE).is_none_or(|value| value.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !is_bare {
        return response.map(Body::new);
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(Body::new(body), 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let (code, default_detail) = match status {
        StatusCode::BAD_REQUEST => ("invalid_request", "The request is malformed."),
        StatusCode::NOT_FOUND => ("not_found", "No such resource."),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "This method is not allowed here."),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "The request body is too large."),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "Send JSON with Content-Type: application/json.")
        }
        StatusCode::UNPROCESSABLE_ENTITY => ("invalid_body", "The request body does not have the expected fields."),
        StatusCode::SERVICE_UNAVAILABLE => ("timeout", "The request took too long and was abandoned."),
        _ if status.is_server_error() => ("internal_error", "An internal error occurred; it has been logged."),
        _ => ("invalid_request", "The request was refused."),
    };
    // A server error's text could be anything: keep it out of the answer.
    let detail = if text.is_empty() || status.is_server_error() { default_detail.to_owned() } else { text };
    let mut answer = Problem::new(status, code, detail).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// A panic becomes an opaque 500; the payload is logged.
pub fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "handler panicked");
    let mut response = Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "An internal error occurred; it has been logged.",
    )
    .into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// Answer of unknown routes (counted here: `metrics::record` sees only routes).
pub async fn no_route(method: axum::http::Method) -> Response {
    metrics::counter!(crate::prometheus::HTTP_REQUESTS, "method" => crate::prometheus::method_label(&method), "route" => "unmatched", "status" => "404")
        .increment(1);
    Problem::new(StatusCode::NOT_FOUND, "not_found", "No such endpoint.").into_response()
}

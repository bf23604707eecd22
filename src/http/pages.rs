//! What a person's browser sees: the connect page at `/` (plain HTML, CSS and JavaScript shipped
//! in the binary, talking only to the public API), and small pages saying how a flow ended where a
//! browser (`Accept: text/html`) would otherwise land on raw JSON. API clients keep the JSON.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use url::Url;

use super::error::ApiError;
use crate::config::Config;
use crate::state::AppState;

const CONNECT_HTML: &str = include_str!("../../assets/connect.html");
const CONNECT_JS: &str = include_str!("../../assets/connect.js");
const PAGE_CSS: &str = include_str!("../../assets/page.css");

/// Scripts and styles from this service only; no frames, no plugins, forms only to here.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The outcome pages have no script at all, and carry their style inline (they may be reached
/// through a proxy that forwards only `/api/`, where `/assets/` is not this service's): only that
/// exact style, by its hash.
fn outcome_policy() -> &'static HeaderValue {
    static POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
        let hash = STANDARD.encode(Sha256::digest(PAGE_CSS.as_bytes()));
        let policy = format!("default-src 'none'; style-src 'sha256-{hash}'; frame-ancestors 'none'; base-uri 'none'");
        HeaderValue::from_str(&policy).expect("a header-safe policy")
    });
    &POLICY
}

/// `GET /` (the connect page) and its two assets.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", CONNECT_HTML) }))
        .route("/assets/connect.js", get(|| async { asset("text/javascript; charset=utf-8", CONNECT_JS) }))
        .route("/assets/page.css", get(|| async { asset("text/css; charset=utf-8", PAGE_CSS) }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_POLICY));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

/// Whether the request is a browser navigating (its `Accept` names HTML), not an API client.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| range.split(';').next().is_some_and(|kind| kind.trim().eq_ignore_ascii_case("text/html")))
}

/// `error` as a page for a browser, or as problem JSON for anyone else.
pub fn problem_for(headers: &HeaderMap, config: &Config, error: ApiError) -> Response {
    if !wants_html(headers) {
        return error.into_response();
    }
    let (status, code) = (error.status(), error.code());
    let detail = match &error {
        // Logged (with its cause) by the JSON rendering; the page says only that.
        ApiError::Internal(_) => {
            drop(error.into_response());
            "An internal error occurred; it has been logged.".to_owned()
        }
        other => other.to_string(),
    };
    outcome(status, &detail, Some(code), &config.default_return_url)
}

/// A page saying how a flow ended, with a way back to the app.
pub fn outcome(status: StatusCode, message: &str, code: Option<&str>, back: &Url) -> Response {
    let (title, code_line) = match code {
        None => ("Connected", String::new()),
        Some(code) => ("Not connected", format!("<p class=\"code\">Error code: <code>{}</code></p>", escape(code))),
    };
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{PAGE_CSS}</style></head>\
         <body><main class=\"outcome {kind}\"><h1>{title}</h1><p class=\"message\">{message}</p>{code_line}\
         <p><a class=\"button\" href=\"{back}\">Back to the app</a></p></main></body></html>\n",
        kind = if code.is_none() { "success" } else { "failure" },
        message = escape(message),
        back = escape(back.as_str()),
    );
    let mut response = (status, [(CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    response.headers_mut().insert(CONTENT_SECURITY_POLICY, outcome_policy().clone());
    response
}

/// `text` safe inside HTML text and double-quoted attributes.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_get_pages_and_api_clients_json() {
        let accept = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, value.parse().unwrap());
            wants_html(&headers)
        };
        assert!(accept("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"));
        assert!(!accept("application/json, text/plain, */*"));
        assert!(!accept("*/*"));
        assert!(!wants_html(&HeaderMap::new()));
    }

    #[test]
    fn the_outcome_page_escapes_what_it_shows() {
        assert_eq!(escape("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    }
}

//! The HTTP surface: one module per resource, each with its own `router()`; `error` maps every
//! domain error to problem JSON, `extract` turns credentials into callers.

mod account;
mod client_info;
mod connect;
mod cors;
mod demo;
pub mod error;
mod extract;
pub mod flow;
mod health;
mod integrations;
mod json;
pub mod limits;
mod metrics;
pub mod openapi;
mod pages;
mod problems;
mod tokens;
mod users;
pub mod views;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, SET_COOKIE};
use axum::http::{HeaderValue, Request, StatusCode};
use tower::ServiceBuilder;
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use client_info::RequestClient;
pub use extract::MaybeUser;

use crate::state::AppState;

/// The whole application: operational endpoints and `/api/v1/oauth`, with the middleware stack.
pub fn router(state: AppState) -> Router {
    router_with_sandbox(state, None)
}

/// `router`, with the sandbox's emulators under `oauth::sandbox::PREFIX` when given: behind the
/// same middleware, so their requests are logged like every other.
pub fn router_with_sandbox(state: AppState, sandbox: Option<Router>) -> Router {
    let api = Router::new()
        .merge(flow::router())
        .merge(connect::router())
        .merge(integrations::router())
        .merge(tokens::router())
        .merge(account::router())
        .merge(users::router())
        // Every answer here is about one user, and the token endpoints carry raw tokens
        // (RFC 6749 §5.1): nothing may be cached.
        .layer(SetResponseHeaderLayer::overriding(CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(cors::layer(&state.config));
    let request_timeout = Duration::from_secs(state.config.http.request_timeout_seconds);
    let body_limit = state.config.http.body_limit_bytes;

    let middleware = ServiceBuilder::new()
        .layer(SetSensitiveHeadersLayer::new([AUTHORIZATION, COOKIE, SET_COOKIE]))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    // The route's template (no ids); an unknown route logs the start of the path
                    // it was sent. The URI's query is left out on purpose: callbacks carry codes
                    // and states.
                    let path = match request.extensions().get::<axum::extract::MatchedPath>() {
                        Some(path) => path.as_str(),
                        None => unmatched_path(request.uri().path()),
                    };
                    let request_id =
                        request.headers().get("x-request-id").and_then(|value| value.to_str().ok()).unwrap_or_default();
                    tracing::info_span!("request", method = %request.method(), path = %path, request_id = %request_id)
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO).latency_unit(LatencyUnit::Millis)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(axum::middleware::map_response(problems::problem_for_bare_errors))
        .layer(CatchPanicLayer::custom(problems::panic_response))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, request_timeout));

    let mut app = Router::new()
        .merge(health::router())
        .merge(openapi::router())
        .merge(openapi::docs_router())
        .merge(metrics::router())
        .merge(pages::router())
        .nest("/api/v1/oauth", api);
    if let Some(emulators) = sandbox {
        // The demo sign-in signs anyone in with the JWT secret: only with the embedded SQLite
        // database, never beside a host application's PostgreSQL (a staging setup that forces
        // sandbox mode on with the host's real secret).
        let sign_in = match state.config.database.kind {
            crate::config::DatabaseKind::Sqlite => demo::router(),
            crate::config::DatabaseKind::Postgres => Router::new(),
        };
        app = app.nest(crate::oauth::sandbox::PREFIX, sign_in.fallback_service(emulators));
    }
    app.fallback(problems::no_route)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::request_size))
        .route_layer(axum::middleware::from_fn(metrics::record))
        .layer(middleware)
        .with_state(state)
}

/// What the log shows of a path no route matched: up to the first percent-escape (a mangled
/// callback can carry its query as `%3Fcode=…`) and at most 128 bytes (paths may be 64 KiB).
fn unmatched_path(path: &str) -> &str {
    const MOST: usize = 128;
    let end = path.find('%').unwrap_or(path.len()).min(MOST);
    // A URI's path is ASCII: every byte index is a character boundary.
    &path[..end]
}

#[cfg(test)]
mod tests {
    use super::unmatched_path;

    #[test]
    fn an_unmatched_path_is_logged_up_to_its_first_escape_and_128_bytes() {
        assert_eq!(unmatched_path("/no/such/route"), "/no/such/route");
        assert_eq!(unmatched_path("/api/v1/oauth/callback%3Fcode=secret&state=x"), "/api/v1/oauth/callback");
        assert_eq!(unmatched_path(&format!("/{}", "a".repeat(1000))).len(), 128);
    }
}

//! `GET /metrics` (Prometheus text format, `crate::prometheus`) and the middleware that records
//! every answer by route template. The endpoint asks for no credentials, like `/healthz`: what it
//! shows is counts, never an id, a name or a token; keep it off the public internet all the same
//! (scrape it from inside, or allow it only to the scraper at the proxy).

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::prometheus;
use crate::state::AppState;
use crate::store::IntegrationStatus;

/// Prometheus's text exposition format, version 0.0.4.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

/// Counts an answer and its latency under its route's template.
pub async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = prometheus::method_label(request.method());
    let route = prometheus::route_label(request.extensions().get::<MatchedPath>().map(MatchedPath::as_str));
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(prometheus::HTTP_REQUEST_DURATION, "method" => method, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(prometheus::HTTP_REQUESTS, "method" => method, "route" => route, "status" => status).increment(1);
    response
}

async fn scrape(State(state): State<AppState>) -> Response {
    count_integrations(&state).await;
    let handle = prometheus::handle();
    handle.run_upkeep();
    ([(CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT))], handle.render()).into_response()
}

/// Counting reads the whole table and `/metrics` asks for no credentials: scrapes count at most
/// this often, and scrapes at the same moment share one count.
const COUNT_AT_MOST_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Sets `oauth_integrations{provider,status}` from the database. Each known pair is written, zero
/// included, so a status that empties shows 0 rather than its last count.
async fn count_integrations(state: &AppState) {
    static LAST_COUNT: tokio::sync::Mutex<Option<Instant>> = tokio::sync::Mutex::const_new(None);
    let mut last = LAST_COUNT.lock().await;
    if last.is_some_and(|at| at.elapsed() < COUNT_AT_MOST_EVERY) {
        return;
    }
    *last = Some(Instant::now());
    let counts = match state.vault.store.count_integrations().await {
        Ok(counts) => counts,
        Err(error) => {
            tracing::warn!(%error, "could not count the integrations for /metrics");
            return;
        }
    };
    for provider in state.vault.providers.iter() {
        for status in [
            IntegrationStatus::Pending,
            IntegrationStatus::Active,
            IntegrationStatus::Error,
            IntegrationStatus::Revoked,
        ] {
            let count = counts
                .iter()
                .find(|(name, counted, _)| *name == provider.name && *counted == status.as_str())
                .map_or(0, |(_, _, count)| *count);
            metrics::gauge!(prometheus::INTEGRATIONS, "provider" => provider.name.clone(), "status" => status.as_str())
                .set(count as f64);
        }
    }
}

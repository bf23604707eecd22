//! Metrics, rendered in Prometheus text format at `GET /metrics`. The code records through the
//! `metrics` facade (as it logs through `tracing`); `metrics-exporter-prometheus` keeps the
//! values and renders them, with no HTTP listener of its own (the service's router serves them).
//!
//! What is recorded, and where:
//! - `http_requests_total{method,route,status}` and `http_request_duration_seconds{method,route}`:
//!   every answer, by route template (`http::metrics`);
//! - `oauth_token_handouts_total{provider}`: tokens handed out (`oauth::tokens`);
//! - `oauth_refreshes_total{provider,outcome}`: refreshes by outcome (`oauth::refresh`);
//! - `oauth_provider_requests_total{provider,operation,result}` and
//!   `oauth_provider_request_duration_seconds{provider,operation}`: calls to providers
//!   (`oauth::client`);
//! - `oauth_integrations{provider,status}`: integrations by status, counted in the database at
//!   each scrape (`http::metrics`);
//! - `oauth_webhook_deliveries_total{event,result}`: webhook delivery attempts by outcome
//!   (`delivered`, `retrying`, `given_up`; `oauth::webhooks`).

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
pub const TOKEN_HANDOUTS: &str = "oauth_token_handouts_total";
pub const REFRESHES: &str = "oauth_refreshes_total";
pub const PROVIDER_REQUESTS: &str = "oauth_provider_requests_total";
pub const PROVIDER_REQUEST_DURATION: &str = "oauth_provider_request_duration_seconds";
pub const INTEGRATIONS: &str = "oauth_integrations";
pub const WEBHOOK_DELIVERIES: &str = "oauth_webhook_deliveries_total";

/// Latency buckets, in seconds: from a cached hand-out (well under a millisecond) to a provider
/// at its timeout.
const SECONDS_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process's recorder, installed on first use (tests start many apps in one process; they
/// share it, as threads of one service would).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), SECONDS_BUCKETS)
            .expect("the buckets are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder already installed (a test harness's) keeps recording; ours renders
        // what it saw, which is then nothing: said once.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only what reaches this one");
        }
        handle
    })
}

/// A request method as a label: the methods the API answers, anything else `other` (hyper
/// accepts any token as a method; each would be a new series).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `route` as a label: the matched route's template, never the raw path (ids and states stay
/// out, and the label set stays small).
pub fn route_label(matched: Option<&str>) -> String {
    matched.unwrap_or("unmatched").to_owned()
}

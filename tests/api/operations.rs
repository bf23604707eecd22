//! The operator's kit: `/metrics` scraped and parsed.

use std::collections::BTreeMap;

use crate::flow::support::{Harness, json_body};
use crate::support::Backend;

/// One sample of the Prometheus text format: `name{label="value",...} number`.
#[derive(Debug)]
struct Sample {
    metric: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format (version 0.0.4) strictly: every line is empty, a `# HELP` or
/// `# TYPE` comment, or a sample whose name, quoted label values (with `\\`, `\"` and `\n`
/// escapes) and number parse; anything else fails the test. (The `prometheus-parse` crate drops
/// samples whose label values hold `{`, as route templates do, so it is not used.)
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let kind = comment.trim_start().split(' ').next().unwrap_or_default();
            assert!(matches!(kind, "HELP" | "TYPE"), "unknown comment: {line}");
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}"));
        let metric = &line[..name_end];
        assert!(is_name(metric), "bad metric name: {line}");
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(inside) => parse_labels(inside, line),
            None => (BTreeMap::new(), &line[name_end..]),
        };
        let value = match rest.trim().split(' ').next().unwrap_or_default() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            number => number.parse().unwrap_or_else(|_| panic!("bad value {number:?}: {line}")),
        };
        samples.push(Sample { metric: metric.to_owned(), labels, value });
    }
    samples
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The labels of a sample, `text` starting after its `{`; and what follows the `}`.
fn parse_labels<'a>(text: &'a str, line: &str) -> (BTreeMap<String, String>, &'a str) {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    loop {
        rest = rest.strip_prefix(',').unwrap_or(rest);
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let eq = rest.find('=').unwrap_or_else(|| panic!("label without '=': {line}"));
        let name = &rest[..eq];
        assert!(is_name(name), "bad label name {name:?}: {line}");
        let quoted = rest[eq + 1..].strip_prefix('"').unwrap_or_else(|| panic!("unquoted label value: {line}"));
        let (mut value, mut escaped, mut end) = (String::new(), false, None);
        for (index, c) in quoted.char_indices() {
            match (escaped, c) {
                (true, c) => {
                    value.push(if c == 'n' { '\n' } else { c });
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(index);
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        let end = end.unwrap_or_else(|| panic!("unterminated label value: {line}"));
        labels.insert(name.to_owned(), value);
        rest = &quoted[end + 1..];
    }
}

/// `GET /metrics`, parsed.
async fn scrape(h: &Harness) -> Vec<Sample> {
    let response = h.app.get("/metrics", None).await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    parse_exposition(&response.text().await.unwrap())
}

/// The sum of the samples named `metric` whose labels include `labels` (0 when none).
fn value(samples: &[Sample], metric: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .filter(|sample| {
            labels.iter().all(|(name, wanted)| sample.labels.get(*name).map(String::as_str) == Some(*wanted))
        })
        .map(|sample| sample.value)
        .sum()
}

#[test]
fn the_exposition_parser_refuses_what_prometheus_would() {
    let good = parse_exposition("# TYPE x counter\nx{route=\"/a/{id}\",q=\"a\\\"b\"} 3\ny 1.5\n");
    assert_eq!(good.len(), 2);
    assert_eq!(good[0].labels["route"], "/a/{id}");
    assert_eq!(good[0].labels["q"], "a\"b");
    for bad in ["x{route=/a} 1", "x{route=\"a} 1", "x one", "bad-name 1", "x{=\"a\"} 1"] {
        assert!(std::panic::catch_unwind(|| parse_exposition(bad)).is_err(), "{bad:?} must not parse");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_hand_outs_refreshes_provider_calls_and_integrations() {
    // The recorder is the process's: other tests count into it too, so this compares before
    // and after its own calls (at least what it did), and the integration gauge of its own app.
    let h = Harness::start(Backend::Sqlite).await;
    let before = scrape(&h).await;
    let id = h.connect("google").await;
    json_body(h.token(id, 60).await, 200).await;
    json_body(h.token(id, 60).await, 200).await;
    json_body(h.refresh(id).await, 200).await;
    h.get("/integrations/999999").await;
    // Integrations are counted at most every 2 seconds (the count reads the whole table).
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let after = scrape(&h).await;
    let grew = |metric: &str, labels: &[(&str, &str)]| value(&after, metric, labels) - value(&before, metric, labels);
    let token_route = [("route", "/api/v1/oauth/integrations/{id}/token"), ("method", "GET"), ("status", "200")];
    assert!(grew("http_requests_total", &token_route) >= 2.0, "hand-outs counted by route template and status");
    let missing = [("route", "/api/v1/oauth/integrations/{id}"), ("status", "404")];
    assert!(grew("http_requests_total", &missing) >= 1.0, "a 404 counted under its template, not its id");
    assert!(grew("http_request_duration_seconds_count", &[("route", "/api/v1/oauth/integrations/{id}/token")]) >= 2.0);
    assert!(grew("oauth_token_handouts_total", &[("provider", "google")]) >= 2.0);
    assert!(grew("oauth_refreshes_total", &[("provider", "google"), ("outcome", "refreshed")]) >= 1.0);
    let exchange = [("provider", "google"), ("operation", "code_exchange"), ("result", "success")];
    assert!(grew("oauth_provider_requests_total", &exchange) >= 1.0);
    assert!(grew("oauth_provider_request_duration_seconds_count", &[("operation", "refresh")]) >= 1.0);
    assert_eq!(value(&after, "oauth_integrations", &[("provider", "google"), ("status", "active")]), 1.0);
    assert_eq!(value(&after, "oauth_integrations", &[("provider", "notion"), ("status", "active")]), 0.0);
    // Labels carry templates and names, never ids or tokens.
    let rendered = h.app.get("/metrics", None).await.text().await.unwrap();
    assert!(!rendered.contains(&format!("/integrations/{id}/")), "no ids in labels");
    assert!(!rendered.contains("ya29."), "no tokens");
}

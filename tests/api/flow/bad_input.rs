//! Bad input gets a 4xx problem, never a 500: every endpoint, malformed every way we can think of.

use super::support::{API, Harness};
use crate::support::{Backend, SERVICE_KEY};

const ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/providers"),
    ("POST", "/initiate"),
    ("GET", "/callback"),
    ("GET", "/callback/google"),
    ("GET", "/integrations"),
    ("GET", "/integrations/{id}"),
    ("POST", "/integrations/{id}/refresh"),
    ("DELETE", "/integrations/{id}"),
    ("POST", "/integrations/sync"),
    ("GET", "/status"),
    ("GET", "/integrations/{id}/token"),
    ("GET", "/users/{user}/integrations/{provider}/token"),
    ("GET", "/audit"),
    ("GET", "/consents"),
];

const IDS: &[&str] = &["0", "-1", "2147483648", "99999999999999999999", "abc", "1.5", "%00", "1%20OR%201=1"];
const QUERIES: &[&str] = &[
    "",
    "?min_ttl=abc",
    "?min_ttl=-5",
    "?min_ttl=99999999999999",
    "?force_refresh=maybe",
    "?active_only=2&provider=%00",
    "?limit=0",
    "?limit=abc",
    "?cursor=zzz&since=yesterday&until=2026-13-45",
    "?action=drop_table",
    "?state=&code=",
    "?state=x&code=y&iss=%FF&error=%00",
    "?reason=",
    "?reason=%00x",
    "?provider=%00",
    "?provider=nope",
];
const BODIES: &[(&str, &str)] = &[
    ("application/json", ""),
    ("application/json", "{"),
    ("application/json", "[]"),
    ("application/json", "{\"provider\": 42}"),
    ("application/json", "{\"provider\": \"google\", \"scopes\": \"openid\"}"),
    ("application/json", "{\"provider\": \"google\", \"return_to\": \"javascript:alert(1)\"}"),
    ("application/json", "{\"provider\": \"google\", \"redirect_uri\": \"\"}"),
    ("application/json", "{\"provider\": \"google\", \"unexpected\": true}"),
    ("application/json", "{\"reason\": 7}"),
    ("text/plain", "provider=google"),
    ("application/x-www-form-urlencoded", "provider=google"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_malformed_request_gets_a_server_error() {
    let h = Harness::start(Backend::Postgres).await;
    let id = h.connect("google").await.to_string();
    let credentials = [h.user.token.as_str(), SERVICE_KEY];
    let huge = "x".repeat(200_000);
    // A fresh connection per request: the server may close one on an oversized body.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut tried = 0;
    for (method, template) in ENDPOINTS {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut paths: Vec<String> = IDS
            .iter()
            .map(|bad| template.replace("{id}", bad).replace("{user}", bad).replace("{provider}", "%00"))
            .collect();
        paths.push(
            template.replace("{id}", &id).replace("{user}", &h.user.id.to_string()).replace("{provider}", "google"),
        );
        paths.dedup();
        for path in &paths {
            for query in QUERIES {
                for token in credentials {
                    for (content_type, body) in BODIES.iter().copied().chain([("application/json", huge.as_str())]) {
                        let url = h.app.url(&format!("{API}{path}{query}"));
                        let sent = client
                            .request(method.clone(), &url)
                            .bearer_auth(token)
                            .header("content-type", content_type)
                            .body(body.to_owned())
                            .send()
                            .await;
                        let response = match sent {
                            Ok(response) => response,
                            // The server may answer and close before reading an oversized body.
                            Err(error) if body.len() == huge.len() && error.is_request() => continue,
                            Err(error) => panic!("{method} {url}: {error}"),
                        };
                        let status = response.status().as_u16();
                        let text = response.text().await.unwrap();
                        // 503 is legitimate only as "provider not configured" / "busy", never an internal error.
                        assert!(
                            status < 500 || (status == 503 && !text.contains("internal_error")),
                            "{method} {url} ({content_type}) -> {status}: {text}"
                        );
                        tried += 1;
                    }
                }
            }
        }
    }
    assert!(tried > 10_000, "{tried} requests");
    // The service still answers normally; among all of the above, the well-formed DELETE of the
    // real integration (owner's JWT, real id) is the one request that changed it.
    assert_eq!(h.integration(id.parse().unwrap()).await["status"], "revoked");
}

//! Webhooks received by a real HTTP receiver on loopback: every event of an integration's life,
//! each signature verified as a receiver would (HMAC-SHA256 over `timestamp.body`), retries after
//! failures, and an event waiting in the outbox delivered by the next process after a restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::support::{API, Harness, json_body};
use crate::on_both_backends;
use crate::support::{Backend, ServiceProcess, config_file};

const SECRET: &str = "webhook-secret-for-the-tests-0123456789";
/// Quick retries, so a test waits seconds, not minutes.
const TIMING: &str =
    "[webhooks]\nfirst_retry_seconds = 1\nmax_retry_seconds = 2\nmax_attempts = 5\npoll_interval_seconds = 1\n";

/// What the receiver got, and whether it accepts deliveries now.
#[derive(Default)]
struct Inbox {
    received: Vec<(HeaderMap, String)>,
    /// Answers 503 to this many more deliveries.
    refuse: usize,
}

/// A webhook receiver on a loopback port.
struct Receiver {
    url: String,
    inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    async fn start() -> Self {
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let app = axum::Router::new().route("/hooks", axum::routing::post(receive)).with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}/hooks", listener.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, inbox }
    }

    fn refuse(&self, deliveries: usize) {
        self.inbox.lock().unwrap().refuse = deliveries;
    }

    /// The accepted events' bodies, each verified; waits up to `patience` for `count` of them.
    async fn events(&self, count: usize, patience: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let received = self.inbox.lock().unwrap().received.clone();
            if received.len() >= count || tokio::time::Instant::now() > deadline {
                return received.iter().map(|(headers, body)| verified(headers, body)).collect();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(State(inbox): State<Arc<Mutex<Inbox>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut inbox = inbox.lock().unwrap();
    if inbox.refuse > 0 {
        inbox.refuse -= 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    inbox.received.push((headers, String::from_utf8(body.to_vec()).unwrap()));
    StatusCode::NO_CONTENT
}

/// What a receiver does (docs/api-guide.md): recompute the signature over the raw body, compare,
/// refuse an old timestamp. The parsed body.
fn verified(headers: &HeaderMap, body: &str) -> Value {
    let header = headers["oauth-manager-signature"].to_str().unwrap();
    let (timestamp, signature) = header.split_once(',').unwrap();
    let timestamp = timestamp.strip_prefix("t=").unwrap();
    let signature = signature.strip_prefix("v1=").unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(signature, expected, "the signature verifies");
    let age = chrono::Utc::now().timestamp() - timestamp.parse::<i64>().unwrap();
    assert!((0..300).contains(&age), "a fresh timestamp ({age} s)");
    let event: Value = serde_json::from_str(body).unwrap();
    assert_eq!(headers["oauth-manager-event"], event["type"].as_str().unwrap());
    assert_eq!(headers["oauth-manager-delivery"], event["id"].as_str().unwrap());
    event
}

/// Whether `examples/webhooks/verify.py` (the snippet of docs/api-guide.md) accepts a delivery.
fn python_verifies(secret: &str, header: &str, body: &str) -> bool {
    use std::io::Write;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/webhooks/verify.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .arg(header)
        .env("OAUTH_WEBHOOK_SECRET", secret)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    child.wait().unwrap().success()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|event| event["type"].as_str().unwrap()).collect()
}

async fn every_event_of_an_integrations_life_arrives_signed(backend: Backend) {
    let receiver = Receiver::start().await;
    let (url, timing) = (receiver.url.clone(), config_file(TIMING));
    let h = Harness::start_with(backend, |config| {
        config.set("OAUTH_WEBHOOK_URLS", url).set("OAUTH_WEBHOOK_SECRET", SECRET).set("OAUTH_CONFIG_FILE", timing)
    })
    .await;
    // The first two deliveries fail: the event still arrives, once, after the retries.
    receiver.refuse(2);
    let id = h.connect("google").await;
    let connected = receiver.events(1, Duration::from_secs(15)).await;
    assert_eq!(types(&connected), ["integration.connected"], "delivered once after two refusals");
    let data = &connected[0]["data"];
    assert_eq!((data["integration_id"].as_i64(), data["user_id"].as_i64()), (Some(id), Some(i64::from(h.user.id))));
    assert_eq!((data["provider"].as_str(), data["status"].as_str()), (Some("google"), Some("active")));
    assert!(!connected[0].to_string().contains("ya29."), "no token in an event");
    // The documented Python snippet accepts it, and refuses it with another secret.
    let (headers, body) = receiver.inbox.lock().unwrap().received[0].clone();
    let header = headers["oauth-manager-signature"].to_str().unwrap().to_owned();
    for (secret, valid) in [(SECRET, true), ("another-secret-another-secret-00000", false)] {
        assert_eq!(python_verifies(secret, &header, &body), valid, "verify.py with {secret:?}");
    }

    // The grant dies at the provider: the refresh finds it, and says so.
    h.google.handle.revoke_all_grants();
    json_body(h.refresh(id).await, 400).await;
    // Connected again: connected and recovered. Then disconnected.
    assert_eq!(h.connect("google").await, id);
    json_body(h.delete(&format!("/integrations/{id}")).await, 200).await;
    let all = receiver.events(5, Duration::from_secs(15)).await;
    assert_eq!(
        types(&all),
        [
            "integration.connected",
            "integration.refresh_failed",
            "integration.connected",
            "integration.recovered",
            "integration.revoked"
        ]
    );
    assert_eq!(all[1]["data"]["status"], "error");
    assert_eq!(all[4]["data"]["status"], "revoked");
    let ids: std::collections::BTreeSet<&str> = all.iter().map(|event| event["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 5, "each event has its own id");
}

on_both_backends!(every_event_of_an_integrations_life_arrives_signed);

/// An event the receiver could not take before the service stopped is delivered by the next
/// process on the same database: none is lost across a restart. The connect answered at once
/// although the receiver was down (delivery never blocks the request that caused it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelivered_event_is_delivered_after_a_restart() {
    let receiver = Receiver::start().await;
    let h = Harness::start(Backend::Postgres).await;
    let mut env = h.service_process_env();
    env.push(("OAUTH_WEBHOOK_URLS".into(), receiver.url.clone()));
    env.push(("OAUTH_WEBHOOK_SECRET".into(), SECRET.into()));
    env.push(("OAUTH_CONFIG_FILE".into(), config_file(TIMING)));
    receiver.refuse(usize::MAX);
    let first = ServiceProcess::start(&env).await;

    let started = std::time::Instant::now();
    let initiated = h
        .app
        .client
        .post(format!("{}{API}/initiate", first.base_url))
        .bearer_auth(&h.user.token)
        .json(&json!({"provider": "notion"}))
        .send()
        .await
        .unwrap();
    let cookie = super::support::flow_cookie(&initiated).expect("the flow cookie");
    let flow = json_body(initiated, 200).await;
    let link = flow["authorization_url"].as_str().unwrap();
    let provider_url = super::support::provider_url(&h.app.client, link, Some(&cookie)).await;
    let callback = h.approve(&provider_url, None, None).await;
    let landed = h.app.client.get(&callback).header("cookie", cookie).send().await.unwrap();
    json_body(landed, 200).await;
    assert!(started.elapsed() < Duration::from_secs(5), "the connect did not wait for the receiver");
    tokio::time::sleep(Duration::from_millis(1500)).await; // at least one refused attempt
    assert!(first.terminate().success());
    assert!(receiver.events(1, Duration::ZERO).await.is_empty(), "nothing was accepted yet");

    receiver.refuse(0);
    let second = ServiceProcess::start(&env).await;
    let events = receiver.events(1, Duration::from_secs(15)).await;
    assert_eq!(types(&events), ["integration.connected"], "the second process delivered it");
    assert_eq!(events[0]["data"]["provider"], "notion");
    assert!(second.terminate().success());
}

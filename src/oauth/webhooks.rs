//! Webhooks: configured endpoints (`OAUTH_WEBHOOK_URLS`) hear about integrations:
//! `integration.connected`, `integration.refresh_failed` (the grant is dead: re-authorisation
//! needed), `integration.recovered` (connected again after that) and `integration.revoked`
//! (disconnected, or erased with its user).
//!
//! An event is written to the outbox (`oam_webhook_outbox`, the service's own table)
//! right after the change it reports has committed, one row per endpoint, and the request goes on:
//! delivery happens in the background (`run`), never in the request that caused it. A process
//! that stops before delivering leaves the rows, which any replica delivers after (a claimed row is
//! leased for `timeout_seconds` + 30 s, so a replica that dies mid-delivery hands it on). Deliveries
//! are at least once (a receiver deduplicates by the event `id`), and are given up after
//! `max_attempts`, waiting `first_retry_seconds`, doubled each time up to `max_retry_seconds`,
//! shortened at random by up to half between attempts. What can be lost: an event whose change
//! committed in a process that stopped before writing the outbox row (a crash between the two
//! statements).
//!
//! Each body is signed with HMAC-SHA256 (`OAUTH_WEBHOOK_SECRET`) over `"<timestamp>.<body>"`,
//! sent as `OAuth-Manager-Signature: t=<timestamp>,v1=<hex>`, the scheme Stripe made familiar:
//! the receiver recomputes it over the raw body and refuses old timestamps (replays).
//! `hmac` (RustCrypto) computes it; the scheme itself is too small for a crate of its own.

use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::{Notify, watch};

use crate::config::{WebhookSettings, WebhookTiming};
use crate::crypto::random_token;
use crate::store::{NewWebhook, Store, WebhookDelivery};

/// The header carrying the timestamp and the signature.
pub const SIGNATURE_HEADER: &str = "oauth-manager-signature";
/// Deliveries claimed per round.
const BATCH: i64 = 20;

/// What happened to an integration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Connected,
    RefreshFailed,
    Recovered,
    Revoked,
}

impl Event {
    /// The event's `type`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connected => "integration.connected",
            Self::RefreshFailed => "integration.refresh_failed",
            Self::Recovered => "integration.recovered",
            Self::Revoked => "integration.revoked",
        }
    }
}

/// The integration an event is about: ids and names only, never a token or an account's e-mail.
#[derive(Clone, Debug)]
pub struct Subject<'a> {
    pub integration_id: i32,
    pub user_id: i32,
    pub provider: &'a str,
    pub status: &'a str,
    /// Why, for `refresh_failed` and `revoked`.
    pub reason: Option<&'a str>,
}

/// The configured endpoints, the secret, and the worker's wake-up.
pub struct Webhooks {
    endpoints: Vec<String>,
    secret: Option<SecretString>,
    timing: WebhookTiming,
    wake: Notify,
    http: reqwest::Client,
}

impl Webhooks {
    pub fn new(settings: &WebhookSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(settings.timing.timeout_seconds))
            .user_agent(concat!("oauth-manager/", env!("CARGO_PKG_VERSION"), " webhooks"))
            .build()?;
        Ok(Self {
            endpoints: settings.endpoints.iter().map(|url| url.as_str().to_owned()).collect(),
            secret: settings.secret.clone(),
            timing: settings.timing.clone(),
            wake: Notify::new(),
            http,
        })
    }

    /// Writes `event` about `subject` to the outbox for every endpoint and wakes the worker. Called
    /// after the change committed; a failure is logged, never the caller's.
    pub async fn emit(&self, store: &dyn Store, event: Event, subject: Subject<'_>) {
        if self.endpoints.is_empty() {
            return;
        }
        let now = Utc::now();
        let event_id = format!("evt_{}", random_token(16));
        let payload = json!({
            "id": event_id,
            "type": event.name(),
            "created_at": now,
            "data": {
                "integration_id": subject.integration_id,
                "user_id": subject.user_id,
                "provider": subject.provider,
                "status": subject.status,
                "reason": subject.reason,
            },
        })
        .to_string();
        let deliveries: Vec<NewWebhook> = self
            .endpoints
            .iter()
            .map(|endpoint| NewWebhook {
                endpoint: endpoint.clone(),
                user_id: subject.user_id,
                event_id: event_id.clone(),
                event_type: event.name().to_owned(),
                payload: payload.clone(),
                created_at: now.naive_utc(),
            })
            .collect();
        match store.enqueue_webhooks(&deliveries).await {
            Ok(()) => self.wake.notify_one(),
            Err(error) => {
                tracing::error!(%error, event = event.name(), integration_id = subject.integration_id, "webhook event not recorded")
            }
        }
    }

    /// Sends one delivery: `Ok` for a 2xx answer, else why not.
    async fn send(&self, delivery: &WebhookDelivery) -> Result<(), String> {
        let secret = self.secret.as_ref().ok_or("OAUTH_WEBHOOK_SECRET is not set")?;
        let timestamp = Utc::now().timestamp();
        let answer = self
            .http
            .post(&delivery.endpoint)
            .header("content-type", "application/json")
            .header("oauth-manager-event", &delivery.event_type)
            .header("oauth-manager-delivery", &delivery.event_id)
            .header(SIGNATURE_HEADER, signature_header(secret.expose_secret().as_bytes(), timestamp, &delivery.payload))
            .body(delivery.payload.clone())
            .send()
            .await
            .map_err(|error| format!("unreachable: {}", without_url(&error)))?;
        match answer.status() {
            status if status.is_success() => Ok(()),
            status => Err(format!("answered {status}")),
        }
    }

    /// When to try again after `attempts` failed attempts, or `None` to give up.
    fn next_attempt(&self, attempts: u32, now: NaiveDateTime) -> Option<NaiveDateTime> {
        if attempts >= self.timing.max_attempts {
            return None;
        }
        let doubled = self.timing.first_retry_seconds.saturating_mul(1 << (attempts - 1).min(20));
        let wait = doubled.min(self.timing.max_retry_seconds) as f64 * rand::rng().random_range(0.5..=1.0);
        Some(now + chrono::Duration::milliseconds((wait * 1000.0) as i64))
    }
}

/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn signature_header(secret: &[u8], timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A transport error without the URL (an endpoint may carry a token in its query).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    kind.to_owned()
}

/// Delivers due webhooks until `stopped`: every `poll_interval_seconds`, and at once when an
/// event is written.
pub async fn run(webhooks: Arc<Webhooks>, store: Arc<dyn Store>, mut stopped: watch::Receiver<bool>) {
    if webhooks.endpoints.is_empty() {
        return;
    }
    let poll = Duration::from_secs(webhooks.timing.poll_interval_seconds.max(1));
    loop {
        deliver_due(&webhooks, store.as_ref()).await;
        tokio::select! {
            () = tokio::time::sleep(poll) => {},
            () = webhooks.wake.notified() => {},
            _ = stopped.changed() => return,
        }
    }
}

/// Delivers what is due now, a batch at a time, until nothing is.
async fn deliver_due(webhooks: &Webhooks, store: &dyn Store) {
    let lease = chrono::Duration::seconds(webhooks.timing.timeout_seconds as i64 + 30);
    loop {
        let now = Utc::now().naive_utc();
        let due = match store.claim_webhooks(now, now + lease, BATCH).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "could not read the webhook outbox");
                return;
            }
        };
        if due.is_empty() {
            return;
        }
        // Each outcome is written as it comes: a slow endpoint holds up only its own deliveries.
        let mut outcomes = futures_util::stream::iter(due)
            .map(|delivery| async move {
                let outcome = if webhooks.endpoints.contains(&delivery.endpoint) {
                    webhooks.send(&delivery).await
                } else {
                    Err(GIVEN_UP_UNCONFIGURED.to_owned())
                };
                (delivery, outcome)
            })
            .buffer_unordered(IN_FLIGHT);
        while let Some((delivery, outcome)) = outcomes.next().await {
            record(webhooks, store, &delivery, outcome).await;
        }
    }
}

/// The error of a delivery whose endpoint left `OAUTH_WEBHOOK_URLS`: given up unsent.
const GIVEN_UP_UNCONFIGURED: &str = "the endpoint is no longer configured";
/// Deliveries sent at once.
const IN_FLIGHT: usize = 8;

/// Writes how one delivery went, and counts it.
async fn record(webhooks: &Webhooks, store: &dyn Store, delivery: &WebhookDelivery, outcome: Result<(), String>) {
    let now = Utc::now().naive_utc();
    let attempts = delivery.attempts.saturating_add(1);
    let result = match outcome {
        Ok(()) => store.webhook_delivered(delivery.id, now).await.map(|()| "delivered"),
        Err(why) => {
            let retry_at =
                if why == GIVEN_UP_UNCONFIGURED { None } else { webhooks.next_attempt(attempts as u32, now) };
            tracing::warn!(event = %delivery.event_type, event_id = %delivery.event_id, attempts, error = %why,
                given_up = retry_at.is_none(), "webhook delivery failed");
            let result = if retry_at.is_some() { "retrying" } else { "given_up" };
            store.webhook_failed(delivery.id, attempts, &why, retry_at, now).await.map(|()| result)
        }
    };
    match result {
        Ok(result) => metrics::counter!(crate::prometheus::WEBHOOK_DELIVERIES, "event" => delivery.event_type.clone(), "result" => result).increment(1),
        Err(error) => tracing::warn!(%error, "could not record a webhook delivery's outcome"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // The value Python's hmac module computes independently:
        // hmac.new(b"secret", b"1700000000.{}", "sha256").hexdigest()
        let header = signature_header(b"secret", 1_700_000_000, "{}");
        assert_eq!(header, "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163");
    }
}

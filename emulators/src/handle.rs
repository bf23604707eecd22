//! The handle a test holds on a running emulator: counters to assert on and switches to break it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures_util::StreamExt;
use serde_json::json;

use crate::common::bearer_token;
use crate::config::{EmulatorConfig, Endpoints, Flavor};
use crate::keys::{KeyRing, SigningKey};
use crate::state_file::{self, StoreGuard};
use crate::store::{Grant, Store};

/// A snapshot of what an emulator has served.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    /// Authorization codes issued (approved consents).
    pub authorizations: u64,
    /// Successful authorization-code exchanges.
    pub code_exchanges: u64,
    /// Successful refresh-token grants.
    pub refreshes: u64,
    /// Token-endpoint requests answered with an error (including injected faults).
    pub failed_token_requests: u64,
    /// Successful revocations.
    pub revocations: u64,
    /// Calls to the identity endpoints (userinfo, Graph `/me`, Notion `/users/me`, YouTube channels).
    pub userinfo_calls: u64,
    /// Fetches of the JWKS.
    pub jwks_fetches: u64,
    /// The most requests a `Fault::Slow` held at once: how many callers waited on the provider
    /// together.
    pub most_held_at_once: u64,
}

/// A failure injected into the token, revocation and identity endpoints.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Behave normally.
    None,
    /// Sleep this long, then answer normally.
    Slow(Duration),
    /// Answer 503 with a JSON error body.
    ServerError,
    /// Answer 200 with an HTML body, as a captive portal or a broken proxy would.
    Garbage,
    /// Answer 429 with `Retry-After`, as a provider throttling the client does.
    RateLimited,
    /// Answer 200 with JSON cut off in the middle.
    Truncated,
    /// Answer 200 with a JSON body labelled `text/plain`.
    WrongContentType,
    /// Answer 200 with a body of this many bytes (a misbehaving proxy, an attack).
    HugeBody(usize),
    /// Send the headers at once, then the body one byte per `Duration`.
    SlowBody(Duration),
}

/// A defect injected into the ID tokens issued from now on.
#[derive(Clone, Copy, Debug)]
pub enum IdTokenFault {
    /// Issue correct ID tokens.
    None,
    /// Sign with a key that is not in the JWKS, under the current `kid`.
    WrongKey,
    /// `exp` an hour in the past.
    Expired,
    /// `aud` is another client.
    WrongAudience,
    /// `iss` is another issuer.
    WrongIssuer,
    /// `nonce` differs from the one sent at authorization.
    WrongNonce,
    /// `aud` names this client and another, and `azp` is the other (a token minted for someone else).
    ForeignAuthorizedParty,
    /// `iss` is an array holding the right issuer.
    IssuerArray,
    /// `nbf` an hour in the future.
    NotYetValid,
    /// `iat` an hour in the future.
    IssuedInTheFuture,
    /// Unsigned: `alg: none` and no signature.
    Unsigned,
}

/// Shared, cloneable handle to one emulator's state: counters and fault switches.
#[derive(Clone)]
pub struct EmulatorHandle {
    shared: Arc<Shared>,
}

struct Shared {
    config: EmulatorConfig,
    base_url: String,
    counters: AtomicCounters,
    store: Mutex<Store>,
    controls: Mutex<Controls>,
    keys: Mutex<KeyRing>,
    // Generated on first use: most emulators never need a key outside their JWKS.
    stray_key: OnceLock<SigningKey>,
    /// ID tokens issued so far (Google alternates the two issuer forms it documents).
    id_tokens_issued: AtomicU64,
}

#[derive(Default)]
struct AtomicCounters {
    authorizations: AtomicU64,
    code_exchanges: AtomicU64,
    refreshes: AtomicU64,
    failed_token_requests: AtomicU64,
    revocations: AtomicU64,
    userinfo_calls: AtomicU64,
    jwks_fetches: AtomicU64,
    held_now: AtomicU64,
    most_held_at_once: AtomicU64,
}

/// The switches a test flips; read by handlers on every request.
struct Controls {
    fault: Fault,
    id_token_fault: IdTokenFault,
    refresh_error: Option<String>,
    token_type: Option<String>,
    revoke_on_reuse: bool,
}

/// One of the counters, named for the handlers that bump them.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    Authorization,
    CodeExchange,
    Refresh,
    FailedTokenRequest,
    Revocation,
    UserinfoCall,
    JwksFetch,
}

impl EmulatorHandle {
    pub(crate) fn new(config: EmulatorConfig, base_url: &str) -> Self {
        let store = config.state_file.as_deref().map(state_file::load).unwrap_or_default();
        let shared = Shared {
            config,
            base_url: base_url.trim_end_matches('/').to_owned(),
            counters: AtomicCounters::default(),
            store: Mutex::new(store),
            controls: Mutex::new(Controls {
                fault: Fault::None,
                id_token_fault: IdTokenFault::None,
                refresh_error: None,
                token_type: None,
                revoke_on_reuse: false,
            }),
            keys: Mutex::new(KeyRing::new(SigningKey::generate())),
            stray_key: OnceLock::new(),
            id_tokens_issued: AtomicU64::new(0),
        };
        Self { shared: Arc::new(shared) }
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        let c = &self.shared.counters;
        Counters {
            authorizations: c.authorizations.load(Ordering::SeqCst),
            code_exchanges: c.code_exchanges.load(Ordering::SeqCst),
            refreshes: c.refreshes.load(Ordering::SeqCst),
            failed_token_requests: c.failed_token_requests.load(Ordering::SeqCst),
            revocations: c.revocations.load(Ordering::SeqCst),
            userinfo_calls: c.userinfo_calls.load(Ordering::SeqCst),
            jwks_fetches: c.jwks_fetches.load(Ordering::SeqCst),
            most_held_at_once: c.most_held_at_once.load(Ordering::SeqCst),
        }
    }

    /// Inject a fault into the token, revocation and identity endpoints (`Fault::None` heals).
    pub fn set_fault(&self, fault: Fault) {
        self.controls().fault = fault;
    }

    /// Make the ID tokens issued from now on defective (`IdTokenFault::None` heals).
    pub fn set_id_token_fault(&self, fault: IdTokenFault) {
        self.controls().id_token_fault = fault;
    }

    /// Expire every access token issued so far: identity endpoints answer 401 for them.
    pub fn expire_access_tokens(&self) {
        self.store().expire_access_tokens(Utc::now());
    }

    /// Revoke every grant, as a user removing the app's access would: refreshes then fail
    /// with `invalid_grant` and the grants' access tokens stop working.
    pub fn revoke_all_grants(&self) {
        self.store().revoke_all_grants();
    }

    /// Make refresh grants answer this OAuth error (e.g. `interaction_required`); `None` heals.
    pub fn set_refresh_error(&self, error: Option<String>) {
        self.controls().refresh_error = error;
    }

    /// Revoke the whole grant when a rotated-away refresh token is presented again (reuse
    /// detection, as some providers do); off by default.
    pub fn set_revoke_on_reuse(&self, revoke: bool) {
        self.controls().revoke_on_reuse = revoke;
    }

    pub(crate) fn revokes_on_reuse(&self) -> bool {
        self.controls().revoke_on_reuse
    }

    /// Make token answers carry this `token_type` (a provider's odd one); `None` heals.
    pub fn set_token_type(&self, token_type: Option<String>) {
        self.controls().token_type = token_type;
    }

    /// The `token_type` of token answers: the override, or the flavor's own.
    pub(crate) fn token_type(&self, own: &str) -> String {
        self.controls().token_type.clone().unwrap_or_else(|| own.to_owned())
    }

    /// Start signing with a new key under a new `kid`; the JWKS keeps serving the old one too.
    pub fn rotate_signing_key(&self) {
        // Generate outside the lock: RSA key generation takes a noticeable moment.
        let key = SigningKey::generate();
        self.keys().rotate(key);
    }

    /// Whether `token` is an access token the identity endpoints would accept now.
    pub fn is_access_token_live(&self, token: &str) -> bool {
        self.store().live_access_token(token, Utc::now()).is_some()
    }

    /// How many grants are alive (issued and not revoked): what a user would see as apps with
    /// access in their account settings.
    pub fn live_grants(&self) -> usize {
        self.store().live_grants()
    }

    /// Whether `token` is a refresh token the token endpoint would accept now.
    pub fn is_refresh_token_live(&self, token: &str) -> bool {
        self.store().live_refresh_token(token).is_some()
    }

    /// The emulator's public base URL (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The emulator's configuration.
    pub fn config(&self) -> &EmulatorConfig {
        &self.shared.config
    }

    /// The absolute URLs of this emulator's endpoints.
    pub fn endpoints(&self) -> Endpoints {
        self.shared.config.endpoints(&self.shared.base_url)
    }

    /// The `iss` of the next Google ID token. Google documents that its ID tokens carry either
    /// `https://accounts.google.com` or `accounts.google.com`; the emulator alternates between its
    /// issuer URL and the same without the scheme, so clients must accept both.
    pub(crate) fn next_google_id_token_issuer(&self) -> String {
        let issued = self.shared.id_tokens_issued.fetch_add(1, Ordering::Relaxed);
        let issuer = self.base_url().to_owned();
        match issued % 2 {
            0 => issuer,
            _ => issuer.split_once("://").map_or(issuer.clone(), |(_, bare)| bare.to_owned()),
        }
    }

    /// The ID-token issuer, also sent as `iss` in authorization responses (RFC 9207).
    pub(crate) fn issuer(&self) -> Option<String> {
        self.endpoints().issuer
    }

    /// The grant behind the request's `Authorization: Bearer` access token, if it is live.
    pub(crate) fn bearer_grant(&self, headers: &HeaderMap) -> Option<Grant> {
        let token = bearer_token(headers)?;
        let store = self.store();
        let grant = store.live_access_token(&token, Utc::now())?;
        Some(store.grant(grant).clone())
    }

    pub(crate) fn flavor(&self) -> Flavor {
        self.shared.config.flavor
    }

    pub(crate) fn count(&self, counter: Counter) {
        let c = &self.shared.counters;
        let atomic = match counter {
            Counter::Authorization => &c.authorizations,
            Counter::CodeExchange => &c.code_exchanges,
            Counter::Refresh => &c.refreshes,
            Counter::FailedTokenRequest => &c.failed_token_requests,
            Counter::Revocation => &c.revocations,
            Counter::UserinfoCall => &c.userinfo_calls,
            Counter::JwksFetch => &c.jwks_fetches,
        };
        atomic.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn fault(&self) -> Fault {
        self.controls().fault.clone()
    }

    pub(crate) fn id_token_fault(&self) -> IdTokenFault {
        self.controls().id_token_fault
    }

    pub(crate) fn refresh_error(&self) -> Option<String> {
        self.controls().refresh_error.clone()
    }

    /// The locked store; changes made through it are written to the state file on release.
    pub(crate) fn store(&self) -> StoreGuard<'_> {
        StoreGuard::new(lock(&self.shared.store), self.shared.config.state_file.as_deref())
    }

    pub(crate) fn keys(&self) -> MutexGuard<'_, KeyRing> {
        lock(&self.shared.keys)
    }

    pub(crate) fn stray_key(&self) -> &SigningKey {
        self.shared.stray_key.get_or_init(SigningKey::generate)
    }

    fn controls(&self) -> MutexGuard<'_, Controls> {
        lock(&self.shared.controls)
    }
}

/// Locks a mutex, ignoring poisoning: a panicking handler must not wedge the emulator.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Applies the injected fault: sleeps for `Slow`, or returns the response that replaces the real one.
pub(crate) async fn injected_fault(handle: &EmulatorHandle) -> Option<Response> {
    match handle.fault() {
        Fault::None => None,
        Fault::Slow(delay) => {
            let c = &handle.shared.counters;
            let held = c.held_now.fetch_add(1, Ordering::SeqCst) + 1;
            c.most_held_at_once.fetch_max(held, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            c.held_now.fetch_sub(1, Ordering::SeqCst);
            None
        }
        Fault::ServerError => {
            let body = json!({
                "error": "temporarily_unavailable",
                "error_description": "The sandbox provider is simulating an outage.",
            });
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Some(response)
        }
        Fault::Garbage => {
            let html = "<html><head><title>502 Bad Gateway</title></head>\
                        <body><h1>Bad Gateway</h1><p>sandbox proxy</p></body></html>";
            Some((StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
        }
        Fault::RateLimited => {
            let body = json!({"error": "rate_limit_exceeded", "error_description": "Slow down."});
            let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            Some(response)
        }
        Fault::Truncated => {
            let cut = r#"{"access_token": "ya29.truncat"#;
            Some((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], cut).into_response())
        }
        Fault::WrongContentType => {
            let body = r#"{"access_token": "plain-text-token", "token_type": "Bearer", "expires_in": 3600}"#;
            Some((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], body).into_response())
        }
        Fault::HugeBody(bytes) => {
            let body = format!("{{\"padding\": \"{}\"}}", "x".repeat(bytes));
            Some((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response())
        }
        Fault::SlowBody(per_byte) => {
            let body = br#"{"access_token": "slow", "token_type": "Bearer", "expires_in": 3600}"#;
            let bytes = futures_util::stream::iter(body.iter().copied()).then(move |byte| async move {
                tokio::time::sleep(per_byte).await;
                Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(vec![byte]))
            });
            let body = axum::body::Body::from_stream(bytes);
            Some((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response())
        }
    }
}

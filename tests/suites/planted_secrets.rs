//! Planted secrets: the real `oauth-manager serve` process, logging at `RUST_LOG=trace`, on a fresh
//! PostgreSQL database, with Google, Microsoft, Notion and YouTube served by loopback emulators.
//! Every secret it handles is recognisable or recorded: the client secrets, the JWT secret, the
//! encryption keys, the service keys, the database password, the users' JWTs, and everything the
//! flows mint (states, flow cookies, authorization codes, PKCE verifiers, access, refresh and ID
//! tokens). The service's calls to the providers go through a recording tap, which is how the
//! refresh tokens, verifiers and ID tokens the service never shows are learnt.
//!
//! Every flow is driven over HTTP as a browser and a backend would, failing ones included. Then
//! every secret is searched for, in several encodings and by its recognisable prefix, in: the
//! complete log output; every answer the service gave (the token endpoints' `access_token` field,
//! the state in `/initiate`'s answer and its flow cookie are where those belong and are taken out
//! first); a `pg_dump --data-only` of the database, where tokens and verifiers may appear only as
//! `v1:<kid>:<base64>`; and the service's calls to each provider, which may carry that provider's
//! client secret and what it issued, nothing else. The suite prints the figure and asserts 0 hits.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use jsonwebtoken::{EncodingKey, Header, encode};
use oauth_manager::auth::Claims;
use provider_emulators::{EmulatorConfig, EmulatorHandle, Fault, Flavor, RunningEmulator};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};

use crate::flow_support::{query_param, with_query_param};

const API: &str = "/api/v1/oauth";
/// An origin `return_to` may point at.
const APP_ORIGIN: &str = "http://app.test";

/// What a secret is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    ClientSecret,
    JwtSecret,
    EncryptionKey,
    ServiceKey,
    DatabasePassword,
    UserJwt,
    State,
    FlowCookie,
    AuthorizationCode,
    PkceVerifier,
    AccessToken,
    RefreshToken,
    IdToken,
    /// Not a secret: the emulators' token and code prefixes and `PLANTED-`, which catch a secret
    /// printed in part (the first characters of a token, a shortened value).
    Prefix,
}

impl Kind {
    const SECRETS: [Kind; 13] = [
        Kind::ClientSecret,
        Kind::JwtSecret,
        Kind::EncryptionKey,
        Kind::ServiceKey,
        Kind::DatabasePassword,
        Kind::UserJwt,
        Kind::State,
        Kind::FlowCookie,
        Kind::AuthorizationCode,
        Kind::PkceVerifier,
        Kind::AccessToken,
        Kind::RefreshToken,
        Kind::IdToken,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::ClientSecret => "client secret",
            Kind::JwtSecret => "JWT secret",
            Kind::EncryptionKey => "encryption key",
            Kind::ServiceKey => "service key",
            Kind::DatabasePassword => "database password",
            Kind::UserJwt => "user JWT",
            Kind::State => "state",
            Kind::FlowCookie => "flow cookie",
            Kind::AuthorizationCode => "authorization code",
            Kind::PkceVerifier => "PKCE verifier",
            Kind::AccessToken => "access token",
            Kind::RefreshToken => "refresh token",
            Kind::IdToken => "ID token",
            Kind::Prefix => "secret prefix",
        }
    }
}

/// What the start of a secret looks like: ours, the emulators' access tokens, refresh tokens and
/// codes, and a JWT's header (`{"typ":` or `{"alg":`, base64url), for users' JWTs and ID tokens.
const PREFIXES: [&str; 11] = [
    "PLANTED-",
    "ya29.emu-",
    "EwBemu-",
    "ntn_emu",
    "1//emu-",
    "M.C5emu-",
    "nrt_emu",
    "4/0emu",
    "1.Aemu",
    "eyJ0eXAiOi",
    "eyJhbGciOi",
];

/// The providers emulated (YouTube is Google's emulator).
const FLAVORS: [Flavor; 3] = [Flavor::Google, Flavor::Microsoft, Flavor::Notion];

/// The prefixes of the tokens and codes `flavor`'s emulator issues.
fn issued_prefixes(flavor: Flavor) -> &'static [&'static str] {
    match flavor {
        Flavor::Google => &["ya29.emu-", "1//emu-", "4/0emu"],
        Flavor::Microsoft => &["EwBemu-", "M.C5emu-", "1.Aemu"],
        Flavor::Notion => &["ntn_emu", "nrt_emu"],
    }
}

/// Whether `hit`, found in the service's calls to `flavor`'s provider, has no business there: only
/// that provider's client secret and what that provider issued may be sent to it.
fn misdirected(hit: &Hit, flavor: Flavor, own_client_secret: &str) -> bool {
    let issued_by_another = FLAVORS
        .iter()
        .filter(|other| **other != flavor)
        .any(|other| issued_prefixes(*other).iter().any(|prefix| hit.value.starts_with(prefix)));
    match hit.kind {
        Kind::ClientSecret => hit.value != own_client_secret,
        Kind::AuthorizationCode
        | Kind::PkceVerifier
        | Kind::AccessToken
        | Kind::RefreshToken
        | Kind::IdToken
        | Kind::Prefix => issued_by_another,
        _ => true,
    }
}

/// One text searched for: a secret in one encoding.
#[derive(Clone, Debug)]
struct Needle {
    kind: Kind,
    form: &'static str,
    text: String,
    /// The secret this is a form of.
    value: String,
}

/// Every secret known so far, by kind.
#[derive(Default)]
struct Planted {
    values: BTreeMap<Kind, BTreeSet<String>>,
    /// Forms that are not an encoding of one value alone (a Basic credential).
    extra: Vec<Needle>,
}

impl Planted {
    fn add(&mut self, kind: Kind, value: &str) {
        // Short values would match by chance; every real one here is far longer.
        if value.len() >= 12 {
            self.values.entry(kind).or_default().insert(value.to_owned());
        }
    }

    fn count(&self, kind: Kind) -> usize {
        self.values.get(&kind).map_or(0, BTreeSet::len)
    }

    fn total(&self) -> usize {
        self.values.values().map(BTreeSet::len).sum()
    }

    /// Every value in every encoding it could be written in, and the prefixes.
    fn needles(&self) -> Vec<Needle> {
        let mut needles = self.extra.clone();
        for (kind, values) in &self.values {
            for value in values {
                let mut forms: Vec<(&'static str, String)> = Vec::new();
                if *kind == Kind::EncryptionKey {
                    let bytes = hex::decode(value).expect("keys are kept as hex");
                    forms.push(("hex", value.clone()));
                    forms.push(("HEX", value.to_uppercase()));
                    forms.push(("base64", STANDARD.encode(&bytes)));
                    forms.push(("base64 unpadded", STANDARD_NO_PAD.encode(&bytes)));
                    forms.push(("base64url", URL_SAFE.encode(&bytes)));
                    forms.push(("base64url unpadded", URL_SAFE_NO_PAD.encode(&bytes)));
                } else {
                    forms.push(("as is", value.clone()));
                    forms.push(("percent-encoded", url::form_urlencoded::byte_serialize(value.as_bytes()).collect()));
                    let json = serde_json::to_string(value).unwrap();
                    forms.push(("JSON-escaped", json[1..json.len() - 1].to_owned()));
                    forms.push(("base64 of it", STANDARD.encode(value)));
                    forms.push(("base64url of it", URL_SAFE_NO_PAD.encode(value)));
                }
                let mut seen = BTreeSet::new();
                for (form, text) in forms {
                    if seen.insert(text.clone()) {
                        needles.push(Needle { kind: *kind, form, text, value: value.clone() });
                    }
                }
            }
        }
        for prefix in PREFIXES {
            let encoded: String = url::form_urlencoded::byte_serialize(prefix.as_bytes()).collect();
            for (form, text) in [("prefix", prefix.to_owned()), ("percent-encoded prefix", encoded)] {
                if form == "prefix" || text != prefix {
                    needles.push(Needle { kind: Kind::Prefix, form, text, value: prefix.to_owned() });
                }
            }
        }
        needles
    }
}

/// Where a needle was found.
struct Hit {
    source: String,
    kind: Kind,
    form: &'static str,
    value: String,
    context: String,
}

/// Finds many needles in one pass: candidates by their first bytes, then compared.
struct Scanner {
    needles: Vec<Needle>,
    by_prefix: HashMap<[u8; KEY], Vec<usize>>,
    first_pairs: Vec<bool>,
}

/// Bytes that index a needle (the shortest needle, a prefix, has 6).
const KEY: usize = 6;

impl Scanner {
    fn new(needles: Vec<Needle>) -> Self {
        let mut by_prefix: HashMap<[u8; KEY], Vec<usize>> = HashMap::new();
        let mut first_pairs = vec![false; 1 << 16];
        for (index, needle) in needles.iter().enumerate() {
            let bytes = needle.text.as_bytes();
            assert!(bytes.len() >= KEY, "needle too short to search for: {needle:?}");
            first_pairs[usize::from(bytes[0]) << 8 | usize::from(bytes[1])] = true;
            by_prefix.entry(bytes[..KEY].try_into().unwrap()).or_default().push(index);
        }
        Self { needles, by_prefix, first_pairs }
    }

    fn scan(&self, source: &str, text: &str, hits: &mut Vec<Hit>) {
        let bytes = text.as_bytes();
        if bytes.len() < KEY {
            return;
        }
        for at in 0..=bytes.len() - KEY {
            if !self.first_pairs[usize::from(bytes[at]) << 8 | usize::from(bytes[at + 1])] {
                continue;
            }
            let Some(candidates) = self.by_prefix.get(&bytes[at..at + KEY]) else { continue };
            for &index in candidates {
                let needle = &self.needles[index];
                if bytes[at..].starts_with(needle.text.as_bytes()) {
                    hits.push(Hit {
                        source: source.to_owned(),
                        kind: needle.kind,
                        form: needle.form,
                        value: needle.value.clone(),
                        context: line_around(text, at),
                    });
                }
            }
        }
    }
}

/// The line of `text` around byte `at`, shortened to be printable.
fn line_around(text: &str, at: usize) -> String {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line = &text[start..end];
    if line.chars().count() <= 600 { line.to_owned() } else { line.chars().take(600).collect::<String>() + "…" }
}

/// `text` without ANSI escape sequences (colours).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut buffer);
    hex::encode(buffer)
}

// ---------------------------------------------------------------------------------------------
// The tap: a recording reverse proxy between the service and one emulator.

/// One call the service made to a provider.
#[derive(Clone)]
struct Exchange {
    method: String,
    path: String,
    authorization: Option<String>,
    request_body: Vec<u8>,
    status: u16,
    response_body: Vec<u8>,
}

struct TapShared {
    upstream: String,
    client: reqwest::Client,
    exchanges: Mutex<Vec<Exchange>>,
}

struct Tap {
    base_url: String,
    shared: Arc<TapShared>,
    server: tokio::task::JoinHandle<()>,
}

impl Tap {
    async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let shared = Arc::new(TapShared { upstream: upstream.to_owned(), client, exchanges: Mutex::default() });
        let app = axum::Router::new().fallback(forward).with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base_url, shared, server }
    }

    fn exchanges(&self) -> Vec<Exchange> {
        self.shared.exchanges.lock().unwrap().clone()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(State(tap): State<Arc<TapShared>>, request: axum::extract::Request) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut outgoing = tap.client.request(parts.method.clone(), format!("{}{path}", tap.upstream)).body(body.clone());
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(error) => return (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let response_body = answer.bytes().await.unwrap_or_default();
    tap.exchanges.lock().unwrap().push(Exchange {
        method: parts.method.to_string(),
        path,
        authorization: parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned),
        request_body: body.to_vec(),
        status: status.as_u16(),
        response_body: response_body.to_vec(),
    });
    let mut response = axum::response::Response::new(axum::body::Body::from(response_body));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING && name != header::CONNECTION {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

/// The string fields of a form or JSON body (top level).
fn body_fields(body: &[u8]) -> Vec<(String, String)> {
    if let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) {
        return fields.into_iter().filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned()))).collect();
    }
    url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// Learns the secrets in the service's calls to a provider and in the provider's answers.
fn learn_from(exchanges: &[Exchange], planted: &mut Planted) {
    for exchange in exchanges {
        match exchange.authorization.as_deref().and_then(|a| a.split_once(' ')) {
            Some(("Basic", credentials)) => {
                let decoded = String::from_utf8(STANDARD.decode(credentials.trim()).unwrap()).unwrap();
                let (_, secret) = decoded.split_once(':').unwrap();
                planted.add(Kind::ClientSecret, secret);
            }
            Some(("Bearer", token)) => planted.add(Kind::AccessToken, token),
            _ => {}
        }
        for (name, value) in body_fields(&exchange.request_body) {
            match name.as_str() {
                "code" => planted.add(Kind::AuthorizationCode, &value),
                "code_verifier" => planted.add(Kind::PkceVerifier, &value),
                "client_secret" => planted.add(Kind::ClientSecret, &value),
                "refresh_token" => planted.add(Kind::RefreshToken, &value),
                // Revocation: either kind of token.
                "token" if ["1//emu-", "M.C5emu-", "nrt_emu"].iter().any(|p| value.starts_with(p)) => {
                    planted.add(Kind::RefreshToken, &value)
                }
                "token" => planted.add(Kind::AccessToken, &value),
                _ => {}
            }
        }
        for (name, value) in body_fields(&exchange.response_body) {
            match name.as_str() {
                "access_token" => planted.add(Kind::AccessToken, &value),
                "refresh_token" => planted.add(Kind::RefreshToken, &value),
                "id_token" => planted.add(Kind::IdToken, &value),
                _ => {}
            }
        }
    }
}

/// The tap's traffic as text, to check that the needles match secrets as they are really written.
fn traffic_text(exchanges: &[Exchange]) -> String {
    let mut text = String::new();
    for e in exchanges {
        let _ = writeln!(
            text,
            "{} {} {}\nauthorization: {}\n{}\n{}\n",
            e.method,
            e.path,
            e.status,
            e.authorization.as_deref().unwrap_or(""),
            String::from_utf8_lossy(&e.request_body),
            String::from_utf8_lossy(&e.response_body)
        );
    }
    text
}

// ---------------------------------------------------------------------------------------------
// The service process, its output captured to a file.

struct Service {
    child: Option<Child>,
    base_url: String,
    log: PathBuf,
}

impl Service {
    async fn start(env: &[(String, String)], port: u16, log: &Path) -> Self {
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_oauth-manager"))
            .arg("serve")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("the binary starts");
        let mut service =
            Self { child: Some(child), base_url: format!("http://127.0.0.1:{port}"), log: log.to_owned() };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = service.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("oauth-manager exited at start-up ({status}): {}", service.output_tail());
            }
            let ready = client.get(format!("{}/readyz", service.base_url)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return service;
            }
            assert!(Instant::now() < deadline, "oauth-manager not ready in 30 s: {}", service.output_tail());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn output_tail(&self) -> String {
        let output = std::fs::read_to_string(&self.log).unwrap_or_default();
        output.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, then waits (at most 15 s) for the exit, so the shutdown's own lines are logged too.
    fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("oauth-manager did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The browser and the backend: every answer they get is kept.

/// What an answer is, for what it may legitimately carry.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Plain,
    /// `/initiate`: the state (body, authorization URL) and the flow cookie (`Set-Cookie`).
    Initiate,
    /// The token endpoints: the access token in `access_token`.
    HandOut,
}

#[derive(Clone)]
struct Answer {
    label: String,
    role: Role,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{}: JSON body ({e}): {}", self.label, self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Asserts the status; the JSON body.
    fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}: {}", self.label, self.body);
        if self.body.is_empty() { Value::Null } else { self.json() }
    }

    /// Asserts a problem answer with `status` and `code`.
    fn expect_problem(&self, status: u16, code: &str) {
        let body = self.expect(status);
        assert_eq!(body["code"], code, "{}: {}", self.label, self.body);
    }

    /// The text searched: the answer less what it is meant to carry.
    fn scanned_text(&self) -> String {
        let mut body = self.body.clone();
        let mut headers = self.headers.clone();
        match self.role {
            Role::Plain => {}
            Role::HandOut => {
                if let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(&body)
                    && fields.get("access_token").is_some_and(Value::is_string)
                {
                    fields.insert("access_token".into(), json!("<the access token handed out>"));
                    body = Value::Object(fields).to_string();
                }
            }
            Role::Initiate => {
                if let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(&body) {
                    fields.insert("state".into(), json!("<the state>"));
                    if let Some(url) = fields.get("authorization_url").and_then(Value::as_str) {
                        // The provider's URL carries the state as a parameter; the authorization
                        // link through the service (no browser Origin here) in its path.
                        let redacted = match url.split_once("/handoff/") {
                            Some((start, _)) => format!("{start}/handoff/<the state>"),
                            None => with_query_param(url, "state", "<the state>"),
                        };
                        fields.insert("authorization_url".into(), json!(redacted));
                    }
                    body = Value::Object(fields).to_string();
                }
                for (name, value) in &mut headers {
                    if name == "set-cookie"
                        && let Some((cookie, rest)) = value.split_once('=')
                        && cookie.starts_with("oam_flow_")
                    {
                        let attributes = rest.split_once(';').map_or("", |(_, a)| a);
                        *value = format!("{cookie}=<the flow cookie>;{attributes}");
                    }
                }
            }
        }
        let mut text = format!("{} {}\n", self.label, self.status);
        for (name, value) in headers {
            let _ = writeln!(text, "{name}: {value}");
        }
        text.push('\n');
        text.push_str(&body);
        text
    }
}

/// A flow a browser started: what `/initiate` gave it.
struct Flow {
    provider: String,
    state: String,
    authorization_url: String,
    /// `oam_flow_…=value`, the `Cookie` header the browser sends back.
    cookie: String,
}

struct Driver {
    http: reqwest::Client,
    base: String,
    answers: Vec<Answer>,
    planted: Planted,
}

impl Driver {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&mut self, label: &str, role: Role, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap_or_else(|e| panic!("{label}: {e}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = response.text().await.unwrap();
        let answer = Answer { label: label.to_owned(), role, status, headers, body };
        self.answers.push(answer.clone());
        answer
    }

    /// `method API+path` as the holder of `bearer`.
    async fn call(&mut self, method: reqwest::Method, path: &str, bearer: &str) -> Answer {
        let label = format!("{method} {path}");
        let role = if path.contains("/token") { Role::HandOut } else { Role::Plain };
        let request = self.http.request(method, self.url(&format!("{API}{path}"))).bearer_auth(bearer);
        self.send(&label, role, request).await
    }

    async fn get(&mut self, path: &str, bearer: &str) -> Answer {
        self.call(reqwest::Method::GET, path, bearer).await
    }

    async fn post(&mut self, path: &str, bearer: &str) -> Answer {
        self.call(reqwest::Method::POST, path, bearer).await
    }

    async fn delete(&mut self, path: &str, bearer: &str) -> Answer {
        self.call(reqwest::Method::DELETE, path, bearer).await
    }

    async fn initiate(&mut self, jwt: &str, provider: &str, extra: Value) -> Flow {
        let mut body = json!({ "provider": provider });
        if let Value::Object(fields) = extra {
            body.as_object_mut().unwrap().extend(fields);
        }
        let request = self.http.post(self.url(&format!("{API}/initiate"))).bearer_auth(jwt).json(&body);
        let answer = self.send(&format!("POST /initiate {provider}"), Role::Initiate, request).await;
        let flow = answer.expect(200);
        let cookie = answer
            .headers
            .iter()
            .filter(|(name, _)| name == "set-cookie")
            .find_map(|(_, value)| value.split(';').next().filter(|c| c.starts_with("oam_flow_")))
            .unwrap_or_else(|| panic!("a flow cookie: {:?}", answer.headers))
            .to_owned();
        let state = flow["state"].as_str().unwrap().to_owned();
        self.planted.add(Kind::State, &state);
        self.planted.add(Kind::FlowCookie, cookie.split_once('=').unwrap().1);
        Flow {
            provider: provider.to_owned(),
            state,
            authorization_url: flow["authorization_url"].as_str().unwrap().to_owned(),
            cookie,
        }
    }

    /// The user decides at the provider's consent page (`approve` or `deny`): the callback URL
    /// the provider sends the browser to. (The provider's answer is not the service's: not kept.)
    async fn consent(&mut self, flow: &Flow, decision: &str) -> String {
        // The authorization link passes through the service first (no Origin: not the browser).
        // As a cookie jar would, with the flow cookie `/initiate` set.
        let handed_off = self.http.get(&flow.authorization_url).header("cookie", &flow.cookie).send().await.unwrap();
        assert_eq!(handed_off.status(), 303, "{}: the authorization link redirects", flow.provider);
        let provider_url = handed_off.headers()[header::LOCATION].to_str().unwrap().to_owned();
        let url = url::Url::parse(&provider_url).unwrap();
        let mut form: Vec<(String, String)> =
            url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        form.push(("decision".into(), decision.into()));
        let mut action = url.clone();
        action.set_query(None);
        let response = self.http.post(action).form(&form).send().await.unwrap();
        assert_eq!(response.status(), 303, "{}: the consent form redirects back", flow.provider);
        let location = response.headers()[header::LOCATION].to_str().unwrap().to_owned();
        if let Some(code) = query_param(&location, "code") {
            self.planted.add(Kind::AuthorizationCode, &code);
        }
        assert_eq!(query_param(&location, "state").as_deref(), Some(flow.state.as_str()));
        location
    }

    /// The browser lands on the callback `url`, with `cookie` or none.
    async fn callback(&mut self, label: &str, url: &str, cookie: Option<&str>) -> Answer {
        let mut request = self.http.get(url);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        self.send(&format!("GET /callback ({label})"), Role::Plain, request).await
    }

    /// A whole connect as `jwt`: the integration id.
    async fn connect(&mut self, jwt: &str, provider: &str) -> i64 {
        let flow = self.initiate(jwt, provider, json!({})).await;
        let url = self.consent(&flow, "approve").await;
        let body = self.callback(provider, &url, Some(&flow.cookie)).await.expect(200);
        assert_eq!(body["status"], "active", "{body}");
        body["integration_id"].as_i64().unwrap()
    }
}

/// A JWT of the host application for `user_id`, valid for `lifetime` seconds (negative: expired).
fn jwt(secret: &str, user_id: i32, email: &str, roles: &[&str], lifetime: i64) -> String {
    let claims = Claims {
        user_id,
        token_type: "access".into(),
        sub: email.into(),
        exp: (chrono::Utc::now().timestamp() + lifetime) as u64,
        roles: roles.iter().map(|r| r.to_string()).collect(),
    };
    encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// The operator providers file pointing the built-ins at the emulators: the browser goes to the
/// emulators themselves, the service's own calls go through the taps.
fn providers_toml(google: (&str, &str), microsoft: (&str, &str), notion: (&str, &str)) -> String {
    let ((g, gt), (m, mt), (n, nt)) = (google, microsoft, notion);
    let google_block = |name: &str| {
        format!(
            "[providers.{name}]\nauthorization_url = \"{g}/authorize\"\ntoken_url = \"{gt}/token\"\n\
             revocation_url = \"{gt}/revoke\"\nissuer = \"{g}\"\n"
        )
    };
    format!(
        "{google}userinfo_url = \"{gt}/userinfo\"\njwks_uri = \"{gt}/jwks\"\nissuer_aliases = [\"{g_bare}\"]\n\n\
         {youtube}identity = {{ url = \"{gt}/youtube/v3/channels?part=snippet&mine=true\" }}\n\n\
         [providers.microsoft]\n\
         authorization_url = \"{m}/{{tenant}}/oauth2/v2.0/authorize\"\n\
         token_url = \"{mt}/{{tenant}}/oauth2/v2.0/token\"\n\
         userinfo_url = \"{mt}/v1.0/me\"\n\
         issuer = \"{m}/{{tid}}/v2.0\"\n\
         jwks_uri = \"{mt}/{{tenant}}/discovery/v2.0/keys\"\n\n\
         [providers.notion]\n\
         authorization_url = \"{n}/v1/oauth/authorize\"\n\
         token_url = \"{nt}/v1/oauth/token\"\n\
         revocation_url = \"{nt}/v1/oauth/revoke\"\n\
         userinfo_url = \"{nt}/v1/users/me\"\n",
        google = google_block("google"),
        youtube = google_block("youtube"),
        g_bare = g.trim_start_matches("http://"),
    )
}

/// `url` with a planted password, when the server lets it through (trust authentication never
/// asks for it); the password, or `None` when it could not be planted.
async fn with_planted_password(url: &str) -> (String, Option<String>) {
    let mut parsed = url::Url::parse(url).unwrap();
    if let Some(existing) = parsed.password() {
        // A real password: it is the secret to look for.
        return (url.to_owned(), Some(existing.to_owned()));
    }
    let password = format!("PLANTED-db-password-{}", random_hex(8));
    parsed.set_password(Some(&password)).unwrap();
    match PgConnection::connect(parsed.as_str()).await {
        Ok(connection) => {
            let _ = connection.close().await;
            (parsed.to_string(), Some(password))
        }
        Err(_) => (url.to_owned(), None),
    }
}

async fn new_user(db: &mut PgConnection, email: &str) -> i32 {
    sqlx::query_scalar("INSERT INTO users (email) VALUES ($1) RETURNING id").bind(email).fetch_one(db).await.unwrap()
}

/// Whether a stored value is ciphertext: `v1:<kid>:<base64url>`.
fn is_ciphertext(value: &str) -> bool {
    let mut parts = value.splitn(3, ':');
    let (Some("v1"), Some(kid), Some(data)) = (parts.next(), parts.next(), parts.next()) else { return false };
    !kid.is_empty()
        && data.len() >= 40
        && data.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
}

fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{} kB", b.div_ceil(1000)),
    }
}

/// One emulated provider and the tap in front of it.
struct Provider {
    flavor: Flavor,
    emulator: RunningEmulator,
    tap: Tap,
}

/// The service under test and everything around it.
struct Rig {
    service: Service,
    /// The test's own connection, to age tokens as time passing would.
    db: PgConnection,
    /// The database's URL without the planted password (for pg_dump).
    database_url: String,
    providers: Vec<Provider>,
    work_dir: PathBuf,
    log_path: PathBuf,
}

impl Rig {
    fn emulator(&self, flavor: Flavor) -> &EmulatorHandle {
        &self.providers.iter().find(|p| p.flavor == flavor).unwrap().emulator.handle
    }

    /// Makes the stored token of `id` look old: written `written_ago` seconds ago and expiring in
    /// `expires_in` seconds (or as it was).
    async fn age_token(&mut self, id: i64, written_ago: i64, expires_in: Option<i64>) {
        sqlx::query(
            "UPDATE oauth_tokens SET updated_at = (now() AT TIME ZONE 'utc') - make_interval(secs => $2), \
             expires_at = COALESCE((now() AT TIME ZONE 'utc') + make_interval(secs => $3), expires_at) \
             WHERE integration_id = $1",
        )
        .bind(id as i32)
        .bind(written_ago as f64)
        .bind(expires_in.map(|s| s as f64))
        .execute(&mut self.db)
        .await
        .unwrap();
    }
}

/// What the test's callers present.
struct Callers {
    owner_id: i32,
    /// The owner's JWT, an administrator's, an expired one and one signed with another secret.
    owner: String,
    admin: String,
    expired: String,
    forged: String,
    /// A key configured plainly, one configured as `sha256:`, one not configured.
    service_key: String,
    hashed_service_key: String,
    wrong_service_key: String,
}

/// Plants the configuration's secrets, builds the database, the emulators and their taps, and
/// starts the service on them.
async fn start(planted: &mut Planted) -> (Rig, Callers) {
    let jwt_secret = format!("PLANTED-jwt-secret-{}", random_hex(16));
    let primary_key: [u8; 32] = rand::random();
    let old_key: [u8; 32] = rand::random();
    let service_key = format!("PLANTED-service-key-{}", random_hex(12));
    let hashed_service_key = format!("PLANTED-hashed-service-key-{}", random_hex(12));
    let wrong_service_key = format!("PLANTED-wrong-service-key-{}", random_hex(12));
    planted.add(Kind::JwtSecret, &jwt_secret);
    planted.add(Kind::EncryptionKey, &hex::encode(primary_key));
    planted.add(Kind::EncryptionKey, &hex::encode(old_key));
    for key in [&service_key, &hashed_service_key, &wrong_service_key] {
        planted.add(Kind::ServiceKey, key);
    }

    let database_url = crate::support::existing_schema_database().await;
    let (service_database_url, database_password) = with_planted_password(&database_url).await;
    if let Some(password) = &database_password {
        planted.add(Kind::DatabasePassword, password);
    }
    let mut db = PgConnection::connect(&database_url).await.unwrap();
    let owner_id = new_user(&mut db, "owner@example.com").await;
    let admin_id = new_user(&mut db, "admin@example.com").await;

    // The emulators, each knowing one client with a planted secret, and a tap in front of each.
    let mut providers = Vec::new();
    let mut env: Vec<(String, String)> = Vec::new();
    for flavor in FLAVORS {
        let name = flavor.display_name().to_lowercase();
        let client_id = format!("planted-suite-{name}-client");
        let client_secret = format!("PLANTED-{name}-client-secret-{}", random_hex(6));
        let emulator =
            provider_emulators::spawn(EmulatorConfig::new(flavor, &client_id, &client_secret)).await.unwrap();
        let tap = Tap::start(&emulator.base_url).await;
        planted.add(Kind::ClientSecret, &client_secret);
        // The form a Basic client authentication writes (RFC 6749 §2.3.1).
        let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        planted.extra.push(Needle {
            kind: Kind::ClientSecret,
            form: "Basic credential",
            text: STANDARD.encode(format!("{}:{}", encode(&client_id), encode(&client_secret))),
            value: client_secret.clone(),
        });
        let prefix = name.to_uppercase();
        env.push((format!("{prefix}_CLIENT_ID"), client_id));
        env.push((format!("{prefix}_CLIENT_SECRET"), client_secret));
        providers.push(Provider { flavor, emulator, tap });
    }
    let pair = |flavor: Flavor| {
        let provider = providers.iter().find(|p| p.flavor == flavor).unwrap();
        (provider.emulator.base_url.as_str(), provider.tap.base_url.as_str())
    };
    let work_dir = std::env::temp_dir().join(format!("oam-planted-{}", random_hex(6)));
    std::fs::create_dir_all(&work_dir).unwrap();
    let providers_file = work_dir.join("providers.toml");
    let toml = providers_toml(pair(Flavor::Google), pair(Flavor::Microsoft), pair(Flavor::Notion));
    std::fs::write(&providers_file, toml).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let hashed = hex::encode(Sha256::digest(&hashed_service_key));
    let settings = [
        ("DATABASE_URL", service_database_url),
        ("JWT_SECRET_KEY", jwt_secret.clone()),
        ("OAUTH_ENCRYPTION_KEY", format!("k1:{},k0:{}", hex::encode(primary_key), STANDARD.encode(old_key))),
        ("OAUTH_SERVICE_API_KEYS", format!("{service_key},sha256:{hashed}")),
        ("OAUTH_PROVIDERS_FILE", providers_file.display().to_string()),
        ("OAUTH_DATA_DIR", work_dir.join("data").display().to_string()),
        ("OAUTH_SANDBOX", "off".to_owned()),
        // `Rig::age_token` rewrites token rows behind the service's back, which a cache cannot hear.
        ("OAUTH_TOKEN_CACHE", "off".to_owned()),
        ("OAUTH_ALLOWED_RETURN_ORIGINS", APP_ORIGIN.to_owned()),
        ("PUBLIC_BASE_URL", format!("http://127.0.0.1:{port}")),
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", port.to_string()),
        ("RUST_LOG", "trace".to_owned()),
        ("LOG_FORMAT", "text".to_owned()),
        ("NO_COLOR", "1".to_owned()),
    ];
    env.extend(settings.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let log_path = work_dir.join("service.log");
    let service = Service::start(&env, port, &log_path).await;

    let callers = Callers {
        owner_id,
        owner: jwt(&jwt_secret, owner_id, "owner@example.com", &[], 3600),
        admin: jwt(&jwt_secret, admin_id, "admin@example.com", &["administrator"], 3600),
        expired: jwt(&jwt_secret, owner_id, "owner@example.com", &[], -3600),
        forged: jwt(&format!("not-the-secret-{}", random_hex(8)), owner_id, "owner@example.com", &[], 3600),
        service_key,
        hashed_service_key,
        wrong_service_key,
    };
    for token in [&callers.owner, &callers.admin, &callers.expired, &callers.forged] {
        planted.add(Kind::UserJwt, token);
    }
    (Rig { service, db, database_url, providers, work_dir, log_path }, callers)
}

/// Operational endpoints, the catalogue, and callers that are refused.
async fn refused_callers(d: &mut Driver, c: &Callers) {
    for path in ["/healthz", "/readyz", "/openapi.json", "/no/such/path"] {
        let request = d.http.get(d.url(path));
        d.send(&format!("GET {path}"), Role::Plain, request).await;
    }
    d.get("/providers", &c.owner).await.expect(200);
    d.get("/integrations", &c.expired).await.expect_problem(401, "authentication_required");
    d.get("/status", &c.forged).await.expect_problem(401, "authentication_required");
    d.get("/integrations/1/token", &c.wrong_service_key).await.expect_problem(401, "authentication_required");
    d.get("/integrations/1/token", &c.owner).await.expect_problem(403, "forbidden");
    let refused = d.get("/integrations", &c.service_key).await;
    assert!(matches!(refused.status, 401 | 403), "a service key is no user: {}", refused.body);
}

/// Flows that fail: the provider down at the code exchange, the user denying (with and without
/// `return_to`), the callback arriving in another browser.
async fn failing_flows(d: &mut Driver, rig: &Rig, c: &Callers) {
    rig.emulator(Flavor::Microsoft).set_fault(Fault::ServerError);
    let flow = d.initiate(&c.owner, "microsoft", json!({})).await;
    let url = d.consent(&flow, "approve").await;
    let down = d.callback("microsoft, provider down", &url, Some(&flow.cookie)).await;
    down.expect_problem(502, "provider_unavailable");
    rig.emulator(Flavor::Microsoft).set_fault(Fault::None);

    let flow = d.initiate(&c.owner, "google", json!({})).await;
    let url = d.consent(&flow, "deny").await;
    d.callback("google, denied", &url, Some(&flow.cookie)).await.expect_problem(400, "authorization_denied");

    let flow = d.initiate(&c.owner, "notion", json!({ "return_to": format!("{APP_ORIGIN}/after") })).await;
    let url = d.consent(&flow, "deny").await;
    let denied = d.callback("notion, denied, return_to", &url, Some(&flow.cookie)).await;
    assert_eq!(denied.status, 303, "{}", denied.body);
    assert!(denied.header("location").unwrap().contains("oauth_status=error"));

    let flow = d.initiate(&c.owner, "google", json!({})).await;
    let url = d.consent(&flow, "approve").await;
    d.callback("google, another browser", &url, None).await.expect_problem(400, "state_not_bound");
}

/// Connects Google (first with a wrong state, which is refused without spending the state, then
/// rightly, then replayed), Microsoft, Notion (back to `return_to`) and YouTube.
async fn connect_all(d: &mut Driver, c: &Callers) -> [(&'static str, i64); 4] {
    let flow = d.initiate(&c.owner, "google", json!({})).await;
    let url = d.consent(&flow, "approve").await;
    let wrong_state = with_query_param(&url, "state", &oauth_manager::crypto::random_token(32));
    d.callback("google, wrong state", &wrong_state, Some(&flow.cookie)).await.expect_problem(400, "invalid_state");
    let google = d.callback("google", &url, Some(&flow.cookie)).await.expect(200)["integration_id"].as_i64().unwrap();
    d.callback("google, replayed", &url, Some(&flow.cookie)).await.expect_problem(400, "state_used");

    let microsoft = d.connect(&c.owner, "microsoft").await;

    let flow = d.initiate(&c.owner, "notion", json!({ "return_to": format!("{APP_ORIGIN}/after") })).await;
    let url = d.consent(&flow, "approve").await;
    let back = d.callback("notion, return_to", &url, Some(&flow.cookie)).await;
    assert_eq!(back.status, 303, "{}", back.body);
    let location = back.header("location").unwrap().to_owned();
    assert_eq!(query_param(&location, "oauth_status").as_deref(), Some("success"), "{location}");
    let notion = query_param(&location, "integration_id").unwrap().parse().unwrap();

    let youtube = d.connect(&c.owner, "youtube").await;
    [("google", google), ("microsoft", microsoft), ("notion", notion), ("youtube", youtube)]
}

/// Everything a user and a backend do with connected integrations.
async fn use_all(d: &mut Driver, rig: &mut Rig, c: &Callers, connected: &[(&str, i64)]) {
    for &(provider, id) in connected {
        d.get(&format!("/integrations/{id}"), &c.owner).await.expect(200);
        let first = d.get(&format!("/integrations/{id}/token"), &c.service_key).await.expect(200);
        let by_owner = format!("/users/{}/integrations/{provider}/token", c.owner_id);
        d.get(&by_owner, &c.hashed_service_key).await.expect(200);
        // The backend's "the provider refused this token": refreshed, as the token is not fresh.
        rig.age_token(id, 120, None).await;
        let forced = d.get(&format!("/integrations/{id}/token?force_refresh=true"), &c.service_key).await.expect(200);
        assert_ne!(first["access_token"], forced["access_token"], "{provider}: force_refresh renewed the token");
        d.post(&format!("/integrations/{id}/refresh"), &c.owner).await.expect(200);
        // A token about to expire is refreshed on the way out.
        if provider != "notion" {
            rig.age_token(id, 3570, Some(30)).await;
            let due = d.get(&format!("/integrations/{id}/token?min_ttl=60"), &c.service_key).await.expect(200);
            assert_ne!(due["access_token"], forced["access_token"], "{provider}: a due token was refreshed");
        }
    }
    let (google, microsoft) = (connected[0].1, connected[1].1);
    rig.age_token(microsoft, 3570, Some(30)).await;
    let sync = d.post("/integrations/sync", &c.owner).await.expect(200);
    assert!(sync["results"].as_array().is_some_and(|r| !r.is_empty()), "{sync}");
    for path in [
        "/integrations",
        "/integrations?active_only=false",
        "/integrations?provider=google",
        "/status",
        "/consents",
        "/audit?limit=200",
        &format!("/audit?integration_id={google}"),
        "/audit?action=refresh",
    ] {
        d.get(path, &c.owner).await.expect(200);
    }
    d.get(&format!("/integrations?user_id={}&active_only=false", c.owner_id), &c.admin).await.expect(200);
    d.get(&format!("/audit?user_id={}&limit=200", c.owner_id), &c.admin).await.expect(200);
}

/// Refreshes that fail: a provider answering garbage (a due token is still handed out, with the
/// header saying so), and one that wants the user back; then Google reconnected over its
/// integration.
async fn failing_refreshes(d: &mut Driver, rig: &mut Rig, c: &Callers, google: i64, microsoft: i64) {
    rig.emulator(Flavor::Google).set_fault(Fault::Garbage);
    d.post(&format!("/integrations/{google}/refresh"), &c.owner).await.expect_problem(502, "provider_unavailable");
    rig.age_token(google, 3570, Some(30)).await;
    let stale = d.get(&format!("/integrations/{google}/token"), &c.service_key).await;
    stale.expect(200);
    assert_eq!(stale.header("x-token-refresh-failed"), Some("provider_unavailable"));
    rig.emulator(Flavor::Google).set_fault(Fault::None);

    rig.emulator(Flavor::Microsoft).set_refresh_error(Some("interaction_required".into()));
    d.post(&format!("/integrations/{microsoft}/refresh"), &c.owner).await.expect_problem(400, "needs_reauth");
    d.get(&format!("/integrations/{microsoft}/token"), &c.service_key).await.expect_problem(409, "needs_reauth");
    rig.emulator(Flavor::Microsoft).set_refresh_error(None);
    d.post("/integrations/sync", &c.owner).await.expect(200);

    assert_eq!(d.connect(&c.owner, "google").await, google, "a reconnect keeps the integration");
}

/// The taps saw real refresh tokens: of each provider, one captured is still live there.
fn assert_refresh_tokens_are_real(rig: &Rig) {
    let mut seen = Planted::default();
    for provider in &rig.providers {
        learn_from(&provider.tap.exchanges(), &mut seen);
    }
    for flavor in FLAVORS {
        let refresh_prefix = issued_prefixes(flavor)[1];
        let live = seen.values.get(&Kind::RefreshToken).into_iter().flatten().filter(|t| t.starts_with(refresh_prefix));
        let live = live.filter(|t| rig.emulator(flavor).is_refresh_token_live(t)).count();
        assert!(live >= 1, "{flavor:?}: a captured refresh token is live at the provider");
    }
}

/// Disconnects everything (nothing is handed out afterwards), then connects Notion again, so the
/// database ends with live ciphertext in it.
async fn disconnect_all(d: &mut Driver, c: &Callers, connected: &[(&str, i64)]) {
    for &(provider, id) in connected {
        d.delete(&format!("/integrations/{id}?reason=planted%20secrets%20suite"), &c.owner).await.expect(200);
        let token = d.get(&format!("/integrations/{id}/token"), &c.service_key).await;
        token.expect_problem(409, "integration_revoked");
        d.get(&format!("/users/{}/integrations/{provider}/token", c.owner_id), &c.service_key).await;
    }
    d.delete(&format!("/integrations/{}", connected[0].1), &c.owner).await.expect(200);
    let again = d.connect(&c.owner, "notion").await;
    d.get(&format!("/integrations/{again}/token"), &c.service_key).await.expect(200);
    for path in ["/integrations?active_only=false", "/audit?limit=200", "/status", "/consents"] {
        d.get(path, &c.owner).await.expect(200);
    }
}

/// `pg_dump --data-only` of the database, after checking that every stored token and verifier is
/// `v1` ciphertext; the dump and how many ciphertexts there are.
async fn dump_database(rig: &mut Rig) -> (String, usize) {
    let stored: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT access_token, refresh_token FROM oauth_tokens").fetch_all(&mut rig.db).await.unwrap();
    let verifiers: Vec<Option<String>> =
        sqlx::query_scalar("SELECT code_verifier FROM oauth_state").fetch_all(&mut rig.db).await.unwrap();
    let values = stored.into_iter().flat_map(|(access, refresh)| [Some(access), refresh]).chain(verifiers);
    let mut ciphertexts = 0;
    for value in values.flatten().filter(|v| !v.is_empty()) {
        assert!(is_ciphertext(&value), "a stored secret is not v1 ciphertext: {value}");
        ciphertexts += 1;
    }
    let output = Command::new("pg_dump")
        .args(["--data-only", "--no-owner", "--no-privileges", &rig.database_url])
        .output()
        .expect("pg_dump is installed (postgresql-client)");
    assert!(output.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&output.stderr));
    let dump = String::from_utf8(output.stdout).unwrap();
    assert!(ciphertexts > 0 && dump.contains("v1:k1:"), "the dump holds ciphertext");
    (dump, ciphertexts)
}

/// The needles find what they should: in the providers' side of the traffic, where those secrets
/// are meant to be; in the answers meant for them before those parts are taken out (every state
/// and flow cookie in `/initiate`'s answers, every access token handed out); and in a text
/// holding one copy of every needle.
fn assert_the_needles_work(scanner: &Scanner, planted: &Planted, answers: &[Answer], traffic: &str) {
    let mut control = Vec::new();
    scanner.scan("provider traffic", traffic, &mut control);
    let found = |hits: &[Hit], kind| -> BTreeSet<String> {
        hits.iter().filter(|h| h.kind == kind).map(|h| h.value.clone()).collect()
    };
    for kind in [Kind::AuthorizationCode, Kind::AccessToken] {
        assert!(!found(&control, kind).is_empty(), "the provider traffic shows some {}", kind.label());
    }
    for kind in [Kind::ClientSecret, Kind::PkceVerifier, Kind::RefreshToken, Kind::IdToken] {
        assert_eq!(found(&control, kind), planted.values[&kind], "every {} is found where it was sent", kind.label());
    }

    let mut belonging = Vec::new();
    for answer in answers.iter().filter(|a| a.role != Role::Plain) {
        let whole = Answer { role: Role::Plain, ..answer.clone() };
        scanner.scan("answer, whole", &whole.scanned_text(), &mut belonging);
    }
    let handed_out: BTreeSet<String> = answers
        .iter()
        .filter(|a| a.role == Role::HandOut && a.status == 200)
        .map(|a| a.json()["access_token"].as_str().unwrap().to_owned())
        .collect();
    assert!(handed_out.is_subset(&planted.values[&Kind::AccessToken]), "the taps saw every token handed out");
    for (kind, expected) in [
        (Kind::State, &planted.values[&Kind::State]),
        (Kind::FlowCookie, &planted.values[&Kind::FlowCookie]),
        (Kind::AccessToken, &handed_out),
    ] {
        assert!(expected.is_subset(&found(&belonging, kind)), "every {} is in the answers meant for it", kind.label());
    }

    let mut self_test = Vec::new();
    let everything: String = scanner.needles.iter().map(|n| format!(" {} ", n.text)).collect();
    scanner.scan("self-test", &everything, &mut self_test);
    assert!(self_test.len() >= scanner.needles.len(), "every needle is found in a text holding it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_appear_in_no_log_answer_or_database_row() {
    let started = Instant::now();
    let mut planted = Planted::default();
    let (mut rig, c) = start(&mut planted).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut d = Driver { http, base: rig.service.base_url.clone(), answers: Vec::new(), planted };

    refused_callers(&mut d, &c).await;
    failing_flows(&mut d, &rig, &c).await;
    let connected = connect_all(&mut d, &c).await;
    use_all(&mut d, &mut rig, &c, &connected).await;
    failing_refreshes(&mut d, &mut rig, &c, connected[0].1, connected[1].1).await;
    assert_refresh_tokens_are_real(&rig);
    disconnect_all(&mut d, &c, &connected).await;

    // Stopped, so its shutdown lines and the last usage flush are in the log too.
    let status = rig.service.stop();
    assert!(status.success(), "SIGTERM ends it cleanly: {status:?}");
    let Driver { answers, mut planted, .. } = d;
    let mut traffic = String::new();
    for provider in &rig.providers {
        let exchanges = provider.tap.exchanges();
        learn_from(&exchanges, &mut planted);
        traffic.push_str(&traffic_text(&exchanges));
    }
    let log = strip_ansi(&String::from_utf8_lossy(&std::fs::read(&rig.log_path).unwrap()));
    assert!(log.contains("oauth-manager listening"), "the log was captured");
    assert!(log.lines().filter(|l| l.contains("TRACE")).count() > 10, "the log is at trace level");
    let (dump, ciphertexts) = dump_database(&mut rig).await;

    let scanner = Scanner::new(planted.needles());
    assert_the_needles_work(&scanner, &planted, &answers, &traffic);

    // The search: the log, every answer less what it is meant to carry, the dump, and the
    // service's calls to each provider, which may carry that provider's client secret and what it
    // issued, nothing else (no key, no JWT, no state, nothing of another provider).
    let mut hits = Vec::new();
    scanner.scan("log", &log, &mut hits);
    let mut answer_bytes = 0;
    for answer in &answers {
        let text = answer.scanned_text();
        answer_bytes += text.len();
        scanner.scan(&format!("answer {} {}", answer.label, answer.status), &text, &mut hits);
    }
    scanner.scan("pg_dump", &dump, &mut hits);
    let (mut provider_calls, mut provider_bytes) = (0, 0);
    for provider in &rig.providers {
        let exchanges = provider.tap.exchanges();
        let text = traffic_text(&exchanges);
        (provider_calls, provider_bytes) = (provider_calls + exchanges.len(), provider_bytes + text.len());
        let mut found = Vec::new();
        scanner.scan(&format!("calls to {:?}", provider.flavor), &text, &mut found);
        let own = &provider.emulator.handle.config().client_secret;
        hits.extend(found.into_iter().filter(|hit| misdirected(hit, provider.flavor, own)));
    }

    // The figure.
    println!("planted secrets, by kind (values; hits per place searched):");
    for kind in Kind::SECRETS.into_iter().chain([Kind::Prefix]) {
        let count = |place: &str| hits.iter().filter(|h| h.kind == kind && h.source.starts_with(place)).count();
        let values = if kind == Kind::Prefix { PREFIXES.len() } else { planted.count(kind) };
        println!(
            "  {:<20} {values:>4}   log {}, answers {}, dump {}, provider calls {}",
            kind.label(),
            count("log"),
            count("answer"),
            count("pg_dump"),
            count("calls to")
        );
    }
    let missing: Vec<&str> = Kind::SECRETS.iter().filter(|k| planted.count(**k) == 0).map(|k| k.label()).collect();
    if !missing.is_empty() {
        println!("  not planted: {}", missing.join(", "));
    }
    for hit in hits.iter().take(40) {
        let (kind, form, source, value, line) = (hit.kind.label(), hit.form, &hit.source, &hit.value, &hit.context);
        println!("LEAK: {kind} ({form}) in {source}: {value:?}\n      line: {line}");
    }
    println!(
        "planted secrets: {} kinds, {} values ({} needles with encodings and prefixes), scanned {} of logs \
         ({} lines), {} answers ({}), {} dump ({ciphertexts} ciphertexts), {provider_calls} provider calls ({}): \
         {} hits ({:.1} s)",
        Kind::SECRETS.len() - missing.len(),
        planted.total(),
        scanner.needles.len(),
        size(log.len()),
        log.lines().count(),
        answers.len(),
        size(answer_bytes),
        size(dump.len()),
        size(provider_bytes),
        hits.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        hits.is_empty(),
        "{} planted secrets found where they must not be (see the LEAK lines; the log is kept at {})",
        hits.len(),
        rig.log_path.display()
    );
    std::fs::remove_dir_all(&rig.work_dir).ok();
}

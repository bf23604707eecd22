//! The isolation matrix: every endpoint under `/api/v1/oauth` × every kind of caller, aimed at the
//! owner's integrations (and user id). Each cell asserts the exact status and problem `code` a
//! client reads, that the answer reveals nothing the caller may not see (headers and body), that a
//! refused answer is the same as for a target that does not exist (no existence oracle), and that
//! nothing of the owner's changed. The refresh and disconnect cells of the callers allowed to do
//! them (the owner, an administrator) run last, on integrations of their own, so that the owner's
//! Google connection ends the matrix exactly as it started.
//!
//! `flow/isolation.rs` checks a stranger and the token endpoints one by one; this suite is the whole
//! table, adds administrators, service keys on user endpoints, forged and wrong-typed JWTs, the
//! cookie sent by another site's page, the callbacks and both directions (the owner never sees the
//! stranger's data either), and ends with one line: how many cells, requests and leaks. A second,
//! smaller matrix runs the token endpoints with `OAUTH_EXPOSE_TOKENS_TO_USERS=on`, where a user's
//! JWT gets past the gate and only the ownership check stands between callers.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use crate::flow_support::{API, Harness, json_body};
use crate::on_both_backends;
use crate::support::{Backend, JWT_SECRET, SERVICE_KEY, TestUser, sign};

/// The matrix's size: a change to the endpoints or callers must change this on purpose.
const EXPECTED_CELLS: usize = 19 * 9;
/// An id no integration and no user has.
const NOBODY: i64 = i32::MAX as i64;
/// The page of another site, as a browser names it in `Origin`.
const EVIL_ORIGIN: &str = "https://evil.example";
/// Every emulator token starts with one of these (access and refresh, Google, Microsoft, Notion):
/// only a service's token answer may carry one.
const TOKEN_PREFIXES: [&str; 6] = ["ya29.emu-", "1//emu-", "EwBemu-", "M.C5emu-", "ntn_emu", "nrt_emu"];
/// The stranger's account at Google, distinct from the owner's default login.
const STRANGER_LOGIN: &str = "mallory@example.com";

/// Who sends a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Caller {
    /// The owner's access token as a Bearer header.
    Owner,
    /// Another user of the host application, with a valid access token of their own.
    Stranger,
    /// Another user whose access token carries `roles: ["administrator"]`.
    Admin,
    /// A backend with a service key.
    Service,
    /// No credentials.
    Anonymous,
    /// The owner's claims, with the administrator role added, expired an hour ago.
    Expired,
    /// The owner's claims, with the administrator role added, signed with another secret.
    WrongSecret,
    /// The owner's claims, with the administrator role added, of `type: "refresh"`.
    RefreshType,
    /// The owner's access token in the `access_token` cookie, sent by another site's page
    /// (`Origin: https://evil.example`): what a cross-site request makes the owner's browser send.
    CrossSite,
}

const CALLERS: [Caller; 9] = [
    Caller::Owner,
    Caller::Stranger,
    Caller::Admin,
    Caller::Service,
    Caller::Anonymous,
    Caller::Expired,
    Caller::WrongSecret,
    Caller::RefreshType,
    Caller::CrossSite,
];

/// Every endpoint under `/api/v1/oauth` (checked against `/openapi.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Endpoint {
    Providers,
    Initiate,
    Handoff,
    Connect,
    ConnectLinks,
    Callback,
    CallbackForProvider,
    List,
    Show,
    Refresh,
    Disconnect,
    Sync,
    Status,
    Consents,
    Audit,
    TokenById,
    TokenByOwner,
    ExportUser,
    EraseUser,
}

const ENDPOINTS: [Endpoint; 19] = [
    Endpoint::Providers,
    Endpoint::Initiate,
    Endpoint::Handoff,
    Endpoint::Connect,
    Endpoint::ConnectLinks,
    Endpoint::Callback,
    Endpoint::CallbackForProvider,
    Endpoint::List,
    Endpoint::Show,
    Endpoint::Refresh,
    Endpoint::Disconnect,
    Endpoint::Sync,
    Endpoint::Status,
    Endpoint::Consents,
    Endpoint::Audit,
    Endpoint::TokenById,
    Endpoint::TokenByOwner,
    Endpoint::ExportUser,
    Endpoint::EraseUser,
];

impl Endpoint {
    /// Method and path template, as `/openapi.json` names them (without `/api/v1/oauth`).
    fn route(self) -> (&'static str, &'static str) {
        match self {
            Self::Providers => ("GET", "/providers"),
            Self::Initiate => ("POST", "/initiate"),
            Self::Handoff => ("GET", "/handoff/{state}"),
            Self::Connect => ("GET", "/connect/{provider}"),
            Self::ConnectLinks => ("POST", "/connect-links"),
            Self::Callback => ("GET", "/callback"),
            Self::CallbackForProvider => ("GET", "/callback/{provider}"),
            Self::List => ("GET", "/integrations"),
            Self::Show => ("GET", "/integrations/{id}"),
            Self::Refresh => ("POST", "/integrations/{id}/refresh"),
            Self::Disconnect => ("DELETE", "/integrations/{id}"),
            Self::Sync => ("POST", "/integrations/sync"),
            Self::Status => ("GET", "/status"),
            Self::Consents => ("GET", "/consents"),
            Self::Audit => ("GET", "/audit"),
            Self::TokenById => ("GET", "/integrations/{id}/token"),
            Self::TokenByOwner => ("GET", "/users/{user_id}/integrations/{provider}/token"),
            Self::ExportUser => ("GET", "/users/{user_id}/export"),
            Self::EraseUser => ("DELETE", "/users/{user_id}"),
        }
    }

    fn name(self) -> String {
        let (method, path) = self.route();
        format!("{method} {path}")
    }
}

/// What a cell must answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// 200 with a JSON body.
    Ok,
    /// 201 with a JSON body.
    Created,
    /// 303 with a `Location` (the body the probe returns is `{"location": ...}`).
    Redirect,
    /// Problem JSON with this status and code.
    Problem(u16, &'static str),
}

const UNAUTHENTICATED: Expect = Expect::Problem(401, "authentication_required");
const NOT_FOUND: Expect = Expect::Problem(404, "not_found");
const FORBIDDEN: Expect = Expect::Problem(403, "forbidden");
const CROSS_SITE: Expect = Expect::Problem(403, "cross_site_request");

/// Whose data an answer may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sees {
    /// Nobody's (a refusal, the provider catalogue, an administrator's own empty lists).
    Nothing,
    Owner,
    Stranger,
    /// A service's token answer: the token and ids of the integration asked for, no account data.
    Token,
}

/// What identifies one user's data in an answer.
#[derive(Default)]
struct Party {
    user_id: i64,
    /// (what it is, its value): e-mails, account ids and names.
    texts: Vec<(String, String)>,
    /// The user's integration ids.
    integrations: BTreeSet<i64>,
}

impl Party {
    fn add_text(&mut self, what: impl Into<String>, value: &Value) {
        if let Some(value) = value.as_str().filter(|value| value.len() >= 4) {
            self.texts.push((what.into(), value.to_owned()));
        }
    }
}

/// One request of a cell.
struct Call {
    method: Method,
    url: String,
    body: Option<Value>,
}

/// An answer, read whole.
struct Answer {
    status: u16,
    content_type: Option<String>,
    location: Option<String>,
    headers: String,
    text: String,
    json: Value,
}

impl Answer {
    async fn read(request: RequestBuilder) -> Self {
        let response = request.send().await.expect("the app answers");
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let content_type = header("content-type");
        let location = header("location");
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| format!("{name}: {}", String::from_utf8_lossy(value.as_bytes())))
            .collect::<Vec<_>>()
            .join("\n");
        let text = response.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self { status, content_type, location, headers, text, json }
    }

    /// Whether this is the expected answer; why not otherwise.
    fn check(&self, expect: Expect) -> Result<(), String> {
        let fine = match expect {
            Expect::Ok => self.status == 200 && !self.json.is_null(),
            Expect::Created => self.status == 201 && !self.json.is_null(),
            Expect::Redirect => self.status == 303 && self.location.is_some(),
            Expect::Problem(status, code) => {
                self.status == status
                    && self.json["code"] == code
                    && self.json["status"] == status
                    && self.json["detail"].as_str().is_some_and(|detail| !detail.is_empty())
                    && self.content_type.as_deref() == Some("application/problem+json")
            }
        };
        if fine {
            Ok(())
        } else {
            Err(format!("expected {expect:?}, got {} ({:?}): {}", self.status, self.content_type, self.text))
        }
    }
}

/// Integration ids and user ids an answer names: `integration_id` and `user_id` anywhere, `id` of
/// integration views (objects with an `account`).
fn named_ids(value: &Value, integrations: &mut BTreeSet<i64>, users: &mut BTreeSet<i64>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                match (key.as_str(), field.as_i64()) {
                    ("integration_id", Some(id)) => {
                        integrations.insert(id);
                    }
                    ("id", Some(id)) if fields.contains_key("account") => {
                        integrations.insert(id);
                    }
                    ("user_id", Some(id)) => {
                        users.insert(id);
                    }
                    _ => named_ids(field, integrations, users),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| named_ids(item, integrations, users)),
        _ => {}
    }
}

/// The integration ids of a list of integration views (or of sync results, consents, events).
fn ids_of(list: &Value, key: &str) -> BTreeSet<i64> {
    list.as_array().into_iter().flatten().filter_map(|item| item[key].as_i64()).collect()
}

struct Matrix {
    h: Harness,
    stranger: TestUser,
    admin: TestUser,
    expired: String,
    wrong_secret: String,
    refresh_type: String,
    owner: Party,
    other: Party,
    /// The owner's integrations by provider: Google is the one the matrix leaves untouched.
    by_provider: BTreeMap<&'static str, i64>,
    /// The stranger's Google integration.
    strangers: i64,
    /// The current access token of every integration, and every token ever handed out.
    current_tokens: BTreeMap<i64, String>,
    all_tokens: BTreeSet<String>,
    cells: BTreeSet<(Endpoint, Caller)>,
    requests: usize,
    leaks: Vec<String>,
    unexpected: Vec<String>,
    /// The owner's integrations as last seen (`GET /integrations?active_only=false`).
    fingerprint: Value,
}

impl Matrix {
    /// The owner with Google, YouTube, Microsoft and Notion connected; a stranger with Google
    /// (another Google account); an administrator with nothing.
    /// With `exposed`, `OAUTH_EXPOSE_TOKENS_TO_USERS=on`: users may read their own raw tokens.
    async fn set_up(backend: Backend, exposed: bool) -> Self {
        let exposure = if exposed { "on" } else { "off" };
        // The owner starts more flows in a minute than the per-user rate allows: this suite is
        // about who sees what, not about rates (tests/api/flow/hardening.rs covers those).
        let no_rates = crate::support::config_file("[limits]\ninitiate_per_user_per_minute = 0\n");
        let h = Harness::start_with(backend, |config| {
            config.set("OAUTH_EXPOSE_TOKENS_TO_USERS", exposure).set("OAUTH_CONFIG_FILE", no_rates)
        })
        .await;
        let mut by_provider = BTreeMap::new();
        for provider in ["google", "youtube", "microsoft", "notion"] {
            by_provider.insert(provider, h.connect(provider).await);
        }
        let stranger = h.app.user("stranger@example.com").await;
        let flow = json_body(h.initiate_as(&stranger.token, "google", json!({})).await, 200).await;
        let url = h.approve(flow["authorization_url"].as_str().unwrap(), Some(STRANGER_LOGIN), None).await;
        let strangers = json_body(h.callback(&url).await, 200).await["integration_id"].as_i64().unwrap();
        let admin = h.app.admin("admin@example.com").await;

        // The owner's claims, made as strong as possible (administrator too): refused all the same.
        let forged = |token_type: &str, expires_in: i64, secret: &str| {
            let claims = json!({
                "user_id": h.user.id,
                "type": token_type,
                "sub": h.user.email,
                "exp": chrono::Utc::now().timestamp() + expires_in,
                "roles": ["administrator"],
            });
            sign(&claims, secret)
        };
        let expired = forged("access", -3600, JWT_SECRET);
        let wrong_secret = forged("access", 3600, "not-the-jwt-secret-0123456789abcdef");
        let refresh_type = forged("refresh", 3600, JWT_SECRET);
        // The control: the same claims without the flaw are accepted, as an administrator's.
        let control = forged("access", 3600, JWT_SECRET);
        let google = by_provider["google"];
        json_body(h.app.get(&format!("{API}/integrations/{google}"), Some(&control)).await, 200).await;

        let mut matrix = Self {
            owner: Party { user_id: h.user.id.into(), ..Party::default() },
            other: Party { user_id: stranger.id.into(), ..Party::default() },
            h,
            stranger,
            admin,
            expired,
            wrong_secret,
            refresh_type,
            by_provider,
            strangers,
            current_tokens: BTreeMap::new(),
            all_tokens: BTreeSet::new(),
            cells: BTreeSet::new(),
            requests: 0,
            leaks: Vec::new(),
            unexpected: Vec::new(),
            fingerprint: Value::Null,
        };
        matrix.learn_secrets().await;
        matrix
    }

    /// What identifies the owner's and the stranger's data, from their own views and tokens.
    async fn learn_secrets(&mut self) {
        self.owner.add_text("the owner's e-mail", &json!(self.h.user.email));
        self.other.add_text("the stranger's e-mail", &json!(self.stranger.email));
        let owner_list = self.list_as(&self.h.user.token.clone()).await;
        let stranger_list = self.list_as(&self.stranger.token.clone()).await;
        for (party, list) in [(&mut self.owner, &owner_list), (&mut self.other, &stranger_list)] {
            for view in list.as_array().unwrap() {
                let provider = view["provider"].as_str().unwrap();
                party.integrations.insert(view["id"].as_i64().unwrap());
                party.add_text(format!("the {provider} account id"), &view["account"]["provider_user_id"]);
                party.add_text(format!("the {provider} account e-mail"), &view["account"]["email"]);
                party.add_text(format!("the {provider} account name"), &view["account"]["name"]);
            }
        }
        assert_eq!(self.owner.integrations, self.by_provider.values().copied().collect(), "{owner_list}");
        assert_eq!(self.other.integrations, BTreeSet::from([self.strangers]), "{stranger_list}");
        let ids: Vec<i64> = self.owner.integrations.iter().copied().chain([self.strangers]).collect();
        for id in ids {
            let token = self.service_token(id).await;
            self.current_tokens.insert(id, token);
        }
        self.fingerprint = owner_list;
    }

    /// `GET /integrations?active_only=false` as the holder of `token` (not a cell).
    async fn list_as(&self, token: &str) -> Value {
        json_body(self.h.app.get(&format!("{API}/integrations?active_only=false"), Some(token)).await, 200).await
    }

    /// The access token the service is handed for integration `id` now (not a cell).
    async fn service_token(&mut self, id: i64) -> String {
        let response = self.h.token(id, 60).await;
        let token = json_body(response, 200).await["access_token"].as_str().unwrap().to_owned();
        self.all_tokens.insert(token.clone());
        token
    }

    fn api(&self, path: &str) -> String {
        self.h.app.url(&format!("{API}{path}"))
    }

    fn get(&self, path: &str) -> Call {
        Call { method: Method::GET, url: self.api(path), body: None }
    }

    fn post(&self, path: &str, body: Option<Value>) -> Call {
        Call { method: Method::POST, url: self.api(path), body }
    }

    fn delete(&self, path: &str) -> Call {
        Call { method: Method::DELETE, url: self.api(path), body: None }
    }

    /// `call` with `caller`'s credentials.
    fn request(&self, caller: Caller, call: &Call) -> RequestBuilder {
        let mut request = self.h.app.client.request(call.method.clone(), &call.url);
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        match caller {
            Caller::Owner => request.bearer_auth(&self.h.user.token),
            Caller::Stranger => request.bearer_auth(&self.stranger.token),
            Caller::Admin => request.bearer_auth(&self.admin.token),
            Caller::Service => request.bearer_auth(SERVICE_KEY),
            Caller::Anonymous => request,
            Caller::Expired => request.bearer_auth(&self.expired),
            Caller::WrongSecret => request.bearer_auth(&self.wrong_secret),
            Caller::RefreshType => request.bearer_auth(&self.refresh_type),
            Caller::CrossSite => {
                request.header("cookie", format!("access_token={}", self.h.user.token)).header("origin", EVIL_ORIGIN)
            }
        }
    }

    /// Sends one request of cell (`endpoint`, `caller`) and checks its answer: `expect`, no data
    /// beyond what `sees` allows (a refusal: nobody's), and, given a `twin` aimed at a target that
    /// does not exist, the same answer as the twin's whenever the caller may not see the owner's
    /// data. The body of an expected success.
    async fn probe(
        &mut self,
        (endpoint, caller): (Endpoint, Caller),
        call: Call,
        twin: Option<Call>,
        expect: Expect,
        sees: Sees,
    ) -> Option<Value> {
        self.cells.insert((endpoint, caller));
        self.requests += 1;
        let answer = Answer::read(self.request(caller, &call)).await;
        let target = call.url.trim_start_matches(&self.api(""));
        let cell = format!("{} x {caller:?} ({} {target})", endpoint.name(), call.method);
        let succeeds = matches!(expect, Expect::Ok | Expect::Created | Expect::Redirect);
        let shows = if succeeds { sees } else { Sees::Nothing };
        for leak in self.leaks_in(&answer, shows) {
            self.leaks.push(format!("{cell} reveals {leak}: {}\n{}", answer.text, answer.headers));
        }
        if let Err(why) = answer.check(expect) {
            self.unexpected.push(format!("{cell}: {why}"));
            return None;
        }
        // A caller who may not know of the owner's target must hear what a missing target gets.
        if let Some(twin) = twin.filter(|_| matches!(sees, Sees::Nothing | Sees::Stranger)) {
            self.requests += 1;
            let other = Answer::read(self.request(caller, &twin)).await;
            if (other.status, &other.text) != (answer.status, &answer.text) {
                self.leaks.push(format!(
                    "{cell} answers differently for a target that does not exist ({} {}): {} {} vs {} {}",
                    twin.method, twin.url, answer.status, answer.text, other.status, other.text
                ));
            }
        }
        match expect {
            Expect::Redirect => Some(json!({ "location": answer.location })),
            Expect::Ok | Expect::Created => Some(answer.json),
            Expect::Problem(..) => None,
        }
    }

    /// What `answer` shows that its caller may not see.
    fn leaks_in(&self, answer: &Answer, sees: Sees) -> Vec<String> {
        let everything = format!("{}\n{}", answer.headers, answer.text);
        let mut found: Vec<String> = Vec::new();
        if sees != Sees::Token {
            found.extend(self.all_tokens.iter().filter(|t| everything.contains(t.as_str())).map(|_| "a token".into()));
            found.extend(TOKEN_PREFIXES.iter().filter(|p| everything.contains(*p)).map(|p| format!("a token ({p}…)")));
        }
        let (mut integrations, mut users) = (BTreeSet::new(), BTreeSet::new());
        named_ids(&answer.json, &mut integrations, &mut users);
        for (whose, party) in [(Sees::Owner, &self.owner), (Sees::Stranger, &self.other)] {
            if sees == whose {
                continue;
            }
            found.extend(party.texts.iter().filter(|(_, value)| everything.contains(value)).map(|(w, _)| w.clone()));
            if sees != Sees::Token {
                let shown: Vec<_> = party.integrations.intersection(&integrations).collect();
                if !shown.is_empty() {
                    found.push(format!("{whose:?}'s integration ids {shown:?}"));
                }
                if users.contains(&party.user_id) {
                    found.push(format!("{whose:?}'s user id"));
                }
            }
        }
        found
    }

    /// Records an unexpected detail of an answer that had the expected status.
    fn require(&mut self, cell: (Endpoint, Caller), fine: bool, what: impl std::fmt::Display) {
        if !fine {
            self.unexpected.push(format!("{} x {:?}: {what}", cell.0.name(), cell.1));
        }
    }

    /// Checks the owner's integrations are as last seen, unless `changed` (a cell allowed to change
    /// them: then they become the new reference).
    async fn owner_untouched(&mut self, cell: (Endpoint, Caller), changed: bool) {
        let now = self.list_as(&self.h.user.token.clone()).await;
        if !changed && now != self.fingerprint {
            let before = &self.fingerprint;
            self.unexpected.push(format!(
                "{} x {:?} changed the owner's integrations: {before} -> {now}",
                cell.0.name(),
                cell.1
            ));
        }
        self.fingerprint = now;
    }

    /// The emulators' refresh, revocation and code-exchange counters.
    fn counters(&self) -> [(u64, u64, u64); 3] {
        [&self.h.google, &self.h.microsoft, &self.h.notion].map(|emulator| {
            let counters = emulator.handle.counters();
            (counters.refreshes, counters.revocations, counters.code_exchanges)
        })
    }

    /// The expectation of a user endpoint that every user may call for themselves.
    fn user_endpoint(caller: Caller, changes: bool) -> Expect {
        match caller {
            Caller::Owner | Caller::Stranger | Caller::Admin => Expect::Ok,
            // A change sent with the cookie from another site's page is CSRF; a read is not (no CORS:
            // the other site cannot read the answer).
            Caller::CrossSite if changes => CROSS_SITE,
            Caller::CrossSite => Expect::Ok,
            Caller::Service | Caller::Anonymous | Caller::Expired | Caller::WrongSecret | Caller::RefreshType => {
                UNAUTHENTICATED
            }
        }
    }

    /// The expectation of a user endpoint aimed at one of the owner's integrations.
    fn owners_integration(caller: Caller, changes: bool) -> Expect {
        match caller {
            // Another user's integration is 404, never 403 (README: Callers).
            Caller::Stranger => NOT_FOUND,
            other => Self::user_endpoint(other, changes),
        }
    }

    /// Whose data a successful answer to `caller` about the owner may carry.
    fn sees_owner(caller: Caller) -> Sees {
        match caller {
            Caller::Owner | Caller::Admin | Caller::CrossSite => Sees::Owner,
            Caller::Stranger => Sees::Stranger,
            _ => Sees::Nothing,
        }
    }

    /// Whose data a successful answer to `caller` about the caller itself may carry.
    fn sees_own(caller: Caller) -> Sees {
        match caller {
            Caller::Admin => Sees::Nothing,
            other => Self::sees_owner(other),
        }
    }

    /// Both callbacks, each caller arriving with a fresh flow the owner started (Notion, approved
    /// at the provider): only the owner finishes it; everybody else spends it without a connection.
    async fn callbacks(&mut self) {
        let notion = self.by_provider["notion"];
        for endpoint in [Endpoint::Callback, Endpoint::CallbackForProvider] {
            for caller in CALLERS {
                let extra = match endpoint {
                    Endpoint::Callback => json!({ "redirect_uri": self.api("/callback") }),
                    _ => json!({}),
                };
                let flow = json_body(self.h.initiate("notion", extra).await, 200).await;
                let url = self.h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;
                let path = if endpoint == Endpoint::Callback { "/callback?" } else { "/callback/notion?" };
                assert!(url.contains(&format!("{API}{path}")), "{url}");
                let expect = match caller {
                    // The state's user: by Bearer, or by the `access_token` cookie the browser sends
                    // on a top-level GET (a GET is not CSRF-checked: it was the owner's own flow).
                    Caller::Owner | Caller::CrossSite => Expect::Ok,
                    // A valid JWT of somebody else: the state is spent and an `error` row written.
                    Caller::Stranger | Caller::Admin => Expect::Problem(400, "state_user_mismatch"),
                    // No user and not the browser holding the flow cookie: spent, nothing connected.
                    _ => Expect::Problem(400, "state_not_bound"),
                };
                let exchanges = self.h.notion.handle.counters().code_exchanges;
                let call = Call { method: Method::GET, url, body: None };
                let cell = (endpoint, caller);
                let body = self.probe(cell, call, None, expect, Self::sees_owner(caller)).await;
                if let Some(body) = body {
                    let fine = body["integration_id"] == notion && body["status"] == "active";
                    self.require(cell, fine, format!("reconnects the owner's Notion integration {notion}: {body}"));
                }
                let exchanged = self.h.notion.handle.counters().code_exchanges - exchanges;
                let wanted = u64::from(expect == Expect::Ok);
                self.require(cell, exchanged == wanted, format!("{exchanged} code exchanges, expected {wanted}"));
                self.owner_untouched(cell, expect == Expect::Ok).await;
            }
        }
        // The reconnects replaced Notion's token: the new one is the reference from here on.
        let token = self.service_token(notion).await;
        self.current_tokens.insert(notion, token);
    }

    async fn providers(&mut self) {
        for caller in CALLERS {
            let cell = (Endpoint::Providers, caller);
            let expect = Self::user_endpoint(caller, false);
            let call = self.get("/providers");
            if let Some(body) = self.probe(cell, call, None, expect, Sees::Nothing).await {
                let mut names: Vec<&str> =
                    body.as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
                names.sort();
                self.require(cell, names == ["google", "microsoft", "notion", "youtube"], format!("{body}"));
            }
            self.owner_untouched(cell, false).await;
        }
    }

    async fn initiate(&mut self) {
        for caller in CALLERS {
            let cell = (Endpoint::Initiate, caller);
            let expect = Self::user_endpoint(caller, true);
            let call = self.post("/initiate", Some(json!({ "provider": "google" })));
            if let Some(body) = self.probe(cell, call, None, expect, Sees::Nothing).await {
                let fine = body["provider"] == "google" && body["authorization_url"].is_string();
                self.require(cell, fine, format!("starts a Google flow: {body}"));
            }
            self.owner_untouched(cell, false).await;
        }
    }

    /// `GET /connect/{provider}`: a signed-in browser starts a flow for its own user only (a GET
    /// navigation, so the cross-site cookie starts the owner's own flow, as at the callback).
    /// `GET /handoff/{state}`: the link of an owner's flow started without a browser, opened from
    /// no page: bound only to the owner's browser, refused for another user's or one with nothing
    /// of the flow's; the answer carries nothing of the owner. `POST /connect-links`: backends only.
    async fn connect_flows(&mut self) {
        for caller in CALLERS {
            let cell = (Endpoint::Connect, caller);
            let starter = match caller {
                Caller::Owner | Caller::CrossSite => Some(self.h.user.id),
                Caller::Stranger => Some(self.stranger.id),
                Caller::Admin => Some(self.admin.id),
                _ => None,
            };
            let expect = if starter.is_some() { Expect::Redirect } else { UNAUTHENTICATED };
            let call = self.get("/connect/google");
            if let Some(body) = self.probe(cell, call, None, expect, Sees::Nothing).await {
                let location = body["location"].as_str().unwrap_or_default().to_owned();
                let state = url::Url::parse(&location)
                    .ok()
                    .and_then(|url| {
                        url.query_pairs().find(|(key, _)| key == "state").map(|(_, value)| value.into_owned())
                    })
                    .unwrap_or_default();
                let hash = oauth_manager::crypto::sha256_hex(state.as_bytes());
                let record = self.h.app.state.vault.store.find_state(&hash).await.unwrap();
                let whose = record.map(|record| record.user_id);
                self.require(cell, whose == starter, format!("starts a flow of user {starter:?}, not {whose:?}"));
            }
            self.owner_untouched(cell, false).await;
        }
        for caller in CALLERS {
            let cell = (Endpoint::Handoff, caller);
            let flow = json_body(self.h.initiate("google", json!({})).await, 200).await;
            let call =
                Call { method: Method::GET, url: flow["authorization_url"].as_str().unwrap().to_owned(), body: None };
            // Opened from no page: only a browser of the flow's user (or with its cookie) is bound.
            let expect = match caller {
                Caller::Owner | Caller::CrossSite => Expect::Redirect,
                Caller::Stranger | Caller::Admin => Expect::Problem(400, "state_user_mismatch"),
                _ => Expect::Problem(400, "handoff_foreign_site"),
            };
            if let Some(body) = self.probe(cell, call, None, expect, Sees::Nothing).await {
                let to_google = body["location"].as_str().is_some_and(|url| url.starts_with(&self.h.google.base_url));
                self.require(cell, to_google, format!("sends the browser on to Google: {body}"));
            }
            self.owner_untouched(cell, false).await;
        }
        for caller in CALLERS {
            let cell = (Endpoint::ConnectLinks, caller);
            let expect = match caller {
                Caller::Service => Expect::Created,
                Caller::Owner | Caller::Stranger | Caller::Admin => FORBIDDEN,
                Caller::CrossSite => CROSS_SITE,
                _ => UNAUTHENTICATED,
            };
            let call = self.post("/connect-links", Some(json!({ "user_id": self.h.user.id, "provider": "google" })));
            if let Some(body) = self.probe(cell, call, None, expect, Sees::Nothing).await {
                let link = body["url"].as_str().is_some_and(|url| url.contains("/api/v1/oauth/handoff/"));
                self.require(cell, link, format!("mints a link: {body}"));
            }
            self.owner_untouched(cell, false).await;
        }
    }

    /// Offboarding acts on any user: administrators and backends only. An export shows the owner's
    /// data to them alone; an erasure by anyone else leaves the owner untouched (the permitted
    /// callers erase a user of their own making, so the matrix keeps its owner).
    async fn offboarding(&mut self) {
        let owner = self.owner.user_id;
        for caller in CALLERS {
            let cell = (Endpoint::ExportUser, caller);
            let expect = match caller {
                Caller::Service | Caller::Admin => Expect::Ok,
                Caller::Owner | Caller::Stranger | Caller::CrossSite => FORBIDDEN,
                _ => UNAUTHENTICATED,
            };
            let call = self.get(&format!("/users/{owner}/export"));
            if let Some(body) = self.probe(cell, call, None, expect, Sees::Owner).await {
                let theirs = body["user_id"] == owner && ids_of(&body["integrations"], "id") == self.owner.integrations;
                self.require(cell, theirs, format!("exports the owner's integrations: {body}"));
            }
            self.owner_untouched(cell, false).await;
        }
        for (number, caller) in CALLERS.into_iter().enumerate() {
            let cell = (Endpoint::EraseUser, caller);
            let (expect, target) = match caller {
                Caller::Service | Caller::Admin => {
                    let spare = self.h.app.user(&format!("spare-{number}@example.com")).await;
                    (Expect::Ok, i64::from(spare.id))
                }
                Caller::Owner | Caller::Stranger => (FORBIDDEN, owner),
                // A DELETE with the cookie from another site's page is CSRF.
                Caller::CrossSite => (CROSS_SITE, owner),
                _ => (UNAUTHENTICATED, owner),
            };
            let call = self.delete(&format!("/users/{target}"));
            if let Some(body) = self.probe(cell, call, None, expect, Sees::Nothing).await {
                let fine = body["user_id"] == target && body["deleted"]["integrations"] == 0;
                self.require(cell, fine, format!("erases only the user it names ({target}): {body}"));
            }
            self.owner_untouched(cell, false).await;
        }
    }

    async fn list(&mut self) {
        let owner = self.owner.user_id;
        let owners: BTreeSet<i64> = self.owner.integrations.clone();
        for caller in CALLERS {
            let cell = (Endpoint::List, caller);
            // Without user_id: the caller's own.
            let own = self.get("/integrations?active_only=false");
            let expect = Self::user_endpoint(caller, false);
            if let Some(body) = self.probe(cell, own, None, expect, Self::sees_own(caller)).await {
                let wanted = match caller {
                    Caller::Owner | Caller::CrossSite => owners.clone(),
                    Caller::Stranger => BTreeSet::from([self.strangers]),
                    _ => BTreeSet::new(),
                };
                self.require(cell, ids_of(&body, "id") == wanted, format!("lists {wanted:?}: {body}"));
            }
            // With the owner's user_id: only the owner and administrators; 403 for other users
            // (a user id, not an integration: README "user_id for administrators").
            let named = self.get(&format!("/integrations?active_only=false&user_id={owner}"));
            let twin = self.get(&format!("/integrations?active_only=false&user_id={NOBODY}"));
            let expect = match caller {
                Caller::Stranger => FORBIDDEN,
                other => Self::user_endpoint(other, false),
            };
            if let Some(body) = self.probe(cell, named, Some(twin), expect, Self::sees_owner(caller)).await {
                self.require(cell, ids_of(&body, "id") == owners, format!("lists the owner's {owners:?}: {body}"));
            }
            self.owner_untouched(cell, false).await;
        }
    }

    async fn show(&mut self) {
        let owners: Vec<i64> = self.owner.integrations.iter().copied().collect();
        for caller in CALLERS {
            let cell = (Endpoint::Show, caller);
            for &id in &owners {
                let (call, twin) =
                    (self.get(&format!("/integrations/{id}")), self.get(&format!("/integrations/{NOBODY}")));
                let expect = Self::owners_integration(caller, false);
                if let Some(body) = self.probe(cell, call, Some(twin), expect, Self::sees_owner(caller)).await {
                    self.require(cell, body["id"] == id && body["status"] == "active", format!("shows {id}: {body}"));
                }
            }
            self.owner_untouched(cell, false).await;
        }
    }

    /// Refresh and disconnect by every caller that may not: the owner's integrations stay as they are.
    async fn refused_changes(&mut self) {
        let owners: Vec<i64> = self.owner.integrations.iter().copied().collect();
        for endpoint in [Endpoint::Refresh, Endpoint::Disconnect] {
            for caller in CALLERS.into_iter().filter(|c| !matches!(c, Caller::Owner | Caller::Admin)) {
                let cell = (endpoint, caller);
                for &id in &owners {
                    let (call, twin) = match endpoint {
                        Endpoint::Refresh => (
                            self.post(&format!("/integrations/{id}/refresh"), None),
                            self.post(&format!("/integrations/{NOBODY}/refresh"), None),
                        ),
                        _ => (
                            self.delete(&format!("/integrations/{id}")),
                            self.delete(&format!("/integrations/{NOBODY}")),
                        ),
                    };
                    let expect = Self::owners_integration(caller, true);
                    self.probe(cell, call, Some(twin), expect, Sees::Nothing).await;
                }
                self.owner_untouched(cell, false).await;
            }
        }
    }

    async fn sync(&mut self) {
        for caller in CALLERS {
            let cell = (Endpoint::Sync, caller);
            let expect = Self::user_endpoint(caller, true);
            let call = self.post("/integrations/sync", None);
            if let Some(body) = self.probe(cell, call, None, expect, Self::sees_own(caller)).await {
                let wanted = match caller {
                    Caller::Owner => self.owner.integrations.clone(),
                    Caller::Stranger => BTreeSet::from([self.strangers]),
                    _ => BTreeSet::new(),
                };
                let results = &body["results"];
                let all_ok = results.as_array().is_some_and(|r| r.iter().all(|result| result["status"] == "ok"));
                let fine = ids_of(results, "integration_id") == wanted && all_ok;
                self.require(cell, fine, format!("checks exactly {wanted:?}, all ok: {body}"));
            }
            // The owner's own sync may note when it checked (last_sync_at); nobody else's may.
            self.owner_untouched(cell, caller == Caller::Owner).await;
        }
    }

    async fn status(&mut self) {
        for caller in CALLERS {
            let cell = (Endpoint::Status, caller);
            let expect = Self::user_endpoint(caller, false);
            if let Some(body) = self.probe(cell, self.get("/status"), None, expect, Self::sees_own(caller)).await {
                let wanted = match caller {
                    Caller::Owner | Caller::CrossSite => self.owner.integrations.len(),
                    Caller::Stranger => 1,
                    _ => 0,
                };
                let counts = &body["integrations"];
                let fine = counts["total_integrations"] == wanted && counts["active_integrations"] == wanted;
                self.require(cell, fine, format!("counts {wanted} integrations: {body}"));
            }
            self.owner_untouched(cell, false).await;
        }
    }

    async fn consents(&mut self) {
        for caller in CALLERS {
            let cell = (Endpoint::Consents, caller);
            let expect = Self::user_endpoint(caller, false);
            if let Some(body) = self.probe(cell, self.get("/consents"), None, expect, Self::sees_own(caller)).await {
                let wanted = match caller {
                    Caller::Owner | Caller::CrossSite => self.owner.integrations.clone(),
                    Caller::Stranger => BTreeSet::from([self.strangers]),
                    _ => BTreeSet::new(),
                };
                let fine = ids_of(&body, "integration_id") == wanted;
                self.require(cell, fine, format!("consents of exactly {wanted:?}: {body}"));
            }
            self.owner_untouched(cell, false).await;
        }
    }

    async fn audit(&mut self) {
        let (owner, google) = (self.owner.user_id, self.by_provider["google"]);
        for caller in CALLERS {
            let cell = (Endpoint::Audit, caller);
            // The owner's whole log, by user id: the owner and administrators; 403 for other users.
            let call = self.get(&format!("/audit?user_id={owner}&limit=200"));
            let twin = self.get(&format!("/audit?user_id={NOBODY}&limit=200"));
            let expect = match caller {
                Caller::Stranger => FORBIDDEN,
                other => Self::user_endpoint(other, false),
            };
            if let Some(body) = self.probe(cell, call, Some(twin), expect, Self::sees_owner(caller)).await {
                let events = body["events"].as_array().cloned().unwrap_or_default();
                let fine = !events.is_empty() && events.iter().all(|event| event["user_id"] == owner);
                self.require(cell, fine, format!("the owner's events only: {body}"));
            }
            // The events of the owner's Google integration, by integration id: another user's filter
            // finds nothing of it (their own log only), exactly as for an id that does not exist.
            let call = self.get(&format!("/audit?integration_id={google}"));
            let twin = self.get(&format!("/audit?integration_id={NOBODY}"));
            let expect = Self::user_endpoint(caller, false);
            if let Some(body) = self.probe(cell, call, Some(twin), expect, Self::sees_owner(caller)).await {
                let events = body["events"].as_array().cloned().unwrap_or_default();
                let fine = match caller {
                    Caller::Stranger => events.is_empty(),
                    _ => !events.is_empty() && events.iter().all(|event| event["integration_id"] == google),
                };
                self.require(cell, fine, format!("events of integration {google}: {body}"));
            }
            self.owner_untouched(cell, false).await;
        }
    }

    /// Both token endpoints: a service key only; a JWT is 403 before any lookup (README: Callers).
    async fn tokens(&mut self) {
        let owner = self.owner.user_id;
        let by_provider: Vec<(&str, i64)> = self.by_provider.iter().map(|(p, id)| (*p, *id)).collect();
        for endpoint in [Endpoint::TokenById, Endpoint::TokenByOwner] {
            for caller in CALLERS {
                let cell = (endpoint, caller);
                for &(provider, id) in &by_provider {
                    let (call, twin) = match endpoint {
                        Endpoint::TokenById => (
                            self.get(&format!("/integrations/{id}/token")),
                            self.get(&format!("/integrations/{NOBODY}/token")),
                        ),
                        _ => (
                            self.get(&format!("/users/{owner}/integrations/{provider}/token")),
                            self.get(&format!("/users/{NOBODY}/integrations/{provider}/token")),
                        ),
                    };
                    let expect = match caller {
                        Caller::Service => Expect::Ok,
                        Caller::Owner | Caller::Stranger | Caller::Admin | Caller::CrossSite => FORBIDDEN,
                        Caller::Anonymous | Caller::Expired | Caller::WrongSecret | Caller::RefreshType => {
                            UNAUTHENTICATED
                        }
                    };
                    // The refusal of a JWT is decided before any lookup: even the owner's must be
                    // the same as for a target that does not exist (README: Callers).
                    let sees = if caller == Caller::Service { Sees::Token } else { Sees::Nothing };
                    if let Some(body) = self.probe(cell, call, Some(twin), expect, sees).await {
                        let fine = body["integration_id"] == id
                            && body["provider"] == provider
                            && body["access_token"].as_str() == self.current_tokens.get(&id).map(String::as_str);
                        self.require(cell, fine, format!("hands out {provider}'s current token: {body}"));
                    }
                }
                self.owner_untouched(cell, false).await;
            }
        }
    }

    /// Both token endpoints when users may read their own tokens: still only their own. Another
    /// user and an administrator are told "not found", exactly as for a target that does not exist.
    /// The owner's YouTube integration is disconnected beforehand: its token is gone.
    async fn exposed_tokens(&mut self) {
        let owner = self.owner.user_id;
        let youtube = self.by_provider["youtube"];
        let by_provider: Vec<(&str, i64)> = self.by_provider.iter().map(|(p, id)| (*p, *id)).collect();
        for endpoint in [Endpoint::TokenById, Endpoint::TokenByOwner] {
            for caller in CALLERS {
                let cell = (endpoint, caller);
                for &(provider, id) in &by_provider {
                    let (call, twin) = match endpoint {
                        Endpoint::TokenById => (
                            self.get(&format!("/integrations/{id}/token")),
                            self.get(&format!("/integrations/{NOBODY}/token")),
                        ),
                        _ => (
                            self.get(&format!("/users/{owner}/integrations/{provider}/token")),
                            self.get(&format!("/users/{NOBODY}/integrations/{provider}/token")),
                        ),
                    };
                    let expect = match caller {
                        Caller::Owner | Caller::CrossSite | Caller::Service if id != youtube => Expect::Ok,
                        // Both endpoints say a disconnected integration is disconnected.
                        Caller::Owner | Caller::CrossSite | Caller::Service => {
                            Expect::Problem(409, "integration_revoked")
                        }
                        Caller::Stranger => NOT_FOUND,
                        // A user reads only their own tokens, administrators included: another
                        // user's integration is 404 here, live or disconnected.
                        Caller::Admin => NOT_FOUND,
                        Caller::Anonymous | Caller::Expired | Caller::WrongSecret | Caller::RefreshType => {
                            UNAUTHENTICATED
                        }
                    };
                    let sees = match caller {
                        Caller::Owner | Caller::CrossSite | Caller::Service => Sees::Token,
                        Caller::Admin if expect != NOT_FOUND => Sees::Owner,
                        _ => Sees::Nothing,
                    };
                    if let Some(body) = self.probe(cell, call, Some(twin), expect, sees).await {
                        let fine = body["integration_id"] == id
                            && body["provider"] == provider
                            && body["access_token"].as_str() == self.current_tokens.get(&id).map(String::as_str);
                        self.require(cell, fine, format!("hands out {provider}'s current token: {body}"));
                    }
                }
                self.owner_untouched(cell, false).await;
            }
        }
    }

    /// The tokens of `ids` are still the ones recorded (a refresh or reconnect would change them).
    async fn same_tokens(&mut self, ids: &[i64], when: &str) {
        for &id in ids {
            let token = self.service_token(id).await;
            if Some(&token) != self.current_tokens.get(&id) {
                self.unexpected.push(format!("{when}: integration {id} has another access token"));
            }
        }
    }

    /// The cells that change the owner's connections, by the callers allowed to: each on an
    /// integration of its own (the owner: YouTube, the administrator: Microsoft).
    async fn permitted_changes(&mut self) {
        let targets = [(Caller::Owner, self.by_provider["youtube"]), (Caller::Admin, self.by_provider["microsoft"])];
        for (caller, id) in targets {
            let cell = (Endpoint::Refresh, caller);
            let call = self.post(&format!("/integrations/{id}/refresh"), None);
            if let Some(body) = self.probe(cell, call, None, Expect::Ok, Sees::Owner).await {
                let fine = body["integration"]["id"] == id && body["integration"]["status"] == "active";
                self.require(cell, fine, format!("refreshes {id}: {body}"));
            }
            let token = self.service_token(id).await;
            self.require(cell, self.current_tokens.get(&id) != Some(&token), format!("{id} has a new token"));
            self.current_tokens.insert(id, token);
            self.owner_untouched(cell, true).await;
        }
        for ((caller, id), revocation) in targets.into_iter().zip(["revoked", "not_supported"]) {
            let cell = (Endpoint::Disconnect, caller);
            let call = self.delete(&format!("/integrations/{id}"));
            if let Some(body) = self.probe(cell, call, None, Expect::Ok, Sees::Owner).await {
                let fine = body["integration_id"] == id && body["provider_revocation"] == revocation;
                self.require(cell, fine, format!("disconnects {id} ({revocation}): {body}"));
            }
            let handed = self.h.token(id, 60).await;
            let body = json_body(handed, 409).await;
            self.require(cell, body["code"] == "integration_revoked", format!("no token for {id} any more: {body}"));
            self.owner_untouched(cell, true).await;
        }
    }

    /// Every route `/openapi.json` documents under `/api/v1/oauth` is an endpoint of the matrix.
    async fn documented_routes(&self) -> BTreeSet<(String, String)> {
        let spec = json_body(self.h.app.get("/openapi.json", None).await, 200).await;
        let mut routes = BTreeSet::new();
        for (path, operations) in spec["paths"].as_object().unwrap() {
            let Some(path) = path.strip_prefix(API) else { continue };
            for method in operations.as_object().unwrap().keys() {
                routes.insert((method.to_uppercase(), path.to_owned()));
            }
        }
        routes
    }
}

async fn no_caller_sees_uses_or_changes_another_users_connections(backend: Backend) {
    let started = std::time::Instant::now();
    let mut m = Matrix::set_up(backend, false).await;
    let documented = m.documented_routes().await;
    let covered: BTreeSet<(String, String)> =
        ENDPOINTS.iter().map(|e| e.route()).map(|(method, path)| (method.to_owned(), path.to_owned())).collect();
    assert_eq!(documented, covered, "the matrix covers exactly the documented endpoints");

    m.callbacks().await;
    let before = m.counters();
    m.providers().await;
    m.initiate().await;
    m.connect_flows().await;
    m.list().await;
    m.show().await;
    m.refused_changes().await;
    m.sync().await;
    m.status().await;
    m.consents().await;
    m.audit().await;
    m.tokens().await;
    m.offboarding().await;
    // Nothing but reads so far: no refresh, no revocation, no new code, the same tokens everywhere.
    let everything: Vec<i64> = m.current_tokens.keys().copied().collect();
    m.same_tokens(&everything, "after the reading cells").await;
    if m.counters() != before {
        let after = m.counters();
        m.unexpected.push(format!("the providers were called: {before:?} -> {after:?}"));
    }

    m.permitted_changes().await;
    // The owner's Google and Notion and the stranger's Google: untouched, active, still live.
    let (google, notion) = (m.by_provider["google"], m.by_provider["notion"]);
    m.same_tokens(&[google, notion, m.strangers], "at the end").await;
    let owner_list = m.list_as(&m.h.user.token.clone()).await;
    for view in owner_list.as_array().unwrap() {
        let id = view["id"].as_i64().unwrap();
        let wanted = if [google, notion].contains(&id) { "active" } else { "revoked" };
        if view["status"] != wanted {
            m.unexpected.push(format!("at the end, integration {id} is {} rather than {wanted}", view["status"]));
        }
    }
    let stranger_list = m.list_as(&m.stranger.token.clone()).await;
    assert_eq!(stranger_list[0]["status"], "active", "{stranger_list}");
    assert!(
        m.h.google.handle.is_access_token_live(&m.current_tokens[&google]),
        "Google still accepts the owner's token"
    );
    let spent = [before, m.counters()].map(|c| c.map(|(refreshes, revocations, _)| (refreshes, revocations)));
    // Google: YouTube's refresh and revocation; Microsoft: its refresh (no revocation endpoint).
    let wanted = [(spent[0][0].0 + 1, spent[0][0].1 + 1), (spent[0][1].0 + 1, spent[0][1].1), spent[0][2]];
    assert_eq!(spent[1], wanted, "only the permitted refreshes and revocation reached the providers");

    let cells = m.cells.len();
    println!(
        "isolation matrix ({backend:?}): {} endpoints x {} callers = {cells} cells checked ({} requests, {:.1} s), {} leaks, {} unexpected answers",
        ENDPOINTS.len(),
        CALLERS.len(),
        m.requests,
        started.elapsed().as_secs_f64(),
        m.leaks.len(),
        m.unexpected.len(),
    );
    assert!(m.leaks.is_empty(), "leaks:\n{}", m.leaks.join("\n"));
    assert!(m.unexpected.is_empty(), "unexpected answers:\n{}", m.unexpected.join("\n"));
    assert_eq!(cells, ENDPOINTS.len() * CALLERS.len(), "every endpoint met every caller");
    assert_eq!(cells, EXPECTED_CELLS, "the matrix did not shrink");
}

async fn with_tokens_exposed_to_users_each_reads_only_their_own(backend: Backend) {
    let started = std::time::Instant::now();
    let mut m = Matrix::set_up(backend, true).await;
    let youtube = m.by_provider["youtube"];
    let disconnected = json_body(m.h.delete(&format!("/integrations/{youtube}")).await, 200).await;
    assert_eq!(disconnected["provider_revocation"], "revoked", "{disconnected}");
    m.fingerprint = m.list_as(&m.h.user.token.clone()).await;
    let before = m.counters();

    m.exposed_tokens().await;
    let active: Vec<i64> = m.current_tokens.keys().copied().filter(|id| *id != youtube).collect();
    m.same_tokens(&active, "after the token cells").await;
    assert_eq!(m.counters(), before, "no refresh, no revocation");

    let cells = m.cells.len();
    println!(
        "isolation matrix, tokens exposed to users ({backend:?}): 2 endpoints x {} callers = {cells} cells checked ({} requests, {:.1} s), {} leaks, {} unexpected answers",
        CALLERS.len(),
        m.requests,
        started.elapsed().as_secs_f64(),
        m.leaks.len(),
        m.unexpected.len(),
    );
    assert!(m.leaks.is_empty(), "leaks:\n{}", m.leaks.join("\n"));
    assert!(m.unexpected.is_empty(), "unexpected answers:\n{}", m.unexpected.join("\n"));
    assert_eq!(cells, 2 * CALLERS.len(), "both token endpoints met every caller");
}

on_both_backends!(
    no_caller_sees_uses_or_changes_another_users_connections,
    with_tokens_exposed_to_users_each_reads_only_their_own,
);

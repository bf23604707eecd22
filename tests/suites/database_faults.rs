//! Database faults: PostgreSQL stopped and started again under load, while refreshes are in flight
//! at providers that rotate the refresh token on every refresh (Microsoft, Notion).
//!
//! The suite runs a PostgreSQL server of its own (`PrivatePostgres`: initdb into a temp dir, trust
//! auth, a free loopback port, the socket in the temp dir; as the `postgres` user when run as root),
//! never the machine's shared cluster, which every other test uses. An in-process app is pointed at
//! it and at the provider emulators. Ten users connect Microsoft, Notion and Google through the real
//! flow. Each round, Google's (fresh) tokens are read by concurrent callers, the Microsoft and Notion
//! tokens are made expired, the providers slowed, and two callers per integration ask for tokens;
//! once refreshes hold their advisory lock (the provider still answering), the server is stopped
//! (`pg_ctl stop -m fast`), kept down a moment and started again. Three rounds.
//!
//! What it asserts: while the database is down the answers are 200 (late), 503 (`busy`,
//! `database_unavailable`, `timeout`) or 502, never a 500 and never slower than the request
//! timeout; the same app recovers without a restart (readyz 200, every hand-out 200); no
//! half-written row (one token row per integration, active or in error with a reason); and, the
//! figure that matters, no grant lost: each stored refresh token is still the live one at the
//! provider, and a refresh with it succeeds. A rotated refresh token that was not stored is a lost
//! grant (the provider retired the old one, which the vault still holds).
//!
//! The emulators retire a rotated refresh token (reusing it is `invalid_grant`) but do not revoke
//! the whole grant on reuse, as Microsoft's and Notion's reuse detection may: for the vault the
//! outcome is the same, since it holds only the old token; the grant check reads the stored token.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use oauth_manager::crypto::Aad;
use oauth_manager::store::IntegrationStatus;
use provider_emulators::{Fault, RunningEmulator};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::flow_support::{API, Harness, json_body};
use crate::support::{Backend, EXISTING_SCHEMA, SERVICE_KEY, config_file};

/// Users, each connecting every provider of `PROVIDERS`.
const USERS: usize = 10;
/// The providers that rotate the refresh token on every refresh, and Google, which does not: its
/// tokens stay fresh, so its callers keep reading while the database goes away and comes back.
const PROVIDERS: [&str; 3] = ["microsoft", "notion", "google"];
const READ_ONLY: &str = "google";
/// How long the database stays down in each round (one restart per round).
const DOWNTIMES_MS: [u64; 3] = [1000, 1500, 2000];
/// How slowly the providers answer, so that refreshes are in flight when the database stops.
const PROVIDER_DELAY: Duration = Duration::from_millis(300);
/// The app's pool size: refreshes may hold half of it (8) at once.
const MAX_CONNECTIONS: u32 = 16;
/// The app's request timeout (`[http] request_timeout_seconds`): no answer may take longer.
const REQUEST_TIMEOUT_SECONDS: u64 = 10;
/// Concurrent callers per integration, each asking for a token again and again.
const CALLERS_PER_INTEGRATION: usize = 2;
/// Each caller's pause between two hand-outs.
const PAUSE: Duration = Duration::from_millis(50);
/// The database is stopped once this many refreshes hold their lock (or after `IN_FLIGHT_PATIENCE`).
const IN_FLIGHT_WANTED: i64 = 6;
const IN_FLIGHT_PATIENCE: Duration = Duration::from_secs(5);
/// How long the app may take to answer normally again once the database is back.
const RECOVERY: Duration = Duration::from_secs(30);
/// The whole scenario, set-up included, ends within this (nothing may hang the test run).
const SCENARIO_LIMIT: Duration = Duration::from_secs(240);
/// The namespace (first key) of the store's refresh advisory locks (`store/postgres.rs`).
const REFRESH_LOCK: i64 = 0x6f61_7201;
/// The log lines of the store's retry of a rotated refresh token's write, and of its giving up.
const RETRY_LINE: &str = "writing a rotated refresh token failed; retrying";
const ALERT_LINE: &str = "ALERT: a refresh token the provider rotated could not be stored";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_under_load_loses_no_grant() {
    tokio::time::timeout(SCENARIO_LIMIT, scenario()).await.expect("the database-faults scenario ends within its limit");
}

async fn scenario() {
    let started = Instant::now();
    let logs = capture_logs();
    let server = PrivatePostgres::start().await;
    let database_url = server.create_database("oam_dbfaults").await;
    let settings = config_file(&format!("[http]\nrequest_timeout_seconds = {REQUEST_TIMEOUT_SECONDS}\n"));
    // `Backend::Sqlite` only names a file that is never opened (nothing is created on the shared
    // cluster): the app's DATABASE_URL is the private server's database.
    let h = Harness::start_with(Backend::Sqlite, |config| {
        config
            .set("DATABASE_URL", database_url.clone())
            .set("DATABASE_MAX_CONNECTIONS", MAX_CONNECTIONS.to_string())
            .set("OAUTH_CONFIG_FILE", settings)
            // `expire` rewrites token rows behind the service's back, which a cache cannot hear.
            .without_token_cache()
    })
    .await;

    let mut integrations = Vec::new();
    for user in 0..USERS {
        let owner = h.app.user(&format!("dbfaults-{user}@example.com")).await;
        for provider in PROVIDERS {
            let id = connect_as(&h, &owner.token, provider, &format!("dbfaults.{user}@example.com")).await;
            let rotating = provider != READ_ONLY;
            integrations.push(Connected { id, provider, rotating, owner_token: owner.token.clone() });
        }
    }
    let set_up = started.elapsed();

    for emulator in [&h.microsoft, &h.notion] {
        emulator.handle.set_fault(Fault::Slow(PROVIDER_DELAY));
        // A rotated refresh token that was not stored, used again, kills the grant (reuse
        // detection, RFC 9700 §4.14.2): a lost write shows as a lost grant.
        emulator.handle.set_revoke_on_reuse(true);
    }
    let refreshes_before = provider_refreshes(&h);
    let mut failures = Vec::new();
    let mut rounds = Vec::new();
    for (index, downtime) in DOWNTIMES_MS.iter().enumerate() {
        let round =
            restart_under_load(&h, &server, &database_url, &integrations, Duration::from_millis(*downtime)).await;
        round.print(index + 1);
        round.check(index + 1, &mut failures);
        rounds.push(round);
    }
    for emulator in [&h.microsoft, &h.notion] {
        emulator.handle.set_fault(Fault::None);
    }
    let refreshes_during = provider_refreshes(&h) - refreshes_before;

    // (3) No half-written row.
    let rows = integrity(&database_url).await;
    if rows.len() != integrations.len() {
        failures.push(format!(
            "{} integrations connected, {} integration rows: {rows:?}",
            integrations.len(),
            rows.len()
        ));
    }
    for row in &rows {
        if row.token_rows != 1 {
            failures.push(format!("integration {} has {} token rows (expected exactly 1)", row.id, row.token_rows));
        }
        let reasoned = row.error_message.as_deref().is_some_and(|reason| !reason.trim().is_empty());
        if !(row.status == "active" || row.status == "error" && reasoned) {
            failures.push(format!("integration {} is {:?} with reason {:?}", row.id, row.status, row.error_message));
        }
    }

    // (4) Grants lost: the stored refresh token must still be the provider's live one, and a
    // refresh with it (then a forced hand-out) must succeed.
    let mut lost = BTreeMap::new();
    for integration in &integrations {
        if let Err(why) = grant_alive(&h, integration.id).await {
            lost.insert(integration.id, why);
            continue;
        }
        let refreshed = h
            .app
            .client
            .post(h.app.url(&format!("{API}/integrations/{}/refresh", integration.id)))
            .bearer_auth(&integration.owner_token)
            .send()
            .await
            .unwrap();
        let status = refreshed.status().as_u16();
        let body: Value = refreshed.json().await.unwrap_or(Value::Null);
        if status != 200 {
            let why = format!("the refresh after recovery answered {status}: {body}");
            if body["code"] == "needs_reauth" {
                lost.insert(integration.id, why);
            } else {
                failures.push(format!("integration {}: {why}", integration.id));
            }
            continue;
        }
        let (status, handed) = forced_hand_out(&h, integration.id).await;
        let emulator = emulator_of(&h, integration.provider);
        if status != 200 || !handed["access_token"].as_str().is_some_and(|t| emulator.handle.is_access_token_live(t)) {
            failures.push(format!(
                "integration {}: the forced hand-out gave no live token: {status} {handed}",
                integration.id
            ));
        }
    }
    let in_flight: i64 = rounds.iter().map(|round| round.in_flight).sum();
    let all_logs = logs.since(0);
    println!(
        "database faults: {} integrations, {} restarts, {in_flight} refreshes in flight at restart, grants lost: {}",
        integrations.len(),
        rounds.len(),
        lost.len()
    );
    println!(
        "database faults: {} of them Microsoft/Notion (rotating, expired every round), {} Google (read throughout); \
         {refreshes_during} provider refreshes during the restarts, {} rotated-token writes retried, {} given up; \
         set-up {:.1} s, whole run {:.1} s",
        integrations.iter().filter(|integration| integration.rotating).count(),
        integrations.iter().filter(|integration| !integration.rotating).count(),
        all_logs.matches(RETRY_LINE).count(),
        all_logs.matches(ALERT_LINE).count(),
        set_up.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    for (id, why) in &lost {
        let round = rounds.iter().position(|round| round.dead_grants.contains_key(id)).map(|index| index + 1);
        println!("  grant lost: integration {id} (first seen dead after round {round:?}): {why}");
        let owned = integrations.iter().find(|integration| integration.id == *id).unwrap();
        let audit = audit_of(&h, owned).await;
        println!("    audit: {audit}");
        for line in lines_about(&all_logs, *id).iter().take(30) {
            println!("    log: {line}");
        }
        failures.push(format!("integration {id} lost its grant: {why}"));
    }
    assert!(failures.is_empty(), "database faults:\n  {}", failures.join("\n  "));
}

/// An integration the scenario connected.
struct Connected {
    id: i64,
    provider: &'static str,
    /// Its provider rotates refresh tokens: expired every round. The others are only read.
    rotating: bool,
    /// The owner's access token (manual refreshes are the owner's).
    owner_token: String,
}

/// Connects `provider` as the holder of `token`, logging in at the provider as `login`.
async fn connect_as(h: &Harness, token: &str, provider: &str, login: &str) -> i64 {
    let flow = json_body(h.initiate_as(token, provider, json!({})).await, 200).await;
    let callback = h.approve(flow["authorization_url"].as_str().unwrap(), Some(login), None).await;
    let body = json_body(h.callback(&callback).await, 200).await;
    assert_eq!(body["status"], "active", "{body}");
    body["integration_id"].as_i64().unwrap_or_else(|| panic!("integration_id in {body}"))
}

/// `GET /integrations/{id}/token?force_refresh=true` with the service key: its status and body.
async fn forced_hand_out(h: &Harness, id: i64) -> (u16, Value) {
    let url = h.app.url(&format!("{API}/integrations/{id}/token?force_refresh=true"));
    let response = h.app.client.get(url).bearer_auth(SERVICE_KEY).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// The audit trail of `integration`, as its owner sees it (the answer's status and body).
async fn audit_of(h: &Harness, integration: &Connected) -> String {
    let url = h.app.url(&format!("{API}/audit?integration_id={}&limit=50", integration.id));
    match h.app.client.get(url).bearer_auth(&integration.owner_token).send().await {
        Ok(response) => format!("{} {}", response.status(), response.text().await.unwrap_or_default()),
        Err(error) => error.to_string(),
    }
}

fn emulator_of<'h>(h: &'h Harness, provider: &str) -> &'h RunningEmulator {
    match provider {
        "microsoft" => &h.microsoft,
        "notion" => &h.notion,
        _ => &h.google,
    }
}

/// Successful refreshes both rotating providers have served.
fn provider_refreshes(h: &Harness) -> u64 {
    h.microsoft.handle.counters().refreshes + h.notion.handle.counters().refreshes
}

/// Whether the stored refresh token of `id` is the one its provider holds live.
async fn grant_alive(h: &Harness, id: i64) -> Result<(), String> {
    let vault = &h.app.state.vault;
    let token = vault.store.get_token(id as i32).await.map_err(|error| format!("reading the token: {error}"))?;
    let token = token.ok_or("no token row")?;
    if token.status != IntegrationStatus::Active {
        return Err(format!("the integration is {:?}", token.status));
    }
    let ciphertext = token.refresh_token.as_deref().ok_or("no refresh token is stored")?;
    let refresh_token = vault
        .keys
        .decrypt(ciphertext, &Aad::refresh_token(token.user_id, &token.provider))
        .map_err(|error| format!("the stored refresh token does not decrypt: {error}"))?;
    if emulator_of(h, &token.provider).handle.is_refresh_token_live(refresh_token.expose_secret()) {
        Ok(())
    } else {
        Err("the stored refresh token is no longer the provider's live one (a rotated token was not stored)".into())
    }
}

/// One integration's rows, as the database holds them.
#[derive(Debug)]
struct IntegrityRow {
    id: i32,
    status: String,
    error_message: Option<String>,
    token_rows: i64,
}

async fn integrity(database_url: &str) -> Vec<IntegrityRow> {
    let mut database = PgConnection::connect(database_url).await.unwrap();
    let rows: Vec<(i32, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT i.id, i.status, i.error_message, COUNT(t.id) FROM oauth_integrations i \
         LEFT JOIN oauth_tokens t ON t.integration_id = i.id GROUP BY i.id, i.status, i.error_message ORDER BY i.id",
    )
    .fetch_all(&mut database)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, status, error_message, token_rows)| IntegrityRow { id, status, error_message, token_rows })
        .collect()
}

/// Makes the stored access tokens of `ids` expired, as time passing would.
async fn expire(database_url: &str, ids: &[i32]) {
    // The app runs without the token cache (see `scenario`).
    let mut database = PgConnection::connect(database_url).await.unwrap();
    let sql = "UPDATE oauth_tokens SET expires_at = now() AT TIME ZONE 'utc' - interval '1 minute' \
               WHERE integration_id = ANY($1)";
    sqlx::query(sql).bind(ids).execute(&mut database).await.unwrap();
}

/// When the database was stopped and started again.
struct Outage {
    /// `pg_ctl stop` was called.
    stopping: Instant,
    /// The server was down.
    down: Instant,
    /// The server was up again.
    up: Instant,
}

/// What one restart under load showed.
struct Round {
    in_flight: i64,
    outage: Outage,
    answers: Vec<Answer>,
    /// How long after the start the app was ready, and every integration handed out a token.
    ready_after: Option<Duration>,
    served_after: Option<Duration>,
    /// Whether every refresh task had ended (retries included) after recovery.
    refreshes_idle: bool,
    /// Integrations whose stored refresh token was dead at the provider after this round.
    dead_grants: BTreeMap<i64, String>,
    /// Log lines of the round: every error and warning (500s log their cause).
    logs: String,
}

/// One hand-out's answer.
struct Answer {
    sent: Instant,
    took: Duration,
    /// `None` when no HTTP answer came (the client's timeout, a broken connection).
    status: Option<u16>,
    /// The problem `code`, or the client's error.
    code: String,
    /// A hand-out of a fresh token (no refresh due).
    reading: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Answered before the database was stopped.
    Before,
    /// In flight at some point between the stop and the start.
    Outage,
    /// Sent once the database was up again.
    After,
}

impl Answer {
    fn phase(&self, outage: &Outage) -> Phase {
        if self.sent + self.took <= outage.stopping {
            Phase::Before
        } else if self.sent >= outage.up {
            Phase::After
        } else {
            Phase::Outage
        }
    }

    /// 200, 503 for a database that cannot answer (or the request timeout), or 502 from a provider.
    fn acceptable(&self) -> bool {
        matches!(
            (self.status, self.code.as_str()),
            (Some(200), _) | (Some(503), "busy" | "database_unavailable" | "timeout") | (Some(502), _)
        )
    }

    fn label(&self) -> String {
        match (self.status, self.code.as_str()) {
            (Some(status), "") => status.to_string(),
            (Some(status), code) => format!("{status} {code}"),
            (None, error) => format!("no answer ({error})"),
        }
    }
}

impl Round {
    fn tally(&self, phase: Phase, reading: bool) -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let chosen = |answer: &&Answer| answer.phase(&self.outage) == phase && answer.reading == reading;
        for answer in self.answers.iter().filter(chosen) {
            *counts.entry(answer.label()).or_default() += 1;
        }
        let parts: Vec<String> = counts.iter().map(|(label, count)| format!("{label} x{count}")).collect();
        if parts.is_empty() { "none".into() } else { parts.join(", ") }
    }

    fn slowest(&self) -> Duration {
        self.answers.iter().map(|answer| answer.took).max().unwrap_or_default()
    }

    fn print(&self, number: usize) {
        let ms = |duration: Option<Duration>| duration.map_or("never".to_owned(), |d| format!("{} ms", d.as_millis()));
        println!(
            "round {number}: {} refreshes in flight at the stop; stop took {} ms, down {} ms; readyz 200 {} and every \
             hand-out 200 {} after the start; {} rotated-token writes retried, {} given up; slowest answer {} ms",
            self.in_flight,
            (self.outage.down - self.outage.stopping).as_millis(),
            (self.outage.up - self.outage.down).as_millis(),
            ms(self.ready_after),
            ms(self.served_after),
            self.logs.matches(RETRY_LINE).count(),
            self.logs.matches(ALERT_LINE).count(),
            self.slowest().as_millis(),
        );
        for phase in [Phase::Before, Phase::Outage, Phase::After] {
            println!(
                "  answers {phase:?}: Microsoft/Notion (expired) {}; Google (fresh) {}",
                self.tally(phase, false),
                self.tally(phase, true)
            );
        }
    }

    fn check(&self, number: usize, failures: &mut Vec<String>) {
        let limit = Duration::from_secs(REQUEST_TIMEOUT_SECONDS) + Duration::from_secs(2);
        let refused: Vec<&Answer> = self.answers.iter().filter(|answer| !answer.acceptable()).collect();
        if !refused.is_empty() {
            let mut labels: BTreeMap<(Phase, String), usize> = BTreeMap::new();
            for answer in &refused {
                *labels.entry((answer.phase(&self.outage), answer.label())).or_default() += 1;
            }
            failures.push(format!("round {number}: answers that are neither 200, 503 nor 502: {labels:?}"));
            let causes: BTreeSet<&str> = self
                .logs
                .lines()
                .filter(|line| line.contains("request failed") || line.contains("ERROR"))
                .map(without_timestamp)
                .collect();
            for cause in causes.iter().take(8) {
                failures.push(format!("round {number}: logged: {cause}"));
            }
        }
        if self.slowest() > limit {
            failures.push(format!("round {number}: an answer took {} ms", self.slowest().as_millis()));
        }
        if self.in_flight == 0 {
            failures.push(format!("round {number}: no refresh was in flight when the database stopped"));
        }
        if self.ready_after.is_none() {
            failures.push(format!("round {number}: readyz was not 200 within {RECOVERY:?} of the start"));
        }
        if self.served_after.is_none() {
            failures.push(format!("round {number}: not every integration handed out a token within {RECOVERY:?}"));
        }
        if !self.refreshes_idle {
            failures.push(format!("round {number}: refreshes were still running after recovery"));
        }
        for (id, why) in &self.dead_grants {
            failures.push(format!("round {number}: integration {id}: {why}"));
        }
    }
}

/// One round: expired tokens, concurrent hand-outs, the database stopped while refreshes hold
/// their lock, kept down `downtime`, started again; then recovery and the stored grants.
async fn restart_under_load(
    h: &Harness,
    server: &PrivatePostgres,
    database_url: &str,
    integrations: &[Connected],
    downtime: Duration,
) -> Round {
    let log_mark = capture_logs().len();
    // Readers first, so that reads are flowing when the database stops; then the expired tokens'
    // callers, whose first hand-outs start the refreshes.
    let readers = Load::start(h, integrations.iter().filter(|integration| !integration.rotating));
    assert!(readers.answered(4 * CALLERS_PER_INTEGRATION * USERS, RECOVERY).await, "the readers are answered");
    let rotating: Vec<i32> = integrations.iter().filter(|i| i.rotating).map(|i| i.id as i32).collect();
    expire(database_url, &rotating).await;
    let refreshers = Load::start(h, integrations.iter().filter(|integration| integration.rotating));
    let in_flight = refreshes_in_flight(database_url).await;

    let stopping = Instant::now();
    server.stop().await;
    let down = Instant::now();
    tokio::time::sleep(downtime).await;
    server.start_server().await;
    let up = Instant::now();

    let probe = client();
    let ready_after = eventually(RECOVERY, || async {
        probe.get(h.app.url("/readyz")).send().await.is_ok_and(|response| response.status() == 200)
    })
    .await
    .then(|| up.elapsed());
    let mut served = true;
    for integration in integrations {
        let url = h.app.url(&format!("{API}/integrations/{}/token?min_ttl=60", integration.id));
        let remaining = RECOVERY.saturating_sub(up.elapsed());
        served &= eventually(remaining, || async { hand_out(&probe, &url).await.status == Some(200) }).await;
    }
    let served_after = served.then(|| up.elapsed());
    let mut answers = refreshers.stop().await;
    answers.extend(readers.stop().await);
    let refreshes_idle = h.app.state.vault.refreshes.wait_idle(RECOVERY).await;

    let mut dead_grants = BTreeMap::new();
    for integration in integrations {
        if let Err(why) = grant_alive(h, integration.id).await {
            dead_grants.insert(integration.id, why);
        }
    }
    let logs = capture_logs().since(log_mark);
    Round {
        in_flight,
        outage: Outage { stopping, down, up },
        answers,
        ready_after,
        served_after,
        refreshes_idle,
        dead_grants,
        logs,
    }
}

/// Waits until `IN_FLIGHT_WANTED` refreshes hold their advisory lock (they hold it while the
/// provider answers), or `IN_FLIGHT_PATIENCE` passed; how many held it last.
async fn refreshes_in_flight(database_url: &str) -> i64 {
    let mut monitor = PgConnection::connect(database_url).await.unwrap();
    let deadline = Instant::now() + IN_FLIGHT_PATIENCE;
    let mut held = 0;
    while Instant::now() < deadline {
        held = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = $1 AND granted",
        )
        .bind(REFRESH_LOCK)
        .fetch_one(&mut monitor)
        .await
        .unwrap();
        if held >= IN_FLIGHT_WANTED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = monitor.close().await;
    held
}

/// Concurrent backends asking for the tokens of some integrations until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    /// Answers received so far.
    answered: Arc<AtomicUsize>,
    callers: Vec<tokio::task::JoinHandle<Vec<Answer>>>,
}

impl Load {
    /// `CALLERS_PER_INTEGRATION` callers for each of `integrations`.
    fn start<'i>(h: &Harness, integrations: impl Iterator<Item = &'i Connected>) -> Self {
        let client = client();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let callers = integrations
            .flat_map(|integration| std::iter::repeat_n(integration, CALLERS_PER_INTEGRATION))
            .map(|integration| {
                let url = h.app.url(&format!("{API}/integrations/{}/token?min_ttl=60", integration.id));
                let reading = !integration.rotating;
                let (client, stop, answered) = (client.clone(), stop.clone(), answered.clone());
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        answers.push(Answer { reading, ..hand_out(&client, &url).await });
                        answered.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(PAUSE).await;
                    }
                    answers
                })
            })
            .collect();
        Self { stop, answered, callers }
    }

    /// Waits until `count` answers came, or `patience` passed.
    async fn answered(&self, count: usize, patience: Duration) -> bool {
        eventually(patience, || async { self.answered.load(Ordering::SeqCst) >= count }).await
    }

    async fn stop(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::SeqCst);
        let mut answers = Vec::new();
        for caller in self.callers {
            answers.extend(caller.await.unwrap());
        }
        answers
    }
}

/// A client that gives up a little after the app's request timeout: a later answer is a hang.
fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(REQUEST_TIMEOUT_SECONDS + 5)).build().unwrap()
}

/// One service hand-out of `url`.
async fn hand_out(client: &reqwest::Client, url: &str) -> Answer {
    let sent = Instant::now();
    let (status, code) = match client.get(url).bearer_auth(SERVICE_KEY).send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let code = match status {
                200 if body["access_token"].as_str().is_some_and(|token| !token.is_empty()) => String::new(),
                200 => format!("without a token: {body}"),
                _ => body["code"].as_str().unwrap_or("(no problem code)").to_owned(),
            };
            (Some(status), code)
        }
        Err(error) => (None, if error.is_timeout() { "timed out".to_owned() } else { error.to_string() }),
    };
    Answer { sent, took: sent.elapsed(), status, code, reading: false }
}

/// Polls `check` every 50 ms until it holds (`true`) or `patience` passed (`false`).
async fn eventually<F, Fut>(patience: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + patience;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The log lines that name integration `id` (`integration_id=<id>` as a whole number).
fn lines_about(logs: &str, id: i64) -> Vec<&str> {
    let needle = format!("integration_id={id}");
    logs.lines()
        .filter(|line| {
            line.match_indices(&needle)
                .any(|(at, _)| !line[at + needle.len()..].starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect()
}

/// A log line without its leading timestamp, so equal causes count once.
fn without_timestamp(line: &str) -> &str {
    line.split_once(' ').map_or(line, |(_, rest)| rest.trim_start())
}

/// The app's log, kept in memory (errors and warnings, and the library's info lines).
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn since(&self, mark: usize) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()[mark..]).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the global subscriber writing into memory (once; `RUST_LOG` overrides the filter).
fn capture_logs() -> CapturedLogs {
    static LOGS: OnceLock<CapturedLogs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = CapturedLogs::default();
        let writer = logs.clone();
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,oauth_manager=info,tower_http=off"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_target(false)
            .with_writer(move || writer.clone())
            .try_init();
        logs
    })
    .clone()
}

/// Temp dirs of private servers start with this, then the test process id.
const SERVER_DIR_PREFIX: &str = "oam-dbfaults-";

/// A PostgreSQL server of this suite alone: its own cluster in a temp dir, on a free loopback
/// port, with trust auth for `postgres`. Stopped (immediately) and removed when dropped.
struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// Root runs the server as the `postgres` user (PostgreSQL refuses to run as root).
    as_postgres_user: bool,
}

impl PrivatePostgres {
    /// initdb, then start; panics with the server log when it cannot.
    async fn start() -> Self {
        let bin = postgres_bin_dir();
        let as_postgres_user = running_as_root();
        remove_stale_servers(&bin, as_postgres_user);
        let token = oauth_manager::crypto::random_token(6).to_lowercase().replace(['-', '_'], "x");
        let dir = std::env::temp_dir().join(format!("{SERVER_DIR_PREFIX}{}-{token}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Owned by the guard at once: every path, a failed start included, removes it.
        let mut server = Self { dir, bin, port: 0, as_postgres_user };
        if as_postgres_user {
            let chowned = std::process::Command::new("chown").arg("postgres").arg(&server.dir).status().unwrap();
            assert!(chowned.success(), "chown postgres {}", server.dir.display());
        }
        let data = server.data_dir();
        let initdb = server
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .await
            .unwrap();
        assert!(initdb.status.success(), "initdb failed: {}", String::from_utf8_lossy(&initdb.stderr));
        let settings = format!(
            "\n# oauth-manager database-faults suite\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             shared_buffers = 32MB\nmax_connections = 100\nlog_line_prefix = '%m [%p] '\n",
            server.dir.display()
        );
        let mut conf = std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf")).unwrap();
        std::io::Write::write_all(&mut conf, settings.as_bytes()).unwrap();
        // A port found free may be taken before the server binds it: try a few.
        for _ in 0..5 {
            server.port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            if server.pg_ctl_start().await.is_ok() {
                return server;
            }
        }
        panic!("the private PostgreSQL server did not start:\n{}", server.log_tail());
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A command running `program` of the server's binaries, as the `postgres` user under root.
    fn command(&self, program: &str) -> tokio::process::Command {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres_user {
            let mut command = tokio::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            tokio::process::Command::new(path)
        };
        command.stdin(std::process::Stdio::null());
        command
    }

    /// `pg_ctl start`, waiting until the server accepts connections. Its output goes to the log
    /// file (`-l`), so the server holds none of our pipes.
    async fn pg_ctl_start(&self) -> Result<(), String> {
        let output = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "30", "-o", &format!("-p {}", self.port), "start"])
            .output()
            .await
            .unwrap();
        if output.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&output.stderr).into_owned()) }
    }

    /// Starts the server again on its port.
    async fn start_server(&self) {
        if let Err(error) = self.pg_ctl_start().await {
            panic!("restarting the private PostgreSQL failed: {error}\n{}", self.log_tail());
        }
    }

    /// Fast shutdown (`pg_ctl stop -m fast`): open transactions are aborted and every connection
    /// is closed, as when an operator restarts the database.
    async fn stop(&self) {
        let output = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "30", "stop"])
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "pg_ctl stop: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log_tail()
        );
    }

    /// The URL of database `name` on this server.
    fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` from `existing_schema.sql`; its URL.
    async fn create_database(&self, name: &str) -> String {
        let mut admin = PgConnection::connect(&self.url("postgres")).await.expect("the private server accepts us");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
        let _ = admin.close().await;
        let url = self.url(name);
        let mut database = PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(EXISTING_SCHEMA).execute(&mut database).await.expect("existing_schema.sql applies");
        let _ = database.close().await;
        url
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        stop_immediately(&self.bin, self.as_postgres_user, &self.data_dir());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `pg_ctl stop -m immediate` on `data`, ignoring whether a server was running.
fn stop_immediately(bin: &Path, as_postgres_user: bool, data: &Path) {
    let pg_ctl = bin.join("pg_ctl");
    let mut command = if as_postgres_user {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(pg_ctl);
        command
    } else {
        std::process::Command::new(pg_ctl)
    };
    let _ = command
        .arg("-D")
        .arg(data)
        .args(["-m", "immediate", "-w", "-t", "30", "stop"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Stops and removes the private servers of test processes that are gone (killed before their
/// guard ran), so repeated runs do not pile them up.
fn remove_stale_servers(bin: &Path, as_postgres_user: bool) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(SERVER_DIR_PREFIX) else { continue };
        let pid = rest.split('-').next().and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()) {
            stop_immediately(bin, as_postgres_user, &entry.path().join("data"));
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The directory of `initdb` and `pg_ctl`: the newest `/usr/lib/postgresql/<version>/bin` (Debian),
/// else `pg_config --bindir`.
fn postgres_bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let output = std::process::Command::new("pg_config").arg("--bindir").output();
    let bin = output
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim().to_owned()));
    bin.filter(|bin| bin.join("initdb").exists())
        .expect("PostgreSQL's server binaries (initdb, pg_ctl): install PostgreSQL as scripts/test does")
}

fn running_as_root() -> bool {
    let output = std::process::Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

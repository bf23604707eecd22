//! The bench database: built from the production schema and seeded with COPY (100,000 users,
//! 200,000 integrations over the four providers, each with a token row of real ciphertexts, a
//! consent and a `connect` audit row), reused by later runs when it still matches, and put back
//! to its seeded state before every run.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use chrono::{Duration, NaiveDateTime, Utc};
use oauth_manager::crypto::{Aad, KeyRing};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

pub const USERS: i32 = 100_000;
pub const INTEGRATIONS: i32 = 200_000;
/// Users 1..=20,000 have all four providers (integrations 1..=80,000, four per user in
/// `PROVIDERS` order); users 20,001..=80,000 two each; users 80,001..=100,000 none (the connect
/// flows' users, so flows create integrations that the reset removes again).
const FOUR_EACH: i32 = 20_000;
pub const FIRST_FLOW_USER: i32 = 80_001;
pub const PROVIDERS: [&str; 4] = ["google", "microsoft", "notion", "youtube"];
const PAIRS: [(usize, usize); 6] = [(0, 1), (2, 3), (0, 2), (1, 3), (0, 3), (1, 2)];
/// Expiry of every seeded token that expires (Notion's never do).
pub const FAR_FUTURE: &str = "2099-01-01 00:00:00";
const NEVER_EXPIRES: &str = "9999-12-31 00:00:00";
/// Every seeded token was renewed within this many days: less than two thirds of Microsoft's 90
/// (`refresh_token_idle_days`), so no keep-alive refresh is due outside the idle scenario.
pub const RENEWED_WITHIN_DAYS: i64 = 59;
/// Changes whenever the seeded data changes: a database with another tag is seeded again.
const SEED_TAG: &str = "oauth-manager bench seed v2 (key kb)";
/// Audit rows seeded: a `connect` (ids 1..=200,000) and an `api_call` (200,001..=400,000) per
/// integration; later ones are the bench's and are removed by the reset.
pub const SEEDED_AUDIT_ROWS: i32 = 2 * INTEGRATIONS;

/// The owner and provider of seeded integration `id`.
pub fn integration(id: i32) -> (i32, &'static str) {
    if id <= FOUR_EACH * 4 {
        ((id - 1) / 4 + 1, PROVIDERS[((id - 1) % 4) as usize])
    } else {
        let k = id - FOUR_EACH * 4 - 1;
        let user = FOUR_EACH + 1 + k / 2;
        let (first, second) = PAIRS[(user % 6) as usize];
        (user, PROVIDERS[if k % 2 == 0 { first } else { second }])
    }
}

/// The Google integration of user `user` (1..=20,000), who has all four.
pub fn google_of(user: i32) -> i32 {
    (user - 1) * 4 + 1
}

fn default_scopes(provider: &str) -> &'static [&'static str] {
    match provider {
        "google" => &["openid", "email", "profile", "https://www.googleapis.com/auth/calendar.readonly"],
        "microsoft" => &["openid", "email", "profile", "offline_access", "User.Read"],
        "youtube" => &["https://www.googleapis.com/auth/youtube.readonly"],
        _ => &[],
    }
}

/// Realistic token lengths: Microsoft access tokens are JWTs of a kilobyte and more.
fn token_shape(provider: &str) -> (&'static str, usize, &'static str, usize) {
    match provider {
        "microsoft" => ("EwB", 1200, "M.C5", 400),
        "notion" => ("ntn_", 46, "nrt_", 40),
        _ => ("ya29.", 180, "1//0", 100),
    }
}

fn random_text(rng: &mut StdRng, prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut text = String::with_capacity(prefix.len() + len);
    text.push_str(prefix);
    text.extend((0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char));
    text
}

fn stamp(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Makes sure `database` exists, is seeded and is in its seeded state; returns whether it had
/// to be seeded.
pub async fn ensure(
    admin_url: &str,
    database_url: &str,
    database: &str,
    root: &Path,
    keys: &KeyRing,
) -> anyhow::Result<bool> {
    let mut admin = PgConnection::connect(admin_url).await.context("connecting to PostgreSQL")?;
    let tag: Option<Option<String>> =
        sqlx::query_scalar("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1")
            .bind(database)
            .fetch_optional(&mut admin)
            .await?;
    if tag.flatten().as_deref() == Some(SEED_TAG) {
        let mut conn = PgConnection::connect(database_url).await?;
        reset(&mut conn).await?;
        let (users, integrations, tokens): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM oauth_integrations),
                    (SELECT COUNT(*) FROM oauth_tokens)",
        )
        .fetch_one(&mut conn)
        .await?;
        if (users, integrations, tokens) == (USERS.into(), INTEGRATIONS.into(), INTEGRATIONS.into()) {
            println!("database {database}: seeded earlier, row counts match (reused)");
            return Ok(false);
        }
        println!("database {database}: row counts differ ({users} users, {integrations} integrations): seeding again");
    }
    admin.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))).await?;
    admin.execute(AssertSqlSafe(format!("CREATE DATABASE {database}"))).await?;
    let started = Instant::now();
    let mut conn = PgConnection::connect(database_url).await?;
    let schema = std::fs::read_to_string(root.join("tests/fixtures/existing_schema.sql"))
        .context("reading tests/fixtures/existing_schema.sql")?;
    sqlx::raw_sql(AssertSqlSafe(schema)).execute(&mut conn).await.context("creating the schema")?;
    seed(&mut conn, keys).await?;
    admin.execute(AssertSqlSafe(format!("COMMENT ON DATABASE {database} IS '{SEED_TAG}'"))).await?;
    println!(
        "database {database}: seeded {USERS} users, {INTEGRATIONS} integrations with tokens, consents and audit rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(true)
}

/// A COPY of the rows `write_row` writes for `ids`, sent in chunks of about a megabyte.
async fn copy(
    conn: &mut PgConnection,
    statement: &str,
    ids: std::ops::RangeInclusive<i32>,
    mut write_row: impl FnMut(&mut String, i32),
) -> anyhow::Result<()> {
    let mut copy = conn.copy_in_raw(statement).await?;
    let mut buffer = String::with_capacity(1 << 21);
    for id in ids {
        write_row(&mut buffer, id);
        if buffer.len() > 1 << 20 {
            copy.send(std::mem::take(&mut buffer).into_bytes()).await?;
            buffer.reserve(1 << 21);
        }
    }
    if !buffer.is_empty() {
        copy.send(buffer.into_bytes()).await?;
    }
    copy.finish().await.with_context(|| statement.to_owned())?;
    Ok(())
}

async fn seed(conn: &mut PgConnection, keys: &KeyRing) -> anyhow::Result<()> {
    let now = Utc::now().naive_utc();
    let mut rng = StdRng::seed_from_u64(9);
    // When each integration was connected, last renewed (within the last 59 days: no keep-alive
    // refresh is due, as the emulators do not know these grants; the idle scenario ages them) and
    // last handed out (2 to 90 days ago: idle for the proactive refresher).
    let times: Vec<(NaiveDateTime, NaiveDateTime, NaiveDateTime)> = (0..=INTEGRATIONS)
        .map(|_| {
            let updated = now - Duration::seconds(rng.random_range(0..RENEWED_WITHIN_DAYS * 86_400));
            let created = updated - Duration::seconds(rng.random_range(0..365 * 86_400));
            (created, updated, now - Duration::seconds(rng.random_range(2 * 86_400..90 * 86_400)))
        })
        .collect();

    copy(conn, "COPY users (id, email, full_name, created_at, is_active) FROM STDIN", 1..=USERS, |out, id| {
        let _ = writeln!(out, "{id}\tuser{id}@bench.example\tBench User {id}\t{}\tt", stamp(now - Duration::days(400)));
    })
    .await?;
    copy(
        conn,
        "COPY oauth_integrations (id, user_id, provider, provider_user_id, status, scopes, provider_metadata,
                created_at, updated_at, last_sync_at, error_count) FROM STDIN",
        1..=INTEGRATIONS,
        |out, id| {
            let (user, provider) = integration(id);
            let (created, updated, _) = times[id as usize];
            let _ = writeln!(
                out,
                "{id}\t{user}\t{provider}\t{provider}-account-{id}\tactive\t{{{}}}\t{{\"email\": \"user{user}@bench.example\"}}\t{}\t{}\t{}\t0",
                default_scopes(provider).join(","),
                stamp(created),
                stamp(updated),
                stamp(updated)
            );
        },
    )
    .await?;
    copy(
        conn,
        "COPY oauth_tokens (id, integration_id, access_token, refresh_token, token_type, expires_at, scope,
                created_at, updated_at, last_used_at, usage_count) FROM STDIN",
        1..=INTEGRATIONS,
        |out, id| {
            let (user, provider) = integration(id);
            let (created, updated, used) = times[id as usize];
            let (access_prefix, access_len, refresh_prefix, refresh_len) = token_shape(provider);
            let access =
                keys.encrypt(&random_text(&mut rng, access_prefix, access_len), &Aad::access_token(user, provider));
            let refresh =
                keys.encrypt(&random_text(&mut rng, refresh_prefix, refresh_len), &Aad::refresh_token(user, provider));
            let expires = if provider == "notion" { NEVER_EXPIRES } else { FAR_FUTURE };
            let scope = default_scopes(provider).join(" ");
            let _ = writeln!(
                out,
                "{id}\t{id}\t{access}\t{refresh}\tBearer\t{expires}\t{}\t{}\t{}\t{}\t3",
                if scope.is_empty() { "\\N" } else { &scope },
                stamp(created),
                stamp(updated),
                stamp(used)
            );
        },
    )
    .await?;
    copy(
        conn,
        "COPY oauth_consents (id, integration_id, scopes, granted_at, ip_address, user_agent, consent_version)
             FROM STDIN",
        1..=INTEGRATIONS,
        |out, id| {
            let (_, provider) = integration(id);
            let _ = writeln!(
                out,
                "{id}\t{id}\t{{{}}}\t{}\t203.0.113.{}\tMozilla/5.0 (bench)\t1.0",
                default_scopes(provider).join(","),
                stamp(times[id as usize].0),
                id % 250 + 1
            );
        },
    )
    .await?;
    let audit = "COPY oauth_audit_log (id, integration_id, user_id, action, provider, scopes, ip_address, user_agent,
                success, duration_ms, created_at, status, details) FROM STDIN";
    copy(conn, audit, 1..=INTEGRATIONS, |out, id| {
        let (user, provider) = integration(id);
        let _ = writeln!(
            out,
            "{id}\t{id}\t{user}\tconnect\t{provider}\t{{{}}}\t203.0.113.{}\tMozilla/5.0 (bench)\tt\t180\t{}\tsuccess\t\\N",
            default_scopes(provider).join(","),
            id % 250 + 1,
            stamp(times[id as usize].0)
        );
    })
    .await?;
    // The minute of each integration's last hand-outs, as the usage flusher writes it.
    copy(conn, audit, INTEGRATIONS + 1..=SEEDED_AUDIT_ROWS, |out, audit_id| {
        let id = audit_id - INTEGRATIONS;
        let (user, provider) = integration(id);
        let used = times[id as usize].2;
        let minute = used - Duration::seconds(used.and_utc().timestamp() % 60);
        let at = used.and_utc().to_rfc3339();
        let _ = writeln!(
            out,
            "{audit_id}\t{id}\t{user}\tapi_call\t{provider}\t\\N\t\\N\t\\N\tt\t\\N\t{}\tcompleted\t\
             {{\"last_at\": \"{at}\", \"first_at\": \"{at}\", \"hand_outs\": 3}}",
            stamp(minute)
        );
    })
    .await?;
    sqlx::raw_sql(
        "SELECT setval('users_id_seq', 100000);
         SELECT setval('oauth_integrations_id_seq', 200000);
         SELECT setval('oauth_tokens_id_seq', 200000);
         SELECT setval('oauth_consents_id_seq', 200000);
         SELECT setval('oauth_audit_log_id_seq', 400000);",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::raw_sql("VACUUM ANALYZE").execute(&mut *conn).await?;
    Ok(())
}

/// Flow states a service holds at any time in the bench's steady state.
const STEADY_STATES: u32 = 20_000;

/// Puts the database back to its seeded state: what flows, scenarios and the refresher added is
/// removed, statuses and expiries are restored (ciphertexts a refresh wrote stay: they decrypt).
pub async fn reset(conn: &mut PgConnection) -> anyhow::Result<()> {
    let started = Instant::now();
    let sql = format!(
        "DELETE FROM oauth_state;
         -- A running service's steady state: the last 10 minutes' flows, spent. Without them the
         -- statistics describe an empty table, the planner picks sequential scans, and initiate
         -- slows down as its own states pile up during a run (a bench artefact).
         INSERT INTO oauth_state (state_token, user_id, provider, scopes, redirect_uri, created_at, expires_at,
                 is_used, used_at)
             SELECT encode(sha256(('bench-state-' || g)::bytea), 'hex'), 1 + (g * 7919) % {USERS}, 'google',
                 '{{openid,email}}', 'http://127.0.0.1/api/v1/oauth/callback',
                 (now() AT TIME ZONE 'UTC') - make_interval(secs => g % 600),
                 (now() AT TIME ZONE 'UTC') - make_interval(secs => g % 600) + interval '10 minutes',
                 true, (now() AT TIME ZONE 'UTC') - make_interval(secs => g % 600)
             FROM generate_series(1, {STEADY_STATES}) AS g;
         DELETE FROM oauth_audit_log WHERE id > {SEEDED_AUDIT_ROWS} OR integration_id > {INTEGRATIONS};
         DELETE FROM oauth_consents WHERE id > {INTEGRATIONS} OR integration_id > {INTEGRATIONS};
         DELETE FROM oauth_tokens WHERE id > {INTEGRATIONS} OR integration_id > {INTEGRATIONS};
         DELETE FROM oauth_integrations WHERE id > {INTEGRATIONS};
         UPDATE oauth_integrations SET status = 'active', error_message = NULL, error_count = 0
             WHERE status <> 'active' OR error_count <> 0 OR error_message IS NOT NULL;
         UPDATE oauth_tokens SET expires_at = '{FAR_FUTURE}' WHERE expires_at < '{FAR_FUTURE}';
         UPDATE oauth_tokens SET updated_at = (now() AT TIME ZONE 'UTC') - make_interval(secs => (id * 7919) % {renewed})
             WHERE updated_at < (now() AT TIME ZONE 'UTC') - make_interval(secs => {renewed});",
        renewed = RENEWED_WITHIN_DAYS * 86_400
    );
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *conn).await.context("resetting the bench database")?;
    sqlx::raw_sql("VACUUM ANALYZE oauth_state, oauth_audit_log, oauth_consents, oauth_tokens, oauth_integrations")
        .execute(&mut *conn)
        .await?;
    println!("database reset to its seeded state in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

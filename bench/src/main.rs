//! `oam-bench run [--quick] [--seconds N] [--rounds N] [--only a,b] [--profile]`: the benchmarks of
//! issue 9, run by `bench/run` after it built the release binaries. From the repository root.
//!
//! It seeds (or reuses) the database `oam_bench`, hosts the provider emulators in this process,
//! starts the release service and the baseline server (`oam-baseline`), drives them with wrk and
//! its own drivers, and prints every scenario against the baseline measured alongside it. The
//! figures go to bench/results.json; bench/chart.py draws the chart from them.

mod flows;
mod procs;
mod report;
mod scenarios;
mod seed;
mod storm;
mod wrk;

use std::path::PathBuf;

use anyhow::{Context, bail};
use oauth_manager::crypto::KeyRing;
use oauth_manager::oauth::sandbox::{credentials, emulator_config};
use provider_emulators::{Flavor, RunningEmulator};
use secrecy::SecretString;

use crate::procs::Server;

/// The bench's database.
const DATABASE: &str = "oam_bench";
/// The bench's key ring (id `kb`): fixed, so a seeded database stays readable across runs.
const KEY_RING: &str = "kb:3d6b1c0e9a8f7e6d5c4b3a29180716f5e4d3c2b1a09f8e7d6c5b4a3928170615";
const JWT_SECRET: &str = "bench-jwt-secret-0123456789abcdef0123456789abcdef";
/// The backend's service key.
pub const SERVICE_KEY: &str = "bench-service-key-0123456789abcdef";
pub const API: &str = "/api/v1/oauth";

/// The scenarios, by the names `--only` takes.
pub const SCENARIOS: [&str; 7] = ["handout", "initiate", "flow", "storm", "list", "start", "idle"];

#[derive(Clone, Debug)]
pub struct Options {
    pub quick: bool,
    pub seconds: u64,
    pub rounds: usize,
    pub only: Vec<String>,
    pub profile: bool,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let usage = "usage: oam-bench run [--quick] [--seconds N] [--rounds N] [--only handout,initiate,flow,storm,list,start,idle] [--profile]";
        if args.next().as_deref() != Some("run") {
            bail!("{usage}");
        }
        let mut options = Self { quick: false, seconds: 0, rounds: 0, only: vec![], profile: false };
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value; {usage}"));
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--profile" => options.profile = true,
                "--seconds" => options.seconds = value("--seconds")?.parse()?,
                "--rounds" => options.rounds = value("--rounds")?.parse()?,
                "--only" => options.only = value("--only")?.split(',').map(str::to_owned).collect(),
                other => bail!("unknown argument {other:?}; {usage}"),
            }
        }
        if let Some(unknown) = options.only.iter().find(|name| !SCENARIOS.contains(&name.as_str())) {
            bail!("unknown scenario {unknown:?}; {usage}");
        }
        if options.seconds == 0 {
            options.seconds = if options.quick { 3 } else { 5 };
        }
        if options.rounds == 0 {
            options.rounds = if options.quick { 1 } else { 2 };
        }
        Ok(options)
    }

    pub fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|name| name == scenario)
    }
}

/// The service's token-cache switch (README, "Token cache"): "service" runs with it off, so every
/// hand-out reads the database, and "service+cache" with it on.
pub const CACHE_SETTING: &str = "OAUTH_TOKEN_CACHE";

/// The three emulators (Google's also serves YouTube), in this process.
pub struct Emulators {
    pub google: RunningEmulator,
    pub microsoft: RunningEmulator,
    pub notion: RunningEmulator,
}

impl Emulators {
    async fn start() -> anyhow::Result<Self> {
        Ok(Self {
            google: provider_emulators::spawn(emulator_config(Flavor::Google)).await?,
            microsoft: provider_emulators::spawn(emulator_config(Flavor::Microsoft)).await?,
            notion: provider_emulators::spawn(emulator_config(Flavor::Notion)).await?,
        })
    }

    /// Token-endpoint requests so far (successful refreshes, code exchanges, failures) per emulator.
    pub fn token_calls(&self) -> [(&'static str, u64, u64); 3] {
        let of = |emulator: &RunningEmulator| {
            let c = emulator.handle.counters();
            (c.refreshes, c.failed_token_requests)
        };
        let (g, m, n) = (of(&self.google), of(&self.microsoft), of(&self.notion));
        [("google+youtube", g.0, g.1), ("microsoft", m.0, m.1), ("notion", n.0, n.1)]
    }

    /// An operator providers file pointing the four built-ins at the emulators, as
    /// tests/api/flow/support.rs writes it.
    fn providers_toml(&self) -> String {
        let (google, microsoft, notion) = (&self.google.base_url, &self.microsoft.base_url, &self.notion.base_url);
        let google_block = |name: &str| {
            format!(
                "[providers.{name}]\nauthorization_url = \"{google}/authorize\"\ntoken_url = \"{google}/token\"\n\
                 revocation_url = \"{google}/revoke\"\nissuer = \"{google}\"\n"
            )
        };
        format!(
            "{}userinfo_url = \"{google}/userinfo\"\njwks_uri = \"{google}/jwks\"\nissuer_aliases = [\"{}\"]\n\n\
             {}identity = {{ url = \"{google}/youtube/v3/channels?part=snippet&mine=true\" }}\n\n\
             [providers.microsoft]\nauthorization_url = \"{microsoft}/{{tenant}}/oauth2/v2.0/authorize\"\n\
             token_url = \"{microsoft}/{{tenant}}/oauth2/v2.0/token\"\nuserinfo_url = \"{microsoft}/v1.0/me\"\n\
             issuer = \"{microsoft}/{{tid}}/v2.0\"\njwks_uri = \"{microsoft}/{{tenant}}/discovery/v2.0/keys\"\n\n\
             [providers.notion]\nauthorization_url = \"{notion}/v1/oauth/authorize\"\n\
             token_url = \"{notion}/v1/oauth/token\"\nrevocation_url = \"{notion}/v1/oauth/revoke\"\n\
             userinfo_url = \"{notion}/v1/users/me\"\n",
            google_block("google"),
            google.trim_start_matches("http://"),
            google_block("youtube"),
        )
    }
}

/// Everything a scenario needs.
pub struct Bench {
    pub options: Options,
    pub root: PathBuf,
    pub work: PathBuf,
    pub lua: PathBuf,
    bin: PathBuf,
    pub database_url: String,
    pub emulators: Emulators,
    pub keys: KeyRing,
    providers_file: PathBuf,
    starts: std::sync::atomic::AtomicUsize,
    started: std::time::Instant,
}

/// The refresher and limits a service runs with.
#[derive(Clone, Copy, Debug)]
pub enum Profile {
    /// The defaults, with rate limits off and room for 10,000 connections.
    Standard,
    /// Every token looks due to the proactive refresher, which runs every second.
    EverythingDue,
}

impl Bench {
    /// The configuration file of `profile`: limits that do not throttle the bench.
    fn config_file(&self, profile: Profile) -> anyhow::Result<PathBuf> {
        let mut toml = String::from(
            "# Written by bench/run: no rate limit throttles the bench; room for the storm's connections.\n\
             [http]\nmax_connections = 16384\n\n\
             [limits]\ninitiate_per_user_per_minute = 0\ninitiate_per_address_per_minute = 0\n\
             callback_per_address_per_minute = 0\nrefresh_per_user_per_minute = 0\nopen_flows_per_user = 1000000\n",
        );
        let name = match profile {
            Profile::Standard => "config.toml",
            Profile::EverythingDue => {
                // A lead of 100 years: every token of the bench database expires within it.
                toml.push_str("\n[refresh]\ninterval_seconds = 1\nlead_seconds = 3153600000\n");
                "config-everything-due.toml"
            }
        };
        let path = self.work.join(name);
        std::fs::write(&path, toml)?;
        Ok(path)
    }

    /// The service's environment: the bench database, secrets and emulators.
    fn service_env(&self, port: u16, profile: Profile, cache: Option<bool>) -> anyhow::Result<Vec<(String, String)>> {
        let mut env: Vec<(String, String)> = [
            ("DATABASE_URL", self.database_url.clone()),
            ("HOST", "127.0.0.1".into()),
            ("PORT", port.to_string()),
            ("PUBLIC_BASE_URL", format!("http://127.0.0.1:{port}")),
            ("JWT_SECRET_KEY", JWT_SECRET.into()),
            ("OAUTH_ENCRYPTION_KEY", KEY_RING.into()),
            ("OAUTH_SERVICE_API_KEYS", SERVICE_KEY.into()),
            ("OAUTH_SANDBOX", "off".into()),
            ("OAUTH_PROVIDERS_FILE", self.providers_file.display().to_string()),
            ("OAUTH_CONFIG_FILE", self.config_file(profile)?.display().to_string()),
            ("OAUTH_DATA_DIR", self.work.join("data").display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (prefix, flavor) in
            [("GOOGLE", Flavor::Google), ("MICROSOFT", Flavor::Microsoft), ("NOTION", Flavor::Notion)]
        {
            let (id, secret) = credentials(flavor);
            env.push((format!("{prefix}_CLIENT_ID"), id.to_owned()));
            env.push((format!("{prefix}_CLIENT_SECRET"), secret.to_owned()));
        }
        for (from, to) in
            [("BENCH_DATABASE_MAX_CONNECTIONS", "DATABASE_MAX_CONNECTIONS"), ("BENCH_RUST_LOG", "RUST_LOG")]
        {
            if let Ok(value) = std::env::var(from) {
                env.push((to.to_owned(), value));
            }
        }
        if let Some(on) = cache {
            env.push((CACHE_SETTING.to_owned(), if on { "on" } else { "off" }.to_owned()));
        }
        Ok(env)
    }

    /// Starts the release service; `cache` sets the cache's switch when there is one (`None`:
    /// its default). Returns the server and its time from spawn to ready.
    pub async fn start_service(
        &self,
        name: &str,
        profile: Profile,
        cache: Option<bool>,
    ) -> anyhow::Result<(Server, std::time::Duration)> {
        let port = procs::free_port()?;
        let n = self.starts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self.work.join(format!("service-{n:02}-{}.log", name.replace([' ', '+', '(', ')'], "-")));
        Server::start(name, &self.bin.join("oauth-manager"), &self.service_env(port, profile, cache)?, port, &log).await
    }

    /// Starts the baseline server on the same database, with the service's pool size.
    pub async fn start_baseline(&self) -> anyhow::Result<Server> {
        let port = procs::free_port()?;
        let mut env =
            vec![("DATABASE_URL".to_owned(), self.database_url.clone()), ("PORT".to_owned(), port.to_string())];
        if let Ok(pool) = std::env::var("BENCH_DATABASE_MAX_CONNECTIONS") {
            env.push(("DATABASE_MAX_CONNECTIONS".to_owned(), pool));
        }
        let log = self.work.join("baseline.log");
        Ok(Server::start("baseline", &self.bin.join("oam-baseline"), &env, port, &log).await?.0)
    }

    /// A host-application access token for `user_id` (HS256 with the service's JWT secret).
    pub fn user_jwt(user_id: i32) -> String {
        let claims = serde_json::json!({
            "user_id": user_id,
            "type": "access",
            "sub": format!("user{user_id}@bench.example"),
            "exp": chrono::Utc::now().timestamp() + 6 * 3600,
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .expect("HS256 signing does not fail")
    }

    /// A scenario's heading, with the time since the bench started.
    pub fn heading(&self, title: &str) {
        println!("\n{title}   [{:.0} s]", self.started.elapsed().as_secs_f64());
    }

    /// A connection to the bench database.
    pub async fn db(&self) -> anyhow::Result<sqlx::PgConnection> {
        use sqlx::Connection;
        Ok(sqlx::PgConnection::connect(&self.database_url).await?)
    }
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name").map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kb: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let postgres = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    let wrk = std::process::Command::new("wrk")
        .arg("-v")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    serde_json::json!({
        "cpu": model,
        "cores": cores,
        "memory_gb": (memory_kb as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "load_average_at_start": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "postgres": postgres,
        "wrk": wrk,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let options = Options::parse(std::env::args().skip(1))?;
    let root = std::env::current_dir()?;
    anyhow::ensure!(root.join("bench/lua").is_dir(), "run from the repository root (bench/run does)");
    let work = root.join("bench/.work");
    std::fs::create_dir_all(work.join("data"))?;
    for entry in std::fs::read_dir(&work)?.flatten() {
        if entry.file_name().to_string_lossy().ends_with(".log") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let bin = std::env::current_exe()?.parent().context("the binary's directory")?.to_owned();
    let base = std::env::var("BENCH_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let machine = machine();
    println!(
        "oauth-manager bench: {} ({} cores, {} GB), PostgreSQL {}, {}; load average at start {}",
        machine["cpu"].as_str().unwrap_or_default(),
        machine["cores"],
        machine["memory_gb"],
        machine["postgres"].as_str().unwrap_or_default(),
        machine["wrk"].as_str().unwrap_or_default(),
        machine["load_average_at_start"].as_str().unwrap_or_default(),
    );
    println!(
        "options: {} s per run, {} round(s), {}{}",
        options.seconds,
        options.rounds,
        if options.quick { "quick" } else { "full" },
        if options.only.is_empty() { String::new() } else { format!(", only {}", options.only.join(",")) }
    );
    let keys = KeyRing::parse(&SecretString::from(KEY_RING)).map_err(|e| anyhow::anyhow!("bench key ring: {e}"))?;
    let database_url = format!("{base}/{DATABASE}");
    seed::ensure(&format!("{base}/postgres"), &database_url, DATABASE, &root, &keys).await?;

    let emulators = Emulators::start().await?;
    let providers_file = work.join("providers.toml");
    std::fs::write(&providers_file, emulators.providers_toml())?;
    let bench = Bench {
        options,
        lua: root.join("bench/lua"),
        root,
        work,
        bin,
        database_url,
        emulators,
        keys,
        providers_file,
        starts: Default::default(),
        started,
    };
    let mut results = report::Results::new(machine, &bench);
    scenarios::run_all(&bench, &mut results).await?;
    results.finish(&bench)?;
    println!("the bench took {:.0} s", bench.started.elapsed().as_secs_f64());
    Ok(())
}

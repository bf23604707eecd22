//! The load generator: wrk with the Lua scripts of bench/lua, its figures read from the JSON
//! line the scripts print.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

/// What wrk sends.
#[derive(Clone, Debug)]
pub enum Requests {
    /// The same GET every time (wrk's fast path).
    Fixed { path: String },
    /// GET `template` with `{id}` a random integer in `lo..=hi`.
    Random { template: String, lo: i32, hi: i32 },
    /// As `Random`, also counting requests per 100 ms of wall time.
    Counted { template: String, lo: i32, hi: i32 },
    /// POST `body` to `path` as a random one of the bearer tokens in `tokens` (one a line).
    Post { path: String, tokens: PathBuf, body: String },
}

/// One wrk run.
#[derive(Clone, Debug)]
pub struct Load {
    pub base_url: String,
    pub connections: u32,
    pub seconds: u64,
    pub requests: Requests,
    /// Extra headers, `Name: value`.
    pub headers: Vec<String>,
}

/// What a run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Figures {
    pub requests: u64,
    pub seconds: f64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Answers that were not 2xx/3xx.
    pub non_2xx: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
    /// Requests sent per 100-ms slot (slot = Unix time in tenths of a second); `Counted` only.
    #[serde(skip)]
    pub buckets: BTreeMap<i64, u64>,
}

impl Figures {
    pub fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors
    }
}

#[derive(Deserialize)]
struct Line {
    requests: u64,
    duration_us: u64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    connect: u64,
    read: u64,
    write: u64,
    status: u64,
    timeout: u64,
    buckets: BTreeMap<String, u64>,
}

fn command(lua_dir: &Path, load: &Load) -> Command {
    let mut command = Command::new("wrk");
    command
        .arg(format!("-t{}", load.connections.clamp(1, 2)))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.seconds))
        .arg("--timeout")
        .arg("10s");
    for header in &load.headers {
        command.arg("-H").arg(header);
    }
    let (script, url, args): (&str, String, Vec<String>) = match &load.requests {
        Requests::Fixed { path } => ("fixed.lua", format!("{}{path}", load.base_url), vec![]),
        Requests::Random { template, lo, hi } => (
            "dynamic.lua",
            load.base_url.clone(),
            vec!["random".into(), lua_template(template), lo.to_string(), hi.to_string()],
        ),
        Requests::Counted { template, lo, hi } => (
            "dynamic.lua",
            load.base_url.clone(),
            vec!["count".into(), lua_template(template), lo.to_string(), hi.to_string()],
        ),
        Requests::Post { path, tokens, body } => (
            "dynamic.lua",
            load.base_url.clone(),
            vec!["post".into(), path.clone(), tokens.display().to_string(), body.clone()],
        ),
    };
    command.arg("-s").arg(lua_dir.join(script)).arg(url).arg("--").args(args);
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    command
}

fn lua_template(template: &str) -> String {
    template.replace('%', "%%").replace("{id}", "%d")
}

/// Runs wrk to the end.
pub async fn run(lua_dir: &Path, load: &Load) -> anyhow::Result<Figures> {
    let child = command(lua_dir, load).spawn().context("starting wrk (apt-get install wrk)")?;
    finish(child).await
}

/// Starts wrk in the background; stop it with [`interrupt`] then [`finish`].
pub fn spawn(lua_dir: &Path, load: &Load) -> anyhow::Result<Child> {
    command(lua_dir, load).spawn().context("starting wrk (apt-get install wrk)")
}

/// SIGINT: wrk stops and prints its figures.
pub fn interrupt(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").arg("-INT").arg(pid.to_string()).status();
    }
}

/// Waits for wrk and reads its figures.
pub async fn finish(child: Child) -> anyhow::Result<Figures> {
    let output = child.wait_with_output().await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(json) = stdout.lines().find_map(|line| line.strip_prefix("BENCH_JSON ")) else {
        bail!("wrk printed no figures: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    };
    let line: Line = serde_json::from_str(json).with_context(|| format!("reading wrk's figures: {json}"))?;
    let seconds = line.duration_us as f64 / 1e6;
    Ok(Figures {
        requests: line.requests,
        seconds,
        rps: line.requests as f64 / seconds.max(1e-9),
        p50_ms: line.p50_us as f64 / 1000.0,
        p99_ms: line.p99_us as f64 / 1000.0,
        max_ms: line.max_us as f64 / 1000.0,
        non_2xx: line.status,
        socket_errors: line.connect + line.read + line.write + line.timeout,
        buckets: line.buckets.into_iter().filter_map(|(slot, count)| Some((slot.parse().ok()?, count))).collect(),
    })
}

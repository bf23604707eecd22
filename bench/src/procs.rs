//! The processes under test: spawning and stopping them, their readiness, and what /proc says
//! about their memory and CPU.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// A server process on a loopback port.
pub struct Server {
    pub name: String,
    pub base_url: String,
    pub pid: u32,
    child: Child,
    log: PathBuf,
}

/// A loopback port free right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Server {
    /// Starts `program` with exactly `env` (plus PATH and HOME), its output in `log`, and waits
    /// until `GET /readyz` answers 200; returns it and the time from spawn to ready.
    pub async fn start(
        name: &str,
        program: &Path,
        env: &[(String, String)],
        port: u16,
        log: &Path,
    ) -> anyhow::Result<(Self, Duration)> {
        let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(program);
        command.env_clear().stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).kill_on_drop(true);
        for name in ["PATH", "HOME"] {
            if let Ok(value) = std::env::var(name) {
                command.env(name, value);
            }
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let started = Instant::now();
        let child = command.spawn().with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id().context("the child's pid")?;
        let mut server =
            Self { name: name.to_owned(), base_url: format!("http://127.0.0.1:{port}"), pid, child, log: log.into() };
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let ready = format!("{}/readyz", server.base_url);
        loop {
            if let Ok(response) = client.get(&ready).send().await
                && response.status().is_success()
            {
                return Ok((server, started.elapsed()));
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("{name} exited with {status} before it was ready; its log:\n{}", server.log_tail());
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("{name} was not ready within 60 s; its log:\n{}", server.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after 30 seconds (the service's shutdown waits for refreshes in flight).
    pub async fn stop(mut self) {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status();
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }

    /// Forgets the peak resident set size so far (Linux: `5` into clear_refs resets VmHWM).
    pub fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5");
    }

    /// VmHWM in kB: the peak resident set size since start or the last reset.
    pub fn peak_rss_kb(&self) -> u64 {
        status_field(self.pid, "VmHWM:").unwrap_or(0)
    }

    /// VmRSS in kB.
    pub fn rss_kb(&self) -> u64 {
        status_field(self.pid, "VmRSS:").unwrap_or(0)
    }

    /// CPU time used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_ticks(self.pid).unwrap_or(0) as f64 / TICKS_PER_SECOND
    }
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// USER_HZ, 100 on every Linux this runs on.
const TICKS_PER_SECOND: f64 = 100.0;

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// CPU seconds used so far by every PostgreSQL process (the server's backends).
pub fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    let mut ticks = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "postgres" {
            ticks += cpu_ticks(pid).unwrap_or(0);
        }
    }
    ticks as f64 / TICKS_PER_SECOND
}

/// CPU seconds this process (the bench: drivers and emulators) used so far.
pub fn own_cpu_seconds() -> f64 {
    cpu_ticks(std::process::id()).unwrap_or(0) as f64 / TICKS_PER_SECOND
}

/// Samples a server's resident set every 100 ms while a scenario runs; the peak is the larger
/// of the samples and VmHWM (reset when sampling starts).
pub struct RssSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<u64>,
    pid: u32,
}

impl RssSampler {
    pub fn start(server: &Server) -> Self {
        server.reset_peak_rss();
        let pid = server.pid;
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peak = 0;
            loop {
                peak = peak.max(status_field(pid, "VmRSS:").unwrap_or(0));
                tokio::select! {
                    _ = &mut stopped => return peak,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        });
        Self { stop, task, pid }
    }

    /// The peak in kB.
    pub async fn finish(self) -> u64 {
        let _ = self.stop.send(());
        let sampled = self.task.await.unwrap_or(0);
        sampled.max(status_field(self.pid, "VmHWM:").unwrap_or(0))
    }
}

//! The scenarios in order: the wrk cells (hand-outs, initiate, list) alternating with the
//! baseline, the connect flows, the refresh storm, start to ready, and the idle refresher.

use std::time::Duration;

use serde_json::json;

use crate::procs::{self, RssSampler, Server};
use crate::report::{Cell, DatabasePerRequest, Results, Row, Run};
use crate::seed::{self, INTEGRATIONS};
use crate::wrk::{self, Load, Requests};
use crate::{API, Bench, Profile, SERVICE_KEY, flows, storm};

/// One side of a cell: a server and what wrk sends it.
struct Target<'a> {
    name: &'static str,
    server: &'a Server,
    requests: Requests,
    headers: Vec<String>,
}

/// One wrk run against `server`, with its peak RSS and the CPU it and PostgreSQL used.
async fn measure(bench: &Bench, server: &Server, load: &Load) -> anyhow::Result<Run> {
    let mut db = bench.db().await?;
    wait_for_quiet_database(&mut db).await?;
    let stats = database_stats(&mut db).await?;
    let sampler = RssSampler::start(server);
    let (cpu, postgres) = (server.cpu_seconds(), procs::postgres_cpu_seconds());
    let figures = wrk::run(&bench.lua, load).await?;
    let (cpu, postgres) = (server.cpu_seconds() - cpu, procs::postgres_cpu_seconds() - postgres);
    let peak = sampler.finish().await;
    // The service's usage flusher writes what the run counted within a second, and PostgreSQL
    // publishes a backend's statistics at most once a second.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = database_stats(&mut db).await?;
    let requests = figures.requests.max(1) as f64;
    let per_request = |i: usize| (after[i] - stats[i]) as f64 / requests;
    let seconds = figures.seconds.max(1e-9);
    Ok(Run {
        peak_rss_mb: peak as f64 / 1024.0,
        target_cores: cpu / seconds,
        postgres_cores: postgres / seconds,
        database_per_request: DatabasePerRequest {
            transactions: per_request(0),
            rows_read: per_request(1),
            rows_written: per_request(2),
        },
        figures,
    })
}

/// Waits (at most a minute) until no other session of the bench database is running a statement:
/// the service's usage flusher writes what earlier runs handed out (a few statements per
/// integration used) after them, and those writes must not land in the next run's figures.
async fn wait_for_quiet_database(db: &mut sqlx::PgConnection) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut quiet_samples = 0;
    while quiet_samples < 3 && started.elapsed() < Duration::from_secs(60) {
        let (busy,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND state NOT LIKE 'idle%'",
        )
        .fetch_one(&mut *db)
        .await?;
        quiet_samples = if busy == 0 { quiet_samples + 1 } else { 0 };
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if started.elapsed() > Duration::from_secs(2) {
        println!("  (waited {:.1} s for the database to go quiet)", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// The bench database's transactions, rows read (fetched by index or scanned) and rows written.
async fn database_stats(db: &mut sqlx::PgConnection) -> anyhow::Result<[i64; 3]> {
    let (transactions, read, written): (i64, i64, i64) = sqlx::query_as(
        "SELECT xact_commit + xact_rollback, tup_returned + tup_fetched, tup_inserted + tup_updated + tup_deleted
         FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(db)
    .await?;
    // Our own two queries count as transactions too.
    Ok([transactions - 1, read, written])
}

/// Rounds of every target in turn (the first is the baseline the others are compared with).
async fn cell(
    bench: &Bench,
    title: &str,
    scenario: &str,
    ids: Option<u32>,
    connections: u32,
    targets: &[Target<'_>],
) -> anyhow::Result<Cell> {
    bench.heading(&format!("{title}, {connections} connections"));
    let mut runs: Vec<Vec<Run>> = targets.iter().map(|_| vec![]).collect();
    for _ in 0..bench.options.rounds {
        for (target, runs) in targets.iter().zip(&mut runs) {
            let load = Load {
                base_url: target.server.base_url.clone(),
                connections,
                seconds: bench.options.seconds,
                requests: target.requests.clone(),
                headers: target.headers.clone(),
            };
            runs.push(measure(bench, target.server, &load).await?);
        }
    }
    let baseline = runs[0].clone();
    let rows = targets.iter().zip(runs).map(|(target, runs)| Row::new(target.name, runs, Some(&baseline))).collect();
    let cell = Cell { scenario: scenario.to_owned(), ids, connections, rows };
    cell.print();
    Ok(cell)
}

fn service_key() -> Vec<String> {
    vec![format!("Authorization: Bearer {SERVICE_KEY}")]
}

/// (a), (b), (e): the scenarios wrk drives, each alternating with the baseline.
async fn wrk_scenarios(bench: &Bench, results: &mut Results) -> anyhow::Result<()> {
    let baseline = bench.start_baseline().await?;
    let (service, _) = bench.start_service("service", Profile::Standard, Some(false)).await?;
    let (cached, _) = bench.start_service("service+cache", Profile::Standard, Some(true)).await?;
    // Warm every server (connections, caches, the database's buffers for the random reads).
    let warm = [
        (&baseline, "/token/{id}".to_owned(), vec![]),
        (&service, format!("{API}/integrations/{{id}}/token"), service_key()),
        (&cached, format!("{API}/integrations/{{id}}/token"), service_key()),
    ];
    for (server, template, headers) in warm {
        let requests = Requests::Random { template, lo: 1, hi: INTEGRATIONS };
        let load = Load { base_url: server.base_url.clone(), connections: 64, seconds: 2, requests, headers };
        wrk::run(&bench.lua, &load).await?;
    }

    let connections: &[u32] = if bench.options.quick { &[64] } else { &[8, 64, 256] };
    if bench.options.wants("handout") {
        for (ids, title) in [
            (1u32, "(a) hand-out of a fresh token, 1 integration"),
            (200_000, "(a) hand-out of a fresh token, 200,000 integrations (random ids)"),
        ] {
            for &c in connections {
                let (baseline_requests, service_requests) = if ids == 1 {
                    (
                        Requests::Fixed { path: "/token/1".into() },
                        Requests::Fixed { path: format!("{API}/integrations/1/token") },
                    )
                } else {
                    (
                        Requests::Random { template: "/token/{id}".into(), lo: 1, hi: INTEGRATIONS },
                        Requests::Random {
                            template: format!("{API}/integrations/{{id}}/token"),
                            lo: 1,
                            hi: INTEGRATIONS,
                        },
                    )
                };
                let mut targets = vec![
                    Target { name: "baseline", server: &baseline, requests: baseline_requests, headers: vec![] },
                    Target {
                        name: "service",
                        server: &service,
                        requests: service_requests.clone(),
                        headers: service_key(),
                    },
                    Target {
                        name: "service+cache",
                        server: &cached,
                        requests: service_requests,
                        headers: service_key(),
                    },
                ];
                if ids == 1 {
                    targets.push(Target {
                        name: "ceiling",
                        server: &baseline,
                        requests: Requests::Fixed { path: "/ceiling".into() },
                        headers: vec![],
                    });
                }
                let cell = cell(bench, title, "handout", Some(ids), c, &targets).await?;
                results.cells.push(cell);
            }
        }
    }
    if bench.options.profile {
        let service = profile(bench, &service, "service").await?;
        let cached = profile(bench, &cached, "service+cache").await?;
        results.profile = Some(json!({ "service": service, "service+cache": cached }));
    }
    let read_one = || Target {
        name: "baseline",
        server: &baseline,
        requests: Requests::Fixed { path: "/token/1".into() },
        headers: vec![],
    };
    if bench.options.wants("initiate") {
        let tokens = bench.work.join("user-jwts.txt");
        let jwts: Vec<String> = (1..=1000).map(Bench::user_jwt).collect();
        std::fs::write(&tokens, jwts.join("\n") + "\n")?;
        let initiate = Target {
            name: "service",
            server: &service,
            requests: Requests::Post {
                path: format!("{API}/initiate"),
                tokens,
                body: r#"{"provider": "google"}"#.into(),
            },
            headers: vec![],
        };
        let cell = cell(
            bench,
            "(b) POST /initiate (user JWTs of 1,000 users, Google)",
            "initiate",
            None,
            64,
            &[read_one(), initiate],
        )
        .await?;
        results.cells.push(cell);
    }
    if bench.options.wants("list") {
        let list = Target {
            name: "service",
            server: &service,
            requests: Requests::Fixed { path: format!("{API}/integrations") },
            headers: vec![format!("Authorization: Bearer {}", Bench::user_jwt(1))],
        };
        let cell = cell(
            bench,
            "(e) GET /integrations, a user with 4 integrations (JWT)",
            "list",
            None,
            64,
            &[read_one(), list],
        )
        .await?;
        results.cells.push(cell);
    }
    baseline.stop().await;
    service.stop().await;
    cached.stop().await;
    Ok(())
}

/// `perf record` of the service while wrk hands out one integration at 64 connections: the flat
/// profiles (self time per symbol) go to bench/.work/profile-handout-{service,service-cache}.txt.
async fn profile(bench: &Bench, service: &Server, name: &str) -> anyhow::Result<serde_json::Value> {
    bench.heading(&format!("profile: perf record of {name}, hand-out of 1 integration at 64 connections"));
    let file_name = name.replace('+', "-");
    let data = bench.work.join(format!("perf-{file_name}.data"));
    let seconds = bench.options.seconds.to_string();
    let perf = tokio::process::Command::new("perf")
        .args(["record", "-F", "199", "--call-graph", "dwarf,16384", "-p", &service.pid.to_string(), "-o"])
        .arg(&data)
        .args(["--", "sleep", &seconds])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(perf) = perf else {
        println!("  perf is not available");
        return Ok(json!(null));
    };
    let load = Load {
        base_url: service.base_url.clone(),
        connections: 64,
        seconds: bench.options.seconds,
        requests: Requests::Fixed { path: format!("{API}/integrations/1/token") },
        headers: service_key(),
    };
    wrk::run(&bench.lua, &load).await?;
    perf.wait_with_output().await?;
    let report = |children: &'static str, sort: &'static str, limit: &'static str| {
        let data = data.clone();
        async move {
            let out = tokio::process::Command::new("perf")
                .arg("report")
                .arg("-i")
                .arg(&data)
                .args([children, "--stdio", "-g", "none", "--sort", sort, "--percent-limit", limit])
                .output()
                .await?;
            let text: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|line| line.trim_end().trim_end_matches(['-', ' ']).to_owned())
                .collect();
            anyhow::Ok(text)
        }
    };
    let by_dso = report("--no-children", "dso", "0.3").await?;
    let by_symbol = report("--no-children", "dso,symbol", "0.3").await?;
    let inclusive = report("--children", "symbol", "2").await?;
    let path = bench.work.join(format!("profile-handout-{file_name}.txt"));
    std::fs::write(&path, [by_dso.join("\n"), by_symbol.join("\n"), inclusive.join("\n")].join("\n\n") + "\n")?;
    let rows = |lines: &[String], n: usize| -> Vec<String> {
        lines.iter().filter(|line| !line.starts_with('#') && !line.trim().is_empty()).take(n).cloned().collect()
    };
    let (dsos, top) = (rows(&by_dso, 6), rows(&by_symbol, 25));
    println!("  self time by object:");
    for line in &dsos {
        println!("  {line}");
    }
    println!("  self time by symbol:");
    for line in &top {
        println!("  {line}");
    }
    let inclusive = rows(&inclusive, 40);
    println!("  time including callees (children, self):");
    for line in &inclusive {
        println!("  {line}");
    }
    println!("  (full report: {})", path.display());
    Ok(json!({ "report": path.display().to_string(), "by_object": dsos, "top": top, "inclusive": inclusive }))
}

/// (c) the connect flow with 1,000 flows in flight.
async fn flow_scenario(bench: &Bench, results: &mut Results) -> anyhow::Result<()> {
    bench.heading("(c) full connect flow (initiate, emulator consent, callback with the flow cookie), 1,000 in flight");
    let (service, _) = bench.start_service("service (flows)", Profile::Standard, None).await?;
    let sampler = RssSampler::start(&service);
    let cpu = (service.cpu_seconds(), procs::own_cpu_seconds(), procs::postgres_cpu_seconds());
    let mut figures = flows::run(&service.base_url, 1000, bench.options.seconds + 3).await?;
    let seconds = figures["seconds"].as_f64().unwrap_or(1.0);
    let cores = |now: f64, then: f64| (now - then) / seconds;
    figures["cores"] = json!({
        "service": cores(service.cpu_seconds(), cpu.0),
        "bench_drivers_and_emulators": cores(procs::own_cpu_seconds(), cpu.1),
        "postgres": cores(procs::postgres_cpu_seconds(), cpu.2),
    });
    let peak = sampler.finish().await as f64 / 1024.0;
    figures["peak_rss_mb"] = json!(peak);
    service.stop().await;
    println!(
        "  {} flows in {:.1} s = {:.0} flows/s, {} failures; flow latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        figures["flows"],
        seconds,
        figures["flows_per_second"].as_f64().unwrap_or(0.0),
        figures["failures"],
        figures["p50_ms"].as_f64().unwrap_or(0.0),
        figures["p99_ms"].as_f64().unwrap_or(0.0),
        figures["max_ms"].as_f64().unwrap_or(0.0),
    );
    for kind in figures["failure_kinds"].as_array().into_iter().flatten() {
        println!("  failure: {}", kind.as_str().unwrap_or_default());
    }
    println!(
        "  cores used: service {:.2}, bench (drivers + emulators) {:.2}, PostgreSQL {:.2}; service peak RSS {peak:.1} MB",
        figures["cores"]["service"].as_f64().unwrap_or(0.0),
        figures["cores"]["bench_drivers_and_emulators"].as_f64().unwrap_or(0.0),
        figures["cores"]["postgres"].as_f64().unwrap_or(0.0),
    );
    results.other_peaks.push(("connect flow".into(), peak));
    results.flow = Some(figures);
    Ok(())
}

/// (f) start to ready: spawn the service and poll /readyz, median of `n`.
async fn start_scenario(bench: &Bench, results: &mut Results, n: usize) -> anyhow::Result<()> {
    bench.heading(&format!("(f) start to ready (spawn, poll /readyz every 2 ms), {n} starts"));
    let mut times = vec![];
    for _ in 0..n {
        let (service, ready) = bench.start_service("service (start)", Profile::Standard, None).await?;
        times.push(ready.as_secs_f64() * 1000.0);
        service.stop().await;
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!("  {} ms; median {median:.0} ms", times.iter().map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(", "));
    results.start = Some(json!({ "runs_ms": times, "median_ms": median }));
    Ok(())
}

/// (g) what the proactive refresher costs for 200,000 idle integrations: the service runs with
/// every token looking due (`lead_seconds` of 100 years) and a round every second; provider calls
/// and audit rows are counted and extrapolated to an hour of the default interval.
async fn idle_scenario(bench: &Bench, results: &mut Results) -> anyhow::Result<()> {
    let seconds = if bench.options.quick { 6 } else { 15 };
    bench.heading(&format!(
        "(g) proactive refresher, 200,000 idle integrations, every token due, a round every 1 s, {seconds} s"
    ));
    let mut db = bench.db().await?;
    // Only the seeded integrations (the connect flows' are removed).
    seed::reset(&mut db).await?;
    // Idle: nothing handed out within the last two days (earlier scenarios handed many out).
    let idle_since = chrono::Utc::now().naive_utc() - chrono::Duration::days(2);
    sqlx::query("UPDATE oauth_tokens SET last_used_at = $1 WHERE last_used_at > $1")
        .bind(idle_since)
        .execute(&mut db)
        .await?;
    // Microsoft's renewals spread over the last 90 days, as in a real deployment: a third are due
    // a keep-alive (two thirds of refresh_token_idle_days = 60 days). The reset puts them back.
    sqlx::query(
        "UPDATE oauth_tokens t SET updated_at = $1 - make_interval(secs => (t.id * 7919) % (90 * 86400))
         FROM oauth_integrations i WHERE i.id = t.integration_id AND i.provider = 'microsoft'",
    )
    .bind(chrono::Utc::now().naive_utc())
    .execute(&mut db)
    .await?;
    let first_new_audit: i32 =
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM oauth_audit_log").fetch_one(&mut db).await?;
    let calls_before = bench.emulators.token_calls();
    let (service, _) = bench.start_service("service (everything due)", Profile::EverythingDue, None).await?;
    let sampler = RssSampler::start(&service);
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let window = started.elapsed().as_secs_f64();
    let peak = sampler.finish().await as f64 / 1024.0;
    service.stop().await;
    let calls_after = bench.emulators.token_calls();
    let audit: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT provider, action, COUNT(*) FROM oauth_audit_log WHERE id >= $1 GROUP BY provider, action ORDER BY 1, 2",
    )
    .bind(first_new_audit)
    .fetch_all(&mut db)
    .await?;
    let providers = oauth_manager::oauth::Providers::load(None, &|_| None)?;
    let keep_alive: Vec<(String, u32)> =
        providers.iter().filter_map(|p| p.refresh_token_idle_days.map(|days| (p.name.clone(), days))).collect();
    let is_keep_alive = |provider: &str| keep_alive.iter().any(|(name, _)| name == provider);

    // Rounds in the window at the bench's 1-second interval; an hour at the default 60 s has 60.
    let rounds = window / 1.0;
    let per_hour = |count: f64| count / rounds * 60.0;
    let (mut kept_calls, mut other_calls) = (0u64, 0u64);
    for ((emulator, refreshes, failures), (_, refreshes_before, failures_before)) in
        calls_after.iter().zip(&calls_before)
    {
        let calls = refreshes + failures - refreshes_before - failures_before;
        println!("  token-endpoint calls at the {emulator} emulator: {calls}");
        if *emulator == "microsoft" && is_keep_alive("microsoft") {
            kept_calls += calls;
        } else {
            other_calls += calls;
        }
    }
    let (mut kept_rows, mut other_rows) = (0i64, 0i64);
    for (provider, action, count) in &audit {
        println!("  audit rows: {provider} {action}: {count}");
        if is_keep_alive(provider) {
            kept_rows += count;
        } else {
            other_rows += count;
        }
    }
    let microsoft: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM oauth_integrations WHERE provider = 'microsoft' AND id <= $1")
            .bind(INTEGRATIONS)
            .fetch_one(&mut db)
            .await?;
    let steady = keep_alive
        .iter()
        .map(|(name, days)| format!("{name}: one keep-alive per integration every {} days", days * 2 / 3))
        .collect::<Vec<_>>()
        .join("; ");
    let steady_per_hour =
        keep_alive.iter().map(|(_, days)| microsoft as f64 / (f64::from(days * 2 / 3) * 24.0)).sum::<f64>();
    println!(
        "  extrapolation: counts / {rounds:.0} rounds (one per second here) x 60 rounds per hour (the default interval_seconds = 60)"
    );
    println!(
        "  per hour: {:.0} provider calls and {:.0} audit rows beyond keep-alives; keep-alives {:.0} calls and {:.0} audit rows \
         (while unrenewed ones remain; in steady state {steady}: {microsoft} Microsoft integrations = {steady_per_hour:.0} per hour)",
        per_hour(other_calls as f64),
        per_hour(other_rows as f64),
        per_hour(kept_calls as f64),
        per_hour(kept_rows as f64),
    );
    println!("  service peak RSS {peak:.1} MB");
    results.other_peaks.push(("idle refresher".into(), peak));
    results.idle = Some(json!({
        "window_seconds": window,
        "rounds": rounds,
        "calls_beyond_keep_alive": other_calls,
        "audit_rows_beyond_keep_alive": other_rows,
        "keep_alive_calls": kept_calls,
        "keep_alive_audit_rows": kept_rows,
        "beyond_keep_alive_calls_per_hour": per_hour(other_calls as f64),
        "beyond_keep_alive_audit_rows_per_hour": per_hour(other_rows as f64),
        "keep_alive_calls_per_hour": per_hour(kept_calls as f64),
        "keep_alive_audit_rows_per_hour": per_hour(kept_rows as f64),
        "keep_alive_steady_state_per_hour": steady_per_hour,
        "extrapolation": "count / rounds in the window (interval_seconds = 1) x 60 rounds per hour (default interval_seconds = 60)",
        "audit": audit.iter().map(|(p, a, n)| json!({"provider": p, "action": a, "rows": n})).collect::<Vec<_>>(),
        "peak_rss_mb": peak,
    }));
    seed::reset(&mut db).await?;
    Ok(())
}

pub async fn run_all(bench: &Bench, results: &mut Results) -> anyhow::Result<()> {
    let options = &bench.options;
    if ["handout", "initiate", "list"].iter().any(|s| options.wants(s)) || options.profile {
        wrk_scenarios(bench, results).await?;
    }
    if options.wants("flow") {
        flow_scenario(bench, results).await?;
    }
    if options.wants("storm") {
        let (n, cap) = if options.quick { (2_000, 20) } else { (10_000, 45) };
        storm::run(bench, results, n, Duration::from_secs(cap)).await?;
    }
    if options.wants("start") {
        start_scenario(bench, results, if options.quick { 3 } else { 5 }).await?;
    }
    if options.wants("idle") {
        idle_scenario(bench, results).await?;
    } else if options.wants("flow") || options.wants("storm") {
        seed::reset(&mut bench.db().await?).await?;
    }
    Ok(())
}

//! The figures: each scenario's table as it finishes, the summary against issue 9's targets, and
//! bench/results.json.

use serde::Serialize;
use serde_json::{Value, json};

use crate::Bench;
use crate::wrk::Figures;

/// One wrk run of one target, with what the target's process used meanwhile.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    #[serde(flatten)]
    pub figures: Figures,
    pub peak_rss_mb: f64,
    /// CPU cores the target's process and PostgreSQL used on average during the run.
    pub target_cores: f64,
    pub postgres_cores: f64,
    pub database_per_request: DatabasePerRequest,
}

/// What one request cost the bench database (pg_stat_database; other databases' load excluded).
#[derive(Clone, Debug, Serialize)]
pub struct DatabasePerRequest {
    pub transactions: f64,
    /// Rows fetched by index or returned by scans.
    pub rows_read: f64,
    /// Rows inserted, updated or deleted.
    pub rows_written: f64,
}

/// A target's runs in one cell, summed up, with ratios to the baseline of the same rounds.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub target: String,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
    pub peak_rss_mb: f64,
    pub target_cores: f64,
    pub postgres_cores: f64,
    /// Database transactions per request.
    pub db_transactions: f64,
    /// Mean over rounds of this run's req/s (p99) over the baseline run's of the same round.
    pub ratio_rps: Option<f64>,
    pub ratio_p99: Option<f64>,
    pub runs: Vec<Run>,
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    if values.is_empty() { 0.0 } else { values.iter().sum::<f64>() / values.len() as f64 }
}

impl Row {
    /// `runs[i]` and `baseline[i]` were measured in the same round.
    pub fn new(target: &str, runs: Vec<Run>, baseline: Option<&[Run]>) -> Self {
        let ratio = |of: fn(&Run) -> f64| {
            baseline.map(|baseline| mean(runs.iter().zip(baseline).map(|(run, base)| of(run) / of(base).max(1e-9))))
        };
        Self {
            target: target.to_owned(),
            rps: mean(runs.iter().map(|r| r.figures.rps)),
            p50_ms: mean(runs.iter().map(|r| r.figures.p50_ms)),
            p99_ms: mean(runs.iter().map(|r| r.figures.p99_ms)),
            max_ms: runs.iter().map(|r| r.figures.max_ms).fold(0.0, f64::max),
            errors: runs.iter().map(|r| r.figures.errors()).sum(),
            peak_rss_mb: runs.iter().map(|r| r.peak_rss_mb).fold(0.0, f64::max),
            target_cores: mean(runs.iter().map(|r| r.target_cores)),
            postgres_cores: mean(runs.iter().map(|r| r.postgres_cores)),
            db_transactions: mean(runs.iter().map(|r| r.database_per_request.transactions)),
            ratio_rps: ratio(|r| r.figures.rps),
            ratio_p99: ratio(|r| r.figures.p99_ms),
            runs,
        }
    }
}

/// One scenario at one connection count.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub scenario: String,
    /// `1` or `200000`: how many integrations the ids are drawn from (hand-outs).
    pub ids: Option<u32>,
    pub connections: u32,
    pub rows: Vec<Row>,
}

impl Cell {
    pub fn row(&self, target: &str) -> Option<&Row> {
        self.rows.iter().find(|row| row.target == target)
    }

    pub fn print(&self) {
        println!(
            "  {:<16} {:>9} {:>8} {:>8} {:>8} {:>7} {:>9} {:>10} {:>6} {:>18}",
            "target",
            "req/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "errors",
            "peak RSS",
            "cores t/pg",
            "tx/req",
            "x baseline rps/p99"
        );
        for row in &self.rows {
            let ratio = match (row.ratio_rps, row.ratio_p99) {
                (Some(rps), Some(p99)) => format!("{rps:.2} / {p99:.2}"),
                _ => "-".to_owned(),
            };
            println!(
                "  {:<16} {:>9.0} {:>8.2} {:>8.2} {:>8.1} {:>7} {:>6.1} MB {:>4.2}/{:<5.2} {:>6.2} {:>18}",
                row.target,
                row.rps,
                row.p50_ms,
                row.p99_ms,
                row.max_ms,
                row.errors,
                row.peak_rss_mb,
                row.target_cores,
                row.postgres_cores,
                row.db_transactions,
                ratio
            );
        }
    }
}

/// A target of issue 9 and how this run did against it.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    /// `met`, `not met`, or `not measured`.
    pub status: String,
}

fn verdict(target: &str, measured: String, met: Option<bool>) -> Verdict {
    let status = match met {
        Some(true) => "met",
        Some(false) => "not met",
        None => "not measured",
    };
    Verdict { target: target.to_owned(), measured, status: status.to_owned() }
}

/// Everything measured, as results.json holds it.
pub struct Results {
    pub machine: Value,
    pub options: Value,
    pub cells: Vec<Cell>,
    pub flow: Option<Value>,
    pub storm: Option<Value>,
    pub start: Option<Value>,
    pub idle: Option<Value>,
    pub profile: Option<Value>,
    /// Peak RSS per scenario outside the wrk cells (flows, storm, idle), MB.
    pub other_peaks: Vec<(String, f64)>,
}

impl Results {
    pub fn new(machine: Value, bench: &Bench) -> Self {
        let options = json!({
            "quick": bench.options.quick,
            "seconds_per_run": bench.options.seconds,
            "rounds": bench.options.rounds,
            "only": bench.options.only,
            "cache_setting": crate::CACHE_SETTING,
            "date": chrono::Utc::now().to_rfc3339(),
        });
        Self {
            machine,
            options,
            cells: vec![],
            flow: None,
            storm: None,
            start: None,
            idle: None,
            profile: None,
            other_peaks: vec![],
        }
    }

    fn cell(&self, scenario: &str, ids: Option<u32>, connections: u32) -> Option<&Cell> {
        self.cells.iter().find(|c| c.scenario == scenario && c.ids == ids && c.connections == connections)
    }

    fn verdicts(&self) -> Vec<Verdict> {
        let mut out = vec![];
        let single = self.cell("handout", Some(1), 64);
        let random = self.cell("handout", Some(200_000), 64);
        // A hand-out target on the single-integration cell: at least `min_rps` times the
        // baseline's req/s, at most `max_p99` times its p99.
        let against_baseline = |target: &str, title: &str, unmeasured: &str, min_rps: f64, max_p99: f64| match single
            .and_then(|c| c.row(target))
        {
            Some(row) => {
                let (rps, p99) = (row.ratio_rps.unwrap_or(0.0), row.ratio_p99.unwrap_or(f64::MAX));
                verdict(
                    title,
                    format!("{rps:.2}x req/s ({:.0}), p99 {p99:.2}x ({:.2} ms)", row.rps, row.p99_ms),
                    Some(rps >= min_rps && p99 <= max_p99),
                )
            }
            None => verdict(unmeasured, "-".into(), None),
        };
        out.push(against_baseline(
            "service",
            "hand-out from the database at 64 connections: >= 0.8x baseline req/s, p99 <= 1.5x",
            "hand-out from the database at 64 connections",
            0.8,
            1.5,
        ));
        out.push(against_baseline(
            "service+cache",
            "hand-out through the cache at 64 connections: >= 3x baseline req/s, p99 <= baseline's",
            "hand-out through the cache: >= 3x baseline, p99 <= baseline's",
            3.0,
            1.0,
        ));
        for target in ["service", "service+cache"] {
            let (Some(one), Some(many)) = (single.and_then(|c| c.row(target)), random.and_then(|c| c.row(target)))
            else {
                continue;
            };
            let ratio = many.rps / one.rps.max(1e-9);
            out.push(verdict(
                &format!("{target}: 200,000 integrations, random ids, within 10% of 1 integration (64 conns)"),
                format!("{ratio:.2} ({:.0} vs {:.0} req/s)", many.rps, one.rps),
                Some(ratio >= 0.9),
            ));
        }
        out.push(match self.cell("initiate", None, 64).and_then(|c| c.row("service")) {
            Some(row) => verdict(
                "initiate: >= 0.35x the baseline",
                format!("{:.2}x ({:.0} req/s, {} errors)", row.ratio_rps.unwrap_or(0.0), row.rps, row.errors),
                Some(row.ratio_rps.unwrap_or(0.0) >= 0.35 && row.errors == 0),
            ),
            None => verdict("initiate: >= 0.35x the baseline", "-".into(), None),
        });
        out.push(match &self.flow {
            Some(flow) => {
                let rate = flow["flows_per_second"].as_f64().unwrap_or(0.0);
                let failures = flow["failures"].as_u64().unwrap_or(u64::MAX);
                verdict(
                    "connect flow: >= 1,000 flows/s with 1,000 in flight, no failures",
                    format!("{rate:.0} flows/s, {failures} failures, {} in flight", flow["in_flight"]),
                    Some(rate >= 1000.0 && failures == 0),
                )
            }
            None => verdict("connect flow: >= 1,000 flows/s, no failures", "-".into(), None),
        });
        out.push(match &self.storm {
            Some(storm) => {
                let n = storm["integrations"].as_u64().unwrap_or(0);
                let refreshes = storm["emulator_refreshes"].as_u64().unwrap_or(0);
                let answered = storm["all_refreshed_seconds"].as_f64();
                let seconds = storm["all_refreshed_at_provider_seconds"].as_f64().filter(|_| answered.is_some());
                let worst = storm["worst_wait_ms"].as_f64().unwrap_or(f64::MAX);
                let delay = storm["provider_delay_ms"].as_f64().unwrap_or(100.0);
                let others = storm["others_ratio"].as_f64().unwrap_or(0.0);
                let refreshed = storm["refreshed_rows"].as_u64().unwrap_or(0);
                verdict(
                    "refresh storm: all refreshed exactly once within 30 s, no hand-out waits for more than one refresh, others >= 0.5x",
                    format!(
                        "{refreshed}/{n} refreshed, emulator count {refreshes}, {}, worst wait {worst:.0} ms ({:.1} refresh times), others {others:.2}x",
                        match (answered, storm["all_refreshed_at_provider_seconds"].as_f64()) {
                            (Some(_), Some(s)) => format!("all refreshed in {s:.1} s"),
                            (None, Some(s)) => format!("all refreshed at the provider in {s:.1} s but not every hand-out got its token"),
                            _ => "not all refreshed within the cap".to_owned(),
                        },
                        worst / delay
                    ),
                    Some(
                        refreshes == n
                            && refreshed == n
                            && seconds.is_some_and(|s| s <= 30.0)
                            && worst < 2.0 * delay
                            && others >= 0.5,
                    ),
                )
            }
            None => verdict("refresh storm", "-".into(), None),
        });
        out.push(match &self.idle {
            Some(idle) => {
                let beyond_calls = idle["beyond_keep_alive_calls_per_hour"].as_f64().unwrap_or(f64::MAX);
                let beyond_audit = idle["beyond_keep_alive_audit_rows_per_hour"].as_f64().unwrap_or(f64::MAX);
                verdict(
                    "200,000 idle integrations: no provider call and no audit row per hour beyond keep-alives",
                    format!(
                        "{beyond_calls:.0} calls/h and {beyond_audit:.0} audit rows/h beyond keep-alives; keep-alives {:.0} calls/h, {:.0} audit rows/h",
                        idle["keep_alive_calls_per_hour"].as_f64().unwrap_or(0.0),
                        idle["keep_alive_audit_rows_per_hour"].as_f64().unwrap_or(0.0)
                    ),
                    Some(beyond_calls == 0.0 && beyond_audit == 0.0),
                )
            }
            None => verdict("200,000 idle integrations", "-".into(), None),
        });
        let mut peaks: Vec<(String, f64)> = self
            .cells
            .iter()
            .flat_map(|cell| {
                cell.rows.iter().filter(|row| row.target.starts_with("service")).map(move |row| {
                    (
                        format!(
                            "{} {} {} conns {}",
                            cell.scenario,
                            cell.ids.map_or(String::new(), |n| format!("{n} ids")),
                            cell.connections,
                            row.target
                        ),
                        row.peak_rss_mb,
                    )
                })
            })
            .collect();
        peaks.extend(self.other_peaks.iter().cloned());
        out.push(match peaks.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
            Some((which, peak)) => verdict(
                "the service's peak RSS <= 64 MB under every scenario",
                format!("largest {peak:.1} MB ({})", which.split_whitespace().collect::<Vec<_>>().join(" ")),
                Some(*peak <= 64.0),
            ),
            None => verdict("peak RSS <= 64 MB", "-".into(), None),
        });
        out.push(match &self.start {
            Some(start) => {
                let median = start["median_ms"].as_f64().unwrap_or(f64::MAX);
                verdict("start to ready <= 300 ms", format!("median {median:.0} ms"), Some(median <= 300.0))
            }
            None => verdict("start to ready <= 300 ms", "-".into(), None),
        });
        out
    }

    /// Prints the summary and writes bench/results.json.
    pub fn finish(&self, bench: &Bench) -> anyhow::Result<()> {
        let verdicts = self.verdicts();
        println!("\n== Summary against issue 9's targets ==");
        for v in &verdicts {
            println!("  [{:^12}] {}\n                 {}", v.status, v.target, v.measured);
        }
        let document = json!({
            "machine": self.machine,
            "options": self.options,
            "cells": self.cells,
            "flow": self.flow,
            "storm": self.storm,
            "start_to_ready": self.start,
            "idle_refresher": self.idle,
            "profile": self.profile,
            "targets": verdicts,
        });
        let path = bench.root.join("bench/results.json");
        std::fs::write(&path, serde_json::to_string_pretty(&document)? + "\n")?;
        println!("\nfigures written to bench/results.json");
        Ok(())
    }
}

//! Scenario (d): a refresh storm. Many Google integrations expire together, the emulator answers
//! each refresh in 100 ms, their hand-outs are fired at once while wrk keeps handing out other
//! integrations; how long until all were refreshed, how often the provider was called, the worst
//! wait, and what the others' throughput did meanwhile.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use oauth_manager::crypto::Aad;
use oauth_manager::oauth::sandbox::credentials;
use provider_emulators::{Fault, Flavor};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::procs::RssSampler;
use crate::report::Results;
use crate::seed::{self, INTEGRATIONS};
use crate::wrk::{self, Load, Requests};
use crate::{API, Bench, Profile, SERVICE_KEY};

/// The users whose Google integrations expire together (they have all four providers).
const FIRST_STORM_USER: i32 = 10_001;
/// The others wrk hands out meanwhile: none of them is in the storm.
const OTHERS: (i32, i32) = (80_001, INTEGRATIONS);
const PROVIDER_DELAY: Duration = Duration::from_millis(100);

/// A live grant at the Google emulator: its refresh token (Google does not rotate them, so every
/// storm integration may carry it; the service refreshes each integration on its own).
async fn google_refresh_token(bench: &Bench) -> anyhow::Result<String> {
    let base = &bench.emulators.google.base_url;
    let (client_id, client_secret) = credentials(Flavor::Google);
    let verifier = format!("bench-storm-verifier-{}", "v".repeat(32));
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let redirect_uri = "http://127.0.0.1/bench-callback";
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    // Not `openid`: a refresh would sign an ID token, and the emulator's RSA would be the bottleneck.
    let consent = client
        .post(format!("{base}/authorize"))
        .form(&[
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("response_type", "code"),
            ("state", "bench-storm"),
            ("scope", "https://www.googleapis.com/auth/calendar.readonly"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("access_type", "offline"),
            ("prompt", "consent"),
            ("decision", "approve"),
            ("login", "storm@bench.example"),
        ])
        .send()
        .await?;
    let location = consent.headers().get("location").and_then(|l| l.to_str().ok()).context("no consent redirect")?;
    let code = url::Url::parse(location)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .context("no code in the consent redirect")?;
    let token: Value = client
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ])
        .send()
        .await?
        .json()
        .await?;
    token["refresh_token"].as_str().map(str::to_owned).context("the emulator issued no refresh token")
}

/// Unix time in tenths of a second, as wrk's `count` script buckets requests.
fn slot(at: SystemTime) -> i64 {
    (at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() / 100) as i64
}

fn rate(buckets: &std::collections::BTreeMap<i64, u64>, from: i64, to: i64) -> f64 {
    let count: u64 = buckets.range(from..to).map(|(_, n)| n).sum();
    count as f64 / ((to - from).max(1) as f64 / 10.0)
}

pub async fn run(bench: &Bench, results: &mut Results, integrations: usize, cap: Duration) -> anyhow::Result<()> {
    bench.heading(&format!(
        "(d) refresh storm: {integrations} Google integrations expire together, the emulator answers each refresh in 100 ms"
    ));
    let ids: Vec<i32> = (FIRST_STORM_USER..FIRST_STORM_USER + integrations as i32).map(seed::google_of).collect();
    let refresh_token = google_refresh_token(bench).await?;
    let ciphertexts: Vec<String> = ids
        .iter()
        .map(|&id| {
            let (user, provider) = seed::integration(id);
            bench.keys.encrypt(&refresh_token, &Aad::refresh_token(user, provider))
        })
        .collect();
    let now = Utc::now().naive_utc();
    let mut db = bench.db().await?;
    // One-hour tokens granted an hour ago, expired a minute ago.
    sqlx::query(
        "UPDATE oauth_tokens t SET refresh_token = v.refresh_token, expires_at = $3, updated_at = $4
         FROM UNNEST($1::int4[], $2::text[]) AS v(id, refresh_token) WHERE t.integration_id = v.id",
    )
    .bind(&ids)
    .bind(&ciphertexts)
    .bind(now - chrono::Duration::seconds(60))
    .bind(now - chrono::Duration::seconds(3660))
    .execute(&mut db)
    .await?;

    // A fresh service: nothing of the expired rows is in any cache.
    let (service, _) = bench.start_service("service (storm)", Profile::Standard, None).await?;
    let sampler = RssSampler::start(&service);
    let others = wrk::spawn(
        &bench.lua,
        &Load {
            base_url: service.base_url.clone(),
            connections: 64,
            seconds: 600,
            requests: Requests::Counted {
                template: format!("{API}/integrations/{{id}}/token"),
                lo: OTHERS.0,
                hi: OTHERS.1,
            },
            headers: vec![format!("Authorization: Bearer {SERVICE_KEY}")],
        },
    )?;
    let wrk_started = SystemTime::now();
    let before_seconds = if bench.options.quick { 2 } else { 3 };
    // One second for wrk to connect, then the others' throughput before the storm.
    tokio::time::sleep(Duration::from_secs(1 + before_seconds)).await;
    let before_window = (slot(wrk_started) + 10, slot(SystemTime::now()));

    // Open the storm's connections first, so the storm measures refreshes, not TCP handshakes.
    let client = reqwest::Client::builder().timeout(cap + Duration::from_secs(30)).build()?;
    let warming = Instant::now();
    let mut warm = tokio::task::JoinSet::new();
    for _ in 0..integrations {
        let (client, url) = (client.clone(), format!("{}/healthz", service.base_url));
        warm.spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()).unwrap_or(0) });
    }
    let mut warmed = 0;
    while let Some(status) = warm.join_next().await {
        warmed += usize::from(status? == 200);
    }
    let warm_up = warming.elapsed();
    let rss_connections_open = service.rss_kb() as f64 / 1024.0;
    println!(
        "  {warmed}/{integrations} connections opened in {:.1} s ({rss_connections_open:.1} MB RSS with them open)",
        warm_up.as_secs_f64()
    );

    let google = &bench.emulators.google.handle;
    google.set_fault(Fault::Slow(PROVIDER_DELAY));
    let refreshes_before = google.counters();
    let fired_wall = SystemTime::now();
    let fired = Instant::now();
    // When the provider has answered every refresh.
    let all_at_provider = {
        let (google, wanted) = (google.clone(), refreshes_before.refreshes + integrations as u64);
        tokio::spawn(async move {
            while fired.elapsed() < cap + Duration::from_secs(30) {
                if google.counters().refreshes >= wanted {
                    return Some(fired.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None
        })
    };
    let mut storm = tokio::task::JoinSet::new();
    for &id in &ids {
        let (client, url) = (client.clone(), format!("{}{API}/integrations/{id}/token", service.base_url));
        storm.spawn(async move {
            let answer = client.get(url).bearer_auth(SERVICE_KEY).send().await;
            let (outcome, failed_header, token) = match answer {
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    let failed = answer.headers().contains_key("x-token-refresh-failed");
                    let body: Value = answer.json().await.unwrap_or_default();
                    let outcome = match body["code"].as_str() {
                        Some(code) => format!("{status} {code}"),
                        None => status.to_string(),
                    };
                    (outcome, failed, body["access_token"].as_str().unwrap_or_default().to_owned())
                }
                Err(error) if error.is_timeout() => ("no answer (client timeout)".to_owned(), false, String::new()),
                Err(error) if error.is_connect() => ("no answer (connect error)".to_owned(), false, String::new()),
                Err(_) => ("no answer (connection closed)".to_owned(), false, String::new()),
            };
            (fired.elapsed(), outcome, failed_header, token.starts_with("ya29.emu-"))
        });
    }
    let deadline = tokio::time::Instant::now() + cap;
    let mut waits = vec![];
    let mut answered = 0;
    let mut outcomes: std::collections::BTreeMap<String, u64> = Default::default();
    let (mut failed, mut stale, mut refresh_failed_headers) = (0, 0, 0);
    loop {
        match tokio::time::timeout_at(deadline, storm.join_next()).await {
            Ok(Some(done)) => {
                let (wait, outcome, failed_header, fresh) = done?;
                answered += 1;
                if outcome != "200" {
                    failed += 1;
                } else if !fresh {
                    stale += 1;
                } else {
                    waits.push(wait);
                }
                *outcomes.entry(outcome).or_default() += 1;
                refresh_failed_headers += u64::from(failed_header);
            }
            Ok(None) => break,
            Err(_) => {
                storm.abort_all();
                break;
            }
        }
    }
    let unfinished = integrations - answered;
    let last = waits.iter().max().copied().unwrap_or_default();
    let storm_end = fired.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    wrk::interrupt(&others);
    let others = wrk::finish(others).await?;
    let peak = sampler.finish().await;
    // Refreshes still running (a caller gave up, or the cap passed) finish on their own, and
    // shutdown waits for them: count once the service has stopped.
    service.stop().await;
    all_at_provider.abort();
    let all_at_provider = all_at_provider.await.ok().flatten();
    google.set_fault(Fault::None);
    let refreshes_after = google.counters();
    let refreshed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM oauth_tokens WHERE integration_id = ANY($1) AND expires_at > $2")
            .bind(&ids)
            .bind(Utc::now().naive_utc())
            .fetch_one(&mut db)
            .await?;

    let fire_slot = slot(fired_wall);
    let end_slot = slot(fired_wall + storm_end) + 1;
    let before = rate(&others.buckets, before_window.0, before_window.1);
    let during = rate(&others.buckets, fire_slot, end_slot);
    waits.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p = |q: f64| {
        waits.get(((waits.len() as f64 * q) as usize).min(waits.len().saturating_sub(1))).map_or(0.0, |d| ms(*d))
    };
    let emulator_refreshes = refreshes_after.refreshes - refreshes_before.refreshes;
    let all_done = unfinished == 0 && failed == 0 && stale == 0;
    let figures = json!({
        "integrations": integrations,
        "provider_delay_ms": ms(PROVIDER_DELAY),
        "all_refreshed_seconds": all_done.then_some(last.as_secs_f64()),
        "all_refreshed_at_provider_seconds": all_at_provider.map(|d| d.as_secs_f64()),
        "last_answer_seconds": storm_end.as_secs_f64(),
        "answers": outcomes,
        "cap_seconds": cap.as_secs(),
        "unfinished_at_cap": unfinished,
        "failed_answers": failed,
        "stale_tokens_handed_out": stale,
        "refresh_failed_headers": refresh_failed_headers,
        "emulator_refreshes": emulator_refreshes,
        "emulator_failed_token_requests": refreshes_after.failed_token_requests - refreshes_before.failed_token_requests,
        "refreshed_rows": refreshed,
        "worst_wait_ms": ms(last),
        "p50_wait_ms": p(0.5),
        "p99_wait_ms": p(0.99),
        "others_rps_before": before,
        "others_rps_during": during,
        "others_ratio": during / before.max(1e-9),
        "others_errors": others.errors(),
        "peak_rss_mb": peak as f64 / 1024.0,
        "rss_with_connections_open_mb": rss_connections_open,
        "connections_warm_up_seconds": warm_up.as_secs_f64(),
    });
    println!(
        "  {answered}/{integrations} answered within the {} s cap ({failed} failed, {stale} handed out a stale token, {refresh_failed_headers} with x-token-refresh-failed)",
        cap.as_secs()
    );
    println!(
        "  answers: {}",
        outcomes.iter().map(|(outcome, n)| format!("{n} x {outcome}")).collect::<Vec<_>>().join(", ")
    );
    match figures["all_refreshed_seconds"].as_f64() {
        Some(seconds) => println!("  all {integrations} hand-outs answered with a fresh token within {seconds:.2} s"),
        None => println!(
            "  NOT every hand-out got a fresh token; the last answer came after {:.2} s",
            storm_end.as_secs_f64()
        ),
    }
    match all_at_provider {
        Some(at) => {
            println!("  the provider had answered all {integrations} refreshes after {:.2} s", at.as_secs_f64())
        }
        None => println!("  the provider did not see all {integrations} refreshes within the cap"),
    }
    println!(
        "  emulator refreshes: {emulator_refreshes} (must be exactly {integrations}); token rows now fresh: {refreshed}"
    );
    println!(
        "  wait of the hand-outs that got a fresh token: p50 {:.0} ms, p99 {:.0} ms, worst {:.0} ms (= {:.1} x the provider's 100 ms)",
        p(0.5),
        p(0.99),
        ms(last),
        ms(last) / ms(PROVIDER_DELAY)
    );
    println!(
        "  other integrations (wrk, 64 connections): {before:.0} req/s before, {during:.0} req/s during the storm = {:.2}x ({} non-2xx, {} socket errors)",
        during / before.max(1e-9),
        others.non_2xx,
        others.socket_errors
    );
    println!("  service peak RSS {:.1} MB", peak as f64 / 1024.0);
    if emulator_refreshes as usize != integrations {
        println!(
            "  NOTE: the emulator counted {emulator_refreshes} refreshes for {integrations} integrations ({})",
            if (emulator_refreshes as usize) > integrations {
                "some refreshed more than once"
            } else {
                "some never refreshed"
            }
        );
    }
    results.other_peaks.push(("refresh storm".into(), peak as f64 / 1024.0));
    results.storm = Some(figures);
    Ok(())
}

//! Scenario (c): the full connect flow as browsers run it, many at once. Each flow is `POST
//! /initiate` with the user's JWT from a page of the service's own origin (so the answer's flow
//! cookie binds the browser and `authorization_url` is the provider's), the consent form posted
//! to the emulator (as tests/api/flow/support.rs `consent()` does), and the callback with the
//! cookie.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use url::Url;

use crate::seed::{FIRST_FLOW_USER, PROVIDERS, USERS};
use crate::{API, Bench};

/// One flow from initiate to a stored connection.
async fn connect(client: &reqwest::Client, base: &str, user: i32, provider: &str) -> anyhow::Result<()> {
    let initiate = client
        .post(format!("{base}{API}/initiate"))
        .bearer_auth(Bench::user_jwt(user))
        .header("origin", base)
        .json(&json!({ "provider": provider }))
        .send()
        .await
        .context("initiate")?;
    let status = initiate.status();
    let cookie = initiate
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::to_owned);
    let body: Value = initiate.json().await.unwrap_or_default();
    if status != 200 {
        bail!("initiate answered {status}: {}", body["code"]);
    }
    let cookie = cookie.context("initiate set no flow cookie")?;
    let authorization = Url::parse(body["authorization_url"].as_str().context("no authorization_url")?)?;

    let mut form: Vec<(String, String)> = authorization.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
    form.push(("decision".into(), "approve".into()));
    form.push(("login".into(), format!("user{user}@bench.example")));
    let mut action = authorization.clone();
    action.set_query(None);
    let consent = client.post(action).form(&form).send().await.context("consent")?;
    if consent.status() != 303 {
        bail!("the consent form answered {}", consent.status());
    }
    let callback = consent
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .context("the consent form's 303 has no Location")?
        .to_owned();

    let answer = client.get(&callback).header("cookie", cookie).send().await.context("callback")?;
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or_default();
    if status != 200 || body["status"] != "active" {
        bail!("the callback answered {status}: {}", body.get("code").unwrap_or(&body["status"]));
    }
    Ok(())
}

/// `in_flight` browsers each run flows back to back for `seconds`; flows/s, failures, latencies.
pub async fn run(base: &str, in_flight: usize, seconds: u64) -> anyhow::Result<Value> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?;
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let flow_users = (USERS - FIRST_FLOW_USER + 1) as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let (client, next, failures, base) = (client.clone(), next.clone(), failures.clone(), base.to_owned());
        tasks.spawn(async move {
            let mut latencies = vec![];
            while Instant::now() < deadline {
                let k = next.fetch_add(1, Ordering::Relaxed);
                // Each (user, provider) is connected once: the flows' users have no integration yet.
                let provider = PROVIDERS[(k % 4) as usize];
                let user = FIRST_FLOW_USER + ((k / 4) % flow_users) as i32;
                let flow_started = Instant::now();
                match connect(&client, &base, user, provider).await {
                    Ok(()) => latencies.push(flow_started.elapsed()),
                    Err(error) => failures.lock().unwrap().push(format!("{provider}: {error:#}")),
                }
            }
            latencies
        });
    }
    let mut latencies: Vec<Duration> = vec![];
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let failures = failures.lock().unwrap().clone();
    let mut kinds: Vec<(String, usize)> = vec![];
    for failure in &failures {
        match kinds.iter_mut().find(|(kind, _)| kind == failure) {
            Some((_, count)) => *count += 1,
            None => kinds.push((failure.clone(), 1)),
        }
    }
    let percentile =
        |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied();
    let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    Ok(json!({
        "in_flight": in_flight,
        "seconds": elapsed,
        "flows": latencies.len(),
        "failures": failures.len(),
        "failure_kinds": kinds.iter().take(5).map(|(kind, count)| format!("{count} x {kind}")).collect::<Vec<_>>(),
        "flows_per_second": latencies.len() as f64 / elapsed,
        "p50_ms": ms(percentile(0.5)),
        "p99_ms": ms(percentile(0.99)),
        "max_ms": ms(latencies.last().copied()),
    }))
}

//! Real-browser tests: headless Chromium (Debian's `chromium`) driven by Playwright from the Node
//! scripts in `tests/browser/`, against the real service binary in sandbox mode. Each test starts
//! the service, runs one script with its settings in the environment, and asserts that it passed
//! and left its screenshots (in `target/browser-screenshots/<test>/`). With `UPDATE_SCREENSHOTS=1`
//! the screenshots the README shows are copied to `docs/screenshots/`.
//!
//! The tools come from `scripts/setup-test-tools` (Chromium from Debian, `npm ci` in
//! `tests/browser`); without them these tests fail and say so.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use oauth_manager::store::{SqliteStore, Store as _};

use crate::support::{JWT_SECRET, SERVICE_KEY, ServiceProcess, user_token};

/// Debian's Chromium, which Playwright drives (no browser download).
const CHROMIUM: &str = "/usr/bin/chromium";
/// A script that has not finished by then is killed and the test fails.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);
/// The PNG file signature.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Fails, naming what is missing and how to get it, unless Chromium, Node and the scripts'
/// packages are installed: a browser test never passes by skipping.
fn require_browser_tools() {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (Debian's chromium package)"));
    }
    if !repository().join("tests/browser/node_modules/playwright-core/package.json").exists() {
        missing.push("tests/browser/node_modules (npm ci in tests/browser)".to_owned());
    }
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|output| output.status.success()) {
        missing.push("node (Node.js 20 or later) on PATH".to_owned());
    }
    assert!(missing.is_empty(), "browser tests need {}: run scripts/setup-test-tools", missing.join(", "));
}

/// An empty folder `target/browser-screenshots/<name>` (what an earlier run left is removed).
fn screenshot_dir(name: &str) -> PathBuf {
    let dir = repository().join("target/browser-screenshots").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A temp folder for one test's database, data dir and service log.
fn work_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oam-browser-{name}-{}", oauth_manager::crypto::random_token(6)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The service's settings for a sandbox run in `dir`: SQLite there, the emulators on, fixed
/// secrets (so the test can sign JWTs), and `extra`.
fn sandbox_env(dir: &Path, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("DATABASE_URL", format!("sqlite://{}/oauth-manager.db", dir.display())),
        ("OAUTH_DATA_DIR", dir.display().to_string()),
        ("OAUTH_SANDBOX", "on".to_owned()),
        ("JWT_SECRET_KEY", JWT_SECRET.to_owned()),
        ("OAUTH_ENCRYPTION_KEY", format!("k1:{}", "33".repeat(32))),
        ("OAUTH_SERVICE_API_KEYS", SERVICE_KEY.to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    env.extend(extra.iter().cloned());
    env.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
}

/// A user of the host application in the database the service in `dir` will use: its JWT.
async fn host_user(dir: &Path, email: &str) -> String {
    let store =
        SqliteStore::connect(&format!("sqlite://{}/oauth-manager.db?mode=rwc", dir.display()), 1).await.unwrap();
    store.migrate().await.unwrap();
    let user_id = store.create_user(email).await.unwrap();
    user_token(user_id, email, &[])
}

/// `http://localhost:<port>` of a service whose PUBLIC_BASE_URL is its default: a browser must
/// use that origin (the callback URLs, cookies and CORS are built from it).
fn default_public_url(service: &ServiceProcess) -> String {
    let port = service.base_url.rsplit(':').next().unwrap();
    format!("http://localhost:{port}")
}

/// Runs `node tests/browser/<script>` with `env`: `Err` with what failed and a pointer to the
/// service's log when it failed. Its steps are printed either way (`--nocapture` shows them).
async fn run_script(script: &str, env: &[(&str, String)], service_log: &Path) -> Result<(), String> {
    let started = Instant::now();
    let mut command = tokio::process::Command::new("node");
    command
        .arg(format!("tests/browser/{script}"))
        .current_dir(repository())
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .env("CHROMIUM", CHROMIUM)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("node starts");
    let Ok(output) = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output()).await else {
        return Err(format!(
            "{script} did not finish within {SCRIPT_TIMEOUT:?}; service log: {}",
            service_log.display()
        ));
    };
    let output = output.expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Debian's chromium wrapper trips over a shell test in this sandbox's kernel; it is harmless.
    let stderr: String = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| !line.contains("unexpected operator"))
        .map(|line| format!("{line}\n"))
        .collect();
    println!("{script} ({:.1} s):\n{stdout}{stderr}", started.elapsed().as_secs_f64());
    if output.status.success() {
        return Ok(());
    }
    // The script's steps are printed above; what failed is on its stderr.
    Err(format!("{script} failed ({}):\n{}\nservice log: {}", output.status, stderr.trim(), service_log.display()))
}

/// Asserts that each of `names` is a non-empty PNG in `dir`.
fn assert_screenshots(dir: &Path, names: &[&str]) {
    for name in names {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("screenshot {}: {error}", path.display()));
        assert!(bytes.len() > PNG_SIGNATURE.len() && bytes.starts_with(PNG_SIGNATURE), "{} is a PNG", path.display());
    }
}

/// With `UPDATE_SCREENSHOTS=1`: copies `from` (in `dir`) to `docs/screenshots/<to>`, if the
/// script vouched for it (took it once every expectation about its page held: `verified.txt`).
fn update_documented_screenshot(dir: &Path, from: &str, to: &str) {
    if std::env::var("UPDATE_SCREENSHOTS").as_deref() != Ok("1") {
        return;
    }
    let verified = std::fs::read_to_string(dir.join("verified.txt")).unwrap_or_default();
    if !verified.lines().any(|line| line == from) {
        println!("UPDATE_SCREENSHOTS: {from} was not verified; docs/screenshots/{to} left as it was");
        return;
    }
    let docs = repository().join("docs/screenshots");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::copy(dir.join(from), docs.join(to)).unwrap();
    println!("UPDATE_SCREENSHOTS: docs/screenshots/{to} updated from {from}");
}

/// The product's frontend on its own origin (`http://localhost:<port>`, a development server's
/// place) calls the API on the service's origin with CORS and a Bearer JWT, and follows the
/// handoff link; a second browser opening that link is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frontend_on_another_origin_connects_google_in_a_real_browser() {
    require_browser_tools();
    let dir = work_dir("cross-origin");
    let screenshots = screenshot_dir("host_frontend-cross-origin");
    let jwt = host_user(&dir, "frontend@example.com").await;
    let app_url = format!("http://localhost:{}", free_port());
    let env = sandbox_env(&dir, &[("OAUTH_ALLOWED_RETURN_ORIGINS", app_url.clone())]);
    let log = dir.join("service.log");
    let service = ServiceProcess::start_logging_to(&env, Some(&log)).await;
    let script_env = [
        ("TOPOLOGY", "cross-origin".to_owned()),
        ("APP_URL", app_url),
        ("VITE_API_URL", default_public_url(&service)),
        ("SERVICE_URL", service.base_url.clone()),
        ("OAM_JWT", jwt),
        ("SCREENSHOT_DIR", screenshots.display().to_string()),
    ];
    let outcome = run_script("host_frontend.mjs", &script_env, &log).await;
    update_documented_screenshot(&screenshots, "callback-cross-origin.png", "callback-page.png");
    if let Err(report) = outcome {
        panic!("{report}");
    }
    assert_screenshots(
        &screenshots,
        &[
            "consent-cross-origin.png",
            "handoff-refused.png",
            "callback-cross-origin.png",
            "back-in-the-app-cross-origin.png",
        ],
    );
    drop(service);
    std::fs::remove_dir_all(dir).ok();
}

/// The product's frontend behind a reverse proxy on one origin (the service's PUBLIC_BASE_URL):
/// `/initiate` sets the flow cookie through the proxy and the browser goes straight to Google.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frontend_behind_a_same_origin_proxy_connects_google_in_a_real_browser() {
    require_browser_tools();
    let dir = work_dir("same-origin");
    let screenshots = screenshot_dir("host_frontend-same-origin");
    let jwt = host_user(&dir, "frontend@example.com").await;
    // The browser sees only the proxy: the callback and the emulators are reached through it.
    let proxy_url = format!("http://localhost:{}", free_port());
    let env = sandbox_env(&dir, &[("PUBLIC_BASE_URL", proxy_url.clone())]);
    let log = dir.join("service.log");
    let service = ServiceProcess::start_logging_to(&env, Some(&log)).await;
    let script_env = [
        ("TOPOLOGY", "same-origin".to_owned()),
        ("APP_URL", proxy_url.clone()),
        ("VITE_API_URL", proxy_url),
        ("SERVICE_URL", service.base_url.clone()),
        ("OAM_JWT", jwt),
        ("SCREENSHOT_DIR", screenshots.display().to_string()),
    ];
    if let Err(report) = run_script("host_frontend.mjs", &script_env, &log).await {
        panic!("{report}");
    }
    assert_screenshots(
        &screenshots,
        &["consent-same-origin.png", "callback-same-origin.png", "back-in-the-app-same-origin.png"],
    );
    drop(service);
    std::fs::remove_dir_all(dir).ok();
}

/// The service's own connect page: the sandbox's demo sign-in, connecting Google and Notion,
/// refreshing and disconnecting, each through the page's buttons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_page_connects_refreshes_and_disconnects_in_a_real_browser() {
    require_browser_tools();
    let dir = work_dir("connect-page");
    let screenshots = screenshot_dir("connect_page");
    let log = dir.join("service.log");
    let service = ServiceProcess::start_logging_to(&sandbox_env(&dir, &[]), Some(&log)).await;
    let script_env =
        [("SERVICE_URL", default_public_url(&service)), ("SCREENSHOT_DIR", screenshots.display().to_string())];
    let outcome = run_script("connect_page.mjs", &script_env, &log).await;
    update_documented_screenshot(&screenshots, "connect-page.png", "connect-page.png");
    if let Err(report) = outcome {
        panic!("{report}");
    }
    assert_screenshots(
        &screenshots,
        &[
            "connect-page-signed-out.png",
            "connect-page-providers.png",
            "connect-page.png",
            "connect-page-refreshed.png",
            "connect-page-two-connections.png",
            "connect-page-disconnected.png",
        ],
    );
    drop(service);
    std::fs::remove_dir_all(dir).ok();
}

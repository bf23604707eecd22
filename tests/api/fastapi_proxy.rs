//! The FastAPI example (`examples/fastapi_proxy`) in front of the real binary in sandbox mode: a
//! browser on the proxy's origin runs the whole connect loop through the proxy, then the example's
//! backend route reads the user's profile with a token oauth-manager hands it as a service.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oauth_manager::store::{SqliteStore, Store};
use reqwest::Response;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::support::{JWT_SECRET, SERVICE_KEY, ServiceProcess, user_token};

const API: &str = "/api/v1/oauth";
/// The address the browser's own proxy says it came from; the FastAPI proxy appends its peer
/// (127.0.0.1, trusted by oauth-manager) after it.
const CLIENT_ADDRESS: &str = "203.0.113.7";
const BROWSER: &str = "fastapi-proxy-test-browser";

/// The example served by uvicorn from `examples/fastapi_proxy/.venv`; killed when dropped.
struct Uvicorn {
    child: Child,
    base_url: String,
    log: PathBuf,
}

impl Uvicorn {
    /// Starts the example on `port` with exactly `env`, and waits until it answers.
    async fn start(port: u16, env: &[(&str, String)], log: PathBuf) -> Self {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fastapi_proxy");
        let python = example.join(".venv/bin/python");
        assert!(python.exists(), "{} is missing: run scripts/setup-test-tools", python.display());
        let output = std::fs::File::create(&log).unwrap();
        let child = Command::new(&python)
            .args(["-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", &port.to_string()])
            // request.client is then the peer that connected, which is what X-Forwarded-For appends.
            .arg("--no-proxy-headers")
            .current_dir(&example)
            .env_clear()
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .stdout(Stdio::from(output.try_clone().unwrap()))
            .stderr(Stdio::from(output))
            .spawn()
            .expect("uvicorn starts");
        // Owned by the guard at once: a failed start is killed too.
        let mut uvicorn = Self { child, base_url: format!("http://127.0.0.1:{port}"), log };
        for _ in 0..200 {
            if let Some(status) = uvicorn.child.try_wait().unwrap() {
                panic!("uvicorn exited ({status}):\n{}", uvicorn.log_text());
            }
            let ready = reqwest::get(format!("{}/openapi.json", uvicorn.base_url)).await;
            if ready.is_ok_and(|response| response.status() == 200) {
                return uvicorn;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("uvicorn did not answer on port {port}:\n{}", uvicorn.log_text());
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Uvicorn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (free when asked; nothing else in the test binds by number).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Asserts `status` and returns the JSON body (shown when the status differs).
async fn json_body(response: Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("JSON body ({error}): {text}"))
}

/// Every `Set-Cookie` header of `headers`, one cookie each.
fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers.get_all("set-cookie").iter().map(|value| value.to_str().unwrap().to_owned()).collect()
}

/// The user approves at the sandbox's consent page for `authorization_url`: the 303's Location.
async fn approve(browser: &reqwest::Client, authorization_url: &str) -> String {
    let page = browser.get(authorization_url).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("Approve"), "the consent page comes through the proxy");
    let url = url::Url::parse(authorization_url).unwrap();
    let mut form: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    form.push(("decision".into(), "approve".into()));
    let mut action = url.clone();
    action.set_query(None);
    let approved = browser.post(action).form(&form).send().await.unwrap();
    assert_eq!(approved.status(), 303, "the consent form redirects back: {:?}", approved.text().await);
    approved.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_loop_and_a_backend_token_work_through_the_fastapi_proxy() {
    let dir = std::env::temp_dir().join(format!("oam-fastapi-{}", oauth_manager::crypto::random_token(6)));
    std::fs::create_dir_all(&dir).unwrap();
    // Kept when the test fails: the database and both logs (shown with the failure).
    eprintln!("service.log and uvicorn.log in {}", dir.display());
    let database_url = format!("sqlite://{}/oauth-manager.db", dir.display());
    // The host application's user, created before the service starts (it migrates the same file).
    let email = "proxied@example.com";
    let user_id = {
        let store = SqliteStore::connect(&database_url, 1).await.unwrap();
        store.migrate().await.unwrap();
        store.create_user(email).await.unwrap()
    };
    let user_jwt = user_token(user_id, email, &[]);

    // The browser sees only the proxy (same-origin topology): PUBLIC_BASE_URL is the proxy's URL,
    // so the callback and the sandbox's emulators are reached through it.
    let proxy_port = free_port();
    let proxy_url = format!("http://127.0.0.1:{proxy_port}");
    let env: Vec<(String, String)> = [
        ("OAUTH_SANDBOX", "on".to_owned()),
        ("DATABASE_URL", database_url),
        ("OAUTH_DATA_DIR", dir.display().to_string()),
        ("PUBLIC_BASE_URL", proxy_url.clone()),
        ("JWT_SECRET_KEY", JWT_SECRET.to_owned()),
        ("OAUTH_ENCRYPTION_KEY", format!("k1:{}", "22".repeat(32))),
        ("OAUTH_SERVICE_API_KEYS", SERVICE_KEY.to_owned()),
        ("OAUTH_TRUSTED_PROXIES", "127.0.0.1/32".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    let service = ServiceProcess::start_logging_to(&env, Some(&dir.join("service.log"))).await;
    let proxy_env = [
        ("OAUTH_MANAGER_URL", service.base_url.clone()),
        ("OAUTH_SERVICE_API_KEY", SERVICE_KEY.to_owned()),
        ("PROFILE_URL_GOOGLE", format!("{}/_sandbox/google/userinfo", service.base_url)),
    ];
    let proxy = Uvicorn::start(proxy_port, &proxy_env, dir.join("uvicorn.log")).await;

    let mut browser_headers = HeaderMap::new();
    browser_headers.insert("x-forwarded-for", HeaderValue::from_static(CLIENT_ADDRESS));
    browser_headers.insert("user-agent", HeaderValue::from_static(BROWSER));
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(browser_headers)
        .build()
        .unwrap();
    let api = |path: &str| format!("{}{API}{path}", proxy.base_url);

    // 1. The frontend starts connecting Google on its own origin; the flow cookie comes back.
    let initiated = browser
        .post(api("/initiate"))
        .bearer_auth(&user_jwt)
        .header("origin", &proxy_url)
        .json(&json!({"provider": "google"}))
        .send()
        .await
        .unwrap();
    let cookies = set_cookies(initiated.headers());
    assert_eq!(cookies.len(), 1, "one flow cookie, in its own header: {cookies:?}");
    let flow_cookie = &cookies[0];
    assert!(flow_cookie.starts_with("oam_flow_"), "{flow_cookie}");
    assert!(flow_cookie.contains("HttpOnly") && flow_cookie.contains("SameSite=Lax"), "{flow_cookie}");
    assert!(flow_cookie.contains(&format!("Path={API};")), "{flow_cookie}");
    let flow_cookie = flow_cookie.split(';').next().unwrap().to_owned();
    let initiated = json_body(initiated, 200).await;
    let authorization_url = initiated["authorization_url"].as_str().unwrap();
    assert!(authorization_url.starts_with(&format!("{proxy_url}/_sandbox/google/")), "{authorization_url}");

    // 2. The user approves at the (emulated) provider, which sends the browser to the callback.
    let callback_url = approve(&browser, authorization_url).await;
    assert!(callback_url.starts_with(&format!("{proxy_url}{API}/callback/google?")), "{callback_url}");

    // 3. The browser lands on the callback through the proxy, carrying the flow cookie.
    let connected = browser
        .get(&callback_url)
        .header("cookie", &flow_cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let connected = json_body(connected, 200).await;
    assert_eq!(connected["provider"], "google", "{connected}");
    assert_eq!(connected["status"], "active", "{connected}");

    let integrations =
        json_body(browser.get(api("/integrations")).bearer_auth(&user_jwt).send().await.unwrap(), 200).await;
    let integrations = integrations.as_array().unwrap_or_else(|| panic!("a list: {integrations}"));
    assert_eq!(integrations.len(), 1, "{integrations:?}");
    assert_eq!(integrations[0]["provider"], "google");
    assert_eq!(integrations[0]["status"], "active");

    // 4. The example's backend route: a token as a service, then the provider's userinfo with it.
    let profile_url = |provider: &str| format!("{}/example/profile/{user_id}/{provider}", proxy.base_url);
    let profile = json_body(reqwest::get(profile_url("google")).await.unwrap(), 200).await;
    assert_eq!(profile["email"], "alice@example.com", "the sandbox account's profile: {profile}");
    assert!(profile["sub"].as_str().is_some_and(|sub| !sub.is_empty()), "{profile}");
    // Not connected: oauth-manager's problem passes through with its status.
    let not_connected = reqwest::get(profile_url("notion")).await.unwrap();
    let content_type = not_connected.headers()["content-type"].to_str().unwrap().to_owned();
    let problem = json_body(not_connected, 404).await;
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(problem["code"], "not_found", "{problem}");

    // 5. The audit log names the browser, not the proxy: oauth-manager believed the forwarded
    // address because the proxy is in OAUTH_TRUSTED_PROXIES.
    let audit =
        json_body(browser.get(api("/audit?action=connect")).bearer_auth(&user_jwt).send().await.unwrap(), 200).await;
    let connect = &audit["events"][0];
    assert_eq!(connect["ip_address"], CLIENT_ADDRESS, "{audit}");
    assert_eq!(connect["user_agent"], BROWSER, "{audit}");

    drop(proxy);
    assert!(service.terminate().success(), "oauth-manager shuts down cleanly");
    std::fs::remove_dir_all(dir).ok();
}

//! How a flow reaches the browser that does it: `/initiate` from the service's own pages (the
//! flow cookie) or from elsewhere (an authorization link through `GET /handoff/{state}` that
//! binds the first browser to open it), CORS for the app's origins, the Connect button's
//! `GET /connect/{provider}`, connect links minted by a backend, the pages a browser sees instead
//! of JSON, the trusted proxies' client address, and the sandbox's sign-in.

use std::time::Duration;

use reqwest::Response;
use reqwest::header::{ACCEPT, COOKIE, ORIGIN};
use serde_json::{Value, json};

use super::support::{API, Harness, json_body, problem, query_param, with_query_param};
use crate::on_both_backends;
use crate::support::{Backend, SERVICE_KEY, TestApp, TestConfig, config_file, fresh_sqlite_url};

/// The app's origin in the harness (`OAUTH_ALLOWED_RETURN_ORIGINS`).
const APP: &str = "http://app.test";
/// What a browser sends when it navigates to a page.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// `POST /initiate` as the harness user with `Origin: origin` (None: not a browser).
async fn initiate_from(h: &Harness, origin: Option<&str>, extra: Value) -> Response {
    let mut body = json!({"provider": "google"});
    body.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    let mut request = h.app.client.post(h.app.url(&format!("{API}/initiate"))).bearer_auth(&h.user.token).json(&body);
    if let Some(origin) = origin {
        request = request.header(ORIGIN, origin);
    }
    request.send().await.unwrap()
}

/// The `name=value` of the cookie a response sets, if any.
fn set_cookie(response: &Response) -> Option<String> {
    let header = response.headers().get("set-cookie")?.to_str().ok()?;
    header.split(';').next().map(str::to_owned)
}

/// A browser with no cookies opens `link` with `headers`: the answer.
async fn open(h: &Harness, link: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = h.app.client.get(link);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// Opens `link` as a browser coming from the app: the provider URL and the flow cookie it set.
async fn open_from_app(h: &Harness, link: &str) -> (String, String) {
    let answer = open(h, link, &[("referer", "http://app.test/settings")]).await;
    assert_eq!(answer.status(), 303, "{}", answer.text().await.unwrap());
    let cookie = set_cookie(&answer).expect("the link sets the flow cookie");
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    (location, cookie)
}

/// The browser holding `cookie` lands on `callback`.
async fn callback_with(h: &Harness, callback: &str, cookie: &str) -> Response {
    h.app.client.get(callback).header(COOKIE, cookie).send().await.unwrap()
}

async fn the_services_own_pages_get_the_providers_url_and_others_a_link_that_binds_the_browser(backend: Backend) {
    let h = Harness::start(backend).await;
    // From a page of the service's origin the cookie reaches the browser: straight to Google.
    let own = initiate_from(&h, Some(&h.app.url("")), json!({})).await;
    assert!(set_cookie(&own).is_some_and(|cookie| cookie.starts_with("oam_flow_")));
    let own = json_body(own, 200).await;
    assert!(own["authorization_url"].as_str().unwrap().starts_with(&h.google.base_url), "{own}");

    // From the app's origin (its dev server on another port) the answer's cookie is dropped by
    // the browser: the link passes through the service, and the first browser to open it is bound.
    let flow = json_body(initiate_from(&h, Some(APP), json!({})).await, 200).await;
    let link = flow["authorization_url"].as_str().unwrap();
    assert_eq!(link, h.app.url(&format!("{API}/handoff/{}", flow["state"].as_str().unwrap())));
    let (provider_url, cookie) = open_from_app(&h, link).await;
    assert_eq!(query_param(&provider_url, "state").as_deref(), flow["state"].as_str());
    assert_eq!(query_param(&provider_url, "code_challenge_method").as_deref(), Some("S256"));
    assert!(query_param(&provider_url, "nonce").is_some(), "{provider_url}");
    let callback = h.approve(&provider_url, None, None).await;

    // Only that browser: another one (a forwarded link) is refused and the state is spent.
    let second = open(&h, link, &[]).await;
    problem(second, 400, "handoff_used").await;
    let connected = json_body(callback_with(&h, &callback, &cookie).await, 200).await;
    assert_eq!(connected["status"], "active", "{connected}");
    problem(open(&h, link, &[]).await, 400, "state_used").await;
}

async fn a_link_opened_from_another_site_or_too_late_is_refused(backend: Backend) {
    // Long enough for the first part on a loaded machine, short enough to wait out.
    let settings = config_file("[flow]\nhandoff_seconds = 4\n");
    let h = Harness::start_with(backend, |config| config.set("OAUTH_CONFIG_FILE", settings)).await;
    let flow = json_body(initiate_from(&h, Some(APP), json!({})).await, 200).await;
    let link = flow["authorization_url"].as_str().unwrap();
    // Another site's page (a forwarded link in a web mail), with or without its Referer.
    problem(open(&h, link, &[("referer", "https://mail.example.com/inbox")]).await, 400, "handoff_foreign_site").await;
    problem(open(&h, link, &[("sec-fetch-site", "cross-site")]).await, 400, "handoff_foreign_site").await;
    // From no page (a link in a chat or mail program), a browser with nothing of the flow's:
    // the attacker's own flow, minted as the victim clicks. Redirected through another site
    // (the app's Referer kept, but the navigation cross-site). A sibling site's page. A browser
    // of another user.
    problem(open(&h, link, &[]).await, 400, "handoff_foreign_site").await;
    problem(open(&h, link, &[("sec-fetch-site", "none")]).await, 400, "handoff_foreign_site").await;
    let redirected = [("sec-fetch-site", "cross-site"), ("referer", "http://app.test/settings")];
    problem(open(&h, link, &redirected).await, 400, "handoff_foreign_site").await;
    let sibling = [("sec-fetch-site", "same-site"), ("referer", "http://user-content.test/page")];
    problem(open(&h, link, &sibling).await, 400, "handoff_foreign_site").await;
    let stranger = h.app.user("stranger@example.com").await;
    let other_user = h.app.client.get(link).bearer_auth(&stranger.token).send().await.unwrap();
    problem(other_user, 400, "state_user_mismatch").await;
    // Refusals change nothing: the app's browser still opens it in time.
    let (provider_url, _) = open_from_app(&h, link).await;
    assert!(provider_url.starts_with(&h.google.base_url));

    // From no page, but with the flow cookie `/initiate` set (curl's cookie jar): the same client.
    let jarred = initiate_from(&h, None, json!({})).await;
    let jar = set_cookie(&jarred).unwrap();
    let jarred = json_body(jarred, 200).await;
    let with_jar = open(&h, jarred["authorization_url"].as_str().unwrap(), &[("cookie", &jar)]).await;
    assert_eq!(with_jar.status(), 303, "{}", with_jar.text().await.unwrap());

    let late = json_body(initiate_from(&h, Some(APP), json!({})).await, 200).await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    problem(open(&h, late["authorization_url"].as_str().unwrap(), &[]).await, 400, "handoff_expired").await;
}

async fn the_apps_origins_get_cors_and_no_one_else_does(backend: Backend) {
    let h = Harness::start(backend).await;
    let preflight = h
        .app
        .client
        .request(reqwest::Method::OPTIONS, h.app.url(&format!("{API}/initiate")))
        .header(ORIGIN, APP)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], APP);
    let allowed = headers["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");

    let answer = initiate_from(&h, Some(APP), json!({})).await;
    assert_eq!(answer.headers()["access-control-allow-origin"], APP);
    let foreign = initiate_from(&h, Some("http://evil.test"), json!({})).await;
    assert!(foreign.headers().get("access-control-allow-origin").is_none(), "no CORS for other origins");
}

async fn a_browser_sees_a_page_where_an_api_client_gets_json(backend: Backend) {
    let h = Harness::start(backend).await;
    let flow = h.initiated("google", json!({})).await;
    let callback = h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;
    let page = h.app.client.get(&callback).header(ACCEPT, BROWSER_ACCEPT).header(COOKIE, h.flow_cookies());
    let page = page.send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("Connected Google.") && html.contains("href=\"http://app.test/\""), "{html}");

    let forged = with_query_param(&callback, "state", "forged-state-value-0123456789");
    let refused = h.app.client.get(&forged).header(ACCEPT, BROWSER_ACCEPT).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = refused.text().await.unwrap();
    assert!(html.contains("Not connected") && html.contains("invalid_state"), "{html}");
    // An API client (axios sends this Accept) keeps the problem JSON.
    let api = h.app.client.get(&forged).header(ACCEPT, "application/json, text/plain, */*").send().await.unwrap();
    let body = problem(api, 400, "invalid_state").await;
    assert!(body.to_string().len() > 2);
}

async fn the_connect_button_runs_the_whole_flow_in_one_signed_in_browser(backend: Backend) {
    let h = Harness::start(backend).await;
    let session = format!("access_token={}", h.user.token);
    let back = format!("{APP}/settings");
    let connect = h.app.url(&format!("{API}/connect/google?scopes=openid,email&return_to={back}"));
    let started = h.app.client.get(&connect).header(COOKIE, &session).send().await.unwrap();
    assert_eq!(started.status(), 303, "{}", started.text().await.unwrap());
    let flow_cookie = set_cookie(&started).expect("the flow cookie");
    let provider_url = started.headers()["location"].to_str().unwrap().to_owned();
    assert!(provider_url.starts_with(&h.google.base_url), "{provider_url}");
    assert_eq!(query_param(&provider_url, "scope").as_deref(), Some("openid email"));
    let callback = h.approve(&provider_url, None, None).await;
    // The same browser: its session and flow cookies.
    let back_home = callback_with(&h, &callback, &format!("{session}; {flow_cookie}")).await;
    assert_eq!(back_home.status(), 303);
    let location = back_home.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&back) && location.contains("oauth_status=success"), "{location}");
    let consents = json_body(h.get("/consents").await, 200).await;
    assert_eq!(consents.as_array().unwrap().len(), 1, "{consents}");

    // Not signed in: a page for a browser, problem JSON for anyone else.
    let anonymous = h.app.client.get(&connect).header(ACCEPT, BROWSER_ACCEPT).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.text().await.unwrap().contains("authentication_required"));
    problem(h.app.client.get(&connect).send().await.unwrap(), 401, "authentication_required").await;
    let unknown = h.app.client.get(h.app.url(&format!("{API}/connect/myspace"))).header(COOKIE, &session);
    problem(unknown.send().await.unwrap(), 400, "unknown_provider").await;
}

async fn a_connect_link_opens_the_flow_once_for_its_user(backend: Backend) {
    let h = Harness::start(backend).await;
    let mint = |body: Value, key: &str| {
        h.app.client.post(h.app.url(&format!("{API}/connect-links"))).bearer_auth(key.to_owned()).json(&body).send()
    };
    let link =
        json_body(mint(json!({"user_id": h.user.id, "provider": "google"}), SERVICE_KEY).await.unwrap(), 201).await;
    let url = link["url"].as_str().unwrap();
    assert!(url.starts_with(&h.app.url(&format!("{API}/handoff/"))), "{link}");
    let expires = chrono::DateTime::parse_from_rfc3339(link["expires_at"].as_str().unwrap()).unwrap();
    assert!(expires > chrono::Utc::now() + chrono::Duration::hours(23), "a day by default: {link}");

    // Opened from a mail client's page (another site): allowed for a link meant to be mailed.
    let opened = open(&h, url, &[("referer", "https://mail.example.com/inbox")]).await;
    assert_eq!(opened.status(), 303, "{}", opened.text().await.unwrap());
    let cookie = set_cookie(&opened).unwrap();
    let callback = h.approve(opened.headers()["location"].to_str().unwrap(), None, None).await;
    problem(open(&h, url, &[]).await, 400, "handoff_used").await;
    let connected = json_body(callback_with(&h, &callback, &cookie).await, 200).await;
    let integrations = json_body(h.get("/integrations").await, 200).await;
    assert_eq!(integrations[0]["id"], connected["integration_id"], "{integrations}");

    // Backends only, within the allowed lifetime, for known providers.
    let as_user = mint(json!({"user_id": h.user.id, "provider": "google"}), &h.user.token).await.unwrap();
    problem(as_user, 403, "forbidden").await;
    let forever = mint(json!({"user_id": h.user.id, "provider": "google", "expires_in": 0}), SERVICE_KEY);
    problem(forever.await.unwrap(), 400, "invalid_expires_in").await;
    let unknown = mint(json!({"user_id": h.user.id, "provider": "myspace"}), SERVICE_KEY);
    problem(unknown.await.unwrap(), 400, "unknown_provider").await;
}

on_both_backends!(
    the_services_own_pages_get_the_providers_url_and_others_a_link_that_binds_the_browser,
    a_link_opened_from_another_site_or_too_late_is_refused,
    the_apps_origins_get_cors_and_no_one_else_does,
    a_browser_sees_a_page_where_an_api_client_gets_json,
    the_connect_button_runs_the_whole_flow_in_one_signed_in_browser,
    a_connect_link_opens_the_flow_once_for_its_user,
);

/// The client address of the latest audit row of the harness user.
async fn audited_address(h: &Harness) -> String {
    let audit = json_body(h.get("/audit?limit=1").await, 200).await;
    audit["events"][0]["ip_address"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    for (trusted, expected) in [(None, "127.0.0.1"), (Some("127.0.0.1/32"), "203.0.113.7")] {
        let h = Harness::start_with(Backend::Sqlite, |config| match trusted {
            Some(proxies) => config.set("OAUTH_TRUSTED_PROXIES", proxies),
            None => config,
        })
        .await;
        let flow = h.initiated("google", json!({})).await;
        let callback = h.approve(flow["authorization_url"].as_str().unwrap(), None, None).await;
        let landed =
            h.app.client.get(&callback).header(COOKIE, h.flow_cookies()).header("x-forwarded-for", "203.0.113.7");
        json_body(landed.send().await.unwrap(), 200).await;
        assert_eq!(audited_address(&h).await, expected, "trusted proxies: {trusted:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_answers_end_with_a_newline() {
    let app = TestApp::spawn(TestConfig::new(&fresh_sqlite_url())).await;
    for path in ["/healthz", "/api/v1/oauth/integrations"] {
        let body = app.get(path, None).await.text().await.unwrap();
        assert!(body.ends_with("}\n"), "{path}: {body:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_signs_the_demo_user_in_from_its_own_pages_only() {
    let app = TestApp::spawn_sandbox(TestConfig::new(&fresh_sqlite_url()).set("OAUTH_SANDBOX", "on")).await;
    let page = app.get("/", None).await;
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    assert!(page.text().await.unwrap().contains("/assets/connect.js"));
    assert_eq!(app.get("/assets/connect.js", None).await.status(), 200);

    let sign_in = |origin: &str| app.client.post(app.url("/_sandbox/sign-in")).header(ORIGIN, origin.to_owned()).send();
    problem(sign_in("http://evil.test").await.unwrap(), 403, "cross_site_request").await;
    let signed_in = sign_in(&app.url("")).await.unwrap();
    let cookie = set_cookie(&signed_in).unwrap();
    assert!(cookie.starts_with("access_token="), "{cookie}");
    assert_eq!(json_body(signed_in, 200).await["email"], "demo@example.com");
    let mine = app.client.get(app.url(&format!("{API}/integrations"))).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(json_body(mine, 200).await, json!([]));
    let session = app.client.get(app.url("/_sandbox/sign-in")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(json_body(session, 200).await["signed_in"], true);
    // The emulators still answer beside it, their OAuth errors as the provider sends them (a
    // dead refresh token must read `invalid_grant`, so the connection is marked needs_reauth).
    let discovery = app.get("/_sandbox/google/.well-known/openid-configuration", None).await;
    assert_eq!(discovery.status(), 200);
    let (client_id, client_secret) = oauth_manager::oauth::sandbox::credentials(provider_emulators::Flavor::Google);
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "never-issued"),
        ("client_id", client_id),
        ("client_secret", client_secret),
    ];
    let refused = app.client.post(app.url("/_sandbox/google/token")).form(&form).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(json_body(refused, 400).await["error"], "invalid_grant");

    // Outside sandbox mode there is no such thing.
    let production = TestApp::spawn(TestConfig::new(&fresh_sqlite_url())).await;
    let refused = production.client.post(production.url("/_sandbox/sign-in")).header(ORIGIN, production.url(""));
    assert_eq!(refused.send().await.unwrap().status(), 404);
}

use provider_emulators::{Counters, EmulatorConfig, Fault, Flavor, IdTokenFault, RunningEmulator};
use serde_json::Value;

use crate::support::*;

/// Runs the consent step and returns (code, verifier).
async fn authorize(emulator: &RunningEmulator, scope: &str, extra: &[(&str, &str)]) -> (String, String) {
    let (verifier, challenge) = pkce();
    let mut params = vec![
        ("client_id", CLIENT_ID),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT_URI),
        ("state", "state-1"),
        ("scope", scope),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("nonce", "nonce-1"),
        ("decision", "approve"),
    ];
    params.extend_from_slice(extra);
    let location = consent(emulator, &params).await;
    assert!(location.as_str().starts_with(REDIRECT_URI));
    assert_eq!(query_param(&location, "state").as_deref(), Some("state-1"));
    assert_eq!(query_param(&location, "iss"), emulator.endpoints().issuer);
    (query_param(&location, "code").unwrap(), verifier)
}

async fn exchange(emulator: &RunningEmulator, code: &str, verifier: &str) -> (u16, Value) {
    let params = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", verifier),
    ];
    token_request(emulator, &params).await
}

const OFFLINE: &[(&str, &str)] = &[("access_type", "offline"), ("prompt", "consent")];

#[tokio::test]
async fn code_exchange_with_pkce_works_once_and_a_replay_kills_its_tokens() {
    let google = start(Flavor::Google).await;
    let (code, verifier) = authorize(&google, "openid email profile", OFFLINE).await;

    let (status, body) = exchange(&google, &code, &verifier).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "openid email profile");
    let access_token = body["access_token"].as_str().unwrap();
    assert!(access_token.starts_with("ya29."));
    assert!(body["refresh_token"].as_str().unwrap().starts_with("1//"));
    assert!(google.handle.is_access_token_live(access_token));

    let (status, replay) = exchange(&google, &code, &verifier).await;
    assert_eq!(status, 400);
    assert_eq!(replay["error"], "invalid_grant");
    assert!(!google.handle.is_access_token_live(access_token));
    let counters = google.handle.counters();
    assert_eq!((counters.authorizations, counters.code_exchanges, counters.failed_token_requests), (1, 1, 1));
}

#[tokio::test]
async fn a_wrong_or_missing_code_verifier_is_an_invalid_grant() {
    let google = start(Flavor::Google).await;
    let (code, _) = authorize(&google, "openid", &[]).await;
    let (other_verifier, _) = pkce();
    let (status, body) = exchange(&google, &code, &other_verifier).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));

    let (code, _) = authorize(&google, "openid", &[]).await;
    let params = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", REDIRECT_URI)];
    let (status, body) = token_request(&google, &params).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test]
async fn a_different_redirect_uri_at_the_token_endpoint_is_refused() {
    let google = start(Flavor::Google).await;
    let (code, verifier) = authorize(&google, "openid", &[]).await;
    let params = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "http://127.0.0.1:9/api/v1/oauth/callback/google"),
        ("code_verifier", verifier.as_str()),
    ];
    let (status, body) = token_request(&google, &params).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
}

#[tokio::test]
async fn client_secret_basic_is_accepted_and_a_wrong_secret_is_invalid_client() {
    let google = start(Flavor::Google).await;
    let (code, verifier) = authorize(&google, "openid", &[]).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", verifier.as_str()),
    ];
    let response = client()
        .post(google.endpoints().token_url)
        .basic_auth(CLIENT_ID, Some("wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_client");

    let (code, verifier) = authorize(&google, "openid", &[]).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", verifier.as_str()),
    ];
    let response = client()
        .post(google.endpoints().token_url)
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_json_token_request_is_refused() {
    let google = start(Flavor::Google).await;
    let response = client()
        .post(google.endpoints().token_url)
        .json(&serde_json::json!({"grant_type": "refresh_token", "refresh_token": "x",
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn refresh_keeps_the_refresh_token_and_reports_granted_scopes() {
    let google = start(Flavor::Google).await;
    let extra = [("access_type", "offline"), ("prompt", "consent"), ("granted_scope", "openid email")];
    let (code, verifier) = authorize(&google, "openid email profile", &extra).await;
    let (_, body) = exchange(&google, &code, &verifier).await;
    assert_eq!(body["scope"], "openid email");
    let refresh_token = body["refresh_token"].as_str().unwrap().to_owned();

    let (status, body) =
        token_request(&google, &[("grant_type", "refresh_token"), ("refresh_token", &refresh_token)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["scope"], "openid email");
    assert!(body["id_token"].is_string());
    assert!(google.handle.is_refresh_token_live(&refresh_token));
    assert_eq!(google.handle.counters().refreshes, 1);

    google.handle.revoke_all_grants();
    let (status, body) =
        token_request(&google, &[("grant_type", "refresh_token"), ("refresh_token", &refresh_token)]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_description"], "Token has been expired or revoked.");
}

#[tokio::test]
async fn a_refresh_token_comes_only_with_offline_access_on_first_or_forced_consent() {
    let google = start(Flavor::Google).await;
    let (code, verifier) = authorize(&google, "openid", &[("access_type", "offline")]).await;
    let (_, first) = exchange(&google, &code, &verifier).await;
    assert!(first["refresh_token"].is_string(), "first consent");

    let (code, verifier) = authorize(&google, "openid", &[("access_type", "offline")]).await;
    let (_, second) = exchange(&google, &code, &verifier).await;
    assert!(second.get("refresh_token").is_none(), "repeat consent without prompt=consent");

    let (code, verifier) = authorize(&google, "openid", &[]).await;
    let (_, online) = exchange(&google, &code, &verifier).await;
    assert!(online.get("refresh_token").is_none(), "online access");
}

#[tokio::test]
async fn revoking_kills_the_whole_grant() {
    let google = start(Flavor::Google).await;
    let (code, verifier) = authorize(&google, "openid email", OFFLINE).await;
    let (_, body) = exchange(&google, &code, &verifier).await;
    let access_token = body["access_token"].as_str().unwrap();
    let refresh_token = body["refresh_token"].as_str().unwrap();

    let userinfo = google.endpoints().userinfo_url.unwrap();
    let response = client().get(&userinfo).bearer_auth(access_token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["email"], "alice@example.com");

    let revocation = google.endpoints().revocation_url.unwrap();
    let response = client().post(&revocation).form(&[("token", refresh_token)]).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(!google.handle.is_refresh_token_live(refresh_token));
    assert!(!google.handle.is_access_token_live(access_token));
    let response = client().get(&userinfo).bearer_auth(access_token).send().await.unwrap();
    assert_eq!(response.status(), 401);

    let response = client().post(&revocation).form(&[("token", refresh_token)]).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let counters = google.handle.counters();
    assert_eq!((counters.revocations, counters.userinfo_calls), (1, 2));
}

#[tokio::test]
async fn the_id_token_verifies_against_the_jwks_even_after_key_rotation() {
    let google = start(Flavor::Google).await;
    let (code, verifier) = authorize(&google, "openid email", &[]).await;
    let (_, body) = exchange(&google, &code, &verifier).await;
    let first = body["id_token"].as_str().unwrap().to_owned();
    let claims = verify_id_token(&google, &first).await.unwrap();
    assert_eq!(claims["nonce"], "nonce-1");
    assert_eq!(claims["azp"], CLIENT_ID);
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["sub"].as_str().unwrap().len(), 21);

    google.handle.rotate_signing_key();
    let (code, verifier) = authorize(&google, "openid", &[]).await;
    let (_, body) = exchange(&google, &code, &verifier).await;
    let second = body["id_token"].as_str().unwrap();
    let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
    assert_ne!(kid(&first), kid(second));
    verify_id_token(&google, &first).await.unwrap();
    let claims = verify_id_token(&google, second).await.unwrap();
    assert!(claims.get("email").is_none(), "no email claim without the email scope");
}

#[tokio::test]
async fn id_tokens_alternate_googles_two_documented_issuer_forms() {
    let google = start(Flavor::Google).await;
    let mut issuers = Vec::new();
    for _ in 0..2 {
        let (code, verifier) = authorize(&google, "openid", &[]).await;
        let (_, body) = exchange(&google, &code, &verifier).await;
        let claims = verify_id_token(&google, body["id_token"].as_str().unwrap()).await.unwrap();
        issuers.push(claims["iss"].as_str().unwrap().to_owned());
    }
    let issuer = google.endpoints().issuer.unwrap();
    assert_eq!(issuers, [issuer.clone(), issuer.trim_start_matches("http://").to_owned()]);
}

#[tokio::test]
async fn id_token_faults_are_caught_by_a_verifier() {
    let google = start(Flavor::Google).await;
    for fault in [IdTokenFault::WrongKey, IdTokenFault::Expired, IdTokenFault::WrongAudience, IdTokenFault::WrongIssuer]
    {
        google.handle.set_id_token_fault(fault);
        let (code, verifier) = authorize(&google, "openid", &[]).await;
        let (_, body) = exchange(&google, &code, &verifier).await;
        let id_token = body["id_token"].as_str().unwrap();
        assert!(verify_id_token(&google, id_token).await.is_err(), "{fault:?} must fail verification");
    }
    google.handle.set_id_token_fault(IdTokenFault::WrongNonce);
    let (code, verifier) = authorize(&google, "openid", &[]).await;
    let (_, body) = exchange(&google, &code, &verifier).await;
    let claims = verify_id_token(&google, body["id_token"].as_str().unwrap()).await.unwrap();
    assert_ne!(claims["nonce"], "nonce-1");
}

#[tokio::test]
async fn injected_faults_break_the_token_endpoint_and_count_as_failures() {
    let google = start(Flavor::Google).await;
    google.handle.set_fault(Fault::ServerError);
    let (status, body) = token_request(&google, &[("grant_type", "refresh_token"), ("refresh_token", "x")]).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("temporarily_unavailable")));

    google.handle.set_fault(Fault::Garbage);
    let response =
        client().post(google.endpoints().token_url).form(&[("grant_type", "refresh_token")]).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(serde_json::from_str::<Value>(&response.text().await.unwrap()).is_err());

    google.handle.set_fault(Fault::None);
    assert_eq!(google.handle.counters(), Counters { failed_token_requests: 2, ..Counters::default() });
}

#[tokio::test]
async fn the_consent_page_renders_and_a_bad_client_gets_an_error_page_not_a_redirect() {
    let google = start(Flavor::Google).await;
    let (_, challenge) = pkce();
    let mut query = vec![
        ("client_id", CLIENT_ID),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT_URI),
        ("state", "s"),
        ("scope", "openid email"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let url = google.endpoints().authorization_url;
    let response = client().get(&url).query(&query).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(page.contains("Sandbox Google"));
    assert!(page.contains(&format!(r#"action="{url}""#)));
    assert!(page.contains(r#"value="approve""#));

    query[0] = ("client_id", "someone-else");
    let response = client().get(&url).query(&query).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());

    // Without PKCE the error goes back to the client.
    query[0] = ("client_id", CLIENT_ID);
    query.truncate(5);
    let response = client().get(&url).query(&query).send().await.unwrap();
    assert_eq!(response.status(), 303);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(query_param(&location, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query_param(&location, "state").as_deref(), Some("s"));
}

#[tokio::test]
async fn deny_redirects_with_access_denied() {
    let google = start(Flavor::Google).await;
    let (_, challenge) = pkce();
    let location = consent(
        &google,
        &[
            ("client_id", CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT_URI),
            ("state", "s"),
            ("scope", "openid"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("decision", "deny"),
        ],
    )
    .await;
    assert_eq!(query_param(&location, "error").as_deref(), Some("access_denied"));
    assert!(query_param(&location, "code").is_none());
    assert_eq!(google.handle.counters().authorizations, 0);
}

#[tokio::test]
async fn youtube_channels_names_the_logins_channel() {
    let google = start(Flavor::Google).await;
    let scope = "https://www.googleapis.com/auth/youtube.readonly";
    let (code, verifier) = authorize(&google, scope, &[("login", "bob@example.com")]).await;
    let (_, body) = exchange(&google, &code, &verifier).await;
    assert!(body.get("id_token").is_none());
    let channels = google.endpoints().youtube_channels_url.unwrap();
    let response = client()
        .get(&channels)
        .query(&[("part", "snippet"), ("mine", "true")])
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let list: Value = response.json().await.unwrap();
    assert!(list["items"][0]["id"].as_str().unwrap().starts_with("UC"));
    assert_eq!(list["items"][0]["snippet"]["title"], "Bob Example");
}

#[tokio::test]
async fn the_router_nests_under_a_prefix() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/sandbox/google", listener.local_addr().unwrap());
    let config = EmulatorConfig::new(Flavor::Google, CLIENT_ID, CLIENT_SECRET);
    let (router, handle) = provider_emulators::router(config, &base);
    let app = axum::Router::new().nest("/sandbox/google", router);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let discovery: Value =
        client().get(format!("{base}/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["issuer"], base);
    assert_eq!(discovery["token_endpoint"], format!("{base}/token"));
    assert_eq!(handle.endpoints().jwks_uri.unwrap(), format!("{base}/jwks"));
    let jwks = client().get(format!("{base}/jwks")).send().await.unwrap();
    assert_eq!(jwks.status(), 200);
}

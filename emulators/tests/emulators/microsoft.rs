use provider_emulators::{DEFAULT_TENANT_ID, Flavor, RunningEmulator};
use serde_json::Value;

use crate::support::*;

const SCOPE: &str = "openid profile email offline_access User.Read";

/// Consent and code exchange; returns the token response.
async fn connect(microsoft: &RunningEmulator, login: &str) -> Value {
    let (verifier, challenge) = pkce();
    let location = consent(
        microsoft,
        &[
            ("client_id", CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT_URI),
            ("state", "s"),
            ("scope", SCOPE),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("nonce", "n"),
            ("login", login),
            ("decision", "approve"),
        ],
    )
    .await;
    let issuer = format!("{}/{DEFAULT_TENANT_ID}/v2.0", microsoft.base_url);
    assert_eq!(query_param(&location, "iss"), Some(issuer));
    let code = query_param(&location, "code").unwrap();
    let (status, body) = token_request(
        microsoft,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &verifier),
            ("scope", SCOPE),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn refresh(microsoft: &RunningEmulator, refresh_token: &str) -> (u16, Value) {
    token_request(microsoft, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
}

#[tokio::test]
async fn every_refresh_rotates_and_the_old_refresh_token_is_rejected() {
    let microsoft = start(Flavor::Microsoft).await;
    let body = connect(&microsoft, "alice@example.com").await;
    let first = body["refresh_token"].as_str().unwrap().to_owned();

    let (status, body) = refresh(&microsoft, &first).await;
    assert_eq!(status, 200, "{body}");
    let second = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert!(!microsoft.handle.is_refresh_token_live(&first));

    let (status, body) = refresh(&microsoft, &first).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_codes"][0], 70008);
    assert!(body["error_description"].as_str().unwrap().starts_with("AADSTS70008:"));
    assert!(body["trace_id"].is_string() && body["correlation_id"].is_string());

    let (status, _) = refresh(&microsoft, &second).await;
    assert_eq!(status, 200);
    assert_eq!(microsoft.handle.counters().refreshes, 2);
}

#[tokio::test]
async fn with_reuse_detection_a_rotated_away_refresh_token_kills_the_grant() {
    let microsoft = start(Flavor::Microsoft).await;
    microsoft.handle.set_revoke_on_reuse(true);
    let body = connect(&microsoft, "alice@example.com").await;
    let first = body["refresh_token"].as_str().unwrap().to_owned();
    let (_, body) = refresh(&microsoft, &first).await;
    let second = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, _) = refresh(&microsoft, &first).await;
    assert_eq!(status, 400, "the old one is refused");
    assert!(!microsoft.handle.is_refresh_token_live(&second), "and the current one dies with the grant");
    assert_eq!(microsoft.handle.live_grants(), 0);
}

#[tokio::test]
async fn a_basic_authorization_header_is_invalid_client() {
    let microsoft = start(Flavor::Microsoft).await;
    let response = client()
        .post(microsoft.endpoints().token_url)
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_codes"][0], 7000218);
}

#[tokio::test]
async fn a_configured_refresh_error_is_returned_until_cleared() {
    let microsoft = start(Flavor::Microsoft).await;
    let body = connect(&microsoft, "alice@example.com").await;
    let refresh_token = body["refresh_token"].as_str().unwrap();
    microsoft.handle.set_refresh_error(Some("interaction_required".into()));
    let (status, body) = refresh(&microsoft, refresh_token).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("interaction_required")));
    microsoft.handle.set_refresh_error(None);
    let (status, _) = refresh(&microsoft, refresh_token).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_id_token_names_the_tenant_and_a_stable_oid_that_graph_confirms() {
    let microsoft = start(Flavor::Microsoft).await;
    let body = connect(&microsoft, "carol@example.com").await;
    let claims = verify_id_token(&microsoft, body["id_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(claims["tid"], DEFAULT_TENANT_ID);
    assert_eq!(claims["nonce"], "n");
    assert_eq!(claims["preferred_username"], "carol@example.com");
    assert_ne!(claims["sub"], claims["oid"]);

    let me: Value = client()
        .get(microsoft.endpoints().userinfo_url.unwrap())
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], claims["oid"]);
    assert_eq!(me["mail"], "carol@example.com");

    let again = connect(&microsoft, "carol@example.com").await;
    let claims_again = verify_id_token(&microsoft, again["id_token"].as_str().unwrap()).await.unwrap();
    assert_eq!(claims_again["oid"], claims["oid"]);
}

#[tokio::test]
async fn without_offline_access_there_is_no_refresh_token_and_expired_tokens_fail_graph() {
    let microsoft = start(Flavor::Microsoft).await;
    let (verifier, challenge) = pkce();
    let location = consent(
        &microsoft,
        &[
            ("client_id", CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT_URI),
            ("state", "s"),
            ("scope", "User.Read"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("decision", "approve"),
        ],
    )
    .await;
    let code = query_param(&location, "code").unwrap();
    let (_, body) = token_request(
        &microsoft,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert!(body.get("refresh_token").is_none());
    assert!(body.get("id_token").is_none());

    microsoft.handle.expire_access_tokens();
    let response = client()
        .get(microsoft.endpoints().userinfo_url.unwrap())
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn an_unknown_tenant_is_refused() {
    let microsoft = start(Flavor::Microsoft).await;
    let url = format!("{}/not-a-tenant/oauth2/v2.0/token", microsoft.base_url);
    let response = client().post(url).form(&[("grant_type", "refresh_token")]).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let keys = format!("{}/{DEFAULT_TENANT_ID}/discovery/v2.0/keys", microsoft.base_url);
    assert_eq!(client().get(keys).send().await.unwrap().status(), 200);
}

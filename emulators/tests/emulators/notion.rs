use provider_emulators::{Flavor, RunningEmulator};
use serde_json::{Value, json};

use crate::support::*;

const VERSION: &str = "2022-06-28";

async fn code(notion: &RunningEmulator) -> String {
    let location = consent(
        notion,
        &[
            ("client_id", CLIENT_ID),
            ("response_type", "code"),
            ("owner", "user"),
            ("redirect_uri", REDIRECT_URI),
            ("state", "s"),
            ("decision", "approve"),
        ],
    )
    .await;
    assert!(query_param(&location, "iss").is_none());
    query_param(&location, "code").unwrap()
}

/// A Notion API call done right: Basic auth, Notion-Version and a JSON body.
async fn post(url: &str, body: Value) -> (u16, Value) {
    let response = client()
        .post(url)
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("Notion-Version", VERSION)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn connect(notion: &RunningEmulator) -> Value {
    let code = code(notion).await;
    let body = json!({"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI});
    let (status, body) = post(&notion.endpoints().token_url, body).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn users_me(notion: &RunningEmulator, access_token: &str) -> reqwest::Response {
    client()
        .get(notion.endpoints().userinfo_url.unwrap())
        .bearer_auth(access_token)
        .header("Notion-Version", VERSION)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_token_endpoint_needs_basic_auth_a_version_header_and_json() {
    let notion = start(Flavor::Notion).await;
    let token_url = notion.endpoints().token_url;
    let code = code(&notion).await;
    let body = json!({"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI});

    let no_basic = client()
        .post(&token_url)
        .header("Notion-Version", VERSION)
        .json(&json!({"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_basic.status(), 401);
    assert_eq!(no_basic.json::<Value>().await.unwrap()["error"], "invalid_client");

    let no_version =
        client().post(&token_url).basic_auth(CLIENT_ID, Some(CLIENT_SECRET)).json(&body).send().await.unwrap();
    assert_eq!(no_version.status(), 400);

    let form = client()
        .post(&token_url)
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("Notion-Version", VERSION)
        .form(&[("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", REDIRECT_URI)])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 400);

    // The refusals above happened before the code was looked at, so it is still good.
    let (status, body) = post(&token_url, body).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert!(body.get("expires_in").is_none());
    assert!(body["refresh_token"].is_string());
    assert!(body["bot_id"].is_string() && body["workspace_id"].is_string());
    assert_eq!(body["owner"]["user"]["person"]["email"], "alice@example.com");
    assert_eq!(notion.handle.counters().failed_token_requests, 3);
}

#[tokio::test]
async fn refresh_returns_a_new_pair_and_retires_the_old_one() {
    let notion = start(Flavor::Notion).await;
    let first = connect(&notion).await;
    let old_access = first["access_token"].as_str().unwrap();
    let old_refresh = first["refresh_token"].as_str().unwrap();
    let token_url = notion.endpoints().token_url;

    let (status, second) = post(&token_url, json!({"grant_type": "refresh_token", "refresh_token": old_refresh})).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(second["bot_id"], first["bot_id"]);
    assert!(!notion.handle.is_access_token_live(old_access));

    let (status, body) = post(&token_url, json!({"grant_type": "refresh_token", "refresh_token": old_refresh})).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let response = users_me(&notion, second["access_token"].as_str().unwrap()).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn revoke_kills_the_grant_and_users_me_answers_401() {
    let notion = start(Flavor::Notion).await;
    let body = connect(&notion).await;
    let access_token = body["access_token"].as_str().unwrap();
    let me: Value = users_me(&notion, access_token).await.json().await.unwrap();
    assert_eq!(me["type"], "bot");
    assert_eq!(me["id"], body["bot_id"]);

    let revocation = notion.endpoints().revocation_url.unwrap();
    let (status, _) = post(&revocation, json!({"token": access_token})).await;
    assert_eq!(status, 200);
    assert!(!notion.handle.is_refresh_token_live(body["refresh_token"].as_str().unwrap()));
    let response = users_me(&notion, access_token).await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<Value>().await.unwrap()["code"], "unauthorized");
    let (status, _) = post(&revocation, json!({"token": access_token})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn expired_access_tokens_get_401_until_refreshed() {
    let notion = start(Flavor::Notion).await;
    let body = connect(&notion).await;
    notion.handle.expire_access_tokens();
    let response = users_me(&notion, body["access_token"].as_str().unwrap()).await;
    assert_eq!(response.status(), 401);
    assert!(notion.handle.is_refresh_token_live(body["refresh_token"].as_str().unwrap()));
}

#[tokio::test]
async fn authorize_requires_owner_user() {
    let notion = start(Flavor::Notion).await;
    let location = consent(
        &notion,
        &[
            ("client_id", CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT_URI),
            ("state", "s"),
            ("decision", "approve"),
        ],
    )
    .await;
    assert_eq!(query_param(&location, "error").as_deref(), Some("invalid_request"));
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let notion = start(Flavor::Notion).await;
    let url = notion.endpoints().token_url;
    notion.shutdown().await;
    assert!(client().post(url).send().await.is_err());
}

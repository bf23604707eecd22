//! Notion public integrations: OAuth with Basic auth, JSON bodies and a `Notion-Version` header.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::authorize;
use crate::common::{BasicAuth, basic_auth, basic_part_matches, has_content_type, random_uuid};
use crate::error::{OAuthError, no_store};
use crate::handle::{Counter, EmulatorHandle, injected_fault};
use crate::identity::Person;
use crate::token::{self, Issued};

/// Notion's routes, relative to the emulator's base URL.
pub(crate) fn routes() -> Router<EmulatorHandle> {
    Router::new()
        .route("/v1/oauth/authorize", get(authorize_page).post(authorize_decision))
        .route("/v1/oauth/token", post(token))
        .route("/v1/oauth/revoke", post(revoke))
        .route("/v1/users/me", get(users_me))
}

async fn authorize_page(State(h): State<EmulatorHandle>, RawQuery(query): RawQuery) -> Response {
    let action = format!("{}/v1/oauth/authorize", h.base_url());
    authorize::show(&h, &action, query)
}

async fn authorize_decision(State(h): State<EmulatorHandle>, headers: HeaderMap, body: Bytes) -> Response {
    authorize::decide(&h, &headers, &body)
}

async fn token(State(h): State<EmulatorHandle>, headers: HeaderMap, body: Bytes) -> Response {
    token::serve(&h, || {
        let request = api_request(&h, &headers, &body)?;
        let field = |name: &str| request.get(name).and_then(Value::as_str);
        match field("grant_type") {
            Some("authorization_code") => {
                let issued = token::exchange_code(&h, field("code"), field("redirect_uri"), None)?;
                Ok((Counter::CodeExchange, token_response(&h, &issued)))
            }
            Some("refresh_token") => {
                let issued = token::refresh(&h, field("refresh_token"), None)?;
                Ok((Counter::Refresh, token_response(&h, &issued)))
            }
            other => Err(token::unsupported_grant_type(other)),
        }
    })
    .await
}

/// The checks every Notion OAuth call makes: Basic client auth, a `Notion-Version`
/// header and a JSON object body, which it returns.
fn api_request(
    h: &EmulatorHandle,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Map<String, Value>, OAuthError> {
    let config = h.config();
    match basic_auth(headers) {
        BasicAuth::Present { client_id, secret }
            if basic_part_matches(&client_id, &config.client_id)
                && basic_part_matches(&secret, &config.client_secret) => {}
        BasicAuth::Present { .. } => {
            return Err(OAuthError::invalid_client(0, "Invalid client credentials."));
        }
        BasicAuth::Absent | BasicAuth::Malformed => {
            return Err(OAuthError::invalid_client(0, "Client authentication with HTTP Basic is required."));
        }
    }
    if headers.get("notion-version").is_none() {
        return Err(OAuthError::invalid_request("Notion-Version header is required."));
    }
    if !has_content_type(headers, "application/json") {
        return Err(OAuthError::invalid_request("The request body must be JSON (Content-Type: application/json)."));
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(OAuthError::invalid_request("The request body is not a JSON object.")),
    }
}

fn token_response(h: &EmulatorHandle, issued: &Issued) -> Response {
    let person = &issued.person;
    // No expires_in and no scope: Notion tokens do not expire and Notion has no scopes.
    no_store(Json(json!({
        "access_token": issued.access_token,
        "token_type": h.token_type("bearer"),
        "refresh_token": issued.refresh_token,
        "bot_id": person.notion_bot_id(&h.config().client_id),
        "workspace_id": person.notion_workspace_id(),
        "workspace_name": workspace_name(person),
        "workspace_icon": "🧪",
        "owner": owner(person),
        "duplicated_template_id": null,
        "request_id": random_uuid(),
    })))
}

fn workspace_name(person: &Person) -> String {
    format!("{}'s Notion", person.given_name)
}

/// The user who installed the integration, as Notion describes them.
fn owner(person: &Person) -> Value {
    json!({
        "type": "user",
        "user": {
            "object": "user",
            "id": person.notion_user_id(),
            "name": person.name,
            "avatar_url": null,
            "type": "person",
            "person": {"email": person.email},
        },
    })
}

/// `POST /v1/oauth/revoke {token}`: kills the token and the grant it belongs to.
async fn revoke(State(h): State<EmulatorHandle>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = injected_fault(&h).await {
        return response;
    }
    let request = match api_request(&h, &headers, &body) {
        Ok(request) => request,
        Err(error) => return error.render(h.flavor()),
    };
    let Some(token) = request.get("token").and_then(Value::as_str) else {
        return OAuthError::invalid_request("Missing required field: token").render(h.flavor());
    };
    let revoked = {
        let mut store = h.store();
        let grant = store.grant_of_token(token, chrono::Utc::now());
        grant.map(|grant| store.revoke_grant(grant))
    };
    match revoked {
        Some(()) => {
            h.count(Counter::Revocation);
            Json(json!({})).into_response()
        }
        None => {
            OAuthError::bad_request("invalid_token", 0, "The token is invalid or already revoked.").render(h.flavor())
        }
    }
}

/// `GET /v1/users/me`: the integration's bot user.
async fn users_me(State(h): State<EmulatorHandle>, headers: HeaderMap) -> Response {
    h.count(Counter::UserinfoCall);
    if let Some(response) = injected_fault(&h).await {
        return response;
    }
    if headers.get("notion-version").is_none() {
        return api_error(
            StatusCode::BAD_REQUEST,
            "missing_version",
            "Notion-Version header failed validation: Notion-Version header should be defined.",
        );
    }
    let Some(grant) = h.bearer_grant(&headers) else {
        return api_error(StatusCode::UNAUTHORIZED, "unauthorized", "API token is invalid.");
    };
    let person = Person::from_login(&grant.login);
    Json(json!({
        "object": "user",
        "id": person.notion_bot_id(&h.config().client_id),
        "name": "Sandbox Integration",
        "avatar_url": null,
        "type": "bot",
        "bot": {
            "owner": owner(&person),
            "workspace_name": workspace_name(&person),
        },
        "request_id": random_uuid(),
    }))
    .into_response()
}

/// Notion's API error shape (not the OAuth one).
fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({
        "object": "error",
        "status": status.as_u16(),
        "code": code,
        "message": message,
        "request_id": random_uuid(),
    });
    (status, Json(body)).into_response()
}

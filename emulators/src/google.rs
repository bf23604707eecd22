//! Google: OAuth 2.0 with OpenID Connect, token revocation, userinfo, and YouTube's channels.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::authorize;
use crate::common::{BasicAuth, Params, basic_auth, basic_part_matches};
use crate::error::{OAuthError, no_store};
use crate::handle::{Counter, EmulatorHandle, injected_fault};
use crate::id_token;
use crate::identity::Person;
use crate::token::{self, Issued};

/// Google's routes, relative to the emulator's base URL.
pub(crate) fn routes() -> Router<EmulatorHandle> {
    Router::new()
        .route("/authorize", get(authorize_page).post(authorize_decision))
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .route("/userinfo", get(userinfo))
        .route("/jwks", get(jwks))
        .route("/youtube/v3/channels", get(youtube_channels))
        .route("/.well-known/openid-configuration", get(discovery))
}

async fn authorize_page(State(h): State<EmulatorHandle>, RawQuery(query): RawQuery) -> Response {
    let action = format!("{}/authorize", h.base_url());
    authorize::show(&h, &action, query)
}

async fn authorize_decision(State(h): State<EmulatorHandle>, headers: HeaderMap, body: Bytes) -> Response {
    authorize::decide(&h, &headers, &body)
}

async fn token(State(h): State<EmulatorHandle>, headers: HeaderMap, body: Bytes) -> Response {
    token::serve(&h, || {
        let params = token::form_params(&headers, &body)?;
        authenticate_client(&h, &headers, &params)?;
        match params.get("grant_type") {
            Some("authorization_code") => {
                let issued = token::exchange_code(
                    &h,
                    params.get("code"),
                    params.get("redirect_uri"),
                    params.get("code_verifier"),
                )?;
                Ok((Counter::CodeExchange, token_response(&h, &issued)))
            }
            Some("refresh_token") => {
                let issued = token::refresh(&h, params.get("refresh_token"), params.get("scope"))?;
                Ok((Counter::Refresh, token_response(&h, &issued)))
            }
            other => Err(token::unsupported_grant_type(other)),
        }
    })
    .await
}

/// Google accepts `client_secret_post` and `client_secret_basic`, but not both at once
/// (RFC 6749 §2.3: a client uses one authentication method per request).
fn authenticate_client(h: &EmulatorHandle, headers: &HeaderMap, params: &Params) -> Result<(), OAuthError> {
    let config = h.config();
    let unauthorized = || OAuthError::invalid_client(7000215, "Unauthorized");
    match basic_auth(headers) {
        BasicAuth::Malformed => Err(unauthorized()),
        BasicAuth::Present { client_id, secret } => {
            if params.get("client_secret").is_some() {
                return Err(OAuthError::invalid_request(
                    "Client credentials were sent both in the Authorization header and in the body.",
                ));
            }
            let body_id_agrees = params.get("client_id").is_none_or(|id| id == config.client_id);
            if basic_part_matches(&client_id, &config.client_id)
                && basic_part_matches(&secret, &config.client_secret)
                && body_id_agrees
            {
                Ok(())
            } else {
                Err(unauthorized())
            }
        }
        BasicAuth::Absent => {
            let client_id = params
                .get("client_id")
                .ok_or_else(|| OAuthError::invalid_client(900144, "Could not determine client ID from request."))?;
            if client_id == config.client_id && params.get("client_secret") == Some(config.client_secret.as_str()) {
                Ok(())
            } else {
                Err(unauthorized())
            }
        }
    }
}

fn token_response(h: &EmulatorHandle, issued: &Issued) -> Response {
    let mut body = json!({
        "access_token": issued.access_token,
        "expires_in": issued.expires_in,
        "token_type": h.token_type("Bearer"),
        "scope": issued.scope(),
    });
    if let Some(refresh_token) = &issued.refresh_token {
        body["refresh_token"] = json!(refresh_token);
    }
    if issued.has_openid() {
        body["id_token"] = json!(id_token(h, issued));
    }
    no_store(Json(body))
}

fn id_token(h: &EmulatorHandle, issued: &Issued) -> String {
    let person = &issued.person;
    let issuer = h.next_google_id_token_issuer();
    let mut claims = id_token::standard_claims(h, &issuer, &person.google_sub(), issued.nonce.as_deref());
    claims.insert("azp".into(), json!(h.config().client_id));
    if let Value::Object(profile) = profile_claims(person, &issued.scopes) {
        claims.extend(profile);
    }
    id_token::sign(h, claims)
}

/// The e-mail and profile claims, each only when its scope was granted, as Google does.
fn profile_claims(person: &Person, scopes: &[String]) -> Value {
    let granted = |short: &str| {
        scopes.iter().any(|s| s == short || *s == format!("https://www.googleapis.com/auth/userinfo.{short}"))
    };
    let mut claims = json!({});
    if granted("email") {
        claims["email"] = json!(person.email);
        claims["email_verified"] = json!(true);
    }
    if granted("profile") {
        claims["name"] = json!(person.name);
        claims["given_name"] = json!(person.given_name);
        claims["family_name"] = json!(person.family_name);
        claims["picture"] = json!("https://lh3.googleusercontent.com/a/sandbox");
    }
    claims
}

/// Revocation kills the whole grant: the refresh token and every access token from it.
async fn revoke(
    State(h): State<EmulatorHandle>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = injected_fault(&h).await {
        return response;
    }
    // Google takes the token in the form body, or in the query string.
    let form = token::form_params(&headers, &body).unwrap_or_default();
    let query = Params::parse(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    let Some(token) = form.non_empty("token").or(query.non_empty("token")) else {
        return OAuthError::invalid_request("Missing required parameter: token").render(h.flavor());
    };
    let revoked = {
        let mut store = h.store();
        let grant = store.grant_of_token(token, chrono::Utc::now());
        grant.map(|grant| {
            store.revoke_grant(grant);
            let login = store.grant(grant).login.clone();
            store.forget_consent(&login);
        })
    };
    match revoked {
        Some(()) => {
            h.count(Counter::Revocation);
            StatusCode::OK.into_response()
        }
        None => OAuthError::bad_request("invalid_token", 0, "Token expired or revoked").render(h.flavor()),
    }
}

async fn userinfo(State(h): State<EmulatorHandle>, headers: HeaderMap) -> Response {
    h.count(Counter::UserinfoCall);
    if let Some(response) = injected_fault(&h).await {
        return response;
    }
    let Some(grant) = h.bearer_grant(&headers) else {
        let body = json!({"error": "invalid_request", "error_description": "Invalid Credentials"});
        return unauthorized(body);
    };
    let person = Person::from_login(&grant.login);
    let mut body = json!({ "sub": person.google_sub() });
    if let Value::Object(profile) = profile_claims(&person, &grant.scopes) {
        body.as_object_mut().expect("object").extend(profile);
    }
    Json(body).into_response()
}

/// YouTube Data API `channels.list?part=snippet&mine=true`: the caller's own channel.
async fn youtube_channels(State(h): State<EmulatorHandle>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    h.count(Counter::UserinfoCall);
    if let Some(response) = injected_fault(&h).await {
        return response;
    }
    let Some(grant) = h.bearer_grant(&headers) else {
        return unauthorized(google_api_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        ));
    };
    let can_read_channels = grant.scopes.iter().any(|scope| {
        let name = scope.rsplit('/').next().unwrap_or(scope);
        matches!(name, "youtube" | "youtube.readonly" | "youtube.force-ssl" | "youtubepartner")
    });
    if !can_read_channels {
        let body = google_api_error(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.");
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    let params = Params::parse(query.unwrap_or_default().as_bytes()).unwrap_or_default();
    let Some(part) = params.non_empty("part") else {
        let body = google_api_error(400, "INVALID_ARGUMENT", "Required parameter: part");
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    if params.get("mine") != Some("true") {
        let body =
            google_api_error(400, "INVALID_ARGUMENT", "No filter selected. Expected one of: mine, id, forHandle.");
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let person = Person::from_login(&grant.login);
    let handle = person.email.split('@').next().unwrap_or_default().to_owned();
    let mut channel = json!({
        "kind": "youtube#channel",
        "etag": "sandbox-etag",
        "id": person.youtube_channel_id(),
    });
    if part.split(',').any(|p| p == "snippet") {
        channel["snippet"] = json!({
            "title": person.name,
            "description": "",
            "customUrl": format!("@{handle}"),
            "publishedAt": "2015-03-01T12:00:00Z",
        });
    }
    Json(json!({
        "kind": "youtube#channelListResponse",
        "etag": "sandbox-etag",
        "pageInfo": {"totalResults": 1, "resultsPerPage": 5},
        "items": [channel],
    }))
    .into_response()
}

fn google_api_error(code: u16, status: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status}})
}

/// A 401 with RFC 6750 §3's `WWW-Authenticate` challenge.
fn unauthorized(body: Value) -> Response {
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")], Json(body))
        .into_response()
}

async fn jwks(State(h): State<EmulatorHandle>) -> Response {
    h.count(Counter::JwksFetch);
    let body = h.keys().jwks();
    // Like Google, let clients cache the key set; a new kid must make them fetch it again.
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(body)).into_response()
}

async fn discovery(State(h): State<EmulatorHandle>) -> Json<Value> {
    let e = h.endpoints();
    Json(json!({
        "issuer": e.issuer,
        "authorization_endpoint": e.authorization_url,
        "token_endpoint": e.token_url,
        "userinfo_endpoint": e.userinfo_url,
        "revocation_endpoint": e.revocation_url,
        "jwks_uri": e.jwks_uri,
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "claims_supported": ["aud", "email", "email_verified", "exp", "family_name", "given_name",
            "iat", "iss", "name", "picture", "sub", "nonce", "azp"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "authorization_response_iss_parameter_supported": true,
    }))
}

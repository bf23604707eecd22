//! Microsoft identity platform v2.0 and Microsoft Graph's `/me`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{Value, json};

use crate::authorize;
use crate::common::{BasicAuth, Params, basic_auth, random_uuid};
use crate::consent_page::error_page;
use crate::error::{OAuthError, no_store};
use crate::handle::{Counter, EmulatorHandle, injected_fault};
use crate::id_token;
use crate::identity::Person;
use crate::token::{self, Issued};

/// Microsoft's routes, relative to the emulator's base URL.
pub(crate) fn routes() -> Router<EmulatorHandle> {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize_page).post(authorize_decision))
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/{tenant}/discovery/v2.0/keys", get(jwks))
        .route("/{tenant}/v2.0/.well-known/openid-configuration", get(discovery))
        .route("/v1.0/me", get(me))
}

/// The multi-tenant aliases, or this emulator's own tenant GUID.
fn is_known_tenant(h: &EmulatorHandle, tenant: &str) -> bool {
    matches!(tenant, "common" | "organizations" | "consumers") || tenant == h.config().tenant_id
}

fn unknown_tenant_message(tenant: &str) -> String {
    format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.")
}

async fn authorize_page(
    State(h): State<EmulatorHandle>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if !is_known_tenant(&h, &tenant) {
        return error_page(h.flavor(), "invalid_tenant", &unknown_tenant_message(&tenant));
    }
    let action = format!("{}/{tenant}/oauth2/v2.0/authorize", h.base_url());
    authorize::show(&h, &action, query)
}

async fn authorize_decision(
    State(h): State<EmulatorHandle>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_known_tenant(&h, &tenant) {
        return error_page(h.flavor(), "invalid_tenant", &unknown_tenant_message(&tenant));
    }
    authorize::decide(&h, &headers, &body)
}

async fn token(
    State(h): State<EmulatorHandle>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token::serve(&h, || {
        if !is_known_tenant(&h, &tenant) {
            let message = unknown_tenant_message(&tenant);
            return Err(OAuthError::bad_request("invalid_request", 90002, &message));
        }
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

/// The secret must be in the form body: a Basic header means a misconfigured client.
fn authenticate_client(h: &EmulatorHandle, headers: &HeaderMap, params: &Params) -> Result<(), OAuthError> {
    let config = h.config();
    if !matches!(basic_auth(headers), BasicAuth::Absent) {
        let message = if params.get("client_secret").is_some() {
            "Client credentials must be sent only in the request body, not in an Authorization header."
        } else {
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'."
        };
        return Err(OAuthError::invalid_client(7000218, message));
    }
    let client_id = params.non_empty("client_id").ok_or_else(|| {
        OAuthError::invalid_request("The request body must contain the following parameter: 'client_id'.")
    })?;
    if client_id != config.client_id {
        let message = format!("Application with identifier '{client_id}' was not found in the directory.");
        return Err(OAuthError::bad_request("unauthorized_client", 700016, &message));
    }
    match params.get("client_secret") {
        None => Err(OAuthError::invalid_client(
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )),
        Some(secret) if secret == config.client_secret => Ok(()),
        Some(_) => Err(OAuthError::invalid_client(
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret \
             value, not the client secret ID.",
        )),
    }
}

fn token_response(h: &EmulatorHandle, issued: &Issued) -> Response {
    let mut body = json!({
        "token_type": h.token_type("Bearer"),
        "scope": issued.scope(),
        "expires_in": issued.expires_in,
        "ext_expires_in": issued.expires_in,
        "access_token": issued.access_token,
    });
    if let Some(refresh_token) = &issued.refresh_token {
        body["refresh_token"] = json!(refresh_token);
    }
    if issued.has_openid() {
        body["id_token"] = json!(id_token(h, issued));
    }
    no_store(Json(body))
}

/// The issuer names the user's tenant even when the client used `common`.
fn id_token(h: &EmulatorHandle, issued: &Issued) -> String {
    let person = &issued.person;
    let config = h.config();
    let issuer = h.issuer().expect("Microsoft has an issuer");
    let subject = person.microsoft_sub(&config.client_id);
    let mut claims = id_token::standard_claims(h, &issuer, &subject, issued.nonce.as_deref());
    let now = Utc::now().timestamp();
    claims.insert("ver".into(), json!("2.0"));
    claims.insert("nbf".into(), json!(now));
    claims.insert("tid".into(), json!(config.tenant_id));
    claims.insert("oid".into(), json!(person.microsoft_oid()));
    claims.insert("preferred_username".into(), json!(person.email));
    claims.insert("email".into(), json!(person.email));
    claims.insert("name".into(), json!(person.name));
    id_token::sign(h, claims)
}

/// Microsoft Graph `GET /v1.0/me`.
async fn me(State(h): State<EmulatorHandle>, headers: HeaderMap) -> Response {
    h.count(Counter::UserinfoCall);
    if let Some(response) = injected_fault(&h).await {
        return response;
    }
    let Some(grant) = h.bearer_grant(&headers) else {
        let body = json!({
            "error": {
                "code": "InvalidAuthenticationToken",
                "message": "Access token has expired or is not yet valid.",
                "innerError": {
                    "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                    "request-id": random_uuid(),
                    "client-request-id": random_uuid(),
                },
            },
        });
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")], Json(body))
            .into_response();
    };
    let person = Person::from_login(&grant.login);
    Json(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
        "id": person.microsoft_oid(),
        "displayName": person.name,
        "givenName": person.given_name,
        "surname": person.family_name,
        "mail": person.email,
        "userPrincipalName": person.email,
        "businessPhones": [],
        "jobTitle": null,
        "mobilePhone": null,
        "officeLocation": null,
        "preferredLanguage": null,
    }))
    .into_response()
}

async fn jwks(State(h): State<EmulatorHandle>, Path(tenant): Path<String>) -> Response {
    if !is_known_tenant(&h, &tenant) {
        let message = unknown_tenant_message(&tenant);
        return OAuthError::bad_request("invalid_tenant", 90002, &message).render(h.flavor());
    }
    h.count(Counter::JwksFetch);
    let body = h.keys().jwks();
    Json(body).into_response()
}

/// The discovery document; for the multi-tenant aliases the issuer is a template, as on
/// the real endpoint, so clients must not compare it literally.
async fn discovery(State(h): State<EmulatorHandle>, Path(tenant): Path<String>) -> Response {
    if !is_known_tenant(&h, &tenant) {
        let message = unknown_tenant_message(&tenant);
        return OAuthError::bad_request("invalid_tenant", 90002, &message).render(h.flavor());
    }
    let base = h.base_url();
    let issuer_tenant = if tenant == h.config().tenant_id { tenant.as_str() } else { "{tenantid}" };
    let body: Value = json!({
        "issuer": format!("{base}/{issuer_tenant}/v2.0"),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "userinfo_endpoint": format!("{base}/v1.0/me"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "nonce", "name",
            "preferred_username", "email", "oid", "tid", "ver"],
        "authorization_response_iss_parameter_supported": true,
    });
    Json(body).into_response()
}

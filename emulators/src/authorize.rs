//! The authorization endpoint shared by all flavors: validate, show consent, redirect back.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{TimeDelta, Utc};
use url::Url;

use crate::common::{Params, has_content_type, is_valid_s256_challenge, random_string, random_uuid, split_scopes};
use crate::config::Flavor;
use crate::consent_page::{ConsentPage, error_page};
use crate::handle::{Counter, EmulatorHandle};
use crate::identity::normalise_login;
use crate::store::AuthCode;

/// How long an authorization code can be redeemed (RFC 6749 §4.1.2 recommends at most 10 minutes).
const CODE_LIFETIME: TimeDelta = TimeDelta::minutes(10);

/// A validated authorization request.
struct AuthorizeRequest {
    client_id: String,
    redirect_uri: String,
    state: String,
    scopes: Vec<String>,
    code_challenge: Option<String>,
    nonce: Option<String>,
    /// Google: `access_type=offline`.
    offline: bool,
    /// Google: `prompt` includes `consent`.
    prompt_consent: bool,
    /// Google: `include_granted_scopes=true` (incremental authorization).
    include_granted_scopes: bool,
    login_hint: Option<String>,
}

/// Why a request was refused, and how the refusal reaches the user.
enum Rejection {
    /// The client or redirect URI cannot be trusted: show an error page, never redirect
    /// (RFC 6749 §4.1.2.1).
    Page { error: &'static str, message: String },
    /// Anything else goes back to the client's redirect URI.
    Redirect { redirect_uri: String, state: Option<String>, error: &'static str, description: String },
}

/// `GET` on the authorization endpoint: the consent form, whose form posts to `action`.
pub(crate) fn show(handle: &EmulatorHandle, action: &str, query: Option<String>) -> Response {
    let params = match Params::parse(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(message) => return error_page(handle.flavor(), "invalid_request", &message),
    };
    let request = match validate(handle, &params) {
        Ok(request) => request,
        Err(rejection) => return reject(handle, rejection),
    };
    ConsentPage {
        flavor: handle.flavor(),
        action,
        client_id: &request.client_id,
        scopes: &request.scopes,
        login_hint: request.login_hint.as_deref(),
        params: params.pairs(),
    }
    .render()
}

/// `POST` on the authorization endpoint: the user's decision, with the original parameters.
pub(crate) fn decide(handle: &EmulatorHandle, headers: &HeaderMap, body: &Bytes) -> Response {
    let flavor = handle.flavor();
    if !has_content_type(headers, "application/x-www-form-urlencoded") {
        let message = "The consent form must be posted as application/x-www-form-urlencoded.";
        return error_page(flavor, "invalid_request", message);
    }
    let mut params = match Params::parse(body) {
        Ok(params) => params,
        Err(message) => return error_page(flavor, "invalid_request", &message),
    };
    let decision = params.take("decision");
    let login = params.take("login").filter(|l| !l.trim().is_empty());
    let granted_scope = params.take("granted_scope");

    let request = match validate(handle, &params) {
        Ok(request) => request,
        Err(rejection) => return reject(handle, rejection),
    };
    match decision.as_deref() {
        Some("approve") => {
            // A client that drives the form directly may omit `login`: fall back to the hint.
            let login = normalise_login(&login.or_else(|| request.login_hint.clone()).unwrap_or_default());
            approve(handle, request, &login, granted_scope.as_deref())
        }
        Some("deny") => reject(
            handle,
            Rejection::Redirect {
                redirect_uri: request.redirect_uri,
                state: Some(request.state),
                error: "access_denied",
                description: "The user denied the request.".to_owned(),
            },
        ),
        _ => error_page(flavor, "invalid_request", "The form field 'decision' must be 'approve' or 'deny'."),
    }
}

fn approve(handle: &EmulatorHandle, request: AuthorizeRequest, login: &str, granted_scope: Option<&str>) -> Response {
    let flavor = handle.flavor();
    let mut scopes = granted_scopes(&request.scopes, granted_scope);
    let code = match flavor {
        Flavor::Google => format!("4/0emu{}", random_string(60)),
        Flavor::Microsoft => format!("1.Aemu{}", random_string(80)),
        Flavor::Notion => random_uuid(),
    };
    {
        let mut store = handle.store();
        let previous = store.previous_consent(login).cloned();
        if flavor == Flavor::Google && request.include_granted_scopes {
            // Incremental authorization: the grant also covers what the user granted before.
            for scope in previous.iter().flatten() {
                if !scopes.contains(scope) {
                    scopes.push(scope.clone());
                }
            }
        }
        let issue_refresh_token = match flavor {
            // Google hands out a refresh token for offline access only on a first consent,
            // unless the client forces the consent screen again.
            Flavor::Google => request.offline && (request.prompt_consent || previous.is_none()),
            Flavor::Microsoft => scopes.iter().any(|s| s == "offline_access"),
            Flavor::Notion => true,
        };
        store.record_consent(login, &scopes);
        let data = AuthCode {
            client_id: request.client_id,
            redirect_uri: request.redirect_uri.clone(),
            code_challenge: request.code_challenge,
            scopes,
            nonce: request.nonce,
            login: login.to_owned(),
            issue_refresh_token,
            expires_at: Utc::now() + CODE_LIFETIME,
        };
        store.insert_code(code.clone(), data);
    }
    handle.count(Counter::Authorization);
    let mut pairs = vec![("code", code), ("state", request.state)];
    if let Some(issuer) = handle.issuer() {
        pairs.push(("iss", issuer));
    }
    see_other(&request.redirect_uri, &pairs)
}

/// The scopes the user grants: the requested ones the form kept, or all of them when it
/// named none.
fn granted_scopes(requested: &[String], granted_scope: Option<&str>) -> Vec<String> {
    let Some(kept) = granted_scope.map(split_scopes).filter(|s| !s.is_empty()) else {
        return requested.to_vec();
    };
    requested.iter().filter(|scope| kept.contains(scope)).cloned().collect()
}

fn validate(handle: &EmulatorHandle, params: &Params) -> Result<AuthorizeRequest, Rejection> {
    let config = handle.config();
    let flavor = config.flavor;
    let page = |error, message: &str| Rejection::Page { error, message: message.to_owned() };

    // First the checks that decide whether redirecting is safe at all.
    let client_id = params
        .non_empty("client_id")
        .ok_or_else(|| page("invalid_request", "Missing required parameter: client_id"))?;
    if client_id != config.client_id {
        return Err(page("invalid_client", "The OAuth client was not found."));
    }
    let redirect_uri = params
        .non_empty("redirect_uri")
        .ok_or_else(|| page("invalid_request", "Missing required parameter: redirect_uri"))?;
    if !is_acceptable_redirect_uri(redirect_uri)
        || !(config.allowed_redirect_uris.is_empty() || config.allowed_redirect_uris.iter().any(|u| u == redirect_uri))
    {
        let message = format!("The redirect URI '{redirect_uri}' is not registered for this client.");
        return Err(page("redirect_uri_mismatch", &message));
    }

    // From here on, errors go back to the client.
    let state = params.non_empty("state").map(str::to_owned);
    let redirect = |error, description: &str| Rejection::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        state: state.clone(),
        error,
        description: description.to_owned(),
    };
    if params.get("response_type") != Some("code") {
        return Err(redirect("unsupported_response_type", "Only response_type=code is supported."));
    }
    let Some(state) = state.clone() else {
        return Err(redirect("invalid_request", "Missing required parameter: state"));
    };
    let scopes = split_scopes(params.get("scope").unwrap_or_default());
    let code_challenge = match flavor {
        Flavor::Google | Flavor::Microsoft => {
            if scopes.is_empty() {
                return Err(redirect("invalid_request", "Missing required parameter: scope"));
            }
            Some(required_pkce(params).map_err(|d| redirect("invalid_request", d))?)
        }
        Flavor::Notion => {
            if params.get("owner") != Some("user") {
                return Err(redirect("invalid_request", "Parameter 'owner' must be 'user'."));
            }
            // Notion has no PKCE: a challenge, if sent, is ignored like any unknown parameter.
            None
        }
    };
    // Microsoft can also answer by fragment or form post; the service only uses the query.
    if flavor == Flavor::Microsoft
        && let Some(mode) = params.get("response_mode").filter(|m| *m != "query")
    {
        let description = format!("Only response_mode=query is emulated, not '{mode}'.");
        return Err(redirect("invalid_request", &description));
    }
    let prompt = params.get("prompt").unwrap_or_default();
    Ok(AuthorizeRequest {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        state,
        scopes,
        code_challenge,
        nonce: params.non_empty("nonce").map(str::to_owned),
        offline: params.get("access_type") == Some("offline"),
        prompt_consent: prompt.split(' ').any(|p| p == "consent"),
        include_granted_scopes: params.get("include_granted_scopes") == Some("true"),
        login_hint: params.non_empty("login_hint").map(str::to_owned),
    })
}

/// RFC 7636 §4.3, with S256 mandatory as the service's providers require it.
fn required_pkce(params: &Params) -> Result<String, &'static str> {
    let challenge = params.non_empty("code_challenge").ok_or("Missing required parameter: code_challenge")?;
    if params.get("code_challenge_method") != Some("S256") {
        return Err("code_challenge_method must be S256.");
    }
    if !is_valid_s256_challenge(challenge) {
        return Err("code_challenge is not a base64url-encoded SHA-256 hash.");
    }
    Ok(challenge.to_owned())
}

/// RFC 6749 §3.1.2: an absolute URI without a fragment; http(s) only here.
fn is_acceptable_redirect_uri(uri: &str) -> bool {
    Url::parse(uri)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.fragment().is_none() && url.has_host())
}

fn reject(handle: &EmulatorHandle, rejection: Rejection) -> Response {
    match rejection {
        Rejection::Page { error, message } => error_page(handle.flavor(), error, &message),
        Rejection::Redirect { redirect_uri, state, error, description } => {
            let mut pairs = vec![("error", error.to_owned()), ("error_description", description)];
            if let Some(state) = state {
                pairs.push(("state", state));
            }
            // RFC 9207 §2: the issuer accompanies error responses too.
            if let Some(issuer) = handle.issuer() {
                pairs.push(("iss", issuer));
            }
            see_other(&redirect_uri, &pairs)
        }
    }
}

/// A 303 to `redirect_uri` with `pairs` added to its query (keeping any query it had).
fn see_other(redirect_uri: &str, pairs: &[(&str, String)]) -> Response {
    let mut url = Url::parse(redirect_uri).expect("redirect URI was validated");
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in pairs {
            query.append_pair(name, value);
        }
    }
    (StatusCode::SEE_OTHER, [(header::LOCATION, url.to_string()), (header::CACHE_CONTROL, "no-store".to_owned())])
        .into_response()
}

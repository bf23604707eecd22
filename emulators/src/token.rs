//! The token endpoint's grants, shared by all flavors: code exchange and refresh.
//! Flavors parse the request, authenticate the client and shape the answer around these.

use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};

use crate::common::{Params, has_content_type, is_valid_verifier, pkce_s256, random_token, split_scopes};
use crate::config::Flavor;
use crate::error::OAuthError;
use crate::handle::{Counter, EmulatorHandle, injected_fault};
use crate::identity::Person;
use crate::store::{CodeProblem, RefreshLookup};

/// Tokens just issued, and what they were issued for.
pub(crate) struct Issued {
    pub(crate) person: Person,
    pub(crate) scopes: Vec<String>,
    /// The authorization request's nonce: set on code exchange only, since OIDC Core §12.2
    /// does not require it in refreshed ID tokens.
    pub(crate) nonce: Option<String>,
    pub(crate) access_token: String,
    /// `None` for tokens that never expire (Notion).
    pub(crate) expires_in: Option<u64>,
    /// Set when a refresh token was issued or rotated.
    pub(crate) refresh_token: Option<String>,
}

impl Issued {
    /// The granted scopes, space-separated as in a token response.
    pub(crate) fn scope(&self) -> String {
        self.scopes.join(" ")
    }

    /// Whether the grant includes OpenID Connect, i.e. an ID token is due.
    pub(crate) fn has_openid(&self) -> bool {
        self.scopes.iter().any(|s| s == "openid")
    }
}

/// Runs a token-endpoint request: injected faults first, then `handle_grant`, counting the outcome.
pub(crate) async fn serve<F>(handle: &EmulatorHandle, handle_grant: F) -> Response
where
    F: FnOnce() -> Result<(Counter, Response), OAuthError>,
{
    if let Some(response) = injected_fault(handle).await {
        handle.count(Counter::FailedTokenRequest);
        return response;
    }
    match handle_grant() {
        Ok((counter, response)) => {
            handle.count(counter);
            response
        }
        Err(error) => {
            handle.count(Counter::FailedTokenRequest);
            error.render(handle.flavor())
        }
    }
}

/// The parameters of a form-encoded token request (RFC 6749 §4.1.3 requires that media type).
pub(crate) fn form_params(headers: &HeaderMap, body: &[u8]) -> Result<Params, OAuthError> {
    if !has_content_type(headers, "application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request("The request body must be application/x-www-form-urlencoded."));
    }
    Params::parse(body).map_err(|message| OAuthError::invalid_request(&message))
}

/// RFC 6749 §5.2 `unsupported_grant_type`, or `invalid_request` when none was given.
pub(crate) fn unsupported_grant_type(grant_type: Option<&str>) -> OAuthError {
    match grant_type {
        None | Some("") => OAuthError::invalid_request("Missing required parameter: grant_type"),
        Some(other) => OAuthError::bad_request(
            "unsupported_grant_type",
            70003,
            &format!("The grant type '{other}' is not supported."),
        ),
    }
}

/// `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.6).
pub(crate) fn exchange_code(
    handle: &EmulatorHandle,
    code: Option<&str>,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
) -> Result<Issued, OAuthError> {
    let code = code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("Missing required parameter: code"))?;
    let now = Utc::now();
    let mut store = handle.store();
    let data = store.take_code(code, now).map_err(|problem| match problem {
        CodeProblem::Unknown => OAuthError::invalid_grant(70000, "Malformed auth code."),
        CodeProblem::Expired => OAuthError::invalid_grant(70008, "The provided authorization code has expired."),
        CodeProblem::AlreadyUsed => OAuthError::invalid_grant(
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code.",
        ),
    })?;
    if data.client_id != handle.config().client_id {
        return Err(OAuthError::invalid_grant(70000, "The code was issued to another client."));
    }
    // RFC 6749 §4.1.3: the redirect_uri must be identical to the one in the authorization request.
    match redirect_uri {
        None => {
            return Err(OAuthError::invalid_request("Missing required parameter: redirect_uri"));
        }
        Some(uri) if uri != data.redirect_uri => {
            return Err(OAuthError::invalid_grant(
                500112,
                "The redirect_uri does not match the one used in the authorization request.",
            ));
        }
        Some(_) => {}
    }
    if let Some(challenge) = &data.code_challenge {
        let verifier = code_verifier
            .filter(|v| !v.is_empty())
            .ok_or_else(|| OAuthError::invalid_grant(501481, "Missing code verifier."))?;
        if !is_valid_verifier(verifier) || pkce_s256(verifier) != *challenge {
            return Err(OAuthError::invalid_grant(
                501481,
                "The code_verifier does not match the code_challenge supplied in the authorization request.",
            ));
        }
    }

    let grant = store.open_grant(code, &data);
    let access_token = random_token(access_prefix(handle.flavor()));
    let expires_at = access_expiry(handle, now);
    store.add_access_token(access_token.clone(), grant, expires_at);
    let refresh_token = data.issue_refresh_token.then(|| {
        let token = random_token(refresh_prefix(handle.flavor()));
        store.set_refresh_token(grant, token.clone());
        token
    });
    Ok(Issued {
        person: Person::from_login(&data.login),
        scopes: data.scopes,
        nonce: data.nonce,
        access_token,
        expires_in: expires_in(handle),
        refresh_token,
    })
}

/// `grant_type=refresh_token` (RFC 6749 §6); Microsoft and Notion rotate the refresh token.
pub(crate) fn refresh(
    handle: &EmulatorHandle,
    refresh_token: Option<&str>,
    scope: Option<&str>,
) -> Result<Issued, OAuthError> {
    let flavor = handle.flavor();
    let refresh_token = refresh_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("Missing required parameter: refresh_token"))?;
    let now = Utc::now();
    let mut store = handle.store();
    let grant = match store.lookup_refresh_token(refresh_token) {
        RefreshLookup::Live(grant) => grant,
        RefreshLookup::Revoked => return Err(dead_refresh_token(flavor, true)),
        RefreshLookup::Reused(grant) => {
            // A provider with reuse detection kills the whole grant: whoever holds the current
            // refresh token loses it too (RFC 9700 §4.14.2).
            if handle.revokes_on_reuse() {
                store.revoke_grant(grant);
            }
            return Err(dead_refresh_token(flavor, false));
        }
        RefreshLookup::Unknown => return Err(dead_refresh_token(flavor, false)),
    };
    if let Some(error) = handle.refresh_error() {
        return Err(configured_refresh_error(&error));
    }
    let granted = store.grant(grant).scopes.clone();
    // RFC 6749 §6: a refresh may narrow the scope, never widen it.
    let scopes = match scope.map(split_scopes).filter(|s| !s.is_empty()) {
        None => granted,
        Some(asked) if asked.iter().all(|s| granted.contains(s)) => asked,
        Some(_) => {
            return Err(OAuthError::bad_request(
                "invalid_scope",
                70011,
                "The requested scope exceeds the scope granted by the resource owner.",
            ));
        }
    };

    if flavor == Flavor::Notion {
        // Notion's refresh replaces the pair: the old access token stops working.
        store.drop_access_tokens(grant);
    }
    let access_token = random_token(access_prefix(flavor));
    store.add_access_token(access_token.clone(), grant, access_expiry(handle, now));
    let rotated = (flavor != Flavor::Google).then(|| {
        let token = random_token(refresh_prefix(flavor));
        store.set_refresh_token(grant, token.clone());
        token
    });
    Ok(Issued {
        person: Person::from_login(&store.grant(grant).login),
        scopes,
        nonce: None,
        access_token,
        expires_in: expires_in(handle),
        refresh_token: rotated,
    })
}

fn dead_refresh_token(flavor: Flavor, revoked: bool) -> OAuthError {
    match (flavor, revoked) {
        (Flavor::Google, _) => OAuthError::invalid_grant(70008, "Token has been expired or revoked."),
        (Flavor::Microsoft, true) => OAuthError::invalid_grant(
            50173,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
        ),
        (Flavor::Microsoft, false) => OAuthError::invalid_grant(
            70008,
            "The provided authorization code or refresh token has expired due to inactivity.",
        ),
        (Flavor::Notion, _) => OAuthError::invalid_grant(70008, "Invalid refresh token."),
    }
}

/// The error chosen with `set_refresh_error`, with Microsoft's matching AADSTS number.
fn configured_refresh_error(error: &str) -> OAuthError {
    let (aadsts, description) = match error {
        "interaction_required" => (
            50076,
            "Due to a configuration change made by your administrator, you must use multi-factor authentication.",
        ),
        "consent_required" => (65001, "The user or administrator has not consented to use the application."),
        "invalid_grant" => (70008, "The refresh token has expired due to inactivity."),
        _ => (70000, "The sandbox provider was told to refuse refreshes."),
    };
    OAuthError::bad_request(error, aadsts, description)
}

fn access_expiry(handle: &EmulatorHandle, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let ttl = TimeDelta::from_std(handle.config().access_token_ttl).unwrap_or(TimeDelta::MAX);
    (handle.flavor() != Flavor::Notion).then(|| now.checked_add_signed(ttl).unwrap_or(DateTime::<Utc>::MAX_UTC))
}

fn expires_in(handle: &EmulatorHandle) -> Option<u64> {
    (handle.flavor() != Flavor::Notion).then(|| handle.config().access_token_ttl.as_secs())
}

fn access_prefix(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Google => "ya29.emu-",
        Flavor::Microsoft => "EwBemu-",
        Flavor::Notion => "ntn_emu",
    }
}

fn refresh_prefix(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Google => "1//emu-",
        Flavor::Microsoft => "M.C5emu-",
        Flavor::Notion => "nrt_emu",
    }
}

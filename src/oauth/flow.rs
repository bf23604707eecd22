//! The authorization-code flow with PKCE (RFC 6749 §4.1, RFC 7636) as RFC 9700 asks for it:
//! single-use states bound to the user, exact redirect URIs, `iss` checks (RFC 9207), nonces.

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::client::{self, ProviderError, TokenResponse};
use super::providers::{IdentitySource, Provider};
use crate::auth::UserCaller;
use crate::crypto::{column, random_token, sha256_hex};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{AuditAction, AuditEntry, ClientInfo, ConnectRecord, Integration, NewState, StoreError};

/// Version recorded with every consent row.
pub const CONSENT_VERSION: &str = "1.0";

/// Body of `POST /initiate`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InitiateRequest {
    pub provider: String,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub redirect_uri: Option<String>,
    #[serde(default)]
    pub return_to: Option<String>,
}

/// The cookie that binds a flow to the browser that started it.
#[derive(Debug)]
pub struct FlowCookie {
    pub name: String,
    pub value: String,
    pub max_age_seconds: u64,
}

/// Path the flow cookie is sent to: both callback routes and nothing else, under whatever path
/// `PUBLIC_BASE_URL` itself has (a service behind a proxy at `/oam`).
pub fn flow_cookie_path(config: &crate::config::Config) -> String {
    format!("{}/api/v1/oauth/callback", config.public_base_url.path().trim_end_matches('/'))
}

/// The flow cookie's name for a state: one per flow, so parallel flows in one browser coexist.
pub fn flow_cookie_name(state_value: &str) -> String {
    format!("oam_flow_{}", &sha256_hex(state_value.as_bytes())[..16])
}

/// Answer of `POST /initiate`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InitiateResponse {
    pub authorization_url: String,
    pub state: String,
    pub provider: String,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

/// The associated data binding a token ciphertext to its integration (user and provider).
pub fn token_column(column_name: &str, user_id: i32, provider: &str) -> Vec<u8> {
    column(column_name, &format!("{user_id}/{provider}"))
}

fn verifier_column(state_hash: &str) -> Vec<u8> {
    column("oauth_state.code_verifier", state_hash)
}

/// A configured provider with credentials, or the contract's errors.
pub fn configured_provider<'a>(state: &'a AppState, name: &str) -> Result<&'a Provider, ApiError> {
    let provider = state
        .providers
        .get(name)
        .ok_or_else(|| ApiError::bad_request("unknown_provider", format!("Unknown provider {name:?}.")))?;
    if provider.credentials.is_none() {
        return Err(ApiError::Unavailable {
            code: "provider_not_configured",
            detail: format!("OAuth credentials not configured for {}.", provider.display_name),
        });
    }
    Ok(provider)
}

/// Starts a flow: records the state and returns where to send the browser.
pub async fn initiate(
    state: &AppState,
    caller: &UserCaller,
    request: InitiateRequest,
) -> Result<(InitiateResponse, FlowCookie), ApiError> {
    let provider = configured_provider(state, &request.provider)?;
    let scopes = requested_scopes(provider, request.scopes)?;
    let redirect_uri = match request.redirect_uri {
        None => state.config.callback_url(Some(&provider.name)),
        Some(uri)
            if uri == state.config.callback_url(None) || uri == state.config.callback_url(Some(&provider.name)) =>
        {
            uri
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_redirect_uri",
                "redirect_uri must be exactly one of this service's registered callback URLs.",
            ));
        }
    };
    let return_to = request.return_to.map(|target| allowed_return_to(state, &target)).transpose()?;

    let state_value = random_token(32);
    let state_hash = sha256_hex(state_value.as_bytes());
    let (code_verifier, code_challenge) = if provider.pkce {
        let verifier = random_token(32);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        (Some(state.keys.encrypt(&verifier, &verifier_column(&state_hash))), Some(challenge))
    } else {
        (None, None)
    };
    let nonce = provider.is_oidc().then(|| random_token(16));
    let browser_binding = random_token(32);
    let now = Utc::now();
    let expires_at = now + Duration::seconds(state.config.flow.state_ttl_seconds as i64);
    let record = NewState {
        state_hash,
        user_id: caller.user_id,
        provider: provider.name.clone(),
        scopes: scopes.clone(),
        redirect_uri: redirect_uri.clone(),
        code_verifier,
        code_challenge: code_challenge.clone(),
        metadata: json!({
            "nonce": nonce,
            "return_to": return_to,
            "browser_binding": sha256_hex(browser_binding.as_bytes()),
        }),
        created_at: now.naive_utc(),
        expires_at: expires_at.naive_utc(),
    };
    state.store.insert_state(&record).await.map_err(store_error)?;

    let mut url =
        Url::parse(&provider.authorization_url).map_err(|error| anyhow::anyhow!("authorization_url: {error}"))?;
    {
        let credentials = provider.credentials.as_ref().expect("checked by configured_provider");
        let mut query = url.query_pairs_mut();
        query.append_pair("response_type", "code");
        query.append_pair("client_id", &credentials.client_id);
        query.append_pair("redirect_uri", &redirect_uri);
        if !scopes.is_empty() {
            query.append_pair("scope", &scopes.join(&provider.scope_separator));
        }
        query.append_pair("state", &state_value);
        if let Some(challenge) = &code_challenge {
            query.append_pair("code_challenge", challenge);
            query.append_pair("code_challenge_method", "S256");
        }
        if let Some(nonce) = &nonce {
            query.append_pair("nonce", nonce);
        }
        for (name, value) in &provider.authorization_params {
            query.append_pair(name, value);
        }
    }
    let cookie = FlowCookie {
        name: flow_cookie_name(&state_value),
        value: browser_binding,
        max_age_seconds: state.config.flow.state_ttl_seconds,
    };
    let response = InitiateResponse {
        authorization_url: url.into(),
        state: state_value,
        provider: provider.name.clone(),
        scopes,
        expires_at,
    };
    Ok((response, cookie))
}

fn requested_scopes(provider: &Provider, requested: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let requested = requested.unwrap_or_else(|| provider.default_scopes.clone());
    let mut scopes: Vec<String> = Vec::new();
    // Required catalogue scopes first, then what was asked, without duplicates.
    let required = provider.scopes.iter().filter(|entry| entry.required).map(|entry| entry.name.clone());
    for scope in required.chain(requested) {
        if provider.scope(&scope).is_none() {
            return Err(ApiError::bad_request(
                "unknown_scope",
                format!("Scope {scope:?} is not in the {} scope catalogue.", provider.display_name),
            ));
        }
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    Ok(scopes)
}

fn allowed_return_to(state: &AppState, target: &str) -> Result<String, ApiError> {
    let refused = || {
        ApiError::bad_request(
            "invalid_return_to",
            "return_to must be an absolute URL under one of the allowed origins.",
        )
    };
    let url = Url::parse(target).map_err(|_| refused())?;
    if url.username() != "" || url.password().is_some() || !state.config.allowed_return_origins.contains(&url.origin())
    {
        return Err(refused());
    }
    Ok(url.into())
}

/// Query of the callback (RFC 6749 §4.1.2 and §4.1.2.1, RFC 9207).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// What the browser that reached the callback carries.
#[derive(Debug, Default)]
pub struct Browser {
    /// The user of a valid access token (header or `access_token` cookie), if any.
    pub user_id: Option<i32>,
    /// The flow cookie set by `/initiate` for this state, if any.
    pub flow_cookie: Option<String>,
}

/// A failed callback, with where to send the browser if the flow asked for a redirect.
#[derive(Debug)]
pub struct CallbackFailure {
    pub error: ApiError,
    pub return_to: Option<String>,
    /// Whether the state was consumed; if not, the browser may still finish this flow.
    pub state_spent: bool,
}

impl From<ApiError> for CallbackFailure {
    fn from(error: ApiError) -> Self {
        Self { error, return_to: None, state_spent: false }
    }
}

/// A completed callback.
#[derive(Debug)]
pub struct Connected {
    pub integration: Integration,
    pub return_to: Option<String>,
}

/// Validates and consumes the state, exchanges the code and stores the connection.
pub async fn callback(
    state: &AppState,
    query: CallbackQuery,
    path_provider: Option<&str>,
    browser: Browser,
    client: ClientInfo,
) -> Result<Connected, CallbackFailure> {
    let started = Instant::now();
    let invalid_state = || ApiError::bad_request("invalid_state", "The authorization state is unknown. Start again.");
    let state_value = query.state.as_deref().filter(|value| !value.is_empty()).ok_or_else(invalid_state)?;
    let record = state
        .store
        .find_state(&sha256_hex(state_value.as_bytes()))
        .await
        .map_err(store_error)?
        .ok_or_else(invalid_state)?;
    let return_to = record.metadata.get("return_to").and_then(Value::as_str).map(str::to_owned);
    let fail = |error: ApiError| CallbackFailure { error, return_to: return_to.clone(), state_spent: false };
    let now = Utc::now().naive_utc();

    // Checks that refuse without changing anything: the legitimate user can still finish.
    if record.is_used {
        return Err(fail(ApiError::bad_request(
            "state_used",
            "This authorization was already completed or abandoned.",
        )));
    }
    if record.expires_at <= now {
        return Err(fail(ApiError::bad_request("state_expired", "The authorization took too long. Start again.")));
    }
    // RFC 9700 §4.4.2.2: the response must arrive at the redirect URI the flow was started with.
    let arrived_at = state.config.callback_url(path_provider);
    if path_provider.is_some_and(|name| name != record.provider)
        || record.redirect_uri.as_deref().is_some_and(|recorded| recorded != arrived_at)
    {
        return Err(fail(ApiError::bad_request(
            "provider_mismatch",
            "The callback's provider does not match the authorization that was started.",
        )));
    }
    if browser.user_id.is_some_and(|user| user != record.user_id) {
        return Err(fail(ApiError::bad_request(
            "state_user_mismatch",
            "This authorization was started by another user.",
        )));
    }
    // RFC 9700 §4.7: only the browser that started the flow may finish it, or else an attacker
    // could send a victim their own authorization URL and collect the victim's account.
    let cookie_matches = match (record.metadata.get("browser_binding").and_then(Value::as_str), &browser.flow_cookie) {
        (Some(expected), Some(presented)) => sha256_hex(presented.as_bytes()) == expected,
        _ => false,
    };
    if state.config.browser_binding && !cookie_matches && browser.user_id != Some(record.user_id) {
        return Err(fail(ApiError::bad_request(
            "state_not_bound",
            "This authorization was not started in this browser. Start again from the app.",
        )));
    }
    let provider = state.providers.get(&record.provider).ok_or_else(|| {
        fail(ApiError::bad_request("unknown_provider", "The provider of this authorization is no longer configured."))
    })?;
    if let (Some(iss), Some(issuer)) = (&query.iss, &provider.issuer)
        && !issuer_matches(issuer, iss)
    {
        return Err(fail(ApiError::bad_request(
            "issuer_mismatch",
            "The authorization response came from an unexpected issuer.",
        )));
    }

    // From here the state is spent (RFC 9700 §2.1.1: single use), whatever happens next.
    if !state.store.consume_state(record.id, now).await.map_err(|e| fail(store_error(e)))? {
        return Err(fail(ApiError::bad_request(
            "state_used",
            "This authorization was already completed or abandoned.",
        )));
    }
    let audit_failure = |code: &'static str, message: String| AuditEntry {
        integration_id: None,
        user_id: record.user_id,
        action: AuditAction::Error,
        provider: record.provider.clone(),
        scopes: Some(record.scopes.clone()),
        client: client.clone(),
        success: false,
        error_message: Some(message),
        duration_ms: Some(elapsed_ms(started)),
        metadata: Some(json!({"operation": "connect", "code": code})),
        details: None,
        created_at: Utc::now().naive_utc(),
    };
    let result = complete(state, provider, &record, &query, &client, started).await;
    match result {
        Ok(integration) => Ok(Connected { integration, return_to }),
        Err(error) => {
            if let Err(audit_error) = state.store.record_audit(&audit_failure(error.code(), error.to_string())).await {
                tracing::warn!(error = %audit_error, "could not record a failed connect");
            }
            Err(CallbackFailure { state_spent: true, ..fail(error) })
        }
    }
}

async fn complete(
    state: &AppState,
    provider: &Provider,
    record: &crate::store::StateRecord,
    query: &CallbackQuery,
    client: &ClientInfo,
    started: Instant,
) -> Result<Integration, ApiError> {
    if let Some(error) = &query.error {
        let reason = if error == "access_denied" {
            "The authorization was denied."
        } else {
            "The provider refused the authorization."
        };
        // The parameter comes from the browser: keep only an error-code shape for logs and detail.
        let error: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        tracing::info!(provider = %provider.name, error = %error, "provider returned an authorization error");
        return Err(ApiError::bad_request("authorization_denied", format!("{reason} ({error})")));
    }
    let code = query
        .code
        .as_deref()
        .filter(|code| !code.is_empty())
        .ok_or_else(|| ApiError::bad_request("invalid_request", "The callback carries no authorization code."))?;
    let verifier = match &record.code_verifier {
        Some(ciphertext) => Some(
            state
                .keys
                .decrypt(ciphertext, &verifier_column(&record.state_hash))
                .map_err(|error| anyhow::anyhow!("decrypting the PKCE verifier: {error}"))?,
        ),
        None => None,
    };
    let redirect_uri = record.redirect_uri.clone().unwrap_or_else(|| state.config.callback_url(None));
    let tokens = client::exchange_code(&state.http, provider, code, &redirect_uri, verifier.as_ref()).await.map_err(
        |error| provider_failure(error, "token_exchange_failed", "The provider refused the authorization code"),
    )?;

    let nonce = record.metadata.get("nonce").and_then(Value::as_str);
    let id_claims = match (&tokens.id_token, provider.is_oidc()) {
        (Some(id_token), true) => Some(
            state
                .jwks
                .validate(&state.http, provider, id_token, nonce)
                .await
                .map_err(|error| ApiError::bad_request("invalid_id_token", error.to_string()))?,
        ),
        (None, true) if provider.identity.source == IdentitySource::IdToken => {
            return Err(ApiError::bad_request("invalid_id_token", "The provider sent no ID token."));
        }
        _ => None,
    };
    let identity = identity_document(state, provider, &tokens, id_claims).await?;
    let account = Account::extract(provider, &identity).ok_or_else(|| ApiError::BadGateway {
        code: "identity_unavailable",
        detail: "The provider did not say who the account is.".into(),
    })?;

    let granted = match &tokens.scope {
        Some(scope) => super::tokens::split_scopes(scope),
        None => record.scopes.clone(),
    };
    let now = Utc::now().naive_utc();
    let expires_at = super::tokens::expires_at_from(now, tokens.expires_in);
    let access = state.keys.encrypt(
        tokens.access_token.expose_secret(),
        &token_column("oauth_tokens.access_token", record.user_id, &provider.name),
    );
    let refresh = tokens.refresh_token.as_ref().map(|token| {
        state
            .keys
            .encrypt(token.expose_secret(), &token_column("oauth_tokens.refresh_token", record.user_id, &provider.name))
    });
    let connect = ConnectRecord {
        user_id: record.user_id,
        provider: provider.name.clone(),
        provider_user_id: Some(account.user_id),
        scopes: granted,
        metadata: json!({"email": account.email, "name": account.name, "details": account.details}),
        access_token: access,
        refresh_token: refresh,
        token_type: tokens.token_type.clone(),
        expires_at,
        scope: tokens.scope.clone(),
        client: client.clone(),
        consent_version: CONSENT_VERSION.to_owned(),
        duration_ms: elapsed_ms(started),
        now,
    };
    let integration = state.store.complete_connect(&connect).await.map_err(store_error)?;
    tracing::info!(integration_id = integration.id, provider = %provider.name, "connected");
    Ok(integration)
}

/// The document the account identity is read from, per the provider's `identity.source`.
async fn identity_document(
    state: &AppState,
    provider: &Provider,
    tokens: &TokenResponse,
    id_claims: Option<Value>,
) -> Result<Value, ApiError> {
    let fetch = |url: String| async move {
        client::fetch_json(&state.http, provider, &url, &tokens.access_token)
            .await
            .map_err(|error| provider_failure(error, "identity_unavailable", "The provider's identity endpoint failed"))
    };
    match provider.identity.source {
        IdentitySource::IdToken => {
            id_claims.ok_or_else(|| ApiError::bad_request("invalid_id_token", "The provider sent no ID token."))
        }
        IdentitySource::TokenResponse => Ok(tokens.extra.clone()),
        IdentitySource::Userinfo => match &provider.userinfo_url {
            Some(url) => fetch(url.clone()).await,
            None => {
                Err(anyhow::anyhow!("provider {} has identity.source = userinfo but no userinfo_url", provider.name)
                    .into())
            }
        },
        IdentitySource::Url => match &provider.identity.url {
            Some(url) => fetch(url.clone()).await,
            None => {
                Err(anyhow::anyhow!("provider {} has identity.source = url but no identity.url", provider.name).into())
            }
        },
    }
}

/// Who the connected account is, read with the provider's JSON pointers.
struct Account {
    user_id: String,
    email: Option<String>,
    name: Option<String>,
    details: Value,
}

impl Account {
    fn extract(provider: &Provider, document: &Value) -> Option<Self> {
        // Provider data goes into TEXT and JSONB columns, which refuse NUL characters.
        let text = |pointer: &str| match document.pointer(pointer)? {
            Value::String(text) if !text.is_empty() => Some(text.replace('\0', "")),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        };
        let parts: Option<Vec<String>> = provider.identity.user_id.iter().map(|pointer| text(pointer)).collect();
        let user_id = parts?.join(":");
        let details: Map<String, Value> = provider
            .identity
            .metadata
            .iter()
            .filter_map(|(key, pointer)| Some((key.clone(), without_nul(document.pointer(pointer)?.clone()))))
            .collect();
        Some(Self {
            user_id,
            email: provider.identity.email.as_deref().and_then(text),
            name: provider.identity.name.as_deref().and_then(text),
            details: Value::Object(details),
        })
    }
}

/// `value` with NUL characters removed from every string in it.
fn without_nul(value: Value) -> Value {
    match value {
        Value::String(text) => Value::String(text.replace('\0', "")),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nul).collect()),
        Value::Object(fields) => {
            Value::Object(fields.into_iter().map(|(k, v)| (k.replace('\0', ""), without_nul(v))).collect())
        }
        other => other,
    }
}

/// RFC 9207 §2.4: `iss` must equal the provider's issuer (Microsoft's names the user's tenant).
fn issuer_matches(template: &str, iss: &str) -> bool {
    match template.split_once("{tid}") {
        None => template == iss,
        Some((before, after)) => iss
            .strip_prefix(before)
            .and_then(|rest| rest.strip_suffix(after))
            .is_some_and(|tid| !tid.is_empty() && !tid.contains('/')),
    }
}

/// Maps a provider failure to the API error a caller can act on.
pub fn provider_failure(error: ProviderError, code: &'static str, what: &str) -> ApiError {
    match error {
        ProviderError::Rejected { error, .. } => ApiError::bad_request(code, format!("{what} ({error}).")),
        ProviderError::Unavailable(reason) => {
            ApiError::BadGateway { code: "provider_unavailable", detail: format!("{what}: {reason}.") }
        }
        ProviderError::NotConfigured => ApiError::Unavailable {
            code: "provider_not_configured",
            detail: "OAuth credentials not configured.".into(),
        },
    }
}

/// Maps store errors to API errors (unknown users are the caller's problem, not ours).
pub fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::UnknownUser => ApiError::UnknownUser,
        StoreError::ProviderNotAllowed => ApiError::bad_request(
            "provider_not_allowed",
            "The database schema does not allow this provider; an operator must run the opt-in migration.",
        ),
        StoreError::NotFound => ApiError::NotFound("Integration"),
        StoreError::Busy => ApiError::Unavailable {
            code: "busy",
            detail: "Another operation on this connection is in progress; try again shortly.".into(),
        },
        StoreError::Database(error) => ApiError::Internal(error.into()),
    }
}

/// Milliseconds since `started`, for `duration_ms`.
pub fn elapsed_ms(started: Instant) -> i32 {
    i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::issuer_matches;

    #[test]
    fn templated_issuers_accept_one_tenant_segment() {
        let template = "https://login.microsoftonline.com/{tid}/v2.0";
        assert!(issuer_matches(template, "https://login.microsoftonline.com/9188040d-6c67/v2.0"));
        assert!(!issuer_matches(template, "https://login.microsoftonline.com//v2.0"));
        assert!(!issuer_matches(template, "https://evil.example/9188040d/v2.0"));
        assert!(!issuer_matches(template, "https://login.microsoftonline.com/a/b/v2.0"));
        assert!(issuer_matches("https://accounts.google.com", "https://accounts.google.com"));
        assert!(!issuer_matches("https://accounts.google.com", "https://accounts.google.com/"));
    }
}

//! The authorization-code flow with PKCE (RFC 6749 §4.1, RFC 7636) as RFC 9700 asks for it:
//! single-use states bound to the user and the browser, exact redirect URIs, `iss` checks
//! (RFC 9207), nonces and ID-token checks for OpenID Connect providers.

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::{Digest, Sha256};
use url::Url;

use super::client::{self, TokenResponse};
use super::error::{FlowError, ProviderFailure, ProviderStep};
use super::grant::{expires_at_from, split_scopes};
use super::identity::{self, Account};
use super::input::{CallbackUrl, ReturnTo, Scope};
use super::providers::{IdentitySource, Provider};
use super::webhooks::{Event, Subject};
use super::{Vault, elapsed_ms, run_to_end};
use crate::crypto::{Aad, random_token, sha256_hex};
use crate::store::{
    AuditAction, AuditEntry, ClientInfo, ConnectRecord, Integration, IntegrationStatus, NewState, StateRecord,
};

/// Version recorded with every consent row.
pub const CONSENT_VERSION: &str = "1.0";

/// What a flow keeps with its state (`oauth_state.state_metadata`).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct FlowMetadata {
    /// The OpenID Connect nonce the ID token must carry.
    #[serde(default)]
    nonce: Option<String>,
    /// Where the browser goes after the callback.
    #[serde(default)]
    return_to: Option<String>,
    /// SHA-256 hex of the flow cookie `/initiate` set (RFC 9700 §4.7).
    #[serde(default)]
    browser_binding: Option<String>,
    /// Until when (Unix seconds) the flow's authorization link may bind a browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    handoff_until: Option<i64>,
    /// Whether that link is a connect link (opened from anywhere) rather than `/initiate`'s.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    handoff_link: bool,
    /// SHA-256 hex of the flow cookie the authorization link set, once a browser opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    handoff_binding: Option<String>,
}

impl FlowMetadata {
    /// The metadata of `record`, each field on its own: one a writer got wrong does not cost the
    /// others.
    fn of(record: &StateRecord) -> Self {
        let field = |key: &str| record.metadata.get(key).and_then(|value| value.as_str()).map(str::to_owned);
        Self {
            nonce: field("nonce"),
            return_to: field("return_to"),
            browser_binding: field("browser_binding"),
            handoff_until: record.metadata.get("handoff_until").and_then(serde_json::Value::as_i64),
            handoff_link: record.metadata.get("handoff_link").and_then(serde_json::Value::as_bool).unwrap_or(false),
            handoff_binding: field("handoff_binding"),
        }
    }

    /// Whether `presented` (a flow cookie's value) is one this flow bound a browser with.
    fn binds(&self, presented: &str) -> bool {
        let presented = sha256_hex(presented.as_bytes());
        [&self.browser_binding, &self.handoff_binding].into_iter().flatten().any(|expected| *expected == presented)
    }
}

/// How the browser that will finish a flow gets bound to it (RFC 9700 §4.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// The answer to `/initiate` sets the flow cookie, and the authorization URL is the
    /// provider's: the caller is the browser, on this service's own origin.
    Cookie,
    /// The answer still sets the cookie (a client with a cookie jar uses it), but the
    /// authorization URL first passes through this service, which binds the first browser that
    /// opens it within `handoff_seconds`, coming from this service's or the app's pages.
    Handoff,
    /// A connect link: the first browser that opens it within `lifetime_seconds`, from anywhere.
    Link { lifetime_seconds: u64 },
}

/// A validated request to connect an account.
#[derive(Debug)]
pub struct Authorization<'a> {
    pub provider: &'a Provider,
    /// What the caller asked for (or the defaults); the catalogue's required scopes are added.
    pub scopes: Vec<Scope>,
    pub redirect_uri: CallbackUrl,
    pub return_to: Option<ReturnTo>,
    pub binding: Binding,
}

/// A started flow: where to send the browser, and the value that binds the flow to it.
#[derive(Debug)]
pub struct Initiated {
    pub authorization_url: String,
    /// The state value (only its hash is stored).
    pub state: String,
    pub provider: String,
    pub scopes: Vec<String>,
    pub expires_at: DateTime<Utc>,
    /// The flow cookie's value for the caller's browser (its hash is stored); `None` for a link.
    pub browser_binding: Option<String>,
    /// Seconds until the state expires.
    pub lifetime_seconds: u64,
}

/// Starts a flow for `user_id`: records the state and builds the authorization URL.
#[tracing::instrument(skip_all, fields(user_id, provider = %authorization.provider.name))]
pub async fn initiate(vault: &Vault, user_id: i32, authorization: Authorization<'_>) -> Result<Initiated, FlowError> {
    let Authorization { provider, scopes, redirect_uri, return_to, binding } = authorization;
    let scopes = with_required(provider, scopes);
    // Each state is a row: one user cannot pile them up.
    let now = Utc::now();
    let (open, first_expiry) = vault.store.open_states(user_id, now.naive_utc()).await?;
    let most = vault.config.limits.open_flows_per_user;
    if open >= i64::from(most) {
        let wait = first_expiry.map_or(0, |expiry| (expiry - now.naive_utc()).num_seconds().max(1));
        return Err(FlowError::TooManyOpenFlows {
            open: most,
            retry_after: std::time::Duration::from_secs(wait as u64),
        });
    }
    let state_value = random_token(32);
    let state_hash = sha256_hex(state_value.as_bytes());
    // RFC 7636: S256 always, for every provider that supports PKCE.
    let (code_verifier, code_challenge) = if provider.pkce {
        let verifier = random_token(32);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        (Some(vault.keys.encrypt(&verifier, &Aad::code_verifier(&state_hash))), Some(challenge))
    } else {
        (None, None)
    };
    let nonce = provider.is_oidc().then(|| random_token(16));
    let browser_binding = (!matches!(binding, Binding::Link { .. })).then(|| random_token(32));
    let flow = &vault.config.flow;
    let lifetime_seconds = match binding {
        Binding::Link { lifetime_seconds } => lifetime_seconds,
        Binding::Cookie | Binding::Handoff => flow.state_ttl_seconds,
    };
    let expires_at = now + Duration::seconds(lifetime_seconds as i64);
    let handoff_until = match binding {
        Binding::Cookie => None,
        Binding::Handoff => Some(now.timestamp() + flow.handoff_seconds.min(flow.state_ttl_seconds) as i64),
        Binding::Link { .. } => Some(expires_at.timestamp()),
    };
    let metadata = FlowMetadata {
        nonce: nonce.clone(),
        return_to: return_to.as_ref().map(|target| target.as_str().to_owned()),
        browser_binding: browser_binding.as_ref().map(|value| sha256_hex(value.as_bytes())),
        handoff_until,
        handoff_link: matches!(binding, Binding::Link { .. }),
        handoff_binding: None,
    };
    let record = NewState {
        state_hash,
        user_id,
        provider: provider.name.clone(),
        scopes: scopes.clone(),
        redirect_uri: redirect_uri.as_str().to_owned(),
        code_verifier,
        code_challenge: code_challenge.clone(),
        metadata: serde_json::to_value(metadata).map_err(anyhow::Error::from)?,
        created_at: now.naive_utc(),
        expires_at: expires_at.naive_utc(),
    };
    vault.store.insert_state(&record).await?;

    let authorization_url = match binding {
        Binding::Cookie => provider_url(
            provider,
            redirect_uri.as_str(),
            &scopes,
            &state_value,
            code_challenge.as_deref(),
            nonce.as_deref(),
        )?,
        Binding::Handoff | Binding::Link { .. } => handoff_url(&vault.config, &state_value),
    };
    Ok(Initiated {
        authorization_url,
        state: state_value,
        provider: provider.name.clone(),
        scopes,
        expires_at,
        browser_binding,
        lifetime_seconds,
    })
}

/// The authorization link of a flow that binds the browser opening it: this service's
/// `GET /handoff/{state}` (the state is in the provider's URL anyway).
pub fn handoff_url(config: &crate::config::Config, state_value: &str) -> String {
    format!("{}/api/v1/oauth/handoff/{state_value}", config.public_base_url.as_str().trim_end_matches('/'))
}

/// The provider's authorization URL (RFC 6749 §4.1.1, RFC 7636 §4.3, OpenID Connect's nonce).
fn provider_url(
    provider: &Provider,
    redirect_uri: &str,
    scopes: &[String],
    state_value: &str,
    code_challenge: Option<&str>,
    nonce: Option<&str>,
) -> Result<String, FlowError> {
    let mut url =
        Url::parse(&provider.authorization_url).map_err(|error| anyhow::anyhow!("authorization_url: {error}"))?;
    let credentials =
        provider.credentials.as_ref().ok_or_else(|| FlowError::ProviderNotConfigured(provider.display_name.clone()))?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("response_type", "code");
        query.append_pair("client_id", &credentials.client_id);
        query.append_pair("redirect_uri", redirect_uri);
        if !scopes.is_empty() {
            query.append_pair("scope", &scopes.join(&provider.scope_separator));
        }
        query.append_pair("state", state_value);
        if let Some(challenge) = code_challenge {
            query.append_pair("code_challenge", challenge);
            query.append_pair("code_challenge_method", "S256");
        }
        if let Some(nonce) = nonce {
            query.append_pair("nonce", nonce);
        }
        for (name, value) in &provider.authorization_params {
            query.append_pair(name, value);
        }
    }
    Ok(url.into())
}

/// Where a browser that opened an authorization link goes next, and its flow cookie.
#[derive(Debug)]
pub struct HandedOff {
    pub provider_url: String,
    pub browser_binding: String,
    /// Seconds the flow has left, as the cookie's `Max-Age`.
    pub lifetime_seconds: u64,
}

/// Where the page that opened an authorization link was, as far as the request tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CameFrom {
    /// A page of this service or of the app (an allowed origin), same-site with this service.
    App,
    /// Another site's page.
    OtherSite,
    /// No page: typed, pasted, or opened from another program (a mail or chat client).
    Nowhere,
}

/// The browser that opened an authorization link.
#[derive(Clone, Copy, Debug)]
pub struct Opener<'a> {
    pub came_from: CameFrom,
    /// The flow cookie it carries for this state (`/initiate`'s answer, kept in a cookie jar).
    pub flow_cookie: Option<&'a str>,
    /// The user of a valid access token it carries (the `access_token` cookie or a header).
    pub user_id: Option<i32>,
}

/// A browser opened the authorization link of flow `state_value`: the first one within the
/// link's time is bound to the flow (its cookie's hash is stored) and sent on to the provider.
/// An `/initiate` link binds a browser that comes from the app's pages, or that already carries
/// the flow's cookie or its user's access token; one opened from nowhere (a link sent by chat or
/// mail: the attacker's own flow, minted as the victim clicks) or from another site is refused. A
/// connect link (meant for e-mail) binds whoever opens it first. A browser of another user never.
#[tracing::instrument(skip_all)]
pub async fn hand_off(vault: &Vault, state_value: &str, opener: Opener<'_>) -> Result<HandedOff, FlowError> {
    let record = vault.store.find_state(&sha256_hex(state_value.as_bytes())).await?.ok_or(FlowError::UnknownState)?;
    let metadata = FlowMetadata::of(&record);
    let now = Utc::now();
    if record.is_used {
        return Err(FlowError::StateUsed);
    }
    let until = metadata.handoff_until.ok_or(FlowError::UnknownState)?;
    if metadata.handoff_binding.is_some() {
        return Err(FlowError::HandoffUsed);
    }
    if until <= now.timestamp() || record.expires_at <= now.naive_utc() {
        return Err(FlowError::HandoffExpired);
    }
    if opener.user_id.is_some_and(|user| user != record.user_id) {
        return Err(FlowError::StateUserMismatch);
    }
    let vouched = opener.user_id == Some(record.user_id)
        || opener.flow_cookie.is_some_and(|cookie| metadata.binds(cookie))
        || opener.came_from == CameFrom::App;
    if !metadata.handoff_link && !vouched {
        return Err(FlowError::HandoffForeignSite);
    }
    let provider = vault.providers.get(&record.provider).ok_or(FlowError::ProviderGone)?;
    let browser_binding = random_token(32);
    // A link's flow gets the ordinary time for the provider's pages from now on.
    let expires_at = if metadata.handoff_link {
        now + Duration::seconds(vault.config.flow.state_ttl_seconds as i64)
    } else {
        DateTime::from_naive_utc_and_offset(record.expires_at, Utc)
    };
    let claimed =
        FlowMetadata { handoff_binding: Some(sha256_hex(browser_binding.as_bytes())), ..FlowMetadata::of(&record) };
    let claimed = serde_json::to_value(claimed).map_err(anyhow::Error::from)?;
    if !vault.store.claim_handoff(record.id, &record.metadata, &claimed, expires_at.naive_utc()).await? {
        return Err(FlowError::HandoffUsed);
    }
    let redirect_uri = record.redirect_uri.clone().unwrap_or_else(|| vault.config.callback_url(None));
    let provider_url = provider_url(
        provider,
        &redirect_uri,
        &record.scopes,
        state_value,
        record.code_challenge.as_deref(),
        metadata.nonce.as_deref(),
    )?;
    Ok(HandedOff { provider_url, browser_binding, lifetime_seconds: (expires_at - now).num_seconds().max(1) as u64 })
}

/// The catalogue's required scopes first, then those asked for, without duplicates.
fn with_required(provider: &Provider, requested: Vec<Scope>) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in Scope::required(provider).chain(requested) {
        let scope = scope.into_string();
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes
}

/// The authorization response at the callback (RFC 6749 §4.1.2 and §4.1.2.1, RFC 9207).
#[derive(Debug, Default)]
pub struct AuthorizationResponse {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
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
    pub error: FlowError,
    pub return_to: Option<String>,
    /// Whether the state was consumed; if not, the browser may still finish this flow.
    pub state_spent: bool,
}

impl From<FlowError> for CallbackFailure {
    fn from(error: FlowError) -> Self {
        Self { error, return_to: None, state_spent: false }
    }
}

/// A completed callback.
#[derive(Debug)]
pub struct Connected {
    pub integration: Integration,
    pub return_to: Option<String>,
}

/// Validates and spends the state, exchanges the code and stores the connection. The response
/// arrived at the callback of `path_provider` (`None`: the provider-less callback).
#[tracing::instrument(skip_all, fields(path_provider))]
pub async fn callback(
    vault: &Vault,
    response: AuthorizationResponse,
    path_provider: Option<&str>,
    browser: Browser,
    client: ClientInfo,
) -> Result<Connected, CallbackFailure> {
    let started = Instant::now();
    let state_value = response.state.as_deref().filter(|value| !value.is_empty()).ok_or(FlowError::UnknownState)?;
    let record = vault
        .store
        .find_state(&sha256_hex(state_value.as_bytes()))
        .await
        .map_err(FlowError::from)?
        .ok_or(FlowError::UnknownState)?;
    let metadata = FlowMetadata::of(&record);
    let return_to = metadata.return_to.clone();
    let fail = |error: FlowError| CallbackFailure { error, return_to: return_to.clone(), state_spent: false };
    let now = Utc::now().naive_utc();

    let provider = match check_state(vault, &record, &metadata, &response, path_provider, &browser) {
        Ok(provider) => provider,
        // The response reached a browser it was not meant for: whoever holds this URL (a forwarded
        // link, a page's address) must not be able to replay it from a browser of theirs.
        Err(error @ (FlowError::StateNotBound | FlowError::StateUserMismatch)) => {
            vault.store.consume_state(record.id, now).await.map_err(|error| fail(error.into()))?;
            record_failed_connect(vault, &record, &client, &error, started).await;
            return Err(CallbackFailure { state_spent: true, ..fail(error) });
        }
        // The other checks refuse without changing anything: the legitimate user can still finish.
        Err(error) => return Err(fail(error)),
    };

    // From here the state is spent (RFC 9700 §2.1.1: single use), whatever happens next, and the
    // rest runs to its end even if the browser goes away: a spent state leaves a connection or an
    // `error` row, never nothing.
    if !vault.store.consume_state(record.id, now).await.map_err(|error| fail(error.into()))? {
        return Err(fail(FlowError::StateUsed));
    }
    let (task_vault, provider_name) = (vault.clone(), provider.name.clone());
    let outcome = run_to_end(async move {
        let vault = task_vault;
        let provider = vault.providers.get(&provider_name).ok_or(FlowError::ProviderGone);
        let outcome = match provider {
            Ok(provider) => complete(&vault, provider, &record, &metadata, &response, &client, started).await,
            Err(error) => Err(error),
        };
        if let Err(error) = &outcome {
            record_failed_connect(&vault, &record, &client, error, started).await;
        }
        outcome
    })
    .await;
    match outcome {
        Ok(integration) => Ok(Connected { integration, return_to }),
        Err(error) => Err(CallbackFailure { state_spent: true, ..fail(error) }),
    }
}

/// Writes the `error` audit row of a connect that failed once its state was spent.
async fn record_failed_connect(
    vault: &Vault,
    record: &StateRecord,
    client: &ClientInfo,
    error: &FlowError,
    started: Instant,
) {
    let entry = failed_connect_entry(record, client, error, started);
    if let Err(audit_error) = vault.store.record_audit(&entry).await {
        tracing::warn!(error = %audit_error, "could not record a failed connect");
    }
}

/// Whether `record` may be finished by this response and this browser; its provider if so.
fn check_state<'v>(
    vault: &'v Vault,
    record: &StateRecord,
    metadata: &FlowMetadata,
    response: &AuthorizationResponse,
    path_provider: Option<&str>,
    browser: &Browser,
) -> Result<&'v Provider, FlowError> {
    if record.is_used {
        return Err(FlowError::StateUsed);
    }
    if record.expires_at <= Utc::now().naive_utc() {
        return Err(FlowError::StateExpired);
    }
    // RFC 9700 §4.4.2.2: the response must arrive at the redirect URI the flow was started with.
    let arrived_at = vault.config.callback_url(path_provider);
    if path_provider.is_some_and(|name| name != record.provider)
        || record.redirect_uri.as_deref().is_some_and(|recorded| recorded != arrived_at)
    {
        return Err(FlowError::ProviderMismatch);
    }
    if browser.user_id.is_some_and(|user| user != record.user_id) {
        return Err(FlowError::StateUserMismatch);
    }
    // RFC 9700 §4.7: only the browser that started the flow may finish it, or else an attacker
    // could send a victim their own authorization URL and collect the victim's account.
    let cookie_matches = browser.flow_cookie.as_deref().is_some_and(|presented| metadata.binds(presented));
    if vault.config.browser_binding && !cookie_matches && browser.user_id != Some(record.user_id) {
        return Err(FlowError::StateNotBound);
    }
    let provider = vault.providers.get(&record.provider).ok_or(FlowError::ProviderGone)?;
    match (&response.iss, &provider.issuer) {
        (Some(iss), Some(issuer))
            if !issuer_matches(issuer, iss) && !provider.issuer_aliases.iter().any(|alias| alias == iss) =>
        {
            return Err(FlowError::IssuerMismatch);
        }
        (None, _) if provider.authorization_response_iss_parameter_supported => return Err(FlowError::IssuerMissing),
        _ => {}
    }
    Ok(provider)
}

/// The `error` audit row of a connect that failed after its state was spent.
fn failed_connect_entry(record: &StateRecord, client: &ClientInfo, error: &FlowError, started: Instant) -> AuditEntry {
    AuditEntry {
        integration_id: None,
        user_id: record.user_id,
        action: AuditAction::Error,
        provider: record.provider.clone(),
        scopes: Some(record.scopes.clone()),
        client: client.clone(),
        success: false,
        error_message: Some(error.to_string()),
        duration_ms: Some(elapsed_ms(started)),
        metadata: Some(json!({"operation": "connect", "code": error.code()})),
        details: None,
        created_at: Utc::now().naive_utc(),
    }
}

/// Exchanges the code, checks the ID token, reads the identity and stores the connection.
#[tracing::instrument(skip_all, fields(provider = %provider.name))]
async fn complete(
    vault: &Vault,
    provider: &Provider,
    record: &StateRecord,
    metadata: &FlowMetadata,
    response: &AuthorizationResponse,
    client: &ClientInfo,
    started: Instant,
) -> Result<Integration, FlowError> {
    if let Some(error) = &response.error {
        let reason = if error == "access_denied" {
            "The authorization was denied."
        } else {
            "The provider refused the authorization."
        };
        // The parameter comes from the browser: keep only an error-code shape for logs and detail.
        let error: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        tracing::info!(error = %error, "provider returned an authorization error");
        return Err(FlowError::AuthorizationDenied { reason, error });
    }
    let code = response.code.as_deref().filter(|code| !code.is_empty()).ok_or(FlowError::MissingCode)?;
    let tokens = exchange(vault, provider, record, code).await?;
    let account = account(vault, provider, metadata.nonce.as_deref(), &tokens).await?;

    let granted = match &tokens.scope {
        Some(scope) => split_scopes(scope),
        None => record.scopes.clone(),
    };
    let now = Utc::now().naive_utc();
    let access =
        vault.keys.encrypt(tokens.access_token.expose_secret(), &Aad::access_token(record.user_id, &provider.name));
    let refresh = tokens
        .refresh_token
        .as_ref()
        .map(|token| vault.keys.encrypt(token.expose_secret(), &Aad::refresh_token(record.user_id, &provider.name)));
    let connect = ConnectRecord {
        state_id: Some(record.id),
        user_id: record.user_id,
        provider: provider.name.clone(),
        provider_user_id: Some(account.user_id),
        scopes: granted,
        metadata: json!({"email": account.email, "name": account.name, "details": account.details}),
        access_token: access,
        refresh_token: refresh,
        token_type: tokens.token_type.clone(),
        expires_at: expires_at_from(now, tokens.expires_in),
        scope: tokens.scope.clone(),
        client: client.clone(),
        consent_version: CONSENT_VERSION.to_owned(),
        duration_ms: elapsed_ms(started),
        now,
    };
    // Whether this connect mends one that needed re-authorisation (`integration.recovered`).
    let was_broken = matches!(
        vault.store.find_token_by_owner(record.user_id, &provider.name).await,
        Ok(Some(token)) if token.status == IntegrationStatus::Error
    );
    let integration = vault.store.complete_connect(&connect).await.map_err(|error| match error {
        // The state was deleted while the code was exchanged: the user was erased.
        crate::store::StoreError::NotFound => FlowError::UnknownState,
        error => error.into(),
    })?;
    tracing::info!(integration_id = integration.id, "connected");
    let subject = Subject {
        integration_id: integration.id,
        user_id: integration.user_id,
        provider: &integration.provider,
        status: integration.status.as_str(),
        reason: None,
    };
    vault.webhooks.emit(vault.store.as_ref(), Event::Connected, subject.clone()).await;
    if was_broken {
        vault.webhooks.emit(vault.store.as_ref(), Event::Recovered, subject).await;
    }
    Ok(integration)
}

/// Exchanges the authorization code, with the PKCE verifier the flow stored.
async fn exchange(
    vault: &Vault,
    provider: &Provider,
    record: &StateRecord,
    code: &str,
) -> Result<TokenResponse, FlowError> {
    let verifier = match &record.code_verifier {
        Some(ciphertext) => Some(
            vault
                .keys
                .decrypt(ciphertext, &Aad::code_verifier(&record.state_hash))
                .map_err(|error| anyhow::anyhow!("decrypting the PKCE verifier: {error}"))?,
        ),
        None => None,
    };
    let redirect_uri = record.redirect_uri.clone().unwrap_or_else(|| vault.config.callback_url(None));
    client::exchange_code(&vault.http, provider, code, &redirect_uri, verifier.as_ref())
        .await
        .map_err(|error| ProviderFailure { step: ProviderStep::TokenExchange, error }.into())
}

/// The connected account: the ID token checked (OIDC Core §3.1.3.7), then the identity read.
async fn account(
    vault: &Vault,
    provider: &Provider,
    nonce: Option<&str>,
    tokens: &TokenResponse,
) -> Result<Account, FlowError> {
    let id_claims = match (&tokens.id_token, provider.is_oidc()) {
        (Some(id_token), true) => Some(
            vault
                .jwks
                .validate(&vault.http, provider, id_token, nonce)
                .await
                .map_err(|error| FlowError::InvalidIdToken(error.to_string()))?,
        ),
        (None, true) if provider.identity.source == IdentitySource::IdToken => {
            return Err(FlowError::InvalidIdToken("The provider sent no ID token.".into()));
        }
        _ => None,
    };
    let document = identity::document(&vault.http, provider, tokens, id_claims).await?;
    Account::extract(provider, &document).ok_or(FlowError::IdentityUnavailable)
}

/// RFC 9207 §2.4: `iss` must equal the provider's issuer (Microsoft's names the user's tenant,
/// whose id is a GUID).
fn issuer_matches(template: &str, iss: &str) -> bool {
    match template.split_once("{tid}") {
        None => template == iss,
        Some((before, after)) => {
            iss.strip_prefix(before).and_then(|rest| rest.strip_suffix(after)).is_some_and(is_tenant_id)
        }
    }
}

/// A tenant id: a GUID (`8-4-4-4-12` hex digits), never `..`, a host or an escape.
fn is_tenant_id(tid: &str) -> bool {
    tid.len() == 36
        && tid
            .char_indices()
            .all(|(at, c)| if matches!(at, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() })
}

#[cfg(test)]
mod tests {
    use super::issuer_matches;

    #[test]
    fn templated_issuers_accept_one_tenant_segment() {
        let template = "https://login.microsoftonline.com/{tid}/v2.0";
        assert!(issuer_matches(
            template,
            "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
        ));
        assert!(!issuer_matches(template, "https://login.microsoftonline.com//v2.0"));
        for forged in ["..", ".", "%2e%2e", "evil.test", "9188040d-6c67", "9188040d-6c67-4c5b-b112-36a304b66dax"] {
            assert!(!issuer_matches(template, &format!("https://login.microsoftonline.com/{forged}/v2.0")), "{forged}");
        }
        assert!(!issuer_matches(template, "https://evil.example/9188040d/v2.0"));
        assert!(!issuer_matches(template, "https://login.microsoftonline.com/a/b/v2.0"));
        assert!(issuer_matches("https://accounts.google.com", "https://accounts.google.com"));
        assert!(!issuer_matches("https://accounts.google.com", "https://accounts.google.com/"));
    }
}

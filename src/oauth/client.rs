//! Calls to a provider's token, revocation and identity endpoints (RFC 6749 §4.1.3, §6; RFC 7009),
//! shaped by the provider's data: client authentication, body format, extra headers.
//!
//! One generic client rather than the `oauth2` crate: providers are configuration, and Notion's
//! JSON token request is outside what `oauth2`'s typed client can express.

use reqwest::header::ACCEPT;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::providers::{ClientAuth, Provider, RequestFormat};

/// How a provider call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered with an OAuth error (RFC 6749 §5.2).
    #[error("the provider refused the request ({error})")]
    Rejected { error: String, description: Option<String>, status: u16 },
    /// The provider could not be reached, timed out, failed or answered something unusable.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// No client credentials are configured for this provider.
    #[error("OAuth credentials not configured")]
    NotConfigured,
}

/// A token endpoint answer. Secrets are wrapped; `extra` keeps the non-secret remainder
/// (Notion's workspace and owner fields) for identity extraction.
#[derive(Debug)]
pub struct TokenResponse {
    pub access_token: SecretString,
    pub token_type: String,
    pub expires_in: Option<i64>,
    pub refresh_token: Option<SecretString>,
    pub scope: Option<String>,
    pub id_token: Option<String>,
    pub extra: Value,
}

/// Exchanges an authorization code (with the PKCE verifier when the provider uses PKCE).
pub async fn exchange_code(
    http: &reqwest::Client,
    provider: &Provider,
    code: &str,
    redirect_uri: &str,
    code_verifier: Option<&SecretString>,
) -> Result<TokenResponse, ProviderError> {
    let mut params = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.to_owned()),
        ("redirect_uri", redirect_uri.to_owned()),
    ];
    if let Some(verifier) = code_verifier {
        params.push(("code_verifier", verifier.expose_secret().to_owned()));
    }
    token_request(http, provider, params).await
}

/// Uses a refresh token (RFC 6749 §6).
pub async fn refresh(
    http: &reqwest::Client,
    provider: &Provider,
    refresh_token: &SecretString,
) -> Result<TokenResponse, ProviderError> {
    let params =
        vec![("grant_type", "refresh_token".to_owned()), ("refresh_token", refresh_token.expose_secret().to_owned())];
    token_request(http, provider, params).await
}

/// Revokes a token at the provider (RFC 7009); the caller checks that an endpoint exists.
pub async fn revoke(
    http: &reqwest::Client,
    provider: &Provider,
    revocation_url: &str,
    token: &SecretString,
    hint: &str,
) -> Result<(), ProviderError> {
    let params = vec![("token", token.expose_secret().to_owned()), ("token_type_hint", hint.to_owned())];
    let request = authenticated(http.post(revocation_url), provider, params, provider.revocation_format)?;
    let response = send(request, provider, "revoke").await?;
    if response.status().is_success() {
        return Ok(());
    }
    Err(error_from(response).await)
}

/// GETs a JSON document with the access token (userinfo, Graph `/me`, YouTube channels), with
/// the provider's extra headers (Notion's API wants its `Notion-Version` everywhere).
pub async fn fetch_json(
    http: &reqwest::Client,
    provider: &Provider,
    url: &str,
    access_token: &SecretString,
) -> Result<Value, ProviderError> {
    let mut request = http.get(url).bearer_auth(access_token.expose_secret()).header(ACCEPT, "application/json");
    for (name, value) in &provider.token_request_headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = send(request, provider, "identity").await?;
    if !response.status().is_success() {
        return Err(error_from(response).await);
    }
    json_answer(response, "the answer was not JSON").await
}

/// Sends a request to `provider`, recording how long it took and how it ended
/// (`crate::prometheus`).
async fn send(
    request: reqwest::RequestBuilder,
    provider: &Provider,
    operation: &'static str,
) -> Result<reqwest::Response, ProviderError> {
    let started = std::time::Instant::now();
    let sent = request.send().await;
    let result = match &sent {
        Ok(response) if response.status().is_success() => "success",
        Ok(response) if response.status().is_client_error() => "refused",
        Ok(_) => "server_error",
        Err(_) => "unreachable",
    };
    let provider_name = provider.name.clone();
    metrics::histogram!(crate::prometheus::PROVIDER_REQUEST_DURATION, "provider" => provider_name.clone(), "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(crate::prometheus::PROVIDER_REQUESTS, "provider" => provider_name, "operation" => operation, "result" => result)
        .increment(1);
    sent.map_err(transport)
}

async fn token_request(
    http: &reqwest::Client,
    provider: &Provider,
    params: Vec<(&'static str, String)>,
) -> Result<TokenResponse, ProviderError> {
    let refreshing = params.iter().any(|(name, value)| *name == "grant_type" && value == "refresh_token");
    let operation = if refreshing { "refresh" } else { "code_exchange" };
    let request = authenticated(http.post(&provider.token_url), provider, params, provider.token_request_format)?;
    let response = send(request, provider, operation).await?;
    if !response.status().is_success() {
        return Err(error_from(response).await);
    }
    let mut body: Map<String, Value> = json_answer(response, "the token endpoint did not answer JSON").await?;
    let mut take_string = |key: &str| match body.remove(key) {
        Some(Value::String(value)) if !value.is_empty() => Some(value),
        _ => None,
    };
    let access_token = take_string("access_token")
        .ok_or_else(|| ProviderError::Unavailable("the token endpoint answered without an access_token".into()))?;
    let refresh_token = take_string("refresh_token");
    let id_token = take_string("id_token");
    // Whatever the provider sends must fit the columns it is written to: a write the database
    // refuses would roll back, and with it a refresh token the provider has already rotated.
    let scope = take_string("scope").map(|scope| scope.replace('\0', ""));
    let token_type = take_string("token_type").map_or_else(|| "Bearer".to_owned(), |kind| fitted_token_type(&kind));
    let expires_in = lifetime(body.remove("expires_in"));
    Ok(TokenResponse {
        access_token: SecretString::from(access_token),
        token_type,
        expires_in,
        refresh_token: refresh_token.map(SecretString::from),
        scope,
        id_token,
        extra: Value::Object(body),
    })
}

/// `oauth_tokens.token_type` is VARCHAR(20).
const TOKEN_TYPE_MAX: usize = 20;

/// A token answer's `token_type` as stored: RFC 6750 §4 says "Bearer" (Notion answers "bearer");
/// another type keeps its printable characters, cut to the column's width.
pub(crate) fn fitted_token_type(kind: &str) -> String {
    if kind.eq_ignore_ascii_case("bearer") {
        return "Bearer".to_owned();
    }
    let printable: String = kind.chars().filter(|c| c.is_ascii_graphic()).take(TOKEN_TYPE_MAX).collect();
    if printable.is_empty() { "Bearer".to_owned() } else { printable }
}

/// Lifetime assumed for a token whose `expires_in` cannot be read: short, so the token is renewed
/// soon, and never "never expires".
pub const UNREADABLE_LIFETIME_SECONDS: i64 = 300;

/// The seconds of a token answer's `expires_in` (RFC 6749 §5.1): a number (some providers send a
/// float) or a numeric string (some send that). Absent means the token does not expire; present but
/// unreadable gets `UNREADABLE_LIFETIME_SECONDS`.
pub(crate) fn lifetime(expires_in: Option<Value>) -> Option<i64> {
    let seconds = match expires_in? {
        Value::Null => return None,
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse::<f64>().ok(),
        _ => None,
    };
    Some(match seconds {
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => seconds.min(i64::MAX as f64) as i64,
        _ => UNREADABLE_LIFETIME_SECONDS,
    })
}

/// Adds client authentication, the provider's extra headers and the body in its format.
fn authenticated(
    request: reqwest::RequestBuilder,
    provider: &Provider,
    mut params: Vec<(&'static str, String)>,
    format: RequestFormat,
) -> Result<reqwest::RequestBuilder, ProviderError> {
    let credentials = provider.credentials.as_ref().ok_or(ProviderError::NotConfigured)?;
    let mut request = request.header(ACCEPT, "application/json");
    for (name, value) in &provider.token_request_headers {
        request = request.header(name.as_str(), value.as_str());
    }
    match provider.client_auth {
        // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
        ClientAuth::ClientSecretBasic => {
            let encode = |value: &str| url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
            request = request
                .basic_auth(encode(&credentials.client_id), Some(encode(credentials.client_secret.expose_secret())));
        }
        ClientAuth::ClientSecretPost => {
            params.push(("client_id", credentials.client_id.clone()));
            params.push(("client_secret", credentials.client_secret.expose_secret().to_owned()));
        }
    }
    Ok(match format {
        RequestFormat::Form => request.form(&params),
        RequestFormat::Json => {
            let body: Map<String, Value> =
                params.into_iter().map(|(key, value)| (key.to_owned(), Value::String(value))).collect();
            request.json(&body)
        }
    })
}

fn transport(error: reqwest::Error) -> ProviderError {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not be reached"
    } else {
        "failed"
    };
    // The error's URL may carry parameters: name only the kind of failure.
    ProviderError::Unavailable(format!("the request {what}"))
}

async fn error_from(response: reqwest::Response) -> ProviderError {
    let status = response.status();
    let body: Option<Value> = capped_body(response).await.ok().and_then(|body| serde_json::from_slice(&body).ok());
    let field = |key: &str| body.as_ref().and_then(|b| b.get(key)).and_then(Value::as_str).map(str::to_owned);
    // Notion's API errors use `code`; OAuth endpoints use `error`.
    match field("error").or_else(|| field("code")) {
        // A 401 from a resource endpoint may have no OAuth error body: it is still a refusal.
        None if status == reqwest::StatusCode::UNAUTHORIZED => {
            ProviderError::Rejected { error: "unauthorized".into(), description: None, status: 401 }
        }
        Some(error) if status.is_client_error() => {
            let description = field("error_description").or_else(|| field("message"));
            ProviderError::Rejected { error: error_code(&error), description, status: status.as_u16() }
        }
        _ => ProviderError::Unavailable(format!("HTTP {status}")),
    }
}

/// A provider's `error` as a code (RFC 6749 §5.2 allows only printable ASCII): it reaches answers,
/// audit rows and logs, so nothing else of what a provider sends may ride along.
pub(crate) fn error_code(error: &str) -> String {
    let code: String =
        error.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')).take(64).collect();
    if code.is_empty() { "invalid_error".to_owned() } else { code }
}

/// Most bytes read of a provider's answer: token answers and identity documents are a few kB, so a
/// provider (or a proxy in front of it) cannot make us buffer megabytes.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// The body of `response`, refused beyond `MAX_ANSWER_BYTES`.
async fn capped_body(mut response: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
    let too_large =
        || ProviderError::Unavailable(format!("the answer was larger than {} KiB", MAX_ANSWER_BYTES / 1024));
    if response.content_length().is_some_and(|length| length > MAX_ANSWER_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A JSON answer (RFC 6749 §5.1: `application/json`), capped; `not_json` says what went wrong.
pub(super) async fn json_answer<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    not_json: &str,
) -> Result<T, ProviderError> {
    let labelled_json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().contains("json"));
    let body = capped_body(response).await?;
    if !labelled_json {
        return Err(ProviderError::Unavailable(not_json.to_owned()));
    }
    serde_json::from_slice(&body).map_err(|_| ProviderError::Unavailable(not_json.to_owned()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{UNREADABLE_LIFETIME_SECONDS, error_code, fitted_token_type, lifetime};

    #[test]
    fn expires_in_is_read_from_numbers_and_numeric_strings() {
        assert_eq!(lifetime(Some(json!(3599))), Some(3599));
        assert_eq!(lifetime(Some(json!(3599.0))), Some(3599));
        assert_eq!(lifetime(Some(json!("3599"))), Some(3599));
        assert_eq!(lifetime(Some(json!(" 3599.5 "))), Some(3599));
    }

    #[test]
    fn a_providers_error_is_reduced_to_a_code() {
        assert_eq!(error_code("invalid_grant"), "invalid_grant");
        assert_eq!(error_code("bad\n<script>alert(1)</script>"), "badscriptalert1script");
        assert_eq!(error_code(&"x".repeat(500)).len(), 64);
        assert_eq!(error_code("\u{0}"), "invalid_error");
    }

    #[test]
    fn token_types_fit_their_column() {
        assert_eq!(fitted_token_type("bearer"), "Bearer");
        assert_eq!(fitted_token_type("MAC"), "MAC");
        assert_eq!(fitted_token_type(&"x".repeat(25)).len(), 20);
        assert_eq!(fitted_token_type("\0\0"), "Bearer");
    }

    #[test]
    fn unreadable_expires_in_is_a_short_lifetime_never_never() {
        for garbage in [json!("3599s"), json!(-5), json!(true), json!({"s": 1}), json!("")] {
            assert_eq!(lifetime(Some(garbage.clone())), Some(UNREADABLE_LIFETIME_SECONDS), "{garbage}");
        }
        assert_eq!(lifetime(None), None, "absent: the token does not expire");
        assert_eq!(lifetime(Some(json!(null))), None);
    }
}

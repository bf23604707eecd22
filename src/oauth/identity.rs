//! Who the connected account is: the provider's identity document (ID token, userinfo, another
//! URL, or the token answer itself), read with the provider's JSON pointers.

use serde_json::{Map, Value};

use super::client::{self, TokenResponse};
use super::error::{FlowError, ProviderFailure, ProviderStep};
use super::providers::{IdentitySource, Provider};

/// The document the account identity is read from, per the provider's `identity.source`.
pub async fn document(
    http: &reqwest::Client,
    provider: &Provider,
    tokens: &TokenResponse,
    id_claims: Option<Value>,
) -> Result<Value, FlowError> {
    let url = match provider.identity.source {
        IdentitySource::IdToken => {
            return id_claims.ok_or_else(|| FlowError::InvalidIdToken("The provider sent no ID token.".into()));
        }
        IdentitySource::TokenResponse => return Ok(tokens.extra.clone()),
        IdentitySource::Userinfo => provider.userinfo_url.as_ref().ok_or_else(|| {
            anyhow::anyhow!("provider {} has identity.source = userinfo but no userinfo_url", provider.name)
        })?,
        IdentitySource::Url => provider.identity.url.as_ref().ok_or_else(|| {
            anyhow::anyhow!("provider {} has identity.source = url but no identity.url", provider.name)
        })?,
    };
    client::fetch_json(http, provider, url, &tokens.access_token)
        .await
        .map_err(|error| ProviderFailure { step: ProviderStep::Identity, error }.into())
}

/// Who the connected account is, as far as the provider told us.
pub struct Account {
    /// The provider's stable id of the account (the JSON pointers' values joined with `:`).
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Provider-specific facts (Notion workspace, Microsoft tenant).
    pub details: Value,
}

impl Account {
    /// The account described by `document`, if it names one.
    pub fn extract(provider: &Provider, document: &Value) -> Option<Self> {
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

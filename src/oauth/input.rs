//! Validated values from outside: the HTTP layer parses each once, where it arrives, and the
//! flows trust the type.

use url::{Origin, Url};

use super::error::FlowError;
use super::providers::Provider;
pub use super::providers::ProviderName;
use crate::config::Config;

/// A scope from a provider's catalogue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope(String);

impl Scope {
    /// The scopes a flow asks `provider` for: those `requested`, or the provider's defaults; each
    /// must be in its catalogue (the first that is not is named).
    pub fn requested(provider: &Provider, requested: Option<Vec<String>>) -> Result<Vec<Self>, FlowError> {
        let requested = requested.unwrap_or_else(|| provider.default_scopes.clone());
        requested
            .into_iter()
            .map(|scope| match provider.scope(&scope) {
                Some(_) => Ok(Self(scope)),
                None => Err(FlowError::UnknownScope { scope, provider: provider.display_name.clone() }),
            })
            .collect()
    }

    /// The catalogue's `required` scopes of `provider`.
    pub fn required(provider: &Provider) -> impl Iterator<Item = Self> + '_ {
        provider.scopes.iter().filter(|entry| entry.required).map(|entry| Self(entry.name.clone()))
    }

    /// The scope's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The scope's name, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// One of this service's registered callback URLs, where a flow's authorization response goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallbackUrl(String);

impl CallbackUrl {
    /// The per-provider callback by default (RFC 9700 §4.4.2.2); a `requested` one must be
    /// exactly a registered callback URL.
    pub fn choose(config: &Config, provider: &Provider, requested: Option<String>) -> Result<Self, FlowError> {
        match requested {
            None => Ok(Self(config.callback_url(Some(&provider.name)))),
            Some(uri) if uri == config.callback_url(None) || uri == config.callback_url(Some(&provider.name)) => {
                Ok(Self(uri))
            }
            Some(_) => Err(FlowError::InvalidRedirectUri),
        }
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where the browser goes after the callback: an absolute URL under an allowed origin, without
/// credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReturnTo(Url);

impl ReturnTo {
    /// `raw` if it is under one of the `allowed` origins and at most `max_bytes` long.
    pub fn parse(raw: &str, allowed: &[Origin], max_bytes: usize) -> Result<Self, FlowError> {
        if raw.len() > max_bytes {
            return Err(FlowError::ReturnToTooLong(max_bytes));
        }
        let url = Url::parse(raw).map_err(|_| FlowError::InvalidReturnTo)?;
        // A `blob:` URL has the origin of the URL inside it; only a page address will do.
        let page = matches!(url.scheme(), "http" | "https");
        if !page || url.username() != "" || url.password().is_some() || !allowed.contains(&url.origin()) {
            return Err(FlowError::InvalidReturnTo);
        }
        // The serialised URL (percent-encoded) is what is stored: it must fit too.
        if url.as_str().len() > max_bytes {
            return Err(FlowError::ReturnToTooLong(max_bytes));
        }
        Ok(Self(url))
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

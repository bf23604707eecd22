//! Why a flow failed, in the domain's words: each error carries its stable code and the human
//! message the caller and the audit log see. How an error becomes an HTTP answer is decided at
//! the HTTP boundary (`http::error`), never here.

use super::client::ProviderError;
use crate::store::StoreError;

/// Which provider call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderStep {
    /// Exchanging the authorization code.
    TokenExchange,
    /// Reading the connected account's identity.
    Identity,
}

/// A provider call that failed, with the step it failed at.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.message())]
pub struct ProviderFailure {
    pub step: ProviderStep,
    pub error: ProviderError,
}

impl ProviderFailure {
    /// What was being done, as the message begins.
    fn what(&self) -> &'static str {
        match self.step {
            ProviderStep::TokenExchange => "The provider refused the authorization code",
            ProviderStep::Identity => "The provider's identity endpoint failed",
        }
    }

    /// The stable code: the provider refused (per step), was unavailable, or is not configured.
    pub fn code(&self) -> &'static str {
        match (&self.error, self.step) {
            (ProviderError::Rejected { .. }, ProviderStep::TokenExchange) => "token_exchange_failed",
            (ProviderError::Rejected { .. }, ProviderStep::Identity) => "identity_unavailable",
            (ProviderError::Unavailable(_), _) => "provider_unavailable",
            (ProviderError::NotConfigured, _) => "provider_not_configured",
        }
    }

    fn message(&self) -> String {
        match &self.error {
            ProviderError::Rejected { error, .. } => format!("{} ({error}).", self.what()),
            ProviderError::Unavailable(reason) => format!("{}: {reason}.", self.what()),
            ProviderError::NotConfigured => "OAuth credentials not configured.".to_owned(),
        }
    }
}

/// Why an authorization could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("Unknown provider {0:?}.")]
    UnknownProvider(String),
    #[error("OAuth credentials not configured for {0}.")]
    ProviderNotConfigured(String),
    #[error("Scope {scope:?} is not in the {provider} scope catalogue.")]
    UnknownScope { scope: String, provider: String },
    #[error("redirect_uri must be exactly one of this service's registered callback URLs.")]
    InvalidRedirectUri,
    #[error("return_to must be an absolute URL under one of the allowed origins.")]
    InvalidReturnTo,
    #[error("return_to may have at most {0} bytes.")]
    ReturnToTooLong(usize),
    /// The user has this many unfinished flows open; the oldest expires after `retry_after`.
    #[error("You have {open} unfinished authorizations; finish or wait for one before starting another.")]
    TooManyOpenFlows { open: u32, retry_after: std::time::Duration },
    #[error("The authorization state is unknown. Start again.")]
    UnknownState,
    #[error("This authorization was already completed or abandoned.")]
    StateUsed,
    #[error("The authorization took too long. Start again.")]
    StateExpired,
    /// RFC 9700 §4.4.2.2: the response arrived at another redirect URI than the flow's.
    #[error("The callback's provider does not match the authorization that was started.")]
    ProviderMismatch,
    #[error("This authorization was started by another user.")]
    StateUserMismatch,
    /// RFC 9700 §4.7: not the browser that started the flow.
    #[error("This authorization was not started in this browser. Start again from the app.")]
    StateNotBound,
    #[error("The provider of this authorization is no longer configured.")]
    ProviderGone,
    /// The authorization link binds the first browser that opens it, and one already did.
    #[error("This authorization link was already opened. Start again from the app.")]
    HandoffUsed,
    #[error("This authorization link has expired. Start again from the app.")]
    HandoffExpired,
    /// The link was opened from another site's page, or from no page by a browser with nothing
    /// of the flow's (a forwarded link: RFC 9700 §4.7).
    #[error("This authorization link was not opened from the app. Start again from the app.")]
    HandoffForeignSite,
    /// RFC 9207 §2.4.
    #[error("The authorization response came from an unexpected issuer.")]
    IssuerMismatch,
    /// RFC 9207 §2.4: the provider says its responses carry `iss`, and this one has none.
    #[error("The authorization response does not say which issuer sent it.")]
    IssuerMissing,
    /// The provider answered the authorization with an error (`access_denied` and others).
    #[error("{reason} ({error})")]
    AuthorizationDenied { reason: &'static str, error: String },
    #[error("The callback carries no authorization code.")]
    MissingCode,
    #[error("{0}")]
    InvalidIdToken(String),
    #[error("The provider did not say who the account is.")]
    IdentityUnavailable,
    #[error(transparent)]
    Provider(#[from] ProviderFailure),
    #[error("{}", .0.public_detail())]
    Store(#[from] StoreError),
    /// A misconfiguration or an undecryptable value: logged, never shown.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl FlowError {
    /// The stable machine code, as the API and the audit log show it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownProvider(_) | Self::ProviderGone => "unknown_provider",
            Self::ProviderNotConfigured(_) => "provider_not_configured",
            Self::UnknownScope { .. } => "unknown_scope",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::InvalidReturnTo | Self::ReturnToTooLong(_) => "invalid_return_to",
            Self::TooManyOpenFlows { .. } => "too_many_flows",
            Self::UnknownState => "invalid_state",
            Self::StateUsed => "state_used",
            Self::StateExpired => "state_expired",
            Self::ProviderMismatch => "provider_mismatch",
            Self::StateUserMismatch => "state_user_mismatch",
            Self::StateNotBound => "state_not_bound",
            Self::HandoffUsed => "handoff_used",
            Self::HandoffExpired => "handoff_expired",
            Self::HandoffForeignSite => "handoff_foreign_site",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::IssuerMissing => "issuer_missing",
            Self::AuthorizationDenied { .. } => "authorization_denied",
            Self::MissingCode => "invalid_request",
            Self::InvalidIdToken(_) => "invalid_id_token",
            Self::IdentityUnavailable => "identity_unavailable",
            Self::Provider(failure) => failure.code(),
            Self::Store(error) => error.code(),
            Self::Internal(_) => "internal_error",
        }
    }
}

//! What an emulator impersonates, and the URLs a client should be configured with.

use std::path::PathBuf;
use std::time::Duration;

/// Which real provider an emulator behaves like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// Google accounts, OpenID Connect and the YouTube Data API's `channels` endpoint.
    Google,
    /// The Microsoft identity platform (v2.0 endpoints) and Microsoft Graph's `/me`.
    Microsoft,
    /// Notion's public-integration OAuth and `/v1/users/me`.
    Notion,
}

impl Flavor {
    /// The provider's name as shown on the consent page.
    pub fn display_name(self) -> &'static str {
        match self {
            Flavor::Google => "Google",
            Flavor::Microsoft => "Microsoft",
            Flavor::Notion => "Notion",
        }
    }
}

/// The tenant GUID put in Microsoft ID tokens unless a test chooses another one.
pub const DEFAULT_TENANT_ID: &str = "9b3c2f4e-7d1a-4c2b-8e5f-0a1b2c3d4e5f";

/// How one emulator is set up: the provider it imitates and the one client it knows.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// The provider imitated.
    pub flavor: Flavor,
    /// The only client id the emulator accepts.
    pub client_id: String,
    /// That client's secret.
    pub client_secret: String,
    /// Lifetime of access tokens (`expires_in`); ignored by Notion, whose tokens never expire.
    pub access_token_ttl: Duration,
    /// Microsoft: the `tid` put in ID tokens and in the issuer URL.
    pub tenant_id: String,
    /// Registered redirect URIs, matched exactly; empty accepts any absolute http(s) URI.
    pub allowed_redirect_uris: Vec<String>,
    /// Where grants and tokens outlive a restart ([`with_state_file`](Self::with_state_file));
    /// `None` keeps them in memory only.
    pub state_file: Option<PathBuf>,
}

impl EmulatorConfig {
    /// A configuration with one-hour access tokens, the default tenant and any redirect URI.
    pub fn new(flavor: Flavor, client_id: &str, client_secret: &str) -> Self {
        Self {
            flavor,
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            access_token_ttl: Duration::from_secs(3600),
            tenant_id: DEFAULT_TENANT_ID.to_owned(),
            allowed_redirect_uris: Vec::new(),
            state_file: None,
        }
    }

    /// Keeps grants, access and refresh tokens (rotated ones too, for reuse detection),
    /// revocations and consents in `path` as JSON, so they survive a restart; authorization
    /// codes, which live for seconds, are not kept.
    ///
    /// The file is read when the emulator is built: a missing file starts an empty store, and so
    /// does an unreadable or corrupt one, with a logged warning (the next change overwrites it;
    /// the grants it held are lost, as they were without a file). It is rewritten after every
    /// change, before the answer is sent, atomically (a temporary file in the same folder, then
    /// a rename) and readable by its owner only on unix (mode 0600). Signing keys are not kept:
    /// a restarted emulator publishes a new JWKS, which matters only to ID tokens issued before.
    pub fn with_state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// The endpoints a client should use for an emulator served at `base_url`.
    ///
    /// Microsoft URLs use the `common` tenant, as the service does by default.
    pub fn endpoints(&self, base_url: &str) -> Endpoints {
        let base = base_url.trim_end_matches('/');
        match self.flavor {
            Flavor::Google => Endpoints {
                authorization_url: format!("{base}/authorize"),
                token_url: format!("{base}/token"),
                revocation_url: Some(format!("{base}/revoke")),
                userinfo_url: Some(format!("{base}/userinfo")),
                issuer: Some(base.to_owned()),
                jwks_uri: Some(format!("{base}/jwks")),
                discovery_url: Some(format!("{base}/.well-known/openid-configuration")),
                youtube_channels_url: Some(format!("{base}/youtube/v3/channels")),
            },
            Flavor::Microsoft => Endpoints {
                authorization_url: format!("{base}/common/oauth2/v2.0/authorize"),
                token_url: format!("{base}/common/oauth2/v2.0/token"),
                revocation_url: None,
                userinfo_url: Some(format!("{base}/v1.0/me")),
                issuer: Some(format!("{base}/{}/v2.0", self.tenant_id)),
                jwks_uri: Some(format!("{base}/common/discovery/v2.0/keys")),
                discovery_url: Some(format!("{base}/common/v2.0/.well-known/openid-configuration")),
                youtube_channels_url: None,
            },
            Flavor::Notion => Endpoints {
                authorization_url: format!("{base}/v1/oauth/authorize"),
                token_url: format!("{base}/v1/oauth/token"),
                revocation_url: Some(format!("{base}/v1/oauth/revoke")),
                userinfo_url: Some(format!("{base}/v1/users/me")),
                issuer: None,
                jwks_uri: None,
                discovery_url: None,
                youtube_channels_url: None,
            },
        }
    }
}

/// Absolute URLs of an emulator's endpoints, ready to put in a provider configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// Where the browser is sent to consent.
    pub authorization_url: String,
    /// The token endpoint (code exchange and refresh).
    pub token_url: String,
    /// Token revocation, where the provider has one (not Microsoft).
    pub revocation_url: Option<String>,
    /// The identity endpoint: OIDC userinfo, Graph `/me` or Notion `/users/me`.
    pub userinfo_url: Option<String>,
    /// The ID-token issuer (`iss`), for OIDC providers.
    pub issuer: Option<String>,
    /// The JWKS with the ID-token signing keys, for OIDC providers.
    pub jwks_uri: Option<String>,
    /// The OpenID Connect discovery document.
    pub discovery_url: Option<String>,
    /// Google only: the YouTube Data API `channels` endpoint.
    pub youtube_channels_url: Option<String>,
}

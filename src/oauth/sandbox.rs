//! Sandbox mode: the built-in providers served by the loopback emulators, so the whole flow can
//! be tried (and tested, and benchmarked) with no account anywhere. Everything the sandbox
//! changes is here: when it runs, the emulators it serves, and the providers pointed at them.

use std::path::Path;

use provider_emulators::{EmulatorConfig, Flavor};

use super::providers::{Credentials, Providers};
use crate::config::{Config, DatabaseKind, SandboxMode};

/// Where the sandbox's provider emulators are served.
pub const PREFIX: &str = "/_sandbox";

/// The Microsoft tenant the sandbox uses (the emulator serves the multi-tenant endpoints).
const SANDBOX_TENANT: &str = "common";

/// Whether the sandbox runs: `on`, or `auto` with the SQLite default and no provider credentials.
pub fn enabled(config: &Config, providers: &Providers) -> bool {
    match config.sandbox {
        SandboxMode::On => true,
        SandboxMode::Off => false,
        SandboxMode::Auto => {
            config.database.kind == DatabaseKind::Sqlite && providers.iter().all(|p| p.credentials.is_none())
        }
    }
}

/// Client id and secret the sandbox registers with each emulator (not secrets: test fixtures).
pub fn credentials(flavor: Flavor) -> (&'static str, &'static str) {
    match flavor {
        Flavor::Google => ("sandbox-google-client", "sandbox-google-secret"),
        Flavor::Microsoft => ("sandbox-microsoft-client", "sandbox-microsoft-secret"),
        Flavor::Notion => ("sandbox-notion-client", "sandbox-notion-secret"),
    }
}

/// The emulator configuration for `flavor` with the sandbox credentials.
pub fn emulator_config(flavor: Flavor) -> EmulatorConfig {
    let (client_id, client_secret) = credentials(flavor);
    EmulatorConfig::new(flavor, client_id, client_secret)
}

/// Base URLs (no trailing slash) of the three emulators.
#[derive(Clone, Debug)]
pub struct EmulatorBases {
    /// Google's emulator, which also serves YouTube (as Google serves both).
    pub google: String,
    pub microsoft: String,
    pub notion: String,
}

/// The emulators nested under `PREFIX` of the service at `public_base_url`, and their bases.
/// Each keeps its grants and tokens in `<data_dir>/sandbox-<google|microsoft|notion>.json`, so
/// sandbox connections still refresh after a restart.
pub fn emulators(public_base_url: &str, data_dir: &Path) -> (axum::Router, EmulatorBases) {
    let base = format!("{}{PREFIX}", public_base_url.trim_end_matches('/'));
    let mut router = axum::Router::new();
    for (flavor, path) in [(Flavor::Google, "google"), (Flavor::Microsoft, "microsoft"), (Flavor::Notion, "notion")] {
        let config = emulator_config(flavor).with_state_file(data_dir.join(format!("sandbox-{path}.json")));
        let (emulator, _handle) = provider_emulators::router(config, &format!("{base}/{path}"));
        router = router.nest(&format!("/{path}"), emulator);
    }
    let bases = EmulatorBases {
        google: format!("{base}/google"),
        microsoft: format!("{base}/microsoft"),
        notion: format!("{base}/notion"),
    };
    (router, bases)
}

/// The providers the emulators stand in for.
const EMULATED: [&str; 4] = ["google", "youtube", "microsoft", "notion"];

/// Points the four built-ins at the emulators at `bases`, with the sandbox credentials; every
/// other field (scopes, quirks, identity mapping) stays as configured. Any other provider loses
/// its credentials: in the sandbox nothing talks to a real provider.
pub fn point_at_emulators(providers: &mut Providers, bases: &EmulatorBases) {
    let others: Vec<String> =
        providers.iter().map(|p| p.name.clone()).filter(|name| !EMULATED.contains(&name.as_str())).collect();
    for name in others {
        if let Some(provider) = providers.get_mut(&name) {
            provider.credentials = None;
        }
    }
    let credentials = |flavor| {
        let (client_id, client_secret) = credentials(flavor);
        Some(Credentials { client_id: client_id.to_owned(), client_secret: client_secret.to_owned().into() })
    };
    let google = &bases.google;
    for name in ["google", "youtube"] {
        if let Some(provider) = providers.get_mut(name) {
            provider.authorization_url = format!("{google}/authorize");
            provider.token_url = format!("{google}/token");
            provider.revocation_url = Some(format!("{google}/revoke"));
            provider.issuer = Some(google.clone());
            provider.credentials = credentials(Flavor::Google);
        }
    }
    if let Some(provider) = providers.get_mut("google") {
        provider.userinfo_url = Some(format!("{google}/userinfo"));
        provider.jwks_uri = Some(format!("{google}/jwks"));
        // The emulator, like Google, also writes its issuer without the scheme.
        provider.issuer_aliases = google.split_once("://").map(|(_, bare)| vec![bare.to_owned()]).unwrap_or_default();
    }
    if let Some(provider) = providers.get_mut("youtube") {
        provider.identity.url = Some(format!("{google}/youtube/v3/channels?part=snippet&mine=true"));
    }
    if let Some(provider) = providers.get_mut("microsoft") {
        let (microsoft, tenant) = (&bases.microsoft, SANDBOX_TENANT);
        provider.authorization_url = format!("{microsoft}/{tenant}/oauth2/v2.0/authorize");
        provider.token_url = format!("{microsoft}/{tenant}/oauth2/v2.0/token");
        provider.userinfo_url = Some(format!("{microsoft}/v1.0/me"));
        provider.issuer = Some(format!("{microsoft}/{{tid}}/v2.0"));
        provider.jwks_uri = Some(format!("{microsoft}/{tenant}/discovery/v2.0/keys"));
        provider.credentials = credentials(Flavor::Microsoft);
    }
    if let Some(provider) = providers.get_mut("notion") {
        let notion = &bases.notion;
        provider.authorization_url = format!("{notion}/v1/oauth/authorize");
        provider.token_url = format!("{notion}/v1/oauth/token");
        provider.revocation_url = Some(format!("{notion}/v1/oauth/revoke"));
        provider.userinfo_url = Some(format!("{notion}/v1/users/me"));
        provider.credentials = credentials(Flavor::Notion);
    }
}

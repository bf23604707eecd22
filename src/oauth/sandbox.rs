//! Sandbox mode: the built-in providers served by the loopback emulators, so the whole flow can
//! be tried (and tested, and benchmarked) with no account anywhere.

use provider_emulators::{EmulatorConfig, Flavor};

/// Client id and secret the sandbox registers with each emulator (not secrets: test fixtures).
pub fn credentials(flavor: Flavor) -> (&'static str, &'static str) {
    match flavor {
        Flavor::Google => ("sandbox-google-client", "sandbox-google-secret"),
        Flavor::Microsoft => ("sandbox-microsoft-client", "sandbox-microsoft-secret"),
        Flavor::Notion => ("sandbox-notion-client", "sandbox-notion-secret"),
    }
}

/// The environment variables that give the built-ins their sandbox credentials.
pub fn credential_env() -> Vec<(&'static str, &'static str)> {
    let (google_id, google_secret) = credentials(Flavor::Google);
    let (microsoft_id, microsoft_secret) = credentials(Flavor::Microsoft);
    let (notion_id, notion_secret) = credentials(Flavor::Notion);
    vec![
        ("GOOGLE_CLIENT_ID", google_id),
        ("GOOGLE_CLIENT_SECRET", google_secret),
        ("MICROSOFT_CLIENT_ID", microsoft_id),
        ("MICROSOFT_CLIENT_SECRET", microsoft_secret),
        ("NOTION_CLIENT_ID", notion_id),
        ("NOTION_CLIENT_SECRET", notion_secret),
    ]
}

/// The emulator configuration for `flavor` with the sandbox credentials.
pub fn emulator_config(flavor: Flavor) -> EmulatorConfig {
    let (client_id, client_secret) = credentials(flavor);
    EmulatorConfig::new(flavor, client_id, client_secret)
}

/// An operator-file fragment pointing the four built-ins at emulators served at these base URLs
/// (no trailing slash). YouTube shares the Google emulator, as it shares Google's endpoints.
pub fn providers_toml(google: &str, microsoft: &str, notion: &str) -> String {
    let google_block = |name: &str| {
        format!(
            "[providers.{name}]\n\
             authorization_url = \"{google}/authorize\"\n\
             token_url = \"{google}/token\"\n\
             revocation_url = \"{google}/revoke\"\n"
        )
    };
    format!(
        "{google_provider}\
         userinfo_url = \"{google}/userinfo\"\n\
         issuer = \"{google}\"\n\
         jwks_uri = \"{google}/jwks\"\n\n\
         {youtube_provider}\
         issuer = \"{google}\"\n\
         identity = {{ url = \"{google}/youtube/v3/channels?part=snippet&mine=true\" }}\n\n\
         [providers.microsoft]\n\
         authorization_url = \"{microsoft}/{{tenant}}/oauth2/v2.0/authorize\"\n\
         token_url = \"{microsoft}/{{tenant}}/oauth2/v2.0/token\"\n\
         userinfo_url = \"{microsoft}/v1.0/me\"\n\
         issuer = \"{microsoft}/{{tid}}/v2.0\"\n\
         jwks_uri = \"{microsoft}/{{tenant}}/discovery/v2.0/keys\"\n\n\
         [providers.notion]\n\
         authorization_url = \"{notion}/v1/oauth/authorize\"\n\
         token_url = \"{notion}/v1/oauth/token\"\n\
         revocation_url = \"{notion}/v1/oauth/revoke\"\n\
         userinfo_url = \"{notion}/v1/users/me\"\n",
        google_provider = google_block("google"),
        youtube_provider = google_block("youtube"),
    )
}

//! Providers are data: `config/providers.toml` (compiled in) merged with the operator's file.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::SecretString;
use serde::Deserialize;

use crate::config::{ConfigError, merge_tables};
use crate::store::ScopeEntry;

const BUILT_IN: &str = include_str!("../../config/providers.toml");

/// A provider name as the registry and the provider columns accept it: 1-50 characters of
/// `a-z`, `0-9`, `_` and `-` (`oauth_integrations.provider` is VARCHAR(50)).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProviderName(String);

impl ProviderName {
    /// `raw` if it has the shape of a provider name.
    pub fn parse(raw: &str) -> Option<Self> {
        let valid = !raw.is_empty()
            && raw.len() <= 50
            && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        valid.then(|| Self(raw.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    ClientSecretPost,
    ClientSecretBasic,
}

/// Body format of token and revocation requests (Notion wants JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RequestFormat {
    #[default]
    Form,
    Json,
}

/// Where the connected account's identity is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    IdToken,
    Userinfo,
    Url,
    TokenResponse,
}

/// JSON pointers that pick the account identity out of a provider document.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityMapping {
    pub source: IdentitySource,
    /// For `source = "url"`.
    #[serde(default)]
    pub url: Option<String>,
    pub user_id: Vec<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderSpec {
    display_name: String,
    #[serde(default)]
    description: String,
    authorization_url: String,
    token_url: String,
    #[serde(default)]
    revocation_url: Option<String>,
    #[serde(default)]
    revocation_format: RequestFormat,
    #[serde(default)]
    userinfo_url: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    issuer_aliases: Vec<String>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    refresh_token_idle_days: Option<u32>,
    #[serde(default)]
    jwks_uri: Option<String>,
    client_auth: ClientAuth,
    #[serde(default)]
    token_request_format: RequestFormat,
    #[serde(default)]
    token_request_headers: BTreeMap<String, String>,
    pkce: bool,
    #[serde(default = "space")]
    scope_separator: String,
    client_id_env: String,
    client_secret_env: String,
    /// Other names the same two settings go by (the host application's own, say); the first set
    /// one wins, `client_id_env` and `client_secret_env` first.
    #[serde(default)]
    client_id_env_aliases: Vec<String>,
    #[serde(default)]
    client_secret_env_aliases: Vec<String>,
    #[serde(default)]
    credentials_fallback: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    tenant_env: Option<String>,
    #[serde(default)]
    default_scopes: Vec<String>,
    #[serde(default)]
    authorization_params: BTreeMap<String, String>,
    #[serde(default)]
    reauth_errors: Vec<String>,
    identity: IdentityMapping,
    #[serde(default)]
    scopes: Vec<ScopeEntry>,
}

fn space() -> String {
    " ".to_owned()
}

/// The OAuth client registered with a provider.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: SecretString,
}

/// One configured provider, with `{tenant}` resolved and credentials looked up.
#[derive(Clone, Debug)]
pub struct Provider {
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub authorization_url: String,
    pub token_url: String,
    pub revocation_url: Option<String>,
    pub revocation_format: RequestFormat,
    pub userinfo_url: Option<String>,
    /// May contain `{tid}` (Microsoft's per-tenant issuer with tenant `common`).
    pub issuer: Option<String>,
    /// Other spellings of the issuer the provider documents (Google: `accounts.google.com`).
    pub issuer_aliases: Vec<String>,
    /// The provider says (in its metadata) that its authorization responses carry `iss`
    /// (RFC 9207 §3): then a response without one is refused.
    pub authorization_response_iss_parameter_supported: bool,
    /// Days after which the provider lets an unused refresh token die (Microsoft: 90).
    pub refresh_token_idle_days: Option<u32>,
    pub jwks_uri: Option<String>,
    pub client_auth: ClientAuth,
    pub token_request_format: RequestFormat,
    pub token_request_headers: BTreeMap<String, String>,
    pub pkce: bool,
    pub scope_separator: String,
    pub default_scopes: Vec<String>,
    pub authorization_params: BTreeMap<String, String>,
    pub reauth_errors: Vec<String>,
    pub identity: IdentityMapping,
    pub scopes: Vec<ScopeEntry>,
    /// `None` when the client id or secret is not set.
    pub credentials: Option<Credentials>,
}

impl Provider {
    /// Whether this is an OpenID Connect provider (ID tokens, nonce).
    pub fn is_oidc(&self) -> bool {
        self.jwks_uri.is_some() && self.issuer.is_some()
    }

    /// Whether `error` from the token endpoint means the grant is dead.
    pub fn is_reauth_error(&self, error: &str) -> bool {
        self.reauth_errors.iter().any(|known| known == error)
    }

    /// The catalogue entry of `scope`, if known.
    pub fn scope(&self, scope: &str) -> Option<&ScopeEntry> {
        self.scopes.iter().find(|entry| entry.name == scope)
    }
}

/// All configured providers, by name.
#[derive(Debug, Default)]
pub struct Providers {
    by_name: BTreeMap<String, Provider>,
}

impl Providers {
    /// Built-ins merged with the operator file `operator_toml` (its text), credentials from `lookup`.
    pub fn load(operator_toml: Option<&str>, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let invalid = |problem: String| ConfigError { setting: "OAUTH_PROVIDERS_FILE", problem };
        let mut merged: toml::Table = toml::from_str(BUILT_IN).expect("config/providers.toml is valid TOML");
        if let Some(text) = operator_toml {
            let overrides: toml::Table = toml::from_str(text).map_err(|error| invalid(error.to_string()))?;
            merge_tables(&mut merged, overrides);
        }
        let providers = merged
            .remove("providers")
            .and_then(|value| value.as_table().cloned())
            .ok_or_else(|| invalid("no [providers] table".into()))?;
        let mut specs = BTreeMap::new();
        for (name, value) in providers {
            if ProviderName::parse(&name).is_none() {
                return Err(invalid(format!("provider name {name:?} must be 1-50 characters of a-z, 0-9, '_' or '-'")));
            }
            let spec: ProviderSpec = value
                .try_into()
                .map_err(|error: toml::de::Error| invalid(format!("providers.{name}: {}", error.message())))?;
            specs.insert(name, spec);
        }
        let mut by_name = BTreeMap::new();
        for (name, spec) in &specs {
            let provider = resolve(name, spec, &specs, lookup)
                .map_err(|problem| invalid(format!("providers.{name}: {problem}")))?;
            by_name.insert(name.clone(), provider);
        }
        Ok(Self { by_name })
    }

    /// Loads the operator file named by `path`, if any.
    pub fn from_file(
        path: Option<&std::path::Path>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = match path {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|error| ConfigError {
                setting: "OAUTH_PROVIDERS_FILE",
                problem: format!("cannot read {}: {error}", path.display()),
            })?),
            None => None,
        };
        Self::load(text.as_deref(), lookup)
    }

    /// A provider by name.
    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.by_name.get(name)
    }

    /// All providers, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.by_name.values()
    }

    /// The display name of `provider`, or the name itself for one no longer configured.
    pub fn display_name<'a>(&'a self, provider: &'a str) -> &'a str {
        self.get(provider).map_or(provider, |p| p.display_name.as_str())
    }

    /// A provider to change (the sandbox points the built-ins at the emulators).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Provider> {
        self.by_name.get_mut(name)
    }
}

fn resolve(
    name: &str,
    spec: &ProviderSpec,
    all: &BTreeMap<String, ProviderSpec>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Provider, String> {
    let tenant = spec.tenant_env.as_deref().and_then(lookup).or_else(|| spec.tenant.clone()).unwrap_or_default();
    let with_tenant = |url: &str| url.replace("{tenant}", &tenant);
    for (field, url) in [("authorization_url", Some(&spec.authorization_url)), ("token_url", Some(&spec.token_url))]
        .into_iter()
        .chain([
            ("revocation_url", spec.revocation_url.as_ref()),
            ("userinfo_url", spec.userinfo_url.as_ref()),
            ("jwks_uri", spec.jwks_uri.as_ref()),
        ])
    {
        if let Some(url) = url {
            let parsed =
                url::Url::parse(&with_tenant(url)).map_err(|error| format!("{field} is not a URL: {error}"))?;
            // Client secrets, codes and tokens travel to these URLs: in the clear only to this host
            // (emulators, a local test provider).
            let loopback = match parsed.host() {
                Some(url::Host::Domain(name)) => name == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if !(parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback)) {
                return Err(format!("{field} must be https (http only to localhost)"));
            }
        }
    }
    if spec.identity.user_id.is_empty() {
        return Err("identity.user_id needs at least one JSON pointer".into());
    }
    if spec.identity.source == IdentitySource::Url && spec.identity.url.is_none() {
        return Err("identity.source = \"url\" needs identity.url".into());
    }
    if spec.identity.source == IdentitySource::IdToken && (spec.issuer.is_none() || spec.jwks_uri.is_none()) {
        return Err("identity.source = \"id_token\" needs issuer and jwks_uri".into());
    }
    for scope in &spec.scopes {
        if scope.name.is_empty()
            || scope.name.len() > 100
            || scope.display_name.len() > 200
            || scope.category.len() > 50
        {
            return Err(format!("scope {:?} exceeds the oauth_scopes column widths", scope.name));
        }
    }
    let credentials = credentials(spec, lookup).or_else(|| {
        let fallback = all.get(spec.credentials_fallback.as_deref()?)?;
        credentials(fallback, lookup)
    });
    let mut identity = spec.identity.clone();
    identity.url = identity.url.as_deref().map(with_tenant);
    Ok(Provider {
        name: name.to_owned(),
        display_name: spec.display_name.clone(),
        description: spec.description.clone(),
        authorization_url: with_tenant(&spec.authorization_url),
        token_url: with_tenant(&spec.token_url),
        revocation_url: spec.revocation_url.as_deref().map(with_tenant),
        revocation_format: spec.revocation_format,
        userinfo_url: spec.userinfo_url.as_deref().map(with_tenant),
        issuer: spec.issuer.as_deref().map(with_tenant),
        issuer_aliases: spec.issuer_aliases.clone(),
        authorization_response_iss_parameter_supported: spec.authorization_response_iss_parameter_supported,
        refresh_token_idle_days: spec.refresh_token_idle_days,
        jwks_uri: spec.jwks_uri.as_deref().map(with_tenant),
        client_auth: spec.client_auth,
        token_request_format: spec.token_request_format,
        token_request_headers: spec.token_request_headers.clone(),
        pkce: spec.pkce,
        scope_separator: spec.scope_separator.clone(),
        default_scopes: spec.default_scopes.clone(),
        authorization_params: spec.authorization_params.clone(),
        reauth_errors: spec.reauth_errors.clone(),
        identity,
        scopes: spec.scopes.clone(),
        credentials,
    })
}

fn credentials(spec: &ProviderSpec, lookup: &dyn Fn(&str) -> Option<String>) -> Option<Credentials> {
    let first_set = |name: &String, aliases: &[String]| std::iter::once(name).chain(aliases).find_map(|n| lookup(n));
    Some(Credentials {
        client_id: first_set(&spec.client_id_env, &spec.client_id_env_aliases)?,
        client_secret: SecretString::from(first_set(&spec.client_secret_env, &spec.client_secret_env_aliases)?),
    })
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn built_ins_load_with_their_quirks() {
        let providers = Providers::load(None, &|_| None).unwrap();
        let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["google", "microsoft", "notion", "youtube"]);
        let microsoft = providers.get("microsoft").unwrap();
        assert_eq!(microsoft.token_url, "https://login.microsoftonline.com/common/oauth2/v2.0/token");
        let notion = providers.get("notion").unwrap();
        assert_eq!(notion.client_auth, ClientAuth::ClientSecretBasic);
        assert_eq!(notion.token_request_format, RequestFormat::Json);
        assert!(!notion.pkce);
        assert!(providers.iter().all(|p| p.credentials.is_none()));
    }

    #[test]
    fn an_operator_file_overrides_only_the_fields_it_names() {
        let file = r#"
            [providers.google]
            token_url = "http://127.0.0.1:4010/token"
            client_auth = "client_secret_basic"
        "#;
        let providers = Providers::load(Some(file), &|_| None).unwrap();
        let google = providers.get("google").unwrap();
        assert_eq!(google.token_url, "http://127.0.0.1:4010/token");
        assert_eq!(google.client_auth, ClientAuth::ClientSecretBasic);
        assert_eq!(google.authorization_url, "https://accounts.google.com/o/oauth2/v2/auth");
    }

    #[test]
    fn youtube_falls_back_to_google_credentials_and_tenant_comes_from_env() {
        let lookup = |name: &str| match name {
            "GOOGLE_CLIENT_ID" => Some("gid".to_owned()),
            "GOOGLE_CLIENT_SECRET" => Some("gsecret".to_owned()),
            "MICROSOFT_TENANT" => Some("contoso".to_owned()),
            _ => None,
        };
        let providers = Providers::load(None, &lookup).unwrap();
        assert_eq!(providers.get("youtube").unwrap().credentials.as_ref().unwrap().client_id, "gid");
        assert!(providers.get("microsoft").unwrap().authorization_url.contains("/contoso/"));
    }

    #[test]
    fn the_host_applications_setting_names_work_as_aliases() {
        let lookup = |name: &str| match name {
            "GOOGLE_OAUTH_CLIENT_ID" => Some("host-id".to_owned()),
            "GOOGLE_OAUTH_CLIENT_SECRET" => Some("host-secret".to_owned()),
            _ => None,
        };
        let providers = Providers::load(None, &lookup).unwrap();
        for name in ["google", "youtube"] {
            let credentials = providers.get(name).unwrap().credentials.as_ref().unwrap();
            assert_eq!(credentials.client_id, "host-id");
            assert_eq!(credentials.client_secret.expose_secret(), "host-secret");
        }
        // The service's own name wins over an alias.
        let both = |name: &str| match name {
            "GOOGLE_CLIENT_ID" => Some("own-id".to_owned()),
            "GOOGLE_OAUTH_CLIENT_ID" => Some("host-id".to_owned()),
            "GOOGLE_CLIENT_SECRET" | "GOOGLE_OAUTH_CLIENT_SECRET" => Some("secret".to_owned()),
            _ => None,
        };
        let providers = Providers::load(None, &both).unwrap();
        assert_eq!(providers.get("google").unwrap().credentials.as_ref().unwrap().client_id, "own-id");
    }

    #[test]
    fn a_new_provider_is_a_config_entry_and_mistakes_are_named() {
        let file = r#"
            [providers.gitlab]
            display_name = "GitLab"
            authorization_url = "https://gitlab.com/oauth/authorize"
            token_url = "https://gitlab.com/oauth/token"
            client_auth = "client_secret_post"
            pkce = true
            client_id_env = "GITLAB_CLIENT_ID"
            client_secret_env = "GITLAB_CLIENT_SECRET"
            identity = { source = "userinfo", user_id = ["/sub"] }
        "#;
        assert!(Providers::load(Some(file), &|_| None).unwrap().get("gitlab").is_some());
        let broken = "[providers.google]\ntoken_url = \"not a url\"";
        let error = Providers::load(Some(broken), &|_| None).unwrap_err();
        assert!(error.problem.contains("providers.google: token_url"), "{}", error.problem);
    }
}

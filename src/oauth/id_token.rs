//! OpenID Connect ID token validation (OIDC Core §3.1.3.7): signature by the provider's JWKS,
//! `iss`, `aud`, `exp` and `nonce`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;
use tokio::sync::RwLock;

use super::providers::Provider;

/// How long a fetched JWKS is trusted before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(3600);
/// An unknown `kid` triggers a re-fetch at most this often per JWKS: a rotation is picked up at
/// once, but forged tokens with random kids cannot turn us into a JWKS-fetching amplifier.
const REFETCH_INTERVAL: Duration = Duration::from_secs(1);

/// Why an ID token was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is malformed")]
    Malformed,
    #[error("the ID token uses an algorithm that is not allowed")]
    Algorithm,
    #[error("the ID token is signed with an unknown key")]
    UnknownKey,
    #[error("the ID token is invalid: {0}")]
    Invalid(String),
    #[error("the ID token's nonce does not match")]
    Nonce,
    #[error("the provider's keys could not be fetched")]
    Jwks,
}

struct CachedSet {
    keys: JwkSet,
    fetched_at: Instant,
}

/// Cached JWKS per provider key URL.
#[derive(Default)]
pub struct JwksCache {
    sets: RwLock<HashMap<String, CachedSet>>,
}

impl JwksCache {
    /// Validates `token` from `provider`; returns its claims.
    pub async fn validate(
        &self,
        http: &reqwest::Client,
        provider: &Provider,
        token: &str,
        expected_nonce: Option<&str>,
    ) -> Result<Value, IdTokenError> {
        let (Some(jwks_uri), Some(issuer), Some(credentials)) =
            (&provider.jwks_uri, &provider.issuer, &provider.credentials)
        else {
            return Err(IdTokenError::Invalid("the provider is not configured for OpenID Connect".into()));
        };
        let header = decode_header(token).map_err(|_| IdTokenError::Malformed)?;
        if !matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::ES256
                | Algorithm::ES384
        ) {
            return Err(IdTokenError::Algorithm);
        }
        let key = self.key(http, jwks_uri, header.kid.as_deref().unwrap_or_default()).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[credentials.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 60;
        // Microsoft's multi-tenant issuer names the user's tenant: checked below against `tid`.
        let templated = issuer.contains("{tid}");
        if !templated {
            validation.set_issuer(&[issuer.as_str()]);
        }
        let claims =
            decode::<Value>(token, &key, &validation).map_err(|error| IdTokenError::Invalid(error.to_string()))?.claims;
        if templated {
            let tid = claims.get("tid").and_then(Value::as_str).unwrap_or_default();
            let expected = issuer.replace("{tid}", tid);
            if tid.is_empty() || claims.get("iss").and_then(Value::as_str) != Some(expected.as_str()) {
                return Err(IdTokenError::Invalid("InvalidIssuer".into()));
            }
        }
        if let Some(expected) = expected_nonce
            && claims.get("nonce").and_then(Value::as_str) != Some(expected)
        {
            return Err(IdTokenError::Nonce);
        }
        Ok(claims)
    }

    async fn key(&self, http: &reqwest::Client, jwks_uri: &str, kid: &str) -> Result<DecodingKey, IdTokenError> {
        let mut refetch_allowed = true;
        {
            let sets = self.sets.read().await;
            if let Some(cached) = sets.get(jwks_uri) {
                if cached.fetched_at.elapsed() < JWKS_TTL
                    && let Some(jwk) = cached.keys.find(kid)
                {
                    return DecodingKey::from_jwk(jwk).map_err(|_| IdTokenError::UnknownKey);
                }
                refetch_allowed = cached.fetched_at.elapsed() >= REFETCH_INTERVAL;
            }
        }
        if !refetch_allowed {
            return Err(IdTokenError::UnknownKey);
        }
        let keys: JwkSet = http
            .get(jwks_uri)
            .send()
            .await
            .map_err(|_| IdTokenError::Jwks)?
            .error_for_status()
            .map_err(|_| IdTokenError::Jwks)?
            .json()
            .await
            .map_err(|_| IdTokenError::Jwks)?;
        let key = keys.find(kid).map(DecodingKey::from_jwk);
        self.sets.write().await.insert(jwks_uri.to_owned(), CachedSet { keys, fetched_at: Instant::now() });
        match key {
            Some(Ok(key)) => Ok(key),
            _ => Err(IdTokenError::UnknownKey),
        }
    }
}

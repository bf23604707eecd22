//! OpenID Connect ID token validation (OIDC Core §3.1.3.7): signature by the provider's JWKS,
//! `iss`, `aud`, `exp` and `nonce`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use super::providers::Provider;

/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECONDS: u64 = 60;
/// How long a fetched JWKS is trusted before it is fetched again.
const JWKS_TTL: Duration = Duration::from_secs(3600);
/// An unknown `kid` triggers a re-fetch at most this often: a rotation is picked up within it, but
/// forged tokens with random kids cannot turn us into a JWKS-fetching amplifier.
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
    /// Held while a JWKS is fetched (single flight per JWKS URL).
    fetching: Mutex<HashMap<String, Arc<Mutex<()>>>>,
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
        let client_id = credentials.client_id.as_str();
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        // Microsoft's multi-tenant issuer names the user's tenant: checked below against `tid`.
        let templated = issuer.contains("{tid}");
        if !templated {
            let accepted: Vec<&str> =
                std::iter::once(issuer.as_str()).chain(provider.issuer_aliases.iter().map(String::as_str)).collect();
            validation.set_issuer(&accepted);
        }
        let claims =
            decode::<Value>(token, &key, &validation).map_err(|error| IdTokenError::Invalid(error.to_string()))?.claims;
        // OIDC Core §2: `iss` is one case-sensitive URL (the library would take an array).
        let Some(iss) = claims.get("iss").and_then(Value::as_str) else {
            return Err(IdTokenError::Invalid("InvalidIssuer".into()));
        };
        if templated {
            let tid = claims.get("tid").and_then(Value::as_str).unwrap_or_default();
            let expected = issuer.replace("{tid}", tid);
            if tid.is_empty() || iss != expected {
                return Err(IdTokenError::Invalid("InvalidIssuer".into()));
            }
        }
        // OIDC Core §3.1.3.7 steps 4-5: with several audiences `azp` must be present, and an
        // `azp` must be this client.
        let several_audiences = claims.get("aud").and_then(Value::as_array).is_some_and(|aud| aud.len() > 1);
        match claims.get("azp") {
            Some(azp) if azp.as_str() != Some(client_id) => return Err(IdTokenError::Invalid("InvalidAzp".into())),
            None if several_audiences => return Err(IdTokenError::Invalid("MissingAzp".into())),
            _ => {}
        }
        // OIDC Core §2: `iat` is required; one in the future was not issued by a sane clock.
        let now = chrono::Utc::now().timestamp();
        match claims.get("iat").and_then(Value::as_i64) {
            Some(iat) if iat <= now + LEEWAY_SECONDS as i64 => {}
            _ => return Err(IdTokenError::Invalid("InvalidIat".into())),
        }
        // OIDC Core §3.1.2.1: every flow of ours sent a nonce; the ID token must carry it.
        let Some(expected) = expected_nonce else { return Err(IdTokenError::Nonce) };
        if claims.get("nonce").and_then(Value::as_str) != Some(expected) {
            return Err(IdTokenError::Nonce);
        }
        Ok(claims)
    }

    async fn key(&self, http: &reqwest::Client, jwks_uri: &str, kid: &str) -> Result<DecodingKey, IdTokenError> {
        let asked_at = Instant::now();
        if let Some(found) = self.cached_key(jwks_uri, kid).await {
            return found;
        }
        // One fetch at a time: callers with the same unknown `kid` wait for it and then use its
        // result, instead of each fetching the JWKS again.
        let fetch_lock = self.fetching.lock().await.entry(jwks_uri.to_owned()).or_default().clone();
        let _fetching = fetch_lock.lock().await;
        if let Some(found) = self.cached_key(jwks_uri, kid).await {
            return found;
        }
        let fetched_at = self.sets.read().await.get(jwks_uri).map(|cached| cached.fetched_at);
        if let Some(fetched_at) = fetched_at {
            if fetched_at >= asked_at {
                // Fetched while this caller waited, and the key is not in it.
                return Err(IdTokenError::UnknownKey);
            }
            // At most one fetch per interval, so forged `kid`s cannot make us hammer the provider;
            // a real rotation waits the rest of the interval instead of failing.
            tokio::time::sleep(REFETCH_INTERVAL.saturating_sub(fetched_at.elapsed())).await;
        }
        let response =
            http.get(jwks_uri).send().await.and_then(|r| r.error_for_status()).map_err(|_| IdTokenError::Jwks)?;
        let keys: JwkSet = super::client::json_answer(response, "not a JWKS").await.map_err(|_| IdTokenError::Jwks)?;
        let key = keys.find(kid).map(DecodingKey::from_jwk);
        self.sets.write().await.insert(jwks_uri.to_owned(), CachedSet { keys, fetched_at: Instant::now() });
        match key {
            Some(Ok(key)) => Ok(key),
            _ => Err(IdTokenError::UnknownKey),
        }
    }

    /// The key `kid` from a fresh cached set, if it is there.
    async fn cached_key(&self, jwks_uri: &str, kid: &str) -> Option<Result<DecodingKey, IdTokenError>> {
        let sets = self.sets.read().await;
        let cached = sets.get(jwks_uri).filter(|cached| cached.fetched_at.elapsed() < JWKS_TTL)?;
        let jwk = cached.keys.find(kid)?;
        Some(DecodingKey::from_jwk(jwk).map_err(|_| IdTokenError::UnknownKey))
    }
}

//! Minting OpenID Connect ID tokens, with the defects a test can inject.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{TimeDelta, Utc};
use serde_json::{Map, Value, json};

use crate::common::random_string;
use crate::handle::{EmulatorHandle, IdTokenFault};

/// How long an ID token is valid, as with Google and Microsoft.
const ID_TOKEN_LIFETIME: TimeDelta = TimeDelta::hours(1);

/// The claims every ID token has: `iss`, `sub`, `aud`, `iat`, `exp` and `nonce` when given.
pub(crate) fn standard_claims(
    handle: &EmulatorHandle,
    issuer: &str,
    subject: &str,
    nonce: Option<&str>,
) -> Map<String, Value> {
    let now = Utc::now();
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(issuer));
    claims.insert("sub".into(), json!(subject));
    claims.insert("aud".into(), json!(handle.config().client_id));
    claims.insert("iat".into(), json!(now.timestamp()));
    claims.insert("exp".into(), json!((now + ID_TOKEN_LIFETIME).timestamp()));
    if let Some(nonce) = nonce {
        claims.insert("nonce".into(), json!(nonce));
    }
    claims
}

/// Signs `claims` with the current key, after applying the injected [`IdTokenFault`].
pub(crate) fn sign(handle: &EmulatorHandle, mut claims: Map<String, Value>) -> String {
    let fault = handle.id_token_fault();
    let now = Utc::now();
    match fault {
        IdTokenFault::None | IdTokenFault::WrongKey => {}
        IdTokenFault::Expired => {
            claims.insert("iat".into(), json!((now - TimeDelta::hours(2)).timestamp()));
            claims.insert("exp".into(), json!((now - TimeDelta::hours(1)).timestamp()));
        }
        IdTokenFault::WrongAudience => {
            let other = format!("other-{}", handle.config().client_id);
            claims.insert("aud".into(), json!(other));
        }
        IdTokenFault::WrongIssuer => {
            claims.insert("iss".into(), json!("https://issuer.invalid"));
        }
        IdTokenFault::WrongNonce => {
            claims.insert("nonce".into(), json!(random_string(32)));
        }
        IdTokenFault::ForeignAuthorizedParty => {
            let other = format!("other-{}", handle.config().client_id);
            claims.insert("aud".into(), json!([handle.config().client_id, other]));
            claims.insert("azp".into(), json!(other));
        }
        IdTokenFault::IssuerArray => {
            let issuer = claims.get("iss").cloned().unwrap_or_default();
            claims.insert("iss".into(), json!([issuer]));
        }
        IdTokenFault::NotYetValid => {
            claims.insert("nbf".into(), json!((now + TimeDelta::hours(1)).timestamp()));
        }
        IdTokenFault::IssuedInTheFuture => {
            claims.insert("iat".into(), json!((now + TimeDelta::hours(1)).timestamp()));
        }
        IdTokenFault::Unsigned => {}
    }
    let claims = Value::Object(claims);
    if let IdTokenFault::Unsigned = fault {
        let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
        let header = json!({"alg": "none", "typ": "JWT", "kid": handle.keys().current().kid()});
        return format!("{}.{}.", encode(&header), encode(&claims));
    }
    if let IdTokenFault::WrongKey = fault {
        // Same kid as the real key, so only a signature check catches it.
        let kid = handle.keys().current().kid().to_owned();
        return handle.stray_key().sign(&kid, &claims);
    }
    let keys = handle.keys();
    let current = keys.current();
    current.sign(current.kid(), &claims)
}

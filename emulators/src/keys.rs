//! RS256 signing keys for ID tokens, and the JWKS that publishes them.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One RSA key: the private half for signing and the public half as JWK parameters.
pub(crate) struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    modulus: String,
    exponent: String,
}

impl SigningKey {
    /// A fresh 2048-bit key, its `kid` derived from the modulus (like a JWK thumbprint).
    pub(crate) fn generate() -> Self {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation failed");
        let pkcs8 = pair.as_der().expect("RSA key serialisation failed").as_ref().to_vec();
        // jsonwebtoken takes raw DER only as PKCS#1; its PEM reader unwraps PKCS#8 for us.
        let encoding = EncodingKey::from_rsa_pem(pem("PRIVATE KEY", &pkcs8).as_bytes())
            .expect("generated RSA key is valid PKCS#8");
        let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let digest = Sha256::digest(&public.n);
        Self {
            kid: hex(&digest[..10]),
            encoding,
            modulus: URL_SAFE_NO_PAD.encode(&public.n),
            exponent: URL_SAFE_NO_PAD.encode(&public.e),
        }
    }

    /// The key id published in the JWKS and put in token headers.
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` as an RS256 JWT whose header names `kid` (not necessarily this key's own).
    pub(crate) fn sign<T: Serialize>(&self, kid: &str, claims: &T) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("RS256 signing failed")
    }

    fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": self.modulus,
            "e": self.exponent,
        })
    }
}

/// The current signing key and the retired ones still published for verification.
pub(crate) struct KeyRing {
    current: SigningKey,
    retired: Vec<SigningKey>,
}

impl KeyRing {
    pub(crate) fn new(current: SigningKey) -> Self {
        Self { current, retired: Vec::new() }
    }

    pub(crate) fn current(&self) -> &SigningKey {
        &self.current
    }

    /// Signs with `next` from now on; tokens signed earlier stay verifiable.
    pub(crate) fn rotate(&mut self, next: SigningKey) {
        let previous = std::mem::replace(&mut self.current, next);
        self.retired.push(previous);
    }

    /// The JWKS document: the current key first, then the retired ones.
    pub(crate) fn jwks(&self) -> Value {
        let keys: Vec<Value> =
            std::iter::once(&self.current).chain(self.retired.iter().rev()).map(SigningKey::jwk).collect();
        json!({ "keys": keys })
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn a_signed_token_verifies_against_the_published_jwks_after_rotation() {
        let mut ring = KeyRing::new(SigningKey::generate());
        let old_kid = ring.current().kid().to_owned();
        let token = ring.current().sign(&old_kid, &json!({"sub": "1", "exp": 4_000_000_000u64}));
        ring.rotate(SigningKey::generate());

        let jwks: JwkSet = serde_json::from_value(ring.jwks()).unwrap();
        assert_eq!(jwks.keys.len(), 2);
        let jwk = jwks.find(&old_kid).expect("retired key still published");
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
        assert_eq!(data.claims["sub"], "1");
    }
}

//! Verification of the host application's access tokens (HS256, `JWT_SECRET_KEY`).

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The claims the host application puts in its access tokens (README: API, Callers).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// `users.id` of the caller.
    pub user_id: i32,
    /// Must be `"access"`: refresh tokens of the host app are not accepted here.
    #[serde(rename = "type")]
    pub token_type: String,
    /// The user's e-mail.
    #[serde(default)]
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Role names, when the host app includes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// A role that changes what a user may do here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// May list, read and revoke any user's integrations and read any audit log.
    Administrator,
}

/// Checks signature, algorithm, expiry and token type of user JWTs.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtVerifier([REDACTED])")
    }
}

impl JwtVerifier {
    /// A verifier for tokens signed with `secret`.
    pub fn new(secret: &SecretString) -> Self {
        // Only HS256: `alg: none` and algorithm substitution are refused by the allow-list.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.validate_aud = false;
        Self { key: DecodingKey::from_secret(secret.expose_secret().as_bytes()), validation }
    }

    /// The claims of a valid access token, or `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let claims = decode::<Claims>(token, &self.key, &self.validation).ok()?.claims;
        (claims.token_type == "access" && claims.user_id > 0).then_some(claims)
    }
}

impl Claims {
    /// Whether the claims grant `role`.
    pub fn has_role(&self, role: Role) -> bool {
        let name = match role {
            Role::Administrator => "administrator",
        };
        self.roles.iter().any(|r| r == name)
    }
}

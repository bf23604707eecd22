//! The sandbox's demo user: a row in the host application's `users` table and an access token
//! for it, signed with `JWT_SECRET_KEY` as the host application would sign one. Only the
//! `demo-credentials` command and the sandbox's one-click sign-in (`http::demo`) use it.

use jsonwebtoken::{EncodingKey, Header, encode};
use secrecy::{ExposeSecret, SecretString};

use super::Claims;
use crate::store::Store;

/// The demo user's e-mail (and the JWT's `sub`).
pub const DEMO_EMAIL: &str = "demo@example.com";

/// Signs the demo user's access tokens.
pub struct DemoUser {
    key: EncodingKey,
}

impl std::fmt::Debug for DemoUser {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("DemoUser")
    }
}

impl DemoUser {
    pub fn new(jwt_secret: &SecretString) -> Self {
        Self { key: EncodingKey::from_secret(jwt_secret.expose_secret().as_bytes()) }
    }

    /// The demo user's id (the row is created when missing) and an access token valid for
    /// `lifetime`.
    pub async fn sign_in(&self, store: &dyn Store, lifetime: std::time::Duration) -> anyhow::Result<(i32, String)> {
        let user_id = match store.find_user(DEMO_EMAIL).await? {
            Some(id) => id,
            None => store.create_user(DEMO_EMAIL).await?,
        };
        let claims = Claims {
            user_id,
            token_type: "access".into(),
            sub: DEMO_EMAIL.into(),
            exp: (chrono::Utc::now().timestamp() as u64).saturating_add(lifetime.as_secs()),
            roles: vec![],
        };
        Ok((user_id, encode(&Header::default(), &claims, &self.key)?))
    }
}

//! The associated data of each stored secret: the column it lives in and the row it belongs to,
//! so a ciphertext copied into another row or column fails to decrypt.

/// AES-GCM associated data naming a secret's column and row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aad(Vec<u8>);

impl Aad {
    /// `oauth_tokens.access_token` of the integration of `user_id` with `provider`.
    pub fn access_token(user_id: i32, provider: &str) -> Self {
        Self::column("oauth_tokens.access_token", &format!("{user_id}/{provider}"))
    }

    /// `oauth_tokens.refresh_token` of the integration of `user_id` with `provider`.
    pub fn refresh_token(user_id: i32, provider: &str) -> Self {
        Self::column("oauth_tokens.refresh_token", &format!("{user_id}/{provider}"))
    }

    /// `oauth_state.code_verifier` of the state whose hash is `state_hash`.
    pub fn code_verifier(state_hash: &str) -> Self {
        Self::column("oauth_state.code_verifier", state_hash)
    }

    fn column(column: &str, row: &str) -> Self {
        Self(format!("{column}\u{1f}{row}").into_bytes())
    }

    /// The bytes given to AES-GCM.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

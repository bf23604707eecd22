//! Rows for tests that need an integration without running the OAuth flow.

use chrono::{Duration, Utc};
use oauth_manager::store::{ClientInfo, ConnectRecord};
use serde_json::json;

/// A connect record with placeholder (not decryptable) token values.
pub fn connect_record(user_id: i32, provider: &str) -> ConnectRecord {
    ConnectRecord {
        state_id: None,
        user_id,
        provider: provider.into(),
        provider_user_id: Some(format!("{provider}-account-{user_id}")),
        scopes: vec!["openid".into()],
        metadata: json!({"email": "owner@example.com"}),
        access_token: "v1:k1:placeholder-ciphertext".into(),
        refresh_token: None,
        token_type: "Bearer".into(),
        expires_at: Utc::now().naive_utc() + Duration::hours(1),
        scope: None,
        client: ClientInfo::default(),
        consent_version: "1.0".into(),
        duration_ms: 1,
        now: Utc::now().naive_utc(),
    }
}

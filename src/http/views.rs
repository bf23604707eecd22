//! JSON shapes shared by several endpoints.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::oauth::Providers;
use crate::store::{Integration, IntegrationStatus, NEVER_EXPIRES};

/// A stored UTC timestamp as RFC 3339.
pub fn utc(moment: NaiveDateTime) -> DateTime<Utc> {
    moment.and_utc()
}

/// An expiry as the API shows it: `None` for the never-expires sentinel.
pub fn expiry(moment: NaiveDateTime) -> Option<DateTime<Utc>> {
    (moment < NEVER_EXPIRES).then(|| utc(moment))
}

/// The connected account, as far as the provider told us.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    pub provider_user_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Provider-specific facts (Notion workspace, Microsoft tenant).
    #[schema(value_type = Object)]
    pub details: Value,
}

/// An integration as the API shows it: never a token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IntegrationView {
    pub id: i32,
    pub user_id: i32,
    pub provider: String,
    pub display_name: String,
    pub status: IntegrationStatus,
    pub is_active: bool,
    pub needs_reauth: bool,
    pub scopes: Vec<String>,
    pub account: AccountView,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub has_refresh_token: bool,
    pub last_error: Option<String>,
}

impl IntegrationView {
    /// The view of `integration`.
    pub fn new(integration: Integration, providers: &Providers) -> Self {
        let metadata = integration.provider_metadata.unwrap_or(Value::Null);
        let text = |key: &str| metadata.get(key).and_then(Value::as_str).map(str::to_owned);
        Self {
            id: integration.id,
            user_id: integration.user_id,
            display_name: providers.display_name(&integration.provider).to_owned(),
            status: integration.status,
            is_active: integration.status == IntegrationStatus::Active,
            needs_reauth: integration.status == IntegrationStatus::Error,
            scopes: integration.scopes,
            account: AccountView {
                provider_user_id: integration.provider_user_id,
                email: text("email"),
                name: text("name"),
                details: metadata.get("details").cloned().unwrap_or(Value::Null),
            },
            created_at: utc(integration.created_at),
            updated_at: utc(integration.updated_at),
            last_sync_at: integration.last_sync_at.map(utc),
            expires_at: integration.token_expires_at.and_then(expiry),
            has_refresh_token: integration.has_refresh_token,
            last_error: integration.error_message,
            provider: integration.provider,
        }
    }
}

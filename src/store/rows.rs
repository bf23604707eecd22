//! Typed rows as the shared SELECTs return them (`sql.rs`), and their domain shapes.

use chrono::NaiveDateTime;
use serde_json::Value;

use super::codecs::{IpAddress, JsonDoc, Scopes};
use super::models::{AuditEvent, Consent, Integration, IntegrationStatus, ScopeEntry, StateRecord, StoredToken};

/// `sql::INTEGRATION_COLUMNS`: an integration with the facts of its token.
#[derive(sqlx::FromRow)]
pub struct IntegrationRow {
    id: i32,
    user_id: i32,
    provider: String,
    provider_user_id: Option<String>,
    status: String,
    scopes: Scopes,
    provider_metadata: Option<JsonDoc>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    last_sync_at: Option<NaiveDateTime>,
    error_message: Option<String>,
    error_count: i32,
    token_expires_at: Option<NaiveDateTime>,
    has_refresh_token: Option<bool>,
}

impl From<IntegrationRow> for Integration {
    fn from(row: IntegrationRow) -> Self {
        Self {
            id: row.id,
            user_id: row.user_id,
            provider: row.provider,
            provider_user_id: row.provider_user_id,
            status: IntegrationStatus::parse(&row.status),
            scopes: row.scopes.0,
            provider_metadata: row.provider_metadata.map(|json| json.0),
            created_at: row.created_at,
            updated_at: row.updated_at,
            last_sync_at: row.last_sync_at,
            error_message: row.error_message,
            error_count: row.error_count,
            token_expires_at: row.token_expires_at,
            has_refresh_token: row.has_refresh_token.unwrap_or(false),
        }
    }
}

/// `sql::TOKEN_COLUMNS`: a token row with its owner.
#[derive(sqlx::FromRow)]
pub struct TokenRow {
    integration_id: i32,
    user_id: i32,
    provider: String,
    status: String,
    access_token: String,
    refresh_token: Option<String>,
    token_type: String,
    expires_at: NaiveDateTime,
    scope: Option<String>,
    updated_at: NaiveDateTime,
}

impl From<TokenRow> for StoredToken {
    fn from(row: TokenRow) -> Self {
        Self {
            integration_id: row.integration_id,
            user_id: row.user_id,
            provider: row.provider,
            status: IntegrationStatus::parse(&row.status),
            access_token: row.access_token,
            refresh_token: row.refresh_token,
            token_type: row.token_type,
            expires_at: row.expires_at,
            scope: row.scope,
            updated_at: row.updated_at,
        }
    }
}

/// `sql::FIND_STATE`.
#[derive(sqlx::FromRow)]
pub struct StateRow {
    id: i32,
    state_token: String,
    user_id: i32,
    provider: String,
    scopes: Scopes,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    code_challenge: Option<String>,
    state_metadata: Option<JsonDoc>,
    expires_at: NaiveDateTime,
    is_used: bool,
}

impl From<StateRow> for StateRecord {
    fn from(row: StateRow) -> Self {
        Self {
            id: row.id,
            state_hash: row.state_token,
            user_id: row.user_id,
            provider: row.provider,
            scopes: row.scopes.0,
            redirect_uri: row.redirect_uri,
            code_verifier: row.code_verifier,
            code_challenge: row.code_challenge,
            metadata: row.state_metadata.map_or(Value::Null, |json| json.0),
            expires_at: row.expires_at,
            is_used: row.is_used,
        }
    }
}

/// `sql::LIST_AUDIT`.
#[derive(sqlx::FromRow)]
pub struct AuditRow {
    id: i32,
    integration_id: Option<i32>,
    user_id: i32,
    action: String,
    provider: String,
    scopes: Option<Scopes>,
    ip_address: Option<IpAddress>,
    user_agent: Option<String>,
    success: bool,
    error_message: Option<String>,
    duration_ms: Option<i32>,
    action_metadata: Option<JsonDoc>,
    details: Option<JsonDoc>,
    status: String,
    created_at: NaiveDateTime,
}

impl From<AuditRow> for AuditEvent {
    fn from(row: AuditRow) -> Self {
        Self {
            id: row.id,
            integration_id: row.integration_id,
            user_id: row.user_id,
            action: row.action,
            provider: row.provider,
            scopes: row.scopes.map(|scopes| scopes.0),
            ip_address: row.ip_address.map(|ip| ip.0.to_string()),
            user_agent: row.user_agent,
            success: row.success,
            error_message: row.error_message,
            duration_ms: row.duration_ms,
            action_metadata: row.action_metadata.map(|json| json.0),
            details: row.details.map(|json| json.0),
            status: row.status,
            created_at: row.created_at,
        }
    }
}

/// `sql::LIST_CONSENTS`.
#[derive(sqlx::FromRow)]
pub struct ConsentRow {
    id: i32,
    integration_id: i32,
    provider: String,
    scopes: Scopes,
    granted_at: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
    ip_address: Option<IpAddress>,
    user_agent: Option<String>,
    consent_version: String,
    is_revoked: bool,
    revoked_at: Option<NaiveDateTime>,
    revoked_reason: Option<String>,
}

impl From<ConsentRow> for Consent {
    fn from(row: ConsentRow) -> Self {
        Self {
            id: row.id,
            integration_id: row.integration_id,
            provider: row.provider,
            scopes: row.scopes.0,
            granted_at: row.granted_at,
            expires_at: row.expires_at,
            ip_address: row.ip_address.map(|ip| ip.0.to_string()),
            user_agent: row.user_agent,
            consent_version: row.consent_version,
            is_revoked: row.is_revoked,
            revoked_at: row.revoked_at,
            revoked_reason: row.revoked_reason,
        }
    }
}

/// `sql::LIST_SCOPES`.
#[derive(sqlx::FromRow)]
pub struct ScopeRow {
    scope_name: String,
    display_name: String,
    description: String,
    category: String,
    is_required: bool,
    is_dangerous: bool,
}

impl From<ScopeRow> for ScopeEntry {
    fn from(row: ScopeRow) -> Self {
        Self {
            name: row.scope_name,
            display_name: row.display_name,
            description: row.description,
            category: row.category,
            required: row.is_required,
            dangerous: row.is_dangerous,
        }
    }
}

/// What a revoke reads of the integration it revokes.
#[derive(sqlx::FromRow)]
pub struct RevokedIntegrationRow {
    pub user_id: i32,
    pub provider: String,
    pub status: String,
    pub scopes: Scopes,
}

/// An existing `api_call` row of an integration and minute.
#[derive(sqlx::FromRow)]
pub struct ApiCallRow {
    pub id: i32,
    pub details: Option<JsonDoc>,
}

//! The rows oauth-manager reads and writes, in the shape the rest of the code uses.
//!
//! Timestamps are UTC `NaiveDateTime`s because the existing schema uses `TIMESTAMP` without a
//! time zone. Token and verifier fields hold ciphertext only (see `crypto`).

use std::net::IpAddr;

use chrono::NaiveDateTime;
use serde_json::Value;

/// `oauth_tokens.expires_at` is NOT NULL: tokens that never expire (Notion) get this sentinel,
/// which the API shows as `null`.
pub const NEVER_EXPIRES: NaiveDateTime = match chrono::NaiveDate::from_ymd_opt(9999, 12, 31) {
    Some(date) => match date.and_hms_opt(0, 0, 0) {
        Some(moment) => moment,
        None => panic!("valid time"),
    },
    None => panic!("valid date"),
};

/// `oauth_integrations.status`, one of the four values its CHECK constraint allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IntegrationStatus {
    Pending,
    Active,
    Revoked,
    /// Needs re-authorisation (or is otherwise broken): see `error_message`.
    Error,
}

impl IntegrationStatus {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Error => "error",
        }
    }

    /// Parses a column value; anything unknown is treated as `Error` rather than failing a read.
    pub fn parse(value: &str) -> Self {
        match value {
            "pending" => Self::Pending,
            "active" => Self::Active,
            "revoked" => Self::Revoked,
            _ => Self::Error,
        }
    }
}

/// `oauth_audit_log.action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditAction {
    Connect,
    Disconnect,
    Refresh,
    Revoke,
    ApiCall,
    Error,
}

impl AuditAction {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Disconnect => "disconnect",
            Self::Refresh => "refresh",
            Self::Revoke => "revoke",
            Self::ApiCall => "api_call",
            Self::Error => "error",
        }
    }

    /// Parses an API or column value.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "connect" => Self::Connect,
            "disconnect" => Self::Disconnect,
            "refresh" => Self::Refresh,
            "revoke" => Self::Revoke,
            "api_call" => Self::ApiCall,
            "error" => Self::Error,
            _ => return None,
        })
    }
}

/// Where a request came from, recorded in consents and audit rows.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub ip_address: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// An integration with the token facts the API shows (never the token itself).
#[derive(Clone, Debug)]
pub struct Integration {
    pub id: i32,
    pub user_id: i32,
    pub provider: String,
    pub provider_user_id: Option<String>,
    pub status: IntegrationStatus,
    pub scopes: Vec<String>,
    pub provider_metadata: Option<Value>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub last_sync_at: Option<NaiveDateTime>,
    pub error_message: Option<String>,
    pub error_count: i32,
    /// `oauth_tokens.expires_at`, when a token row exists.
    pub token_expires_at: Option<NaiveDateTime>,
    /// Whether a refresh token is stored.
    pub has_refresh_token: bool,
}

/// Which integrations a listing returns.
#[derive(Clone, Debug, Default)]
pub struct IntegrationFilter {
    pub provider: Option<String>,
    /// Only `pending` and `active` ones.
    pub active_only: bool,
}

/// The token row of an integration, joined with the owner facts needed to decrypt and authorise.
#[derive(Clone, Debug)]
pub struct StoredToken {
    pub integration_id: i32,
    pub user_id: i32,
    pub provider: String,
    pub status: IntegrationStatus,
    /// Ciphertext.
    pub access_token: String,
    /// Ciphertext.
    pub refresh_token: Option<String>,
    pub token_type: String,
    pub expires_at: NaiveDateTime,
    pub scope: Option<String>,
    /// When the token row was last written (connect or refresh).
    pub updated_at: NaiveDateTime,
}

/// A new authorization state (`oauth_state`).
#[derive(Clone, Debug)]
pub struct NewState {
    /// SHA-256 hex of the state value: the value itself is never stored.
    pub state_hash: String,
    pub user_id: i32,
    pub provider: String,
    pub scopes: Vec<String>,
    pub redirect_uri: String,
    /// Ciphertext of the PKCE verifier, when the provider uses PKCE.
    pub code_verifier: Option<String>,
    pub code_challenge: Option<String>,
    pub metadata: Value,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// A stored authorization state.
#[derive(Clone, Debug)]
pub struct StateRecord {
    pub id: i32,
    pub state_hash: String,
    pub user_id: i32,
    pub provider: String,
    pub scopes: Vec<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    /// The PKCE challenge sent to the provider (rebuilt into the URL of an authorization link).
    pub code_challenge: Option<String>,
    pub metadata: Value,
    pub expires_at: NaiveDateTime,
    pub is_used: bool,
}

/// Everything a successful callback writes, in one transaction.
#[derive(Clone, Debug)]
pub struct ConnectRecord {
    /// The spent state this connect completes, checked to still exist (gone: the user was erased
    /// meanwhile); `None` for a connection written without a flow (fixtures, seeding).
    pub state_id: Option<i32>,
    pub user_id: i32,
    pub provider: String,
    pub provider_user_id: Option<String>,
    /// The scopes the user actually granted.
    pub scopes: Vec<String>,
    pub metadata: Value,
    pub access_token: String,
    /// `None` keeps a refresh token stored by an earlier connection (Google sends one only once).
    pub refresh_token: Option<String>,
    pub token_type: String,
    pub expires_at: NaiveDateTime,
    pub scope: Option<String>,
    pub client: ClientInfo,
    pub consent_version: String,
    pub duration_ms: i32,
    pub now: NaiveDateTime,
}

/// New tokens from a refresh.
#[derive(Clone, Debug)]
pub struct RefreshedTokens {
    pub access_token: String,
    /// `None` keeps the stored refresh token (providers that do not rotate).
    pub refresh_token: Option<String>,
    pub token_type: String,
    pub expires_at: NaiveDateTime,
    pub scope: Option<String>,
    /// Granted scopes when the provider reported them.
    pub scopes: Option<Vec<String>>,
}

/// A refresh that did not work.
#[derive(Clone, Debug)]
pub struct RefreshFailure {
    /// The grant is dead (`invalid_grant` and friends, or no refresh token): the integration needs
    /// re-authorisation.
    pub needs_reauth: bool,
    /// Safe to show: never contains a token.
    pub message: String,
}

/// What a refresh decided, committed by the store under the refresh lock.
#[derive(Clone, Debug)]
pub enum RefreshStep {
    /// Another caller refreshed meanwhile, or the token is fresh enough: nothing to write.
    AlreadyFresh,
    Refreshed(RefreshedTokens),
    Failed(RefreshFailure),
}

/// What became of a refresh outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshWrite {
    /// Written (or, for `AlreadyFresh`, nothing to write).
    Written,
    /// Discarded: the integration was disconnected meanwhile; its new tokens belong to nobody.
    DiscardedDisconnected,
    /// Discarded: the user connected again meanwhile; the new connection stays as it is.
    DiscardedReconnected,
}

/// Facts the store records with a refresh.
#[derive(Clone, Debug)]
pub struct RefreshAudit {
    pub client: ClientInfo,
    /// How long the refresh took, provider call included.
    pub duration_ms: i32,
    /// Why it ran (`hand_out`, `proactive`, `manual`, `sync`, `rejected_by_provider`).
    pub reason: &'static str,
}

/// The outcome of a revocation at the provider, recorded in the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderRevocation {
    Revoked,
    NotSupported,
    Failed(String),
    /// No token was stored, so there was nothing to revoke.
    NothingToRevoke,
}

impl ProviderRevocation {
    /// The stable name the API shows.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::NotSupported => "not_supported",
            Self::Failed(_) => "failed",
            Self::NothingToRevoke => "nothing_to_revoke",
        }
    }
}

/// Everything a disconnect writes.
#[derive(Clone, Debug)]
pub struct RevokeRecord {
    pub reason: String,
    pub provider_revocation: ProviderRevocation,
    pub client: ClientInfo,
    pub duration_ms: i32,
    pub now: NaiveDateTime,
}

/// One audit row to write.
#[derive(Clone, Debug)]
pub struct AuditEntry {
    pub integration_id: Option<i32>,
    pub user_id: i32,
    pub action: AuditAction,
    pub provider: String,
    pub scopes: Option<Vec<String>>,
    pub client: ClientInfo,
    pub success: bool,
    pub error_message: Option<String>,
    pub duration_ms: Option<i32>,
    pub metadata: Option<Value>,
    pub details: Option<Value>,
    pub created_at: NaiveDateTime,
}

/// An audit row as read back.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditEvent {
    pub id: i32,
    pub integration_id: Option<i32>,
    pub user_id: i32,
    pub action: String,
    pub provider: String,
    pub scopes: Option<Vec<String>>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub success: bool,
    pub error_message: Option<String>,
    pub duration_ms: Option<i32>,
    pub action_metadata: Option<Value>,
    pub details: Option<Value>,
    pub status: String,
    pub created_at: NaiveDateTime,
}

/// Filters of the audit listing; `before_id` is the cursor (newest first).
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// `None` only for administrators listing everyone's events.
    pub user_id: Option<i32>,
    pub integration_id: Option<i32>,
    pub action: Option<AuditAction>,
    pub since: Option<NaiveDateTime>,
    pub until: Option<NaiveDateTime>,
    pub before_id: Option<i32>,
    pub limit: i64,
}

/// A consent row with its integration's provider.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Consent {
    pub id: i32,
    pub integration_id: i32,
    pub provider: String,
    pub scopes: Vec<String>,
    pub granted_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub consent_version: String,
    pub is_revoked: bool,
    pub revoked_at: Option<NaiveDateTime>,
    pub revoked_reason: Option<String>,
}

/// Counts behind `GET /status`.
#[derive(Clone, Debug, Default)]
pub struct StatusCounts {
    /// `(provider, status, count)`.
    pub integrations: Vec<(String, String, i64)>,
    pub total_consents: i64,
    pub revoked_consents: i64,
}

/// Token hand-outs of one integration within one minute, written by the usage flusher.
#[derive(Clone, Debug)]
pub struct UsageDelta {
    pub integration_id: i32,
    pub user_id: i32,
    pub provider: String,
    pub minute: NaiveDateTime,
    pub count: u64,
    pub first_at: NaiveDateTime,
    pub last_at: NaiveDateTime,
}

/// One entry of a provider's scope catalogue (`oauth_scopes`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ScopeEntry {
    pub name: String,
    pub display_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub dangerous: bool,
}

/// A token row's ciphertexts, with what their associated data names (key rotation).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TokenSecrets {
    /// `oauth_tokens.id`.
    pub id: i32,
    pub user_id: i32,
    pub provider: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
}

/// An unused state's encrypted PKCE verifier (key rotation).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct VerifierSecret {
    /// `oauth_state.id`.
    pub id: i32,
    /// The state's hash, which the verifier's associated data names.
    pub state_token: String,
    pub code_verifier: String,
}

/// How many rows an erasure deleted, per table (`Store::erase_user`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ErasedRows {
    pub integrations: u64,
    /// Other users' audit rows that named one of the integrations, kept without the reference.
    pub audit_references_cleared: u64,
    /// Webhook deliveries about the user already sent or given up (those still to send, telling
    /// of the erasure, are sent and then purged with the rest).
    pub webhook_deliveries: u64,
    pub tokens: u64,
    pub consents: u64,
    pub audit_events: u64,
    pub states: u64,
}

/// An event to deliver to one webhook endpoint (`Store::enqueue_webhooks`).
#[derive(Clone, Debug)]
pub struct NewWebhook {
    pub endpoint: String,
    /// Whom the event is about.
    pub user_id: i32,
    pub event_id: String,
    pub event_type: String,
    /// The JSON body, exactly as it will be signed and sent.
    pub payload: String,
    pub created_at: NaiveDateTime,
}

/// A due delivery, claimed by this process until its lease ends (`Store::claim_webhooks`).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct WebhookDelivery {
    pub id: i64,
    pub endpoint: String,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i32,
}

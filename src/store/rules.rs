//! The store's rules as pure functions: what a write keeps, discards and records. The shared
//! store executes them; nothing here touches a database.

use chrono::NaiveDateTime;
use serde_json::json;

use super::models::{
    AuditAction, AuditEntry, ClientInfo, ConnectRecord, ProviderRevocation, RefreshAudit, RefreshStep, RefreshWrite,
    RevokeRecord, StoredToken, UsageDelta,
};

/// A stored refresh token survives a reconnect without a new one only for the same provider
/// account: another account's grant must never be refreshed on this user's behalf.
pub fn keeps_stored_refresh_token(previous_account: Option<Option<String>>, record: &ConnectRecord) -> bool {
    previous_account.flatten() == record.provider_user_id
}

/// The `connect` audit row of a completed connection.
pub fn connect_entry(integration_id: i32, record: &ConnectRecord, reconnected: bool) -> AuditEntry {
    AuditEntry {
        integration_id: Some(integration_id),
        user_id: record.user_id,
        action: AuditAction::Connect,
        provider: record.provider.clone(),
        scopes: Some(record.scopes.clone()),
        client: record.client.clone(),
        success: true,
        error_message: None,
        duration_ms: Some(record.duration_ms),
        metadata: Some(json!({"reconnected": reconnected})),
        details: None,
        created_at: record.now,
    }
}

/// Whether a refresh outcome may be written. A connection disconnected (`revoked`) or reconnected
/// (its access token replaced) while the provider answered belongs to a grant that is gone: the
/// outcome must not touch it.
pub fn refresh_outcome_applies(status: Option<&str>, still_current: bool) -> RefreshWrite {
    match (status, still_current) {
        (None | Some("revoked"), _) => RefreshWrite::DiscardedDisconnected,
        (_, false) => RefreshWrite::DiscardedReconnected,
        _ => RefreshWrite::Written,
    }
}

/// The audit row of a refresh outcome: `refresh` when it worked, `error` when it failed, none when
/// another caller had already refreshed.
pub fn refresh_entry(
    current: &StoredToken,
    step: &RefreshStep,
    audit: &RefreshAudit,
    now: NaiveDateTime,
) -> Option<AuditEntry> {
    let entry = AuditEntry {
        integration_id: Some(current.integration_id),
        user_id: current.user_id,
        action: AuditAction::Refresh,
        provider: current.provider.clone(),
        scopes: None,
        client: audit.client.clone(),
        success: true,
        error_message: None,
        duration_ms: Some(audit.duration_ms),
        metadata: Some(json!({"reason": audit.reason})),
        details: None,
        created_at: now,
    };
    match step {
        RefreshStep::AlreadyFresh => None,
        RefreshStep::Refreshed(tokens) => Some(AuditEntry {
            scopes: tokens.scopes.clone(),
            details: Some(json!({"refresh_token_rotated": tokens.refresh_token.is_some()})),
            ..entry
        }),
        RefreshStep::Failed(failure) => Some(AuditEntry {
            action: AuditAction::Error,
            success: false,
            error_message: Some(failure.message.clone()),
            metadata: Some(json!({
                "operation": "refresh", "reason": audit.reason, "needs_reauth": failure.needs_reauth,
            })),
            ..entry
        }),
    }
}

/// The two audit rows of a disconnect: `revoke` (how revoking at the provider went) and
/// `disconnect` (always a success: the local grant is gone).
pub fn revoke_entries(
    integration_id: i32,
    user_id: i32,
    provider: String,
    scopes: Vec<String>,
    record: &RevokeRecord,
) -> [AuditEntry; 2] {
    let (success, error_message, outcome) = match &record.provider_revocation {
        ProviderRevocation::Revoked => (true, None, "revoked"),
        ProviderRevocation::NotSupported => (true, None, "not_supported"),
        ProviderRevocation::NothingToRevoke => (true, None, "nothing_to_revoke"),
        ProviderRevocation::Failed(message) => (false, Some(message.clone()), "failed"),
    };
    let revoke = AuditEntry {
        integration_id: Some(integration_id),
        user_id,
        action: AuditAction::Revoke,
        provider,
        scopes: Some(scopes),
        client: record.client.clone(),
        success,
        error_message,
        duration_ms: Some(record.duration_ms),
        metadata: Some(json!({"reason": record.reason})),
        details: Some(json!({"provider_revocation": outcome})),
        created_at: record.now,
    };
    let disconnect = AuditEntry {
        action: AuditAction::Disconnect,
        success: true,
        error_message: None,
        details: None,
        ..revoke.clone()
    };
    [revoke, disconnect]
}

/// `count` as an `INTEGER` increment: the column saturates instead of overflowing.
pub fn saturating_i32(count: u64) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

/// The `details` of an `api_call` row after adding `delta` to what it held.
pub fn merged_usage_details(existing: Option<&serde_json::Value>, delta: &UsageDelta) -> serde_json::Value {
    let previous = existing.and_then(|details| details.get("hand_outs")).and_then(|v| v.as_u64()).unwrap_or(0);
    let first_at = existing
        .and_then(|details| details.get("first_at"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| delta.first_at.and_utc().to_rfc3339());
    json!({
        "hand_outs": previous.saturating_add(delta.count),
        "first_at": first_at,
        "last_at": delta.last_at.and_utc().to_rfc3339(),
    })
}

/// The first `api_call` row of an integration and minute.
pub fn api_call_entry(delta: &UsageDelta) -> AuditEntry {
    AuditEntry {
        integration_id: Some(delta.integration_id),
        user_id: delta.user_id,
        action: AuditAction::ApiCall,
        provider: delta.provider.clone(),
        scopes: None,
        client: ClientInfo::default(),
        success: true,
        error_message: None,
        duration_ms: None,
        metadata: None,
        details: Some(merged_usage_details(None, delta)),
        // Stamped at its last hand-out, not the minute's start: it sorts among the rows around it
        // (a connect at :30 above hand-outs at :40 would read backwards).
        created_at: delta.last_at,
    }
}

/// The `status` column of an audit row.
pub fn audit_status(entry: &AuditEntry) -> &'static str {
    if entry.success { "completed" } else { "failed" }
}

/// The `LIKE` pattern (escape `\\`) of the values encrypted under `key_id` (`v1:<id>:…`); key
/// ids may hold `_`, which `LIKE` would read as "any character".
pub fn key_pattern(key_id: &str) -> String {
    let escaped = key_id.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("v1:{escaped}:%")
}

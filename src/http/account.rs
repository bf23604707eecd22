//! The caller's overview: `/status`, `/consents`, `/audit` and the provider catalogue.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;

use super::json::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, Problem};
use super::views::utc;
use crate::auth::UserCaller;
use crate::state::AppState;
use crate::store::{AuditAction, AuditEvent, AuditQuery, Consent, ScopeEntry};

const AUDIT_DEFAULT_LIMIT: i64 = 50;
const AUDIT_MAX_LIMIT: i64 = 200;

/// `GET /status`, `GET /consents`, `GET /audit`, `GET /providers`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/status", get(status))
        .route("/consents", get(consents))
        .route("/audit", get(audit))
        .route("/providers", get(providers))
}

#[derive(Default, Serialize)]
struct ProviderCounts {
    total: i64,
    active: i64,
    pending: i64,
    inactive: i64,
}

#[utoipa::path(get, path = "/api/v1/oauth/status", tag = "account", security(("user_jwt" = [])),
    responses((status = 200, description = "{integrations: {total_integrations, active_integrations, pending_integrations, inactive_integrations, providers}, consents: {total_consents, granted_consents, revoked_consents}}")))]
pub(super) async fn status(State(state): State<AppState>, caller: UserCaller) -> ApiResult<Json<Value>> {
    let counts = state.vault.store.status_counts(caller.user_id).await?;
    let mut providers: BTreeMap<String, ProviderCounts> = BTreeMap::new();
    let mut totals = ProviderCounts::default();
    for (provider, status, count) in counts.integrations {
        let entry = providers.entry(provider).or_default();
        for bucket in [&mut *entry, &mut totals] {
            bucket.total += count;
            match status.as_str() {
                "active" => bucket.active += count,
                "pending" => bucket.pending += count,
                _ => bucket.inactive += count,
            }
        }
    }
    Ok(Json(json!({
        "integrations": {
            "total_integrations": totals.total,
            "active_integrations": totals.active,
            "pending_integrations": totals.pending,
            "inactive_integrations": totals.inactive,
            "providers": providers,
        },
        "consents": {
            "total_consents": counts.total_consents,
            "granted_consents": counts.total_consents - counts.revoked_consents,
            "revoked_consents": counts.revoked_consents,
        },
    })))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ConsentView {
    id: i32,
    integration_id: i32,
    provider: String,
    scopes: Vec<String>,
    granted_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    ip_address: Option<String>,
    user_agent: Option<String>,
    consent_version: String,
    is_revoked: bool,
    revoked_at: Option<DateTime<Utc>>,
    revoked_reason: Option<String>,
}

impl From<Consent> for ConsentView {
    fn from(c: Consent) -> Self {
        Self {
            id: c.id,
            integration_id: c.integration_id,
            provider: c.provider,
            scopes: c.scopes,
            granted_at: utc(c.granted_at),
            expires_at: c.expires_at.map(utc),
            ip_address: c.ip_address,
            user_agent: c.user_agent,
            consent_version: c.consent_version,
            is_revoked: c.is_revoked,
            revoked_at: c.revoked_at.map(utc),
            revoked_reason: c.revoked_reason,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/oauth/consents", tag = "account", security(("user_jwt" = [])),
    responses((status = 200, body = [ConsentView])))]
pub(super) async fn consents(State(state): State<AppState>, caller: UserCaller) -> ApiResult<Json<Vec<ConsentView>>> {
    let consents = state.vault.store.list_consents(caller.user_id).await?;
    Ok(Json(consents.into_iter().map(ConsentView::from).collect()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditParams {
    integration_id: Option<i32>,
    action: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    cursor: Option<String>,
    limit: Option<i64>,
    user_id: Option<i32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct AuditEventView {
    id: i32,
    integration_id: Option<i32>,
    user_id: i32,
    action: String,
    provider: String,
    scopes: Option<Vec<String>>,
    ip_address: Option<String>,
    user_agent: Option<String>,
    success: bool,
    error_message: Option<String>,
    duration_ms: Option<i32>,
    #[schema(value_type = Option<Object>)]
    action_metadata: Option<Value>,
    #[schema(value_type = Option<Object>)]
    details: Option<Value>,
    status: String,
    created_at: DateTime<Utc>,
}

impl From<AuditEvent> for AuditEventView {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            integration_id: e.integration_id,
            user_id: e.user_id,
            action: e.action,
            provider: e.provider,
            scopes: e.scopes,
            ip_address: e.ip_address,
            user_agent: e.user_agent,
            success: e.success,
            error_message: e.error_message,
            duration_ms: e.duration_ms,
            action_metadata: e.action_metadata,
            details: e.details,
            status: e.status,
            created_at: utc(e.created_at),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct AuditPage {
    events: Vec<AuditEventView>,
    next_cursor: Option<String>,
}

/// Users see their own events; administrators anybody's (all, or `user_id`'s).
#[utoipa::path(get, path = "/api/v1/oauth/audit", tag = "account", params(AuditParams), security(("user_jwt" = [])),
    responses((status = 200, body = AuditPage), (status = 400, body = Problem), (status = 403, body = Problem)))]
pub(super) async fn audit(
    State(state): State<AppState>,
    caller: UserCaller,
    Query(params): Query<AuditParams>,
) -> ApiResult<Json<AuditPage>> {
    let user_id = match (caller.is_admin, params.user_id) {
        (true, requested) => requested,
        (false, Some(other)) if other != caller.user_id => {
            return Err(ApiError::Forbidden("Only administrators may read another user's audit log.".into()));
        }
        (false, _) => Some(caller.user_id),
    };
    let action = params
        .action
        .as_deref()
        .map(|name| {
            AuditAction::parse(name).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_action",
                    "action must be one of connect, disconnect, refresh, revoke, api_call, error.",
                )
            })
        })
        .transpose()?;
    let before_id = params
        .cursor
        .as_deref()
        .map(|cursor| {
            cursor
                .parse::<i32>()
                .map_err(|_| ApiError::bad_request("invalid_cursor", "cursor is not one this service issued."))
        })
        .transpose()?;
    let limit = match params.limit {
        None => AUDIT_DEFAULT_LIMIT,
        Some(limit) if (1..=AUDIT_MAX_LIMIT).contains(&limit) => limit,
        Some(_) => {
            return Err(ApiError::bad_request("invalid_limit", format!("limit must be 1 to {AUDIT_MAX_LIMIT}.")));
        }
    };
    let query = AuditQuery {
        user_id,
        integration_id: params.integration_id,
        action,
        since: params.since.map(|moment| moment.naive_utc()),
        until: params.until.map(|moment| moment.naive_utc()),
        before_id,
        // One more than asked tells whether another page exists.
        limit: limit + 1,
    };
    let mut events = state.vault.store.list_audit(&query).await?;
    let next_cursor = if events.len() as i64 > limit {
        events.truncate(limit as usize);
        events.last().map(|event| event.id.to_string())
    } else {
        None
    };
    let events = events.into_iter().map(AuditEventView::from).collect();
    Ok(Json(AuditPage { events, next_cursor }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ProviderView {
    name: String,
    display_name: String,
    description: String,
    configured: bool,
    scopes: Vec<ScopeEntry>,
    default_scopes: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/oauth/providers", tag = "account", security(("user_jwt" = [])),
    responses((status = 200, body = [ProviderView])))]
pub(super) async fn providers(State(state): State<AppState>, _caller: UserCaller) -> Json<Vec<ProviderView>> {
    Json(
        state
            .vault
            .providers
            .iter()
            .map(|p| ProviderView {
                name: p.name.clone(),
                display_name: p.display_name.clone(),
                description: p.description.clone(),
                configured: p.credentials.is_some(),
                scopes: p.scopes.clone(),
                default_scopes: p.default_scopes.clone(),
            })
            .collect(),
    )
}

//! Offboarding and data rights for administrators and backends: `GET /users/{user_id}/export`
//! (everything stored about a user, never a token) and `DELETE /users/{user_id}` (every grant
//! revoked at its provider, then the user's rows deleted from the `oauth_*` tables in one
//! transaction, so the host application can delete the user). `oauth::offboarding` does the work.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::RequestClient;
use super::account::{AuditEventView, ConsentView};
use super::error::{ApiError, ApiResult, Problem};
use super::json::Json;
use super::views::{IntegrationView, utc};
use crate::auth::Caller;
use crate::oauth::offboarding;
use crate::state::AppState;
use crate::store::{ErasedRows, ProviderRevocation};

/// `GET /users/{user_id}/export`, `DELETE /users/{user_id}`.
pub fn router() -> Router<AppState> {
    Router::new().route("/users/{user_id}/export", get(export)).route("/users/{user_id}", axum::routing::delete(erase))
}

/// Administrators and backends only: these act on any user.
fn gate(caller: &Caller) -> ApiResult<()> {
    match caller {
        Caller::Service(_) => Ok(()),
        Caller::User(user) if user.is_admin => Ok(()),
        Caller::User(_) => Err(ApiError::Forbidden(
            "Exporting or erasing a user's data takes an administrator or a service key.".into(),
        )),
    }
}

/// Everything stored about a user.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct UserExport {
    user_id: i32,
    exported_at: DateTime<Utc>,
    integrations: Vec<IntegrationView>,
    consents: Vec<ConsentView>,
    /// Every audit event, newest first.
    audit: Vec<AuditEventView>,
    /// Authorizations started and not yet finished or expired.
    open_authorizations: i64,
}

#[utoipa::path(get, path = "/api/v1/oauth/users/{user_id}/export", tag = "users", params(("user_id" = i32, Path)), security(("service_key" = []), ("user_jwt" = [])),
    responses((status = 200, body = UserExport), (status = 403, body = Problem)))]
pub(super) async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<i32>,
) -> ApiResult<Json<UserExport>> {
    gate(&caller)?;
    let data = offboarding::export(&state.vault, user_id).await?;
    let providers = &state.vault.providers;
    Ok(Json(UserExport {
        user_id: data.user_id,
        exported_at: utc(data.exported_at),
        integrations: data.integrations.into_iter().map(|i| IntegrationView::new(i, providers)).collect(),
        consents: data.consents.into_iter().map(ConsentView::from).collect(),
        audit: data.audit.into_iter().map(AuditEventView::from).collect(),
        open_authorizations: data.open_flows,
    }))
}

/// One integration of an erased user.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ErasedIntegrationView {
    integration_id: i32,
    provider: String,
    /// `revoked`, `not_supported` (the provider has no revocation endpoint), `failed` or
    /// `nothing_to_revoke` (disconnected before).
    provider_revocation: &'static str,
    /// Why revoking failed, when it did.
    revocation_error: Option<String>,
}

/// Answer of `DELETE /users/{user_id}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ErasureView {
    message: String,
    user_id: i32,
    integrations: Vec<ErasedIntegrationView>,
    /// Rows deleted per table.
    #[schema(value_type = Object)]
    deleted: ErasedRows,
}

#[utoipa::path(delete, path = "/api/v1/oauth/users/{user_id}", tag = "users", params(("user_id" = i32, Path)), security(("service_key" = []), ("user_jwt" = [])),
    responses((status = 200, body = ErasureView), (status = 403, body = Problem)))]
pub(super) async fn erase(
    State(state): State<AppState>,
    caller: Caller,
    RequestClient(client): RequestClient,
    Path(user_id): Path<i32>,
) -> ApiResult<Json<ErasureView>> {
    gate(&caller)?;
    let erasure = offboarding::erase(&state.vault, user_id, &client).await?;
    let integrations = erasure
        .integrations
        .into_iter()
        .map(|erased| ErasedIntegrationView {
            integration_id: erased.integration_id,
            provider: erased.provider,
            provider_revocation: erased.revocation.code(),
            revocation_error: match erased.revocation {
                ProviderRevocation::Failed(why) => Some(why),
                _ => None,
            },
        })
        .collect::<Vec<_>>();
    let message = format!(
        "Erased user {user_id}'s connections: {} integrations revoked where the provider allows and deleted with \
         their tokens, consents, audit events and authorizations. The users row is the host application's to delete.",
        integrations.len()
    );
    Ok(Json(ErasureView { message, user_id, integrations, deleted: erasure.deleted }))
}

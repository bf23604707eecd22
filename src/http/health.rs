//! Liveness and readiness.

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::json::Json;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `GET /healthz`, `GET /readyz`.
pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready: the database answers and the encryption keys are loaded.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "Database reachable, keys loaded"), (status = 503, body = super::error::Problem)))]
pub(super) async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    if let Err(error) = state.vault.store.ping().await {
        tracing::warn!(error = %error, "readiness: database unreachable");
        return Err(ApiError::Unavailable {
            code: "database_unavailable",
            detail: "The database is not reachable.".into(),
        });
    }
    Ok(Json(json!({
        "status": "ready",
        "database": "ok",
        "primary_key_id": state.vault.keys.primary_key_id(),
        "token_cache": state.vault.store.token_cache(),
    })))
}

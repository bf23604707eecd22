//! Liveness and readiness.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `GET /healthz`, `GET /readyz`.
pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

/// Alive: the process answers.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready: the database answers and the encryption keys are loaded.
async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    if let Err(error) = state.store.ping().await {
        tracing::warn!(error = %error, "readiness: database unreachable");
        return Err(ApiError::Unavailable {
            code: "database_unavailable",
            detail: "The database is not reachable.".into(),
        });
    }
    Ok(Json(json!({
        "status": "ready",
        "database": "ok",
        "primary_key_id": state.keys.primary_key_id(),
    })))
}

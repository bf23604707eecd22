//! The baseline of bench/run: the least an HTTP service can do for a token hand-out on this
//! machine. `GET /token/{id}` is one primary-key select on the same database, answered as JSON;
//! `GET /ceiling` answers a fixed JSON body without the database (the box's HTTP ceiling).
//!
//! Settings: `DATABASE_URL`, `PORT` (on 127.0.0.1), `DATABASE_MAX_CONNECTIONS` (default 10, the
//! service's default pool).

use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDateTime;
use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

#[derive(Serialize)]
struct Token {
    access_token: String,
    token_type: String,
    expires_at: NaiveDateTime,
}

async fn token(State(pool): State<PgPool>, Path(id): Path<i32>) -> Response {
    let row: Result<Option<(String, String, NaiveDateTime)>, _> =
        sqlx::query_as("SELECT access_token, token_type, expires_at FROM oauth_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&pool)
            .await;
    match row {
        Ok(Some((access_token, token_type, expires_at))) => {
            Json(Token { access_token, token_type, expires_at }).into_response()
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// About the size of a hand-out's answer, never touching the database.
async fn ceiling() -> Json<Token> {
    Json(Token {
        access_token: format!("ya29.{}", "c".repeat(180)),
        token_type: "Bearer".to_owned(),
        expires_at: NaiveDateTime::default(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let port: u16 = std::env::var("PORT").context("PORT")?.parse().context("PORT")?;
    let pool_size: u32 = std::env::var("DATABASE_MAX_CONNECTIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(10);
    let pool = PgPoolOptions::new().max_connections(pool_size).connect(&url).await.context("connecting")?;
    let app = Router::new()
        .route("/token/{id}", get(token))
        .route("/ceiling", get(ceiling))
        .route("/readyz", get(|| async { "ready" }))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.context("binding")?;
    axum::serve(listener, app).await.context("serving")
}

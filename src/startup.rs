//! Wiring: build the state from the configuration, serve, shut down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::auth::JwtVerifier;
use crate::config::{Config, DatabaseKind};
use crate::crypto::KeyRing;
use crate::oauth::Providers;
use crate::state::AppState;
use crate::store;

/// Builds the application state: opens and migrates the database, loads keys and providers.
pub async fn build_state(config: Config, providers: Providers) -> anyhow::Result<AppState> {
    let keys = KeyRing::parse(&config.encryption_keys).context("OAUTH_ENCRYPTION_KEY")?;
    let store = store::connect(&config).await?;
    store.migrate().await.context("running migrations")?;
    for provider in providers.iter() {
        if let Err(error) = store.seed_scopes(&provider.name, &provider.scopes).await {
            // A provider beyond the four built-ins needs the schema's CHECK relaxed (opt-in).
            tracing::warn!(provider = %provider.name, error = %error, "scope catalogue not stored");
        }
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(config.provider_timeout())
        .connect_timeout(std::time::Duration::from_secs(5))
        .user_agent(concat!("oauth-manager/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")?;
    Ok(AppState {
        jwt: Arc::new(JwtVerifier::new(&config.jwt_secret)),
        keys: Arc::new(keys),
        store,
        providers: Arc::new(providers),
        http,
        config: Arc::new(config),
    })
}

/// Warnings an operator must see at start-up.
pub fn announce(config: &Config) {
    if !config.generated_secrets.is_empty() {
        tracing::warn!(
            settings = ?config.generated_secrets,
            file = %config.data_dir.join("dev-secrets.toml").display(),
            "DEVELOPMENT SECRETS IN USE: these settings were not set and were generated into a local file. \
             Fine for trying oauth-manager on one machine; set them in the environment for anything else."
        );
    }
    if config.database_kind == DatabaseKind::Sqlite {
        tracing::info!("using the embedded SQLite database (set DATABASE_URL=postgres://… for production)");
    }
}

/// Serves `state` on the configured address until SIGINT or SIGTERM.
pub async fn serve(state: AppState) -> anyhow::Result<()> {
    let address = SocketAddr::new(state.config.host, state.config.port);
    let listener = TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?;
    tracing::info!(%address, "oauth-manager listening");
    let app = crate::http::router(state);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("shut down");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}

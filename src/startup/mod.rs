//! Wiring: check the secrets, build the state from the configuration, serve with the background
//! tasks, shut down gracefully.

mod secrets;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

pub use secrets::Secrets;

use crate::auth::{DemoUser, JwtVerifier};
use crate::config::{Config, DatabaseKind};
use crate::http::limits::RateLimits;
use crate::oauth::refresh::Refreshes;
use crate::oauth::{Providers, Vault};
use crate::state::{AppState, Shared};
use crate::store;

/// Builds the application state: opens and migrates the database, checks the roles query, seeds
/// the scope catalogues.
pub async fn build_state(config: Config, providers: Providers, secrets: Secrets) -> anyhow::Result<AppState> {
    let cache = config.token_cache.enabled.then(|| store::TokenCacheLimits {
        max_bytes: config.token_cache.max_megabytes * 1024 * 1024,
        max_age: std::time::Duration::from_secs(config.token_cache.max_age_seconds),
    });
    let options = store::StoreOptions {
        max_connections: config.database.max_connections,
        refresh_writers: config.refresh.write_connections,
        cache,
    };
    let store = store::connect(config.database.url.expose_secret(), options).await?;
    store.migrate().await.context("running migrations")?;
    if let crate::config::RolesSource::Database { query } = &config.roles_source {
        // A wrong query must stop start-up, not silently make every administrator a user.
        store
            .user_roles(0, query)
            .await
            .map_err(|error| anyhow::anyhow!("OAUTH_ROLES_QUERY: the roles query fails on this database: {error}"))?;
    }
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
    let config = Arc::new(config);
    let vault = Vault {
        refreshes: Arc::new(Refreshes::new(config.refresh.max_in_flight, store.refresh_write_slots())),
        config: config.clone(),
        store,
        keys: Arc::new(secrets.keys),
        providers: Arc::new(providers),
        http,
        jwks: Arc::default(),
        usage: Arc::default(),
        webhooks: Arc::new(crate::oauth::webhooks::Webhooks::new(&config.webhooks).context("the webhook client")?),
    };
    let limits = Arc::new(RateLimits::new(&config.limits));
    Ok(AppState::new(Shared {
        config,
        vault,
        jwt: Arc::new(JwtVerifier::new(&secrets.jwt_secret)),
        demo: Arc::new(DemoUser::new(&secrets.jwt_secret)),
        service_keys: Arc::new(secrets.service_keys),
        roles: Arc::default(),
        limits,
    }))
}

/// An alert when stored secrets are encrypted with keys the ring lacks (a key removed too soon):
/// their connections answer 500 until the key is back.
pub async fn warn_about_unreadable_secrets(state: &AppState) {
    match crate::keys::usage(state.vault.store.as_ref(), &state.vault.keys).await {
        Ok(usage) if usage.under_unknown_keys > 0 => tracing::error!(
            unreadable = usage.under_unknown_keys,
            "ALERT: stored secrets are encrypted with keys that are not in OAUTH_ENCRYPTION_KEY; put the key back"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(error = %error, "could not count the stored secrets per key"),
    }
}

/// Warnings an operator must see at start-up.
pub fn announce(config: &Config, secrets: &Secrets) {
    if !secrets.generated.is_empty() {
        tracing::warn!(
            settings = ?secrets.generated,
            file = %secrets.file.display(),
            "DEVELOPMENT SECRETS IN USE: these settings were not set and were generated into a local file. \
             Fine for trying oauth-manager on one machine; set them in the environment for anything else."
        );
    }
    if config.database.kind == DatabaseKind::Sqlite {
        tracing::info!("using the embedded SQLite database (set DATABASE_URL=postgres://… for production)");
    }
    // RFC 7518 §3.2: an HS256 key should have at least 256 bits. The host application chose it, so
    // a shorter one is accepted, but said.
    if secrets.jwt_secret.expose_secret().len() < 32 {
        tracing::warn!("JWT_SECRET_KEY is shorter than 32 bytes: the host application's tokens are easier to forge");
    }
}

/// Serves `state` on the configured address until SIGINT or SIGTERM, with the background tasks;
/// on shutdown, requests in flight finish and pending usage counts are written. `sandbox` is the
/// emulators' router, nested under `oauth::sandbox::PREFIX`.
pub async fn serve(state: AppState, sandbox: Option<axum::Router>) -> anyhow::Result<()> {
    let address = SocketAddr::new(state.config.host, state.config.port);
    let listener = TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?;
    tracing::info!(%address, "oauth-manager listening");
    let base = state.config.public_base_url.as_str().trim_end_matches('/');
    if sandbox.is_some() {
        tracing::info!(
            "next: open {base}/ in a browser, click \"Sign in as the demo user\" and connect a sandbox account; \
             the API is described at {base}/docs"
        );
    } else {
        tracing::info!("ready: the API is described at {base}/docs; connected accounts are listed at {base}/");
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tasks = spawn_background(&state, stopped);
    let vault = state.vault.clone();
    let app = crate::http::router_with_sandbox(state, sandbox);
    let served = server::run(listener, app, &vault.config.http, shutdown_signal()).await.context("serving HTTP");
    // A refresh whose caller already went away runs detached; stopping it mid-call could lose a
    // rotated refresh token.
    if !vault.refreshes.wait_idle(vault.config.provider_timeout() * 2).await {
        tracing::warn!("shutting down with refreshes still in flight");
    }
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    tracing::info!("shut down");
    served
}

/// The usage flusher, the proactive refresher and the purge of expired states.
pub fn spawn_background(
    state: &AppState,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let vault = &state.vault;
    let flusher =
        tokio::spawn(crate::oauth::usage::run_flusher(vault.usage.clone(), vault.store.clone(), stopped.clone()));
    let refresher = tokio::spawn(crate::oauth::refresher::run(vault.clone(), stopped.clone()));
    let purge = tokio::spawn(purge_expired_states(state.clone(), stopped.clone()));
    let metrics = tokio::spawn(metrics_upkeep(stopped.clone()));
    let webhooks = tokio::spawn(crate::oauth::webhooks::run(vault.webhooks.clone(), vault.store.clone(), stopped));
    vec![flusher, refresher, purge, metrics, webhooks]
}

/// Folds recorded histogram samples into their buckets every few seconds, so memory stays bounded
/// however rarely `/metrics` is scraped (the exporter leaves this to its user).
async fn metrics_upkeep(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let handle = crate::prometheus::handle();
    loop {
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => handle.run_upkeep(),
            _ = stopped.changed() => return,
        }
    }
}

/// How long delivered and given-up webhook deliveries stay in the outbox (to look into).
const WEBHOOK_RETENTION_DAYS: i64 = 7;

/// Purges expired states every `purge_interval_seconds`, once they have been expired for
/// `keep_expired_seconds`, webhook deliveries done with a week ago, and lets the rate limiters
/// forget idle clients.
async fn purge_expired_states(state: AppState, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let flow = state.config.flow.clone();
    loop {
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(flow.purge_interval_seconds.max(1))) => {},
            _ = stopped.changed() => return,
        }
        state.limits.forget_idle();
        let cutoff = chrono::Utc::now().naive_utc() - chrono::Duration::seconds(flow.keep_expired_seconds as i64);
        match state.vault.store.delete_expired_states(cutoff).await {
            Ok(deleted) if deleted > 0 => tracing::info!(deleted, "purged expired authorization states"),
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "could not purge expired states"),
        }
        let week_ago = chrono::Utc::now().naive_utc() - chrono::Duration::days(WEBHOOK_RETENTION_DAYS);
        match state.vault.store.purge_webhooks(week_ago).await {
            Ok(purged) if purged > 0 => tracing::info!(purged, "purged webhook deliveries done with a week ago"),
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "could not purge the webhook outbox"),
        }
    }
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

//! Wiring: build the state from the configuration, serve, shut down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
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
    let config_max_connections = config.database_max_connections;
    let store = store::connect(config.database_url.expose_secret(), config.database_max_connections).await?;
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
    Ok(AppState {
        jwt: Arc::new(JwtVerifier::new(&config.jwt_secret)),
        keys: Arc::new(keys),
        store,
        providers: Arc::new(providers),
        http,
        config: Arc::new(config),
        jwks: Arc::default(),
        refresh_locks: Arc::default(),
        refresh_slots: Arc::new(tokio::sync::Semaphore::new(refresh_slot_count(config_max_connections))),
        usage: Arc::default(),
        roles: Arc::default(),
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

/// Serves `state` on the configured address until SIGINT or SIGTERM, with the background tasks;
/// on shutdown, requests in flight finish and pending usage counts are written.
pub async fn serve(state: AppState, sandbox: Option<axum::Router>) -> anyhow::Result<()> {
    let address = SocketAddr::new(state.config.host, state.config.port);
    let listener = TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?;
    tracing::info!(%address, "oauth-manager listening");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tasks = spawn_background(&state, stopped);
    let state_for_shutdown = state.clone();
    let mut app = crate::http::router(state);
    if let Some(sandbox) = sandbox {
        app = app.nest(SANDBOX_PREFIX, sandbox);
    }
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP");
    wait_for_refreshes(&state_for_shutdown).await;
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    tracing::info!("shut down");
    served
}

/// How many refreshes may run at once: each holds a database connection while the provider
/// answers, so at most half the pool, leaving the rest to the hand-out path.
pub fn refresh_slot_count(max_connections: u32) -> usize {
    (max_connections / 2).max(1) as usize
}

/// Waits (bounded) until no refresh is talking to a provider: one whose caller already went away
/// runs detached, and stopping it mid-call could lose a rotated refresh token.
async fn wait_for_refreshes(state: &AppState) {
    let slots = refresh_slot_count(state.config.database_max_connections) as u32;
    let patience = state.config.provider_timeout() * 2;
    if tokio::time::timeout(patience, state.refresh_slots.acquire_many(slots)).await.is_err() {
        tracing::warn!("shutting down with refreshes still in flight");
    }
}

/// Where the sandbox's provider emulators are served.
pub const SANDBOX_PREFIX: &str = "/_sandbox";

/// The usage flusher, the proactive refresher and the purge of expired states.
pub fn spawn_background(
    state: &AppState,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let flusher =
        tokio::spawn(crate::oauth::usage::run_flusher(state.usage.clone(), state.store.clone(), stopped.clone()));
    let refresher = tokio::spawn(crate::oauth::refresher::run(state.clone(), stopped.clone()));
    let purge = tokio::spawn(purge_expired_states(state.clone(), stopped));
    vec![flusher, refresher, purge]
}

async fn purge_expired_states(state: AppState, mut stopped: tokio::sync::watch::Receiver<bool>) {
    // Expired states are useless; keep a day of them for investigations.
    loop {
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {},
            _ = stopped.changed() => return,
        }
        let cutoff = chrono::Utc::now().naive_utc() - chrono::Duration::days(1);
        match state.store.delete_expired_states(cutoff).await {
            Ok(deleted) if deleted > 0 => tracing::info!(deleted, "purged expired authorization states"),
            Ok(_) => {}
            Err(error) => tracing::warn!(error = %error, "could not purge expired states"),
        }
    }
}

/// Whether the sandbox runs: `on`, or `auto` with the SQLite default and no provider credentials.
pub fn sandbox_enabled(config: &Config, providers: &Providers) -> bool {
    match config.sandbox {
        crate::config::SandboxMode::On => true,
        crate::config::SandboxMode::Off => false,
        crate::config::SandboxMode::Auto => {
            config.database_kind == DatabaseKind::Sqlite && providers.iter().all(|p| p.credentials.is_none())
        }
    }
}

/// Points the built-in providers at emulators nested under `SANDBOX_PREFIX`; returns their router.
pub fn sandbox(config: &Config, operator_toml: Option<&str>) -> anyhow::Result<(Providers, axum::Router)> {
    use provider_emulators::Flavor;
    let base = format!("{}{SANDBOX_PREFIX}", config.public_base_url.as_str().trim_end_matches('/'));
    let mut router = axum::Router::new();
    let mut bases = Vec::new();
    for (flavor, path) in [(Flavor::Google, "google"), (Flavor::Microsoft, "microsoft"), (Flavor::Notion, "notion")] {
        let flavor_base = format!("{base}/{path}");
        let (emulator, _handle) =
            provider_emulators::router(crate::oauth::sandbox::emulator_config(flavor), &flavor_base);
        router = router.nest(&format!("/{path}"), emulator);
        bases.push(flavor_base);
    }
    let mut toml = operator_toml.map(str::to_owned).unwrap_or_default();
    toml.push('\n');
    toml.push_str(&crate::oauth::sandbox::providers_toml(&bases[0], &bases[1], &bases[2]));
    let credentials = crate::oauth::sandbox::credential_env();
    let lookup = |name: &str| credentials.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned());
    let providers = Providers::load(Some(&toml), &lookup)?;
    Ok((providers, router))
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

//! The `oauth-manager` binary: parse the command line, load the configuration, run.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use oauth_manager::config::{Config, ConfigError, DatabaseKind};
use oauth_manager::oauth::{Providers, sandbox};
use oauth_manager::startup::{self, Secrets};
use oauth_manager::{keys, telemetry};
use secrecy::ExposeSecret;

/// A request allocates a few dozen small blocks across threads; glibc's malloc spent a fifth of
/// the hand-out's CPU on them (perf, `bench/run --profile`), mimalloc much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Self-hostable OAuth 2.0 connection manager.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Create missing tables and exit (changes nothing on an up-to-date database).
    Migrate {
        /// Also relax the schema's provider CHECK constraints so providers added in
        /// OAUTH_PROVIDERS_FILE can be stored (PostgreSQL; an explicit, one-way opt-in).
        #[arg(long)]
        allow_custom_providers: bool,
    },
    /// Print shell `export`s for trying the API locally: a JWT for the demo user (created if
    /// missing) and the development service key. Only with the embedded SQLite setup.
    DemoCredentials,
    /// Validate the configuration and the provider file, print a summary without secrets, and exit.
    CheckConfig,
    /// Re-encrypt every stored secret under the key ring's primary key (the first of
    /// OAUTH_ENCRYPTION_KEY). Safe while the service serves; run it again to resume.
    RotateKeys {
        /// Rows read and rewritten at a time.
        #[arg(long, default_value_t = 500)]
        batch_size: i64,
    },
    /// Ask the service on this machine whether it is ready (`GET /readyz` on 127.0.0.1:$PORT):
    /// exit 0 if so, 1 otherwise. For container health checks, where no curl is installed.
    Healthcheck,
    /// Check that a key may leave OAUTH_ENCRYPTION_KEY: refused while stored secrets still use it.
    RetireKey {
        /// The key's id (the part before `:` in OAUTH_ENCRYPTION_KEY).
        key_id: String,
    },
}

/// Everything start-up reads before it does anything.
struct Loaded {
    config: Config,
    providers: Providers,
    secrets: Secrets,
}

fn load() -> Result<Loaded, ConfigError> {
    let config = Config::from_env()?;
    let providers = Providers::from_file(config.providers_file.as_deref(), &env_lookup)?;
    // An explicit step: with the SQLite default it may write development secrets to the data dir.
    let secrets = Secrets::resolve(&config)?;
    Ok(Loaded { config, providers, secrets })
}

async fn migrate(loaded: Loaded, allow_custom_providers: bool) -> anyhow::Result<()> {
    startup::announce(&loaded.config, &loaded.secrets);
    let state = startup::build_state(loaded.config, loaded.providers, loaded.secrets).await?;
    if allow_custom_providers {
        state.vault.store.allow_custom_providers().await?;
        tracing::info!("provider CHECK constraints relaxed: providers beyond the built-ins can be stored");
    }
    tracing::info!("migrations applied");
    Ok(())
}

async fn serve(loaded: Loaded) -> anyhow::Result<()> {
    let Loaded { config, mut providers, secrets } = loaded;
    startup::announce(&config, &secrets);
    let sandbox_url = format!("{}{}", config.public_base_url.as_str().trim_end_matches('/'), sandbox::PREFIX);
    let emulators = sandbox::enabled(&config, &providers).then(|| {
        let (router, bases) = sandbox::emulators(config.public_base_url.as_str(), &config.data_dir);
        sandbox::point_at_emulators(&mut providers, &bases);
        tracing::warn!(
            "SANDBOX MODE: google, youtube, microsoft and notion are served by local emulators under {}; \
             nothing here talks to the real providers. For trying and testing only (OAUTH_SANDBOX=off disables it).",
            sandbox_url
        );
        router
    });
    let state = startup::build_state(config, providers, secrets).await?;
    // An alert, not a gate: counting every stored secret per key reads whole tables, so it runs
    // beside the server instead of delaying readiness.
    tokio::spawn({
        let state = state.clone();
        async move { startup::warn_about_unreadable_secrets(&state).await }
    });
    startup::serve(state, emulators).await
}

async fn demo_credentials(loaded: Loaded) -> anyhow::Result<()> {
    anyhow::ensure!(
        loaded.config.database.kind == DatabaseKind::Sqlite,
        "demo-credentials is for the embedded SQLite setup only"
    );
    let service_key = loaded.secrets.generated_service_key.as_ref().map(|key| key.expose_secret().to_owned());
    let state = startup::build_state(loaded.config, loaded.providers, loaded.secrets).await?;
    let (user_id, token) =
        state.demo.sign_in(state.vault.store.as_ref(), std::time::Duration::from_secs(24 * 3600)).await?;
    println!("export OAM_USER_ID={user_id}");
    println!("export OAM_USER_TOKEN={token}");
    match service_key {
        Some(key) => println!("export OAM_SERVICE_KEY={key}"),
        None => eprintln!("# OAUTH_SERVICE_API_KEYS is set in the environment: use one of its keys as OAM_SERVICE_KEY"),
    }
    Ok(())
}

async fn rotate_keys(loaded: Loaded, batch_size: i64) -> anyhow::Result<()> {
    anyhow::ensure!(batch_size > 0, "--batch-size must be positive");
    let state = startup::build_state(loaded.config, loaded.providers, loaded.secrets).await?;
    let (store, keys) = (state.vault.store.as_ref(), state.vault.keys.as_ref());
    let before = keys::usage(store, keys).await?;
    let primary = keys.primary_key_id();
    let under_primary = before.by_key.iter().find(|(id, _)| id == primary).map_or(0, |(_, count)| *count);
    let to_rewrite = before.by_key.iter().map(|(_, count)| count).sum::<i64>() - under_primary;
    eprintln!("re-encrypting {to_rewrite} stored secrets under key {primary:?}");
    let bar = indicatif::ProgressBar::new(to_rewrite.max(0) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} secrets, {elapsed} elapsed, about {eta} left")
            .expect("a valid template"),
    );
    let rotation = keys::rotate(store, keys, batch_size, &|done| bar.set_position(done)).await?;
    bar.finish_and_clear();
    eprintln!(
        "rewrote {} secrets; {} rows were written by the service meanwhile (already under {primary:?}); {} do not decrypt",
        rotation.rewritten, rotation.changed_meanwhile, rotation.undecryptable
    );
    print_usage(&keys::usage(store, keys).await?, primary);
    anyhow::ensure!(
        rotation.undecryptable == 0,
        "{} stored secrets do not decrypt with any key of the ring",
        rotation.undecryptable
    );
    Ok(())
}

async fn retire_key(loaded: Loaded, key_id: &str) -> anyhow::Result<()> {
    let state = startup::build_state(loaded.config, loaded.providers, loaded.secrets).await?;
    match keys::check_retire(state.vault.store.as_ref(), &state.vault.keys, key_id).await? {
        Ok(()) => {
            println!("no stored secret uses key {key_id:?}: it can be removed from OAUTH_ENCRYPTION_KEY");
            Ok(())
        }
        Err(refusal) => anyhow::bail!("key {key_id:?} may not be retired: {refusal}"),
    }
}

fn print_usage(usage: &keys::KeyUsage, primary: &str) {
    for (id, count) in &usage.by_key {
        let role = if id == primary {
            " (primary)"
        } else if *count == 0 {
            " (unused: may be retired)"
        } else {
            ""
        };
        println!("  key {id}: {count} stored secrets{role}");
    }
    if usage.under_unknown_keys > 0 {
        println!("  keys not in the ring: {} stored secrets (unreadable)", usage.under_unknown_keys);
    }
}

/// Prints what the service would run with (never a secret) and checks what can be checked
/// without starting it; each problem is one line on stderr, and any problem fails the command.
async fn check_config(loaded: &Loaded) -> anyhow::Result<()> {
    let Loaded { config, providers, secrets } = loaded;
    let mut problems = Vec::new();
    println!("  database: {:?}", config.database.kind);
    match oauth_manager::store::probe(config.database.url.expose_secret()).await {
        Ok(found) => println!("  database reachable: {found}"),
        Err(error) => {
            println!("  database reachable: no");
            problems.push(format!("{error:#}"));
        }
    }
    println!("  listen: {}:{}", config.host, config.port);
    println!("  public base URL: {}", config.public_base_url);
    let sandbox = sandbox::enabled(config, providers);
    println!(
        "  sandbox mode: {}",
        match (sandbox, config.sandbox) {
            (true, oauth_manager::config::SandboxMode::On) =>
                "on (OAUTH_SANDBOX=on): every provider is a local emulator",
            (true, _) => "on (SQLite and no provider credentials): every provider is a local emulator",
            (false, _) => "off",
        }
    );
    for provider in providers.iter() {
        let state = match (&provider.credentials, sandbox) {
            (_, true) => "served by the sandbox emulator",
            (Some(_), false) => "configured",
            (None, false) => "no credentials (cannot be connected)",
        };
        println!("  provider {}: {state}", provider.name);
    }
    if !sandbox && providers.iter().all(|provider| provider.credentials.is_none()) {
        problems.push(
            "no provider has credentials and the sandbox is off: nothing can be connected (set <PROVIDER>_CLIENT_ID \
             and <PROVIDER>_CLIENT_SECRET)"
                .to_owned(),
        );
    }
    let key_ids: Vec<&str> = secrets.keys.key_ids().collect();
    println!("  encryption keys: {} (primary {})", key_ids.join(", "), secrets.keys.primary_key_id());
    println!("  service API keys: {}", secrets.service_keys.len());
    match config.webhooks.endpoints.len() {
        0 => println!("  webhooks: none (OAUTH_WEBHOOK_URLS)"),
        // Only the hosts: an endpoint's path or query may carry a receiver's token.
        n => println!(
            "  webhooks: {n} endpoint(s), signed: {}",
            config.webhooks.endpoints.iter().filter_map(|url| url.host_str()).collect::<Vec<_>>().join(", ")
        ),
    }
    if problems.is_empty() {
        println!("configuration OK");
        return Ok(());
    }
    for problem in &problems {
        eprintln!("oauth-manager: problem: {problem}");
    }
    Err(anyhow::anyhow!("{} problem(s) found", problems.len()))
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// `demo-credentials` prints the credentials of the service started from the same folder: run
/// anywhere else, it would generate a second data folder with new secrets, whose JWT that
/// service refuses. It refuses instead, saying where it looked.
fn check_demo_folder() -> Result<(), String> {
    let config = Config::from_env().map_err(|error| format!("configuration error: {error}"))?;
    let secrets_file = config.data_dir.join("dev-secrets.toml");
    if config.secrets.jwt_secret.is_some() || secrets_file.exists() {
        return Ok(());
    }
    let folder = std::path::absolute(&config.data_dir).unwrap_or(config.data_dir.clone());
    Err(format!(
        "no development secrets in {}: demo-credentials prints the credentials of the service started \
         from the same folder. Run it in the folder where `cargo run` runs the service (start that first), \
         or set OAUTH_DATA_DIR to that service's data folder.",
        folder.display()
    ))
}

/// `healthcheck`: needs no secret and no database, only the port the service listens on.
fn healthcheck() -> ExitCode {
    let port = env_lookup("PORT").unwrap_or_else(|| "8000".to_owned());
    let url = format!("http://127.0.0.1:{port}/readyz");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let ready = runtime.block_on(async {
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?;
        client.get(&url).send().await?.error_for_status()?;
        Ok::<_, reqwest::Error>(())
    });
    match ready {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("oauth-manager: {url} is not ready: {error}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Some(Command::Healthcheck)) {
        return healthcheck();
    }
    if matches!(cli.command, Some(Command::DemoCredentials))
        && let Err(problem) = check_demo_folder()
    {
        eprintln!("oauth-manager: {problem}");
        return ExitCode::from(2);
    }
    let loaded = match load() {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("oauth-manager: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    let log_writer = telemetry::init(loaded.config.log_format);
    let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::CheckConfig => check_config(&loaded).await,
            Command::Migrate { allow_custom_providers } => migrate(loaded, allow_custom_providers).await,
            Command::Serve => serve(loaded).await,
            Command::DemoCredentials => demo_credentials(loaded).await,
            Command::RotateKeys { batch_size } => rotate_keys(loaded, batch_size).await,
            Command::RetireKey { key_id } => retire_key(loaded, &key_id).await,
            Command::Healthcheck => unreachable!("answered before the configuration is loaded"),
        }
    });
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Once for a person at a terminal; when stdout is a log file or collector, the log
            // gets the line too.
            if !std::io::stdout().is_terminal() {
                tracing::error!(error = format!("{error:#}"), "oauth-manager stopped");
            }
            eprintln!("oauth-manager: {error:#}");
            ExitCode::FAILURE
        }
    };
    // Tasks still running log as they end; the writer is flushed only after them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    drop(log_writer);
    code
}

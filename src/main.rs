//! The `oauth-manager` binary: parse the command line, load the configuration, run.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use oauth_manager::config::Config;
use oauth_manager::oauth::Providers;
use oauth_manager::{startup, telemetry};

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
}

async fn migrate(config: Config, providers: Providers, allow_custom_providers: bool) -> anyhow::Result<()> {
    startup::announce(&config);
    let state = startup::build_state(config, providers).await?;
    if allow_custom_providers {
        state.store.allow_custom_providers().await?;
        tracing::info!("provider CHECK constraints relaxed: providers beyond the built-ins can be stored");
    }
    tracing::info!("migrations applied");
    Ok(())
}

async fn serve(config: Config, providers: Providers) -> anyhow::Result<()> {
    startup::announce(&config);
    let (providers, sandbox) = if startup::sandbox_enabled(&config, &providers) {
        let operator = match &config.providers_file {
            Some(path) => Some(std::fs::read_to_string(path)?),
            None => None,
        };
        let (providers, router) = startup::sandbox(&config, operator.as_deref())?;
        tracing::warn!(
            "SANDBOX MODE: google, youtube, microsoft and notion are served by local emulators under {}{}; \
             nothing here talks to the real providers. For trying and testing only (OAUTH_SANDBOX=off disables it).",
            config.public_base_url.as_str().trim_end_matches('/'),
            startup::SANDBOX_PREFIX
        );
        (providers, Some(router))
    } else {
        (providers, None)
    };
    let state = startup::build_state(config, providers).await?;
    startup::serve(state, sandbox).await
}

async fn demo_credentials(config: Config, providers: Providers) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    anyhow::ensure!(
        config.database_kind == oauth_manager::config::DatabaseKind::Sqlite,
        "demo-credentials is for the embedded SQLite setup only"
    );
    let dev_secrets: toml::Table =
        toml::from_str(&std::fs::read_to_string(config.data_dir.join("dev-secrets.toml")).unwrap_or_default())?;
    let jwt_secret = config.jwt_secret.expose_secret().to_owned();
    let state = startup::build_state(config, providers).await?;
    let email = "demo@example.com";
    let user_id = match state.store.find_user(email).await? {
        Some(id) => id,
        None => state.store.create_user(email).await?,
    };
    let claims = oauth_manager::auth::Claims {
        user_id,
        token_type: "access".into(),
        sub: email.into(),
        exp: (chrono::Utc::now().timestamp() + 24 * 3600) as u64,
        roles: vec![],
    };
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(jwt_secret.as_bytes()),
    )?;
    println!("export OAM_USER_ID={user_id}");
    println!("export OAM_USER_TOKEN={token}");
    match dev_secrets.get("OAUTH_SERVICE_API_KEYS").and_then(toml::Value::as_str) {
        Some(key) => println!("export OAM_SERVICE_KEY={key}"),
        None => eprintln!("# OAUTH_SERVICE_API_KEYS is set in the environment: use one of its keys as OAM_SERVICE_KEY"),
    }
    Ok(())
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let loaded = Config::from_env()
        .and_then(|config| Providers::from_file(config.providers_file.as_deref(), &env_lookup).map(|p| (config, p)));
    let (config, providers) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("oauth-manager: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            println!("configuration OK");
            println!("  database: {:?}", config.database_kind);
            println!("  listen: {}:{}", config.host, config.port);
            println!("  public base URL: {}", config.public_base_url);
            println!("  service API keys: {}", config.service_keys.len());
            for provider in providers.iter() {
                let state = if provider.credentials.is_some() { "configured" } else { "no credentials" };
                println!("  provider {}: {state}", provider.name);
            }
            Ok(())
        }
        Command::Migrate { allow_custom_providers } => migrate(config, providers, allow_custom_providers).await,
        Command::Serve => serve(config, providers).await,
        Command::DemoCredentials => demo_credentials(config, providers).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "oauth-manager stopped");
            eprintln!("oauth-manager: {error:#}");
            ExitCode::FAILURE
        }
    }
}

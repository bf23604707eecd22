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
    Migrate,
    /// Validate the configuration and the provider file, print a summary without secrets, and exit.
    CheckConfig,
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
        Command::Migrate => {
            async {
                startup::announce(&config);
                startup::build_state(config, providers).await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            .await
        }
        Command::Serve => {
            async {
                startup::announce(&config);
                let state = startup::build_state(config, providers).await?;
                startup::serve(state).await
            }
            .await
        }
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

//! The command line: `serve` (default), `migrate`, `prune`, `token`.

use std::time::Duration;

use chrono::Utc;
use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::auth::{DEV_JWT_SECRET, issue_token_with};
use crate::config::{Config, ConfigError, to_delta};
use crate::domain::UserId;
use crate::startup::{Application, StartupError, connect, prepare_database};
use crate::store::{self, PG_CRON_JOB, PgCronError};

/// The presence service: who is online, from PostgreSQL, over plain HTTP polling.
#[derive(Debug, Parser)]
#[command(name = "presence", version, about)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and migrate the database if needed, then serve HTTP.
    Serve {
        /// Use a fixed, public development secret when PRESENCE_JWT_SECRET is unset.
        #[arg(long)]
        dev: bool,
    },
    /// Create the database if missing, apply the migrations, and exit.
    Migrate,
    /// Run the prune job once and print how many device entries it removed (for cron).
    Prune {
        /// Remove device entries whose last ping is older than this [default: PRESENCE_PRUNE_AFTER].
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
        /// Instead of pruning now, register the job with pg_cron (idempotent).
        #[arg(long, conflicts_with = "uninstall_pg_cron")]
        install_pg_cron: bool,
        /// The pg_cron schedule for --install-pg-cron.
        #[arg(long, default_value = "* * * * *", requires = "install_pg_cron")]
        schedule: String,
        /// Remove the job from pg_cron (idempotent).
        #[arg(long)]
        uninstall_pg_cron: bool,
    },
    /// Print a bearer token for a user, for curl scripts and local development.
    Token {
        /// The user the token speaks for (a UUID).
        #[arg(value_parser = UserId::parse)]
        user_id: UserId,
        /// How long the token stays valid.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Sign with the development secret when PRESENCE_JWT_SECRET is unset (as `serve --dev` does).
        #[arg(long)]
        dev: bool,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server could not start.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The server stopped with an I/O error.
    #[error("the server stopped: {0}")]
    Serve(#[from] std::io::Error),
    /// The prune job failed.
    #[error("the prune job failed: {0}")]
    Prune(#[from] sqlx::Error),
    /// pg_cron could not be used.
    #[error(transparent)]
    PgCron(#[from] PgCronError),
    /// A token could not be signed.
    #[error("could not sign the token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
}

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let mut config = Config::from_env()?;
    match cli.command.unwrap_or(Command::Serve { dev: false }) {
        Command::Serve { dev } => {
            config.jwt_secret = jwt_secret(&config, dev)?;
            config.dev_mode = dev;
            let application = Application::build(&config).await?;
            tracing::info!(addr = %config.addr, port = application.port(), "serving");
            if dev {
                tracing::warn!("demo page: http://{}/demo", config.addr);
            }
            application.run_until_stopped().await?;
        }
        Command::Migrate => {
            prepare_database(&config).await?;
            tracing::info!("the database is migrated");
        }
        Command::Prune {
            older_than,
            install_pg_cron,
            schedule,
            uninstall_pg_cron,
        } => {
            let pool = connect(&config).await?;
            let older_than = to_delta(older_than.unwrap_or(config.prune_after));
            let max_devices = config.max_devices.get();
            if install_pg_cron {
                let job =
                    store::install_pg_cron_job(&pool, &schedule, older_than, max_devices).await?;
                println!("pg_cron job {PG_CRON_JOB} (id {job}) runs on \"{schedule}\"");
            } else if uninstall_pg_cron {
                let removed = store::uninstall_pg_cron_job(&pool).await?;
                println!(
                    "pg_cron job {PG_CRON_JOB} {}",
                    if removed {
                        "removed"
                    } else {
                        "was not registered"
                    }
                );
            } else {
                let removed = store::prune_stale_devices(
                    &pool,
                    older_than,
                    Some(max_devices),
                    Utc::now(),
                    None,
                )
                .await?;
                println!("removed {removed} stale device entries");
            }
        }
        Command::Token { user_id, ttl, dev } => {
            config.jwt_secret = jwt_secret(&config, dev)?;
            let settings = config
                .token_settings()
                .ok_or(StartupError::MissingJwtSecret)?;
            println!("{}", issue_token_with(&settings, user_id, ttl)?);
        }
    }
    Ok(())
}

/// The configured secret, or with `--dev` and none configured, the development one.
fn jwt_secret(config: &Config, dev: bool) -> Result<Option<SecretString>, StartupError> {
    match (&config.jwt_secret, dev) {
        (Some(secret), _) => Ok(Some(secret.clone())),
        (None, true) => {
            tracing::warn!(
                "DEVELOPMENT MODE: PRESENCE_JWT_SECRET is unset, so tokens are signed with a fixed, \
                 PUBLIC secret. Anyone can forge a token. Never run --dev in production."
            );
            Ok(Some(SecretString::from(DEV_JWT_SECRET)))
        }
        (None, false) => Err(StartupError::MissingJwtSecret),
    }
}

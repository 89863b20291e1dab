//! The command line: `serve` (default), `migrate`, `prune`, `token`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

use crate::auth::{ADMIN_SCOPE, DEV_JWT_SECRET, issue_room_token, issue_scoped_token};
use crate::config::{Config, ConfigError, help_text, to_delta};
use crate::domain::UserId;
use crate::history::{Bucket, bucket_stats};
use crate::jobs::enforce_history_retention;
use crate::startup::{Application, StartupError, connect, prepare_database};
use crate::store::BucketStats;
use crate::store::{self, PG_CRON_JOB, PgCronError};

/// The presence service: who is online, from PostgreSQL, over plain HTTP polling.
#[derive(Debug, Parser)]
#[command(name = "presence", version, about)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// Parses the process's arguments; `--help` (of `presence` and of `serve`)
    /// lists every setting with its default after the options.
    pub fn parse_args() -> Self {
        let settings = help_text();
        let command = Self::command()
            .after_help(settings.clone())
            .mut_subcommand("serve", |serve| serve.after_help(settings));
        Self::from_arg_matches(&command.get_matches()).unwrap_or_else(|error| error.exit())
    }
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
    Migrate {
        /// Then distribute the tables on a Citus coordinator (its workers
        /// already added): user tables sharded by user id, the shared ones as
        /// reference tables. Idempotent.
        #[arg(long)]
        citus: bool,
    },
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
    /// Print the history stats by hour or day (for cron and reports).
    Report {
        /// Start of the range, RFC 3339 [default: --to minus 7 days, or 24 hours with --bucket hour].
        #[arg(long, value_parser = parse_instant)]
        from: Option<DateTime<Utc>>,
        /// End of the range, RFC 3339 [default: now].
        #[arg(long, value_parser = parse_instant)]
        to: Option<DateTime<Utc>>,
        /// The width of a bucket.
        #[arg(long, value_enum, default_value = "day")]
        bucket: Bucket,
        /// A table for people, or CSV for spreadsheets and scripts.
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormat,
    },
    /// Print a bearer token for a user (or, with --scope presence:admin, a
    /// service), for curl scripts, backends and local development.
    Token {
        /// Who the token speaks for: a user id (a UUID), or a service's name with --scope.
        subject: String,
        /// Space-separated scopes; `presence:admin` makes a service token for /api/admin/.
        #[arg(long)]
        scope: Option<String>,
        /// Comma-separated rooms the token grants: ids, prefixes ending in `*` (`team:7:*`), or `*`.
        #[arg(long, value_delimiter = ',')]
        rooms: Option<Vec<String>>,
        /// How long the token stays valid.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Sign with the development secret when PRESENCE_JWT_SECRET is unset (as `serve --dev` does).
        #[arg(long)]
        dev: bool,
    },
}

/// The output of `presence report`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns.
    Table,
    /// Comma-separated values with a header line.
    Csv,
}

fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    crate::domain::parse_timestamp("the time", text)
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
    /// The tables could not be distributed (`migrate --citus`).
    #[error(
        "could not distribute the tables on Citus (is this a Citus coordinator with its workers added?): {0}"
    )]
    Citus(#[source] sqlx::Error),
    /// The report could not be computed.
    #[error("the report failed: {0}")]
    Report(sqlx::Error),
    /// The report's range is empty or too long.
    #[error("--from must be before --to, and they may span at most 366 buckets")]
    Range,
    /// A user token's subject is not a user id.
    #[error(
        "the subject must be a user id (a UUID), or any name with --scope presence:admin; got {0:?}"
    )]
    Subject(String),
    /// A token could not be signed.
    #[error("could not sign the token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
}

/// Runs the command the user asked for.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let mut config = Config::from_env()?;
    match cli.command.unwrap_or(Command::Serve { dev: false }) {
        Command::Serve { dev } => {
            if dev {
                config.jwt_secret = jwt_secret(&config, dev)?;
            }
            config.dev_mode = dev;
            let application = Application::build(&config).await?;
            tracing::info!(addr = %config.addr, port = application.port(), "serving");
            if dev {
                tracing::warn!("demo page: http://{}/demo", config.addr);
            }
            application.run_until_stopped().await?;
        }
        Command::Migrate { citus } => {
            let pool = prepare_database(&config).await?;
            tracing::info!("the database is migrated");
            if citus {
                store::citus::distribute(&pool)
                    .await
                    .map_err(CliError::Citus)?;
                tracing::info!("the tables are distributed on Citus");
            }
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
                let job = store::install_pg_cron_job(
                    &pool,
                    &schedule,
                    older_than,
                    max_devices,
                    to_delta(config.room_timeout),
                )
                .await?;
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
                let ended = Utc::now() - to_delta(config.room_timeout);
                let memberships = store::prune_room_members(&pool, ended).await?;
                println!("removed {memberships} ended room memberships");
                if !config.history_retention.is_zero() {
                    let cutoff = Utc::now() - to_delta(config.history_retention);
                    let deleted = enforce_history_retention(&pool, cutoff).await?;
                    println!("deleted {deleted} history records older than the retention window");
                }
            }
        }
        Command::Report {
            from,
            to,
            bucket,
            format,
        } => {
            let now = Utc::now();
            let to = to.unwrap_or(now);
            let from = from.unwrap_or(to - bucket.default_range());
            let starts = bucket
                .starts(from, to, now)
                .filter(|_| from < to)
                .ok_or(CliError::Range)?;
            let pool = connect(&config).await?;
            let mut connection = pool.acquire().await.map_err(CliError::Report)?;
            let stats = bucket_stats(
                &mut connection,
                bucket,
                &starts,
                now,
                config.thresholds.offline_after,
            )
            .await
            .map_err(CliError::Report)?;
            print!("{}", report(&stats, format));
        }
        Command::Token {
            subject,
            scope,
            rooms,
            ttl,
            dev,
        } => {
            let service = scope
                .as_deref()
                .is_some_and(|scope| scope.split(' ').any(|scope| scope == ADMIN_SCOPE));
            if subject.is_empty() || (!service && UserId::parse(&subject).is_err()) {
                // A usage error, as clap reports its own (exit code 2).
                Cli::command()
                    .error(
                        clap::error::ErrorKind::InvalidValue,
                        CliError::Subject(subject).to_string(),
                    )
                    .exit();
            }
            config.jwt_secret = jwt_secret(&config, dev)?;
            let settings = config
                .token_settings()
                .ok_or(StartupError::MissingJwtSecret)?;
            let token = match rooms {
                Some(rooms) => {
                    issue_room_token(&settings, &subject, &rooms, scope.as_deref(), ttl)?
                }
                None => issue_scoped_token(&settings, &subject, scope.as_deref(), ttl)?,
            };
            println!("{token}");
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

/// The stats as `presence report` prints them.
fn report(stats: &[BucketStats], format: ReportFormat) -> String {
    let mut text = String::new();
    let header = [
        "start",
        "active_users",
        "connected_users",
        "connected_seconds",
        "sessions",
    ];
    let rows = stats.iter().map(|stats| {
        [
            stats
                .start
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            stats.active_users.to_string(),
            stats.connected_users.to_string(),
            format!("{:.3}", stats.connected_seconds),
            stats.sessions.to_string(),
        ]
    });
    match format {
        ReportFormat::Csv => {
            text.push_str(&header.join(","));
            text.push('\n');
            for row in rows {
                text.push_str(&row.join(","));
                text.push('\n');
            }
        }
        ReportFormat::Table => {
            text.push_str(&format!(
                "{:<24}  {:>12}  {:>15}  {:>17}  {:>8}\n",
                header[0], header[1], header[2], header[3], header[4]
            ));
            for row in rows {
                text.push_str(&format!(
                    "{:<24}  {:>12}  {:>15}  {:>17}  {:>8}\n",
                    row[0], row[1], row[2], row[3], row[4]
                ));
            }
        }
    }
    text
}

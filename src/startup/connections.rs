//! Database connections: pool and session options, replicas, creating and migrating at start-up.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::statuses::Replicas;
use crate::store;

use super::StartupError;

/// A pool of one connection of its own, opened when first needed, for background work
/// that must never wait behind requests (nor make them wait).
pub fn own_connection(pool: &PgPool) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2))
        .test_before_acquire(false)
        .connect_lazy_with(PgConnectOptions::clone(&pool.connect_options()))
}

/// Options for the server's connection pool: a request never waits long for a connection.
pub fn pool_options(config: &Config) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(config.db_max_connections.get())
        .acquire_timeout(config.db_acquire_timeout)
        // A broken connection fails its query and is replaced; checking every
        // connection with a round trip before each use would double the cost of a read.
        .test_before_acquire(false)
}

/// The connection options of `DATABASE_URL`, with the statement timeout.
///
/// Every statement is planned once per connection (`force_generic_plan`): the
/// queries are point lookups by primary key, and Postgres otherwise re-plans
/// those taking an array (`= any($1)`), which cost more than running them.
/// On a distributed database (Citus) each is planned with its values
/// (`force_custom_plan`) instead: Citus routes a statement to the shards its
/// values name, and refuses the generic plan of most of them ("could not
/// create distributed plan").
pub fn connect_options(
    config: &Config,
    distributed: bool,
) -> Result<PgConnectOptions, StartupError> {
    let options = PgConnectOptions::from_str(config.database_url.expose_secret())
        .map_err(StartupError::DatabaseUrl)?;
    Ok(session_options(config, options, distributed))
}

/// `options` with the session settings every connection gets (see [`connect_options`]).
fn session_options(
    config: &Config,
    options: PgConnectOptions,
    distributed: bool,
) -> PgConnectOptions {
    let plans = if distributed {
        "force_custom_plan"
    } else {
        "force_generic_plan"
    };
    let options = options.options([("plan_cache_mode", plans)]);
    let timeout_ms = config.db_statement_timeout.as_millis();
    if timeout_ms == 0 {
        options
    } else {
        options.options([("statement_timeout", timeout_ms.to_string())])
    }
}

/// The read replicas of `PRESENCE_DATABASE_REPLICA_URLS`, if any; their pools
/// open lazily, so a replica down at start-up stops nothing.
pub(super) fn replicas(
    config: &Config,
    metrics: &Metrics,
) -> Result<Option<Arc<Replicas>>, StartupError> {
    if config.replica_urls.is_empty() {
        return Ok(None);
    }
    if config.cache_ttl.is_zero() {
        tracing::warn!(
            "PRESENCE_DATABASE_REPLICA_URLS is set but the read cache is off \
             (PRESENCE_CACHE_TTL=0): every read goes to the primary"
        );
    }
    let urls: Vec<String> = config
        .replica_urls
        .iter()
        .map(|url| url.expose_secret().to_owned())
        .collect();
    Replicas::new(
        &urls,
        |options| session_options(config, options, false),
        &pool_options(config),
        // A replica that does not answer costs a quarter of the deadline, then the primary answers.
        config.db_deadline / 4,
        config.replica_max_lag,
        metrics.replicas_in_rotation.clone(),
        &metrics.pool_connections.with_label_values(&["waiting"]),
    )
    .map(|replicas| Some(Arc::new(replicas)))
    .map_err(StartupError::ReplicaUrl)
}

/// Connects to the configured database, which must exist; fails at once when it is unreachable.
///
/// The session settings depend on whether the database is distributed (see
/// [`connect_options`]): a first connection asks.
pub async fn connect(config: &Config) -> Result<PgPool, StartupError> {
    let pool = pool_options(config)
        .connect_with(connect_options(config, false)?)
        .await
        .map_err(StartupError::Database)?;
    let distributed = async { store::citus::is_distributed(&mut *pool.acquire().await?).await }
        .await
        .map_err(StartupError::Database)?;
    if !distributed {
        return Ok(pool);
    }
    pool.close().await;
    pool_options(config)
        .connect_with(connect_options(config, true)?)
        .await
        .map_err(StartupError::Database)
}

/// Creates the database if it is missing, connects, applies the migrations and the `sql/` functions.
///
/// An unreachable database is retried, with a log line each time, for up to
/// `PRESENCE_DB_STARTUP_TIMEOUT` (a database that starts alongside the server).
pub async fn prepare_database(config: &Config) -> Result<PgPool, StartupError> {
    let give_up_at = tokio::time::Instant::now() + config.db_startup_timeout;
    let mut wait = Duration::from_millis(250);
    loop {
        match create_if_missing(config).await {
            Ok(()) => break,
            Err(StartupError::Database(error)) if tokio::time::Instant::now() < give_up_at => {
                let pause = wait.min(give_up_at - tokio::time::Instant::now());
                tracing::warn!(
                    %error,
                    retry_in_ms = pause.as_millis(),
                    "the database is not reachable yet; retrying (PRESENCE_DB_STARTUP_TIMEOUT bounds this)"
                );
                tokio::time::sleep(pause).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(error) => return Err(error),
        }
    }
    let pool = connect(config).await?;
    store::MIGRATOR
        .run(&pool)
        .await
        .map_err(StartupError::Migrate)?;
    store::install_sql_functions_with_settings(
        &pool,
        &config.history_settings(),
        &config.thresholds,
    )
    .await
    .map_err(StartupError::Database)?;
    Ok(pool)
}

async fn create_if_missing(config: &Config) -> Result<(), StartupError> {
    let url = config.database_url.expose_secret();
    PgConnectOptions::from_str(url).map_err(StartupError::DatabaseUrl)?;
    if !Postgres::database_exists(url)
        .await
        .map_err(StartupError::Database)?
    {
        tracing::info!("creating the database");
        if let Err(error) = Postgres::create_database(url).await {
            // Another instance starting at the same moment may have won the race.
            if !Postgres::database_exists(url).await.unwrap_or(false) {
                return Err(StartupError::Database(error));
            }
        }
    }
    Ok(())
}

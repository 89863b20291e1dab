//! Building the application: database, state, routes, listener; and running it.

use std::net::TcpListener;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::{Server, Service};
use actix_web::http::header;
use actix_web::middleware::Condition;
use actix_web::{App, HttpServer, web};
use secrecy::ExposeSecret;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use tokio::task::JoinHandle;
use tracing_actix_web::TracingLogger;

use crate::auth::TokenVerifier;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, to_delta};
use crate::domain::UserId;
use crate::error::ApiError;
use crate::jobs::PruneSchedule;
use crate::metrics::Metrics;
use crate::presence::Thresholds;
use crate::rate_limit::UserRateLimiter;
use crate::statuses::{Statuses, StatusesConfig};
use crate::{routes, store};

/// The largest body `PUT /api/status` accepts.
const BODY_LIMIT_BYTES: usize = 16 * 1024;
/// How long in-flight requests may take to finish after SIGTERM.
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;
/// How often the rate limiter forgets users whose budget has recovered.
const LIMITER_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What every handler shares.
pub struct AppState {
    /// Reads and writes of statuses, through the cache and the coalescer.
    pub statuses: Statuses,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// The status thresholds.
    pub thresholds: Thresholds,
    /// How often clients should heartbeat, returned by each ping.
    pub ping_interval_seconds: u64,
    /// The per-user limit on `PUT /api/status`.
    pub put_limiter: UserRateLimiter,
    /// The tighter per-user limit on settings changes and blocks.
    pub settings_limiter: UserRateLimiter,
    /// This server's metrics.
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// Counts a ping of `user` against the ping limit.
    pub fn limit_pings(&self, user: UserId) -> Result<(), ApiError> {
        self.counted(self.put_limiter.check(user), "ping")
    }

    /// Counts a settings or block change of `user` against the settings limit.
    pub fn limit_settings(&self, user: UserId) -> Result<(), ApiError> {
        self.counted(self.settings_limiter.check(user), "settings")
    }

    fn counted(&self, outcome: Result<(), ApiError>, limit: &str) -> Result<(), ApiError> {
        if outcome.is_err() {
            self.metrics.rate_limited.with_label_values(&[limit]).inc();
        }
        outcome
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// `PRESENCE_JWT_SECRET` is unset and `--dev` was not given.
    #[error(
        "PRESENCE_JWT_SECRET is not set: set it to a long random string (e.g. `openssl rand -hex 32`), \
         or run `presence serve --dev` for local development with a fixed, public secret"
    )]
    MissingJwtSecret,
    /// `DATABASE_URL` is not a Postgres URL.
    #[error("DATABASE_URL: {0}")]
    DatabaseUrl(#[source] sqlx::Error),
    /// The database could not be reached or created.
    #[error("could not reach or create the database: {0}")]
    Database(#[source] sqlx::Error),
    /// A migration failed.
    #[error("could not apply the migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The listening address could not be bound.
    #[error("PRESENCE_ADDR: could not listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
}

/// A built server, listening, ready to run.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    background: Vec<JoinHandle<()>>,
}

impl Application {
    /// Creates and migrates the database if needed, then builds the server on the system clock.
    pub async fn build(config: &Config) -> Result<Self, StartupError> {
        let pool = prepare_database(config).await?;
        Self::build_with_pool(config, pool, Arc::new(SystemClock))
    }

    /// Builds the server on an existing pool and clock (tests pass their own).
    pub fn build_with_pool(
        config: &Config,
        pool: PgPool,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let tokens = config
            .token_settings()
            .ok_or(StartupError::MissingJwtSecret)?;
        let listener = TcpListener::bind(&config.addr).map_err(|source| StartupError::Bind {
            addr: config.addr.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                addr: config.addr.clone(),
                source,
            })?
            .port();

        let metrics = Arc::new(Metrics::new());
        let statuses = Statuses::new(
            pool.clone(),
            StatusesConfig {
                cache_ttl: config.cache_ttl,
                cache_capacity: u64::from(config.cache_capacity.get()),
                write_coalesce: config.write_coalesce,
                max_devices: config.max_devices.get(),
            },
            &metrics,
        );
        let state = web::Data::new(AppState {
            statuses,
            clock,
            thresholds: config.thresholds,
            ping_interval_seconds: config.ping_interval_seconds(),
            put_limiter: UserRateLimiter::new(config.put_burst, config.put_per_second),
            metrics: metrics.clone(),
            settings_limiter: UserRateLimiter::new(
                config.settings_burst,
                config.settings_per_second,
            ),
        });
        let verifier = web::Data::new(TokenVerifier::with_settings(&tokens));
        let token_settings = web::Data::new(tokens);
        let (dev_mode, cors_origins) = (config.dev_mode, config.cors_origins.clone());
        let state_for_shutdown = state.clone();
        let mut background = vec![tokio::spawn(sweep_rate_limiter(state.clone()))];
        if !config.write_coalesce.is_zero() {
            background.push(tokio::spawn(flush_held_back_pings(
                state.clone(),
                config.write_coalesce,
            )));
        }
        if !config.prune_every.is_zero() {
            let schedule = PruneSchedule {
                pool,
                clock: state.clock.clone(),
                every: config.prune_every,
                older_than: to_delta(config.prune_after),
                max_devices: config.max_devices.get(),
                metrics: Some(metrics.clone()),
            };
            background.push(tokio::spawn(schedule.run_forever()));
        }

        let server = HttpServer::new(move || {
            let metrics = metrics.clone();
            App::new()
                .wrap_fn(move |request, service| {
                    let started = std::time::Instant::now();
                    let response = service.call(request);
                    let metrics = metrics.clone();
                    async move {
                        let response = response.await?;
                        let request = response.request();
                        let method = request.method().as_str();
                        let route = request
                            .match_pattern()
                            .unwrap_or_else(|| "unmatched".to_owned());
                        let status = response.status();
                        metrics
                            .http_requests
                            .with_label_values(&[method, &route, status.as_str()])
                            .inc();
                        metrics
                            .http_duration
                            .with_label_values(&[method, &route])
                            .observe(started.elapsed().as_secs_f64());
                        Ok(response)
                    }
                })
                .wrap(Condition::new(
                    !cors_origins.is_empty(),
                    cors(&cors_origins),
                ))
                .wrap(TracingLogger::default())
                .app_data(state.clone())
                .app_data(verifier.clone())
                .app_data(token_settings.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(BODY_LIMIT_BYTES)
                        .error_handler(ApiError::from_json_error),
                )
                .app_data(web::PathConfig::default().error_handler(ApiError::from_path_error))
                .app_data(web::QueryConfig::default().error_handler(ApiError::from_query_error))
                .configure(|routes| routes::configure(routes, dev_mode))
                .default_service(web::to(routes::not_found))
        })
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            addr: config.addr.clone(),
            source,
        })?
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .run();

        Ok(Self {
            port,
            server,
            state: state_for_shutdown,
            background,
        })
    }

    /// A handle that stops the server gracefully, as SIGTERM does.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// The port the server listens on (useful when it was asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT, lets in-flight requests finish, then writes held-back pings.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        for task in self.background {
            task.abort();
        }
        match self.state.statuses.flush().await {
            Ok(users) => tracing::info!(users, "wrote the held-back pings"),
            Err(error) => tracing::error!(%error, "could not write the held-back pings"),
        }
        result
    }
}

/// CORS for front ends on the configured origins, with the headers the browser client needs.
fn cors(origins: &[String]) -> Cors {
    origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allowed_methods(["GET", "PUT", "POST", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
        ])
        .expose_headers([header::ETAG, header::RETRY_AFTER])
        .max_age(3600)
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
pub fn connect_options(config: &Config) -> Result<PgConnectOptions, StartupError> {
    let options = PgConnectOptions::from_str(config.database_url.expose_secret())
        .map_err(StartupError::DatabaseUrl)?
        .options([("plan_cache_mode", "force_generic_plan")]);
    let timeout_ms = config.db_statement_timeout.as_millis();
    Ok(if timeout_ms == 0 {
        options
    } else {
        options.options([("statement_timeout", timeout_ms.to_string())])
    })
}

/// Connects to the configured database, which must exist; fails at once when it is unreachable.
pub async fn connect(config: &Config) -> Result<PgPool, StartupError> {
    pool_options(config)
        .connect_with(connect_options(config)?)
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
    store::install_sql_functions(&pool)
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

async fn flush_held_back_pings(state: web::Data<AppState>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        if let Err(error) = state.statuses.flush().await {
            tracing::warn!(%error, "could not write the held-back pings; retrying");
        }
    }
}

async fn sweep_rate_limiter(state: web::Data<AppState>) {
    let mut every = tokio::time::interval(LIMITER_SWEEP_EVERY);
    loop {
        every.tick().await;
        state.put_limiter.forget_recovered_users();
        state.settings_limiter.forget_recovered_users();
    }
}

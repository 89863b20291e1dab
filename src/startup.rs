//! Building the application: database, state, routes, listener; and running it.

use std::net::TcpListener;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_cors::Cors;
use actix_http::HttpService;
use actix_http::error::DispatchError;
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::dev::{AppConfig, Server, ServerHandle, Service};
use actix_web::http::header;
use actix_web::middleware::Condition;
use actix_web::{App, HttpServer, web};
use secrecy::ExposeSecret;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tracing_actix_web::TracingLogger;

use crate::auth::{Jwks, JwksError, PublicKey, TokenVerifier, VerificationKeys};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, to_delta};
use crate::error::ApiError;
use crate::head_guard::HeadGuard;
use crate::jobs::{PRUNE_CHUNK, PruneSchedule, UserCounts};
use crate::metrics::Metrics;
use crate::rate_limit::UserRateLimiter;
use crate::routes::status::MAX_IDS_IN_QUERY;
use crate::state::AppState;
use crate::statuses::{Replicas, Statuses, StatusesConfig};
use crate::{routes, store};

/// The largest body `PUT /api/status` accepts.
const BODY_LIMIT_BYTES: usize = 16 * 1024;
/// How long in-flight requests may take to finish after SIGTERM.
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;
/// When to try the JWKS document again after it could not be fetched at start-up.
const JWKS_RETRY_AFTER_FAILED_START: Duration = Duration::from_secs(30);
/// How often the rate limiter forgets users whose budget has recovered.
const LIMITER_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// `PRESENCE_JWT_SECRET` is unset and `--dev` was not given.
    #[error(
        "PRESENCE_JWT_SECRET is not set: set it to a long random string (e.g. `openssl rand -hex 32`), \
         or run `presence serve --dev` for local development with a fixed, public secret"
    )]
    MissingJwtSecret,
    /// No key to check tokens with is configured.
    #[error(
        "no key to check tokens with: set PRESENCE_JWT_SECRET (HS256), PRESENCE_JWT_PUBLIC_KEYS \
         (PEM files) or PRESENCE_JWKS_URL (your identity provider's JWKS), \
         or run `presence serve --dev` for local development with a fixed, public secret"
    )]
    NoTokenKeys,
    /// A file of `PRESENCE_JWT_PUBLIC_KEYS` could not be read or is not a public key.
    #[error("PRESENCE_JWT_PUBLIC_KEYS: {path}: {reason}")]
    PublicKeyFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The JWKS document could not be fetched at start-up, and no other key is configured.
    #[error("PRESENCE_JWKS_URL: {0}")]
    Jwks(#[source] JwksError),
    /// `DATABASE_URL` is not a Postgres URL.
    #[error("DATABASE_URL: {0}")]
    DatabaseUrl(#[source] sqlx::Error),
    /// An entry of `PRESENCE_DATABASE_REPLICA_URLS` is not a Postgres URL.
    #[error("PRESENCE_DATABASE_REPLICA_URLS: {0}")]
    ReplicaUrl(#[source] sqlx::Error),
    /// The database could not be reached or created.
    #[error("could not reach or create the database: {0}")]
    Database(#[source] sqlx::Error),
    /// A migration failed.
    #[error("could not apply the migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A listening address could not be bound.
    #[error("{variable}: could not listen on {addr}: {source}")]
    Bind {
        /// The variable that names the address.
        variable: &'static str,
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
    metrics_port: Option<u16>,
    server: Server,
    metrics_server: Option<Server>,
    background: Vec<JoinHandle<()>>,
    state: web::Data<AppState>,
    shutdown_drain: Duration,
}

impl Application {
    /// Creates and migrates the database if needed, then builds the server on the system clock.
    pub async fn build(config: &Config) -> Result<Self, StartupError> {
        // Before the database is created: a server without keys is a mistake to report first.
        if config.jwt_secret.is_none()
            && config.jwt_public_keys.is_empty()
            && config.jwks_url.is_none()
        {
            return Err(StartupError::NoTokenKeys);
        }
        let pool = prepare_database(config).await?;
        Self::build_with_pool(config, pool, Arc::new(SystemClock)).await
    }

    /// Builds the server on an existing pool and clock (tests pass their own).
    pub async fn build_with_pool(
        config: &Config,
        pool: PgPool,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let (verifier, jwks) = token_verifier(config).await?;
        let (listener, port) = bind("PRESENCE_ADDR", &config.addr)?;
        let metrics_listener = config
            .metrics_addr
            .as_deref()
            .map(|addr| bind("PRESENCE_METRICS_ADDR", addr))
            .transpose()?;

        let metrics = Arc::new(Metrics::new());
        let counting_pool = own_connection(&pool);
        let replicas = replicas(config, &metrics)?;
        let distributed = async { store::citus::is_distributed(&mut *pool.acquire().await?).await }
            .await
            .map_err(StartupError::Database)?;
        let (statuses, mut background) = Statuses::start(
            pool.clone(),
            StatusesConfig {
                cache_ttl: config.cache_ttl,
                cache_capacity: u64::from(config.cache_capacity.get()),
                max_devices: config.max_devices.get(),
                db_deadline: config.db_deadline,
                distributed,
            },
            replicas,
            &metrics,
        );
        let state = web::Data::new(AppState {
            statuses,
            clock,
            thresholds: config.thresholds,
            ping_interval_seconds: config.ping_interval_seconds(),
            put_limiter: UserRateLimiter::new(config.put_burst, config.put_per_second),
            metrics: metrics.clone(),
            history_retention: (!config.history_retention.is_zero())
                .then(|| to_delta(config.history_retention)),
            settings_limiter: UserRateLimiter::new(
                config.settings_burst,
                config.settings_per_second,
            ),
            draining: AtomicBool::new(false),
        });
        background.push(tokio::spawn(sweep_rate_limiter(state.clone())));
        if let Some((jwks, first_refresh)) = jwks {
            background.push(tokio::spawn(jwks.refresh_forever(first_refresh)));
        }
        if !config.prune_every.is_zero() {
            let schedule = PruneSchedule {
                pool,
                clock: state.clock.clone(),
                every: config.prune_every,
                older_than: to_delta(config.prune_after),
                max_devices: config.max_devices.get(),
                chunk: PRUNE_CHUNK,
                metrics: Some(metrics.clone()),
                history_retention: (!config.history_retention.is_zero())
                    .then(|| to_delta(config.history_retention)),
                offline_after: config.thresholds.offline_after,
            };
            background.push(tokio::spawn(schedule.run_forever()));
        }
        let (metrics_server, metrics_port) = match metrics_listener {
            Some((listener, port)) => {
                background.push(tokio::spawn(
                    UserCounts {
                        pool: counting_pool,
                        clock: state.clock.clone(),
                        thresholds: config.thresholds,
                        every: config.metrics_users_every,
                        deadline: config.db_deadline,
                        metrics: metrics.clone(),
                    }
                    .run_forever(),
                ));
                (Some(metrics_server(listener, state.clone())?), Some(port))
            }
            None => (None, None),
        };
        let server = public_server(config, listener, state.clone(), verifier)?;
        Ok(Self {
            port,
            metrics_port,
            server,
            metrics_server,
            background,
            state,
            shutdown_drain: config.shutdown_drain,
        })
    }

    /// A handle that stops the server gracefully, as SIGINT does (without the drain).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// The port the server listens on (useful when it was asked for port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port `/metrics` is served on, if the metrics listener is on.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// Serves until SIGTERM or SIGINT, and lets in-flight requests finish
    /// (their writes included: every answered write is already durable).
    ///
    /// SIGTERM first drains: `/readyz` fails for `PRESENCE_SHUTDOWN_DRAIN`
    /// while every request is still served, so that a load balancer's health
    /// checks take the instance out of rotation before its listener closes.
    /// SIGINT (Ctrl-C), or a second signal, skips the drain.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tokio::spawn(stop_on_signal(
            self.server.handle(),
            self.state.clone(),
            self.shutdown_drain,
        ));
        let metrics_handle = self.metrics_server.as_ref().map(Server::handle);
        if let Some(server) = self.metrics_server {
            tokio::spawn(server);
        }
        let result = self.server.await;
        if let Some(handle) = metrics_handle {
            handle.stop(false).await;
        }
        // Only now: the ping writers answer the requests that were in flight.
        for task in self.background {
            task.abort();
        }
        result
    }
}

/// Waits for SIGTERM or SIGINT, drains after SIGTERM (see
/// [`Application::run_until_stopped`]), then stops the server gracefully.
async fn stop_on_signal(server: ServerHandle, state: web::Data<AppState>, drain: Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM and SIGINT: stop the server with SIGKILL");
        return;
    };
    let drains = tokio::select! {
        _ = terminate.recv() => true,
        _ = interrupt.recv() => false,
    };
    if drains && !drain.is_zero() {
        state.draining.store(true, Ordering::Relaxed);
        tracing::info!(
            ?drain,
            "SIGTERM: /readyz now fails; serving on while load balancers notice"
        );
        tokio::select! {
            () = tokio::time::sleep(drain) => {}
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    }
    state.draining.store(true, Ordering::Relaxed);
    tracing::info!("stopping: no new connections; finishing the requests in flight");
    server.stop(true).await;
}

/// The token verifier for the configured keys, and the JWKS document to
/// keep refreshing (with the delay before its first refresh), if one is configured.
///
/// A JWKS document that cannot be fetched stops start-up only when no other
/// key is configured; otherwise the server starts and keeps trying.
async fn token_verifier(
    config: &Config,
) -> Result<(TokenVerifier, Option<(Arc<Jwks>, Duration)>), StartupError> {
    let mut keys = VerificationKeys {
        secrets: config
            .jwt_secret
            .iter()
            .chain(
                config
                    .jwt_secret
                    .as_ref()
                    .and(config.jwt_secret_previous.as_ref()),
            )
            .cloned()
            .collect(),
        ..VerificationKeys::default()
    };
    for path in &config.jwt_public_keys {
        let failed = |reason: String| StartupError::PublicKeyFile {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|error| failed(error.to_string()))?;
        let key = PublicKey::from_pem(&pem).map_err(|reason| failed(reason.to_owned()))?;
        keys.public_keys.push(key);
    }
    let mut refreshing = None;
    if let Some(url) = &config.jwks_url {
        let jwks = Arc::new(Jwks::new(url.clone()));
        let first_refresh = match jwks.refresh().await {
            Ok(next) => next,
            Err(error) if !keys.is_empty() => {
                tracing::warn!(error = %error, "could not fetch the JWKS document at start-up; serving with the other keys and retrying");
                JWKS_RETRY_AFTER_FAILED_START
            }
            Err(error) => return Err(StartupError::Jwks(error)),
        };
        keys.jwks = Some(jwks.clone());
        refreshing = Some((jwks, first_refresh));
    }
    if keys.is_empty() {
        return Err(StartupError::NoTokenKeys);
    }
    Ok((
        TokenVerifier::with_keys(&keys, &config.claim_rules()),
        refreshing,
    ))
}

/// Binds `addr` (named by `variable` in errors); returns the listener and its port.
fn bind(variable: &'static str, addr: &str) -> Result<(TcpListener, u16), StartupError> {
    let failed = |source| StartupError::Bind {
        variable,
        addr: addr.to_owned(),
        source,
    };
    let listener = TcpListener::bind(addr).map_err(failed)?;
    let port = listener.local_addr().map_err(failed)?.port();
    Ok((listener, port))
}

/// The public API server: every connection's request heads go through a
/// [`HeadGuard`] before actix-http parses them, so that what the HTTP layer
/// refuses still gets the contract's JSON error.
fn public_server(
    config: &Config,
    listener: TcpListener,
    state: web::Data<AppState>,
    verifier: TokenVerifier,
) -> Result<Server, StartupError> {
    let addr = listener.local_addr().map_err(|source| StartupError::Bind {
        variable: "PRESENCE_ADDR",
        addr: config.addr.clone(),
        source,
    })?;
    let verifier = web::Data::new(verifier);
    // Only the demo's token endpoint signs tokens, and only `--dev` has it.
    let token_settings = config.token_settings().map(web::Data::new);
    let (dev_mode, cors_origins) = (config.dev_mode, config.cors_origins.clone());
    let request_timeout = config.request_timeout;
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let connections_per_worker = usize::try_from(config.max_connections.get())
        .unwrap_or(usize::MAX)
        .div_ceil(workers);
    let builder = actix_server::Server::build();
    let shutdown_signal = builder.graceful_shutdown_signal();
    let server = builder
        .workers(workers)
        .max_concurrent_connections(connections_per_worker)
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        // Signals are handled by `stop_on_signal`, which drains first.
        .disable_signals()
        .listen("presence", listener, move || {
            let metrics = state.metrics.clone();
            let app = App::new()
                .wrap_fn(move |request, service| {
                    let response = service.call(request);
                    async move {
                        tokio::time::timeout(request_timeout, response)
                            .await
                            .unwrap_or_else(|_| Err(ApiError::RequestTimeout.into()))
                    }
                })
                .wrap_fn(move |request, service| {
                    let started = std::time::Instant::now();
                    let response = service.call(request);
                    let metrics = metrics.clone();
                    async move {
                        let response = response.await?;
                        metrics.observe_request(
                            response.request(),
                            response.status(),
                            started.elapsed(),
                        );
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
                .app_data(
                    web::JsonConfig::default()
                        .limit(BODY_LIMIT_BYTES)
                        .error_handler(ApiError::from_json_error),
                )
                .app_data(web::PathConfig::default().error_handler(ApiError::from_path_error))
                .app_data(web::QueryConfig::default().error_handler(ApiError::from_query_error))
                .configure(|routes| {
                    if let Some(token_settings) = &token_settings {
                        routes.app_data(token_settings.clone());
                    }
                    routes::configure(routes, dev_mode);
                })
                .default_service(web::to(routes::not_found))
                .into_factory()
                .map_err(|error| error.error_response());
            let signal = shutdown_signal.clone();
            let http = actix_http::ServiceConfig::default();
            fn_service(move |stream: TcpStream| {
                // Small JSON answers go out at once rather than waiting for more to send.
                let _ = stream.set_nodelay(true);
                let peer = stream.peer_addr().ok();
                let guarded =
                    HeadGuard::new(stream, request_timeout, MAX_IDS_IN_QUERY, http.clone());
                std::future::ready(Ok::<_, DispatchError>((guarded, peer)))
            })
            .and_then(
                HttpService::build()
                    .graceful_shutdown_signal(move || {
                        let signal = signal.clone();
                        async move { signal.notified().await }
                    })
                    // The guard times heads out itself, with a JSON answer.
                    .client_request_timeout(Duration::ZERO)
                    .local_addr(addr)
                    .h1(map_config(app, |_| AppConfig::default())),
            )
        })
        .map_err(|source| StartupError::Bind {
            variable: "PRESENCE_ADDR",
            addr: config.addr.clone(),
            source,
        })?
        .run();
    Ok(server)
}

/// The operator's listener: `/metrics` only, one worker.
fn metrics_server(
    listener: TcpListener,
    state: web::Data<AppState>,
) -> Result<Server, StartupError> {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |addr| addr.to_string());
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(routes::metrics::configure)
            .default_service(web::to(routes::not_found))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .map_err(|source| StartupError::Bind {
        variable: "PRESENCE_METRICS_ADDR",
        addr,
        source,
    })?
    .shutdown_timeout(1)
    .run())
}

/// A pool of one connection of its own, opened when first needed, for background work
/// that must never wait behind requests (nor make them wait).
pub fn own_connection(pool: &PgPool) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(2))
        .test_before_acquire(false)
        .connect_lazy_with(PgConnectOptions::clone(&pool.connect_options()))
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
        .expose_headers([header::ETAG, header::RETRY_AFTER, header::DATE])
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
fn replicas(config: &Config, metrics: &Metrics) -> Result<Option<Arc<Replicas>>, StartupError> {
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
    store::install_sql_functions_with_history(&pool, &config.history_settings())
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

async fn sweep_rate_limiter(state: web::Data<AppState>) {
    let mut every = tokio::time::interval(LIMITER_SWEEP_EVERY);
    loop {
        every.tick().await;
        state.put_limiter.forget_recovered_users();
        state.settings_limiter.forget_recovered_users();
    }
}

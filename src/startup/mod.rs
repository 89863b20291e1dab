//! Building the application (database, services, routes, listeners) and
//! running it until a signal stops it. Token keys, the HTTP servers and the
//! database connections are wired in the files beside this one.

mod connections;
mod keys;
mod servers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::web;
use sqlx::PgPool;
use tokio::task::JoinHandle;

use crate::auth::JwksError;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, to_delta};
use crate::feed::Feed;
use crate::history::History;
use crate::jobs::{
    FEED_EVERY, FeedSchedule, PRUNE_CHUNK, PruneSchedule, STATISTICS_EVERY, UserCounts,
    keep_statistics_current,
};
use crate::metrics::Metrics;
use crate::rate_limit::UserRateLimiter;
use crate::rooms::{self, RoomCache, Rooms};
use crate::state::AppState;
use crate::statuses::{Statuses, StatusesConfig};
use crate::store;
use crate::webhooks::Webhooks;

use connections::replicas;
pub use connections::{connect, connect_options, own_connection, pool_options, prepare_database};
use keys::token_verifier;
use servers::{bind, metrics_server, public_server};

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
        // Snapshots of rooms' memberships, kept while the cache is on (the
        // listener drops those that changes name).
        let room_cache = (!config.cache_ttl.is_zero()).then(|| {
            Arc::new(RoomCache::new(
                config.cache_ttl,
                u64::from(config.cache_capacity.get()),
            ))
        });
        let (statuses, mut background) = Statuses::start(
            pool.clone(),
            StatusesConfig {
                cache_ttl: config.cache_ttl,
                cache_capacity: u64::from(config.cache_capacity.get()),
                max_devices: config.max_devices.get(),
                ping_batch_wait: config.ping_batch_wait,
                db_deadline: config.db_deadline,
                distributed,
            },
            replicas,
            room_cache.clone(),
            &metrics,
        );
        let rooms = Rooms::new(
            statuses.database().clone(),
            rooms::rules_of(
                config.room_timeout,
                config.typing_ttl,
                config.max_rooms_per_device.get(),
            ),
            room_cache,
        );
        let history_retention =
            (!config.history_retention.is_zero()).then(|| to_delta(config.history_retention));
        let history = History::new(
            statuses.database().clone(),
            config.thresholds,
            history_retention,
        );
        let feed = Feed::new(statuses.database().clone());
        let state = web::Data::new(AppState {
            statuses,
            history,
            rooms,
            feed,
            clock,
            thresholds: config.thresholds,
            ping_interval_seconds: config.ping_interval_seconds(),
            put_limiter: UserRateLimiter::new(config.put_burst, config.put_per_second),
            metrics: metrics.clone(),
            settings_limiter: UserRateLimiter::new(
                config.settings_burst,
                config.settings_per_second,
            ),
            draining: AtomicBool::new(false),
        });
        background.push(tokio::spawn(sweep_rate_limiter(state.clone())));
        // On Citus the shards live on the workers, whose autovacuum keeps their statistics.
        if !distributed {
            background.push(tokio::spawn(keep_statistics_current(
                pool.clone(),
                STATISTICS_EVERY,
            )));
        }
        if let Some((jwks, first_refresh)) = jwks {
            background.push(tokio::spawn(jwks.refresh_forever(first_refresh)));
        }
        background.push(tokio::spawn(
            FeedSchedule {
                pool: pool.clone(),
                clock: state.clock.clone(),
                every: FEED_EVERY,
                retention: to_delta(config.feed_retention),
                distributed,
                metrics: Some(metrics.clone()),
            }
            .run_forever(),
        ));
        if let Some(webhook) = &config.webhook {
            background.push(tokio::spawn(
                Webhooks {
                    pool: pool.clone(),
                    url: webhook.url.clone(),
                    secret: webhook.secret.clone(),
                    max_age: to_delta(webhook.max_age),
                    timeout: webhook.timeout,
                    clock: state.clock.clone(),
                    metrics: metrics.clone(),
                }
                .run_forever(),
            ));
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
                history_retention,
                offline_after: config.thresholds.offline_after,
                room_timeout: to_delta(config.room_timeout),
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

async fn sweep_rate_limiter(state: web::Data<AppState>) {
    let mut every = tokio::time::interval(LIMITER_SWEEP_EVERY);
    loop {
        every.tick().await;
        state.put_limiter.forget_recovered_users();
        state.settings_limiter.forget_recovered_users();
    }
}

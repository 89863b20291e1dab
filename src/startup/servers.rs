//! The HTTP servers: the public API (behind the head guard, with CORS) and the metrics listener.

use std::net::TcpListener;
use std::time::Duration;

use actix_cors::Cors;
use actix_http::HttpService;
use actix_http::error::DispatchError;
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::dev::{AppConfig, Server, Service};
use actix_web::http::header;
use actix_web::middleware::Condition;
use actix_web::{App, HttpServer, web};
use tokio::net::TcpStream;
use tracing_actix_web::TracingLogger;

use crate::auth::TokenVerifier;
use crate::config::Config;
use crate::error::ApiError;
use crate::head_guard::HeadGuard;
use crate::routes;
use crate::routes::status::MAX_IDS_IN_QUERY;
use crate::state::AppState;

use super::StartupError;

/// The largest body `PUT /api/status` accepts.
const BODY_LIMIT_BYTES: usize = 16 * 1024;
/// Where tracing-actix-web's request spans come from (the target a log filter names).
const REQUEST_SPAN_TARGET: &str = "tracing_actix_web::root_span_builder";
/// How long in-flight requests may take to finish after SIGTERM.
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// Binds `addr` (named by `variable` in errors); returns the listener and its port.
pub(super) fn bind(variable: &'static str, addr: &str) -> Result<(TcpListener, u16), StartupError> {
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
pub(super) fn public_server(
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
    // The request span costs work on every request (a request id drawn at
    // random, the connection's details parsed, a route formatted) even when
    // the log filter then drops it: it is built only when the filter keeps it.
    let request_spans = tracing::enabled!(target: REQUEST_SPAN_TARGET, tracing::Level::INFO);
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
                .wrap(Condition::new(request_spans, TracingLogger::default()))
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
pub(super) fn metrics_server(
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

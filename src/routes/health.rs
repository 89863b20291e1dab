use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use crate::openapi::*;
use crate::startup::AppState;
use crate::store;

/// `GET /healthz`: the process serves; no database call.
#[utoipa::path(
    get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "The process serves", body = Health))
)]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: the database answers and every migration is applied; `503` with the reason otherwise.
#[utoipa::path(
    get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "The database answers and is migrated", body = Health),
        (status = 503, description = "Not ready, with the reason (DATABASE_UNAVAILABLE)", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pending = store::pending_migrations(state.statuses.pool())
        .await
        .map_err(|error| {
            ApiError::NotReady(format!("the database does not answer: {}", summary(&error)))
        })?;
    if pending > 0 {
        return Err(ApiError::NotReady(format!(
            "{pending} migration(s) not applied yet: run `presence migrate`"
        )));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })))
}

/// `GET /metrics`: the Prometheus text format.
#[utoipa::path(
    get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let metrics = &state.metrics;
    let pool = state.statuses.pool();
    let (open, idle) = (
        i64::from(pool.size()),
        i64::try_from(pool.num_idle()).unwrap_or(i64::MAX),
    );
    for (connections, count) in [("open", open), ("idle", idle), ("in_use", open - idle)] {
        metrics
            .pool_connections
            .with_label_values(&[connections])
            .set(count);
    }
    match store::count_users_by_status(pool, state.clock.now(), &state.thresholds).await {
        Ok(counts) => {
            for status in ["online", "idle", "away", "dnd", "offline"] {
                let users = counts
                    .iter()
                    .find(|(name, _)| name == status)
                    .map_or(0, |(_, users)| *users);
                metrics.users.with_label_values(&[status]).set(users);
            }
        }
        // The other figures still help while the database is away.
        Err(error) => tracing::warn!(%error, "could not count users by status for the metrics"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}

/// The kind of database failure, without addresses or SQL.
fn summary(error: &sqlx::Error) -> &'static str {
    match error {
        sqlx::Error::PoolTimedOut => "no connection within the acquire timeout",
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => "connection failed",
        sqlx::Error::PoolClosed => "the pool is closed",
        sqlx::Error::Database(_) => "the query failed (is the schema there?)",
        _ => "unexpected error",
    }
}

/// `GET /openapi.json`: the OpenAPI document of this API.
pub async fn openapi() -> HttpResponse {
    use utoipa::OpenApi;
    HttpResponse::Ok().json(crate::openapi::ApiDoc::openapi())
}

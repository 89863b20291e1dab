//! `/healthz` (the process serves) and `/readyz` (the database answers and is migrated).

use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::error::ErrorBody;
use crate::state::AppState;

/// A short JSON status (`/healthz`, `/readyz`).
#[derive(Serialize, ToSchema)]
#[schema(as = Health)]
pub struct HealthBody {
    /// `ok` or `ready`.
    status: &'static str,
}

/// `GET /healthz`: the process serves; no database call.
#[utoipa::path(
    get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "The process serves", body = HealthBody))
)]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(HealthBody { status: "ok" })
}

/// `GET /readyz`: the database answers and every migration is applied; `503` with the reason otherwise.
#[utoipa::path(
    get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "The database answers and is migrated", body = HealthBody),
        (status = 503, description = "Not ready, with the reason (DATABASE_UNAVAILABLE)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(ApiError::ShuttingDown);
    }
    let pending = state.statuses.pending_migrations().await.map_err(|error| {
        ApiError::NotReady(format!("the database does not answer: {}", summary(&error)))
    })?;
    if pending > 0 {
        return Err(ApiError::NotReady(format!(
            "{pending} migration(s) not applied yet: run `presence migrate`"
        )));
    }
    Ok(HttpResponse::Ok().json(HealthBody { status: "ready" }))
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

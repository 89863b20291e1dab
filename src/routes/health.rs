use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use crate::startup::AppState;
use crate::store;

/// `GET /healthz`: the process serves; no database call.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: the database answers and every migration is applied; `503` with the reason otherwise.
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

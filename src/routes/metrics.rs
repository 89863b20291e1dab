//! `GET /metrics` on the operator's listener (`PRESENCE_METRICS_ADDR`), never the public one.

use actix_web::{HttpResponse, web};

use super::{get_or_head, method_not_allowed};
use crate::state::AppState;

/// Registers `/metrics`, the only route of the metrics listener.
pub fn configure(config: &mut web::ServiceConfig) {
    config.service(
        web::resource("/metrics")
            .route(get_or_head().to(metrics))
            .default_service(web::to(method_not_allowed)),
    );
}

/// `GET /metrics`: the Prometheus text format; reads no table (user counts are kept in the background).
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let metrics = &state.metrics;
    let (open, idle) = state.statuses.pool_connections();
    let (open, idle) = (i64::from(open), i64::try_from(idle).unwrap_or(i64::MAX));
    for (connections, count) in [("open", open), ("idle", idle), ("in_use", open - idle)] {
        metrics
            .pool_connections
            .with_label_values(&[connections])
            .set(count);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}

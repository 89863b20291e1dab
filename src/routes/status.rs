use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{HttpResponse, web};

use super::StatusBody;
use crate::auth::Viewer;
use crate::domain::{PingBody, UserId};
use crate::error::ApiError;
use crate::presence::calculate_effective_status;
use crate::startup::AppState;
use crate::store;

/// `PUT /api/status`: an activity ping or heartbeat, with optional settings.
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %viewer))]
pub async fn put_status(
    Viewer(viewer): Viewer,
    body: web::Json<PingBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.put_limiter.check(viewer)?;
    let now = state.clock.now();
    let ping = body.into_inner().parse(now)?;
    let row = store::apply_ping(&state.pool, viewer, &ping, now, state.max_devices).await?;
    let view = calculate_effective_status(viewer, Some(&row), viewer, now, &state.thresholds);
    Ok(status_response(
        StatusBody::new(&view).with_ping_interval(state.ping_interval_seconds),
    ))
}

/// `GET /api/status/{userId}`: one user's effective status as the caller is allowed to see it.
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %viewer))]
pub async fn get_status(
    Viewer(viewer): Viewer,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = UserId::parse(&path).map_err(ApiError::InvalidUserId)?;
    let row = store::fetch_status(&state.pool, user).await?;
    let view = calculate_effective_status(
        user,
        row.as_ref(),
        viewer,
        state.clock.now(),
        &state.thresholds,
    );
    Ok(status_response(StatusBody::new(&view)))
}

/// A status body that no shared cache may keep and clients must revalidate.
fn status_response(body: StatusBody<'_>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(CacheControl(vec![
            CacheDirective::Private,
            CacheDirective::NoCache,
        ]))
        .json(body)
}

//! `DELETE /api/status/devices/{deviceId}`: signing out one device.

use actix_web::{HttpResponse, web};

use super::responses::CommonErrors;
use crate::auth::Viewer;
use crate::domain::DeviceId;
use crate::error::ApiError;
use crate::state::AppState;

/// `DELETE /api/status/devices/{deviceId}`: signs one of the caller's devices
/// out at once, and out of every room it is in.
#[utoipa::path(
    delete, path = "/api/status/devices/{deviceId}", tag = "status",
    params(("deviceId" = String, Path, description = "The device to sign out")),
    responses(
        (status = 204, description = "Signed out (and out of its rooms)"),
        CommonErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %viewer))]
pub async fn delete_device(
    Viewer(viewer): Viewer,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let device = DeviceId::parse(&path).map_err(ApiError::InvalidDeviceId)?;
    let now = state.clock.now();
    let removed = state.statuses.remove_device(viewer, &device, now).await?;
    // Signed out of its rooms too (a device may be in rooms without pinging its status).
    let rooms_left = state.rooms.leave_all(viewer, &device, now).await?;
    if removed || rooms_left > 0 {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!(
            "you have no device {device:?}",
            device = device.as_str()
        )))
    }
}

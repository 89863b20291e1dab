//! `DELETE /api/status/devices/{deviceId}`: signing out one device.

use actix_web::{HttpResponse, web};

use super::responses::CommonErrors;
use crate::auth::Viewer;
use crate::domain::DeviceId;
use crate::error::ApiError;
use crate::state::AppState;

/// `DELETE /api/status/devices/{deviceId}`: signs one of the caller's devices out at once.
#[utoipa::path(
    delete, path = "/api/status/devices/{deviceId}", tag = "status",
    params(("deviceId" = String, Path, description = "The device to sign out")),
    responses(
        (status = 204, description = "Signed out"),
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
    if state
        .statuses
        .remove_device(viewer, &device, state.clock.now())
        .await?
    {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!(
            "you have no device {device:?}",
            device = device.as_str()
        )))
    }
}

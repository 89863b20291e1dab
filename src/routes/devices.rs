use actix_web::{HttpResponse, web};

use crate::auth::Viewer;
use crate::domain::DeviceId;
use crate::error::ApiError;
#[allow(unused_imports, reason = "named by the OpenAPI annotations")]
use crate::openapi::*;
use crate::startup::AppState;

/// `DELETE /api/status/devices/{deviceId}`: signs one of the caller's devices out at once.
#[utoipa::path(
    delete, path = "/api/status/devices/{deviceId}", tag = "status",
    params(("deviceId" = String, Path, description = "The device to sign out")),
    responses(
        (status = 204, description = "Signed out"),
        (status = 400, description = "Invalid input (INVALID_BODY, INVALID_USER_ID, ...)", body = ErrorResponse),
        (status = 401, description = "Missing or unacceptable token (UNAUTHORIZED)", body = ErrorResponse),
        (status = 404, description = "No such route or resource (NOT_FOUND)", body = ErrorResponse),
        (status = 500, description = "Internal error (INTERNAL)", body = ErrorResponse),
        (status = 503, description = "The database is unavailable (DATABASE_UNAVAILABLE)", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %viewer))]
pub async fn delete_device(
    Viewer(viewer): Viewer,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let device = DeviceId::parse(&path).map_err(ApiError::InvalidDeviceId)?;
    if state.statuses.remove_device(viewer, &device).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!(
            "you have no device {device:?}",
            device = device.as_str()
        )))
    }
}

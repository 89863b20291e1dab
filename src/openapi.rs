//! The OpenAPI 3 document of the API, served at `GET /openapi.json`: generated
//! from the handlers' annotations and the very types their bodies are read
//! into and written from, so the document cannot drift from the JSON.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};

use crate::domain::{ManualStatus, PingBody, Platform};
use crate::error::{ErrorBody, ErrorDetail};
use crate::presence::Status;
use crate::routes::{
    self, BlocksBody, BucketBody, DeviceBody, HealthBody, HistoryBody, OnlineBody, QueryBody,
    SegmentBody, SessionBody, StatsBody, StatusBody, StatusesBody,
};

/// An error answer, as the response enums below name it.
type ErrorResponse = ErrorBody<'static>;

/// The errors every `/api` endpoint can answer with.
#[derive(IntoResponses)]
pub enum CommonErrors {
    /// Invalid input (INVALID_BODY, INVALID_USER_ID, ...)
    #[response(status = 400)]
    BadRequest(ErrorResponse),
    /// Missing or unacceptable token (UNAUTHORIZED)
    #[response(status = 401)]
    Unauthorized(ErrorResponse),
    /// No such route or resource (NOT_FOUND)
    #[response(status = 404)]
    NotFound(ErrorResponse),
    /// Internal error (INTERNAL)
    #[response(status = 500)]
    Internal(ErrorResponse),
    /// The database is unavailable (DATABASE_UNAVAILABLE)
    #[response(status = 503, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    Unavailable(ErrorResponse),
}

/// The errors of endpoints that take a JSON body.
#[derive(IntoResponses)]
pub enum BodyErrors {
    /// Body too large (PAYLOAD_TOO_LARGE)
    #[response(status = 413)]
    TooLarge(ErrorResponse),
    /// Body is not JSON (UNSUPPORTED_MEDIA_TYPE)
    #[response(status = 415)]
    NotJson(ErrorResponse),
}

/// The error of the admin endpoints.
#[derive(IntoResponses)]
pub enum AdminErrors {
    /// A valid token without the presence:admin scope (FORBIDDEN)
    #[response(status = 403)]
    Forbidden(ErrorResponse),
}

/// The error of rate-limited endpoints.
#[derive(IntoResponses)]
pub enum LimitErrors {
    /// Over the rate limit (RATE_LIMITED)
    #[response(status = 429, headers(("Retry-After" = u64, description = "Whole seconds to wait")))]
    RateLimited(ErrorResponse),
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "presence", description = "Who is online: a polling-only presence service."),
    paths(
        routes::status::put_status,
        routes::status::get_status,
        routes::status::get_statuses,
        routes::status::query_statuses,
        routes::devices::delete_device,
        routes::blocks::put_block,
        routes::blocks::delete_block,
        routes::blocks::get_blocks,
        routes::history::own_history,
        routes::history::user_status,
        routes::history::user_history,
        routes::history::online_at,
        routes::history::stats,
        routes::health::health,
        routes::health::ready,
    ),
    components(schemas(
        StatusBody, StatusesBody, DeviceBody, PingBody, QueryBody, BlocksBody, HealthBody,
        ErrorBody, ErrorDetail, Status, Platform, ManualStatus, HistoryBody, SegmentBody,
        SessionBody, OnlineBody, StatsBody, BucketBody
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

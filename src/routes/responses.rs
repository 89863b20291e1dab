//! The error answers the handlers' OpenAPI annotations name, by kind of route.

use utoipa::IntoResponses;

use crate::error::ErrorBody;

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

/// The error of the change feed.
#[derive(IntoResponses)]
pub enum FeedErrors {
    /// A cursor older than the feed's retention (CURSOR_EXPIRED)
    #[response(status = 410)]
    Expired(ErrorResponse),
}

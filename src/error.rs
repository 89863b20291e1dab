//! The API's one error type: every failure a client can see, with its status and code.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

/// How long a client should wait before retrying when the database is unreachable.
const DATABASE_RETRY_AFTER_SECS: u64 = 2;

/// Every error the API answers with; see the contract's error table.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not the JSON the endpoint takes.
    #[error("{0}")]
    InvalidBody(String),
    /// A user id is not a UUID, or names the caller where that makes no sense.
    #[error("{0}")]
    InvalidUserId(String),
    /// A device id breaks the device id rules.
    #[error("{0}")]
    InvalidDeviceId(String),
    /// A manual status is not one that can be set.
    #[error("{0}")]
    InvalidStatus(String),
    /// A status message is too long or holds control characters.
    #[error("{0}")]
    InvalidStatusMessage(String),
    /// A timestamp is malformed or not in the future.
    #[error("{0}")]
    InvalidTimestamp(String),
    /// More ids than a batch read takes.
    #[error("{0}")]
    TooManyIds(String),
    /// The caller already blocks as many users as allowed.
    #[error("{0}")]
    TooManyBlocks(String),
    /// A room id breaks the room id rules.
    #[error("{0}")]
    InvalidRoomId(String),
    /// A room state is not a JSON object of at most 1 KiB (or `null`).
    #[error("{0}")]
    InvalidState(String),
    /// The device is already in as many rooms as allowed.
    #[error("{0}")]
    TooManyRooms(String),
    /// A change-feed cursor is not one the feed gives.
    #[error("{0}")]
    InvalidCursor(String),
    /// A change-feed cursor is older than the feed's retention.
    #[error("this cursor is older than the feed keeps changes; start again without `after`")]
    CursorExpired,
    /// The bearer token is missing or not acceptable.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The token is valid but may not call this route (an admin route without the admin scope).
    #[error("this route needs a service token (scope presence:admin)")]
    Forbidden,
    /// No such route, device or resource.
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not with this method.
    #[error("this method is not allowed on this route")]
    MethodNotAllowed,
    /// The body is larger than the endpoint accepts.
    #[error("the body must be at most {limit} bytes")]
    PayloadTooLarge {
        /// The endpoint's limit in bytes.
        limit: usize,
    },
    /// The request target is longer than the server takes.
    #[error("the URL must be at most {limit} bytes")]
    UriTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request head (request line and headers) is larger than the server takes.
    #[error("the request headers must be at most {limit} bytes in all")]
    HeadersTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request, body included, did not arrive in time.
    #[error("the request did not arrive in time; send it whole, promptly")]
    RequestTimeout,
    /// The body is not `application/json`.
    #[error("the body must be JSON, sent with Content-Type: application/json")]
    UnsupportedMediaType,
    /// The caller sent too many requests; retry after the given number of seconds.
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited {
        /// Whole seconds until a request will be accepted, at least 1.
        retry_after_secs: u64,
    },
    /// The database could not be reached in time.
    #[error("the database is unavailable; retry shortly")]
    DatabaseUnavailable(#[source] sqlx::Error),
    /// The service is not ready to serve (readiness check), with the reason.
    #[error("{0}")]
    NotReady(String),
    /// Draining after SIGTERM: `/readyz` fails on purpose (not logged as an error).
    #[error("the server is shutting down: send requests to another instance")]
    ShuttingDown,
    /// Anything else; the cause goes to the log, never to the client.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// The contract's code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidBody(_) => "INVALID_BODY",
            Self::InvalidUserId(_) => "INVALID_USER_ID",
            Self::InvalidDeviceId(_) => "INVALID_DEVICE_ID",
            Self::InvalidStatus(_) => "INVALID_STATUS",
            Self::InvalidStatusMessage(_) => "INVALID_STATUS_MESSAGE",
            Self::InvalidTimestamp(_) => "INVALID_TIMESTAMP",
            Self::TooManyIds(_) => "TOO_MANY_IDS",
            Self::TooManyBlocks(_) => "TOO_MANY_BLOCKS",
            Self::InvalidRoomId(_) => "INVALID_ROOM_ID",
            Self::InvalidState(_) => "INVALID_STATE",
            Self::TooManyRooms(_) => "TOO_MANY_ROOMS",
            Self::InvalidCursor(_) => "INVALID_CURSOR",
            Self::CursorExpired => "CURSOR_EXPIRED",
            Self::Unauthorized(_) => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Self::UriTooLong { .. } => "URI_TOO_LONG",
            Self::HeadersTooLarge { .. } => "HEADERS_TOO_LARGE",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::DatabaseUnavailable(_) | Self::NotReady(_) | Self::ShuttingDown => {
                "DATABASE_UNAVAILABLE"
            }
            Self::Internal(_) => "INTERNAL",
        }
    }

    /// Maps a JSON body extractor failure to the contract's error.
    pub fn from_json_error(error: JsonPayloadError, _request: &HttpRequest) -> actix_web::Error {
        match error {
            JsonPayloadError::OverflowKnownLength { limit, .. }
            | JsonPayloadError::Overflow { limit } => Self::PayloadTooLarge { limit },
            JsonPayloadError::ContentType => Self::UnsupportedMediaType,
            JsonPayloadError::Deserialize(error) => {
                Self::InvalidBody(format!("invalid JSON body: {error}"))
            }
            other => Self::InvalidBody(format!("could not read the body: {other}")),
        }
        .into()
    }

    /// Maps a path extractor failure to the contract's error.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "actix hands the error over by value"
    )]
    pub fn from_path_error(error: PathError, _request: &HttpRequest) -> actix_web::Error {
        Self::InvalidBody(format!("invalid path: {error}")).into()
    }

    /// Maps a query string extractor failure to the contract's error.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "actix hands the error over by value"
    )]
    pub fn from_query_error(error: QueryPayloadError, _request: &HttpRequest) -> actix_web::Error {
        Self::InvalidBody(format!("invalid query string: {error}")).into()
    }
}

impl From<crate::domain::InvalidPing> for ApiError {
    fn from(error: crate::domain::InvalidPing) -> Self {
        use crate::domain::InvalidPing;
        match error {
            InvalidPing::DeviceId(message) => Self::InvalidDeviceId(message),
            InvalidPing::Status(message) => Self::InvalidStatus(message),
            InvalidPing::Message(message) => Self::InvalidStatusMessage(message),
            InvalidPing::Timestamp(message) => Self::InvalidTimestamp(message),
        }
    }
}

/// Whether a database error means "unavailable, retry shortly" (`503`) rather than a fault (`500`).
pub fn database_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        // Cancelled by statement_timeout, or the server is shutting down or
        // starting up; or (class 08) a node it needed did not answer: on
        // Citus, the coordinator reports a worker that is down this way.
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            matches!(code.as_ref(), "57014" | "57P01" | "57P02" | "57P03") || code.starts_with("08")
        }),
        _ => false,
    }
}

/// A copy of a database error for each of several callers (`sqlx::Error` is not
/// `Clone`): the same kind, unavailable or a fault, with `context` and the message.
pub fn copy_database_error(error: &sqlx::Error, context: &str) -> sqlx::Error {
    let cause = std::io::Error::other(format!("{context}: {error}"));
    if database_unavailable(error) {
        sqlx::Error::Io(cause)
    } else {
        sqlx::Error::Configuration(Box::new(cause))
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if database_unavailable(&error) {
            Self::DatabaseUnavailable(error)
        } else {
            Self::Internal(Box::new(error))
        }
    }
}

/// Every error's JSON: a contract code and a human message.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorResponse)]
pub struct ErrorBody<'a> {
    /// The error.
    error: ErrorDetail<'a>,
}

/// The inside of an error.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail<'a> {
    /// `UPPER_SNAKE` code from the contract's table.
    code: &'a str,
    /// Human text.
    message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidBody(_)
            | Self::InvalidUserId(_)
            | Self::InvalidDeviceId(_)
            | Self::InvalidStatus(_)
            | Self::InvalidStatusMessage(_)
            | Self::InvalidTimestamp(_)
            | Self::TooManyIds(_)
            | Self::TooManyBlocks(_)
            | Self::InvalidRoomId(_)
            | Self::InvalidState(_)
            | Self::TooManyRooms(_)
            | Self::InvalidCursor(_) => StatusCode::BAD_REQUEST,
            Self::CursorExpired => StatusCode::GONE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::DatabaseUnavailable(_) | Self::NotReady(_) | Self::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if self.status_code().is_server_error() && !matches!(self, Self::ShuttingDown) {
            tracing::error!(error = %error_chain(self), code = self.code(), "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        let retry_after = match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::DatabaseUnavailable(_) | Self::NotReady(_) | Self::ShuttingDown => {
                Some(DATABASE_RETRY_AFTER_SECS)
            }
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(seconds)));
        }
        if matches!(self, Self::Unauthorized(_)) {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        })
    }
}

/// The error and all its causes on one line, for the log.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

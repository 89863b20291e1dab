//! The OpenAPI 3 document of the API, generated from the handlers' annotations
//! and the schema types below, served at `GET /openapi.json`.
//!
//! The schema types describe the JSON exactly as the contract has it (the
//! handlers serialize borrowed views of the domain types, which carry no
//! schema of their own).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use crate::routes;

/// An effective status.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum StatusName {
    /// Active recently, on a live device.
    Online,
    /// Quiet for a while, on a live device.
    Idle,
    /// Quiet for long, or manually away.
    Away,
    /// Do not disturb.
    Dnd,
    /// No live device, never seen, invisible or blocked.
    Offline,
}

/// A device's platform.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum PlatformName {
    /// A browser.
    Web,
    /// A desktop application.
    Desktop,
    /// A phone or tablet application.
    Mobile,
}

/// A manual status.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum ManualStatusName {
    /// Away, whatever the activity.
    Away,
    /// Do not disturb.
    Dnd,
}

/// One stored device (self view only).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct Device {
    /// The client-chosen id.
    pub device_id: String,
    /// Where it runs.
    pub platform: PlatformName,
    /// Its last ping of any kind.
    #[schema(format = DateTime)]
    pub last_ping: String,
    /// Its last activity.
    #[schema(format = DateTime)]
    pub last_active: String,
}

/// One user's status as the viewer may see it; the self view adds the optional fields.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct StatusView {
    /// The user.
    #[schema(format = Uuid)]
    pub user_id: String,
    /// The effective status.
    pub status: StatusName,
    /// The last activity this viewer may know of.
    #[schema(format = DateTime)]
    pub last_seen: Option<String>,
    /// The status message, when shown.
    pub status_message: Option<String>,
    /// The platforms of the live devices.
    pub platforms: Vec<PlatformName>,
    /// When the view next changes by itself.
    #[schema(format = DateTime)]
    pub next_change_at: Option<String>,
    /// Self view: the manual status.
    #[schema(required = false, nullable = true)]
    pub manual_status: Option<ManualStatusName>,
    /// Self view: when the manual status ends.
    #[schema(required = false, nullable = true, format = DateTime)]
    pub manual_status_until: Option<String>,
    /// Self view: whether the user appears offline to others.
    #[schema(required = false)]
    pub invisible: Option<bool>,
    /// Self view: when the message ends.
    #[schema(required = false, nullable = true, format = DateTime)]
    pub status_message_until: Option<String>,
    /// Self view: every stored device.
    #[schema(required = false)]
    pub devices: Option<Vec<Device>>,
}

/// The caller's self view after a ping, with the heartbeat interval.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct PingResponse {
    /// The caller.
    #[schema(format = Uuid)]
    pub user_id: String,
    /// The effective status.
    pub status: StatusName,
    /// The last activity.
    #[schema(format = DateTime)]
    pub last_seen: Option<String>,
    /// The status message.
    pub status_message: Option<String>,
    /// The platforms of the live devices.
    pub platforms: Vec<PlatformName>,
    /// When the view next changes by itself.
    #[schema(format = DateTime)]
    pub next_change_at: Option<String>,
    /// The manual status.
    pub manual_status: Option<ManualStatusName>,
    /// When the manual status ends.
    #[schema(format = DateTime)]
    pub manual_status_until: Option<String>,
    /// Whether the caller appears offline to others.
    pub invisible: bool,
    /// When the message ends.
    #[schema(format = DateTime)]
    pub status_message_until: Option<String>,
    /// Every stored device.
    pub devices: Vec<Device>,
    /// How often to heartbeat, in seconds.
    pub ping_interval_seconds: u64,
}

/// The body of `PUT /api/status`: every field optional; `null` clears.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct PingRequest {
    /// The client instance, 1 to 64 of `[A-Za-z0-9._:-]` (default `"default"`).
    #[schema(required = false, pattern = "^[A-Za-z0-9._:-]{1,64}$")]
    pub device_id: Option<String>,
    /// The device's platform (default `web`).
    #[schema(required = false)]
    pub platform: Option<PlatformName>,
    /// `true`: the user interacted (default); `false`: heartbeat only.
    #[schema(required = false)]
    pub active: Option<bool>,
    /// Manual status; `null` returns to automatic.
    #[schema(required = false, nullable = true)]
    pub manual_status: Option<ManualStatusName>,
    /// When the manual status ends; sent with `manualStatus`.
    #[schema(required = false, nullable = true, format = DateTime)]
    pub manual_status_until: Option<String>,
    /// Appear offline to everyone else.
    #[schema(required = false)]
    pub invisible: Option<bool>,
    /// Custom message, at most 140 characters; `""` or `null` clears it.
    #[schema(required = false, nullable = true, max_length = 140)]
    pub status_message: Option<String>,
    /// When the message ends; sent with `statusMessage`.
    #[schema(required = false, nullable = true, format = DateTime)]
    pub status_message_until: Option<String>,
}

/// Several users' statuses, one per distinct id, in the order first asked.
#[derive(ToSchema)]
pub struct StatusesResponse {
    /// The statuses.
    pub statuses: Vec<StatusView>,
}

/// The body of `POST /api/status/query`.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct QueryRequest {
    /// Up to 1000 user ids.
    #[schema(max_items = 1000)]
    pub user_ids: Vec<String>,
}

/// A page of the users the caller blocks, in ascending id order.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct BlocksResponse {
    /// The blocked users of this page, in ascending id order.
    pub user_ids: Vec<String>,
    /// The `after` for the next page; `null` on the last one.
    pub next: Option<String>,
}

/// Every error: a contract code and a human message.
#[derive(ToSchema)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of an error.
#[derive(ToSchema)]
pub struct ErrorDetail {
    /// `UPPER_SNAKE` code from the contract's table.
    pub code: String,
    /// Human text.
    pub message: String,
}

/// A short JSON status (`/healthz`, `/readyz`).
#[derive(ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
}

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
        routes::health::health,
        routes::health::ready,
    ),
    components(schemas(
        StatusView, PingResponse, PingRequest, StatusesResponse, QueryRequest, BlocksResponse,
        ErrorResponse, ErrorDetail, Device, StatusName, PlatformName, ManualStatusName, Health
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

//! Thin HTTP handlers: extract, parse, call a service, shape the response.

pub(crate) mod admin;
mod api_doc;
pub(crate) mod blocks;
pub(crate) mod changes;
mod client;
mod conditional;
pub(crate) mod devices;
pub(crate) mod health;
pub(crate) mod history;
pub mod metrics;
mod paging;
mod rejected;
mod responses;
pub(crate) mod rooms;
pub(crate) mod status;
mod status_body;

use actix_web::{HttpResponse, ResponseError, Route, guard, web};

use crate::error::ApiError;

pub use admin::{BucketBody, OnlineBody, StatsBody};
pub use blocks::BlocksBody;
pub use changes::{ChangeBody, ChangesBody};
pub use health::HealthBody;
pub use history::{HistoryBody, SegmentBody, SessionBody};
pub use responses::{AdminErrors, BodyErrors, CommonErrors, FeedErrors, LimitErrors};
pub use rooms::{CallerRoomBody, CallerRoomsBody, RoomBody, RoomMemberBody, RoomPresenceBody};
pub use status::QueryBody;
pub use status_body::{DeviceBody, StatusBody, StatusesBody};

/// The largest body `POST /api/status/query` accepts.
const QUERY_BODY_LIMIT_BYTES: usize = 64 * 1024;

/// Registers every route of the API, each answering unknown methods with `405`;
/// the demo page and its token endpoint only in development mode.
pub fn configure(config: &mut web::ServiceConfig, dev_mode: bool) {
    if dev_mode {
        config
            .service(
                web::resource("/demo")
                    .route(get_or_head().to(client::demo_page))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/demo/token")
                    .route(get_or_head().to(client::demo_token))
                    .default_service(web::to(method_not_allowed)),
            );
    }
    config
        .service(
            web::resource("/client/presence.js")
                .route(get_or_head().to(client::client_script))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/healthz")
                .route(get_or_head().to(health::health))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/openapi.json")
                .route(get_or_head().to(api_doc::openapi))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource(format!("{}/{{code}}", crate::head_guard::REJECTED_PATH))
                .route(web::route().to(rejected::rejected)),
        )
        .service(
            web::resource("/readyz")
                .route(get_or_head().to(health::ready))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/status")
                .route(web::put().to(status::put_status))
                .route(get_or_head().to(status::get_statuses))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/status/query")
                .app_data(
                    web::JsonConfig::default()
                        .limit(QUERY_BODY_LIMIT_BYTES)
                        .error_handler(ApiError::from_json_error),
                )
                .route(web::post().to(status::query_statuses))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/status/devices/{deviceId}")
                .route(web::delete().to(devices::delete_device))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/blocks")
                .route(get_or_head().to(blocks::get_blocks))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/blocks/{userId}")
                .route(web::put().to(blocks::put_block))
                .route(web::delete().to(blocks::delete_block))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/rooms")
                .route(get_or_head().to(rooms::get_rooms))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/rooms/{roomId}/presence")
                .route(web::put().to(rooms::put_presence))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/rooms/{roomId}/presence/{deviceId}")
                .route(web::delete().to(rooms::delete_presence))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/rooms/{roomId}")
                .route(get_or_head().to(rooms::get_room))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/status/history")
                .route(get_or_head().to(history::own_history))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/admin/status/{userId}")
                .route(get_or_head().to(admin::user_status))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/admin/users/{userId}/history")
                .route(get_or_head().to(history::user_history))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/admin/stats")
                .route(get_or_head().to(admin::stats))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/admin/changes")
                .route(get_or_head().to(changes::changes))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/admin/online")
                .route(get_or_head().to(admin::online_at))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/api/status/{userId}")
                .route(get_or_head().to(status::get_status))
                .default_service(web::to(method_not_allowed)),
        );
}

/// The answer to a request for a route that does not exist.
pub async fn not_found() -> HttpResponse {
    ApiError::NotFound("no such route".to_owned()).error_response()
}

async fn method_not_allowed() -> HttpResponse {
    ApiError::MethodNotAllowed.error_response()
}

/// A route for `GET` that answers `HEAD` too (the same headers, no body).
fn get_or_head() -> Route {
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

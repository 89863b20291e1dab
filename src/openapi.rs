//! The OpenAPI 3 document of the API, served at `GET /openapi.json`: generated
//! from the handlers' annotations and the very types their bodies are read
//! into and written from, so the document cannot drift from the JSON.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::domain::{ManualStatus, PingBody, Platform, RoomPingBody};
use crate::error::{ErrorBody, ErrorDetail};
use crate::presence::Status;
use crate::routes::{
    self, BlocksBody, BucketBody, CallerRoomBody, CallerRoomsBody, ChangeBody, ChangesBody,
    DeviceBody, HealthBody, HistoryBody, OnlineBody, QueryBody, RoomBody, RoomMemberBody,
    RoomPresenceBody, SegmentBody, SessionBody, StatsBody, StatusBody, StatusesBody,
};

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
    info(title = "presence", description = "Who is online, and who is together in a room: a polling-only presence service."),
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
        routes::rooms::put_presence,
        routes::rooms::delete_presence,
        routes::rooms::get_room,
        routes::rooms::get_rooms,
        routes::admin::user_status,
        routes::history::user_history,
        routes::admin::online_at,
        routes::admin::stats,
        routes::changes::changes,
        routes::health::health,
        routes::health::ready,
    ),
    components(schemas(
        StatusBody, StatusesBody, DeviceBody, PingBody, QueryBody, BlocksBody, HealthBody,
        ErrorBody, ErrorDetail, Status, Platform, ManualStatus, HistoryBody, SegmentBody,
        SessionBody, OnlineBody, StatsBody, BucketBody, RoomPingBody, RoomPresenceBody, RoomBody,
        RoomMemberBody, CallerRoomsBody, CallerRoomBody, ChangesBody, ChangeBody
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

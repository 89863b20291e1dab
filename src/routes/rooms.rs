//! Rooms: join, renew, set state and type (`PUT .../presence`), leave, who is
//! here (`GET /api/rooms/{roomId}`), and the caller's rooms (`GET /api/rooms`).

use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::conditional::conditional_json;
use super::paging::PageQuery;
use super::responses::{BodyErrors, CommonErrors, LimitErrors};
use crate::auth::RoomCaller;
use crate::domain::{DeviceId, Platform, RoomId, RoomPingBody, Timestamp, UserId};
use crate::error::ApiError;
use crate::presence::{EffectiveStatus, Hidden, Status, StoredStatus, calculate_effective_status};
use crate::rooms::RoomMember;
use crate::state::AppState;
use crate::store::RoomPingOutcome;

/// A member's stored row, `None` for a user who never pinged.
type Row = Option<std::sync::Arc<StoredStatus>>;

/// A member the caller may see, with their row and the block between them, if any.
type Visible<'a> = (&'a RoomMember, Row, Option<Hidden>);

/// How many members a page of a room holds unless `limit` says otherwise.
pub const DEFAULT_ROOM_PAGE: i64 = 100;
/// The most members a page of a room holds.
pub const MAX_ROOM_PAGE: i64 = 1000;

/// The room a path names, if the caller may use it: `400 INVALID_ROOM_ID`
/// for a malformed id, `404` for a room the token does not grant (a service
/// token reads every room when `service_reads`).
fn granted_room(caller: &RoomCaller, id: &str, service_reads: bool) -> Result<RoomId, ApiError> {
    let room = RoomId::parse(id).map_err(ApiError::InvalidRoomId)?;
    if (service_reads && caller.service) || caller.grants.allows(&room) {
        Ok(room)
    } else {
        Err(not_granted())
    }
}

/// The answer for a room the token does not grant: the same whether anyone is in it or not.
fn not_granted() -> ApiError {
    ApiError::NotFound("no such room (or your token does not grant it)".to_owned())
}

/// The answer to a room ping: the caller's device's membership.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RoomPresence)]
pub struct RoomPresenceBody {
    /// The room.
    room_id: String,
    /// The caller's device in it.
    device_id: String,
    /// When this device's membership started.
    #[schema(value_type = String, format = DateTime)]
    joined_at: Timestamp,
    /// The device's state in the room.
    #[schema(value_type = Option<Object>, required = true)]
    state: Option<Value>,
    /// Whether the device shows as typing.
    typing: bool,
    /// How often to renew the membership, in seconds.
    heartbeat_interval_seconds: u64,
}

/// `PUT /api/rooms/{roomId}/presence`: joins or renews the caller's device's membership.
#[utoipa::path(
    put, path = "/api/rooms/{roomId}/presence", tag = "rooms",
    params(("roomId" = String, Path, description = "The room: 1 to 128 of A-Z, a-z, 0-9, '.', '_', ':', '-'")),
    request_body = RoomPingBody,
    responses(
        (status = 200, description = "The caller's device's membership", body = RoomPresenceBody),
        CommonErrors,
        BodyErrors,
        LimitErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn put_presence(
    caller: RoomCaller,
    path: web::Path<String>,
    body: web::Json<RoomPingBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = caller.user()?;
    let room = granted_room(&caller, &path, false)?;
    state.limit_pings(user)?;
    let ping = body.into_inner().parse()?;
    let now = state.clock.now();
    let written = state.rooms.ping(&room, user, &ping, now).await?;
    if written.outcome == RoomPingOutcome::TooMany {
        return Err(ApiError::TooManyRooms(format!(
            "device {:?} is already in {} rooms, the most one device may be in; leave one first",
            ping.device.as_str(),
            state.rooms.rules().max_rooms_per_device
        )));
    }
    Ok(HttpResponse::Ok()
        .insert_header(CacheControl(vec![
            CacheDirective::Private,
            CacheDirective::NoCache,
        ]))
        .json(RoomPresenceBody {
            room_id: room.to_string(),
            device_id: ping.device.to_string(),
            joined_at: Timestamp(written.joined_at),
            state: written.state,
            typing: written.typing_until.is_some_and(|until| until > now),
            heartbeat_interval_seconds: state.rooms.heartbeat_interval().as_secs(),
        }))
}

/// `DELETE /api/rooms/{roomId}/presence/{deviceId}`: the caller's device leaves the room.
#[utoipa::path(
    delete, path = "/api/rooms/{roomId}/presence/{deviceId}", tag = "rooms",
    params(
        ("roomId" = String, Path, description = "The room"),
        ("deviceId" = String, Path, description = "The caller's device that leaves"),
    ),
    responses(
        (status = 204, description = "Not in the room (any more)"),
        CommonErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn delete_presence(
    caller: RoomCaller,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = caller.user()?;
    let (room, device) = path.into_inner();
    let room = granted_room(&caller, &room, false)?;
    let device = DeviceId::parse(&device).map_err(ApiError::InvalidDeviceId)?;
    state
        .rooms
        .leave(&room, user, &device, state.clock.now())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// One user in a room, as the caller may see them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RoomMember)]
pub struct RoomMemberBody<'a> {
    /// The user.
    #[schema(value_type = uuid::Uuid)]
    user_id: UserId,
    /// The effective status, as `GET /api/status/{userId}` would answer the caller.
    status: Status,
    /// The last activity the caller may know of.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    last_seen: Option<Timestamp>,
    /// The status message, when shown.
    #[schema(required = true)]
    status_message: Option<&'a str>,
    /// The platforms of the live devices.
    #[schema(value_type = Vec<Platform>)]
    platforms: &'a [Platform],
    /// The state of the user's device that set its state most recently.
    #[schema(value_type = Option<Object>, required = true)]
    state: Option<&'a Value>,
    /// Whether any of the user's devices is typing.
    typing: bool,
    /// When the user's earliest live membership started.
    #[schema(value_type = String, format = DateTime)]
    joined_at: Timestamp,
}

/// Who is in a room: the occupancy and one page of members.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Room)]
pub struct RoomBody<'a> {
    /// The room.
    room_id: &'a str,
    /// How many users the caller may see in the room.
    occupancy: usize,
    /// One page of them, in user id order.
    members: Vec<RoomMemberBody<'a>>,
    /// The last user id of a full page (pass it as `after`), else `null`.
    #[schema(value_type = Option<uuid::Uuid>, required = true)]
    next: Option<UserId>,
}

/// `GET /api/rooms/{roomId}?limit=&after=`: who is in the room.
#[utoipa::path(
    get, path = "/api/rooms/{roomId}", tag = "rooms",
    params(
        ("roomId" = String, Path, description = "The room"),
        ("limit" = Option<i64>, Query, description = "At most this many members (default 100, at most 1000; 0: the occupancy alone)"),
        ("after" = Option<uuid::Uuid>, Query, description = "Members after this user id (the previous page's `next`)"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag of the last answer"),
    ),
    responses(
        (status = 200, description = "The occupancy and one page of members", body = RoomBody, headers(("ETag" = String, description = "Tag of this body"), ("Cache-Control" = String, description = "private, no-cache"))),
        (status = 304, description = "Unchanged since the ETag sent"),
        CommonErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn get_room(
    caller: RoomCaller,
    path: web::Path<String>,
    page: web::Query<PageQuery>,
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let room = granted_room(&caller, &path, true)?;
    let page = page.page_from(0, DEFAULT_ROOM_PAGE, MAX_ROOM_PAGE)?;
    let now = state.clock.now();
    let members = state.rooms.members(&room, now).await?;
    let users: Vec<UserId> = members.iter().map(|member| member.user_id).collect();
    // Whom the caller may see, with their rows: a service sees everyone as
    // they are (each member's self view); a user sees no one hidden from them.
    let (viewer, visible): (Option<UserId>, Vec<Visible>) = if caller.service {
        let rows = state.statuses.fetch_rows(&users).await?;
        let visible = members
            .iter()
            .zip(rows)
            .map(|(member, row)| (member, row, None))
            .collect();
        (None, visible)
    } else {
        let viewer = caller.user()?;
        let rows = state.statuses.fetch_many_for(viewer, &users).await?;
        let visible = members
            .iter()
            .zip(rows)
            .filter(|(member, (row, hidden))| {
                let invisible = row.as_ref().is_some_and(|row| row.invisible);
                hidden.is_none() && !(invisible && member.user_id != viewer)
            })
            .map(|(member, (row, hidden))| (member, row, hidden))
            .collect();
        (Some(viewer), visible)
    };
    let limit = usize::try_from(page.limit).unwrap_or_default();
    // Only the page's statuses are computed: `limit=0` computes none.
    let views: Vec<(&RoomMember, EffectiveStatus)> = visible
        .iter()
        .filter(|(member, ..)| page.after.is_none_or(|after| member.user_id > after))
        .take(limit)
        .map(|(member, row, hidden)| {
            let view = calculate_effective_status(
                member.user_id,
                row.as_deref(),
                viewer.unwrap_or(member.user_id),
                *hidden,
                now,
                &state.thresholds,
            );
            (*member, view)
        })
        .collect();
    let ids: Vec<UserId> = views.iter().map(|(member, _)| member.user_id).collect();
    let body = RoomBody {
        room_id: room.as_str(),
        occupancy: visible.len(),
        members: views
            .iter()
            .map(|(member, view)| RoomMemberBody {
                user_id: member.user_id,
                status: view.status,
                last_seen: view.last_seen.map(Timestamp),
                status_message: view.status_message.as_deref(),
                platforms: view.platforms,
                state: member.state.as_ref(),
                typing: member.typing,
                joined_at: Timestamp(member.joined_at),
            })
            .collect(),
        next: page.next(&ids),
    };
    conditional_json(&request, &body)
}

/// One room the caller is in.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CallerRoom)]
pub struct CallerRoomBody {
    /// The room.
    room_id: String,
    /// The caller's devices in it, in id order.
    device_ids: Vec<String>,
    /// When the caller's earliest live membership there started.
    #[schema(value_type = String, format = DateTime)]
    joined_at: Timestamp,
}

/// The caller's rooms.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CallerRooms)]
pub struct CallerRoomsBody {
    /// The rooms in which the caller has a live membership, in room id order.
    rooms: Vec<CallerRoomBody>,
}

/// `GET /api/rooms`: the rooms the caller is in.
#[utoipa::path(
    get, path = "/api/rooms", tag = "rooms",
    params(
        ("If-None-Match" = Option<String>, Header, description = "The ETag of the last answer"),
    ),
    responses(
        (status = 200, description = "The caller's rooms", body = CallerRoomsBody, headers(("ETag" = String, description = "Tag of this body"), ("Cache-Control" = String, description = "private, no-cache"))),
        (status = 304, description = "Unchanged since the ETag sent"),
        CommonErrors,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn get_rooms(
    caller: RoomCaller,
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = caller.user()?;
    let rooms = state.rooms.rooms_of(user, state.clock.now()).await?;
    conditional_json(
        &request,
        &CallerRoomsBody {
            rooms: rooms
                .into_iter()
                .map(|room| CallerRoomBody {
                    room_id: room.room_id,
                    device_ids: room.device_ids,
                    joined_at: Timestamp(room.joined_at),
                })
                .collect(),
        },
    )
}

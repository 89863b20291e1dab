//! Room memberships (see `sql/rooms.sql`): join and renew, leave, a device's
//! sign-out, the room read, the caller's rooms, and the prune.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use sqlx::PgExecutor;
use sqlx::postgres::types::PgInterval;

use crate::domain::{DeviceId, Patch, RoomId, RoomPing, UserId};

/// How memberships are timed and capped.
#[derive(Debug, Clone, Copy)]
pub struct RoomRules {
    /// A membership not renewed for this long ends.
    pub timeout: TimeDelta,
    /// How long `typing: true` shows unless renewed.
    pub typing_ttl: TimeDelta,
    /// The most rooms one device is in at once.
    pub max_rooms_per_device: u32,
}

/// What a room ping did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomPingOutcome {
    /// The device was not in the room (or its membership had ended): it is now.
    Joined,
    /// A renewal that changed what the room shows (state, typing).
    Changed,
    /// A renewal that changed nothing the room shows.
    Renewed,
    /// The device is already in as many rooms as allowed: nothing written.
    TooMany,
}

/// A device's membership as a room ping left it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomPingWritten {
    /// What the ping did.
    pub outcome: RoomPingOutcome,
    /// When the membership started.
    pub joined_at: DateTime<Utc>,
    /// The device's state in the room.
    pub state: Option<Value>,
    /// Typing until then, if at all.
    pub typing_until: Option<DateTime<Utc>>,
}

/// One membership, as a room read returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    /// The member.
    pub user_id: UserId,
    /// The member's device.
    pub device_id: String,
    /// When the membership started.
    pub joined_at: DateTime<Utc>,
    /// Its last join or renewal.
    pub renewed_at: DateTime<Utc>,
    /// The device's state in the room.
    pub state: Option<Value>,
    /// When the device last set its state.
    pub state_set_at: Option<DateTime<Utc>>,
    /// Typing until then, if at all.
    pub typing_until: Option<DateTime<Utc>>,
}

/// A room a user is in, with their devices there.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRoom {
    /// The room.
    pub room_id: String,
    /// The user's devices with a live membership there, in id order.
    pub device_ids: Vec<String>,
    /// The earliest of those memberships' starts.
    pub joined_at: DateTime<Utc>,
}

fn interval(delta: TimeDelta) -> Result<PgInterval, sqlx::Error> {
    PgInterval::try_from(delta).map_err(sqlx::Error::Encode)
}

/// Joins or renews `user`'s membership of `room` at `at`, as `ping` asks, in one call.
pub async fn room_ping(
    executor: impl PgExecutor<'_>,
    room: &RoomId,
    user: UserId,
    ping: &RoomPing,
    at: DateTime<Utc>,
    rules: RoomRules,
) -> Result<RoomPingWritten, sqlx::Error> {
    let (set_state, state) = match &ping.state {
        Patch::Absent => (false, None),
        Patch::Null => (true, None),
        Patch::Value(state) => (true, Some(state.clone())),
    };
    let record = sqlx::query!(
        r#"
        select outcome as "outcome!", joined_at, state, typing_until
        from room_ping($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        "#,
        room.as_str(),
        user.as_uuid(),
        ping.device.as_str(),
        at,
        set_state,
        state,
        ping.typing,
        interval(rules.timeout)?,
        interval(rules.typing_ttl)?,
        i32::try_from(rules.max_rooms_per_device).unwrap_or(i32::MAX),
    )
    .fetch_one(executor)
    .await?;
    let outcome = match record.outcome.as_str() {
        "joined" => RoomPingOutcome::Joined,
        "changed" => RoomPingOutcome::Changed,
        "renewed" => RoomPingOutcome::Renewed,
        _ => RoomPingOutcome::TooMany,
    };
    Ok(RoomPingWritten {
        outcome,
        joined_at: record.joined_at.unwrap_or(at),
        state: record.state,
        typing_until: record.typing_until,
    })
}

/// `user`'s `device` leaves `room`; `true` if it had a live membership there.
pub async fn leave_room(
    executor: impl PgExecutor<'_>,
    room: &RoomId,
    user: UserId,
    device: &DeviceId,
    at: DateTime<Utc>,
    timeout: TimeDelta,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select leave_room($1, $2, $3, $4, $5) as "left!""#,
        room.as_str(),
        user.as_uuid(),
        device.as_str(),
        at,
        interval(timeout)?,
    )
    .fetch_one(executor)
    .await
}

/// `user`'s `device` signs out: it leaves every room; returns the rooms it was in.
pub async fn leave_rooms_of_device(
    executor: impl PgExecutor<'_>,
    user: UserId,
    device: &DeviceId,
    at: DateTime<Utc>,
    timeout: TimeDelta,
) -> Result<Vec<RoomId>, sqlx::Error> {
    let rooms = sqlx::query_scalar!(
        r#"select room as "room!" from leave_rooms_of_device($1, $2, $3, $4) as room"#,
        user.as_uuid(),
        device.as_str(),
        at,
        interval(timeout)?,
    )
    .fetch_all(executor)
    .await?;
    // Stored ids passed the same check (the table's constraint) when written.
    Ok(rooms
        .iter()
        .filter_map(|room| RoomId::parse(room).ok())
        .collect())
}

/// The memberships of `room` renewed after `renewed_after`, in user and device order.
pub async fn fetch_room_members(
    executor: impl PgExecutor<'_>,
    room: &RoomId,
    renewed_after: DateTime<Utc>,
) -> Result<Vec<Membership>, sqlx::Error> {
    let records = sqlx::query!(
        r#"
        select user_id, device_id, joined_at, renewed_at, state, state_set_at, typing_until
        from room_members
        where room_id = $1 and renewed_at > $2
        order by user_id, device_id
        "#,
        room.as_str(),
        renewed_after,
    )
    .fetch_all(executor)
    .await?;
    Ok(records
        .into_iter()
        .map(|record| Membership {
            user_id: UserId::from(record.user_id),
            device_id: record.device_id,
            joined_at: record.joined_at,
            renewed_at: record.renewed_at,
            state: record.state,
            state_set_at: record.state_set_at,
            typing_until: record.typing_until,
        })
        .collect())
}

/// The rooms in which `user` has a membership renewed after `renewed_after`, in room id order.
pub async fn fetch_rooms_of_user(
    executor: impl PgExecutor<'_>,
    user: UserId,
    renewed_after: DateTime<Utc>,
) -> Result<Vec<UserRoom>, sqlx::Error> {
    let records = sqlx::query!(
        r#"
        select room_id,
               array_agg(device_id order by device_id) as "device_ids!",
               min(joined_at) as "joined_at!"
        from room_members
        where user_id = $1 and renewed_at > $2
        group by room_id
        order by room_id
        "#,
        user.as_uuid(),
        renewed_after,
    )
    .fetch_all(executor)
    .await?;
    Ok(records
        .into_iter()
        .map(|record| UserRoom {
            room_id: record.room_id,
            device_ids: record.device_ids,
            joined_at: record.joined_at,
        })
        .collect())
}

/// Removes the memberships that ended at or before `before`; returns how many.
pub async fn prune_room_members(
    executor: impl PgExecutor<'_>,
    before: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let removed = sqlx::query_scalar!(r#"select prune_room_members($1) as "removed!""#, before)
        .fetch_one(executor)
        .await?;
    Ok(u64::try_from(removed).unwrap_or_default())
}

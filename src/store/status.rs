use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use sqlx::postgres::types::PgInterval;
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::{DeviceId, ManualStatus, Ping, SettingChange, UserId};
use crate::presence::{Hidden, StoredDevice, StoredStatus, Thresholds};

/// A `user_status` row as the queries return it.
struct StatusRecord {
    user_id: Uuid,
    manual_status: Option<ManualStatus>,
    manual_status_until: Option<DateTime<Utc>>,
    invisible: bool,
    last_seen_before_invisible: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    status_message: Option<String>,
    status_message_until: Option<DateTime<Utc>>,
    devices: Json<Vec<StoredDevice>>,
}

impl From<StatusRecord> for StoredStatus {
    fn from(record: StatusRecord) -> Self {
        let mut status = Self {
            user_id: UserId::from(record.user_id),
            manual_status: record.manual_status,
            manual_status_until: record.manual_status_until,
            invisible: record.invisible,
            last_seen_before_invisible: record.last_seen_before_invisible,
            last_seen: record.last_seen,
            status_message: record.status_message,
            status_message_until: record.status_message_until,
            devices: record.devices.0,
        };
        // The stored order can lag behind coalesced pings; readers get it exact.
        status.sort_devices();
        status
    }
}

/// One user's stored presence, `None` if they never pinged.
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user))]
pub async fn fetch_status(
    executor: impl PgExecutor<'_>,
    user: UserId,
) -> Result<Option<StoredStatus>, sqlx::Error> {
    let record = sqlx::query_as!(
        StatusRecord,
        r#"
        select user_id, manual_status as "manual_status: ManualStatus", manual_status_until,
               invisible, last_seen_before_invisible, last_seen, status_message,
               status_message_until, devices as "devices: Json<Vec<StoredDevice>>"
        from user_status
        where user_id = $1
        "#,
        user.as_uuid(),
    )
    .fetch_optional(executor)
    .await?;
    Ok(record.map(StoredStatus::from))
}

/// The stored presence of every user in `users` that has a row, in one round trip.
#[tracing::instrument(level = "debug", skip_all, fields(users = users.len()))]
pub async fn fetch_statuses(
    executor: impl PgExecutor<'_>,
    users: &[UserId],
) -> Result<Vec<StoredStatus>, sqlx::Error> {
    let ids: Vec<Uuid> = users.iter().map(UserId::as_uuid).collect();
    let records = sqlx::query_as!(
        StatusRecord,
        r#"
        select user_id, manual_status as "manual_status: ManualStatus", manual_status_until,
               invisible, last_seen_before_invisible, last_seen, status_message,
               status_message_until, devices as "devices: Json<Vec<StoredDevice>>"
        from user_status
        where user_id = any($1)
        "#,
        &ids,
    )
    .fetch_all(executor)
    .await?;
    Ok(records.into_iter().map(StoredStatus::from).collect())
}

/// Timestamps of pings answered without a write, to be written later in one batch.
#[derive(Debug, Default)]
pub struct PendingPings {
    /// The user of each ping.
    pub users: Vec<Uuid>,
    /// The device of each ping.
    pub devices: Vec<String>,
    /// The latest ping of that device.
    pub last_pings: Vec<DateTime<Utc>>,
    /// The latest activity of that device, if any ping was one.
    pub last_actives: Vec<Option<DateTime<Utc>>>,
}

/// Writes held-back ping timestamps of many users in one statement; returns the new rows.
///
/// Timestamps only move forward (`greatest`), and a device removed meanwhile
/// stays removed: only entries still in the list are touched.
#[tracing::instrument(level = "debug", skip_all, fields(pings = pending.users.len()))]
pub async fn apply_pending_pings(
    executor: impl PgExecutor<'_>,
    pending: &PendingPings,
) -> Result<Vec<StoredStatus>, sqlx::Error> {
    let records = sqlx::query_as!(
        StatusRecord,
        r#"
        with pings as (
            select p.user_id,
                   jsonb_object_agg(p.device_id, jsonb_build_object(
                       'lastPing', p.last_ping, 'lastActive', p.last_active)) as devices,
                   max(p.last_active) as last_active
            from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[])
                as p(user_id, device_id, last_ping, last_active)
            group by p.user_id
        )
        update user_status as s
        set devices = (
                select coalesce(jsonb_agg(
                    case when pings.devices ? (e.device ->> 'id') then
                        e.device || jsonb_build_object(
                            'lastPing', greatest(
                                (e.device ->> 'lastPing')::timestamptz,
                                (pings.devices -> (e.device ->> 'id') ->> 'lastPing')::timestamptz),
                            'lastActive', greatest(
                                (e.device ->> 'lastActive')::timestamptz,
                                (pings.devices -> (e.device ->> 'id') ->> 'lastActive')::timestamptz))
                    else e.device end
                    order by e.position), '[]'::jsonb)
                from jsonb_array_elements(s.devices) with ordinality as e(device, position)),
            last_seen = greatest(s.last_seen, pings.last_active),
            updated_at = now()
        from pings
        where s.user_id = pings.user_id
        returning s.user_id, s.manual_status as "manual_status: ManualStatus", s.manual_status_until,
                  s.invisible, s.last_seen_before_invisible, s.last_seen, s.status_message,
                  s.status_message_until, s.devices as "devices!: Json<Vec<StoredDevice>>"
        "#,
        &pending.users,
        &pending.devices,
        &pending.last_pings,
        &pending.last_actives as &[Option<DateTime<Utc>>],
    )
    .fetch_all(executor)
    .await?;
    Ok(records.into_iter().map(StoredStatus::from).collect())
}

/// Records a ping at `now` and applies its settings, in one atomic upsert; returns the new row.
///
/// The device list is rebuilt inside the statement from the locked row, so
/// concurrent pings of one user serialize on that row and none is lost. The
/// pinging device goes first; the others follow most recently pinged first,
/// cut to `max_devices` (so the least recently seen one makes room).
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user, device.id = %ping.device_id))]
pub async fn apply_ping(
    executor: impl PgExecutor<'_>,
    user: UserId,
    ping: &Ping,
    now: DateTime<Utc>,
    max_devices: u32,
) -> Result<StoredStatus, sqlx::Error> {
    let (set_manual, manual_status, manual_until, drop_manual_expiry) = match &ping.manual_status {
        SettingChange::Keep => (false, None, None, false),
        SettingChange::Set { value, until } => (true, *value, *until, false),
        SettingChange::DropExpiry => (false, None, None, true),
    };
    let (set_message, message, message_until, drop_message_expiry) = match &ping.status_message {
        SettingChange::Keep => (false, None, None, false),
        SettingChange::Set { value, until } => (
            true,
            value.as_ref().map(|message| message.as_str()),
            *until,
            false,
        ),
        SettingChange::DropExpiry => (false, None, None, true),
    };
    let record = sqlx::query_as!(
        StatusRecord,
        r#"
        insert into user_status as s (
            user_id, manual_status, manual_status_until, invisible, last_seen,
            status_message, status_message_until, devices)
        values (
            $1,
            case when $7::boolean then $8::text end,
            case when $7::boolean then $9::timestamptz end,
            coalesce($11::boolean, false),
            $5::timestamptz,
            case when $12::boolean then $13::text end,
            case when $12::boolean then $14::timestamptz end,
            jsonb_build_array(jsonb_build_object(
                'id', $2::text,
                'platform', coalesce($3::text, 'web'),
                'lastPing', $5::timestamptz,
                'lastActive', $5::timestamptz)))
        on conflict (user_id) do update set
            manual_status = case when $7 then $8 else s.manual_status end,
            manual_status_until = case
                when $7 then $9
                when $10::boolean then null
                else s.manual_status_until end,
            invisible = coalesce($11, s.invisible),
            -- Settings apply before the ping's activity: switching invisible
            -- on freezes lastSeen without this very ping.
            last_seen_before_invisible = case
                when $11 is null then s.last_seen_before_invisible
                when not $11 then null
                when s.invisible then s.last_seen_before_invisible
                else s.last_seen end,
            last_seen = case
                when $4::boolean or not s.devices @> jsonb_build_array(jsonb_build_object('id', $2))
                then greatest(s.last_seen, $5)
                else s.last_seen end,
            status_message = case when $12 then $13 else s.status_message end,
            status_message_until = case
                when $12 then $14
                when $15::boolean then null
                else s.status_message_until end,
            devices = (
                select jsonb_agg(kept.device order by kept.rank)
                from (
                    select jsonb_build_object(
                               'id', $2,
                               'platform', coalesce($3, previous.device ->> 'platform', 'web'),
                               'lastPing', $5,
                               'lastActive', case
                                   when $4 or previous.device is null then to_jsonb($5)
                                   else previous.device -> 'lastActive' end) as device,
                           0::bigint as rank
                    from (select) as pinging
                    left join lateral (
                        select e.device
                        from jsonb_array_elements(s.devices) as e(device)
                        where e.device ->> 'id' = $2
                        limit 1
                    ) as previous on true
                    union all
                    select e.device,
                           row_number() over (order by (e.device ->> 'lastPing')::timestamptz desc)
                    from jsonb_array_elements(s.devices) as e(device)
                    where e.device ->> 'id' <> $2
                    order by rank
                    limit $6::bigint
                ) as kept),
            updated_at = now()
        returning user_id, manual_status as "manual_status: ManualStatus", manual_status_until,
                  invisible, last_seen_before_invisible, last_seen, status_message,
                  status_message_until, devices as "devices!: Json<Vec<StoredDevice>>"
        "#,
        user.as_uuid(),
        ping.device_id.as_str(),
        ping.platform.map(|platform| platform.as_str()),
        ping.active,
        now,
        i64::from(max_devices),
        set_manual,
        manual_status.map(|status| status.as_str()),
        manual_until,
        drop_manual_expiry,
        ping.invisible,
        set_message,
        message,
        message_until,
        drop_message_expiry,
    )
    .fetch_one(executor)
    .await?;
    Ok(record.into())
}

/// Removes one device of `user` at once; `false` if the user has no such device.
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user, device.id = %device))]
pub async fn remove_device(
    executor: impl PgExecutor<'_>,
    user: UserId,
    device: &DeviceId,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query!(
        r#"
        update user_status as s
        set devices = (
                select coalesce(jsonb_agg(e.device order by e.position), '[]'::jsonb)
                from jsonb_array_elements(s.devices) with ordinality as e(device, position)
                where e.device ->> 'id' <> $2),
            updated_at = now()
        where user_id = $1
          and devices @> jsonb_build_array(jsonb_build_object('id', $2::text))
        "#,
        user.as_uuid(),
        device.as_str(),
    )
    .execute(executor)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// How many users are in each effective status at `now`, as anyone but the user
/// sees them: an invisible user counts as offline (for the metrics).
///
/// The same rules as `calculate_effective_status`, in SQL, over the whole
/// table: one sequential scan, run in the background, never per scrape.
pub async fn count_users_by_status(
    executor: impl PgExecutor<'_>,
    now: DateTime<Utc>,
    thresholds: &Thresholds,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let interval =
        |delta: chrono::TimeDelta| PgInterval::try_from(delta).map_err(sqlx::Error::Encode);
    let rows = sqlx::query!(
        r#"
        select status as "status!", count(*) as "users!"
        from (
            select case
                when not exists (
                    select 1 from jsonb_array_elements(devices) as e(device)
                    where (e.device ->> 'lastPing')::timestamptz > $1::timestamptz - $2::interval)
                    then 'offline'
                when invisible then 'offline'
                when manual_status is not null
                     and (manual_status_until is null or manual_status_until > $1::timestamptz)
                    then manual_status
                when last_seen > $1::timestamptz - $3::interval then 'online'
                when last_seen > $1::timestamptz - $4::interval then 'idle'
                else 'away'
            end as status
            from user_status
        ) as statuses
        group by status
        "#,
        now,
        interval(thresholds.offline_after)?,
        interval(thresholds.idle_after)?,
        interval(thresholds.away_after)?,
    )
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.status, row.users))
        .collect())
}

/// A `user_status` row with what blocks say about showing it to one viewer.
struct StatusForViewerRecord {
    user_id: Uuid,
    manual_status: Option<ManualStatus>,
    manual_status_until: Option<DateTime<Utc>>,
    invisible: bool,
    last_seen_before_invisible: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    status_message: Option<String>,
    status_message_until: Option<DateTime<Utc>>,
    devices: Json<Vec<StoredDevice>>,
    hidden: bool,
    hidden_last_seen: Option<DateTime<Utc>>,
}

/// The rows of `users`, each with the block (either way) between its user and
/// `viewer`, if any: what a read needs when nothing is cached, in one round trip.
#[tracing::instrument(level = "debug", skip_all, fields(users = users.len()))]
pub async fn fetch_statuses_for_viewer(
    executor: impl PgExecutor<'_>,
    viewer: UserId,
    users: &[UserId],
) -> Result<Vec<(StoredStatus, Option<Hidden>)>, sqlx::Error> {
    let ids: Vec<Uuid> = users.iter().map(UserId::as_uuid).collect();
    let records = sqlx::query_as!(
        StatusForViewerRecord,
        r#"
        select s.user_id, s.manual_status as "manual_status: ManualStatus", s.manual_status_until,
               s.invisible, s.last_seen_before_invisible, s.last_seen, s.status_message,
               s.status_message_until, s.devices as "devices: Json<Vec<StoredDevice>>",
               pair.hidden as "hidden!", pair.last_seen as hidden_last_seen
        from user_status as s
        cross join lateral (
            -- Blocked both ways: hidden since the earlier block (a null, never seen, is earliest).
            select count(*) > 0 as hidden,
                   case when bool_or(shown is null) then null else min(shown) end as last_seen
            from (
                select b.blocked_last_seen as shown from blocks as b
                where b.blocker_id = $1 and b.blocked_id = s.user_id
                union all
                select b.blocker_last_seen from blocks as b
                where b.blocker_id = s.user_id and b.blocked_id = $1
            ) as blocks_between
        ) as pair
        where s.user_id = any($2)
        "#,
        viewer.as_uuid(),
        &ids,
    )
    .fetch_all(executor)
    .await?;
    Ok(records
        .into_iter()
        .map(|record| {
            let hidden = record.hidden.then_some(Hidden {
                last_seen: record.hidden_last_seen,
            });
            let status = StatusRecord {
                user_id: record.user_id,
                manual_status: record.manual_status,
                manual_status_until: record.manual_status_until,
                invisible: record.invisible,
                last_seen_before_invisible: record.last_seen_before_invisible,
                last_seen: record.last_seen,
                status_message: record.status_message,
                status_message_until: record.status_message_until,
                devices: record.devices,
            };
            (StoredStatus::from(status), hidden)
        })
        .collect())
}

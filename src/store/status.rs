use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::postgres::types::PgInterval;
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor};
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
    version: i64,
}

/// The [`StatusRecord`] inside a wider record of the same columns (`query!`
/// and `query_as!` cannot flatten one struct into another): the one mapping
/// of the status columns for every statement that returns more than them.
macro_rules! status_record {
    ($record:expr) => {
        StatusRecord {
            user_id: $record.user_id,
            manual_status: $record.manual_status,
            manual_status_until: $record.manual_status_until,
            invisible: $record.invisible,
            last_seen_before_invisible: $record.last_seen_before_invisible,
            last_seen: $record.last_seen,
            status_message: $record.status_message,
            status_message_until: $record.status_message_until,
            devices: $record.devices,
            version: $record.version,
        }
    };
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
            version: record.version,
        };
        // The prune job keeps the stored order; readers get it by last ping.
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
               status_message_until, devices as "devices: Json<Vec<StoredDevice>>", version
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
               status_message_until, devices as "devices: Json<Vec<StoredDevice>>", version
        from user_status
        where user_id = any($1)
        "#,
        &ids,
    )
    .fetch_all(executor)
    .await?;
    Ok(records.into_iter().map(StoredStatus::from).collect())
}

/// One ping to record, with the settings it changes: what [`apply_pings`] takes.
#[derive(Debug, Clone)]
pub struct PingWrite {
    /// Whose ping.
    pub user: UserId,
    /// The ping and its settings.
    pub ping: Ping,
    /// When it was taken.
    pub at: DateTime<Utc>,
}

/// One ping as `apply_pings` takes it: the SQL type `ping_input`, defined
/// by its migration, field for field in the same order.
#[derive(sqlx::Type)]
#[sqlx(type_name = "ping_input")]
struct PingInput {
    user_id: Uuid,
    device_id: String,
    platform: Option<String>,
    active: bool,
    at: DateTime<Utc>,
    set_manual: bool,
    manual_status: Option<String>,
    manual_until: Option<DateTime<Utc>>,
    drop_manual_expiry: bool,
    invisible: Option<bool>,
    set_message: bool,
    message: Option<String>,
    message_until: Option<DateTime<Utc>>,
    drop_message_expiry: bool,
}

impl From<&PingWrite> for PingInput {
    fn from(PingWrite { user, ping, at }: &PingWrite) -> Self {
        let (set_manual, manual_status, manual_until, drop_manual_expiry) =
            match &ping.manual_status {
                SettingChange::Keep => (false, None, None, false),
                SettingChange::Set { value, until } => (
                    true,
                    value.map(|status| status.as_str().to_owned()),
                    *until,
                    false,
                ),
                SettingChange::DropExpiry => (false, None, None, true),
            };
        let (set_message, message, message_until, drop_message_expiry) = match &ping.status_message
        {
            SettingChange::Keep => (false, None, None, false),
            SettingChange::Set { value, until } => (
                true,
                value.as_ref().map(|message| message.as_str().to_owned()),
                *until,
                false,
            ),
            SettingChange::DropExpiry => (false, None, None, true),
        };
        Self {
            user_id: user.as_uuid(),
            device_id: ping.device_id.as_str().to_owned(),
            platform: ping.platform.map(|platform| platform.as_str().to_owned()),
            active: ping.active,
            at: *at,
            set_manual,
            manual_status,
            manual_until,
            drop_manual_expiry,
            invisible: ping.invisible,
            set_message,
            message,
            message_until,
            drop_message_expiry,
        }
    }
}

/// Records pings and their settings (see `sql/apply_pings.sql`); returns, for
/// each ping in order, the row as it left it.
///
/// One call of the SQL function, so one round trip and one commit, when every
/// ping is of a different user, as nearly always; otherwise one call per round
/// of distinct users, in arrival order. New users are inserted first, then
/// the other rows locked and updated, each in ascending user id order, so
/// calls never deadlock; a ping the call returns no row for is sent again in
/// the next round. Every written row is announced on the change channel.
#[tracing::instrument(level = "debug", skip_all, fields(pings = writes.len()))]
pub async fn apply_pings(
    connection: &mut PgConnection,
    writes: &[PingWrite],
    max_devices: u32,
) -> Result<Vec<StoredStatus>, sqlx::Error> {
    let mut written: Vec<Option<StoredStatus>> = vec![None; writes.len()];
    let mut pending: Vec<usize> = (0..writes.len()).collect();
    // Each call writes at least the first pending ping but for a lost race,
    // which cannot happen twice to one ping: this bounds the calls.
    for _ in 0..=2 * writes.len() {
        if pending.is_empty() {
            break;
        }
        let mut users = HashSet::with_capacity(pending.len());
        let (round, later): (Vec<usize>, Vec<usize>) = pending
            .iter()
            .partition(|index| users.insert(writes[**index].user));
        let batch: Vec<&PingWrite> = round.iter().map(|index| &writes[*index]).collect();
        for (ordinal, row) in apply_ping_round(&mut *connection, &batch, max_devices).await? {
            if let Some(index) = usize::try_from(ordinal - 1)
                .ok()
                .and_then(|at| round.get(at))
            {
                written[*index] = Some(row);
            }
        }
        pending = round
            .into_iter()
            .filter(|index| written[*index].is_none())
            .chain(later)
            .collect();
        pending.sort_unstable();
    }
    written
        .into_iter()
        .map(|row| row.ok_or(sqlx::Error::RowNotFound))
        .collect()
}

/// One call of `apply_pings` for pings of distinct users: (1-based position, row) for each written.
async fn apply_ping_round(
    executor: impl PgExecutor<'_>,
    writes: &[&PingWrite],
    max_devices: u32,
) -> Result<Vec<(i32, StoredStatus)>, sqlx::Error> {
    let pings: Vec<PingInput> = writes.iter().map(|write| PingInput::from(*write)).collect();
    let records = sqlx::query!(
        r#"
        select ordinal as "ordinal!", user_id as "user_id!",
               manual_status as "manual_status: ManualStatus",
               manual_status_until, invisible as "invisible!", last_seen_before_invisible,
               last_seen, status_message, status_message_until,
               devices as "devices!: Json<Vec<StoredDevice>>", version as "version!"
        from apply_pings($1, $2)
        "#,
        &pings as &[PingInput],
        i32::try_from(max_devices).unwrap_or(i32::MAX),
    )
    .fetch_all(executor)
    .await?;
    Ok(records
        .into_iter()
        .map(|record| {
            let status = status_record!(record);
            (record.ordinal, StoredStatus::from(status))
        })
        .collect())
}

/// Records one ping at `at` with its settings (as [`apply_pings`]); returns the new row.
pub async fn apply_ping(
    connection: &mut PgConnection,
    user: UserId,
    ping: &Ping,
    at: DateTime<Utc>,
    max_devices: u32,
) -> Result<StoredStatus, sqlx::Error> {
    let write = PingWrite {
        user,
        ping: ping.clone(),
        at,
    };
    apply_pings(connection, std::slice::from_ref(&write), max_devices)
        .await?
        .pop()
        .ok_or(sqlx::Error::RowNotFound)
}

/// Removes one device of `user` at `at` (the sign-out, which history
/// records); the row as it now stands, `None` if the user has no such device.
/// The change is announced on the change channel. One call of
/// `sql/remove_device.sql`: one round trip.
#[tracing::instrument(level = "debug", skip_all, fields(user.id = %user, device.id = %device))]
pub async fn remove_device(
    executor: impl PgExecutor<'_>,
    user: UserId,
    device: &DeviceId,
    at: DateTime<Utc>,
) -> Result<Option<StoredStatus>, sqlx::Error> {
    let record = sqlx::query_as!(
        StatusRecord,
        r#"
        select user_id as "user_id!", manual_status as "manual_status: ManualStatus",
               manual_status_until, invisible as "invisible!", last_seen_before_invisible,
               last_seen, status_message, status_message_until,
               devices as "devices!: Json<Vec<StoredDevice>>", version as "version!"
        from remove_device($1, $2, $3)
        "#,
        user.as_uuid(),
        device.as_str(),
        at,
    )
    .fetch_optional(executor)
    .await?;
    Ok(record.map(StoredStatus::from))
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

/// The rows of `users`, each with the block (either way) between its user and
/// `viewer`, if any: what a read needs when nothing is cached, in one round trip.
#[tracing::instrument(level = "debug", skip_all, fields(users = users.len()))]
pub async fn fetch_statuses_for_viewer(
    executor: impl PgExecutor<'_>,
    viewer: UserId,
    users: &[UserId],
) -> Result<Vec<(StoredStatus, Option<Hidden>)>, sqlx::Error> {
    let ids: Vec<Uuid> = users.iter().map(UserId::as_uuid).collect();
    let records = sqlx::query!(
        r#"
        with hidden as materialized (
            -- The viewer's own rows about exactly these users: one index scan
            -- of one key, whatever else the viewer blocks or is blocked by.
            select b.other_id, b.other_last_seen from user_blocks as b
            where b.user_id = $1 and b.other_id = any($2)
        )
        select s.user_id, s.manual_status as "manual_status: ManualStatus", s.manual_status_until,
               s.invisible, s.last_seen_before_invisible, s.last_seen, s.status_message,
               s.status_message_until, s.devices as "devices: Json<Vec<StoredDevice>>", s.version,
               h.other_id is not null as "hidden!", h.other_last_seen as hidden_last_seen
        from user_status as s
        left join hidden as h on h.other_id = s.user_id
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
            let status = status_record!(record);
            (StoredStatus::from(status), hidden)
        })
        .collect())
}

//! Presence history: its settings, one user's records over a range, who was
//! live at an instant, and retention.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::types::PgInterval;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use crate::domain::{ManualStatus, Platform, UserId};
use crate::presence::StoredStatus;
use crate::presence::history::{ActivitySpan, HistoryRecords, ManualSetting, Session};

/// What the history trigger records with: whether it records, and the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistorySettings {
    /// `false` (`PRESENCE_HISTORY_RETENTION=0`): nothing is recorded.
    pub enabled: bool,
    /// A device whose last ping is this old is no longer live.
    pub offline_after: TimeDelta,
    /// A gap of at least this between two activities ends a span of activity.
    pub activity_split: TimeDelta,
}

fn interval(delta: TimeDelta) -> PgInterval {
    PgInterval {
        months: 0,
        days: 0,
        microseconds: delta.num_microseconds().unwrap_or(i64::MAX),
    }
}

/// Turns recording on or off with the server's thresholds (at start-up; see
/// `sql/history_trigger.sql`, which must be installed).
pub async fn record_history_settings(
    executor: impl PgExecutor<'_>,
    settings: &HistorySettings,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "select configure_history($1, $2, $3)",
        settings.enabled,
        interval(settings.offline_after),
        interval(settings.activity_split),
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// The history settings the database records with now.
pub async fn fetch_history_settings(
    executor: impl PgExecutor<'_>,
) -> Result<HistorySettings, sqlx::Error> {
    let record = sqlx::query!(
        "select enabled, offline_after, activity_split from history_settings where singleton"
    )
    .fetch_one(executor)
    .await?;
    let delta = |interval: PgInterval| {
        TimeDelta::microseconds(interval.microseconds) + TimeDelta::days(interval.days.into())
    };
    Ok(HistorySettings {
        enabled: record.enabled,
        offline_after: delta(record.offline_after),
        activity_split: delta(record.activity_split),
    })
}

/// When recording of `user`'s history began (or retention last cut it): their first session's start.
pub async fn history_start(
    executor: impl PgExecutor<'_>,
    user: UserId,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!(
        "select min(started_at) from device_sessions where user_id = $1",
        user.as_uuid()
    )
    .fetch_one(executor)
    .await
}

/// The history records of `user` over `[from, to)`, completed with the open
/// spans of `row` (the user's current row, read in the same snapshot).
///
/// Each query walks the user's own index entries, bounded by the range.
pub async fn fetch_history(
    connection: &mut PgConnection,
    user: UserId,
    row: Option<&StoredStatus>,
    active_since: Option<DateTime<Utc>>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    offline_after: TimeDelta,
) -> Result<HistoryRecords, sqlx::Error> {
    let sessions = sqlx::query!(
        r#"select device_id, platform as "platform: Platform", started_at, ended_at
           from device_sessions
           where user_id = $1 and started_at < $3 and (ended_at is null or ended_at > $2)
           order by started_at, device_id"#,
        user.as_uuid(),
        from,
        to,
    )
    .fetch_all(&mut *connection)
    .await?;
    let spans = sqlx::query!(
        r#"(select started_at, ended_at from activity_spans
            where user_id = $1 and started_at < $2
            order by started_at desc limit 1)
           union all
           (select started_at, ended_at from activity_spans
            where user_id = $1 and started_at < $3 and started_at >= $2)
           union all
           (select started_at, ended_at from activity_spans
            where user_id = $1 and started_at < $2 and ended_at >= $2)"#,
        user.as_uuid(),
        from,
        to,
    )
    .fetch_all(&mut *connection)
    .await?;
    let settings = sqlx::query!(
        r#"(select changed_at, manual_status as "manual_status: ManualStatus", manual_status_until
            from settings_changes
            where user_id = $1 and changed_at <= $2
            order by changed_at desc limit 1)
           union all
           (select changed_at, manual_status, manual_status_until
            from settings_changes
            where user_id = $1 and changed_at > $2 and changed_at < $3)"#,
        user.as_uuid(),
        from,
        to,
    )
    .fetch_all(&mut *connection)
    .await?;

    let device_end = |device_id: &str| {
        row.and_then(|row| row.devices.iter().find(|device| device.id == device_id))
            .map(|device| device.last_ping + offline_after)
    };
    let mut records = HistoryRecords {
        sessions: sessions
            .into_iter()
            .map(|session| {
                let to = session.ended_at.or_else(|| {
                    // Open: it lasts until the device's last ping plus the
                    // threshold (a device gone without a record ends where it began).
                    Some(device_end(&session.device_id).unwrap_or(session.started_at))
                });
                Session {
                    device_id: session.device_id,
                    platform: session.platform,
                    from: session.started_at,
                    to,
                }
            })
            .collect(),
        spans: spans
            .into_iter()
            .filter_map(|span| {
                Some(ActivitySpan {
                    from: span.started_at?,
                    to: span.ended_at?,
                })
            })
            .collect(),
        settings: settings
            .into_iter()
            .filter_map(|setting| {
                Some(ManualSetting {
                    at: setting.changed_at?,
                    status: setting.manual_status,
                    until: setting.manual_status_until,
                })
            })
            .collect(),
    };
    if let (Some(since), Some(last)) = (active_since, row.and_then(|row| row.last_seen)) {
        records.spans.push(ActivitySpan {
            from: since,
            to: last,
        });
    }
    records.spans.sort_by_key(|span| span.from);
    records.spans.dedup();
    Ok(records)
}

/// The start of the oldest session in the history (the schedule backfills stats from there).
pub async fn oldest_history(
    executor: impl PgExecutor<'_>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!("select min(started_at) from device_sessions")
        .fetch_one(executor)
        .await
}

/// The start of `user`'s open span of activity (`user_status.active_since`).
pub async fn active_since(
    executor: impl PgExecutor<'_>,
    user: UserId,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    Ok(sqlx::query_scalar!(
        "select active_since from user_status where user_id = $1",
        user.as_uuid()
    )
    .fetch_optional(executor)
    .await?
    .flatten())
}

/// How many users, as a multiple of the page, [`users_live_at`] walks in id
/// order before it collects the live sessions instead.
const WALK_PAGES: i64 = 2;

/// Below this many sessions live at the instant, as a multiple of the page,
/// [`users_live_at`] collects them all rather than walking the users.
const COLLECT_PAGES: i64 = 4;

/// The users with a live device at `at`, in ascending id order after `after`, at most `limit`.
///
/// An open session counts while its device's last ping plus the threshold is
/// after `at`. The sessions containing `at` are counted first, up to
/// `4 * limit` (the GiST index on their span stops there). Then:
/// - fewer: collect them and sort their users, O(log n + k) for k sessions;
/// - otherwise (a busy instant): walk the next `2 * limit` users in id order,
///   asking each whether one of its sessions contains `at` (one descent of the
///   (user, span) GiST index each), which fills the page whatever the number
///   online; if the walk falls short, collect the live sessions after the
///   walked users as above.
pub async fn users_live_at(
    connection: &mut PgConnection,
    at: DateTime<Utc>,
    after: Option<UserId>,
    limit: i64,
    offline_after: TimeDelta,
) -> Result<Vec<UserId>, sqlx::Error> {
    let cap = limit.saturating_mul(COLLECT_PAGES);
    let live_sessions = sqlx::query_scalar!(
        r#"select count(*) as "count!"
           from (select 1
                 from device_sessions as s
                 where tstzrange(s.started_at, s.ended_at, '[)') @> $1::timestamptz
                 limit $2) as live"#,
        at,
        cap,
    )
    .fetch_one(&mut *connection)
    .await?;
    if live_sessions < cap {
        return sessions_live_at(connection, at, after, limit, offline_after).await;
    }
    let window = limit.saturating_mul(WALK_PAGES);
    // The limit is the statement's own, with user_status in its FROM: Citus
    // refuses a correlated subquery over a FROM it must plan apart (such as a
    // subquery with a limit), and evaluates this one on each shard.
    let walked = sqlx::query!(
        r#"select u.user_id,
                  exists (
                      select 1
                      from device_sessions as s
                      where s.user_id = u.user_id
                        and tstzrange(s.started_at, s.ended_at, '[)') @> $1::timestamptz
                        and (s.ended_at is not null
                             or exists (
                                 select 1 from jsonb_array_elements(u.devices) as e(device)
                                 where e.device ->> 'id' = s.device_id
                                   and (e.device ->> 'lastPing')::timestamptz + $4 > $1))
                  ) as "live!"
           from user_status as u
           where $2::uuid is null or u.user_id > $2
           order by u.user_id
           limit $3"#,
        at,
        after.map(|user| user.as_uuid()) as Option<Uuid>,
        window,
        interval(offline_after),
    )
    .fetch_all(&mut *connection)
    .await?;
    let mut users: Vec<UserId> = walked
        .iter()
        .filter(|row| row.live)
        .map(|row| UserId::from(row.user_id))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect();
    let filled = i64::try_from(users.len()).unwrap_or(i64::MAX) >= limit;
    // Fewer rows than asked: every user after `after` was walked.
    let exhausted = i64::try_from(walked.len()).unwrap_or(i64::MAX) < window;
    if filled || exhausted {
        return Ok(users);
    }
    let last_walked = walked.last().map(|row| UserId::from(row.user_id)).or(after);
    let remaining = limit - i64::try_from(users.len()).unwrap_or(0);
    users.extend(sessions_live_at(connection, at, last_walked, remaining, offline_after).await?);
    Ok(users)
}

/// [`users_live_at`] from the sessions containing `at` (GiST index on their span).
async fn sessions_live_at(
    executor: impl PgExecutor<'_>,
    at: DateTime<Utc>,
    after: Option<UserId>,
    limit: i64,
    offline_after: TimeDelta,
) -> Result<Vec<UserId>, sqlx::Error> {
    // Materialized, so the planner takes the GiST index: walking the user id
    // index instead and filtering by time reads one scattered row per session.
    let users = sqlx::query_scalar!(
        r#"with live as materialized (
               select s.user_id, s.device_id, s.ended_at
               from device_sessions as s
               where tstzrange(s.started_at, s.ended_at, '[)') @> $1::timestamptz
                 and ($2::uuid is null or s.user_id > $2)
           )
           select l.user_id as "user_id!" from live as l where l.ended_at is not null
           union
           select l.user_id
           from live as l
           join user_status as u on u.user_id = l.user_id
           where l.ended_at is null
             and exists (select 1 from jsonb_array_elements(u.devices) as e(device)
                         where e.device ->> 'id' = l.device_id
                           and (e.device ->> 'lastPing')::timestamptz + $4 > $1)
           order by 1
           limit $3"#,
        at,
        after.map(|user| user.as_uuid()) as Option<Uuid>,
        limit,
        interval(offline_after),
    )
    .fetch_all(executor)
    .await?;
    Ok(users.into_iter().map(UserId::from).collect())
}

/// Deletes about `limit` history records that ended before `cutoff` (per
/// kind), through the indexes on their end: the cost of a call does not grow
/// with the table. A settings change is kept while it is still the one in
/// effect at the cutoff. Returns how many were deleted; call again while it
/// deletes `limit` of some kind.
///
/// One statement per kind, each its own transaction. Records are picked by
/// their keys (user id first), not by their place on disk, so that on Citus
/// each is a statement every shard runs (a record with the same key as a
/// picked one goes too: it ended before the cutoff as well).
pub async fn delete_history_before(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<HistoryDeleted, sqlx::Error> {
    let sessions = sqlx::query!(
        "delete from device_sessions
         where ended_at < $1
           and (user_id, device_id, started_at) in (
               select user_id, device_id, started_at from device_sessions
               where ended_at < $1 limit $2)",
        cutoff,
        limit,
    )
    .execute(pool)
    .await?
    .rows_affected();
    let spans = sqlx::query!(
        "delete from activity_spans
         where ended_at < $1
           and (user_id, started_at) in (
               select user_id, started_at from activity_spans where ended_at < $1 limit $2)",
        cutoff,
        limit,
    )
    .execute(pool)
    .await?
    .rows_affected();
    let rollups = sqlx::query!(
        "delete from history_rollups
         where starts_at < $1
           and (bucket, starts_at) in (
               select bucket, starts_at from history_rollups where starts_at < $1 limit $2)",
        cutoff,
        limit,
    )
    .execute(pool)
    .await?
    .rows_affected();
    let settings = sqlx::query!(
        "delete from settings_changes
         where changed_at < $1
           and (user_id, changed_at) in (
               select c.user_id, c.changed_at from settings_changes as c
               where c.changed_at < $1
                 and exists (select 1 from settings_changes as later
                             where later.user_id = c.user_id
                               and later.changed_at > c.changed_at
                               and later.changed_at <= $1)
               limit $2)",
        cutoff,
        limit,
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(HistoryDeleted {
        sessions,
        spans,
        settings,
        rollups,
    })
}

/// How many history records of each kind a retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryDeleted {
    /// Device sessions.
    pub sessions: u64,
    /// Stored stats of buckets.
    pub rollups: u64,
    /// Spans of activity.
    pub spans: u64,
    /// Settings changes.
    pub settings: u64,
}

impl HistoryDeleted {
    /// All records deleted.
    pub fn total(&self) -> u64 {
        self.sessions + self.spans + self.settings + self.rollups
    }

    /// Whether some kind filled the limit (more may be left).
    pub fn filled(&self, limit: i64) -> bool {
        let limit = u64::try_from(limit).unwrap_or(0);
        [self.sessions, self.spans, self.settings, self.rollups]
            .iter()
            .any(|deleted| *deleted >= limit)
    }
}

/// The stats of one bucket of history, as the admin stats route shows them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketStats {
    /// The bucket's first instant.
    pub start: DateTime<Utc>,
    /// Distinct users with an activity in the bucket.
    pub active_users: i64,
    /// Distinct users with a live device at some instant of it.
    pub connected_users: i64,
    /// Seconds in it during which each user had a live device, summed over users.
    pub connected_seconds: f64,
    /// Device sessions that started in it.
    pub sessions: i64,
}

/// The stats of `[start, end)` computed from the history records as known at
/// `at` (see `sql/history_stats.sql`).
pub async fn compute_bucket_stats(
    executor: impl PgExecutor<'_>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    offline_after: TimeDelta,
    at: DateTime<Utc>,
) -> Result<BucketStats, sqlx::Error> {
    let record = sqlx::query!(
        r#"select active_users as "active_users!", connected_users as "connected_users!",
                  connected_seconds as "connected_seconds!", sessions as "sessions!"
           from history_bucket_stats($1, $2, $3, $4)"#,
        start,
        end,
        interval(offline_after),
        at,
    )
    .fetch_one(executor)
    .await?;
    Ok(BucketStats {
        start,
        active_users: record.active_users,
        connected_users: record.connected_users,
        connected_seconds: record.connected_seconds,
        sessions: record.sessions,
    })
}

/// The stored stats of the final buckets of kind `bucket` (`hour` or `day`) among `starts`.
pub async fn fetch_rollups(
    executor: impl PgExecutor<'_>,
    bucket: &str,
    starts: &[DateTime<Utc>],
) -> Result<Vec<BucketStats>, sqlx::Error> {
    let records = sqlx::query!(
        "select starts_at, active_users, connected_users, connected_seconds, sessions
         from history_rollups where bucket = $1 and starts_at = any($2)",
        bucket,
        starts,
    )
    .fetch_all(executor)
    .await?;
    Ok(records
        .into_iter()
        .map(|record| BucketStats {
            start: record.starts_at,
            active_users: record.active_users,
            connected_users: record.connected_users,
            connected_seconds: record.connected_seconds,
            sessions: record.sessions,
        })
        .collect())
}

/// Stores the stats of a bucket that can no longer change (idempotent).
pub async fn store_rollup(
    executor: impl PgExecutor<'_>,
    bucket: &str,
    stats: &BucketStats,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into history_rollups
             (bucket, starts_at, active_users, connected_users, connected_seconds, sessions)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (bucket, starts_at) do nothing",
        bucket,
        stats.start,
        stats.active_users,
        stats.connected_users,
        stats.connected_seconds,
        stats.sessions,
    )
    .execute(executor)
    .await?;
    Ok(())
}

//! One user's history records over a range, read in one snapshot.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, PgExecutor};

use crate::domain::{ManualStatus, Platform, UserId};
use crate::presence::StoredStatus;
use crate::presence::history::{ActivitySpan, HistoryRecords, ManualSetting, Session};

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

/// `user`'s history records over `[from, to)` and when their history began,
/// read in one repeatable-read snapshot with their current row: a span or
/// session closing between two reads would otherwise show twice or not at all.
pub async fn read_history_snapshot(
    connection: &mut PgConnection,
    user: UserId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    offline_after: TimeDelta,
) -> Result<(HistoryRecords, Option<DateTime<Utc>>), sqlx::Error> {
    let mut transaction = sqlx::Connection::begin(connection).await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *transaction)
        .await?;
    let row = crate::store::fetch_status(&mut *transaction, user).await?;
    let active_since = active_since(&mut *transaction, user).await?;
    let started = history_start(&mut *transaction, user).await?;
    let records = fetch_history(
        &mut transaction,
        user,
        row.as_ref(),
        active_since,
        from,
        to,
        offline_after,
    )
    .await?;
    transaction.commit().await?;
    Ok((records, started))
}

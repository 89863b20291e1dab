//! Who was live at an instant, a page at a time.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::UserId;

use super::interval;

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

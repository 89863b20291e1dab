//! Stats by bucket: computed from the records, and the stored rollups of final buckets.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgExecutor;

use super::interval;

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

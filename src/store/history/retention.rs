//! Retention: deleting history older than the window, a bounded chunk per call.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

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

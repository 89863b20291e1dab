//! Presence history: what the trigger records with (here), one user's records
//! over a range, who was live at an instant, retention and stats.

mod online;
mod records;
mod retention;
mod stats;

pub use online::users_live_at;
pub use records::{
    active_since, fetch_history, history_start, oldest_history, read_history_snapshot,
};
pub use retention::{HistoryDeleted, delete_history_before};
pub use stats::{BucketStats, compute_bucket_stats, fetch_rollups, store_rollup};

use chrono::TimeDelta;
use sqlx::PgExecutor;
use sqlx::postgres::types::PgInterval;

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

pub(super) fn interval(delta: TimeDelta) -> PgInterval {
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

//! The rollup schedule: stores the stats of final buckets ahead of the
//! requests that will ask for them (run after the prune job).

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgConnection;

use crate::history::{Bucket, bucket_stats};
use crate::store;

/// The most bucket stats one run of the schedule computes and stores.
pub const ROLLUPS_PER_RUN: usize = 24;

/// Computes and stores the stats of final buckets (hours and days) that have
/// none yet, newest first, back to the start of the history or of the
/// retention window, at most [`ROLLUPS_PER_RUN`] per call (run by the
/// built-in schedule after the prune job), so stats requests find them
/// stored. Returns how many it stored.
pub async fn refresh_rollups(
    connection: &mut PgConnection,
    now: DateTime<Utc>,
    offline_after: TimeDelta,
    retention: TimeDelta,
) -> Result<usize, sqlx::Error> {
    let Some(oldest) = store::oldest_history(&mut *connection).await? else {
        return Ok(0);
    };
    let since = oldest.max(now - retention);
    let mut stored = 0;
    for bucket in [Bucket::Hour, Bucket::Day] {
        let mut missing = Vec::new();
        let mut end = bucket.floor(now - offline_after);
        // One bucket's worth of stored stats at a time, newest first.
        while end > since && stored + missing.len() < ROLLUPS_PER_RUN {
            let start = (end - bucket.width() * 100).max(bucket.floor(since));
            let starts = bucket.starts(start, end, now).unwrap_or_default();
            let have = store::fetch_rollups(&mut *connection, bucket.as_str(), &starts).await?;
            missing.extend(
                starts
                    .iter()
                    .rev()
                    .filter(|start| !have.iter().any(|stats| stats.start == **start))
                    .take(ROLLUPS_PER_RUN - stored - missing.len()),
            );
            end = start;
        }
        for start in &missing {
            // A day of a large history takes seconds: past the request
            // path's statement timeout, fine for the background.
            let mut transaction = sqlx::Connection::begin(&mut *connection).await?;
            store::allow_long_statements(&mut transaction, 10).await?;
            bucket_stats(&mut transaction, bucket, &[*start], now, offline_after).await?;
            transaction.commit().await?;
        }
        stored += missing.len();
    }
    Ok(stored)
}

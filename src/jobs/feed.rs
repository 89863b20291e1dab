//! The feed job: every quarter second, one instance at a time, it accounts
//! for the changes the clock made (the users whose next change is due, found
//! through an index) and publishes the staged changes to the feed, numbered
//! in order (see `sql/feed.sql`). Once a minute it deletes the changes past
//! the retention.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use tokio::time::MissedTickBehavior;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store;

/// How often the job runs: changes by the clock are in the feed within a
/// second of their instant.
pub const FEED_EVERY: Duration = Duration::from_millis(250);

/// The advisory lock a run holds, so one instance publishes at a time.
pub const FEED_LOCK: i64 = 0x7072_6573_656e_6303;

/// The most due users one run advances, and the most changes it publishes.
const DUE_CHUNK: i64 = 5_000;
const PUBLISH_CHUNK: i32 = 20_000;

/// How often the retention runs.
const RETENTION_EVERY: TimeDelta = TimeDelta::minutes(1);

/// What the feed job runs with.
#[derive(Clone)]
pub struct FeedSchedule {
    /// The database.
    pub pool: PgPool,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// How often to run ([`FEED_EVERY`]; tests may go faster).
    pub every: Duration,
    /// Changes published longer ago than this are deleted.
    pub retention: TimeDelta,
    /// Whether the tables are distributed on Citus (the due users are then advanced a shard at a time).
    pub distributed: bool,
    /// Where to count what it publishes.
    pub metrics: Option<Arc<Metrics>>,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedRun {
    /// Users whose changes by the clock it accounted for.
    pub advanced: u64,
    /// The instants of the changes it published.
    pub published: Vec<DateTime<Utc>>,
    /// Changes it deleted for the retention.
    pub deleted: u64,
}

impl FeedSchedule {
    /// Runs the job every period until the task is dropped; failures are logged and retried next period.
    pub async fn run_forever(self) {
        let mut ticker = tokio::time::interval(self.every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut retained_at: Option<DateTime<Utc>> = None;
        loop {
            ticker.tick().await;
            let now = self.clock.now();
            let retain = retained_at.is_none_or(|at| now - at >= RETENTION_EVERY);
            match run_feed_job(&self, now, retain).await {
                Ok(Some(run)) => {
                    if retain {
                        retained_at = Some(now);
                    }
                    self.count(&run, now).await;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "the feed job failed; it runs again next period");
                }
            }
        }
    }

    async fn count(&self, run: &FeedRun, now: DateTime<Utc>) {
        if run.deleted > 0 {
            tracing::info!(
                deleted = run.deleted,
                "deleted expired changes from the feed"
            );
        }
        let Some(metrics) = &self.metrics else {
            return;
        };
        metrics
            .feed_changes_published
            .inc_by(run.published.len() as u64);
        for at in &run.published {
            metrics
                .feed_publish_delay
                .observe(seconds(now - *at).max(0.0));
        }
        if let Ok(Some(newest)) = store::newest_change_at(&self.pool).await {
            metrics.feed_lag_seconds.set(seconds(now - newest).max(0.0));
        }
    }
}

fn seconds(delta: TimeDelta) -> f64 {
    delta.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
}

/// One run at `now`: the due users' changes by the clock, then the
/// publication and (with `retain`) the retention, in one more transaction.
/// On plain PostgreSQL the due users are found and advanced in one
/// transaction; on Citus they are found in one, then advanced a shard at a
/// time, a transaction each. Each holds the job's lock, taken before anything
/// else (an instance that does not get it reads nothing), and no two hold
/// rows of two shards, so the job takes part in no deadlock with the ping
/// writer or the prune job, which lock a shard's rows at a time in user id
/// order too. `None` when another instance holds the job's lock.
pub async fn run_feed_job(
    schedule: &FeedSchedule,
    now: DateTime<Utc>,
    retain: bool,
) -> Result<Option<FeedRun>, sqlx::Error> {
    let mut run = FeedRun::default();
    let mut transaction = schedule.pool.begin().await?;
    if !store::try_job_lock(&mut *transaction, FEED_LOCK).await? {
        return Ok(None);
    }
    let due = store::users_due(&mut *transaction, now, DUE_CHUNK).await?;
    if schedule.distributed {
        transaction.commit().await?;
        if !due.is_empty() {
            let mut connection = schedule.pool.acquire().await?;
            let groups = store::citus::users_by_shard(&mut connection, &due).await?;
            for users in groups {
                let mut transaction = schedule.pool.begin().await?;
                if !store::try_job_lock(&mut *transaction, FEED_LOCK).await? {
                    return Ok(None);
                }
                run.advanced += store::advance_feed(&mut *transaction, &users, now).await?;
                transaction.commit().await?;
            }
        }
    } else {
        if !due.is_empty() {
            run.advanced += store::advance_feed(&mut *transaction, &due, now).await?;
        }
        transaction.commit().await?;
    }
    let mut transaction = schedule.pool.begin().await?;
    if !store::try_job_lock(&mut *transaction, FEED_LOCK).await? {
        return Ok(None);
    }
    run.published = store::publish_changes(&mut *transaction, now, PUBLISH_CHUNK).await?;
    if retain {
        run.deleted =
            store::delete_expired_changes(&mut *transaction, now - schedule.retention).await?;
    }
    transaction.commit().await?;
    Ok(Some(run))
}

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use sqlx::PgPool;
use tokio::time::MissedTickBehavior;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store;

/// The prune job's name in `job_runs`.
pub const PRUNE_JOB: &str = "prune_stale_devices";

/// The most users one transaction of the built-in schedule prunes: after a mass
/// disconnect, a run is a series of short transactions, each well within the
/// database deadline, and pings wait for one chunk at most.
pub const PRUNE_CHUNK: u32 = 1_000;

/// The advisory lock the built-in schedule takes, so one instance prunes at a time.
const PRUNE_LOCK: i64 = 0x7072_6573_656e_6302;

/// What the built-in schedule runs, and how often.
#[derive(Clone)]
pub struct PruneSchedule {
    /// The database.
    pub pool: PgPool,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// How often to run; every instance ticks, one per period does the work.
    pub every: Duration,
    /// Device entries whose last ping is older than this are removed.
    pub older_than: TimeDelta,
    /// The devices a user keeps at most.
    pub max_devices: u32,
    /// The most users one transaction prunes ([`PRUNE_CHUNK`]).
    pub chunk: u32,
    /// Where to count pruned devices and run times, if anywhere.
    pub metrics: Option<Arc<Metrics>>,
    /// History older than this is deleted after each run, and the stats of
    /// finished buckets stored; `None`: no history is recorded.
    pub history_retention: Option<TimeDelta>,
    /// A device whose last ping is this old is no longer live (for the history stats).
    pub offline_after: TimeDelta,
    /// Room memberships not renewed for this long have ended, and are removed after each run.
    pub room_timeout: TimeDelta,
}

impl PruneSchedule {
    /// Runs the job every period until the task is dropped; failures are logged and retried next period.
    pub async fn run_forever(self) {
        let mut ticker = tokio::time::interval(self.every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let started = std::time::Instant::now();
            match run_scheduled_prune(&self).await {
                Ok(Some(removed)) => {
                    if let Some(metrics) = &self.metrics {
                        metrics.devices_pruned.inc_by(removed);
                        metrics
                            .prune_duration
                            .observe(started.elapsed().as_secs_f64());
                    }
                    tracing::info!(removed, "pruned stale devices");
                    if let Some(retention) = self.history_retention {
                        let cutoff = self.clock.now() - retention;
                        match enforce_history_retention(&self.pool, cutoff).await {
                            Ok(deleted) => tracing::info!(deleted, "deleted expired history"),
                            Err(error) => tracing::warn!(
                                %error,
                                "deleting expired history failed; it runs again next period"
                            ),
                        }
                        match self.refresh_rollups(retention).await {
                            Ok(stored) => tracing::debug!(stored, "stored history stats"),
                            Err(error) => tracing::warn!(
                                %error,
                                "storing the history stats failed; retried next period"
                            ),
                        }
                    }
                }
                Ok(None) => tracing::debug!("another instance ran the prune job this period"),
                Err(error) => {
                    tracing::warn!(%error, "the prune job failed; it runs again next period");
                }
            }
        }
    }
}

impl PruneSchedule {
    async fn refresh_rollups(&self, retention: TimeDelta) -> Result<usize, sqlx::Error> {
        let mut connection = self.pool.acquire().await?;
        super::history::refresh_rollups(
            &mut connection,
            self.clock.now(),
            self.offline_after,
            retention,
        )
        .await
    }
}

/// One tick of the schedule: prunes unless another instance already did this period.
///
/// Returns the number of entries removed, or `None` when this instance left
/// the period to another. The advisory lock keeps two runs from overlapping;
/// the `job_runs` claim keeps a period from running twice. A tenth of the
/// period is allowed for timer jitter between instances. The first chunk
/// commits with the claim, each further chunk in a transaction of its own;
/// then the room memberships that ended are removed.
pub async fn run_scheduled_prune(schedule: &PruneSchedule) -> Result<Option<u64>, sqlx::Error> {
    let mut transaction = schedule.pool.begin().await?;
    if !store::try_job_lock(&mut *transaction, PRUNE_LOCK).await? {
        return Ok(None);
    }
    let period = schedule.every.mul_f64(0.9);
    if !store::claim_job_run(&mut transaction, PRUNE_JOB, period).await? {
        return Ok(None);
    }
    let at = schedule.clock.now();
    let chunk = schedule.chunk.max(1);
    let prune = async |connection: &mut sqlx::PgConnection| {
        store::prune_stale_devices(
            connection,
            schedule.older_than,
            Some(schedule.max_devices),
            at,
            Some(chunk),
        )
        .await
    };
    let mut last = prune(&mut transaction).await?;
    transaction.commit().await?;
    let mut removed = last;
    // Each pruned user loses at least one entry: fewer than a chunk's worth means it was the last.
    while last >= u64::from(chunk) {
        let mut transaction = schedule.pool.begin().await?;
        last = prune(&mut transaction).await?;
        transaction.commit().await?;
        removed += last;
    }
    // Ended memberships already read as gone: removing them changes nothing shown.
    match store::prune_room_members(&schedule.pool, at - schedule.room_timeout).await {
        Ok(memberships) => tracing::info!(memberships, "pruned ended room memberships"),
        Err(error) => tracing::warn!(
            %error,
            "pruning ended room memberships failed; it runs again next period"
        ),
    }
    Ok(Some(removed))
}

/// The most history records of each kind one retention statement deletes.
pub const RETENTION_CHUNK: i64 = 10_000;

/// Deletes the history that ended before `cutoff`, in statements of about
/// [`RETENTION_CHUNK`] records of each kind found through the indexes on
/// their end, each its own transaction: a run costs in proportion to what it
/// deletes, not to the size of the history. Returns how many records it deleted.
pub async fn enforce_history_retention(
    pool: &PgPool,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    loop {
        let pass = store::delete_history_before(pool, cutoff, RETENTION_CHUNK).await?;
        deleted += pass.total();
        if !pass.filled(RETENTION_CHUNK) {
            return Ok(deleted);
        }
    }
}

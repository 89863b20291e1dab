//! The feed job: every quarter second, one instance at a time, it accounts
//! for the changes the clock made (the users whose next change is due, found
//! through an index) and publishes the staged changes to the feed, numbered
//! in order (see `sql/feed.sql`). Once a minute it deletes the changes past
//! the retention.
//!
//! Its search for the due users reads, each run, only the rows whose indexed
//! minute the clock passed since its last run, and remembers those whose
//! change is still ahead, to read them again at its instant. (Every row whose
//! minute had started, a quarter of the live users, read four times a
//! second, took PostgreSQL 13 s in a 20,000-user benchmark step whose ping
//! batches took 59 s: bench/NOTES.md.) A write always
//! puts a row's minute after its own instant (`feed_search_minute`), so no
//! row is passed over; every few seconds a full search of the due users
//! catches a write that committed too long after its instant to be among
//! those read.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool};
use tokio::time::MissedTickBehavior;
use uuid::Uuid;

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

/// How far back each search reads again the minutes the last one read: a
/// write that commits up to this long after its instant, whose minute the
/// clock passed meanwhile, is still found.
const SEARCH_OVERLAP: TimeDelta = TimeDelta::milliseconds(500);

/// How often the job also searches every row whose minute has started for
/// the due users (a write that committed later still, or whose server's
/// clock is behind the job's by more than the overlap).
const FULL_SEARCH_EVERY: TimeDelta = TimeDelta::seconds(5);

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
    /// Due users that only the full search found (see [`FeedSearch`]):
    /// rows whose writes committed more than the overlap after their instant.
    pub found_late: u64,
}

impl FeedSchedule {
    /// Runs the job every period until the task is dropped; failures are logged and retried next period.
    pub async fn run_forever(self) {
        let mut ticker = tokio::time::interval(self.every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut retained_at: Option<DateTime<Utc>> = None;
        let mut search = FeedSearch::default();
        loop {
            ticker.tick().await;
            let now = self.clock.now();
            let retain = retained_at.is_none_or(|at| now - at >= RETENTION_EVERY);
            match search.run(&self, now, retain).await {
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
        if run.found_late > 0 {
            tracing::warn!(
                users = run.found_late,
                "the feed job's full search found due users its quarter-second search had passed over \
                 (their writes committed over half a second late): their changes reach the feed late"
            );
        }
        let Some(metrics) = &self.metrics else {
            return;
        };
        metrics.feed_found_late.inc_by(run.found_late);
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

/// What the feed job remembers from one run to the next on one instance:
/// how far its search has read, and the rows it read whose change is still
/// ahead. A run that does not get the job's lock, fails, or finds the feed
/// switched off forgets it all: the next run then reads every row whose
/// minute has started, as a first run does.
#[derive(Debug, Default)]
pub struct FeedSearch {
    /// The instant the last search read the minutes through (`None`: none yet).
    through: Option<DateTime<Utc>>,
    /// When the last full search of the due users ran.
    full_at: Option<DateTime<Utc>>,
    /// The rows read whose minute has started but whose change is ahead, by its instant.
    watched: BTreeSet<(DateTime<Utc>, Uuid)>,
}

impl FeedSearch {
    /// Runs the job once at `now` (see [`run_feed_job`]), its search going on
    /// from where this one's last run left it.
    pub async fn run(
        &mut self,
        schedule: &FeedSchedule,
        now: DateTime<Utc>,
        retain: bool,
    ) -> Result<Option<FeedRun>, sqlx::Error> {
        let run = self.run_once(schedule, now, retain).await;
        if !matches!(run, Ok(Some(_))) {
            *self = Self::default();
        }
        run
    }

    /// How many rows it is waiting to read again.
    pub fn watched(&self) -> usize {
        self.watched.len()
    }

    async fn run_once(
        &mut self,
        schedule: &FeedSchedule,
        now: DateTime<Utc>,
        retain: bool,
    ) -> Result<Option<FeedRun>, sqlx::Error> {
        let mut run = FeedRun::default();
        let mut transaction = schedule.pool.begin().await?;
        if !store::try_job_lock(&mut *transaction, FEED_LOCK).await? {
            return Ok(None);
        }
        let due = if store::feed_enabled(&mut *transaction).await? {
            let (due, found_late) = self.due(&mut transaction, now).await?;
            run.found_late = found_late;
            due
        } else {
            // Switched off: nothing is due, and the rows written meanwhile
            // are read afresh once it is on again.
            *self = Self::default();
            Vec::new()
        };
        if schedule.distributed {
            transaction.commit().await?;
            if !due.is_empty() {
                // (Given back before the shards' transactions take theirs.)
                let groups = {
                    let mut connection = schedule.pool.acquire().await?;
                    store::citus::users_by_shard(&mut connection, &due).await?
                };
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

    /// Up to [`DUE_CHUNK`] users whose change is due at `now`, in id order,
    /// and how many of them only the full search found. They are looked for
    /// among the rows whose minute the clock passed since the last search
    /// (all whose minute has started, the first time) and the watched rows
    /// whose instant has come; every [`FULL_SEARCH_EVERY`], among all rows
    /// whose minute has started too. The rows read whose change is ahead are
    /// watched. A watched row read again whose minute now lies ahead is one
    /// a write moved ahead of the clock: it is dropped, and found again when
    /// the clock passes its new minute.
    async fn due(
        &mut self,
        connection: &mut PgConnection,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Uuid>, u64), sqlx::Error> {
        let chunk = usize::try_from(DUE_CHUNK).unwrap_or(usize::MAX);
        let after = self
            .through
            .map_or(DateTime::UNIX_EPOCH, |through| through - SEARCH_OVERLAP);
        let mut again = Vec::new();
        while again.len() < chunk {
            match self.watched.first() {
                Some(&(at, user)) if at <= now => {
                    self.watched.pop_first();
                    again.push(user);
                }
                _ => break,
            }
        }
        let mut due = BTreeSet::new();
        for found in store::feed_candidates(&mut *connection, after, now, &again).await? {
            if found.next_change_at <= now {
                due.insert(found.user_id);
            } else if found.minute <= now {
                self.watched.insert((found.next_change_at, found.user_id));
            }
        }
        let full = match (self.through, self.full_at) {
            (None, _) => {
                self.full_at = Some(now);
                false
            }
            (Some(_), Some(at)) => now - at >= FULL_SEARCH_EVERY,
            (Some(_), None) => true,
        };
        let mut found_late = 0;
        if full {
            // (With watched rows due still waiting, a backlog, the full
            // search's finds may be among them: none is counted late.)
            let backlog = self.watched.first().is_some_and(|&(at, _)| at <= now);
            for user in store::users_due(&mut *connection, now, DUE_CHUNK).await? {
                if due.insert(user) && !backlog {
                    found_late += 1;
                }
            }
            self.full_at = Some(now);
        }
        self.through = Some(now);
        let mut due: Vec<Uuid> = due.into_iter().collect();
        // The rest of a backlog: read again next run.
        for user in due.split_off(due.len().min(chunk)) {
            self.watched.insert((now, user));
        }
        Ok((due, found_late))
    }
}

/// One run at `now`, as the first run of an instance: the due users' changes
/// by the clock (every row whose minute has started is read), then the
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
    FeedSearch::default().run(schedule, now, retain).await
}

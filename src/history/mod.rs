//! The history service handlers call: one user's past as their self view
//! showed it, who was live at an instant, and stats by bucket.

mod stats;

use chrono::{DateTime, TimeDelta, Utc};

use crate::database::Database;
use crate::domain::UserId;
use crate::presence::Thresholds;
use crate::presence::history::{self, Segment, Session};
use crate::store;

pub use crate::store::BucketStats;
pub use stats::{Bucket, MAX_BUCKETS, bucket_stats};

/// One user's past over a range: what their self view showed, and their devices' sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct UserHistory {
    /// The self-view status over the part of the range history covers, in order.
    pub segments: Vec<Segment>,
    /// Every device session overlapping the range, oldest first.
    pub sessions: Vec<Session>,
}

/// Reads of presence history, within the request path's deadline.
#[derive(Clone)]
pub struct History {
    db: Database,
    thresholds: Thresholds,
    retention: Option<TimeDelta>,
}

impl History {
    /// History over `db`, computed with `thresholds`, kept for `retention` (`None`: none is recorded).
    pub fn new(db: Database, thresholds: Thresholds, retention: Option<TimeDelta>) -> Self {
        Self {
            db,
            thresholds,
            retention,
        }
    }

    /// `user`'s history over `[from, to)` as known at `now`, read in one snapshot
    /// (a span or session closing between two reads would otherwise show twice or not at all).
    pub async fn of_user(
        &self,
        user: UserId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<UserHistory, sqlx::Error> {
        let offline_after = self.thresholds.offline_after;
        let (records, started) = self
            .db
            .run(async |connection| {
                store::read_history_snapshot(connection, user, from, to, offline_after).await
            })
            .await?;
        let mut covered = (from, to.min(now));
        covered.0 = match started {
            Some(started) => covered.0.max(started),
            None => covered.1,
        };
        if let Some(retention) = self.retention {
            covered.0 = covered.0.max(now - retention);
        }
        let segments = history::segments(&records, covered.0, covered.1, &self.thresholds);
        let sessions = records
            .sessions
            .into_iter()
            .map(|mut session| {
                // A session live now has no end yet.
                session.to = session.to.filter(|to| *to <= now);
                session
            })
            .collect();
        Ok(UserHistory { segments, sessions })
    }

    /// Up to `limit` users, in id order after `after`, whose self view at `at` was not offline.
    pub async fn live_at(
        &self,
        at: DateTime<Utc>,
        after: Option<UserId>,
        limit: i64,
    ) -> Result<Vec<UserId>, sqlx::Error> {
        let offline_after = self.thresholds.offline_after;
        self.db
            .run(async |connection| {
                store::users_live_at(connection, at, after, limit, offline_after).await
            })
            .await
    }

    /// The stats of each `bucket` starting at `starts`, as known at `now`.
    pub async fn stats(
        &self,
        bucket: Bucket,
        starts: &[DateTime<Utc>],
        now: DateTime<Utc>,
    ) -> Result<Vec<BucketStats>, sqlx::Error> {
        let offline_after = self.thresholds.offline_after;
        self.db
            .run(async |connection| {
                bucket_stats(connection, bucket, starts, now, offline_after).await
            })
            .await
    }
}

//! History stats by hour or day: final buckets from stored rollups (computed
//! once, by the schedule or the first request that needs them), the current
//! ones computed live. Shared by `GET /api/admin/stats`, `presence report`
//! and the rollup schedule (`jobs::history`).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sqlx::PgConnection;

use crate::store::{self, BucketStats};

/// The most buckets one stats request covers.
pub const MAX_BUCKETS: i64 = 366;

/// The width of the stats' buckets: aligned UTC hours or days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Bucket {
    /// One hour.
    Hour,
    /// One UTC day (midnight to midnight).
    Day,
}

impl Bucket {
    /// Parses `hour` or `day`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            _ => None,
        }
    }

    /// The name as the API and the rollup table spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// The bucket's length.
    pub fn width(self) -> TimeDelta {
        match self {
            Self::Hour => TimeDelta::hours(1),
            Self::Day => TimeDelta::days(1),
        }
    }

    /// The range stats cover when the request names no start: 24 hours of hours, 7 days of days.
    pub fn default_range(self) -> TimeDelta {
        match self {
            Self::Hour => TimeDelta::hours(24),
            Self::Day => TimeDelta::days(7),
        }
    }

    /// The start of the bucket holding `at`.
    pub fn floor(self, at: DateTime<Utc>) -> DateTime<Utc> {
        at.duration_trunc(self.width()).unwrap_or(at)
    }

    /// The starts of the buckets that cover `[from, to)`, at most `MAX_BUCKETS`
    /// (`None` beyond), leaving out those that start at or after `now`.
    pub fn starts(
        self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<Vec<DateTime<Utc>>> {
        let first = self.floor(from);
        let (span, width) = (
            (to - first).num_milliseconds(),
            self.width().num_milliseconds(),
        );
        let count = (span + width - 1) / width;
        if count > MAX_BUCKETS {
            return None;
        }
        Some(
            (0..count)
                .map(|index| first + self.width() * i32::try_from(index).unwrap_or(i32::MAX))
                .filter(|start| *start < now)
                .collect(),
        )
    }
}

/// The stats of each bucket starting at `starts`, as known at `now`.
///
/// A bucket is final once it ended at least `offline_after` ago: every
/// session overlapping it then has a known end. Final buckets come from the
/// rollup table (computed and stored when missing); the others are computed
/// live.
pub async fn bucket_stats(
    connection: &mut PgConnection,
    bucket: Bucket,
    starts: &[DateTime<Utc>],
    now: DateTime<Utc>,
    offline_after: TimeDelta,
) -> Result<Vec<BucketStats>, sqlx::Error> {
    let is_final = |start: DateTime<Utc>| start + bucket.width() + offline_after <= now;
    let finals: Vec<DateTime<Utc>> = starts.iter().copied().filter(|s| is_final(*s)).collect();
    let stored = store::fetch_rollups(&mut *connection, bucket.as_str(), &finals).await?;
    let mut result = Vec::with_capacity(starts.len());
    for start in starts {
        if let Some(stats) = stored.iter().find(|stats| stats.start == *start) {
            result.push(*stats);
            continue;
        }
        let end = *start + bucket.width();
        let stats =
            store::compute_bucket_stats(&mut *connection, *start, end, offline_after, now).await?;
        if is_final(*start) {
            store::store_rollup(&mut *connection, bucket.as_str(), &stats).await?;
        }
        result.push(stats);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("valid instant")
    }

    #[test]
    fn buckets_are_aligned_to_utc_and_cover_the_range() {
        let now = at("2026-11-24T12:00:00Z");
        assert_eq!(
            Bucket::Day.starts(at("2026-11-20T10:00:00Z"), at("2026-11-22T00:00:01Z"), now),
            Some(vec![
                at("2026-11-20T00:00:00Z"),
                at("2026-11-21T00:00:00Z"),
                at("2026-11-22T00:00:00Z"),
            ])
        );
        assert_eq!(
            Bucket::Hour.starts(at("2026-11-24T10:30:00Z"), at("2026-11-24T14:00:00Z"), now),
            Some(vec![at("2026-11-24T10:00:00Z"), at("2026-11-24T11:00:00Z")]),
            "buckets from now on are left out"
        );
        assert_eq!(
            Bucket::Day.starts(at("2025-01-01T00:00:00Z"), at("2026-01-03T00:00:00Z"), now),
            None,
            "367 buckets"
        );
        assert_eq!(
            Bucket::Day
                .starts(at("2025-01-01T00:00:00Z"), at("2026-01-02T00:00:00Z"), now)
                .map(|starts| starts.len()),
            Some(366),
            "366 buckets are allowed"
        );
    }
}

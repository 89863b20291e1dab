//! A user's past self view, reconstructed from the history records: device
//! sessions, spans of activity and settings changes.

use chrono::{DateTime, TimeDelta, Utc};

use super::{Status, Thresholds};
use crate::domain::{ManualStatus, Platform};

/// A span during which one device was live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The device.
    pub device_id: String,
    /// Its platform when the session started.
    pub platform: Platform,
    /// When it became live.
    pub from: DateTime<Utc>,
    /// When it stopped being live (exclusive); `None` while it lasts.
    pub to: Option<DateTime<Utc>>,
}

/// A span of activity: the first and the last activity of a run whose gaps
/// are all shorter than the idle threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivitySpan {
    /// The first activity.
    pub from: DateTime<Utc>,
    /// The last activity.
    pub to: DateTime<Utc>,
}

/// The manual status in effect from an instant on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManualSetting {
    /// When it was set.
    pub at: DateTime<Utc>,
    /// The manual status, `None` for automatic.
    pub status: Option<ManualStatus>,
    /// When it ends by itself.
    pub until: Option<DateTime<Utc>>,
}

/// One stretch of time with one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The status throughout.
    pub status: Status,
    /// The first instant.
    pub from: DateTime<Utc>,
    /// The end (exclusive).
    pub to: DateTime<Utc>,
}

/// What the history of one user holds about a range of time.
#[derive(Debug, Clone, Default)]
pub struct HistoryRecords {
    /// Sessions overlapping the range, oldest first.
    pub sessions: Vec<Session>,
    /// Spans of activity: the last one ending before the range and those overlapping it.
    pub spans: Vec<ActivitySpan>,
    /// The manual status in effect at the range's start, then each change in it.
    pub settings: Vec<ManualSetting>,
}

/// The self-view status over `[from, to)`, in order, adjacent equal statuses
/// merged: every boundary is an instant at which the self view changed.
///
/// Piecewise constant: the status can only change where a session starts or
/// ends, an activity span starts, the idle or away threshold after a span's
/// last activity passes, or a manual status is set or expires. It is
/// evaluated once at each such instant; O(n log n) in the records.
pub fn segments(
    records: &HistoryRecords,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    thresholds: &Thresholds,
) -> Vec<Segment> {
    if from >= to {
        return Vec::new();
    }
    let live = live_intervals(&records.sessions);
    let mut spans = records.spans.clone();
    spans.sort_by_key(|span| span.from);
    let mut settings = records.settings.clone();
    settings.sort_by_key(|setting| setting.at);

    let mut instants = vec![from];
    for (start, end) in &live {
        instants.push(*start);
        instants.extend(*end);
    }
    for span in &spans {
        instants.extend([
            span.from,
            span.to + thresholds.idle_after,
            span.to + thresholds.away_after,
        ]);
    }
    for setting in &settings {
        instants.push(setting.at);
        instants.extend(setting.until);
    }
    instants.retain(|instant| (from..to).contains(instant));
    instants.sort_unstable();
    instants.dedup();

    let mut result: Vec<Segment> = Vec::new();
    for (index, start) in instants.iter().enumerate() {
        let end = instants.get(index + 1).copied().unwrap_or(to);
        let status = status_at(*start, &live, &spans, &settings, thresholds);
        match result.last_mut() {
            Some(last) if last.status == status => last.to = end,
            _ => result.push(Segment {
                status,
                from: *start,
                to: end,
            }),
        }
    }
    result
}

/// The self-view status at `at`.
fn status_at(
    at: DateTime<Utc>,
    live: &[(DateTime<Utc>, Option<DateTime<Utc>>)],
    spans: &[ActivitySpan],
    settings: &[ManualSetting],
    thresholds: &Thresholds,
) -> Status {
    let started = live.partition_point(|(start, _)| *start <= at);
    let is_live = started > 0 && live[started - 1].1.is_none_or(|end| at < end);
    if !is_live {
        return Status::Offline;
    }
    let set = settings.partition_point(|setting| setting.at <= at);
    if let Some(setting) = set.checked_sub(1).map(|index| settings[index])
        && let Some(manual) = setting.status
        && setting.until.is_none_or(|until| at < until)
    {
        return match manual {
            ManualStatus::Away => Status::Away,
            ManualStatus::Dnd => Status::Dnd,
        };
    }
    let begun = spans.partition_point(|span| span.from <= at);
    let Some(span) = begun.checked_sub(1).map(|index| spans[index]) else {
        return Status::Away;
    };
    let age = (at - span.to).max(TimeDelta::zero());
    if age < thresholds.idle_after {
        Status::Online
    } else if age < thresholds.away_after {
        Status::Idle
    } else {
        Status::Away
    }
}

/// The union of the sessions' spans as disjoint intervals in order; `None` ends never.
fn live_intervals(sessions: &[Session]) -> Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> {
    let mut spans: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = sessions
        .iter()
        .filter(|session| session.to.is_none_or(|to| to > session.from))
        .map(|session| (session.from, session.to))
        .collect();
    spans.sort_by_key(|span| span.0);
    let mut merged: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = Vec::new();
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if last.1.is_none_or(|last_end| start <= last_end) => {
                last.1 = match (last.1, end) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            _ => merged.push((start, end)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000, 0).expect("valid") + TimeDelta::minutes(minute)
    }

    fn thresholds() -> Thresholds {
        Thresholds {
            idle_after: TimeDelta::minutes(5),
            away_after: TimeDelta::minutes(30),
            offline_after: TimeDelta::minutes(1),
            last_seen_precision: TimeDelta::zero(),
        }
    }

    fn session(from: i64, to: Option<i64>) -> Session {
        Session {
            device_id: "laptop".into(),
            platform: Platform::Web,
            from: at(from),
            to: to.map(at),
        }
    }

    fn segment(status: Status, from: i64, to: i64) -> Segment {
        Segment {
            status,
            from: at(from),
            to: at(to),
        }
    }

    #[test]
    fn a_session_goes_online_idle_away_then_offline() {
        let records = HistoryRecords {
            sessions: vec![session(0, Some(50))],
            spans: vec![ActivitySpan {
                from: at(0),
                to: at(10),
            }],
            settings: vec![],
        };
        assert_eq!(
            segments(&records, at(-10), at(60), &thresholds()),
            vec![
                segment(Status::Offline, -10, 0),
                segment(Status::Online, 0, 15),
                segment(Status::Idle, 15, 40),
                segment(Status::Away, 40, 50),
                segment(Status::Offline, 50, 60),
            ]
        );
    }

    #[test]
    fn overlapping_sessions_of_two_devices_are_one_live_stretch() {
        let records = HistoryRecords {
            sessions: vec![session(0, Some(20)), session(10, None)],
            spans: vec![ActivitySpan {
                from: at(0),
                to: at(0),
            }],
            settings: vec![],
        };
        assert_eq!(
            segments(&records, at(0), at(40), &thresholds()),
            vec![
                segment(Status::Online, 0, 5),
                segment(Status::Idle, 5, 30),
                segment(Status::Away, 30, 40),
            ]
        );
    }

    #[test]
    fn a_manual_status_wins_until_it_expires() {
        let records = HistoryRecords {
            sessions: vec![session(0, None)],
            spans: vec![ActivitySpan {
                from: at(0),
                to: at(20),
            }],
            settings: vec![ManualSetting {
                at: at(2),
                status: Some(ManualStatus::Dnd),
                until: Some(at(12)),
            }],
        };
        assert_eq!(
            segments(&records, at(0), at(30), &thresholds()),
            vec![
                segment(Status::Online, 0, 2),
                segment(Status::Dnd, 2, 12),
                segment(Status::Online, 12, 25),
                segment(Status::Idle, 25, 30),
            ]
        );
    }
}

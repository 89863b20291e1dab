use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::{StoredDevice, StoredStatus};
use crate::domain::{ManualStatus, Platform, UserId};

/// A user's effective status, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Active within `idle_after`, on a live device.
    Online,
    /// Last active between `idle_after` and `away_after` ago, on a live device.
    Idle,
    /// Last active longer than `away_after` ago, or manually away.
    Away,
    /// Manually "do not disturb".
    Dnd,
    /// No live device, never seen, or hidden from this viewer.
    Offline,
}

impl Status {
    /// The status as the API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Idle => "idle",
            Self::Away => "away",
            Self::Dnd => "dnd",
            Self::Offline => "offline",
        }
    }
}

/// The durations the rules are computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Activity older than this makes a user `idle`.
    pub idle_after: TimeDelta,
    /// Activity older than this makes a user `away`.
    pub away_after: TimeDelta,
    /// A device whose last ping is this old is no longer live.
    pub offline_after: TimeDelta,
    /// To anyone but the user, activity times are floored to this (zero: exact).
    pub last_seen_precision: TimeDelta,
}

impl Thresholds {
    /// `at` as others may know it: floored to the precision (itself when exact).
    pub fn floor(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let step = self.last_seen_precision.num_milliseconds();
        if step <= 0 {
            return at;
        }
        at - TimeDelta::milliseconds(at.timestamp_millis().rem_euclid(step))
    }
}

/// A block between the viewer and the user, in either direction: the user is
/// shown as offline, with the last activity that stood when the block was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hidden {
    /// The user's last activity at the moment of the block.
    pub last_seen: Option<DateTime<Utc>>,
}

/// What one viewer is shown of one user at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveStatus {
    /// The user shown.
    pub user_id: UserId,
    /// The effective status.
    pub status: Status,
    /// The last activity this viewer may know of.
    pub last_seen: Option<DateTime<Utc>>,
    /// The status message, when this viewer may see it and it has not expired.
    pub status_message: Option<String>,
    /// The platforms of the live devices, in a fixed order.
    pub platforms: &'static [Platform],
    /// When, with no further pings, this view will next change by itself.
    pub next_change_at: Option<DateTime<Utc>>,
    /// The fields only the user sees of themselves; `None` for any other viewer.
    pub own: Option<OwnView>,
}

/// The part of the view only the user sees of themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnView {
    /// The manual status, `None` once expired.
    pub manual_status: Option<ManualStatus>,
    /// When the manual status ends, `None` once expired or when it lasts until cleared.
    pub manual_status_until: Option<DateTime<Utc>>,
    /// Whether the user appears offline to others.
    pub invisible: bool,
    /// When the status message ends, `None` once expired or when it lasts until cleared.
    pub status_message_until: Option<DateTime<Utc>>,
    /// Every stored device, live or not, most recently pinged first.
    pub devices: Vec<StoredDevice>,
}

/// Computes what `viewer` is shown of a user at `now` (contract section 2).
///
/// `row` is `None` for a user who never pinged; `hidden` is set while a block
/// stands between the two. Pure: no clock, no I/O.
pub fn calculate_effective_status(
    user_id: UserId,
    row: Option<&StoredStatus>,
    viewer: UserId,
    hidden: Option<Hidden>,
    now: DateTime<Utc>,
    thresholds: &Thresholds,
) -> EffectiveStatus {
    let Some(row) = row else {
        return EffectiveStatus {
            user_id,
            status: Status::Offline,
            last_seen: None,
            status_message: None,
            platforms: &[],
            next_change_at: None,
            own: None,
        };
    };
    let audience = match (viewer == row.user_id, hidden) {
        (true, _) => Audience::Owner,
        (false, None) => Audience::Other,
        (false, Some(hidden)) => Audience::Hidden(hidden),
    };
    let is_self = audience == Audience::Owner;
    let limits = Limits::of(thresholds);
    let now = nanos(now);
    let known = Known::of(row, audience, now, &limits);
    let shape = Shape::at(row, &known, now, &limits);
    let own = is_self.then(|| OwnView {
        manual_status: shape.manual_status,
        manual_status_until: row
            .manual_status_until
            .filter(|_| shape.manual_status.is_some()),
        invisible: row.invisible,
        status_message_until: row.status_message_until.filter(|_| shape.message_shown),
        devices: row.devices.clone(),
    });
    EffectiveStatus {
        user_id,
        status: shape.status,
        last_seen: shape.last_seen.and_then(instant),
        status_message: row.status_message.clone().filter(|_| shape.message_shown),
        platforms: Platform::set(shape.platforms),
        next_change_at: next_change(row, &known, now, &limits, &shape).and_then(instant),
        own,
    }
}

/// Who looks: the user, someone else, or someone a block hides the user from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    Owner,
    Other,
    Hidden(Hidden),
}

/// Everything in a view that time alone can change, cheap to compute and compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    status: Status,
    last_seen: Option<Nanos>,
    platforms: u8,
    message_shown: bool,
    manual_status: Option<ManualStatus>,
}

/// An instant (since the Unix epoch) or a span of time, in whole nanoseconds:
/// what the rules add and compare. Exact for every `DateTime<Utc>`, and a few
/// instructions where chrono's calendar arithmetic took a hundred or more (the
/// rules were a quarter of a `304` poll's instructions, most of it chrono's:
/// `bench/instructions.sh`).
type Nanos = i128;

const NANOS_PER_SECOND: Nanos = 1_000_000_000;

/// `at` in nanoseconds since the Unix epoch.
fn nanos(at: DateTime<Utc>) -> Nanos {
    Nanos::from(at.timestamp()) * NANOS_PER_SECOND + Nanos::from(at.timestamp_subsec_nanos())
}

/// `span` in nanoseconds.
fn span(span: TimeDelta) -> Nanos {
    Nanos::from(span.num_seconds()) * NANOS_PER_SECOND + Nanos::from(span.subsec_nanos())
}

/// The instant `at` nanoseconds after the Unix epoch; `None` past what `DateTime` holds.
fn instant(at: Nanos) -> Option<DateTime<Utc>> {
    let (seconds, nanoseconds) = div_rem(at, 1_000_000_000);
    DateTime::from_timestamp(seconds.try_into().ok()?, nanoseconds.try_into().ok()?)
}

/// `at.div_euclid(by)` and `at.rem_euclid(by)`, by one machine division when
/// `at` fits 64 bits (every instant from 1678 to 2261): a 128-bit division is
/// a library call of a hundred instructions.
fn div_rem(at: Nanos, by: i64) -> (Nanos, Nanos) {
    match i64::try_from(at) {
        Ok(at) => (at.div_euclid(by).into(), at.rem_euclid(by).into()),
        Err(_) => (at.div_euclid(by.into()), at.rem_euclid(by.into())),
    }
}

/// The thresholds in nanoseconds, converted once per view.
#[derive(Debug, Clone, Copy)]
struct Limits {
    idle_after: Nanos,
    away_after: Nanos,
    offline_after: Nanos,
    /// The precision in whole milliseconds (zero or less: exact).
    precision_ms: i64,
}

impl Limits {
    fn of(thresholds: &Thresholds) -> Self {
        Self {
            idle_after: span(thresholds.idle_after),
            away_after: span(thresholds.away_after),
            offline_after: span(thresholds.offline_after),
            precision_ms: thresholds.last_seen_precision.num_milliseconds(),
        }
    }

    /// [`Thresholds::floor`] in nanoseconds: the same instant, to the nanosecond.
    fn floor(&self, at: Nanos) -> Nanos {
        if self.precision_ms <= 0 {
            return at;
        }
        let (millis, _) = div_rem(at, 1_000_000);
        at - div_rem(millis, self.precision_ms).1 * 1_000_000
    }
}

/// What a view at any instant from now on starts from, computed once per
/// view: the activity times as this audience knows them, and the platforms of
/// the devices live now (a device that keeps sending heartbeats stays live;
/// one that stops is no scheduled change).
#[derive(Debug, Clone, Copy)]
struct Known {
    audience: Audience,
    /// The last activity: exact for the user, floored to the precision for others.
    last_seen: Option<Nanos>,
    /// What others may know of the last activity: it stops where hiding began.
    shown_last_seen: Option<Nanos>,
    /// For a hidden user, the last activity when the block was made (floored).
    hidden_last_seen: Option<Nanos>,
    /// When the manual status ends, if it does.
    manual_status_until: Option<Nanos>,
    /// When the status message ends, if it does.
    status_message_until: Option<Nanos>,
    /// The platforms of the devices live at the view's instant.
    live_platforms: u8,
}

impl Known {
    /// What `audience` knows of `row` at `now`: times floored once, live platforms read once.
    fn of(row: &StoredStatus, audience: Audience, now: Nanos, limits: &Limits) -> Self {
        let is_self = audience == Audience::Owner;
        // Others know activity only to the precision; the user knows it exactly.
        let known = |instant: Option<DateTime<Utc>>| {
            let instant = instant.map(nanos);
            if is_self {
                instant
            } else {
                instant.map(|instant| limits.floor(instant))
            }
        };
        let last_seen = known(row.last_seen);
        let shown_last_seen = if row.invisible {
            known(row.last_seen_before_invisible)
        } else {
            last_seen
        };
        // A view that shows no device skips reading them.
        let shows_devices = match audience {
            Audience::Owner => true,
            Audience::Other => !row.invisible,
            Audience::Hidden(_) => false,
        };
        let live_platforms = if shows_devices {
            // Live while now < last ping + offline_after.
            let pinged_after = now - limits.offline_after;
            row.devices
                .iter()
                .filter(|device| nanos(device.last_ping) > pinged_after)
                .fold(0, |set, device| set | device.platform.bit())
        } else {
            0
        };
        let hidden_last_seen = match audience {
            // (Floored once here, as everything else the view shows of it.)
            Audience::Hidden(hidden) => known(hidden.last_seen),
            _ => None,
        };
        Self {
            audience,
            last_seen,
            shown_last_seen,
            hidden_last_seen,
            manual_status_until: row.manual_status_until.map(nanos),
            status_message_until: row.status_message_until.map(nanos),
            live_platforms,
        }
    }

    /// Whether the view is the same at every instant: a hidden or invisible
    /// user shows others offline and nothing the clock moves.
    fn frozen(&self, row: &StoredStatus) -> bool {
        match self.audience {
            Audience::Owner => false,
            Audience::Other => row.invisible,
            Audience::Hidden(_) => true,
        }
    }
}

impl Shape {
    /// The shape at `at`, from what the view starts from.
    fn at(row: &StoredStatus, known: &Known, at: Nanos, limits: &Limits) -> Self {
        let is_self = known.audience == Audience::Owner;
        if let Audience::Hidden(_) = known.audience {
            return Self::offline(
                known.hidden_last_seen.min(known.shown_last_seen),
                false,
                None,
            );
        }
        let manual_status = row
            .manual_status
            .filter(|_| known.manual_status_until.is_none_or(|until| at < until));
        let message_active = row.status_message.is_some()
            && known.status_message_until.is_none_or(|until| at < until);
        let own_manual_status = manual_status.filter(|_| is_self);

        if row.invisible && !is_self {
            return Self::offline(known.shown_last_seen, false, None);
        }
        if known.live_platforms == 0 {
            return Self::offline(
                known.last_seen,
                is_self && message_active,
                own_manual_status,
            );
        }
        let status = match manual_status {
            Some(ManualStatus::Away) => Status::Away,
            Some(ManualStatus::Dnd) => Status::Dnd,
            None => status_by_activity(known.last_seen, at, limits),
        };
        Self {
            status,
            last_seen: known.last_seen,
            platforms: known.live_platforms,
            message_shown: message_active,
            manual_status: own_manual_status,
        }
    }

    fn offline(
        last_seen: Option<Nanos>,
        message_shown: bool,
        manual_status: Option<ManualStatus>,
    ) -> Self {
        Self {
            status: Status::Offline,
            last_seen,
            platforms: 0,
            message_shown,
            manual_status,
        }
    }
}

fn status_by_activity(last_seen: Option<Nanos>, at: Nanos, limits: &Limits) -> Status {
    match last_seen.map(|last_seen| at - last_seen) {
        Some(quiet) if quiet < limits.idle_after => Status::Online,
        Some(quiet) if quiet < limits.away_after => Status::Idle,
        _ => Status::Away,
    }
}

/// The first instant after `now` at which the view differs from `current` by
/// the clock alone, while the live devices keep sending heartbeats.
///
/// Only scheduled changes count: online → idle, idle → away, a manual status
/// or a message expiring. A device that may stop pinging is not scheduled, so
/// a heartbeat, which only moves a device's expiry, never changes this. The
/// deadlines are tried in order; one that changes nothing the viewer sees
/// (idle under a manual DND, say) is skipped.
fn next_change(
    row: &StoredStatus,
    known: &Known,
    now: Nanos,
    limits: &Limits,
    current: &Shape,
) -> Option<Nanos> {
    if known.frozen(row) {
        return None;
    }
    // Activity ages from what this viewer knows of it (floored for others).
    let mut deadlines = [
        known.last_seen.map(|seen| seen + limits.idle_after),
        known.last_seen.map(|seen| seen + limits.away_after),
        known.manual_status_until,
        known.status_message_until,
    ];
    deadlines.sort_unstable();
    // (None sorts first; equal deadlines are tried once.)
    let mut tried = None;
    deadlines
        .into_iter()
        .flatten()
        .filter(|deadline| *deadline > now)
        .filter(|deadline| tried.replace(*deadline) != Some(*deadline))
        .find(|deadline| Shape::at(row, known, *deadline, limits) != *current)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn nanoseconds_are_the_instant_exactly_and_floor_it_as_chrono_does(
            seconds in prop_oneof![-5_000_000_000i64..5_000_000_000, -8_000_000_000_000i64..8_000_000_000_000],
            nanoseconds in 0u32..1_000_000_000,
            precision_ms in prop_oneof![Just(0i64), 1i64..120_000],
        ) {
            let at = DateTime::from_timestamp(seconds, nanoseconds).expect("in range");
            let thresholds = Thresholds {
                idle_after: TimeDelta::seconds(1),
                away_after: TimeDelta::seconds(2),
                offline_after: TimeDelta::seconds(3),
                last_seen_precision: TimeDelta::milliseconds(precision_ms),
            };
            prop_assert_eq!(instant(nanos(at)), Some(at));
            prop_assert_eq!(
                instant(Limits::of(&thresholds).floor(nanos(at))),
                Some(thresholds.floor(at))
            );
            let later = at + TimeDelta::nanoseconds(i64::from(nanoseconds) * 3);
            prop_assert_eq!(nanos(later) - nanos(at), span(later - at));
        }
    }
}

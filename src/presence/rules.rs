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
    let known = Known::of(row, audience, now, thresholds);
    let shape = Shape::at(row, &known, now, thresholds);
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
        last_seen: shape.last_seen,
        status_message: row.status_message.clone().filter(|_| shape.message_shown),
        platforms: Platform::set(shape.platforms),
        next_change_at: next_change(row, &known, now, thresholds, &shape),
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
    last_seen: Option<DateTime<Utc>>,
    platforms: u8,
    message_shown: bool,
    manual_status: Option<ManualStatus>,
}

/// What a view at any instant from now on starts from, computed once per
/// view: the activity times as this audience knows them, and the platforms of
/// the devices live now (a device that keeps sending heartbeats stays live;
/// one that stops is no scheduled change).
#[derive(Debug, Clone, Copy)]
struct Known {
    audience: Audience,
    /// The last activity: exact for the user, floored to the precision for others.
    last_seen: Option<DateTime<Utc>>,
    /// What others may know of the last activity: it stops where hiding began.
    shown_last_seen: Option<DateTime<Utc>>,
    /// The platforms of the devices live at the view's instant.
    live_platforms: u8,
}

impl Known {
    /// What `audience` knows of `row` at `now`: times floored once, live platforms read once.
    fn of(
        row: &StoredStatus,
        audience: Audience,
        now: DateTime<Utc>,
        thresholds: &Thresholds,
    ) -> Self {
        let is_self = audience == Audience::Owner;
        // Others know activity only to the precision; the user knows it exactly.
        let known = |instant: Option<DateTime<Utc>>| {
            if is_self {
                instant
            } else {
                instant.map(|instant| thresholds.floor(instant))
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
            let pinged_after = now - thresholds.offline_after;
            row.devices
                .iter()
                .filter(|device| device.last_ping > pinged_after)
                .fold(0, |set, device| set | device.platform.bit())
        } else {
            0
        };
        let audience = match audience {
            // (Floored once here, as everything else the view shows of it.)
            Audience::Hidden(hidden) => Audience::Hidden(Hidden {
                last_seen: known(hidden.last_seen),
            }),
            audience => audience,
        };
        Self {
            audience,
            last_seen,
            shown_last_seen,
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
    fn at(row: &StoredStatus, known: &Known, at: DateTime<Utc>, thresholds: &Thresholds) -> Self {
        let is_self = known.audience == Audience::Owner;
        if let Audience::Hidden(hidden) = known.audience {
            return Self::offline(hidden.last_seen.min(known.shown_last_seen), false, None);
        }
        let manual_status = row
            .manual_status
            .filter(|_| row.manual_status_until.is_none_or(|until| at < until));
        let message_active =
            row.status_message.is_some() && row.status_message_until.is_none_or(|until| at < until);
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
            None => status_by_activity(known.last_seen, at, thresholds),
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
        last_seen: Option<DateTime<Utc>>,
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

fn status_by_activity(
    last_seen: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
    thresholds: &Thresholds,
) -> Status {
    match last_seen.map(|last_seen| at - last_seen) {
        Some(quiet) if quiet < thresholds.idle_after => Status::Online,
        Some(quiet) if quiet < thresholds.away_after => Status::Idle,
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
    now: DateTime<Utc>,
    thresholds: &Thresholds,
    current: &Shape,
) -> Option<DateTime<Utc>> {
    if known.frozen(row) {
        return None;
    }
    // Activity ages from what this viewer knows of it (floored for others).
    let mut deadlines = [
        known.last_seen.map(|seen| seen + thresholds.idle_after),
        known.last_seen.map(|seen| seen + thresholds.away_after),
        row.manual_status_until,
        row.status_message_until,
    ];
    deadlines.sort_unstable();
    // (None sorts first; equal deadlines are tried once.)
    let mut tried = None;
    deadlines
        .into_iter()
        .flatten()
        .filter(|deadline| *deadline > now)
        .filter(|deadline| tried.replace(*deadline) != Some(*deadline))
        .find(|deadline| Shape::at(row, known, *deadline, thresholds) != *current)
}

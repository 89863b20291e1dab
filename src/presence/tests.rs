//! The rules of contract section 2: a table for every rule and boundary, and properties.

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::{
    EffectiveStatus, Hidden, Status, StoredDevice, StoredStatus, Thresholds,
    calculate_effective_status,
};
use crate::domain::{ManualStatus, Platform, UserId};

fn t0() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().expect("valid instant")
}

fn ms(n: i64) -> TimeDelta {
    TimeDelta::milliseconds(n)
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

fn thresholds() -> Thresholds {
    Thresholds {
        idle_after: TimeDelta::minutes(5),
        away_after: TimeDelta::minutes(30),
        offline_after: secs(60),
        last_seen_precision: TimeDelta::zero(),
    }
}

fn user() -> UserId {
    UserId::from(Uuid::from_u128(1))
}

fn stranger() -> UserId {
    UserId::from(Uuid::from_u128(2))
}

fn device(id: &str, platform: Platform, last_ping: TimeDelta) -> StoredDevice {
    StoredDevice {
        id: id.to_owned(),
        platform,
        last_ping: t0() + last_ping,
        last_active: t0() + last_ping,
    }
}

/// A user last active at `seen` with one web device last pinged at `ping` (offsets from t0).
fn row(seen: TimeDelta, ping: TimeDelta) -> StoredStatus {
    StoredStatus {
        user_id: user(),
        manual_status: None,
        manual_status_until: None,
        invisible: false,
        last_seen_before_invisible: None,
        last_seen: Some(t0() + seen),
        status_message: None,
        status_message_until: None,
        devices: vec![device("tab", Platform::Web, ping)],
        version: 1,
    }
}

fn view(row: &StoredStatus, viewer: UserId, now: DateTime<Utc>) -> EffectiveStatus {
    calculate_effective_status(row.user_id, Some(row), viewer, None, now, &thresholds())
}

struct Case {
    name: &'static str,
    row: StoredStatus,
    viewer: UserId,
    status: Status,
    next_change: Option<TimeDelta>,
}

fn case(
    name: &'static str,
    row: StoredStatus,
    status: Status,
    next_change: Option<TimeDelta>,
) -> Case {
    Case {
        name,
        row,
        viewer: stranger(),
        status,
        next_change,
    }
}

fn with(mut row: StoredStatus, change: impl FnOnce(&mut StoredStatus)) -> StoredStatus {
    change(&mut row);
    row
}

#[test]
fn every_rule_and_boundary_in_order() {
    let m5 = TimeDelta::minutes(5);
    let m30 = TimeDelta::minutes(30);
    let cases = [
        case(
            "active now: online until idle (device expiry is never scheduled)",
            row(ms(0), ms(0)),
            Status::Online,
            Some(m5),
        ),
        case(
            "1 ms before idle",
            row(ms(1) - m5, secs(-10)),
            Status::Online,
            Some(ms(1)),
        ),
        case(
            "exactly at idle_after: away next",
            row(-m5, secs(-10)),
            Status::Idle,
            Some(m30 - m5),
        ),
        case(
            "idle with a fresh heartbeat: away next",
            row(ms(1) - m30, ms(0)),
            Status::Idle,
            Some(ms(1)),
        ),
        case(
            "exactly at away_after: nothing scheduled",
            row(-m30, ms(0)),
            Status::Away,
            None,
        ),
        case(
            "long quiet, heartbeat live: away",
            row(-TimeDelta::hours(5), ms(-1)),
            Status::Away,
            None,
        ),
        case(
            "device 1 ms from expiry: still live, idle next",
            row(secs(-60) + ms(1), secs(-60) + ms(1)),
            Status::Online,
            Some(m5 - secs(60) + ms(1)),
        ),
        case(
            "device exactly offline_after old: offline",
            row(secs(-60), secs(-60)),
            Status::Offline,
            None,
        ),
        case(
            "no device at all: offline",
            with(row(ms(0), ms(0)), |r| r.devices.clear()),
            Status::Offline,
            None,
        ),
        case(
            "dnd until cleared beats activity: idle under it changes nothing",
            with(row(ms(0), ms(0)), |r| {
                r.manual_status = Some(ManualStatus::Dnd);
            }),
            Status::Dnd,
            None,
        ),
        case(
            "dnd with an expiry",
            with(row(ms(0), ms(0)), |r| {
                r.manual_status = Some(ManualStatus::Dnd);
                r.manual_status_until = Some(t0() + secs(10));
            }),
            Status::Dnd,
            Some(secs(10)),
        ),
        case(
            "dnd expiring exactly now is over",
            with(row(ms(0), ms(0)), |r| {
                r.manual_status = Some(ManualStatus::Dnd);
                r.manual_status_until = Some(t0());
            }),
            Status::Online,
            Some(m5),
        ),
        case(
            "manual away expiring into activity-away changes nothing for others",
            with(row(-TimeDelta::hours(1), ms(0)), |r| {
                r.manual_status = Some(ManualStatus::Away);
                r.manual_status_until = Some(t0() + secs(10));
            }),
            Status::Away,
            None,
        ),
        case(
            "manual status needs a live device",
            with(row(ms(0), secs(-61)), |r| {
                r.manual_status = Some(ManualStatus::Dnd);
            }),
            Status::Offline,
            None,
        ),
        case(
            "invisible looks offline to others, nothing changes",
            with(row(ms(0), ms(0)), |r| r.invisible = true),
            Status::Offline,
            None,
        ),
        case(
            "a message expiring changes the view",
            with(row(ms(0), ms(0)), |r| {
                r.status_message = Some("Lunch".to_owned());
                r.status_message_until = Some(t0() + secs(20));
            }),
            Status::Online,
            Some(secs(20)),
        ),
        case(
            "a device that may stop pinging is not a scheduled change",
            with(row(ms(0), ms(0)), |r| {
                r.devices.push(device("phone", Platform::Mobile, secs(-30)));
            }),
            Status::Online,
            Some(m5),
        ),
        Case {
            viewer: user(),
            ..case(
                "the user sees their own manual away expire",
                with(row(-TimeDelta::hours(1), ms(0)), |r| {
                    r.manual_status = Some(ManualStatus::Away);
                    r.manual_status_until = Some(t0() + secs(10));
                }),
                Status::Away,
                Some(secs(10)),
            )
        },
        Case {
            viewer: user(),
            ..case(
                "invisible users see their real status",
                with(row(ms(0), ms(0)), |r| r.invisible = true),
                Status::Online,
                Some(m5),
            )
        },
        Case {
            viewer: user(),
            ..case(
                "offline users still see their message expire",
                with(row(ms(0), secs(-120)), |r| {
                    r.status_message = Some("Back Monday".to_owned());
                    r.status_message_until = Some(t0() + TimeDelta::days(2));
                }),
                Status::Offline,
                Some(TimeDelta::days(2)),
            )
        },
    ];
    for case in cases {
        let shown = view(&case.row, case.viewer, t0());
        assert_eq!(shown.status, case.status, "{}", case.name);
        assert_eq!(
            shown.next_change_at,
            case.next_change.map(|delta| t0() + delta),
            "{}",
            case.name
        );
    }
}

#[test]
fn a_user_who_never_pinged_is_offline_and_never_seen() {
    let shown = calculate_effective_status(user(), None, stranger(), None, t0(), &thresholds());
    assert_eq!(shown.status, Status::Offline);
    assert_eq!(shown.last_seen, None);
    assert_eq!(shown.next_change_at, None);
    assert!(shown.platforms.is_empty() && shown.status_message.is_none() && shown.own.is_none());
}

#[test]
fn an_invisible_user_shows_others_only_the_frozen_last_seen() {
    let row = with(row(ms(0), ms(0)), |r| {
        r.invisible = true;
        r.last_seen_before_invisible = Some(t0() - TimeDelta::hours(3));
        r.status_message = Some("Secret".to_owned());
        r.devices.push(device("phone", Platform::Mobile, ms(0)));
    });
    let shown = view(&row, stranger(), t0());
    assert_eq!(shown.status, Status::Offline);
    assert_eq!(shown.last_seen, Some(t0() - TimeDelta::hours(3)));
    assert_eq!(shown.status_message, None);
    assert!(shown.platforms.is_empty());
    assert!(shown.own.is_none());

    let own = view(&row, user(), t0());
    assert_eq!(own.status, Status::Online);
    assert_eq!(own.last_seen, Some(t0()));
    assert_eq!(own.platforms, [Platform::Web, Platform::Mobile]);
    assert_eq!(own.status_message.as_deref(), Some("Secret"));
    assert!(
        own.own
            .is_some_and(|own| own.invisible && own.devices.len() == 2)
    );
}

#[test]
fn a_block_shows_an_offline_user_frozen_at_the_block() {
    let row = with(row(ms(0), ms(0)), |r| {
        r.status_message = Some("Here".to_owned());
    });
    let at_block = Some(t0() - TimeDelta::minutes(7));
    let hidden = Some(Hidden {
        last_seen: at_block,
    });
    let shown =
        calculate_effective_status(user(), Some(&row), stranger(), hidden, t0(), &thresholds());
    assert_eq!(shown.status, Status::Offline);
    assert_eq!(shown.last_seen, at_block);
    assert_eq!((shown.status_message, shown.next_change_at), (None, None));
    assert!(shown.platforms.is_empty() && shown.own.is_none());

    let invisible_earlier = with(row.clone(), |r| {
        r.invisible = true;
        r.last_seen_before_invisible = Some(t0() - TimeDelta::hours(1));
    });
    let shown = calculate_effective_status(
        user(),
        Some(&invisible_earlier),
        stranger(),
        hidden,
        t0(),
        &thresholds(),
    );
    assert_eq!(
        shown.last_seen,
        Some(t0() - TimeDelta::hours(1)),
        "hidden since the earlier of the two"
    );

    let own = calculate_effective_status(user(), Some(&row), user(), hidden, t0(), &thresholds());
    assert_eq!(
        own.status,
        Status::Online,
        "a block never hides a user from themselves"
    );
}

#[test]
fn platforms_are_listed_once_each_in_a_fixed_order() {
    let row = with(row(ms(0), ms(0)), |r| {
        r.devices = vec![
            device("phone", Platform::Mobile, ms(0)),
            device("tab-1", Platform::Web, ms(0)),
            device("app", Platform::Desktop, ms(0)),
            device("tab-2", Platform::Web, ms(0)),
        ];
    });
    assert_eq!(
        view(&row, stranger(), t0()).platforms,
        [Platform::Web, Platform::Desktop, Platform::Mobile]
    );
}

#[test]
fn expired_settings_vanish_from_the_self_view() {
    let row = with(row(ms(0), ms(0)), |r| {
        r.manual_status = Some(ManualStatus::Dnd);
        r.manual_status_until = Some(t0() - ms(1));
        r.status_message = Some("Old".to_owned());
        r.status_message_until = Some(t0());
    });
    let shown = view(&row, user(), t0());
    let own = shown.own.expect("self view");
    assert_eq!((own.manual_status, own.manual_status_until), (None, None));
    assert_eq!(
        (shown.status_message, own.status_message_until),
        (None, None)
    );
}

fn floored_to_the_minute() -> Thresholds {
    Thresholds {
        last_seen_precision: TimeDelta::minutes(1),
        ..thresholds()
    }
}

#[test]
fn others_see_activity_floored_to_the_precision_the_user_sees_it_exactly() {
    let thresholds = floored_to_the_minute();
    let row = row(secs(30) + ms(500), secs(270));
    let at = |now: DateTime<Utc>, viewer: UserId| {
        calculate_effective_status(row.user_id, Some(&row), viewer, None, now, &thresholds)
    };
    let other = at(t0() + secs(40), stranger());
    assert_eq!(other.last_seen, Some(t0()), "floored to the minute");
    assert_eq!(other.next_change_at, Some(t0() + TimeDelta::minutes(5)));
    let own = at(t0() + secs(40), user());
    assert_eq!(own.last_seen, Some(t0() + secs(30) + ms(500)), "exact");
    assert_eq!(
        own.next_change_at,
        Some(t0() + TimeDelta::minutes(5) + secs(30) + ms(500))
    );

    let boundary = t0() + TimeDelta::minutes(5);
    assert_eq!(at(boundary - ms(1), stranger()).status, Status::Online);
    assert_eq!(
        at(boundary, stranger()).status,
        Status::Idle,
        "ages from the floor"
    );
    assert_eq!(at(boundary, user()).status, Status::Online);

    let hidden = Some(Hidden {
        last_seen: Some(t0() + secs(59)),
    });
    let blocked = calculate_effective_status(
        row.user_id,
        Some(&row),
        stranger(),
        hidden,
        t0() + secs(40),
        &thresholds,
    );
    assert_eq!(
        blocked.last_seen,
        Some(t0()),
        "a frozen lastSeen is floored too"
    );
}

fn arbitrary_row() -> impl Strategy<Value = StoredStatus> {
    let offset = |min: i64, max: i64| (min..=max).prop_map(ms);
    let platform = prop_oneof![
        Just(Platform::Web),
        Just(Platform::Desktop),
        Just(Platform::Mobile)
    ];
    let device = (platform, offset(-120_000, 0), offset(0, 3_600_000)).prop_map(
        |(platform, ping, active_before)| StoredDevice {
            id: "d".to_owned(),
            platform,
            last_ping: t0() + ping,
            last_active: t0() + ping - active_before,
        },
    );
    let manual = prop_oneof![
        Just(None),
        Just(Some(ManualStatus::Away)),
        Just(Some(ManualStatus::Dnd))
    ];
    (
        prop::collection::vec(device, 0..5),
        offset(-3_600_000, 0),
        manual,
        prop::option::of(offset(-600_000, 3_600_000)),
        any::<bool>(),
        offset(-7_200_000, 0),
        any::<bool>(),
        prop::option::of(offset(-600_000, 3_600_000)),
    )
        .prop_map(
            |(devices, seen, manual, manual_until, invisible, frozen, message, message_until)| {
                StoredStatus {
                    user_id: user(),
                    manual_status: manual,
                    manual_status_until: manual.and(manual_until).map(|delta| t0() + delta),
                    invisible,
                    last_seen_before_invisible: invisible.then(|| t0() + frozen.min(seen)),
                    last_seen: Some(t0() + seen),
                    status_message: message.then(|| "hello".to_owned()),
                    status_message_until: if message {
                        message_until.map(|delta| t0() + delta)
                    } else {
                        None
                    },
                    devices,
                    version: 1,
                }
            },
        )
}

/// A view without its `nextChangeAt`, and without the self view's device list
/// (which shows each heartbeat's time to the user alone).
fn without_next_change(mut shown: EffectiveStatus) -> EffectiveStatus {
    shown.next_change_at = None;
    if let Some(own) = &mut shown.own {
        own.devices.clear();
    }
    shown
}

/// `row` as it stands at `at` if every device live at t0 kept sending heartbeats.
fn heartbeating(row: &StoredStatus, at: DateTime<Utc>) -> StoredStatus {
    with(row.clone(), |r| {
        for device in &mut r.devices {
            if t0() < device.last_ping + thresholds().offline_after {
                device.last_ping = device.last_ping.max(at);
            }
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_present_without_a_live_device(row in arbitrary_row(), is_self in any::<bool>()) {
        let viewer = if is_self { user() } else { stranger() };
        let shown = view(&row, viewer, t0());
        let live = row.devices.iter().any(|d| t0() < d.last_ping + thresholds().offline_after);
        prop_assert!(shown.status == Status::Offline || live);
        prop_assert_eq!(shown.platforms.is_empty(), shown.status == Status::Offline);
    }

    #[test]
    fn an_invisible_user_is_never_visible_to_another_viewer(
        mut row in arbitrary_row(),
        frozen in prop::option::of(0i64..7_200_000),
        later in 0i64..7_200_000,
    ) {
        row.invisible = true;
        row.last_seen_before_invisible = frozen.map(|before| t0() - ms(before));
        let shown = view(&row, stranger(), t0() + ms(later));
        prop_assert_eq!(shown.status, Status::Offline);
        prop_assert_eq!(shown.last_seen, row.last_seen_before_invisible);
        prop_assert!(shown.platforms.is_empty());
        prop_assert_eq!(shown.status_message, None);
        prop_assert_eq!(shown.next_change_at, None);
        prop_assert!(shown.own.is_none());
    }

    #[test]
    fn a_blocked_pair_never_sees_each_other(
        row in arbitrary_row(),
        frozen in prop::option::of(0i64..7_200_000),
        later in 0i64..7_200_000,
    ) {
        let hidden = Hidden { last_seen: frozen.map(|before| t0() - ms(before)) };
        let shown = calculate_effective_status(user(), Some(&row), stranger(), Some(hidden), t0() + ms(later), &thresholds());
        prop_assert_eq!(shown.status, Status::Offline);
        prop_assert!(shown.last_seen <= hidden.last_seen);
        prop_assert!(shown.platforms.is_empty());
        prop_assert_eq!(shown.status_message, None);
        prop_assert_eq!(shown.next_change_at, None);
        prop_assert!(shown.own.is_none());
    }

    #[test]
    fn a_heartbeat_never_changes_what_another_viewer_is_shown(
        row in arbitrary_row(),
        later in 0i64..120_000,
        since in 1i64..60_000,
        exact in any::<bool>(),
    ) {
        let thresholds = if exact { thresholds() } else { floored_to_the_minute() };
        let now = t0() + ms(later);
        // A live device, last pinged `since` ago, sends a heartbeat now.
        let row = with(row, |r| r.devices.push(device("beating", Platform::Desktop, ms(later - since))));
        let beating = row.devices.len() - 1;
        let shown = |row: &StoredStatus| {
            calculate_effective_status(row.user_id, Some(row), stranger(), None, now, &thresholds)
        };
        let before = shown(&row);
        let after = shown(&with(row.clone(), |r| r.devices[beating].last_ping = now));
        prop_assert_eq!(before, after);
    }

    #[test]
    fn next_change_is_exactly_the_next_change(row in arbitrary_row(), is_self in any::<bool>()) {
        let viewer = if is_self { user() } else { stranger() };
        let now = view(&row, viewer, t0());
        match now.next_change_at {
            Some(next) => {
                prop_assert!(next > t0());
                let before = view(&heartbeating(&row, next - ms(1)), viewer, next - ms(1));
                prop_assert_eq!(without_next_change(before), without_next_change(now.clone()), "nothing changes before it");
                let after = view(&heartbeating(&row, next), viewer, next);
                prop_assert_ne!(without_next_change(after), without_next_change(now), "something changes at it");
            }
            None => {
                let later = t0() + TimeDelta::days(365);
                let much_later = view(&heartbeating(&row, later), viewer, later);
                prop_assert_eq!(without_next_change(much_later), without_next_change(now), "nothing ever changes");
            }
        }
    }
}

//! The time rules of contract section 2, over HTTP, with the server's clock moved by hand.

use chrono::TimeDelta;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{iso, new_user, spawn_app, spawn_app_with, start_time};

fn at(offset: TimeDelta) -> Value {
    json!(iso(start_time() + offset))
}

#[sqlx::test]
async fn activity_ages_from_online_to_idle_to_away_while_heartbeats_keep_the_device_live(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let (user, viewer) = (new_user(), new_user());
    app.ping_ok(user, json!({})).await;

    // (time since the activity, expected status, expected nextChangeAt from the start)
    // Heartbeats never schedule anything: only online → idle → away does.
    let timeline = [
        (TimeDelta::zero(), "online", Some(TimeDelta::seconds(300))),
        (
            TimeDelta::seconds(299),
            "online",
            Some(TimeDelta::seconds(300)),
        ),
        (
            TimeDelta::seconds(300),
            "idle",
            Some(TimeDelta::seconds(1800)),
        ),
        (
            TimeDelta::seconds(1799),
            "idle",
            Some(TimeDelta::seconds(1800)),
        ),
        (TimeDelta::seconds(1800), "away", None),
    ];
    let mut elapsed = TimeDelta::zero();
    for (since_activity, status, next_change) in timeline {
        app.advance(since_activity - elapsed);
        elapsed = since_activity;
        app.ping_ok(user, json!({"active": false})).await;
        let seen = app.status_of(viewer, user).await;
        assert_eq!(seen["status"], status, "after {since_activity}: {seen}");
        assert_eq!(
            seen["lastSeen"],
            at(TimeDelta::zero()),
            "after {since_activity}"
        );
        assert_eq!(
            seen["nextChangeAt"],
            next_change.map_or(Value::Null, at),
            "after {since_activity}"
        );
    }
}

#[sqlx::test]
async fn a_device_goes_offline_exactly_at_the_offline_threshold(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (user, viewer) = (new_user(), new_user());
    app.ping_ok(user, json!({"statusMessage": "Around"})).await;

    app.advance(TimeDelta::milliseconds(59_999));
    let seen = app.status_of(viewer, user).await;
    assert_eq!(seen["status"], "online");
    assert_eq!(
        seen["nextChangeAt"],
        at(TimeDelta::seconds(300)),
        "a device that may stop pinging is not scheduled"
    );

    app.advance(TimeDelta::milliseconds(1));
    let seen = app.status_of(viewer, user).await;
    assert_eq!(
        seen,
        json!({
            "userId": user.to_string(),
            "status": "offline",
            "lastSeen": at(TimeDelta::zero()),
            "statusMessage": null,
            "platforms": [],
            "nextChangeAt": null,
        })
    );
}

#[sqlx::test]
async fn short_thresholds_from_the_environment_are_honoured(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        &[
            ("PRESENCE_IDLE_AFTER", "100ms"),
            ("PRESENCE_AWAY_AFTER", "200ms"),
            ("PRESENCE_OFFLINE_AFTER", "300ms"),
        ],
    )
    .await;
    let (user, viewer) = (new_user(), new_user());
    app.ping_ok(user, json!({})).await;
    for (step, status) in [
        (0, "online"),
        (100, "idle"),
        (100, "away"),
        (100, "offline"),
    ] {
        app.advance(TimeDelta::milliseconds(step));
        assert_eq!(app.status_of(viewer, user).await["status"], status);
    }
}

#[sqlx::test]
async fn dnd_wins_over_activity_but_not_over_offline(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (user, viewer) = (new_user(), new_user());
    let me = app.ping_ok(user, json!({"manualStatus": "dnd"})).await;
    assert_eq!(me["status"], "dnd");
    assert_eq!(
        me["nextChangeAt"],
        Value::Null,
        "only going offline can change it, which is never scheduled"
    );
    app.advance(TimeDelta::seconds(60));
    assert_eq!(app.status_of(viewer, user).await["status"], "offline");
}

#[sqlx::test]
async fn next_change_skips_a_deadline_that_changes_nothing_for_the_viewer(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (user, viewer) = (new_user(), new_user());
    app.ping_ok(
        user,
        json!({"deviceId": "tab-1", "manualStatus": "away", "manualStatusUntil": at(TimeDelta::minutes(10))}),
    )
    .await;
    app.advance(TimeDelta::minutes(1));
    app.ping_ok(user, json!({"active": false, "deviceId": "tab-1"}))
        .await;

    let seen = app.status_of(viewer, user).await;
    assert_eq!(seen["status"], "away");
    assert_eq!(
        seen["nextChangeAt"],
        at(TimeDelta::minutes(10)),
        "idle at 5 min changes nothing under a manual away; its expiry does"
    );
}

#[sqlx::test]
async fn next_change_is_null_when_nothing_will_change_by_itself(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (user, viewer) = (new_user(), new_user());
    app.ping_ok(user, json!({})).await;
    app.advance(TimeDelta::hours(2));
    let seen = app.status_of(viewer, user).await;
    assert_eq!(seen["status"], "offline");
    assert_eq!(seen["nextChangeAt"], json!(null));
}

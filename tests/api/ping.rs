use chrono::TimeDelta;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{iso, new_user, spawn_app, spawn_app_with, start_time};

#[sqlx::test]
async fn the_first_ping_creates_a_device_and_counts_as_activity(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    let me = app.ping_ok(user, json!({"active": false})).await;

    let now = iso(start_time());
    assert_eq!(me["userId"], user.to_string());
    assert_eq!(
        me["status"], "online",
        "opening the app is an interaction: {me}"
    );
    assert_eq!(me["lastSeen"], now);
    assert_eq!(me["platforms"], json!(["web"]));
    assert_eq!(me["pingIntervalSeconds"], 30);
    assert_eq!(
        me["devices"],
        json!([{"deviceId": "default", "platform": "web", "lastPing": now, "lastActive": now}])
    );
    assert_eq!(me["manualStatus"], json!(null));
    assert_eq!(me["invisible"], false);
}

#[sqlx::test]
async fn a_heartbeat_keeps_the_device_live_without_moving_last_seen(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (user, viewer) = (new_user(), new_user());
    app.ping_ok(user, json!({"deviceId": "tab-1"})).await;

    for _ in 0..10 {
        app.advance(TimeDelta::seconds(45));
        app.ping_ok(user, json!({"deviceId": "tab-1", "active": false}))
            .await;
    }
    let seen = app.status_of(viewer, user).await;
    assert_eq!(
        seen["status"], "idle",
        "7.5 minutes without activity: {seen}"
    );
    assert_eq!(seen["lastSeen"], iso(start_time()));
    assert_eq!(
        seen["platforms"],
        json!(["web"]),
        "the heartbeats kept the device live"
    );
}

#[sqlx::test]
async fn an_activity_ping_moves_last_seen_and_the_device(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    app.ping_ok(user, json!({"deviceId": "laptop", "platform": "desktop"}))
        .await;
    app.advance(TimeDelta::seconds(20));
    app.ping_ok(user, json!({"deviceId": "laptop", "active": false}))
        .await;
    app.advance(TimeDelta::seconds(20));
    let me = app.ping_ok(user, json!({"deviceId": "laptop"})).await;

    let now = iso(start_time() + TimeDelta::seconds(40));
    assert_eq!(me["lastSeen"], now);
    assert_eq!(
        me["devices"],
        json!([{"deviceId": "laptop", "platform": "desktop", "lastPing": now, "lastActive": now}]),
        "a ping without platform keeps the device's platform"
    );
}

#[sqlx::test]
async fn others_see_the_platforms_of_live_devices_only(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (user, viewer) = (new_user(), new_user());
    app.ping_ok(user, json!({"deviceId": "phone", "platform": "mobile"}))
        .await;
    app.advance(TimeDelta::seconds(30));
    app.ping_ok(user, json!({"deviceId": "tab", "platform": "web"}))
        .await;
    app.ping_ok(user, json!({"deviceId": "app", "platform": "desktop"}))
        .await;

    let seen = app.status_of(viewer, user).await;
    assert_eq!(seen["platforms"], json!(["web", "desktop", "mobile"]));
    assert_eq!(
        seen["nextChangeAt"],
        iso(start_time() + TimeDelta::seconds(330)),
        "idle, 5 min after the last activity: devices expiring are not scheduled"
    );

    app.advance(TimeDelta::seconds(30));
    let seen = app.status_of(viewer, user).await;
    assert_eq!(
        seen["platforms"],
        json!(["web", "desktop"]),
        "the phone is no longer live"
    );
    assert_eq!(
        seen.as_object().map(|o| o.contains_key("devices")),
        Some(false),
        "others never see devices"
    );
}

#[sqlx::test]
async fn dnd_with_an_expiry_ends_by_itself(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (user, viewer) = (new_user(), new_user());
    let until = iso(start_time() + TimeDelta::seconds(40));
    let me = app
        .ping_ok(
            user,
            json!({"manualStatus": "dnd", "manualStatusUntil": until}),
        )
        .await;
    assert_eq!(me["status"], "dnd");
    assert_eq!(me["manualStatus"], "dnd");
    assert_eq!(me["manualStatusUntil"], until);
    assert_eq!(me["nextChangeAt"], until);

    let seen = app.status_of(viewer, user).await;
    assert_eq!(seen["status"], "dnd");
    assert_eq!(
        seen.get("manualStatus"),
        None,
        "only the user sees their settings"
    );

    app.advance(TimeDelta::seconds(40));
    let seen = app.status_of(viewer, user).await;
    assert_eq!(
        seen["status"], "online",
        "the DND ended at its expiry: {seen}"
    );
    let me = app.status_of(user, user).await;
    assert_eq!(me["manualStatus"], json!(null));
    assert_eq!(me["manualStatusUntil"], json!(null));
}

#[sqlx::test]
async fn setting_a_manual_status_without_an_expiry_drops_the_earlier_one(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    let until = iso(start_time() + TimeDelta::minutes(10));
    app.ping_ok(
        user,
        json!({"manualStatus": "dnd", "manualStatusUntil": until}),
    )
    .await;
    let me = app.ping_ok(user, json!({"manualStatus": "away"})).await;
    assert_eq!(me["manualStatus"], "away");
    assert_eq!(me["manualStatusUntil"], json!(null), "until cleared: {me}");

    app.advance(TimeDelta::minutes(20));
    let me = app.ping_ok(user, json!({})).await;
    assert_eq!(
        me["status"], "away",
        "still away after the old expiry passed"
    );
}

#[sqlx::test]
async fn manual_status_until_null_alone_makes_the_status_last_until_cleared(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    let until = iso(start_time() + TimeDelta::minutes(10));
    app.ping_ok(
        user,
        json!({"manualStatus": "dnd", "manualStatusUntil": until}),
    )
    .await;
    let me = app.ping_ok(user, json!({"manualStatusUntil": null})).await;
    assert_eq!(me["manualStatus"], "dnd");
    assert_eq!(me["manualStatusUntil"], json!(null));
}

#[sqlx::test]
async fn manual_status_null_returns_to_automatic(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    app.ping_ok(user, json!({"manualStatus": "away"})).await;
    let me = app.ping_ok(user, json!({"active": false})).await;
    assert_eq!(
        me["status"], "away",
        "an absent field leaves the setting as it is"
    );
    let me = app.ping_ok(user, json!({"manualStatus": null})).await;
    assert_eq!(me["status"], "online");
    assert_eq!(me["manualStatus"], json!(null));
}

#[sqlx::test]
async fn a_manual_status_shows_only_while_a_device_is_live(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (user, viewer) = (new_user(), new_user());
    app.ping_ok(
        user,
        json!({"manualStatus": "dnd", "statusMessage": "Focus time"}),
    )
    .await;
    app.advance(TimeDelta::seconds(60));
    let seen = app.status_of(viewer, user).await;
    assert_eq!(seen["status"], "offline");
    assert_eq!(
        seen["statusMessage"],
        json!(null),
        "an offline user shows no message to others"
    );
    let me = app.status_of(user, user).await;
    assert_eq!(me["status"], "offline");
    assert_eq!(
        me["manualStatus"], "dnd",
        "the user still sees their setting"
    );
    assert_eq!(me["statusMessage"], "Focus time");
}

#[sqlx::test]
async fn a_status_message_is_set_shown_and_expires(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (user, viewer) = (new_user(), new_user());
    let until = iso(start_time() + TimeDelta::seconds(30));
    let me = app
        .ping_ok(
            user,
            json!({"statusMessage": "In a meeting 🗓", "statusMessageUntil": until}),
        )
        .await;
    assert_eq!(me["statusMessage"], "In a meeting 🗓");
    assert_eq!(me["statusMessageUntil"], until);
    assert_eq!(me["nextChangeAt"], until);
    assert_eq!(
        app.status_of(viewer, user).await["statusMessage"],
        "In a meeting 🗓"
    );

    app.advance(TimeDelta::seconds(30));
    let seen = app.status_of(viewer, user).await;
    assert_eq!(seen["statusMessage"], json!(null), "expired: {seen}");
    assert_eq!(seen["status"], "online");
}

#[sqlx::test]
async fn an_empty_or_null_message_clears_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    for clear in [json!(""), json!(null)] {
        app.ping_ok(user, json!({"statusMessage": "Lunch"})).await;
        let me = app.ping_ok(user, json!({"statusMessage": clear})).await;
        assert_eq!(me["statusMessage"], json!(null), "cleared with {clear}");
    }
}

#[sqlx::test]
async fn a_message_of_140_characters_is_kept_whole(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    let message = "é".repeat(139) + "🙂";
    let me = app.ping_ok(user, json!({"statusMessage": message})).await;
    assert_eq!(me["statusMessage"], message);
}

#[sqlx::test]
async fn an_invisible_user_looks_offline_to_others_and_real_to_themselves(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (user, viewer) = (new_user(), new_user());
    app.ping_ok(user, json!({"statusMessage": "Here", "platform": "mobile"}))
        .await;
    app.advance(TimeDelta::seconds(10));
    let me = app.ping_ok(user, json!({"invisible": true})).await;
    assert_eq!(me["status"], "online");
    assert_eq!(me["invisible"], true);
    assert_eq!(me["lastSeen"], iso(start_time() + TimeDelta::seconds(10)));

    for _ in 0..3 {
        app.advance(TimeDelta::seconds(20));
        app.ping_ok(user, json!({})).await;
    }
    let seen = app.status_of(viewer, user).await;
    assert_eq!(
        seen,
        json!({
            "userId": user.to_string(),
            "status": "offline",
            "lastSeen": iso(start_time()),
            "statusMessage": null,
            "platforms": [],
            "nextChangeAt": null,
        }),
        "lastSeen froze at the last activity before invisibility"
    );

    let me = app.ping_ok(user, json!({"invisible": false})).await;
    assert_eq!(me["invisible"], false);
    let seen = app.status_of(viewer, user).await;
    assert_eq!(seen["status"], "online");
    assert_eq!(seen["lastSeen"], iso(start_time() + TimeDelta::seconds(70)));
    assert_eq!(seen["statusMessage"], "Here");
}

#[sqlx::test]
async fn a_user_invisible_from_the_first_ping_was_never_seen_by_others(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (user, viewer) = (new_user(), new_user());
    app.ping_ok(user, json!({"invisible": true})).await;
    let seen = app.status_of(viewer, user).await;
    let never_pinged = app.status_of(viewer, new_user()).await;
    assert_eq!(seen["lastSeen"], json!(null));
    assert_eq!(seen["status"], never_pinged["status"]);
    assert_eq!(seen["platforms"], never_pinged["platforms"]);
}

#[sqlx::test]
async fn a_user_who_never_pinged_is_offline_with_no_last_seen(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    let seen = app.status_of(new_user(), user).await;
    assert_eq!(
        seen,
        json!({
            "userId": user.to_string(),
            "status": "offline",
            "lastSeen": null,
            "statusMessage": null,
            "platforms": [],
            "nextChangeAt": null,
        })
    );
}

#[sqlx::test]
async fn a_new_device_beyond_the_limit_replaces_the_least_recently_seen(pool: PgPool) {
    let app = spawn_app_with(pool, &[("PRESENCE_MAX_DEVICES", "3")]).await;
    let user = new_user();
    for device in ["a", "b", "c"] {
        app.ping_ok(user, json!({"deviceId": device})).await;
        app.advance(TimeDelta::seconds(1));
    }
    app.ping_ok(user, json!({"deviceId": "a", "active": false}))
        .await;
    app.advance(TimeDelta::seconds(1));
    let me = app.ping_ok(user, json!({"deviceId": "d"})).await;

    let ids: Vec<&str> = me["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|device| device["deviceId"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        ["d", "a", "c"],
        "b was seen least recently and made room"
    );
}

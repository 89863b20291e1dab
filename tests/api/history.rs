//! Presence history and the admin routes: exact against a model of the self
//! view, no write per heartbeat, retention, and service tokens only.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use presence::auth::{ADMIN_SCOPE, TokenSettings, issue_scoped_token};
use presence::clock::{Clock, ManualClock};
use presence::domain::{DeviceId, Ping, SettingChange, UserId};
use presence::store;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRng, TestRunner};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{
    TEST_SECRET, TestApp, error_code, iso, new_user, spawn_app, spawn_app_on_single_node,
    spawn_app_with, start_time, token_for,
};
use crate::model::{Event, Rules};

/// A service token (scope `presence:admin`) named `name`.
pub fn service_token(name: &str) -> String {
    issue_scoped_token(
        &TokenSettings::with_secret(SecretString::from(TEST_SECRET.to_owned())),
        name,
        Some(ADMIN_SCOPE),
        Duration::from_secs(3600),
    )
    .expect("token signs")
}

/// `GET path` with `token`.
async fn get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.raw(
        reqwest::Method::GET,
        path,
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    )
    .await
}

/// `GET path` with `token`, which must answer `200`; the JSON body.
pub async fn get_ok(app: &TestApp, path: &str, token: &str) -> Value {
    let response = get(app, path, token).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response.json().await.expect("JSON body")
}

fn instant(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .expect("a timestamp")
        .parse()
        .expect("RFC 3339")
}

/// The rows of the history tables: (sessions, spans, settings changes).
async fn history_rows(pool: &PgPool) -> (i64, i64, i64) {
    sqlx::query_as(
        "select (select count(*) from device_sessions), (select count(*) from activity_spans),
                (select count(*) from settings_changes)",
    )
    .fetch_one(pool)
    .await
    .expect("counts")
}

#[sqlx::test]
async fn a_morning_reads_back_as_the_self_view_showed_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    let t0 = start_time();
    let laptop = json!({"deviceId": "laptop", "active": false});
    app.ping_ok(user, json!({"deviceId": "laptop", "platform": "desktop"}))
        .await;
    app.advance(TimeDelta::seconds(30));
    app.ping_ok(user, laptop.clone()).await;
    app.advance(TimeDelta::seconds(30));
    app.ping_ok(user, laptop.clone()).await;
    // A phone opens the app at 1 min (activity), and is never heard of again.
    app.ping_ok(user, json!({"deviceId": "phone", "platform": "mobile"}))
        .await;
    app.advance(TimeDelta::seconds(30));
    app.ping_ok(user, laptop.clone()).await;
    app.advance(TimeDelta::seconds(30));
    app.ping_ok(
        user,
        json!({"deviceId": "laptop", "manualStatus": "dnd", "manualStatusUntil": iso(t0 + TimeDelta::minutes(12))}),
    )
    .await;
    // The laptop heartbeats every 30 s for an hour.
    for _ in 0..120 {
        app.advance(TimeDelta::seconds(30));
        app.ping_ok(user, laptop.clone()).await;
    }
    // t0 + 62 min: signed out.
    assert_eq!(
        app.delete_device(user, "laptop").await.status(),
        StatusCode::NO_CONTENT
    );
    app.advance(TimeDelta::minutes(8));

    let body = get_ok(
        &app,
        &format!(
            "/api/status/history?from={}&to={}",
            iso(t0 - TimeDelta::hours(1)),
            iso(t0 + TimeDelta::hours(2))
        ),
        &token_for(user),
    )
    .await;
    let minute = |m: i64| iso(t0 + TimeDelta::minutes(m));
    assert_eq!(
        body["segments"],
        json!([
            {"status": "online", "from": minute(0), "to": minute(2)},
            {"status": "dnd", "from": minute(2), "to": minute(12)},
            // The last activity was the dnd ping at 2 min: idle from 7, away from 32.
            {"status": "idle", "from": minute(12), "to": minute(32)},
            {"status": "away", "from": minute(32), "to": minute(62)},
            {"status": "offline", "from": minute(62), "to": minute(70)},
        ]),
        "{body:#}"
    );
    assert_eq!(
        body["sessions"],
        json!([
            {"deviceId": "laptop", "platform": "desktop", "from": minute(0), "to": minute(62)},
            {"deviceId": "phone", "platform": "mobile", "from": minute(1), "to": minute(2)},
        ]),
        "{body:#}"
    );
    assert_eq!(body["from"], json!(iso(t0 - TimeDelta::hours(1))));

    // The views for BI tools resolve open records as the API does.
    let sessions: Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "select device_id, started_at, ended_at from presence_sessions
         where user_id = $1 order by started_at",
    )
    .bind(user.as_uuid())
    .fetch_all(&app.pool)
    .await
    .expect("the sessions view");
    let at = |m: i64| t0 + TimeDelta::minutes(m);
    assert_eq!(
        sessions,
        vec![
            ("laptop".to_owned(), at(0), Some(at(62))),
            ("phone".to_owned(), at(1), Some(at(2))),
        ]
    );
    let spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "select started_at, ended_at from presence_activity_spans where user_id = $1",
    )
    .bind(user.as_uuid())
    .fetch_all(&app.pool)
    .await
    .expect("the spans view");
    assert_eq!(spans, vec![(at(0), at(2))], "the open span");
}

#[sqlx::test]
async fn heartbeats_write_no_history_and_an_hour_of_activity_is_one_span(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let user = new_user();
    app.ping_ok(user, json!({"deviceId": "laptop"})).await;
    let opened = history_rows(&pool).await;
    assert_eq!(opened, (1, 0, 0), "the session opened");
    for _ in 0..120 {
        app.advance(TimeDelta::seconds(30));
        app.ping_ok(user, json!({"deviceId": "laptop", "active": false}))
            .await;
    }
    assert_eq!(
        history_rows(&pool).await,
        opened,
        "an hour of heartbeats wrote no history"
    );

    // An hour of activity every 10 s: the first closes the span of the first
    // ping (an hour ago), the rest write nothing.
    app.advance(TimeDelta::seconds(10));
    let first = app.clock.now();
    for _ in 0..360 {
        app.ping_ok(user, json!({"deviceId": "laptop"})).await;
        app.advance(TimeDelta::seconds(10));
    }
    let last = app.clock.now() - TimeDelta::seconds(10);
    assert_eq!(history_rows(&pool).await, (1, 1, 0));
    // A pause past the idle threshold, heartbeating, closes the hour's span: one row.
    for _ in 0..12 {
        app.ping_ok(user, json!({"deviceId": "laptop", "active": false}))
            .await;
        app.advance(TimeDelta::seconds(30));
    }
    app.ping_ok(user, json!({"deviceId": "laptop"})).await;
    let spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "select started_at, ended_at from activity_spans where user_id = $1 order by started_at",
    )
    .bind(user.as_uuid())
    .fetch_all(&pool)
    .await
    .expect("spans");
    assert_eq!(spans.len(), 2, "{spans:?}");
    assert_eq!(spans[1], (first, last), "the hour of activity is one span");
    assert_eq!(history_rows(&pool).await.0, 1, "still one session");
}

/// How often the history trigger function ran in `transaction` so far.
async fn trigger_calls(transaction: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar(
        "select coalesce(pg_stat_get_xact_function_calls('user_status_track_history'::regproc), 0)",
    )
    .fetch_one(transaction)
    .await
    .expect("function statistics")
}

#[sqlx::test]
async fn a_heartbeat_beside_a_stale_device_does_not_call_the_history_trigger(pool: PgPool) {
    // A phone asleep beside a laptop in use: the phone's session has ended but
    // the device stays listed until the prune job. The laptop's heartbeats
    // must still be filtered out by the trigger's WHEN clause.
    // On one node even when the suite runs on Citus: the function statistics
    // counted here are the backend's own, and on Citus the trigger (the same
    // WHEN clause on every shard) runs in the workers' backends.
    let app = spawn_app_on_single_node(pool.clone(), ManualClock::starting_at(start_time())).await;
    let user = new_user();
    app.ping_ok(user, json!({"deviceId": "phone"})).await;
    app.advance(TimeDelta::hours(1));
    app.ping_ok(user, json!({"deviceId": "laptop"})).await;
    let heartbeat = Ping {
        device_id: DeviceId::parse("laptop").expect("id"),
        platform: None,
        active: false,
        manual_status: SettingChange::Keep,
        invisible: None,
        status_message: SettingChange::Keep,
    };

    let mut transaction = pool.begin().await.expect("a transaction");
    sqlx::query("set local track_functions = 'pl'")
        .execute(&mut *transaction)
        .await
        .expect("function statistics on");
    let mut at = app.clock.now();
    for _ in 0..3 {
        at += TimeDelta::seconds(20);
        store::apply_ping(&mut transaction, user, &heartbeat, at, 10)
            .await
            .expect("heartbeat");
    }
    assert_eq!(
        trigger_calls(&mut transaction).await,
        0,
        "heartbeats of a live device ran the history trigger"
    );
    // The laptop back after a gap longer than the offline threshold: a new session.
    at += TimeDelta::hours(1);
    store::apply_ping(&mut transaction, user, &heartbeat, at, 10)
        .await
        .expect("ping after a gap");
    assert_eq!(trigger_calls(&mut transaction).await, 1);
    transaction.commit().await.expect("commit");
    let sessions: Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "select device_id, started_at, ended_at from device_sessions
         where user_id = $1 order by started_at",
    )
    .bind(user.as_uuid())
    .fetch_all(&pool)
    .await
    .expect("sessions");
    assert_eq!(sessions.len(), 3, "{sessions:?}");
    assert_eq!(sessions[2].0, "laptop");
    assert_eq!(
        sessions[2].1, at,
        "the laptop's second session starts at its return"
    );
    assert!(
        sessions[1].2.is_some(),
        "the laptop's first session is closed"
    );
}

#[sqlx::test]
async fn admin_routes_refuse_user_tokens_and_tell_services_the_truth(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (hiding, watcher) = (new_user(), new_user());
    app.ping_ok(hiding, json!({"deviceId": "laptop", "invisible": true}))
        .await;
    let paths = [
        format!("/api/admin/status/{hiding}"),
        format!("/api/admin/users/{hiding}/history"),
        "/api/admin/online".to_owned(),
    ];
    for path in &paths {
        let (status, code) = error_code(get(&app, path, &token_for(watcher)).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::FORBIDDEN, "FORBIDDEN"),
            "{path}"
        );
        let response = app.raw(reqwest::Method::GET, path, &[], None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    // A service token whose subject is no user id cannot call the user routes.
    let service = service_token("push-notifier");
    let (status, code) =
        error_code(get(&app, &format!("/api/status/{hiding}"), &service).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );

    // Others see the invisible user offline; the service sees the truth.
    assert_eq!(app.status_of(watcher, hiding).await["status"], "offline");
    let truth = get_ok(&app, &paths[0], &service).await;
    assert_eq!(truth["status"], "online");
    assert_eq!(truth["invisible"], true);
    assert_eq!(truth["devices"][0]["deviceId"], "laptop");
    let online = get_ok(&app, &paths[2], &service).await;
    assert_eq!(online["userIds"], json!([hiding.to_string()]));
    assert_eq!(online["next"], Value::Null);
    app.advance(TimeDelta::seconds(30));
    let history = get_ok(&app, &paths[1], &service).await;
    assert_eq!(history["segments"][0]["status"], "online", "{history:#}");
}

#[sqlx::test]
async fn online_at_pages_through_users_in_id_order(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut users: Vec<UserId> = (0..5).map(|_| new_user()).collect();
    for user in &users {
        app.ping_ok(*user, json!({})).await;
    }
    let at = app.clock.now();
    app.advance(TimeDelta::minutes(10));
    users.sort();
    let service = service_token("reports");
    let first = get_ok(
        &app,
        &format!("/api/admin/online?at={}&limit=3", iso(at)),
        &service,
    )
    .await;
    let expected: Vec<String> = users.iter().map(ToString::to_string).collect();
    assert_eq!(first["userIds"], json!(expected[..3]));
    assert_eq!(first["next"], json!(expected[2]));
    let second = get_ok(
        &app,
        &format!(
            "/api/admin/online?at={}&limit=3&after={}",
            iso(at),
            expected[2]
        ),
        &service,
    )
    .await;
    assert_eq!(second["userIds"], json!(expected[3..]));
    assert_eq!(second["next"], Value::Null);
    // Now, ten minutes later, nobody has a live device.
    let now = get_ok(&app, "/api/admin/online", &service).await;
    assert_eq!(now["userIds"], json!([]));
    for bad in [
        format!(
            "/api/admin/online?at={}",
            iso(app.clock.now() + TimeDelta::seconds(1))
        ),
        "/api/admin/online?at=yesterday".to_owned(),
    ] {
        let (status, code) = error_code(get(&app, &bad, &service).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "INVALID_TIMESTAMP"),
            "{bad}"
        );
    }
}

#[sqlx::test]
async fn online_at_finds_users_beyond_the_ones_it_walks(pool: PgPool) {
    // With at least 4 * limit live sessions, a page of `limit` walks 2 * limit
    // users in id order, then collects the live sessions after them; with
    // fewer, it collects them all. Pages must be the same every way.
    let app = spawn_app(pool).await;
    let mut users: Vec<UserId> = (0..8).map(|_| new_user()).collect();
    users.sort();
    for user in &users {
        app.ping_ok(*user, json!({})).await;
    }
    app.advance(TimeDelta::minutes(10));
    // Only the 6th and the 8th in id order are live now, on two devices each
    // (the others' devices went quiet ten minutes ago and are still listed).
    let (sixth, eighth) = (users[5].to_string(), users[7].to_string());
    for device in ["laptop", "phone"] {
        app.ping_ok(users[5], json!({"deviceId": device})).await;
        app.ping_ok(users[7], json!({"deviceId": device, "active": false}))
            .await;
    }
    let at = iso(app.clock.now());
    app.advance(TimeDelta::seconds(1));
    let service = service_token("reports");
    let page = async |query: String| {
        get_ok(
            &app,
            &format!("/api/admin/online?at={at}&{query}"),
            &service,
        )
        .await
    };

    // Four live sessions: pages of one walk two users.
    let first = page("limit=1".to_owned()).await;
    assert_eq!(first["userIds"], json!([sixth]), "found past the walk");
    assert_eq!(first["next"], json!(sixth));
    let second = page(format!("limit=1&after={sixth}")).await;
    assert_eq!(second["userIds"], json!([eighth]), "found by the walk");
    let third = page(format!("limit=1&after={eighth}")).await;
    assert_eq!(third["userIds"], json!([]));
    assert_eq!(third["next"], Value::Null);
    // Fewer than 4 * 3 live sessions: collected.
    let both = page("limit=3".to_owned()).await;
    assert_eq!(both["userIds"], json!([sixth, eighth]), "collected");
    let before = page("limit=3&after=00000000-0000-4000-8000-000000000000".to_owned()).await;
    assert_eq!(before["userIds"], json!([sixth, eighth]));
}

#[sqlx::test]
async fn history_ranges_are_checked(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    let now = app.clock.now();
    for query in [
        format!("from={}&to={}", iso(now), iso(now)),
        format!("from={}&to={}", iso(now - TimeDelta::days(32)), iso(now)),
        "from=noon".to_owned(),
    ] {
        let (status, code) = error_code(
            get(
                &app,
                &format!("/api/status/history?{query}"),
                &token_for(user),
            )
            .await,
        )
        .await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "INVALID_TIMESTAMP"),
            "{query}"
        );
    }
    let empty = get_ok(&app, "/api/status/history", &token_for(user)).await;
    assert_eq!(empty["segments"], json!([]));
    assert_eq!(empty["to"], json!(iso(now)));
    assert_eq!(empty["from"], json!(iso(now - TimeDelta::hours(24))));
}

#[sqlx::test]
async fn retention_deletes_exactly_what_ended_before_the_window(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let user = new_user();
    let t0 = start_time();
    let at = |seconds: i64| t0 + TimeDelta::seconds(seconds);
    app.ping_ok(user, json!({"deviceId": "a"})).await;
    app.clock.set(at(5));
    app.ping_ok(user, json!({"deviceId": "a", "manualStatus": "dnd"}))
        .await;
    app.clock.set(at(10));
    app.delete_device(user, "a").await;
    app.clock.set(at(600));
    app.ping_ok(user, json!({"deviceId": "b"})).await;
    app.clock.set(at(601));
    app.ping_ok(user, json!({"deviceId": "b", "manualStatus": null}))
        .await;
    app.clock.set(at(609));
    app.ping_ok(user, json!({"deviceId": "b"})).await;
    app.clock.set(at(610));
    app.delete_device(user, "b").await;
    app.clock.set(at(1200));
    app.ping_ok(user, json!({"deviceId": "c"})).await;
    assert_eq!(history_rows(&pool).await, (3, 2, 2));

    // The window starts at 605 s: session a (to 10 s), the span [0, 5 s] and
    // the dnd change (superseded at 601 s) are older; the rest is not.
    let cutoff = at(605);
    let deleted = presence::jobs::enforce_history_retention(&pool, cutoff)
        .await
        .expect("retention runs");
    assert_eq!(deleted, 3);
    let sessions: Vec<(String, DateTime<Utc>)> =
        sqlx::query_as("select device_id, started_at from device_sessions order by started_at")
            .fetch_all(&pool)
            .await
            .expect("sessions");
    assert_eq!(
        sessions,
        vec![("b".to_owned(), at(600)), ("c".to_owned(), at(1200))]
    );
    let spans: Vec<(DateTime<Utc>, DateTime<Utc>)> =
        sqlx::query_as("select started_at, ended_at from activity_spans")
            .fetch_all(&pool)
            .await
            .expect("spans");
    assert_eq!(spans, vec![(at(600), at(609))]);
    let settings: Vec<(DateTime<Utc>, Option<String>)> =
        sqlx::query_as("select changed_at, manual_status from settings_changes")
            .fetch_all(&pool)
            .await
            .expect("settings");
    assert_eq!(settings, vec![(at(601), None)]);
    assert_eq!(
        presence::jobs::enforce_history_retention(&pool, cutoff)
            .await
            .expect("retention runs"),
        0,
        "a second run finds nothing"
    );
}

#[sqlx::test]
async fn with_retention_zero_nothing_is_recorded(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), &[("PRESENCE_HISTORY_RETENTION", "0")]).await;
    let user = new_user();
    app.ping_ok(user, json!({"manualStatus": "dnd"})).await;
    app.advance(TimeDelta::hours(1));
    app.ping_ok(user, json!({})).await;
    app.delete_device(user, "default").await;
    assert_eq!(history_rows(&pool).await, (0, 0, 0));
}

#[sqlx::test]
async fn history_and_online_at_agree_with_a_model_of_the_self_view_at_every_instant(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let service = service_token("audit");
    let mut runner = TestRunner::new(Config::default());
    let rng: &mut TestRng = runner.rng();
    for _case in 0..6 {
        let user = new_user();
        let mut events: Vec<(DateTime<Utc>, Event)> = Vec::new();
        let mut devices: [Option<DateTime<Utc>>; 3] = [None; 3];
        for _step in 0..40 {
            let now = app.clock.now();
            let device = rng.random_range(0..3u8);
            match rng.random_range(0..12) {
                0..=4 => {
                    let active = rng.random_bool(0.5);
                    app.ping_ok(
                        user,
                        json!({"deviceId": format!("d{device}"), "active": active}),
                    )
                    .await;
                    events.push((now, Event::Ping { device, active }));
                    devices[device as usize] = Some(now);
                }
                5 if devices[device as usize].is_some() => {
                    app.delete_device(user, &format!("d{device}")).await;
                    events.push((now, Event::Gone { device }));
                    devices[device as usize] = None;
                }
                6 | 7 => {
                    let status = [None, Some("away"), Some("dnd")][rng.random_range(0..3)];
                    let until = (status.is_some() && rng.random_bool(0.5))
                        .then(|| now + TimeDelta::milliseconds(rng.random_range(1..1_200_000)));
                    let active = rng.random_bool(0.5);
                    let device = devices.iter().position(Option::is_some).unwrap_or(0) as u8;
                    app.ping_ok(
                        user,
                        json!({"deviceId": format!("d{device}"), "active": active,
                               "manualStatus": status, "manualStatusUntil": until.map(iso)}),
                    )
                    .await;
                    events.push((now, Event::Ping { device, active }));
                    events.push((now, Event::Manual { status, until }));
                    devices[device as usize] = Some(now);
                }
                8 => {
                    let removed = presence::store::prune_stale_devices(
                        &pool,
                        TimeDelta::minutes(5),
                        Some(10),
                        now,
                        None,
                    )
                    .await
                    .expect("prune runs");
                    let mut pruned = 0;
                    for (index, ping) in devices.iter_mut().enumerate() {
                        if ping.is_some_and(|ping| ping < now - TimeDelta::minutes(5)) {
                            *ping = None;
                            pruned += 1;
                            events.push((
                                now,
                                Event::Gone {
                                    device: index as u8,
                                },
                            ));
                        }
                    }
                    assert!(
                        removed >= pruned,
                        "the prune removed this user's stale devices"
                    );
                }
                _ => {
                    let invisible = rng.random_bool(0.5);
                    let device = devices.iter().position(Option::is_some).unwrap_or(0) as u8;
                    app.ping_ok(
                        user,
                        json!({"deviceId": format!("d{device}"), "active": false, "invisible": invisible}),
                    )
                    .await;
                    events.push((
                        now,
                        Event::Ping {
                            device,
                            active: false,
                        },
                    ));
                    events.push((now, Event::Invisible(invisible)));
                    devices[device as usize] = Some(now);
                }
            }
            let pause = match rng.random_range(0..10) {
                0..=3 => TimeDelta::milliseconds(rng.random_range(0..5_000)),
                4..=6 => TimeDelta::milliseconds(rng.random_range(5_000..120_000)),
                7 | 8 => TimeDelta::milliseconds(rng.random_range(120_000..2_400_000)),
                // A clock jump.
                _ => TimeDelta::milliseconds(rng.random_range(3_600_000..14_400_000)),
            };
            app.advance(pause);
        }
        let end = app.clock.now();
        let Some(first) = events.first().map(|(at, _)| *at) else {
            continue;
        };

        // Every instant where the model's view may change, and a millisecond either side.
        let instants = Rules::TESTS.instants(&events, first, end);

        let body = get_ok(
            &app,
            &format!(
                "/api/admin/users/{user}/history?from={}&to={}",
                iso(first - TimeDelta::minutes(1)),
                iso(end)
            ),
            &service,
        )
        .await;
        let own = get_ok(
            &app,
            &format!(
                "/api/status/history?from={}&to={}",
                iso(first - TimeDelta::minutes(1)),
                iso(end)
            ),
            &token_for(user),
        )
        .await;
        assert_eq!(own["segments"], body["segments"], "self and admin agree");
        let segments = body["segments"].as_array().expect("segments");
        assert_eq!(
            segments.first().map(|s| instant(&s["from"])),
            Some(first),
            "history starts with the first ping: {body:#}"
        );
        assert_eq!(segments.last().map(|s| instant(&s["to"])), Some(end));
        for pair in segments.windows(2) {
            assert_eq!(pair[0]["to"], pair[1]["from"], "no gaps");
            assert_ne!(pair[0]["status"], pair[1]["status"], "merged");
        }
        for t in &instants {
            let shown = segments
                .iter()
                .find(|s| instant(&s["from"]) <= *t && *t < instant(&s["to"]))
                .map(|s| s["status"].as_str().expect("status"));
            let expected = Rules::TESTS.status(&events, *t, false);
            assert_eq!(
                shown,
                Some(expected),
                "at {}: {events:?}\n{body:#}",
                iso(*t)
            );
        }
        // online?at= at a sample of the instants.
        for t in instants.iter().step_by(7) {
            let online = get_ok(
                &app,
                &format!("/api/admin/online?at={}&limit=10000", iso(*t)),
                &service,
            )
            .await;
            let listed = online["userIds"]
                .as_array()
                .expect("ids")
                .contains(&json!(user.to_string()));
            assert_eq!(
                listed,
                Rules::TESTS.status(&events, *t, false) != "offline",
                "online?at={} for {user}: {events:?}",
                iso(*t)
            );
        }
        app.advance(TimeDelta::hours(1));
    }
}

#[sqlx::test]
async fn stats_match_a_hand_computed_fixture_across_midnight(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (a, b) = (new_user(), new_user());
    let at = |text: &str| -> DateTime<Utc> { text.parse().expect("instant") };
    // (when, who, device, active; None: sign the device out)
    let mut events: Vec<(DateTime<Utc>, UserId, &str, Option<bool>)> = Vec::new();
    let mut heartbeat = |user, device, from: DateTime<Utc>, to: DateTime<Utc>| {
        events.push((from, user, device, Some(true)));
        let mut t = from + TimeDelta::seconds(30);
        while t <= to {
            events.push((t, user, device, Some(false)));
            t += TimeDelta::seconds(30);
        }
    };
    // A: a laptop 23:30–00:30 (then signed out), a phone 23:50–00:10 (then silent):
    // connected 23:30–00:30, active 23:30 and 23:50 only.
    heartbeat(
        a,
        "laptop",
        at("2026-11-23T23:30:00Z"),
        at("2026-11-24T00:29:30Z"),
    );
    heartbeat(
        a,
        "phone",
        at("2026-11-23T23:50:00Z"),
        at("2026-11-24T00:10:00Z"),
    );
    // B: one device 00:20–01:20, silent after: connected until 01:21, active at 00:20.
    heartbeat(
        b,
        "desk",
        at("2026-11-24T00:20:00Z"),
        at("2026-11-24T01:20:00Z"),
    );
    events.push((at("2026-11-24T00:30:00Z"), a, "laptop", None));
    events.sort_by_key(|event| event.0);
    for (when, user, device, active) in events {
        app.clock.set(when);
        match active {
            Some(active) => {
                app.ping_ok(user, json!({"deviceId": device, "active": active}))
                    .await;
            }
            None => {
                app.delete_device(user, device).await;
            }
        }
    }
    app.clock.set(at("2026-11-24T03:00:00Z"));
    let service = service_token("reports");
    let hours = format!(
        "/api/admin/stats?bucket=hour&from={}&to={}",
        "2026-11-23T23:00:00.000Z", "2026-11-24T02:00:00.000Z"
    );
    let expected_hours = json!([
        {"start": "2026-11-23T23:00:00.000Z", "activeUsers": 1, "connectedUsers": 1, "connectedSeconds": 1800.0, "sessions": 2},
        {"start": "2026-11-24T00:00:00.000Z", "activeUsers": 1, "connectedUsers": 2, "connectedSeconds": 4200.0, "sessions": 1},
        {"start": "2026-11-24T01:00:00.000Z", "activeUsers": 0, "connectedUsers": 1, "connectedSeconds": 1260.0, "sessions": 0},
    ]);
    let first = get_ok(&app, &hours, &service).await;
    assert_eq!(first["buckets"], expected_hours, "{first:#}");
    let rollups: i64 = sqlx::query_scalar("select count(*) from history_rollups")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rollups, 3, "final buckets are stored");
    assert_eq!(
        get_ok(&app, &hours, &service).await["buckets"],
        expected_hours,
        "read back"
    );

    let days = get_ok(
        &app,
        "/api/admin/stats?bucket=day&from=2026-11-23T00:00:00Z&to=2026-11-25T00:00:00Z",
        &service,
    )
    .await;
    assert_eq!(
        days["buckets"],
        json!([
            {"start": "2026-11-23T00:00:00.000Z", "activeUsers": 1, "connectedUsers": 1, "connectedSeconds": 1800.0, "sessions": 2},
            // Today is not over: computed live, up to now.
            {"start": "2026-11-24T00:00:00.000Z", "activeUsers": 1, "connectedUsers": 2, "connectedSeconds": 5460.0, "sessions": 1},
        ]),
        "{days:#}"
    );
    for bad in [
        "/api/admin/stats?bucket=week",
        "/api/admin/stats?bucket=hour&from=2026-01-01T00:00:00Z&to=2026-11-01T00:00:00Z",
    ] {
        let (status, _) = error_code(get(&app, bad, &service).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, code) = error_code(get(&app, &hours, &token_for(a)).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "FORBIDDEN")
    );
}

#[sqlx::test]
async fn presence_report_prints_the_stats_as_a_table_or_csv(pool: PgPool) {
    crate::citus::prepare(&pool).await;
    let user = new_user();
    sqlx::query(
        "insert into device_sessions (user_id, device_id, platform, started_at, ended_at)
         values ($1, 'a', 'web', '2026-01-01T23:30:00Z', '2026-01-02T00:30:00Z')",
    )
    .bind(user.as_uuid())
    .execute(&pool)
    .await
    .expect("a session");
    sqlx::query(
        "insert into activity_spans (user_id, started_at, ended_at)
         values ($1, '2026-01-01T23:30:00Z', '2026-01-01T23:40:00Z')",
    )
    .bind(user.as_uuid())
    .execute(&pool)
    .await
    .expect("a span");
    let url = crate::process::database_url_of(&pool);
    let report = |format: &str| {
        let output = crate::process::presence()
            .args([
                "report",
                "--from",
                "2026-01-01T00:00:00Z",
                "--to",
                "2026-01-03T00:00:00Z",
                "--bucket",
                "day",
                "--format",
                format,
            ])
            .env("DATABASE_URL", &url)
            .output()
            .expect("runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    assert_eq!(
        report("csv"),
        "start,active_users,connected_users,connected_seconds,sessions\n\
         2026-01-01T00:00:00.000Z,1,1,1800.000,1\n\
         2026-01-02T00:00:00.000Z,0,1,1800.000,0\n"
    );
    let table = report("table");
    assert!(table.starts_with("start "), "{table}");
    assert!(
        table
            .lines()
            .nth(2)
            .is_some_and(|line| line.split_whitespace().eq([
                "2026-01-02T00:00:00.000Z",
                "0",
                "1",
                "1800.000",
                "0"
            ])),
        "{table}"
    );
}

#[sqlx::test]
async fn a_device_evicted_for_room_ends_its_session_at_the_eviction(pool: PgPool) {
    let app = spawn_app_with(pool, &[("PRESENCE_MAX_DEVICES", "2")]).await;
    let user = new_user();
    let t0 = start_time();
    app.ping_ok(user, json!({"deviceId": "one"})).await;
    app.advance(TimeDelta::seconds(10));
    app.ping_ok(user, json!({"deviceId": "two"})).await;
    app.advance(TimeDelta::seconds(10));
    // A third device replaces the least recently seen, "one", while it is still live.
    app.ping_ok(user, json!({"deviceId": "three"})).await;
    app.advance(TimeDelta::seconds(10));
    let body = get_ok(&app, "/api/status/history", &token_for(user)).await;
    let at = |seconds: i64| iso(t0 + TimeDelta::seconds(seconds));
    assert_eq!(
        body["sessions"],
        json!([
            {"deviceId": "one", "platform": "web", "from": at(0), "to": at(20)},
            {"deviceId": "two", "platform": "web", "from": at(10), "to": null},
            {"deviceId": "three", "platform": "web", "from": at(20), "to": null},
        ]),
        "{body:#}"
    );
}

//! Rooms: grants, memberships (join, renew, leave, state, typing, timeout,
//! sign-out, cap, prune), the room view, privacy and polling that holds still.

use std::time::Duration;

use chrono::TimeDelta;
use presence::auth::{TokenSettings, issue_room_token};
use presence::domain::UserId;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{
    TEST_SECRET, TestApp, error_code, iso, new_user, spawn_app, spawn_app_on_clock, spawn_app_with,
    start_time,
};
use crate::history::service_token;

/// A token for `user` granting `rooms` (the rooms claim as written).
fn room_token(user: UserId, rooms: &[&str]) -> String {
    let rooms: Vec<String> = rooms.iter().map(|room| (*room).to_owned()).collect();
    issue_room_token(
        &TokenSettings::with_secret(SecretString::from(TEST_SECRET.to_owned())),
        &user.to_string(),
        &rooms,
        None,
        Duration::from_secs(3600),
    )
    .expect("token signs")
}

/// A request with `token`, and a JSON body if any.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    app.raw(
        method,
        path,
        &headers,
        body.map(|body| body.to_string().into_bytes()),
    )
    .await
}

/// `PUT /api/rooms/{room}/presence` as `user` (granted every room) with `body`.
async fn join(app: &TestApp, user: UserId, room: &str, body: Value) -> reqwest::Response {
    let path = format!("/api/rooms/{room}/presence");
    call(
        app,
        Method::PUT,
        &path,
        &room_token(user, &["*"]),
        Some(body),
    )
    .await
}

/// A room ping that must succeed; its answer.
async fn join_ok(app: &TestApp, user: UserId, room: &str, body: Value) -> Value {
    let response = join(app, user, room, body).await;
    assert_eq!(response.status(), StatusCode::OK, "room ping of {room}");
    response.json().await.expect("JSON")
}

/// `DELETE /api/rooms/{room}/presence/{device}` as `user`.
async fn leave(app: &TestApp, user: UserId, room: &str, device: &str) -> StatusCode {
    let path = format!("/api/rooms/{room}/presence/{device}");
    call(app, Method::DELETE, &path, &room_token(user, &["*"]), None)
        .await
        .status()
}

/// `GET path` as `viewer` (granted every room), which must answer 200.
async fn read(app: &TestApp, viewer: UserId, path: &str) -> Value {
    let response = call(app, Method::GET, path, &room_token(viewer, &["*"]), None).await;
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response.json().await.expect("JSON")
}

/// The room as `viewer` sees it (first page of 1000).
async fn room(app: &TestApp, viewer: UserId, room: &str) -> Value {
    read(app, viewer, &format!("/api/rooms/{room}?limit=1000")).await
}

/// The user ids a room answer lists.
fn ids(room: &Value) -> Vec<String> {
    room["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|member| member["userId"].as_str().expect("userId").to_owned())
        .collect()
}

/// `n` new users in ascending id order.
fn users(n: usize) -> Vec<UserId> {
    let mut users: Vec<UserId> = (0..n).map(|_| new_user()).collect();
    users.sort();
    users
}

#[sqlx::test]
async fn a_room_is_joined_and_read_only_with_a_token_that_grants_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (alice, bob) = (new_user(), new_user());
    join_ok(&app, alice, "team:7:a", json!({})).await;
    join_ok(&app, alice, "team:70:a", json!({})).await;
    let prefix = room_token(bob, &["team:7:*", "doc:42"]);
    let none = room_token(bob, &[]);
    let cases = [
        (&prefix, "team:7:a", true),
        (&prefix, "team:7:b", true),
        (&prefix, "doc:42", true),
        (&prefix, "team:70:a", false),
        (&prefix, "team:7", false),
        (&prefix, "doc:420", false),
        (&none, "team:7:a", false),
        (&none, "doc:42", false),
    ];
    for (token, room, granted) in cases {
        let occupied = room.starts_with("team:7") && room.ends_with(":a");
        for (method, path, body) in [
            (Method::GET, format!("/api/rooms/{room}"), None),
            (
                Method::PUT,
                format!("/api/rooms/{room}/presence"),
                Some(json!({"deviceId": "probe"})),
            ),
            (
                Method::DELETE,
                format!("/api/rooms/{room}/presence/probe"),
                None,
            ),
        ] {
            let response = call(&app, method.clone(), &path, token, body).await;
            if granted {
                assert!(
                    response.status().is_success(),
                    "{method} {path}: {}",
                    response.status()
                );
            } else {
                assert_eq!(
                    error_code(response).await,
                    (StatusCode::NOT_FOUND, "NOT_FOUND".to_owned()),
                    "{method} {path} (occupied: {occupied})"
                );
            }
        }
    }
    // A token without the claim grants nothing; "*" grants everything.
    let plain = crate::helpers::token_for(bob);
    let response = call(&app, Method::GET, "/api/rooms/team:7:a", &plain, None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = call(
        &app,
        Method::GET,
        "/api/rooms/anything",
        &room_token(bob, &["*"]),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    // A service token reads any room, and sees who is there.
    let service = service_token("backend");
    let response = call(&app, Method::GET, "/api/rooms/team:70:a", &service, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(ids(&body), [alice.to_string()]);
    // ... but joins none: it is no user.
    let response = call(
        &app,
        Method::PUT,
        "/api/rooms/team:70:a/presence",
        &service,
        Some(json!({})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[sqlx::test]
async fn a_membership_is_joined_renewed_changed_and_left(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (alice, bob) = (new_user(), new_user());
    let joined = join_ok(
        &app,
        alice,
        "doc:1",
        json!({"deviceId": "tab", "state": {"cursor": 12}}),
    )
    .await;
    assert_eq!(
        joined,
        json!({
            "roomId": "doc:1", "deviceId": "tab", "joinedAt": iso(start_time()),
            "state": {"cursor": 12}, "typing": false, "heartbeatIntervalSeconds": 20,
        })
    );
    let seen = room(&app, bob, "doc:1").await;
    assert_eq!(seen["occupancy"], 1);
    assert_eq!(seen["members"][0]["state"], json!({"cursor": 12}));
    assert_eq!(seen["members"][0]["joinedAt"], iso(start_time()));

    app.advance(TimeDelta::seconds(10));
    // A renewal keeps what it does not name.
    let renewed = join_ok(&app, alice, "doc:1", json!({"deviceId": "tab"})).await;
    assert_eq!(renewed["state"], json!({"cursor": 12}));
    assert_eq!(
        renewed["joinedAt"],
        iso(start_time()),
        "still the first join"
    );
    let typing = join_ok(
        &app,
        alice,
        "doc:1",
        json!({"deviceId": "tab", "typing": true}),
    )
    .await;
    assert_eq!(typing["typing"], true);
    assert_eq!(room(&app, bob, "doc:1").await["members"][0]["typing"], true);
    join_ok(
        &app,
        alice,
        "doc:1",
        json!({"deviceId": "tab", "typing": false, "state": null}),
    )
    .await;
    let seen = room(&app, bob, "doc:1").await;
    assert_eq!(seen["members"][0]["typing"], false);
    assert_eq!(seen["members"][0]["state"], Value::Null);

    assert_eq!(
        leave(&app, alice, "doc:1", "tab").await,
        StatusCode::NO_CONTENT
    );
    let seen = room(&app, bob, "doc:1").await;
    assert_eq!((seen["occupancy"].clone(), ids(&seen).len()), (json!(0), 0));
    assert_eq!(
        leave(&app, alice, "doc:1", "tab").await,
        StatusCode::NO_CONTENT,
        "not in it: still 204"
    );
    // Joining again starts a new membership.
    app.advance(TimeDelta::seconds(5));
    let again = join_ok(&app, alice, "doc:1", json!({"deviceId": "tab"})).await;
    assert_eq!(
        again["joinedAt"],
        iso(start_time() + TimeDelta::seconds(15))
    );
    assert_eq!(again["state"], Value::Null);
}

#[sqlx::test]
async fn a_membership_ends_when_not_renewed_within_the_timeout(pool: PgPool) {
    let app = spawn_app_with(pool, &[("PRESENCE_ROOM_TIMEOUT", "30s")]).await;
    let (alice, bob) = (new_user(), new_user());
    let joined = join_ok(&app, alice, "call:1", json!({"state": {"muted": true}})).await;
    assert_eq!(joined["heartbeatIntervalSeconds"], 10);
    app.advance(TimeDelta::seconds(29));
    assert_eq!(room(&app, bob, "call:1").await["occupancy"], 1);
    join_ok(&app, alice, "call:1", json!({})).await;
    app.advance(TimeDelta::seconds(29));
    assert_eq!(
        room(&app, bob, "call:1").await["occupancy"],
        1,
        "the renewal counts from its time"
    );
    app.advance(TimeDelta::seconds(1));
    assert_eq!(
        room(&app, bob, "call:1").await["occupancy"],
        0,
        "30 s without a renewal"
    );
    assert_eq!(read(&app, alice, "/api/rooms").await, json!({"rooms": []}));
    // A renewal after the end is a new membership: no state, a new joinedAt.
    let again = join_ok(&app, alice, "call:1", json!({})).await;
    assert_eq!(again["state"], Value::Null);
    assert_eq!(
        again["joinedAt"],
        iso(start_time() + TimeDelta::seconds(59))
    );
}

#[sqlx::test]
async fn signing_a_device_out_ends_its_memberships(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (alice, bob) = (new_user(), new_user());
    for room in ["doc:1", "doc:2"] {
        join_ok(&app, alice, room, json!({"deviceId": "phone"})).await;
    }
    join_ok(&app, alice, "doc:1", json!({"deviceId": "laptop"})).await;
    // The phone never pinged its status: signing it out still takes it out of its rooms.
    let response = app.delete_device(alice, "phone").await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let rooms = read(&app, alice, "/api/rooms").await;
    assert_eq!(
        rooms,
        json!({"rooms": [{"roomId": "doc:1", "deviceIds": ["laptop"], "joinedAt": iso(start_time())}]})
    );
    assert_eq!(room(&app, bob, "doc:2").await["occupancy"], 0);
    assert_eq!(room(&app, bob, "doc:1").await["occupancy"], 1);
    let response = app.delete_device(alice, "phone").await;
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "nothing left to sign out"
    );
}

#[sqlx::test]
async fn a_device_is_in_at_most_the_configured_number_of_rooms(pool: PgPool) {
    let app = spawn_app_with(pool, &[("PRESENCE_MAX_ROOMS_PER_DEVICE", "3")]).await;
    let (alice, bob) = (new_user(), new_user());
    // Ten joins at once: three get in, the rest are refused, and nothing of theirs is written.
    let rooms: Vec<String> = (0..10).map(|n| format!("r:{n}")).collect();
    let joins = rooms
        .iter()
        .map(|room| join(&app, alice, room, json!({"deviceId": "d"})));
    let answers = futures::future::join_all(joins).await;
    let mut admitted = 0;
    for answer in answers {
        if answer.status() == StatusCode::OK {
            admitted += 1;
        } else {
            assert_eq!(
                error_code(answer).await,
                (StatusCode::BAD_REQUEST, "TOO_MANY_ROOMS".to_owned())
            );
        }
    }
    assert_eq!(admitted, 3);
    let rooms = read(&app, alice, "/api/rooms").await;
    let in_rooms: Vec<String> = rooms["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|room| room["roomId"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(in_rooms.len(), 3);
    let mut occupied = 0;
    for n in 0..10 {
        occupied += room(&app, bob, &format!("r:{n}")).await["occupancy"]
            .as_u64()
            .expect("n");
    }
    assert_eq!(occupied, 3, "a refused join writes nothing");
    // Renewing a room the device is in is no join; another device has rooms of its own.
    join_ok(
        &app,
        alice,
        &in_rooms[0],
        json!({"deviceId": "d", "typing": true}),
    )
    .await;
    join_ok(&app, alice, "r:extra", json!({"deviceId": "other"})).await;
    // Leaving one makes room.
    assert_eq!(
        leave(&app, alice, &in_rooms[0], "d").await,
        StatusCode::NO_CONTENT
    );
    join_ok(&app, alice, "r:extra", json!({"deviceId": "d"})).await;
    // An ended membership leaves its place too.
    app.advance(TimeDelta::seconds(61));
    for n in 0..3 {
        join_ok(&app, alice, &format!("later:{n}"), json!({"deviceId": "d"})).await;
    }
}

#[sqlx::test]
async fn the_prune_job_removes_ended_memberships(pool: PgPool) {
    use presence::jobs::{PRUNE_CHUNK, PruneSchedule, run_scheduled_prune};
    use std::sync::Arc;
    let app = spawn_app(pool).await;
    let (alice, bob) = (new_user(), new_user());
    join_ok(&app, alice, "doc:1", json!({})).await;
    join_ok(&app, bob, "doc:1", json!({})).await;
    app.advance(TimeDelta::seconds(50));
    join_ok(&app, bob, "doc:1", json!({})).await;
    app.advance(TimeDelta::seconds(11));
    let schedule = PruneSchedule {
        pool: app.pool.clone(),
        clock: Arc::new(app.clock.clone()),
        every: Duration::from_secs(60),
        older_than: TimeDelta::minutes(5),
        max_devices: 10,
        chunk: PRUNE_CHUNK,
        metrics: None,
        history_retention: None,
        offline_after: TimeDelta::seconds(60),
        room_timeout: TimeDelta::seconds(60),
    };
    run_scheduled_prune(&schedule).await.expect("runs");
    let left: Vec<uuid::Uuid> = sqlx::query_scalar("select user_id from room_members")
        .fetch_all(&app.pool)
        .await
        .expect("reads");
    assert_eq!(
        left,
        [bob.as_uuid()],
        "alice's membership ended 1 s ago; bob's lasts"
    );
    assert_eq!(ids(&room(&app, alice, "doc:1").await), [bob.to_string()]);
}

#[sqlx::test]
async fn a_room_lists_each_user_once_over_their_devices(pool: PgPool) {
    let app = spawn_app(pool).await;
    let [alice, viewer] = users(2)[..] else {
        unreachable!()
    };
    join_ok(
        &app,
        alice,
        "doc:1",
        json!({"deviceId": "laptop", "state": {"page": 1}}),
    )
    .await;
    app.advance(TimeDelta::seconds(2));
    join_ok(
        &app,
        alice,
        "doc:1",
        json!({"deviceId": "phone", "state": {"page": 2}}),
    )
    .await;
    app.advance(TimeDelta::seconds(2));
    // The laptop renews without a state: the phone's, set last, still shows.
    join_ok(
        &app,
        alice,
        "doc:1",
        json!({"deviceId": "laptop", "typing": true}),
    )
    .await;
    let seen = room(&app, viewer, "doc:1").await;
    assert_eq!(seen["occupancy"], 1);
    let member = &seen["members"][0];
    assert_eq!(member["state"], json!({"page": 2}));
    assert_eq!(member["typing"], true, "one device types");
    assert_eq!(
        member["joinedAt"],
        iso(start_time()),
        "the earliest membership"
    );
    // The laptop sets its state again, later: it shows.
    join_ok(
        &app,
        alice,
        "doc:1",
        json!({"deviceId": "laptop", "state": {"page": 3}}),
    )
    .await;
    assert_eq!(
        room(&app, viewer, "doc:1").await["members"][0]["state"],
        json!({"page": 3})
    );
    // The laptop leaves: the phone's membership remains, joined later.
    assert_eq!(
        leave(&app, alice, "doc:1", "laptop").await,
        StatusCode::NO_CONTENT
    );
    let member = room(&app, viewer, "doc:1").await["members"][0].clone();
    assert_eq!(member["state"], json!({"page": 2}));
    assert_eq!(member["typing"], false);
    assert_eq!(
        member["joinedAt"],
        iso(start_time() + TimeDelta::seconds(2))
    );
    assert_eq!(
        read(&app, alice, "/api/rooms").await,
        json!({"rooms": [{"roomId": "doc:1", "deviceIds": ["phone"], "joinedAt": iso(start_time() + TimeDelta::seconds(2))}]})
    );
}

#[sqlx::test]
async fn members_show_the_status_the_viewer_reads_of_them(pool: PgPool) {
    let app = spawn_app_with(pool, &[("PRESENCE_LAST_SEEN_PRECISION", "1m")]).await;
    let [online, idle, dnd, never, viewer] = users(5)[..] else {
        unreachable!()
    };
    app.advance(TimeDelta::seconds(17));
    app.ping_ok(idle, json!({"platform": "desktop"})).await;
    app.advance(TimeDelta::minutes(6));
    app.ping_ok(idle, json!({"active": false})).await;
    app.ping_ok(online, json!({"platform": "mobile"})).await;
    app.ping_ok(
        dnd,
        json!({"manualStatus": "dnd", "statusMessage": "focus"}),
    )
    .await;
    for user in [online, idle, dnd, never, viewer] {
        join_ok(&app, user, "chan:1", json!({})).await;
    }
    let seen = room(&app, viewer, "chan:1").await;
    assert_eq!(seen["occupancy"], 5);
    let statuses = app
        .batch_get(viewer, &[online, idle, dnd, never, viewer])
        .await;
    for (member, status) in seen["members"]
        .as_array()
        .expect("members")
        .iter()
        .zip(statuses["statuses"].as_array().expect("statuses"))
    {
        assert_eq!(member["userId"], status["userId"]);
        for field in ["status", "lastSeen", "statusMessage", "platforms"] {
            assert_eq!(
                member[field], status[field],
                "{field} of {}",
                member["userId"]
            );
        }
    }
    let status_of = |user: UserId| {
        seen["members"]
            .as_array()
            .expect("members")
            .iter()
            .find(|member| member["userId"] == user.to_string())
            .expect("listed")["status"]
            .clone()
    };
    assert_eq!(
        [
            status_of(online),
            status_of(idle),
            status_of(dnd),
            status_of(never)
        ],
        [
            json!("online"),
            json!("idle"),
            json!("dnd"),
            json!("offline")
        ]
    );
}

#[sqlx::test]
async fn a_room_is_read_a_page_at_a_time_or_as_its_occupancy_alone(pool: PgPool) {
    let app = spawn_app(pool).await;
    let members = users(7);
    for member in &members {
        join_ok(&app, *member, "big", json!({})).await;
    }
    let viewer = new_user();
    let mut listed = Vec::new();
    let mut path = "/api/rooms/big?limit=3".to_owned();
    loop {
        let page = read(&app, viewer, &path).await;
        assert_eq!(page["occupancy"], 7, "every page counts the whole room");
        listed.extend(ids(&page));
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(Some(next), ids(&page).last().map(String::as_str));
                path = format!("/api/rooms/big?limit=3&after={next}");
            }
            None => break,
        }
    }
    let expected: Vec<String> = members.iter().map(ToString::to_string).collect();
    assert_eq!(listed, expected, "every member once, in id order");
    let exact = read(&app, viewer, "/api/rooms/big?limit=7").await;
    assert_eq!(
        exact["next"],
        members[6].to_string(),
        "a full last page names its last id"
    );
    let after = read(
        &app,
        viewer,
        &format!("/api/rooms/big?after={}", members[6]),
    )
    .await;
    assert_eq!((ids(&after).len(), after["next"].clone()), (0, Value::Null));
    let count = read(&app, viewer, "/api/rooms/big?limit=0").await;
    assert_eq!(
        count,
        json!({"roomId": "big", "occupancy": 7, "members": [], "next": null})
    );
    let empty = read(&app, viewer, "/api/rooms/nobody-here").await;
    assert_eq!(
        empty,
        json!({"roomId": "nobody-here", "occupancy": 0, "members": [], "next": null})
    );
    let token = room_token(viewer, &["*"]);
    for (path, code) in [
        ("/api/rooms/big?limit=1001", "INVALID_BODY"),
        ("/api/rooms/big?limit=-1", "INVALID_BODY"),
        ("/api/rooms/big?limit=x", "INVALID_BODY"),
        ("/api/rooms/big?after=nope", "INVALID_USER_ID"),
    ] {
        let response = call(&app, Method::GET, path, &token, None).await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, code.to_owned()),
            "{path}"
        );
    }
}

#[sqlx::test]
async fn bad_room_input_is_refused_with_its_code_and_writes_nothing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (alice, bob) = (new_user(), new_user());
    let long = "x".repeat(129);
    let cases = [
        ("doc%2042", json!({}), "INVALID_ROOM_ID"),
        ("doc*", json!({}), "INVALID_ROOM_ID"),
        (long.as_str(), json!({}), "INVALID_ROOM_ID"),
        ("doc:1", json!({"state": 5}), "INVALID_STATE"),
        ("doc:1", json!({"state": [1]}), "INVALID_STATE"),
        (
            "doc:1",
            json!({"state": {"k": "x".repeat(1100)}}),
            "INVALID_STATE",
        ),
        ("doc:1", json!({"state": {"k": "a\u{0}b"}}), "INVALID_STATE"),
        ("doc:1", json!({"deviceId": "a b"}), "INVALID_DEVICE_ID"),
        ("doc:1", json!({"typing": "yes"}), "INVALID_BODY"),
        ("doc:1", json!({"status": "online"}), "INVALID_BODY"),
    ];
    for (room_id, body, code) in cases {
        let response = join(&app, alice, room_id, body.clone()).await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, code.to_owned()),
            "{room_id} {body}"
        );
    }
    assert_eq!(room(&app, bob, "doc:1").await["occupancy"], 0);
    let token = room_token(alice, &["*"]);
    let response = call(
        &app,
        Method::GET,
        &format!("/api/rooms/{long}"),
        &token,
        None,
    )
    .await;
    assert_eq!(error_code(response).await.1, "INVALID_ROOM_ID");
    let response = call(
        &app,
        Method::DELETE,
        "/api/rooms/doc:1/presence/a%20b",
        &token,
        None,
    )
    .await;
    assert_eq!(error_code(response).await.1, "INVALID_DEVICE_ID");
    let response = call(
        &app,
        Method::POST,
        "/api/rooms/doc:1/presence",
        &token,
        Some(json!({})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[sqlx::test]
async fn room_pings_count_against_the_ping_limit(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        &[
            ("PRESENCE_PUT_BURST", "2"),
            ("PRESENCE_PUT_PER_SECOND", "0.001"),
        ],
    )
    .await;
    let alice = new_user();
    app.ping_ok(alice, json!({})).await;
    join_ok(&app, alice, "doc:1", json!({})).await;
    let refused = join(&app, alice, "doc:2", json!({})).await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        error_code(refused).await,
        (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED".to_owned())
    );
    assert_eq!(
        read(&app, alice, "/api/rooms").await["rooms"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

/// How a room member stands towards the viewer, in the privacy model.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Standing {
    Stranger,
    BlocksViewer,
    BlockedByViewer,
    Invisible,
    NeverPinged,
}

#[sqlx::test]
async fn hidden_members_are_neither_listed_nor_counted_nor_shown_typing(pool: PgPool) {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let app = spawn_app(pool).await;
    let standing = prop_oneof![
        Just(Standing::Stranger),
        Just(Standing::BlocksViewer),
        Just(Standing::BlockedByViewer),
        Just(Standing::Invisible),
        Just(Standing::NeverPinged),
    ];
    // Each member: how they stand, whether they type, how many devices are in the room.
    let rooms = prop::collection::vec((standing, any::<bool>(), 1..3usize), 1..7);
    let mut runner = TestRunner::default();
    for case in 0..16 {
        let members = rooms.new_tree(&mut runner).expect("a room").current();
        let viewer = new_user();
        let bystander = new_user();
        let ids: Vec<UserId> = members.iter().map(|_| new_user()).collect();
        let (room_id, mirror_id) = (format!("case:{case}"), format!("mirror:{case}"));
        app.ping_ok(viewer, json!({})).await;
        join_ok(&app, viewer, &room_id, json!({})).await;
        join_ok(&app, viewer, &mirror_id, json!({})).await;
        let mut visible = vec![viewer];
        for (user, (standing, typing, devices)) in ids.iter().zip(&members) {
            match standing {
                Standing::NeverPinged => {}
                Standing::Invisible => {
                    app.ping_ok(*user, json!({"invisible": true})).await;
                }
                _ => {
                    app.ping_ok(*user, json!({"statusMessage": "here"})).await;
                }
            }
            match standing {
                Standing::BlocksViewer => {
                    let response = app.set_block(*user, &viewer.to_string(), true).await;
                    assert!(response.status().is_success());
                }
                Standing::BlockedByViewer => {
                    let response = app.set_block(viewer, &user.to_string(), true).await;
                    assert!(response.status().is_success());
                }
                _ => {}
            }
            let shown = matches!(standing, Standing::Stranger | Standing::NeverPinged);
            for device in 0..*devices {
                let body = json!({"deviceId": format!("d{device}"), "typing": *typing, "state": {"n": device}});
                join_ok(&app, *user, &room_id, body.clone()).await;
                if shown {
                    // The mirror room holds only whom the viewer may see, as they are in the room.
                    join_ok(&app, *user, &mirror_id, body).await;
                }
            }
            if shown {
                visible.push(*user);
            }
        }
        visible.sort();
        // Page by page, as a client would: never a hidden member, the right count on every page.
        let mut listed = Vec::new();
        let mut pages = Vec::new();
        let mut after = String::new();
        loop {
            let page = read(
                &app,
                viewer,
                &format!("/api/rooms/{room_id}?limit=2{after}"),
            )
            .await;
            assert_eq!(page["occupancy"], visible.len(), "case {case}: {members:?}");
            listed.extend(self::ids(&page));
            pages.push(page["members"].clone());
            match page["next"].as_str() {
                Some(next) => after = format!("&after={next}"),
                None => break,
            }
        }
        let expected: Vec<String> = visible.iter().map(ToString::to_string).collect();
        assert_eq!(listed, expected, "case {case}: {members:?}");
        // The room reads exactly as the mirror, which the hidden members never joined.
        let mut seen = room(&app, viewer, &room_id).await;
        let mut mirror = room(&app, viewer, &mirror_id).await;
        seen["roomId"] = Value::Null;
        mirror["roomId"] = Value::Null;
        assert_eq!(seen, mirror, "case {case}: {members:?}");
        // No one hidden from the viewer is hidden from a bystander, but the invisible.
        let everyone = room(&app, bystander, &room_id).await;
        let invisible = members
            .iter()
            .filter(|(standing, ..)| *standing == Standing::Invisible)
            .count();
        assert_eq!(
            everyone["occupancy"],
            1 + members.len() - invisible,
            "case {case}"
        );
        // The invisible see themselves; a service sees everyone.
        for (user, (standing, ..)) in ids.iter().zip(&members) {
            if *standing == Standing::Invisible {
                let own = room(&app, *user, &room_id).await;
                assert!(self::ids(&own).contains(&user.to_string()), "case {case}");
            }
        }
        let response = call(
            &app,
            Method::GET,
            &format!("/api/rooms/{room_id}?limit=0"),
            &service_token("audit"),
            None,
        )
        .await;
        let truth: Value = response.json().await.expect("JSON");
        assert_eq!(truth["occupancy"], 1 + members.len(), "case {case}");
    }
}

#[sqlx::test]
async fn renewals_that_change_nothing_leave_the_etag_alone(pool: PgPool) {
    let app = spawn_app_with(pool, &[("PRESENCE_TYPING_TTL", "6s")]).await;
    let (alice, viewer) = (new_user(), new_user());
    app.ping_ok(alice, json!({})).await;
    join_ok(
        &app,
        alice,
        "doc:1",
        json!({"state": {"cursor": 1}, "typing": true}),
    )
    .await;
    let token = room_token(viewer, &["doc:*"]);
    let poll = async |tag: Option<&str>| {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("Authorization", auth.as_str())];
        if let Some(tag) = tag {
            headers.push(("If-None-Match", tag));
        }
        let response = app
            .raw(Method::GET, "/api/rooms/doc:1", &headers, None)
            .await;
        let status = response.status();
        let tag = response.headers()["etag"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let body = if status == StatusCode::OK {
            response.json::<Value>().await.expect("JSON")
        } else {
            Value::Null
        };
        (status, tag, body)
    };
    let (_, tag, body) = poll(None).await;
    assert_eq!(body["members"][0]["typing"], true);
    // Renewals: nothing, the same state, typing while typing.
    for renewal in [
        json!({}),
        json!({"state": {"cursor": 1}}),
        json!({"typing": true}),
    ] {
        app.advance(TimeDelta::seconds(2));
        join_ok(&app, alice, "doc:1", renewal.clone()).await;
        let (status, again, _) = poll(Some(&tag)).await;
        assert_eq!(
            (status, again.as_str()),
            (StatusCode::NOT_MODIFIED, tag.as_str()),
            "after {renewal}"
        );
    }
    // The last typing renewal was at +6 s: typing shows until +12 s, not after.
    app.advance(TimeDelta::milliseconds(5_999));
    assert_eq!(poll(Some(&tag)).await.0, StatusCode::NOT_MODIFIED);
    app.advance(TimeDelta::milliseconds(1));
    let (status, ended, body) = poll(Some(&tag)).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(ended, tag);
    assert_eq!(
        body["members"][0]["typing"], false,
        "the TTL passed since the last renewal"
    );
    // A change shows at once to the one who made it, and to others.
    join_ok(&app, alice, "doc:1", json!({"state": {"cursor": 2}})).await;
    let (status, _, body) = poll(Some(&ended)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["members"][0]["state"], json!({"cursor": 2}));
}

#[sqlx::test]
async fn another_instance_sees_a_room_change_through_the_notifications(pool: PgPool) {
    let clock = presence::clock::ManualClock::starting_at(start_time());
    let first =
        spawn_app_on_clock(pool.clone(), &[("PRESENCE_CACHE_TTL", "1h")], clock.clone()).await;
    let second = spawn_app_on_clock(pool, &[("PRESENCE_CACHE_TTL", "1h")], clock).await;
    let (alice, viewer) = (new_user(), new_user());
    // The second instance holds the empty room in its cache.
    assert_eq!(room(&second, viewer, "doc:1").await["occupancy"], 0);
    join_ok(&first, alice, "doc:1", json!({"state": {"n": 1}})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if room(&second, viewer, "doc:1").await["occupancy"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the join never reached the second instance"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    join_ok(&first, alice, "doc:1", json!({"typing": true})).await;
    loop {
        if room(&second, viewer, "doc:1").await["members"][0]["typing"] == true {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the typing never reached the second instance"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Leaving on one instance; the caller reads at once on it.
    assert_eq!(
        leave(&first, alice, "doc:1", "default").await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(room(&first, viewer, "doc:1").await["occupancy"], 0);
    loop {
        if room(&second, viewer, "doc:1").await["occupancy"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the leave never reached the second instance"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// PostgreSQL writes the numbers of a `jsonb` state out in full (309 digits
/// for the largest double), and reading such a state back failed (`500`):
/// the JSON parser's fast path overflowed. A state reads back as it was set.
#[sqlx::test]
async fn a_state_with_the_largest_numbers_reads_back_as_set(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    let state = json!({
        "largest": f64::MAX,
        "smallest": f64::MIN,
        "big": -1.641_186_173_631_313_1e239,
        "tiny": f64::MIN_POSITIVE,
        "whole": 35_422_473_504_081_908_u64,
    });
    let answer = join_ok(
        &app,
        user,
        "numbers",
        json!({"deviceId": "tab", "state": state}),
    )
    .await;
    assert_eq!(answer["state"], state);
    let seen = room(&app, user, "numbers").await;
    assert_eq!(seen["members"][0]["state"], state, "{seen}");
    let mine = read(&app, user, "/api/rooms").await;
    assert_eq!(mine["rooms"][0]["roomId"], "numbers", "{mine}");
}

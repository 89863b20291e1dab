//! Rooms: grants, memberships (join, renew, leave, state, typing, timeout,
//! sign-out, cap, prune), the room view, privacy and polling that holds still.

use std::collections::{BTreeMap, HashSet};
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

//! Polling at scale: batch reads, conditional requests, the read cache.

use std::time::Duration;

use chrono::TimeDelta;
use presence::domain::{DeviceId, Ping, SettingChange, UserId};
use presence::metrics::Metrics;
use presence::statuses::{Statuses, StatusesConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{error_code, new_user, spawn_app, start_time, token_for};

fn user_ids(body: &Value) -> Vec<String> {
    body["statuses"]
        .as_array()
        .expect("statuses")
        .iter()
        .map(|status| status["userId"].as_str().expect("userId").to_owned())
        .collect()
}

#[sqlx::test]
async fn a_batch_answers_each_distinct_id_once_in_the_order_first_asked(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (alice, bob, carol, viewer) = (new_user(), new_user(), new_user(), new_user());
    app.ping_ok(alice, json!({"platform": "mobile"})).await;
    app.ping_ok(bob, json!({"invisible": true})).await;

    let order = [carol, alice, carol, bob, alice];
    let by_get = app.batch_get(viewer, &order).await;
    let by_post = app.batch_post(viewer, &order).await;

    for body in [&by_get, &by_post] {
        assert_eq!(
            user_ids(body),
            [carol.to_string(), alice.to_string(), bob.to_string()]
        );
        let statuses = body["statuses"].as_array().expect("statuses");
        assert_eq!(
            statuses[0],
            app.status_of(viewer, carol).await,
            "never pinged"
        );
        assert_eq!(statuses[1], app.status_of(viewer, alice).await);
        assert_eq!(statuses[1]["platforms"], json!(["mobile"]));
        assert_eq!(
            statuses[2],
            app.status_of(viewer, bob).await,
            "the privacy rules apply as in single reads"
        );
        assert_eq!(statuses[2]["status"], "offline");
    }
}

#[sqlx::test]
async fn a_batch_shows_the_caller_their_self_view(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    app.ping_ok(user, json!({"invisible": true})).await;
    let body = app.batch_get(user, &[user]).await;
    assert_eq!(body["statuses"][0], app.status_of(user, user).await);
    assert_eq!(body["statuses"][0]["invisible"], true);
}

#[sqlx::test]
async fn batch_limits_count_the_ids_as_sent(pool: PgPool) {
    let app = spawn_app(pool).await;
    let viewer = new_user();
    let auth = format!("Bearer {}", token_for(viewer));
    let same = new_user();
    let get = |count: usize| {
        let list = vec![same.to_string(); count].join(",");
        app.raw(
            Method::GET,
            &format!("/api/status?ids={list}"),
            &[("authorization", &auth)],
            None,
        )
    };
    assert_eq!(get(100).await.status(), StatusCode::OK);
    assert_eq!(
        error_code(get(101).await).await,
        (StatusCode::BAD_REQUEST, "TOO_MANY_IDS".to_owned()),
        "duplicates count"
    );

    let post = |count: usize| {
        let body = json!({"userIds": vec![same.to_string(); count]})
            .to_string()
            .into_bytes();
        app.raw(
            Method::POST,
            "/api/status/query",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(body),
        )
    };
    assert_eq!(post(1000).await.status(), StatusCode::OK);
    assert_eq!(error_code(post(1001).await).await.1, "TOO_MANY_IDS");
}

#[sqlx::test]
async fn bad_batch_requests_get_the_contract_errors(pool: PgPool) {
    let app = spawn_app(pool).await;
    let auth = format!("Bearer {}", token_for(new_user()));
    let good = new_user().to_string();
    let json_type = ("content-type", "application/json");
    let get = |query: String| {
        app.raw(
            Method::GET,
            &format!("/api/status{query}"),
            &[("authorization", &auth)],
            None,
        )
    };

    let (status, code) = error_code(get(format!("?ids={good},nope")).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "INVALID_USER_ID")
    );
    let body: Value = get(format!("?ids={good},nope"))
        .await
        .json()
        .await
        .expect("JSON");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nope")),
        "names the bad id: {body}"
    );
    assert_eq!(
        error_code(get(format!("?ids={good},")).await).await.1,
        "INVALID_USER_ID"
    );
    assert_eq!(
        error_code(get(String::new()).await).await.1,
        "INVALID_USER_ID"
    );
    let empty: Value = get("?ids=".to_owned()).await.json().await.expect("JSON");
    assert_eq!(empty, json!({"statuses": []}));

    let post = |body: Vec<u8>| {
        app.raw(
            Method::POST,
            "/api/status/query",
            &[("authorization", &auth), json_type],
            Some(body),
        )
    };
    assert_eq!(
        error_code(post(br#"{"userIds": [1]}"#.to_vec()).await)
            .await
            .1,
        "INVALID_BODY"
    );
    assert_eq!(
        error_code(post(br#"{"ids": []}"#.to_vec()).await).await.1,
        "INVALID_BODY"
    );
    assert_eq!(
        error_code(post(br#"{"userIds": ["x"]}"#.to_vec()).await)
            .await
            .1,
        "INVALID_USER_ID"
    );
    let huge = json!({"userIds": vec!["0".repeat(100); 700]})
        .to_string()
        .into_bytes();
    assert!(huge.len() > 64 * 1024);
    assert_eq!(
        error_code(post(huge).await).await,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE".to_owned()
        )
    );
    let near_limit = json!({"userIds": vec![good.clone(); 1000]})
        .to_string()
        .into_bytes();
    assert!(
        near_limit.len() > 16 * 1024,
        "bigger than other endpoints take"
    );
    assert_eq!(post(near_limit).await.status(), StatusCode::OK);
    let wrong_method = app
        .raw(
            Method::GET,
            "/api/status/query",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(error_code(wrong_method).await.1, "METHOD_NOT_ALLOWED");
}

/// Sends a read with `If-None-Match` and returns (status, ETag, body text).
async fn conditional(
    app: &crate::helpers::TestApp,
    viewer: UserId,
    path: &str,
    etag: Option<&str>,
) -> (StatusCode, String, String) {
    let auth = format!("Bearer {}", token_for(viewer));
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(etag) = etag {
        headers.push(("if-none-match", etag));
    }
    let response = app.raw(Method::GET, path, &headers, None).await;
    let status = response.status();
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("private, no-cache"),
        "{path}"
    );
    let tag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("an ETag")
        .to_owned();
    (status, tag, response.text().await.expect("body"))
}

#[sqlx::test]
async fn polls_get_304_until_the_body_would_change_even_by_time_alone(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (user, viewer) = (new_user(), new_user());
    app.ping_ok(user, json!({})).await;
    for path in [
        format!("/api/status/{user}"),
        format!("/api/status?ids={user},{viewer}"),
    ] {
        let (status, etag, body) = conditional(&app, viewer, &path, None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!body.is_empty());

        let (status, same, body) = conditional(&app, viewer, &path, Some(&etag)).await;
        assert_eq!(
            (status, same.as_str(), body.as_str()),
            (StatusCode::NOT_MODIFIED, etag.as_str(), ""),
            "{path}"
        );
        let (status, ..) =
            conditional(&app, viewer, &path, Some(&format!("\"other\", W/{etag}"))).await;
        assert_eq!(
            status,
            StatusCode::NOT_MODIFIED,
            "a list and a weak tag match too"
        );

        app.advance(TimeDelta::seconds(10));
        let (status, ..) = conditional(&app, viewer, &path, Some(&etag)).await;
        assert_eq!(
            status,
            StatusCode::NOT_MODIFIED,
            "{path}: time passing without a change"
        );

        app.advance(TimeDelta::seconds(10));
        app.ping_ok(user, json!({"active": false})).await;
        let (status, ..) = conditional(&app, viewer, &path, Some(&etag)).await;
        assert_eq!(
            status,
            StatusCode::NOT_MODIFIED,
            "{path}: a heartbeat changes nothing another viewer is shown"
        );
    }

    let path = format!("/api/status/{user}");
    let (_, online_tag, _) = conditional(&app, viewer, &path, None).await;
    app.advance(TimeDelta::seconds(270));
    app.ping_ok(user, json!({"active": false})).await;
    let (status, idle_tag, body) = conditional(&app, viewer, &path, Some(&online_tag)).await;
    assert_eq!(status, StatusCode::OK, "online turned idle with time alone");
    assert_ne!(idle_tag, online_tag);
    assert!(body.contains("\"idle\""), "{body}");
}

#[sqlx::test]
async fn the_query_post_is_conditional_too(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (user, viewer) = (new_user(), new_user());
    app.ping_ok(user, json!({})).await;
    let auth = format!("Bearer {}", token_for(viewer));
    let body = json!({"userIds": [user.to_string()]})
        .to_string()
        .into_bytes();
    let first = app
        .raw(
            Method::POST,
            "/api/status/query",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(body.clone()),
        )
        .await;
    let etag = first
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("ETag")
        .to_owned();
    let again = app
        .raw(
            Method::POST,
            "/api/status/query",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("if-none-match", &etag),
            ],
            Some(body),
        )
        .await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

fn config(cache_ttl: Duration, cache_capacity: u64, distributed: bool) -> StatusesConfig {
    StatusesConfig {
        cache_ttl,
        cache_capacity,
        max_devices: 10,
        ping_batch_wait: Duration::from_millis(5),
        db_deadline: Duration::from_secs(2),
        distributed,
    }
}

fn ping(device: &str, active: bool) -> Ping {
    Ping {
        device_id: DeviceId::parse(device).expect("id"),
        platform: None,
        active,
        manual_status: SettingChange::Keep,
        invisible: None,
        status_message: SettingChange::Keep,
    }
}

#[sqlx::test]
async fn the_read_cache_stays_within_its_capacity(pool: PgPool) {
    crate::citus::prepare(&pool).await;
    let distributed = crate::citus::distributed(&pool).await;
    let (statuses, _tasks) = Statuses::start(
        pool,
        config(Duration::from_secs(60), 10, distributed),
        None,
        None,
        &Metrics::new(),
    );
    let users: Vec<UserId> = (0..100).map(|_| new_user()).collect();
    for user in &users[..20] {
        statuses
            .ping(*user, &ping("tab", true), start_time())
            .await
            .expect("ping");
    }
    let rows = statuses
        .fetch_many_for(users[0], &users)
        .await
        .expect("reads");
    assert_eq!(rows.iter().filter(|(row, _)| row.is_some()).count(), 20);
    assert!(
        statuses.cached_rows() <= 10,
        "{} rows cached",
        statuses.cached_rows()
    );
}

#[sqlx::test]
async fn activity_within_one_precision_step_changes_nothing_another_viewer_is_shown(pool: PgPool) {
    let app = crate::helpers::spawn_app_with(pool, &[("PRESENCE_LAST_SEEN_PRECISION", "1m")]).await;
    let (user, viewer) = (new_user(), new_user());
    app.advance(chrono::TimeDelta::seconds(10));
    app.ping_ok(user, json!({"deviceId": "tab"})).await;
    let path = format!("/api/status/{user}");
    let (_, etag, body) = conditional(&app, viewer, &path, None).await;
    let seen: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        seen["lastSeen"], "2026-11-23T10:00:00.000Z",
        "floored to the minute"
    );
    assert_eq!(
        seen["nextChangeAt"], "2026-11-23T10:05:00.000Z",
        "idle 5 min after the floor"
    );
    let me = app.status_of(user, user).await;
    assert_eq!(
        me["lastSeen"], "2026-11-23T10:00:10.000Z",
        "the user sees it exactly"
    );

    for (step, active) in [(20, true), (20, false), (5, true)] {
        app.advance(chrono::TimeDelta::seconds(step));
        app.ping_ok(user, json!({"deviceId": "tab", "active": active}))
            .await;
        let (status, ..) = conditional(&app, viewer, &path, Some(&etag)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "within the same minute");
    }
    app.advance(chrono::TimeDelta::seconds(10));
    app.ping_ok(user, json!({"deviceId": "tab"})).await;
    let (status, _, body) = conditional(&app, viewer, &path, Some(&etag)).await;
    assert_eq!(status, StatusCode::OK, "activity in the next minute shows");
    assert!(
        body.contains("\"lastSeen\":\"2026-11-23T10:01:00.000Z\""),
        "{body}"
    );
}

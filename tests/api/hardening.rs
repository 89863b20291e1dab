//! Hostile traffic and sick databases: bounded metrics, deadlines, timeouts, JSON from the HTTP layer.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{error_code, new_user, raw_exchange, spawn_app, spawn_app_with, token_for};
use crate::operations::{sample, scrape_until, serve_on_a_private_cluster};

/// How many `presence_http_requests_total` series a metrics page holds.
fn request_series(page: &str) -> usize {
    page.lines()
        .filter(|line| line.starts_with("presence_http_requests_total{"))
        .count()
}

#[sqlx::test]
async fn made_up_methods_do_not_grow_the_metrics(pool: PgPool) {
    let app = spawn_app(pool).await;
    let flood = |first: usize| {
        let app = &app;
        async move {
            for n in first..first + 50 {
                let method = Method::from_bytes(format!("FOO{n}").as_bytes()).expect("a token");
                let response = app.raw(method, "/healthz", &[], None).await;
                assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
            }
        }
    };
    flood(0).await;
    let before = request_series(&scrape_until(&app, |_| true).await);
    flood(1000).await;
    let page = scrape_until(&app, |_| true).await;
    assert_eq!(request_series(&page), before, "{page}");
    assert_eq!(
        sample(
            &page,
            "presence_http_requests_total",
            &[
                ("method", "OTHER"),
                ("route", "/healthz"),
                ("status", "405")
            ]
        ),
        100.0,
        "{page}"
    );
}

#[sqlx::test]
async fn metrics_live_on_their_own_listener_and_count_invisible_users_offline(pool: PgPool) {
    let app = spawn_app_with(pool, &[("PRESENCE_METRICS_USERS_EVERY", "20ms")]).await;
    let (status, code) = error_code(app.raw(Method::GET, "/metrics", &[], None).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );

    let (hiding, open) = (new_user(), new_user());
    app.ping_ok(hiding, json!({"manualStatus": "dnd", "invisible": true}))
        .await;
    app.ping_ok(open, json!({})).await;
    let page = scrape_until(&app, |page| {
        sample(page, "presence_users", &[("status", "offline")]) == 1.0
            && sample(page, "presence_users", &[("status", "online")]) == 1.0
    })
    .await;
    assert_eq!(
        sample(&page, "presence_users", &[("status", "offline")]),
        1.0,
        "{page}"
    );
    assert_eq!(
        sample(&page, "presence_users", &[("status", "dnd")]),
        0.0,
        "the invisible DND user shows as offline: {page}"
    );
}

#[tokio::test]
async fn a_frozen_database_gets_503_within_2s_and_the_pool_recovers_when_it_thaws() {
    let (cluster, base) = serve_on_a_private_cluster().await;
    let client = reqwest::Client::new();
    let (user, other) = (new_user(), new_user());
    let requests = |base: &str| {
        let token = token_for(user);
        [
            client
                .put(format!("{base}/api/status"))
                .bearer_auth(&token)
                .json(&json!({"active": false})),
            client
                .put(format!("{base}/api/status"))
                .bearer_auth(&token)
                .json(&json!({"statusMessage": "hello"})),
            client
                .get(format!("{base}/api/status/{other}"))
                .bearer_auth(&token),
            client
                .put(format!("{base}/api/blocks/{other}"))
                .bearer_auth(&token),
            client.get(format!("{base}/readyz")),
        ]
    };
    // Warm the pool: the frozen server holds idle connections that look healthy.
    for request in requests(&base) {
        assert!(request.send().await.expect("answers").status().is_success());
    }

    let frozen = cluster.freeze();
    for request in requests(&base) {
        let started = Instant::now();
        let response = request.send().await.expect("the server answers");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "answered in {took:?}");
        assert!(response.headers().contains_key("retry-after"));
        assert_eq!(
            error_code(response).await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "DATABASE_UNAVAILABLE".to_owned()
            )
        );
    }

    frozen.thaw();
    let started = Instant::now();
    loop {
        let mut all_ok = true;
        for request in requests(&base) {
            all_ok &= request.send().await.expect("answers").status().is_success();
        }
        if all_ok {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not recovered after the database thawed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A request head for `PUT /api/status` as `user`, announcing a body of `length` bytes.
fn put_head(user: presence::domain::UserId, length: usize) -> String {
    format!(
        "PUT /api/status HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n",
        token_for(user)
    )
}

#[sqlx::test]
async fn a_stalled_body_or_head_gets_a_json_408(pool: PgPool) {
    let app = spawn_app_with(pool, &[("PRESENCE_REQUEST_TIMEOUT", "300ms")]).await;
    let user = new_user();
    let stalled_body = format!("{}{{\"active\":", put_head(user, 100));
    let responses = raw_exchange(
        &app.address,
        stalled_body.as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(responses[0].status, 408);
    assert_eq!(responses[0].error_code(), "REQUEST_TIMEOUT");

    let stalled_head = b"GET /healthz HTTP/1.1\r\nhost: te";
    let responses = raw_exchange(&app.address, stalled_head, Duration::from_secs(10)).await;
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(responses[0].status, 408);
    assert_eq!(responses[0].error_code(), "REQUEST_TIMEOUT");

    let self_view: Value = app.status_of(user, user).await;
    assert_eq!(self_view["status"], "offline", "nothing was written");
}

#[sqlx::test]
async fn what_the_http_layer_refuses_is_the_contracts_json(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    let ids = vec![user.to_string(); 10_000].join(",");
    let cases = [
        (
            format!(
                "GET /healthz HTTP/1.1\r\nx-big: {}\r\n\r\n",
                "a".repeat(40_000)
            ),
            431,
            "HEADERS_TOO_LARGE",
        ),
        (
            format!("GET /healthz?{} HTTP/1.1\r\n\r\n", "a".repeat(9_000)),
            414,
            "URI_TOO_LONG",
        ),
        (
            format!("GET /api/status?ids={ids} HTTP/1.1\r\n\r\n"),
            400,
            "TOO_MANY_IDS",
        ),
        (
            format!(
                "{}{{}}",
                put_head(user, 2).replace("content-length: 2", "content-length: two")
            ),
            400,
            "INVALID_BODY",
        ),
        (
            "GET /healthz HTTP/1.1\r\nhost: test\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n"
                .to_owned(),
            400,
            "INVALID_BODY",
        ),
        (
            "\x16\x03\x01 not http at all\r\n\r\n".to_owned(),
            400,
            "INVALID_BODY",
        ),
        (
            "GET /healthz HTTP/1.1\r\n\r\n".to_owned(),
            400,
            "INVALID_BODY",
        ),
    ];
    for (request, status, code) in cases {
        let responses =
            raw_exchange(&app.address, request.as_bytes(), Duration::from_secs(5)).await;
        let label = &request[..request.len().min(60)];
        assert_eq!(responses.len(), 1, "{label}: {responses:?}");
        assert_eq!(
            responses[0].status,
            status,
            "{label}: {:?}",
            String::from_utf8_lossy(&responses[0].body)
        );
        assert_eq!(responses[0].error_code(), code, "{label}");
    }

    // Pipelined: the sound request is answered first, then the refusal, then the connection closes.
    let pipelined = format!(
        "GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n{}{{}}GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n",
        put_head(user, 2).replace("content-length: 2", "content-length: -2")
    );
    let responses = raw_exchange(&app.address, pipelined.as_bytes(), Duration::from_secs(5)).await;
    let statuses: Vec<u16> = responses.iter().map(|response| response.status).collect();
    assert_eq!(statuses, [200, 400], "{responses:?}");
    assert_eq!(responses[1].error_code(), "INVALID_BODY");

    assert_eq!(
        app.raw(Method::GET, "/healthz", &[], None).await.status(),
        StatusCode::OK,
        "the server still serves"
    );
}

#[sqlx::test]
async fn head_is_answered_wherever_get_is(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    app.ping_ok(user, json!({})).await;
    let token = format!("Bearer {}", token_for(user));
    for path in [
        "/healthz".to_owned(),
        "/readyz".to_owned(),
        "/openapi.json".to_owned(),
        format!("/api/status/{user}"),
        format!("/api/status?ids={user}"),
        "/api/blocks".to_owned(),
    ] {
        let get = app
            .raw(Method::GET, &path, &[("authorization", &token)], None)
            .await;
        let head = app
            .raw(Method::HEAD, &path, &[("authorization", &token)], None)
            .await;
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
        assert_eq!(
            head.headers().get("etag"),
            get.headers().get("etag"),
            "HEAD {path}"
        );
        assert!(head.bytes().await.expect("body").is_empty(), "HEAD {path}");
    }
}

#[sqlx::test]
async fn year_10000_and_bidi_overrides_are_refused_and_change_nothing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    app.ping_ok(user, json!({"statusMessage": "kept"})).await;
    let cases = [
        (
            json!({"manualStatus": "dnd", "manualStatusUntil": "9999-12-31T23:59:59.999-23:59"}),
            "INVALID_TIMESTAMP",
        ),
        (
            json!({"statusMessage": "x", "statusMessageUntil": "9999-12-31T23:30:00-01:00"}),
            "INVALID_TIMESTAMP",
        ),
        (
            json!({"statusMessage": "evil\u{202E}gnp.exe"}),
            "INVALID_STATUS_MESSAGE",
        ),
        (
            json!({"statusMessage": "zero\u{200B}width"}),
            "INVALID_STATUS_MESSAGE",
        ),
        (
            json!({"statusMessage": "a\u{2066}b\u{2069}"}),
            "INVALID_STATUS_MESSAGE",
        ),
    ];
    for (body, code) in cases {
        let (status, found) = error_code(app.ping(user, body.clone()).await).await;
        assert_eq!(
            (status, found.as_str()),
            (StatusCode::BAD_REQUEST, code),
            "{body}"
        );
    }
    let view = app.status_of(user, user).await;
    assert_eq!(view["statusMessage"], "kept");
    assert_eq!(view["manualStatus"], Value::Null);
}

#[sqlx::test]
async fn blocks_are_listed_a_page_at_a_time_in_id_order(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    let mut blocked: Vec<String> = (0..5).map(|_| new_user().to_string()).collect();
    for other in &blocked {
        assert_eq!(
            app.set_block(user, other, true).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    blocked.sort();
    let token = format!("Bearer {}", token_for(user));
    let mut listed: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &after {
            Some(after) => format!("/api/blocks?limit=2&after={after}"),
            None => "/api/blocks?limit=2".to_owned(),
        };
        let page: Value = app
            .raw(Method::GET, &path, &[("authorization", &token)], None)
            .await
            .json()
            .await
            .expect("JSON");
        pages += 1;
        let ids = page["userIds"].as_array().expect("userIds");
        assert!(ids.len() <= 2, "{page}");
        listed.extend(ids.iter().map(|id| id.as_str().expect("an id").to_owned()));
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(listed, blocked);
    assert_eq!(pages, 3);
    for bad in [
        "/api/blocks?limit=0",
        "/api/blocks?limit=1001",
        "/api/blocks?after=x",
    ] {
        let response = app
            .raw(Method::GET, bad, &[("authorization", &token)], None)
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[sqlx::test]
async fn connections_beyond_the_cap_wait_until_one_closes(pool: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // One connection per worker: the server holds exactly `cap` at once.
    let cap = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let app = spawn_app_with(pool, &[("PRESENCE_MAX_CONNECTIONS", &cap.to_string())]).await;
    let host = app.address.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..cap {
        let mut idle = tokio::net::TcpStream::connect(&host)
            .await
            .expect("connects");
        // A complete request, so each holds a worker's slot on a kept-alive connection.
        idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .expect("writes");
        let mut answer = [0_u8; 512];
        let read = idle.read(&mut answer).await.expect("answered");
        assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
        held.push(idle);
    }
    let waiting = tokio::spawn({
        let address = app.address.clone();
        async move {
            reqwest::get(format!("{address}/healthz"))
                .await
                .map(|r| r.status())
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "a connection beyond the cap was served"
    );
    drop(held.pop());
    let status = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once a slot frees")
        .expect("joins")
        .expect("answers");
    assert_eq!(status, StatusCode::OK);
}

//! Running it in production: readiness, database outages, start-up, logs.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use presence::clock::SystemClock;
use presence::config::Config;
use presence::startup::{Application, prepare_database};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::cluster::{Cluster, newest_server};
use crate::helpers::{error_code, new_user, spawn_app, token_for};

#[sqlx::test]
async fn readyz_says_ready_when_the_database_answers_and_is_migrated(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = app.raw(Method::GET, "/readyz", &[], None).await;
    assert_eq!(response.status(), StatusCode::OK);

    sqlx::query(
        "delete from _sqlx_migrations where version = (select max(version) from _sqlx_migrations)",
    )
    .execute(&app.pool)
    .await
    .expect("forgets a migration");
    let response = app.raw(Method::GET, "/readyz", &[], None).await;
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "DATABASE_UNAVAILABLE");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("migration")),
        "{body}"
    );

    app.pool.close().await;
    let (status, code) = error_code(app.raw(Method::GET, "/readyz", &[], None).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "DATABASE_UNAVAILABLE")
    );
    assert_eq!(
        app.raw(Method::GET, "/healthz", &[], None).await.status(),
        StatusCode::OK,
        "healthz needs no database"
    );
}

fn config_for(url: &str) -> Config {
    crate::helpers::test_config(&[
        ("DATABASE_URL", url),
        ("PRESENCE_CACHE_TTL", "0"),
        ("PRESENCE_DB_STATEMENT_TIMEOUT", "500ms"),
        ("PRESENCE_METRICS_ADDR", ""),
    ])
}

/// A server on a private throwaway cluster (cache off), for tests that stop or
/// freeze the database; the cluster, and the server's base URL.
pub async fn serve_on_a_private_cluster() -> (Cluster, String) {
    let bin = newest_server().expect("a PostgreSQL server is installed");
    let cluster = Cluster::start(bin, "");
    let config = config_for(&cluster.url("presence"));
    let pool = prepare_database(&config)
        .await
        .expect("creates and migrates");
    let application = Application::build_with_pool(&config, pool, Arc::new(SystemClock))
        .await
        .expect("builds");
    let base = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    (cluster, base)
}

#[tokio::test]
async fn a_database_outage_gives_quick_503s_and_heals_by_itself() {
    let (cluster, base) = serve_on_a_private_cluster().await;

    let client = reqwest::Client::new();
    let user = new_user();
    let ping = || {
        client
            .put(format!("{base}/api/status"))
            .bearer_auth(token_for(user))
            .json(&json!({}))
            .send()
    };
    let read = || {
        client
            .get(format!("{base}/api/status/{user}"))
            .bearer_auth(token_for(user))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(ping().await.expect("answers").status(), StatusCode::OK);
        assert_eq!(read().await.expect("answers").status(), StatusCode::OK);
    }

    cluster.halt();
    for _ in 0..4 {
        for request in [ping(), read()] {
            let started = Instant::now();
            let response = request.await.expect("the server answers");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "answered in {:?}",
                started.elapsed()
            );
            assert!(response.headers().contains_key("retry-after"));
            assert_eq!(
                error_code(response).await,
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "DATABASE_UNAVAILABLE".to_owned()
                )
            );
        }
    }
    let ready = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("answers");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("answers")
            .status(),
        StatusCode::OK
    );

    cluster.resume();
    let started = Instant::now();
    loop {
        let (pinged, read_back) = (
            ping().await.expect("answers").status(),
            read().await.expect("answers").status(),
        );
        if pinged == StatusCode::OK && read_back == StatusCode::OK {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still {pinged} / {read_back} after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        assert_eq!(
            ping().await.expect("answers").status(),
            StatusCode::OK,
            "recovered without a restart"
        );
    }
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("answers")
            .status(),
        StatusCode::OK
    );
}

#[test]
fn start_up_retries_an_unreachable_database_then_gives_up_clearly() {
    let started = Instant::now();
    let output = crate::process::run(
        crate::process::presence()
            .args(["serve", "--dev"])
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/presence")
            .env("PRESENCE_DB_STARTUP_TIMEOUT", "1500ms"),
    );
    assert!(!output.status.success());
    assert!(started.elapsed() >= Duration::from_secs(1), "it waited");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.matches("not reachable yet").count() >= 2,
        "a line per retry: {stderr}"
    );
    assert!(
        stderr.contains("could not reach or create the database"),
        "{stderr}"
    );
}

#[tokio::test]
async fn json_logs_carry_the_request_id_on_every_line_of_a_request() {
    let (stderr, token) = json_log_of_a_ping("info").await;
    let request_lines = request_lines(&stderr);
    assert!(!request_lines.is_empty(), "{stderr}");
    for line in request_lines {
        assert!(
            line["span"]["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{line}"
        );
    }
    assert!(!stderr.contains(&token), "the token is never logged");
}

#[tokio::test]
async fn the_request_log_follows_a_filter_that_names_it_alone() {
    // The server builds request spans only when the filter keeps them: a
    // filter that keeps them by the request logger's name alone still logs
    // each request, and one that keeps only warnings logs none.
    let (stderr, _) = json_log_of_a_ping("warn,tracing_actix_web=info").await;
    assert!(!request_lines(&stderr).is_empty(), "{stderr}");
    let (stderr, _) = json_log_of_a_ping("warn").await;
    assert!(request_lines(&stderr).is_empty(), "{stderr}");
}

/// What a server logging JSON lines under the filter `rust_log` wrote to
/// stderr for one ping, and the ping's token.
async fn json_log_of_a_ping(rust_log: &str) -> (String, String) {
    let bin = newest_server().expect("a PostgreSQL server is installed");
    let cluster = Cluster::start(bin, "");
    let port = crate::helpers::free_port();
    let mut server = crate::process::presence_server(&cluster.url("presence"), port)
        .env("PRESENCE_LOG_FORMAT", "json")
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let client = reqwest::Client::new();
    assert!(
        crate::helpers::wait_until_healthy(&format!("http://127.0.0.1:{port}")).await,
        "the server started"
    );
    let token = token_for(new_user());
    let response = client
        .put(format!("http://127.0.0.1:{port}/api/status"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .expect("pings");
    assert_eq!(response.status(), StatusCode::OK);
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut server.stderr.take().expect("stderr"), &mut stderr)
        .expect("reads");
    (stderr, token)
}

/// The JSON lines of `stderr` written inside a request to `PUT /api/status`.
fn request_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .filter(|line: &Value| line["span"]["http.route"] == "/api/status")
        .collect()
}

/// A sample's name, labels and expected value.
type Expectation<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// The value of the sample `name{labels}` in a Prometheus text page, 0 if absent.
pub fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter_map(|line| line.strip_prefix(name))
        .filter_map(|rest| match rest.strip_prefix('{') {
            Some(labelled) => labelled.split_once("} "),
            // A series without labels: `name value`.
            None => rest.strip_prefix(' ').map(|value| ("", value)),
        })
        .find(|(found, _)| {
            let found: Vec<&str> = found.split(',').filter(|label| !label.is_empty()).collect();
            labels
                .iter()
                .all(|(key, value)| found.contains(&format!("{key}=\"{value}\"").as_str()))
                && found.len() == labels.len()
        })
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Scrapes the metrics listener until `done` holds (the user counts are kept
/// in the background), at most 5 s; the last page.
pub async fn scrape_until(app: &crate::helpers::TestApp, done: impl Fn(&str) -> bool) -> String {
    let client = reqwest::Client::new();
    let mut page = String::new();
    for _ in 0..250 {
        let response = client
            .get(format!("{}/metrics", app.metrics_address))
            .send()
            .await
            .expect("the metrics listener answers");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("text/plain"))
        );
        page = response.text().await.expect("text");
        if done(&page) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    page
}

#[sqlx::test]
async fn metrics_count_exactly_a_known_sequence_of_requests(pool: PgPool) {
    let app = crate::helpers::spawn_app_with(
        pool,
        &[
            ("PRESENCE_PUT_BURST", "3"),
            ("PRESENCE_PUT_PER_SECOND", "0.01"),
            ("PRESENCE_METRICS_USERS_EVERY", "20ms"),
        ],
    )
    .await;
    let (pinger, reader, never) = (new_user(), new_user(), new_user());
    app.ping_ok(pinger, json!({"deviceId": "tab"})).await;
    app.ping_ok(pinger, json!({"deviceId": "tab", "active": false}))
        .await;
    app.ping_ok(pinger, json!({"deviceId": "tab"})).await;
    assert_eq!(
        app.ping(pinger, json!({"deviceId": "tab"})).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    for user in [pinger, pinger, never, never] {
        app.status_of(reader, user).await;
    }

    let page = scrape_until(&app, |page| {
        sample(page, "presence_users", &[("status", "online")]) == 1.0
    })
    .await;
    let expectations: [Expectation; 12] = [
        ("presence_pings_total", &[("outcome", "batched")], 3.0),
        // Each ping was answered before the next was sent: a batch each.
        ("presence_ping_batches_total", &[], 3.0),
        ("presence_pings_total", &[("outcome", "direct")], 0.0),
        ("presence_rate_limited_total", &[("limit", "ping")], 1.0),
        ("presence_rate_limited_total", &[("limit", "settings")], 0.0),
        (
            "presence_http_requests_total",
            &[
                ("method", "PUT"),
                ("route", "/api/status"),
                ("status", "200"),
            ],
            3.0,
        ),
        (
            "presence_http_requests_total",
            &[
                ("method", "PUT"),
                ("route", "/api/status"),
                ("status", "429"),
            ],
            1.0,
        ),
        (
            "presence_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/api/status/{userId}"),
                ("status", "200"),
            ],
            4.0,
        ),
        // The pinger's row is cached by the ping and the reader is learnt to be
        // in no block, so both reads of it hit; the user who never pinged is
        // remembered as such after one read.
        ("presence_cache_lookups_total", &[("result", "hit")], 3.0),
        ("presence_cache_lookups_total", &[("result", "miss")], 1.0),
        ("presence_users", &[("status", "online")], 1.0),
        (
            "presence_http_request_duration_seconds_count",
            &[("method", "PUT"), ("route", "/api/status")],
            4.0,
        ),
    ];
    for (name, labels, expected) in expectations {
        assert_eq!(
            sample(&page, name, labels),
            expected,
            "{name}{labels:?} in\n{page}"
        );
    }
    for needed in [
        "presence_db_pool_connections",
        "presence_devices_pruned_total",
        "presence_prune_duration_seconds",
    ] {
        assert!(page.contains(needed), "{needed} in\n{page}");
    }
}

#[sqlx::test]
async fn the_openapi_document_covers_every_route(pool: PgPool) {
    let app = spawn_app(pool).await;
    let document: Value = app
        .raw(Method::GET, "/openapi.json", &[], None)
        .await
        .json()
        .await
        .expect("JSON");
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|version| version.starts_with('3'))
    );
    let routes = [
        ("/api/status", "put"),
        ("/api/status", "get"),
        ("/api/status/{userId}", "get"),
        ("/api/status/query", "post"),
        ("/api/status/devices/{deviceId}", "delete"),
        ("/api/blocks", "get"),
        ("/api/blocks/{userId}", "put"),
        ("/api/blocks/{userId}", "delete"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ];
    for (path, method) in routes {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        let codes: Vec<&String> = operation["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .collect();
        if path.starts_with("/api") {
            for code in ["401", "500", "503"] {
                assert!(
                    codes.iter().any(|c| *c == code),
                    "{method} {path} documents {code}: {codes:?}"
                );
            }
        }
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

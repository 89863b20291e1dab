//! The `presence` binary as users run it.

use std::process::{Command, Stdio};
use std::time::Duration;

use presence::auth::{DEV_JWT_SECRET, TokenVerifier};
use secrecy::SecretString;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::helpers::{free_port, wait_until_healthy};
use crate::process::{database_url, presence, run};

/// Drops database `name` of the test server, connections and all.
pub(crate) async fn drop_database(name: &str) {
    let mut connection = PgConnection::connect(&database_url("postgres"))
        .await
        .expect("connects");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop database if exists \"{name}\" with (force)"
    )))
    .execute(&mut connection)
    .await
    .expect("drops");
}

#[test]
fn serve_refuses_to_start_without_a_secret_and_says_how_to_fix_it() {
    let output = run(presence()
        .arg("serve")
        .env("DATABASE_URL", database_url("unused")));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PRESENCE_JWT_SECRET"), "{stderr}");
    assert!(stderr.contains("--dev"), "{stderr}");
}

#[test]
fn a_bad_setting_stops_start_up_naming_the_variable() {
    let output = run(presence()
        .args(["serve", "--dev"])
        .env("PRESENCE_IDLE_AFTER", "soon"));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PRESENCE_IDLE_AFTER"), "{stderr}");
}

#[test]
fn token_dev_prints_a_token_for_the_development_secret() {
    let user = Uuid::new_v4();
    let output = run(presence().args(["token", &user.to_string(), "--dev", "--ttl", "1h"]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let verified = TokenVerifier::new(&SecretString::from(DEV_JWT_SECRET))
        .verify(token.trim())
        .expect("the dev server accepts it");
    assert_eq!(verified.as_uuid(), user);
}

#[test]
fn token_signs_with_the_configured_secret() {
    let user = Uuid::new_v4();
    let output = run(presence()
        .args(["token", &user.to_string()])
        .env("PRESENCE_JWT_SECRET", "configured"));
    assert!(output.status.success());
    let token = String::from_utf8(output.stdout).expect("utf-8");
    assert!(
        TokenVerifier::new(&SecretString::from("configured"))
            .verify(token.trim())
            .is_ok()
    );
    assert!(
        TokenVerifier::new(&SecretString::from(DEV_JWT_SECRET))
            .verify(token.trim())
            .is_err()
    );
}

#[test]
fn token_carries_the_configured_issuer_and_audience() {
    let user = Uuid::new_v4();
    let output = run(presence()
        .args(["token", &user.to_string()])
        .env("PRESENCE_JWT_SECRET", "configured")
        .env("PRESENCE_JWT_ISSUER", "https://auth.example")
        .env("PRESENCE_JWT_AUDIENCE", "presence"));
    assert!(output.status.success());
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let mut settings = presence::auth::TokenSettings::with_secret(SecretString::from("configured"));
    settings.claims.issuer = Some("https://auth.example".to_owned());
    settings.claims.audience = Some("presence".to_owned());
    assert!(
        presence::auth::TokenVerifier::with_settings(&settings)
            .verify(token.trim())
            .is_ok()
    );
}

#[test]
fn token_with_the_admin_scope_signs_a_service_token_for_any_name() {
    let output = run(presence()
        .args(["token", "--scope", "presence:admin", "push-notifier"])
        .env("PRESENCE_JWT_SECRET", "configured"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).expect("utf-8");
    let verifier = TokenVerifier::new(&SecretString::from("configured"));
    let caller = verifier.verify_caller(token.trim()).expect("verifies");
    assert_eq!(caller.subject, "push-notifier");
    assert!(caller.admin);
    assert!(
        verifier.verify(token.trim()).is_err(),
        "not a user token: the name is no user id"
    );
}

#[test]
fn token_refuses_a_user_id_that_is_not_a_uuid() {
    let output = run(presence().args(["token", "alice", "--dev"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("alice"));
}

#[tokio::test]
async fn migrate_creates_the_database_when_missing() {
    let name = format!("presence_cli_{}", Uuid::new_v4().simple());
    let output = run(presence()
        .arg("migrate")
        .env("DATABASE_URL", database_url(&name)));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut connection = PgConnection::connect(&database_url(&name))
        .await
        .expect("the database exists");
    let rows: i64 = sqlx::query_scalar("select count(*) from user_status")
        .fetch_one(&mut connection)
        .await
        .expect("the table exists");
    assert_eq!(rows, 0);
    let functions: i64 =
        sqlx::query_scalar("select count(*) from pg_proc where proname = 'prune_stale_devices'")
            .fetch_one(&mut connection)
            .await
            .expect("reads pg_proc");
    assert_eq!(functions, 1, "the sql/ functions are applied too");
    connection.close().await.expect("closes");
    let again = run(presence()
        .arg("migrate")
        .env("DATABASE_URL", database_url(&name)));
    assert!(again.status.success(), "migrating twice is harmless");
    drop_database(&name).await;
}

#[tokio::test]
async fn serve_dev_creates_the_database_and_answers_health_checks() {
    let name = format!("presence_cli_{}", Uuid::new_v4().simple());
    let port = free_port();
    let mut server = presence()
        .args(["serve", "--dev"])
        .env("DATABASE_URL", database_url(&name))
        .env("PRESENCE_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");

    let healthy = wait_until_healthy(&format!("http://127.0.0.1:{port}")).await;
    server.kill().expect("stops");
    let output = server.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(healthy, "no answer from /healthz: {stderr}");
    assert!(
        stderr.contains("DEVELOPMENT MODE"),
        "--dev says so loudly: {stderr}"
    );
    drop_database(&name).await;
}

#[tokio::test]
async fn an_answered_ping_is_already_stored_and_sigterm_exits_0() {
    let name = format!("presence_cli_{}", Uuid::new_v4().simple());
    let port = free_port();
    let secret = "sigterm-test-secret";
    let server = presence()
        .args(["serve"])
        .env("DATABASE_URL", database_url(&name))
        .env("PRESENCE_ADDR", format!("127.0.0.1:{port}"))
        .env("PRESENCE_JWT_SECRET", secret)
        .env("PRESENCE_PRUNE_EVERY", "0")
        .env("PRESENCE_SHUTDOWN_DRAIN", "100ms")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    assert!(wait_until_healthy(&base).await, "the server started");
    let user = presence::domain::UserId::from(Uuid::new_v4());
    let token =
        presence::auth::issue_token(&SecretString::from(secret), user, Duration::from_secs(600))
            .expect("token");
    // Concurrent reads make the HTTP workers open connections of their own.
    let reads = (0..32).map(|_| {
        client
            .get(format!("{base}/api/status/{}", Uuid::new_v4()))
            .bearer_auth(&token)
            .send()
    });
    for read in futures::future::join_all(reads).await {
        assert_eq!(read.expect("reads").status(), 200);
    }
    let stored = |name: String| async move {
        let mut connection = PgConnection::connect(&database_url(&name))
            .await
            .expect("connects");
        let row = presence::store::fetch_status(&mut connection, user)
            .await
            .expect("reads")
            .expect("row");
        row.devices[0]
            .last_ping
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let mut last_ping = String::new();
    for _ in 0..2 {
        let me: serde_json::Value = client
            .put(format!("{base}/api/status"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"active": false}))
            .send()
            .await
            .expect("pings")
            .json()
            .await
            .expect("JSON");
        last_ping = me["devices"][0]["lastPing"]
            .as_str()
            .expect("lastPing")
            .to_owned();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            stored(name.clone()).await,
            last_ping,
            "durable before it was answered"
        );
    }

    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let exit = tokio::task::spawn_blocking(move || server.wait_with_output())
        .await
        .expect("joins")
        .expect("exits");
    assert_eq!(
        exit.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&exit.stderr)
    );
    assert_eq!(stored(name.clone()).await, last_ping);
    drop_database(&name).await;
}

#[tokio::test]
async fn sigterm_fails_readyz_while_serving_then_lets_an_in_flight_request_finish() {
    let name = format!("presence_cli_{}", Uuid::new_v4().simple());
    let port = free_port();
    let secret = "in-flight-test-secret";
    let mut server = presence()
        .args(["serve"])
        .env("DATABASE_URL", database_url(&name))
        .env("PRESENCE_ADDR", format!("127.0.0.1:{port}"))
        .env("PRESENCE_JWT_SECRET", secret)
        .env("PRESENCE_DB_STATEMENT_TIMEOUT", "30s")
        .env("PRESENCE_PRUNE_EVERY", "0")
        .env("PRESENCE_SHUTDOWN_DRAIN", "1s")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    assert!(wait_until_healthy(&base).await, "the server started");
    let user = presence::domain::UserId::from(Uuid::new_v4());
    let token =
        presence::auth::issue_token(&SecretString::from(secret), user, Duration::from_secs(600))
            .expect("token");
    let first = client
        .put(format!("{base}/api/status"))
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("pings");
    assert_eq!(first.status(), 200);

    // Hold the user's row so that the next write waits in the database.
    let mut holder = PgConnection::connect(&database_url(&name))
        .await
        .expect("connects");
    sqlx::query("begin")
        .execute(&mut holder)
        .await
        .expect("begins");
    sqlx::query("select 1 from user_status where user_id = $1 for update")
        .bind(user.as_uuid())
        .execute(&mut holder)
        .await
        .expect("locks");
    let in_flight = tokio::spawn(
        client
            .put(format!("{base}/api/status"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"statusMessage": "Written during shutdown"}))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());

    // The drain: not ready, so a load balancer stops sending requests, but
    // whatever still arrives is served.
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client")
    };
    let ready = fresh()
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("still accepts");
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "DATABASE_UNAVAILABLE", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("shutting down"),
        "{body}"
    );
    let read = fresh()
        .get(format!("{base}/api/status/{}", Uuid::new_v4()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("still accepts");
    assert_eq!(read.status(), 200, "requests are served while draining");

    // After the drain: no new connections, the request in flight still waits.
    let mut refused = false;
    for _ in 0..100 {
        if fresh().get(format!("{base}/healthz")).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "no new connections are accepted once drained");
    assert!(
        server.try_wait().expect("checks").is_none(),
        "the server waits for the request in flight"
    );

    sqlx::query("commit")
        .execute(&mut holder)
        .await
        .expect("releases the row");
    let response = in_flight.await.expect("joins").expect("answered");
    assert_eq!(response.status(), 200, "the request in flight completed");
    let exit = tokio::task::spawn_blocking(move || server.wait())
        .await
        .expect("joins")
        .expect("exits");
    assert_eq!(exit.code(), Some(0));
    let stored = presence::store::fetch_status(&mut holder, user)
        .await
        .expect("reads")
        .expect("row");
    assert_eq!(
        stored.status_message.as_deref(),
        Some("Written during shutdown")
    );
    holder.close().await.expect("closes");
    drop_database(&name).await;
}

#[tokio::test]
async fn sigkill_under_a_busy_write_load_loses_no_acknowledged_ping() {
    let name = format!("presence_cli_{}", Uuid::new_v4().simple());
    let port = free_port();
    let secret = "sigkill-test-secret";
    let mut server = presence()
        .args(["serve"])
        .env("DATABASE_URL", database_url(&name))
        .env("PRESENCE_ADDR", format!("127.0.0.1:{port}"))
        .env("PRESENCE_JWT_SECRET", secret)
        .env("PRESENCE_PRUNE_EVERY", "0")
        .env("PRESENCE_PUT_BURST", "100000")
        .env("PRESENCE_PUT_PER_SECOND", "100000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let base = format!("http://127.0.0.1:{port}");
    assert!(wait_until_healthy(&base).await, "the server started");
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    // 32 devices of 16 users ping as fast as they are answered.
    let clients: Vec<_> = (0..32)
        .map(|n| {
            let user = presence::domain::UserId::from(Uuid::from_u128(n / 2 + 1));
            let token = presence::auth::issue_token(
                &SecretString::from(secret),
                user,
                Duration::from_secs(600),
            )
            .expect("token");
            let (base, acknowledged) = (base.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let device = format!("d{n}");
                loop {
                    let answer = client
                        .put(format!("{base}/api/status"))
                        .bearer_auth(&token)
                        .json(&serde_json::json!({"deviceId": device, "active": n % 3 == 0}))
                        .send()
                        .await;
                    let Ok(answer) = answer else { break };
                    if answer.status() != 200 {
                        continue;
                    }
                    let Ok(me) = answer.json::<serde_json::Value>().await else {
                        break;
                    };
                    let ping = me["devices"]
                        .as_array()
                        .and_then(|devices| {
                            devices.iter().find(|d| d["deviceId"] == device.as_str())
                        })
                        .and_then(|d| d["lastPing"].as_str())
                        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                        .expect("the pinging device");
                    acknowledged
                        .lock()
                        .expect("lock")
                        .push((user, device.clone(), ping));
                }
            })
        })
        .collect();
    while acknowledged.lock().expect("lock").len() < 400 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().expect("SIGKILL");
    let _ = server.wait();
    for client in clients {
        let _ = client.await;
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let mut connection = PgConnection::connect(&database_url(&name))
        .await
        .expect("connects");
    for (user, device, ping) in &acknowledged {
        let row = presence::store::fetch_status(&mut connection, *user)
            .await
            .expect("reads")
            .expect("an acknowledged user has a row");
        let stored = row
            .devices
            .iter()
            .find(|stored| stored.id == *device)
            .expect("an acknowledged device is stored");
        assert!(
            stored.last_ping >= *ping,
            "{user} {device}: acknowledged {ping}, stored {}",
            stored.last_ping
        );
    }
    drop(connection);
    drop_database(&name).await;
}

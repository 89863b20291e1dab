//! Three `presence` processes behind HAProxy with the shipped configuration
//! (`ops/haproxy.cfg`), driven by the client simulator: a rolling restart
//! fails no request, and a killed instance fails at most the requests that
//! were in flight on it and loses no acknowledged ping.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use presence::domain::UserId;
use secrecy::SecretString;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::cli::drop_database;
use crate::helpers::{TEST_SECRET, free_port};
use crate::process::{database_url, presence_server, simulator};

/// Simulator connections to the load balancer: at most this many requests are in flight.
const SIM_CONNECTIONS: usize = 8;
/// Pinging users of the kill phase, each with one request in flight at a time.
const PINGERS: usize = 8;

/// A child process killed when dropped, with the file it was started with,
/// removed then: a failing test leaves neither behind.
struct Process(Child, Option<PathBuf>);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Some(file) = &self.1 {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Starts an instance on `port` and waits until it is ready.
async fn instance(database: &str, port: u16) -> Process {
    let child = presence_server(database, port)
        .env("PRESENCE_METRICS_ADDR", "")
        .env("PRESENCE_PRUNE_EVERY", "0")
        .env("PRESENCE_SHUTDOWN_DRAIN", "1s")
        .env("PRESENCE_PUT_BURST", "100000")
        .env("PRESENCE_PUT_PER_SECOND", "100000")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the server starts");
    assert!(
        wait_until_ready(&format!("http://127.0.0.1:{port}")).await,
        "instance on {port} became ready"
    );
    Process(child, None)
}

async fn wait_until_ready(base: &str) -> bool {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        let answer = client.get(format!("{base}/readyz")).send().await;
        if answer.is_ok_and(|response| response.status() == 200) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// `ops/haproxy.cfg` with this test's ports and faster checks, running.
fn haproxy(front: u16, backends: &[u16]) -> Process {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/haproxy.cfg"))
        .expect("reads ops/haproxy.cfg");
    let mut config = shipped
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{front}"))
        // Checks every 200 ms, so that the instances' 1 s drain is long enough.
        .replace("inter 1s fall 2 rise 2", "inter 200ms fall 2 rise 1");
    for (index, port) in backends.iter().enumerate() {
        config = config.replace(
            &format!("127.0.0.1:{}", 8081 + index),
            &format!("127.0.0.1:{port}"),
        );
    }
    assert!(
        config.contains("inter 200ms"),
        "the shipped checks changed: {shipped}"
    );
    let path =
        std::env::temp_dir().join(format!("presence-haproxy-{}.cfg", Uuid::new_v4().simple()));
    std::fs::write(&path, config).expect("writes the configuration");
    let child = Command::new(haproxy_program().expect("haproxy is installed"))
        .args(["-db", "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("haproxy starts");
    Process(child, Some(path))
}

/// Debian's haproxy, on the `PATH` or in `/usr/sbin` (not on every user's `PATH`).
fn haproxy_program() -> Option<String> {
    ["haproxy", "/usr/sbin/haproxy"]
        .into_iter()
        .find(|program| Command::new(program).arg("-v").output().is_ok())
        .map(str::to_owned)
}

/// The simulator through the load balancer for `duration` of measurement.
fn simulate(url: &str, seed: &str, duration: &str) -> Value {
    let output = simulator()
        .args(["--url", url, "--users", "200", "--contacts", "6"])
        .args(["--ramp", "1s", "--warmup", "1s", "--duration", duration])
        .args(["--connections", &SIM_CONNECTIONS.to_string(), "--json"])
        .args(["--churn", "60", "--seed", seed])
        .output()
        .expect("the simulator runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON step")
}

fn signal(which: &str, process: &Process) {
    let status = Command::new("kill")
        .args([which, &process.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {which}");
}

/// Pings of one user through the load balancer until `stop`: the `lastPing`
/// of the last acknowledged one, and how many failed.
async fn ping_until(
    base: String,
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
) -> (UserId, Option<DateTime<Utc>>) {
    let user = UserId::from(Uuid::new_v4());
    let token = presence::auth::issue_token(
        &SecretString::from(TEST_SECRET),
        user,
        Duration::from_secs(600),
    )
    .expect("token");
    let client = reqwest::Client::new();
    let mut acknowledged = None;
    while !stop.load(Ordering::Relaxed) {
        let answer = client
            .put(format!("{base}/api/status"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"deviceId": "tab", "active": false}))
            .send()
            .await;
        let body = match answer {
            Ok(response) if response.status() == 200 => response.json::<Value>().await.ok(),
            _ => None,
        };
        match body.and_then(|me| me["devices"][0]["lastPing"].as_str()?.parse().ok()) {
            Some(last_ping) => acknowledged = Some(last_ping),
            None => {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (user, acknowledged)
}

#[tokio::test]
async fn rolling_restarts_behind_haproxy_fail_nothing_and_a_kill_loses_nothing_acknowledged() {
    if haproxy_program().is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the load balancer test, but haproxy is missing; .ci/run installs it"
        );
        eprintln!(
            "\n!!! SKIPPED the load balancer test: haproxy is not installed. `bash .ci/run` installs it. !!!\n"
        );
        return;
    }
    let name = format!("presence_lb_{}", Uuid::new_v4().simple());
    let database = database_url(&name);
    let ports = [free_port(), free_port(), free_port()];
    // The first creates and migrates the database; then the others start.
    let mut instances = vec![instance(&database, ports[0]).await];
    for port in &ports[1..] {
        instances.push(instance(&database, *port).await);
    }
    let front = free_port();
    let _haproxy = haproxy(front, &ports);
    let base = format!("http://127.0.0.1:{front}");
    assert!(wait_until_ready(&base).await, "HAProxy serves");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Phase 1: every instance restarted in turn (SIGTERM, drain, start again)
    // while simulated front ends poll and ping through HAProxy.
    let simulator = tokio::task::spawn_blocking({
        let base = base.clone();
        move || simulate(&base, "1", "14s")
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarts = Instant::now();
    for (index, port) in ports.iter().enumerate() {
        let mut old = instances.remove(index);
        signal("-TERM", &old);
        let exit = tokio::task::spawn_blocking(move || old.0.wait())
            .await
            .expect("joins")
            .expect("exits");
        assert_eq!(exit.code(), Some(0), "a drained instance exits 0");
        instances.insert(index, instance(&database, *port).await);
        // HAProxy's next check puts it back before the next one goes.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let restarts = restarts.elapsed();
    let step = simulator.await.expect("the simulator's thread joins");
    let requests = (step["requestsPerSecond"].as_f64().unwrap_or_default()
        * step["seconds"].as_f64().unwrap_or_default())
    .round();
    println!(
        "rolling restart of 3 instances in {:.1} s: {requests} simulated requests, {} failed, {} of {} observations wrong",
        restarts.as_secs_f64(),
        step["errors"],
        step["wrong"],
        step["observations"],
    );
    assert!(requests > 500.0, "{step:#}");
    assert_eq!(
        step["errors"], 0,
        "a rolling restart fails no request: {step:#}"
    );
    assert_eq!(step["wrong"], 0, "{step:#}");

    // Phase 2: one instance killed (no drain) under the simulator and pingers.
    let simulator = tokio::task::spawn_blocking({
        let base = base.clone();
        move || simulate(&base, "2", "6s")
    });
    let (stop, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let pingers: Vec<_> = (0..PINGERS)
        .map(|_| tokio::spawn(ping_until(base.clone(), stop.clone(), failed.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let failed_before_the_kill = failed.load(Ordering::Relaxed);
    drop(instances.remove(1));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for pinger in pingers {
        acknowledged.push(pinger.await.expect("the pinger joins"));
    }
    let step = simulator.await.expect("the simulator's thread joins");
    let ping_failures = failed.load(Ordering::Relaxed);
    println!(
        "one of 3 instances killed: {} simulated requests failed, {ping_failures} of the pingers' requests failed",
        step["errors"],
    );
    assert_eq!(failed_before_the_kill, 0, "nothing failed before the kill");
    let failures = step["errors"].as_u64().unwrap_or(u64::MAX) + ping_failures;
    let in_flight_at_most = (SIM_CONNECTIONS + PINGERS) as u64;
    assert!(
        failures <= in_flight_at_most,
        "only requests in flight on the killed instance fail: {failures} > {in_flight_at_most}: {step:#}"
    );
    assert_eq!(step["wrong"], 0, "{step:#}");

    // Every acknowledged ping is stored: durable before it was answered.
    let mut connection = PgConnection::connect(&database).await.expect("connects");
    for (user, last_ping) in acknowledged {
        let last_ping = last_ping.expect("every pinger had pings acknowledged");
        let stored = presence::store::fetch_status(&mut connection, user)
            .await
            .expect("reads")
            .expect("the pinger's row");
        let stored = stored
            .devices
            .iter()
            .find(|device| device.id == "tab")
            .map(|device| device.last_ping);
        assert!(
            stored.is_some_and(|stored| stored >= last_ping),
            "acknowledged {last_ping}, stored {stored:?}"
        );
    }
    connection.close().await.expect("closes");
    drop(instances);
    drop_database(&name).await;
}

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use presence::auth::issue_token;
use presence::clock::{Clock, ManualClock, SystemClock};
use presence::config::Config;
use presence::domain::UserId;
use presence::startup::Application;
use reqwest::{Response, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// The secret every test server signs with.
pub const TEST_SECRET: &str = "test-secret-for-the-presence-suite";

/// A running server on a per-test database, with a clock the test moves.
#[derive(Clone)]
pub struct TestApp {
    pub address: String,
    /// Where `/metrics` is served (its own listener).
    pub metrics_address: String,
    pub clock: ManualClock,
    pub pool: PgPool,
    client: reqwest::Client,
}

/// The instant every test clock starts at.
pub fn start_time() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().expect("valid instant")
}

/// A fresh random user id.
pub fn new_user() -> UserId {
    UserId::from(Uuid::new_v4())
}

/// A fresh random user id whose last byte is `last`: the byte that sets
/// where the user's own minute starts (256ths of a minute after the wall clock's).
pub fn new_user_ending_in(last: u8) -> UserId {
    let mut bytes = *Uuid::new_v4().as_bytes();
    bytes[15] = last;
    UserId::from(Uuid::from_bytes(bytes))
}

/// The start of the minute holding `at` on `user`'s own clock, worked out
/// here apart from the database's `user_minute`: the wall clock's minutes,
/// each starting later by the user id's last byte times 234,375 µs.
pub fn users_minute(user: UserId, at: DateTime<Utc>) -> DateTime<Utc> {
    let offset = TimeDelta::microseconds(i64::from(user.as_uuid().as_bytes()[15]) * 234_375);
    let shifted = (at - offset).timestamp_micros();
    let minute = 60_000_000;
    DateTime::from_timestamp_micros(shifted.div_euclid(minute) * minute).expect("in range") + offset
}

/// Starts the app with test settings: default thresholds, a generous rate limit, no prune schedule.
pub async fn spawn_app(pool: PgPool) -> TestApp {
    spawn_app_with(pool, &[]).await
}

/// Starts the app with some settings overridden (`PRESENCE_...` variables).
pub async fn spawn_app_with(pool: PgPool, overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_on_clock(pool, overrides, ManualClock::starting_at(start_time())).await
}

/// Starts the app on a given clock, so several instances can share one.
pub async fn spawn_app_on_clock(
    pool: PgPool,
    overrides: &[(&str, &str)],
    clock: ManualClock,
) -> TestApp {
    spawn_app_configured(pool, overrides, clock, |_| {}).await
}

/// Starts the app in development mode (`serve --dev`: the demo page exists).
pub async fn spawn_dev_app(pool: PgPool) -> TestApp {
    let clock = ManualClock::starting_at(start_time());
    spawn_app_configured(pool, &[], clock, |config| config.dev_mode = true).await
}

/// Starts the app with `adjust` applied to the configuration read from the overrides.
pub async fn spawn_app_configured(
    pool: PgPool,
    overrides: &[(&str, &str)],
    clock: ManualClock,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = test_config(overrides);
    adjust(&mut config);
    spawn_on(&config, pool, clock, true).await
}

/// Starts the app on a database left on one node even when the suite runs on
/// Citus: the data that a distribution then takes along.
pub async fn spawn_app_on_single_node(pool: PgPool, clock: ManualClock) -> TestApp {
    spawn_on(&test_config(&[]), pool, clock, false).await
}

/// Starts the app with `config` on `clock` (see [`serve`] for `distribute`).
async fn spawn_on(config: &Config, pool: PgPool, clock: ManualClock, distribute: bool) -> TestApp {
    let (address, metrics_address) =
        serve(config, pool.clone(), Arc::new(clock.clone()), distribute).await;
    TestApp {
        address,
        metrics_address,
        clock,
        pool,
        client: reqwest::Client::new(),
    }
}

/// Starts the app on the system clock (for clients that run in real time);
/// returns its base URL.
pub async fn spawn_app_in_real_time(pool: PgPool, overrides: &[(&str, &str)]) -> String {
    serve(&test_config(overrides), pool, Arc::new(SystemClock), true)
        .await
        .0
}

/// Starts the app on the system clock over `pool`; its address and its metrics' address.
pub async fn spawn_app_in_real_time_with_metrics(
    pool: PgPool,
    overrides: &[(&str, &str)],
) -> (String, String) {
    serve(&test_config(overrides), pool, Arc::new(SystemClock), true).await
}

/// The test settings: a generous rate limit, no prune schedule, exact activity times.
pub fn test_config(overrides: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = [
        ("PRESENCE_ADDR", "127.0.0.1:0"),
        ("PRESENCE_JWT_SECRET", TEST_SECRET),
        ("PRESENCE_PUT_BURST", "10000"),
        ("PRESENCE_PUT_PER_SECOND", "10000"),
        ("PRESENCE_SETTINGS_BURST", "10000"),
        ("PRESENCE_SETTINGS_PER_SECOND", "10000"),
        ("PRESENCE_PRUNE_EVERY", "0"),
        ("PRESENCE_METRICS_ADDR", "127.0.0.1:0"),
        // Exact activity times, unless a test is about the precision.
        ("PRESENCE_LAST_SEEN_PRECISION", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.extend(
        overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Config::from_lookup(|name| vars.get(name).cloned()).expect("valid test config")
}

/// Runs the app in the background (on a distributed database when the suite
/// runs on Citus and `distribute`); returns its base URL and its metrics URL.
async fn serve(
    config: &Config,
    pool: PgPool,
    clock: Arc<dyn Clock>,
    distribute: bool,
) -> (String, String) {
    presence::store::install_sql_functions_with_settings(
        &pool,
        &config.history_settings(),
        &config.thresholds,
    )
    .await
    .expect("the sql/ functions and history settings apply");
    if distribute {
        crate::citus::distribute_if_asked(&pool).await;
    }
    let application = Application::build_with_pool(config, pool, clock)
        .await
        .expect("the app builds");
    let address = format!("http://127.0.0.1:{}", application.port());
    let metrics_address = format!(
        "http://127.0.0.1:{}",
        application.metrics_port().unwrap_or_default()
    );
    tokio::spawn(application.run_until_stopped());
    (address, metrics_address)
}

/// A token for `user`, valid for an hour.
pub fn token_for(user: UserId) -> String {
    issue_token(
        &SecretString::from(TEST_SECRET),
        user,
        std::time::Duration::from_secs(3600),
    )
    .expect("token signs")
}

impl TestApp {
    /// Moves the server's clock forward.
    pub fn advance(&self, by: TimeDelta) {
        self.clock.advance(by);
    }

    /// `PUT /api/status` as `user` with a JSON body.
    pub async fn ping(&self, user: UserId, body: Value) -> Response {
        self.client
            .put(format!("{}/api/status", self.address))
            .bearer_auth(token_for(user))
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    /// `PUT /api/status` that must succeed; returns the self view.
    pub async fn ping_ok(&self, user: UserId, body: Value) -> Value {
        let response = self.ping(user, body).await;
        assert_eq!(response.status(), StatusCode::OK, "ping failed");
        response.json().await.expect("JSON body")
    }

    /// `GET /api/status/{user}` as `viewer`.
    pub async fn get_status(&self, viewer: UserId, user: &str) -> Response {
        self.client
            .get(format!("{}/api/status/{user}", self.address))
            .bearer_auth(token_for(viewer))
            .send()
            .await
            .expect("request sent")
    }

    /// The status `viewer` is shown of `user`, which must be readable.
    pub async fn status_of(&self, viewer: UserId, user: UserId) -> Value {
        let response = self.get_status(viewer, &user.to_string()).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("JSON body")
    }

    /// `PUT` (block) or `DELETE` (unblock) `/api/blocks/{other}` as `user`.
    pub async fn set_block(&self, user: UserId, other: &str, block: bool) -> Response {
        let method = if block {
            reqwest::Method::PUT
        } else {
            reqwest::Method::DELETE
        };
        self.client
            .request(method, format!("{}/api/blocks/{other}", self.address))
            .bearer_auth(token_for(user))
            .send()
            .await
            .expect("request sent")
    }

    /// `GET /api/status?ids=` as `viewer`, which must answer `200`; the body.
    pub async fn batch_get(&self, viewer: UserId, users: &[UserId]) -> Value {
        let ids: Vec<String> = users.iter().map(ToString::to_string).collect();
        let response = self
            .client
            .get(format!("{}/api/status?ids={}", self.address, ids.join(",")))
            .bearer_auth(token_for(viewer))
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("JSON body")
    }

    /// `POST /api/status/query` as `viewer`, which must answer `200`; the body.
    pub async fn batch_post(&self, viewer: UserId, users: &[UserId]) -> Value {
        let response = self
            .client
            .post(format!("{}/api/status/query", self.address))
            .bearer_auth(token_for(viewer))
            .json(&serde_json::json!({ "userIds": users }))
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("JSON body")
    }

    /// `DELETE /api/status/devices/{device}` as `user`.
    pub async fn delete_device(&self, user: UserId, device: &str) -> Response {
        self.client
            .delete(format!("{}/api/status/devices/{device}", self.address))
            .bearer_auth(token_for(user))
            .send()
            .await
            .expect("request sent")
    }

    /// A request with any method, path, headers and raw body, for error cases.
    ///
    /// Built at once, so the future borrows none of the arguments.
    pub fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> impl Future<Output = Response> + use<> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        async move { request.send().await.expect("request sent") }
    }
}

/// Reads an error response: its status, and the contract's code, checking the body's shape.
pub async fn error_code(response: Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("errors are JSON");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code is a string")
        .to_owned();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error.message: {body}"
    );
    (status, code)
}

/// The timestamp `at` as the API writes it.
pub fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A port nobody listens on right now, for a server a test starts itself.
///
/// It is below the kernel's ephemeral range, and no two calls in a run give the
/// same one. A port the kernel picks for `127.0.0.1:0` is one it also gives to
/// outgoing connections: between this call and the server's bind (an initdb
/// for a private PostgreSQL, or the time a stopped cluster is down), any of the
/// suite's connections can take it, and the server fails to start with
/// "Address already in use".
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = below_ephemeral_ports();
    let span = u32::from(high - low);
    // Apart from other runs on the machine, which probe from their own offsets.
    let offset = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = low + u16::try_from((offset + step) % span).expect("within the span");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// The ports `free_port` takes from: from 20000 up to where the kernel's
/// ephemeral range starts (32768 on Linux by default).
pub fn below_ephemeral_ports() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    assert!(
        ephemeral_low > 21000,
        "the ephemeral range starts at {ephemeral_low}: too low to keep test servers out of it"
    );
    (20000, ephemeral_low)
}

/// Waits (up to 10 s) until a server at `base` answers `/healthz`; whether it did.
pub async fn wait_until_healthy(base: &str) -> bool {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        let answer = client.get(format!("{base}/healthz")).send().await;
        if answer.is_ok_and(|response| response.status() == StatusCode::OK) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// One response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body as JSON, which every error must be.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "status {} has a body that is not JSON ({error}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The contract's error code of this response.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("an error body: {:?}", self))
            .to_owned()
    }
}

/// Writes `bytes` to the server at `address` (`http://host:port`) over one
/// connection, then reads responses until the server closes it or stays
/// silent for `wait`; every complete response, in order.
pub async fn raw_exchange(
    address: &str,
    bytes: &[u8],
    wait: std::time::Duration,
) -> Vec<RawResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("connects");
    // A server may refuse and close before all is sent: that is an answer too.
    let _ = stream.write_all(bytes).await;
    let mut received = Vec::new();
    let mut chunk = [0_u8; 8192];
    while let Ok(Ok(read)) = tokio::time::timeout(wait, stream.read(&mut chunk)).await {
        if read == 0 {
            break;
        }
        received.extend_from_slice(&chunk[..read]);
    }
    parse_responses(&received)
}

/// Splits raw bytes into HTTP/1.1 responses (framed by Content-Length).
fn parse_responses(mut bytes: &[u8]) -> Vec<RawResponse> {
    let mut responses = Vec::new();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(head)) = response.parse(bytes) else {
            return responses;
        };
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|header| {
                (
                    header.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(header.value).into_owned(),
                )
            })
            .collect();
        let length: usize = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0);
        let end = (head + length).min(bytes.len());
        responses.push(RawResponse {
            status: response.code.unwrap_or_default(),
            headers,
            body: bytes[head..end].to_vec(),
        });
        bytes = &bytes[end..];
    }
}

/// The value of the first line of `app`'s metrics that starts with `series`
/// (a name with its labels), 0 when there is none yet.
pub async fn metric(app: &TestApp, series: &str) -> f64 {
    let page = reqwest::get(format!("{}/metrics", app.metrics_address))
        .await
        .expect("the metrics listener answers")
        .text()
        .await
        .expect("text");
    page.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

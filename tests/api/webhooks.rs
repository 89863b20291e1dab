//! Webhooks: the change feed POSTed in order, signed as Standard Webhooks
//! specifies, retried until acknowledged, dropped past the maximum age.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::TimeDelta;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::feed::ids;
use crate::helpers::{free_port, metric, new_user, spawn_app_with, token_for, wait_until_healthy};
use crate::process::{database_url_of, presence_server};

/// The secret the tests sign with: `whsec_` and 32 bytes.
fn secret() -> String {
    format!("whsec_{}", STANDARD.encode([7_u8; 32]))
}

/// Checks a Standard Webhooks signature on its own (not with the server's code).
fn signed_right(id: &str, timestamp: &str, body: &str, header: &str) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[7_u8; 32]);
    let expected = STANDARD.encode(ring::hmac::sign(
        &key,
        format!("{id}.{timestamp}.{body}").as_bytes(),
    ));
    header
        .split(' ')
        .filter_map(|signature| signature.strip_prefix("v1,"))
        .any(|signature| signature == expected)
}

/// How the receiver answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Fail,
    Hang,
    Accept,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    signed: bool,
    changes: Vec<Value>,
    answer: Answer,
}

/// A webhook endpoint that answers as told: first from `script`, then `then`.
#[derive(Clone, Default)]
struct Receiver {
    script: Arc<Mutex<Vec<Answer>>>,
    then: Arc<Mutex<Option<Answer>>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn answering(script: &[Answer], then: Answer) -> Self {
        let receiver = Self::default();
        *receiver.script.lock().expect("lock") = script.iter().rev().copied().collect();
        *receiver.then.lock().expect("lock") = Some(then);
        receiver
    }

    fn answer_from_now_on(&self, answer: Answer) {
        *self.then.lock().expect("lock") = Some(answer);
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// The changes acknowledged so far, in the order they were delivered.
    fn delivered(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|request| request.answer == Answer::Accept)
            .flat_map(|request| request.changes)
            .collect()
    }

    /// Serves on a free port; its URL.
    fn serve(&self) -> String {
        let receiver = self.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(receiver.clone()))
                .route("/hook", web::post().to(receive))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("binds");
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        format!("http://127.0.0.1:{port}/hook")
    }
}

async fn receive(
    request: HttpRequest,
    body: String,
    receiver: web::Data<Receiver>,
) -> HttpResponse {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id = header("webhook-id");
    let signed = signed_right(
        &id,
        &header("webhook-timestamp"),
        &body,
        &header("webhook-signature"),
    );
    let answer = receiver
        .script
        .lock()
        .expect("lock")
        .pop()
        .or(*receiver.then.lock().expect("lock"))
        .unwrap_or(Answer::Accept);
    let changes = serde_json::from_str::<Value>(&body).expect("a JSON body")["changes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    receiver.received.lock().expect("lock").push(Received {
        id,
        signed,
        changes,
        answer,
    });
    match answer {
        Answer::Accept => HttpResponse::NoContent().finish(),
        Answer::Fail => HttpResponse::ServiceUnavailable().finish(),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            HttpResponse::NoContent().finish()
        }
    }
}

/// Waits until `done` holds of the receiver (delivery runs on its own clock: retries wait seconds).
async fn until(receiver: &Receiver, what: &str, done: impl Fn(&Receiver) -> bool) {
    let started = std::time::Instant::now();
    while !done(receiver) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: {:#?}",
            receiver.received()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test]
async fn the_feed_is_delivered_in_order_signed_and_retried_until_acknowledged(pool: PgPool) {
    // The endpoint fails, then hangs past the timeout, then comes back.
    let receiver = Receiver::answering(&[Answer::Fail, Answer::Hang], Answer::Accept);
    let url = receiver.serve();
    let secret = secret();
    let app = spawn_app_with(
        pool,
        &[
            ("PRESENCE_WEBHOOK_URL", url.as_str()),
            ("PRESENCE_WEBHOOK_SECRET", secret.as_str()),
            ("PRESENCE_WEBHOOK_TIMEOUT", "500ms"),
        ],
    )
    .await;
    let first = new_user();
    app.ping_ok(first, json!({"deviceId": "tab"})).await;
    until(&receiver, "the first change is acknowledged", |r| {
        !r.delivered().is_empty()
    })
    .await;

    // 250 more changes, while the first batch may still be retried.
    let users: Vec<_> = (0..250).map(|_| new_user()).collect();
    for user in &users {
        app.ping_ok(*user, json!({"deviceId": "tab"})).await;
    }
    until(&receiver, "every change is acknowledged", |r| {
        r.delivered().len() >= 251
    })
    .await;

    let received = receiver.received();
    assert!(
        received.iter().all(|request| request.signed),
        "every request is signed"
    );
    assert_eq!(
        received[..3]
            .iter()
            .map(|request| request.answer)
            .collect::<Vec<_>>(),
        [Answer::Fail, Answer::Hang, Answer::Accept]
    );
    assert!(
        received[..3]
            .iter()
            .all(|request| request.id == received[0].id),
        "a batch keeps its id when it is sent again"
    );
    assert!(received.iter().all(|request| request.changes.len() <= 100));
    let delivered = receiver.delivered();
    assert_eq!(
        ids(&delivered),
        (1..=251).collect::<Vec<u64>>(),
        "in order, each once"
    );
    assert_eq!(delivered[0]["userId"], first.to_string());
    assert_eq!(delivered[0]["cause"], "activity");
    assert!(metric(&app, "presence_webhook_failures_total").await >= 2.0);
    assert_eq!(
        metric(
            &app,
            "presence_webhook_changes_total{outcome=\"delivered\"}"
        )
        .await,
        251.0
    );
}

#[sqlx::test]
async fn a_batch_past_the_maximum_age_is_dropped_counted_and_delivery_goes_on(pool: PgPool) {
    let receiver = Receiver::answering(&[], Answer::Fail);
    let url = receiver.serve();
    let secret = secret();
    let app = spawn_app_with(
        pool,
        &[
            ("PRESENCE_WEBHOOK_URL", url.as_str()),
            ("PRESENCE_WEBHOOK_SECRET", secret.as_str()),
            ("PRESENCE_WEBHOOK_MAX_AGE", "1m"),
        ],
    )
    .await;
    let (lost, later) = (new_user(), new_user());
    app.ping_ok(lost, json!({"deviceId": "tab"})).await;
    until(&receiver, "a first try", |r| !r.received().is_empty()).await;
    // Its change grows older than the maximum age while the endpoint is down.
    app.advance(TimeDelta::minutes(2));
    let started = std::time::Instant::now();
    while metric(&app, "presence_webhook_changes_total{outcome=\"dropped\"}").await < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(30), "never dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.answer_from_now_on(Answer::Accept);
    app.ping_ok(later, json!({"deviceId": "tab"})).await;
    let later_id = later.to_string();
    until(&receiver, "the later change is delivered", |r| {
        r.delivered()
            .iter()
            .any(|change| change["userId"] == later_id.as_str())
    })
    .await;
    // The first change (the lost user's activity) never was; what came after it was.
    let delivered = receiver.delivered();
    assert!(ids(&delivered).iter().all(|id| *id > 1), "{delivered:?}");
    assert_eq!(
        metric(&app, "presence_webhook_changes_total{outcome=\"dropped\"}").await,
        1.0
    );
}

#[sqlx::test]
async fn with_two_instances_one_delivers_each_change_once(pool: PgPool) {
    let receiver = Receiver::answering(&[], Answer::Accept);
    let url = receiver.serve();
    let secret = secret();
    let settings = [
        ("PRESENCE_WEBHOOK_URL", url.as_str()),
        ("PRESENCE_WEBHOOK_SECRET", secret.as_str()),
    ];
    let first = spawn_app_with(pool.clone(), &settings).await;
    let second = spawn_app_with(pool, &settings).await;
    let users: Vec<_> = (0..60).map(|_| new_user()).collect();
    for (n, user) in users.iter().enumerate() {
        let app = if n % 2 == 0 { &first } else { &second };
        app.ping_ok(*user, json!({"deviceId": "tab"})).await;
    }
    until(&receiver, "every change is delivered", |r| {
        r.delivered().len() >= 60
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ids(&receiver.delivered()), (1..=60).collect::<Vec<u64>>());
}

/// `presence serve` as a process over `database`, delivering to `url`; its base URL.
fn webhook_server(database: &str, url: &str, secret: &str) -> (std::process::Child, String) {
    let port = free_port();
    let child = presence_server(database, port)
        .env("PRESENCE_WEBHOOK_URL", url)
        .env("PRESENCE_WEBHOOK_SECRET", secret)
        .env("PRESENCE_PRUNE_EVERY", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the server starts");
    (child, format!("http://127.0.0.1:{port}"))
}

/// One activity ping of a new user through `base`: one change in the feed.
async fn change_through(base: &str) {
    let user = new_user();
    let answer = reqwest::Client::new()
        .put(format!("{base}/api/status"))
        .bearer_auth(token_for(user))
        .json(&json!({"deviceId": "tab"}))
        .send()
        .await
        .expect("the ping is sent");
    assert_eq!(answer.status(), 200);
}

#[sqlx::test]
async fn after_a_kill_delivery_goes_on_from_where_it_stopped(pool: PgPool) {
    let receiver = Receiver::answering(&[], Answer::Accept);
    let url = receiver.serve();
    let (secret, database) = (secret(), database_url_of(&pool));
    let (mut server, base) = webhook_server(&database, &url, &secret);
    assert!(wait_until_healthy(&base).await, "the server started");
    for _ in 0..40 {
        change_through(&base).await;
    }
    until(&receiver, "a first delivery", |r| !r.delivered().is_empty()).await;
    server.kill().expect("SIGKILL");
    let _ = server.wait();

    let (mut server, base) = webhook_server(&database, &url, &secret);
    assert!(wait_until_healthy(&base).await, "the server started again");
    for _ in 0..40 {
        change_through(&base).await;
    }
    until(&receiver, "every change is delivered", |r| {
        ids(&r.delivered()).into_iter().max() >= Some(80)
    })
    .await;
    server.kill().expect("SIGKILL");
    let _ = server.wait();
    let delivered = ids(&receiver.delivered());
    let mut first_seen: Vec<u64> = Vec::new();
    for id in &delivered {
        if !first_seen.contains(id) {
            first_seen.push(*id);
        }
    }
    assert_eq!(
        first_seen,
        (1..=80).collect::<Vec<u64>>(),
        "no gap, in order"
    );
    assert!(
        delivered.len() - first_seen.len() <= 100,
        "only the batch in flight at the kill may come twice: {delivered:?}"
    );
}

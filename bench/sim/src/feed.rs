//! A backend following the change feed while the simulated users run
//! (`--feed`): a reader polls `GET /api/admin/changes` on the first instance
//! every `--feed-poll`, always passing the `next` it was given, as the
//! contract tells a backend to; and with `--webhook-listen`, a local receiver
//! takes the server's webhooks, checking each signature as a backend must.
//! Both note, for every change, the lag from its instant (`at`, the server's
//! clock, which is this machine's) to the moment they had it; a step's
//! figures are those of the changes whose instant falls in its window.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1 as server_http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use presence::webhooks::WebhookSecret;
use secrecy::SecretString;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::report::Spread;

/// One change as the feed and the webhooks carry it, as far as this reads it.
#[derive(Deserialize)]
struct Change {
    id: String,
    at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct Page {
    changes: Vec<Change>,
    next: String,
}

#[derive(Deserialize)]
struct Batch {
    changes: Vec<Change>,
}

/// A change and when it was had.
#[derive(Clone, Copy)]
struct Had {
    id: u64,
    at: DateTime<Utc>,
    had_at: DateTime<Utc>,
}

/// What the reader and the receiver have had so far.
#[derive(Default)]
struct Log {
    read: Vec<Had>,
    /// Ids the reader was given out of order (not the one after the last).
    read_gaps: usize,
    received: Vec<Had>,
    batches: usize,
    bad_signatures: usize,
}

/// The reader and the receiver, running for the whole simulation.
pub struct FeedFollower {
    log: Arc<Mutex<Log>>,
    webhooks: bool,
}

/// What a backend had of one step's changes.
#[derive(Debug, Clone)]
pub struct FeedFigures {
    /// Changes whose instant is in the window, as the reader read them.
    pub changes: usize,
    pub seconds: f64,
    /// From a change's instant to the reader's having it, in ms.
    pub read_lag: Spread,
    /// Changes read more than once, and ids the reader found skipped.
    pub read_twice: usize,
    pub read_gaps: usize,
    pub webhooks: Option<WebhookFigures>,
}

/// What the local receiver had of one step's changes.
#[derive(Debug, Clone)]
pub struct WebhookFigures {
    /// Distinct changes received whose instant is in the window.
    pub changes: usize,
    /// From a change's instant to the receiver's having it, in ms.
    pub lag: Spread,
    /// Changes received more than once (at least once allows it; rare).
    pub received_twice: usize,
    /// Batches received over the whole run, and those whose signature did not verify.
    pub batches: usize,
    pub bad_signatures: usize,
}

impl FeedFollower {
    /// Starts the reader against `address` with a service token signed with
    /// `jwt_secret`, polling every `poll`, and (with `listen`) the receiver,
    /// verifying with `webhook_secret`.
    pub async fn start(
        address: SocketAddr,
        jwt_secret: &SecretString,
        poll: Duration,
        listen: Option<(SocketAddr, String)>,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let log = Arc::new(Mutex::new(Log::default()));
        let token = presence::auth::issue_scoped_token(
            &presence::auth::TokenSettings::with_secret(jwt_secret.clone()),
            "presence-sim-feed",
            Some(presence::auth::ADMIN_SCOPE),
            Duration::from_secs(24 * 3600),
        )?;
        let authorization = HeaderValue::from_str(&format!("Bearer {token}"))?;
        tokio::spawn(read(address, authorization, poll, log.clone()));
        let webhooks = listen.is_some();
        if let Some((at, secret)) = listen {
            let secret = WebhookSecret::parse(&secret)
                .map_err(|error| format!("--webhook-secret: {error}"))?;
            let listener = TcpListener::bind(at).await?;
            tokio::spawn(receive(listener, Arc::new(secret), log.clone()));
        }
        Ok(Self { log, webhooks })
    }

    /// The figures of the changes whose instant is in `[from, to)`.
    pub fn figures(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> FeedFigures {
        let log = self.log.lock().expect("the log is never poisoned");
        let in_window = |had: &&Had| had.at >= from && had.at < to;
        let lags = |list: &[Had]| -> (usize, usize, Spread) {
            let mut ids = HashSet::new();
            let mut lags = Vec::new();
            let mut twice = 0;
            for had in list.iter().filter(in_window) {
                if ids.insert(had.id) {
                    let lag = (had.had_at - had.at).num_milliseconds().max(0);
                    lags.push(u64::try_from(lag).unwrap_or_default());
                } else {
                    twice += 1;
                }
            }
            (ids.len(), twice, Spread::of(&lags, 1.0))
        };
        let (changes, read_twice, read_lag) = lags(&log.read);
        let webhooks = self.webhooks.then(|| {
            let (changes, received_twice, lag) = lags(&log.received);
            WebhookFigures {
                changes,
                lag,
                received_twice,
                batches: log.batches,
                bad_signatures: log.bad_signatures,
            }
        });
        FeedFigures {
            changes,
            seconds: (to - from).num_milliseconds() as f64 / 1000.0,
            read_lag,
            read_twice,
            read_gaps: log.read_gaps,
            webhooks,
        }
    }
}

impl FeedFigures {
    /// Prints the figures under a step's.
    pub fn print(&self) {
        println!(
            "  feed: {} changes with their instant in the window ({:.1}/s); a reader polling \
             every page had each {:.0} ms (p50), {:.0} ms (p99), {:.0} ms (max) after its \
             instant; {} read twice, {} skipped",
            self.changes,
            self.changes as f64 / self.seconds.max(f64::EPSILON),
            self.read_lag.p50,
            self.read_lag.p99,
            self.read_lag.max,
            self.read_twice,
            self.read_gaps,
        );
        if let Some(webhooks) = &self.webhooks {
            println!(
                "  webhooks: {} of those changes received, {:.0} ms (p50), {:.0} ms (p99), \
                 {:.0} ms (max) after their instant; {} received twice; {} batches in all, \
                 {} with a bad signature",
                webhooks.changes,
                webhooks.lag.p50,
                webhooks.lag.p99,
                webhooks.lag.max,
                webhooks.received_twice,
                webhooks.batches,
                webhooks.bad_signatures,
            );
        }
    }

    /// The figures as JSON, for `--json`.
    pub fn json(&self) -> serde_json::Value {
        let spread = |spread: &Spread| serde_json::json!({"p50_ms": spread.p50, "p99_ms": spread.p99, "max_ms": spread.max});
        serde_json::json!({
            "changes": self.changes,
            "changes_per_second": self.changes as f64 / self.seconds.max(f64::EPSILON),
            "read_lag": spread(&self.read_lag),
            "read_twice": self.read_twice,
            "read_gaps": self.read_gaps,
            "webhooks": self.webhooks.as_ref().map(|webhooks| serde_json::json!({
                "changes": webhooks.changes,
                "lag": spread(&webhooks.lag),
                "received_twice": webhooks.received_twice,
                "batches": webhooks.batches,
                "bad_signatures": webhooks.bad_signatures,
            })),
        })
    }
}

/// The reader: pages as long as pages come full, then waits `poll`.
async fn read(
    address: SocketAddr,
    authorization: HeaderValue,
    poll: Duration,
    log: Arc<Mutex<Log>>,
) {
    const LIMIT: usize = 1000;
    let host = HeaderValue::from_str(&address.to_string()).expect("an address is a valid header");
    let mut next: Option<String> = None;
    let mut last: Option<u64> = None;
    let mut sender = None;
    loop {
        if sender
            .as_ref()
            .is_none_or(|s: &hyper::client::conn::http1::SendRequest<Full<Bytes>>| s.is_closed())
        {
            sender = crate::client::connect(address).await;
        }
        let path = match &next {
            Some(next) => format!("/api/admin/changes?after={next}&limit={LIMIT}"),
            None => format!("/api/admin/changes?limit={LIMIT}"),
        };
        let page = match sender.as_mut() {
            Some(sender) => page(sender, &host, &authorization, &path).await,
            None => None,
        };
        let Some(page) = page else {
            sender = None;
            tokio::time::sleep(poll).await;
            continue;
        };
        let had_at = Utc::now();
        let full = page.changes.len() == LIMIT;
        {
            let mut log = log.lock().expect("the log is never poisoned");
            for change in page.changes {
                let Ok(id) = change.id.parse::<u64>() else {
                    continue;
                };
                if last.is_some_and(|last| id != last + 1) {
                    log.read_gaps += 1;
                }
                last = Some(id);
                log.read.push(Had {
                    id,
                    at: change.at,
                    had_at,
                });
            }
        }
        next = Some(page.next);
        if !full {
            tokio::time::sleep(poll).await;
        }
    }
}

async fn page(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: &HeaderValue,
    authorization: &HeaderValue,
    path: &str,
) -> Option<Page> {
    sender.ready().await.ok()?;
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::HOST, host)
        .header(header::AUTHORIZATION, authorization)
        .body(Full::new(Bytes::new()))
        .ok()?;
    let response = sender.send_request(request).await.ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    let body = response.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&body).ok()
}

/// The receiver: answers `204` to a batch whose signature verifies (`401` otherwise).
async fn receive(listener: TcpListener, secret: Arc<WebhookSecret>, log: Arc<Mutex<Log>>) {
    while let Ok((stream, _)) = listener.accept().await {
        let (secret, log) = (secret.clone(), log.clone());
        let service = service_fn(move |request: Request<hyper::body::Incoming>| {
            let (secret, log) = (secret.clone(), log.clone());
            async move {
                let header = |name: &str| {
                    request
                        .headers()
                        .get(name)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned)
                };
                let (id, timestamp, signatures) = (
                    header("webhook-id"),
                    header("webhook-timestamp"),
                    header("webhook-signature"),
                );
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .map(|body| body.to_bytes())
                    .unwrap_or_default();
                let had_at = Utc::now();
                let verified = match (id, timestamp.and_then(|t| t.parse().ok()), signatures) {
                    (Some(id), Some(timestamp), Some(signatures)) => {
                        let expected = secret.sign(&id, timestamp, &String::from_utf8_lossy(&body));
                        signatures.split(' ').any(|signature| signature == expected)
                    }
                    _ => false,
                };
                let mut log = log.lock().expect("the log is never poisoned");
                log.batches += 1;
                let status = match serde_json::from_slice::<Batch>(&body) {
                    Ok(batch) if verified => {
                        for change in batch.changes {
                            if let Ok(id) = change.id.parse() {
                                log.received.push(Had {
                                    id,
                                    at: change.at,
                                    had_at,
                                });
                            }
                        }
                        StatusCode::NO_CONTENT
                    }
                    _ => {
                        log.bad_signatures += 1;
                        StatusCode::UNAUTHORIZED
                    }
                };
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = status;
                Ok::<_, Infallible>(response)
            }
        });
        tokio::spawn(async move {
            let _ = server_http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

//! A bounded pool of keep-alive HTTP/1.1 connections per instance: requests
//! queue for the next free connection, so an overloaded server shows as latency
//! (measured from when the simulated client wanted to send), not as fewer requests.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedSender;
use uuid::Uuid;

/// What a request is for, as the figures are broken down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The visible tab's poll of its contacts.
    Poll,
    /// A background tab's poll (its timers run at most once a minute).
    HiddenPoll,
    Heartbeat,
    Activity,
    /// A ping that changes a setting: DND, a status message, invisibility.
    Setting,
    SignOut,
    Block,
    /// The visible tab's poll of the room on screen.
    RoomPoll,
    /// A room join or renewal.
    RoomPing,
    /// A room ping that says the user types (or stopped).
    Typing,
}

impl Kind {
    /// Every kind, in the order the figures list them.
    pub const ALL: [Kind; 10] = [
        Kind::Poll,
        Kind::HiddenPoll,
        Kind::Heartbeat,
        Kind::Activity,
        Kind::Setting,
        Kind::SignOut,
        Kind::Block,
        Kind::RoomPoll,
        Kind::RoomPing,
        Kind::Typing,
    ];

    /// The kind's name in the printout.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Poll => "poll",
            Kind::HiddenPoll => "poll (hidden tab)",
            Kind::Heartbeat => "heartbeat",
            Kind::Activity => "activity ping",
            Kind::Setting => "setting",
            Kind::SignOut => "sign-out",
            Kind::Block => "block",
            Kind::RoomPoll => "room poll",
            Kind::RoomPing => "room join/renewal",
            Kind::Typing => "typing",
        }
    }
}

/// One request of one simulated client.
pub struct Job {
    pub user: u32,
    pub tab: u8,
    /// The tab's generation when sent: answers to a closed tab are ignored.
    pub generation: u32,
    pub kind: Kind,
    pub method: Method,
    pub path: String,
    pub body: Option<Bytes>,
    pub authorization: HeaderValue,
    pub if_none_match: Option<HeaderValue>,
    /// When the client's timer fired: latency counts from here.
    pub wanted_at: Instant,
    /// A sign-out sent before any ping of its tab was acknowledged: it may
    /// overtake the tab's first ping (on another connection) and find no
    /// device, a `404` the client's own race makes, not the server.
    pub unacknowledged: bool,
}

/// One status of a poll's answer, as far as the simulator reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub user_id: Uuid,
    pub status: String,
}

#[derive(Deserialize)]
struct PollBody {
    statuses: Vec<Entry>,
}

/// One member of a room's answer, as far as the simulator reads it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Member {
    user_id: Uuid,
    typing: bool,
}

#[derive(Deserialize)]
struct RoomBody {
    members: Vec<Member>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PingBody {
    ping_interval_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoomPingBody {
    heartbeat_interval_seconds: u64,
}

/// What the server answered.
pub struct Answer {
    pub code: u16,
    pub etag: Option<HeaderValue>,
    pub retry_after: Option<u64>,
    pub statuses: Option<Vec<Entry>>,
    /// A room poll's answer: the members it shows typing.
    pub typing: Option<Vec<Uuid>>,
    pub ping_interval_seconds: Option<u64>,
    /// A room ping's answer: how often to renew.
    pub heartbeat_interval_seconds: Option<u64>,
    /// Bytes of the answer: status line, headers and body.
    pub bytes: usize,
}

/// A job and its answer (`None` when the connection failed).
pub struct Done {
    pub job: Job,
    /// When a connection took the job: the time before it was spent
    /// queueing for a free connection of the pool.
    pub picked_at: Instant,
    pub finished_at: Instant,
    pub answer: Option<Answer>,
}

/// Starts `connections` connection tasks to `address`, fed from `jobs`.
pub fn spawn_pool(
    address: SocketAddr,
    connections: usize,
    jobs: &flume::Receiver<Job>,
    done: &UnboundedSender<Done>,
) {
    for _ in 0..connections {
        tokio::spawn(connection(address, jobs.clone(), done.clone()));
    }
}

async fn connection(address: SocketAddr, jobs: flume::Receiver<Job>, done: UnboundedSender<Done>) {
    let host = HeaderValue::from_str(&address.to_string()).expect("an address is a valid header");
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    while let Ok(job) = jobs.recv_async().await {
        let picked_at = Instant::now();
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            sender = connect(address).await;
        }
        let answer = match sender.as_mut() {
            Some(s) => exchange(s, &host, &job).await,
            None => None,
        };
        if answer.is_none() {
            sender = None;
        }
        let finished_at = Instant::now();
        if done
            .send(Done {
                job,
                picked_at,
                finished_at,
                answer,
            })
            .is_err()
        {
            return;
        }
    }
}

/// A new keep-alive connection to `address` (`None` when it fails).
pub async fn connect(address: SocketAddr) -> Option<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(address).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(connection);
    Some(sender)
}

/// Sends one request and reads its answer; `None` when the connection failed.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    host: &HeaderValue,
    job: &Job,
) -> Option<Answer> {
    sender.ready().await.ok()?;
    let mut request = Request::builder()
        .method(job.method.clone())
        .uri(job.path.as_str())
        .header(header::HOST, host)
        .header(header::AUTHORIZATION, &job.authorization);
    if job.body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some(etag) = &job.if_none_match {
        request = request.header(header::IF_NONE_MATCH, etag);
    }
    let request = request
        .body(Full::new(job.body.clone().unwrap_or_default()))
        .ok()?;
    let response = sender.send_request(request).await.ok()?;
    let code = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let (statuses, ping_interval_seconds) = match (code, job.kind) {
        (200, Kind::Poll | Kind::HiddenPoll) => (
            Some(serde_json::from_slice::<PollBody>(&body).ok()?.statuses),
            None,
        ),
        (200, Kind::Heartbeat | Kind::Activity | Kind::Setting) => (
            None,
            serde_json::from_slice::<PingBody>(&body)
                .ok()?
                .ping_interval_seconds,
        ),
        _ => (None, None),
    };
    let typing = match (code, job.kind) {
        (200, Kind::RoomPoll) => Some(
            serde_json::from_slice::<RoomBody>(&body)
                .ok()?
                .members
                .into_iter()
                .filter(|member| member.typing)
                .map(|member| member.user_id)
                .collect(),
        ),
        _ => None,
    };
    let heartbeat_interval_seconds = match (code, job.kind) {
        (200, Kind::RoomPing) => Some(
            serde_json::from_slice::<RoomPingBody>(&body)
                .ok()?
                .heartbeat_interval_seconds,
        ),
        _ => None,
    };
    Some(Answer {
        code,
        etag: headers.get(header::ETAG).cloned(),
        retry_after: headers
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok()),
        statuses,
        typing,
        ping_interval_seconds,
        heartbeat_interval_seconds,
        // "HTTP/1.1 200 OK\r\n", the headers, the blank line, the body.
        bytes: 17 + header_bytes + 2 + body.len(),
    })
}

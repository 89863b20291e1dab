//! One large room: every simulated user is in it (joined over the ramp,
//! renewed on the server's interval), and some of them poll its occupancy
//! (`limit=0`) with the ETag every poll interval, as a page showing "1,234
//! here" does. Open-loop as the main model: each client's timer decides when
//! it sends, and latency counts from then.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderValue;
use presence::auth::{TokenSettings, issue_room_token};
use secrecy::SecretString;
use uuid::Uuid;

use crate::client::{self, Done, Job, Kind};
use crate::report::{Resources, Spread};

/// What the large-room run does.
pub struct LargeRoom {
    pub members: usize,
    pub pollers: usize,
    pub ramp: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    pub poll_interval: Duration,
    pub secret: SecretString,
    pub connections: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum What {
    /// The member's page opens: a status ping (the member then has a status
    /// row, as a member with the app open does), then the join.
    Open,
    Renew,
    Poll,
}

#[derive(Default)]
struct Counts {
    sent: u64,
    answered: u64,
    errors: u64,
    not_modified: u64,
    latencies: Vec<u32>,
}

/// Runs the room to its end and prints its figures.
pub async fn run(
    room: LargeRoom,
    address: SocketAddr,
    server_pids: Vec<u32>,
    postgres_nodes: Vec<(String, u32)>,
    max_p99_ms: f64,
) {
    let settings = TokenSettings::with_secret(room.secret.clone());
    let id = format!("sim:big:{}", &Uuid::new_v4().simple().to_string()[..8]);
    let presence_path = format!("/api/rooms/{id}/presence");
    let poll_path = format!("/api/rooms/{id}?limit=0");
    let tokens: Vec<HeaderValue> = (0..room.members)
        .map(|_| {
            let token = issue_room_token(
                &settings,
                &Uuid::new_v4().to_string(),
                &["sim:*".to_owned()],
                None,
                Duration::from_secs(24 * 3600),
            )
            .expect("a token signs");
            HeaderValue::from_str(&format!("Bearer {token}")).expect("a valid header")
        })
        .collect();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let (jobs_tx, jobs_rx) = flume::unbounded();
    client::spawn_pool(address, room.connections, &jobs_rx, &done_tx);
    drop(done_tx);
    let started = Instant::now();
    let window = (
        started + room.ramp + room.warmup,
        started + room.ramp + room.warmup + room.duration,
    );
    let resources = tokio::spawn(Resources::measure(
        window.0,
        window.1,
        server_pids,
        postgres_nodes,
        None,
    ));
    let mut rng = fastrand::Rng::with_seed(7);
    let mut timers: BinaryHeap<Reverse<(Instant, What, u32)>> = BinaryHeap::new();
    for member in 0..room.members as u32 {
        let at = started + room.ramp.mul_f64(rng.f64());
        timers.push(Reverse((at, What::Open, member)));
        if (member as usize) < room.pollers {
            let at = started + room.ramp.mul_f64(rng.f64()) + room.poll_interval;
            timers.push(Reverse((at, What::Poll, member)));
        }
    }
    let mut etags: Vec<Option<HeaderValue>> = vec![None; room.pollers];
    let mut renew_every = Duration::from_secs(20);
    let (mut polls, mut renewals) = (Counts::default(), Counts::default());
    let mut lateness: Vec<u32> = Vec::new();
    let body = Bytes::from_static(br#"{"deviceId":"big"}"#);
    loop {
        let now = Instant::now();
        if now >= window.1 {
            break;
        }
        while let Some(Reverse((at, what, member))) = timers.peek().copied() {
            if at > now {
                break;
            }
            timers.pop();
            let measured = at >= window.0 && at < window.1;
            if measured {
                lateness.push(now.duration_since(at).as_micros().min(u32::MAX as u128) as u32);
            }
            if what == What::Open {
                let _ = jobs_tx.send(Job {
                    user: member,
                    tab: 0,
                    generation: 0,
                    kind: Kind::Activity,
                    method: Method::PUT,
                    path: "/api/status".to_owned(),
                    body: Some(body.clone()),
                    authorization: tokens[member as usize].clone(),
                    if_none_match: None,
                    wanted_at: at,
                    unacknowledged: false,
                });
            }
            let (kind, method, path, body, etag) = match what {
                What::Open | What::Renew => (
                    Kind::RoomPing,
                    Method::PUT,
                    presence_path.clone(),
                    Some(body.clone()),
                    None,
                ),
                What::Poll => (
                    Kind::RoomPoll,
                    Method::GET,
                    poll_path.clone(),
                    None,
                    etags[member as usize].clone(),
                ),
            };
            if measured {
                match what {
                    What::Open | What::Renew => renewals.sent += 1,
                    What::Poll => polls.sent += 1,
                }
            }
            let _ = jobs_tx.send(Job {
                user: member,
                tab: 0,
                generation: 0,
                kind,
                method,
                path,
                body,
                authorization: tokens[member as usize].clone(),
                if_none_match: etag,
                wanted_at: at,
                unacknowledged: false,
            });
        }
        let next = timers
            .peek()
            .map_or(window.1, |Reverse((at, ..))| *at)
            .min(window.1);
        tokio::select! {
            biased;
            Some(done) = done_rx.recv() => {
                let Done { job, finished_at, answer, .. } = done;
                let measured = job.wanted_at >= window.0 && job.wanted_at < window.1;
                let code = answer.as_ref().map(|a| a.code);
                if job.kind == Kind::Activity {
                    continue;
                }
                let counts = if job.kind == Kind::RoomPoll { &mut polls } else { &mut renewals };
                if measured {
                    counts.answered += 1;
                    counts.errors += u64::from(!matches!(code, Some(200..=299 | 304)));
                    counts.not_modified += u64::from(code == Some(304));
                    counts.latencies.push(finished_at.duration_since(job.wanted_at).as_micros().min(u32::MAX as u128) as u32);
                }
                let now = Instant::now();
                match job.kind {
                    Kind::RoomPoll => {
                        if let Some(answer) = answer.filter(|a| a.code == 200) {
                            etags[job.user as usize] = answer.etag;
                        }
                        timers.push(Reverse((now + room.poll_interval, What::Poll, job.user)));
                    }
                    _ => {
                        if let Some(seconds) = answer.and_then(|a| a.heartbeat_interval_seconds) {
                            renew_every = Duration::from_secs(seconds.max(1));
                        }
                        timers.push(Reverse((job.wanted_at + renew_every, What::Renew, job.user)));
                    }
                }
            }
            () = tokio::time::sleep_until(next.into()) => {}
        }
    }
    // Answers to what was sent in the window may still come, for a little while.
    let grace = Instant::now() + Duration::from_secs(5);
    while polls.sent + renewals.sent > polls.answered + renewals.answered {
        let Ok(Some(done)) = tokio::time::timeout_at(grace.into(), done_rx.recv()).await else {
            break;
        };
        let measured = done.job.wanted_at >= window.0 && done.job.wanted_at < window.1;
        if !measured || done.job.kind == Kind::Activity {
            continue;
        }
        let code = done.answer.as_ref().map(|a| a.code);
        let counts = if done.job.kind == Kind::RoomPoll {
            &mut polls
        } else {
            &mut renewals
        };
        counts.answered += 1;
        counts.errors += u64::from(!matches!(code, Some(200..=299 | 304)));
        counts.not_modified += u64::from(code == Some(304));
        counts.latencies.push(
            done.finished_at
                .duration_since(done.job.wanted_at)
                .as_micros()
                .min(u32::MAX as u128) as u32,
        );
    }
    drop(jobs_tx);
    let resources = resources.await.unwrap_or_default();
    let seconds = room.duration.as_secs_f64();
    let poll_spread = Spread::of(&polls.latencies, 1000.0);
    let renew_spread = Spread::of(&renewals.latencies, 1000.0);
    let late = Spread::of(&lateness, 1000.0);
    let errors = polls.errors
        + renewals.errors
        + (polls.sent + renewals.sent).saturating_sub(polls.answered + renewals.answered);
    let rate = (polls.sent + renewals.sent) as f64 / seconds;
    let show = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
    };
    println!(
        "\n== one room of {} members, {} of them polling its occupancy (limit=0) every {:.0} s; {:.0} s measured",
        room.members,
        room.pollers,
        room.poll_interval.as_secs_f64(),
        seconds
    );
    println!(
        "{:<20} {:>9} {:>8} {:>8} {:>8} {:>7}",
        "request", "per s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    for (name, counts, spread) in [
        ("occupancy poll", &polls, &poll_spread),
        ("renewal", &renewals, &renew_spread),
    ] {
        println!(
            "{:<20} {:>9.1} {:>8.2} {:>8.2} {:>8.1} {:>7}",
            name,
            counts.sent as f64 / seconds,
            spread.p50,
            spread.p99,
            spread.max,
            counts.errors + counts.sent.saturating_sub(counts.answered)
        );
    }
    println!(
        "occupancy polls answered 304: {:.1}%",
        polls.not_modified as f64 / polls.answered.max(1) as f64 * 100.0
    );
    println!(
        "CPU (cores): server {}, postgres {}, simulator {}; server {} µs of CPU per request",
        show(resources.server_cpu, 2),
        show(resources.postgres_cpu, 2),
        show(resources.simulator_cpu, 2),
        show(
            resources
                .server_cpu
                .filter(|_| rate > 0.0)
                .map(|c| c * 1e6 / rate),
            1
        )
    );
    println!(
        "simulator timers late: p99 {:.1} ms, max {:.1} ms",
        late.p99, late.max
    );
    let served =
        poll_spread.p99.max(renew_spread.p99) < max_p99_ms && errors == 0 && late.p99 < 100.0;
    println!(
        "\n| members | pollers | occupancy polls/s | poll p50 / p99 ms | 304s | renewals/s | renewal p99 ms | errors | CPU: server / PostgreSQL / simulator | server µs per request | served |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {:.0} | {:.2} / {:.2} | {:.1}% | {:.0} | {:.2} | {} | {} / {} / {} | {} | {} |",
        room.members,
        room.pollers,
        polls.sent as f64 / seconds,
        poll_spread.p50,
        poll_spread.p99,
        polls.not_modified as f64 / polls.answered.max(1) as f64 * 100.0,
        renewals.sent as f64 / seconds,
        renew_spread.p99,
        errors,
        show(resources.server_cpu, 2),
        show(resources.postgres_cpu, 2),
        show(resources.simulator_cpu, 2),
        show(
            resources
                .server_cpu
                .filter(|_| rate > 0.0)
                .map(|c| c * 1e6 / rate),
            1
        ),
        if served { "yes" } else { "no" }
    );
}

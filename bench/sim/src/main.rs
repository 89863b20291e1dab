//! `presence-sim`: simulated front ends against running presence servers.
//!
//! Each simulated user has their own token, one to three browser tabs
//! (devices), a contact list they poll with the ETag of their last answer,
//! and the shipped browser client's timings; the model of how people use the
//! app is in `model.rs` and `bench/README.md`. Clients act on their own
//! timers whether or not the server keeps up (an open loop) over a bounded
//! pool of keep-alive connections. For each number of users it prints request
//! rates and latencies, the share of `304` answers, database writes, server CPU
//! and memory, how fast changes reach watchers, and how many observations
//! disagreed with the ground truth the simulator keeps.
//!
//! With `--rooms-per-user 3`, each user is also in three rooms of
//! `--room-size` members (the shipped client's `joinRoom`): the visible tab
//! joins and renews them, polls the first with its ETag and types there in
//! bursts, and the figures add the room polls and how soon typing shows to
//! the other members. `--large-room 10000` runs one room of that many members
//! instead, some of them polling its occupancy (`large_room.rs`).
//!
//! With `--feed`, a backend follows the change feed all along, and with
//! `--webhook-listen` receives the server's webhooks; each step then adds how
//! many changes the feed carried and how soon each was had (`feed.rs`).

mod client;
mod feed;
mod large_room;
mod model;
mod report;
mod seconds;
mod truth;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use clap::Parser;
use secrecy::SecretString;

use crate::model::{Model, RoomModel, Setup, Simulation};
use crate::report::{Resources, Step};
use crate::truth::Rules;

fn duration(text: &str) -> Result<Duration, humantime::DurationError> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text)
}

/// Simulated front ends against running presence servers.
#[derive(Parser, Debug)]
#[command(name = "presence-sim", version)]
struct Args {
    /// A server's base URL; give it twice or more to spread users over instances.
    #[arg(long = "url", default_value = "http://127.0.0.1:8080")]
    urls: Vec<String>,
    /// Numbers of simulated users, one step each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    users: Vec<usize>,
    /// Contacts each user watches.
    #[arg(long, default_value_t = 20)]
    contacts: usize,
    /// Keep-alive connections per instance.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Users open the app at random moments over this long.
    #[arg(long, default_value = "10s", value_parser = duration)]
    ramp: Duration,
    /// Then this long passes before anything is measured.
    #[arg(long, default_value = "5s", value_parser = duration)]
    warmup: Duration,
    /// How long each step is measured.
    #[arg(long, default_value = "30s", value_parser = duration)]
    duration: Duration,
    /// The servers' signing secret: the simulator issues each user a token.
    #[arg(long, env = "PRESENCE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// The servers' offline threshold.
    #[arg(long, env = "PRESENCE_OFFLINE_AFTER", default_value = "60s", value_parser = duration)]
    offline_after: Duration,
    /// The servers' idle threshold.
    #[arg(long, env = "PRESENCE_IDLE_AFTER", default_value = "5m", value_parser = duration)]
    idle_after: Duration,
    /// The servers' away threshold.
    #[arg(long, env = "PRESENCE_AWAY_AFTER", default_value = "30m", value_parser = duration)]
    away_after: Duration,
    /// The servers' activity precision.
    #[arg(long, env = "PRESENCE_LAST_SEEN_PRECISION", default_value = "1m", value_parser = duration)]
    precision: Duration,
    /// The client's poll interval.
    #[arg(long, default_value = "3s", value_parser = duration)]
    poll_interval: Duration,
    /// Speeds up the rare events (sessions, tabs, settings, blocks).
    #[arg(long, default_value_t = 1.0)]
    churn: f64,
    /// Seeds the simulation's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A server process to measure CPU and memory of (repeat per instance).
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// A PostgreSQL server to measure the CPU of, as NAME=POSTMASTER_PID
    /// (repeat per server: a Citus cluster's coordinator and workers).
    #[arg(long = "postgres-node", value_parser = node)]
    postgres_nodes: Vec<(String, u32)>,
    /// A server's metrics listener (its `PRESENCE_METRICS_ADDR`), to read
    /// how many requests the server itself took over the slow bound in each
    /// second (repeat per instance).
    #[arg(long = "metrics-url")]
    metrics_urls: Vec<String>,
    /// The servers' database, to count row writes and commits.
    #[arg(long)]
    database_url: Option<String>,
    /// The p99 latency (ms) under which a step counts as served.
    #[arg(long, default_value_t = 50.0)]
    max_p99_ms: f64,
    /// Print one JSON object per step instead of the tables.
    #[arg(long)]
    json: bool,
    /// Each user is also in this many rooms (0: no rooms), polls the first
    /// with its ETag and types there in bursts.
    #[arg(long, default_value_t = 0)]
    rooms_per_user: usize,
    /// The members of each room.
    #[arg(long, default_value_t = 50)]
    room_size: usize,
    /// The servers' typing TTL (the client renews typing every half of it).
    #[arg(long, env = "PRESENCE_TYPING_TTL", default_value = "6s", value_parser = duration)]
    typing_ttl: Duration,
    /// Instead of the steps: one room of this many members (joined over the
    /// ramp, renewed on the server's interval), `--large-room-pollers` of them
    /// polling its occupancy (`limit=0`) every poll interval.
    #[arg(long, default_value_t = 0)]
    large_room: usize,
    /// How many members of the large room poll its occupancy.
    #[arg(long, default_value_t = 1000)]
    large_room_pollers: usize,
    /// Follow the change feed (a service token polling the first instance).
    #[arg(long)]
    feed: bool,
    /// How often the feed's reader polls once it has caught up.
    #[arg(long, default_value = "100ms", value_parser = duration)]
    feed_poll: Duration,
    /// Receive the servers' webhooks on this address (their `PRESENCE_WEBHOOK_URL`); needs `--feed`.
    #[arg(long, requires = "feed")]
    webhook_listen: Option<SocketAddr>,
    /// The servers' webhook secret, to check each signature.
    #[arg(long, env = "PRESENCE_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let addresses = args
        .urls
        .iter()
        .map(|url| address(url))
        .collect::<Result<Vec<_>, _>>()?;
    let metrics = args
        .metrics_urls
        .iter()
        .map(|url| address(url))
        .collect::<Result<Vec<_>, _>>()?;
    let micros = |d: Duration| d.as_micros() as u64;
    let rules = Rules {
        idle_after: micros(args.idle_after),
        away_after: micros(args.away_after),
        precision: micros(args.precision),
        lag: micros(args.poll_interval + args.precision + args.offline_after),
    };
    let model = Model {
        poll_interval: micros(args.poll_interval),
        churn: args.churn,
        ..Model::default()
    };
    if args.large_room > 0 {
        let room = large_room::LargeRoom {
            members: args.large_room,
            pollers: args.large_room_pollers.min(args.large_room),
            ramp: args.ramp,
            warmup: args.warmup,
            duration: args.duration,
            poll_interval: args.poll_interval,
            secret: SecretString::from(args.jwt_secret.clone()),
            connections: args.connections,
        };
        large_room::run(
            room,
            addresses[0],
            args.server_pids.clone(),
            args.postgres_nodes.clone(),
            args.max_p99_ms,
        )
        .await;
        return Ok(());
    }
    let follower = if args.feed {
        let listen = match (args.webhook_listen, &args.webhook_secret) {
            (Some(at), Some(secret)) => Some((at, secret.clone())),
            (Some(_), None) => return Err("--webhook-listen needs --webhook-secret".into()),
            (None, _) => None,
        };
        Some(
            feed::FeedFollower::start(
                addresses[0],
                &SecretString::from(args.jwt_secret.clone()),
                args.feed_poll,
                listen,
            )
            .await?,
        )
    } else {
        None
    };
    let mut steps = Vec::new();
    for (index, users) in args.users.iter().enumerate() {
        let setup = Setup {
            users: *users,
            contacts: args.contacts,
            ramp: args.ramp,
            warmup: args.warmup,
            duration: args.duration,
            rules,
            model,
            seed: args.seed.wrapping_add(index as u64),
            secret: SecretString::from(args.jwt_secret.clone()),
            instances: addresses.len(),
            rooms: (args.rooms_per_user > 0).then(|| RoomModel {
                per_user: args.rooms_per_user,
                size: args.room_size,
                typing_ttl: micros(args.typing_ttl),
                ..RoomModel::default()
            }),
        };
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for address in &addresses {
            let (jobs_tx, jobs_rx) = flume::unbounded();
            client::spawn_pool(*address, args.connections, &jobs_rx, &done_tx);
            senders.push(jobs_tx);
            receivers.push(jobs_rx);
        }
        drop(done_tx);
        let simulation = Simulation::new(setup, senders);
        let started = Instant::now();
        let wall_started = chrono::Utc::now();
        let (from, to) = simulation.window();
        let resources = tokio::spawn(Resources::measure(
            started + from,
            started + to,
            args.server_pids.clone(),
            args.postgres_nodes.clone(),
            args.database_url.clone(),
        ));
        let seconds = seconds::sample(
            started + from,
            started + to,
            args.server_pids.clone(),
            metrics.clone(),
            f64::from(model::SLOW_MICROS) / 1e6,
        );
        let figures = simulation.run(&mut done_rx, started).await;
        // Whatever is still queued is dropped: the next step starts clean.
        for jobs in &receivers {
            jobs.drain().for_each(drop);
        }
        let resources = resources.await.unwrap_or_default();
        let seconds = seconds.join().unwrap_or_default();
        let step = Step::new(
            *users,
            addresses.len(),
            args.connections,
            args.duration,
            &figures,
            resources,
            seconds,
        );
        // The window's changes by the clock are due within a second of its
        // end; the follower has them a moment later.
        let feed = match &follower {
            Some(follower) => {
                tokio::time::sleep(FEED_GRACE).await;
                let wall = |offset: Duration| {
                    wall_started + chrono::TimeDelta::from_std(offset).unwrap_or_default()
                };
                Some(follower.figures(wall(from), wall(to)))
            }
            None => None,
        };
        if args.json {
            let mut json = step.json(args.max_p99_ms);
            if let Some(feed) = &feed {
                json["feed"] = feed.json();
            }
            println!("{}", serde_json::to_string(&json)?);
        } else {
            step.print(args.max_p99_ms);
            if let Some(feed) = &feed {
                feed.print();
            }
        }
        steps.push(step);
    }
    if !args.json {
        report::summary(&steps, args.max_p99_ms, args.poll_interval);
    }
    Ok(())
}

/// How long after a step the feed's figures are taken.
const FEED_GRACE: Duration = Duration::from_secs(3);

/// `NAME=PID` of `--postgres-node`.
fn node(text: &str) -> Result<(String, u32), String> {
    let (name, pid) = text
        .split_once('=')
        .ok_or_else(|| format!("{text}: expected NAME=PID"))?;
    let pid = pid
        .parse()
        .map_err(|_| format!("{pid}: not a process id"))?;
    Ok((name.to_owned(), pid))
}

fn address(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs"))?;
    let host = rest.split('/').next().unwrap_or(rest);
    host.to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))
}

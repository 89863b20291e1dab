//! What a step measured, as printed tables and JSON, and the resources measured
//! beside it: server and Postgres CPU, server memory, database writes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::{Connection, PgConnection};

use crate::client::Kind;
use crate::model::Figures;
use crate::seconds::Second;

/// Server-side usage over the measured window.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    /// Cores' worth of CPU the server processes used.
    pub server_cpu: Option<f64>,
    /// The server processes' resident memory at the end, and their peak (MB).
    pub server_rss_mb: Option<f64>,
    pub server_peak_mb: Option<f64>,
    /// Cores' worth of CPU every `postgres` process used.
    pub postgres_cpu: Option<f64>,
    /// Cores' worth of CPU of each named PostgreSQL server (a postmaster and
    /// its children), in the order given: a Citus cluster's nodes.
    pub node_cpu: Vec<(String, f64)>,
    /// Cores' worth of CPU the simulator itself used.
    pub simulator_cpu: Option<f64>,
    /// The share of the machine's CPU that was busy.
    pub machine_busy: Option<f64>,
    /// Rows inserted, updated or deleted, and transactions committed.
    pub row_writes: Option<i64>,
    pub commits: Option<i64>,
}

struct Sample {
    at: Instant,
    server: Option<u64>,
    postgres: u64,
    nodes: Vec<u64>,
    simulator: Option<u64>,
    machine: Option<(u64, u64)>,
    database: Option<(i64, i64)>,
}

/// Clock ticks per second in `/proc` (`USER_HZ`, 100 on Linux).
pub(crate) const TICKS: f64 = 100.0;

impl Sample {
    async fn take(
        pids: &[u32],
        nodes: &[(String, u32)],
        database: Option<&mut PgConnection>,
    ) -> Self {
        Self {
            at: Instant::now(),
            server: processes_ticks(pids),
            postgres: postgres_ticks(),
            nodes: nodes.iter().map(|(_, pid)| server_ticks(*pid)).collect(),
            simulator: cpu_ticks("/proc/self/stat").map(|(_, t)| t),
            machine: machine_ticks(),
            database: match database {
                Some(connection) => database_counters(connection).await,
                None => None,
            },
        }
    }
}

impl Resources {
    /// Samples at `from` and `to` and returns the difference.
    pub async fn measure(
        from: Instant,
        to: Instant,
        pids: Vec<u32>,
        nodes: Vec<(String, u32)>,
        database_url: Option<String>,
    ) -> Resources {
        let mut database = match database_url {
            Some(url) => PgConnection::connect(&url).await.ok(),
            None => None,
        };
        tokio::time::sleep_until(from.into()).await;
        let before = Sample::take(&pids, &nodes, database.as_mut()).await;
        tokio::time::sleep_until(to.into()).await;
        let after = Sample::take(&pids, &nodes, database.as_mut()).await;
        // Postgres counts a transaction's writes when it reports them, about once a second.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let settled = Sample::take(&[], &[], database.as_mut()).await;
        let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-9);
        let cores =
            |a: Option<u64>, b: Option<u64>| Some((b? as f64 - a? as f64) / TICKS / seconds);
        let memory = |field: &str| {
            pids.iter()
                .map(|pid| status_kb(*pid, field))
                .sum::<Option<u64>>()
                .filter(|_| !pids.is_empty())
                .map(|kb| kb as f64 / 1024.0)
        };
        let database_delta = |pick: fn((i64, i64)) -> i64| {
            Some(pick(settled.database.or(after.database)?) - pick(before.database?))
        };
        Resources {
            server_cpu: cores(before.server, after.server),
            server_rss_mb: memory("VmRSS"),
            server_peak_mb: memory("VmHWM"),
            postgres_cpu: cores(Some(before.postgres), Some(after.postgres)),
            node_cpu: nodes
                .iter()
                .zip(before.nodes.iter().zip(&after.nodes))
                .filter_map(|((name, _), (a, b))| Some((name.clone(), cores(Some(*a), Some(*b))?)))
                .collect(),
            simulator_cpu: cores(before.simulator, after.simulator),
            machine_busy: before.machine.zip(after.machine).map(|(a, b)| {
                let total = (b.1 - a.1).max(1) as f64;
                (b.0 - a.0) as f64 / total
            }),
            row_writes: database_delta(|(rows, _)| rows),
            commits: database_delta(|(_, commits)| commits),
        }
    }
}

/// `(command, utime + stime)` of a process, from its `stat` file.
pub(crate) fn cpu_ticks(path: &str) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let command = stat[open + 1..close].to_owned();
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((command, user + system))
}

/// The ticks of the processes `pids` together (`None` when there are none,
/// or one is gone).
pub(crate) fn processes_ticks(pids: &[u32]) -> Option<u64> {
    pids.iter()
        .map(|pid| cpu_ticks(&format!("/proc/{pid}/stat")).map(|(_, t)| t))
        .sum::<Option<u64>>()
        .filter(|_| !pids.is_empty())
}

/// The ticks of one PostgreSQL server: its postmaster `pid` and every child of it.
fn server_ticks(pid: u32) -> u64 {
    let own = format!("/proc/{pid}/stat");
    process_stat_files()
        .filter(|path| *path == own || parent_of(path) == Some(pid))
        .filter_map(|path| cpu_ticks(&path).map(|(_, ticks)| ticks))
        .sum()
}

pub(crate) fn postgres_ticks() -> u64 {
    process_stat_files()
        .filter_map(|path| cpu_ticks(&path))
        .filter(|(command, _)| command == "postgres")
        .map(|(_, ticks)| ticks)
        .sum()
}

/// The `stat` file of every process.
fn process_stat_files() -> impl Iterator<Item = String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .map(|entry| format!("{}/stat", entry.path().display()))
}

/// The parent's pid of a process, from its `stat` file.
fn parent_of(path: &str) -> Option<u32> {
    let stat = std::fs::read_to_string(path).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `(busy, total)` ticks of all cores, from `/proc/stat`.
pub(crate) fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4)?;
    Some((total - idle, total))
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn database_counters(connection: &mut PgConnection) -> Option<(i64, i64)> {
    sqlx::query_as::<_, (i64, i64)>(
        "select (select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint \
                 from pg_stat_user_tables), \
                (select xact_commit from pg_stat_database where datname = current_database())",
    )
    .fetch_one(connection)
    .await
    .ok()
}

/// Percentiles of a set of samples.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spread {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `samples`, scaled by `unit` (e.g. µs to ms).
    pub fn of<T: Copy + Into<u64>>(samples: &[T], unit: f64) -> Self {
        let mut sorted: Vec<u64> = samples.iter().map(|s| (*s).into()).collect();
        sorted.sort_unstable();
        let at = |q: f64| {
            if sorted.is_empty() {
                return 0.0;
            }
            let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[index] as f64 / unit
        };
        Spread {
            count: sorted.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: sorted.last().map_or(0.0, |m| *m as f64 / unit),
        }
    }
}

/// One kind of request in a step.
#[derive(Debug)]
pub struct KindRow {
    pub name: &'static str,
    pub rate: f64,
    pub latency: Spread,
    /// Failed answers and requests never answered.
    pub errors: u64,
    /// The failed answers by status code (0: no answer).
    pub failures: BTreeMap<u16, u64>,
    /// Sign-outs that overtook their tab's first ping and found no device.
    pub overtook: u64,
}

/// One step's figures, ready to print.
#[derive(Debug)]
pub struct Step {
    pub users: usize,
    pub present: usize,
    pub instances: usize,
    pub seconds: f64,
    pub kinds: Vec<KindRow>,
    pub all: KindRow,
    /// Shares of polls answered `304`: the visible tab's, and all.
    pub not_modified_visible: f64,
    pub not_modified_all: f64,
    pub bytes_per_poll: f64,
    /// Change-to-poll delays (s) within one instance and across instances.
    pub propagation: Spread,
    pub propagation_across: Spread,
    pub propagation_missed: u64,
    pub observations: u64,
    pub wrong: u64,
    pub wrong_examples: Vec<String>,
    /// How late the simulator ran its timers (ms).
    pub lateness: Spread,
    pub resources: Resources,
    /// Requests over the slow bound: how many, and the seconds with the most
    /// of them (Unix second, how many, slowest ms), most first.
    pub slow: u64,
    pub slow_in_seconds: usize,
    pub slowest_seconds: Vec<(i64, u64, f64)>,
    /// Each second of the window from outside the simulator's loop (CPU, the
    /// servers' own slow requests).
    pub by_second: BTreeMap<i64, Second>,
    /// How late the latest timer of each second ran (ms).
    pub late_seconds: BTreeMap<i64, f64>,
    /// The longest a slow request of each second queued for a connection (ms).
    pub queued_seconds: BTreeMap<i64, f64>,
    /// Connections of the simulator's pools busy on average, and how many
    /// there are: near all of them, requests queue for one.
    pub pool_busy: f64,
    pub pool: usize,
    /// The seconds in which clients wanted the most requests (Unix second,
    /// how many, of them polls answered in full), most first, and the mean
    /// of a second: a bunch of timers firing together shows here.
    pub busiest_seconds: Vec<(i64, u64, u64)>,
    pub wanted_per_second: (f64, f64),
    /// Rooms, when the step had them: room polls answered `304`, and typing
    /// start to its showing in a member's poll (s), with what was never seen.
    pub not_modified_rooms: Option<f64>,
    pub typing: Spread,
    pub typing_missed: u64,
}

/// How many of the seconds with the most slow requests a step prints.
const SLOWEST_SECONDS: usize = 5;

impl Step {
    /// Summarises what a step measured.
    pub fn new(
        users: usize,
        instances: usize,
        connections: usize,
        duration: Duration,
        figures: &Figures,
        resources: Resources,
        by_second: BTreeMap<i64, Second>,
    ) -> Self {
        let seconds = duration.as_secs_f64();
        let row = |name, sent: u64, answered: u64, errors: u64, latencies: &[u32]| KindRow {
            name,
            rate: sent as f64 / seconds,
            latency: Spread::of(latencies, 1000.0),
            errors: errors + sent.saturating_sub(answered),
            failures: BTreeMap::new(),
            overtook: 0,
        };
        let kinds: Vec<KindRow> = figures
            .kinds
            .iter()
            .map(|(kind, f)| KindRow {
                failures: f.failures.clone(),
                overtook: f.overtook,
                ..row(kind.name(), f.sent, f.answered, f.errors, &f.latencies)
            })
            .collect();
        let every: Vec<u32> = figures
            .kinds
            .iter()
            .flat_map(|(_, f)| f.latencies.iter().copied())
            .collect();
        let sum = |pick: fn(&crate::model::KindFigures) -> u64| -> u64 {
            figures.kinds.iter().map(|(_, f)| pick(f)).sum()
        };
        let all = row(
            "all",
            sum(|f| f.sent),
            sum(|f| f.answered),
            sum(|f| f.errors),
            &every,
        );
        let polls = |kinds: &[Kind]| {
            figures
                .kinds
                .iter()
                .filter(|(kind, _)| kinds.contains(kind))
                .fold((0, 0, 0), |(n, nm, b), (_, f)| {
                    (n + f.answered, nm + f.not_modified, b + f.bytes)
                })
        };
        let mut slowest_seconds: Vec<(i64, u64, f64)> = figures
            .slow_seconds
            .iter()
            .map(|(second, (count, max))| (*second, *count, f64::from(*max) / 1000.0))
            .collect();
        slowest_seconds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        slowest_seconds.truncate(SLOWEST_SECONDS);
        let mut busiest_seconds: Vec<(i64, u64, u64)> = figures
            .wanted_seconds
            .iter()
            .map(|(second, (count, full))| (*second, *count, *full))
            .collect();
        let wanted_seconds = busiest_seconds.len().max(1) as f64;
        let wanted_per_second =
            busiest_seconds
                .iter()
                .fold((0.0, 0.0), |(n, full), (_, count, f)| {
                    (
                        n + *count as f64 / wanted_seconds,
                        full + *f as f64 / wanted_seconds,
                    )
                });
        busiest_seconds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        busiest_seconds.truncate(SLOWEST_SECONDS);
        let share = |(n, nm, _): (u64, u64, u64)| nm as f64 / n.max(1) as f64;
        let all_polls = polls(&[Kind::Poll, Kind::HiddenPoll]);
        Step {
            users,
            present: figures.present,
            instances,
            seconds,
            kinds,
            all,
            not_modified_visible: share(polls(&[Kind::Poll])),
            not_modified_all: share(all_polls),
            bytes_per_poll: all_polls.2 as f64 / all_polls.0.max(1) as f64,
            propagation: Spread::of(&figures.propagation_same, 1e6),
            propagation_across: Spread::of(&figures.propagation_across, 1e6),
            propagation_missed: figures.propagation_missed,
            observations: figures.observations,
            wrong: figures.wrong,
            wrong_examples: figures.wrong_examples.clone(),
            lateness: Spread::of(&figures.timer_lateness, 1000.0),
            resources,
            slow: figures.slow_seconds.values().map(|(count, _)| count).sum(),
            slow_in_seconds: figures.slow_seconds.len(),
            slowest_seconds,
            by_second,
            late_seconds: figures
                .late_seconds
                .iter()
                .map(|(second, late)| (*second, f64::from(*late) / 1000.0))
                .collect(),
            queued_seconds: figures
                .queued_seconds
                .iter()
                .map(|(second, queued)| (*second, f64::from(*queued) / 1000.0))
                .collect(),
            pool_busy: figures.held_micros as f64 / 1e6 / seconds,
            pool: connections * instances,
            busiest_seconds,
            wanted_per_second,
            not_modified_rooms: {
                let rooms = polls(&[Kind::RoomPoll]);
                (rooms.0 > 0).then(|| share(rooms))
            },
            typing: Spread::of(&figures.typing_propagation, 1e6),
            typing_missed: figures.typing_missed,
        }
    }

    /// The room polls' row, when the step had rooms.
    pub fn room_polls(&self) -> Option<&KindRow> {
        self.not_modified_rooms?;
        self.kinds
            .iter()
            .find(|kind| kind.name == Kind::RoomPoll.name())
    }

    /// Whether the step was served: p99 under the bound, no errors, and the
    /// simulator kept its own timers (else the load was not what it models).
    pub fn served(&self, max_p99_ms: f64) -> bool {
        self.all.latency.p99 < max_p99_ms && self.all.errors == 0 && self.kept_up()
    }

    /// The simulator ran its timers within 100 ms (p99).
    pub fn kept_up(&self) -> bool {
        self.lateness.p99 < 100.0
    }

    /// Status writes answered per second: pings (heartbeats, activity,
    /// settings) and sign-outs, each a durable write of a status row.
    fn status_writes_per_second(&self) -> f64 {
        self.kinds
            .iter()
            .filter(|kind| {
                ["heartbeat", "activity ping", "setting", "sign-out"].contains(&kind.name)
            })
            .map(|kind| kind.rate)
            .sum()
    }

    /// The server's CPU per request (µs), and PostgreSQL's per status write (µs).
    pub fn costs(&self) -> (Option<f64>, Option<f64>) {
        let r = &self.resources;
        let per = |cores: Option<f64>, rate: f64| {
            cores.filter(|_| rate > 0.0).map(|cores| cores * 1e6 / rate)
        };
        (
            per(r.server_cpu, self.all.rate),
            per(r.postgres_cpu, self.status_writes_per_second()),
        )
    }

    /// Requests the servers themselves took over the slow bound, of all
    /// they answered in the window, by their own histograms (when read).
    pub fn servers_own_slow(&self) -> Option<(u64, u64)> {
        self.by_second
            .values()
            .map(|second| second.served)
            .try_fold((0, 0), |(n, slow), one| one.map(|(a, b)| (n + a, slow + b)))
            .filter(|_| !self.by_second.is_empty())
    }

    /// One of the slowest seconds, told: what the simulator saw, what the
    /// servers' own histograms saw, how late the simulator's timers ran and
    /// who used the CPU.
    fn slow_second(&self, (second, count, max): (i64, u64, f64)) -> String {
        let at = chrono::DateTime::from_timestamp(second, 0).map_or_else(
            || second.to_string(),
            |at| at.format("%H:%M:%S").to_string(),
        );
        let mut told = format!("{at}: {count} (max {max:.0} ms)");
        if let Some(queued) = self.queued_seconds.get(&second) {
            told += &format!(", up to {queued:.0} ms of it queued for a connection");
        }
        if let Some(late) = self.late_seconds.get(&second) {
            told += &format!("; timers up to {late:.0} ms late");
        }
        if let Some(s) = self.by_second.get(&second) {
            if let Some((answered, slow)) = s.served {
                told += &format!("; the servers' own: {slow} of {answered} over the bound");
            }
            told += &format!(
                "; CPU simulator {:.2}, servers {:.2}, PostgreSQL {:.2}, machine {:.0}% busy",
                s.simulator,
                s.servers,
                s.postgres,
                s.machine_busy * 100.0
            );
        }
        told
    }

    fn writes_per_user_minute(&self) -> Option<f64> {
        Some(self.resources.row_writes? as f64 / self.users.max(1) as f64 / (self.seconds / 60.0))
    }

    /// The share of observations that agreed with the truth.
    pub fn accuracy(&self) -> f64 {
        1.0 - self.wrong as f64 / self.observations.max(1) as f64
    }

    /// The step as one JSON object.
    pub fn json(&self, max_p99_ms: f64) -> serde_json::Value {
        let spread =
            |s: &Spread| json!({ "count": s.count, "p50": s.p50, "p99": s.p99, "max": s.max });
        let r = &self.resources;
        json!({
            "users": self.users,
            "present": self.present,
            "instances": self.instances,
            "seconds": self.seconds,
            "kinds": self.kinds.iter().map(|k| json!({
                "kind": k.name, "perSecond": k.rate, "latencyMs": spread(&k.latency), "errors": k.errors,
                "failedAnswers": k.failures.iter().map(|(code, n)| json!({
                    "status": if *code == 0 { json!("no answer") } else { json!(code) }, "count": n,
                })).collect::<Vec<_>>(),
                "overtook": k.overtook,
            })).collect::<Vec<_>>(),
            "requestsPerSecond": self.all.rate,
            "latencyMs": spread(&self.all.latency),
            "errors": self.all.errors,
            "notModifiedVisible": self.not_modified_visible,
            "notModifiedAll": self.not_modified_all,
            "bytesPerPoll": self.bytes_per_poll,
            "propagationSeconds": spread(&self.propagation),
            "propagationAcrossSeconds": spread(&self.propagation_across),
            "propagationMissed": self.propagation_missed,
            "observations": self.observations,
            "wrong": self.wrong,
            "wrongExamples": self.wrong_examples,
            "accuracy": self.accuracy(),
            "timerLatenessMs": spread(&self.lateness),
            "poolBusy": self.pool_busy,
            "poolConnections": self.pool,
            "serversOwnSlow": self.servers_own_slow().map(|(answered, slow)| json!({ "answered": answered, "slow": slow })),
            "slowestSeconds": self.slowest_seconds.iter().map(|(second, count, max)| {
                let s = self.by_second.get(second);
                json!({
                    "second": second, "slow": count, "maxMs": max,
                    "timersLateMs": self.late_seconds.get(second),
                    "queuedMs": self.queued_seconds.get(second),
                    "serversOwnSlow": s.and_then(|s| s.served).map(|(_, slow)| slow),
                    "simulatorCpuCores": s.map(|s| s.simulator),
                    "serverCpuCores": s.map(|s| s.servers),
                    "postgresCpuCores": s.map(|s| s.postgres),
                    "machineBusy": s.map(|s| s.machine_busy),
                })
            }).collect::<Vec<_>>(),
            "rowWritesPerUserMinute": self.writes_per_user_minute(),
            "commitsPerSecond": r.commits.map(|c| c as f64 / self.seconds),
            "serverCpuCores": r.server_cpu,
            "serverCpuMicrosPerRequest": self.costs().0,
            "postgresCpuMicrosPerStatusWrite": self.costs().1,
            "serverRssMb": r.server_rss_mb,
            "serverPeakMb": r.server_peak_mb,
            "postgresCpuCores": r.postgres_cpu,
            "postgresNodeCpuCores": r.node_cpu.iter().map(|(name, cores)| json!({ "node": name, "cores": cores })).collect::<Vec<_>>(),
            "simulatorCpuCores": r.simulator_cpu,
            "machineBusy": r.machine_busy,
            "roomPollsNotModified": self.not_modified_rooms,
            "typingPropagationSeconds": spread(&self.typing),
            "typingMissed": self.typing_missed,
            "served": self.served(max_p99_ms),
        })
    }

    /// Prints the step's table.
    pub fn print(&self, max_p99_ms: f64) {
        println!(
            "\n== {} users ({} with the app open at the end), {} instance(s), {:.0} s measured",
            self.users, self.present, self.instances, self.seconds
        );
        println!(
            "{:<20} {:>9} {:>8} {:>8} {:>8} {:>7}",
            "request", "per s", "p50 ms", "p99 ms", "max ms", "errors"
        );
        for k in self.kinds.iter().chain(std::iter::once(&self.all)) {
            println!(
                "{:<20} {:>9.1} {:>8.2} {:>8.2} {:>8.1} {:>7}",
                k.name, k.rate, k.latency.p50, k.latency.p99, k.latency.max, k.errors
            );
        }
        for k in &self.kinds {
            if !k.failures.is_empty() {
                let codes: Vec<String> = k
                    .failures
                    .iter()
                    .map(|(code, n)| match code {
                        0 => format!("{n} no answer"),
                        code => format!("{n} x {code}"),
                    })
                    .collect();
                println!("failed {}: {}", k.name, codes.join(", "));
            }
            if k.overtook > 0 {
                println!(
                    "{} {}s overtook their tab's first ping and found no device (404, the client's own race, not counted as errors)",
                    k.overtook, k.name
                );
            }
        }
        println!(
            "polls answered 304: {:.1}% of the visible tab's, {:.1}% of all; {:.0} bytes per poll",
            self.not_modified_visible * 100.0,
            self.not_modified_all * 100.0,
            self.bytes_per_poll
        );
        let r = &self.resources;
        let show = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
        };
        println!(
            "database: {} row writes per user per minute, {} commits/s",
            show(self.writes_per_user_minute(), 2),
            show(r.commits.map(|c| c as f64 / self.seconds), 0)
        );
        println!(
            "CPU (cores): server {}, postgres {}, simulator {}; machine busy {}%; server RSS {} MB (peak {})",
            show(r.server_cpu, 2),
            show(r.postgres_cpu, 2),
            show(r.simulator_cpu, 2),
            show(r.machine_busy.map(|b| b * 100.0), 0),
            show(r.server_rss_mb, 0),
            show(r.server_peak_mb, 0)
        );
        let (per_request, per_write) = self.costs();
        println!(
            "cost: server {} µs of CPU per request; PostgreSQL {} µs of CPU per status write ({:.0} status writes/s)",
            show(per_request, 1),
            show(per_write, 1),
            self.status_writes_per_second()
        );
        if !r.node_cpu.is_empty() {
            let nodes: Vec<String> = r
                .node_cpu
                .iter()
                .map(|(name, cores)| format!("{name} {cores:.2}"))
                .collect();
            println!("PostgreSQL servers (cores): {}", nodes.join(", "));
        }
        let p = &self.propagation;
        println!(
            "propagation: p50 {:.2} s, p99 {:.2} s, max {:.2} s over {} changes; missed {}",
            p.p50, p.p99, p.max, p.count, self.propagation_missed
        );
        if let (Some(share), Some(polls)) = (self.not_modified_rooms, self.room_polls()) {
            let t = &self.typing;
            println!(
                "rooms: polls p50 {:.2} ms, p99 {:.2} ms, {:.1}% answered 304; typing shown p50 {:.2} s, p99 {:.2} s, max {:.2} s over {} starts; missed {}",
                polls.latency.p50,
                polls.latency.p99,
                share * 100.0,
                t.p50,
                t.p99,
                t.max,
                t.count,
                self.typing_missed
            );
        }
        if self.propagation_across.count > 0 {
            let a = &self.propagation_across;
            println!(
                "  across instances: p50 {:.2} s, p99 {:.2} s, max {:.2} s over {} changes",
                a.p50, a.p99, a.max, a.count
            );
        }
        if self.slow > 0 {
            println!(
                "requests over {} ms: {} in {} s; most in (UTC):",
                crate::model::SLOW_MICROS / 1000,
                self.slow,
                self.slow_in_seconds,
            );
            for second in &self.slowest_seconds {
                println!("  {}", self.slow_second(*second));
            }
        }
        println!(
            "the simulator's pool: {:.1} of its {} connections busy on average",
            self.pool_busy, self.pool
        );
        if let Some((answered, slow)) = self.servers_own_slow() {
            println!(
                "the servers' own histograms: {slow} of {answered} requests over {} ms",
                crate::model::SLOW_MICROS / 1000
            );
        }
        if !self.busiest_seconds.is_empty() {
            let seconds: Vec<String> = self
                .busiest_seconds
                .iter()
                .map(|(second, count, full)| {
                    let at = chrono::DateTime::from_timestamp(*second, 0).map_or_else(
                        || second.to_string(),
                        |at| at.format("%H:%M:%S").to_string(),
                    );
                    format!("{at} {count} ({full} full polls)")
                })
                .collect();
            println!(
                "requests wanted per second: mean {:.0} ({:.0} full polls); most in (UTC): {}",
                self.wanted_per_second.0,
                self.wanted_per_second.1,
                seconds.join(", ")
            );
        }
        println!(
            "accuracy: {} of {} observations disagreed with the truth ({:.4}% right)",
            self.wrong,
            self.observations,
            self.accuracy() * 100.0
        );
        for example in &self.wrong_examples {
            println!("  {example}");
        }
        println!(
            "simulator timers late: p99 {:.1} ms, max {:.1} ms{}",
            self.lateness.p99,
            self.lateness.max,
            if self.kept_up() {
                ""
            } else {
                " (behind: the load was lighter than modelled)"
            }
        );
        println!(
            "served (p99 < {max_p99_ms} ms, no errors): {}",
            if self.served(max_p99_ms) { "yes" } else { "no" }
        );
    }
}

/// Prints one row per step, the capacity (the most users served) and the goals.
pub fn summary(steps: &[Step], max_p99_ms: f64, poll_interval: Duration) {
    println!(
        "\n| users | instances | req/s | p50 ms | p99 ms | errors | over 50 ms | 304s (visible tab) | row writes/user/min | CPU: server / PostgreSQL / simulator | server µs per request | PostgreSQL µs per status write | server RSS MB | propagation p50 / p99 s | wrong | served |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let show = |value: Option<f64>, digits: usize| {
        value.map_or_else(|| "n/a".to_owned(), |value| format!("{value:.digits$}"))
    };
    for s in steps {
        let r = &s.resources;
        let (per_request, per_write) = s.costs();
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {:.1}% | {} | {} / {} / {} | {} | {} | {} | {:.2} / {:.2} | {} of {} | {} |",
            s.users,
            s.instances,
            s.all.rate,
            s.all.latency.p50,
            s.all.latency.p99,
            s.all.errors,
            match s.servers_own_slow() {
                Some((_, own)) => format!("{} ({own} in the servers)", s.slow),
                None => s.slow.to_string(),
            },
            s.not_modified_visible * 100.0,
            show(s.writes_per_user_minute(), 2),
            show(r.server_cpu, 2),
            show(r.postgres_cpu, 2),
            show(r.simulator_cpu, 2),
            show(per_request, 1),
            show(per_write, 1),
            show(r.server_rss_mb, 0),
            s.propagation.p50,
            s.propagation.p99,
            s.wrong,
            s.observations,
            if s.served(max_p99_ms) { "yes" } else { "no" },
        );
    }
    if steps.iter().any(|s| s.not_modified_rooms.is_some()) {
        println!(
            "\n| users | room polls/s | room poll p50 / p99 ms | room polls 304 | typing shown p50 / p99 s | typing missed | served |"
        );
        println!("|---|---|---|---|---|---|---|");
        for s in steps {
            if let (Some(share), Some(polls)) = (s.not_modified_rooms, s.room_polls()) {
                println!(
                    "| {} | {:.0} | {:.2} / {:.2} | {:.1}% | {:.2} / {:.2} | {} | {} |",
                    s.users,
                    polls.rate,
                    polls.latency.p50,
                    polls.latency.p99,
                    share * 100.0,
                    s.typing.p50,
                    s.typing.p99,
                    s.typing_missed,
                    if s.served(max_p99_ms) { "yes" } else { "no" },
                );
            }
        }
        let bound = poll_interval.as_secs_f64() + 0.1;
        for s in steps.iter().filter(|s| s.typing.count > 0) {
            println!(
                "  {} users: typing shown p99 {:.2} s (goal at most {bound:.1} s: {})",
                s.users,
                s.typing.p99,
                if s.typing.p99 <= bound {
                    "met"
                } else {
                    "missed"
                }
            );
        }
    }
    let served: Vec<&Step> = steps.iter().filter(|s| s.served(max_p99_ms)).collect();
    let Some(best) = served.iter().max_by_key(|s| s.users) else {
        println!("\ncapacity: no step was served with p99 < {max_p99_ms} ms and no errors");
        return;
    };
    println!(
        "\ncapacity: {} simulated users, the largest step with p99 < {max_p99_ms} ms and no errors ({:.2} of the 100,000 goal)",
        best.users,
        best.users as f64 / 100_000.0
    );
    println!(
        "  polls answered 304 there: {:.1}% of the visible tab's (goal at least 80%)",
        best.not_modified_visible * 100.0
    );
    let bound = poll_interval.as_secs_f64() + 0.1;
    for step in steps {
        let worst = step.propagation.p99.max(step.propagation_across.p99);
        println!(
            "  {} users on {} instance(s): propagation p99 {:.2} s (goal at most {bound:.1} s: {}), {} wrong observations (goal 0)",
            step.users,
            step.instances,
            worst,
            if worst <= bound { "met" } else { "missed" },
            step.wrong
        );
    }
}

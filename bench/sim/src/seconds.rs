//! Each second of the measured window as seen outside the simulator's own
//! loop: the CPU the simulator, the servers and PostgreSQL used in it, and,
//! when the servers' metrics listeners are given, how many requests the
//! servers themselves took over the slow bound. A slow second then shows
//! whose time it was: the servers' (their own histogram says so), or the
//! simulator's (its timers ran late and its thread was busy).
//!
//! The sampler is an OS thread of its own with blocking reads, so that it
//! keeps its clock when the simulator's single-threaded loop falls behind.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::report::{cpu_ticks, machine_ticks, postgres_ticks, processes_ticks};

/// One second of the window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Second {
    /// Cores' worth of CPU the simulator, the servers and PostgreSQL used.
    pub simulator: f64,
    pub servers: f64,
    pub postgres: f64,
    /// The share of the machine's CPU that was busy.
    pub machine_busy: f64,
    /// From the servers' own request-duration histograms, when their metrics
    /// listeners were given: requests answered, and of them over the bound.
    pub served: Option<(u64, u64)>,
}

/// What the sampler reads once a second.
struct Reading {
    at: Instant,
    simulator: u64,
    servers: u64,
    postgres: u64,
    machine: (u64, u64),
    histogram: Option<(u64, u64)>,
}

/// Samples every second from `from` to `to` on a thread of its own; the
/// handle gives the seconds, keyed by the Unix second each one ended in.
pub fn sample(
    from: Instant,
    to: Instant,
    server_pids: Vec<u32>,
    metrics: Vec<SocketAddr>,
    slow_seconds: f64,
) -> std::thread::JoinHandle<BTreeMap<i64, Second>> {
    std::thread::spawn(move || {
        let read = || Reading {
            at: Instant::now(),
            simulator: cpu_ticks("/proc/self/stat").map_or(0, |(_, t)| t),
            servers: processes_ticks(&server_pids).unwrap_or_default(),
            postgres: postgres_ticks(),
            machine: machine_ticks().unwrap_or_default(),
            histogram: (!metrics.is_empty())
                .then(|| {
                    metrics
                        .iter()
                        .map(|at| requests_over(*at, slow_seconds))
                        .try_fold((0, 0), |(n, s), one| one.map(|(a, b)| (n + a, s + b)))
                })
                .flatten(),
        };
        let mut seconds = BTreeMap::new();
        std::thread::sleep(from.saturating_duration_since(Instant::now()));
        let mut last = read();
        while last.at < to {
            std::thread::sleep(Duration::from_secs(1).saturating_sub(last.at.elapsed()));
            let now = read();
            let span = now.at.duration_since(last.at).as_secs_f64().max(1e-9);
            let cores = |a: u64, b: u64| b.saturating_sub(a) as f64 / crate::report::TICKS / span;
            let (busy, total) = (
                now.machine.0.saturating_sub(last.machine.0),
                now.machine.1.saturating_sub(last.machine.1),
            );
            seconds.insert(
                chrono::Utc::now().timestamp(),
                Second {
                    simulator: cores(last.simulator, now.simulator),
                    servers: cores(last.servers, now.servers),
                    postgres: cores(last.postgres, now.postgres),
                    machine_busy: busy as f64 / total.max(1) as f64,
                    served: last
                        .histogram
                        .zip(now.histogram)
                        .map(|(a, b)| (b.0.saturating_sub(a.0), b.1.saturating_sub(a.1))),
                },
            );
            last = now;
        }
        seconds
    })
}

/// `(requests, requests over `bound` seconds)` so far from one server's
/// `/metrics`, summed over its routes; `None` when it cannot be read.
fn requests_over(at: SocketAddr, bound: f64) -> Option<(u64, u64)> {
    let mut stream = TcpStream::connect_timeout(&at, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {at}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(histogram_over(&text, bound))
}

/// The request-duration histogram's count, and the count over `bound`
/// seconds (its bucket bound must be one of the histogram's), summed over
/// every method and route of a Prometheus text.
pub fn histogram_over(text: &str, bound: f64) -> (u64, u64) {
    const NAME: &str = "presence_http_request_duration_seconds";
    let value = |line: &str| -> u64 {
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    let (mut count, mut within) = (0, 0);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(NAME) else {
            continue;
        };
        if rest.starts_with("_count") {
            count += value(line);
        } else if rest.starts_with("_bucket")
            && let Some(le) = rest.split("le=\"").nth(1).and_then(|l| l.split('"').next())
            && le.parse::<f64>().is_ok_and(|le| (le - bound).abs() < 1e-9)
        {
            within += value(line);
        }
    }
    (count, count.saturating_sub(within))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_slow_requests_are_the_count_less_the_bound_s_bucket_over_every_route() {
        let text = "\
# TYPE presence_http_request_duration_seconds histogram
presence_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/statuses\",le=\"0.025\"} 90
presence_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/statuses\",le=\"0.05\"} 95
presence_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/statuses\",le=\"+Inf\"} 100
presence_http_request_duration_seconds_sum{method=\"GET\",route=\"/v1/statuses\"} 1.5
presence_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/statuses\"} 100
presence_http_request_duration_seconds_bucket{method=\"PUT\",route=\"/v1/presence\",le=\"0.05\"} 40
presence_http_request_duration_seconds_bucket{method=\"PUT\",route=\"/v1/presence\",le=\"+Inf\"} 48
presence_http_request_duration_seconds_count{method=\"PUT\",route=\"/v1/presence\"} 48
presence_http_requests_total{method=\"GET\",route=\"/v1/statuses\",status=\"200\"} 100
";
        assert_eq!(histogram_over(text, 0.05), (148, 13));
    }
}

//! Prometheus metrics: one registry per server, rendered at `GET /metrics` on the metrics listener.
//!
//! Every label takes a value from a fixed set, whatever clients send: methods
//! outside the API's fold into `OTHER`, unmatched paths into `unmatched`.

use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::{Method, StatusCode};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The figures an operator watches, registered in this server's own registry.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by method, route template and status code.
    pub http_requests: IntCounterVec,
    /// Request latency, by method and route template.
    pub http_duration: HistogramVec,
    /// Pings written, by path: `batched` by the ping writer, or `direct` (settings changes).
    pub pings: IntCounterVec,
    /// Batches of pings the ping writer wrote (`pings_total{outcome="batched"}` over this: pings a commit).
    pub ping_batches: IntCounter,
    /// Requests refused by a rate limit, by limit: `ping` or `settings`.
    pub rate_limited: IntCounterVec,
    /// Read cache lookups, by result: `hit` or `miss`.
    pub cache_lookups: IntCounterVec,
    /// Device entries removed by this server's prune runs.
    pub devices_pruned: IntCounter,
    /// How long this server's prune runs took.
    pub prune_duration: Histogram,
    /// Users by effective status, as a status read by anyone else shows them (an
    /// invisible user counts as offline), counted in the background.
    pub users: IntGaugeVec,
    /// Database pool connections, by state: `open`, `idle`, `in_use`; and requests `waiting` for one.
    pub pool_connections: IntGaugeVec,
    /// Status reads that missed the cache, by the server that answered: `primary` or `replica`.
    pub database_reads: IntCounterVec,
    /// Users' rows asked for by those reads, by the server asked: what a pause of the database may not multiply.
    pub database_rows_read: IntCounterVec,
    /// Lookups of whether a viewer is in any block (one per viewer while fresh, however many polls).
    pub block_lookups: IntCounter,
    /// Read replicas in rotation now (keeping up within `PRESENCE_REPLICA_MAX_LAG`).
    pub replicas_in_rotation: IntGauge,
    /// Changes this server's feed job published to the change feed.
    pub feed_changes_published: IntCounter,
    /// How long after its instant each change was published (what a feed reader waits at least).
    pub feed_publish_delay: Histogram,
    /// Seconds from the instant of the newest change in the feed to now, as the feed job last saw it.
    pub feed_lag_seconds: prometheus::Gauge,
    /// Due users the feed job's search every 5 s found that its quarter-second search had passed over (writes committed late).
    pub feed_found_late: IntCounter,
    /// Changes sent by webhook, by outcome: `delivered` (acknowledged) or `dropped` (past the maximum age).
    pub webhook_changes: IntCounterVec,
    /// Webhook POSTs that failed (an answer other than 2xx, or none in time).
    pub webhook_failures: IntCounter,
    /// Seconds from the instant of the oldest change not yet delivered by webhook to now (0: caught up).
    pub webhook_lag_seconds: prometheus::Gauge,
}

impl Metrics {
    /// A fresh registry with every metric of the service.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("presence".to_owned()), None)
            .expect("a valid registry prefix");
        let metrics = Self {
            http_requests: IntCounterVec::new(
                Opts::new("http_requests_total", "HTTP requests answered"),
                &["method", "route", "status"],
            )
            .expect("a valid metric definition"),
            http_duration: HistogramVec::new(
                HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ]),
                &["method", "route"],
            )
            .expect("a valid metric definition"),
            pings: IntCounterVec::new(
                Opts::new("pings_total", "Pings taken, by outcome"),
                &["outcome"],
            )
            .expect("a valid metric definition"),
            ping_batches: IntCounter::new(
                "ping_batches_total",
                "Batches of pings written by the ping writer, each one call and one commit",
            )
            .expect("a valid metric definition"),
            rate_limited: IntCounterVec::new(
                Opts::new("rate_limited_total", "Requests refused by a rate limit"),
                &["limit"],
            )
            .expect("a valid metric definition"),
            cache_lookups: IntCounterVec::new(
                Opts::new("cache_lookups_total", "Read cache lookups, by result"),
                &["result"],
            )
            .expect("a valid metric definition"),
            devices_pruned: IntCounter::new(
                "devices_pruned_total",
                "Device entries removed by prune runs",
            )
            .expect("a valid metric definition"),
            prune_duration: Histogram::with_opts(HistogramOpts::new(
                "prune_duration_seconds",
                "How long prune runs took",
            ))
            .expect("a valid metric definition"),
            users: IntGaugeVec::new(Opts::new("users", "Users by effective status"), &["status"])
                .expect("a valid metric definition"),
            pool_connections: IntGaugeVec::new(
                Opts::new("db_pool_connections", "Database pool connections, by state"),
                &["state"],
            )
            .expect("a valid metric definition"),
            database_reads: IntCounterVec::new(
                Opts::new(
                    "database_reads_total",
                    "Status reads that missed the cache, by the server that answered",
                ),
                &["server"],
            )
            .expect("a valid metric definition"),
            database_rows_read: IntCounterVec::new(
                Opts::new(
                    "database_rows_read_total",
                    "Users' rows asked for by status reads that missed the cache, by the server asked",
                ),
                &["server"],
            )
            .expect("a valid metric definition"),
            block_lookups: IntCounter::new(
                "block_lookups_total",
                "Lookups of whether a viewer is in any block",
            )
            .expect("a valid metric definition"),
            replicas_in_rotation: IntGauge::new(
                "replicas_in_rotation",
                "Read replicas in rotation now",
            )
            .expect("a valid metric definition"),
            feed_changes_published: IntCounter::new(
                "feed_changes_published_total",
                "Changes published to the change feed by this server's feed job",
            )
            .expect("a valid metric definition"),
            feed_publish_delay: Histogram::with_opts(
                HistogramOpts::new(
                    "feed_publish_delay_seconds",
                    "How long after its instant each change was published to the feed",
                )
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0]),
            )
            .expect("a valid metric definition"),
            feed_lag_seconds: prometheus::Gauge::new(
                "feed_lag_seconds",
                "Seconds from the instant of the newest change in the feed to now",
            )
            .expect("a valid metric definition"),
            feed_found_late: IntCounter::new(
                "feed_found_late_total",
                "Due users the feed job's full search found that its quarter-second search had passed over",
            )
            .expect("a valid metric definition"),
            webhook_changes: IntCounterVec::new(
                Opts::new("webhook_changes_total", "Changes sent by webhook, by outcome"),
                &["outcome"],
            )
            .expect("a valid metric definition"),
            webhook_failures: IntCounter::new(
                "webhook_failures_total",
                "Webhook POSTs that failed (not 2xx, or no answer in time)",
            )
            .expect("a valid metric definition"),
            webhook_lag_seconds: prometheus::Gauge::new(
                "webhook_lag_seconds",
                "Seconds from the instant of the oldest change not yet delivered by webhook to now",
            )
            .expect("a valid metric definition"),
            registry,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 21] = [
            Box::new(metrics.http_requests.clone()),
            Box::new(metrics.http_duration.clone()),
            Box::new(metrics.pings.clone()),
            Box::new(metrics.ping_batches.clone()),
            Box::new(metrics.rate_limited.clone()),
            Box::new(metrics.cache_lookups.clone()),
            Box::new(metrics.devices_pruned.clone()),
            Box::new(metrics.prune_duration.clone()),
            Box::new(metrics.users.clone()),
            Box::new(metrics.pool_connections.clone()),
            Box::new(metrics.database_reads.clone()),
            Box::new(metrics.database_rows_read.clone()),
            Box::new(metrics.block_lookups.clone()),
            Box::new(metrics.replicas_in_rotation.clone()),
            Box::new(metrics.feed_changes_published.clone()),
            Box::new(metrics.feed_publish_delay.clone()),
            Box::new(metrics.feed_lag_seconds.clone()),
            Box::new(metrics.feed_found_late.clone()),
            Box::new(metrics.webhook_changes.clone()),
            Box::new(metrics.webhook_failures.clone()),
            Box::new(metrics.webhook_lag_seconds.clone()),
        ];
        for collector in collectors {
            // Names are fixed and distinct: registering cannot clash.
            let _ = metrics.registry.register(collector);
        }
        metrics
    }

    /// Counts one answered request and its latency, under bounded labels.
    pub fn observe_request(&self, request: &HttpRequest, status: StatusCode, took: Duration) {
        let method = method_label(request.method());
        let route = request.match_pattern();
        let route = route.as_deref().unwrap_or("unmatched");
        self.http_requests
            .with_label_values(&[method, route, status.as_str()])
            .inc();
        self.http_duration
            .with_label_values(&[method, route])
            .observe(took.as_secs_f64());
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::error!(%error, "could not render the metrics");
        }
        String::from_utf8(text).unwrap_or_default()
    }
}

/// The method label: one of the methods HTTP defines, or `OTHER` for anything a client made up.
fn method_label(method: &Method) -> &'static str {
    static KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
        Method::TRACE,
        Method::CONNECT,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("OTHER", Method::as_str)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_fold_into_one_label() {
        for made_up in ["FOOBAR", "get", "X1", "PROPFIND"] {
            let method = Method::from_bytes(made_up.as_bytes()).expect("a token");
            assert_eq!(method_label(&method), "OTHER", "{made_up}");
        }
        assert_eq!(method_label(&Method::PUT), "PUT");
        assert_eq!(method_label(&Method::HEAD), "HEAD");
    }
}

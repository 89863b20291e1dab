//! What every handler shares: the services, the clock, the thresholds, the limits, the metrics.

use std::sync::Arc;

use crate::clock::Clock;
use crate::domain::UserId;
use crate::error::ApiError;
use crate::feed::Feed;
use crate::history::History;
use crate::metrics::Metrics;
use crate::presence::Thresholds;
use crate::rate_limit::UserRateLimiter;
use crate::rooms::Rooms;
use crate::statuses::Statuses;

/// What every handler shares.
pub struct AppState {
    /// Reads and writes of statuses, through the read cache and the ping writer.
    pub statuses: Statuses,
    /// Reads of presence history.
    pub history: History,
    /// Room memberships: joins, renewals, leaves and reads.
    pub rooms: Rooms,
    /// Reads of the change feed.
    pub feed: Feed,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// The status thresholds.
    pub thresholds: Thresholds,
    /// How often clients should heartbeat, returned by each ping.
    pub ping_interval_seconds: u64,
    /// The per-user limit on `PUT /api/status`.
    pub put_limiter: UserRateLimiter,
    /// The tighter per-user limit on settings changes and blocks.
    pub settings_limiter: UserRateLimiter,
    /// This server's metrics.
    pub metrics: Arc<Metrics>,
    /// Set at SIGTERM: `/readyz` fails from then on, while requests are still served.
    pub draining: std::sync::atomic::AtomicBool,
}

impl AppState {
    /// Counts a ping of `user` against the ping limit.
    pub fn limit_pings(&self, user: UserId) -> Result<(), ApiError> {
        self.counted(self.put_limiter.check(user), "ping")
    }

    /// Counts a settings or block change of `user` against the settings limit.
    pub fn limit_settings(&self, user: UserId) -> Result<(), ApiError> {
        self.counted(self.settings_limiter.check(user), "settings")
    }

    fn counted(&self, outcome: Result<(), ApiError>, limit: &str) -> Result<(), ApiError> {
        if outcome.is_err() {
            self.metrics.rate_limited.with_label_values(&[limit]).inc();
        }
        outcome
    }
}

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::time::MissedTickBehavior;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::presence::{Status, Thresholds};
use crate::store;

/// Keeps the `presence_users` gauge current: counted in the background, on a
/// connection of its own, so that a scrape never touches the database.
pub struct UserCounts {
    /// A pool of one connection that only this task uses.
    pub pool: PgPool,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// The status thresholds.
    pub thresholds: Thresholds,
    /// How often to count.
    pub every: Duration,
    /// How long one count may take before it is given up until the next period.
    pub deadline: Duration,
    /// Where the counts go.
    pub metrics: Arc<Metrics>,
}

impl UserCounts {
    /// Counts every period until the task is dropped; a failed count leaves the last figures.
    pub async fn run_forever(self) {
        let mut ticker = tokio::time::interval(self.every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let counting =
                store::count_users_by_status(&self.pool, self.clock.now(), &self.thresholds);
            match tokio::time::timeout(self.every.max(self.deadline), counting).await {
                Ok(Ok(counts)) => {
                    for status in [
                        Status::Online,
                        Status::Idle,
                        Status::Away,
                        Status::Dnd,
                        Status::Offline,
                    ] {
                        let name = status.as_str();
                        let users = counts
                            .iter()
                            .find(|(counted, _)| counted == name)
                            .map_or(0, |(_, users)| *users);
                        self.metrics.users.with_label_values(&[name]).set(users);
                    }
                }
                Ok(Err(error)) => tracing::warn!(%error, "could not count users by status"),
                Err(_) => tracing::warn!("counting users by status took too long; retrying"),
            }
        }
    }
}

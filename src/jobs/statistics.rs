//! Keeps the planner's statistics of the keyed tables in step with a fast
//! growth that autovacuum, looking once a minute, would see late (see
//! [`store::analyze_grown_tables`]).

use std::time::Duration;

use sqlx::PgPool;
use tokio::time::MissedTickBehavior;

use crate::store;

/// How often the sizes are checked: one small catalog query each time.
pub const STATISTICS_EVERY: Duration = Duration::from_secs(5);

/// Runs [`store::analyze_grown_tables`] every `every` until the task is
/// dropped; a failure is logged and tried again next period.
pub async fn keep_statistics_current(pool: PgPool, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match store::analyze_grown_tables(&pool).await {
            Ok(analyzed) if !analyzed.is_empty() => {
                tracing::info!(tables = ?analyzed, "analyzed tables that doubled since their last statistics");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not check the tables' statistics"),
        }
    }
}

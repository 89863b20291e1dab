//! Scheduled work the server runs beside the requests.

pub mod history;
mod prune;
mod user_counts;

pub use prune::{
    PRUNE_CHUNK, PRUNE_JOB, PruneSchedule, RETENTION_CHUNK, enforce_history_retention,
    run_scheduled_prune,
};
pub use user_counts::UserCounts;

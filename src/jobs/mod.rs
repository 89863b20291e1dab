//! Scheduled work the server runs beside the requests.

mod prune;
mod user_counts;

pub use prune::{PRUNE_CHUNK, PRUNE_JOB, PruneSchedule, run_scheduled_prune};
pub use user_counts::UserCounts;

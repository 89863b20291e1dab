//! Scheduled work the server runs beside the requests.

mod prune;

pub use prune::{PRUNE_JOB, PruneSchedule, run_scheduled_prune};

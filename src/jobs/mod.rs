//! Scheduled work the server runs beside the requests.

mod feed;
pub mod history;
mod prune;
mod statistics;
mod user_counts;

pub use feed::{FEED_EVERY, FEED_LOCK, FeedRun, FeedSchedule, FeedSearch, run_feed_job};
pub use prune::{
    PRUNE_CHUNK, PRUNE_JOB, PruneSchedule, RETENTION_CHUNK, enforce_history_retention,
    run_scheduled_prune,
};
pub use statistics::{STATISTICS_EVERY, keep_statistics_current};
pub use user_counts::UserCounts;

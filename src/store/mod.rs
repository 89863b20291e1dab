//! Every SQL statement of the service; functions take any executor (pool, connection, transaction).

mod blocks;
pub mod citus;
mod feed;
mod history;
mod jobs;
mod pg_cron;
mod replication;
mod rooms;
mod schema;
mod statistics;
mod status;

pub use blocks::{
    BlockError, MAX_BLOCKS_PER_USER, add_block, in_any_block, list_blocks, remove_block,
};
pub use feed::{
    FeedBounds, FeedCandidate, StoredChange, advance_feed, configure_feed, delete_expired_changes,
    feed_candidates, feed_enabled, newest_change_at, publish_changes, read_changes,
    record_webhook_position, set_feed_enabled, users_due, webhook_position,
};
pub use history::{
    BucketStats, HistoryDeleted, HistorySettings, active_since, compute_bucket_stats,
    delete_history_before, fetch_history, fetch_history_settings, fetch_rollups, history_start,
    oldest_history, read_history_snapshot, record_history_settings, store_rollup, users_live_at,
};
pub use jobs::{claim_job_run, prune_stale_devices, try_job_lock};
pub use pg_cron::{PG_CRON_JOB, PgCronError, install_pg_cron_job, uninstall_pg_cron_job};
pub use replication::{current_wal_position, is_in_recovery, replayed_wal_position};
pub use rooms::{
    Membership, RoomPingOutcome, RoomPingWritten, RoomRules, UserRoom, fetch_room_members,
    fetch_rooms_of_user, leave_room, leave_rooms_of_device, prune_room_members, room_ping,
};
pub use schema::{
    MIGRATOR, install_sql_functions, install_sql_functions_with_settings, pending_migrations,
};
pub use statistics::{KEYED_TABLES, analyze_grown_tables};
pub use status::{
    PingWrite, apply_ping, apply_pings, count_users_by_status, fetch_status, fetch_statuses,
    fetch_statuses_for_viewer, remove_device,
};

/// The channel every write announces its rows (and block pairs) on, delivered at commit.
pub const CHANGE_CHANNEL: &str = "presence_changes";

/// Sends `payload` on the change channel (the listener's freshness probes).
pub async fn announce(
    executor: impl sqlx::PgExecutor<'_>,
    payload: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("select pg_notify($1, $2)")
        .bind(CHANGE_CHANNEL)
        .bind(payload)
        .execute(executor)
        .await
        .map(|_| ())
}

/// Lets the statements of the current transaction run up to `minutes`
/// (background work past the request path's statement timeout).
pub async fn allow_long_statements(
    connection: &mut sqlx::PgConnection,
    minutes: u32,
) -> Result<(), sqlx::Error> {
    // A number this module formats: no input reaches the statement.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "set local statement_timeout = '{minutes}min'"
    )))
    .execute(connection)
    .await
    .map(|_| ())
}

//! Every SQL statement of the service; functions take any executor (pool, connection, transaction).

mod blocks;
mod jobs;
mod pg_cron;
mod status;

pub use blocks::{
    BlockError, BlockRelation, MAX_BLOCKS_PER_USER, add_block, block_relations, list_blocks,
    remove_block,
};
pub use jobs::{
    claim_job_run, install_sql_functions, pending_migrations, prune_stale_devices, try_job_lock,
};
pub use pg_cron::{PG_CRON_JOB, PgCronError, install_pg_cron_job, uninstall_pg_cron_job};
pub use status::{
    PendingPings, apply_pending_pings, apply_ping, count_users_by_status, fetch_status,
    fetch_statuses, fetch_statuses_for_viewer, remove_device,
};

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

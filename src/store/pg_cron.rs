//! Registering the prune job with pg_cron, for deployments that schedule inside Postgres.
//!
//! These statements use unchecked `sqlx::query`: the `cron` schema exists only
//! where pg_cron is installed, never in the database the query cache is built on.

use chrono::TimeDelta;
use sqlx::PgPool;

/// The pg_cron job name the prune job is registered under.
pub const PG_CRON_JOB: &str = "presence-prune-stale-devices";

/// Why pg_cron could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PgCronError {
    /// The extension is not installed in this database and could not be created.
    #[error(
        "pg_cron is not available in this database ({0}). Install it (Debian: postgresql-<version>-cron), \
         add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart \
         PostgreSQL, then run this again (it creates the extension)"
    )]
    Missing(String),
    /// Any other database error.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Registers (or updates) the prune job with pg_cron on `schedule`: stale
/// devices, and room memberships ended by `room_timeout`; returns pg_cron's job id.
pub async fn install_pg_cron_job(
    pool: &PgPool,
    schedule: &str,
    older_than: TimeDelta,
    max_devices: u32,
    room_timeout: TimeDelta,
) -> Result<i64, PgCronError> {
    ensure_pg_cron(pool).await?;
    let command = format!(
        "select prune_stale_devices(interval '{} milliseconds', {max_devices}); \
         select prune_room_members(now() - interval '{} milliseconds')",
        older_than.num_milliseconds(),
        room_timeout.num_milliseconds()
    );
    let job_id = sqlx::query_scalar("select cron.schedule($1, $2, $3)")
        .bind(PG_CRON_JOB)
        .bind(schedule)
        .bind(command)
        .fetch_one(pool)
        .await?;
    Ok(job_id)
}

/// Removes the prune job from pg_cron; returns whether it was registered.
pub async fn uninstall_pg_cron_job(pool: &PgPool) -> Result<bool, PgCronError> {
    ensure_pg_cron(pool).await?;
    let removed: Vec<bool> =
        sqlx::query_scalar("select cron.unschedule(jobid) from cron.job where jobname = $1")
            .bind(PG_CRON_JOB)
            .fetch_all(pool)
            .await?;
    Ok(!removed.is_empty())
}

async fn ensure_pg_cron(pool: &PgPool) -> Result<(), PgCronError> {
    let installed = sqlx::query_scalar!(
        r#"select exists (select 1 from pg_extension where extname = 'pg_cron') as "installed!""#
    )
    .fetch_one(pool)
    .await?;
    if installed {
        return Ok(());
    }
    match sqlx::query("create extension if not exists pg_cron")
        .execute(pool)
        .await
    {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(error)) => Err(PgCronError::Missing(error.message().to_owned())),
        Err(other) => Err(other.into()),
    }
}

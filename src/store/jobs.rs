use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::types::PgInterval;
use sqlx::{PgConnection, PgExecutor};

/// Runs the prune job once (see `sql/prune_stale_devices.sql`), over at most
/// `max_users` users when given; returns how many entries it removed.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn prune_stale_devices(
    executor: impl PgExecutor<'_>,
    older_than: TimeDelta,
    max_devices: Option<u32>,
    at: DateTime<Utc>,
    max_users: Option<u32>,
) -> Result<u64, sqlx::Error> {
    let older_than = PgInterval::try_from(older_than).map_err(sqlx::Error::Encode)?;
    let max_devices = max_devices.map(|max| i32::try_from(max).unwrap_or(i32::MAX));
    let max_users = max_users.map(|max| i32::try_from(max).unwrap_or(i32::MAX));
    let removed = sqlx::query_scalar!(
        r#"select prune_stale_devices($1, $2, $3, $4) as "removed!""#,
        older_than,
        max_devices,
        at,
        max_users,
    )
    .fetch_one(executor)
    .await?;
    Ok(u64::try_from(removed).unwrap_or_default())
}

/// Tries the transaction-scoped advisory lock `key`; `false` if another session holds it.
pub async fn try_job_lock(executor: impl PgExecutor<'_>, key: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(r#"select pg_try_advisory_xact_lock($1) as "locked!""#, key)
        .fetch_one(executor)
        .await
}

/// Claims this period's run of `job`: `true` unless it already ran less than `period` ago.
///
/// The claim is an update of the job's row (made first if missing), so of
/// several instances asking at once exactly one gets it: the others wait on
/// the row and then find it claimed. It commits or rolls back with the job's
/// work. (Two plain statements: on Citus, where `job_runs` is a reference
/// table, an upsert's conflict clause may hold only immutable functions.)
pub async fn claim_job_run(
    connection: &mut PgConnection,
    job: &str,
    period: Duration,
) -> Result<bool, sqlx::Error> {
    let period = PgInterval::try_from(period).map_err(sqlx::Error::Encode)?;
    sqlx::query!(
        "insert into job_runs (job, last_run_at, runs) values ($1, '-infinity', 0)
         on conflict (job) do nothing",
        job,
    )
    .execute(&mut *connection)
    .await?;
    let claimed = sqlx::query!(
        "update job_runs
         set last_run_at = now(), runs = runs + 1, updated_at = now()
         where job = $1 and last_run_at <= now() - $2::interval",
        job,
        period,
    )
    .execute(&mut *connection)
    .await?
    .rows_affected();
    Ok(claimed > 0)
}

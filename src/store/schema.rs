//! The schema: the embedded migrations and the SQL functions of `sql/`.

use sqlx::{PgExecutor, PgPool};

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// The SQL functions in `sql/`, applied after the migrations.
const SQL_FUNCTIONS: [&str; 8] = [
    include_str!("../../sql/announce_changes.sql"),
    include_str!("../../sql/rooms.sql"),
    include_str!("../../sql/remove_device.sql"),
    include_str!("../../sql/prune_stale_devices.sql"),
    include_str!("../../sql/apply_pings.sql"),
    include_str!("../../sql/history_stats.sql"),
    include_str!("../../sql/history_trigger.sql"),
    include_str!("../../sql/feed.sql"),
];

/// Applies the SQL functions, then the history settings and the thresholds
/// the change feed computes with, in one transaction under the lock.
pub async fn install_sql_functions_with_settings(
    pool: &PgPool,
    history: &super::HistorySettings,
    thresholds: &crate::presence::Thresholds,
) -> Result<(), sqlx::Error> {
    install(pool, Some((history, thresholds))).await
}

/// The advisory lock held while `sql/` is applied, so instances starting together do not collide.
const SQL_FUNCTIONS_LOCK: i64 = 0x7072_6573_656e_6301;

/// Applies the SQL functions in `sql/` (idempotent `create or replace`).
pub async fn install_sql_functions(pool: &PgPool) -> Result<(), sqlx::Error> {
    install(pool, None).await
}

async fn install(
    pool: &PgPool,
    settings: Option<(&super::HistorySettings, &crate::presence::Thresholds)>,
) -> Result<(), sqlx::Error> {
    let mut transaction = pool.begin().await?;
    sqlx::query!(
        r#"select true as "locked!" from pg_advisory_xact_lock($1)"#,
        SQL_FUNCTIONS_LOCK
    )
    .fetch_one(&mut *transaction)
    .await?;
    let distributed = super::citus::is_distributed(&mut transaction).await?;
    if distributed {
        // The history settings and sql/feed.sql re-create triggers of user_status, which run on the workers.
        sqlx::query("set local citus.enable_unsafe_triggers to on")
            .execute(&mut *transaction)
            .await?;
    }
    for function in SQL_FUNCTIONS {
        sqlx::raw_sql(function).execute(&mut *transaction).await?;
    }
    if distributed {
        super::citus::tune_functions(&mut transaction).await?;
    }
    if let Some((history, thresholds)) = settings {
        super::record_history_settings(&mut *transaction, history).await?;
        super::configure_feed(&mut *transaction, thresholds).await?;
    }
    transaction.commit().await
}

/// How many of the embedded migrations the database has not applied (readiness).
pub async fn pending_migrations(executor: impl PgExecutor<'_>) -> Result<usize, sqlx::Error> {
    let applied: Vec<i64> =
        sqlx::query_scalar!("select version from _sqlx_migrations where success order by version")
            .fetch_all(executor)
            .await?;
    Ok(MIGRATOR
        .iter()
        .filter(|migration| !migration.migration_type.is_down_migration())
        .filter(|migration| applied.binary_search(&migration.version).is_err())
        .count())
}

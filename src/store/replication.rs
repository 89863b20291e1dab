//! What the replicas' watch asks: whether a server is a standby, and WAL positions.

use sqlx::PgExecutor;

/// Whether the server is a standby (in recovery); a promoted one is not.
pub async fn is_in_recovery(executor: impl PgExecutor<'_>) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select pg_is_in_recovery()")
        .fetch_one(executor)
        .await
}

/// The primary's current WAL position, as a byte offset.
pub async fn current_wal_position(executor: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar::<_, Option<i64>>("select (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
        .fetch_one(executor)
        .await
        .map(Option::unwrap_or_default)
}

/// How far a standby has replayed the WAL, as a byte offset (0 before any replay).
pub async fn replayed_wal_position(executor: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar::<_, Option<i64>>(
        "select (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint",
    )
    .fetch_one(executor)
    .await
    .map(Option::unwrap_or_default)
}

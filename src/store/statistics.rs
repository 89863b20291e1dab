//! The planner's statistics of the tables the requests read by key.

use sqlx::PgExecutor;

/// The tables the request paths read by key (`= any($1)` and point lookups),
/// whose plans go wrong while PostgreSQL believes them small.
pub const KEYED_TABLES: [&str; 4] = [
    "user_status",
    "room_members",
    "user_blocks",
    "device_sessions",
];

/// Analyzes each of [`KEYED_TABLES`] that has at least doubled (and is past
/// a few pages) since PostgreSQL last counted it; returns those it analyzed.
///
/// Every session plans a statement once (`plan_cache_mode =
/// force_generic_plan`), and a plan made while a table was nearly empty
/// scans it whole for as long as it is kept: until the table's statistics
/// change. Autovacuum looks at a database once a minute, so a table that
/// fills quickly (a new deployment's first users) would be scanned whole by
/// every read and write in between. An `ANALYZE` sends every session to plan
/// again, now with the index. A table autovacuum keeps up with never doubles
/// between two of its analyses, so this does nothing then. `SKIP_LOCKED`: a
/// table autovacuum is busy with is left to it.
pub async fn analyze_grown_tables(
    executor: impl PgExecutor<'_> + Copy,
) -> Result<Vec<String>, sqlx::Error> {
    let grown: Vec<String> = sqlx::query_scalar!(
        r#"select c.relname::text as "name!"
           from pg_class as c
           where c.relnamespace = 'public'::regnamespace
             and c.relname = any($1)
             and c.relkind = 'r'
             and pg_relation_size(c.oid) / current_setting('block_size')::bigint
                 >= 2 * greatest(c.relpages, 0) + 8
           order by c.relname"#,
        &KEYED_TABLES.map(str::to_owned) as &[String],
    )
    .fetch_all(executor)
    .await?;
    for table in &grown {
        // `table` is one of KEYED_TABLES: the query above names no other.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "analyze (skip_locked) {table}"
        )))
        .execute(executor)
        .await?;
    }
    Ok(grown)
}

//! Citus (distributed PostgreSQL): the tables sharded by user, and what the
//! server does differently on a distributed database.
//!
//! Every table holding a user's data is distributed by `user_id`, all
//! co-located with `user_status`, so one user's rows (status, history,
//! blocks) live on one worker and a statement naming one user runs there
//! whole. Room memberships are distributed by `room_id` instead: a room's
//! members are on one shard. The small shared tables are reference tables (a copy on every
//! node). `presence migrate --citus` distributes them; the server then
//! notices the distributed schema at start-up by itself.
//!
//! These statements use Citus's functions, which a plain PostgreSQL does
//! not have: they are checked where Citus runs (`PRESENCE_TEST_CITUS_URL`,
//! see docs/scaling.md), not at compile time.

use std::collections::BTreeMap;

use sqlx::{Acquire, PgConnection, PgPool};
use uuid::Uuid;

use super::PingWrite;
use crate::domain::UserId;
use crate::presence::{Hidden, StoredStatus};

/// The tables distributed by `user_id`, co-located with the first.
pub const DISTRIBUTED_TABLES: [&str; 6] = [
    "user_status",
    "device_sessions",
    "activity_spans",
    "settings_changes",
    "user_blocks",
    "feed_staged",
];

/// The tables distributed by `room_id`: one room's members on one shard, so
/// a room read is a single-shard statement.
pub const ROOM_TABLES: [&str; 1] = ["room_members"];

/// The tables copied to every node: settings every worker's trigger reads,
/// and bookkeeping of the jobs (no user's data).
pub const REFERENCE_TABLES: [&str; 4] = [
    "history_settings",
    "job_runs",
    "history_rollups",
    "feed_settings",
];

/// The tables left on the coordinator: the published change feed (one
/// node's commit publishes a whole batch, so readers see its numbers in
/// order), and where webhook delivery stands.
pub const COORDINATOR_TABLES: [&str; 3] = ["status_feed", "feed_numbers", "webhook_deliveries"];

/// The functions worker nodes run: the triggers of `user_status`, which run
/// where its rows are (the history trigger writes the same user's rows of the
/// co-located history tables, so it stays on that worker; the feed's stage
/// the changes in the co-located `feed_staged`, with the functions they call),
/// and `ping_users`, whose distribution carries the type `ping_input` of the
/// ping statements to the workers; `user_minute` and `feed_search_minute`,
/// which the device summary and the feed compute their indexed minutes with.
pub const WORKER_FUNCTIONS: [&str; 13] = [
    "user_minute(uuid, timestamptz)",
    "feed_search_minute(uuid, timestamptz, timestamptz)",
    "user_status_summarize_devices()",
    "user_status_bump_version()",
    "user_status_track_history()",
    "ping_users(ping_input[])",
    "feed_floor(timestamptz, interval)",
    "feed_status(timestamptz, timestamptz, timestamptz, text, timestamptz, boolean, boolean, timestamptz, feed_settings)",
    "feed_next_change(timestamptz, timestamptz, timestamptz, timestamptz, feed_settings, timestamptz)",
    "feed_stage(uuid, timestamptz, text, text, text, text, text)",
    "feed_current_settings()",
    "user_status_feed()",
    "user_status_feed_insert()",
];

/// Whether the schema is distributed (`presence migrate --citus` has run).
pub async fn is_distributed(connection: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let citus = sqlx::query_scalar::<_, bool>(
        "select to_regclass('pg_catalog.pg_dist_partition') is not null",
    )
    .fetch_one(&mut *connection)
    .await?;
    if !citus {
        return Ok(false);
    }
    already_distributed(connection, DISTRIBUTED_TABLES[0]).await
}

/// Distributes the migrated schema on a Citus coordinator whose workers are
/// added (idempotent): the user tables by `user_id`, the shared ones as
/// reference tables, the trigger functions to the workers.
pub async fn distribute(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut connection = pool.acquire().await?;
    let connection = connection.acquire().await?;
    sqlx::query("create extension if not exists citus")
        .execute(&mut *connection)
        .await?;
    // The user_status triggers run on the workers, where its rows are (the
    // server sets this too where it re-creates the history trigger).
    sqlx::query("set citus.enable_unsafe_triggers to on")
        .execute(&mut *connection)
        .await?;
    // No history is recorded while the rows are copied to the shards: the
    // history trigger would fire on each row copied into a shard of
    // user_status, and record again what the history tables already hold.
    // (A distribution that fails midway leaves recording off until the
    // server's next start re-applies the history settings.)
    let history = super::fetch_history_settings(&mut *connection).await?;
    let paused = super::HistorySettings {
        enabled: false,
        ..history
    };
    super::record_history_settings(&mut *connection, &paused).await?;
    // Nor are changes staged for the feed: a copied row is no change.
    super::set_feed_enabled(&mut *connection, false).await?;
    // The reference tables first: the functions use their row types.
    for table in REFERENCE_TABLES {
        if !already_distributed(&mut *connection, table).await? {
            sqlx::query("select create_reference_table($1)")
                .bind(table)
                .execute(&mut *connection)
                .await?;
        }
    }
    for function in WORKER_FUNCTIONS {
        sqlx::query("select create_distributed_function($1::regprocedure)")
            .bind(function)
            .execute(&mut *connection)
            .await?;
    }
    for table in DISTRIBUTED_TABLES {
        if !already_distributed(&mut *connection, table).await? {
            let colocate_with = if table == DISTRIBUTED_TABLES[0] {
                "default"
            } else {
                DISTRIBUTED_TABLES[0]
            };
            sqlx::query("select create_distributed_table($1, 'user_id', colocate_with => $2)")
                .bind(table)
                .bind(colocate_with)
                .execute(&mut *connection)
                .await?;
        }
    }
    for table in ROOM_TABLES {
        if !already_distributed(&mut *connection, table).await? {
            sqlx::query("select create_distributed_table($1, 'room_id')")
                .bind(table)
                .execute(&mut *connection)
                .await?;
        }
    }
    super::record_history_settings(&mut *connection, &history).await?;
    super::set_feed_enabled(&mut *connection, true).await?;
    // Every session on the database plans with its values unless it says
    // otherwise (psql, cron jobs, pools the server did not open): Citus
    // refuses the generic plans PostgreSQL picks after a statement's fifth
    // run. The server's own sessions ask for it themselves (startup.rs).
    sqlx::query(
        "do $$ begin
             execute format('alter database %I set plan_cache_mode = force_custom_plan',
                            current_database());
         end $$",
    )
    .execute(&mut *connection)
    .await?;
    tune_functions(&mut *connection).await
}

/// What the `sql/` functions need on a distributed database, set again after
/// each `create or replace` of them (which clears it).
///
/// `apply_pings`, `prune_stale_devices`, `remove_device` and the room writes
/// are planned for each call's own users and room, whatever the session's
/// `plan_cache_mode`: a statement naming one shard's users (or one room) is
/// then one Citus sends whole to that shard's worker (the ping writer makes one call per shard, see
/// [`apply_pings_by_shard`]), where a generic plan of it is one Citus refuses.
pub async fn tune_functions(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    // By name: each is the only function of its name, so no signature is
    // written out here (a ping's columns are defined once: the type `ping_input`).
    for function in [
        "apply_pings",
        "prune_stale_devices",
        "remove_device",
        "room_ping",
        "leave_room",
        "leave_rooms_of_device",
        "prune_room_members",
        "feed_advance",
    ] {
        // The names are this module's constants.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "alter function {function} set plan_cache_mode = force_custom_plan"
        )))
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

async fn already_distributed(
    connection: &mut PgConnection,
    table: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar::<_, bool>(
        "select exists (select 1 from pg_catalog.pg_dist_partition where logicalrelid = to_regclass($1))",
    )
    .bind(table)
    .fetch_one(connection)
    .await
}

/// Writes a batch of pings one shard at a time, shards in ascending order:
/// each call of `apply_pings` then touches one worker, where it locks and
/// writes its rows in one statement (a statement locking rows on several
/// shards is not one Citus runs). Each shard's call commits on its own, so a
/// worker that is down fails only the pings of its shards: the outcome of
/// each ping comes back in the order of `writes`.
pub async fn apply_pings_by_shard(
    connection: &mut PgConnection,
    writes: &[PingWrite],
    max_devices: u32,
) -> Result<Vec<Result<StoredStatus, sqlx::Error>>, sqlx::Error> {
    let users: Vec<Uuid> = writes.iter().map(|write| write.user.as_uuid()).collect();
    let by_shard = positions_by_shard(&mut *connection, &users).await?;
    let mut written: Vec<Option<Result<StoredStatus, sqlx::Error>>> =
        std::iter::repeat_with(|| None).take(writes.len()).collect();
    for indexes in by_shard.into_values() {
        let group: Vec<PingWrite> = indexes.iter().map(|index| writes[*index].clone()).collect();
        match super::apply_pings(&mut *connection, &group, max_devices).await {
            Ok(rows) => {
                for (index, row) in indexes.into_iter().zip(rows) {
                    written[index] = Some(Ok(row));
                }
            }
            // The connection itself broke: the shards after this one cannot be tried on it.
            Err(error @ (sqlx::Error::Io(_) | sqlx::Error::Protocol(_))) => return Err(error),
            Err(error) => {
                for index in indexes {
                    written[index] = Some(Err(crate::error::copy_database_error(
                        &error,
                        "the pings of a shard failed",
                    )));
                }
            }
        }
    }
    Ok(written
        .into_iter()
        .map(|row| row.unwrap_or(Err(sqlx::Error::RowNotFound)))
        .collect())
}

/// The positions in `users` of each shard's users, shards in ascending order.
async fn positions_by_shard(
    connection: &mut PgConnection,
    users: &[Uuid],
) -> Result<BTreeMap<i64, Vec<usize>>, sqlx::Error> {
    let shards: Vec<i64> = sqlx::query_scalar(
        "select get_shard_id_for_distribution_column('user_status', u.user_id)
         from unnest($1::uuid[]) with ordinality as u(user_id, position)
         order by u.position",
    )
    .bind(users)
    .fetch_all(&mut *connection)
    .await?;
    let mut by_shard: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (index, shard) in shards.into_iter().enumerate() {
        by_shard.entry(shard).or_default().push(index);
    }
    Ok(by_shard)
}

/// `users` grouped by the shard that holds them, shards in ascending order
/// (a statement locking rows on several shards is not one Citus runs).
pub async fn users_by_shard(
    connection: &mut PgConnection,
    users: &[Uuid],
) -> Result<Vec<Vec<Uuid>>, sqlx::Error> {
    Ok(positions_by_shard(connection, users)
        .await?
        .into_values()
        .map(|positions| positions.into_iter().map(|index| users[index]).collect())
        .collect())
}

/// The rows of `users`, each with the block (either way) between its user and
/// `viewer`: as `fetch_statuses_for_viewer`, in two statements. The
/// viewer's blocks are one shard's (the viewer's key), the rows a statement
/// over the shards that hold them; one statement joining the two would make
/// Citus ship the blocks to every shard first, four times the cost.
pub async fn fetch_statuses_for_viewer(
    connection: &mut PgConnection,
    viewer: UserId,
    users: &[UserId],
) -> Result<Vec<(StoredStatus, Option<Hidden>)>, sqlx::Error> {
    let ids: Vec<Uuid> = users.iter().map(UserId::as_uuid).collect();
    let hidden: Vec<(Uuid, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
        "select other_id, other_last_seen from user_blocks
         where user_id = $1 and other_id = any($2)",
    )
    .bind(viewer.as_uuid())
    .bind(&ids)
    .fetch_all(&mut *connection)
    .await?;
    let hidden: std::collections::HashMap<Uuid, Hidden> = hidden
        .into_iter()
        .map(|(other, last_seen)| (other, Hidden { last_seen }))
        .collect();
    Ok(super::fetch_statuses(&mut *connection, users)
        .await?
        .into_iter()
        .map(|row| {
            let hide = hidden.get(&row.user_id.as_uuid()).copied();
            (row, hide)
        })
        .collect())
}

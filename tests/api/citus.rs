//! Citus: the schema's distribution plan, and the switch that runs the whole
//! suite on a Citus cluster.
//!
//! With `PRESENCE_TEST_CITUS_URL` naming a Citus coordinator whose workers are
//! added (and `DATABASE_URL` naming the same coordinator, where the per-test
//! databases are made), every test database is made on the workers too, given
//! the workers, and distributed with `presence migrate --citus`'s own code
//! before its first server starts: every test then runs on sharded tables.
//! Without it, the test below says loudly that the Citus run was skipped.

use std::str::FromStr;

use presence::store::citus::{
    self, COORDINATOR_TABLES, DISTRIBUTED_TABLES, REFERENCE_TABLES, ROOM_TABLES, WORKER_FUNCTIONS,
};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

use chrono::TimeDelta;
use presence::clock::ManualClock;
use presence::domain::UserId;

use crate::helpers::{
    TestApp, new_user, spawn_app, spawn_app_on_clock, spawn_app_on_single_node, start_time,
};
use crate::history::{get_ok, service_token};

/// The Citus coordinator the suite runs on, when asked.
fn citus_url() -> Option<String> {
    std::env::var("PRESENCE_TEST_CITUS_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// Applies the `sql/` functions to a test database, and distributes it when
/// the Citus switch is on.
pub async fn prepare(pool: &PgPool) {
    presence::store::install_sql_functions(pool)
        .await
        .expect("the sql/ functions apply");
    distribute_if_asked(pool).await;
}

/// With the Citus switch on, gives a test database (its `sql/` functions
/// applied) the cluster's workers and distributes its tables, once.
pub async fn distribute_if_asked(pool: &PgPool) {
    let Some(url) = citus_url() else {
        return;
    };
    // A database on another server (a test's private cluster) stays as it is.
    let options = PgConnectOptions::from_str(&url).expect("a valid PRESENCE_TEST_CITUS_URL");
    let server = pool.connect_options();
    if (server.get_host(), server.get_port()) != (options.get_host(), options.get_port()) {
        return;
    }
    let citus_installed: bool =
        sqlx::query_scalar("select exists (select 1 from pg_extension where extname = 'citus')")
            .fetch_one(pool)
            .await
            .expect("reads the extensions");
    if citus_installed && distributed(pool).await {
        return;
    }
    add_workers(pool, &url).await;
    citus::distribute(pool)
        .await
        .expect("presence migrate --citus distributes the tables");
}

/// Makes the test database on each of the cluster's workers and adds them
/// to it, with the citus extension on every node: what an operator does
/// before `presence migrate --citus`.
async fn add_workers(pool: &PgPool, url: &str) {
    let database: String = sqlx::query_scalar("select current_database()")
        .fetch_one(pool)
        .await
        .expect("names its database");
    let mut coordinator = PgConnection::connect(url)
        .await
        .expect("PRESENCE_TEST_CITUS_URL is reachable");
    let workers: Vec<(String, i32)> = sqlx::query_as(
        "select nodename, nodeport from pg_dist_node
         where groupid <> 0 and noderole = 'primary' and isactive",
    )
    .fetch_all(&mut coordinator)
    .await
    .expect("PRESENCE_TEST_CITUS_URL names a database with the citus extension");
    assert!(
        !workers.is_empty(),
        "PRESENCE_TEST_CITUS_URL names a coordinator with no worker added"
    );
    let options = PgConnectOptions::from_str(url).expect("a valid PRESENCE_TEST_CITUS_URL");
    for (host, port) in &workers {
        let worker = options
            .clone()
            .host(host)
            .port(u16::try_from(*port).expect("a port"));
        let mut server = PgConnection::connect_with(&worker)
            .await
            .expect("the coordinator's workers are reachable with its credentials");
        // Test databases' names are reused once dropped on the coordinator.
        // The name is the coordinator's own test database's (sqlx's `_sqlx_test_<n>`).
        // Two statements: DROP DATABASE cannot run in the implicit
        // transaction of a multi-statement string.
        for statement in [
            format!(r#"drop database if exists "{database}" with (force)"#),
            format!(r#"create database "{database}""#),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&mut server)
                .await
                .expect("makes the test database on the worker");
        }
        let mut worker_database = PgConnection::connect_with(&worker.database(&database))
            .await
            .expect("connects to the worker's test database");
        sqlx::query("create extension if not exists citus")
            .execute(&mut worker_database)
            .await
            .expect("citus on the worker");
    }
    sqlx::query("create extension if not exists citus")
        .execute(pool)
        .await
        .expect(
            "citus on the coordinator's test database (DATABASE_URL must name the coordinator)",
        );
    // The workers reach the coordinator where the cluster says it is (Citus
    // assumes localhost:5432 otherwise: the shared server, not this one).
    let (coordinator_host, coordinator_port): (String, i32) = sqlx::query_as(
        "select nodename, nodeport from pg_dist_node where groupid = 0 and noderole = 'primary'",
    )
    .fetch_one(&mut coordinator)
    .await
    .expect("PRESENCE_TEST_CITUS_URL's coordinator has its own host set");
    sqlx::query("select citus_set_coordinator_host($1, $2)")
        .bind(&coordinator_host)
        .bind(coordinator_port)
        .execute(pool)
        .await
        .expect("sets the coordinator's host");
    // One test at a time adds its database's workers: adding a node syncs
    // the roles, which every database of a worker shares, and two at once
    // fail ("tuple concurrently updated").
    sqlx::query("select pg_advisory_lock(7)")
        .execute(&mut coordinator)
        .await
        .expect("takes the node-adding lock");
    for (host, port) in &workers {
        sqlx::query("select citus_add_node($1, $2)")
            .bind(host)
            .bind(port)
            .execute(pool)
            .await
            .expect("adds the worker");
    }
    sqlx::query("select pg_advisory_unlock(7)")
        .execute(&mut coordinator)
        .await
        .expect("releases the node-adding lock");
}

/// Whether the test database's tables are distributed (the writer then writes a shard at a time).
pub async fn distributed(pool: &PgPool) -> bool {
    citus::is_distributed(&mut pool.acquire().await.expect("a connection"))
        .await
        .expect("checks the distribution")
}

#[sqlx::test]
async fn the_functions_the_plan_names_exist_and_take_their_settings(pool: PgPool) {
    prepare(&pool).await;
    for function in WORKER_FUNCTIONS {
        let found: Option<String> = sqlx::query_scalar("select to_regprocedure($1)::text")
            .bind(function)
            .fetch_one(&pool)
            .await
            .expect("looks the function up");
        assert!(
            found.is_some(),
            "{function} exists, to be sent to the workers"
        );
    }
    citus::tune_functions(&mut pool.acquire().await.expect("a connection"))
        .await
        .expect("the functions take their Citus settings");
    let tuned: Vec<String> = sqlx::query_scalar(
        "select proname::text from pg_proc
         where 'plan_cache_mode=force_custom_plan' = any(proconfig) order by 1",
    )
    .fetch_all(&pool)
    .await
    .expect("reads the settings");
    assert_eq!(
        tuned,
        [
            "apply_pings",
            "feed_advance",
            "history_bucket_stats",
            "leave_room",
            "leave_rooms_of_device",
            "prune_room_members",
            "prune_stale_devices",
            "remove_device",
            "room_ping"
        ]
    );
}

#[sqlx::test]
async fn every_table_is_keyed_by_its_user_or_shared_by_all(pool: PgPool) {
    // What `presence migrate --citus` distributes must be the whole schema: a
    // table added without a place in the plan would stay on the coordinator.
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.tables
         where table_schema = 'public' and table_type = 'BASE TABLE'
           and table_name not like '\\_sqlx%' order by 1",
    )
    .fetch_all(&pool)
    .await
    .expect("lists the tables");
    let mut planned: Vec<String> = DISTRIBUTED_TABLES
        .iter()
        .chain(REFERENCE_TABLES.iter())
        .chain(ROOM_TABLES.iter())
        .chain(COORDINATOR_TABLES.iter())
        .map(|table| (*table).to_owned())
        .collect();
    planned.sort();
    assert_eq!(
        tables, planned,
        "every table is distributed, a reference table or kept on the coordinator on purpose"
    );

    let keyed = DISTRIBUTED_TABLES
        .iter()
        .map(|table| (*table, "user_id", "uuid"))
        .chain(ROOM_TABLES.iter().map(|table| (*table, "room_id", "text")));
    for (table, column, column_type) in keyed {
        let key: Option<String> = sqlx::query_scalar(
            "select data_type::text from information_schema.columns
             where table_schema = 'public' and table_name = $1 and column_name = $2",
        )
        .bind(table)
        .bind(column)
        .fetch_optional(&pool)
        .await
        .expect("reads the columns");
        assert_eq!(
            key.as_deref(),
            Some(column_type),
            "{table} is keyed by {column}"
        );
        // Citus enforces a unique index only if it holds the distribution column.
        let unique_without_key: Vec<String> = sqlx::query_scalar(
            "select i.relname::text
             from pg_index as x
             join pg_class as i on i.oid = x.indexrelid
             where x.indrelid = $1::regclass and x.indisunique
               and not exists (
                   select 1 from pg_attribute as a
                   where a.attrelid = x.indrelid and a.attname = $2
                     and a.attnum = any(x.indkey))",
        )
        .bind(table)
        .bind(column)
        .fetch_all(&pool)
        .await
        .expect("reads the indexes");
        assert!(
            unique_without_key.is_empty(),
            "{table}'s unique indexes hold {column}: {unique_without_key:?}"
        );
    }
}

#[sqlx::test]
async fn blocks_are_stored_on_both_users_keys_and_reads_need_only_the_viewers(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (alice, bob) = (new_user(), new_user());
    for user in [alice, bob] {
        app.ping_ok(user, json!({ "deviceId": "tab" })).await;
    }
    assert!(
        app.set_block(alice, &bob.to_string(), true)
            .await
            .status()
            .is_success()
    );
    let rows: Vec<(uuid::Uuid, uuid::Uuid, bool, bool)> = sqlx::query_as(
        "select user_id, other_id, blocks_other, blocked_by_other from user_blocks order by blocks_other desc",
    )
    .fetch_all(&app.pool)
    .await
    .expect("reads the blocks");
    assert_eq!(
        rows,
        vec![
            (alice.as_uuid(), bob.as_uuid(), true, false),
            (bob.as_uuid(), alice.as_uuid(), false, true)
        ],
        "one row on each user's key"
    );

    // Bob's read of Alice is answered from Bob's row alone: with Alice's row
    // of the pair gone, Bob still sees her hidden.
    sqlx::query("delete from user_blocks where user_id = $1")
        .bind(alice.as_uuid())
        .execute(&app.pool)
        .await
        .expect("deletes Alice's side");
    let seen = app.status_of(bob, alice).await;
    assert_eq!(seen["status"], "offline", "{seen}");
    let last_seen: Option<chrono::DateTime<chrono::Utc>> =
        seen["lastSeen"].as_str().and_then(|at| at.parse().ok());
    assert_eq!(last_seen, Some(start_time()), "{seen}");
}

#[sqlx::test]
async fn the_suite_runs_on_citus_when_asked(pool: PgPool) {
    let Some(_) = citus_url() else {
        eprintln!(
            "\n!!! SKIPPED the Citus run: PRESENCE_TEST_CITUS_URL is not set. \
             Every other test ran on plain PostgreSQL; see docs/scaling.md, \
             \"Running the tests on Citus\". !!!\n"
        );
        return;
    };
    let app = spawn_app(pool).await;
    let mut plan: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "select logicalrelid::regclass::text, partmethod::text,
                column_to_column_name(logicalrelid, partkey)
         from pg_dist_partition order by 1",
    )
    .fetch_all(&app.pool)
    .await
    .expect("reads Citus's metadata");
    plan.sort();
    let mut expected: Vec<(String, String, Option<String>)> = DISTRIBUTED_TABLES
        .iter()
        .map(|table| {
            (
                (*table).to_owned(),
                "h".to_owned(),
                Some("user_id".to_owned()),
            )
        })
        .chain(
            REFERENCE_TABLES
                .iter()
                .map(|table| ((*table).to_owned(), "n".to_owned(), None)),
        )
        .chain(ROOM_TABLES.iter().map(|table| {
            (
                (*table).to_owned(),
                "h".to_owned(),
                Some("room_id".to_owned()),
            )
        }))
        .collect();
    expected.sort();
    assert_eq!(
        plan, expected,
        "hash-distributed by user_id (rooms by room_id), or reference tables"
    );
    let colocations: i64 = sqlx::query_scalar(
        "select count(distinct colocationid) from pg_dist_partition
         where partmethod = 'h' and logicalrelid::regclass::text <> all($1)",
    )
    .bind(ROOM_TABLES.as_slice())
    .fetch_one(&app.pool)
    .await
    .expect("reads the colocation groups");
    assert_eq!(
        colocations, 1,
        "every user table is co-located with user_status"
    );
    // A room's read is one shard's statement.
    let plan: Vec<String> = sqlx::query_scalar(
        "explain select user_id, device_id, joined_at, renewed_at, state, state_set_at, typing_until
         from room_members where room_id = 'doc:42' and renewed_at > now() order by user_id, device_id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("explains a room read");
    assert!(
        plan.iter().any(|line| line.contains("Task Count: 1")),
        "a room read goes to one shard: {plan:#?}"
    );

    // A batch read of users on every shard sees each one's ping.
    let users: Vec<_> = (0..64).map(|_| new_user()).collect();
    for user in &users {
        app.ping_ok(*user, json!({ "deviceId": "tab" })).await;
    }
    let read = app.batch_post(users[0], &users).await;
    let statuses = read["statuses"].as_array().expect("a list of statuses");
    assert_eq!(statuses.len(), users.len(), "{read}");
    assert!(
        statuses.iter().all(|status| status["status"] == "online"),
        "{read}"
    );
}

#[sqlx::test]
async fn a_single_node_database_with_users_blocks_and_history_keeps_every_row_once_distributed(
    pool: PgPool,
) {
    let Some(_) = citus_url() else {
        eprintln!("SKIPPED: distributing a database with data needs PRESENCE_TEST_CITUS_URL");
        return;
    };
    // A database that served on one node: users on every shard, a block,
    // settings, sessions that ended and spans of activity that closed.
    let before =
        spawn_app_on_single_node(pool.clone(), ManualClock::starting_at(start_time())).await;
    assert!(!distributed(&pool).await, "not distributed yet");
    let users: Vec<_> = (0..24).map(|_| new_user()).collect();
    for user in &users {
        before.ping_ok(*user, json!({ "deviceId": "laptop" })).await;
    }
    let (alice, bob) = (users[0], users[1]);
    before
        .ping_ok(
            alice,
            json!({ "deviceId": "phone", "platform": "mobile", "statusMessage": "On call" }),
        )
        .await;
    assert_eq!(
        before
            .set_block(alice, &bob.to_string(), true)
            .await
            .status(),
        reqwest::StatusCode::NO_CONTENT
    );
    before.advance(TimeDelta::minutes(20));
    for user in &users[..12] {
        before.ping_ok(*user, json!({ "deviceId": "laptop" })).await;
    }
    let service = service_token("citus-suite");
    // The feed job publishes the changes staged so far (its queue drains).
    let started = std::time::Instant::now();
    while sqlx::query_scalar::<_, i64>("select count(*) from feed_staged")
        .fetch_one(&pool)
        .await
        .expect("counts the staged changes")
        > 0
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let rows_before = table_rows(&pool).await;
    let reads_before = observed(&before, &users, &service).await;

    // The workers are added and `presence migrate --citus`'s code distributes
    // the tables; then a new instance serves the same database on the same clock.
    distribute_if_asked(&pool).await;
    assert!(distributed(&pool).await, "distributed");
    let after = spawn_app_on_clock(pool.clone(), &[], before.clock.clone()).await;
    assert_eq!(
        table_rows(&pool).await,
        rows_before,
        "every row of every table is kept"
    );
    assert_eq!(
        observed(&after, &users, &service).await,
        reads_before,
        "every read answers as before"
    );
    // And it takes writes.
    let seen = after.ping_ok(bob, json!({ "deviceId": "laptop" })).await;
    assert_eq!(seen["status"], "online", "{seen}");
}

/// How many rows each table of the schema holds.
async fn table_rows(pool: &PgPool) -> Vec<(String, i64)> {
    let mut rows = Vec::new();
    for table in DISTRIBUTED_TABLES
        .iter()
        .chain(REFERENCE_TABLES.iter())
        .chain(COORDINATOR_TABLES.iter())
    {
        let count: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
                .fetch_one(pool)
                .await
                .expect("counts the rows");
        rows.push(((*table).to_owned(), count));
    }
    rows
}

/// What the users are shown, by each other and by the admin routes.
async fn observed(app: &TestApp, users: &[UserId], service: &str) -> Vec<serde_json::Value> {
    let mut seen = vec![
        app.batch_post(users[0], users).await,
        app.batch_post(users[1], users).await,
    ];
    for user in &users[..4] {
        for path in [
            format!("/api/admin/status/{user}"),
            format!("/api/admin/users/{user}/history"),
        ] {
            seen.push(get_ok(app, &path, service).await);
        }
    }
    seen
}

#[sqlx::test(migrations = false)]
async fn presence_migrate_citus_migrates_and_distributes_a_new_database(pool: PgPool) {
    let Some(url) = citus_url() else {
        eprintln!("SKIPPED: presence migrate --citus needs PRESENCE_TEST_CITUS_URL");
        return;
    };
    // A new database on the coordinator, its workers added: nothing migrated.
    add_workers(&pool, &url).await;
    let database: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&pool)
        .await
        .expect("names its database");
    let migrated = crate::process::run(
        crate::process::presence()
            .args(["migrate", "--citus"])
            .env("DATABASE_URL", crate::process::database_url(&database)),
    );
    assert!(
        migrated.status.success(),
        "presence migrate --citus: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert!(distributed(&pool).await, "distributed");
    let app = spawn_app(pool).await;
    let seen = app.ping_ok(new_user(), json!({ "deviceId": "tab" })).await;
    assert_eq!(seen["status"], "online", "{seen}");
}

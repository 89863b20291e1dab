//! The planner's statistics follow a table that fills faster than autovacuum looks.

use std::time::{Duration, Instant};

use presence::store::analyze_grown_tables;
use sqlx::pool::PoolConnection;
use sqlx::postgres::Postgres;
use sqlx::{Connection, PgConnection, PgPool};

use crate::helpers::{spawn_app_on_single_node, start_time};
use presence::clock::ManualClock;

/// The plan `session` keeps for its prepared batch read.
async fn kept_plan(session: &mut PoolConnection<Postgres>) -> String {
    let lines: Vec<String> = sqlx::query_scalar(
        "explain execute read_rows(array[gen_random_uuid(), gen_random_uuid()])",
    )
    .fetch_all(&mut **session)
    .await
    .expect("explains the prepared read");
    lines.join("\n")
}

/// A session plans each statement once, as the server's do
/// (`force_generic_plan`). One that planned its batch read while
/// `user_status` was empty went on scanning the whole table once it held
/// 20,000 rows, until autovacuum next analyzed it: up to a minute in which
/// every read and ping of a new deployment's growing user base read every
/// row (the first minutes of the capacity benchmark). The server now
/// analyzes a table that doubled, and the session plans again with the index.
#[sqlx::test]
async fn a_session_that_planned_on_an_empty_table_uses_the_index_once_it_has_grown(pool: PgPool) {
    let _app = spawn_app_on_single_node(pool.clone(), ManualClock::starting_at(start_time())).await;
    let mut session = pool.acquire().await.expect("a session");
    // Autovacuum stays out of the way: it would analyze the table at a moment of its own.
    sqlx::query("alter table user_status set (autovacuum_enabled = false)")
        .execute(&pool)
        .await
        .expect("turns autovacuum off for the table");
    for statement in [
        "set plan_cache_mode = force_generic_plan",
        "prepare read_rows(uuid[]) as
         select user_id, devices from user_status where user_id = any($1)",
    ] {
        sqlx::query(statement)
            .execute(&mut *session)
            .await
            .expect("prepares the read");
    }
    assert!(
        kept_plan(&mut session).await.contains("Seq Scan"),
        "planned on an empty table: a scan"
    );

    // Until the look below, a lock keeps the server's check from analyzing
    // the table (it skips a locked table): it runs every few seconds, and may
    // come between the insert and the look.
    let mut holder = PgConnection::connect_with(&pool.connect_options())
        .await
        .expect("connects");
    sqlx::query("begin")
        .execute(&mut holder)
        .await
        .expect("begins");
    sqlx::query("lock table user_status in share update exclusive mode")
        .execute(&mut holder)
        .await
        .expect("locks out analyze");
    sqlx::query(
        "insert into user_status (user_id, last_seen, updated_at)
         select gen_random_uuid(), now(), now() from generate_series(1, 20000)",
    )
    .execute(&pool)
    .await
    .expect("20,000 users arrive");
    assert!(
        kept_plan(&mut session).await.contains("Seq Scan"),
        "nothing told the session the table grew"
    );
    sqlx::query("commit")
        .execute(&mut holder)
        .await
        .expect("lets analyze in");

    // The server checks every few seconds.
    let started = Instant::now();
    loop {
        let plan = kept_plan(&mut session).await;
        if !plan.contains("Seq Scan") {
            assert!(plan.contains("user_status_pkey"), "{plan}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the session still scans the table: {plan}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        analyze_grown_tables(&pool).await.expect("checks the sizes"),
        Vec::<String>::new(),
        "nothing has grown since"
    );
}

/// The check analyzes only what has at least doubled since its statistics.
#[sqlx::test]
async fn only_a_table_that_doubled_since_its_statistics_is_analyzed(pool: PgPool) {
    let insert = |users: i32| {
        sqlx::query(
            "insert into user_status (user_id, last_seen, updated_at)
             select gen_random_uuid(), now(), now() from generate_series(1, $1)",
        )
        .bind(users)
    };
    sqlx::query("alter table user_status set (autovacuum_enabled = false)")
        .execute(&pool)
        .await
        .expect("turns autovacuum off for the table");
    insert(5_000).execute(&pool).await.expect("5,000 users");
    assert_eq!(
        analyze_grown_tables(&pool).await.expect("checks"),
        ["user_status"]
    );
    assert_eq!(
        analyze_grown_tables(&pool).await.expect("checks"),
        Vec::<String>::new(),
        "just analyzed"
    );
    insert(2_000).execute(&pool).await.expect("2,000 more");
    assert_eq!(
        analyze_grown_tables(&pool).await.expect("checks"),
        Vec::<String>::new(),
        "grown by less than its size: autovacuum's business"
    );
    insert(6_000).execute(&pool).await.expect("6,000 more");
    assert_eq!(
        analyze_grown_tables(&pool).await.expect("checks"),
        ["user_status"]
    );
}

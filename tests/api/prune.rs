//! The prune job: the SQL function, the built-in schedule, the CLI and pg_cron.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use futures::future::join_all;
use presence::clock::{Clock, ManualClock};
use presence::domain::{DeviceId, Ping, SettingChange, UserId};
use presence::jobs::{PRUNE_CHUNK, PruneSchedule, run_scheduled_prune};
use presence::store;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{
    new_user, new_user_ending_in, spawn_app, spawn_app_on_clock, spawn_app_with, start_time,
    users_minute,
};
use crate::process::{database_url_of, presence};

fn device_ids(me: &Value) -> Vec<String> {
    me["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|device| device["deviceId"].as_str().expect("id").to_owned())
        .collect()
}

async fn all_rows(pool: &PgPool) -> Vec<(String, Value)> {
    sqlx::query_as::<_, (String, Value)>(
        "select user_id::text,
                to_jsonb(s) - 'devices' - 'updated_at' - 'oldest_ping_minute' - 'last_ping' - 'device_count'
                    - 'version'
                    - 'feed_status' - 'feed_public_status' - 'feed_as_of' - 'next_change_at'
                    - 'next_change_minute'
         from user_status s order by user_id",
    )
    .fetch_all(pool)
    .await
    .expect("rows")
}

#[sqlx::test]
async fn the_function_removes_stale_entries_only_and_counts_them(pool: PgPool) {
    let app = spawn_app_with(pool, &[("PRESENCE_CACHE_TTL", "0")]).await;
    let (alice, bob, carol) = (new_user(), new_user(), new_user());
    app.ping_ok(
        alice,
        json!({"deviceId": "old-phone", "platform": "mobile", "statusMessage": "Hi"}),
    )
    .await;
    app.ping_ok(
        bob,
        json!({"deviceId": "old-tab", "manualStatus": "dnd", "invisible": true}),
    )
    .await;
    app.advance(TimeDelta::minutes(4));
    app.ping_ok(alice, json!({"deviceId": "laptop", "active": false}))
        .await;
    app.ping_ok(carol, json!({"deviceId": "tab"})).await;
    app.advance(TimeDelta::minutes(2));
    let before = all_rows(&app.pool).await;

    let removed = store::prune_stale_devices(
        &app.pool,
        TimeDelta::minutes(5),
        None,
        app.clock.now(),
        None,
    )
    .await
    .expect("prunes");
    assert_eq!(removed, 2, "alice's old phone and bob's old tab");
    assert_eq!(device_ids(&app.status_of(alice, alice).await), ["laptop"]);
    assert_eq!(
        device_ids(&app.status_of(bob, bob).await),
        Vec::<String>::new()
    );
    assert_eq!(device_ids(&app.status_of(carol, carol).await), ["tab"]);
    assert_eq!(
        all_rows(&app.pool).await,
        before,
        "last_seen, settings and the rest are untouched"
    );

    let again = store::prune_stale_devices(
        &app.pool,
        TimeDelta::minutes(5),
        None,
        app.clock.now(),
        None,
    )
    .await
    .expect("prunes");
    assert_eq!(again, 0, "a second run finds nothing");
}

#[sqlx::test]
async fn the_function_enforces_a_lowered_device_limit(pool: PgPool) {
    let app = spawn_app_with(pool, &[("PRESENCE_CACHE_TTL", "0")]).await;
    let user = new_user();
    for device in ["a", "b", "c", "d", "e"] {
        app.ping_ok(user, json!({"deviceId": device})).await;
        app.advance(TimeDelta::seconds(1));
    }
    let removed = store::prune_stale_devices(
        &app.pool,
        TimeDelta::minutes(5),
        Some(2),
        app.clock.now(),
        None,
    )
    .await
    .expect("prunes");
    assert_eq!(removed, 3);
    assert_eq!(
        device_ids(&app.status_of(user, user).await),
        ["e", "d"],
        "the two most recently seen stay"
    );
}

#[sqlx::test]
async fn a_ping_racing_the_prune_job_is_never_lost(pool: PgPool) {
    let app = spawn_app_with(pool, &[("PRESENCE_CACHE_TTL", "0")]).await;
    let users: Vec<_> = (0..20).map(|_| new_user()).collect();
    for user in &users {
        app.ping_ok(*user, json!({"deviceId": "old"})).await;
    }
    app.advance(TimeDelta::minutes(10));
    let at = app.clock.now();
    let pings = users
        .iter()
        .map(|user| app.ping(*user, json!({"deviceId": "new"})));
    let prune = store::prune_stale_devices(&app.pool, TimeDelta::minutes(5), None, at, None);
    let (responses, removed) = tokio::join!(join_all(pings), prune);
    assert!(responses.iter().all(|response| response.status() == 200));
    assert_eq!(removed.expect("prunes"), 20);
    for user in &users {
        assert_eq!(device_ids(&app.status_of(*user, *user).await), ["new"]);
    }
}

#[sqlx::test]
async fn of_two_instances_ticking_together_one_runs_the_period(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    app.ping_ok(user, json!({"deviceId": "old"})).await;
    app.advance(TimeDelta::minutes(10));
    let schedule = PruneSchedule {
        pool: app.pool.clone(),
        clock: Arc::new(app.clock.clone()),
        every: Duration::from_secs(60),
        older_than: TimeDelta::minutes(5),
        max_devices: 10,
        chunk: PRUNE_CHUNK,
        metrics: None,
        history_retention: None,
        offline_after: TimeDelta::seconds(60),
        room_timeout: TimeDelta::seconds(60),
    };
    let (first, second) = tokio::join!(
        run_scheduled_prune(&schedule),
        run_scheduled_prune(&schedule)
    );
    let mut outcomes = [first.expect("runs"), second.expect("runs")];
    outcomes.sort();
    assert_eq!(outcomes, [None, Some(1)], "exactly one instance pruned");
    assert_eq!(
        run_scheduled_prune(&schedule).await.expect("runs"),
        None,
        "the period is taken"
    );
}

#[sqlx::test]
async fn the_built_in_schedule_runs_once_per_period_across_instances(pool: PgPool) {
    let clock = ManualClock::starting_at(start_time());
    let overrides = [
        ("PRESENCE_PRUNE_EVERY", "100ms"),
        ("PRESENCE_PRUNE_AFTER", "5m"),
    ];
    let first = spawn_app_on_clock(pool.clone(), &overrides, clock.clone()).await;
    let user = new_user();
    first.ping_ok(user, json!({"deviceId": "old"})).await;
    let second = spawn_app_on_clock(pool.clone(), &overrides, clock.clone()).await;
    // The runs from here on: the first instance ran alone while the second started.
    let runs_before = runs_of_prune(&pool).await;
    let started = std::time::Instant::now();
    clock.advance(TimeDelta::minutes(6));

    let mut pruned = false;
    for _ in 0..100 {
        if device_ids(&second.status_of(user, user).await).is_empty() {
            pruned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(pruned, "the schedule removed the stale device");
    tokio::time::sleep(Duration::from_millis(600)).await;

    let periods = started.elapsed().as_secs_f64() / 0.09;
    let runs = runs_of_prune(&pool).await - runs_before;
    assert!(runs > 0, "the job recorded its runs");
    assert!(
        (runs as f64) <= periods + 2.0,
        "{runs} runs in {periods:.1} periods: two instances would double it"
    );
}

/// How many times the prune job has run, on any instance (0 before its first run).
async fn runs_of_prune(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select runs from job_runs where job = 'prune_stale_devices'")
        .fetch_optional(pool)
        .await
        .expect("job_runs reads")
        .unwrap_or(0)
}

#[sqlx::test]
async fn presence_prune_prints_the_count_for_cron(pool: PgPool) {
    crate::citus::prepare(&pool).await;
    let user = new_user();
    let stale = Ping {
        device_id: DeviceId::parse("old").expect("id"),
        platform: None,
        active: true,
        manual_status: SettingChange::Keep,
        invisible: None,
        status_message: SettingChange::Keep,
    };
    let fresh = Ping {
        device_id: DeviceId::parse("new").expect("id"),
        ..stale.clone()
    };
    let now = Utc::now();
    store::apply_ping(
        &mut pool.acquire().await.expect("a connection"),
        user,
        &stale,
        now - TimeDelta::minutes(10),
        10,
    )
    .await
    .expect("ping");
    store::apply_ping(
        &mut pool.acquire().await.expect("a connection"),
        user,
        &fresh,
        now,
        10,
    )
    .await
    .expect("ping");
    // History older than the default 90-day window goes too.
    sqlx::query(
        "insert into device_sessions (user_id, device_id, platform, started_at, ended_at)
         values ($1, 'ancient', 'web', now() - interval '100 days', now() - interval '95 days')",
    )
    .bind(user.as_uuid())
    .execute(&pool)
    .await
    .expect("an old session");

    let url = database_url_of(&pool);
    let output = presence()
        .args(["prune", "--older-than", "5m"])
        .env("DATABASE_URL", &url)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "removed 1 stale device entries\nremoved 0 ended room memberships\ndeleted 1 history records older than the retention window"
    );

    let again = presence()
        .args(["prune"])
        .env("DATABASE_URL", &url)
        .output()
        .expect("runs");
    assert!(again.status.success());
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "removed 0 stale device entries\nremoved 0 ended room memberships\ndeleted 0 history records older than the retention window"
    );
}

#[test]
fn presence_prune_fails_clearly_when_the_database_is_unreachable() {
    let output = presence()
        .arg("prune")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/presence")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("could not reach"), "{stderr}");
}

#[sqlx::test]
async fn installing_pg_cron_where_it_is_missing_says_what_to_do(pool: PgPool) {
    let output = presence()
        .args(["prune", "--install-pg-cron"])
        .env("DATABASE_URL", database_url_of(&pool))
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("pg_cron") && stderr.contains("shared_preload_libraries"),
        "{stderr}"
    );
}

#[sqlx::test]
async fn a_run_prunes_every_stale_user_in_chunks_of_short_transactions(pool: PgPool) {
    let app = spawn_app(pool).await;
    let stale: Vec<UserId> = (0..7).map(|_| new_user()).collect();
    for user in &stale {
        app.ping_ok(*user, json!({"deviceId": "old"})).await;
    }
    app.advance(TimeDelta::minutes(10));
    let live = new_user();
    app.ping_ok(live, json!({"deviceId": "new"})).await;
    let schedule = PruneSchedule {
        pool: app.pool.clone(),
        clock: Arc::new(app.clock.clone()),
        every: Duration::from_secs(60),
        older_than: TimeDelta::minutes(5),
        max_devices: 10,
        chunk: 2,
        metrics: None,
        history_retention: None,
        offline_after: TimeDelta::seconds(60),
        room_timeout: TimeDelta::seconds(60),
    };
    // The feed job first accounts for the stale users going offline: it locks
    // their rows in user id order too, so a run of it queued behind the held
    // row would hold the stale rows before it, and the prune would wait on it.
    let now = app.clock.now();
    let started = std::time::Instant::now();
    while sqlx::query_scalar::<_, i64>(
        "select count(*) from user_status where next_change_at <= $1",
    )
    .bind(now)
    .fetch_one(&app.pool)
    .await
    .expect("counts the changes due")
        > 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the feed job never accounted for the timeouts"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another transaction holds the last stale user's row (in user id order).
    let last: uuid::Uuid = sqlx::query_scalar(
        "select user_id from user_status where user_id <> $1 order by user_id desc limit 1",
    )
    .bind(live.as_uuid())
    .fetch_one(&app.pool)
    .await
    .expect("finds the last stale user");
    let mut holder = app.pool.begin().await.expect("begins");
    sqlx::query("select 1 from user_status where user_id = $1 for update")
        .bind(last)
        .execute(&mut *holder)
        .await
        .expect("locks the row");
    let run = tokio::spawn(async move { run_scheduled_prune(&schedule).await });
    // While the job waits for that row, the chunks before it are committed:
    // pings of those users would not wait for the whole run.
    let with_devices = || {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from user_status where jsonb_array_length(devices) > 0",
        )
        .fetch_one(&app.pool)
    };
    let started = std::time::Instant::now();
    while with_devices().await.expect("counts") > 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing was committed while one row was held: one long transaction"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    holder.rollback().await.expect("releases the row");
    assert_eq!(
        run.await.expect("the job's task joins").expect("runs"),
        Some(7),
        "every stale entry, two users per transaction"
    );
    let left: i64 = with_devices().await.expect("counts");
    assert_eq!(left, 1, "only the live user keeps a device");
}

/// The device summary the prune job finds its candidates by (and the feed's
/// latest ping) follows every shape of list a write leaves: empty, one
/// device, several out of order, one without a ping, set by any statement.
/// The oldest ping's minute is the user's own: users whose minutes start at
/// the wall clock's, half a minute later, just after, and last of all.
#[sqlx::test]
async fn the_device_summary_follows_every_write_of_the_list(pool: PgPool) {
    for user in [0x00, 0x80, 0x81, 0xff].map(new_user_ending_in) {
        summary_follows_every_write_of_the_list(&pool, user).await;
    }
}

async fn summary_follows_every_write_of_the_list(pool: &PgPool, user: UserId) {
    sqlx::query(
        "insert into user_status (user_id, last_seen, updated_at) values ($1, now(), now())",
    )
    .bind(user.as_uuid())
    .execute(pool)
    .await
    .expect("inserts a row without devices");
    let lists = [
        json!([]),
        json!([{"id": "a", "platform": "web", "lastPing": "2026-01-01T10:00:30Z"}]),
        json!([
            {"id": "a", "platform": "web", "lastPing": "2026-01-01T10:05:00Z"},
            {"id": "b", "platform": "web", "lastPing": "2026-01-01T09:58:59.999Z"},
            {"id": "c", "platform": "web", "lastPing": "2026-01-01T10:07:00Z"}
        ]),
        json!([{"id": "a", "platform": "web"}, {"id": "b", "platform": "web", "lastPing": "2026-01-01T11:00:00Z"}]),
        json!([{"id": "a", "platform": "web", "lastPing": "2026-01-01T10:00:30.233Z"}]),
        json!([{"id": "a", "platform": "web"}]),
        json!([]),
    ];
    for list in lists {
        let (count, latest, oldest_minute): (i32, Option<String>, Option<String>) = sqlx::query_as(
            "update user_status set devices = $2 where user_id = $1
                 returning device_count,
                           to_char(last_ping at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'),
                           to_char(oldest_ping_minute at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
        )
        .bind(user.as_uuid())
        .bind(&list)
        .fetch_one(pool)
        .await
        .expect("writes the list");
        let pings: Vec<chrono::DateTime<Utc>> = list
            .as_array()
            .expect("a list")
            .iter()
            .filter_map(|device| device["lastPing"].as_str())
            .map(|ping| ping.parse().expect("an instant"))
            .collect();
        let expected_latest = pings
            .iter()
            .max()
            .map(|at| at.format("%Y-%m-%d %H:%M:%S%.3f").to_string());
        let expected_oldest = pings.iter().min().map(|at| {
            users_minute(user, *at)
                .format("%Y-%m-%d %H:%M:%S%.6f")
                .to_string()
        });
        assert_eq!(
            (count, latest, oldest_minute),
            (
                i32::try_from(list.as_array().expect("a list").len()).expect("small"),
                expected_latest,
                expected_oldest
            ),
            "{list} of {user}"
        );
    }
}

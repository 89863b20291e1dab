use std::collections::BTreeSet;
use std::time::Duration;

use chrono::TimeDelta;
use futures::future::join_all;
use presence::clock::ManualClock;
use presence::domain::{DeviceId, Ping, SettingChange, StatusMessage, UserId};
use presence::presence::StoredStatus;
use presence::store::{PingWrite, apply_pings};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinHandle;

use crate::helpers::{
    TestApp, metric, new_user, spawn_app, spawn_app_on_clock, spawn_app_on_single_node, start_time,
};

#[sqlx::test]
async fn parallel_pings_from_many_devices_lose_no_device_and_no_field(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    let devices: Vec<String> = (0..8).map(|n| format!("device-{n}")).collect();

    let mut bodies: Vec<Value> = Vec::new();
    for round in 0..5 {
        for (n, device) in devices.iter().enumerate() {
            bodies.push(json!({"deviceId": device, "active": (round + n) % 2 == 0}));
        }
    }
    bodies[3] = json!({"deviceId": "device-3", "manualStatus": "dnd"});
    bodies[11] = json!({"deviceId": "device-3", "statusMessage": "Heads down"});
    bodies[19] = json!({"deviceId": "device-3", "invisible": true});
    bodies[27] = json!({"deviceId": "device-3", "platform": "mobile"});
    assert!(bodies.len() >= 30);

    let responses = join_all(bodies.into_iter().map(|body| app.ping(user, body))).await;
    for response in responses {
        assert_eq!(response.status(), 200);
    }

    let me = app.status_of(user, user).await;
    let stored: BTreeSet<&str> = me["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|device| device["deviceId"].as_str().expect("id"))
        .collect();
    let expected: BTreeSet<&str> = devices.iter().map(String::as_str).collect();
    assert_eq!(stored, expected, "every device survived");
    assert_eq!(me["manualStatus"], "dnd");
    assert_eq!(me["statusMessage"], "Heads down");
    assert_eq!(me["invisible"], true);
    let device_3 = me["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["deviceId"] == "device-3");
    assert_eq!(device_3.map(|d| &d["platform"]), Some(&json!("mobile")));
}

#[sqlx::test]
async fn two_instances_on_one_database_share_every_write(pool: PgPool) {
    let clock = ManualClock::starting_at(start_time());
    let no_cache = [("PRESENCE_CACHE_TTL", "0")];
    let first = spawn_app_on_clock(pool.clone(), &no_cache, clock.clone()).await;
    let second = spawn_app_on_clock(pool, &no_cache, clock.clone()).await;
    let (user, viewer) = (new_user(), new_user());

    let pings = (0..20).map(|n| {
        let app = if n % 2 == 0 { &first } else { &second };
        app.ping(user, json!({"deviceId": format!("tab-{}", n % 4)}))
    });
    for response in join_all(pings).await {
        assert_eq!(response.status(), 200);
    }
    second
        .ping_ok(
            user,
            json!({"deviceId": "tab-0", "statusMessage": "Shared"}),
        )
        .await;

    for app in [&first, &second] {
        let me = app.status_of(user, user).await;
        assert_eq!(me["devices"].as_array().map(Vec::len), Some(4));
        let seen = app.status_of(viewer, user).await;
        assert_eq!(seen["statusMessage"], "Shared");
        assert_eq!(seen["status"], "online");
    }
    clock.advance(TimeDelta::seconds(60));
    for app in [&first, &second] {
        assert_eq!(app.status_of(viewer, user).await["status"], "offline");
    }
}

/// A ping of `user` from `device`, taken at the tests' start time.
fn ping_write(user: UserId, device: &str) -> PingWrite {
    PingWrite {
        user,
        ping: Ping {
            device_id: DeviceId::parse(device).expect("a device id"),
            platform: None,
            active: true,
            manual_status: SettingChange::Keep,
            invisible: None,
            status_message: SettingChange::Keep,
        },
        at: start_time(),
    }
}

/// A pool with a connection for each batch and each transaction held open,
/// and one to watch, on the test's database with the `sql/` functions applied.
///
/// On one node even when the suite runs on Citus: these choreographies watch
/// the calls' lock waits in `pg_stat_activity`, which on Citus happen in the
/// workers' backends. There the writer calls `apply_pings` once per shard, so
/// each call runs on one worker, in the same order this checks.
async fn pool_for_batches(pool: &PgPool) -> PgPool {
    presence::store::install_sql_functions(pool)
        .await
        .expect("the sql/ functions apply");
    PgPoolOptions::new()
        .max_connections(10)
        .connect_with((*pool.connect_options()).clone())
        .await
        .expect("a bigger pool")
}

/// The pid of the backend behind `connection`, as `pg_stat_activity` names it.
async fn backend_pid(connection: &mut PgConnection) -> i32 {
    sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(connection)
        .await
        .expect("a pid")
}

/// One call of `apply_pings` on a connection of its own, started in the
/// background: the backend's pid, and the call.
async fn call_in_background(
    pool: &PgPool,
    writes: Vec<PingWrite>,
) -> (i32, JoinHandle<Result<Vec<StoredStatus>, sqlx::Error>>) {
    let mut connection = pool.acquire().await.expect("a connection");
    let pid = backend_pid(&mut connection).await;
    let call = tokio::spawn(async move { apply_pings(&mut connection, &writes, 10).await });
    (pid, call)
}

/// Waits until the call on backend `pid` waits for a lock, or has returned.
async fn until_waiting_or_done<T>(pool: &PgPool, pid: i32, call: &JoinHandle<T>) {
    let started = std::time::Instant::now();
    loop {
        let waiting: bool = sqlx::query_scalar(
            "select coalesce(bool_or(wait_event_type = 'Lock'), false)
             from pg_stat_activity where pid = $1",
        )
        .bind(pid)
        .fetch_one(pool)
        .await
        .expect("reads the activity");
        if waiting || call.is_finished() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the call neither waited nor returned"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Two ping batches that each insert a new user the other holds. The first
/// batch locked the rows it found, then updated the rows its update saw, then
/// inserted the rest; a user inserted by another batch between its update and
/// its insert, and being updated by a fourth batch, made it wait on that
/// fourth batch while the fourth waited on a user the first had inserted:
/// PostgreSQL aborted one ("deadlock detected") and its pings failed. New
/// users are now inserted first, so every ping of every batch is written.
#[sqlx::test]
async fn batches_inserting_the_same_new_users_never_deadlock(pool: PgPool) {
    let pool = pool_for_batches(&pool).await;
    let mut ids = [new_user(), new_user(), new_user()];
    ids.sort_by_key(|user| user.as_uuid());
    let [m, k, j] = ids;
    let (e, x) = (new_user(), new_user());
    apply_pings(
        &mut pool.acquire().await.expect("a connection"),
        &[ping_write(e, "e")],
        10,
    )
    .await
    .expect("writes e");
    let lock = async |user: UserId| {
        let mut transaction = pool.begin().await.expect("a transaction");
        sqlx::query("select 1 from user_status where user_id = $1 for update")
            .bind(user.as_uuid())
            .execute(&mut *transaction)
            .await
            .expect("locks a row");
        transaction
    };

    // Batch a stops at e's row, having found only e.
    let holding_e = lock(e).await;
    let (a_pid, a) = call_in_background(
        &pool,
        vec![
            ping_write(e, "a"),
            ping_write(x, "a"),
            ping_write(k, "a"),
            ping_write(j, "a"),
        ],
    )
    .await;
    until_waiting_or_done(&pool, a_pid, &a).await;
    // x appears and is held: batch a goes on to x's row and stops there.
    let (x_pid, x_first) = call_in_background(&pool, vec![ping_write(x, "x")]).await;
    until_waiting_or_done(&pool, x_pid, &x_first).await;
    let holding_x = lock(x).await;
    holding_e.commit().await.expect("lets batch a go");
    until_waiting_or_done(&pool, a_pid, &a).await;
    // j appears; batch b updates it and stops at m, which another transaction is inserting.
    let (c_pid, c) = call_in_background(&pool, vec![ping_write(j, "c")]).await;
    until_waiting_or_done(&pool, c_pid, &c).await;
    let mut inserting_m = pool.begin().await.expect("a transaction");
    sqlx::query(
        "insert into user_status (user_id, devices, last_seen, updated_at)
         values ($1, jsonb_build_array(jsonb_build_object('id', 'm', 'platform', 'web',
                     'lastPing', $2::timestamptz, 'lastActive', $2::timestamptz,
                     'liveSince', $2::timestamptz)), $2, $2)",
    )
    .bind(m.as_uuid())
    .bind(start_time())
    .execute(&mut *inserting_m)
    .await
    .expect("inserts m");
    let (b_pid, b) = call_in_background(
        &pool,
        vec![ping_write(j, "b"), ping_write(m, "b"), ping_write(k, "b")],
    )
    .await;
    until_waiting_or_done(&pool, b_pid, &b).await;
    // Batch a goes on to its inserts (k, then j, which batch b is updating);
    // then batch b goes on to its inserts (m, then k, which batch a inserted).
    holding_x.commit().await.expect("lets batch a go on");
    until_waiting_or_done(&pool, a_pid, &a).await;
    inserting_m.commit().await.expect("lets batch b go on");

    for (name, call) in [("a", a), ("b", b), ("c", c), ("x", x_first)] {
        call.await
            .expect("the call ran")
            .unwrap_or_else(|error| panic!("batch {name} failed: {error}"));
    }
    for (user, expected) in [
        (e, &["a", "e"][..]),
        (x, &["a", "x"]),
        (j, &["a", "b", "c"]),
        (k, &["a", "b"]),
        (m, &["b", "m"]),
    ] {
        let devices: BTreeSet<String> = sqlx::query_scalar(
            "select e.device ->> 'id'
             from user_status as s, jsonb_array_elements(s.devices) as e(device)
             where s.user_id = $1",
        )
        .bind(user.as_uuid())
        .fetch_all(&pool)
        .await
        .expect("reads the devices")
        .into_iter()
        .collect();
        let expected: BTreeSet<String> = expected.iter().map(|id| (*id).to_owned()).collect();
        assert_eq!(devices, expected, "{user}");
    }
}

/// A ping batch that found a user missing, while another batch was inserting
/// that user, once recorded the new row's history though it then found the
/// row there and skipped its insert: PostgreSQL runs an insert's BEFORE
/// triggers before it finds the conflict. A third batch, adding that device
/// to the row, waited on the phantom session while the first, going on to
/// update the row, waited on the third: "deadlock detected", and one batch's
/// pings failed. History now records an insert once it is made.
#[sqlx::test]
async fn a_batch_whose_new_user_another_inserted_records_nothing_twice(pool: PgPool) {
    let pool = pool_for_batches(&pool).await;
    let mut ids = [new_user(), new_user()];
    ids.sort_by_key(|user| user.as_uuid());
    let [u, w] = ids;
    let begin_inserting = async |user: UserId| {
        let mut transaction = pool.begin().await.expect("a transaction");
        apply_pings(&mut transaction, &[ping_write(user, "first")], 10)
            .await
            .expect("inserts the user");
        transaction
    };
    let inserting_u = begin_inserting(u).await;
    let inserting_w = begin_inserting(w).await;

    // Batch b finds neither user: it waits at its insert of u, then of w.
    let mut from_b = ping_write(u, "second");
    from_b.ping.status_message = SettingChange::Set {
        value: StatusMessage::parse("From b").expect("a message"),
        until: None,
    };
    let (b_pid, b) = call_in_background(&pool, vec![from_b, ping_write(w, "b")]).await;
    until_waiting_or_done(&pool, b_pid, &b).await;
    inserting_u.commit().await.expect("lets batch b go on to w");
    // Batch c adds b's device to u's row, which it keeps locked.
    let mut c_connection = pool.acquire().await.expect("a connection");
    let c_pid = backend_pid(&mut c_connection).await;
    let c = tokio::spawn(async move {
        sqlx::query("begin")
            .execute(&mut *c_connection)
            .await
            .expect("begins");
        let written = apply_pings(&mut c_connection, &[ping_write(u, "second")], 10).await;
        (c_connection, written)
    });
    until_waiting_or_done(&pool, c_pid, &c).await;
    // Batch b skips w's insert and goes on to lock u, which batch c holds.
    inserting_w.commit().await.expect("lets batch b go on to u");
    until_waiting_or_done(&pool, b_pid, &b).await;
    let (mut c_connection, c_written) = c.await.expect("batch c ran");
    c_written.unwrap_or_else(|error| panic!("batch c failed: {error}"));
    sqlx::query("commit")
        .execute(&mut *c_connection)
        .await
        .expect("commits batch c");
    b.await
        .expect("batch b ran")
        .unwrap_or_else(|error| panic!("batch b failed: {error}"));

    let sessions: Vec<(String, bool)> = sqlx::query_as(
        "select device_id, ended_at is null from device_sessions
         where user_id = $1 order by device_id",
    )
    .bind(u.as_uuid())
    .fetch_all(&pool)
    .await
    .expect("reads the sessions");
    assert_eq!(
        sessions,
        [("first".to_owned(), true), ("second".to_owned(), true)],
        "one open session per device"
    );
    let settings: Vec<Option<String>> =
        sqlx::query_scalar("select status_message from settings_changes where user_id = $1")
            .bind(u.as_uuid())
            .fetch_all(&pool)
            .await
            .expect("reads the settings changes");
    assert_eq!(
        settings,
        [Some("From b".to_owned())],
        "one change, recorded once"
    );
}

/// How many backends of the test's database wait for a lock.
async fn backends_waiting_for_locks(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_stat_activity
         where datname = current_database() and wait_event_type = 'Lock'",
    )
    .fetch_one(pool)
    .await
    .expect("reads the activity")
}

/// Waits until `count` backends of the test's database wait for a lock.
async fn until_backends_wait(pool: &PgPool, count: i64) {
    let started = std::time::Instant::now();
    while backends_waiting_for_locks(pool).await < count {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{count} backends never waited"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The pings `app` has taken into its batches so far, from its metrics.
async fn batched_pings(app: &TestApp) -> f64 {
    metric(app, "presence_pings_total{outcome=\"batched\"}").await
}

/// A page that closes right after its first ping sends its sign-out while
/// the ping still waits for a batch. The sign-out was written at once: it
/// found no device (`404`), and the ping, committed after it, left the device
/// live until it expired. A sign-out now waits for the pings before it.
///
/// Every ping writer is kept busy on a locked row, so the ping waits in the
/// writer's queue when the sign-out comes. On one node even when the suite
/// runs on Citus: the lock waits are watched in `pg_stat_activity`.
#[sqlx::test]
async fn a_sign_out_right_after_a_ping_signs_the_device_out(pool: PgPool) {
    let app = spawn_app_on_single_node(
        pool_for_batches(&pool).await,
        ManualClock::starting_at(start_time()),
    )
    .await;
    let blockers: Vec<UserId> = (0..4).map(|_| new_user()).collect();
    for blocker in &blockers {
        app.ping_ok(*blocker, json!({"deviceId": "first"})).await;
    }
    let mut holding = pool.begin().await.expect("a transaction");
    sqlx::query("select 1 from user_status where user_id = any($1) for update")
        .bind(
            blockers
                .iter()
                .map(|user| user.as_uuid())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *holding)
        .await
        .expect("locks the rows");
    // Each writer takes one blocker's ping and waits at its row.
    let mut blocked = Vec::new();
    for (waiting, blocker) in (1..).zip(blockers) {
        let app = app.clone();
        blocked.push(tokio::spawn(async move {
            app.ping(blocker, json!({"deviceId": "second"}))
                .await
                .status()
        }));
        until_backends_wait(&pool, waiting).await;
    }

    let user = new_user();
    let before = batched_pings(&app).await;
    let pinging = tokio::spawn({
        let app = app.clone();
        async move { app.ping(user, json!({"deviceId": "tab"})).await.status() }
    });
    while batched_pings(&app).await <= before {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut signing_out = tokio::spawn({
        let app = app.clone();
        async move { app.delete_device(user, "tab").await.status() }
    });
    // Without the wait, the sign-out was answered at once (404).
    let early = tokio::time::timeout(Duration::from_secs(1), &mut signing_out).await;
    assert!(
        early.is_err(),
        "the sign-out was answered before the ping before it was written: {early:?}"
    );
    holding.commit().await.expect("lets the writers go");

    for ping in blocked {
        assert_eq!(ping.await.expect("the ping ran"), 200);
    }
    assert_eq!(pinging.await.expect("the ping ran"), 200);
    assert_eq!(signing_out.await.expect("the sign-out ran"), 204);
    let me = app.status_of(user, user).await;
    assert_eq!(me["devices"], json!([]), "{me}");
    assert_eq!(me["status"], "offline", "{me}");
}

/// Pings that come within the batch wait of each other go to PostgreSQL in
/// one call and one commit, each answered with its own row. Before the wait,
/// a ping arriving while no batch was being gathered went alone: ten pings
/// 20 ms apart were ten batches.
#[sqlx::test]
async fn pings_within_the_batch_wait_are_written_together_each_answered_its_own(pool: PgPool) {
    let app = crate::helpers::spawn_app_with(
        pool,
        &[
            ("PRESENCE_PING_BATCH_WAIT", "2s"),
            ("PRESENCE_DB_DEADLINE", "10s"),
        ],
    )
    .await;
    let users: Vec<UserId> = (0..10).map(|_| new_user()).collect();
    // Sent 20 ms apart, none waiting for an answer before the next.
    let answers = join_all(users.iter().enumerate().map(|(n, user)| {
        let app = &app;
        async move {
            tokio::time::sleep(Duration::from_millis(20) * u32::try_from(n).expect("small")).await;
            app.ping_ok(*user, json!({"deviceId": format!("tab-{n}")}))
                .await
        }
    }))
    .await;

    for (n, (user, answer)) in users.iter().zip(&answers).enumerate() {
        assert_eq!(
            answer["userId"],
            json!(user.to_string()),
            "ping {n}'s own row"
        );
        assert_eq!(answer["devices"][0]["deviceId"], json!(format!("tab-{n}")));
        assert_eq!(answer["status"], "online");
    }
    assert_eq!(batched_pings(&app).await, 10.0);
    let batches = metric(&app, "presence_ping_batches_total").await;
    assert!(
        (1.0..=2.0).contains(&batches),
        "ten pings within the wait went in {batches} batches"
    );
}

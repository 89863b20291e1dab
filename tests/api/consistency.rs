//! Exact across instances and concurrency: durable acknowledgements,
//! read-your-writes, a cache that only moves forward, notifications between
//! instances, and a randomized model of all of it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::future::join_all;
use presence::clock::ManualClock;
use presence::domain::UserId;
use presence::statuses::LISTENER_APPLICATION_NAME;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRng, TestRunner};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, metric, new_user, spawn_app_on_clock, spawn_app_with, start_time};

/// Settings of instances whose cache would hide another instance's writes for a minute without notifications.
const LONG_CACHE: [(&str, &str); 1] = [("PRESENCE_CACHE_TTL", "60s")];

fn device_ids(view: &Value) -> BTreeSet<String> {
    view["devices"]
        .as_array()
        .map(|devices| {
            devices
                .iter()
                .filter_map(|device| device["deviceId"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn two_instances(pool: PgPool, settings: &[(&str, &str)]) -> (TestApp, TestApp, ManualClock) {
    let clock = ManualClock::starting_at(start_time());
    let first = spawn_app_on_clock(pool.clone(), settings, clock.clone()).await;
    let second = spawn_app_on_clock(pool, settings, clock.clone()).await;
    (first, second, clock)
}

/// Polls until `seen` holds for what `viewer` is shown of `user` on `app`, at most 10 s.
async fn shown_eventually(
    app: &TestApp,
    viewer: UserId,
    user: UserId,
    seen: impl Fn(&Value) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let view = app.status_of(viewer, user).await;
        if seen(&view) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never shown: {view}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[sqlx::test]
async fn concurrent_pings_of_one_user_are_all_in_the_callers_next_read(pool: PgPool) {
    let clock = ManualClock::starting_at(start_time());
    let app = spawn_app_on_clock(pool, &LONG_CACHE, clock).await;
    for attempt in 0..60 {
        let user = new_user();
        let message = format!("m{attempt}");
        let (with_message, second_device) = futures::join!(
            app.ping(user, json!({"deviceId": "a", "statusMessage": message})),
            app.ping(user, json!({"deviceId": "b"})),
        );
        assert_eq!(with_message.status(), 200);
        assert_eq!(second_device.status(), 200);
        let me = app.status_of(user, user).await;
        assert_eq!(
            me["statusMessage"],
            message.as_str(),
            "attempt {attempt}: {me}"
        );
        assert_eq!(
            device_ids(&me),
            BTreeSet::from(["a".to_owned(), "b".to_owned()]),
            "attempt {attempt}: {me}"
        );
        let batch = app.batch_post(user, &[user]).await;
        assert_eq!(batch["statuses"][0], me, "a batch read agrees");
    }
}

#[sqlx::test]
async fn a_ping_after_another_instance_signed_the_device_out_is_stored(pool: PgPool) {
    let (first, second, _clock) = two_instances(pool.clone(), &LONG_CACHE).await;
    let user = new_user();
    first.ping_ok(user, json!({"deviceId": "d"})).await;
    first
        .ping_ok(user, json!({"deviceId": "d", "active": false}))
        .await;
    assert_eq!(second.delete_device(user, "d").await.status(), 204);
    let me = first
        .ping_ok(user, json!({"deviceId": "d", "active": false}))
        .await;
    assert_eq!(device_ids(&me), BTreeSet::from(["d".to_owned()]));
    let stored = presence::store::fetch_status(&pool, user)
        .await
        .expect("reads")
        .expect("a row");
    assert_eq!(stored.devices.len(), 1, "the database keeps the device");
    let viewer = new_user();
    for app in [&first, &second] {
        shown_eventually(app, viewer, user, |view| view["status"] == "online").await;
    }
}

#[sqlx::test]
async fn other_instances_learn_of_a_write_long_before_the_cache_ttl(pool: PgPool) {
    let (writer, reader, _clock) = two_instances(pool, &LONG_CACHE).await;
    let (user, viewer, blocked_viewer) = (new_user(), new_user(), new_user());
    writer
        .ping_ok(user, json!({"statusMessage": "Before"}))
        .await;
    shown_eventually(&reader, viewer, user, |view| {
        view["statusMessage"] == "Before"
    })
    .await;
    shown_eventually(&reader, blocked_viewer, user, |view| {
        view["status"] == "online"
    })
    .await;
    for round in 0..5 {
        let message = format!("After {round}");
        writer
            .ping_ok(user, json!({"statusMessage": message}))
            .await;
        shown_eventually(&reader, viewer, user, |view| {
            view["statusMessage"] == message.as_str()
        })
        .await;
        let viewer = blocked_viewer;
        let blocked = round % 2 == 0;
        assert_eq!(
            writer
                .set_block(user, &viewer.to_string(), blocked)
                .await
                .status(),
            204
        );
        shown_eventually(&reader, viewer, user, |view| {
            (view["status"] == "offline") == blocked
        })
        .await;
    }
    // A sign-out is announced too: with its only device gone, the user is offline.
    assert_eq!(writer.delete_device(user, "default").await.status(), 204);
    shown_eventually(&reader, viewer, user, |view| view["status"] == "offline").await;
}

/// Sets `user`'s status message on `writer` and waits until `reader` shows it to `viewer`.
async fn message_shown(
    writer: &TestApp,
    reader: &TestApp,
    user: UserId,
    viewer: UserId,
    message: &str,
) {
    writer
        .ping_ok(user, json!({"statusMessage": message}))
        .await;
    shown_eventually(reader, viewer, user, |view| {
        view["statusMessage"] == message
    })
    .await;
}

/// The read cache's misses so far on `app`, from its metrics.
async fn cache_misses(app: &TestApp) -> f64 {
    metric(app, "presence_cache_lookups_total{result=\"miss\"}").await
}

#[sqlx::test]
async fn a_cached_row_outlives_the_ttl_while_the_listener_keeps_up(pool: PgPool) {
    let ttl = Duration::from_millis(300);
    let (writer, reader, _clock) = two_instances(pool, &[("PRESENCE_CACHE_TTL", "300ms")]).await;
    let (user, viewer) = (new_user(), new_user());
    message_shown(&writer, &reader, user, viewer, "Before").await;
    // Nothing changes the row: for ten TTLs, reads are served from the cache,
    // because the listener's probes show it has missed nothing. (Were rows
    // only kept for the TTL, every TTL would cost a read of the database.)
    let before = cache_misses(&reader).await;
    for _ in 0..30 {
        tokio::time::sleep(ttl / 3).await;
        reader.status_of(viewer, user).await;
    }
    let misses = cache_misses(&reader).await - before;
    assert!(
        misses <= 3.0,
        "{misses} reads of 30 over ten TTLs went to the database"
    );
    // And a write on the other instance still shows.
    message_shown(&writer, &reader, user, viewer, "After").await;
}

#[sqlx::test]
async fn with_the_listener_killed_a_write_still_shows_within_the_ttl(pool: PgPool) {
    let (writer, reader, _clock) =
        two_instances(pool.clone(), &[("PRESENCE_CACHE_TTL", "1s")]).await;
    let (user, viewer) = (new_user(), new_user());
    message_shown(&writer, &reader, user, viewer, "Before").await;
    // Both listeners of this test's database (each test has a database of its
    // own), once both are connected.
    let listeners = || {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from pg_stat_activity \
             where application_name = $1 and datname = current_database()",
        )
        .bind(LISTENER_APPLICATION_NAME)
        .fetch_one(&pool)
    };
    let started = Instant::now();
    while listeners().await.expect("counts") < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the listeners never connected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed: Vec<bool> = sqlx::query_scalar(
        "select pg_terminate_backend(pid) from pg_stat_activity \
         where application_name = $1 and datname = current_database()",
    )
    .bind(LISTENER_APPLICATION_NAME)
    .fetch_all(&pool)
    .await
    .expect("terminates");
    assert_eq!(killed, [true, true], "one listener per instance");
    message_shown(&writer, &reader, user, viewer, "After").await;
}

/// One step of the randomized model: what a client does, on which instance.
#[derive(Debug, Clone)]
enum Step {
    /// A ping of the device (new or known), as activity or heartbeat.
    Ping { device: u8, active: bool },
    /// A new status message.
    Message,
    /// Signing a device out.
    SignOut { device: u8 },
    /// Blocking or unblocking another user.
    Block { other: usize, block: bool },
}

/// The sequential model of what the acknowledged operations leave stored.
#[derive(Debug, Default, Clone, PartialEq)]
struct Model {
    devices: BTreeSet<String>,
    message: Option<String>,
    blocks: BTreeSet<UserId>,
}

#[sqlx::test]
async fn a_randomized_model_of_two_instances_holds_read_your_writes_and_loses_nothing(
    pool: PgPool,
) {
    let (first, second, _clock) = two_instances(pool.clone(), &LONG_CACHE).await;
    let apps = [&first, &second];
    let users: Vec<UserId> = (0..4).map(|_| new_user()).collect();
    let mut models: Vec<Model> = vec![Model::default(); users.len()];
    let mut runner = TestRunner::new(Config::default());
    let rng: &mut TestRng = runner.rng();
    for round in 0..80 {
        // Each user does one or two things per round, each on a random
        // instance, all at once. Two steps of one user never touch the same
        // device (a message is sent from d0), so they commute and the model
        // knows what each must show right after its answer.
        let mut steps: Vec<(usize, usize, Step)> = Vec::new();
        let mut blocking: BTreeSet<(usize, usize)> = BTreeSet::new();
        for user in 0..users.len() {
            let mut free_devices: Vec<u8> = vec![0, 1, 2, 3];
            let mut messaged = false;
            for _ in 0..rng.random_range(1..=2) {
                let device = free_devices.remove(rng.random_range(0..free_devices.len()));
                let step = match rng.random_range(0..10) {
                    0..=3 => Step::Ping {
                        device,
                        active: rng.random_bool(0.5),
                    },
                    4 | 5 if !messaged && free_devices.contains(&0) => {
                        messaged = true;
                        free_devices.retain(|free| *free != 0);
                        Step::Message
                    }
                    4..=7 => Step::SignOut { device },
                    _ => {
                        let other = (user + 1 + rng.random_range(0..users.len() - 1)) % users.len();
                        if blocking.contains(&(other, user)) || blocking.contains(&(user, other)) {
                            Step::Ping {
                                device,
                                active: false,
                            }
                        } else {
                            blocking.insert((user, other));
                            Step::Block {
                                other,
                                block: rng.random_bool(0.5),
                            }
                        }
                    }
                };
                steps.push((user, rng.random_range(0..2), step));
            }
        }
        join_all(steps.iter().map(|(user, app, step)| {
            let (app, me) = (apps[*app], users[*user]);
            let users = &users;
            async move {
                match step {
                    Step::Ping { device, active } => {
                        let view = app
                            .ping_ok(
                                me,
                                json!({"deviceId": format!("d{device}"), "active": active}),
                            )
                            .await;
                        assert!(
                            device_ids(&view).contains(&format!("d{device}")),
                            "PUT answer: {view}"
                        );
                    }
                    Step::Message => {
                        let message = format!("r{round}");
                        app.ping_ok(me, json!({"deviceId": "d0", "statusMessage": message}))
                            .await;
                    }
                    Step::SignOut { device } => {
                        let status = app.delete_device(me, &format!("d{device}")).await.status();
                        assert!(status == 204 || status == 404, "{status}");
                    }
                    Step::Block { other, block } => {
                        let status = app
                            .set_block(me, &users[*other].to_string(), *block)
                            .await
                            .status();
                        assert_eq!(status, 204);
                    }
                }
                // Read-your-writes: a read on the same instance, after the answer.
                let me_now = app.status_of(me, me).await;
                match step {
                    Step::Ping { device, .. } => assert!(
                        device_ids(&me_now).contains(&format!("d{device}")),
                        "round {round}: d{device} missing from {me_now}"
                    ),
                    Step::Message => {
                        assert_eq!(
                            me_now["statusMessage"],
                            format!("r{round}"),
                            "round {round}: {me_now}"
                        );
                        assert!(
                            device_ids(&me_now).contains("d0"),
                            "round {round}: {me_now}"
                        );
                    }
                    Step::SignOut { device } => assert!(
                        !device_ids(&me_now).contains(&format!("d{device}")),
                        "round {round}: d{device} still in {me_now}"
                    ),
                    Step::Block { other, block: true } => {
                        let them = app.status_of(me, users[*other]).await;
                        assert_eq!(them["status"], "offline", "round {round}: blocked {them}");
                        assert_eq!(
                            them["platforms"],
                            json!([]),
                            "round {round}: blocked {them}"
                        );
                    }
                    Step::Block { .. } => {}
                }
            }
        }))
        .await;
        for (user, _, step) in &steps {
            let model = &mut models[*user];
            match step {
                Step::Ping { device, .. } => {
                    model.devices.insert(format!("d{device}"));
                }
                Step::Message => {
                    model.message = Some(format!("r{round}"));
                    model.devices.insert("d0".to_owned());
                }
                Step::SignOut { device } => {
                    model.devices.remove(&format!("d{device}"));
                }
                Step::Block { other, block } => {
                    if *block {
                        model.blocks.insert(users[*other]);
                    } else {
                        model.blocks.remove(&users[*other]);
                    }
                }
            }
        }
    }
    // The stored rows are exactly the sequential model of the acknowledged operations.
    for (user, model) in users.iter().zip(&models) {
        let stored = presence::store::fetch_status(&pool, *user)
            .await
            .expect("reads");
        let (devices, message) = stored.map_or((BTreeSet::new(), None), |row| {
            (
                row.devices.iter().map(|device| device.id.clone()).collect(),
                row.status_message,
            )
        });
        let blocks: BTreeSet<UserId> = sqlx::query_scalar::<_, uuid::Uuid>(
            "select other_id from user_blocks where user_id = $1 and blocks_other",
        )
        .bind(user.as_uuid())
        .fetch_all(&pool)
        .await
        .expect("reads blocks")
        .into_iter()
        .map(UserId::from)
        .collect();
        let stored = Model {
            devices,
            message,
            blocks,
        };
        assert_eq!(&stored, model, "{user}");
    }
}

#[sqlx::test]
async fn one_batch_may_hold_several_pings_of_one_user_each_answered_in_order(pool: PgPool) {
    crate::citus::prepare(&pool).await;
    let (alice, bob) = (new_user(), new_user());
    let ping = |user: UserId, device: &str, message: Option<&str>| {
        let body = match message {
            Some(message) => json!({"deviceId": device, "statusMessage": message}),
            None => json!({"deviceId": device}),
        };
        let parsed: presence::domain::PingBody = serde_json::from_value(body).expect("a body");
        presence::store::PingWrite {
            user,
            ping: parsed.parse(start_time()).expect("a ping"),
            at: start_time(),
        }
    };
    let writes = [
        ping(alice, "a", None),
        ping(bob, "b", None),
        ping(alice, "c", Some("second")),
        ping(alice, "a", None),
    ];
    let mut connection = pool.acquire().await.expect("a connection");
    // As the ping writer calls it: on Citus, one call per shard.
    let rows = if crate::citus::distributed(&pool).await {
        presence::store::citus::apply_pings_by_shard(&mut connection, &writes, 10)
            .await
            .expect("writes")
            .into_iter()
            .map(|row| row.expect("each ping is written"))
            .collect()
    } else {
        presence::store::apply_pings(&mut connection, &writes, 10)
            .await
            .expect("writes")
    };
    let devices = |index: usize| -> BTreeSet<String> {
        rows[index]
            .devices
            .iter()
            .map(|device| device.id.clone())
            .collect()
    };
    assert_eq!(rows.len(), 4);
    assert_eq!(devices(0), BTreeSet::from(["a".to_owned()]));
    assert_eq!(devices(1), BTreeSet::from(["b".to_owned()]));
    assert_eq!(devices(2), BTreeSet::from(["a".to_owned(), "c".to_owned()]));
    assert_eq!(rows[2].status_message.as_deref(), Some("second"));
    assert_eq!(devices(3), devices(2), "the last ping sees both before it");
    assert!(rows[3].version > rows[2].version && rows[2].version > rows[0].version);
}

#[sqlx::test]
async fn single_reads_by_many_viewers_are_served_from_the_cache(pool: PgPool) {
    let app = spawn_app_with(pool, &[("PRESENCE_CACHE_TTL", "60s")]).await;
    let user = new_user();
    app.ping_ok(user, json!({})).await;
    app.status_of(new_user(), user).await;
    // Each viewer asks once: the row is cached, and so is the fact that a
    // viewer is in no block. (Were blocks only cached per pair, each of these
    // reads would go to the database.)
    let before = cache_misses(&app).await;
    for _ in 0..20 {
        app.status_of(new_user(), user).await;
    }
    assert_eq!(cache_misses(&app).await - before, 0.0);
}

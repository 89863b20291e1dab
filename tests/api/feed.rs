//! The change feed (`GET /api/admin/changes`): every change of a status,
//! whatever made it, exactly once and in order, with cursors that expire.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use presence::clock::{Clock, ManualClock, SystemClock};
use presence::domain::UserId;
use presence::jobs::{FEED_LOCK, FeedSchedule, FeedSearch, run_feed_job};
use proptest::prelude::RngExt;
use proptest::test_runner::{RngAlgorithm, TestRng};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{
    TestApp, error_code, iso, new_user, new_user_ending_in, spawn_app_on_clock, spawn_app_with,
    start_time, token_for, users_minute,
};
use crate::history::service_token;
use crate::model::{Event, Rules};

/// The feed job's schedule on `pool` and `clock`, as a test runs it by hand
/// (on plain PostgreSQL, counting nothing).
fn job_schedule(pool: &PgPool, clock: Arc<dyn Clock>) -> FeedSchedule {
    FeedSchedule {
        pool: pool.clone(),
        clock,
        every: Duration::from_millis(250),
        retention: TimeDelta::days(1),
        distributed: false,
        metrics: None,
    }
}

/// `GET /api/admin/changes` with a service token: the status and the body.
async fn read(app: &TestApp, query: &str) -> (StatusCode, Value) {
    let token = service_token("feed-reader");
    let response = app
        .raw(
            reqwest::Method::GET,
            &format!("/api/admin/changes{query}"),
            &[("Authorization", &format!("Bearer {token}"))],
            None,
        )
        .await;
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

/// A reader of the feed that follows `next`, keeping every change it was given.
struct Reader {
    next: Option<String>,
    seen: Vec<Value>,
}

impl Reader {
    fn new() -> Self {
        Self {
            next: None,
            seen: Vec::new(),
        }
    }

    /// Reads one page (of at most `limit`); how many changes it held.
    async fn poll(&mut self, app: &TestApp, limit: u32) -> usize {
        let query = match &self.next {
            Some(next) => format!("?after={next}&limit={limit}"),
            None => format!("?limit={limit}"),
        };
        let (status, body) = read(app, &query).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let changes = body["changes"].as_array().cloned().unwrap_or_default();
        self.next = Some(body["next"].as_str().expect("a next cursor").to_owned());
        let count = changes.len();
        self.seen.extend(changes);
        count
    }

    /// Polls until a change of `user` is among those seen; the changes read by then.
    async fn until_change_of(&mut self, app: &TestApp, user: UserId) -> &[Value] {
        self.until_changes_of(app, user, 1).await;
        &self.seen
    }

    /// Polls until at least `count` changes of `user` are among those seen;
    /// those changes (see [`of_user`]).
    async fn until_changes_of(
        &mut self,
        app: &TestApp,
        user: UserId,
        count: usize,
    ) -> Vec<(String, String, String, String, String, String)> {
        let started = std::time::Instant::now();
        loop {
            let changes = of_user(&self.seen, user);
            if changes.len() >= count {
                return changes;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{} of {count} changes of {user} reached the feed",
                changes.len()
            );
            if self.poll(app, 1000).await == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The changes of `user` among `changes`, as (status, previous, public, previous public, cause, at).
fn of_user(
    changes: &[Value],
    user: UserId,
) -> Vec<(String, String, String, String, String, String)> {
    changes
        .iter()
        .filter(|change| change["userId"] == user.to_string())
        .map(|change| {
            let field = |name: &str| change[name].as_str().expect(name).to_owned();
            (
                field("status"),
                field("previousStatus"),
                field("publicStatus"),
                field("previousPublicStatus"),
                field("cause"),
                field("at"),
            )
        })
        .collect()
}

/// The numbers of `changes`, in their order.
pub fn ids(changes: &[Value]) -> Vec<u64> {
    changes
        .iter()
        .map(|change| {
            change["id"]
                .as_str()
                .expect("an id")
                .parse()
                .expect("a number")
        })
        .collect()
}

fn ms(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Makes one change of a fresh user, so that a reader can tell when the
/// feed has published everything before it.
async fn fence(app: &TestApp, reader: &mut Reader) {
    let user = new_user();
    app.ping_ok(user, json!({"deviceId": "fence"})).await;
    reader.until_change_of(app, user).await;
}

#[sqlx::test]
async fn every_write_that_changes_a_status_is_in_the_feed_with_its_cause(pool: PgPool) {
    let app = spawn_app_with(pool, &[]).await;
    let user = new_user();
    let t0 = start_time();
    let step = TimeDelta::seconds(1);
    app.ping_ok(user, json!({"deviceId": "tab"})).await;
    app.advance(step);
    app.ping_ok(user, json!({"deviceId": "tab", "manualStatus": "dnd"}))
        .await;
    app.advance(step);
    app.ping_ok(user, json!({"deviceId": "tab", "invisible": true}))
        .await;
    app.advance(step);
    // A heartbeat changes nothing anyone sees: no change.
    app.ping_ok(user, json!({"deviceId": "tab", "active": false}))
        .await;
    app.ping_ok(user, json!({"deviceId": "tab", "invisible": false}))
        .await;
    app.advance(step);
    app.ping_ok(user, json!({"deviceId": "tab", "manualStatus": null}))
        .await;
    app.advance(step);
    assert_eq!(app.delete_device(user, "tab").await.status(), 204);

    let mut reader = Reader::new();
    fence(&app, &mut reader).await;
    let expected = [
        ("online", "offline", "online", "offline", "activity", t0),
        ("dnd", "online", "dnd", "online", "manual", t0 + step),
        ("dnd", "dnd", "offline", "dnd", "invisible", t0 + step * 2),
        ("dnd", "dnd", "dnd", "offline", "visible", t0 + step * 3),
        ("online", "dnd", "online", "dnd", "manual", t0 + step * 4),
        (
            "offline",
            "online",
            "offline",
            "online",
            "signed-out",
            t0 + step * 5,
        ),
    ]
    .map(|(status, previous, public, previous_public, cause, at)| {
        (
            status.to_owned(),
            previous.to_owned(),
            public.to_owned(),
            previous_public.to_owned(),
            cause.to_owned(),
            ms(at),
        )
    });
    assert_eq!(of_user(&reader.seen, user), expected);
    let ids = ids(&reader.seen);
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
}

#[sqlx::test]
async fn changes_by_the_clock_are_stamped_with_the_instant_the_rules_say(pool: PgPool) {
    let settings = [
        ("PRESENCE_IDLE_AFTER", "2m"),
        ("PRESENCE_AWAY_AFTER", "4m"),
        ("PRESENCE_OFFLINE_AFTER", "6m"),
        ("PRESENCE_PRUNE_AFTER", "6m"),
    ];
    let app = spawn_app_with(pool, &settings).await;
    let t0 = start_time();
    let (quiet, pinging, expiring) = (new_user(), new_user(), new_user());
    app.ping_ok(quiet, json!({"deviceId": "tab"})).await;
    app.ping_ok(pinging, json!({"deviceId": "tab"})).await;
    let until = t0 + TimeDelta::seconds(90);
    app.ping_ok(
        expiring,
        json!({"deviceId": "tab", "manualStatus": "away",
               "manualStatusUntil": until.to_rfc3339()}),
    )
    .await;
    // One user's device keeps sending heartbeats: its changes come in
    // through the writes; the others' through the feed job alone.
    for _ in 0..7 {
        app.advance(TimeDelta::minutes(1));
        app.ping_ok(pinging, json!({"deviceId": "tab", "active": false}))
            .await;
    }

    let mut reader = Reader::new();
    fence(&app, &mut reader).await;
    fence(&app, &mut reader).await;
    let clock = |user, expected: &[(&str, &str, &str, TimeDelta)]| {
        let changes: Vec<(String, String, String)> = of_user(&reader.seen, user)
            .into_iter()
            .skip(1)
            .map(|(status, _, public, _, cause, at)| (status, format!("{public} {cause}"), at))
            .collect();
        let expected: Vec<(String, String, String)> = expected
            .iter()
            .map(|(status, public, cause, after)| {
                (
                    (*status).to_owned(),
                    format!("{public} {cause}"),
                    ms(t0 + *after),
                )
            })
            .collect();
        assert_eq!(changes, expected, "{user}");
    };
    let minutes = TimeDelta::minutes;
    clock(
        quiet,
        &[
            ("idle", "idle", "idle", minutes(2)),
            ("away", "away", "away", minutes(4)),
            ("offline", "offline", "timed-out", minutes(6)),
        ],
    );
    clock(
        pinging,
        &[
            ("idle", "idle", "idle", minutes(2)),
            ("away", "away", "away", minutes(4)),
        ],
    );
    clock(
        expiring,
        &[
            ("online", "online", "manual-expired", TimeDelta::seconds(90)),
            ("idle", "idle", "idle", minutes(2)),
            ("away", "away", "away", minutes(4)),
            ("offline", "offline", "timed-out", minutes(6)),
        ],
    );
}

/// The feed job finds a user the instant their next change is due, not a
/// microsecond before, wherever in the wall clock's minute their own minute
/// starts; a heartbeat moves both indexed minutes of the row (the feed's and
/// the prune job's) to the user's minute of its instant.
#[sqlx::test]
async fn a_user_is_due_the_instant_their_change_is_wherever_their_minute_starts(pool: PgPool) {
    let settings = [
        ("PRESENCE_OFFLINE_AFTER", "1m"),
        ("PRESENCE_PRUNE_AFTER", "5m"),
    ];
    let app = spawn_app_with(pool.clone(), &settings).await;
    // Minutes that start with the wall clock's, half a minute later (at the
    // device's timeout exactly), just after it, and last of all.
    let users = [0x00, 0x80, 0x81, 0xff].map(new_user_ending_in);
    app.advance(TimeDelta::seconds(30));
    let pinged = app.clock.now();
    for user in users {
        app.ping_ok(user, json!({"deviceId": "tab"})).await;
    }
    let timeout = pinged + TimeDelta::minutes(1);
    for user in users {
        let (feed_minute, prune_minute): (DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
            "select next_change_minute, oldest_ping_minute from user_status where user_id = $1",
        )
        .bind(user.as_uuid())
        .fetch_one(&pool)
        .await
        .expect("reads the row");
        assert_eq!(
            (feed_minute, prune_minute),
            (users_minute(user, timeout), users_minute(user, pinged)),
            "{user}"
        );
    }
    let due = |at: DateTime<Utc>| {
        let pool = pool.clone();
        async move {
            let mut due = presence::store::users_due(&pool, at, 100)
                .await
                .expect("reads the due users");
            due.sort();
            due
        }
    };
    assert_eq!(
        due(timeout - TimeDelta::microseconds(1)).await,
        Vec::<uuid::Uuid>::new()
    );
    let mut expected: Vec<_> = users.iter().map(UserId::as_uuid).collect();
    expected.sort();
    assert_eq!(due(timeout).await, expected);
}

/// The feed job's schedule on a pool of one connection that holds the job's
/// lock for its session: the app's own job then never gets the lock, and
/// only the test's runs (on that connection) account for the clock's changes.
async fn job_alone(pool: &PgPool, clock: ManualClock) -> FeedSchedule {
    let single = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with((*pool.connect_options()).clone())
        .await
        .expect("a pool of one connection");
    sqlx::query("select pg_advisory_lock($1)")
        .bind(FEED_LOCK)
        .execute(&single)
        .await
        .expect("the job's lock");
    FeedSchedule {
        distributed: crate::citus::distributed(pool).await,
        ..job_schedule(&single, Arc::new(clock))
    }
}

/// How many rows are due at `at` (their next change by the clock has come):
/// none, right after a run of the job at `at`.
async fn rows_due(pool: &PgPool, at: DateTime<Utc>) -> i64 {
    sqlx::query_scalar("select count(*) from user_status where next_change_at <= $1")
        .bind(at)
        .fetch_one(pool)
        .await
        .expect("counts the due rows")
}

/// A write whose next change is so near that the user's own minute of it
/// has already started (a manual status ending ten seconds on) indexes the
/// row by the change's instant instead: a write always puts the row's minute
/// after its own instant, so the job, which reads each run only the minutes
/// the clock passed since its last, finds the row when its change comes.
#[sqlx::test]
async fn a_write_puts_the_rows_minute_after_its_own_instant(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), &[]).await;
    // The wall clock's minute, which started at 10:00:00.
    let user = new_user_ending_in(0x00);
    app.advance(TimeDelta::seconds(30));
    let at = app.clock.now();
    let until = at + TimeDelta::seconds(10);
    app.ping_ok(
        user,
        json!({"deviceId": "tab", "manualStatus": "dnd", "manualStatusUntil": iso(until)}),
    )
    .await;
    let (next_change_at, minute): (DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "select next_change_at, next_change_minute from user_status where user_id = $1",
    )
    .bind(user.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("reads the row");
    assert_eq!(next_change_at, until, "the manual status's end is next");
    assert!(
        users_minute(user, until) <= at,
        "the user's minute of it has started"
    );
    assert_eq!(minute, until, "the row is indexed by the change's instant");
}

/// The job as it runs in a server: each run searches on from where the last
/// left off (the minutes the clock passed since, the rows it watches whose
/// change has come, a full search every few seconds). Users of every minute
/// heartbeat, act, set manual statuses that end within seconds, and sign
/// out, at random; after every run, a quarter second apart, no row is left
/// due. A row missed by the search would be due until the next full search.
#[sqlx::test]
async fn a_job_searching_on_from_its_last_run_leaves_no_change_behind(pool: PgPool) {
    let settings = [
        ("PRESENCE_IDLE_AFTER", "20s"),
        ("PRESENCE_AWAY_AFTER", "40s"),
        ("PRESENCE_LAST_SEEN_PRECISION", "10s"),
    ];
    let app = spawn_app_with(pool.clone(), &settings).await;
    let schedule = job_alone(&pool, app.clock.clone()).await;
    let users: Vec<UserId> = (0..48u8)
        .map(|i| new_user_ending_in(i.wrapping_mul(37)))
        .collect();
    let mut rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut search = FeedSearch::default();
    let (mut advanced, mut watched, mut found_late) = (0, 0, 0);
    // Three minutes in quarter seconds; at half time the search starts
    // afresh, as on an instance that has just taken the job over.
    for step in 0..720 {
        app.advance(TimeDelta::milliseconds(250));
        let now = app.clock.now();
        for user in &users {
            let roll: f64 = rng.random();
            if roll < 0.03 {
                app.ping_ok(*user, json!({"deviceId": "tab", "active": false}))
                    .await;
            } else if roll < 0.036 {
                app.ping_ok(*user, json!({"deviceId": "tab"})).await;
            } else if roll < 0.04 {
                let until = now + TimeDelta::milliseconds(rng.random_range(500..30_000));
                app.ping_ok(
                    *user,
                    json!({"deviceId": "tab", "manualStatus": "dnd",
                           "manualStatusUntil": iso(until)}),
                )
                .await;
            } else if roll < 0.041 {
                app.delete_device(*user, "tab").await;
            }
        }
        if step == 360 {
            search = FeedSearch::default();
        }
        let run = search
            .run(&schedule, now, false)
            .await
            .expect("the job runs")
            .expect("it holds the lock");
        advanced += run.advanced;
        found_late += run.found_late;
        watched = watched.max(search.watched());
        assert_eq!(
            rows_due(&pool, now).await,
            0,
            "rows left due after the run at {now}"
        );
    }
    assert!(advanced > 100, "the clock made {advanced} changes");
    assert!(watched > 0, "no row was watched");
    assert_eq!(
        found_late, 0,
        "rows only the full search found, every write committed in time"
    );
}

/// A write that commits long after its instant (here a manual status whose
/// end comes two seconds on, committed four seconds after it was stamped),
/// when the clock has passed its minute by more than each search reads
/// again: the full search, every few seconds, finds the row, and its change
/// is in the feed at its instant.
#[sqlx::test]
async fn a_write_that_commits_long_after_its_instant_is_found_by_the_full_search(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), &[]).await;
    let schedule = job_alone(&pool, app.clock.clone()).await;
    let user = new_user_ending_in(0x00);
    app.ping_ok(user, json!({"deviceId": "tab"})).await;
    let mut search = FeedSearch::default();
    let run_at_next_quarter = async |search: &mut FeedSearch| {
        app.advance(TimeDelta::milliseconds(250));
        let now = app.clock.now();
        let run = search
            .run(&schedule, now, false)
            .await
            .expect("the job runs")
            .expect("it holds the lock");
        (now, run.advanced, run.found_late)
    };
    for _ in 0..4 {
        run_at_next_quarter(&mut search).await;
    }
    // Stamped at 10:00:01, ending at 10:00:03: its minute is the instant
    // of its change (the user's minute of it started at 10:00:00).
    let stamped = app.clock.now();
    let until = stamped + TimeDelta::seconds(2);
    let mut late = pool.begin().await.expect("a transaction");
    sqlx::query(
        "update user_status set manual_status = 'dnd', manual_status_until = $2, updated_at = $3
         where user_id = $1",
    )
    .bind(user.as_uuid())
    .bind(until)
    .bind(stamped)
    .execute(&mut *late)
    .await
    .expect("the write");
    // The runs meanwhile read the row as it stood: nothing due.
    for _ in 0..16 {
        let (_, advanced, _) = run_at_next_quarter(&mut search).await;
        assert_eq!(advanced, 0);
    }
    late.commit().await.expect("commits four seconds late");
    let committed = app.clock.now();
    let found = loop {
        let (now, advanced, found_late) = run_at_next_quarter(&mut search).await;
        if advanced > 0 {
            assert_eq!(found_late, 1, "counted as found late");
            break now;
        }
        assert!(
            now - committed <= TimeDelta::seconds(6),
            "the row was not found by {now}"
        );
    };
    assert!(found > committed, "found at {found}");
    let (status, cause, at): (String, String, DateTime<Utc>) = sqlx::query_as(
        "select status, cause, at from status_feed where user_id = $1 order by id desc limit 1",
    )
    .bind(user.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("the change is in the feed");
    assert_eq!(
        (status.as_str(), cause.as_str(), at),
        ("online", "manual-expired", until)
    );
}

#[sqlx::test]
async fn a_switched_off_feed_writes_nothing_and_catches_up_when_on_again(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), &[]).await;
    let user = new_user();
    let t0 = start_time();
    app.ping_ok(user, json!({"deviceId": "tab"})).await;
    let mut reader = Reader::new();
    reader.until_change_of(&app, user).await;
    let xmin = || async {
        sqlx::query_scalar::<_, String>("select xmin::text from user_status where user_id = $1")
            .bind(user.as_uuid())
            .fetch_one(&pool)
            .await
            .expect("the row")
    };
    // The feed's switch (the Citus distribution turns it off while rows are
    // copied): while it is off, the user's device times out and the feed job
    // runs, but writes nothing, however often it runs.
    presence::store::set_feed_enabled(&pool, false)
        .await
        .expect("the switch");
    app.advance(TimeDelta::minutes(2));
    let before = xmin().await;
    let schedule = job_schedule(&pool, Arc::new(app.clock.clone()));
    for _ in 0..3 {
        let run = run_feed_job(&schedule, app.clock.now(), false)
            .await
            .expect("the job runs")
            .expect("it holds the lock");
        assert_eq!(
            run.advanced, 0,
            "the job advanced a row while the feed was off"
        );
    }
    assert_eq!(
        xmin().await,
        before,
        "the row was written while the feed was off"
    );

    // On again: the change the clock made meanwhile comes in, at its instant.
    presence::store::set_feed_enabled(&pool, true)
        .await
        .expect("the switch");
    let mut reader = Reader::new();
    let (status, _, _, _, cause, at) = reader.until_changes_of(&app, user, 2).await[1].clone();
    assert_eq!(
        (status.as_str(), cause.as_str(), at),
        ("offline", "timed-out", ms(t0 + TimeDelta::seconds(60)))
    );
}

/// A run of an instance that does not get the job's lock reads nothing: with
/// two instances, the other's runs cost the database a lock attempt each,
/// not a search for the due users. (Before the lock came first, such a run
/// read the due users and only then found the lock taken.)
#[sqlx::test]
async fn a_run_that_does_not_get_the_job_lock_reads_nothing(pool: PgPool) {
    let schedule = job_schedule(&pool, Arc::new(SystemClock));
    // Another instance's run holds the lock; the table of statuses is locked
    // too, so that a read of it would wait until this test lets go.
    let mut other = pool.begin().await.expect("a transaction");
    sqlx::query("select pg_advisory_xact_lock($1)")
        .bind(FEED_LOCK)
        .execute(&mut *other)
        .await
        .expect("the job's lock");
    sqlx::query("lock table user_status in access exclusive mode")
        .execute(&mut *other)
        .await
        .expect("the table's lock");
    let run = tokio::time::timeout(
        Duration::from_secs(60),
        run_feed_job(&schedule, Utc::now(), false),
    )
    .await
    .expect("the run waited to read the statuses, the job's lock taken")
    .expect("the run");
    assert_eq!(run, None, "the run went on without the job's lock");
    other.rollback().await.expect("lets go");
}

/// A backlog of staged changes (users timing out at once after an outage
/// stopped their heartbeats, or a feed switched on again) is published a
/// chunk per run, each in a time that grows with the chunk. The delete of the
/// published changes once matched every picked user with every picked
/// sequence number: on a table without statistics yet, 2,000 changes of a
/// backlog of 140,000 took 4 s, and a chunk of 20,000 minutes, the feed
/// standing still meanwhile.
#[sqlx::test]
async fn a_backlog_of_changes_is_published_without_stalling(pool: PgPool) {
    presence::store::install_sql_functions(&pool)
        .await
        .expect("the functions");
    // No statistics, as before autovacuum's first look at the table.
    sqlx::query("alter table feed_staged set (autovacuum_enabled = false)")
        .execute(&pool)
        .await
        .expect("autovacuum off");
    let (users, changes_each) = (20_000, 7);
    sqlx::query(
        "insert into feed_staged (user_id, at, status, previous_status, public_status,
                                  previous_public_status, cause)
         select u.id, $1 + make_interval(secs => g / 1000.0), 'idle', 'online', 'idle',
                'online', 'idle'
         from (select gen_random_uuid() as id from generate_series(1, $2)) as u,
              generate_series(1, $3) as g",
    )
    .bind(Utc::now() - TimeDelta::minutes(1))
    .bind(users)
    .bind(changes_each)
    .execute(&pool)
    .await
    .expect("the backlog");
    let schedule = job_schedule(&pool, Arc::new(SystemClock));
    // A generous bound: the run takes about a second; a failure here is
    // the square of the chunk, minutes.
    let run = tokio::time::timeout(
        Duration::from_secs(60),
        run_feed_job(&schedule, Utc::now(), false),
    )
    .await
    .expect("the run stalled on the backlog")
    .expect("the run")
    .expect("it holds the lock");
    let chunk = run.published.len();
    assert!(chunk > 0, "nothing was published");
    let (staged, published): (i64, i64) = sqlx::query_as(
        "select (select count(*) from feed_staged), (select count(*) from status_feed)",
    )
    .fetch_one(&pool)
    .await
    .expect("the counts");
    assert_eq!(published, chunk as i64, "what the run says it published");
    assert_eq!(
        staged + published,
        i64::from(users * changes_each),
        "every change is either still staged or published, once"
    );
}

/// A setting changed while the feed was off, then a heartbeat once it is on:
/// the heartbeat's write is the feed's first look at the row since, and the
/// change comes in with it (a heartbeat is otherwise taken as changing
/// nothing the rules read but the latest ping).
#[sqlx::test]
async fn a_setting_changed_while_the_feed_was_off_comes_in_with_the_next_heartbeat(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), &[]).await;
    let user = new_user();
    app.ping_ok(user, json!({"deviceId": "tab"})).await;
    presence::store::set_feed_enabled(&pool, false)
        .await
        .expect("the switch");
    app.advance(TimeDelta::seconds(5));
    app.ping_ok(
        user,
        json!({"deviceId": "tab", "active": false, "manualStatus": "dnd"}),
    )
    .await;
    presence::store::set_feed_enabled(&pool, true)
        .await
        .expect("the switch");
    app.advance(TimeDelta::seconds(5));
    let heartbeat = app.clock.now();
    app.ping_ok(user, json!({"deviceId": "tab", "active": false}))
        .await;
    // A fence after the heartbeat: everything before it is then published.
    let mut reader = Reader::new();
    fence(&app, &mut reader).await;
    let changes = of_user(&reader.seen, user);
    assert_eq!(changes.len(), 2, "{changes:?}");
    let (status, previous, public, _, _, at) = changes[1].clone();
    assert_eq!(
        (status.as_str(), previous.as_str(), public.as_str(), at),
        ("dnd", "online", "dnd", ms(heartbeat))
    );
}

/// A heartbeat from a device that timed out brings the user back: the change
/// out of offline is in the feed at the heartbeat, even when the feed had
/// already accounted for the timeout (the next instant it keeps, the user's
/// activity turning away, then lies ahead). The trigger's quick path took
/// such a heartbeat as changing nothing, and the randomized test above caught
/// it once in a while.
#[sqlx::test]
async fn a_heartbeat_after_the_timeout_brings_the_user_back_in_the_feed(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        &[
            ("PRESENCE_IDLE_AFTER", "20s"),
            ("PRESENCE_AWAY_AFTER", "40s"),
            ("PRESENCE_OFFLINE_AFTER", "30s"),
            ("PRESENCE_PRUNE_AFTER", "30s"),
        ],
    )
    .await;
    let user = new_user();
    let t0 = app.clock.now();
    app.ping_ok(user, json!({"deviceId": "tab"})).await;
    app.advance(TimeDelta::seconds(35));
    // Online, idle at 20 s, offline at 30 s: the feed job accounts for both.
    let mut reader = Reader::new();
    let (status, _, _, _, _, at) = reader.until_changes_of(&app, user, 3).await[2].clone();
    assert_eq!(
        (status.as_str(), at),
        ("offline", ms(t0 + TimeDelta::seconds(30)))
    );

    let heartbeat = app.clock.now();
    let view = app
        .ping_ok(user, json!({"deviceId": "tab", "active": false}))
        .await;
    assert_eq!(view["status"], "idle");
    fence(&app, &mut reader).await;
    let changes = of_user(&reader.seen, user);
    assert_eq!(changes.len(), 4, "{changes:?}");
    let (status, previous, public, _, _, at) = changes[3].clone();
    assert_eq!(
        (status.as_str(), previous.as_str(), public.as_str(), at),
        ("idle", "offline", "idle", ms(heartbeat))
    );
}

#[sqlx::test]
async fn cursors_go_on_from_an_empty_feed_and_expire_with_the_retention(pool: PgPool) {
    let app = spawn_app_with(pool, &[("PRESENCE_FEED_RETENTION", "1m")]).await;
    let (status, body) = read(&app, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["changes"], json!([]));
    let empty = body["next"].as_str().expect("a cursor").to_owned();
    let (status, body) = read(&app, &format!("?after={empty}")).await;
    assert_eq!((status, &body["next"]), (StatusCode::OK, &json!(empty)));

    let user = new_user();
    app.ping_ok(user, json!({"deviceId": "tab"})).await;
    let mut reader = Reader {
        next: Some(empty.clone()),
        seen: Vec::new(),
    };
    reader.until_change_of(&app, user).await;
    assert_eq!(
        reader.seen.len(),
        1,
        "the cursor of the empty feed misses nothing"
    );

    for (query, code) in [
        ("?after=not-a-cursor", "INVALID_CURSOR"),
        ("?after=", "INVALID_CURSOR"),
        // A cursor past the end of the feed is none it gave.
        ("?after=AAAAAAAAJxA", "INVALID_CURSOR"),
        ("?limit=0", "INVALID_BODY"),
        ("?limit=1001", "INVALID_BODY"),
    ] {
        let response = app
            .raw(
                reqwest::Method::GET,
                &format!("/api/admin/changes{query}"),
                &[(
                    "Authorization",
                    &format!("Bearer {}", service_token("feed-reader")),
                )],
                None,
            )
            .await;
        assert_eq!(
            error_code(response).await,
            (StatusCode::BAD_REQUEST, code.to_owned()),
            "{query}"
        );
    }
    let response = app
        .raw(
            reqwest::Method::GET,
            "/api/admin/changes",
            &[("Authorization", &format!("Bearer {}", token_for(user)))],
            None,
        )
        .await;
    assert_eq!(
        error_code(response).await,
        (StatusCode::FORBIDDEN, "FORBIDDEN".to_owned())
    );

    // Past the retention, the first change is deleted: a cursor before it has expired.
    app.advance(TimeDelta::minutes(2));
    let later = new_user();
    app.ping_ok(later, json!({"deviceId": "tab"})).await;
    let started = std::time::Instant::now();
    loop {
        let (status, body) = read(&app, &format!("?after={empty}")).await;
        if status == StatusCode::GONE {
            assert_eq!(body["error"]["code"], "CURSOR_EXPIRED");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the old cursor never expired: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A reader that kept up goes on.
    reader.until_change_of(&app, later).await;
}

/// What one step of the randomized test does to one user.
#[derive(Debug, Clone, Copy)]
enum Step {
    Active,
    Heartbeat,
    Dnd,
    Clear,
    Invisible(bool),
    SignOut,
}

fn random_step(rng: &mut TestRng) -> Step {
    match rng.random_range(0..10) {
        0..=2 => Step::Active,
        3..=4 => Step::Heartbeat,
        5 => Step::Dnd,
        6 => Step::Clear,
        7 => Step::Invisible(true),
        8 => Step::Invisible(false),
        _ => Step::SignOut,
    }
}

/// A user's (self, public) status just after `at`, by replaying their changes from offline.
fn replayed(changes: &[Value], user: UserId, at: DateTime<Utc>) -> (String, String) {
    let mut state = ("offline".to_owned(), "offline".to_owned());
    for (status, previous, public, previous_public, _, when) in of_user(changes, user) {
        let when: DateTime<Utc> = when.parse().expect("an instant");
        if when > at {
            break;
        }
        assert_eq!(
            (&previous, &previous_public),
            (&state.0, &state.1),
            "{user}: each change starts where the one before ended"
        );
        state = (status, public);
    }
    state
}

#[sqlx::test]
async fn a_reader_sees_every_change_of_two_instances_once_in_order_as_the_rules_imply(
    pool: PgPool,
) {
    let settings = [
        ("PRESENCE_IDLE_AFTER", "20s"),
        ("PRESENCE_AWAY_AFTER", "40s"),
        ("PRESENCE_OFFLINE_AFTER", "30s"),
        ("PRESENCE_PRUNE_AFTER", "30s"),
        ("PRESENCE_LAST_SEEN_PRECISION", "10s"),
    ];
    let rules = Rules {
        idle_after: TimeDelta::seconds(20),
        away_after: TimeDelta::seconds(40),
        offline_after: TimeDelta::seconds(30),
        precision: TimeDelta::seconds(10),
    };
    let clock = ManualClock::starting_at(start_time());
    let first = spawn_app_on_clock(pool.clone(), &settings, clock.clone()).await;
    let second = spawn_app_on_clock(pool, &settings, clock.clone()).await;
    let users: Vec<UserId> = (0..12).map(|_| new_user()).collect();
    let stranger = new_user();
    let mut rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);

    // A reader follows the feed all along, on the first instance.
    let reading = {
        let app = first.clone();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut reader = Reader::new();
            loop {
                let read = reader.poll(&app, 7).await;
                if read == 0 {
                    if *stopped.borrow() {
                        return reader;
                    }
                    let _ =
                        tokio::time::timeout(Duration::from_millis(20), stopped.changed()).await;
                }
            }
        });
        (stop, task)
    };

    // Rounds: all users write at once (each on a random instance) at one
    // instant; what each write answered, and what a stranger then saw, is
    // what the feed must replay to at that instant.
    let mut observed: Vec<(UserId, DateTime<Utc>, String, String)> = Vec::new();
    // And what each user did, which the model of the rules computes from.
    let mut events: HashMap<UserId, Vec<(DateTime<Utc>, Event)>> = HashMap::new();
    let apps = [&first, &second];
    let mut wrote_on: HashMap<UserId, usize> = HashMap::new();
    for _ in 0..25 {
        // Between writes, the clock alone changes statuses: what the user
        // and a stranger see then (on the instance that last wrote the user,
        // which has seen that write) is what the feed must replay to.
        clock.advance(TimeDelta::seconds(rng.random_range(1..25)));
        let at = clock.now();
        for user in &users {
            let app = apps[wrote_on.get(user).copied().unwrap_or_default()];
            let own = app.status_of(*user, *user).await["status"].clone();
            let public = app.status_of(stranger, *user).await["status"].clone();
            let text = |value: Value| value.as_str().expect("a status").to_owned();
            observed.push((*user, at, text(own), text(public)));
        }
        clock.advance(TimeDelta::seconds(rng.random_range(1..25)));
        let at = clock.now();
        let writes = users.iter().map(|user| {
            let step = random_step(&mut rng);
            // A setting comes with activity or, as half of them do here, with
            // a heartbeat: a write where only the setting changes what the
            // rules say (the trigger's quick path for heartbeats must see it).
            let active = match step {
                Step::Heartbeat => false,
                Step::Active | Step::SignOut => true,
                _ => rng.random_bool(0.5),
            };
            let index = usize::from(rng.random_bool(0.5));
            wrote_on.insert(*user, index);
            let app = apps[index];
            let user = *user;
            async move {
                let own = match step {
                    Step::SignOut => {
                        let status = app.delete_device(user, "tab").await.status();
                        assert!([204, 404].contains(&status.as_u16()), "{status}");
                        "offline".to_owned()
                    }
                    _ => {
                        let body = match step {
                            Step::Heartbeat => json!({"deviceId": "tab", "active": false}),
                            Step::Dnd => {
                                json!({"deviceId": "tab", "active": active, "manualStatus": "dnd"})
                            }
                            Step::Clear => {
                                json!({"deviceId": "tab", "active": active, "manualStatus": null})
                            }
                            Step::Invisible(on) => {
                                json!({"deviceId": "tab", "active": active, "invisible": on})
                            }
                            Step::Active | Step::SignOut => json!({"deviceId": "tab"}),
                        };
                        let view = app.ping_ok(user, body).await;
                        view["status"].as_str().expect("a status").to_owned()
                    }
                };
                // Read on the instance that wrote: it sees its own writes at once.
                let public = app.status_of(stranger, user).await["status"]
                    .as_str()
                    .expect("a status")
                    .to_owned();
                (user, step, active, own, public)
            }
        });
        for (user, step, active, own, public) in futures::future::join_all(writes).await {
            observed.push((user, at, own, public));
            let done = events.entry(user).or_default();
            let ping = Event::Ping { device: 0, active };
            match step {
                Step::SignOut => done.push((at, Event::Gone { device: 0 })),
                Step::Active | Step::Heartbeat => done.push((at, ping)),
                Step::Dnd | Step::Clear => {
                    let status = matches!(step, Step::Dnd).then_some("dnd");
                    done.extend([
                        (at, ping),
                        (
                            at,
                            Event::Manual {
                                status,
                                until: None,
                            },
                        ),
                    ]);
                }
                Step::Invisible(on) => done.extend([(at, ping), (at, Event::Invisible(on))]),
            }
        }
    }
    // Everything due by the last instant is published before these fences.
    let mut fences = Reader::new();
    fence(&second, &mut fences).await;
    fence(&second, &mut fences).await;
    let (stop, task) = reading;
    let _ = stop.send(true);
    let reader = task.await.expect("the reader ran");

    // Once, in order, and nothing skipped: the reader's list is the whole feed.
    let mut whole = Reader::new();
    while whole.poll(&first, 1000).await > 0 {}
    assert_eq!(
        reader.seen, whole.seen,
        "the reader saw what the feed holds"
    );
    let ids = ids(&whole.seen);
    assert!(ids.windows(2).all(|pair| pair[1] == pair[0] + 1), "{ids:?}");

    // As the rules imply: replayed to each instant a write was answered at,
    // the feed says what the write answered and what a stranger then saw.
    let mut checked = HashMap::new();
    for (user, at, own, public) in &observed {
        let (status, public_status) = replayed(&whole.seen, *user, *at);
        assert_eq!(&status, own, "{user} at {at}");
        assert_eq!(&public_status, public, "{user} at {at}, to a stranger");
        *checked.entry(*user).or_insert(0) += 1;
    }
    assert_eq!(checked.len(), users.len());
    // And as the model of the rules implies, written apart from the server
    // (the history tests' truth): at every instant where a status may change
    // and a millisecond either side, replayed from the feed.
    let end = clock.now();
    for user in &users {
        let done = &events[user];
        let first_write = done.first().map(|(at, _)| *at).expect("a user wrote");
        let instants = rules.instants(done, first_write, end);
        assert!(instants.len() > 25, "{user}: {} instants", instants.len());
        for t in instants {
            let (status, public) = replayed(&whole.seen, *user, t);
            assert_eq!(
                (status.as_str(), public.as_str()),
                (rules.status(done, t, false), rules.status(done, t, true)),
                "{user} at {}: {done:?}\n{:#?}",
                ms(t),
                of_user(&whole.seen, *user)
            );
        }
    }
    // And at the end, after the clock's last changes: what each user shows now.
    let now = clock.now();
    for user in &users {
        let (status, public) = replayed(&whole.seen, *user, now);
        let own = first.status_of(*user, *user).await;
        let seen = first.status_of(stranger, *user).await;
        assert_eq!(
            (status.as_str(), public.as_str()),
            (
                own["status"].as_str().expect("a status"),
                seen["status"].as_str().expect("a status")
            ),
            "{user} now"
        );
    }
}

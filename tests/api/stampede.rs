//! A pause of the database never becomes a stampede: while the change
//! listener is behind, what polls need is read from PostgreSQL at most once
//! per row and once per viewer (whether they are in any block), in batches,
//! not once per poll.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use presence::clock::SystemClock;
use presence::domain::UserId;
use presence::startup::{Application, prepare_database};
use serde_json::{Value, json};

use crate::cluster::{Cluster, newest_server};
use crate::helpers::{new_user, test_config, token_for};
use crate::operations::sample;

/// Users watched; watchers polling all of them, each from several tabs at once.
const USERS: usize = 40;
const WATCHERS: usize = 4;
const TABS: usize = 5;

/// The rows, and the viewers' block lookups, the server has asked PostgreSQL for so far.
async fn reads(client: &reqwest::Client, metrics: &str) -> (f64, f64) {
    let page = client
        .get(format!("{metrics}/metrics"))
        .send()
        .await
        .expect("the metrics answer")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains("presence_database_rows_read_total")
            && page.contains("presence_block_lookups_total"),
        "the metrics are served: {page}"
    );
    (
        sample(
            &page,
            "presence_database_rows_read_total",
            &[("server", "primary")],
        ),
        sample(&page, "presence_block_lookups_total", &[]),
    )
}

#[tokio::test]
async fn a_frozen_database_costs_one_read_per_row_not_one_per_poll() {
    let bin = newest_server().expect("a PostgreSQL server is installed");
    let cluster = Cluster::start(bin, "");
    let config = test_config(&[("DATABASE_URL", &cluster.url("presence"))]);
    let pool = prepare_database(&config)
        .await
        .expect("creates and migrates");
    let application = Application::build_with_pool(&config, pool, Arc::new(SystemClock))
        .await
        .expect("builds");
    let base = format!("http://127.0.0.1:{}", application.port());
    let metrics = format!(
        "http://127.0.0.1:{}",
        application.metrics_port().expect("a metrics listener")
    );
    tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");

    let users: Vec<UserId> = (0..USERS).map(|_| new_user()).collect();
    for user in &users {
        let answer = client
            .put(format!("{base}/api/status"))
            .bearer_auth(token_for(*user))
            .json(&json!({"deviceId": "laptop"}))
            .send()
            .await
            .expect("answers");
        assert!(answer.status().is_success());
    }

    // Each watcher polls every user from several tabs, back to back, all through the test.
    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicU64::new(0));
    let ids: Vec<String> = users.iter().map(ToString::to_string).collect();
    let mut tabs = Vec::new();
    for _ in 0..WATCHERS {
        let token = token_for(new_user());
        for _ in 0..TABS {
            let (client, base, stop, polls) =
                (client.clone(), base.clone(), stop.clone(), polls.clone());
            let (token, body) = (token.clone(), json!({"userIds": ids}));
            tabs.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = client
                        .post(format!("{base}/api/status/query"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await;
                    polls.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (before, polls_before) = (
        reads(&client, &metrics).await,
        polls.load(Ordering::Relaxed),
    );
    let frozen = cluster.freeze();
    // Past the 1 s cache TTL: every cached row, and every viewer's "in no
    // block", goes stale while it lasts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (during, polls_during) = (
        reads(&client, &metrics).await,
        polls.load(Ordering::Relaxed),
    );
    frozen.thaw();
    // And the second after, when every waiting poll goes on at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (after, polls_after) = (
        reads(&client, &metrics).await,
        polls.load(Ordering::Relaxed),
    );

    let polled = polls_during - polls_before;
    assert!(
        polled >= (WATCHERS * TABS) as u64,
        "the watchers kept polling"
    );
    let (rows, lookups) = (during.0 - before.0, during.1 - before.1);
    assert!(
        rows <= USERS as f64 && lookups <= WATCHERS as f64,
        "while frozen for 2 s, {polled} polls of {USERS} users by {WATCHERS} viewers \
         asked PostgreSQL for {rows} rows and {lookups} block lookups: at most one \
         per row and one per viewer"
    );
    // As it thaws, at most one more of each: the reads made while frozen
    // started over a cache TTL before the polls that follow, which may only
    // rely on them once the listener has caught up.
    let polled = polls_after - polls_during;
    let (rows, lookups) = (after.0 - during.0, after.1 - during.1);
    assert!(
        rows <= USERS as f64 && lookups <= WATCHERS as f64,
        "in the second after the thaw, {polled} polls asked PostgreSQL for {rows} rows \
         and {lookups} block lookups: at most one more per row and per viewer"
    );

    // Once it thaws, polls are answered again, and a write shows at once.
    let watcher = token_for(new_user());
    let poll = || async {
        client
            .post(format!("{base}/api/status/query"))
            .bearer_auth(&watcher)
            .json(&json!({"userIds": ids}))
            .send()
            .await
    };
    let mut answered = false;
    for _ in 0..100 {
        if poll()
            .await
            .is_ok_and(|answer| answer.status().is_success())
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "polls are answered again after the thaw");
    let changed = client
        .put(format!("{base}/api/status"))
        .bearer_auth(token_for(users[0]))
        .json(&json!({"deviceId": "laptop", "statusMessage": "back"}))
        .send()
        .await
        .expect("answers");
    assert!(changed.status().is_success());
    let statuses: Value = poll().await.expect("answers").json().await.expect("JSON");
    assert_eq!(
        statuses["statuses"][0]["statusMessage"], "back",
        "{statuses}"
    );

    stop.store(true, Ordering::Relaxed);
    for tab in tabs {
        let _ = tab.await;
    }
}

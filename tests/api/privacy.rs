//! Privacy that holds: blocks, invisibility and the abuse limits, on every read path.

use chrono::TimeDelta;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{
    TestApp, error_code, iso, new_user, spawn_app, spawn_app_with, start_time, token_for,
};
use presence::domain::UserId;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Relation {
    Myself,
    Stranger,
    Blocker,
    Blocked,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Online,
    Idle,
    Dnd,
    Invisible,
    Offline,
}

/// Reads `user` as `viewer` on the three read paths; all must agree.
async fn read_everywhere(app: &TestApp, viewer: UserId, user: UserId) -> Value {
    let single = app.status_of(viewer, user).await;
    let batch = app.batch_get(viewer, &[user]).await;
    let query = app.batch_post(viewer, &[user]).await;
    assert_eq!(
        batch["statuses"][0], single,
        "batch GET agrees with the single read"
    );
    assert_eq!(
        query["statuses"][0], single,
        "query POST agrees with the single read"
    );
    single
}

async fn etag_of(
    app: &TestApp,
    viewer: UserId,
    user: UserId,
    if_none_match: Option<&str>,
) -> (StatusCode, String) {
    let auth = format!("Bearer {}", token_for(viewer));
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(tag) = if_none_match {
        headers.push(("if-none-match", tag));
    }
    let response = app
        .raw(Method::GET, &format!("/api/status/{user}"), &headers, None)
        .await;
    let tag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("ETag")
        .to_owned();
    (response.status(), tag)
}

#[sqlx::test]
async fn the_privacy_matrix(pool: PgPool) {
    privacy_matrix(&spawn_app(pool).await).await;
}

#[sqlx::test]
async fn the_privacy_matrix_without_the_read_cache(pool: PgPool) {
    privacy_matrix(&spawn_app_with(pool, &[("PRESENCE_CACHE_TTL", "0")]).await).await;
}

async fn privacy_matrix(app: &TestApp) {
    let t0 = start_time();
    let relations = [
        Relation::Myself,
        Relation::Stranger,
        Relation::Blocker,
        Relation::Blocked,
        Relation::Both,
    ];
    let states = [
        State::Online,
        State::Idle,
        State::Dnd,
        State::Invisible,
        State::Offline,
    ];

    // Every target was active at t0 with a message; blocks are made at t0+3m;
    // at t0+6m each target is put in its state.
    let mut cases = Vec::new();
    for relation in relations {
        for state in states {
            let target = new_user();
            let viewer = if relation == Relation::Myself {
                target
            } else {
                new_user()
            };
            app.ping_ok(target, json!({"statusMessage": "Hello"})).await;
            cases.push((relation, state, target, viewer));
        }
    }
    app.advance(TimeDelta::minutes(3));
    for (relation, _, target, viewer) in &cases {
        let blocks: &[(UserId, UserId)] = match relation {
            Relation::Blocker => &[(*viewer, *target)],
            Relation::Blocked => &[(*target, *viewer)],
            Relation::Both => &[(*viewer, *target), (*target, *viewer)],
            _ => &[],
        };
        for (blocker, blocked) in blocks {
            let response = app.set_block(*blocker, &blocked.to_string(), true).await;
            assert_eq!(response.status(), StatusCode::NO_CONTENT);
        }
    }
    app.advance(TimeDelta::minutes(3));
    for (_, state, target, _) in &cases {
        let body = match state {
            State::Online => json!({}),
            State::Idle => json!({"active": false}),
            State::Dnd => json!({"manualStatus": "dnd"}),
            State::Invisible => json!({"invisible": true}),
            State::Offline => continue,
        };
        app.ping_ok(*target, body).await;
    }

    let (then, now) = (json!(iso(t0)), json!(iso(t0 + TimeDelta::minutes(6))));
    for (relation, state, target, viewer) in cases {
        use Relation::*;
        use State::*;
        // (status, lastSeen, platforms, statusMessage)
        let expected = match (relation, state) {
            (Myself, Online) | (Stranger, Online) => {
                ("online", &now, json!(["web"]), json!("Hello"))
            }
            (Myself, Idle) | (Stranger, Idle) => ("idle", &then, json!(["web"]), json!("Hello")),
            (Myself, Dnd) | (Stranger, Dnd) => ("dnd", &now, json!(["web"]), json!("Hello")),
            (Myself, Invisible) => ("online", &now, json!(["web"]), json!("Hello")),
            (Myself, Offline) => ("offline", &then, json!([]), json!("Hello")),
            (Stranger, Invisible | Offline) | (Blocker | Blocked | Both, _) => {
                ("offline", &then, json!([]), json!(null))
            }
        };
        let seen = read_everywhere(app, viewer, target).await;
        let shown = (
            seen["status"].as_str().unwrap_or_default(),
            &seen["lastSeen"],
            seen["platforms"].clone(),
            seen["statusMessage"].clone(),
        );
        assert_eq!(shown, expected, "{relation:?} viewing {state:?}: {seen}");
        if expected.0 == "offline" && relation != Myself {
            assert_eq!(
                seen["nextChangeAt"],
                json!(null),
                "{relation:?} viewing {state:?}"
            );
            assert_eq!(seen.get("devices"), None);
        }
    }
}

#[sqlx::test]
async fn a_304_reveals_nothing_a_hidden_viewer_may_not_see(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (target, stranger, blocked, invisible_watcher) =
        (new_user(), new_user(), new_user(), new_user());
    app.ping_ok(target, json!({})).await;
    app.set_block(target, &blocked.to_string(), true).await;
    let (_, stranger_tag) = etag_of(&app, stranger, target, None).await;
    let (_, blocked_tag) = etag_of(&app, blocked, target, None).await;

    app.advance(TimeDelta::seconds(20));
    app.ping_ok(target, json!({"statusMessage": "Back"})).await;
    let (status, _) = etag_of(&app, stranger, target, Some(&stranger_tag)).await;
    assert_eq!(status, StatusCode::OK, "a stranger sees the change");
    let (status, tag) = etag_of(&app, blocked, target, Some(&blocked_tag)).await;
    assert_eq!(
        (status, tag),
        (StatusCode::NOT_MODIFIED, blocked_tag),
        "the blocked user learns nothing"
    );

    app.ping_ok(target, json!({"invisible": true})).await;
    let (_, invisible_tag) = etag_of(&app, invisible_watcher, target, None).await;
    for _ in 0..3 {
        app.advance(TimeDelta::seconds(10));
        app.ping_ok(target, json!({"statusMessage": "Hidden"}))
            .await;
        let (status, _) = etag_of(&app, invisible_watcher, target, Some(&invisible_tag)).await;
        assert_eq!(
            status,
            StatusCode::NOT_MODIFIED,
            "an invisible user's activity moves no ETag"
        );
    }
}

#[sqlx::test]
async fn an_invisible_or_blocking_user_changes_nothing_a_stranger_observes_byte_for_byte(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let (invisible, blocking, stranger) = (new_user(), new_user(), new_user());
    app.ping_ok(invisible, json!({"platform": "mobile"})).await;
    app.ping_ok(blocking, json!({"platform": "desktop"})).await;
    app.advance(TimeDelta::seconds(5));
    app.ping_ok(invisible, json!({"invisible": true})).await;
    app.set_block(blocking, &stranger.to_string(), true).await;

    let bytes = |user: UserId| {
        let request = app.raw(
            Method::GET,
            &format!("/api/status?ids={user}"),
            &[("authorization", &format!("Bearer {}", token_for(stranger)))],
            None,
        );
        async move { request.await.bytes().await.expect("body") }
    };
    let (before_invisible, before_blocking) = (bytes(invisible).await, bytes(blocking).await);
    let sequence = [
        json!({}),
        json!({"deviceId": "tab-2", "platform": "web"}),
        json!({"statusMessage": "Secret plans"}),
        json!({"manualStatus": "dnd"}),
        json!({"active": false}),
        json!({"manualStatus": null, "statusMessage": null}),
    ];
    for body in sequence {
        app.advance(TimeDelta::seconds(7));
        app.ping_ok(invisible, body.clone()).await;
        app.ping_ok(blocking, body.clone()).await;
        assert_eq!(bytes(invisible).await, before_invisible, "after {body}");
        assert_eq!(bytes(blocking).await, before_blocking, "after {body}");
    }
}

#[sqlx::test]
async fn blocks_are_idempotent_listed_in_id_order_and_lifted(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (me, first, second) = (new_user(), new_user(), new_user());
    app.ping_ok(first, json!({})).await;
    for other in [first, second, first] {
        assert_eq!(
            app.set_block(me, &other.to_string(), true).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    let list = |app: &TestApp| {
        let request = app.raw(
            Method::GET,
            "/api/blocks",
            &[("authorization", &format!("Bearer {}", token_for(me)))],
            None,
        );
        async move { request.await.json::<Value>().await.expect("JSON") }
    };
    let mut both = [first.to_string(), second.to_string()];
    both.sort();
    assert_eq!(list(&app).await, json!({"userIds": both, "next": null}));
    assert_eq!(app.status_of(me, first).await["status"], "offline");

    for _ in 0..2 {
        assert_eq!(
            app.set_block(me, &first.to_string(), false).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(
        list(&app).await,
        json!({"userIds": [second.to_string()], "next": null})
    );
    assert_eq!(
        app.status_of(me, first).await["status"],
        "online",
        "visible again once lifted"
    );
}

#[sqlx::test]
async fn bad_block_requests_get_the_contract_errors(pool: PgPool) {
    let app = spawn_app(pool).await;
    let me = new_user();
    assert_eq!(
        error_code(app.set_block(me, &me.to_string(), true).await)
            .await
            .1,
        "INVALID_USER_ID"
    );
    assert_eq!(
        error_code(app.set_block(me, "not-a-uuid", true).await)
            .await
            .1,
        "INVALID_USER_ID"
    );
    assert_eq!(
        error_code(app.set_block(me, &me.to_string(), false).await)
            .await
            .1,
        "INVALID_USER_ID"
    );
    let wrong = app
        .raw(
            Method::POST,
            "/api/blocks",
            &[("authorization", &format!("Bearer {}", token_for(me)))],
            None,
        )
        .await;
    assert_eq!(error_code(wrong).await.1, "METHOD_NOT_ALLOWED");
    let anonymous = app.raw(Method::GET, "/api/blocks", &[], None).await;
    assert_eq!(error_code(anonymous).await.1, "UNAUTHORIZED");
}

#[sqlx::test]
async fn a_user_can_block_at_most_ten_thousand_users(pool: PgPool) {
    let app = spawn_app(pool).await;
    let me = new_user();
    sqlx::query(
        "insert into user_blocks (user_id, other_id, blocks_other) select $1, gen_random_uuid(), true from generate_series(1, 9999)",
    )
        .bind(me.as_uuid())
        .execute(&app.pool)
        .await
        .expect("seeds blocks");
    assert_eq!(
        app.set_block(me, &new_user().to_string(), true)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let (status, code) = error_code(app.set_block(me, &new_user().to_string(), true).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "TOO_MANY_BLOCKS")
    );
}

#[sqlx::test]
async fn settings_changes_have_their_own_tighter_limit(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        &[
            ("PRESENCE_SETTINGS_BURST", "3"),
            ("PRESENCE_SETTINGS_PER_SECOND", "0.01"),
        ],
    )
    .await;
    let user = new_user();
    for n in 0..3 {
        app.ping_ok(user, json!({"statusMessage": format!("message {n}")}))
            .await;
    }
    let response = app
        .ping(user, json!({"statusMessage": "one too many"}))
        .await;
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        error_code(response).await,
        (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED".to_owned())
    );
    assert_eq!(
        app.status_of(user, user).await["statusMessage"],
        "message 2",
        "the limited change wrote nothing"
    );
    for _ in 0..5 {
        app.ping_ok(user, json!({"active": false})).await;
    }
    let block = app.set_block(user, &new_user().to_string(), true).await;
    assert_eq!(
        block.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "blocks count as settings changes"
    );
}

#[derive(Debug, Clone)]
enum Step {
    Ping { active: bool },
    Invisible(bool),
    Message,
    Block { by_target: bool },
    Unblock { by_target: bool },
    Advance(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        any::<bool>().prop_map(|active| Step::Ping { active }),
        any::<bool>().prop_map(Step::Invisible),
        Just(Step::Message),
        any::<bool>().prop_map(|by_target| Step::Block { by_target }),
        any::<bool>().prop_map(|by_target| Step::Unblock { by_target }),
        (1i64..400).prop_map(Step::Advance),
    ]
}

/// Random sequences of pings, settings, blocks and clock moves; after every
/// step a stranger and a possibly-blocked user see only what they may.
#[sqlx::test]
async fn privacy_holds_after_every_step_of_random_sequences(pool: PgPool) {
    random_sequences(&spawn_app(pool).await).await;
}

#[sqlx::test]
async fn privacy_holds_after_every_step_of_random_sequences_without_the_read_cache(pool: PgPool) {
    random_sequences(&spawn_app_with(pool, &[("PRESENCE_CACHE_TTL", "0")]).await).await;
}

async fn random_sequences(app: &TestApp) {
    let mut runner = TestRunner::default();
    let sequences = prop::collection::vec(step(), 1..14);
    for _ in 0..24 {
        let steps = sequences
            .new_tree(&mut runner)
            .expect("a sequence")
            .current();
        let (target, stranger, other) = (new_user(), new_user(), new_user());
        // The model: what each may know of the target's last activity.
        let mut last_activity = None;
        let mut invisible = false;
        let mut visible_last_seen = None;
        let mut blocks = (false, false);
        let mut block_last_seen = None;
        for (index, step) in steps.iter().enumerate() {
            match step {
                Step::Ping { active } => {
                    let me = app.ping_ok(target, json!({"active": active})).await;
                    last_activity = me["lastSeen"].as_str().map(str::to_owned);
                }
                Step::Invisible(on) => {
                    if *on && !invisible {
                        visible_last_seen = last_activity.clone();
                    }
                    invisible = *on;
                    let me = app.ping_ok(target, json!({"invisible": on})).await;
                    last_activity = me["lastSeen"].as_str().map(str::to_owned);
                }
                Step::Message => {
                    let me = app
                        .ping_ok(target, json!({"statusMessage": format!("step {index}")}))
                        .await;
                    last_activity = me["lastSeen"].as_str().map(str::to_owned);
                }
                Step::Block { by_target } => {
                    let (blocker, blocked) = if *by_target {
                        (target, other)
                    } else {
                        (other, target)
                    };
                    if !blocks.0 && !blocks.1 {
                        block_last_seen = if invisible {
                            visible_last_seen.clone()
                        } else {
                            last_activity.clone()
                        };
                    }
                    if *by_target {
                        blocks.0 = true;
                    } else {
                        blocks.1 = true;
                    }
                    assert_eq!(
                        app.set_block(blocker, &blocked.to_string(), true)
                            .await
                            .status(),
                        StatusCode::NO_CONTENT
                    );
                }
                Step::Unblock { by_target } => {
                    let (blocker, blocked) = if *by_target {
                        (target, other)
                    } else {
                        (other, target)
                    };
                    if *by_target {
                        blocks.0 = false;
                    } else {
                        blocks.1 = false;
                    }
                    assert_eq!(
                        app.set_block(blocker, &blocked.to_string(), false)
                            .await
                            .status(),
                        StatusCode::NO_CONTENT
                    );
                }
                Step::Advance(seconds) => app.advance(TimeDelta::seconds(*seconds)),
            }
            let context = format!("after {:?}", &steps[..=index]);
            let seen = read_everywhere(app, stranger, target).await;
            if invisible {
                assert_eq!(seen["status"], "offline", "{context}: {seen}");
                assert_eq!(
                    seen["lastSeen"].as_str().map(str::to_owned),
                    visible_last_seen,
                    "{context}"
                );
                assert_eq!(
                    (
                        &seen["platforms"],
                        &seen["statusMessage"],
                        &seen["nextChangeAt"]
                    ),
                    (&json!([]), &json!(null), &json!(null)),
                    "{context}"
                );
            }
            let seen_by_other = read_everywhere(app, other, target).await;
            if blocks.0 || blocks.1 {
                assert_eq!(
                    seen_by_other["status"], "offline",
                    "{context}: {seen_by_other}"
                );
                let shown = seen_by_other["lastSeen"].as_str().map(str::to_owned);
                assert!(
                    shown <= block_last_seen,
                    "{context}: {shown:?} is later than the block"
                );
                assert_eq!(
                    (&seen_by_other["platforms"], &seen_by_other["statusMessage"]),
                    (&json!([]), &json!(null)),
                    "{context}"
                );
                let target_sees = read_everywhere(app, target, other).await;
                assert_eq!(
                    target_sees["platforms"],
                    json!([]),
                    "{context}: the block hides both ways"
                );
            } else if !invisible {
                assert_eq!(
                    seen_by_other, seen,
                    "{context}: with no block the other user is a stranger"
                );
            }
        }
    }
}

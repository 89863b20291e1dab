use std::collections::BTreeSet;

use chrono::TimeDelta;
use futures::future::join_all;
use presence::clock::ManualClock;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{new_user, spawn_app, spawn_app_on_clock, start_time};

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

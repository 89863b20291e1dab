use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{error_code, new_user, spawn_app_with};

#[sqlx::test]
async fn pings_beyond_the_burst_are_429_with_retry_after_and_write_nothing(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        &[
            ("PRESENCE_PUT_BURST", "3"),
            ("PRESENCE_PUT_PER_SECOND", "0.1"),
        ],
    )
    .await;
    let (user, other) = (new_user(), new_user());
    for n in 0..3 {
        app.ping_ok(user, json!({"deviceId": format!("tab-{n}")}))
            .await;
    }
    let response = app
        .ping(user, json!({"deviceId": "tab-3", "statusMessage": "spam"}))
        .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!(
        (1..=10).contains(&retry_after),
        "one ping per 10 s: retry after {retry_after}"
    );
    assert_eq!(error_code(response).await.1, "RATE_LIMITED");

    let me = app.status_of(user, user).await;
    assert_eq!(
        me["devices"].as_array().map(Vec::len),
        Some(3),
        "the limited ping wrote nothing"
    );
    assert_eq!(me["statusMessage"], json!(null));

    app.ping_ok(other, json!({})).await;
}

#[sqlx::test]
async fn reads_are_not_limited_by_the_ping_limit(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        &[
            ("PRESENCE_PUT_BURST", "1"),
            ("PRESENCE_PUT_PER_SECOND", "0.1"),
        ],
    )
    .await;
    let user = new_user();
    app.ping_ok(user, json!({})).await;
    for _ in 0..5 {
        assert_eq!(
            app.get_status(user, &user.to_string()).await.status(),
            StatusCode::OK
        );
    }
}

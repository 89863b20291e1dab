use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{error_code, new_user, spawn_app};

#[sqlx::test]
async fn signing_out_the_last_device_makes_the_user_offline_at_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (user, viewer) = (new_user(), new_user());
    app.ping_ok(user, json!({"deviceId": "tab-1", "statusMessage": "Hi"}))
        .await;
    assert_eq!(app.status_of(viewer, user).await["status"], "online");

    let response = app.delete_device(user, "tab-1").await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let seen = app.status_of(viewer, user).await;
    assert_eq!(seen["status"], "offline");
    assert_eq!(seen["platforms"], json!([]));
    assert_eq!(seen["statusMessage"], json!(null));
    let me = app.status_of(user, user).await;
    assert_eq!(me["devices"], json!([]));
    assert_eq!(me["statusMessage"], "Hi", "signing out keeps the settings");
}

#[sqlx::test]
async fn signing_out_one_device_keeps_the_others(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (user, viewer) = (new_user(), new_user());
    app.ping_ok(user, json!({"deviceId": "phone", "platform": "mobile"}))
        .await;
    app.ping_ok(user, json!({"deviceId": "tab", "platform": "web"}))
        .await;

    assert_eq!(
        app.delete_device(user, "phone").await.status(),
        StatusCode::NO_CONTENT
    );
    let seen = app.status_of(viewer, user).await;
    assert_eq!(seen["status"], "online");
    assert_eq!(seen["platforms"], json!(["web"]));
}

#[sqlx::test]
async fn an_unknown_device_is_404(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    assert_eq!(
        error_code(app.delete_device(user, "tab").await).await,
        (StatusCode::NOT_FOUND, "NOT_FOUND".to_owned())
    );
    app.ping_ok(user, json!({"deviceId": "tab"})).await;
    assert_eq!(
        app.delete_device(user, "tab").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        error_code(app.delete_device(user, "tab").await).await.1,
        "NOT_FOUND",
        "a device signed out twice is gone the second time"
    );
}

#[sqlx::test]
async fn a_user_cannot_sign_out_another_users_device(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (user, other) = (new_user(), new_user());
    app.ping_ok(user, json!({"deviceId": "tab"})).await;
    assert_eq!(
        app.delete_device(other, "tab").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.status_of(other, user).await["status"], "online");
}

#[sqlx::test]
async fn a_malformed_device_id_is_400(pool: PgPool) {
    let app = spawn_app(pool).await;
    let long = "x".repeat(65);
    for device in ["bad%20id", "a%2Fb", long.as_str(), "%C3%A9"] {
        let (status, code) = error_code(app.delete_device(new_user(), device).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "INVALID_DEVICE_ID"),
            "{device}"
        );
    }
}

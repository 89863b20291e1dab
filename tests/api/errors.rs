//! Every error of the contract's table, as the contract's JSON, and none of them touches stored data.

use chrono::TimeDelta;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{error_code, iso, new_user, spawn_app, start_time, token_for};

/// method, path, headers, body, expected status, expected code
type RequestCase<'a> = (
    Method,
    &'a str,
    Vec<(&'a str, &'a str)>,
    Option<Vec<u8>>,
    StatusCode,
    &'a str,
);

#[sqlx::test]
async fn bad_ping_bodies_get_the_contract_code_and_change_nothing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    app.ping_ok(
        user,
        json!({"deviceId": "tab", "manualStatus": "dnd", "statusMessage": "Busy", "invisible": false}),
    )
    .await;
    app.advance(TimeDelta::seconds(5));
    let before = app.status_of(user, user).await;

    let past = iso(start_time() - TimeDelta::seconds(1));
    let future = iso(start_time() + TimeDelta::hours(1));
    let cases = [
        (json!({"deviceId": ""}), "INVALID_DEVICE_ID"),
        (json!({"deviceId": "x".repeat(65)}), "INVALID_DEVICE_ID"),
        (json!({"deviceId": "has space"}), "INVALID_DEVICE_ID"),
        (json!({"deviceId": 7}), "INVALID_BODY"),
        (json!({"platform": "tv"}), "INVALID_BODY"),
        (json!({"platform": null, "active": "yes"}), "INVALID_BODY"),
        (json!({"active": 1}), "INVALID_BODY"),
        (json!({"invisible": "true"}), "INVALID_BODY"),
        (json!({"manualStatus": "online"}), "INVALID_STATUS"),
        (json!({"manualStatus": "busy"}), "INVALID_STATUS"),
        (json!({"manualStatus": 3}), "INVALID_BODY"),
        (json!({"manualStatusUntil": future}), "INVALID_STATUS"),
        (
            json!({"manualStatus": null, "manualStatusUntil": future}),
            "INVALID_STATUS",
        ),
        (
            json!({"manualStatus": "dnd", "manualStatusUntil": "tomorrow"}),
            "INVALID_TIMESTAMP",
        ),
        (
            json!({"manualStatus": "dnd", "manualStatusUntil": "2026-11-23"}),
            "INVALID_TIMESTAMP",
        ),
        (
            json!({"manualStatus": "dnd", "manualStatusUntil": past}),
            "INVALID_TIMESTAMP",
        ),
        (
            json!({"statusMessage": "x".repeat(141)}),
            "INVALID_STATUS_MESSAGE",
        ),
        (
            json!({"statusMessage": "two\nlines"}),
            "INVALID_STATUS_MESSAGE",
        ),
        (
            json!({"statusMessage": "nul\u{0}"}),
            "INVALID_STATUS_MESSAGE",
        ),
        (json!({"statusMessage": 42}), "INVALID_BODY"),
        (
            json!({"statusMessageUntil": future}),
            "INVALID_STATUS_MESSAGE",
        ),
        (
            json!({"statusMessage": "", "statusMessageUntil": future}),
            "INVALID_STATUS_MESSAGE",
        ),
        (
            json!({"statusMessage": "Lunch", "statusMessageUntil": 5}),
            "INVALID_BODY",
        ),
        (
            json!({"statusMessage": "Lunch", "statusMessageUntil": "soon"}),
            "INVALID_TIMESTAMP",
        ),
        (json!({"unknownField": true}), "INVALID_BODY"),
        (json!({"deviceid": "tab"}), "INVALID_BODY"),
        (json!([]), "INVALID_BODY"),
        (json!("ping"), "INVALID_BODY"),
        (json!(null), "INVALID_BODY"),
    ];
    for (body, expected) in cases {
        let (status, code) = error_code(app.ping(user, body.clone()).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, expected),
            "body {body}"
        );
    }
    assert_eq!(
        app.status_of(user, user).await,
        before,
        "no rejected request changed anything"
    );
}

#[sqlx::test]
async fn malformed_requests_get_json_errors_and_change_nothing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    app.ping_ok(user, json!({"statusMessage": "Busy"})).await;
    app.advance(TimeDelta::seconds(5));
    let before = app.status_of(user, user).await;
    let bearer = format!("Bearer {}", token_for(user));
    let json_type = ("content-type", "application/json");
    let auth = ("authorization", bearer.as_str());

    let large = format!("{{\"statusMessage\": \"{}\"}}", "x".repeat(17 * 1024));
    let cases: Vec<RequestCase> = vec![
        (
            Method::PUT,
            "/api/status",
            vec![auth, json_type],
            Some(b"{\"active\": tru".to_vec()),
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
        ),
        (
            Method::PUT,
            "/api/status",
            vec![auth, json_type],
            Some(b"".to_vec()),
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
        ),
        (
            Method::PUT,
            "/api/status",
            vec![auth, json_type],
            Some(vec![0xff, 0xfe, 0x00]),
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
        ),
        (
            Method::PUT,
            "/api/status",
            vec![auth, json_type],
            Some(large.into_bytes()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            Method::PUT,
            "/api/status",
            vec![auth, ("content-type", "text/plain")],
            Some(b"{}".to_vec()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            Method::PUT,
            "/api/status",
            vec![auth],
            Some(b"{}".to_vec()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            Method::GET,
            "/api/status/not-a-uuid",
            vec![auth],
            None,
            StatusCode::BAD_REQUEST,
            "INVALID_USER_ID",
        ),
        (
            Method::GET,
            "/api/status/12345",
            vec![auth],
            None,
            StatusCode::BAD_REQUEST,
            "INVALID_USER_ID",
        ),
        (
            Method::GET,
            "/api/status/%00",
            vec![auth],
            None,
            StatusCode::BAD_REQUEST,
            "INVALID_USER_ID",
        ),
        (
            Method::GET,
            "/nope",
            vec![],
            None,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            Method::GET,
            "/api/nope",
            vec![auth],
            None,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            Method::GET,
            "/api/status/a/b/c",
            vec![auth],
            None,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            Method::PATCH,
            "/api/status",
            vec![auth, json_type],
            Some(b"{}".to_vec()),
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
        ),
        (
            Method::DELETE,
            "/api/status",
            vec![auth],
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
        ),
        (
            Method::POST,
            "/healthz",
            vec![],
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
        ),
        (
            Method::PUT,
            "/api/status/devices/tab",
            vec![auth],
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
        ),
    ];
    for (method, path, headers, body, expected_status, expected_code) in cases {
        let response = app.raw(method.clone(), path, &headers, body).await;
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{method} {path}"
        );
        let (status, code) = error_code(response).await;
        assert_eq!(
            (status, code.as_str()),
            (expected_status, expected_code),
            "{method} {path}"
        );
    }
    assert_eq!(
        app.status_of(user, user).await,
        before,
        "no rejected request changed anything"
    );
}

#[sqlx::test]
async fn a_database_error_is_a_json_error_without_internals(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    sqlx::query("alter table user_status rename to user_status_moved")
        .execute(&app.pool)
        .await
        .expect("rename");
    let response = app.ping(user, json!({})).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.text().await.expect("body");
    assert_eq!(
        body,
        r#"{"error":{"code":"INTERNAL","message":"internal error"}}"#
    );
}

#[sqlx::test]
async fn an_unreachable_database_is_503_with_retry_after(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.pool.close().await;
    let response = app.get_status(new_user(), &new_user().to_string()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(error_code(response).await.1, "DATABASE_UNAVAILABLE");
}

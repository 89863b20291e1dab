use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TEST_SECRET, error_code, new_user, spawn_app, spawn_app_with, token_for};

fn sign(header: &Header, claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("signs")
}

fn in_an_hour() -> i64 {
    chrono::Utc::now().timestamp() + 3600
}

fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

#[sqlx::test]
async fn every_unacceptable_credential_is_401(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user().to_string();
    let valid_claims = json!({"sub": user, "exp": in_an_hour()});
    let hs256 = || Header::new(Algorithm::HS256);
    let tampered = {
        let token = token_for(new_user());
        let (head, _) = token.rsplit_once('.').expect("three parts");
        format!("{head}.{}", URL_SAFE_NO_PAD.encode("not the signature"))
    };

    let cases: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        (
            "another scheme",
            Some(format!("Basic {}", URL_SAFE_NO_PAD.encode("user:pw"))),
        ),
        ("no token after Bearer", Some("Bearer ".to_owned())),
        ("garbage", Some("Bearer not.a.token".to_owned())),
        (
            "wrong secret",
            Some(format!(
                "Bearer {}",
                sign(&hs256(), &valid_claims, "another-secret")
            )),
        ),
        ("tampered signature", Some(format!("Bearer {tampered}"))),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                sign(
                    &hs256(),
                    &json!({"sub": user, "exp": chrono::Utc::now().timestamp() - 3600}),
                    TEST_SECRET
                )
            )),
        ),
        (
            "no exp",
            Some(format!(
                "Bearer {}",
                sign(&hs256(), &json!({"sub": user}), TEST_SECRET)
            )),
        ),
        (
            "no sub",
            Some(format!(
                "Bearer {}",
                sign(&hs256(), &json!({"exp": in_an_hour()}), TEST_SECRET)
            )),
        ),
        (
            "sub not a UUID",
            Some(format!(
                "Bearer {}",
                sign(
                    &hs256(),
                    &json!({"sub": "alice", "exp": in_an_hour()}),
                    TEST_SECRET
                )
            )),
        ),
        (
            "alg none",
            Some(format!("Bearer {}", unsigned(&valid_claims))),
        ),
        (
            "HS512",
            Some(format!(
                "Bearer {}",
                sign(&Header::new(Algorithm::HS512), &valid_claims, TEST_SECRET)
            )),
        ),
        (
            "HS384",
            Some(format!(
                "Bearer {}",
                sign(&Header::new(Algorithm::HS384), &valid_claims, TEST_SECRET)
            )),
        ),
    ];
    for (why, authorization) in cases {
        for (method, path) in [
            (Method::GET, format!("/api/status/{user}")),
            (Method::PUT, "/api/status".to_owned()),
            (Method::DELETE, "/api/status/devices/tab".to_owned()),
        ] {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(value) = authorization.as_deref() {
                headers.push(("authorization", value));
            }
            let response = app
                .raw(method.clone(), &path, &headers, Some(b"{}".to_vec()))
                .await;
            assert_eq!(
                response
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok()),
                Some("Bearer"),
                "{why}: {method} {path}"
            );
            let (status, code) = error_code(response).await;
            assert_eq!(
                (status, code.as_str()),
                (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
                "{why}: {method} {path}"
            );
        }
    }
    let count: i64 = sqlx::query_scalar("select count(*) from user_status")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 0, "no refused request wrote anything");
}

#[sqlx::test]
async fn a_valid_token_is_accepted_with_any_case_of_bearer(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    let token = token_for(user);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let authorization = format!("{scheme} {token}");
        let response = app
            .raw(
                Method::GET,
                &format!("/api/status/{user}"),
                &[("authorization", authorization.as_str())],
                None,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
}

#[sqlx::test]
async fn the_caller_is_the_token_subject(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    let me = app.ping_ok(user, json!({})).await;
    assert_eq!(
        me["userId"],
        user.to_string(),
        "the ping was recorded for the token's sub"
    );
    let seen = app.status_of(new_user(), user).await;
    assert_eq!(seen["status"], "online");
}

async fn status_with(app: &crate::helpers::TestApp, token: &str) -> StatusCode {
    let user = new_user();
    app.raw(
        Method::GET,
        &format!("/api/status/{user}"),
        &[("authorization", &format!("Bearer {token}"))],
        None,
    )
    .await
    .status()
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

#[sqlx::test]
async fn nbf_is_honoured_within_the_leeway(pool: PgPool) {
    let app = spawn_app_with(pool, &[("PRESENCE_JWT_LEEWAY", "30s")]).await;
    let sub = new_user().to_string();
    let cases = [
        (
            "nbf an hour ahead",
            json!({"sub": sub, "exp": now_secs() + 7200, "nbf": now_secs() + 3600}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "nbf 10 s ahead, within the leeway",
            json!({"sub": sub, "exp": now_secs() + 7200, "nbf": now_secs() + 10}),
            StatusCode::OK,
        ),
        (
            "nbf passed",
            json!({"sub": sub, "exp": now_secs() + 7200, "nbf": now_secs() - 10}),
            StatusCode::OK,
        ),
        (
            "expired 10 s ago, within the leeway",
            json!({"sub": sub, "exp": now_secs() - 10}),
            StatusCode::OK,
        ),
        (
            "expired a minute ago",
            json!({"sub": sub, "exp": now_secs() - 60}),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (why, claims, expected) in cases {
        let token = sign(&Header::new(Algorithm::HS256), &claims, TEST_SECRET);
        assert_eq!(status_with(&app, &token).await, expected, "{why}");
    }
}

#[sqlx::test]
async fn the_previous_secret_keeps_working_during_a_rotation(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        &[
            ("PRESENCE_JWT_SECRET", "the-new-secret"),
            ("PRESENCE_JWT_SECRET_PREVIOUS", TEST_SECRET),
        ],
    )
    .await;
    let claims = json!({"sub": new_user().to_string(), "exp": now_secs() + 600});
    let header = Header::new(Algorithm::HS256);
    assert_eq!(
        status_with(&app, &sign(&header, &claims, "the-new-secret")).await,
        StatusCode::OK,
        "new secret"
    );
    assert_eq!(
        status_with(&app, &sign(&header, &claims, TEST_SECRET)).await,
        StatusCode::OK,
        "previous secret"
    );
    assert_eq!(
        status_with(&app, &sign(&header, &claims, "a-third-secret")).await,
        StatusCode::UNAUTHORIZED,
        "any other"
    );
    let expired_old = json!({"sub": new_user().to_string(), "exp": now_secs() - 3600});
    assert_eq!(
        status_with(&app, &sign(&header, &expired_old, TEST_SECRET)).await,
        StatusCode::UNAUTHORIZED,
        "the old secret's tokens still expire"
    );
}

#[sqlx::test]
async fn issuer_and_audience_are_checked_when_configured(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        &[
            ("PRESENCE_JWT_ISSUER", "https://auth.example"),
            ("PRESENCE_JWT_AUDIENCE", "presence"),
        ],
    )
    .await;
    let sub = new_user().to_string();
    let exp = now_secs() + 600;
    let cases = [
        (
            "both right",
            json!({"sub": sub, "exp": exp, "iss": "https://auth.example", "aud": "presence"}),
            StatusCode::OK,
        ),
        (
            "no iss",
            json!({"sub": sub, "exp": exp, "aud": "presence"}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no aud",
            json!({"sub": sub, "exp": exp, "iss": "https://auth.example"}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong iss",
            json!({"sub": sub, "exp": exp, "iss": "https://evil.example", "aud": "presence"}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong aud",
            json!({"sub": sub, "exp": exp, "iss": "https://auth.example", "aud": "billing"}),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (why, claims, expected) in cases {
        let token = sign(&Header::new(Algorithm::HS256), &claims, TEST_SECRET);
        assert_eq!(status_with(&app, &token).await, expected, "{why}");
    }
}

#[sqlx::test]
async fn without_configured_issuer_or_audience_those_claims_are_ignored(pool: PgPool) {
    let app = spawn_app(pool).await;
    let claims = json!({"sub": new_user().to_string(), "exp": now_secs() + 600, "iss": "anyone", "aud": "anything"});
    assert_eq!(
        status_with(
            &app,
            &sign(&Header::new(Algorithm::HS256), &claims, TEST_SECRET)
        )
        .await,
        StatusCode::OK
    );
}

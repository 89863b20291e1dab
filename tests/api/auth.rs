use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TEST_SECRET, error_code, new_user, spawn_app, token_for};

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

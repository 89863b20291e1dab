use reqwest::{Method, StatusCode};
use sqlx::PgPool;

use crate::helpers::spawn_app;

#[sqlx::test]
async fn healthz_answers_200_without_a_token(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = app.raw(Method::GET, "/healthz", &[], None).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[sqlx::test]
async fn healthz_answers_even_when_the_database_is_gone(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.pool.close().await;
    let response = app.raw(Method::GET, "/healthz", &[], None).await;
    assert_eq!(response.status(), StatusCode::OK);
}

//! What the browser side gets from the server: the client module, the demo page, CORS.

use reqwest::{Method, StatusCode};
use sqlx::PgPool;

use crate::helpers::{new_user, spawn_app, spawn_app_with, spawn_dev_app, token_for};
use presence::auth::TokenVerifier;
use secrecy::SecretString;

#[sqlx::test]
async fn the_client_module_is_served(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = app.raw(Method::GET, "/client/presence.js", &[], None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/javascript"),
        "{content_type}"
    );
    assert!(
        response
            .text()
            .await
            .expect("text")
            .contains("export class PresenceClient")
    );
}

#[sqlx::test]
async fn the_demo_exists_only_in_development_mode(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    assert_eq!(
        app.raw(Method::GET, "/demo", &[], None).await.status(),
        StatusCode::NOT_FOUND
    );
    let user = new_user();
    assert_eq!(
        app.raw(Method::GET, &format!("/demo/token?user={user}"), &[], None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    let dev = spawn_dev_app(pool).await;
    let page = dev.raw(Method::GET, "/demo", &[], None).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .expect("html")
            .contains("/client/presence.js")
    );
    let token = dev
        .raw(Method::GET, &format!("/demo/token?user={user}"), &[], None)
        .await
        .text()
        .await
        .expect("token");
    let verified = TokenVerifier::new(&SecretString::from(crate::helpers::TEST_SECRET))
        .verify(&token)
        .expect("valid");
    assert_eq!(verified, user);
    assert_eq!(
        dev.raw(Method::GET, "/demo/token?user=nope", &[], None)
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
}

#[sqlx::test]
async fn cors_lets_configured_origins_poll_with_etags(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        &[(
            "PRESENCE_CORS_ORIGINS",
            "https://app.example, http://localhost:5173",
        )],
    )
    .await;
    let user = new_user();
    let preflight = app
        .raw(
            Method::OPTIONS,
            "/api/status/query",
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization,content-type,if-none-match",
                ),
            ],
            None,
        )
        .await;
    assert_eq!(preflight.status(), StatusCode::OK);
    let header = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_lowercase()
    };
    assert_eq!(
        header(&preflight, "access-control-allow-origin"),
        "https://app.example"
    );
    let allowed = header(&preflight, "access-control-allow-headers");
    for needed in ["authorization", "content-type", "if-none-match"] {
        assert!(allowed.contains(needed), "{needed} in {allowed}");
    }

    let auth = format!("Bearer {}", token_for(user));
    let read = app
        .raw(
            Method::GET,
            &format!("/api/status/{user}"),
            &[
                ("origin", "http://localhost:5173"),
                ("authorization", &auth),
            ],
            None,
        )
        .await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(
        header(&read, "access-control-allow-origin"),
        "http://localhost:5173"
    );
    assert!(header(&read, "access-control-expose-headers").contains("etag"));

    let stranger = app
        .raw(
            Method::GET,
            &format!("/api/status/{user}"),
            &[("origin", "https://evil.example"), ("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(
        header(&stranger, "access-control-allow-origin"),
        "",
        "another origin gets no CORS grant"
    );
}

#[sqlx::test]
async fn without_configured_origins_no_cors_headers_are_sent(pool: PgPool) {
    let app = spawn_app(pool).await;
    let user = new_user();
    let auth = format!("Bearer {}", token_for(user));
    let read = app
        .raw(
            Method::GET,
            &format!("/api/status/{user}"),
            &[("origin", "https://app.example"), ("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(
        read.status(),
        StatusCode::OK,
        "same-origin pages send Origin too, and work"
    );
    assert!(read.headers().get("access-control-allow-origin").is_none());
}

/// Runs `node --test <folder>` from the repository root; the output is shown on failure.
fn node_test(folder: &str) -> std::process::Output {
    let server = crate::process::database_url("");
    let base = server.trim_end_matches('/');
    std::process::Command::new("node")
        .args(["--test", folder])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PRESENCE_BIN", env!("CARGO_BIN_EXE_presence"))
        .env("E2E_DATABASE_SERVER", base)
        .output()
        .expect("node runs (Node.js is needed for the browser client's tests)")
}

fn assert_passed(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_browser_clients_unit_tests_pass() {
    assert_passed(&node_test("web/"));
}

#[test]
fn two_users_watch_each_other_in_headless_chromium() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let missing: Vec<&str> = [
        (!std::path::Path::new("/usr/bin/chromium").exists())
            .then_some("chromium (Debian package chromium)"),
        (!root.join("tests/e2e/node_modules/playwright-core").exists())
            .then_some("playwright-core (npm ci --prefix tests/e2e)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser test, but {missing:?} is missing; .ci/run installs it"
        );
        eprintln!(
            "\n!!! SKIPPED the headless Chromium test: {missing:?} missing. `bash .ci/run` installs it. !!!\n"
        );
        return;
    }
    assert_passed(&node_test("tests/e2e/"));
}

/// The browser package's copy of the API document (from which `web/api.d.ts`
/// is generated) is the one the server serves. `PRESENCE_UPDATE_OPENAPI=1`
/// rewrites it; then `npm run api-types --prefix web` regenerates the types.
#[sqlx::test]
async fn the_browser_packages_api_document_is_current(pool: PgPool) {
    let app = spawn_app(pool).await;
    let served: serde_json::Value = app
        .raw(Method::GET, "/openapi.json", &[], None)
        .await
        .json()
        .await
        .expect("JSON");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/openapi.json");
    let pretty = serde_json::to_string_pretty(&served).expect("serializes") + "\n";
    if std::env::var_os("PRESENCE_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &pretty).expect("writes web/openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == pretty,
        "web/openapi.json is not the served document: run \
         `PRESENCE_UPDATE_OPENAPI=1 cargo test the_browser_packages_api_document_is_current` \
         and `npm run api-types --prefix web`, and commit both"
    );
}

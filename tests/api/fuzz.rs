//! Raw request bytes, well-formed or not, into the real server: never a panic,
//! never a 500, and every error the contract's JSON. Bounded: a fixed number of
//! cases, each waiting at most a second of silence.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sqlx::PgPool;

use crate::helpers::{new_user, raw_exchange, spawn_app_with, token_for};

/// How many requests the fuzz target sends in one run.
const CASES: u32 = 256;

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("GET".to_owned()),
        Just("PUT".to_owned()),
        Just("POST".to_owned()),
        Just("DELETE".to_owned()),
        Just("HEAD".to_owned()),
        Just("OPTIONS".to_owned()),
        "[A-Z]{1,10}",
        "[ -~]{0,6}",
    ]
}

fn path(user: &str) -> impl Strategy<Value = String> + use<> {
    prop_oneof![
        Just("/api/status".to_owned()),
        Just(format!("/api/status/{user}")),
        Just(format!("/api/status?ids={user},{user}")),
        Just("/api/status/query".to_owned()),
        Just("/api/status/devices/tab".to_owned()),
        Just(format!("/api/blocks/{user}")),
        Just("/api/blocks?limit=2".to_owned()),
        Just("/healthz".to_owned()),
        Just("/readyz".to_owned()),
        Just("/_presence/rejected/NOPE".to_owned()),
        "/[ -~]{0,40}",
        "/api/status\\?ids=[a-f0-9,-]{0,200}",
        (1_usize..20_000).prop_map(|length| format!("/{}", "x".repeat(length))),
    ]
}

fn header(token: &str) -> impl Strategy<Value = String> + use<> {
    prop_oneof![
        Just("host: fuzz".to_owned()),
        Just(format!("authorization: Bearer {token}")),
        "authorization: [ -~]{0,40}",
        Just("content-type: application/json".to_owned()),
        "content-type: [ -~]{0,20}",
        (0_u64..100).prop_map(|length| format!("content-length: {length}")),
        "content-length: [ -~]{0,24}",
        Just("transfer-encoding: chunked".to_owned()),
        "transfer-encoding: [a-z]{0,10}",
        Just("if-none-match: \"x\"".to_owned()),
        Just("expect: 100-continue".to_owned()),
        "[a-zA-Z-]{1,12}: [ -~]{0,40}",
        "[ -~]{0,30}",
        (1_usize..50_000).prop_map(|length| format!("x-big: {}", "a".repeat(length))),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(br#"{"deviceId":"tab","statusMessage":"hi"}"#.to_vec()),
        Just(br#"{"userIds":[]}"#.to_vec()),
        "[ -~]{0,100}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..200),
        Just(b"5\r\nhello\r\n0\r\n\r\n".to_vec()),
    ]
}

/// A request assembled from plausible and implausible parts, or plain noise.
fn request(user: &str, token: &str) -> impl Strategy<Value = Vec<u8>> + use<> {
    let assembled = (
        method(),
        path(user),
        prop_oneof![
            Just("HTTP/1.1"),
            Just("HTTP/1.0"),
            Just("HTTP/2.0"),
            Just("")
        ],
        proptest::collection::vec(header(token), 0..8),
        body(),
    )
        .prop_map(|(method, path, version, headers, body)| {
            let mut bytes = format!("{method} {path} {version}\r\n").into_bytes();
            for header in headers {
                bytes.extend_from_slice(header.as_bytes());
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"\r\n");
            bytes.extend_from_slice(&body);
            bytes
        });
    prop_oneof![
        4 => assembled,
        1 => proptest::collection::vec(any::<u8>(), 0..400),
    ]
}

#[sqlx::test]
async fn raw_requests_never_panic_and_every_error_is_json(pool: PgPool) {
    let app = spawn_app_with(pool, &[("PRESENCE_REQUEST_TIMEOUT", "300ms")]).await;
    let user = new_user();
    let (address, token) = (app.address.clone(), token_for(user));
    let fuzzing = tokio::task::spawn_blocking(move || {
        let strategy = request(&user.to_string(), &token);
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let mut runner = TestRunner::new(Config {
            cases: CASES,
            failure_persistence: None,
            ..Config::default()
        });
        runner.run(&strategy, |bytes| {
            let responses =
                runtime.block_on(raw_exchange(&address, &bytes, Duration::from_secs(1)));
            let sent = String::from_utf8_lossy(&bytes);
            // A HEAD answer carries the headers of the JSON error, not its body.
            let head = bytes.starts_with(b"HEAD ");
            for response in &responses {
                prop_assert_ne!(response.status, 500, "{:?} for {:?}", response, sent);
                if response.status >= 400 {
                    let json_type = response.headers.iter().any(|(name, value)| {
                        name == "content-type" && value.starts_with("application/json")
                    });
                    prop_assert!(json_type, "{:?} for {:?}", response, sent);
                    if head {
                        continue;
                    }
                    let body: serde_json::Value =
                        serde_json::from_slice(&response.body).map_err(|error| {
                            TestCaseError::fail(format!("{error}: {response:?} for {sent:?}"))
                        })?;
                    prop_assert!(body["error"]["code"].is_string(), "{}", body);
                }
            }
            Ok(())
        })
    });
    let outcome = fuzzing.await.expect("the fuzzing thread ends");
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    assert_eq!(
        app.raw(reqwest::Method::GET, "/healthz", &[], None)
            .await
            .status(),
        reqwest::StatusCode::OK,
        "the server still serves"
    );
}

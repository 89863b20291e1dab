//! Tokens from identity providers: RS256, ES256 and EdDSA keys from a JWKS
//! document or PEM files, key rotation, outages, and algorithm confusion.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use presence::clock::SystemClock;
use presence::domain::UserId;
use presence::startup::Application;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{
    TEST_SECRET, TestApp, error_code, new_user, spawn_app_with, test_config, token_for,
};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");

/// A private key of the test identity provider, published under `kid`.
struct Signer {
    key: EncodingKey,
    alg: Algorithm,
    kid: &'static str,
}

impl Signer {
    fn rsa() -> Self {
        let pem = include_bytes!("../fixtures/keys/rsa.key");
        let key = EncodingKey::from_rsa_pem(pem).expect("an RSA key");
        Self {
            key,
            alg: Algorithm::RS256,
            kid: "rsa-2026",
        }
    }

    fn rotated_rsa() -> Self {
        let pem = include_bytes!("../fixtures/keys/rsa-rotated.key");
        let key = EncodingKey::from_rsa_pem(pem).expect("an RSA key");
        Self {
            key,
            alg: Algorithm::RS256,
            kid: "rsa-2027",
        }
    }

    fn ec() -> Self {
        let pem = include_bytes!("../fixtures/keys/ec.key");
        let key = EncodingKey::from_ec_pem(pem).expect("an EC key");
        Self {
            key,
            alg: Algorithm::ES256,
            kid: "ec-2026",
        }
    }

    fn ed25519() -> Self {
        let pem = include_bytes!("../fixtures/keys/ed25519.key");
        let key = EncodingKey::from_ed_pem(pem).expect("an Ed25519 key");
        Self {
            key,
            alg: Algorithm::EdDSA,
            kid: "ed-2026",
        }
    }

    /// A token for `claims` with this key's `alg` and `kid` in its header.
    fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.kid, claims)
    }

    /// A token whose header names `kid`, signed with this key.
    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let header = Header {
            kid: Some(kid.to_owned()),
            ..Header::new(self.alg)
        };
        jsonwebtoken::encode(&header, claims, &self.key).expect("signs")
    }

    /// A token for `user`, valid for an hour.
    fn token_for(&self, user: UserId) -> String {
        self.sign(&json!({"sub": user.to_string(), "exp": in_an_hour()}))
    }

    /// The public half as a JWK, as identity providers publish it.
    fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).expect("a public JWK");
        jwk.common.key_id = Some(self.kid.to_owned());
        serde_json::to_value(jwk).expect("serializes")
    }
}

fn in_an_hour() -> i64 {
    chrono::Utc::now().timestamp() + 3600
}

fn jwks_of(signers: &[&Signer]) -> Value {
    json!({"keys": signers.iter().map(|signer| signer.jwk()).collect::<Vec<_>>()})
}

/// A JWKS endpoint the test controls: what it serves, whether it is down,
/// and how often it was fetched.
#[derive(Clone)]
struct JwksServer {
    url: String,
    document: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl JwksServer {
    fn start(document: Value) -> Self {
        let document = Arc::new(Mutex::new(document));
        let fetches = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let state = (document.clone(), fetches.clone(), down.clone());
        let server = HttpServer::new(move || {
            let (document, fetches, down) = state.clone();
            App::new().route(
                "/.well-known/jwks.json",
                web::get().to(move || {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let answer = if down.load(Ordering::SeqCst) {
                        HttpResponse::ServiceUnavailable().finish()
                    } else {
                        HttpResponse::Ok()
                            .insert_header(("Cache-Control", "public, max-age=3600"))
                            .json(&*document.lock().expect("not poisoned"))
                    };
                    async move { answer }
                }),
            )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .expect("binds");
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Self {
            url: format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
            document,
            fetches,
            down,
        }
    }

    fn serve(&self, document: Value) {
        *self.document.lock().expect("not poisoned") = document;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// A server that checks tokens against `jwks` only (no HS256 secret).
async fn app_trusting(pool: PgPool, jwks: &JwksServer) -> TestApp {
    spawn_app_with(
        pool,
        &[
            ("PRESENCE_JWT_SECRET", ""),
            ("PRESENCE_JWKS_URL", &jwks.url),
        ],
    )
    .await
}

/// `GET /api/status/{user}` with `token`: its status code.
async fn read_with(app: &TestApp, token: &str) -> StatusCode {
    let path = format!("/api/status/{}", new_user());
    app.raw(
        Method::GET,
        &path,
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    )
    .await
    .status()
}

/// `PUT /api/status` with `token`: the self view, whose `userId` says who the token is.
async fn ping_with(app: &TestApp, token: &str) -> (StatusCode, Value) {
    let response = app
        .raw(
            Method::PUT,
            "/api/status",
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Content-Type", "application/json"),
            ],
            Some(br#"{"deviceId": "laptop"}"#.to_vec()),
        )
        .await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[sqlx::test]
async fn tokens_signed_with_rsa_ec_and_ed25519_jwks_keys_verify(pool: PgPool) {
    let signers = [Signer::rsa(), Signer::ec(), Signer::ed25519()];
    let jwks = JwksServer::start(jwks_of(&signers.iter().collect::<Vec<_>>()));
    let app = app_trusting(pool, &jwks).await;
    for signer in &signers {
        let user = new_user();
        let (status, me) = ping_with(&app, &signer.token_for(user)).await;
        assert_eq!(status, StatusCode::OK, "{:?}: {me}", signer.alg);
        assert_eq!(me["userId"], user.to_string(), "{:?}", signer.alg);
    }
    // The HS256 test token: this server has no secret.
    let (status, code) =
        error_code(app.get_status(new_user(), &new_user().to_string()).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    assert_eq!(jwks.fetches(), 1, "fetched once, at start-up");
}

#[sqlx::test]
async fn tokens_signed_with_pem_public_keys_verify(pool: PgPool) {
    let files =
        ["rsa.pub.pem", "ec.pub.pem", "ed25519.pub.pem"].map(|file| format!("{KEYS}/{file}"));
    let app = spawn_app_with(pool, &[("PRESENCE_JWT_PUBLIC_KEYS", &files.join(","))]).await;
    for signer in [Signer::rsa(), Signer::ec(), Signer::ed25519()] {
        assert_eq!(
            read_with(&app, &signer.token_for(new_user())).await,
            StatusCode::OK,
            "{:?}",
            signer.alg
        );
    }
    // A key not among the files.
    assert_eq!(
        read_with(&app, &Signer::rotated_rsa().token_for(new_user())).await,
        StatusCode::UNAUTHORIZED
    );
    // The HS256 secret still works beside them.
    assert_eq!(
        app.get_status(new_user(), &new_user().to_string())
            .await
            .status(),
        StatusCode::OK
    );
}

#[sqlx::test]
async fn a_rotated_key_verifies_after_one_refetch(pool: PgPool) {
    let (old, new) = (Signer::rsa(), Signer::rotated_rsa());
    let jwks = JwksServer::start(jwks_of(&[&old]));
    let app = app_trusting(pool, &jwks).await;
    assert_eq!(
        read_with(&app, &old.token_for(new_user())).await,
        StatusCode::OK
    );
    assert_eq!(jwks.fetches(), 1);

    // The provider rotates: the new key is published beside the old one.
    jwks.serve(jwks_of(&[&old, &new]));
    assert_eq!(
        read_with(&app, &new.token_for(new_user())).await,
        StatusCode::OK
    );
    assert_eq!(jwks.fetches(), 2, "one re-fetch for the new kid");
    assert_eq!(
        read_with(&app, &new.token_for(new_user())).await,
        StatusCode::OK
    );
    assert_eq!(
        read_with(&app, &old.token_for(new_user())).await,
        StatusCode::OK
    );
    assert_eq!(jwks.fetches(), 2, "the keys held answer from then on");
}

#[sqlx::test]
async fn a_flood_of_unknown_kids_fetches_the_jwks_at_most_once(pool: PgPool) {
    let signer = Signer::rsa();
    let jwks = JwksServer::start(jwks_of(&[&signer]));
    let app = app_trusting(pool, &jwks).await;
    let flood: Vec<_> = (0..50)
        .map(|i| {
            let token = signer.sign_as(
                &format!("forged-{i}"),
                &json!({"sub": new_user().to_string(), "exp": in_an_hour()}),
            );
            let path = format!("/api/status/{}", new_user());
            app.raw(
                Method::GET,
                &path,
                &[("Authorization", &format!("Bearer {token}"))],
                None,
            )
        })
        .collect();
    for response in futures::future::join_all(flood).await {
        let (status, code) = error_code(response).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
        );
    }
    assert_eq!(
        jwks.fetches(),
        2,
        "start-up, then one re-fetch for 50 unknown kids"
    );
    // A key published now is not fetched for until 30 s have passed.
    let rotated = Signer::rotated_rsa();
    jwks.serve(jwks_of(&[&signer, &rotated]));
    assert_eq!(
        read_with(&app, &rotated.token_for(new_user())).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(jwks.fetches(), 2);
    // Known keys are unaffected.
    assert_eq!(
        read_with(&app, &signer.token_for(new_user())).await,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn a_jwks_outage_keeps_the_keys_already_fetched(pool: PgPool) {
    let signer = Signer::ec();
    let jwks = JwksServer::start(jwks_of(&[&signer]));
    let app = app_trusting(pool, &jwks).await;
    jwks.down.store(true, Ordering::SeqCst);
    // An unknown kid makes the server try, and fail, to fetch.
    let unknown = signer.sign_as(
        "unknown",
        &json!({"sub": new_user().to_string(), "exp": in_an_hour()}),
    );
    assert_eq!(read_with(&app, &unknown).await, StatusCode::UNAUTHORIZED);
    assert_eq!(jwks.fetches(), 2, "the re-fetch was tried");
    // New tokens for the key held still verify.
    assert_eq!(
        read_with(&app, &signer.token_for(new_user())).await,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn start_up_fails_clearly_without_the_jwks_unless_another_key_is_configured(pool: PgPool) {
    let unreachable = format!("http://127.0.0.1:{}/jwks.json", crate::helpers::free_port());
    let only_jwks = test_config(&[
        ("PRESENCE_JWT_SECRET", ""),
        ("PRESENCE_JWKS_URL", &unreachable),
    ]);
    let error = Application::build_with_pool(&only_jwks, pool.clone(), Arc::new(SystemClock))
        .await
        .err()
        .expect("start-up fails");
    assert!(error.to_string().contains("PRESENCE_JWKS_URL"), "{error}");

    // With the HS256 secret too, it starts, and the secret's tokens work.
    let with_secret = test_config(&[("PRESENCE_JWKS_URL", &unreachable)]);
    let application = Application::build_with_pool(&with_secret, pool, Arc::new(SystemClock))
        .await
        .expect("starts on the secret");
    let base = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    let response = reqwest::Client::new()
        .get(format!("{base}/api/status/{}", new_user()))
        .bearer_auth(token_for(new_user()))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::OK);
}

#[sqlx::test]
async fn no_algorithm_confusion(pool: PgPool) {
    let (rsa, ec) = (Signer::rsa(), Signer::ec());
    let jwks = JwksServer::start(jwks_of(&[&rsa, &ec]));
    let rsa_pem = format!("{KEYS}/rsa.pub.pem");
    let app = spawn_app_with(
        pool,
        &[
            ("PRESENCE_JWKS_URL", &jwks.url),
            ("PRESENCE_JWT_PUBLIC_KEYS", &rsa_pem),
        ],
    )
    .await;
    let claims = json!({"sub": new_user().to_string(), "exp": in_an_hour()});
    let public_pem = std::fs::read(&rsa_pem).expect("the public key");
    let hs256_with = |secret: &[u8], kid: Option<&str>| {
        let header = Header {
            kid: kid.map(str::to_owned),
            ..Header::new(Algorithm::HS256)
        };
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).expect("signs")
    };
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"rsa-2026"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    // An RS256 signature under a header that claims ES256, and the reverse.
    let relabelled = |token: String, alg: &str, kid: &str| {
        let (_, rest) = token.split_once('.').expect("a header");
        let header =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"{kid}"}}"#));
        format!("{header}.{rest}")
    };
    let cases = [
        (
            "HS256 signed with the RSA public key's PEM",
            hs256_with(&public_pem, None),
        ),
        (
            "the same, naming the RSA kid",
            hs256_with(&public_pem, Some(rsa.kid)),
        ),
        ("alg: none", unsigned),
        (
            "ES256 under the RSA key's kid",
            ec.sign_as(rsa.kid, &claims),
        ),
        ("RS256 under the EC key's kid", rsa.sign_as(ec.kid, &claims)),
        (
            "an RS256 signature relabelled ES256",
            relabelled(rsa.sign(&claims), "ES256", ec.kid),
        ),
        (
            "an RS256 signature relabelled HS256",
            relabelled(rsa.sign(&claims), "HS256", rsa.kid),
        ),
        (
            "an RS256 signature relabelled RS512",
            relabelled(rsa.sign(&claims), "RS512", rsa.kid),
        ),
    ];
    for (case, token) in cases {
        let path = format!("/api/status/{}", new_user());
        let response = app
            .raw(
                Method::GET,
                &path,
                &[("Authorization", &format!("Bearer {token}"))],
                None,
            )
            .await;
        let (status, code) = error_code(response).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            "{case}"
        );
    }
    // The honest tokens of each kind pass on the same server.
    assert_eq!(read_with(&app, &rsa.sign(&claims)).await, StatusCode::OK);
    assert_eq!(read_with(&app, &ec.sign(&claims)).await, StatusCode::OK);
    assert_eq!(
        read_with(&app, &hs256_with(TEST_SECRET.as_bytes(), None)).await,
        StatusCode::OK
    );
}

#[sqlx::test]
async fn the_user_id_can_come_from_another_claim(pool: PgPool) {
    let signer = Signer::rsa();
    let jwks = JwksServer::start(jwks_of(&[&signer]));
    let app = spawn_app_with(
        pool,
        &[
            ("PRESENCE_JWT_SECRET", ""),
            ("PRESENCE_JWKS_URL", &jwks.url),
            ("PRESENCE_JWT_USER_CLAIM", "https://example.com/user_id"),
        ],
    )
    .await;
    let user = new_user();
    let token = signer.sign(&json!({
        "sub": "auth0|5f7c8ec7c33c6c004bbafe82",
        "https://example.com/user_id": user.to_string(),
        "exp": in_an_hour(),
    }));
    let (status, me) = ping_with(&app, &token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["userId"], user.to_string());

    // Without the claim, or with a non-UUID in it: refused, even if `sub` is a UUID.
    for claims in [
        json!({"sub": user.to_string(), "exp": in_an_hour()}),
        json!({"sub": user.to_string(), "https://example.com/user_id": "auth0|x", "exp": in_an_hour()}),
    ] {
        let (status, body) = ping_with(&app, &signer.sign(&claims)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{claims}");
        assert_eq!(body["error"]["code"], "UNAUTHORIZED", "{claims}");
    }
}

#[sqlx::test]
async fn a_public_key_file_that_is_not_a_key_stops_start_up_naming_it(pool: PgPool) {
    let not_a_key = std::env::temp_dir()
        .join(format!("presence-not-a-key-{}.pem", new_user()))
        .display()
        .to_string();
    std::fs::write(
        &not_a_key,
        "-----BEGIN PUBLIC KEY-----\nbm9wZQ==\n-----END PUBLIC KEY-----\n",
    )
    .expect("writes");
    for (files, why) in [
        (format!("{KEYS}/missing.pem"), "No such file"),
        (not_a_key.clone(), "not a PEM public key"),
        (format!("{KEYS}/rsa.key"), "a private key"),
    ] {
        let config = test_config(&[("PRESENCE_JWT_PUBLIC_KEYS", &files)]);
        let error = Application::build_with_pool(&config, pool.clone(), Arc::new(SystemClock))
            .await
            .err()
            .expect("start-up fails");
        let message = error.to_string();
        assert!(message.contains("PRESENCE_JWT_PUBLIC_KEYS"), "{message}");
        assert!(
            message.contains(&files) && message.contains(why),
            "{message}"
        );
    }
}

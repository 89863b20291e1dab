//! Issuing HS256 tokens (`presence token`, the demo page, tests).

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Map;

use super::TokenSettings;
use crate::domain::UserId;

/// Signs a token for `user`, valid for `ttl` from now (for `presence token` and tests).
pub fn issue_token(
    secret: &SecretString,
    user: UserId,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    issue_token_with(&TokenSettings::with_secret(secret.clone()), user, ttl)
}

/// Signs a token for `user` with the current secret, carrying `iss`/`aud` when configured.
pub fn issue_token_with(
    settings: &TokenSettings,
    user: UserId,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    issue_scoped_token(settings, &user.to_string(), None, ttl)
}

/// Signs a token for `subject` with an optional `scope` (`presence:admin`
/// makes it a service token; its subject may then be any name). The subject
/// goes in `sub` and in the configured user claim.
pub fn issue_scoped_token(
    settings: &TokenSettings,
    subject: &str,
    scope: Option<&str>,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    sign(settings, subject, scope, None, ttl)
}

/// Signs the claims of a token: the subject, `exp`, and the scope, rooms, `iss` and `aud` when given.
fn sign(
    settings: &TokenSettings,
    subject: &str,
    scope: Option<&str>,
    rooms: Option<&[String]>,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let rules = &settings.claims;
    let mut claims = Map::new();
    claims.insert("sub".into(), subject.into());
    claims.insert(rules.user_claim.clone(), subject.into());
    claims.insert(
        "exp".into(),
        jsonwebtoken::get_current_timestamp()
            .saturating_add(ttl.as_secs())
            .into(),
    );
    for (name, value) in [
        ("scope", scope.map(str::to_owned)),
        ("iss", rules.issuer.clone()),
        ("aud", rules.audience.clone()),
    ] {
        if let Some(value) = value {
            claims.insert(name.into(), value.into());
        }
    }
    if let Some(rooms) = rooms {
        claims.insert(rules.rooms_claim.clone(), rooms.into());
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(settings.secret.expose_secret().as_bytes()),
    )
}

/// Signs a token for `user` granting `rooms` (the rooms claim: ids, prefixes
/// ending in `*`, or `*`), for `presence token --rooms`, the demo and tests.
pub fn issue_room_token(
    settings: &TokenSettings,
    user: &str,
    rooms: &[String],
    scope: Option<&str>,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    sign(settings, user, scope, Some(rooms), ttl)
}

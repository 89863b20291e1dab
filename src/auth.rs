//! Bearer tokens: verifying the caller (the viewer) and issuing tokens for scripts.

use std::fmt;
use std::future::{Ready, ready};
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::UserId;
use crate::error::ApiError;

/// The secret `serve --dev` and `token --dev` use: public, so never for production.
pub const DEV_JWT_SECRET: &str = "presence-development-secret-never-use-in-production";

/// Seconds of clock difference tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// Checks bearer tokens: HS256 only, `exp` required, `sub` a user id.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier").finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for tokens signed with `secret`.
    pub fn new(secret: &SecretString) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = LEEWAY_SECS;
        Self {
            key: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            validation,
        }
    }

    /// The user a token speaks for, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |error| {
                ApiError::Unauthorized(match error.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::InvalidSignature => "the token's signature does not match",
                    ErrorKind::InvalidAlgorithm => "the token must be signed with HS256",
                    ErrorKind::MissingRequiredClaim(_) => "the token must carry exp and sub claims",
                    _ => "the token is malformed",
                })
            },
        )?;
        UserId::parse(&data.claims.sub)
            .map_err(|_| ApiError::Unauthorized("the token's sub claim must be a user id (a UUID)"))
    }

    /// The user a request's `Authorization: Bearer` header speaks for.
    pub fn verify_request(&self, request: &HttpRequest) -> Result<UserId, ApiError> {
        let value = request
            .headers()
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "an Authorization: Bearer <token> header is required",
            ))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(ApiError::Unauthorized(
                "the Authorization header must read Bearer <token>",
            ))?;
        self.verify(token)
    }
}

/// Signs a token for `user`, valid for `ttl` from now (for `presence token`).
pub fn issue_token(
    secret: &SecretString,
    user: UserId,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = Claims {
        sub: user.to_string(),
        exp: jsonwebtoken::get_current_timestamp().saturating_add(ttl.as_secs()),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
}

/// The authenticated caller of an `/api` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer(pub UserId);

impl FromRequest for Viewer {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let verified = match request.app_data::<web::Data<TokenVerifier>>() {
            Some(verifier) => verifier.verify_request(request).map(Viewer),
            None => Err(ApiError::Internal("no token verifier configured".into())),
        };
        ready(verified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> SecretString {
        SecretString::from(text.to_owned())
    }

    #[test]
    fn an_issued_token_verifies_as_its_user() {
        let user = UserId::parse("0b6c3f1e-8f4a-4e55-9a2b-1c2d3e4f5a6b").expect("uuid");
        let token = issue_token(&secret("s3cret"), user, Duration::from_secs(60)).expect("signs");
        assert_eq!(
            TokenVerifier::new(&secret("s3cret"))
                .verify(&token)
                .expect("valid"),
            user
        );
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let user = UserId::parse("0b6c3f1e-8f4a-4e55-9a2b-1c2d3e4f5a6b").expect("uuid");
        let token = issue_token(&secret("other"), user, Duration::from_secs(60)).expect("signs");
        let error = TokenVerifier::new(&secret("s3cret"))
            .verify(&token)
            .expect_err("refused");
        assert_eq!(error.code(), "UNAUTHORIZED");
    }
}

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

/// The scope that makes a token a service token, for `/api/admin/...`.
pub const ADMIN_SCOPE: &str = "presence:admin";

/// The secret `serve --dev` and `token --dev` use: public, so never for production.
pub const DEV_JWT_SECRET: &str = "presence-development-secret-never-use-in-production";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

/// What tokens are signed and checked with.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The signing secret.
    pub secret: SecretString,
    /// A secret still accepted during a rotation.
    pub previous_secret: Option<SecretString>,
    /// The `iss` tokens must carry, when set.
    pub issuer: Option<String>,
    /// The `aud` tokens must carry, when set.
    pub audience: Option<String>,
    /// Clock difference tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

impl TokenSettings {
    /// Settings with only a secret: no rotation, no `iss`/`aud`, 5 s of leeway.
    pub fn with_secret(secret: SecretString) -> Self {
        Self {
            secret,
            previous_secret: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(5),
        }
    }
}

/// Checks bearer tokens: HS256 only, `exp` required, `nbf` honoured, `sub` a
/// user id, `iss`/`aud` when configured; the previous secret too during a rotation.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Vec<DecodingKey>,
    validation: Validation,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier").finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for tokens signed with `secret` only, with the default settings.
    pub fn new(secret: &SecretString) -> Self {
        Self::with_settings(&TokenSettings::with_secret(secret.clone()))
    }

    /// A verifier for `settings`.
    pub fn with_settings(settings: &TokenSettings) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        let mut required = vec!["exp", "sub"];
        validation.validate_nbf = true;
        validation.leeway = settings.leeway.as_secs();
        match &settings.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &settings.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let keys = std::iter::once(&settings.secret)
            .chain(&settings.previous_secret)
            .map(|secret| DecodingKey::from_secret(secret.expose_secret().as_bytes()))
            .collect();
        Self { keys, validation }
    }

    /// The user a token speaks for, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        self.verify_caller(token)?.user()
    }

    /// Who a token speaks for (a user, or a service with the admin scope), or why it is refused.
    pub fn verify_caller(&self, token: &str) -> Result<Caller, ApiError> {
        if names_critical_extensions(token) {
            // RFC 7515 4.1.11: a token whose `crit` names extensions the
            // recipient does not understand must be refused; this server understands none.
            return Err(ApiError::Unauthorized(
                "the token's header lists critical extensions (crit) this server does not support",
            ));
        }
        let mut outcome = Err(ErrorKind::InvalidSignature.into());
        for key in &self.keys {
            outcome = jsonwebtoken::decode::<Claims>(token, key, &self.validation);
            // Only a signature mismatch may be the previous secret's token.
            match &outcome {
                Err(error) if *error.kind() == ErrorKind::InvalidSignature => {}
                _ => break,
            }
        }
        let data = outcome.map_err(|error: jsonwebtoken::errors::Error| {
            ApiError::Unauthorized(match error.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                ErrorKind::InvalidSignature => "the token's signature does not match",
                ErrorKind::InvalidAlgorithm => "the token must be signed with HS256",
                ErrorKind::InvalidIssuer => "the token's issuer (iss) is not accepted",
                ErrorKind::InvalidAudience => "the token's audience (aud) is not accepted",
                ErrorKind::MissingRequiredClaim(_) => {
                    "the token lacks a required claim (exp, sub, and iss/aud when configured)"
                }
                _ => "the token is malformed",
            })
        })?;
        if data.claims.sub.is_empty() {
            return Err(ApiError::Unauthorized("the token's sub claim is empty"));
        }
        Ok(Caller {
            admin: data
                .claims
                .scope
                .as_deref()
                .is_some_and(|scope| scope.split(' ').any(|scope| scope == ADMIN_SCOPE)),
            subject: data.claims.sub,
        })
    }

    /// The user a request's `Authorization: Bearer` header speaks for.
    pub fn verify_request(&self, request: &HttpRequest) -> Result<UserId, ApiError> {
        self.verify_request_caller(request)?.user()
    }

    /// Who a request's `Authorization: Bearer` header speaks for.
    pub fn verify_request_caller(&self, request: &HttpRequest) -> Result<Caller, ApiError> {
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
        self.verify_caller(token)
    }
}

/// Whether the token's header carries a `crit` parameter.
///
/// A header that cannot be read is left to the signature check, which refuses it.
fn names_critical_extensions(token: &str) -> bool {
    use base64::Engine;
    let Some((header, _)) = token.split_once('.') else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .is_some_and(|header| header.get("crit").is_some())
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user claim: a user id, or a service's name.
    pub subject: String,
    /// Whether the token carries the `presence:admin` scope (a service token).
    pub admin: bool,
}

impl Caller {
    /// The user this caller is, for the user routes: the subject must be a UUID.
    pub fn user(&self) -> Result<UserId, ApiError> {
        UserId::parse(&self.subject)
            .map_err(|_| ApiError::Unauthorized("the token's sub claim must be a user id (a UUID)"))
    }
}

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
/// makes it a service token; its subject may then be any name).
pub fn issue_scoped_token(
    settings: &TokenSettings,
    subject: &str,
    scope: Option<&str>,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = Claims {
        sub: subject.to_owned(),
        exp: jsonwebtoken::get_current_timestamp().saturating_add(ttl.as_secs()),
        scope: scope.map(str::to_owned),
        iss: settings.issuer.clone(),
        aud: settings.audience.clone(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(settings.secret.expose_secret().as_bytes()),
    )
}

/// The service calling an `/api/admin/...` route: `401` without a valid
/// token, `403 FORBIDDEN` with a token that lacks the `presence:admin` scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service(pub String);

impl FromRequest for Service {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let verified = match request.app_data::<web::Data<TokenVerifier>>() {
            Some(verifier) => verifier.verify_request_caller(request).and_then(|caller| {
                if caller.admin {
                    Ok(Service(caller.subject))
                } else {
                    Err(ApiError::Forbidden)
                }
            }),
            None => Err(ApiError::Internal("no token verifier configured".into())),
        };
        ready(verified)
    }
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
    fn a_token_with_critical_extensions_is_refused() {
        use base64::Engine;
        let user = UserId::parse("0b6c3f1e-8f4a-4e55-9a2b-1c2d3e4f5a6b").expect("uuid");
        let key = EncodingKey::from_secret(b"s3cret");
        let claims = Claims {
            sub: user.to_string(),
            exp: jsonwebtoken::get_current_timestamp() + 60,
            scope: None,
            iss: None,
            aud: None,
        };
        let valid =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("signs");
        let verifier = TokenVerifier::new(&secret("s3cret"));
        assert_eq!(verifier.verify(&valid).expect("valid"), user);

        // The same claims under a header with `crit`, signed properly.
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = engine.encode(r#"{"alg":"HS256","typ":"JWT","crit":["exp"],"exp":1}"#);
        let payload = valid.split('.').nth(1).expect("a payload");
        let signing_input = format!("{header}.{payload}");
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256)
                .expect("signs");
        let error = verifier
            .verify(&format!("{signing_input}.{signature}"))
            .expect_err("crit refused");
        assert_eq!(error.code(), "UNAUTHORIZED");
        assert!(error.to_string().contains("crit"), "{error}");
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

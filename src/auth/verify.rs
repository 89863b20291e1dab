//! Verifying bearer tokens: keys by family, claims, the cache of verified tokens.

use std::fmt;
use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::header;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use jsonwebtoken::{AlgorithmFamily, TokenData};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::{ADMIN_SCOPE, ClaimRules, Jwks, PublicKey, TokenSettings, VerificationKeys};
use crate::domain::{RoomGrants, UserId};
use crate::error::ApiError;
use crate::statuses::sharded::ShardedMap;

/// How many verified tokens the verifier remembers (about 32 MiB of tokens).
const VERIFIED_TOKENS: u64 = 128 * 1024;

/// Why a token was not verified.
pub(super) enum Unverified {
    /// Refused, for the reason given.
    Refused(&'static str),
    /// It names a `kid` that no key held has; a JWKS re-fetch may find it.
    UnknownKid,
}

impl From<&'static str> for Unverified {
    fn from(reason: &'static str) -> Self {
        Self::Refused(reason)
    }
}

impl From<Unverified> for ApiError {
    fn from(unverified: Unverified) -> Self {
        ApiError::Unauthorized(match unverified {
            Unverified::Refused(reason) => reason,
            Unverified::UnknownKid => "the token's key id (kid) names no key this server holds",
        })
    }
}

/// A verified token's caller, remembered until the token expires.
#[derive(Debug, Clone)]
struct Verified {
    caller: Caller,
    /// Unix seconds after which the token is refused (`exp` plus the leeway).
    until: u64,
}

/// Checks bearer tokens: HS256 against the secrets, RS/ES/EdDSA against the
/// public keys of their own family (chosen by `kid` and `alg`); `exp`
/// required, `nbf` honoured, `iss`/`aud` when configured, the user claim
/// present. Tokens it verified are remembered until they expire, so a poll
/// with the same token does not redo the signature check. (A map whose
/// lookup is one read lock: an LRU cache's bookkeeping on every request cost
/// more than the lookup, see `statuses/sharded.rs`.)
#[derive(Clone)]
pub struct TokenVerifier {
    secrets: Vec<DecodingKey>,
    public_keys: Vec<PublicKey>,
    pub(super) jwks: Option<Arc<Jwks>>,
    /// One validation per algorithm family: a key only checks its own family.
    hmac: Validation,
    public: [(AlgorithmFamily, Validation); 3],
    user_claim: Arc<str>,
    rooms_claim: Arc<str>,
    leeway: u64,
    verified: Arc<ShardedMap<String, Verified>>,
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

    /// A verifier for HS256 tokens signed as `settings` say.
    pub fn with_settings(settings: &TokenSettings) -> Self {
        let keys = VerificationKeys {
            secrets: std::iter::once(&settings.secret)
                .chain(&settings.previous_secret)
                .cloned()
                .collect(),
            ..VerificationKeys::default()
        };
        Self::with_keys(&keys, &settings.claims)
    }

    /// A verifier for tokens signed with any of `keys`, checked by `rules`.
    pub fn with_keys(keys: &VerificationKeys, rules: &ClaimRules) -> Self {
        let validation = |algorithms: &[Algorithm]| {
            let mut validation = Validation::new(algorithms[0]);
            validation.algorithms = algorithms.to_vec();
            let mut required = vec!["exp"];
            validation.validate_nbf = true;
            validation.leeway = rules.leeway.as_secs();
            match &rules.issuer {
                Some(issuer) => {
                    validation.set_issuer(&[issuer]);
                    required.push("iss");
                }
                None => validation.iss = None,
            }
            match &rules.audience {
                Some(audience) => {
                    validation.set_audience(&[audience]);
                    required.push("aud");
                }
                None => validation.validate_aud = false,
            }
            validation.set_required_spec_claims(&required);
            validation
        };
        let public = [
            AlgorithmFamily::Rsa,
            AlgorithmFamily::Ec,
            AlgorithmFamily::Ed,
        ]
        .map(|family| (family, validation(family.algorithms())));
        Self {
            secrets: keys
                .secrets
                .iter()
                .map(|secret| DecodingKey::from_secret(secret.expose_secret().as_bytes()))
                .collect(),
            public_keys: keys.public_keys.clone(),
            jwks: keys.jwks.clone(),
            hmac: validation(&[Algorithm::HS256]),
            public,
            user_claim: rules.user_claim.as_str().into(),
            rooms_claim: rules.rooms_claim.as_str().into(),
            leeway: rules.leeway.as_secs(),
            verified: Arc::new(ShardedMap::new(VERIFIED_TOKENS)),
        }
    }

    /// The user a token speaks for, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        self.verify_caller(token)?.user()
    }

    /// Who a token speaks for (a user, or a service with the admin scope), or
    /// why it is refused; with the keys held now, fetching none.
    pub fn verify_caller(&self, token: &str) -> Result<Caller, ApiError> {
        Ok(self.check(token)?)
    }

    /// Who a token speaks for; a token naming a `kid` not held first
    /// re-fetches the JWKS document (at most once per 30 s).
    pub async fn verify_caller_fetching(&self, token: &str) -> Result<Caller, ApiError> {
        match self.check(token) {
            Err(Unverified::UnknownKid) => match &self.jwks {
                Some(jwks) => {
                    jwks.refresh_for_unknown_kid().await;
                    Ok(self.check(token)?)
                }
                None => Err(Unverified::UnknownKid.into()),
            },
            checked => Ok(checked?),
        }
    }

    /// The token's caller, from the remembered tokens or by checking it.
    pub(super) fn check(&self, token: &str) -> Result<Caller, Unverified> {
        if let Some(verified) = self.verified.get(token)
            && jsonwebtoken::get_current_timestamp() <= verified.until
        {
            return Ok(verified.caller);
        }
        let verified = self.check_signature_and_claims(token)?;
        let caller = verified.caller.clone();
        self.verified.update(token.to_owned(), |_| Some(verified));
        Ok(caller)
    }

    fn check_signature_and_claims(&self, token: &str) -> Result<Verified, Unverified> {
        if names_critical_extensions(token) {
            // RFC 7515 4.1.11: a token whose `crit` names extensions the
            // recipient does not understand must be refused; this server understands none.
            return Err(
                "the token's header lists critical extensions (crit) this server does not support"
                    .into(),
            );
        }
        // `alg: none` and unknown algorithms fail here, as a malformed header.
        let header = jsonwebtoken::decode_header(token).map_err(|error| refusal(&error))?;
        let data = match header.alg.family() {
            AlgorithmFamily::Hmac => self.check_with_secrets(token)?,
            family => self.check_with_public_keys(token, &header, family)?,
        };
        self.caller_of(data)
    }

    /// HS256 against the current secret, then the previous one.
    fn check_with_secrets(&self, token: &str) -> Result<TokenData<Map<String, Value>>, Unverified> {
        if self.secrets.is_empty() {
            return Err(
                "the token is signed with HS256, and this server has no HS256 secret".into(),
            );
        }
        let secrets: Vec<&DecodingKey> = self.secrets.iter().collect();
        first_that_verifies(token, &secrets, &self.hmac)
    }

    /// RS/ES/EdDSA against the public keys that accept the token's header:
    /// the JWKS keys under its `kid` (any, without one), or the PEM keys.
    fn check_with_public_keys(
        &self,
        token: &str,
        header: &Header,
        family: AlgorithmFamily,
    ) -> Result<TokenData<Map<String, Value>>, Unverified> {
        let validation = self
            .public
            .iter()
            .find_map(|(of, validation)| (*of == family).then_some(validation))
            .ok_or("the token's algorithm is not supported")?;
        let published = self
            .jwks
            .as_ref()
            .map(|jwks| jwks.keys())
            .unwrap_or_default();
        // A `kid` the JWKS publishes selects that key alone; otherwise the
        // PEM keys (which have no `kid`) are tried too.
        let kid_published = header
            .kid
            .as_deref()
            .is_some_and(|kid| published.iter().any(|key| key.has_kid(kid)));
        let candidates: Vec<&DecodingKey> = published
            .iter()
            .chain(self.public_keys.iter().filter(|_| !kid_published))
            .filter(|key| key.accepts(header))
            .map(PublicKey::decoding_key)
            .collect();
        if candidates.is_empty() {
            return Err(match (&header.kid, &self.jwks) {
                _ if kid_published => {
                    "the key the token's kid names is not for the token's algorithm".into()
                }
                (Some(_), Some(_)) => Unverified::UnknownKid,
                _ => "the token's algorithm has no configured key".into(),
            });
        }
        first_that_verifies(token, &candidates, validation)
    }

    /// The caller a verified token's claims name.
    fn caller_of(&self, data: TokenData<Map<String, Value>>) -> Result<Verified, Unverified> {
        let claims = data.claims;
        let subject = match claims.get(&*self.user_claim) {
            Some(Value::String(subject)) if !subject.is_empty() => subject.clone(),
            Some(Value::String(_)) => return Err("the token's user claim is empty".into()),
            Some(_) => return Err("the token's user claim is not a string".into()),
            None => {
                return Err(
                    "the token lacks the user claim (sub, or PRESENCE_JWT_USER_CLAIM)".into(),
                );
            }
        };
        let admin = match claims.get("scope") {
            Some(Value::String(scope)) => scope.split(' ').any(|scope| scope == ADMIN_SCOPE),
            Some(Value::Array(scopes)) => scopes.iter().any(|scope| scope == ADMIN_SCOPE),
            _ => false,
        };
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or("the token's exp is not a number of seconds")?;
        let rooms = Arc::new(RoomGrants::from_claim(claims.get(&*self.rooms_claim)));
        Ok(Verified {
            caller: Caller {
                subject,
                admin,
                rooms,
            },
            until: exp.saturating_add(self.leeway),
        })
    }

    /// The user a request's `Authorization: Bearer` header speaks for.
    pub fn verify_request(&self, request: &HttpRequest) -> Result<UserId, ApiError> {
        self.verify_request_caller(request)?.user()
    }

    /// Who a request's `Authorization: Bearer` header speaks for (keys held now).
    pub fn verify_request_caller(&self, request: &HttpRequest) -> Result<Caller, ApiError> {
        self.verify_caller(bearer_token(request)?)
    }
}

/// The token of a request's `Authorization: Bearer` header.
pub(super) fn bearer_token(request: &HttpRequest) -> Result<&str, ApiError> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "an Authorization: Bearer <token> header is required",
        ))?;
    value
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must read Bearer <token>",
        ))
}

/// The first key's verdict that is not a signature mismatch (a mismatch may
/// be another key's token), or the mismatch.
fn first_that_verifies(
    token: &str,
    keys: &[&DecodingKey],
    validation: &Validation,
) -> Result<TokenData<Map<String, Value>>, Unverified> {
    let mut outcome = Err(ErrorKind::InvalidSignature.into());
    for key in keys {
        outcome = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation);
        match &outcome {
            Err(error) if *error.kind() == ErrorKind::InvalidSignature => {}
            _ => break,
        }
    }
    outcome.map_err(|error| refusal(&error))
}

/// Why jsonwebtoken refused a token, in the words of a `401`.
fn refusal(error: &jsonwebtoken::errors::Error) -> Unverified {
    Unverified::Refused(match error.kind() {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
        ErrorKind::InvalidSignature => "the token's signature does not match",
        ErrorKind::InvalidAlgorithm => "the token's algorithm does not match its key",
        ErrorKind::InvalidIssuer => "the token's issuer (iss) is not accepted",
        ErrorKind::InvalidAudience => "the token's audience (aud) is not accepted",
        ErrorKind::MissingRequiredClaim(_) => {
            "the token lacks a required claim (exp, and iss/aud when configured)"
        }
        _ => "the token is malformed",
    })
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
    /// The rooms the token grants (the rooms claim).
    pub rooms: Arc<RoomGrants>,
}

impl Caller {
    /// The user this caller is, for the user routes: the subject must be a UUID.
    pub fn user(&self) -> Result<UserId, ApiError> {
        UserId::parse(&self.subject)
            .map_err(|_| ApiError::Unauthorized("the token's sub claim must be a user id (a UUID)"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    use super::*;
    use crate::auth::issue_token;

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
        let claims = serde_json::json!({
            "sub": user.to_string(),
            "exp": jsonwebtoken::get_current_timestamp() + 60,
        });
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
    fn a_verified_token_is_remembered_until_it_expires_and_a_refused_one_never() {
        let user = UserId::parse("0b6c3f1e-8f4a-4e55-9a2b-1c2d3e4f5a6b").expect("uuid");
        let verifier = TokenVerifier::new(&secret("s3cret"));
        let token = issue_token(&secret("s3cret"), user, Duration::from_secs(60)).expect("signs");
        verifier.verify(&token).expect("valid");
        let remembered = verifier.verified.get(token.as_str()).expect("remembered");
        let kept = remembered
            .until
            .saturating_sub(jsonwebtoken::get_current_timestamp());
        // 60 s of validity plus the default 5 s of leeway, give or take the second ticking over.
        assert!((63..=65).contains(&kept), "{kept} s");
        assert_eq!(verifier.verify(&token).expect("still valid"), user);

        // Past its time, a remembered entry is not used: the token is checked again.
        let other = UserId::parse("5d4a1c52-3f0e-4b8e-9a57-3c1b2d7e8f90").expect("uuid");
        verifier.verified.update(token.clone(), |held| {
            held.map(|held| Verified {
                caller: Caller {
                    subject: other.to_string(),
                    ..held.caller.clone()
                },
                until: jsonwebtoken::get_current_timestamp() - 1,
            })
        });
        assert_eq!(verifier.verify(&token).expect("checked again"), user);

        let forged = issue_token(&secret("other"), user, Duration::from_secs(60)).expect("signs");
        verifier.verify(&forged).expect_err("refused");
        assert!(verifier.verified.get(&forged).is_none());
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

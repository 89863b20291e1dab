//! Bearer tokens: verifying the caller (the viewer) and issuing tokens for scripts.

mod extract;
mod issue;
mod jwks;
mod keys;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

pub use extract::{RoomCaller, Service, Viewer};
pub use issue::{issue_room_token, issue_scoped_token, issue_token, issue_token_with};
pub use jwks::{Jwks, JwksError, UNKNOWN_KID_REFETCH_EVERY};
pub use keys::PublicKey;
pub use verify::{Caller, TokenVerifier};

/// The scope that makes a token a service token, for `/api/admin/...`.
pub const ADMIN_SCOPE: &str = "presence:admin";

/// The secret `serve --dev` and `token --dev` use: public, so never for production.
pub const DEV_JWT_SECRET: &str = "presence-development-secret-never-use-in-production";

/// How a token's claims are checked, whatever signed it.
#[derive(Debug, Clone)]
pub struct ClaimRules {
    /// The `iss` tokens must carry, when set.
    pub issuer: Option<String>,
    /// The `aud` tokens must carry, when set.
    pub audience: Option<String>,
    /// Clock difference tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// The claim that holds the user id (`sub` unless configured).
    pub user_claim: String,
    /// The claim that lists the rooms a user may join and read (`rooms` unless configured).
    pub rooms_claim: String,
}

impl Default for ClaimRules {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(5),
            user_claim: "sub".to_owned(),
            rooms_claim: "rooms".to_owned(),
        }
    }
}

/// The HS256 secret tokens are signed with, and the rules they are checked by.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The signing secret.
    pub secret: SecretString,
    /// A secret still accepted during a rotation.
    pub previous_secret: Option<SecretString>,
    /// How claims are checked (and which ones issued tokens carry).
    pub claims: ClaimRules,
}

impl TokenSettings {
    /// Settings with only a secret: no rotation, no `iss`/`aud`, 5 s of leeway, `sub`.
    pub fn with_secret(secret: SecretString) -> Self {
        Self {
            secret,
            previous_secret: None,
            claims: ClaimRules::default(),
        }
    }
}

/// The keys tokens are checked against: HS256 secrets, public keys from PEM
/// files, and a JWKS document.
#[derive(Debug, Clone, Default)]
pub struct VerificationKeys {
    /// HS256 secrets: the current one, and the previous one during a rotation.
    pub secrets: Vec<SecretString>,
    /// Public keys from PEM files.
    pub public_keys: Vec<PublicKey>,
    /// The identity provider's JWKS document.
    pub jwks: Option<Arc<Jwks>>,
}

impl VerificationKeys {
    /// Whether any key is configured at all.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.public_keys.is_empty() && self.jwks.is_none()
    }
}

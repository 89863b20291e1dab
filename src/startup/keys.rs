//! The keys tokens are checked with: secrets, public key files, a JWKS document.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Jwks, PublicKey, TokenVerifier, VerificationKeys};
use crate::config::Config;

use super::StartupError;

/// When to try the JWKS document again after it could not be fetched at start-up.
const JWKS_RETRY_AFTER_FAILED_START: Duration = Duration::from_secs(30);

/// The token verifier for the configured keys, and the JWKS document to
/// keep refreshing (with the delay before its first refresh), if one is configured.
///
/// A JWKS document that cannot be fetched stops start-up only when no other
/// key is configured; otherwise the server starts and keeps trying.
pub(super) async fn token_verifier(
    config: &Config,
) -> Result<(TokenVerifier, Option<(Arc<Jwks>, Duration)>), StartupError> {
    let mut keys = VerificationKeys {
        secrets: config
            .jwt_secret
            .iter()
            .chain(
                config
                    .jwt_secret
                    .as_ref()
                    .and(config.jwt_secret_previous.as_ref()),
            )
            .cloned()
            .collect(),
        ..VerificationKeys::default()
    };
    for path in &config.jwt_public_keys {
        let failed = |reason: String| StartupError::PublicKeyFile {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|error| failed(error.to_string()))?;
        let key = PublicKey::from_pem(&pem).map_err(|reason| failed(reason.to_owned()))?;
        keys.public_keys.push(key);
    }
    let mut refreshing = None;
    if let Some(url) = &config.jwks_url {
        let jwks = Arc::new(Jwks::new(url.clone()));
        let first_refresh = match jwks.refresh().await {
            Ok(next) => next,
            Err(error) if !keys.is_empty() => {
                tracing::warn!(error = %error, "could not fetch the JWKS document at start-up; serving with the other keys and retrying");
                JWKS_RETRY_AFTER_FAILED_START
            }
            Err(error) => return Err(StartupError::Jwks(error)),
        };
        keys.jwks = Some(jwks.clone());
        refreshing = Some((jwks, first_refresh));
    }
    if keys.is_empty() {
        return Err(StartupError::NoTokenKeys);
    }
    Ok((
        TokenVerifier::with_keys(&keys, &config.claim_rules()),
        refreshing,
    ))
}

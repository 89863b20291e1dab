//! Public keys for RS256, ES256 and EdDSA tokens, from PEM files and JWKS documents.

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use jsonwebtoken::{Header, errors::Error as JwtError};

/// A public key tokens may be verified with.
#[derive(Clone)]
pub struct PublicKey {
    /// The key id (`kid`) a JWKS publishes it under; `None` for a PEM file.
    kid: Option<String>,
    /// The one algorithm its publisher says it is for (a JWK's `alg`), if any.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.key.family())
            .finish()
    }
}

impl PublicKey {
    /// A key from a PEM public key: RSA, EC (P-256 or P-384) or Ed25519; or
    /// why the text is not one. A private key is refused: the server must never hold one.
    pub fn from_pem(pem: &[u8]) -> Result<Self, &'static str> {
        if pem.windows(11).any(|label| label == b"PRIVATE KEY") {
            return Err(
                "a private key: give the server the public key only (openssl pkey -pubout)",
            );
        }
        let key = DecodingKey::from_rsa_pem(pem)
            .or_else(|_| DecodingKey::from_ec_pem(pem))
            .or_else(|_| DecodingKey::from_ed_pem(pem))
            .map_err(|_: JwtError| "not a PEM public key (RSA, EC P-256/P-384 or Ed25519)")?;
        Ok(Self {
            kid: None,
            alg: None,
            key,
        })
    }

    /// Whether a token with this header may be checked with this key: the
    /// same algorithm family (never a public key as an HMAC secret), the
    /// key's own `alg` if it names one, and its `kid` if both have one.
    pub fn accepts(&self, header: &Header) -> bool {
        self.key.family() == header.alg.family()
            && self.alg.is_none_or(|alg| alg == header.alg)
            && match (&self.kid, &header.kid) {
                (Some(ours), Some(theirs)) => ours == theirs,
                _ => true,
            }
    }

    /// Whether this key is published under `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.kid.as_deref() == Some(kid)
    }

    /// The key to verify with.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

/// The signing keys of a JWKS document (RFC 7517).
///
/// Keys this server cannot use are left out rather than refused, as identity
/// providers publish encryption keys and newer algorithms beside their
/// signing keys: symmetric (`oct`) keys (a public document holds no secret),
/// keys marked `"use": "enc"`, and keys of other types or algorithms.
pub fn signing_keys(document: &[u8]) -> Result<Vec<PublicKey>, serde_json::Error> {
    let set: JwkSet = serde_json::from_slice(document)?;
    Ok(set
        .keys
        .iter()
        .filter(|jwk| jwk.common.public_key_use != Some(PublicKeyUse::Encryption))
        .filter(|jwk| {
            matches!(
                jwk.algorithm,
                AlgorithmParameters::RSA(_)
                    | AlgorithmParameters::EllipticCurve(_)
                    | AlgorithmParameters::OctetKeyPair(_)
            )
        })
        .filter_map(|jwk| {
            let alg = match jwk.common.key_algorithm {
                Some(alg) => Some(Algorithm::try_from(alg).ok()?),
                None => None,
            };
            Some(PublicKey {
                kid: jwk.common.key_id.clone(),
                alg,
                key: DecodingKey::from_jwk(jwk).ok()?,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(alg: Algorithm, kid: Option<&str>) -> Header {
        Header {
            kid: kid.map(str::to_owned),
            ..Header::new(alg)
        }
    }

    #[test]
    fn a_jwks_document_yields_its_signing_keys_only() {
        let document = br#"{"keys": [
            {"kty": "RSA", "kid": "rsa", "alg": "RS256", "use": "sig",
             "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
             "e": "AQAB"},
            {"kty": "RSA", "kid": "encryption", "use": "enc",
             "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
             "e": "AQAB"},
            {"kty": "oct", "kid": "secret", "alg": "HS256", "k": "c2VjcmV0"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}"#;
        let keys = signing_keys(document).expect("a JWKS document");
        let kids: Vec<_> = keys.iter().filter_map(|key| key.kid.as_deref()).collect();
        assert_eq!(kids, ["rsa", "ed"], "no encryption key, no symmetric key");
    }

    #[test]
    fn a_key_accepts_only_its_own_family_algorithm_and_kid() {
        let document = br#"{"keys": [
            {"kty": "OKP", "kid": "ed", "alg": "EdDSA", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}"#;
        let key = signing_keys(document).expect("a JWKS document").remove(0);
        assert!(key.accepts(&header(Algorithm::EdDSA, Some("ed"))));
        assert!(key.accepts(&header(Algorithm::EdDSA, None)));
        assert!(!key.accepts(&header(Algorithm::EdDSA, Some("other"))));
        assert!(!key.accepts(&header(Algorithm::HS256, Some("ed"))));
        assert!(!key.accepts(&header(Algorithm::ES256, Some("ed"))));
    }
}

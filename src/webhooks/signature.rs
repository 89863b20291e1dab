//! Standard Webhooks signatures: `v1,` and the base64 HMAC-SHA256 of
//! `{id}.{timestamp}.{body}` under the secret's key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;

/// A webhook secret: `whsec_` and the base64 of its key, as Standard Webhooks writes it.
#[derive(Clone)]
pub struct WebhookSecret {
    key: hmac::Key,
}

/// Why a secret is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Not `whsec_` and base64.
    #[error("expected whsec_ followed by the base64 of a key of 24 to 64 bytes")]
    Malformed,
}

impl WebhookSecret {
    /// Reads `whsec_<base64>`; the key must hold 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let key = text
            .trim()
            .strip_prefix("whsec_")
            .and_then(|encoded| STANDARD.decode(encoded).ok())
            .filter(|key| (24..=64).contains(&key.len()))
            .ok_or(SecretError::Malformed)?;
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        })
    }

    /// The `webhook-signature` header of a message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let signed = hmac::sign(&self.key, format!("{id}.{timestamp}.{body}").as_bytes());
        format!("v1,{}", STANDARD.encode(signed.as_ref()))
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("WebhookSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_example_of_the_standard_as_it_says() {
        // The example the Standard Webhooks reference libraries test against.
        let secret =
            WebhookSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").expect("a secret");
        assert_eq!(
            secret.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                r#"{"email":"test@example.com","username":"test_user"}"#,
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn refuses_secrets_that_are_not_whsec_and_base64() {
        for text in [
            "",
            "whsec_",
            "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "whsec_!!!",
            "whsec_AAAA",
        ] {
            assert_eq!(
                WebhookSecret::parse(text).err(),
                Some(SecretError::Malformed),
                "{text}"
            );
        }
    }
}

use std::fmt;

/// A client instance of one user: 1 to 64 characters of `[A-Za-z0-9._:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceId(String);

impl DeviceId {
    /// The longest device id accepted, in characters.
    pub const MAX_LEN: usize = 64;

    /// Parses a device id from a body or a path.
    pub fn parse(input: &str) -> Result<Self, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        if input.is_empty() || input.len() > Self::MAX_LEN || !input.chars().all(allowed) {
            return Err(format!(
                "deviceId must be 1 to {} characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'",
                Self::MAX_LEN
            ));
        }
        Ok(Self(input.to_owned()))
    }

    /// The id a ping without `deviceId` stands for.
    pub fn default_device() -> Self {
        Self("default".to_owned())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_of_the_allowed_characters_are_accepted() {
        for input in ["default", "a", "web-1", "tab:3f2a.9_x", &"x".repeat(64)] {
            assert_eq!(DeviceId::parse(input).expect(input).as_str(), input);
        }
    }

    #[test]
    fn empty_long_or_odd_ids_are_rejected() {
        for input in [
            "",
            &"x".repeat(65),
            "has space",
            "slash/",
            "é",
            "tab\t",
            "semi;colon",
            "ﬁ",
        ] {
            assert!(
                DeviceId::parse(input).is_err(),
                "{input:?} should be rejected"
            );
        }
    }
}

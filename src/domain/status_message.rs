/// A custom status message: 1 to 140 Unicode scalar values, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMessage(String);

impl StatusMessage {
    /// The longest message accepted, in Unicode scalar values.
    pub const MAX_CHARS: usize = 140;

    /// Parses the `statusMessage` field of a ping; `""` means "clear", so it gives `None`.
    pub fn parse(input: &str) -> Result<Option<Self>, String> {
        if input.is_empty() {
            return Ok(None);
        }
        if input.chars().count() > Self::MAX_CHARS {
            return Err(format!(
                "statusMessage must be at most {} characters",
                Self::MAX_CHARS
            ));
        }
        if input.chars().any(char::is_control) {
            return Err("statusMessage must not contain control characters".to_owned());
        }
        Ok(Some(Self(input.to_owned())))
    }

    /// The message as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_characters_not_bytes() {
        let emoji = "🙂".repeat(140);
        assert_eq!(
            StatusMessage::parse(&emoji)
                .expect("140 emoji")
                .expect("set")
                .as_str(),
            emoji
        );
        assert!(StatusMessage::parse(&"🙂".repeat(141)).is_err());
        assert!(StatusMessage::parse(&"a".repeat(140)).is_ok());
        assert!(StatusMessage::parse(&"a".repeat(141)).is_err());
    }

    #[test]
    fn the_empty_string_clears_the_message() {
        assert_eq!(StatusMessage::parse(""), Ok(None));
    }

    #[test]
    fn control_characters_are_rejected() {
        for input in [
            "line\nbreak",
            "tab\there",
            "nul\0",
            "bell\u{7}",
            "del\u{7f}",
            "c1\u{85}",
        ] {
            assert!(
                StatusMessage::parse(input).is_err(),
                "{input:?} should be rejected"
            );
        }
    }
}

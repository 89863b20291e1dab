/// A custom status message: 1 to 140 Unicode scalar values, no control characters
/// and no invisible formatting characters.
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
        if input.chars().any(is_invisible_format) {
            return Err(
                "statusMessage must not contain bidirectional overrides, zero-width or separator characters"
                    .to_owned(),
            );
        }
        Ok(Some(Self(input.to_owned())))
    }

    /// The message as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Characters that reorder or hide text without showing themselves: they let a
/// message pose as something else in other people's lists.
fn is_invisible_format(character: char) -> bool {
    matches!(
        character,
        '\u{061C}'                 // Arabic letter mark
            | '\u{200B}'..='\u{200F}' // zero-width space, joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}' // line and paragraph separators, bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{FEFF}' // zero-width no-break space
    )
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

    #[test]
    fn bidi_overrides_and_zero_width_characters_are_rejected() {
        for input in [
            "evil\u{202E}gnp.exe",
            "a\u{2066}b",
            "a\u{2069}",
            "zero\u{200B}width",
            "\u{200F}rtl",
            "\u{FEFF}bom",
            "a\u{2028}b",
        ] {
            assert!(
                StatusMessage::parse(input).is_err(),
                "{input:?} should be rejected"
            );
        }
        assert!(StatusMessage::parse("شكرا 🙂 merci").is_ok());
    }
}

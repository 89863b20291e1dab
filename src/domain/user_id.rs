use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A user's id: a UUID, shown in its hyphenated lowercase form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(Uuid);

impl UserId {
    /// Parses a user id as clients send it, in a path, a query string or a body.
    pub fn parse(input: &str) -> Result<Self, String> {
        Uuid::try_parse(input)
            .map(Self)
            .map_err(|_| format!("{input:?} is not a user id (a UUID was expected)"))
    }

    /// The UUID inside, for SQL parameters.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for UserId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hyphenated_uuid_is_accepted_and_printed_lowercase() {
        let id = UserId::parse("0B6C3F1E-8F4A-4E55-9A2B-1C2D3E4F5A6B").expect("valid uuid");
        assert_eq!(id.to_string(), "0b6c3f1e-8f4a-4e55-9a2b-1c2d3e4f5a6b");
    }

    #[test]
    fn anything_else_is_rejected_with_the_input_named() {
        for input in [
            "",
            "42",
            "not-a-uuid",
            "0b6c3f1e-8f4a-4e55-9a2b",
            "0b6c3f1e-8f4a-4e55-9a2b-1c2d3e4f5a6bb",
        ] {
            let error = UserId::parse(input).expect_err(input);
            assert!(
                error.contains(input),
                "message {error:?} should name {input:?}"
            );
        }
    }
}

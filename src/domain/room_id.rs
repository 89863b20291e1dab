use std::fmt;

/// A room: 1 to 128 characters of `[A-Za-z0-9._:-]`, told to the service by no one in advance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(String);

impl RoomId {
    /// The longest room id accepted, in characters.
    pub const MAX_LEN: usize = 128;

    /// Parses a room id from a path.
    pub fn parse(input: &str) -> Result<Self, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        if input.is_empty() || input.len() > Self::MAX_LEN || !input.chars().all(allowed) {
            return Err(format!(
                "a room id must be 1 to {} characters of A-Z, a-z, 0-9, '.', '_', ':' or '-'",
                Self::MAX_LEN
            ));
        }
        Ok(Self(input.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The rooms a token grants (the rooms claim): room ids, prefixes ending in
/// `*`, or `*` alone for every room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomGrants(Vec<String>);

impl RoomGrants {
    /// The grants of a claim's value: an array of strings (anything else in it
    /// is ignored); a claim of another type, or none, grants no room.
    pub fn from_claim(value: Option<&serde_json::Value>) -> Self {
        let Some(serde_json::Value::Array(items)) = value else {
            return Self::default();
        };
        Self(
            items
                .iter()
                .filter_map(serde_json::Value::as_str)
                .filter(|grant| !grant.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Grants for `grants` as written in a claim.
    pub fn of<I: IntoIterator<Item = S>, S: Into<String>>(grants: I) -> Self {
        Self(grants.into_iter().map(Into::into).collect())
    }

    /// Whether `room` is granted: named exactly, or starting with a prefix's text before its `*`.
    pub fn allows(&self, room: &RoomId) -> bool {
        self.0.iter().any(|grant| match grant.strip_suffix('*') {
            Some(prefix) => room.as_str().starts_with(prefix),
            None => grant == room.as_str(),
        })
    }

    /// The grants as written.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: &str) -> RoomId {
        RoomId::parse(id).expect(id)
    }

    #[test]
    fn ids_made_of_the_allowed_characters_are_accepted() {
        for input in ["a", "doc:42", "team:7:a.b_c-d", &"x".repeat(128)] {
            assert_eq!(room(input).as_str(), input);
        }
        for input in ["", "doc 42", "doc/42", "é", "a*", &"x".repeat(129)] {
            assert!(RoomId::parse(input).is_err(), "{input:?} is refused");
        }
    }

    #[test]
    fn a_prefix_grants_the_rooms_that_start_with_it_and_no_others() {
        let grants = RoomGrants::of(["team:7:*", "doc:42"]);
        assert!(grants.allows(&room("team:7:a")));
        assert!(grants.allows(&room("team:7:")));
        assert!(!grants.allows(&room("team:70:a")));
        assert!(!grants.allows(&room("team:7")));
        assert!(grants.allows(&room("doc:42")));
        assert!(!grants.allows(&room("doc:420")));
        assert!(!grants.allows(&room("doc:4")));
        assert!(RoomGrants::of(["*"]).allows(&room("anything")));
        assert!(!RoomGrants::default().allows(&room("doc:42")));
    }

    #[test]
    fn a_claim_that_is_not_a_list_grants_nothing() {
        let claim = serde_json::json!("doc:42");
        assert!(!RoomGrants::from_claim(Some(&claim)).allows(&room("doc:42")));
        let claim = serde_json::json!(["doc:42", 7, null, ""]);
        let grants = RoomGrants::from_claim(Some(&claim));
        assert_eq!(grants.as_slice(), ["doc:42"]);
        assert!(RoomGrants::from_claim(None).as_slice().is_empty());
    }
}

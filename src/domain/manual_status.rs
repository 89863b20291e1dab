use serde::{Deserialize, Serialize};

/// A status the user chose, overriding the one computed from activity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum ManualStatus {
    /// Away from the keyboard, whatever the activity says.
    Away,
    /// Do not disturb.
    Dnd,
}

impl ManualStatus {
    /// Parses the `manualStatus` field of a ping.
    pub fn parse(input: &str) -> Result<Self, String> {
        match input {
            "away" => Ok(Self::Away),
            "dnd" => Ok(Self::Dnd),
            other => Err(format!(
                "manualStatus must be \"away\", \"dnd\" or null, not {other:?}"
            )),
        }
    }

    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Away => "away",
            Self::Dnd => "dnd",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_away_and_dnd_can_be_set_by_hand() {
        assert_eq!(ManualStatus::parse("away"), Ok(ManualStatus::Away));
        assert_eq!(ManualStatus::parse("dnd"), Ok(ManualStatus::Dnd));
        for input in ["online", "idle", "offline", "DND", "", "busy"] {
            assert!(
                ManualStatus::parse(input).is_err(),
                "{input:?} should be rejected"
            );
        }
    }
}

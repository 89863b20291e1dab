use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Serialize, Serializer};

/// An instant as the API shows it: RFC 3339, UTC with a `Z`, millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<Utc>);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(instant: DateTime<Utc>) -> Self {
        Self(instant)
    }
}

/// Parses an RFC 3339 timestamp from a body, in any offset, to a UTC instant at millisecond precision.
pub fn parse_timestamp(field: &str, input: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(input)
        .map(|instant| instant.with_timezone(&Utc).trunc_subsecs(3))
        .map_err(|_| format!("{field} must be an RFC 3339 timestamp such as \"2026-11-23T10:15:00Z\", not {input:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_shown_in_utc_with_milliseconds() {
        let instant = parse_timestamp("at", "2026-11-23T11:15:02.120456+01:00").expect("valid");
        let json = serde_json::to_string(&Timestamp(instant)).expect("serializes");
        assert_eq!(json, "\"2026-11-23T10:15:02.120Z\"");
    }

    #[test]
    fn malformed_timestamps_name_the_field() {
        for input in [
            "",
            "tomorrow",
            "2026-11-23",
            "2026-11-23 10:15:00",
            "2026-13-01T00:00:00Z",
        ] {
            let error = parse_timestamp("manualStatusUntil", input).expect_err(input);
            assert!(error.starts_with("manualStatusUntil"), "{error}");
        }
    }
}

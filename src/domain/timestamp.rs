use std::hash::{Hash, Hasher};

use chrono::{DateTime, Datelike, SecondsFormat, SubsecRound, Timelike, Utc};
use serde::{Serialize, Serializer};

/// An instant as the API shows it: RFC 3339, UTC with a `Z`, millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<Utc>);

/// Hashed as it is shown, to the millisecond: instants one body shows alike hash alike.
impl Hash for Timestamp {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.timestamp_millis().hash(state);
    }
}

impl Timestamp {
    /// The instant as the API shows it, formatted on the stack (a poll shows
    /// several a user); `None` for a year outside 0000 to 9999, which chrono formats.
    fn text(&self) -> Option<[u8; 24]> {
        let year = self.0.year();
        if !(0..=9999).contains(&year) {
            return None;
        }
        let mut text = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, digits: usize, value: u32| {
            let mut value = value;
            for position in (at..at + digits).rev() {
                text[position] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year.unsigned_abs());
        put(5, 2, self.0.month());
        put(8, 2, self.0.day());
        put(11, 2, self.0.hour());
        put(14, 2, self.0.minute());
        put(17, 2, self.0.second());
        put(20, 3, self.0.timestamp_subsec_millis().min(999));
        Some(text)
    }

    /// The instant as the API shows it, by chrono: for a year outside 0000 to 9999.
    fn text_by_chrono(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Appends the instant as a JSON string, as `serde_json` writes it: the
    /// text has nothing to escape, so it is copied as it is.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        match self.text() {
            Some(text) => out.extend_from_slice(&text),
            None => out.extend_from_slice(self.text_by_chrono().as_bytes()),
        }
        out.push(b'"');
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.text() {
            Some(text) => serializer
                .serialize_str(std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?),
            None => serializer.serialize_str(&self.text_by_chrono()),
        }
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(instant: DateTime<Utc>) -> Self {
        Self(instant)
    }
}

/// Parses an RFC 3339 timestamp from a body, in any offset, to a UTC instant at millisecond precision.
///
/// The instant must fall before the year 10000 in UTC: RFC 3339 has four
/// digits for the year, so a later one could not be written back.
pub fn parse_timestamp(field: &str, input: &str) -> Result<DateTime<Utc>, String> {
    let instant = DateTime::parse_from_rfc3339(input)
        .map(|instant| instant.with_timezone(&Utc).trunc_subsecs(3))
        .map_err(|_| format!("{field} must be an RFC 3339 timestamp such as \"2026-11-23T10:15:00Z\", not {input:?}"))?;
    if !(0..=9999).contains(&instant.year()) {
        return Err(format!(
            "{field} must fall between the years 0000 and 9999 in UTC, not {input:?}"
        ));
    }
    Ok(instant)
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

    /// A status body's ETag hashes its values: instants shown alike must hash
    /// alike (else a `200` with an unchanged body), instants shown apart apart.
    #[test]
    fn instants_hash_as_they_are_shown() {
        let hash = |text: &str| {
            let instant: DateTime<Utc> = text.parse().expect("valid");
            let mut hasher = std::hash::DefaultHasher::new();
            Timestamp(instant).hash(&mut hasher);
            (
                serde_json::to_string(&Timestamp(instant)).expect("serializes"),
                hasher.finish(),
            )
        };
        let (shown, hashed) = hash("2026-11-23T10:15:02.120001Z");
        let (shown_alike, hashed_alike) = hash("2026-11-23T10:15:02.120999Z");
        let (shown_apart, hashed_apart) = hash("2026-11-23T10:15:02.121Z");
        assert_eq!(
            (shown.as_str(), hashed),
            (shown_alike.as_str(), hashed_alike)
        );
        assert_ne!(shown, shown_apart);
        assert_ne!(hashed, hashed_apart);
    }

    #[test]
    fn the_fast_format_matches_chrono_for_any_instant() {
        for millis in [
            0_i64,
            1,
            999,
            1_000,
            86_399_999,
            1_700_000_000_123,
            253_402_300_799_999,
            -1,
            // Outside the four-digit years: chrono's format, both ways.
            253_402_300_800_000,
            -62_200_000_000_000,
        ] {
            let instant = DateTime::from_timestamp_millis(millis).expect("in range");
            let json = serde_json::to_string(&Timestamp(instant)).expect("serializes");
            let expected = format!(
                "\"{}\"",
                instant.to_rfc3339_opts(SecondsFormat::Millis, true)
            );
            assert_eq!(json, expected, "{millis}");
            let mut written = Vec::new();
            Timestamp(instant).write_json(&mut written);
            assert_eq!(
                String::from_utf8(written).expect("UTF-8"),
                expected,
                "{millis}"
            );
        }
    }

    #[test]
    fn instants_past_the_year_9999_in_utc_are_refused() {
        for input in [
            "9999-12-31T23:59:59.999-23:59",
            "9999-12-31T23:00:00-01:00",
            "0000-01-01T00:00:00+00:01",
        ] {
            let error = parse_timestamp("manualStatusUntil", input).expect_err(input);
            assert!(error.contains("9999"), "{error}");
        }
        let last = parse_timestamp("at", "9999-12-31T23:59:59.999Z").expect("the last instant");
        assert_eq!(
            serde_json::to_string(&Timestamp(last)).expect("serializes"),
            "\"9999-12-31T23:59:59.999Z\""
        );
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

use serde::Deserialize;
use serde_json::Value;

use super::{DeviceId, Patch};
use crate::error::ApiError;

/// The longest compact encoding of a member's state, in bytes.
pub const MAX_STATE_BYTES: usize = 1024;

/// The body of `PUT /api/rooms/{roomId}/presence`: every field optional;
/// absent keeps the stored value, `null` clears it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = RoomPresenceRequest)]
pub struct RoomPingBody {
    /// Which of the caller's devices is in the room, as in `PUT /api/status` (default `"default"`).
    #[schema(
        required = false,
        nullable = false,
        pattern = "^[A-Za-z0-9._:-]{1,64}$"
    )]
    device_id: Option<String>,
    /// What the member does here, shown to the room: a JSON object of at most 1 KiB; `null` clears it.
    #[serde(default)]
    #[schema(value_type = Option<Object>, required = false, nullable)]
    state: Patch<Value>,
    /// `true`: typing now (shown for the typing TTL unless renewed); `false`: stopped.
    #[schema(required = false, nullable = false)]
    typing: Option<bool>,
}

/// A parsed room ping: join or renew, with the changes it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomPing {
    /// The caller's device in the room.
    pub device: DeviceId,
    /// The state to store: absent keeps it, `Null` clears it.
    pub state: Patch<Value>,
    /// Typing now (`Some(true)`), stopped (`Some(false)`), or as it was.
    pub typing: Option<bool>,
}

impl RoomPingBody {
    /// Checks every field: `400 INVALID_DEVICE_ID` or `INVALID_STATE` for the first at fault.
    pub fn parse(self) -> Result<RoomPing, ApiError> {
        let device = match self.device_id {
            Some(id) => DeviceId::parse(&id).map_err(ApiError::InvalidDeviceId)?,
            None => DeviceId::default_device(),
        };
        if let Patch::Value(state) = &self.state {
            if !state.is_object() {
                return Err(ApiError::InvalidState(
                    "state must be a JSON object (or null to clear it)".to_owned(),
                ));
            }
            if holds_nul(state) {
                // PostgreSQL's jsonb cannot store U+0000 in a string or a key.
                return Err(ApiError::InvalidState(
                    "state must not hold the character U+0000 in a string or a key".to_owned(),
                ));
            }
            let bytes = serde_json::to_vec(state)
                .map_err(|error| ApiError::InvalidState(error.to_string()))?
                .len();
            if bytes > MAX_STATE_BYTES {
                return Err(ApiError::InvalidState(format!(
                    "state must encode to at most {MAX_STATE_BYTES} bytes of compact JSON, not {bytes}"
                )));
            }
        }
        Ok(RoomPing {
            device,
            state: self.state,
            typing: self.typing,
        })
    }
}

/// Whether a string or a key anywhere in `value` holds U+0000.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields
            .iter()
            .any(|(key, field)| key.contains('\0') || holds_nul(field)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(body: Value) -> Result<RoomPing, ApiError> {
        serde_json::from_value::<RoomPingBody>(body)
            .expect("the body deserializes")
            .parse()
    }

    #[test]
    fn absent_null_and_values_are_told_apart() {
        let ping = parse(json!({})).expect("valid");
        assert_eq!(ping.device.as_str(), "default");
        assert_eq!(ping.state, Patch::Absent);
        assert_eq!(ping.typing, None);
        let ping =
            parse(json!({"deviceId": "tab-1", "state": null, "typing": true})).expect("valid");
        assert_eq!(ping.device.as_str(), "tab-1");
        assert_eq!(ping.state, Patch::Null);
        assert_eq!(ping.typing, Some(true));
        let ping = parse(json!({"state": {"cursor": 12}})).expect("valid");
        assert_eq!(ping.state, Patch::Value(json!({"cursor": 12})));
    }

    #[test]
    fn a_state_must_be_a_small_object() {
        for state in [json!(5), json!("x"), json!([1]), json!(true)] {
            let refused = parse(json!({ "state": state })).expect_err("not an object");
            assert_eq!(refused.code(), "INVALID_STATE");
        }
        // {"k":"…"} is 8 bytes around the text.
        let fits = json!({"k": "x".repeat(MAX_STATE_BYTES - 8)});
        assert!(parse(json!({ "state": fits })).is_ok());
        let over = json!({"k": "x".repeat(MAX_STATE_BYTES - 7)});
        assert_eq!(
            parse(json!({ "state": over })).expect_err("too big").code(),
            "INVALID_STATE"
        );
        assert_eq!(
            parse(json!({"deviceId": ""}))
                .expect_err("bad device")
                .code(),
            "INVALID_DEVICE_ID"
        );
        for state in [
            json!({"k": "a\u{0}b"}),
            json!({"a\u{0}": 1}),
            json!({"k": [{"deep": ["\u{0}"]}]}),
        ] {
            let refused = parse(json!({ "state": state })).expect_err("a NUL");
            assert_eq!(refused.code(), "INVALID_STATE");
        }
        assert!(parse(json!({"state": {"k": "\\u0000 as text"}})).is_ok());
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_value::<RoomPingBody>(json!({"typing": true, "x": 1})).is_err());
        assert!(serde_json::from_value::<RoomPingBody>(json!({"typing": "yes"})).is_err());
    }
}

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

use super::{DeviceId, ManualStatus, Platform, StatusMessage, parse_timestamp};

/// A body field that distinguishes "absent" from `null` from a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    /// The field was not sent: leave the stored value as it is.
    #[default]
    Absent,
    /// The field was sent as `null`: clear the stored value.
    Null,
    /// The field was sent with a value.
    Value(T),
}

impl<T> Patch<T> {
    /// Whether the field was sent (as a value or as `null`).
    pub fn is_set(&self) -> bool {
        !matches!(self, Self::Absent)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<T>::deserialize(deserializer).map(|value| value.map_or(Patch::Null, Patch::Value))
    }
}

/// The body of `PUT /api/status`: every field optional; absent keeps, `null` clears.
// `PingBody::parse` turns it into a `Ping`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = PingRequest)]
pub struct PingBody {
    /// The client instance, 1 to 64 of `[A-Za-z0-9._:-]` (default `"default"`).
    #[schema(
        required = false,
        nullable = false,
        pattern = "^[A-Za-z0-9._:-]{1,64}$"
    )]
    device_id: Option<String>,
    /// The device's platform (default `web`).
    #[schema(required = false, nullable = false)]
    platform: Option<Platform>,
    /// `true`: the user interacted (default); `false`: heartbeat only.
    #[schema(required = false, nullable = false)]
    active: Option<bool>,
    /// Manual status; `null` returns to automatic.
    #[serde(default)]
    #[schema(value_type = Option<ManualStatus>, required = false, nullable)]
    manual_status: Patch<String>,
    /// When the manual status ends; sent with `manualStatus`.
    #[serde(default)]
    #[schema(value_type = Option<String>, required = false, nullable, format = DateTime)]
    manual_status_until: Patch<String>,
    /// Appear offline to everyone else.
    #[schema(required = false, nullable = false)]
    invisible: Option<bool>,
    /// Custom message, at most 140 characters; `""` or `null` clears it.
    #[serde(default)]
    #[schema(value_type = Option<String>, required = false, nullable, max_length = 140)]
    status_message: Patch<String>,
    /// When the message ends; sent with `statusMessage`.
    #[serde(default)]
    #[schema(value_type = Option<String>, required = false, nullable, format = DateTime)]
    status_message_until: Patch<String>,
}

/// Why a ping body was refused: the field at fault, with a message for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPing {
    /// `deviceId` breaks the device id rules.
    #[error("{0}")]
    DeviceId(String),
    /// `manualStatus` is not one that can be set, or its expiry stands alone.
    #[error("{0}")]
    Status(String),
    /// `statusMessage` is not acceptable, or its expiry stands alone.
    #[error("{0}")]
    Message(String),
    /// A `...Until` field is not a usable timestamp.
    #[error("{0}")]
    Timestamp(String),
}

/// How a ping changes a setting that has an expiry (manual status, status message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingChange<T> {
    /// Leave value and expiry as stored.
    Keep,
    /// Replace both: `None` clears the value; an absent expiry means "until cleared".
    Set {
        /// The new value, `None` to clear it.
        value: Option<T>,
        /// When the new value ends by itself.
        until: Option<DateTime<Utc>>,
    },
    /// Keep the value, make it last until cleared.
    DropExpiry,
}

/// A parsed activity ping or heartbeat, with the settings it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// The device pinging.
    pub device_id: DeviceId,
    /// The device's platform; `None` keeps the stored one (`web` for a new device).
    pub platform: Option<Platform>,
    /// `true` for an interaction, `false` for a heartbeat.
    pub active: bool,
    /// The change to the manual status.
    pub manual_status: SettingChange<ManualStatus>,
    /// The new invisible flag, if sent.
    pub invisible: Option<bool>,
    /// The change to the status message.
    pub status_message: SettingChange<StatusMessage>,
}

impl Ping {
    /// Whether the ping changes any setting, rather than only moving timestamps.
    pub fn changes_settings(&self) -> bool {
        self.manual_status != SettingChange::Keep
            || self.invisible.is_some()
            || self.status_message != SettingChange::Keep
    }
}

impl PingBody {
    /// Checks every field and builds the ping; expiries must lie after `now`.
    pub fn parse(self, now: DateTime<Utc>) -> Result<Ping, InvalidPing> {
        let device_id = match self.device_id {
            Some(id) => DeviceId::parse(&id).map_err(InvalidPing::DeviceId)?,
            None => DeviceId::default_device(),
        };
        let manual_status = setting_change(
            self.manual_status,
            self.manual_status_until,
            ("manualStatus", "manualStatusUntil"),
            now,
            |status| {
                ManualStatus::parse(status)
                    .map(Some)
                    .map_err(InvalidPing::Status)
            },
            InvalidPing::Status,
        )?;
        let status_message = setting_change(
            self.status_message,
            self.status_message_until,
            ("statusMessage", "statusMessageUntil"),
            now,
            |message| StatusMessage::parse(message).map_err(InvalidPing::Message),
            InvalidPing::Message,
        )?;
        Ok(Ping {
            device_id,
            platform: self.platform,
            active: self.active.unwrap_or(true),
            manual_status,
            invisible: self.invisible,
            status_message,
        })
    }
}

/// Combines a setting and its `...Until` field into one change.
fn setting_change<T>(
    value: Patch<String>,
    until: Patch<String>,
    (value_field, until_field): (&str, &str),
    now: DateTime<Utc>,
    parse_value: impl FnOnce(&str) -> Result<Option<T>, InvalidPing>,
    orphan_expiry: impl FnOnce(String) -> InvalidPing,
) -> Result<SettingChange<T>, InvalidPing> {
    let value = match value {
        Patch::Absent => None,
        Patch::Null => Some(None),
        Patch::Value(text) => Some(parse_value(&text)?),
    };
    let until = match until {
        Patch::Absent => None,
        Patch::Null => Some(None),
        Patch::Value(text) => {
            let instant = parse_timestamp(until_field, &text).map_err(InvalidPing::Timestamp)?;
            if instant <= now {
                return Err(InvalidPing::Timestamp(format!(
                    "{until_field} must lie in the future"
                )));
            }
            Some(Some(instant))
        }
    };
    match (value, until) {
        (None, None) => Ok(SettingChange::Keep),
        (None, Some(None)) => Ok(SettingChange::DropExpiry),
        (None, Some(Some(_))) => Err(orphan_expiry(format!(
            "{until_field} must be sent together with {value_field}"
        ))),
        (Some(None), Some(Some(_))) => Err(orphan_expiry(format!(
            "{until_field} cannot end a {value_field} that is being cleared"
        ))),
        (Some(value), until) => Ok(SettingChange::Set {
            value,
            until: until.flatten(),
        }),
    }
}

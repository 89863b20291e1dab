use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{ManualStatus, Platform, UserId};

/// One entry of a user's `devices` list, as stored in the JSONB column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredDevice {
    /// The client-chosen device id.
    pub id: String,
    /// Where the device runs.
    pub platform: Platform,
    /// The device's last ping of any kind (activity or heartbeat).
    pub last_ping: DateTime<Utc>,
    /// The device's last activity ping; its first ping counts as one.
    pub last_active: DateTime<Utc>,
}

/// A user's stored presence, as the `user_status` row holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStatus {
    /// Whose row this is.
    pub user_id: UserId,
    /// The manual status, possibly already expired.
    pub manual_status: Option<ManualStatus>,
    /// When the manual status ends by itself; `None` means "until cleared".
    pub manual_status_until: Option<DateTime<Utc>>,
    /// Whether the user appears offline to everyone else.
    pub invisible: bool,
    /// The last activity when invisibility was switched on: what others see while it lasts.
    pub last_seen_before_invisible: Option<DateTime<Utc>>,
    /// The user's last activity, across every device ever signed in.
    pub last_seen: Option<DateTime<Utc>>,
    /// The custom status message, possibly already expired.
    pub status_message: Option<String>,
    /// When the message ends by itself; `None` means "until cleared".
    pub status_message_until: Option<DateTime<Utc>>,
    /// Every stored device, live or not, most recently pinged first.
    pub devices: Vec<StoredDevice>,
    /// Bumped by every write of the row: a larger version is a newer row.
    pub version: i64,
}

impl StoredStatus {
    /// Orders the devices most recently pinged first, as the self view lists them.
    pub fn sort_devices(&mut self) {
        self.devices
            .sort_by_key(|device| std::cmp::Reverse(device.last_ping));
    }
}

use serde::Serialize;

use crate::domain::{ManualStatus, Platform, Timestamp, UserId};
use crate::presence::{EffectiveStatus, OwnView, Status, StoredDevice};

/// The JSON of one user's status as a viewer is shown it (contract section 3).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusBody<'a> {
    user_id: UserId,
    status: Status,
    last_seen: Option<Timestamp>,
    status_message: Option<&'a str>,
    platforms: &'a [Platform],
    next_change_at: Option<Timestamp>,
    #[serde(flatten)]
    own: Option<OwnBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ping_interval_seconds: Option<u64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct OwnBody<'a> {
    manual_status: Option<ManualStatus>,
    manual_status_until: Option<Timestamp>,
    invisible: bool,
    status_message_until: Option<Timestamp>,
    devices: Vec<DeviceBody<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceBody<'a> {
    device_id: &'a str,
    platform: Platform,
    last_ping: Timestamp,
    last_active: Timestamp,
}

impl<'a> StatusBody<'a> {
    /// The body for `view`; the self view carries its own fields too.
    pub fn new(view: &'a EffectiveStatus) -> Self {
        Self {
            user_id: view.user_id,
            status: view.status,
            last_seen: view.last_seen.map(Timestamp),
            status_message: view.status_message.as_deref(),
            platforms: &view.platforms,
            next_change_at: view.next_change_at.map(Timestamp),
            own: view.own.as_ref().map(OwnBody::new),
            ping_interval_seconds: None,
        }
    }

    /// Adds how often the client should heartbeat (the answer to a ping).
    pub fn with_ping_interval(mut self, seconds: u64) -> Self {
        self.ping_interval_seconds = Some(seconds);
        self
    }
}

impl<'a> OwnBody<'a> {
    fn new(own: &'a OwnView) -> Self {
        Self {
            manual_status: own.manual_status,
            manual_status_until: own.manual_status_until.map(Timestamp),
            invisible: own.invisible,
            status_message_until: own.status_message_until.map(Timestamp),
            devices: own.devices.iter().map(DeviceBody::new).collect(),
        }
    }
}

impl<'a> DeviceBody<'a> {
    fn new(device: &'a StoredDevice) -> Self {
        Self {
            device_id: &device.id,
            platform: device.platform,
            last_ping: Timestamp(device.last_ping),
            last_active: Timestamp(device.last_active),
        }
    }
}

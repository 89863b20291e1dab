//! The JSON bodies of status answers: a viewer's view of a user, and the self view.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{ManualStatus, Platform, Timestamp, UserId};
use crate::presence::{EffectiveStatus, Status, StoredDevice};

/// One user's status as the caller may see it; the self view adds the optional fields,
/// and the answer to a ping adds `pingIntervalSeconds`.
#[derive(Debug, Hash, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = StatusView)]
pub struct StatusBody<'a> {
    /// The user.
    #[schema(value_type = uuid::Uuid)]
    user_id: UserId,
    /// The effective status.
    status: Status,
    /// The last activity this viewer may know of.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    last_seen: Option<Timestamp>,
    /// The status message, when shown.
    #[schema(required = true)]
    status_message: Option<&'a str>,
    /// The platforms of the live devices.
    #[schema(value_type = Vec<Platform>)]
    platforms: &'a [Platform],
    /// When the view next changes by itself.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    next_change_at: Option<Timestamp>,
    /// Self view: the manual status.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ManualStatus>, required = false, nullable)]
    manual_status: Option<Option<ManualStatus>>,
    /// Self view: when the manual status ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, required = false, nullable, format = DateTime)]
    manual_status_until: Option<Option<Timestamp>>,
    /// Self view: whether the user appears offline to others.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = bool, required = false)]
    invisible: Option<bool>,
    /// Self view: when the message ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, required = false, nullable, format = DateTime)]
    status_message_until: Option<Option<Timestamp>>,
    /// Self view: every stored device, live or not, most recently pinged first.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Vec<DeviceBody>, required = false)]
    devices: Option<Vec<DeviceBody<'a>>>,
    /// The answer to a ping: how often to heartbeat, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = u64, required = false)]
    ping_interval_seconds: Option<u64>,
}

/// One stored device (self view only).
#[derive(Debug, Hash, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Device)]
pub struct DeviceBody<'a> {
    /// The client-chosen id.
    device_id: &'a str,
    /// Where it runs.
    platform: Platform,
    /// Its last ping of any kind.
    #[schema(value_type = String, format = DateTime)]
    last_ping: Timestamp,
    /// Its last activity.
    #[schema(value_type = String, format = DateTime)]
    last_active: Timestamp,
}

impl<'a> StatusBody<'a> {
    /// The body for `view`; the self view carries its own fields too.
    pub fn new(view: &'a EffectiveStatus) -> Self {
        let own = view.own.as_ref();
        Self {
            user_id: view.user_id,
            status: view.status,
            last_seen: view.last_seen.map(Timestamp),
            status_message: view.status_message.as_deref(),
            platforms: view.platforms,
            next_change_at: view.next_change_at.map(Timestamp),
            manual_status: own.map(|own| own.manual_status),
            manual_status_until: own.map(|own| own.manual_status_until.map(Timestamp)),
            invisible: own.map(|own| own.invisible),
            status_message_until: own.map(|own| own.status_message_until.map(Timestamp)),
            devices: own.map(|own| own.devices.iter().map(DeviceBody::new).collect()),
            ping_interval_seconds: None,
        }
    }

    /// Adds how often the client should heartbeat (the answer to a ping).
    pub fn with_ping_interval(mut self, seconds: u64) -> Self {
        self.ping_interval_seconds = Some(seconds);
        self
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

/// Several users' statuses, one per distinct id, in the order first asked.
#[derive(Hash, Serialize, ToSchema)]
#[schema(as = StatusesResponse)]
pub struct StatusesBody<'a> {
    /// The statuses.
    pub statuses: Vec<StatusBody<'a>>,
}

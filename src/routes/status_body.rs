//! The JSON bodies of status answers: a viewer's view of a user, and the self view.

use serde::Serialize;
use utoipa::ToSchema;

use super::conditional::ViewJson;
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

    /// Appends the body as JSON, byte for byte what `serde_json` writes from
    /// the derived `Serialize`, without escaping the text that needs none: the
    /// id, the status, the instants and the platforms are copied as they are,
    /// and only the status message and the self view's fields go through
    /// `serde_json`. Escaping each byte of the rest was half the cost of a
    /// poll's full answer (counted by `bench/instructions.sh`).
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(b"{\"userId\":\"");
        out.extend_from_slice(
            self.user_id
                .as_uuid()
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .as_bytes(),
        );
        out.extend_from_slice(b"\",\"status\":\"");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.extend_from_slice(b"\",\"lastSeen\":");
        write_instant(out, self.last_seen);
        out.extend_from_slice(b",\"statusMessage\":");
        write_value(out, &self.status_message)?;
        out.extend_from_slice(b",\"platforms\":[");
        for (index, platform) in self.platforms.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(platform.as_str().as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b"],\"nextChangeAt\":");
        write_instant(out, self.next_change_at);
        if let Some(manual_status) = &self.manual_status {
            out.extend_from_slice(b",\"manualStatus\":");
            write_value(out, manual_status)?;
        }
        if let Some(until) = &self.manual_status_until {
            out.extend_from_slice(b",\"manualStatusUntil\":");
            write_instant(out, *until);
        }
        if let Some(invisible) = self.invisible {
            out.extend_from_slice(if invisible {
                b",\"invisible\":true"
            } else {
                b",\"invisible\":false"
            });
        }
        if let Some(until) = &self.status_message_until {
            out.extend_from_slice(b",\"statusMessageUntil\":");
            write_instant(out, *until);
        }
        if let Some(devices) = &self.devices {
            out.extend_from_slice(b",\"devices\":");
            write_value(out, devices)?;
        }
        if let Some(seconds) = self.ping_interval_seconds {
            out.extend_from_slice(b",\"pingIntervalSeconds\":");
            write_value(out, &seconds)?;
        }
        out.push(b'}');
        Ok(())
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

/// Appends an instant, or `null`.
fn write_instant(out: &mut Vec<u8>, instant: Option<Timestamp>) {
    match instant {
        Some(instant) => instant.write_json(out),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends a value as `serde_json` writes it (text it escapes).
fn write_value<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> serde_json::Result<()> {
    serde_json::to_writer(out, value)
}

/// Several users' statuses, one per distinct id, in the order first asked.
#[derive(Hash, Serialize, ToSchema)]
#[schema(as = StatusesResponse)]
pub struct StatusesBody<'a> {
    /// The statuses.
    pub statuses: Vec<StatusBody<'a>>,
}

impl ViewJson for StatusBody<'_> {
    /// The body as JSON (see [`StatusBody::write_json`]).
    fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out)?;
        Ok(out)
    }
}

impl ViewJson for StatusesBody<'_> {
    /// The body as JSON (see [`StatusBody::write_json`]).
    fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        // About 200 bytes a status.
        let mut out = Vec::with_capacity(16 + 256 * self.statuses.len());
        out.extend_from_slice(b"{\"statuses\":[");
        for (index, status) in self.statuses.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            status.write_json(&mut out)?;
        }
        out.extend_from_slice(b"]}");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::presence::Status;

    fn instant() -> impl Strategy<Value = Option<Timestamp>> {
        // Four-digit years and a few beyond them, which chrono formats.
        prop::option::of(
            prop_oneof![
                -62_135_596_800_000i64..253_402_300_800_000,
                Just(253_402_300_800_000i64),
                Just(-62_200_000_000_000i64),
            ]
            .prop_map(|millis| {
                Timestamp(DateTime::from_timestamp_millis(millis).expect("in range"))
            }),
        )
    }

    fn status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::Online),
            Just(Status::Idle),
            Just(Status::Away),
            Just(Status::Dnd),
            Just(Status::Offline),
        ]
    }

    fn manual_status() -> impl Strategy<Value = Option<ManualStatus>> {
        prop::option::of(prop_oneof![
            Just(ManualStatus::Away),
            Just(ManualStatus::Dnd)
        ])
    }

    fn platform() -> impl Strategy<Value = Platform> {
        (0u8..3).prop_map(|bit| Platform::ALL[usize::from(bit)])
    }

    /// Devices as the self view lists them: ids are any text a client may send.
    fn devices() -> impl Strategy<Value = Vec<(String, Platform, i64, i64)>> {
        prop::collection::vec(
            (
                any::<String>(),
                platform(),
                0i64..4_000_000_000_000,
                0i64..4_000_000_000_000,
            ),
            0..4,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// The hand-written JSON is byte for byte what serde_json writes from the
        /// derived Serialize, for any body: messages and device ids with quotes,
        /// control characters and any Unicode, every field null or not, the self
        /// view's fields and the ping answer's.
        #[test]
        fn written_json_is_what_serde_writes(
            ids in prop::collection::vec(any::<u128>(), 0..4),
            status in status(),
            last_seen in instant(),
            message in prop::option::of(any::<String>()),
            platforms in 0u8..8,
            next_change_at in instant(),
            own in prop::option::of((manual_status(), instant(), any::<bool>(), instant(), devices())),
            ping_interval in prop::option::of(any::<u64>()),
        ) {
            let device_list: Vec<(String, Platform, Timestamp, Timestamp)> = own
                .as_ref()
                .map(|own| {
                    own.4
                        .iter()
                        .map(|(id, platform, ping, active)| {
                            let at = |millis: i64| {
                                Timestamp(DateTime::from_timestamp_millis(millis).expect("in range"))
                            };
                            (id.clone(), *platform, at(*ping), at(*active))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let body = |id: u128| StatusBody {
                user_id: UserId::from(Uuid::from_u128(id)),
                status,
                last_seen,
                status_message: message.as_deref(),
                platforms: Platform::set(platforms),
                next_change_at,
                manual_status: own.as_ref().map(|own| own.0),
                manual_status_until: own.as_ref().map(|own| own.1),
                invisible: own.as_ref().map(|own| own.2),
                status_message_until: own.as_ref().map(|own| own.3),
                devices: own.as_ref().map(|_| {
                    device_list
                        .iter()
                        .map(|(id, platform, ping, active)| DeviceBody {
                            device_id: id,
                            platform: *platform,
                            last_ping: *ping,
                            last_active: *active,
                        })
                        .collect()
                }),
                ping_interval_seconds: ping_interval,
            };
            let one = body(ids.first().copied().unwrap_or_default());
            prop_assert_eq!(
                String::from_utf8(one.to_json().expect("writes")).expect("UTF-8"),
                serde_json::to_string(&one).expect("serializes")
            );
            let many = StatusesBody { statuses: ids.iter().map(|id| body(*id)).collect() };
            prop_assert_eq!(
                String::from_utf8(many.to_json().expect("writes")).expect("UTF-8"),
                serde_json::to_string(&many).expect("serializes")
            );
        }
    }
}

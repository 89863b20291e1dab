//! Newtypes that parse client input once; the rest of the code trusts them.

mod device_id;
mod manual_status;
mod ping;
mod platform;
mod room_id;
mod room_ping;
mod status_message;
mod timestamp;
mod user_id;

pub use device_id::DeviceId;
pub use manual_status::ManualStatus;
pub use ping::{InvalidPing, Patch, Ping, PingBody, SettingChange};
pub use platform::Platform;
pub use room_id::{RoomGrants, RoomId};
pub use room_ping::{RoomPing, RoomPingBody};
pub use status_message::StatusMessage;
pub use timestamp::{Timestamp, parse_timestamp};
pub use user_id::UserId;

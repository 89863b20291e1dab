//! Rooms: who is in a place of the application together, what each does
//! there, and who is typing (the contract's section 7).
//!
//! [`Rooms`] writes memberships (one call of `sql/rooms.sql` each) and reads
//! a room's memberships through a snapshot cache ([`RoomCache`]); the
//! handlers then take the members' statuses from [`crate::statuses::Statuses`],
//! as a status read would, and leave out whom the viewer may not see.

mod cache;
mod view;

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

pub use cache::{RoomCache, RoomSnapshot, Snapshot};
pub use view::{RoomMember, members_at};

use crate::database::{Database, past_deadline};
use crate::domain::{DeviceId, RoomId, RoomPing, UserId};
use crate::store::{self, RoomPingOutcome, RoomPingWritten, RoomRules, UserRoom};

/// How many locks the reads of rooms the cache lacks take turns on.
const READ_STRIPES: usize = 64;

/// Joins, renewals, leaves and reads of rooms.
pub struct Rooms {
    db: Database,
    rules: RoomRules,
    cache: Option<Arc<RoomCache>>,
    /// A room the cache lacks is read by one request while the others polling
    /// it wait for that read (rooms share these locks by their id's hash): a
    /// large room's snapshot expiring costs one read, not one per poll.
    reading: Vec<tokio::sync::Mutex<()>>,
    hasher: foldhash::fast::RandomState,
}

impl Rooms {
    /// Rooms over `db`, timed and capped by `rules`, reading through `cache` when there is one.
    pub fn new(db: Database, rules: RoomRules, cache: Option<Arc<RoomCache>>) -> Self {
        Self {
            db,
            rules,
            cache,
            reading: (0..READ_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// How memberships are timed and capped.
    pub fn rules(&self) -> RoomRules {
        self.rules
    }

    /// How often a member should renew: a third of the room timeout, at least a second.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.rules.timeout.to_std().unwrap_or_default() / 3).max(Duration::from_secs(1))
    }

    /// Joins or renews `user`'s membership of `room` at `at`, durably; the
    /// caller's next read of the room shows it.
    pub async fn ping(
        &self,
        room: &RoomId,
        user: UserId,
        ping: &RoomPing,
        at: DateTime<Utc>,
    ) -> Result<RoomPingWritten, sqlx::Error> {
        let written = self
            .db
            .run(async |connection| {
                store::room_ping(connection, room, user, ping, at, self.rules).await
            })
            .await?;
        if let Some(cache) = &self.cache {
            match written.outcome {
                RoomPingOutcome::TooMany => {}
                // A state sent again may still make this device the one whose state shows.
                RoomPingOutcome::Renewed if !ping.state.is_set() => {
                    cache.renewed(room, user, ping.device.as_str(), at, self.rules.timeout);
                }
                _ => cache.changed(room),
            }
        }
        Ok(written)
    }

    /// `user`'s `device` leaves `room` at `at` (nothing happens if it was not in it).
    pub async fn leave(
        &self,
        room: &RoomId,
        user: UserId,
        device: &DeviceId,
        at: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let left = self
            .db
            .run(async |connection| {
                store::leave_room(connection, room, user, device, at, self.rules.timeout).await
            })
            .await?;
        if let (true, Some(cache)) = (left, &self.cache) {
            cache.changed(room);
        }
        Ok(left)
    }

    /// `user`'s `device` signed out at `at`: it leaves every room; returns how many it was in.
    pub async fn leave_all(
        &self,
        user: UserId,
        device: &DeviceId,
        at: DateTime<Utc>,
    ) -> Result<usize, sqlx::Error> {
        let left = self
            .db
            .run(async |connection| {
                store::leave_rooms_of_device(connection, user, device, at, self.rules.timeout).await
            })
            .await?;
        if let Some(cache) = &self.cache {
            for room in &left {
                cache.changed(room);
            }
        }
        Ok(left.len())
    }

    /// The rooms `user` is in at `at`, in room id order.
    pub async fn rooms_of(
        &self,
        user: UserId,
        at: DateTime<Utc>,
    ) -> Result<Vec<UserRoom>, sqlx::Error> {
        let renewed_after = at - self.rules.timeout;
        self.db
            .run(async |connection| {
                store::fetch_rooms_of_user(connection, user, renewed_after).await
            })
            .await
    }

    /// The users in `room` at `at`, in user id order (everyone, before any viewer's privacy).
    pub async fn members(
        &self,
        room: &RoomId,
        at: DateTime<Utc>,
    ) -> Result<Arc<[RoomMember]>, sqlx::Error> {
        let snapshot = self.memberships(room, at).await?;
        Ok(snapshot.members(at, self.rules.timeout))
    }

    /// The room's memberships, from the cache or read at `at` (every one that
    /// may still be live a TTL later: the snapshot is served that long).
    async fn memberships(&self, room: &RoomId, at: DateTime<Utc>) -> Result<Snapshot, sqlx::Error> {
        let renewed_after = at - self.rules.timeout;
        let read = async || -> Result<Snapshot, sqlx::Error> {
            let memberships = self
                .db
                .run(async |connection| {
                    store::fetch_room_members(connection, room, renewed_after).await
                })
                .await?;
            Ok(Arc::new(RoomSnapshot::new(memberships)))
        };
        let Some(cache) = &self.cache else {
            return read().await;
        };
        if let Ok(snapshot) = cache.get(room) {
            return Ok(snapshot);
        }
        let stripe = usize::try_from(self.hasher.hash_one(room)).unwrap_or_default() % READ_STRIPES;
        let _turn = tokio::time::timeout(self.db.deadline(), self.reading[stripe].lock())
            .await
            .map_err(|_| past_deadline())?;
        // Another request may have read it while this one waited.
        let mark = match cache.get(room) {
            Ok(snapshot) => return Ok(snapshot),
            Err(mark) => mark,
        };
        let snapshot = read().await?;
        cache.offer(room, snapshot.clone(), mark);
        Ok(snapshot)
    }
}

/// The rules of `config`'s room settings.
pub fn rules_of(timeout: Duration, typing_ttl: Duration, max_rooms_per_device: u32) -> RoomRules {
    let delta = |duration: Duration| TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX);
    RoomRules {
        timeout: delta(timeout),
        typing_ttl: delta(typing_ttl),
        max_rooms_per_device,
    }
}

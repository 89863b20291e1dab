//! The read cache of rooms' memberships: one snapshot per room, served for
//! the cache TTL at most from its read.
//!
//! A write that changes what a room shows is announced (`r:<room>`) and
//! drops the room's snapshot here and on every instance. A renewal that
//! changes nothing shown is not announced, so a snapshot holds renewal times
//! up to a TTL old: a snapshot is never served longer than that, and the
//! instance that renewed drops it when the renewal matters within the TTL.
//! Each room's entry counts the changes seen, so that a read started before
//! a change cannot be kept after it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

use super::view::{RoomMember, members_until};
use crate::domain::{RoomId, UserId};
use crate::statuses::sharded::ShardedMap;
use crate::store::Membership;

/// One room's memberships as read, shared by every request that reads it.
pub type Snapshot = Arc<RoomSnapshot>;

/// One room's memberships as read, in user and device order, with the last
/// fold of them into members (a large room's read folds once, not once per poll).
pub struct RoomSnapshot {
    memberships: Vec<Membership>,
    /// The members, folded at an instant, and the span of instants they hold for.
    folded: Mutex<Option<Folded>>,
}

#[derive(Clone)]
struct Folded {
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    members: Arc<[RoomMember]>,
}

impl RoomSnapshot {
    /// A snapshot of `memberships` (in user and device order).
    pub fn new(memberships: Vec<Membership>) -> Self {
        Self {
            memberships,
            folded: Mutex::new(None),
        }
    }

    /// The memberships as read.
    pub fn memberships(&self) -> &[Membership] {
        &self.memberships
    }

    /// The users in the room at `at`: the last fold if it holds then, else a new one.
    pub fn members(&self, at: DateTime<Utc>, timeout: TimeDelta) -> Arc<[RoomMember]> {
        let held = self
            .folded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(folded) = held.filter(|folded| folded.from <= at && at < folded.until) {
            return folded.members;
        }
        let (members, until) = members_until(&self.memberships, at, timeout);
        let members: Arc<[RoomMember]> = members.into();
        *self.folded.lock().unwrap_or_else(PoisonError::into_inner) = Some(Folded {
            from: at,
            until,
            members: members.clone(),
        });
        members
    }
}

#[derive(Clone)]
enum Slot {
    /// The memberships, when they were read (micros on the cache's clock), and the changes seen before.
    Read(Snapshot, u64, u64),
    /// The room changed this many times since the entry was made; its memberships are unknown.
    Changed(u64),
}

impl Slot {
    fn changes(&self) -> u64 {
        match self {
            Self::Read(_, _, changes) | Self::Changed(changes) => *changes,
        }
    }
}

/// Rooms' memberships, each snapshot served for the TTL from its read.
pub struct RoomCache {
    origin: Instant,
    ttl: u64,
    ttl_delta: TimeDelta,
    rooms: ShardedMap<RoomId, Slot>,
}

/// What a read of the database needs to offer its snapshot back.
#[derive(Debug, Clone, Copy)]
pub struct ReadMark {
    read_at: u64,
    changes: u64,
}

impl RoomCache {
    /// A cache of at most `capacity` rooms, each served for `ttl` from its read.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        Self {
            origin: Instant::now(),
            ttl: ttl.as_micros().try_into().unwrap_or(u64::MAX),
            ttl_delta: TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX),
            rooms: ShardedMap::new(capacity),
        }
    }

    fn now(&self) -> u64 {
        self.origin
            .elapsed()
            .as_micros()
            .try_into()
            .unwrap_or(u64::MAX)
    }

    /// The room's snapshot if one is fresh, else the mark to read the database with.
    pub fn get(&self, room: &RoomId) -> Result<Snapshot, ReadMark> {
        let now = self.now();
        match self.rooms.get(room) {
            Some(Slot::Read(snapshot, read_at, _)) if now.saturating_sub(read_at) < self.ttl => {
                Ok(snapshot)
            }
            held => Err(ReadMark {
                read_at: now,
                changes: held.map_or(0, |slot| slot.changes()),
            }),
        }
    }

    /// Keeps `snapshot`, read after `mark`, unless the room changed since.
    pub fn offer(&self, room: &RoomId, snapshot: Snapshot, mark: ReadMark) {
        self.rooms.update(room.clone(), |held| {
            let changes = held.map_or(0, Slot::changes);
            (changes == mark.changes).then_some(Slot::Read(snapshot, mark.read_at, changes))
        });
    }

    /// The room changed (announced, or written here): its snapshot goes.
    pub fn changed(&self, room: &RoomId) {
        self.rooms.update(room.clone(), |held| {
            Some(Slot::Changed(held.map_or(0, Slot::changes) + 1))
        });
    }

    /// `user`'s `device` renewed its membership of `room` at `at`, changing
    /// nothing shown: the snapshot stays unless it would show the membership
    /// (or its typing) ending within the TTL, which the renewal postponed.
    pub fn renewed(
        &self,
        room: &RoomId,
        user: UserId,
        device: &str,
        at: DateTime<Utc>,
        timeout: TimeDelta,
    ) {
        let Some(Slot::Read(snapshot, _, _)) = self.rooms.get(room) else {
            return;
        };
        let horizon = at + self.ttl_delta;
        let lasts = snapshot
            .memberships()
            .iter()
            .find(|held| held.user_id == user && held.device_id == device)
            .is_some_and(|held| {
                held.renewed_at + timeout > horizon
                    && held
                        .typing_until
                        .is_none_or(|until| until <= at || until > horizon)
            });
        if !lasts {
            self.changed(room);
        }
    }

    /// Forgets everything (the notifications may have missed changes).
    pub fn clear(&self) {
        self.rooms.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: &str) -> RoomId {
        RoomId::parse(id).expect("a room id")
    }

    fn member(user: UserId, renewed_at: DateTime<Utc>) -> Membership {
        Membership {
            user_id: user,
            device_id: "default".to_owned(),
            joined_at: renewed_at,
            renewed_at,
            state: None,
            state_set_at: None,
            typing_until: None,
        }
    }

    #[test]
    fn a_read_started_before_a_change_is_not_kept() {
        let cache = RoomCache::new(Duration::from_secs(60), 100);
        let doc = room("doc:1");
        let Err(mark) = cache.get(&doc) else {
            panic!("nothing cached yet")
        };
        cache.changed(&doc);
        cache.offer(&doc, Arc::new(RoomSnapshot::new(Vec::new())), mark);
        assert!(cache.get(&doc).is_err(), "the read predates the change");
        let Err(mark) = cache.get(&doc) else {
            panic!("still nothing cached")
        };
        cache.offer(&doc, Arc::new(RoomSnapshot::new(Vec::new())), mark);
        assert!(cache.get(&doc).is_ok());
        cache.changed(&doc);
        assert!(cache.get(&doc).is_err());
    }

    #[test]
    fn a_renewal_drops_the_snapshot_only_when_it_matters_within_the_ttl() {
        let cache = RoomCache::new(Duration::from_secs(1), 100);
        let doc = room("doc:1");
        let user = UserId::from(uuid::Uuid::new_v4());
        let at = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::days(20_000);
        let timeout = TimeDelta::seconds(60);
        let offer = |renewed_at| {
            let Err(mark) = cache.get(&doc) else {
                panic!("nothing cached")
            };
            let snapshot = RoomSnapshot::new(vec![member(user, renewed_at)]);
            cache.offer(&doc, Arc::new(snapshot), mark);
        };
        offer(at - TimeDelta::seconds(10));
        cache.renewed(&doc, user, "default", at, timeout);
        assert!(cache.get(&doc).is_ok(), "50 s of membership left");
        cache.changed(&doc);
        offer(at - TimeDelta::milliseconds(59_500));
        cache.renewed(&doc, user, "default", at, timeout);
        assert!(cache.get(&doc).is_err(), "it would have ended in 0.5 s");
        offer(at);
        cache.renewed(
            &doc,
            UserId::from(uuid::Uuid::new_v4()),
            "default",
            at,
            timeout,
        );
        assert!(cache.get(&doc).is_err(), "a member the snapshot lacks");
    }
}

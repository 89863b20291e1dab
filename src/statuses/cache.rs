//! The read cache of users' rows: it only ever moves forward.
//!
//! Each row carries its version (bumped by every write). An older row never
//! replaces a newer one, whoever finishes first; a notification that names a
//! newer version than the one held turns the entry into a floor that only a
//! row at least that new can fill. Users with no row are remembered apart, in
//! a small cache of their own, so a flood of unknown ids cannot push real rows
//! out. A row is served while [`Freshness`] says its read is recent enough.
//! Rows are held in a [`ShardedMap`] (a lookup is one read lock), users
//! without a row in a small LRU cache with a TTL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// Seeded per process, and several times faster than SipHash on 16-byte keys:
// hashing showed up as a tenth of a batch read's CPU.
use foldhash::fast::RandomState;
use moka::sync::Cache;

use super::freshness::Freshness;
use super::sharded::ShardedMap;
use crate::domain::UserId;
use crate::presence::StoredStatus;

/// How many users without a row are remembered at most.
const ABSENT_CAPACITY: u64 = 10_000;

/// What the cache holds for one user.
#[derive(Clone)]
enum Slot {
    /// The row, as last read or written, and when (on the freshness clock).
    Row(Arc<StoredStatus>, u64),
    /// A write of at least this version happened elsewhere; the row is unknown until read.
    Floor(i64),
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The user's row.
    Row(Arc<StoredStatus>),
    /// The user has no row (never pinged).
    Absent,
    /// Not known here: read the database.
    Miss,
}

/// Users' rows, newest first-come-last-served, with a small cache of users without one.
pub struct RowCache {
    freshness: Arc<Freshness>,
    rows: ShardedMap<UserId, Slot>,
    absent: Cache<UserId, (), RandomState>,
    /// Bumped by every write seen (local or announced): a read that saw "no
    /// row" may only say so if no write came in between.
    writes: AtomicU64,
}

impl RowCache {
    /// A cache of at most `capacity` rows, each served while `freshness` allows;
    /// users without a row are remembered for `ttl`.
    pub fn new(freshness: Arc<Freshness>, ttl: Duration, capacity: u64) -> Self {
        Self {
            freshness,
            rows: ShardedMap::new(capacity),
            absent: Cache::builder()
                .max_capacity(ABSENT_CAPACITY.min(capacity))
                .time_to_live(ttl)
                .build_with_hasher(RandomState::default()),
            writes: AtomicU64::new(0),
        }
    }

    /// What is known of `user`'s row.
    pub fn get(&self, user: UserId) -> Lookup {
        match self.rows.get(&user) {
            Some(Slot::Row(row, read_at)) if self.freshness.fresh(read_at) => Lookup::Row(row),
            Some(_) => Lookup::Miss,
            None if self.absent.contains_key(&user) => Lookup::Absent,
            None => Lookup::Miss,
        }
    }

    /// What is known of each of `users`' rows, in their order (one clock
    /// reading and one lock per shard for them all).
    pub fn get_many(&self, users: &[UserId]) -> Vec<Lookup> {
        let now = self.freshness.now();
        self.rows
            .get_many(users)
            .into_iter()
            .zip(users)
            .map(|(slot, user)| match slot {
                Some(Slot::Row(row, read_at)) if self.freshness.fresh_at_now(read_at, now) => {
                    Lookup::Row(row)
                }
                Some(_) => Lookup::Miss,
                None if self.absent.contains_key(user) => Lookup::Absent,
                None => Lookup::Miss,
            })
            .collect()
    }

    /// The newest version of `user`'s row this instance knows was written
    /// (read, written here, or announced), fresh or not; `None` if it knows none.
    pub fn known_version(&self, user: UserId) -> Option<i64> {
        match self.rows.get(&user)? {
            Slot::Row(row, _) => Some(row.version),
            Slot::Floor(floor) => Some(floor),
        }
    }

    /// Now on the freshness clock: when a read starts, for [`RowCache::offer`].
    pub fn now(&self) -> u64 {
        self.freshness.now()
    }

    /// A mark to take before reading the database, for [`RowCache::offer_absent`].
    pub fn mark(&self) -> u64 {
        self.writes.load(Ordering::Acquire)
    }

    /// Keeps `row`, which this instance just wrote, unless a newer version is already known.
    pub fn written(&self, row: Arc<StoredStatus>) {
        self.writes.fetch_add(1, Ordering::AcqRel);
        self.offer(row, self.freshness.now());
    }

    /// Keeps `row`, as read by a statement started at `read_at` (see
    /// [`RowCache::now`]), unless a newer version is already known.
    pub fn offer(&self, row: Arc<StoredStatus>, read_at: u64) {
        let user = row.user_id;
        self.forget_absent(user);
        self.rows.update(user, |held| {
            let keep = match held {
                None => Some(read_at),
                Some(Slot::Row(held, held_at)) if row.version == held.version => {
                    // The same row, read again: it is known fresh from the later read.
                    (read_at > *held_at).then_some(read_at)
                }
                Some(Slot::Row(held, _)) => (row.version > held.version).then_some(read_at),
                Some(Slot::Floor(floor)) => (row.version >= *floor).then_some(read_at),
            };
            keep.map(|read_at| Slot::Row(row, read_at))
        });
    }

    /// Forgets that `user` had no row (looked up first: most never lacked one).
    fn forget_absent(&self, user: UserId) {
        if self.absent.contains_key(&user) {
            self.absent.invalidate(&user);
        }
    }

    /// Remembers that `user` has no row, as read after `mark`, unless a write came since.
    pub fn offer_absent(&self, user: UserId, mark: u64) {
        self.absent.insert(user, ());
        // Checked after inserting: a write that raced with the insert undoes it.
        if self.writes.load(Ordering::Acquire) != mark || self.rows.contains_key(&user) {
            self.absent.invalidate(&user);
        }
    }

    /// Another writer wrote version `version` of `user`'s row.
    pub fn announced(&self, user: UserId, version: i64) {
        self.writes.fetch_add(1, Ordering::AcqRel);
        self.forget_absent(user);
        self.rows.update(user, |held| match held {
            Some(Slot::Row(held, _)) if held.version >= version => None,
            Some(Slot::Floor(floor)) if *floor >= version => None,
            _ => Some(Slot::Floor(version)),
        });
    }

    /// Forgets everything (the notifications may have missed writes).
    pub fn clear(&self) {
        self.writes.fetch_add(1, Ordering::AcqRel);
        self.rows.clear();
        self.absent.invalidate_all();
    }

    /// How many rows are held now.
    pub fn len(&self) -> u64 {
        self.rows.len() as u64
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: UserId, version: i64) -> Arc<StoredStatus> {
        Arc::new(StoredStatus {
            user_id: user,
            manual_status: None,
            manual_status_until: None,
            invisible: false,
            last_seen_before_invisible: None,
            last_seen: None,
            status_message: None,
            status_message_until: None,
            devices: Vec::new(),
            version,
        })
    }

    fn user() -> UserId {
        UserId::from(uuid::Uuid::new_v4())
    }

    fn cache() -> RowCache {
        let freshness = Arc::new(Freshness::new(Duration::from_secs(60)));
        RowCache::new(freshness, Duration::from_secs(60), 100)
    }

    #[test]
    fn many_lookups_agree_with_single_ones() {
        let cache = cache();
        let (kept, absent, unknown, stale) = (user(), user(), user(), user());
        cache.offer(row(kept, 1), cache.now());
        let mark = cache.mark();
        cache.offer_absent(absent, mark);
        cache.offer(row(stale, 1), cache.now());
        cache.announced(stale, 2);
        let users = [kept, absent, unknown, stale, kept];
        let single: Vec<Lookup> = users.iter().map(|user| cache.get(*user)).collect();
        assert_eq!(cache.get_many(&users), single);
        assert_eq!(
            single,
            [
                Lookup::Row(row(kept, 1)),
                Lookup::Absent,
                Lookup::Miss,
                Lookup::Miss,
                Lookup::Row(row(kept, 1))
            ]
        );
    }

    #[test]
    fn an_older_row_never_replaces_a_newer_one() {
        let cache = cache();
        let alice = user();
        cache.offer(row(alice, 3), cache.now());
        cache.offer(row(alice, 2), cache.now());
        assert_eq!(cache.get(alice), Lookup::Row(row(alice, 3)));
        cache.offer(row(alice, 4), cache.now());
        assert_eq!(cache.get(alice), Lookup::Row(row(alice, 4)));
    }

    #[test]
    fn an_announced_version_is_a_floor_only_a_new_enough_row_fills() {
        let cache = cache();
        let alice = user();
        cache.offer(row(alice, 3), cache.now());
        cache.announced(alice, 3);
        assert_eq!(
            cache.get(alice),
            Lookup::Row(row(alice, 3)),
            "already that new"
        );
        cache.announced(alice, 5);
        assert_eq!(cache.get(alice), Lookup::Miss);
        cache.offer(row(alice, 4), cache.now());
        assert_eq!(
            cache.get(alice),
            Lookup::Miss,
            "a read from before the write"
        );
        cache.offer(row(alice, 5), cache.now());
        assert_eq!(cache.get(alice), Lookup::Row(row(alice, 5)));
    }

    #[test]
    fn no_row_is_only_remembered_when_no_write_came_in_between() {
        let cache = cache();
        let (alice, bob) = (user(), user());
        let mark = cache.mark();
        cache.written(row(alice, 1));
        cache.offer_absent(alice, mark);
        assert_eq!(cache.get(alice), Lookup::Row(row(alice, 1)));
        cache.offer_absent(bob, mark);
        assert_eq!(cache.get(bob), Lookup::Miss, "a write came after the mark");
        let mark = cache.mark();
        cache.offer_absent(bob, mark);
        assert_eq!(cache.get(bob), Lookup::Absent);
        cache.announced(bob, 1);
        assert_eq!(cache.get(bob), Lookup::Miss);
    }

    #[test]
    fn unknown_users_do_not_push_rows_out() {
        let cache = cache();
        let kept: Vec<UserId> = (0..50).map(|_| user()).collect();
        for user in &kept {
            cache.offer(row(*user, 1), cache.now());
        }
        for _ in 0..5_000 {
            let mark = cache.mark();
            cache.offer_absent(user(), mark);
        }
        assert_eq!(cache.len(), 50);
        assert!(
            kept.iter()
                .all(|user| matches!(cache.get(*user), Lookup::Row(_)))
        );
    }
}

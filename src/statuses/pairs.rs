//! The read cache of blocks, per pair of users: whether a block stands between
//! a viewer and another user, and what the viewer may still be shown.
//!
//! A read caches only the pairs it asked about, so its cost never depends on
//! how many users block the viewer. A block or unblock (here, or announced by
//! another instance) drops both directions of its pair at once; a read that
//! raced with such a change does not keep what it saw. Users in no block at
//! all (most of them) are remembered as such, so a viewer in no block needs
//! no per-pair entry for anyone.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use foldhash::fast::RandomState;
use moka::sync::Cache;

use super::freshness::Freshness;
use super::sharded::ShardedMap;
use crate::domain::UserId;
use crate::presence::Hidden;

/// Per (viewer, other user): `Some` while a block stands between them.
pub struct PairCache {
    freshness: Arc<Freshness>,
    /// What was read, and when (on the freshness clock).
    pairs: Cache<(UserId, UserId), (Option<Hidden>, u64), RandomState>,
    /// Per user: whether they are in any block (either way), and when that was
    /// read. Looked up once per request: a sharded map, whose read takes one
    /// lock and records nothing (moka's was about 3% of the server's CPU at
    /// 20,000 simulated users).
    in_a_block: ShardedMap<UserId, (bool, u64)>,
    /// Bumped by every change of a block, before its pairs are dropped.
    changes: AtomicU64,
}

impl PairCache {
    /// A cache of at most `capacity` pairs, each served while `freshness` allows.
    pub fn new(freshness: Arc<Freshness>, capacity: u64) -> Self {
        Self {
            freshness,
            pairs: Cache::builder()
                .max_capacity(capacity)
                .build_with_hasher(RandomState::default()),
            in_a_block: ShardedMap::new(capacity),
            changes: AtomicU64::new(0),
        }
    }

    /// What blocks say between `viewer` and `other`: `None` when not known here.
    /// (A viewer in no block at all, see [`PairCache::in_a_block`], needs no pair.)
    pub fn get(&self, viewer: UserId, other: UserId) -> Option<Option<Hidden>> {
        if viewer == other {
            return Some(None);
        }
        self.pairs
            .get(&(viewer, other))
            .filter(|(_, read_at)| self.freshness.fresh(*read_at))
            .map(|(hidden, _)| hidden)
    }

    /// Whether `user` is in any block: `None` when not known here.
    pub fn in_a_block(&self, user: UserId) -> Option<bool> {
        self.in_a_block
            .get(&user)
            .filter(|(_, read_at)| self.freshness.fresh(*read_at))
            .map(|(in_a_block, _)| in_a_block)
    }

    /// Keeps whether `user` is in any block, as read at `mark` and `read_at`,
    /// unless a block changed since.
    pub fn offer_in_a_block(&self, user: UserId, in_a_block: bool, mark: u64, read_at: u64) {
        self.in_a_block
            .update(user, |_| Some((in_a_block, read_at)));
        // Checked after inserting: a change that raced with the insert undoes it.
        if self.changes.load(Ordering::Acquire) != mark {
            self.in_a_block.remove(&user);
        }
    }

    /// A mark to take before reading the database, for [`PairCache::offer`].
    pub fn mark(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Keeps what a read started at `mark` and `read_at` found, unless a block changed since.
    pub fn offer(
        &self,
        viewer: UserId,
        other: UserId,
        hidden: Option<Hidden>,
        mark: u64,
        read_at: u64,
    ) {
        if viewer == other {
            return;
        }
        self.pairs.insert((viewer, other), (hidden, read_at));
        // Checked after inserting: a change that raced with the insert undoes it.
        if self.changes.load(Ordering::Acquire) != mark {
            self.pairs.invalidate(&(viewer, other));
        }
    }

    /// A block between `first` and `second` (either way) was made or lifted.
    pub fn changed(&self, first: UserId, second: UserId) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.pairs.invalidate(&(first, second));
        self.pairs.invalidate(&(second, first));
        self.in_a_block.remove(&first);
        self.in_a_block.remove(&second);
    }

    /// Forgets everything (the notifications may have missed changes).
    pub fn clear(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.pairs.invalidate_all();
        self.in_a_block.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn user() -> UserId {
        UserId::from(uuid::Uuid::new_v4())
    }

    #[test]
    fn a_change_drops_both_directions_and_undoes_a_racing_read() {
        let freshness = Arc::new(Freshness::new(Duration::from_secs(60)));
        let cache = PairCache::new(freshness.clone(), 100);
        let now = freshness.now();
        let (alice, bob) = (user(), user());
        let hidden = Some(Hidden { last_seen: None });
        let mark = cache.mark();
        cache.offer(alice, bob, None, mark, now);
        cache.offer(bob, alice, None, mark, now);
        assert_eq!(cache.get(alice, bob), Some(None));
        cache.changed(bob, alice);
        assert_eq!(cache.get(alice, bob), None);
        assert_eq!(cache.get(bob, alice), None);
        cache.offer(alice, bob, None, mark, now);
        assert_eq!(cache.get(alice, bob), None, "read before the block");
        let mark = cache.mark();
        cache.offer(alice, bob, hidden, mark, now);
        assert_eq!(cache.get(alice, bob), Some(hidden));
        assert_eq!(
            cache.get(alice, alice),
            Some(None),
            "nobody blocks themselves"
        );
    }

    #[test]
    fn a_viewer_in_no_block_is_remembered_until_a_block_involves_them() {
        let freshness = Arc::new(Freshness::new(Duration::from_secs(60)));
        let cache = PairCache::new(freshness.clone(), 100);
        let (alice, bob, carol) = (user(), user(), user());
        let mark = cache.mark();
        cache.offer_in_a_block(alice, false, mark, freshness.now());
        assert_eq!(cache.in_a_block(alice), Some(false));
        assert_eq!(cache.in_a_block(bob), None, "bob is not known");
        cache.changed(carol, bob);
        assert_eq!(cache.in_a_block(alice), Some(false), "not alice's block");
        cache.changed(carol, alice);
        assert_eq!(cache.in_a_block(alice), None, "read again after the block");
        cache.offer_in_a_block(alice, false, mark, freshness.now());
        assert_eq!(
            cache.in_a_block(alice),
            None,
            "a read from before the block is not kept"
        );
    }
}

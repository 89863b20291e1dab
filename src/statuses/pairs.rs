//! The read cache of blocks, per pair of users: whether a block stands between
//! a viewer and another user, and what the viewer may still be shown.
//!
//! A read caches only the pairs it asked about, so its cost never depends on
//! how many users block the viewer. A block or unblock (here, or announced by
//! another instance) drops both directions of its pair at once; a read that
//! raced with such a change does not keep what it saw.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use foldhash::fast::RandomState;
use moka::sync::Cache;

use crate::domain::UserId;
use crate::presence::Hidden;

/// Per (viewer, other user): `Some` while a block stands between them.
pub struct PairCache {
    pairs: Cache<(UserId, UserId), Option<Hidden>, RandomState>,
    /// Bumped by every change of a block, before its pairs are dropped.
    changes: AtomicU64,
}

impl PairCache {
    /// A cache of at most `capacity` pairs, each kept at most `ttl`.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        Self {
            pairs: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build_with_hasher(RandomState::default()),
            changes: AtomicU64::new(0),
        }
    }

    /// What blocks say between `viewer` and `other`: `None` when not known here.
    pub fn get(&self, viewer: UserId, other: UserId) -> Option<Option<Hidden>> {
        if viewer == other {
            return Some(None);
        }
        self.pairs.get(&(viewer, other))
    }

    /// A mark to take before reading the database, for [`PairCache::offer`].
    pub fn mark(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Keeps what a read started at `mark` found, unless a block changed since.
    pub fn offer(&self, viewer: UserId, other: UserId, hidden: Option<Hidden>, mark: u64) {
        if viewer == other {
            return;
        }
        self.pairs.insert((viewer, other), hidden);
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
    }

    /// Forgets everything (the notifications may have missed changes).
    pub fn clear(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.pairs.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId::from(uuid::Uuid::new_v4())
    }

    #[test]
    fn a_change_drops_both_directions_and_undoes_a_racing_read() {
        let cache = PairCache::new(Duration::from_secs(60), 100);
        let (alice, bob) = (user(), user());
        let hidden = Some(Hidden { last_seen: None });
        let mark = cache.mark();
        cache.offer(alice, bob, None, mark);
        cache.offer(bob, alice, None, mark);
        assert_eq!(cache.get(alice, bob), Some(None));
        cache.changed(bob, alice);
        assert_eq!(cache.get(alice, bob), None);
        assert_eq!(cache.get(bob, alice), None);
        cache.offer(alice, bob, None, mark);
        assert_eq!(cache.get(alice, bob), None, "read before the block");
        let mark = cache.mark();
        cache.offer(alice, bob, hidden, mark);
        assert_eq!(cache.get(alice, bob), Some(hidden));
        assert_eq!(
            cache.get(alice, alice),
            Some(None),
            "nobody blocks themselves"
        );
    }
}

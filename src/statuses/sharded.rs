//! A concurrent map of users' cache entries that costs one read lock per
//! lookup: no per-read bookkeeping.
//!
//! The read cache used an LRU cache (moka) for its rows; a profile of the
//! server at 15,000 simulated users put about a quarter of its CPU in that
//! cache's lookups and in the access-order bookkeeping every read records.
//! Rows are looked up twenty times per poll and cost one indexed read to
//! fetch again, so recency is not worth tracking on every read: the map is
//! sharded by the key's hash, each shard behind its own `RwLock`, and at its
//! capacity a new entry takes the place of another entry of its shard.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};

use foldhash::fast::RandomState;

/// The most shards: enough that two workers rarely want the same lock.
const SHARDS: usize = 64;
/// The fewest entries a shard holds: a small map has fewer shards, so that
/// its capacity is not split into shards too small to hold an uneven share.
const MIN_PER_SHARD: usize = 256;

/// Entries by key, in shards, at most `capacity` of them (about).
pub struct ShardedMap<K, V> {
    hasher: RandomState,
    shards: Vec<RwLock<HashMap<K, V, RandomState>>>,
    capacity_per_shard: usize,
    len: AtomicUsize,
}

impl<K: Hash + Eq + Clone, V: Clone> ShardedMap<K, V> {
    /// An empty map of at most about `capacity` entries.
    pub fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        let shards = (capacity / MIN_PER_SHARD).clamp(1, SHARDS);
        Self {
            hasher: RandomState::default(),
            shards: (0..shards)
                .map(|_| RwLock::new(HashMap::with_hasher(RandomState::default())))
                .collect(),
            capacity_per_shard: capacity.div_ceil(shards),
            len: AtomicUsize::new(0),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &RwLock<HashMap<K, V, RandomState>> {
        &self.shards[self.shard_index(key)]
    }

    /// The shard of a key; a key and what it borrows as (`String`, `str`) hash alike.
    fn shard_index<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        usize::try_from(self.hasher.hash_one(key)).unwrap_or_default() % self.shards.len()
    }

    /// The entries of `keys`, in their order: each shard's lock is taken once
    /// for all its keys (a room of thousands is looked up in one pass).
    pub fn get_many(&self, keys: &[K]) -> Vec<Option<V>> {
        let mut order: Vec<(usize, usize)> = keys
            .iter()
            .enumerate()
            .map(|(position, key)| (self.shard_index(key), position))
            .collect();
        order.sort_unstable();
        let mut found: Vec<Option<V>> = vec![None; keys.len()];
        for run in order.chunk_by(|a, b| a.0 == b.0) {
            let shard = self.shards[run[0].0]
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            for (_, position) in run {
                found[*position] = shard.get(&keys[*position]).cloned();
            }
        }
        found
    }

    /// A copy of the entry of `key` (or of what it borrows as: a `String` key by `&str`).
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Whether `key` has an entry.
    pub fn contains_key(&self, key: &K) -> bool {
        self.shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key)
    }

    /// Replaces the entry of `key` with what `decide` returns given the entry
    /// held (if any), atomically with respect to other writers of the key;
    /// `None` leaves it as it is.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "the key is kept when the entry is new; callers hand over one they made"
    )]
    pub fn update(&self, key: K, decide: impl FnOnce(Option<&V>) -> Option<V>) {
        let mut shard = self
            .shard(&key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(value) = decide(shard.get(&key)) else {
            return;
        };
        if shard.insert(key.clone(), value).is_none() {
            if shard.len() > self.capacity_per_shard {
                // Full: another entry of the shard makes room.
                let other = shard.keys().find(|held| **held != key).cloned();
                if let Some(other) = other {
                    shard.remove(&other);
                    return;
                }
            }
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forgets the entry of `key`, if any.
    pub fn remove(&self, key: &K) {
        let removed = self
            .shard(key)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        if removed.is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Forgets every entry.
    pub fn clear(&self) {
        for shard in &self.shards {
            let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
            self.len.fetch_sub(shard.len(), Ordering::Relaxed);
            shard.clear();
        }
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_keys_are_found_as_one_at_a_time_would_find_them() {
        let map = ShardedMap::<u32, u32>::new(100_000);
        for key in (0..5_000).step_by(3) {
            map.update(key, |_| Some(key * 2));
        }
        let keys: Vec<u32> = (0..5_000).rev().chain([7, 7, 9]).collect();
        let one_by_one: Vec<Option<u32>> = keys.iter().map(|key| map.get(key)).collect();
        assert_eq!(map.get_many(&keys), one_by_one);
        assert_eq!(map.get_many(&[]), Vec::<Option<u32>>::new());
    }

    #[test]
    fn an_update_sees_the_entry_held_and_may_leave_it() {
        let map = ShardedMap::<u32, u32>::new(100);
        map.update(1, |held| {
            assert_eq!(held, None);
            Some(10)
        });
        map.update(1, |held| held.map(|v| v + 1));
        map.update(1, |_| None);
        assert_eq!(map.get(&1), Some(11));
        assert!(map.contains_key(&1) && !map.contains_key(&2));
        assert_eq!(map.len(), 1);
        map.update(2, |_| Some(20));
        map.remove(&2);
        map.remove(&3);
        assert_eq!((map.get(&2), map.len()), (None, 1));
        map.clear();
        assert_eq!((map.get(&1), map.len()), (None, 0));
    }

    #[test]
    fn it_holds_about_its_capacity_and_the_newest_entry_always() {
        for capacity in [128, 100_000] {
            let map = ShardedMap::<u32, u32>::new(capacity);
            for key in 0..200_000 {
                map.update(key, |_| Some(key));
                assert_eq!(map.get(&key), Some(key), "the entry just written is held");
            }
            let capacity = usize::try_from(capacity).expect("small");
            assert!(
                map.len() <= capacity + SHARDS && map.len() >= capacity * 9 / 10,
                "{} entries for a capacity of {capacity}",
                map.len()
            );
        }
    }
}

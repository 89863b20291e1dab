//! How long a cached entry may be served: while the change listener keeps up,
//! as long as nothing changes it; otherwise for the cache TTL from its read.
//!
//! An entry can only be staler than the changes the listener has applied. The
//! listener sends itself a probe notification every quarter TTL, stamped with
//! when it was sent; Postgres delivers notifications in commit order, so once
//! the probe is back, every write committed before the stamp has been applied
//! to the caches. An entry read at `r` is then as fresh as the later of `r` and
//! the last returned stamp, and it is served while that is within the TTL:
//! writes on other instances still show within the TTL at worst (the
//! contract's bound), and within milliseconds while the listener keeps up, but
//! rows no longer have to be read again every TTL while nothing changes them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The freshness clock shared by the caches and the listener.
pub struct Freshness {
    origin: Instant,
    ttl: u64,
    /// Microseconds since `origin` up to which every committed write has been applied.
    caught_up: AtomicU64,
    /// Tells this instance's probes from other instances'.
    nonce: u64,
}

impl Freshness {
    /// Entries served for `ttl` past the later of their read and the listener's last probe.
    pub fn new(ttl: Duration) -> Self {
        Self {
            origin: Instant::now(),
            ttl: ttl.as_micros().try_into().unwrap_or(u64::MAX),
            caught_up: AtomicU64::new(0),
            nonce: uuid::Uuid::new_v4().as_u64_pair().0,
        }
    }

    /// Now, on this clock (microseconds since it started).
    pub fn now(&self) -> u64 {
        self.origin
            .elapsed()
            .as_micros()
            .try_into()
            .unwrap_or(u64::MAX)
    }

    /// Whether an entry read (or written) at `read_at` may still be served.
    pub fn fresh(&self, read_at: u64) -> bool {
        self.fresh_at(read_at, self.now())
    }

    /// [`Freshness::fresh`] with `now` read once for many entries.
    pub fn fresh_at_now(&self, read_at: u64, now: u64) -> bool {
        self.fresh_at(read_at, now)
    }

    fn fresh_at(&self, read_at: u64, now: u64) -> bool {
        let known_until = read_at.max(self.caught_up.load(Ordering::Acquire));
        now.saturating_sub(known_until) < self.ttl
    }

    /// Whether `later` is less than the TTL after `earlier`: a read started at
    /// `earlier` may answer a request that started at `later`.
    pub fn within_ttl(&self, earlier: u64, later: u64) -> bool {
        later.saturating_sub(earlier) < self.ttl
    }

    /// Whether the listener has applied every write committed up to less than
    /// a TTL ago: entries are then served whenever they were read.
    pub fn keeps_up(&self) -> bool {
        self.fresh_at(0, self.now())
    }

    /// Every write committed before `at` has been applied.
    pub fn caught_up_to(&self, at: u64) {
        self.caught_up.fetch_max(at, Ordering::AcqRel);
    }

    /// The payload of a probe sent now: `p:<nonce>:<sent at>`.
    pub fn probe(&self) -> String {
        format!("p:{:x}:{}", self.nonce, self.now())
    }

    /// Applies a returned probe (`nonce` and `sent` of a `p:` entry); others' probes are ignored.
    pub fn probe_returned(&self, nonce: &str, sent: &str) {
        let ours = u64::from_str_radix(nonce, 16).is_ok_and(|n| n == self.nonce);
        if let (true, Ok(sent)) = (ours, sent.parse()) {
            self.caught_up_to(sent);
        }
    }

    /// How often to probe: a quarter of the TTL, between 10 ms and 1 s.
    pub fn probe_every(&self) -> Duration {
        Duration::from_micros(self.ttl / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_outlives_the_ttl_only_while_probes_come_back() {
        let freshness = Freshness::new(Duration::from_millis(50));
        let ms = 1000;
        let read_at = 10 * ms;
        assert!(freshness.fresh_at(read_at, 59 * ms));
        assert!(
            !freshness.fresh_at(read_at, 60 * ms),
            "no probe came back: the TTL holds"
        );
        freshness.probe_returned("ffff", "100000");
        assert!(
            !freshness.fresh_at(read_at, 60 * ms),
            "another instance's probe"
        );
        let nonce = format!("{:x}", freshness.nonce);
        freshness.probe_returned(&nonce, "100000");
        assert!(freshness.fresh_at(read_at, 149 * ms), "caught up to 100 ms");
        assert!(
            !freshness.fresh_at(read_at, 150 * ms),
            "the probe is a TTL old"
        );
        freshness.probe_returned(&nonce, "20000");
        assert!(
            !freshness.fresh_at(read_at, 150 * ms),
            "an older probe moves nothing back"
        );
    }

    #[test]
    fn a_probe_names_this_instance_and_when_it_was_sent() {
        let freshness = Freshness::new(Duration::from_secs(1));
        let probe = freshness.probe();
        let parts: Vec<&str> = probe.split(':').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "p");
        freshness.probe_returned(parts[1], parts[2]);
        let sent: u64 = parts[2].parse().expect("a probe's stamp is a number");
        assert_eq!(freshness.caught_up.load(Ordering::Acquire), sent);
        assert_eq!(freshness.probe_every(), Duration::from_millis(250));
    }
}

//! Per-user request limits, held in this process's memory.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::domain::UserId;
use crate::error::ApiError;

/// A per-user rate limit (burst plus sustained rate) on one kind of request.
#[derive(Debug)]
pub struct UserRateLimiter<C: Clock = DefaultClock> {
    limiter: RateLimiter<UserId, DefaultKeyedStateStore<UserId>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

impl UserRateLimiter {
    /// A limiter allowing `burst` requests at once and `per_second` sustained.
    pub fn new(burst: NonZeroU32, per_second: f64) -> Self {
        Self::with_clock(burst, per_second, DefaultClock::default())
    }
}

impl<C: Clock + Clone> UserRateLimiter<C> {
    /// The same limiter on another clock, for tests.
    pub fn with_clock(burst: NonZeroU32, per_second: f64, clock: C) -> Self {
        let period = Duration::from_secs_f64(1.0 / per_second).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        Self {
            limiter: RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock.clone()),
            clock,
        }
    }

    /// Counts one request of `user`; `RATE_LIMITED` with the wait when over the limit.
    pub fn check(&self, user: UserId) -> Result<(), ApiError> {
        self.limiter.check_key(&user).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            let whole_seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::RateLimited {
                retry_after_secs: whole_seconds.max(1),
            }
        })
    }

    /// Forgets users whose limit has fully recovered, so memory follows recent traffic only.
    pub fn forget_recovered_users(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// How many users the limiter currently remembers.
    pub fn remembered_users(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;
    use uuid::Uuid;

    use super::*;

    fn limiter(
        burst: u32,
        per_second: f64,
    ) -> (UserRateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let burst = NonZeroU32::new(burst).expect("non-zero");
        (
            UserRateLimiter::with_clock(burst, per_second, clock.clone()),
            clock,
        )
    }

    fn retry_after(result: Result<(), ApiError>) -> u64 {
        match result {
            Err(ApiError::RateLimited { retry_after_secs }) => retry_after_secs,
            other => panic!("expected RATE_LIMITED, got {other:?}"),
        }
    }

    #[test]
    fn a_burst_passes_then_the_sustained_rate_applies() {
        let (limiter, clock) = limiter(3, 2.0);
        let user = UserId::from(Uuid::new_v4());
        for request in 0..3 {
            assert!(
                limiter.check(user).is_ok(),
                "request {request} of the burst"
            );
        }
        assert_eq!(
            retry_after(limiter.check(user)),
            1,
            "a half-second wait rounds up to 1 s"
        );
        clock.advance(Duration::from_millis(500));
        assert!(
            limiter.check(user).is_ok(),
            "one request per half second is sustained"
        );
        assert!(limiter.check(user).is_err());
    }

    #[test]
    fn the_wait_is_rounded_up_to_whole_seconds() {
        let (limiter, _clock) = limiter(1, 0.25);
        let user = UserId::from(Uuid::new_v4());
        assert!(limiter.check(user).is_ok());
        assert_eq!(retry_after(limiter.check(user)), 4);
    }

    #[test]
    fn users_are_limited_separately() {
        let (limiter, _clock) = limiter(1, 1.0);
        let (first, second) = (UserId::from(Uuid::new_v4()), UserId::from(Uuid::new_v4()));
        assert!(limiter.check(first).is_ok());
        assert!(limiter.check(first).is_err());
        assert!(
            limiter.check(second).is_ok(),
            "another user has their own budget"
        );
    }

    #[test]
    fn memory_is_released_for_users_who_stopped_pinging() {
        let (limiter, clock) = limiter(20, 2.0);
        for _ in 0..10_000 {
            limiter
                .check(UserId::from(Uuid::new_v4()))
                .expect("first request passes");
        }
        assert_eq!(limiter.remembered_users(), 10_000);
        clock.advance(Duration::from_secs(1));
        limiter.forget_recovered_users();
        assert_eq!(
            limiter.remembered_users(),
            0,
            "every user's budget had recovered"
        );
    }
}

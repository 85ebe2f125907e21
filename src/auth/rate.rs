//! A token bucket per principal (governor's GCRA), so one caller cannot
//! take the service for itself.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;

/// Requests per second and burst, per principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

/// The buckets of every principal seen lately.
pub struct RateLimiter<C: Clock = DefaultClock> {
    limiter: governor::RateLimiter<
        String,
        DefaultKeyedStateStore<String>,
        C,
        NoOpMiddleware<C::Instant>,
    >,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self::with_clock(limit, DefaultClock::default())
    }
}

impl<C: Clock> RateLimiter<C> {
    pub fn with_clock(limit: RateLimit, clock: C) -> Self {
        let quota = Quota::per_second(limit.per_second).allow_burst(limit.burst);
        Self {
            limiter: governor::RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock),
        }
    }

    /// `Ok` if `principal` may make a request now; else how long to wait.
    pub fn check(&self, principal: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&principal.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// Forgets principals whose buckets are full again, to bound memory.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_gets_its_burst_then_waits_and_others_are_unaffected() {
        let clock = governor::clock::FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(
            RateLimit {
                per_second: NonZeroU32::new(2).unwrap(),
                burst: NonZeroU32::new(3).unwrap(),
            },
            clock.clone(),
        );
        for _ in 0..3 {
            assert_eq!(limiter.check("a"), Ok(()));
        }
        assert_eq!(limiter.check("a"), Err(Duration::from_millis(500)));
        assert_eq!(limiter.check("b"), Ok(()), "buckets are per principal");
        clock.advance(Duration::from_millis(500));
        assert_eq!(limiter.check("a"), Ok(()));
        assert!(limiter.check("a").is_err());
    }
}

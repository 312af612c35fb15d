//! A token bucket, the one rate limit of the server: chat messages per
//! socket, logins per address, scrollback pages per session.
//!
//! Total over every `f64`: a rate or burst that is 0, negative, tiny,
//! huge, infinite or NaN never panics here. The configuration refuses
//! nonsense rates before they get here (`config::MIN_RATE`), but a
//! `Config` can be built in code too, and a rate limit must never be the
//! thing that takes the server down.

use std::time::{Duration, Instant};

/// A token bucket: `rate` messages per second, at most `burst` at once.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: f64, now: Instant) -> Self {
        TokenBucket {
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token; false when the bucket is empty. `rate <= 0` is no
    /// limit (and so is a NaN rate: it allows nothing to be computed).
    pub fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        if rate <= 0.0 || rate.is_nan() {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        // `elapsed * rate` may be infinite (or NaN for 0 × ∞); `min`
        // returns the burst then.
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until the bucket holds a whole token again (zero if it
    /// does), refilling at `rate` per second; `Duration::MAX` when that is
    /// longer than a `Duration` holds (a rate of 5e-20 is one token in
    /// 600 billion years).
    pub fn time_to_token(&self, rate: f64) -> Duration {
        if rate <= 0.0 || rate.is_nan() || self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64((1.0 - self.tokens) / rate).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bucket_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, t0);
        assert!(b.take(1.0, 2.0, t0));
        assert!(b.take(1.0, 2.0, t0));
        assert!(!b.take(1.0, 2.0, t0));
        assert!(b.take(1.0, 2.0, t0 + Duration::from_secs(1)));
        assert!(b.take(0.0, 2.0, t0), "rate 0 is off");
    }

    #[test]
    fn a_rate_too_slow_for_a_duration_waits_for_ever_without_a_panic() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1.0, t0);
        assert!(b.take(5e-20, 1.0, t0));
        assert!(!b.take(5e-20, 1.0, t0));
        assert_eq!(b.time_to_token(5e-20), Duration::MAX);
        assert_eq!(b.time_to_token(f64::MIN_POSITIVE), Duration::MAX);
    }

    /// Far enough apart to overflow any refill, near enough for `Instant`.
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            prop::num::f64::ANY,
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MIN_POSITIVE),
            Just(5e-324),
            Just(5e-20),
            Just(-0.0),
            0.0..=1e6,
        ]
    }

    proptest! {
        /// Any rate and burst, at the same instant, a nanosecond and a
        /// century later: never a panic.
        #[test]
        fn never_panics(rate in any_f64(), burst in any_f64(), takes in 0usize..40) {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(burst, t0);
            for at in [t0, t0 + Duration::from_nanos(1), t0 + CENTURY, t0] {
                for _ in 0..takes {
                    b.take(rate, burst, at);
                    let wait = b.time_to_token(rate);
                    // What the callers do with the wait: a `Retry-After`
                    // in whole seconds, a deadline.
                    let _ = (wait.as_secs_f64().ceil() as u64).max(1);
                    let _ = at.checked_add(wait);
                }
            }
        }
    }
}

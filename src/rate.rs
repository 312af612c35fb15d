//! A token bucket, the one rate limit of the server: chat messages per
//! socket, logins per address, scrollback pages per session.

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

    /// Takes one token; false when the bucket is empty. `rate == 0` is no limit.
    pub fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        if rate <= 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until the bucket holds a whole token again (zero if it
    /// does), refilling at `rate` per second.
    pub fn time_to_token(&self, rate: f64) -> Duration {
        if rate <= 0.0 || self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

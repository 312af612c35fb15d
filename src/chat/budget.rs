//! A session's scrollback budget: how many pages of older messages
//! (`GET /rooms/{n}/history`) one session may ask for, whatever number of
//! connections it asks on (`--scrollback-rate` pages per second,
//! `--scrollback-burst` at once). A page costs the server far more than a
//! chat message (it reads up to 100 messages, from the data file with one,
//! and writes them out), so without a bound one logged-in user pipelining
//! pages could take the loop's whole CPU from everyone else.
//!
//! Opening a room socket is charged to the same budget ([`Spend::Socket`]):
//! its `welcome` is a page of the room's recent messages, and a socket
//! opened and closed again sends a `join` and a `leave` to everyone in the
//! room, so cycling sockets cost a room of 200 about 3 ms of CPU each
//! without a bound.
//!
//! The bucket is kept with the session in the chat state
//! ([`Session::scrollback`](super::Session::scrollback)); the decision is
//! [`spend`], a pure function of that bucket, the limits and the time,
//! made before the page is read. Over the budget the request is answered
//! `429 Too Many Requests` with `Retry-After` ([`OverBudget`]).

use std::time::Instant;

use crate::http::Status;
use crate::rate::TokenBucket;

/// The limits: pages per second and pages at once. A `rate` of 0 turns the
/// budget off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Pages per second (the bucket's refill); 0 = no limit.
    pub rate: f64,
    /// Pages that may be asked for at once (the bucket's size).
    pub burst: f64,
}

/// A page refused: the session spent its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    /// Whole seconds until a page may be asked for again (at least 1): the
    /// `Retry-After` value.
    pub retry_after_secs: u64,
}

impl OverBudget {
    /// The HTTP status the refusal is answered with.
    pub const STATUS: Status = Status::TooManyRequests;
}

/// What a session spends its budget on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// A page of scrollback.
    Page,
    /// A room socket's handshake (a `welcome`, a `join` and later a `leave`).
    Socket,
}

impl Spend {
    /// The `reason` label in `wsrooms_refused_total` of a refusal.
    pub fn metric_reason(self) -> &'static str {
        match self {
            Spend::Page => "scrollback_rate",
            Spend::Socket => "socket_rate",
        }
    }
}

/// Takes one page from `bucket` (made full on a session's first page) at
/// `now`, or says how long to wait.
pub fn spend(
    bucket: &mut Option<TokenBucket>,
    budget: Budget,
    now: Instant,
) -> Result<(), OverBudget> {
    if budget.rate <= 0.0 {
        return Ok(());
    }
    let bucket = bucket.get_or_insert_with(|| TokenBucket::new(budget.burst, now));
    if bucket.take(budget.rate, budget.burst, now) {
        return Ok(());
    }
    let wait = bucket.time_to_token(budget.rate).as_secs_f64();
    Err(OverBudget {
        retry_after_secs: (wait.ceil() as u64).max(1),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const DEFAULT: Budget = Budget {
        rate: 10.0,
        burst: 20.0,
    };

    /// How many of `n` pages asked for at once at `now` are granted.
    fn granted(bucket: &mut Option<TokenBucket>, budget: Budget, n: usize, now: Instant) -> usize {
        (0..n)
            .filter(|_| spend(bucket, budget, now).is_ok())
            .count()
    }

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = None;
        assert_eq!(granted(&mut bucket, DEFAULT, 60, t0), 20, "the burst");
        assert_eq!(
            spend(&mut bucket, DEFAULT, t0),
            Err(OverBudget {
                retry_after_secs: 1
            })
        );
        let later = t0 + Duration::from_millis(500);
        assert_eq!(
            granted(&mut bucket, DEFAULT, 60, later),
            5,
            "10/s for 0.5 s"
        );
        let much_later = later + Duration::from_secs(3600);
        assert_eq!(
            granted(&mut bucket, DEFAULT, 60, much_later),
            20,
            "refills to the burst, not beyond"
        );
    }

    #[test]
    fn a_steady_reader_within_the_rate_is_never_refused() {
        let t0 = Instant::now();
        let mut bucket = None;
        for i in 0..1000 {
            let now = t0 + Duration::from_millis(100 * i);
            assert_eq!(spend(&mut bucket, DEFAULT, now), Ok(()), "page {i}");
        }
    }

    #[test]
    fn retry_after_is_whole_seconds_and_enough() {
        let slow = Budget {
            rate: 0.25,
            burst: 1.0,
        };
        let t0 = Instant::now();
        let mut bucket = None;
        assert_eq!(spend(&mut bucket, slow, t0), Ok(()));
        let refused = spend(&mut bucket, slow, t0).unwrap_err();
        assert_eq!(refused.retry_after_secs, 4, "one page per 4 s");
        let t1 = t0 + Duration::from_millis(1500);
        let refused = spend(&mut bucket, slow, t1).unwrap_err();
        assert_eq!(refused.retry_after_secs, 3, "2.5 s left, rounded up");
        let waited = t1 + Duration::from_secs(refused.retry_after_secs);
        assert_eq!(
            spend(&mut bucket, slow, waited),
            Ok(()),
            "waiting is enough"
        );
    }

    #[test]
    fn a_tiny_rate_asks_for_a_long_wait_without_panicking() {
        let tiny = Budget {
            rate: 5e-20,
            burst: 1.0,
        };
        let t0 = Instant::now();
        let mut bucket = None;
        assert_eq!(spend(&mut bucket, tiny, t0), Ok(()));
        let refused = spend(&mut bucket, tiny, t0).unwrap_err();
        assert!(refused.retry_after_secs > 1 << 40, "{refused:?}");
    }

    #[test]
    fn rate_zero_is_off() {
        let off = Budget {
            rate: 0.0,
            burst: 1.0,
        };
        let mut bucket = None;
        assert_eq!(granted(&mut bucket, off, 10_000, Instant::now()), 10_000);
        assert!(bucket.is_none(), "no bucket is kept while off");
    }
}

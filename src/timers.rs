//! One timer structure for the whole server: entries of (when, what),
//! generic over "what" (the loop's own key type). The poll loop sleeps until
//! the earliest entry, then pops the due ones.
//!
//! Entries are never removed early. The loop's keys name their targets by
//! generational ids (see `table`), and each target keeps its own current
//! deadline; an entry that no longer matches is skipped when it comes due.
//! So a timer of a closed connection never fires on a new connection in the
//! same slot, and moving a deadline costs nothing.
//!
//! The entries are kept in an ordered map from an instant to the keys due
//! then. Keep-alive deadlines are rounded to shared ticks (see
//! `conn::machine`), so thousands of sockets fall into a few hundred
//! instants: adding is a short search of a small tree plus a push, and
//! popping takes from the first bucket. (A binary heap of every entry was
//! the largest user-space cost of a ping round at 12,000 sockets: about
//! 28 scattered comparisons per pop.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Entries of (when, what), earliest first.
#[derive(Debug)]
pub struct Timers<K> {
    /// The keys due at each instant (no bucket is left empty).
    buckets: BTreeMap<Instant, Vec<K>>,
    /// Entries in all buckets.
    len: usize,
    /// Emptied buckets kept for reuse, so that steady ticks allocate nothing
    /// (at most `SPARE_BUCKETS`, each of at most `SPARE_CAPACITY` entries).
    spare: Vec<Vec<K>>,
}

/// Emptied buckets kept for reuse.
const SPARE_BUCKETS: usize = 64;
/// A larger emptied bucket (after a burst) is freed, not kept.
const SPARE_CAPACITY: usize = 1024;

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            buckets: BTreeMap::new(),
            len: 0,
            spare: Vec::new(),
        }
    }
}

impl<K> Timers<K> {
    /// No entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry due at `at`.
    pub fn add(&mut self, at: Instant, key: K) {
        // A new instant takes an emptied bucket, or a bucket for one key:
        // most instants that are not keep-alive ticks (a request's head
        // timeout, a reservation) never get a second key.
        let spare = &mut self.spare;
        let bucket = self
            .buckets
            .entry(at)
            .or_insert_with(|| spare.pop().unwrap_or_else(|| Vec::with_capacity(1)));
        bucket.push(key);
        self.len += 1;
    }

    /// How long the poll may sleep: until the earliest entry, rounded up to
    /// a whole millisecond (epoll counts milliseconds; rounding down would
    /// wake up early and spin).
    pub fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        self.buckets.first_key_value().map(|(at, _)| {
            let wait = at.saturating_duration_since(now);
            let millis = wait.as_nanos().div_ceil(1_000_000) as u64;
            Duration::from_millis(millis)
        })
    }

    /// Removes and returns an entry that is due, if any. Entries due at
    /// the same instant come in no particular order.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        let mut first = self.buckets.first_entry()?;
        let at = *first.key();
        if at > now {
            return None;
        }
        let key = first.get_mut().pop()?;
        if first.get().is_empty() {
            let bucket = first.remove();
            if self.spare.len() < SPARE_BUCKETS && bucket.capacity() <= SPARE_CAPACITY {
                self.spare.push(bucket);
            }
        }
        self.len -= 1;
        Some((at, key))
    }

    /// How many entries (due or not, stale or not).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_order() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        let (a, b) = ("a", "b");
        timers.add(t0 + Duration::from_millis(20), b);
        timers.add(t0 + Duration::from_millis(10), a);
        assert_eq!(timers.poll_timeout(t0), Some(Duration::from_millis(10)));
        assert_eq!(timers.pop_due(t0), None);
        let later = t0 + Duration::from_millis(30);
        assert_eq!(timers.pop_due(later).map(|e| e.1), Some(a));
        assert_eq!(timers.pop_due(later).map(|e| e.1), Some(b));
        assert!(timers.is_empty());
    }

    #[test]
    fn entries_at_one_instant_all_come_out_once() {
        let t0 = Instant::now();
        let tick = t0 + Duration::from_millis(100);
        let mut timers = Timers::new();
        for key in 0..100 {
            timers.add(tick, key);
        }
        timers.add(t0 + Duration::from_millis(50), 1000);
        assert_eq!(timers.len(), 101);
        assert_eq!(
            timers.pop_due(t0 + Duration::from_millis(99)).map(|e| e.1),
            Some(1000)
        );
        assert_eq!(timers.pop_due(t0 + Duration::from_millis(99)), None);
        assert_eq!(timers.poll_timeout(t0), Some(Duration::from_millis(100)));
        let mut keys: Vec<i32> = std::iter::from_fn(|| timers.pop_due(tick).map(|e| e.1)).collect();
        keys.sort();
        assert_eq!(keys, (0..100).collect::<Vec<_>>());
        assert!(timers.is_empty());
        assert_eq!(timers.poll_timeout(t0), None);
    }
}

//! One timer structure for the whole server: a min-heap of (when, what),
//! generic over "what" (the loop's own key type). The poll loop sleeps until
//! the earliest entry, then pops the due ones.
//!
//! Entries are never removed early. The loop's keys name their targets by
//! generational ids (see `table`), and each target keeps its own current
//! deadline; an entry that no longer matches is skipped when it comes due.
//! So a timer of a closed connection never fires on a new connection in the
//! same slot, and moving a deadline costs nothing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Entries of (when, what), earliest first.
#[derive(Debug)]
pub struct Timers<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord> Timers<K> {
    /// No entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry due at `at`.
    pub fn add(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// How long the poll may sleep: until the earliest entry, rounded up to
    /// a whole millisecond (epoll counts milliseconds; rounding down would
    /// wake up early and spin).
    pub fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        self.heap.peek().map(|Reverse((at, _))| {
            let wait = at.saturating_duration_since(now);
            let millis = wait.as_nanos().div_ceil(1_000_000) as u64;
            Duration::from_millis(millis)
        })
    }

    /// Removes and returns an entry that is due, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// How many entries (due or not, stale or not).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
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
}

//! The `typing` notice's limit: at most one per [`TYPING_EVERY`] per
//! session; more are dropped silently. Only sessions that typed lately
//! have an entry, so an idle socket costs nothing here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::SessionId;

/// The least time between two `typing` events of one session.
pub const TYPING_EVERY: Duration = Duration::from_secs(3);

/// When each session that typed lately last had a `typing` event sent.
#[derive(Debug, Default)]
pub struct Typing {
    last: HashMap<SessionId, Instant>,
    /// The size after the last sweep: the next sweep comes when the map
    /// has doubled since, so sweeping costs O(1) per notice on average.
    swept: usize,
}

impl Typing {
    /// May `session` send a `typing` event at `now`? If so, counts it.
    pub fn allow(&mut self, session: SessionId, now: Instant) -> bool {
        if let Some(&last) = self.last.get(&session)
            && now.saturating_duration_since(last) < TYPING_EVERY
        {
            return false;
        }
        self.last.insert(session, now);
        if self.last.len() > 2 * self.swept + 64 {
            self.last
                .retain(|_, &mut t| now.saturating_duration_since(t) < TYPING_EVERY);
            self.swept = self.last.len();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_three_seconds_per_session_and_the_map_stays_small() {
        let mut t = Typing::default();
        let t0 = Instant::now();
        let (a, b) = (SessionId::new(1, 1), SessionId::new(2, 1));
        assert!(t.allow(a, t0));
        assert!(t.allow(b, t0));
        assert!(!t.allow(a, t0 + Duration::from_millis(2999)));
        assert!(t.allow(a, t0 + TYPING_EVERY));
        for i in 0..10_000u32 {
            let later = t0 + TYPING_EVERY * (i + 2);
            assert!(t.allow(SessionId::new(i + 3, 1), later));
        }
        assert!(t.last.len() < 200, "{}", t.last.len());
    }
}

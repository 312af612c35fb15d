//! Limits per client address: connections open at once
//! (`--max-connections-per-ip`, `503`) and logins per second
//! (`--login-rate-per-ip` / `--login-burst-per-ip`, `429` with
//! `Retry-After`), so that one address cannot take every connection or
//! session for everyone else.
//!
//! Sans-I/O: the server says what happened (a connection opened or closed, a
//! login arrived) and when (`now` is passed in), and gets an answer. The
//! tests below drive it with a made-up clock.
//!
//! ## One bounded table
//!
//! Both limits share one table of addresses: how many connections each has
//! open, and its login token bucket. A client behind a trusted proxy names
//! its own address (`X-Forwarded-For`), so the table must not grow with the
//! number of addresses it sees: it holds at most [`TABLE_CAPACITY`] entries
//! (or `--max-connections`, if that is larger, see below) and makes room by
//! evicting the least recently used entry.
//!
//! **An entry with open connections is never evicted.** Forgetting it would
//! restart its count at zero (the limit bypassed by cycling addresses) and
//! its connections' closes would then decrement a count they never raised.
//! Every such *busy* entry holds at least one counted connection, and every
//! counted connection is one of the server's at most `--max-connections`.
//! The capacity is at least `--max-connections`, so when a new address comes
//! in, at least one entry is idle or a slot is free. Should the table still
//! be all busy, the address is *not tracked* (served without counting: its
//! connection closes decrement nothing) rather than refused: a full table
//! never locks out addresses that have done nothing.
//!
//! Evicting an idle entry forgets at most a partly used login bucket: an
//! address that floods enough others to push itself out gets a fresh burst,
//! which costs it as many logins as it spent doing so.
//!
//! ## Why hand-written
//!
//! The entry to evict is the least recent one *without open connections*.
//! A general LRU cache (the `lru` crate) evicts the least recent entry
//! whatever it holds, so skipping busy entries would mean walking its list.
//! Instead: a `HashMap` of entries, each stamped with a counter when used,
//! and a queue of `(stamp, address)` for idle entries, oldest first. Using an
//! entry pushes a new pair and leaves the old one behind as stale; eviction
//! pops from the front and skips stale pairs and busy entries. The queue is
//! compacted once it holds twice as many pairs as there are entries, so
//! every operation is O(1) amortised and the queue is bounded too.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

use crate::config::Config;
use crate::http::Status;
use crate::rate::TokenBucket;

/// Most addresses the table holds (when `--max-connections` is lower). An
/// entry costs about 80 bytes with its share of the map and the queue, so
/// the full table is about 5 MB.
pub const TABLE_CAPACITY: usize = 65_536;

/// Why a connection or a login from an address is refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// `--max-connections-per-ip` connections are open from it: `503`.
    Connections,
    /// Its login bucket is empty: `429`, with `Retry-After`.
    LoginRate {
        /// Seconds until a token is back (at least 1): the `Retry-After` value.
        retry_after_secs: u64,
    },
}

impl Refusal {
    /// The HTTP status the refusal is answered with.
    pub fn status(self) -> Status {
        match self {
            Refusal::Connections => Status::ServiceUnavailable,
            Refusal::LoginRate { .. } => Status::TooManyRequests,
        }
    }

    /// Its `reason` label in `wsrooms_refused_total`.
    pub fn metric_reason(self) -> &'static str {
        match self {
            Refusal::Connections => "ip_connections",
            Refusal::LoginRate { .. } => "login_rate",
        }
    }
}

/// What the table knows about one address.
#[derive(Debug)]
struct Entry {
    /// Counted connections open from it.
    open: usize,
    /// Its login bucket, once it has logged in (with the login limit on).
    logins: Option<TokenBucket>,
    /// When it was last used (the table's counter): its place in the queue.
    used: u64,
}

/// The per-address limits and their table.
#[derive(Debug)]
pub struct PeerLimits {
    max_connections: usize,
    login_rate: f64,
    login_burst: f64,
    capacity: usize,
    entries: HashMap<IpAddr, Entry>,
    /// `(stamp, address)` of idle entries, least recently used first; a
    /// pair whose stamp is not its entry's `used` any more is stale.
    idle: VecDeque<(u64, IpAddr)>,
    clock: u64,
}

impl PeerLimits {
    /// The limits of `config`; the table holds at least as many addresses as
    /// `config.max_connections` (see the module doc).
    pub fn new(config: &Config) -> Self {
        Self::with_capacity(
            config.max_connections_per_ip,
            config.login_rate_per_ip,
            config.login_burst_per_ip,
            TABLE_CAPACITY.max(config.max_connections),
        )
    }

    /// `max_connections` 0 or `login_rate` 0 turns that limit off.
    pub fn with_capacity(
        max_connections: usize,
        login_rate: f64,
        login_burst: f64,
        capacity: usize,
    ) -> Self {
        PeerLimits {
            max_connections,
            login_rate,
            login_burst,
            capacity: capacity.max(1),
            entries: HashMap::new(),
            idle: VecDeque::new(),
            clock: 0,
        }
    }

    /// Addresses in the table now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A connection from `ip` opens. `Ok(Some(ip))`: it is counted, call
    /// [`close`](Self::close) with that address when it ends. `Ok(None)`:
    /// not counted (limit off, or the table is all busy).
    pub fn open(&mut self, ip: IpAddr) -> Result<Option<IpAddr>, Refusal> {
        if self.max_connections == 0 {
            return Ok(None);
        }
        let max = self.max_connections;
        let Some(entry) = self.slot(ip) else {
            return Ok(None);
        };
        if entry.open >= max {
            return Err(Refusal::Connections);
        }
        entry.open += 1;
        self.touch(ip);
        Ok(Some(ip))
    }

    /// A connection counted by [`open`](Self::open) under `ip` has ended.
    pub fn close(&mut self, ip: IpAddr) {
        let Some(entry) = self.entries.get_mut(&ip) else {
            return;
        };
        entry.open = entry.open.saturating_sub(1);
        if entry.open > 0 {
            return;
        }
        if entry.logins.is_none() {
            // Nothing left to remember about it.
            self.entries.remove(&ip);
        } else {
            self.touch(ip);
        }
    }

    /// A `POST /login` from `ip` at `now` (every one counts, whatever its
    /// answer turns out to be).
    pub fn login(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if self.login_rate <= 0.0 {
            return Ok(());
        }
        let (rate, burst) = (self.login_rate, self.login_burst);
        let Some(entry) = self.slot(ip) else {
            return Ok(());
        };
        let bucket = entry
            .logins
            .get_or_insert_with(|| TokenBucket::new(burst, now));
        let taken = bucket.take(rate, burst, now);
        let wait = bucket.time_to_token(rate);
        self.touch(ip);
        if taken {
            Ok(())
        } else {
            let retry_after_secs = (wait.as_secs_f64().ceil() as u64).max(1);
            Err(Refusal::LoginRate { retry_after_secs })
        }
    }

    /// The entry of `ip`, made if need be (evicting the least recently used
    /// idle entry when full); `None` when the table is full of busy entries.
    fn slot(&mut self, ip: IpAddr) -> Option<&mut Entry> {
        if !self.entries.contains_key(&ip) {
            if self.entries.len() >= self.capacity && !self.evict_one() {
                return None;
            }
            self.entries.insert(
                ip,
                Entry {
                    open: 0,
                    logins: None,
                    used: 0,
                },
            );
        }
        self.entries.get_mut(&ip)
    }

    /// Removes the least recently used idle entry; false if there is none.
    fn evict_one(&mut self) -> bool {
        while let Some((stamp, ip)) = self.idle.pop_front() {
            let live = self
                .entries
                .get(&ip)
                .is_some_and(|e| e.used == stamp && e.open == 0);
            if live {
                self.entries.remove(&ip);
                return true;
            }
        }
        false
    }

    /// Marks `ip` as just used; an idle entry goes to the back of the queue.
    fn touch(&mut self, ip: IpAddr) {
        self.clock += 1;
        let Some(entry) = self.entries.get_mut(&ip) else {
            return;
        };
        entry.used = self.clock;
        if entry.open == 0 {
            self.idle.push_back((self.clock, ip));
            if self.idle.len() > 2 * self.entries.len() + 64 {
                let entries = &self.entries;
                self.idle.retain(|(stamp, ip)| {
                    entries
                        .get(ip)
                        .is_some_and(|e| e.used == *stamp && e.open == 0)
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn connections_are_counted_per_address() {
        let mut t = PeerLimits::with_capacity(3, 0.0, 1.0, 100);
        for _ in 0..3 {
            assert_eq!(t.open(ip(1)), Ok(Some(ip(1))));
        }
        assert_eq!(t.open(ip(1)), Err(Refusal::Connections));
        assert_eq!(t.open(ip(2)), Ok(Some(ip(2))), "another address");
        t.close(ip(1));
        assert_eq!(t.open(ip(1)), Ok(Some(ip(1))), "after one closed");
        assert_eq!(t.open(ip(1)), Err(Refusal::Connections));
    }

    #[test]
    fn an_address_without_connections_or_logins_is_forgotten() {
        let mut t = PeerLimits::with_capacity(3, 0.0, 1.0, 100);
        t.open(ip(1)).unwrap();
        t.open(ip(1)).unwrap();
        t.close(ip(1));
        assert_eq!(t.len(), 1);
        t.close(ip(1));
        assert!(t.is_empty());
        // A close too many (or of an unknown address) changes nothing.
        t.close(ip(1));
        t.close(ip(9));
        assert!(t.is_empty());
    }

    #[test]
    fn limits_off_keep_no_state() {
        let mut t = PeerLimits::with_capacity(0, 0.0, 1.0, 100);
        let now = Instant::now();
        for n in 0..100 {
            assert_eq!(t.open(ip(1)), Ok(None));
            assert_eq!(t.login(ip(n), now), Ok(()));
        }
        assert!(t.is_empty());
    }

    #[test]
    fn logins_take_from_a_bucket_and_say_when_to_retry() {
        let t0 = Instant::now();
        let mut t = PeerLimits::with_capacity(0, 1.0, 2.0, 100);
        assert_eq!(t.login(ip(1), t0), Ok(()));
        assert_eq!(t.login(ip(1), t0), Ok(()));
        assert_eq!(
            t.login(ip(1), t0),
            Err(Refusal::LoginRate {
                retry_after_secs: 1
            })
        );
        assert_eq!(t.login(ip(2), t0), Ok(()), "another address");
        // A refused login counts too: half a second later the bucket has
        // half a token, and still nothing to give.
        assert!(t.login(ip(1), t0 + Duration::from_millis(500)).is_err());
        assert_eq!(t.login(ip(1), t0 + Duration::from_millis(1000)), Ok(()));

        // 0.1 per second: the wait is ten seconds, rounded up.
        let mut slow = PeerLimits::with_capacity(0, 0.1, 1.0, 100);
        assert_eq!(slow.login(ip(1), t0), Ok(()));
        assert_eq!(
            slow.login(ip(1), t0 + Duration::from_millis(500)),
            Err(Refusal::LoginRate {
                retry_after_secs: 10
            })
        );
    }

    #[test]
    fn a_flood_of_addresses_keeps_the_table_at_its_capacity() {
        let t0 = Instant::now();
        let mut t = PeerLimits::with_capacity(5, 1.0, 3.0, 64);
        for n in 0..100_000 {
            let now = t0 + Duration::from_millis(n as u64);
            assert_eq!(t.login(ip(n), now), Ok(()));
            if n % 2 == 0 {
                let counted = t.open(ip(n)).unwrap();
                assert_eq!(counted, Some(ip(n)));
                t.close(ip(n));
            }
            assert!(t.len() <= 64, "{} entries", t.len());
            assert!(t.idle.len() <= 2 * 64 + 64 + 1, "{} queued", t.idle.len());
        }
        assert_eq!(t.len(), 64);
    }

    #[test]
    fn the_least_recently_used_entry_is_the_one_evicted() {
        let t0 = Instant::now();
        let mut t = PeerLimits::with_capacity(0, 0.001, 1.0, 2);
        assert!(t.login(ip(1), t0).is_ok());
        assert!(t.login(ip(2), t0).is_ok());
        assert!(t.login(ip(1), t0).is_err(), "1 used again: most recent");
        assert!(t.login(ip(3), t0).is_ok(), "evicts 2");
        assert!(t.login(ip(1), t0).is_err(), "1 was kept, bucket and all");
        assert!(
            t.login(ip(2), t0).is_ok(),
            "2 was forgotten: a fresh bucket"
        );
    }

    #[test]
    fn busy_addresses_are_never_evicted() {
        let t0 = Instant::now();
        let mut t = PeerLimits::with_capacity(2, 1.0, 1.0, 4);
        // Four addresses at their limit fill the table.
        for n in 1..=4 {
            t.open(ip(n)).unwrap();
            t.open(ip(n)).unwrap();
        }
        // A flood of others finds no idle entry: served, not tracked.
        for n in 100..1000 {
            assert_eq!(t.open(ip(n)), Ok(None));
            assert_eq!(t.login(ip(n), t0), Ok(()));
            t.close(ip(n)); // an untracked close: nothing to undo
        }
        assert_eq!(t.len(), 4);
        // The four kept their counts: still at the limit, then back to free.
        for n in 1..=4 {
            assert_eq!(t.open(ip(n)), Err(Refusal::Connections));
            t.close(ip(n));
            t.close(ip(n));
        }
        assert!(t.is_empty());
        // Once idle, they make room as usual.
        assert_eq!(t.open(ip(100)), Ok(Some(ip(100))));
    }

    #[test]
    fn an_idle_entry_makes_room_while_others_are_busy() {
        let t0 = Instant::now();
        let mut t = PeerLimits::with_capacity(1, 0.001, 1.0, 3);
        t.open(ip(1)).unwrap();
        t.login(ip(2), t0).unwrap(); // idle, with a bucket
        t.open(ip(3)).unwrap();
        // ip(4) takes ip(2)'s place; the busy ones keep their counts.
        assert_eq!(t.open(ip(4)), Ok(Some(ip(4))));
        assert_eq!(t.open(ip(1)), Err(Refusal::Connections));
        assert_eq!(t.open(ip(3)), Err(Refusal::Connections));
        // Now all three are busy: ip(2) is served without being tracked.
        assert_eq!(t.login(ip(2), t0), Ok(()));
        assert_eq!(t.len(), 3);
    }
}

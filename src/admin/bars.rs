//! The operator's bars: who may not log in (or open a socket) for a while.
//! Two kinds, both set through the admin API:
//!
//! - an **address bar** (`POST /admin/bar`): every login and every room
//!   socket from that client address is refused with `403`;
//! - a **room bar** (left by `POST /admin/rooms/{n}/remove`): a login to
//!   that room is refused with `403` when its id has a look-alike key in
//!   common with the removed id ([`IdKeys::meets`], the rule the room
//!   itself uses), or when it comes from the removed user's address.
//!
//! Bars live in memory; with a data file the core also keeps each one
//! there as it is set, and puts back those still running at start (see
//! `Core::use_store`), so a restart does not lift them. They end by time: each
//! holds the instant it ends, and one that has ended is ignored at once and
//! forgotten at the next change (no timer). There are at most
//! [`MAX_BARS`] of both kinds together; barring again what is barred
//! already moves its end rather than adding one; when the table is full
//! of bars still running, a new one is refused ([`Full`], a `503` to the
//! operator) rather than lifting another without saying so.
//!
//! No I/O: the time is passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::chat::names::IdKeys;

/// The most bars held at once, of both kinds together.
pub const MAX_BARS: usize = 10_000;

/// The table is full of bars still running: this one was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Why a login or a socket is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Barred {
    /// The client's address is barred from every login and socket.
    Address {
        /// When the bar ends.
        until: Instant,
    },
    /// The id (or the address) was removed from this room.
    Room {
        /// The room number.
        room: u32,
        /// When the bar ends.
        until: Instant,
    },
}

impl Barred {
    /// What the login page shows: why, and for how long (in whole minutes,
    /// rounded up).
    pub fn message(&self, now: Instant) -> String {
        let minutes = |until: &Instant| {
            let left = until.saturating_duration_since(now).as_secs();
            left.div_ceil(60).max(1)
        };
        match self {
            Barred::Address { until } => format!(
                "Logins from your address are barred by the operator for {} more minute(s).",
                minutes(until)
            ),
            Barred::Room { room, until } => format!(
                "You were removed from room {room} by the operator; you may come back in {} minute(s).",
                minutes(until)
            ),
        }
    }
}

/// A room bar: the removed id's keys and the address its socket came from.
#[derive(Debug, Clone)]
struct RoomBar {
    keys: IdKeys,
    address: Option<IpAddr>,
    until: Instant,
}

/// Every bar in force (and ended ones not forgotten yet).
#[derive(Debug, Default)]
pub struct Bars {
    addresses: HashMap<IpAddr, Instant>,
    rooms: HashMap<u32, Vec<RoomBar>>,
    /// Room bars in `rooms`, all rooms together.
    room_bars: usize,
}

impl Bars {
    /// Bars held now (ended ones included until they are forgotten).
    pub fn len(&self) -> usize {
        self.addresses.len() + self.room_bars
    }

    /// No bar at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bars every login and socket from `address` for `minutes` from `now`
    /// (a bar already there ends then instead); returns when it ends.
    pub fn bar_address(
        &mut self,
        address: IpAddr,
        minutes: u32,
        now: Instant,
    ) -> Result<Instant, Full> {
        self.bar_address_until(address, now + minutes_of(minutes), now)
    }

    /// [`Bars::bar_address`] until `until` (a bar put back at start).
    pub fn bar_address_until(
        &mut self,
        address: IpAddr,
        until: Instant,
        now: Instant,
    ) -> Result<Instant, Full> {
        let address = address.to_canonical();
        if !self.addresses.contains_key(&address) {
            self.make_room(now)?;
        }
        self.addresses.insert(address, until);
        Ok(until)
    }

    /// Bars logins to room `room` by an id meeting `keys`, or from
    /// `address`, for `minutes` from `now`. A bar of the same id there that
    /// is still running ends then instead, and keeps its address when this
    /// one has none. Returns the address the bar holds now.
    pub fn bar_in_room(
        &mut self,
        room: u32,
        keys: IdKeys,
        address: Option<IpAddr>,
        minutes: u32,
        now: Instant,
    ) -> Result<Option<IpAddr>, Full> {
        self.bar_in_room_until(room, keys, address, now + minutes_of(minutes), now)
    }

    /// [`Bars::bar_in_room`] until `until` (a bar put back at start). A
    /// bar of the same id that has ended is replaced whole, as if it had
    /// been forgotten.
    pub fn bar_in_room_until(
        &mut self,
        room: u32,
        keys: IdKeys,
        address: Option<IpAddr>,
        until: Instant,
        now: Instant,
    ) -> Result<Option<IpAddr>, Full> {
        let address = address.map(|a| a.to_canonical());
        let same = |b: &RoomBar| b.keys.meets(&keys);
        if let Some(bar) = self
            .rooms
            .get_mut(&room)
            .and_then(|l| l.iter_mut().find(|b| same(b)))
        {
            if bar.until > now {
                bar.address = address.or(bar.address);
            } else {
                (bar.keys, bar.address) = (keys, address);
            }
            bar.until = until;
            return Ok(bar.address);
        }
        self.make_room(now)?;
        self.rooms.entry(room).or_default().push(RoomBar {
            keys,
            address,
            until,
        });
        self.room_bars += 1;
        Ok(address)
    }

    /// Is `address` barred now?
    pub fn address_barred(&self, address: IpAddr, now: Instant) -> Option<Barred> {
        let &until = self.addresses.get(&address.to_canonical())?;
        (until > now).then_some(Barred::Address { until })
    }

    /// Is a login of `user` from `address` to room `room` barred now? By
    /// the address first; the id's keys (a few microseconds to compute)
    /// only when the room has a bar.
    pub fn login_barred(
        &self,
        room: u32,
        user: &str,
        address: IpAddr,
        now: Instant,
    ) -> Option<Barred> {
        if let Some(barred) = self.address_barred(address, now) {
            return Some(barred);
        }
        let bars = self.rooms.get(&room)?;
        let address = address.to_canonical();
        let live = || bars.iter().filter(|b| b.until > now);
        if let Some(bar) = live().find(|b| b.address == Some(address)) {
            return Some(Barred::Room {
                room,
                until: bar.until,
            });
        }
        live().next()?;
        let keys = IdKeys::of(user);
        live()
            .find(|b| b.keys.meets(&keys))
            .map(|bar| Barred::Room {
                room,
                until: bar.until,
            })
    }

    /// Makes room for one more bar: forgets the ended ones when the table
    /// is full; `Full` if it stays full.
    fn make_room(&mut self, now: Instant) -> Result<(), Full> {
        if self.len() < MAX_BARS {
            return Ok(());
        }
        self.forget_ended(now);
        match self.len() < MAX_BARS {
            true => Ok(()),
            false => Err(Full),
        }
    }

    /// Forgets every bar that has ended by `now`.
    pub fn forget_ended(&mut self, now: Instant) {
        self.addresses.retain(|_, until| *until > now);
        self.rooms.retain(|_, bars| {
            bars.retain(|b| b.until > now);
            !bars.is_empty()
        });
        self.room_bars = self.rooms.values().map(Vec::len).sum();
    }
}

fn minutes_of(minutes: u32) -> Duration {
    Duration::from_secs(u64::from(minutes) * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_address_bar_ends_after_its_minutes() {
        let now = Instant::now();
        let mut bars = Bars::default();
        let until = bars.bar_address(ip("192.0.2.7"), 2, now).unwrap();
        assert_eq!(until, now + Duration::from_secs(120));
        assert!(bars.address_barred(ip("192.0.2.7"), now).is_some());
        assert!(bars.address_barred(ip("192.0.2.8"), now).is_none());
        let almost = now + Duration::from_secs(119);
        assert!(bars.address_barred(ip("192.0.2.7"), almost).is_some());
        assert!(bars.address_barred(ip("192.0.2.7"), until).is_none());
        bars.forget_ended(until);
        assert!(bars.is_empty());
    }

    #[test]
    fn a_room_bar_holds_the_id_its_look_alikes_and_the_address() {
        let now = Instant::now();
        let mut bars = Bars::default();
        let keys = IdKeys::of("alice");
        bars.bar_in_room(5, keys, Some(ip("192.0.2.7")), 60, now)
            .unwrap();
        let other = ip("198.51.100.1");
        for user in ["alice", "Alice", "aIice", "\u{430}lice"] {
            assert!(
                bars.login_barred(5, user, other, now).is_some(),
                "{user} looks like alice"
            );
        }
        assert!(bars.login_barred(5, "bob", other, now).is_none());
        assert!(
            bars.login_barred(6, "alice", other, now).is_none(),
            "another room"
        );
        let from_her_address = bars.login_barred(5, "bob", ip("192.0.2.7"), now);
        assert!(matches!(
            from_her_address,
            Some(Barred::Room { room: 5, .. })
        ));
        let later = now + Duration::from_secs(3600);
        assert!(bars.login_barred(5, "alice", other, later).is_none());
    }

    #[test]
    fn barring_again_moves_the_end_and_adds_nothing() {
        let now = Instant::now();
        let mut bars = Bars::default();
        bars.bar_address(ip("192.0.2.7"), 1, now).unwrap();
        bars.bar_address(ip("192.0.2.7"), 5, now).unwrap();
        bars.bar_in_room(5, IdKeys::of("bob"), None, 1, now)
            .unwrap();
        bars.bar_in_room(5, IdKeys::of("b0b"), None, 5, now)
            .unwrap();
        assert_eq!(bars.len(), 2);
        let later = now + Duration::from_secs(120);
        assert!(bars.address_barred(ip("192.0.2.7"), later).is_some());
        assert!(bars.login_barred(5, "bob", ip("::1"), later).is_some());
    }

    #[test]
    fn barring_again_keeps_a_running_bars_address_not_an_ended_ones() {
        let now = Instant::now();
        let mut bars = Bars::default();
        let (first, other) = (ip("192.0.2.7"), ip("198.51.100.1"));
        let held = bars.bar_in_room(5, IdKeys::of("bob"), Some(first), 10, now);
        assert_eq!(held, Ok(Some(first)));
        // Running: barred again without an address, it keeps the first.
        let held = bars.bar_in_room(5, IdKeys::of("b0b"), None, 1, now);
        assert_eq!(held, Ok(Some(first)));
        let soon = now + Duration::from_secs(30);
        assert!(bars.login_barred(5, "carol", first, soon).is_some());
        // Shortened to one minute: over after it, address and id alike.
        let later = now + Duration::from_secs(61);
        assert!(bars.login_barred(5, "carol", first, later).is_none());
        assert!(bars.login_barred(5, "bob", other, later).is_none());
        // Ended (not forgotten yet): barred again, it starts afresh.
        let held = bars.bar_in_room(5, IdKeys::of("bob"), None, 5, later);
        assert_eq!(held, Ok(None));
        assert!(bars.login_barred(5, "carol", first, later).is_none());
        assert!(bars.login_barred(5, "bob", other, later).is_some());
        assert_eq!(bars.len(), 1);
    }

    #[test]
    fn a_full_table_refuses_until_bars_end() {
        let now = Instant::now();
        let mut bars = Bars::default();
        for n in 0..MAX_BARS as u32 {
            let address = IpAddr::from(n.to_be_bytes());
            bars.bar_address(address, 1, now).unwrap();
        }
        assert_eq!(bars.bar_address(ip("::1"), 1, now), Err(Full));
        assert_eq!(
            bars.bar_in_room(1, IdKeys::of("x"), None, 1, now),
            Err(Full)
        );
        // Barring again what is barred needs no room.
        assert!(bars.bar_address(IpAddr::from([0, 0, 0, 1]), 9, now).is_ok());
        let later = now + Duration::from_secs(61);
        assert!(bars.bar_address(ip("::1"), 1, later).is_ok());
        assert_eq!(bars.len(), 2, "the ended ones were forgotten");
    }

    #[test]
    fn the_message_counts_whole_minutes_left() {
        let now = Instant::now();
        let until = now + Duration::from_secs(61);
        let text = Barred::Room { room: 5, until }.message(now);
        assert!(
            text.contains("room 5") && text.contains("2 minute"),
            "{text}"
        );
        let text = Barred::Address { until }.message(until);
        assert!(text.contains("1 more minute"), "{text}");
    }
}

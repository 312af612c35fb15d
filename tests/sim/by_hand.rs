//! Driving the core by hand, one client at a time (for the tests that
//! are not the seeded simulation: `core_by_hand.rs`, `edits_by_hand.rs`):
//! a core on a virtual clock, a turn, a client reading its pipe, a login
//! and a room socket.

use std::time::{Duration, Instant};

use wsrooms::Config;
use wsrooms::core::Core;

use super::client::{Client, Phase, Seen};
use super::net::Net;

/// A core with `config`, on a virtual clock.
pub fn net(config: Config) -> Net {
    let start = Instant::now();
    Net::new(Core::new(config, start), start)
}

/// The client reads everything its pipe holds; what it saw.
pub fn read(net: &mut Net, c: &mut Client) -> Vec<Seen> {
    let Some(p) = c.pipe() else { return Vec::new() };
    let bytes = net.pipes[p].take(usize::MAX);
    let done = net.pipes[p].is_done();
    let (reply, seen) = c.on_bytes(&bytes, done);
    net.pipes[p].send(&reply);
    seen
}

/// One turn of the loop, 10 ms later, then every client reads.
pub fn turn(net: &mut Net, clients: &mut [&mut Client]) -> Vec<Vec<Seen>> {
    net.now += Duration::from_millis(10);
    net.turn();
    clients.iter_mut().map(|c| read(net, c)).collect()
}

/// Logs `c` in and opens its room socket; returns its welcome.
pub fn join(net: &mut Net, c: &mut Client, others: &mut [&mut Client]) -> Seen {
    let p = net.connect(c.peer, 1 << 20);
    net.pipes[p].send(&c.login_request());
    c.phase = Phase::LoggingIn(p);
    turn(net, others);
    read(net, c);
    assert_eq!(c.phase, Phase::In, "logged in");
    open(net, c, others)
}

/// Opens the room socket of `c`, which is logged in (with `since` once it
/// has seen an event); returns its welcome.
pub fn open(net: &mut Net, c: &mut Client, others: &mut [&mut Client]) -> Seen {
    let p = net.connect(c.peer, 1 << 20);
    net.pipes[p].send(&c.upgrade_request());
    c.phase = Phase::Opening(p);
    turn(net, others);
    let seen = read(net, c);
    assert_eq!(c.phase, Phase::Open(p), "its socket is open");
    seen.into_iter().next().expect("a welcome")
}

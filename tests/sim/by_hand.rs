//! Driving the core by hand, one client at a time (for the tests that
//! are not the seeded simulation: `core_by_hand.rs`, `edits_by_hand.rs`):
//! a core on a virtual clock, a turn, a client reading its pipe, a login
//! and a room socket.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use wsrooms::Config;
use wsrooms::conn::Via;
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

/// The status code at the front of what a pipe received.
pub fn status_of(bytes: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(bytes);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {text:?}"))
}

/// One request on a new connection (on the listener `via`), answered in
/// one turn 10 ms later; its status.
pub fn request(net: &mut Net, peer: SocketAddr, via: Via, bytes: &[u8]) -> u16 {
    let p = net.connect_via(peer, 1 << 20, via);
    net.pipes[p].send(bytes);
    net.now += Duration::from_millis(10);
    net.turn();
    let answer = net.pipes[p].take(usize::MAX);
    net.pipes[p].fin();
    status_of(&answer)
}

/// `POST path` with `form` on the admin listener; its status.
pub fn admin_post(net: &mut Net, path: &str, form: &str) -> u16 {
    let peer = SocketAddr::from(([127, 0, 0, 1], 50_000));
    let bytes = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nWsrooms-Admin: yes\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{form}",
        form.len()
    );
    request(net, peer, Via::Admin, bytes.as_bytes())
}

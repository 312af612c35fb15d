//! A log-out read in the same loop turn as its own socket's close, upgrade
//! or message, driven by hand through the sans-I/O core (the simulation's
//! virtual pipes). The page's "Log out" button sends `POST /logout` and
//! closes its socket at once, so the two meet in one turn often. Each test
//! was written against a bug a review found (its comment says what it did).

#[allow(dead_code)]
mod sim;

use std::time::Duration;

use sim::by_hand::{join, net, read, turn};
use sim::client::{Client, Seen};
use sim::net::Net;
use wsrooms::Config;
use wsrooms::conn::ConnId;

fn config() -> Config {
    Config {
        log_level: "off".into(),
        rate_limit: 0.0,
        max_connections_per_ip: 0,
        ..sim::sim_config(None)
    }
}

fn logout_request(c: &Client) -> Vec<u8> {
    format!(
        "POST /logout HTTP/1.1\r\nHost: sim\r\nOrigin: http://sim\r\nCookie: {}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n",
        c.cookie.as_deref().unwrap()
    )
    .into_bytes()
}

fn socket_id(net: &Net, c: &Client) -> ConnId {
    net.pipes[c.pipe().unwrap()].id.unwrap()
}

fn members(net: &Net, room: u32) -> usize {
    let chat = net.core.chat();
    chat.room_by_number(room)
        .and_then(|r| chat.rooms.get(r))
        .map_or(0, |r| r.members.len())
}

/// One turn, 10 ms later, that reads `c`'s log-out on a new connection
/// and then `frame` from `c`'s socket.
fn logout_then(net: &mut Net, c: &Client, frame: &[u8]) {
    let logout = net.connect(c.peer, 1 << 20);
    let logout_id = net.pipes[logout].id.unwrap();
    let socket = socket_id(net, c);
    net.now += Duration::from_millis(10);
    net.core.set_now(net.now);
    net.core.read(logout_id, &logout_request(c));
    net.core.read(socket, frame);
    net.turn();
}

/// Several turns, `step` apart, everyone reading.
fn wait(net: &mut Net, clients: &mut [&mut Client], step: Duration, turns: usize) -> Vec<Seen> {
    let mut seen = Vec::new();
    for _ in 0..turns {
        net.now += step;
        let got = turn(net, clients);
        seen.extend(got.into_iter().flatten());
    }
    seen
}

/// The page's "log out" button: `POST /logout` and, in the same loop
/// turn, the page's socket closes (its close frame read after the
/// logout request). The others see the `leave`, and the room holds the
/// socket no more. (The `LogOut` was first in the outbox; when it was
/// delivered the socket was no longer open, so `end_session` neither
/// closed it nor saw a leave delay to end, the session was removed, and
/// then the socket's own `Leave` found no session: no `leave` was ever
/// broadcast, and the socket stayed in `room.members` for good.)
#[test]
fn logout_and_socket_close_in_one_turn_leave_a_ghost() {
    let mut net = net(config());
    let (mut alice, mut bob) = (Client::new(1, 5), Client::new(2, 5));
    join(&mut net, &mut alice, &mut []);
    join(&mut net, &mut bob, &mut [&mut alice]);
    assert_eq!(bob.roster, ["u1", "u2"]);
    assert_eq!(members(&net, 5), 2);

    let close = alice.close_frame();
    logout_then(&mut net, &alice, &close);
    read(&mut net, &mut alice);
    // Long past the leave delay (2 s), the close timeout, the grace.
    let seen = wait(&mut net, &mut [&mut bob], Duration::from_secs(1), 10);
    assert_eq!(net.core.chat().sessions.len(), 1, "alice's session ended");
    let left: Vec<&Seen> = seen
        .iter()
        .filter(|s| matches!(s, Seen::Presence { join: false, .. }))
        .collect();
    assert_eq!(
        (bob.roster.clone(), members(&net, 5)),
        (vec!["u2".to_string()], 1),
        "bob must see alice leave, and the room hold bob's socket only (leaves seen: {left:?})"
    );
}

/// `POST /logout` read before the session's new socket's upgrade in the
/// same turn: the upgrade finds the session over. (The `LogOut` was
/// delivered before that socket's `join`, so the others got a `leave` of
/// someone whose `join` they never got.)
#[test]
fn logout_before_the_upgrade_in_one_turn_sends_a_leave_without_a_join() {
    let mut net = net(config());
    let mut bob = Client::new(2, 5);
    join(&mut net, &mut bob, &mut []);
    let mut alice = Client::new(1, 5);
    // Alice logs in (no socket yet).
    let p = net.connect(alice.peer, 1 << 20);
    net.pipes[p].send(&alice.login_request());
    alice.phase = sim::client::Phase::LoggingIn(p);
    turn(&mut net, &mut [&mut bob]);
    read(&mut net, &mut alice);
    assert!(alice.cookie.is_some());
    // Then, in one turn: her log-out, then her socket's upgrade.
    let logout = net.connect(alice.peer, 1 << 20);
    let upgrade = net.connect(alice.peer, 1 << 20);
    let (logout_id, upgrade_id) = (
        net.pipes[logout].id.unwrap(),
        net.pipes[upgrade].id.unwrap(),
    );
    net.now += Duration::from_millis(10);
    net.core.set_now(net.now);
    net.core.read(logout_id, &logout_request(&alice));
    net.core.read(upgrade_id, &alice.upgrade_request());
    net.turn();
    let seen = read(&mut net, &mut bob);
    let odd: Vec<&Seen> = seen
        .iter()
        .filter(|s| {
            matches!(
                s,
                Seen::Presence {
                    listed: false,
                    join: false,
                    ..
                }
            )
        })
        .collect();
    assert!(
        odd.is_empty(),
        "bob got a leave of someone he never saw join: {seen:?}"
    );
}

/// Alice's socket sends a message in the turn her log-out is read (after
/// it): it is not read, as her socket closed with the log-out. (Everyone
/// saw her `leave`, then a message from her.)
#[test]
fn a_message_read_after_the_logout_is_delivered_after_the_leave() {
    let mut net = net(config());
    let (mut alice, mut bob) = (Client::new(1, 5), Client::new(2, 5));
    join(&mut net, &mut alice, &mut []);
    join(&mut net, &mut bob, &mut [&mut alice]);
    let frame = alice.chat_frame();
    logout_then(&mut net, &alice, &frame);
    let seen = read(&mut net, &mut bob);
    let leave = seen
        .iter()
        .position(|s| matches!(s, Seen::Presence { join: false, .. }));
    let message = seen.iter().position(|s| matches!(s, Seen::Message { .. }));
    assert!(
        !matches!((leave, message), (Some(l), Some(m)) if m > l),
        "a message from u1 after u1 left: {seen:?}"
    );
}

//! Presence without noise (`--leave-delay-secs`,
//! `--restart-leave-delay-secs`): a socket whose session comes back within
//! the leave delay shows the others neither `leave` nor `join` (a reload,
//! a network cut); one that does not come back is seen to leave when the
//! delay ends; a log-out leaves at once; a delay of 0 leaves at once as
//! before; and a restart with a data file makes no `join` per person, only
//! a `leave` for whoever does not come back in time.
//!
//! Real TCP clients on loopback. What is awaited is an event (a frame, a
//! gauge of `/metrics`, a log line); a test that checks that nothing
//! arrived sends a message of its own and reads up to it.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;

/// A server in this process with this leave delay.
fn server(leave_delay: Duration) -> SocketAddr {
    let mut config = test_config();
    config.leave_delay = leave_delay;
    start(config)
}

/// Login, socket and welcome; returns the socket, the cookie pair and the
/// welcome.
fn enter(addr: SocketAddr, user: &str, room: u32) -> (Ws, String, serde_json::Value) {
    let cookie = login(addr, user, room);
    let mut ws = ws_connect(addr, room, &cookie);
    let welcome = next_event(&mut ws);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, cookie, welcome)
}

/// Opens a session's socket again (the page after a reload); its welcome.
fn back(addr: SocketAddr, room: u32, cookie: &str) -> (Ws, serde_json::Value) {
    let mut ws = ws_connect(addr, room, cookie);
    let welcome = next_event(&mut ws);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, welcome)
}

/// Closes a socket cleanly and reads until the server has answered: the
/// server has taken it out of its room.
fn close_cleanly(mut ws: Ws) {
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => return,
            Err(e) => panic!("closing: {e}"),
        }
    }
}

/// Cuts a socket as a lost network does (a reset, no close frame), and
/// waits until the server counts one joined socket fewer.
fn cut(addr: SocketAddr, ws: Ws) {
    let before = read_metric(addr, "wsrooms_users");
    socket2::SockRef::from(ws.get_ref())
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(ws);
    assert!(
        wait_until(IO_TIMEOUT, || read_metric(addr, "wsrooms_users") < before),
        "the server never saw the socket go"
    );
}

/// `ws` sends `text` and reads up to its own message: every event before
/// it, as `(type, user)`.
fn events_up_to_own(ws: &mut Ws, text: &str) -> Vec<(String, String)> {
    ws.send(Message::text(text)).unwrap();
    let mut seen = Vec::new();
    loop {
        let e = next_event(ws);
        if e["type"] == "message" && e["text"] == text {
            return seen;
        }
        let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
        seen.push((field("type"), field("user")));
    }
}

/// The presence events among `events`.
fn presence(events: &[(String, String)]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|(kind, _)| kind == "join" || kind == "leave")
        .cloned()
        .collect()
}

fn users(welcome: &serde_json::Value) -> Vec<String> {
    let mut users: Vec<String> = welcome["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_string())
        .collect();
    users.sort();
    users
}

#[test]
fn a_socket_back_within_the_leave_delay_shows_the_others_nothing() {
    assert_eq!(test_config().leave_delay, Duration::from_secs(5), "default");
    let addr = server(Duration::from_secs(5));
    let (mut alice, _, _) = enter(addr, "alice", 1);
    let (bob, bob_cookie, _) = enter(addr, "bob", 1);
    assert_eq!(next_of_type(&mut alice, "join")["user"], "bob");

    // A reload: the page closes its socket, the new page opens one.
    close_cleanly(bob);
    let (bob, welcome) = back(addr, 1, &bob_cookie);
    assert_eq!(users(&welcome), ["alice", "bob"]);
    // A network cut, and the page's reconnect.
    cut(addr, bob);
    let (_bob, welcome) = back(addr, 1, &bob_cookie);
    assert_eq!(users(&welcome), ["alice", "bob"]);

    let seen = events_up_to_own(&mut alice, "still here?");
    assert_eq!(presence(&seen), [], "no leave, no join: {seen:?}");
}

#[test]
fn a_socket_that_does_not_come_back_leaves_when_the_delay_ends() {
    let delay = Duration::from_secs(2);
    let addr = server(delay);
    let (mut alice, _, _) = enter(addr, "alice", 2);
    let (bob, _, _) = enter(addr, "bob", 2);
    next_of_type(&mut alice, "join");
    let closed_ms = wsrooms::chat::unix_millis();
    let closed = Instant::now();
    close_cleanly(bob);
    // Within the delay bob is still listed for a newcomer.
    let (_carol, _, welcome) = enter(addr, "carol", 2);
    assert_eq!(users(&welcome), ["alice", "bob", "carol"]);
    let leave = next_of_type(&mut alice, "leave");
    let waited = closed.elapsed();
    assert_eq!(leave["user"], "bob");
    assert!(waited >= delay, "the leave came after {waited:?}");
    // Its `at` is when the delay ended, not when the socket closed.
    let at = leave["at"].as_u64().unwrap();
    assert!(at >= closed_ms + 2000, "at {at}, closed at {closed_ms}");
}

#[test]
fn with_a_leave_delay_of_0_a_reload_leaves_and_joins_at_once() {
    let addr = server(Duration::ZERO);
    let (mut alice, _, _) = enter(addr, "alice", 3);
    let (bob, bob_cookie, _) = enter(addr, "bob", 3);
    next_of_type(&mut alice, "join");
    close_cleanly(bob);
    let (_bob, welcome) = back(addr, 3, &bob_cookie);
    assert_eq!(users(&welcome), ["alice", "bob"]);
    let seen = events_up_to_own(&mut alice, "and now?");
    assert_eq!(
        presence(&seen),
        [
            ("leave".into(), "bob".into()),
            ("join".into(), "bob".into())
        ]
    );
}

#[test]
fn a_log_out_leaves_at_once_even_within_the_delay() {
    // A delay no test waits for: a leave seen here is the log-out's.
    let addr = server(Duration::from_secs(600));
    let origin = format!("Origin: http://{addr}\r\n");
    let (mut alice, _, _) = enter(addr, "alice", 4);
    let (_bob, bob_cookie, _) = enter(addr, "bob", 4);
    let (carol, carol_cookie, _) = enter(addr, "carol", 4);
    // Bob logs out from his open page.
    assert_eq!(logout_raw(addr, 4, Some(&bob_cookie), &origin).status, 303);
    // Carol's socket closed a moment ago (she is within her delay), then
    // she logs out from another tab.
    close_cleanly(carol);
    assert_eq!(
        logout_raw(addr, 4, Some(&carol_cookie), &origin).status,
        303
    );
    let seen = events_up_to_own(&mut alice, "who is left?");
    assert_eq!(
        presence(&seen),
        [
            ("join".into(), "bob".into()),
            ("join".into(), "carol".into()),
            ("leave".into(), "bob".into()),
            ("leave".into(), "carol".into())
        ]
    );
    let (_dave, _, welcome) = enter(addr, "dave", 4);
    assert_eq!(users(&welcome), ["alice", "dave"]);
}

// ----- restarts with a data file -----------------------------------------

/// The real binary on the data file `path`, with a leave delay of 1 s and
/// a restart delay of `restart` seconds.
fn server_on(path: &std::path::Path, restart: &str) -> Spawned {
    spawn_binary(&[
        "--data-file",
        path.to_str().unwrap(),
        "--leave-delay-secs",
        "1",
        "--restart-leave-delay-secs",
        restart,
        "--log-level",
        "info",
    ])
}

/// SIGTERM, and the clean exit that follows.
fn stop(server: &mut Spawned) {
    sigterm(server.child.id());
    let status = wait_exit(&mut server.child, IO_TIMEOUT).expect("exit after SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn a_restart_announces_no_one_who_comes_back_and_a_leave_for_who_does_not() {
    let dir = TempDir::new("presence-restart");
    let path = dir.join("rooms.db");
    let mut server = server_on(&path, "3");
    let addr = server.addr;
    let (mut alice, alice_cookie, _) = enter(addr, "alice", 5);
    let (_bob, bob_cookie, _) = enter(addr, "bob", 5);
    let (_carol, _, _) = enter(addr, "carol", 5);
    next_of_type(&mut alice, "join");
    next_of_type(&mut alice, "join");
    // Dave's socket closed and his leave went out: he is not in the room.
    let (dave, _, _) = enter(addr, "dave", 5);
    close_cleanly(dave);
    let leave = next_of_type(&mut alice, "leave");
    assert_eq!(leave["user"], "dave");
    stop(&mut server);

    let server = server_on(&path, "3");
    let started = Instant::now();
    let addr = server.addr;
    let (mut alice, welcome) = back(addr, 5, &alice_cookie);
    // Everyone who was there is listed, before they are back.
    assert_eq!(users(&welcome), ["alice", "bob", "carol"]);
    let (_bob, welcome) = back(addr, 5, &bob_cookie);
    assert_eq!(users(&welcome), ["alice", "bob", "carol"]);
    // Carol does not come back: her leave, once the restart delay ends;
    // bob's return made no join, and no leave follows it.
    let mut seen = Vec::new();
    let leave = loop {
        let e = next_event(&mut alice);
        if e["type"] == "leave" && e["user"] == "carol" {
            break e;
        }
        seen.push(e);
    };
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "carol left {:?} after the start",
        started.elapsed()
    );
    assert_eq!(leave["user"], "carol");
    assert_eq!(seen, Vec::<serde_json::Value>::new(), "nothing before it");
    let seen = events_up_to_own(&mut alice, "after the restart");
    assert_eq!(presence(&seen), [], "no join or leave of bob: {seen:?}");
    server
        .log
        .wait_for(&["3 of them listed as present"], IO_TIMEOUT);
}

#[test]
fn with_a_restart_delay_of_0_everyone_coming_back_is_announced_as_before() {
    let dir = TempDir::new("presence-restart-0");
    let path = dir.join("rooms.db");
    let mut server = server_on(&path, "0");
    let addr = server.addr;
    let (_alice, alice_cookie, _) = enter(addr, "alice", 6);
    let (_bob, bob_cookie, _) = enter(addr, "bob", 6);
    stop(&mut server);

    let server = server_on(&path, "0");
    let addr = server.addr;
    let (mut alice, welcome) = back(addr, 6, &alice_cookie);
    assert_eq!(users(&welcome), ["alice"], "no one is listed");
    let (_bob, _) = back(addr, 6, &bob_cookie);
    assert_eq!(next_of_type(&mut alice, "join")["user"], "bob");
}

#[test]
fn after_a_crash_too_those_who_come_back_are_not_announced() {
    let dir = TempDir::new("presence-crash");
    let path = dir.join("rooms.db");
    let mut server = server_on(&path, "20");
    let addr = server.addr;
    let (mut alice, alice_cookie, _) = enter(addr, "alice", 7);
    let (_bob, bob_cookie, _) = enter(addr, "bob", 7);
    next_of_type(&mut alice, "join");
    // SIGKILL: what the file says is what the last commit wrote.
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let server = server_on(&path, "20");
    let addr = server.addr;
    let (mut alice, welcome) = back(addr, 7, &alice_cookie);
    assert_eq!(users(&welcome), ["alice", "bob"]);
    let (_bob, _) = back(addr, 7, &bob_cookie);
    let seen = events_up_to_own(&mut alice, "still both here");
    assert_eq!(presence(&seen), [], "no join of bob: {seen:?}");
}

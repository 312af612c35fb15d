//! Room history and lossless reconnect (issue 8; docs/PROTOCOL.md), over real sockets.

mod common;

use std::time::Duration;

use common::*;
use tungstenite::Message;

/// Sends `n` messages from `ws` and waits until they come back.
fn send_and_echo(ws: &mut Ws, prefix: &str, n: usize) -> Vec<u64> {
    for i in 0..n {
        ws.send(Message::text(format!("{prefix}{i}"))).unwrap();
    }
    (0..n)
        .map(|_| next_of_type(ws, "message")["seq"].as_u64().unwrap())
        .collect()
}

fn config() -> Config {
    let mut c = test_config();
    c.rate_limit = 0.0;
    c
}

#[test]
fn a_newcomer_gets_the_last_50_of_120_in_order() {
    let addr = start(config());
    let (mut alice, welcome) = join(addr, "alice", 1);
    assert_eq!(history_seqs(&welcome), Vec::<u64>::new());
    assert_eq!(welcome["gap"], false);
    let sent = send_and_echo(&mut alice, "m", 120);
    assert_eq!(sent, (1..=120).collect::<Vec<_>>());
    let (_bob, welcome) = join(addr, "bob", 1);
    assert_eq!(history_seqs(&welcome), (71..=120).collect::<Vec<_>>());
    let history = welcome["history"].as_array().unwrap();
    assert_eq!(history[0]["text"], "m70");
    assert_eq!(history[0]["user"], "alice");
    assert_eq!(history[0]["type"], "message");
    assert_eq!(history[49]["text"], "m119");
    assert_eq!(welcome["gap"], false);
}

#[test]
fn a_dropped_socket_reconnects_with_since_and_misses_nothing() {
    let addr = start(config());
    let (mut alice, _) = join(addr, "alice", 1);
    let bob_cookie = login(addr, "bob", 1);
    let mut bob = ws_connect(addr, 1, &bob_cookie);
    next_of_type(&mut bob, "welcome");
    next_of_type(&mut alice, "join");
    send_and_echo(&mut alice, "before", 4);
    let mut last_seen = 0;
    for _ in 0..4 {
        last_seen = next_of_type(&mut bob, "message")["seq"].as_u64().unwrap();
    }
    assert_eq!(last_seen, 4);
    // A TCP reset: no close frame (SO_LINGER 0, then drop).
    socket2::SockRef::from(bob.get_ref())
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(bob);
    assert_eq!(next_of_type(&mut alice, "leave")["user"], "bob");
    let missed = send_and_echo(&mut alice, "while-away", 3);
    assert_eq!(missed, vec![5, 6, 7]);
    // Back within the grace period, with the same session.
    let origin = format!("http://{addr}");
    let mut bob = ws_connect_path(
        addr,
        &format!("/rooms/1/ws?since={last_seen}"),
        Some(&bob_cookie),
        Some(&origin),
    )
    .expect("reconnect inside the grace period");
    let welcome = next_of_type(&mut bob, "welcome");
    assert_eq!(history_seqs(&welcome), vec![5, 6, 7]);
    assert_eq!(
        history_texts(&welcome),
        ["while-away0", "while-away1", "while-away2"]
    );
    assert_eq!(welcome["gap"], false);
    // And live messages continue after them.
    alice.send(Message::text("live")).unwrap();
    assert_eq!(next_of_type(&mut bob, "message")["seq"], 8);
}

#[test]
fn since_older_than_the_ring_gives_the_ring_and_a_gap() {
    let mut c = config();
    c.history_messages = 10;
    let addr = start(c);
    let (mut alice, _) = join(addr, "alice", 1);
    send_and_echo(&mut alice, "m", 30);
    let cookie = login(addr, "bob", 1);
    let origin = format!("http://{addr}");
    let open = |query: &str| {
        let mut ws = ws_connect_path(
            addr,
            &format!("/rooms/1/ws{query}"),
            Some(&cookie),
            Some(&origin),
        )
        .unwrap();
        next_of_type(&mut ws, "welcome")
    };
    let w = open("?since=5");
    assert_eq!(history_seqs(&w), (21..=30).collect::<Vec<_>>());
    assert_eq!(w["gap"], true);
    let w = open("?since=20");
    assert_eq!(history_seqs(&w), (21..=30).collect::<Vec<_>>());
    assert_eq!(w["gap"], false, "seq 21 follows 20: nothing missed");
    let w = open("?since=28");
    assert_eq!(history_seqs(&w), vec![29, 30]);
    let w = open("?since=30");
    assert_eq!(history_seqs(&w), Vec::<u64>::new());
    assert_eq!(w["gap"], false);
}

#[test]
fn since_garbage_counts_as_absent() {
    let addr = start(config());
    let (mut alice, _) = join(addr, "alice", 1);
    send_and_echo(&mut alice, "m", 5);
    let cookie = login(addr, "bob", 1);
    let origin = format!("http://{addr}");
    for query in [
        "?since=abc",
        "?since=-3",
        "?since=",
        "?since=99",
        "?since=1e3",
        "?since=18446744073709551616",
        "?x=1",
    ] {
        let mut ws = ws_connect_path(
            addr,
            &format!("/rooms/1/ws{query}"),
            Some(&cookie),
            Some(&origin),
        )
        .unwrap_or_else(|e| panic!("{query}: {e}"));
        let w = next_of_type(&mut ws, "welcome");
        assert_eq!(history_seqs(&w), vec![1, 2, 3, 4, 5], "{query}");
        assert_eq!(w["gap"], false, "{query}");
    }
}

#[test]
fn history_goes_with_the_room() {
    let mut c = config();
    c.grace_timeout = Duration::from_millis(100);
    let addr = start(c);
    let (mut alice, _) = join(addr, "alice", 7);
    send_and_echo(&mut alice, "m", 3);
    alice.close(None).unwrap();
    expect_close(&mut alice);
    // Once alice's grace is over the room is gone, and a new room 7 starts empty.
    assert!(wait_until(Duration::from_secs(5), || login_raw(
        addr, "alice", "7"
    )
    .status
        == 303));
    let cookie = login(addr, "zed", 7);
    let mut ws = ws_connect(addr, 7, &cookie);
    let w = next_of_type(&mut ws, "welcome");
    assert_eq!(history_seqs(&w), Vec::<u64>::new());
}

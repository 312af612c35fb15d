//! Scrollback: `GET /rooms/{room}/history?before=SEQ&limit=N` pages through
//! a room's older messages, newest page first, oldest first within a page;
//! from memory without a data file, from the database with one.

mod common;

use std::net::SocketAddr;

use common::*;
use tungstenite::Message;

/// `GET /rooms/{room}/history{query}` with `cookie` (if any).
fn history(addr: SocketAddr, room: u32, cookie: Option<&str>, query: &str) -> HttpResponse {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    get(addr, &format!("/rooms/{room}/history{query}"), &cookie)
}

/// One page: its messages and `more`, after checking the response's form.
fn page(addr: SocketAddr, room: u32, cookie: &str, query: &str) -> (Vec<serde_json::Value>, bool) {
    let r = history(addr, room, Some(cookie), query);
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    let messages = v["messages"].as_array().expect("messages").clone();
    (messages, v["more"].as_bool().expect("more"))
}

fn seq(m: &serde_json::Value) -> u64 {
    m["seq"].as_u64().unwrap()
}

/// Sends `n` messages `m0…` from `ws` and waits for the last to come back.
fn send(ws: &mut Ws, n: usize) {
    for i in 0..n {
        ws.send(Message::text(format!("m{i}"))).unwrap();
    }
    loop {
        let e = next_of_type(ws, "message");
        if e["text"] == format!("m{}", n - 1) {
            return;
        }
    }
}

/// 1,000 messages in pages of 100, newest page first: each message exactly
/// once, with the text and user it was sent with, `more` until the first.
fn pages_through_1000(addr: SocketAddr) {
    let cookie = login(addr, "alice", 3);
    let mut ws = ws_connect(addr, 3, &cookie);
    next_of_type(&mut ws, "welcome");
    send(&mut ws, 1000);
    let mut seen = Vec::new();
    let mut query = "?limit=100".to_string();
    for n in 0..10 {
        let (messages, more) = page(addr, 3, &cookie, &query);
        assert_eq!(messages.len(), 100, "page {n}");
        let seqs: Vec<u64> = messages.iter().map(seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "page {n}: {seqs:?}"
        );
        for m in &messages {
            assert_eq!(m["type"], "message");
            assert_eq!(m["user"], "alice");
            assert_eq!(m["text"], format!("m{}", seq(m) - 1));
        }
        assert_eq!(more, n < 9, "page {n}");
        query = format!("?before={}&limit=100", seqs[0]);
        seen.splice(0..0, seqs);
    }
    assert_eq!(seen, (1..=1000).collect::<Vec<_>>());
    // Before the first message: nothing, and nothing more.
    assert_eq!(page(addr, 3, &cookie, "?before=1"), (vec![], false));
    // Defaults: the last 50; `before` past the end is the same.
    let (last, more) = page(addr, 3, &cookie, "");
    assert_eq!(
        last.iter().map(seq).collect::<Vec<_>>(),
        (951..=1000).collect::<Vec<_>>()
    );
    assert!(more);
    assert_eq!(page(addr, 3, &cookie, "?before=5000").0, last);
    let (two, more) = page(addr, 3, &cookie, "?before=3&limit=100");
    assert_eq!(
        (two.iter().map(seq).collect::<Vec<_>>(), more),
        (vec![1, 2], false)
    );
}

/// 403 without the room's session; 400 for a `before` or `limit` that is
/// not a number in range.
fn refuses(addr: SocketAddr) {
    let cookie = login(addr, "bob", 4);
    let other = login(addr, "carol", 5);
    assert_eq!(history(addr, 4, None, "").status, 403);
    assert_eq!(
        history(addr, 4, Some(&other), "").status,
        403,
        "another room's session"
    );
    assert_eq!(
        history(
            addr,
            4,
            Some("wsrooms_session=00000000000000000000000000000000"),
            ""
        )
        .status,
        403
    );
    for query in [
        "?before=abc",
        "?before=-1",
        "?before=",
        "?before=1e3",
        "?before=+5",
        "?before=18446744073709551616",
        "?limit=0",
        "?limit=101",
        "?limit=",
        "?limit=ten",
        "?limit=-5",
        "?before=10&limit=1000",
    ] {
        let r = history(addr, 4, Some(&cookie), query);
        assert_eq!(r.status, 400, "{query}: {}", r.text());
    }
    for query in ["?limit=1", "?limit=100", "?before=0", "?x=1"] {
        assert_eq!(
            history(addr, 4, Some(&cookie), query).status,
            200,
            "{query}"
        );
    }
    let r = http_raw(
        addr,
        &format!(
            "POST /rooms/4/history HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(r.status, 405);
}

#[test]
fn pages_of_100_through_1000_messages_from_memory() {
    let mut c = test_config();
    c.rate_limit = 0.0;
    c.history_messages = 1000;
    pages_through_1000(start(c));
}

#[test]
fn scrollback_needs_the_session_and_numbers_from_memory() {
    refuses(start(test_config()));
}

#[test]
fn a_page_from_memory_stops_at_what_the_ring_keeps() {
    let mut c = test_config();
    c.rate_limit = 0.0;
    c.history_messages = 10;
    let addr = start(c);
    let cookie = login(addr, "dave", 6);
    let mut ws = ws_connect(addr, 6, &cookie);
    next_of_type(&mut ws, "welcome");
    send(&mut ws, 30);
    let (messages, more) = page(addr, 6, &cookie, "?limit=8");
    assert_eq!(
        messages.iter().map(seq).collect::<Vec<_>>(),
        (23..=30).collect::<Vec<_>>()
    );
    assert!(more);
    let (messages, more) = page(addr, 6, &cookie, "?before=23&limit=8");
    assert_eq!(messages.iter().map(seq).collect::<Vec<_>>(), vec![21, 22]);
    assert!(!more, "older messages are no longer kept in memory");
}

/// A server of the real binary keeping its rooms in a data file in `dir`
/// (50 messages in memory, as by default).
fn with_data_file(dir: &TempDir) -> Spawned {
    let path = dir.join("rooms.db");
    spawn_binary(&[
        "--rate-limit",
        "0",
        "--log-level",
        "warn",
        "--data-file",
        path.to_str().unwrap(),
    ])
}

#[test]
fn pages_of_100_through_1000_messages_from_the_data_file() {
    let dir = TempDir::new("scrollback");
    let server = with_data_file(&dir);
    pages_through_1000(server.addr);
}

#[test]
fn scrollback_needs_the_session_and_numbers_with_a_data_file() {
    let dir = TempDir::new("scrollback-refusals");
    let server = with_data_file(&dir);
    refuses(server.addr);
}

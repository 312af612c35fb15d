//! The scrollback budget: one session asking for pages of older messages
//! (`GET /rooms/{n}/history`) faster than `--scrollback-rate`, on however
//! many connections, gets `429 Too Many Requests` with `Retry-After` once
//! its `--scrollback-burst` is spent; another session is not affected, and
//! the refusals are counted in `/metrics`. Opening a room socket spends
//! from the same budget.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use std::io::Write;

/// `n` pipelined `GET /rooms/{room}/history` with `cookie` on `stream`,
/// written at once; the statuses in order, after checking each response.
fn pipelined(stream: &mut TcpStream, room: u32, cookie: &str, n: usize) -> Vec<u16> {
    let addr = stream.peer_addr().unwrap();
    let one = format!(
        "GET /rooms/{room}/history?limit=100 HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n"
    );
    stream.write_all(one.repeat(n).as_bytes()).unwrap();
    (0..n).map(|_| checked(read_response(stream))).collect()
}

/// The status of one scrollback answer: a page of JSON, or a `429` that
/// says when to come back and carries no page.
fn checked(r: HttpResponse) -> u16 {
    match r.status {
        200 => {
            let v: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON page");
            assert!(v["messages"].is_array(), "{v}");
        }
        429 => {
            let wait: u64 = r
                .header("Retry-After")
                .expect("Retry-After")
                .parse()
                .expect("Retry-After in whole seconds");
            assert!(wait >= 1, "Retry-After {wait}");
            assert!(!r.text().contains("messages"), "{}", r.text());
            assert_eq!(r.header("Cache-Control"), Some("no-store"));
        }
        other => panic!("status {other}: {}", r.text()),
    }
    r.status
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

/// A room with messages in it (sent by carol), and two more logged-in
/// users who have spent nothing yet: alice (who will flood) and bob.
fn room_with_two(addr: SocketAddr, room: u32) -> (String, String) {
    let alice = login(addr, "alice", room);
    let bob = login(addr, "bob", room);
    let carol = login(addr, "carol", room);
    let mut ws = ws_connect(addr, room, &carol);
    next_of_type(&mut ws, "welcome");
    for i in 0..30 {
        ws.send(tungstenite::Message::text(format!("m{i}")))
            .unwrap();
    }
    loop {
        if next_of_type(&mut ws, "message")["text"] == "m29" {
            break;
        }
    }
    (alice, bob)
}

/// 60 pipelined pages from one session on three connections, with a refill
/// too slow to matter during the test: exactly the burst (20) are served,
/// the other 40 get `429` with `Retry-After`; bob's 20 are all served; the
/// refusals are counted.
#[test]
fn one_session_gets_its_burst_then_429_and_another_is_not_affected() {
    let mut config = test_config();
    config.rate_limit = 0.0;
    config.scrollback_rate = 0.1; // one page per 10 s: none comes back during the test
    config.scrollback_burst = 20;
    let addr = start(config);
    let (alice, bob) = room_with_two(addr, 7);

    let mut statuses = Vec::new();
    let mut conns: Vec<TcpStream> = (0..3).map(|_| tcp(addr)).collect();
    for conn in &mut conns {
        statuses.extend(pipelined(conn, 7, &alice, 20));
    }
    assert_eq!(
        (count(&statuses, 200), count(&statuses, 429)),
        (20, 40),
        "{statuses:?}"
    );
    assert!(
        statuses[..20].iter().all(|&s| s == 200),
        "the burst first: {statuses:?}"
    );

    let bob_statuses = pipelined(&mut tcp(addr), 7, &bob, 20);
    assert_eq!(count(&bob_statuses, 200), 20, "{bob_statuses:?}");

    let text = scrape(addr);
    assert_eq!(
        metric_with(&text, "wsrooms_refused_total", "reason=\"scrollback_rate\""),
        Some(40.0),
        "{text}"
    );
}

/// With the defaults (10 pages/s, burst 20): 60 pipelined pages get about
/// the burst and then `429`; waiting the `Retry-After` it names is enough
/// to be served again.
#[test]
fn with_the_defaults_waiting_retry_after_is_enough() {
    let mut config = test_config();
    config.rate_limit = 0.0;
    let addr = start(config);
    let (alice, _) = room_with_two(addr, 8);
    let mut conn = tcp(addr);
    let statuses = pipelined(&mut conn, 8, &alice, 60);
    let served = count(&statuses, 200);
    assert!(
        served >= 20 && count(&statuses, 429) > 0,
        "burst 20 plus what 10/s refills meanwhile, then 429: {statuses:?}"
    );
    let one = format!("GET /rooms/8/history HTTP/1.1\r\nHost: {addr}\r\nCookie: {alice}\r\n\r\n");
    conn.write_all(one.as_bytes()).unwrap();
    let r = read_response(&mut conn);
    let wait = match r.status {
        429 => r.header("Retry-After").unwrap().parse::<u64>().unwrap(),
        _ => 0,
    };
    assert!(
        wait <= 1,
        "10 pages/s: a page is back within 1 s, not {wait}"
    );
    // What a client is told to do: wait that long, then ask again.
    std::thread::sleep(Duration::from_secs(wait));
    conn.write_all(one.as_bytes()).unwrap();
    assert_eq!(checked(read_response(&mut conn)), 200);
}

/// `--scrollback-rate 0` turns the budget off.
#[test]
fn rate_zero_turns_the_budget_off() {
    let mut config = test_config();
    config.rate_limit = 0.0;
    config.scrollback_rate = 0.0;
    config.scrollback_burst = 1;
    let addr = start(config);
    let (alice, _) = room_with_two(addr, 9);
    let statuses = pipelined(&mut tcp(addr), 9, &alice, 60);
    assert_eq!(count(&statuses, 200), 60, "{statuses:?}");
}

/// Opening a room socket spends from the same budget: with a burst of 5,
/// alice's sixth socket in a row gets `429` with `Retry-After` (before any
/// upgrade), and so does her next page; bob opens his; both refusals are
/// counted by reason.
#[test]
fn room_sockets_spend_from_the_same_budget() {
    let mut config = test_config();
    config.scrollback_rate = 0.1;
    config.scrollback_burst = 5;
    let addr = start(config);
    let alice = login(addr, "alice", 11);
    let bob = login(addr, "bob", 11);
    let mut open = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let mut s = tcp(addr);
        s.write_all(upgrade_request(addr, "/rooms/11/ws?since=0", Some(&alice)).as_bytes())
            .unwrap();
        let r = read_response(&mut s);
        if r.status == 429 {
            assert!(r.header("Retry-After").unwrap().parse::<u64>().unwrap() >= 1);
            assert_eq!(r.header("Upgrade"), None, "no upgrade");
        }
        statuses.push(r.status);
        open.push(s);
    }
    assert_eq!(statuses, [101, 101, 101, 101, 101, 429, 429, 429]);
    assert_eq!(
        history(addr, 11, &alice).status,
        429,
        "pages share the budget"
    );
    raw_ws(addr, "/rooms/11/ws", Some(&bob));
    let text = scrape(addr);
    assert_eq!(
        metric_with(&text, "wsrooms_refused_total", "reason=\"socket_rate\""),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric_with(&text, "wsrooms_refused_total", "reason=\"scrollback_rate\""),
        Some(1.0),
        "{text}"
    );
}

/// One `GET /rooms/{room}/history` with `cookie`, on its own connection.
fn history(addr: SocketAddr, room: u32, cookie: &str) -> HttpResponse {
    get(
        addr,
        &format!("/rooms/{room}/history"),
        &format!("Cookie: {cookie}\r\n"),
    )
}

//! Regression tests for bugs found in a review of the poll loop: each test
//! failed before its fix.

mod common;
mod limits_common;

use std::time::Duration;

use common::*;
use tungstenite::Message;

/// One broadcast that pushes several receivers over `--max-buffered` at once:
/// closing the first one broadcasts its `leave`, which closes the others
/// (nested); the outer loop must not then clear their queued close frames.
/// Every one of them must get a well-formed `1008 backpressure limit`.
#[test]
fn several_receivers_too_slow_in_one_broadcast_all_get_their_close_frame() {
    let addr = start(Config {
        max_buffered: 4096,
        pause_reading_at: 4096,
        max_chat_chars: 100_000,
        rate_limit: 0.0,
        close_timeout: Duration::from_secs(2),
        ..test_config()
    });
    let (mut a, _) = join(addr, "a", 3);
    let (mut b, _) = join(addr, "b", 3);
    next_of_type(&mut a, "join");
    let (mut c, _) = join(addr, "c", 3);
    next_of_type(&mut a, "join");
    next_of_type(&mut b, "join");
    // One message bigger than --max-buffered: every receiver is over the
    // limit the moment it is queued.
    a.send(Message::text("x".repeat(10_000))).unwrap();
    for (name, ws) in [("a", &mut a), ("b", &mut b), ("c", &mut c)] {
        assert_eq!(
            expect_close(ws),
            (1008, "backpressure limit".to_string()),
            "{name}"
        );
    }
}

/// An upgrade request still being sent at SIGTERM must not open a new
/// WebSocket (it would never get its `1001` and would hold the exit until
/// the drain deadline): its connection is closed with no answer, and the
/// server exits at once since every socket has finished.
#[test]
fn an_upgrade_still_being_sent_at_shutdown_is_dropped() {
    use std::io::Write;
    let mut server = spawn_binary(&["--log-level", "warn"]);
    let addr = server.addr;
    let (mut watcher, _) = join(addr, "watcher", 8);
    let cookie = login(addr, "late", 8);
    let request = limits_common::upgrade_request(addr, "/rooms/8/ws", Some(&cookie));
    let (first, last) = request.split_at(request.len() - 2);
    let mut late = tcp(addr);
    late.write_all(first.as_bytes()).unwrap();
    // Let the server read the first part before the signal.
    assert_eq!(get(addr, "/healthz", "").status, 200);
    let signalled = std::time::Instant::now();
    limits_common::sigterm(server.child.id());
    assert_eq!(expect_close(&mut watcher).0, 1001, "shutdown has begun");
    watcher.close(None).unwrap();
    let _ = watcher.flush();
    let _ = late.write_all(last.as_bytes());
    let answer = limits_common::read_until_closed(&mut late, Duration::from_secs(2));
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let status = limits_common::wait_exit(&mut server.child, Duration::from_secs(10))
        .expect("still running 10 s after SIGTERM");
    assert!(status.success(), "exit status {status}");
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(3), "exited after {took:?}");
}

/// The `503` sent past `--max-connections` is written by hand: its
/// `Content-Length` must match its body, and nothing may follow the body.
#[test]
fn the_503_past_max_connections_has_a_correct_content_length() {
    use std::io::Read;
    let addr = start(Config {
        max_connections: 1,
        ..test_config()
    });
    let _held = tcp(addr);
    let mut refused = tcp(addr);
    let r = read_response(&mut refused);
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "too many connections");
    let mut rest = Vec::new();
    let _ = refused.read_to_end(&mut rest);
    assert!(rest.is_empty(), "bytes after the body: {rest:?}");
}

/// Like `common::start`, with the server's thread given `stack` bytes.
fn start_with_stack(config: Config, stack: usize) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            let mut server = wsrooms::Server::bind(config).expect("bind");
            tx.send(server.local_addr()).unwrap();
            server.run().expect("server loop");
        })
        .unwrap();
    rx.recv_timeout(IO_TIMEOUT).expect("server did not start")
}

/// A whole room of receivers pushed over `--max-buffered` by one broadcast
/// (they all stopped reading at the same time, so their queues are alike):
/// each close broadcasts a `leave` to the rest, which must not recurse once
/// per member: a stalled room of some thousands (`--max-users-per-room`)
/// overflowed the stack. Here a small stack and a room of 400 show it.
#[test]
fn a_full_room_over_the_limit_at_once_is_closed_without_deep_recursion() {
    const MEMBERS: usize = 400;
    let addr = start_with_stack(
        Config {
            max_buffered: 4096,
            pause_reading_at: 4096,
            max_chat_chars: 100_000,
            rate_limit: 0.0,
            ..test_config()
        },
        256 * 1024,
    );
    let mut members = Vec::new();
    for i in 0..MEMBERS {
        let cookie = login(addr, &format!("m{i}"), 9);
        members.push(limits_common::raw_ws(addr, "/rooms/9/ws", Some(&cookie)));
    }
    let (mut sender, _) = join(addr, "sender", 9);
    sender.send(Message::text("x".repeat(10_000))).unwrap();
    assert_eq!(
        expect_close(&mut sender),
        (1008, "backpressure limit".to_string())
    );
    // (Every member gets the others' leaves first: read a sample.)
    for (i, m) in members.iter_mut().enumerate() {
        if i % 50 != 0 && i != MEMBERS - 1 {
            continue;
        }
        let mut r = std::io::BufReader::with_capacity(256 * 1024, m);
        let close = limits_common::read_until_opcode(&mut r, limits_common::CLOSE);
        assert_eq!(close.close().0, 1008, "member {i}");
    }
    // The server is still there.
    assert_eq!(get(addr, "/healthz", "").status, 200);
}

/// A keep-alive connection still receiving its responses when SIGTERM
/// arrives gets those already queued, whole, then FIN (pipelined requests
/// held back by backpressure stay unanswered), and the server exits then,
/// not at the drain deadline (the connection would otherwise sit idle,
/// keep-alive, until the deadline).
#[test]
fn responses_in_flight_at_sigterm_finish_and_the_server_exits_without_waiting() {
    use std::io::{Read, Write};
    const REQUESTS: usize = 400;
    let mut server = spawn_binary(&["--shutdown-timeout-secs", "20", "--log-level", "warn"]);
    let addr = server.addr;
    let (mut watcher, _) = join(addr, "watcher", 8);
    let mut slow = limits_common::small_buffer_tcp(addr, 4096, 0);
    let request = format!("GET /static/room.js HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    slow.write_all(request.repeat(REQUESTS).as_bytes()).unwrap();
    // Wait until the server has read them (answered up to its pause).
    let last_before = get(addr, "/healthz", "");
    assert_eq!(last_before.status, 200);
    let signalled = std::time::Instant::now();
    limits_common::sigterm(server.child.id());
    assert_eq!(expect_close(&mut watcher).0, 1001, "shutdown has begun");
    watcher.close(None).unwrap();
    let _ = watcher.flush();
    // Whole responses, then the server hangs up.
    let got = limits_common::read_until_closed(&mut slow, Duration::from_secs(15));
    let mut r = std::io::Cursor::new(&got[..]);
    let mut answered = 0;
    while (r.position() as usize) < got.len() {
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            let mut b = [0u8; 1];
            r.read_exact(&mut b).expect("a whole response head");
            head.push(b[0] as char);
        }
        assert!(
            head.starts_with("HTTP/1.1 200 "),
            "response {answered}: {head}"
        );
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap();
        let mut body = vec![0; len];
        r.read_exact(&mut body).expect("a whole body");
        answered += 1;
    }
    assert!((1..=REQUESTS).contains(&answered), "{answered} answered");
    let status = limits_common::wait_exit(&mut server.child, Duration::from_secs(20))
        .expect("still running 20 s after SIGTERM");
    assert!(status.success(), "exit status {status}");
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
}

/// RFC 9110 §15.5.22: a `426` MUST name the protocol to upgrade to in an
/// `Upgrade` header (next to RFC 6455's `Sec-WebSocket-Version: 13`).
#[test]
fn a_426_names_the_protocol_in_an_upgrade_header() {
    let addr = start(Config {
        echo: true,
        ..test_config()
    });
    let r = http_raw(
        addr,
        &format!(
            "GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
        ),
    );
    assert_eq!(r.status, 426);
    assert_eq!(r.header("Sec-WebSocket-Version"), Some("13"));
    assert_eq!(
        r.header("Upgrade").map(str::to_ascii_lowercase).as_deref(),
        Some("websocket")
    );
}

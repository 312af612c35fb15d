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

/// An upgrade request that completes after SIGTERM must not open a new
/// WebSocket (it would never get its `1001` and would hold the exit until
/// the drain deadline): it is refused with `503`, and the server exits at
/// once since every socket has finished.
#[test]
fn an_upgrade_completed_during_shutdown_is_refused_with_503() {
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
    late.write_all(last.as_bytes()).unwrap();
    let r = read_response(&mut late);
    assert_eq!(r.status, 503, "{}", r.text());
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

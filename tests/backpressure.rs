//! Backpressure on WebSockets: a client that sends but never reads is paused
//! (its input left unread) rather than buffered, and is served again once
//! it reads; receivers whose queue passes `--max-buffered` are closed with
//! `1008 backpressure limit`, however many of them one broadcast pushes
//! over at once.
//!
//! Servers measured from `/proc` (memory, CPU time) run as child processes
//! of the real binary; the others run in a thread of the test.

mod common;

use std::io::{self, Write};
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;

/// Bound on a spawned server's peak RSS in these tests (a debug build idles
/// at ≈3–4 MB).
const RSS_BOUND_KB: u64 = 24 * 1024;

#[test]
fn a_client_that_sends_but_never_reads_is_paused_not_buffered() {
    const PAUSE_AT: usize = 64 * 1024;
    let server = spawn_binary(&[
        "--max-chat-chars",
        "100000",
        "--rate-limit",
        "0",
        "--log-level",
        "warn",
    ]);
    let (addr, pid) = (server.addr, server.child.id());
    let cookie = login(addr, "greedy", 3);
    let mut s = upgrade_on(
        small_buffer_tcp(addr, 16 * 1024, 16 * 1024),
        addr,
        "/rooms/3/ws",
        Some(&cookie),
    );

    // Every message comes back to its sender (a room of one): the server's
    // queue to us grows, so it must stop reading from us.
    let frame = client_frame(true, 1, &[b'g'; 4096]);
    s.set_nonblocking(true).unwrap();
    let (mut written, mut frames_started, mut offset) = (0usize, 0usize, 0usize);
    let mut blocked_since: Option<Instant> = None;
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < give_up,
            "wrote {written} bytes and the server still reads"
        );
        match s.write(&frame[offset..]) {
            Ok(n) => {
                if offset == 0 {
                    frames_started += 1;
                }
                offset = (offset + n) % frame.len();
                written += n;
                blocked_since = None;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Blocked for a whole second: the server is not reading.
                if blocked_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(1)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("write failed after {written} bytes: {e}"),
        }
    }

    // Paused because its queue passed --pause-reading-at: the gate is
    // checked before every message, so the queue stops about one echo over
    // the level; the kernel may take some of it afterwards, but reading
    // resumes only below half the level. And the queue is bounded by the
    // level plus what one turn produced.
    let buffered = read_metric(addr, "wsrooms_buffered_bytes") as usize;
    assert!(
        buffered > PAUSE_AT / 2,
        "reading paused with only {buffered} bytes buffered"
    );
    assert!(
        buffered <= PAUSE_AT + 2 * 64 * 1024,
        "{buffered} bytes buffered for one reader"
    );
    // The loop idles meanwhile, serves others, and memory stays bounded.
    let cpu_before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(1));
    let cpu = cpu_time(pid) - cpu_before;
    assert!(
        cpu < Duration::from_millis(200),
        "server used {cpu:?} of CPU in 1 s while paused"
    );
    assert_eq!(get(addr, "/healthz", "").status, 200);
    let peak = status_kb(pid, "VmHWM");
    assert!(peak < RSS_BOUND_KB, "peak RSS {peak} kB");
    // Still paused: not one more byte goes in.
    assert_eq!(
        s.write(&frame[offset..]).map_err(|e| e.kind()).unwrap_err(),
        io::ErrorKind::WouldBlock
    );
    eprintln!(
        "greedy client: wrote {written} bytes ({frames_started} messages) before blocking; \
         server buffered {buffered} bytes; peak RSS {peak} kB; CPU {cpu:?} in 1 s while paused"
    );

    // Now read: reading resumes, and every message comes back, none lost.
    s.set_nonblocking(false).unwrap();
    let finisher = {
        let mut w = s.try_clone().unwrap();
        let rest = frame[offset..].to_vec();
        std::thread::spawn(move || w.write_all(if offset == 0 { &[] } else { &rest }).unwrap())
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = io::BufReader::new(&mut s);
    let mut echoed = 0;
    while echoed < frames_started {
        let f = read_frame(&mut r)
            .expect("read")
            .expect("closed while draining");
        assert_ne!(f.opcode, CLOSE, "closed: {:?}", f.close());
        if f.message_seq().is_some() {
            echoed += 1;
        }
    }
    finisher.join().unwrap();
    assert_eq!(
        read_metric(addr, "wsrooms_websockets"),
        1.0,
        "the greedy client is still connected"
    );
}

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
        members.push(raw_ws(addr, "/rooms/9/ws", Some(&cookie)));
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
        let close = read_until_opcode(&mut r, CLOSE);
        assert_eq!(close.close().0, 1008, "member {i}");
    }
    // The server is still there.
    assert_eq!(get(addr, "/healthz", "").status, 200);
}

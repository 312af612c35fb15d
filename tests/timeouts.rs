//! Every wait on a peer is bounded: request heads that never finish are
//! dropped after `--head-timeout-secs` while others are served; a peer that
//! never answers pings is dropped after `--pong-timeout-secs` while one
//! that answers stays; a peer that never answers our close is dropped after
//! `--close-timeout-secs`; and a closed connection's timer never fires on
//! the next connection in its slot.

mod common;

use std::io::{self, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;

#[test]
fn a_thousand_half_heads_are_dropped_after_the_head_timeout() {
    const N: usize = 1000;
    assert!(
        ensure_fd_limit(N as u64 + 512),
        "cannot open {N} sockets: RLIMIT_NOFILE is {}",
        own_fd_limit()
    );
    let server = spawn_binary(&["--head-timeout-secs", "1", "--log-level", "warn"]);
    let addr = server.addr;

    // A normal client is served all along.
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut served, mut worst) = (0, Duration::ZERO);
            while !stop.load(Ordering::Acquire) {
                let t = Instant::now();
                assert_eq!(get(addr, "/healthz", "").status, 200);
                worst = worst.max(t.elapsed());
                served += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (served, worst)
        })
    };

    let t0 = Instant::now();
    let mut conns: Vec<TcpStream> = (0..N)
        .map(|i| {
            let mut s = tcp(addr);
            s.write_all(format!("GET /rooms/{i} HTTP/1.1\r\nHost: x\r\nUser-Agent: sl").as_bytes())
                .unwrap();
            s
        })
        .collect();
    let opened = t0.elapsed();
    if opened < Duration::from_millis(600) {
        // Nothing is dropped early: all are held (the metrics connection too).
        let open = read_metric(addr, "wsrooms_connections");
        assert!(open >= (N + 1) as f64, "only {open} connections open");
        assert!(
            conns.iter().all(|s| !is_closed(s)),
            "a connection was dropped before the head timeout"
        );
    }
    for s in &mut conns {
        let answer = read_until_closed(s, Duration::from_secs(5));
        assert!(
            answer.is_empty(),
            "a half request got an answer: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    let all_dropped = t0.elapsed();
    stop.store(true, Ordering::Release);
    let (served, worst) = prober.join().unwrap();
    eprintln!(
        "{N} half heads opened in {opened:?}, all dropped {all_dropped:?} after the first; \
         {served} health checks meanwhile, slowest {worst:?}"
    );
    assert!(all_dropped >= Duration::from_secs(1));
    assert!(
        all_dropped < opened + Duration::from_secs(3),
        "dropped only after {all_dropped:?}"
    );
    assert!(served >= 10, "only {served} health checks answered");
    assert!(
        worst < Duration::from_secs(1),
        "a health check took {worst:?}"
    );
    assert!(wait_until(Duration::from_secs(2), || read_metric(
        addr,
        "wsrooms_connections"
    ) == 1.0));
}

#[test]
fn a_client_that_never_answers_pings_is_dropped_and_one_that_does_stays() {
    let server = spawn_command(Command::new(env!("CARGO_BIN_EXE_wsrooms")).args([
        "--ping-interval-secs",
        "1",
        "--pong-timeout-secs",
        "1",
        "--log-level",
        "info",
    ]));
    let log = server.log.clone();
    let addr = server.addr;

    // The live one reads (tungstenite answers each ping as it reads).
    let (mut live, _) = join(addr, "live", 2);
    let live_thread = std::thread::spawn(move || {
        live.get_mut()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let start = Instant::now();
        let mut pings = 0;
        while start.elapsed() < Duration::from_millis(4500) {
            match live.read() {
                Ok(Message::Ping(_)) => pings += 1,
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("the live client lost its connection: {e}"),
            }
        }
        live.get_mut().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        (live, pings)
    });

    // The dead one reads but never sends a pong.
    let cookie = login(addr, "dead", 2);
    let connected = Instant::now();
    let mut dead = raw_ws(addr, "/rooms/2/ws", Some(&cookie));
    let ping = read_until_opcode(&mut dead, PING);
    let ping_at = connected.elapsed();
    assert!(
        ping_at >= Duration::from_millis(900) && ping_at < Duration::from_millis(2500),
        "ping after {ping_at:?}"
    );
    let rest = read_to_eof(&mut dead, Duration::from_secs(4));
    let dropped_at = connected.elapsed();
    assert!(ping.payload.len() <= 125);
    assert!(
        rest.iter().all(|f| f.opcode != CLOSE),
        "a dead peer gets no close handshake"
    );
    assert!(
        dropped_at >= ping_at + Duration::from_millis(900) && dropped_at < Duration::from_secs(4),
        "ping at {ping_at:?}, dropped at {dropped_at:?}"
    );
    let line = log.wait_for(&["no pong"], Duration::from_secs(2));
    assert!(line.contains("127.0.0.1:"), "no peer address in {line:?}");

    // The live one is still in the room after several intervals.
    let (mut live, pings) = live_thread.join().unwrap();
    assert!(pings >= 3, "only {pings} pings in 4.5 s");
    let (mut other, _) = join(addr, "other", 2);
    other.send(Message::text("still there?")).unwrap();
    let m = next_of_type(&mut live, "message");
    assert_eq!(m["text"], "still there?");
    eprintln!(
        "dead peer: ping after {ping_at:?}, dropped after {dropped_at:?}; live peer answered {pings} pings"
    );
}

#[test]
fn a_peer_that_never_answers_our_close_is_dropped_after_the_close_timeout() {
    let close_timeout = Duration::from_millis(500);
    let addr = start(Config {
        echo: true,
        close_timeout,
        ..test_config()
    });
    // A binary message on a chat socket: the server closes 1003 and waits
    // for our close frame (a protocol error would be different: the server
    // fails that connection at once, close frame and FIN together).
    let cookie = login(addr, "mute", 8);
    let mut s = raw_ws(addr, "/rooms/8/ws", Some(&cookie));
    s.write_all(&client_frame(true, 2, b"bin")).unwrap();
    let sent_close = Instant::now();
    assert_eq!(read_until_opcode(&mut s, CLOSE).close().0, 1003);
    // We never answer.
    let rest = read_to_eof(&mut s, Duration::from_secs(5));
    let took = sent_close.elapsed();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        took >= close_timeout - Duration::from_millis(50),
        "dropped after {took:?}"
    );
    assert!(
        took < close_timeout + Duration::from_secs(1),
        "dropped only after {took:?}"
    );

    // A peer that answers the close but keeps its socket open: the server
    // sends FIN at once and forgets the connection by the close timeout.
    let mut t = raw_ws(addr, "/echo", None);
    t.write_all(&client_frame(true, 8, &1000u16.to_be_bytes()))
        .unwrap();
    assert_eq!(read_until_opcode(&mut t, CLOSE).close().0, 1000);
    read_to_eof(&mut t, Duration::from_secs(2));
    assert!(wait_until(
        close_timeout + Duration::from_secs(2),
        || read_metric(addr, "wsrooms_connections") == 1.0
    ));
}

#[test]
fn a_closed_connections_timer_does_not_fire_on_the_next_one_in_its_slot() {
    // One connection at a time: B can only be accepted in the slot A left.
    let head_timeout = Duration::from_millis(300);
    let ping_interval = Duration::from_secs(2);
    let addr = start(Config {
        max_connections: 1,
        head_timeout,
        ping_interval,
        echo: true,
        ..test_config()
    });
    // A: half a request, then it hangs up; its EOF back means the server
    // has dropped it and freed the only slot. Its head-timeout entry stays
    // in the timers, due 300 ms after A connected.
    let mut a = tcp(addr);
    a.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    a.shutdown(std::net::Shutdown::Write).unwrap();
    read_until_closed(&mut a, Duration::from_secs(2));
    // B: a WebSocket in that slot (101, not 503), whose own deadline is its
    // first ping, 2 s after its handshake: A's entry comes due in B's life.
    let b_asked = Instant::now(); // before the server's handshake instant
    let mut b = raw_ws(addr, "/echo", None);
    // There is no other slot: one more connection gets 503.
    assert_eq!(get(addr, "/healthz", "").status, 503);
    // Had A's entry fired on B, B would have had a ping (or a drop) right
    // then, about 300 ms in; B's first ping comes at its own deadline. A
    // slow machine can only make it later.
    read_until_opcode(&mut b, PING);
    let first_ping = b_asked.elapsed();
    assert!(
        first_ping >= ping_interval,
        "B had a ping after {first_ping:?}, before its own {ping_interval:?}: A's timer fired on it"
    );
}

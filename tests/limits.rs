//! SPEC §6–§7 over real sockets: the server stays up and bounded whatever
//! the peers do — clients that send but never read, that open connections
//! and never finish a request, that never answer a ping or a close, that
//! flood, that outnumber the file descriptors; and SIGTERM drains cleanly.
//!
//! Servers that must be measured from `/proc` (memory, CPU time) or
//! signalled run as child processes of the real binary; the others run in a
//! thread of the test with sub-second timeouts.

mod common;
mod limits_common;

use std::io::{self, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use limits_common::*;
use tungstenite::Message;

/// Bound on a spawned server's peak RSS in these tests (a debug build idles
/// at ≈3–4 MB).
const RSS_BOUND_KB: u64 = 24 * 1024;

// ----- backpressure: sends but never reads ------------------------------

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

    // Paused because its queue passed --pause-reading-at, and the queue
    // is bounded by that plus what one turn of reads produced (16 reads of
    // 64 KiB at most, each checked against the pause level first).
    let buffered = metric(addr, "wsrooms_buffered_bytes") as usize;
    assert!(
        buffered > PAUSE_AT,
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
        metric(addr, "wsrooms_websockets"),
        1.0,
        "the greedy client is still connected"
    );
}

// ----- slowloris ---------------------------------------------------------

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
        let open = metric(addr, "wsrooms_connections");
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
    assert!(wait_until(Duration::from_secs(2), || metric(
        addr,
        "wsrooms_connections"
    ) == 1.0));
}

// ----- file descriptors ----------------------------------------------------

#[test]
fn out_of_file_descriptors_refuses_stays_responsive_and_does_not_spin() {
    if !have_command("prlimit") {
        assert!(!in_ci(), "prlimit (util-linux) is missing");
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let (server, log) = spawn_logged(Command::new("prlimit").args([
        "--nofile=64:64",
        env!("CARGO_BIN_EXE_wsrooms"),
        "--head-timeout-secs",
        "60",
        "--log-level",
        "info",
    ]));
    let (addr, pid) = (server.addr, server.child.id());
    // The server saw the limit and lowered --max-connections to fit.
    let line = log.wait_for(&["--max-connections", "lowered to"], IO_TIMEOUT);
    let cap: usize = line
        .split("lowered to ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(cap < 64, "{line}");

    // Fill every slot (the last one with the metrics request itself).
    let mut held: Vec<TcpStream> = (0..cap - 1).map(|_| tcp(addr)).collect();
    assert_eq!(metric(addr, "wsrooms_connections"), cap as f64);
    held.push(tcp(addr));
    // Beyond it: 503, whether the client is silent or has already sent its
    // request when the server accepts it.
    for i in 0..10 {
        let mut s = tcp(addr);
        if i % 2 == 1 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
        }
        assert_eq!(
            read_response(&mut s).status,
            503,
            "connection {i} beyond the limit"
        );
    }
    let cpu_before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(1));
    let cpu = cpu_time(pid) - cpu_before;
    assert!(
        cpu < Duration::from_millis(200),
        "{cpu:?} of CPU in 1 s while full"
    );
    // Refusals are logged once, not once per connection.
    assert_eq!(
        log.matching(&["refused with 503"]).len(),
        1,
        "{}",
        log.all()
    );

    // Now run it out of descriptors for real (its count of connections
    // still thinks there is room): accept fails with EMFILE while the
    // backlog holds waiting clients. It must neither crash nor spin.
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=32:32"])
        .status()
        .unwrap();
    assert!(status.success(), "prlimit --pid failed");
    held.truncate(cap - 8); // fewer connections, still more fds than 32
    let mut waiting: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = tcp(addr);
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    log.wait_for(
        &["accept failed", "pausing accepts"],
        Duration::from_secs(5),
    );
    let window = Duration::from_secs(2);
    let cpu_before = cpu_time(pid);
    std::thread::sleep(window);
    let cpu = cpu_time(pid) - cpu_before;
    eprintln!("out of descriptors: server CPU {cpu:?} in {window:?} with a full backlog");
    assert!(
        cpu < window / 5,
        "the accept loop spins: {cpu:?} of CPU in {window:?}"
    );
    assert_eq!(
        log.matching(&["accept failed"]).len(),
        1,
        "accept errors flood the log:\n{}",
        log.all()
    );
    assert!(server_is_running(pid), "the server died");

    // Once others close, the waiting clients are served, and new ones too.
    held.clear();
    for s in &mut waiting {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(read_response(s).status, 200);
    }
    assert_eq!(get(addr, "/healthz", "").status, 200);
}

fn server_is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn the_connection_past_max_connections_gets_503() {
    let addr = start(Config {
        max_connections: 5,
        ..test_config()
    });
    let mut held: Vec<TcpStream> = (0..5).map(|_| tcp(addr)).collect();
    // The sixth: silent, or with its request already sent.
    let mut sixth = tcp(addr);
    let r = read_response(&mut sixth);
    assert_eq!(r.status, 503);
    let mut eager = tcp(addr);
    eager
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut eager).status, 503);
    // One leaves: there is room again.
    held.pop();
    assert!(wait_until(Duration::from_secs(5), || get(
        addr, "/healthz", ""
    )
    .status
        == 200));
    // The five are still there.
    assert!(held.iter().all(|s| !is_closed(s)));
}

// ----- graceful shutdown -----------------------------------------------

#[test]
fn sigterm_closes_every_socket_with_1001_and_exits_0() {
    let (mut server, log) =
        spawn_logged(Command::new(env!("CARGO_BIN_EXE_wsrooms")).args(["--log-level", "info"]));
    let addr = server.addr;
    let mut clients: Vec<Ws> = (0..20)
        .map(|i| join(addr, &format!("c{i}"), 1 + (i % 3)).0)
        .collect();
    let signalled = Instant::now();
    sigterm(server.child.id());
    for (i, ws) in clients.iter_mut().enumerate() {
        let (code, _) = expect_close(ws);
        assert_eq!(code, 1001, "client {i}");
        // Our close reply goes out on the next read; then the server hangs up.
        loop {
            match ws.read() {
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => break,
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                    break
                }
                Err(e) => panic!("client {i}: {e}"),
            }
        }
    }
    // Every socket answered, so it need not wait the 5 s drain time.
    let status = wait_exit(&mut server.child, Duration::from_secs(5))
        .expect("still running 5 s after SIGTERM");
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} though every socket closed"
    );
    let summary = log.wait_for(&["stopped:"], IO_TIMEOUT);
    eprintln!("SIGTERM → exit 0 in {took:?}; {summary}");
}

#[test]
fn sigterm_waits_no_longer_than_the_drain_time_for_silent_sockets() {
    let mut server = spawn_binary(&["--shutdown-timeout-secs", "2", "--log-level", "warn"]);
    let addr = server.addr;
    // One socket that will never answer the close, one idle HTTP connection
    // with half a request.
    let cookie = login(addr, "mute", 4);
    let mut mute = raw_ws(addr, "/rooms/4/ws", Some(&cookie));
    let mut half = tcp(addr);
    half.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    read_until_opcode(&mut mute, TEXT); // welcome: it is in the room
    let signalled = Instant::now();
    sigterm(server.child.id());
    assert_eq!(read_until_opcode(&mut mute, CLOSE).close().0, 1001);
    let status = wait_exit(&mut server.child, Duration::from_secs(6))
        .expect("still running 6 s after SIGTERM");
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(4),
        "exited after {took:?}"
    );
    read_until_closed(&mut mute, Duration::from_secs(1));
    read_until_closed(&mut half, Duration::from_secs(1));
}

// ----- keepalive ---------------------------------------------------------

#[test]
fn a_client_that_never_answers_pings_is_dropped_and_one_that_does_stays() {
    let (server, log) = spawn_logged(Command::new(env!("CARGO_BIN_EXE_wsrooms")).args([
        "--ping-interval-secs",
        "1",
        "--pong-timeout-secs",
        "1",
        "--log-level",
        "info",
    ]));
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
    eprintln!("dead peer: ping after {ping_at:?}, dropped after {dropped_at:?}; live peer answered {pings} pings");
}

// ----- rate limit ----------------------------------------------------------

#[test]
fn a_flood_of_1000_messages_is_closed_1008_and_the_room_carries_on() {
    let addr = start(test_config()); // 20/s, burst 40
    let (mut flooder, _) = join(addr, "flood", 9);
    let (mut calm, _) = join(addr, "calm", 9);
    next_of_type(&mut flooder, "join"); // calm joined

    for i in 0..1000 {
        flooder.write(Message::text(format!("spam {i}"))).unwrap();
    }
    flooder.flush().unwrap();
    let mut passed = 0;
    let close = loop {
        match flooder.read().expect("read") {
            Message::Text(t) if t.as_str().contains("\"type\":\"message\"") => passed += 1,
            Message::Close(Some(f)) => break (u16::from(f.code), f.reason.to_string()),
            Message::Close(None) => panic!("close without a code"),
            _ => {}
        }
    };
    assert_eq!(close, (1008, "rate limit".to_string()));
    assert!(
        (40..=45).contains(&passed),
        "{passed} messages passed the burst of 40"
    );

    // The other member saw exactly those, then the flooder leave…
    let mut seen = 0;
    loop {
        let e = next_event(&mut calm);
        match e["type"].as_str().unwrap() {
            "message" => {
                assert_eq!(e["text"], format!("spam {seen}"));
                seen += 1;
            }
            "leave" => {
                assert_eq!(e["user"], "flood");
                break;
            }
            other => panic!("unexpected {other}: {e}"),
        }
    }
    assert_eq!(seen, passed);
    // …and is unaffected: it still sends and receives.
    for i in 0..5 {
        calm.send(Message::text(format!("calm {i}"))).unwrap();
        assert_eq!(
            next_of_type(&mut calm, "message")["text"],
            format!("calm {i}")
        );
    }
}

// ----- close handshake timeout --------------------------------------------

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
        || metric(addr, "wsrooms_connections") == 1.0
    ));
}

// ----- logging -------------------------------------------------------------

#[test]
fn each_refusal_and_forced_close_logs_one_line_with_peer_and_reason() {
    let (server, log) =
        spawn_logged(Command::new(env!("CARGO_BIN_EXE_wsrooms")).args(["--log-level", "info"]));
    let addr = server.addr;
    let wait = Duration::from_secs(5);

    // A request head over --max-head-bytes: 431.
    let mut big = tcp(addr);
    let peer = big.local_addr().unwrap().to_string();
    big.write_all(format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(9000)).as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut big).status, 431);
    log.wait_for(&[&peer, "refused", "431"], wait);

    // A handshake from a foreign origin: 403.
    let cookie = login(addr, "origin", 6);
    let mut foreign = tcp(addr);
    let peer = foreign.local_addr().unwrap().to_string();
    let request = upgrade_request(addr, "/rooms/6/ws", Some(&cookie)).replace(
        &format!("Origin: http://{addr}"),
        "Origin: http://evil.example",
    );
    foreign.write_all(request.as_bytes()).unwrap();
    assert_eq!(read_response(&mut foreign).status, 403);
    log.wait_for(&[&peer, "refused", "403"], wait);

    // A protocol error: 1002.
    let mut bad = raw_ws(addr, "/rooms/6/ws", Some(&cookie));
    let peer = bad.local_addr().unwrap().to_string();
    bad.write_all(&[0x81, 0x02, b'h', b'i']).unwrap(); // unmasked
    assert_eq!(read_until_opcode(&mut bad, CLOSE).close().0, 1002);
    log.wait_for(&[&peer, "1002"], wait);

    // A binary message on a chat socket: 1003.
    let cookie = login(addr, "binary", 6);
    let mut binary = raw_ws(addr, "/rooms/6/ws", Some(&cookie));
    let peer = binary.local_addr().unwrap().to_string();
    binary
        .write_all(&client_frame(true, 2, b"\x00\x01"))
        .unwrap();
    assert_eq!(read_until_opcode(&mut binary, CLOSE).close().0, 1003);
    log.wait_for(&[&peer, "1003"], wait);

    // A flood: one line, not one per message.
    let cookie = login(addr, "flood", 6);
    let mut flood = raw_ws(addr, "/rooms/6/ws", Some(&cookie));
    let peer = flood.local_addr().unwrap().to_string();
    let burst: Vec<u8> = (0..1000)
        .flat_map(|i| client_frame(true, 1, format!("m{i}").as_bytes()))
        .collect();
    flood.write_all(&burst).unwrap();
    assert_eq!(
        read_until_opcode(&mut flood, CLOSE).close(),
        (1008, "rate limit".to_string())
    );
    log.wait_for(&[&peer, "rate limit"], wait);
    std::thread::sleep(Duration::from_millis(200)); // any further lines would be out by now
    assert_eq!(log.matching(&[&peer]).len(), 1, "{}", log.all());
}

// ----- timers and slot reuse ------------------------------------------------

#[test]
fn a_closed_connections_timer_does_not_fire_on_the_next_one_in_its_slot() {
    let head_timeout = Duration::from_millis(600);
    let addr = start(Config {
        head_timeout,
        ..test_config()
    });
    // A: half a request, then it hangs up; its EOF back means the server
    // has dropped it and freed its slot (the only one in use).
    let t0 = Instant::now();
    let mut a = tcp(addr);
    a.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    a.shutdown(std::net::Shutdown::Write).unwrap();
    read_until_closed(&mut a, Duration::from_secs(2));
    // B takes that slot, later: A's timer entry (t0 + 600 ms) comes due
    // while B's own deadline is still ahead.
    std::thread::sleep(Duration::from_millis(300));
    let mut b = tcp(addr);
    b.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let b_opened = Instant::now();
    std::thread::sleep((t0 + Duration::from_millis(750)).saturating_duration_since(Instant::now()));
    assert!(!is_closed(&b), "B was dropped by A's timer");
    read_until_closed(&mut b, Duration::from_secs(3));
    let lived = b_opened.elapsed();
    assert!(
        lived >= head_timeout - Duration::from_millis(50),
        "B lived only {lived:?}"
    );
}

//! Graceful shutdown on SIGTERM, against the real binary: every WebSocket
//! gets a `1001` close and the server exits 0 as soon as every socket has
//! finished; a socket that makes no progress (a frozen client whose close
//! cannot even be written, or a peer that never answers it) holds the exit
//! for the stall time only (500 ms), so a restart under load is quick; one
//! still reading holds it up to the drain deadline; the listeners close at
//! once; a half-sent request head or upgrade does not hold the exit;
//! responses already queued are sent whole before the FIN.

mod common;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;

#[test]
fn sigterm_closes_every_socket_with_1001_and_exits_0() {
    let mut server =
        spawn_command(Command::new(env!("CARGO_BIN_EXE_wsrooms")).args(["--log-level", "info"]));
    let log = server.log.clone();
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
                    break;
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
    let summary = log.wait_for(
        &["stopped ", "every connection finished closing"],
        IO_TIMEOUT,
    );
    eprintln!("SIGTERM → exit 0 in {took:?}; {summary}");
}

/// A socket that reads our `1001` but never answers it, and an idle
/// connection with half a request: neither holds the exit longer than the
/// stall time (500 ms), and the last line counts the one cut.
#[test]
fn a_socket_that_never_answers_the_close_holds_the_exit_for_the_stall_time_only() {
    let mut server = spawn_binary(&["--log-level", "info"]);
    let addr = server.addr;
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
        took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
        "exited after {took:?}"
    );
    let line = server.log.wait_for(&["stopped "], IO_TIMEOUT);
    assert!(
        line.contains("the connections left made no progress")
            && line.contains("had not finished closing (1 stalled"),
        "{line}"
    );
    read_until_closed(&mut mute, Duration::from_secs(1));
    read_until_closed(&mut half, Duration::from_secs(1));
}

/// A client still reading what was queued for it before its `1001` (here
/// a 24 MiB echo, read at 8 MB/s) makes progress, so it holds the
/// exit, up to `--shutdown-timeout-secs`.
#[test]
fn a_client_still_reading_holds_the_exit_up_to_the_drain_time() {
    let mut server = spawn_binary(&[
        "--echo",
        "--max-message-bytes",
        "25165824",
        "--shutdown-timeout-secs",
        "2",
        "--log-level",
        "info",
    ]);
    let slow = slow_echo_reader(server.addr, 24 << 20, 8 << 20);
    assert!(
        wait_until(IO_TIMEOUT, || slow.read.load(Ordering::Relaxed) > 0),
        "the echo never came"
    );
    let signalled = Instant::now();
    sigterm(server.child.id());
    let status = wait_exit(&mut server.child, Duration::from_secs(6))
        .expect("still running 6 s after SIGTERM");
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(4),
        "exited after {took:?}"
    );
    let line = server.log.wait_for(&["stopped "], IO_TIMEOUT);
    assert!(line.contains("the drain time was over"), "{line}");
    assert!(
        slow.read.load(Ordering::Relaxed) < 24 << 20,
        "it was still reading"
    );
}

/// A restart under load (SIGTERM with a data file, a room chatting as fast
/// as it can) with a frozen client in the room: it upgraded, then never
/// read (a tiny receive buffer, so its queue cannot drain and our `1001`
/// cannot even be written). It must not hold the exit: the process exits
/// within 1.5 s of the signal, every other socket gets its `1001`, the last
/// line counts the frozen one, and the next process serves the same file.
#[test]
fn a_frozen_client_does_not_hold_a_restart_under_load() {
    let dir = TempDir::new("frozen-restart");
    let data = dir.join("rooms.db");
    let data = data.to_str().unwrap();
    let args = [
        "--data-file",
        data,
        "--rate-limit",
        "0",
        "--max-buffered",
        "67108864",
        "--log-level",
        "info",
    ];
    let mut server = spawn_binary(&args);
    let addr = server.addr;
    let cookie = login(addr, "frozen", 5);
    let _frozen = upgrade_on(
        small_buffer_tcp(addr, 4096, 0),
        addr,
        "/rooms/5/ws",
        Some(&cookie),
    );
    let chatting: Vec<Ws> = (0..8).map(|i| join(addr, &format!("c{i}"), 5).0).collect();
    let signalled_flag = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = chatting
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            let signalled = signalled_flag.clone();
            std::thread::spawn(move || chat_until_closed(ws, i == 0, &signalled))
        })
        .collect();
    // Wait until the frozen client's queue has grown well past what the
    // kernel buffers hold.
    assert!(
        wait_until(Duration::from_secs(30), || read_metric(
            addr,
            "wsrooms_buffered_bytes"
        ) > 256.0 * 1024.0),
        "the frozen client's queue did not grow"
    );
    let signalled = Instant::now();
    signalled_flag.store(true, Ordering::Relaxed);
    sigterm(server.child.id());
    let status = wait_exit(&mut server.child, Duration::from_secs(10))
        .expect("still running 10 s after SIGTERM");
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    for (i, t) in threads.into_iter().enumerate() {
        assert_eq!(t.join().unwrap(), Some(1001), "client {i}");
    }
    let line = server.log.wait_for(&["stopped "], IO_TIMEOUT);
    assert!(
        took < Duration::from_millis(1500),
        "a frozen client held the restart for {took:?}: {line}"
    );
    assert!(
        line.contains("1 of ") && line.contains("had not finished closing (1 stalled"),
        "{line}"
    );
    let next = spawn_binary(&args);
    assert_eq!(get(next.addr, "/healthz", "").status, 200);
    eprintln!(
        "SIGTERM → exit in {took:?}, the next process served at {:?}; {line}",
        signalled.elapsed()
    );
}

/// A client that keeps reading slowly holds the old process for the whole
/// drain, but not the data file: the file is closed right after the commit
/// of the signal's turn, so the next process opens it and serves, with
/// every message, within 1.5 s of the signal while the old one still
/// drains.
#[test]
fn a_slow_reader_does_not_hold_the_data_file_during_the_drain() {
    let dir = TempDir::new("slow-restart");
    let data = dir.join("rooms.db");
    let data = data.to_str().unwrap();
    let args = [
        "--data-file",
        data,
        "--rate-limit",
        "0",
        "--echo",
        "--max-message-bytes",
        "25165824",
        "--shutdown-timeout-secs",
        "5",
        "--log-level",
        "info",
    ];
    let mut server = spawn_binary(&args);
    let (mut alice, _) = join(server.addr, "alice", 3);
    for n in 0..10 {
        alice.send(Message::text(format!("kept {n}"))).unwrap();
        next_of_type(&mut alice, "message");
    }
    let slow = slow_echo_reader(server.addr, 24 << 20, 4 << 20);
    assert!(
        wait_until(IO_TIMEOUT, || slow.read.load(Ordering::Relaxed) > 0),
        "the echo never came"
    );
    let signalled = Instant::now();
    sigterm(server.child.id());
    server
        .log
        .wait_for(&["data file closed after the last commit"], IO_TIMEOUT);
    let next = spawn_binary(&args);
    let serving = signalled.elapsed();
    assert_eq!(get(next.addr, "/healthz", "").status, 200);
    assert!(
        is_running(server.child.id()),
        "the old process had exited: the slow reader did not hold it"
    );
    assert!(
        serving < Duration::from_millis(1500),
        "the next process served {serving:?} after the signal"
    );
    let (_, welcome) = join(next.addr, "bob", 3);
    let texts = history_texts(&welcome);
    assert_eq!(texts.len(), 10, "{texts:?}");
    assert_eq!(texts[9], "kept 9");
    let status = wait_exit(&mut server.child, Duration::from_secs(10))
        .expect("still running 10 s after SIGTERM");
    assert!(status.success(), "exit status {status}");
    drop(slow);
}

/// A room member: reads everything; the sender also sends one message per
/// event it reads (as fast as the room goes) until the signal. Answers the
/// server's close; returns its code.
fn chat_until_closed(mut ws: Ws, sender: bool, signalled: &AtomicBool) -> Option<u16> {
    let mut code = None;
    loop {
        if sender && code.is_none() && !signalled.load(Ordering::Relaxed) {
            let _ = ws.send(Message::text("load ".repeat(9)));
        }
        match ws.read() {
            Ok(Message::Close(frame)) => code = Some(frame.map_or(1005, |f| f.code.into())),
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return code;
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                return code;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn after_sigterm_new_connects_are_refused_while_the_server_drains() {
    let metrics_port = free_port();
    let metrics_bind = format!("127.0.0.1:{metrics_port}");
    let mut server = spawn_binary(&[
        "--echo",
        "--max-message-bytes",
        "25165824",
        "--metrics-bind",
        &metrics_bind,
        "--log-level",
        "info",
    ]);
    let addr = server.addr;
    let metrics_addr: SocketAddr = metrics_bind.parse().unwrap();
    assert_eq!(get(metrics_addr, "/healthz", "").status, 200);
    // A client still reading a big echo keeps the server draining; the
    // `1001` to another socket says the listeners are closed.
    let slow = slow_echo_reader(addr, 24 << 20, 8 << 20);
    assert!(wait_until(IO_TIMEOUT, || slow.read.load(Ordering::Relaxed) > 0));
    let mut mute = raw_ws(addr, "/echo", None);
    sigterm(server.child.id());
    assert_eq!(read_until_opcode(&mut mute, CLOSE).close().0, 1001);
    for target in [addr, metrics_addr] {
        let e = TcpStream::connect_timeout(&target, Duration::from_secs(2))
            .map(|_| ())
            .expect_err("a connect after SIGTERM was accepted");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{target}: {e}");
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "tested while draining"
    );
}

#[test]
fn a_half_sent_request_head_does_not_hold_the_exit() {
    let mut server = spawn_binary(&["--log-level", "warn"]);
    let addr = server.addr;
    let mut half = tcp(addr);
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    // A later request is answered after the half head was read.
    assert_eq!(get(addr, "/healthz", "").status, 200);
    let signalled = Instant::now();
    sigterm(server.child.id());
    let status = wait_exit(&mut server.child, Duration::from_secs(6))
        .expect("still running 6 s after SIGTERM");
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took < Duration::from_millis(1500),
        "a half head held the exit for {took:?} (drain limit 5 s)"
    );
    let answer = read_until_closed(&mut half, Duration::from_secs(1));
    assert!(answer.is_empty(), "no answer to half a head: {answer:?}");
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
    let request = upgrade_request(addr, "/rooms/8/ws", Some(&cookie));
    let (first, last) = request.split_at(request.len() - 2);
    let mut late = tcp(addr);
    late.write_all(first.as_bytes()).unwrap();
    // Let the server read the first part before the signal.
    assert_eq!(get(addr, "/healthz", "").status, 200);
    let signalled = std::time::Instant::now();
    sigterm(server.child.id());
    assert_eq!(expect_close(&mut watcher).0, 1001, "shutdown has begun");
    watcher.close(None).unwrap();
    let _ = watcher.flush();
    let _ = late.write_all(last.as_bytes());
    let answer = read_until_closed(&mut late, Duration::from_secs(2));
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let status = wait_exit(&mut server.child, Duration::from_secs(10))
        .expect("still running 10 s after SIGTERM");
    assert!(status.success(), "exit status {status}");
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(3), "exited after {took:?}");
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
    let mut slow = small_buffer_tcp(addr, 4096, 0);
    let request = format!("GET /static/room.js HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    slow.write_all(request.repeat(REQUESTS).as_bytes()).unwrap();
    // Wait until the server has read them (answered up to its pause).
    let last_before = get(addr, "/healthz", "");
    assert_eq!(last_before.status, 200);
    let signalled = std::time::Instant::now();
    sigterm(server.child.id());
    assert_eq!(expect_close(&mut watcher).0, 1001, "shutdown has begun");
    watcher.close(None).unwrap();
    let _ = watcher.flush();
    // Whole responses, then the server hangs up.
    let got = read_until_closed(&mut slow, Duration::from_secs(15));
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
    let status = wait_exit(&mut server.child, Duration::from_secs(20))
        .expect("still running 20 s after SIGTERM");
    assert!(status.success(), "exit status {status}");
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
}

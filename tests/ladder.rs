//! The learning ladder in `examples/` (docs/LEARN.md), each step run as a
//! real process on a free loopback port and talked to by a real client:
//! `tcp_echo` echoes bytes however they are cut, `http_hello` answers heads
//! sent in pieces and keeps the connection for pipelined requests,
//! `ws_echo` upgrades and echoes messages, pings and closes, `broadcast`
//! sends one message to everyone, pauses a client that does not read and
//! closes a receiver that falls too far behind with `1008`.
//!
//! The examples are built by `cargo test` (all targets); this test runs
//! `cargo build` for the four examples once first anyway, so that after editing an
//! example `cargo test --test ladder` runs the edited one.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;

/// A read from an example: one that times out says the server did not
/// answer in time (not a bare `WouldBlock`, which reads as if it failed).
trait Answered<T> {
    #[track_caller]
    fn answered(self) -> T;
}

impl<T> Answered<T> for std::io::Result<T> {
    #[track_caller]
    fn answered(self) -> T {
        match self {
            Ok(value) => value,
            Err(e) => read_failed("from the example", &e),
        }
    }
}

impl<T> Answered<T> for tungstenite::Result<T> {
    #[track_caller]
    fn answered(self) -> T {
        match self {
            Ok(value) => value,
            Err(tungstenite::Error::Io(e)) => read_failed("a WebSocket message", &e),
            Err(e) => panic!("reading a WebSocket message: {e}"),
        }
    }
}

/// A running example; killed on drop.
struct Example {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ladder's steps, in order.
const STEPS: [&str; 4] = ["tcp_echo", "http_hello", "ws_echo", "broadcast"];

/// `target/<profile>/examples/NAME`. The first call runs `cargo build
/// --examples` (quick when `cargo test` already built them, and it keeps
/// `cargo test --test ladder` from running examples older than their
/// source).
fn example_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/ladder-… → target/<profile>/examples/NAME
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    BUILT.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "--quiet"]).current_dir(repo());
        for step in STEPS {
            cargo.args(["--example", step]);
        }
        if profile_dir.ends_with("release") {
            cargo.arg("--release");
        }
        let out = run_bounded(&mut cargo, None, Duration::from_secs(300));
        assert!(out.exited().success(), "{cargo:?}: {}", out.stderr);
    });
    profile_dir.join("examples").join(name)
}

/// Starts example `name` on 127.0.0.1:0 and reads the address it prints
/// (`NAME listening on [scheme://]ADDR`).
fn start(name: &str) -> Example {
    let mut child = Command::new(example_binary(name))
        .arg("127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start example {name}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(IO_TIMEOUT).unwrap_or_default();
    let addr = line
        .trim()
        .rsplit(['/', ' '])
        .next()
        .and_then(|a| a.parse().ok());
    let Some(addr) = addr else {
        let _ = child.kill();
        panic!("example {name} printed {line:?}, not its address");
    };
    assert!(
        line.starts_with(&format!("{name} listening on ")),
        "{line:?}"
    );
    Example { child, addr }
}

// ----- step 1: tcp_echo ------------------------------------------------------

#[test]
fn tcp_echo_returns_bytes_however_they_are_cut() {
    let server = start("tcp_echo");
    let mut a = tcp(server.addr);
    let mut b = tcp(server.addr);
    for piece in ["hel", "lo wor", "ld\n"] {
        a.write_all(piece.as_bytes()).unwrap();
    }
    b.write_all(b"second client\n").unwrap();
    let mut got = [0u8; 12];
    a.read_exact(&mut got).answered();
    assert_eq!(&got, b"hello world\n");
    let mut got = [0u8; 14];
    b.read_exact(&mut got).answered();
    assert_eq!(&got, b"second client\n");
}

/// 4 MiB both ways at once: more than the socket buffers hold, so the
/// server must read until `WouldBlock`, stop while its echo is unsent, and
/// resume on the writable event (or the transfer stalls and times out).
#[test]
fn tcp_echo_streams_more_than_the_socket_buffers_hold() {
    let server = start("tcp_echo");
    let mut a = tcp(server.addr);
    let sent: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut writer = a.try_clone().unwrap();
    let data = sent.clone();
    let write = std::thread::spawn(move || writer.write_all(&data).unwrap());
    let mut got = vec![0u8; sent.len()];
    a.read_exact(&mut got).answered();
    write.join().unwrap();
    assert!(got == sent, "the echo differs from what was sent");
}

// ----- step 2: http_hello ----------------------------------------------------

#[test]
fn http_hello_answers_a_head_sent_in_pieces_and_keeps_the_connection() {
    let server = start("http_hello");
    let mut s = tcp(server.addr);
    for piece in ["GET / HT", "TP/1.1\r\nHo", "st: x\r\n", "\r\n"] {
        s.write_all(piece.as_bytes()).unwrap();
        s.flush().unwrap();
    }
    let r = read_response(&mut s);
    assert_eq!((r.status, r.text().as_str()), (200, "hello\n"));
    assert_eq!(r.header("connection"), Some("keep-alive"));
    // Two pipelined requests in one write, on the same connection; the
    // second asks to close.
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    let last = read_response(&mut s);
    assert_eq!(last.header("connection"), Some("close"));
    assert!(read_until_closed(&mut s, IO_TIMEOUT).is_empty());
}

#[test]
fn http_hello_refuses_an_oversized_or_broken_head() {
    let server = start("http_hello");
    let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
    let mut s = tcp(server.addr);
    s.write_all(long.as_bytes()).unwrap();
    assert_eq!(read_response(&mut s).status, 431);
    assert_eq!(http_raw(server.addr, "NOT HTTP\r\n\r\n").status, 400);
}

// ----- step 3: ws_echo -------------------------------------------------------

#[test]
fn ws_echo_echoes_messages_answers_pings_and_closes() {
    let server = start("ws_echo");
    let mut ws = ws_connect_path(server.addr, "/", None, None).expect("handshake");
    ws.send(Message::text("héllo")).unwrap();
    assert_eq!(ws.read().answered(), Message::text("héllo"));
    let big = vec![7u8; 200_000];
    ws.send(Message::binary(big.clone())).unwrap();
    assert_eq!(ws.read().answered(), Message::binary(big));
    ws.send(Message::Ping(b"p".to_vec().into())).unwrap();
    assert_eq!(ws.read().answered(), Message::Pong(b"p".to_vec().into()));
    let mut raw = raw_ws(server.addr, "/", None);
    raw.write_all(&client_frame(true, 0x8, &4001u16.to_be_bytes()))
        .unwrap();
    let frames = read_to_eof(&mut raw, IO_TIMEOUT);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].close().0, 4001);
}

#[test]
fn ws_echo_refuses_a_bad_upgrade_and_a_bad_frame() {
    let server = start("ws_echo");
    let no_key = format!(
        "GET / HTTP/1.1\r\nHost: {0}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    assert_eq!(http_raw(server.addr, &no_key).status, 400);
    // An unmasked client frame is a protocol error: 1002.
    let mut raw = raw_ws(server.addr, "/", None);
    raw.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    let frames = read_to_eof(&mut raw, IO_TIMEOUT);
    assert_eq!(frames.last().map(|f| f.close().0), Some(1002), "{frames:?}");
}

// ----- step 4: broadcast -----------------------------------------------------

#[test]
fn broadcast_sends_one_message_to_everyone() {
    let server = start("broadcast");
    let mut clients: Vec<Ws> = (0..3)
        .map(|_| ws_connect_path(server.addr, "/", None, None).expect("handshake"))
        .collect();
    clients[1].send(Message::text("hello room")).unwrap();
    for ws in &mut clients {
        assert_eq!(ws.read().answered(), Message::text("hello room"));
    }
}

/// A receiver that never reads is closed with `1008` once too much is
/// queued for it, while the sender goes on.
#[test]
fn broadcast_closes_a_receiver_that_falls_too_far_behind() {
    const MESSAGES: usize = 200;
    let server = start("broadcast");
    let mut slow = upgrade_on(
        small_buffer_tcp(server.addr, 4096, 0),
        server.addr,
        "/",
        None,
    );
    let mut fast = ws_connect_path(server.addr, "/", None, None).expect("handshake");
    let payload = vec![1u8; 60_000];
    for _ in 0..MESSAGES {
        fast.send(Message::binary(payload.clone())).unwrap();
        assert_eq!(fast.read().answered().len(), payload.len());
    }
    let frames = read_to_eof(&mut slow, Duration::from_secs(30));
    let (last, data) = frames.split_last().expect("some frames");
    assert_eq!(last.close(), (1008, "backpressure limit".to_string()));
    assert!(data.len() < MESSAGES, "all {MESSAGES} arrived");
}

/// A client that sends but does not read is not read from while its own
/// echoes are queued (so TCP holds its sends back), and is not closed:
/// once it reads, everything it sent comes back.
#[test]
fn broadcast_pauses_reading_a_client_that_does_not_read() {
    let server = start("broadcast");
    let mut client = upgrade_on(
        small_buffer_tcp(server.addr, 4096, 4096),
        server.addr,
        "/",
        None,
    );
    let frame = client_frame(true, 0x2, &[3u8; 60_000]);
    // Send whole frames until the server stops taking them.
    client
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let (mut whole, mut cut_at) = (0, None);
    let started = Instant::now();
    while cut_at.is_none() {
        assert!(
            whole < 500,
            "the server read 30 MB from a client that does not read"
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        match write_some(&mut client, &frame) {
            Ok(()) => whole += 1,
            Err(written) => cut_at = Some(written),
        }
    }
    // Now read: the server resumes; finish the cut frame meanwhile.
    let mut reader = client.try_clone().unwrap();
    let read = std::thread::spawn(move || {
        (0..=whole)
            .map(|_| next_frame(&mut reader).opcode)
            .collect::<Vec<u8>>()
    });
    client.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    client.write_all(&frame[cut_at.unwrap()..]).unwrap();
    let opcodes = read.join().expect("every echo, and no close");
    assert!(opcodes.iter().all(|&op| op == 0x2), "{opcodes:?}");
    client
        .write_all(&client_frame(true, 0x8, &1000u16.to_be_bytes()))
        .unwrap();
    let frames = read_to_eof(&mut client, IO_TIMEOUT);
    assert_eq!(frames.last().map(|f| f.close().0), Some(1000));
}

/// Writes `frame`; `Err(bytes written)` when the peer stopped taking it
/// (the write timed out) partway.
fn write_some(stream: &mut TcpStream, frame: &[u8]) -> Result<(), usize> {
    let mut at = 0;
    while at < frame.len() {
        match stream.write(&frame[at..]) {
            Ok(n) => at += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(at);
            }
            Err(e) => panic!("write failed after {at} bytes: {e} (closed instead of paused?)"),
        }
    }
    Ok(())
}

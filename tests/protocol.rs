//! RFC 6455 conformance of the server side (issue 3), as tables of
//! raw-byte cases over a real socket to `/echo`.
//!
//! Every case is a script of steps: bytes to send, and what the server must
//! answer (exact frame bytes, a close code, or the end of the TCP stream).
//! Each case runs twice: once with every `Send` written whole, once written
//! one byte at a time (TCP_NODELAY, one `write` per byte), and must give the
//! same result both ways. A table test runs all its cases and then reports
//! every failing one by name.
//!
//! The servers here wait 60 s for a peer's close frame, so a server that only
//! hangs up after its close timeout fails the `Eof` steps (which wait 3 s).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::*;
use sha1::{Digest, Sha1};
use wsrooms::ws::frame::{Opcode, encode_client_frame, encode_frame};

// ----- servers -------------------------------------------------------------

/// Limits of the `Small` server, for the `1009` cases.
const SMALL_FRAME: usize = 1000;
const SMALL_MESSAGE: usize = 3000;

#[derive(Clone, Copy, Debug)]
enum Srv {
    /// `/echo` with 1 MiB frames and messages.
    Main,
    /// `/echo` with `SMALL_FRAME` / `SMALL_MESSAGE`.
    Small,
}

fn server(which: Srv) -> SocketAddr {
    static MAIN: OnceLock<SocketAddr> = OnceLock::new();
    static SMALL: OnceLock<SocketAddr> = OnceLock::new();
    let (cell, frame, message) = match which {
        Srv::Main => (&MAIN, 1 << 20, 1 << 20),
        Srv::Small => (&SMALL, SMALL_FRAME, SMALL_MESSAGE),
    };
    *cell.get_or_init(|| {
        start(Config {
            echo: true,
            max_frame_bytes: frame,
            max_message_bytes: message,
            close_timeout: Duration::from_secs(60),
            ..test_config()
        })
    })
}

// ----- bytes -----------------------------------------------------------------

/// A masked client frame (`client_frame`, short for the tables).
fn cf(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_frame(fin, opcode, payload)
}

fn text(s: &str) -> Vec<u8> {
    cf(true, 1, s.as_bytes())
}

fn bin(b: &[u8]) -> Vec<u8> {
    cf(true, 2, b)
}

/// A client close frame with a code and a reason.
fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    cf(true, 8, &p)
}

/// A masked frame with a hand-made length field (`len_field` is the 7-bit
/// length followed by any extended length bytes), for non-minimal and other
/// odd encodings.
fn raw_frame(b0: u8, len_field: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0, 0x80 | len_field[0]];
    out.extend_from_slice(&len_field[1..]);
    out.extend_from_slice(&MASK);
    let start = out.len();
    out.extend_from_slice(payload);
    wsrooms::ws::frame::apply_mask(&mut out[start..], MASK, 0);
    out
}

/// Only the header (with mask key) of a masked frame of `len` bytes.
fn header_only(b0: u8, len: u64) -> Vec<u8> {
    let mut out = vec![b0];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + 7) as u8).collect()
}

/// `n` bytes of valid UTF-8 mixing 1-, 2-, 3- and 4-byte characters.
fn utf8_text(n: usize) -> String {
    let mut s = String::new();
    let chars = ['a', 'é', '한', '🎉', 'z', 'κ'];
    let mut i = 0;
    while s.len() < n {
        let c = chars[i % chars.len()];
        if s.len() + c.len_utf8() > n {
            s.push('x');
        } else {
            s.push(c);
        }
        i += 1;
    }
    s
}

/// The exact bytes of the server's (unmasked, final) frame.
fn srv(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    encode_frame(opcode, payload)
}

fn srv_text(s: &str) -> Vec<u8> {
    srv(Opcode::Text, s.as_bytes())
}

fn srv_bin(b: &[u8]) -> Vec<u8> {
    srv(Opcode::Binary, b)
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// ----- the runner ------------------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    /// Bytes from the client (written whole or one byte at a time).
    Send(Vec<u8>),
    /// One server frame, byte for byte.
    Recv(Vec<u8>),
    /// A server close frame with this code (any UTF-8 reason).
    Close(u16),
    /// The server closed the TCP connection: a read gives EOF, no more bytes.
    Eof,
}

use Step::*;

struct Case {
    name: String,
    srv: Srv,
    steps: Vec<Step>,
}

fn case(name: impl Into<String>, steps: Vec<Step>) -> Case {
    Case {
        name: name.into(),
        srv: Srv::Main,
        steps,
    }
}

fn small(name: impl Into<String>, steps: Vec<Step>) -> Case {
    Case {
        name: name.into(),
        srv: Srv::Small,
        steps,
    }
}

/// `send`, then the server answers `expect` frames in order, and the socket is
/// still open: a normal close handshake ends it.
fn echo(send: Vec<u8>, expect: Vec<Vec<u8>>) -> Vec<Step> {
    let mut steps = vec![Send(send)];
    steps.extend(expect.into_iter().map(Recv));
    steps.extend(closes_cleanly());
    steps
}

/// Our close 1000 is echoed, then the server ends the TCP connection.
fn closes_cleanly() -> Vec<Step> {
    vec![Send(close_frame(1000, b"")), Close(1000), Eof]
}

/// `send` makes the server fail the connection with `code`; our close
/// frame afterwards changes nothing and the TCP connection ends.
fn fails(send: Vec<u8>, code: u16) -> Vec<Step> {
    vec![Send(send), Close(code), Send(close_frame(1000, b"")), Eof]
}

fn describe(raw: &[u8]) -> String {
    if raw.len() > 40 {
        format!("{:02x?}… ({} bytes)", &raw[..40], raw.len())
    } else {
        format!("{raw:02x?}")
    }
}

/// The next server frame, or what went wrong, for the failure list.
fn next(s: &mut TcpStream) -> Result<RawFrame, String> {
    match read_frame(s) {
        Ok(Some(frame)) => Ok(frame),
        Ok(None) => Err("reading a frame: end of stream".into()),
        Err(e) => Err(format!("reading a frame: {e}")),
    }
}

fn send(s: &mut TcpStream, bytes: &[u8], bytewise: bool) -> Result<(), String> {
    let result = if bytewise {
        bytes
            .iter()
            .try_for_each(|b| s.write_all(std::slice::from_ref(b)))
    } else {
        s.write_all(bytes)
    };
    result.map_err(|e| format!("writing: {e}"))
}

/// Opens `/echo` with a hand-written handshake.
fn open_echo(addr: SocketAddr) -> TcpStream {
    let mut s = tcp(addr);
    s.write_all(handshake_request("").as_bytes()).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 101, "echo handshake: {}", r.text());
    s
}

fn run_steps(s: &mut TcpStream, steps: &[Step], bytewise: bool) -> Result<(), String> {
    for (i, step) in steps.iter().enumerate() {
        let at = |e: String| format!("step {i} ({}): {e}", step_name(step));
        match step {
            Send(bytes) => send(s, bytes, bytewise).map_err(at)?,
            Recv(want) => {
                let got = next(s).map_err(at)?.bytes();
                if &got != want {
                    return Err(at(format!(
                        "expected {}, got {}",
                        describe(want),
                        describe(&got)
                    )));
                }
            }
            Close(code) => {
                let got = next(s).map_err(at)?;
                if got.opcode != 8 || got.payload.len() < 2 {
                    return Err(at(format!(
                        "expected close {code}, got {}",
                        describe(&got.bytes())
                    )));
                }
                let got_code = u16::from_be_bytes([got.payload[0], got.payload[1]]);
                if got_code != *code {
                    return Err(at(format!(
                        "expected close {code}, got close {got_code} {:?}",
                        String::from_utf8_lossy(&got.payload[2..])
                    )));
                }
                if std::str::from_utf8(&got.payload[2..]).is_err() {
                    return Err(at("close reason is not UTF-8".into()));
                }
            }
            Eof => {
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let mut buf = [0u8; 256];
                match s.read(&mut buf) {
                    Ok(0) => {}
                    Ok(n) => return Err(at(format!("expected EOF, got {}", describe(&buf[..n])))),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        return Err(at("the server did not close the connection".into()));
                    }
                    Err(e) => return Err(at(format!("expected a clean EOF, got {e}"))),
                }
            }
        }
    }
    Ok(())
}

fn step_name(step: &Step) -> String {
    match step {
        Send(b) => format!("send {} bytes", b.len()),
        Recv(b) => format!("recv {} bytes", b.len()),
        Close(c) => format!("close {c}"),
        Eof => "eof".into(),
    }
}

/// Runs every case whole and byte by byte; panics listing every failure.
fn run_table(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in &cases {
        for bytewise in [false, true] {
            let mode = if bytewise { "bytewise" } else { "whole" };
            let mut s = open_echo(server(c.srv));
            if let Err(e) = run_steps(&mut s, &c.steps, bytewise) {
                failures.push(format!("{} [{mode}]: {e}", c.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        cases.len() * 2,
        failures.join("\n")
    );
}

// ----- handshake -------------------------------------------------------------

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn handshake_request(extra: &str) -> String {
    format!(
        "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Computed here, independently of the server's code.
fn expected_accept(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    BASE64.encode(sha.finalize())
}

/// What a handshake case expects.
enum Answer {
    /// `101`, with this `Sec-WebSocket-Protocol` (or none), then a working echo.
    Upgraded(Option<&'static str>),
    /// This status and no upgrade.
    Refused(u16),
}

fn handshake_cases() -> Vec<(&'static str, String, Answer)> {
    use Answer::*;
    let base = |upgrade: &str, connection: &str| {
        format!(
            "GET /echo HTTP/1.1\r\nHost: localhost\r\n{upgrade}{connection}Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    let with_key = |key: &str| {
        format!(
            "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    let with_version = |v: &str| {
        format!(
            "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n{v}\r\n"
        )
    };
    let key15 = BASE64.encode([7u8; 15]);
    let key17 = BASE64.encode([7u8; 17]);
    vec![
        ("plain", handshake_request(""), Upgraded(None)),
        (
            "tokens in other cases",
            base("Upgrade: WebSocket\r\n", "Connection: UPGRADE\r\n"),
            Upgraded(None),
        ),
        (
            "connection list keep-alive, Upgrade",
            base("Upgrade: websocket\r\n", "Connection: keep-alive, Upgrade\r\n"),
            Upgraded(None),
        ),
        (
            "connection list without spaces",
            base("Upgrade: websocket\r\n", "Connection: keep-alive,upgrade\r\n"),
            Upgraded(None),
        ),
        (
            "connection tokens in two headers",
            base(
                "Upgrade: websocket\r\n",
                "Connection: keep-alive\r\nConnection: Upgrade\r\n",
            ),
            Upgraded(None),
        ),
        (
            "upgrade list",
            base("Upgrade: h2c, websocket\r\n", "Connection: Upgrade\r\n"),
            Upgraded(None),
        ),
        (
            "lower-case header names",
            "GET /echo HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n".into(),
            Upgraded(None),
        ),
        (
            "subprotocol chat offered",
            handshake_request("Sec-WebSocket-Protocol: chat\r\n"),
            Upgraded(Some("chat")),
        ),
        (
            "subprotocol chat in a list",
            handshake_request("Sec-WebSocket-Protocol: superchat, chat\r\n"),
            Upgraded(Some("chat")),
        ),
        (
            "subprotocol not spoken",
            handshake_request("Sec-WebSocket-Protocol: mqtt, wamp.2.json\r\n"),
            Upgraded(None),
        ),
        (
            "extension offered, none chosen",
            handshake_request("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"),
            Upgraded(None),
        ),
        (
            "POST",
            handshake_request("").replacen("GET", "POST", 1),
            Refused(405),
        ),
        (
            "HTTP/1.0",
            handshake_request("").replacen("HTTP/1.1", "HTTP/1.0", 1),
            Refused(400),
        ),
        (
            "no Upgrade header",
            base("", "Connection: Upgrade\r\n"),
            Refused(400),
        ),
        (
            "Upgrade: h2c",
            base("Upgrade: h2c\r\n", "Connection: Upgrade\r\n"),
            Refused(400),
        ),
        (
            "Upgrade: websockets",
            base("Upgrade: websockets\r\n", "Connection: Upgrade\r\n"),
            Refused(400),
        ),
        (
            "no Connection header",
            base("Upgrade: websocket\r\n", ""),
            Refused(400),
        ),
        (
            "Connection: keep-alive only",
            base("Upgrade: websocket\r\n", "Connection: keep-alive\r\n"),
            Refused(400),
        ),
        (
            "Connection: upgraded",
            base("Upgrade: websocket\r\n", "Connection: upgraded\r\n"),
            Refused(400),
        ),
        (
            "version 8",
            with_version("Sec-WebSocket-Version: 8\r\n"),
            Refused(426),
        ),
        (
            "version 14",
            with_version("Sec-WebSocket-Version: 14\r\n"),
            Refused(426),
        ),
        ("no version", with_version(""), Refused(426)),
        ("no key", with_key("").replace("Sec-WebSocket-Key: \r\n", ""), Refused(400)),
        ("empty key", with_key(""), Refused(400)),
        ("key not base64", with_key("!!!!notbase64!!!!!!!!!!="), Refused(400)),
        ("key of 15 bytes", with_key(&key15), Refused(400)),
        ("key of 17 bytes", with_key(&key17), Refused(400)),
        (
            "two keys",
            handshake_request(&format!("Sec-WebSocket-Key: {}\r\n", BASE64.encode([1u8; 16]))),
            Refused(400),
        ),
    ]
}

fn run_handshake(
    addr: SocketAddr,
    request: &str,
    answer: &Answer,
    bytewise: bool,
) -> Result<(), String> {
    let mut s = tcp(addr);
    send(&mut s, request.as_bytes(), bytewise)?;
    let r = read_response(&mut s);
    match answer {
        Answer::Refused(status) => {
            if r.status != *status {
                return Err(format!("expected {status}, got {} {}", r.status, r.text()));
            }
            if *status == 426 && r.header("Sec-WebSocket-Version") != Some("13") {
                return Err(format!("426 without Sec-WebSocket-Version: 13: {r:?}"));
            }
            if r.header("Sec-WebSocket-Accept").is_some() {
                return Err("a refusal with Sec-WebSocket-Accept".into());
            }
            Ok(())
        }
        Answer::Upgraded(protocol) => {
            if r.status != 101 {
                return Err(format!("expected 101, got {} {}", r.status, r.text()));
            }
            let key = request
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("sec-websocket-key")
                        .then(|| v.trim().to_string())
                })
                .unwrap();
            if r.header("Sec-WebSocket-Accept") != Some(expected_accept(&key).as_str()) {
                return Err(format!("wrong accept: {r:?}"));
            }
            if !r
                .header("Upgrade")
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
            {
                return Err(format!("no Upgrade: websocket: {r:?}"));
            }
            if !r
                .header("Connection")
                .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"))
            {
                return Err(format!("no Connection: Upgrade: {r:?}"));
            }
            if r.header("Sec-WebSocket-Protocol") != *protocol {
                return Err(format!("expected protocol {protocol:?}: {r:?}"));
            }
            if r.header("Sec-WebSocket-Extensions").is_some() {
                return Err(format!("an extension nobody negotiated: {r:?}"));
            }
            // The socket works.
            run_steps(
                &mut s,
                &echo(text("hello"), vec![srv_text("hello")]),
                bytewise,
            )
        }
    }
}

#[test]
fn rfc_example_accept_key() {
    // RFC 6455 §1.3: this key gives this accept value.
    assert_eq!(expected_accept(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    let mut s = tcp(server(Srv::Main));
    s.write_all(handshake_request("").as_bytes()).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(r.header("Sec-WebSocket-Protocol"), None);
}

#[test]
fn handshake_table() {
    let addr = server(Srv::Main);
    let cases = handshake_cases();
    let mut failures = Vec::new();
    for (name, request, answer) in &cases {
        for bytewise in [false, true] {
            if let Err(e) = run_handshake(addr, request, answer, bytewise) {
                let mode = if bytewise { "bytewise" } else { "whole" };
                failures.push(format!("{name} [{mode}]: {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        cases.len() * 2,
        failures.join("\n")
    );
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

#[test]
fn frames_sent_with_the_upgrade_request_are_read() {
    let mut s = tcp(server(Srv::Main));
    let mut bytes = handshake_request("").into_bytes();
    bytes.extend(text("early"));
    s.write_all(&bytes).unwrap();
    assert_eq!(read_response(&mut s).status, 101);
    run_steps(&mut s, &[Recv(srv_text("early"))], false).unwrap();
    run_steps(&mut s, &closes_cleanly(), false).unwrap();
}

// ----- frames ----------------------------------------------------------------

#[test]
fn payload_lengths_and_framing() {
    let mut cases = Vec::new();
    for n in [0usize, 1, 125, 126, 127, 65535, 65536, 100_000] {
        let p = pattern(n);
        cases.push(case(
            format!("binary of {n} bytes"),
            echo(bin(&p), vec![srv_bin(&p)]),
        ));
    }
    for n in [0usize, 125, 126, 65536] {
        let t = utf8_text(n);
        cases.push(case(
            format!("text of {n} bytes"),
            echo(text(&t), vec![srv_text(&t)]),
        ));
    }
    cases.push(case(
        "zero mask key",
        echo(
            encode_client_frame(true, 1, [0; 4], b"plain"),
            vec![srv_text("plain")],
        ),
    ));
    cases.push(case(
        "two messages in one write",
        echo(
            concat(&[&text("one"), &bin(b"two")]),
            vec![srv_text("one"), srv_bin(b"two")],
        ),
    ));
    cases.push(case(
        "fragmented text",
        echo(
            concat(&[
                &cf(false, 1, b"Hel"),
                &cf(false, 0, b"lo, "),
                &cf(true, 0, b"world"),
            ]),
            vec![srv_text("Hello, world")],
        ),
    ));
    cases.push(case(
        "fragmented binary with empty fragments",
        echo(
            concat(&[
                &cf(false, 2, b""),
                &cf(false, 0, &[0, 1, 2]),
                &cf(false, 0, b""),
                &cf(true, 0, &[255]),
            ]),
            vec![srv_bin(&[0, 1, 2, 255])],
        ),
    ));
    cases.push(case(
        "fragmented text, empty final fragment",
        echo(
            concat(&[&cf(false, 1, "안녕".as_bytes()), &cf(true, 0, b"")]),
            vec![srv_text("안녕")],
        ),
    ));
    let big = pattern(70_000);
    cases.push(case(
        "fragments of every length encoding",
        echo(
            concat(&[
                &cf(false, 2, &big[..100]),
                &cf(false, 0, &big[100..400]),
                &cf(true, 0, &big[400..]),
            ]),
            vec![srv_bin(&big)],
        ),
    ));
    let many: Vec<u8> = (0..200u8)
        .flat_map(|b| cf(b == 199, u8::from(b == 0) * 2, &[b]))
        .collect();
    cases.push(case(
        "200 one-byte fragments",
        echo(many, vec![srv_bin(&(0..200u8).collect::<Vec<_>>())]),
    ));
    cases.push(case(
        "a message after a fragmented one",
        echo(
            concat(&[&cf(false, 1, b"a"), &cf(true, 0, b"b"), &text("c")]),
            vec![srv_text("ab"), srv_text("c")],
        ),
    ));
    run_table(cases);
}

#[test]
fn bad_frames_close_1002() {
    let mut cases = vec![
        case(
            "unmasked text",
            fails(encode_frame(Opcode::Text, b"hi"), 1002),
        ),
        case(
            "unmasked empty binary",
            fails(encode_frame(Opcode::Binary, b""), 1002),
        ),
        case(
            "unmasked ping",
            fails(encode_frame(Opcode::Ping, b"p"), 1002),
        ),
        case(
            "unmasked continuation inside a message",
            fails(
                concat(&[
                    &cf(false, 1, b"a"),
                    &encode_frame(Opcode::Continuation, b"b"),
                ]),
                1002,
            ),
        ),
        case(
            "64-bit length with its top bit set",
            fails(
                raw_frame(0x82, &[127, 0x80, 0, 0, 0, 0, 0, 0, 5], b"hello"),
                1002,
            ),
        ),
        case(
            "64-bit length all ones",
            fails(
                raw_frame(
                    0x82,
                    &[127, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
                    b"",
                ),
                1002,
            ),
        ),
        case(
            "16-bit length for 5 bytes",
            fails(raw_frame(0x81, &[126, 0, 5], b"hello"), 1002),
        ),
        case(
            "16-bit length for 125 bytes",
            fails(raw_frame(0x82, &[126, 0, 125], &pattern(125)), 1002),
        ),
        case(
            "64-bit length for 5 bytes",
            fails(
                raw_frame(0x82, &[127, 0, 0, 0, 0, 0, 0, 0, 5], b"hello"),
                1002,
            ),
        ),
        case(
            "64-bit length for 65535 bytes",
            fails(
                raw_frame(0x82, &[127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF], &pattern(65535)),
                1002,
            ),
        ),
        case("ping of 126 bytes", fails(cf(true, 9, &pattern(126)), 1002)),
        case(
            "pong of 126 bytes",
            fails(cf(true, 10, &pattern(126)), 1002),
        ),
        case(
            "close of 126 bytes",
            fails(close_frame(1000, &[b'a'; 124]), 1002),
        ),
        case(
            "ping with a 16-bit length of 5",
            fails(raw_frame(0x89, &[126, 0, 5], b"hello"), 1002),
        ),
        case("fragmented ping", fails(cf(false, 9, b"p"), 1002)),
        case("fragmented pong", fails(cf(false, 10, b"p"), 1002)),
        case(
            "fragmented close",
            fails(cf(false, 8, &1000u16.to_be_bytes()), 1002),
        ),
        case(
            "fragmented ping inside a fragmented message",
            fails(
                concat(&[&cf(false, 1, b"a"), &cf(false, 9, b"p"), &cf(true, 0, b"b")]),
                1002,
            ),
        ),
        case(
            "continuation with nothing open",
            fails(cf(true, 0, b"x"), 1002),
        ),
        case(
            "non-final continuation with nothing open",
            fails(cf(false, 0, b"x"), 1002),
        ),
        case(
            "continuation after a finished message",
            vec![
                Send(concat(&[&text("done"), &cf(true, 0, b"more")])),
                Recv(srv_text("done")),
                Close(1002),
                Send(close_frame(1000, b"")),
                Eof,
            ],
        ),
        case(
            "text inside an open text message",
            fails(concat(&[&cf(false, 1, b"a"), &cf(true, 1, b"b")]), 1002),
        ),
        case(
            "binary inside an open text message",
            fails(concat(&[&cf(false, 1, b"a"), &cf(true, 2, b"b")]), 1002),
        ),
        case(
            "non-final text inside an open binary message",
            fails(concat(&[&cf(false, 2, b"a"), &cf(false, 1, b"b")]), 1002),
        ),
    ];
    for (bit, name) in [(0x40u8, "RSV1"), (0x20, "RSV2"), (0x10, "RSV3")] {
        cases.push(case(
            format!("{name} on text"),
            fails(raw_frame(0x81 | bit, &[2], b"hi"), 1002),
        ));
        cases.push(case(
            format!("{name} on ping"),
            fails(raw_frame(0x89 | bit, &[0], b""), 1002),
        ));
        cases.push(case(
            format!("{name} on a continuation"),
            fails(
                concat(&[&cf(false, 1, b"a"), &raw_frame(0x80 | bit, &[1], b"b")]),
                1002,
            ),
        ));
    }
    cases.push(case(
        "all RSV bits and a reserved opcode",
        fails(raw_frame(0xFF, &[0], b""), 1002),
    ));
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        cases.push(case(
            format!("reserved opcode {op:#x}"),
            fails(cf(true, op, b"x"), 1002),
        ));
        cases.push(case(
            format!("reserved opcode {op:#x} after a good message"),
            vec![
                Send(concat(&[&text("ok"), &cf(true, op, b"")])),
                Recv(srv_text("ok")),
                Close(1002),
                Send(close_frame(1000, b"")),
                Eof,
            ],
        ));
    }
    cases.push(case(
        "reserved opcode inside a fragmented message",
        fails(concat(&[&cf(false, 2, b"a"), &cf(false, 5, b"b")]), 1002),
    ));
    run_table(cases);
}

// ----- UTF-8 -----------------------------------------------------------------

#[test]
fn utf8_validation() {
    let bad: &[(&str, &[u8])] = &[
        ("0xFF", b"\xff"),
        ("0xFE", b"ab\xfe"),
        ("lone continuation", b"\x80"),
        ("overlong slash", b"\xc0\xaf"),
        ("overlong 3-byte", b"\xe0\x80\xaf"),
        ("overlong 4-byte", b"\xf0\x80\x80\xaf"),
        ("surrogate D800", b"\xed\xa0\x80"),
        ("surrogate DFFF", b"\xed\xbf\xbf"),
        ("above U+10FFFF", b"\xf4\x90\x80\x80"),
        ("F5 lead", b"\xf5\x80\x80\x80"),
        ("truncated at the end", b"ok\xe2\x82"),
        ("truncated 4-byte at the end", b"\xf0\x9f\x8e"),
        (
            "kosme with a surrogate",
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
        ),
    ];
    let mut cases = Vec::new();
    for (name, bytes) in bad {
        cases.push(case(
            format!("invalid text: {name}"),
            fails(cf(true, 1, bytes), 1007),
        ));
        // The same bytes in a binary message are fine.
        cases.push(case(
            format!("binary is not checked: {name}"),
            echo(cf(true, 2, bytes), vec![srv_bin(bytes)]),
        ));
    }
    let good: &[(&str, &[u8])] = &[
        ("U+007F", b"\x7f"),
        ("U+0080", b"\xc2\x80"),
        ("U+07FF", b"\xdf\xbf"),
        ("U+0800", b"\xe0\xa0\x80"),
        ("U+D7FF", b"\xed\x9f\xbf"),
        ("U+E000", b"\xee\x80\x80"),
        ("U+FFFF", b"\xef\xbf\xbf"),
        ("U+10000", b"\xf0\x90\x80\x80"),
        ("U+10FFFF", b"\xf4\x8f\xbf\xbf"),
        ("kosme", "κόσμε".as_bytes()),
        ("NUL", b"\x00"),
    ];
    for (name, bytes) in good {
        cases.push(case(
            format!("valid text: {name}"),
            echo(cf(true, 1, bytes), vec![srv(Opcode::Text, bytes)]),
        ));
        // Split into one-byte fragments: still valid.
        let frags: Vec<u8> = bytes
            .iter()
            .enumerate()
            .flat_map(|(i, b)| {
                cf(
                    i + 1 == bytes.len(),
                    if i == 0 { 1 } else { 0 },
                    std::slice::from_ref(b),
                )
            })
            .collect();
        cases.push(case(
            format!("valid text one byte per fragment: {name}"),
            echo(frags, vec![srv(Opcode::Text, bytes)]),
        ));
    }
    let euro = "€".as_bytes();
    let party = "🎉".as_bytes();
    cases.extend([
        case(
            "code point split across two frames",
            echo(
                concat(&[&cf(false, 1, &euro[..1]), &cf(true, 0, &euro[1..])]),
                vec![srv_text("€")],
            ),
        ),
        case(
            "4-byte code point split 2|2 with a ping between",
            echo(
                concat(&[
                    &cf(false, 1, &party[..2]),
                    &cf(true, 9, b"mid"),
                    &cf(true, 0, &party[2..]),
                ]),
                vec![srv(Opcode::Pong, b"mid"), srv_text("🎉")],
            ),
        ),
        case(
            "4-byte code point split 1|1|2",
            echo(
                concat(&[
                    &cf(false, 1, &party[..1]),
                    &cf(false, 0, &party[1..2]),
                    &cf(true, 0, &party[2..]),
                ]),
                vec![srv_text("🎉")],
            ),
        ),
        case(
            "invalid across fragments: bad continuation in the 2nd",
            fails(
                concat(&[&cf(false, 1, b"\xe2\x82"), &cf(true, 0, b"\x28")]),
                1007,
            ),
        ),
        case(
            "message ends inside a code point (empty final fragment)",
            fails(
                concat(&[&cf(false, 1, b"\xf0\x9f"), &cf(true, 0, b"")]),
                1007,
            ),
        ),
        case(
            "surrogate assembled across fragments",
            fails(
                concat(&[&cf(false, 1, b"\xed"), &cf(true, 0, b"\xa0\x80")]),
                1007,
            ),
        ),
        // Fail fast: the message is unfinished (FIN clear, nothing more sent),
        // but its first fragment can never become valid.
        case(
            "fail fast: invalid first fragment of an unfinished message",
            fails(cf(false, 1, b"hello\xff"), 1007),
        ),
        case(
            "fail fast: surrogate start in an unfinished message",
            fails(cf(false, 1, b"ok\xed\xa0"), 1007),
        ),
        case(
            "fail fast: invalid second fragment, message unfinished",
            fails(
                concat(&[&cf(false, 1, b"ok"), &cf(false, 0, b"\xc0")]),
                1007,
            ),
        ),
    ]);
    // Fail fast inside a frame: the header promises 20 bytes, only the first
    // 6 are sent (the 6th is invalid).
    let mut partial = header_only(0x81, 20);
    let mut body = b"hello\xff".to_vec();
    wsrooms::ws::frame::apply_mask(&mut body, MASK, 0);
    partial.extend(body);
    cases.push(case(
        "fail fast: invalid bytes in an unfinished frame",
        fails(partial, 1007),
    ));
    run_table(cases);
}

// ----- control frames ----------------------------------------------------------

#[test]
fn pings_and_pongs() {
    let p125 = pattern(125);
    let cases = vec![
        case(
            "ping echoed as pong",
            echo(
                cf(true, 9, b"are you there"),
                vec![srv(Opcode::Pong, b"are you there")],
            ),
        ),
        case(
            "empty ping",
            echo(cf(true, 9, b""), vec![srv(Opcode::Pong, b"")]),
        ),
        case(
            "ping of 125 bytes",
            echo(cf(true, 9, &p125), vec![srv(Opcode::Pong, &p125)]),
        ),
        case(
            "ping with binary payload",
            echo(
                cf(true, 9, &[0, 255, 0xc0]),
                vec![srv(Opcode::Pong, &[0, 255, 0xc0])],
            ),
        ),
        case("ping answered before the fragmented message completes", {
            let mut steps = vec![
                Send(cf(false, 1, b"frag")),
                Send(cf(true, 9, b"1")),
                Recv(srv(Opcode::Pong, b"1")),
                Send(cf(false, 0, b"ment")),
                Send(cf(true, 9, b"2")),
                Recv(srv(Opcode::Pong, b"2")),
                Send(cf(true, 0, b"ed")),
                Recv(srv_text("fragmented")),
            ];
            steps.extend(closes_cleanly());
            steps
        }),
        case(
            "many pings in one write",
            echo(
                concat(&[&cf(true, 9, b"a"), &cf(true, 9, b"b"), &cf(true, 9, b"c")]),
                vec![
                    srv(Opcode::Pong, b"a"),
                    srv(Opcode::Pong, b"b"),
                    srv(Opcode::Pong, b"c"),
                ],
            ),
        ),
        case(
            "unsolicited pong ignored",
            echo(
                concat(&[&cf(true, 10, b"unasked"), &text("after")]),
                vec![srv_text("after")],
            ),
        ),
        case(
            "empty unsolicited pong ignored",
            echo(
                concat(&[&cf(true, 10, b""), &bin(b"x")]),
                vec![srv_bin(b"x")],
            ),
        ),
        case(
            "pong inside a fragmented message ignored",
            echo(
                concat(&[&cf(false, 2, b"a"), &cf(true, 10, b"p"), &cf(true, 0, b"b")]),
                vec![srv_bin(b"ab")],
            ),
        ),
    ];
    run_table(cases);
}

#[test]
fn close_frames() {
    let mut cases = vec![
        case(
            "empty close echoed empty",
            vec![Send(cf(true, 8, b"")), Recv(srv(Opcode::Close, b"")), Eof],
        ),
        case("1-byte close payload", fails(cf(true, 8, b"\x03"), 1002)),
        case(
            "close with a UTF-8 reason",
            vec![
                Send(close_frame(1000, "bye 👋".as_bytes())),
                Close(1000),
                Eof,
            ],
        ),
        case(
            "close with a 123-byte reason",
            vec![Send(close_frame(3000, &[b'r'; 123])), Close(3000), Eof],
        ),
        case(
            "close reason not UTF-8",
            fails(close_frame(1000, b"bad \xff"), 1007),
        ),
        case(
            "close reason with a surrogate",
            fails(close_frame(1000, b"\xed\xa0\x80"), 1007),
        ),
        case(
            "close reason truncated inside a character",
            fails(close_frame(1000, b"\xe2\x82"), 1007),
        ),
        case(
            "close in the middle of a fragmented message",
            vec![
                Send(concat(&[
                    &cf(false, 1, b"never fin"),
                    &close_frame(1000, b""),
                ])),
                Close(1000),
                Eof,
            ],
        ),
        case(
            "close in the middle of a fragmented message, sent later",
            vec![
                Send(cf(false, 2, b"half")),
                Send(cf(true, 9, b"x")),
                Recv(srv(Opcode::Pong, b"x")),
                Send(close_frame(1001, b"")),
                Close(1001),
                Eof,
            ],
        ),
        case(
            "data after the close is ignored",
            vec![
                Send(concat(&[
                    &close_frame(1000, b""),
                    &text("late"),
                    &cf(true, 9, b"late ping"),
                ])),
                Close(1000),
                Eof,
            ],
        ),
        case(
            "data after the close, in a later write, is ignored",
            vec![
                Send(close_frame(1000, b"")),
                Close(1000),
                Send(text("late")),
                Eof,
            ],
        ),
        case(
            "garbage after the close is ignored",
            vec![
                Send(concat(&[&close_frame(1000, b""), &[0xFF; 20]])),
                Close(1000),
                Eof,
            ],
        ),
        case(
            "data after the server's close is ignored",
            vec![
                Send(cf(true, 3, b"")),
                Close(1002),
                Send(concat(&[&text("late"), &cf(true, 9, b"p")])),
                Send(close_frame(1000, b"")),
                Eof,
            ],
        ),
    ];
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        cases.push(case(
            format!("valid close code {code} echoed"),
            vec![Send(close_frame(code, b"")), Close(code), Eof],
        ));
    }
    for code in [
        0u16, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        cases.push(case(
            format!("invalid close code {code}"),
            fails(close_frame(code, b""), 1002),
        ));
    }
    run_table(cases);
}

// ----- limits ----------------------------------------------------------------

#[test]
fn size_limits_close_1009_from_the_header() {
    let at_limit = pattern(SMALL_FRAME);
    let cases = vec![
        small(
            "frame at the limit echoed",
            echo(bin(&at_limit), vec![srv_bin(&at_limit)]),
        ),
        small(
            "message at the limit in three frames echoed",
            echo(
                concat(&[
                    &cf(false, 2, &pattern(SMALL_FRAME)),
                    &cf(false, 0, &pattern(SMALL_FRAME)),
                    &cf(true, 0, &pattern(SMALL_MESSAGE - 2 * SMALL_FRAME)),
                ]),
                vec![srv_bin(
                    &[
                        pattern(SMALL_FRAME),
                        pattern(SMALL_FRAME),
                        pattern(SMALL_MESSAGE - 2 * SMALL_FRAME),
                    ]
                    .concat(),
                )],
            ),
        ),
        // Only the header is sent: the answer cannot wait for the payload.
        small(
            "binary frame header one byte over the limit",
            fails(header_only(0x82, SMALL_FRAME as u64 + 1), 1009),
        ),
        small(
            "text frame header over the limit",
            fails(header_only(0x81, 60_000), 1009),
        ),
        small(
            "64-bit length header of 1 TiB",
            fails(header_only(0x82, 1 << 40), 1009),
        ),
        small(
            "largest 64-bit length",
            fails(header_only(0x82, i64::MAX as u64), 1009),
        ),
        small(
            "continuation header over the frame limit",
            fails(
                concat(&[
                    &cf(false, 2, b"a"),
                    &header_only(0x80, SMALL_FRAME as u64 + 1),
                ]),
                1009,
            ),
        ),
        small(
            "message over the limit, found at the last frame's header",
            fails(
                concat(&[
                    &cf(false, 1, &[b'a'; SMALL_FRAME]),
                    &cf(false, 0, &[b'b'; SMALL_FRAME]),
                    &cf(false, 0, &[b'c'; SMALL_FRAME]),
                    &header_only(0x80, 1),
                ]),
                1009,
            ),
        ),
        small(
            "pings are not data: 125 bytes inside a full message",
            echo(
                concat(&[
                    &cf(false, 2, &pattern(SMALL_FRAME)),
                    &cf(true, 9, &pattern(125)),
                    &cf(false, 0, &pattern(SMALL_FRAME)),
                    &cf(true, 0, &pattern(SMALL_FRAME)),
                ]),
                vec![
                    srv(Opcode::Pong, &pattern(125)),
                    srv_bin(
                        &[
                            pattern(SMALL_FRAME),
                            pattern(SMALL_FRAME),
                            pattern(SMALL_FRAME),
                        ]
                        .concat(),
                    ),
                ],
            ),
        ),
    ];
    run_table(cases);
}

//! Step 3 of the ladder (docs/LEARN.md): a WebSocket echo server, built
//! from this crate's own parsers.
//!
//! A WebSocket starts as an HTTP request (`Upgrade: websocket`) answered
//! with `101 Switching Protocols`; from then on both sides send frames.
//! The connection's phase is an enum, and each phase has its own parser:
//! `wsrooms::http::request` + `wsrooms::http::upgrade` for the handshake,
//! `wsrooms::ws::reader::MessageReader` for the frames (it unmasks them,
//! joins fragments, checks UTF-8 and sizes), `wsrooms::ws::frame` to encode
//! the answers. None of them does I/O: they take bytes and return values.
//!
//! Run: `cargo run --example ws_echo [ADDR]`, then open the browser's
//! console on any page and type
//! `s = new WebSocket("ws://127.0.0.1:7880"); s.onmessage = e => console.log(e.data); s.onopen = () => s.send("hi")`.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use wsrooms::http::request::{self, HeadLimits};
use wsrooms::http::response::Response;
use wsrooms::http::upgrade;
use wsrooms::ws::frame::{Opcode, encode_close, encode_frame};
use wsrooms::ws::reader::{Limits, Message, MessageReader};

const LISTENER: Token = Token(0);
const HEAD_LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 8 * 1024,
    max_line_bytes: 2 * 1024,
};
const LIMITS: Limits = Limits {
    max_frame_bytes: 1 << 20,
    max_message_bytes: 1 << 20,
};

/// Where a connection is in its life.
enum Phase {
    /// Waiting for the HTTP upgrade request; `scanned` is how far we have
    /// looked for the end of its head (so a slow head is scanned once).
    Handshake { scanned: usize },
    /// Upgraded: the input is frames.
    Frames(MessageReader),
    /// Our last bytes (an error answer or a close frame) are queued: send
    /// them, then close.
    Closing,
}

struct Conn {
    socket: TcpStream,
    phase: Phase,
    input: Vec<u8>,
    output: Vec<u8>,
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:7880".into());
    let mut listener = TcpListener::bind(addr.parse().expect("an address like 127.0.0.1:7880"))?;
    println!("ws_echo listening on ws://{}", listener.local_addr()?);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut next = 1;
    let mut events = Events::with_capacity(128);
    loop {
        poll.poll(&mut events, None)?;
        for event in events.iter() {
            if event.token() == LISTENER {
                while let Ok((mut socket, _)) = listener.accept() {
                    let token = Token(next);
                    next += 1;
                    let both = Interest::READABLE | Interest::WRITABLE;
                    poll.registry().register(&mut socket, token, both)?;
                    let phase = Phase::Handshake { scanned: 0 };
                    let (input, output) = (Vec::new(), Vec::new());
                    conns.insert(
                        token,
                        Conn {
                            socket,
                            phase,
                            input,
                            output,
                        },
                    );
                }
            } else if let Some(conn) = conns.get_mut(&event.token())
                && !serve(conn)
            {
                conns.remove(&event.token());
            }
        }
    }
}

/// The loop of step 2: process the input, write, read, until the socket
/// would block. False when the connection is finished.
fn serve(conn: &mut Conn) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        process(conn);
        if !flush(conn) {
            return false;
        }
        if matches!(conn.phase, Phase::Closing) {
            return !conn.output.is_empty();
        }
        if !conn.output.is_empty() {
            return true;
        }
        match conn.socket.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => conn.input.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Hands the input to the parser of the connection's phase.
fn process(conn: &mut Conn) {
    if let Phase::Handshake { .. } = conn.phase {
        handshake(conn);
    }
    // The handshake may have been followed at once by frames.
    if let Phase::Frames(_) = conn.phase {
        frames(conn);
    }
}

/// Answers the upgrade request once its head is complete.
fn handshake(conn: &mut Conn) {
    let Phase::Handshake { scanned } = &mut conn.phase else {
        return;
    };
    let head_len = match request::find_head_end(&conn.input, scanned, &HEAD_LIMITS) {
        Ok(Some(len)) => len,
        Ok(None) => return, // Partial: wait for more bytes
        Err(e) => return refuse(conn, Response::text(e.status(), "bad request head")),
    };
    let mut headers = [httparse::EMPTY_HEADER; request::MAX_HEADERS];
    let checked = match request::parse(&conn.input[..head_len], &mut headers) {
        Ok(req) => upgrade::check(&req),
        Err(e) => return refuse(conn, Response::text(e.status(), "bad request head")),
    };
    match checked {
        Ok(upgrade) => {
            conn.output.extend(upgrade::response_bytes(&upgrade));
            conn.input.drain(..head_len);
            conn.phase = Phase::Frames(MessageReader::new());
        }
        Err(e) => refuse(conn, Response::text(e.status(), e.reason())),
    }
}

/// Queues a last HTTP answer; the connection closes once it is sent.
fn refuse(conn: &mut Conn, response: Response) {
    conn.output.extend(response.to_bytes());
    conn.phase = Phase::Closing;
}

/// Reads every complete message in the input and answers it.
fn frames(conn: &mut Conn) {
    let Phase::Frames(reader) = &mut conn.phase else {
        return;
    };
    let mut rest = &conn.input[..];
    let mut closing = false;
    while !closing {
        match reader.read(&mut rest, &LIMITS) {
            Ok(None) => break, // the rest of a message has not arrived yet
            Ok(Some(message)) => closing = answer(message, &mut conn.output),
            Err(e) => {
                conn.output.extend(encode_close(e.close_code(), e.reason()));
                closing = true;
            }
        }
    }
    // The reader consumed what it read from `rest`: drop that from the input.
    let used = conn.input.len() - rest.len();
    conn.input.drain(..used);
    if closing {
        conn.phase = Phase::Closing;
    }
}

/// Queues the answer to one message. True when it was a close.
fn answer(message: Message, output: &mut Vec<u8>) -> bool {
    match message {
        Message::Text(text) => output.extend(encode_frame(Opcode::Text, &text)),
        Message::Binary(data) => output.extend(encode_frame(Opcode::Binary, &data)),
        Message::Ping(data) => output.extend(encode_frame(Opcode::Pong, &data)),
        Message::Pong(_) => {}
        Message::Close(code) => {
            // Answer a close with a close carrying the same code.
            let code = code.map_or(1000, |(code, _)| code);
            output.extend(encode_close(code, ""));
            return true;
        }
    }
    false
}

/// Writes queued output until done or `WouldBlock`. False on an error.
fn flush(conn: &mut Conn) -> bool {
    while !conn.output.is_empty() {
        match conn.socket.write(&conn.output) {
            Ok(n) => drop(conn.output.drain(..n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
    true
}

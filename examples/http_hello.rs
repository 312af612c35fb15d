//! Step 2 of the ladder (docs/LEARN.md): HTTP/1.1 on the loop of step 1.
//!
//! A request head can arrive in any number of pieces. Each time bytes
//! arrive we append them to the connection's buffer and ask `httparse`
//! again: `Status::Partial` means "not all of it yet, keep the bytes",
//! `Status::Complete(n)` means the head is the first `n` bytes. After the
//! answer the connection stays open for the next request (keep-alive),
//! which may already be in the buffer (pipelining).
//!
//! Run: `cargo run --example http_hello [ADDR]`, then
//! `curl -v http://127.0.0.1:7879/ http://127.0.0.1:7879/again`.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(0);
/// The longest head we wait for; a longer one gets `431` and is closed.
const MAX_HEAD: usize = 8 * 1024;

/// One client: its socket, what it sent and we have not answered yet, and
/// what we answered and the socket has not taken yet.
struct Conn {
    socket: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Set after an answer with `Connection: close`: send it, then close.
    closing: bool,
}

/// What the front of the input holds.
enum Head {
    /// Not complete yet: read more.
    Partial,
    /// A whole head of `len` bytes, and whether to keep the connection.
    Complete { len: usize, keep_alive: bool },
    /// Not a request we take: answer with this status line and close.
    Bad(&'static str),
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:7879".into());
    let mut listener = TcpListener::bind(addr.parse().expect("an address like 127.0.0.1:7879"))?;
    println!("http_hello listening on http://{}", listener.local_addr()?);
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
                    let (input, output) = (Vec::new(), Vec::new());
                    let closing = false;
                    conns.insert(
                        token,
                        Conn {
                            socket,
                            input,
                            output,
                            closing,
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

/// Reads, answers every complete request, writes, until the socket would
/// block. False when the connection is finished.
fn serve(conn: &mut Conn) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        answer_all(conn);
        if !flush(conn) {
            return false;
        }
        if conn.closing {
            // Nothing more is read; close once the answer is out.
            return !conn.output.is_empty();
        }
        if !conn.output.is_empty() {
            return true; // the peer is slow to read: wait for writable
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

/// Answers the complete requests at the front of the input, in order.
fn answer_all(conn: &mut Conn) {
    while !conn.closing {
        match parse_head(&conn.input) {
            Head::Partial => return,
            Head::Complete { len, keep_alive } => {
                conn.input.drain(..len); // this request is done with
                conn.output.extend_from_slice(&hello(keep_alive));
                conn.closing = !keep_alive;
            }
            Head::Bad(status) => {
                let answer =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                conn.output.extend_from_slice(answer.as_bytes());
                conn.closing = true;
            }
        }
    }
}

/// Parses the head at the front of `input`, if it has all arrived.
fn parse_head(input: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(input) {
        Ok(httparse::Status::Partial) if input.len() > MAX_HEAD => {
            Head::Bad("431 Request Header Fields Too Large")
        }
        Ok(httparse::Status::Partial) => Head::Partial,
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => {
            Head::Bad("431 Request Header Fields Too Large")
        }
        Ok(httparse::Status::Complete(len)) => {
            // HTTP/1.1 keeps the connection unless asked to close; 1.0 closes.
            let close = request.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close")
            });
            let keep_alive = request.version == Some(1) && !close;
            Head::Complete { len, keep_alive }
        }
        Err(_) => Head::Bad("400 Bad Request"),
    }
}

/// The one answer this server has.
fn hello(keep_alive: bool) -> Vec<u8> {
    let body = "hello\n";
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
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

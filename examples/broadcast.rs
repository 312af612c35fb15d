//! Step 4 of the ladder (docs/LEARN.md): one room. Every message a client
//! sends goes to every client, itself included.
//!
//! Two ideas. **Encode once, share:** server frames are not masked, so all
//! receivers get identical bytes; the frame is encoded once into an
//! `Rc<[u8]>` and each receiver's write queue holds a pointer to it.
//! **Backpressure:** each connection counts the bytes queued for it that
//! the kernel has not taken yet (`buffered`, the server's side of the
//! browser's `bufferedAmount`). Above `PAUSE_AT` we stop reading from that
//! connection until it drains below half of that, so a client that sends
//! but does not read is held back by TCP itself. Above `MAX_BUFFERED` a
//! receiver is too slow for the room: its queue is dropped and it is closed
//! with `1008`, so one slow phone cannot make the server's memory grow.
//!
//! Run: `cargo run --example broadcast [ADDR]`, and connect two browser
//! tabs as in step 3 (`ws://127.0.0.1:7881`).

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::rc::Rc;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use wsrooms::http::request::{self, HeadLimits};
use wsrooms::http::upgrade;
use wsrooms::ws::frame::{Opcode, encode_close, encode_frame};
use wsrooms::ws::reader::{Limits, Message, MessageReader};

const LISTENER: Token = Token(0);
/// Stop reading a connection with this much queued for it…
const PAUSE_AT: usize = 64 * 1024;
/// …and close a receiver with this much.
const MAX_BUFFERED: usize = 1024 * 1024;
const HEAD_LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 8 * 1024,
    max_line_bytes: 2 * 1024,
};
const LIMITS: Limits = Limits {
    max_frame_bytes: 64 * 1024,
    max_message_bytes: 64 * 1024,
};

/// Where a connection is in its life.
enum Phase {
    Handshake,
    Frames(MessageReader),
    /// Its last frame is queued: close once it is sent.
    Closing,
    /// Closed (by the peer or an error): remove it.
    Done,
}

struct Conn {
    socket: TcpStream,
    phase: Phase,
    input: Vec<u8>,
    /// Frames to send, shared with the other receivers' queues.
    queue: VecDeque<Rc<[u8]>>,
    /// How much of the front frame is already sent.
    sent: usize,
    /// Bytes in `queue` not sent yet: the server's `bufferedAmount`.
    buffered: usize,
    paused: bool,
}

impl Conn {
    fn push(&mut self, frame: Rc<[u8]>) {
        self.buffered += frame.len();
        self.queue.push_back(frame);
    }

    /// Writes queued frames until done or `WouldBlock`.
    fn flush(&mut self) {
        while let Some(frame) = self.queue.front() {
            match self.socket.write(&frame[self.sent..]) {
                Ok(n) => {
                    self.sent += n;
                    self.buffered -= n;
                    if self.sent == frame.len() {
                        self.queue.pop_front();
                        self.sent = 0;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => return self.phase = Phase::Done,
            }
        }
        if matches!(self.phase, Phase::Closing) {
            self.phase = Phase::Done; // the last frame is out
        }
    }

    /// Whether to read more from this connection: not while too much is
    /// queued for it (with a gap between pausing and resuming).
    fn may_read(&mut self) -> bool {
        if self.buffered > PAUSE_AT {
            self.paused = true;
        } else if self.buffered < PAUSE_AT / 2 {
            self.paused = false;
        }
        !self.paused && matches!(self.phase, Phase::Handshake | Phase::Frames(_))
    }

    /// Too slow for the room: forget its queue and close it with `1008`.
    fn drop_slow(&mut self) {
        // Keep the frame the socket is in the middle of (the peer must get
        // whole frames, or it cannot find the close frame after it).
        let started = if self.sent > 0 {
            self.queue.pop_front()
        } else {
            None
        };
        self.queue.clear();
        self.buffered = 0;
        if let Some(frame) = started {
            self.buffered = frame.len() - self.sent;
            self.queue.push_back(frame);
        }
        self.push(encode_close(1008, "backpressure limit").into());
        self.phase = Phase::Closing;
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:7881".into());
    let mut listener = TcpListener::bind(addr.parse().expect("an address like 127.0.0.1:7881"))?;
    println!("broadcast listening on ws://{}", listener.local_addr()?);
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
                    conns.insert(token, new_conn(socket));
                }
            } else {
                serve(&mut conns, event.token());
            }
        }
        conns.retain(|_, conn| !matches!(conn.phase, Phase::Done));
    }
}

fn new_conn(socket: TcpStream) -> Conn {
    Conn {
        socket,
        phase: Phase::Handshake,
        input: Vec::new(),
        queue: VecDeque::new(),
        sent: 0,
        buffered: 0,
        paused: false,
    }
}

/// Writes, then reads while the connection may read, until `WouldBlock`.
/// Each read's messages are broadcast before the next read, so the pause
/// sees what they queued.
fn serve(conns: &mut HashMap<Token, Conn>, token: Token) {
    let mut buf = [0u8; 4096];
    loop {
        let Some(conn) = conns.get_mut(&token) else {
            return;
        };
        conn.flush();
        if !conn.may_read() {
            return; // a writable event will bring us back
        }
        match conn.socket.read(&mut buf) {
            Ok(0) => return conn.phase = Phase::Done,
            Ok(n) => conn.input.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return conn.phase = Phase::Done,
        }
        let said = process(conn);
        for frame in said {
            broadcast(conns, frame);
        }
    }
}

/// Sends `frame` to every upgraded connection: one frame, many pointers.
fn broadcast(conns: &mut HashMap<Token, Conn>, frame: Rc<[u8]>) {
    for conn in conns.values_mut() {
        if let Phase::Frames(_) = conn.phase {
            conn.push(Rc::clone(&frame));
            conn.flush();
            if conn.buffered > MAX_BUFFERED {
                conn.drop_slow();
            }
        }
    }
}

/// Runs the input through the parser of the connection's phase; returns
/// the frames to broadcast (answers for this connection alone, pongs and
/// the close, go to its own queue).
fn process(conn: &mut Conn) -> Vec<Rc<[u8]>> {
    if let Phase::Handshake = conn.phase {
        handshake(conn);
    }
    let Phase::Frames(reader) = &mut conn.phase else {
        return Vec::new();
    };
    let (mut said, mut own) = (Vec::new(), Vec::new());
    let mut rest = &conn.input[..];
    let mut closing = false;
    while !closing {
        let frame = match reader.read(&mut rest, &LIMITS) {
            Ok(None) => break, // the rest of a message has not arrived yet
            Ok(Some(Message::Text(text))) => encode_frame(Opcode::Text, &text),
            Ok(Some(Message::Binary(data))) => encode_frame(Opcode::Binary, &data),
            Ok(Some(Message::Ping(data))) => {
                own.push(encode_frame(Opcode::Pong, &data));
                continue;
            }
            Ok(Some(Message::Pong(_))) => continue,
            Ok(Some(Message::Close(code))) => {
                own.push(encode_close(code.map_or(1000, |(code, _)| code), ""));
                closing = true;
                continue;
            }
            Err(e) => {
                own.push(encode_close(e.close_code(), e.reason()));
                closing = true;
                continue;
            }
        };
        said.push(Rc::from(frame)); // encoded once, whatever the room's size
    }
    let used = conn.input.len() - rest.len();
    conn.input.drain(..used);
    for frame in own {
        conn.push(frame.into());
    }
    if closing {
        conn.phase = Phase::Closing;
    }
    said
}

/// Answers the upgrade request once its head is complete (as in step 3,
/// without its error answers: a bad request is simply closed).
fn handshake(conn: &mut Conn) {
    let mut scanned = 0;
    let head_len = match request::find_head_end(&conn.input, &mut scanned, &HEAD_LIMITS) {
        Ok(Some(len)) => len,
        Ok(None) => return,
        Err(_) => return conn.phase = Phase::Done,
    };
    let mut headers = [httparse::EMPTY_HEADER; request::MAX_HEADERS];
    let checked = request::parse(&conn.input[..head_len], &mut headers)
        .ok()
        .and_then(|req| upgrade::check(&req).ok());
    let Some(upgrade) = checked else {
        return conn.phase = Phase::Done;
    };
    conn.push(upgrade::response_bytes(&upgrade).into());
    conn.input.drain(..head_len);
    conn.phase = Phase::Frames(MessageReader::new());
}

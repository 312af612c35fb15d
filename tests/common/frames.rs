//! The one reader of server frames, for tests that speak WebSocket over a
//! raw socket: a frame as it came off the wire (its header bytes kept, for
//! byte-exact comparisons), and reads until an opcode or until the end of
//! the stream.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub const TEXT: u8 = 1;
pub const BINARY: u8 = 2;
pub const CLOSE: u8 = 8;
pub const PING: u8 = 9;
pub const PONG: u8 = 10;

/// Largest payload a server frame may announce here: more means the stream
/// is corrupt (the largest message of any test is 16 MiB).
const MAX_PAYLOAD: usize = 1 << 24;

/// One frame from the server (never masked).
#[derive(Debug)]
pub struct RawFrame {
    pub fin: bool,
    pub opcode: u8,
    /// The header as sent: the two first bytes and any extended length.
    pub head: Vec<u8>,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The whole frame, byte for byte as it was sent.
    pub fn bytes(&self) -> Vec<u8> {
        [&self.head[..], &self.payload[..]].concat()
    }

    /// The code and reason of a close frame.
    pub fn close(&self) -> (u16, String) {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        if self.payload.len() < 2 {
            return (1005, String::new());
        }
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        (
            code,
            String::from_utf8(self.payload[2..].to_vec()).expect("close reason is UTF-8"),
        )
    }

    /// The `seq` of a `message` event, `None` for other events.
    pub fn message_seq(&self) -> Option<u64> {
        if self.opcode != TEXT || !self.payload.starts_with(b"{\"type\":\"message\"") {
            return None;
        }
        // The event ends with `"seq":N}`: look only at its tail.
        let tail = &self.payload[self.payload.len().saturating_sub(32)..];
        let tail = std::str::from_utf8(tail).expect("event tail is ASCII");
        let at = tail.rfind("\"seq\":").expect("message has a seq");
        Some(
            tail[at + 6..tail.len() - 1]
                .parse()
                .expect("seq is a number"),
        )
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Reads one frame; `Ok(None)` at a clean end of stream between frames. A
/// masked frame or an absurd length is an `InvalidData` error.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<RawFrame>> {
    let mut head = vec![0u8; 2];
    match r.read(&mut head[..1])? {
        0 => return Ok(None),
        _ => r.read_exact(&mut head[1..])?,
    }
    if head[1] & 0x80 != 0 {
        return Err(invalid(format!("server frame is masked: {head:02x?}")));
    }
    let extended = match head[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    head.resize(2 + extended, 0);
    r.read_exact(&mut head[2..])?;
    let len = match extended {
        0 => (head[1] & 0x7F) as usize,
        2 => u16::from_be_bytes([head[2], head[3]]) as usize,
        _ => u64::from_be_bytes(head[2..10].try_into().unwrap()) as usize,
    };
    if len > MAX_PAYLOAD {
        return Err(invalid(format!(
            "absurd frame length {len}: the stream is corrupt"
        )));
    }
    let mut payload = vec![0; len];
    r.read_exact(&mut payload)?;
    Ok(Some(RawFrame {
        fin: head[0] & 0x80 != 0,
        opcode: head[0] & 0x0F,
        head,
        payload,
    }))
}

/// Reads the next frame; panics at the end of the stream or on an error.
pub fn next_frame(r: &mut impl Read) -> RawFrame {
    read_frame(r)
        .unwrap_or_else(|e| super::read_failed("a server frame", &e))
        .expect("end of stream instead of a frame")
}

/// Reads frames until one with `opcode` (panics on EOF or timeout).
pub fn read_until_opcode(r: &mut impl Read, opcode: u8) -> RawFrame {
    loop {
        match read_frame(r) {
            Ok(Some(f)) if f.opcode == opcode => return f,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("end of stream while waiting for opcode {opcode}"),
            Err(e) => panic!("error while waiting for opcode {opcode}: {e}"),
        }
    }
}

/// Reads until the peer closes the connection (EOF or reset); returns
/// whatever frames came first. Panics if that takes longer than `limit`.
pub fn read_to_eof(stream: &mut TcpStream, limit: Duration) -> Vec<RawFrame> {
    let deadline = Instant::now() + limit;
    let mut frames = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "connection still open after {limit:?}");
        stream.set_read_timeout(Some(left)).unwrap();
        match read_frame(stream) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return frames,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return frames,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return frames,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => panic!("{e}"),
            Err(e) => panic!("connection still open after {limit:?} ({e})"),
        }
    }
}

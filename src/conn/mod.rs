//! One client connection as the server core holds it: its input not
//! processed yet and the gate on it (backpressure), its write queue, and its
//! [`Machine`] (the protocol, with no I/O: see [`machine`]). Its socket is
//! the driver's (`crate::server`), which knows it by the same [`ConnId`].
//!
//! A connection that is done (`Draining`) flushes what is queued, sends FIN,
//! then discards what the peer still sends until it closes too (closing a
//! socket with unread data would reset the connection and could destroy our
//! last bytes in flight).

pub mod machine;

pub use machine::Machine;

use std::net::SocketAddr;
use std::time::Instant;

use mio::Token;

use crate::queue::WriteQueue;
use crate::table::Id;

/// A connection's slot in the loop's table plus a generation number: an
/// event, timer or room entry meant for a closed connection never reaches
/// the next one in the same slot (see [`Table`](crate::table::Table)).
pub type ConnId = Id<Conn>;

impl ConnId {
    /// The id as a `mio::Token`: generation in the high 32 bits, key in the
    /// low 32.
    pub fn token(self) -> Token {
        Token(((self.generation as usize) << 32) | self.key as usize)
    }

    /// The id a `mio::Token` carries.
    pub fn from_token(token: Token) -> ConnId {
        ConnId::new(token.0 as u32, (token.0 >> 32) as u32)
    }
}

/// Bytes read from the peer and not processed yet: a request or frame cut
/// by the end of a read, or whole requests and messages held back because
/// the connection's output is over `--pause-reading-at` (nothing more is
/// read meanwhile, so this stays within one read plus one request).
///
/// Consumed by offset: answering a batch of pipelined requests moves
/// `start` forward; the rest moves to the front only when more bytes must
/// be appended. An idle connection holds no allocation.
#[derive(Debug, Default)]
pub struct Input {
    bytes: Vec<u8>,
    start: usize,
}

impl Input {
    /// The bytes not processed yet.
    pub fn pending(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// True when every byte read has been processed.
    pub fn is_empty(&self) -> bool {
        self.start == self.bytes.len()
    }

    /// Appends bytes read after the pending ones.
    pub fn push(&mut self, more: &[u8]) {
        if self.start > 0 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(more);
    }

    /// Marks the first `n` pending bytes as processed (`n` is clamped to
    /// what is pending).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.bytes.len());
        if self.is_empty() {
            *self = Input::default();
        }
    }

    /// Forgets everything pending (the peer's input no longer matters).
    pub fn clear(&mut self) {
        *self = Input::default();
    }
}

/// The one gate on a connection's input (backpressure): while its
/// output is over `--pause-reading-at`, no byte is read from it and no
/// request or message already read is processed, whatever put the output
/// there (responses, pongs, echoes, closes, broadcasts). It opens again once
/// the output has drained below half of that.
///
/// With a data file it also holds a connection whose answer waits for the
/// loop turn's commit (a login's `303` or `503`, a log-out's, the
/// operator's): it is decided only then, and no later request of it may
/// be answered before that one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum InputGate {
    /// Input is read and processed.
    #[default]
    Open,
    /// Input waits until the output drains.
    Paused,
    /// An answer waits for the commit.
    Held,
}

impl InputGate {
    /// May one more unit of input (a read, a request, a message) be taken?
    /// Pauses when `buffered` is over `pause_at`.
    pub fn admits(&mut self, buffered: usize, pause_at: usize) -> bool {
        if *self == InputGate::Open && buffered > pause_at {
            *self = InputGate::Paused;
        }
        *self == InputGate::Open
    }

    /// Holds the input until [`InputGate::release`] (a login waits for its
    /// commit).
    pub fn hold(&mut self) {
        *self = InputGate::Held;
    }

    /// The commit is done: input may flow again (the caller then resumes).
    pub fn release(&mut self) {
        if *self == InputGate::Held {
            *self = InputGate::Open;
        }
    }

    /// After a flush: true when a paused gate opens again now (the caller
    /// then resumes: first what is already read, then the socket).
    pub fn reopens(&mut self, buffered: usize, pause_at: usize) -> bool {
        if *self == InputGate::Paused && buffered < pause_at / 2 {
            *self = InputGate::Open;
            return true;
        }
        false
    }
}

/// Which listening socket a connection came in on: each kind has its own
/// connection limit and its own routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `--bind`: the application (pages, login, WebSockets).
    Main,
    /// `--metrics-bind`: only `/metrics` and `/healthz`.
    Metrics,
    /// `--admin-bind`: only the operator API (`/admin/*`) and `/healthz`.
    Admin,
}

/// One connection as the core holds it: its buffers, and the [`Machine`]
/// that decides what the protocol does with them.
#[derive(Debug)]
pub struct Conn {
    /// The protocol state: what to do with bytes and time.
    pub machine: Machine,
    /// Bytes waiting for the socket.
    pub out: WriteQueue,
    /// The time of this connection's entry in the timers, if any (the
    /// machine's deadline may have moved since: see `timers`).
    pub queued_timer: Option<Instant>,
    /// Input read and not processed yet.
    pub input: Input,
    /// Whether input may be read and processed now (backpressure).
    pub gate: InputGate,
    /// Already in the server's list of connections to flush.
    pub dirty: bool,
    /// The listener it was accepted on.
    pub via: Via,
    /// Its TCP peer is one of the proxies named by `--trust-proxy`: its
    /// requests' `X-Forwarded-For` and `X-Forwarded-Host` count.
    pub via_proxy: bool,
    /// Counted under its peer's address in the per-address limits (released
    /// when it is dropped).
    pub counted: bool,
    /// The peer sent FIN: once the queue is written, it is dropped.
    pub peer_closed: bool,
    /// Bytes the turn will queue for it when it is delivered (the frames
    /// of its own messages, which come back to it, and its close frame):
    /// the gate counts them as queued already, so a sender is paused as if
    /// its messages were broadcast the moment it sent them, and a peer's
    /// FIN does not drop a connection that is still owed them.
    pub owed: usize,
}

impl Conn {
    /// A freshly accepted connection: empty buffers, gate open.
    pub fn new(machine: Machine) -> Self {
        Conn {
            machine,
            out: WriteQueue::new(),
            queued_timer: None,
            input: Input::default(),
            gate: InputGate::Open,
            dirty: false,
            via: Via::Main,
            via_proxy: false,
            counted: false,
            peer_closed: false,
            owed: 0,
        }
    }

    /// What the input gate weighs: bytes queued, and owed by the turn.
    pub fn output(&self) -> usize {
        self.out.buffered() + self.owed
    }

    /// The client's address (see [`Machine::peer`]).
    pub fn peer(&self) -> SocketAddr {
        self.machine.peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip() {
        let id = ConnId::new(7, 0xDEAD_BEEF);
        assert_eq!(ConnId::from_token(id.token()), id);
    }

    #[test]
    fn the_gate_pauses_over_the_level_and_reopens_below_half() {
        let mut gate = InputGate::Open;
        assert!(gate.admits(1000, 1000), "at the level: still open");
        assert!(!gate.reopens(0, 1000), "an open gate does not reopen");
        assert!(!gate.admits(1001, 1000), "over it: paused");
        // Paused until below half, whatever is asked meanwhile.
        assert!(!gate.admits(600, 1000));
        assert!(!gate.reopens(500, 1000));
        assert!(!gate.admits(10, 1000), "only a flush reopens it");
        assert!(gate.reopens(499, 1000));
        assert!(!gate.reopens(0, 1000), "reopens once");
        assert!(gate.admits(499, 1000));
    }

    #[test]
    fn input_is_consumed_by_offset_and_idle_input_holds_nothing() {
        let mut input = Input::default();
        input.push(b"GET /a\n\nGET /b\n\nGE");
        input.consume(8);
        assert_eq!(input.pending(), b"GET /b\n\nGE");
        assert_eq!(input.bytes.len(), 18, "not moved by consuming");
        input.push(b"T /c\n\n");
        assert_eq!(input.start, 0, "moved to the front once, when appending");
        assert_eq!(input.pending(), b"GET /b\n\nGET /c\n\n");
        input.consume(100);
        assert!(input.is_empty());
        assert_eq!(
            input.bytes.capacity(),
            0,
            "an idle connection holds no buffer"
        );
    }
}

#[cfg(test)]
mod size_tests {
    /// What an idle connection costs in the loop's table (plus its boxed
    /// WebSocket state once upgraded): keep it small; docs/PERFORMANCE.md
    /// quotes these numbers.
    #[test]
    fn connection_structs_stay_small() {
        let slot = std::mem::size_of::<crate::table::Slot<super::Conn>>();
        assert!(slot <= 192, "{slot}");
        let ws = std::mem::size_of::<super::machine::WebSocket>();
        assert!(ws <= 160, "{ws}");
        println!("a connection's slot: {slot} B; its WebSocket state: {ws} B");
    }
}

//! One client connection: its socket, where it is in its life (an enum), its
//! write queue, and its one timer.
//!
//! ```text
//!   accept ──► Http ──(request)──► Http (keep-alive) ...
//!               │ \──(Connection: close or refusal)──► Draining ──► dropped
//!               └──(101 Switching Protocols)──► WebSocket ──(close handshake)──► Draining ──► dropped
//! ```
//!
//! `Draining` means: flush what is queued, send FIN, then discard what the
//! peer still sends until it closes too (closing a socket with unread data
//! would reset the connection and could destroy our last bytes in flight).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Token};

use crate::queue::WriteQueue;
use crate::ws::reader::MessageReader;

/// A connection's slab key plus a generation number. The slab reuses keys;
/// the generation makes sure an event, timer or room entry meant for a closed
/// connection never reaches the next one in the same slot. It is also the
/// `mio::Token`: generation in the high 32 bits, key in the low 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    pub key: u32,
    pub gen: u32,
}

impl ConnId {
    pub fn token(self) -> Token {
        Token(((self.gen as usize) << 32) | self.key as usize)
    }

    pub fn from_token(token: Token) -> ConnId {
        ConnId {
            key: token.0 as u32,
            gen: (token.0 >> 32) as u32,
        }
    }
}

/// Reading a request: the bytes so far, and how far we looked for its end.
#[derive(Debug, Default)]
pub struct HttpIn {
    pub buf: Vec<u8>,
    pub scanned: usize,
}

/// What an open WebSocket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A chat socket of this session (slab key in `Chat::sessions`).
    Chat { session: usize },
    /// The `/echo` endpoint.
    Echo,
}

/// A token bucket: `rate` messages per second, at most `burst` at once.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(burst: f64, now: Instant) -> Self {
        TokenBucket {
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token; false when the bucket is empty. `rate == 0` is no limit.
    pub fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        if rate <= 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until the bucket holds a whole token again (zero if it
    /// does), refilling at `rate` per second.
    pub fn time_to_token(&self, rate: f64) -> Duration {
        if rate <= 0.0 || self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / rate)
    }
}

/// An open WebSocket.
#[derive(Debug)]
pub struct Ws {
    pub reader: MessageReader,
    pub role: Role,
    /// We sent our close frame; data frames are ignored from now on.
    pub close_sent: bool,
    /// A ping is out and its pong has not come back.
    pub awaiting_pong: bool,
    pub bucket: TokenBucket,
}

/// Where a connection is in its life.
#[derive(Debug)]
pub enum Phase {
    Http(HttpIn),
    WebSocket(Box<Ws>),
    Draining,
}

/// One connection.
#[derive(Debug)]
pub struct Conn {
    pub id: ConnId,
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub phase: Phase,
    pub out: WriteQueue,
    /// When this connection's timer fires (head timeout, ping, pong or close
    /// timeout, depending on `phase`).
    pub deadline: Option<Instant>,
    /// The time of this connection's entry in the timer heap, if any.
    pub queued_timer: Option<Instant>,
    /// What we are registered for with the poll.
    pub interest: Interest,
    /// Reading stopped because too much output is buffered (SPEC §6).
    pub read_paused: bool,
    /// Already in the server's list of connections to flush.
    pub dirty: bool,
    /// Send FIN once the queue is empty.
    pub fin_when_flushed: bool,
    pub fin_sent: bool,
    /// Accepted on the `--metrics-bind` listener.
    pub via_metrics: bool,
    /// The client address this connection is counted under in the
    /// per-address limits (released when it is dropped).
    pub counted_as: Option<IpAddr>,
}

impl Conn {
    pub fn new(id: ConnId, stream: TcpStream, peer: SocketAddr) -> Self {
        Conn {
            id,
            stream,
            peer,
            phase: Phase::Http(HttpIn::default()),
            out: WriteQueue::new(),
            deadline: None,
            queued_timer: None,
            interest: Interest::READABLE,
            read_paused: false,
            dirty: false,
            fin_when_flushed: false,
            fin_sent: false,
            via_metrics: false,
            counted_as: None,
        }
    }

    pub fn ws(&mut self) -> Option<&mut Ws> {
        match &mut self.phase {
            Phase::WebSocket(ws) => Some(ws),
            _ => None,
        }
    }

    /// The chat session this connection is the socket of, if any.
    pub fn session(&self) -> Option<usize> {
        match &self.phase {
            Phase::WebSocket(ws) => match ws.role {
                Role::Chat { session } => Some(session),
                Role::Echo => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn token_round_trip() {
        let id = ConnId {
            key: 7,
            gen: 0xDEAD_BEEF,
        };
        assert_eq!(ConnId::from_token(id.token()), id);
    }

    #[test]
    fn bucket_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, t0);
        assert!(b.take(1.0, 2.0, t0));
        assert!(b.take(1.0, 2.0, t0));
        assert!(!b.take(1.0, 2.0, t0));
        assert!(b.take(1.0, 2.0, t0 + Duration::from_secs(1)));
        assert!(b.take(0.0, 2.0, t0), "rate 0 is off");
    }
}

#[cfg(test)]
mod size_tests {
    /// What an idle connection costs in the slab (plus its boxed `Ws`):
    /// keep it small; the README quotes these numbers.
    #[test]
    fn connection_structs_stay_small() {
        assert!(
            std::mem::size_of::<super::Conn>() <= 192,
            "{}",
            std::mem::size_of::<super::Conn>()
        );
        assert!(
            std::mem::size_of::<super::Ws>() <= 160,
            "{}",
            std::mem::size_of::<super::Ws>()
        );
    }
}

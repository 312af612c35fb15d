//! The protocol of one connection as a state machine with no I/O: it is
//! given bytes the peer sent, the time, and what the loop decided (the
//! response to a request, a close). What it sends (responses, frames,
//! pongs, pings, closes) it queues in the connection's [`WriteQueue`],
//! passed in; what else must happen it returns as [`Actions`]: leave the
//! room, post this chat text, drain, drop. It never touches a socket or
//! another connection; the server core applies what it returns, in one
//! place (`Core::apply`).
//!
//! ```text
//!   Http ──(request)──► Http (keep-alive) ...
//!    │ \──(Connection: close, or a refusal)──► Draining { fin: Pending ──► Sent }
//!    └──(101)──► WebSocket { Open ──(our close)──► CloseSent }
//!                   └──(the peer's close, or an error)──► Draining
//! ```
//!
//! A WebSocket also tracks its keep-alive ([`Ping`]: `Idle` until its
//! timer sends a ping, then `AwaitingPong`) and its chat rate
//! ([`TokenBucket`]). The machine keeps one deadline; what it means
//! depends on the state (head timeout, ping, pong timeout, close timeout),
//! and [`Machine::on_timer`] says what its expiry does.
//!
//! Keep-alive deadlines (ping and pong timeout) are rounded up to a coarse
//! tick ([`Settings::keepalive_tick`], counted from one instant shared by
//! all connections), so the pings that fall due in one tick go out in one
//! loop turn instead of one wake-up each. A deadline only ever moves later,
//! by less than a tick: a silent peer is still dropped no sooner than the
//! pong timeout after its ping, and within ping interval + pong timeout +
//! two ticks of its last pong.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::bytes::Bytes;
use crate::chat::SessionId;
use crate::chat::command::{self, Command, Dialect};
use crate::config::Config;
use crate::http::pipeline::{Framed, next_request};
use crate::http::request::{HeadLimits, Request};
use crate::http::response::{self, Response};
use crate::http::upgrade::{self, Upgrade};
use crate::queue::WriteQueue;
use crate::rate::TokenBucket;
use crate::ws::close::{self, CloseCode, CloseReason};
use crate::ws::frame::{self, Opcode};
use crate::ws::reader::{self, Message, MessageReader};

/// The settings a machine follows (from the configuration, read once).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Request head size limits.
    pub head: HeadLimits,
    /// The largest request body (a login form).
    pub max_body_bytes: usize,
    /// Frame and message size limits.
    pub frames: reader::Limits,
    /// Time to send a whole request head (`--head-timeout-secs`).
    pub head_timeout: Duration,
    /// Quiet time before a ping (`--ping-interval-secs`).
    pub ping_interval: Duration,
    /// Time for the pong after a ping (`--pong-timeout-secs`).
    pub pong_timeout: Duration,
    /// Time for the peer's close frame, and for its FIN while draining
    /// (`--close-timeout-secs`).
    pub close_timeout: Duration,
    /// Chat messages per second, 0 for no limit (`--rate-limit`).
    pub rate: f64,
    /// Chat messages allowed at once before the rate applies (`--rate-burst`).
    pub burst: f64,
    /// Keep-alive deadlines are rounded up to a multiple of this, counted
    /// from `epoch` (zero: not rounded).
    pub keepalive_tick: Duration,
    /// The instant ticks count from (the same for every connection).
    pub epoch: Instant,
}

/// The longest keep-alive tick: a ping goes out at most this late.
pub const MAX_KEEPALIVE_TICK: Duration = Duration::from_millis(100);

impl Settings {
    /// The machine's part of the configuration; keep-alive ticks count
    /// from `epoch`.
    pub fn of(config: &Config, epoch: Instant) -> Self {
        Settings {
            head: HeadLimits {
                max_head_bytes: config.max_head_bytes,
                max_line_bytes: config.max_request_line_bytes,
            },
            max_body_bytes: config.max_body_bytes,
            frames: reader::Limits {
                max_frame_bytes: config.max_frame_bytes,
                max_message_bytes: config.max_message_bytes,
            },
            head_timeout: config.head_timeout,
            ping_interval: config.ping_interval,
            pong_timeout: config.pong_timeout,
            close_timeout: config.close_timeout,
            rate: config.rate_limit,
            burst: config.rate_burst,
            keepalive_tick: (config.ping_interval / 8).min(MAX_KEEPALIVE_TICK),
            epoch,
        }
    }

    /// `at`, rounded up to the next keep-alive tick.
    pub fn on_tick(&self, at: Instant) -> Instant {
        // In u64 nanoseconds (584 years) rather than `as_nanos`'s u128,
        // whose division is a slow library call on every ping and pong.
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let tick = nanos(self.keepalive_tick);
        if tick == 0 {
            return at;
        }
        let since = nanos(at.saturating_duration_since(self.epoch));
        let up = since.div_ceil(tick).saturating_mul(tick) - since;
        at + Duration::from_nanos(up)
    }
}

/// Why a connection is dropped without a close handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The peer sent FIN before we were done.
    PeerClosed,
    /// Reading or writing the socket failed.
    IoError,
    /// A request head took longer than the head timeout.
    HeadTimeout,
    /// No pong came within the pong timeout.
    PongTimeout,
    /// No close frame (or FIN) came within the close timeout.
    CloseTimeout,
    /// The peer's FIN ended a drain: everything was said.
    Done,
    /// The server is shutting down and no answer is coming.
    Shutdown,
}

/// What the core must do for a connection after one call of its machine,
/// besides sending the bytes the machine queued itself (responses, pongs,
/// pings and echoes go straight into the connection's [`WriteQueue`],
/// passed in). A close frame is carried here instead: it must follow what
/// the turn delivers to the socket before the close (the messages its peer
/// sent before it broke a rule), so the core queues it in the turn's order.
///
/// One field per kind of consequence, each set at most once by a call (a
/// socket closes once, leaves its room once, a call completes at most one
/// message): nothing can overflow or be dropped, and nothing is allocated.
/// The core applies them in the order of the fields.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Actions {
    /// Our close frame (ours, or the answer to the peer's): the core queues
    /// it in turn, after what the turn delivers before it.
    pub close: Option<CloseFrame>,
    /// This socket no longer belongs to this chat session's room.
    pub leave: Option<SessionId>,
    /// A chat command (a text message of a room socket, within its rate,
    /// read as the socket's [`Dialect`] says).
    pub chat: Option<(SessionId, Command)>,
    /// No more input will be read: forget what is pending, send what is
    /// queued, then FIN ([`Machine::on_flushed`]).
    pub drain: bool,
    /// Close the socket now.
    pub drop: Option<DropReason>,
}

/// A close frame to send, and the code it carries (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The encoded frame.
    pub frame: Vec<u8>,
    /// Its code (`None`: an empty close, answering one).
    pub code: Option<CloseCode>,
}

impl Actions {
    /// True when the call asks nothing of the core.
    pub fn is_empty(&self) -> bool {
        *self == Actions::default()
    }
}

/// What an open WebSocket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A chat socket.
    Chat {
        /// The session the socket was opened for.
        session: SessionId,
        /// How its client speaks (chosen at the handshake).
        dialect: Dialect,
    },
    /// The `/echo` endpoint.
    Echo,
}

/// The close handshake of a WebSocket, seen from our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// Messages flow both ways.
    Open,
    /// We sent our close frame; only the peer's close matters now.
    CloseSent,
}

/// The keep-alive of a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    /// The deadline sends a ping.
    Idle,
    /// A ping is out; the deadline is the pong timeout.
    AwaitingPong,
}

/// Whether a draining connection has sent its FIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fin {
    /// Once the queue is empty.
    Pending,
    /// Sent; waiting for the peer's FIN.
    Sent,
}

/// An upgraded connection.
#[derive(Debug)]
pub struct WebSocket {
    /// The incremental frame parser.
    pub reader: MessageReader,
    /// What the socket serves.
    pub role: Role,
    /// Where the close handshake is.
    pub closing: Closing,
    /// Where the keep-alive is.
    pub ping: Ping,
    /// The chat rate limit.
    pub bucket: TokenBucket,
}

/// Where a connection is in its life.
#[derive(Debug)]
pub enum Phase {
    /// Reading requests: how far into the unprocessed input the end of the
    /// next head was already looked for.
    Http {
        /// Bytes of the input already looked at for the head's end.
        scanned: usize,
        /// The request at the front expects `100 Continue` and was given
        /// its answer (`100` or the final status): not asked again.
        expectation_met: bool,
    },
    /// Upgraded: frames both ways (boxed, so an HTTP connection stays small).
    WebSocket(Box<WebSocket>),
    /// No more input is read: flush, FIN, wait for the peer's FIN.
    Draining {
        /// Whether our FIN has gone.
        fin: Fin,
    },
}

/// What the front of a connection's input held, in the `Http` phase.
#[derive(Debug)]
pub enum HttpInput<'h, 'b> {
    /// An incomplete request: keep the bytes, read more.
    NeedMore,
    /// A request the machine refused by itself (its answer and `Drain` are
    /// in the actions); all of the input is used.
    Refused(Actions),
    /// A head whose client waits for `100 Continue` before it sends the
    /// body. The router says whether the body is wanted: then
    /// [`Machine::continue_body`] and read on; else answer the request now
    /// (with no body) and close. Asked once per request.
    AwaitingBody {
        /// The parsed head.
        request: Request<'h, 'b>,
    },
    /// A complete request of `len` bytes for the router; then call
    /// [`Machine::respond`] or [`Machine::upgrade`].
    Request {
        /// The parsed head.
        request: Request<'h, 'b>,
        /// The body (complete; empty without `Content-Length`).
        body: &'b [u8],
        /// Bytes of head and body, to consume once answered.
        len: usize,
    },
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Machine {
    phase: Phase,
    /// When `on_timer` should be called (see the module doc).
    deadline: Option<Instant>,
    /// The client's address, for log lines (the TCP peer, or the address a
    /// trusted proxy named).
    pub peer: SocketAddr,
}

impl Machine {
    /// A new connection, waiting for its first request head.
    pub fn new(peer: SocketAddr, now: Instant, s: &Settings) -> Self {
        Machine {
            phase: Phase::Http {
                scanned: 0,
                expectation_met: false,
            },
            deadline: Some(now + s.head_timeout),
            peer,
        }
    }

    /// The state, for the loop's questions (is it a WebSocket? draining?).
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// When the timer is due, if one is set.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Reading HTTP requests.
    pub fn is_http(&self) -> bool {
        matches!(self.phase, Phase::Http { .. })
    }

    /// Upgraded, open or closing (counted as an open WebSocket).
    pub fn is_websocket(&self) -> bool {
        matches!(self.phase, Phase::WebSocket(_))
    }

    /// An upgraded connection we have not sent a close frame on.
    pub fn is_open_websocket(&self) -> bool {
        matches!(&self.phase, Phase::WebSocket(ws) if ws.closing == Closing::Open)
    }

    /// No more input is read.
    pub fn is_draining(&self) -> bool {
        matches!(self.phase, Phase::Draining { .. })
    }

    /// Done: drained and FIN sent.
    pub fn finished(&self) -> bool {
        matches!(self.phase, Phase::Draining { fin: Fin::Sent })
    }

    /// The chat session an open room socket belongs to.
    fn open_session(&self) -> Option<SessionId> {
        match &self.phase {
            Phase::WebSocket(ws) if ws.closing == Closing::Open => match ws.role {
                Role::Chat { session, .. } => Some(session),
                Role::Echo => None,
            },
            _ => None,
        }
    }
}

// ----- HTTP ------------------------------------------------------------

impl Machine {
    /// Frames the request at the front of `input` (`Http` phase only). A
    /// request it refuses by itself is answered into `out`.
    pub fn on_request_bytes<'h, 'b>(
        &mut self,
        input: &'b [u8],
        storage: &'h mut [httparse::Header<'b>],
        out: &mut WriteQueue,
        now: Instant,
        s: &Settings,
    ) -> HttpInput<'h, 'b> {
        let Phase::Http {
            scanned,
            expectation_met,
        } = &mut self.phase
        else {
            return HttpInput::NeedMore;
        };
        match next_request(input, scanned, &s.head, s.max_body_bytes, storage) {
            Framed::Partial => HttpInput::NeedMore,
            Framed::AwaitingBody { .. } if *expectation_met => HttpInput::NeedMore,
            Framed::AwaitingBody { request } => {
                *expectation_met = true;
                HttpInput::AwaitingBody { request }
            }
            Framed::Refused(status) => {
                log::info!("{}: request refused: {}", self.peer, status.code());
                let response = Response::text(status, status.phrase()).closing();
                HttpInput::Refused(self.respond(response, false, false, out, now, s))
            }
            Framed::Complete {
                request,
                head_len,
                len,
            } => {
                *scanned = 0;
                *expectation_met = false;
                HttpInput::Request {
                    request,
                    body: &input[head_len..len],
                    len,
                }
            }
        }
    }

    /// Queues the answer to the last request; then the next request (with
    /// its own head timeout), or, without keep-alive, drains.
    pub fn respond(
        &mut self,
        response: Response,
        head_only: bool,
        keep_alive: bool,
        out: &mut WriteQueue,
        now: Instant,
        s: &Settings,
    ) -> Actions {
        let close = !keep_alive || response.close;
        let (head, body) = response.encode(head_only, !close);
        out.push(head);
        out.push(body);
        let mut actions = Actions::default();
        if close {
            self.drain_into(&mut actions, now, s);
        } else {
            self.deadline = Some(now + s.head_timeout);
        }
        actions
    }

    /// The request read last waits for its answer until the turn's commit
    /// (a login's `303`, an operator's `200`; a busy data file can hold it
    /// for seconds, and is given up after a bound): its head is in, so the
    /// head timeout gives way to `until`, past that bound. The answer sets
    /// the next deadline.
    pub fn answer_waits(&mut self, until: Instant) {
        if self.is_http() {
            self.deadline = Some(until);
        }
    }

    /// Tells a client that waits with its body to send it: queues
    /// `100 Continue`.
    pub fn continue_body(&self, out: &mut WriteQueue) {
        out.push(Bytes::Static(response::CONTINUE));
    }

    /// Queues `101 Switching Protocols`: the connection is a WebSocket now.
    pub fn upgrade(
        &mut self,
        upgrade: &Upgrade,
        role: Role,
        out: &mut WriteQueue,
        now: Instant,
        s: &Settings,
    ) {
        out.push(Bytes::Owned(upgrade::response_bytes(upgrade)));
        self.phase = Phase::WebSocket(Box::new(WebSocket {
            reader: MessageReader::new(),
            role,
            closing: Closing::Open,
            ping: Ping::Idle,
            bucket: TokenBucket::new(s.burst, now),
        }));
        log::debug!("{}: upgraded to WebSocket ({role:?})", self.peer);
        self.deadline = Some(s.on_tick(now + s.ping_interval));
    }
}

// ----- WebSocket -------------------------------------------------------

impl Machine {
    /// Feeds `input` to the WebSocket (or to a draining connection, which
    /// ignores it) until one message is complete and handled or the input
    /// is used up. Returns how many bytes were used.
    pub fn on_frame_bytes(
        &mut self,
        input: &[u8],
        out: &mut WriteQueue,
        now: Instant,
        s: &Settings,
    ) -> (usize, Actions) {
        let mut actions = Actions::default();
        let Phase::WebSocket(ws) = &mut self.phase else {
            return (input.len(), actions); // draining: ignored
        };
        let mut rest = input;
        match ws.reader.read(&mut rest, &s.frames) {
            Ok(Some(message)) => {
                let used = input.len() - rest.len();
                self.on_message(&mut actions, message, out, now, s);
                (used, actions)
            }
            Ok(None) => (input.len(), actions),
            Err(e) => {
                if ws.closing == Closing::Open {
                    let (peer, code) = (self.peer, e.close_code());
                    log::info!("{peer}: protocol error, closing {code}: {}", e.reason());
                    self.close_into(&mut actions, e.to_close(), now, s);
                }
                // Fail the connection (RFC 6455 §7.1.7): after a protocol
                // error the stream cannot be parsed any more, so read
                // nothing more from it (not even a close frame); send our
                // close, then FIN.
                self.drain_into(&mut actions, now, s);
                (input.len(), actions)
            }
        }
    }

    /// One complete message from the peer.
    fn on_message(
        &mut self,
        actions: &mut Actions,
        message: Message,
        out: &mut WriteQueue,
        now: Instant,
        s: &Settings,
    ) {
        let Phase::WebSocket(ws) = &mut self.phase else {
            return;
        };
        match message {
            Message::Close(payload) => self.on_close_frame(actions, payload, now, s),
            _ if ws.closing == Closing::CloseSent => {} // only a close matters now
            Message::Ping(payload) => {
                out.push(Bytes::Owned(frame::encode_frame(Opcode::Pong, &payload)));
            }
            Message::Pong(_) => {
                if ws.ping == Ping::AwaitingPong {
                    ws.ping = Ping::Idle;
                    self.deadline = Some(s.on_tick(now + s.ping_interval));
                }
            }
            Message::Text(bytes) => self.on_data(actions, Opcode::Text, bytes, out, now, s),
            Message::Binary(bytes) => self.on_data(actions, Opcode::Binary, bytes, out, now, s),
        }
    }

    /// A text or binary message on an open WebSocket: echoed, or a chat
    /// message within the rate (text only).
    fn on_data(
        &mut self,
        actions: &mut Actions,
        opcode: Opcode,
        bytes: Vec<u8>,
        out: &mut WriteQueue,
        now: Instant,
        s: &Settings,
    ) {
        let Phase::WebSocket(ws) = &mut self.phase else {
            return;
        };
        let (session, dialect) = match ws.role {
            Role::Echo => {
                return out.push(Bytes::Owned(frame::encode_frame(opcode, &bytes)));
            }
            Role::Chat { session, dialect } => (session, dialect),
        };
        if opcode == Opcode::Binary {
            log::info!("{}: binary message, closing 1003", self.peer);
            let reason = CloseReason::new(close::UNSUPPORTED_DATA, "text messages only");
            return self.close_into(actions, reason, now, s);
        }
        if !ws.bucket.take(s.rate, s.burst, now) {
            log::info!("{}: rate limit, closing 1008", self.peer);
            let reason = CloseReason::new(close::POLICY, "rate limit");
            return self.close_into(actions, reason, now, s);
        }
        match command::parse(dialect, bytes) {
            Ok(command) => actions.chat = Some((session, command)),
            Err(bad) => {
                log::info!("{}: bad command, closing 1008", self.peer);
                self.close_into(actions, bad.close_reason(), now, s);
            }
        }
    }

    /// The peer's close frame: answered (echoing its code) unless we sent
    /// ours already; either way the handshake is complete: drain.
    fn on_close_frame(
        &mut self,
        actions: &mut Actions,
        payload: Option<(u16, String)>,
        now: Instant,
        s: &Settings,
    ) {
        if self.is_open_websocket() {
            let frame = match &payload {
                Some((code, _)) => frame::encode_close(*code, ""),
                None => frame::encode_frame(Opcode::Close, &[]),
            };
            let code = payload.map(|(code, _)| code);
            actions.close = Some(CloseFrame { frame, code });
            self.leave_into(actions);
            if let Phase::WebSocket(ws) = &mut self.phase {
                ws.closing = Closing::CloseSent;
            }
        }
        self.drain_into(actions, now, s);
    }
}

// ----- closing, timers, flushing, dropping ------------------------------

impl Machine {
    /// Starts the close handshake from our side: our close frame (once),
    /// out of the room, and the close timeout for the peer's answer.
    pub fn close(&mut self, reason: CloseReason, now: Instant, s: &Settings) -> Actions {
        let mut actions = Actions::default();
        self.close_into(&mut actions, reason, now, s);
        actions
    }

    fn close_into(
        &mut self,
        actions: &mut Actions,
        reason: CloseReason,
        now: Instant,
        s: &Settings,
    ) {
        if !self.is_open_websocket() {
            return;
        }
        actions.close = Some(CloseFrame {
            frame: frame::encode_close(reason.code, reason.reason),
            code: Some(reason.code),
        });
        self.leave_into(actions);
        if let Phase::WebSocket(ws) = &mut self.phase {
            ws.closing = Closing::CloseSent;
        }
        self.deadline = Some(now + s.close_timeout);
    }

    /// No more requests or messages: send what is queued, then FIN, then
    /// wait for the peer to close (bounded by the close timeout).
    pub fn drain(&mut self, now: Instant, s: &Settings) -> Actions {
        let mut actions = Actions::default();
        self.drain_into(&mut actions, now, s);
        actions
    }

    fn drain_into(&mut self, actions: &mut Actions, now: Instant, s: &Settings) {
        if self.is_draining() {
            return;
        }
        self.leave_into(actions);
        self.phase = Phase::Draining { fin: Fin::Pending };
        self.deadline = Some(now + s.close_timeout);
        actions.drain = true;
    }

    /// The one place a room socket leaves its room: when it stops being an
    /// open WebSocket (our close, the peer's close, an error, a drop).
    fn leave_into(&mut self, actions: &mut Actions) {
        if let Some(session) = self.open_session() {
            actions.leave = Some(session);
        }
    }

    /// The deadline passed: what it means depends on the state (a ping
    /// goes into `out`).
    pub fn on_timer(&mut self, out: &mut WriteQueue, now: Instant, s: &Settings) -> Actions {
        let mut actions = Actions::default();
        self.deadline = None;
        let drop = match &mut self.phase {
            Phase::Http { .. } => DropReason::HeadTimeout,
            Phase::Draining { .. } => DropReason::CloseTimeout,
            Phase::WebSocket(ws) if ws.closing == Closing::CloseSent => DropReason::CloseTimeout,
            Phase::WebSocket(ws) if ws.ping == Ping::AwaitingPong => {
                log::info!("{}: no pong, dropping", self.peer);
                DropReason::PongTimeout
            }
            Phase::WebSocket(ws) => {
                ws.ping = Ping::AwaitingPong;
                out.push(Bytes::Static(frame::PING));
                self.deadline = Some(s.on_tick(now + s.pong_timeout));
                return actions;
            }
        };
        actions.drop = Some(drop); // (the core's drop asks `on_drop`)
        actions
    }

    /// The connection is dropped (by a timer, an I/O error, the peer's FIN,
    /// shutdown): an open room socket leaves its room (the session, if so).
    pub fn on_drop(&mut self) -> Option<SessionId> {
        let session = self.open_session();
        if let Phase::WebSocket(ws) = &mut self.phase {
            ws.closing = Closing::CloseSent;
        }
        session
    }

    /// Everything queued was sent: true when FIN should go now (once).
    pub fn on_flushed(&mut self) -> bool {
        if let Phase::Draining { fin } = &mut self.phase
            && *fin == Fin::Pending
        {
            *fin = Fin::Sent;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    //! The protocol with no socket: bytes in, queued bytes and actions out,
    //! and a fake clock (plain `Instant`s moved forward by hand).

    use super::*;
    use crate::conn::{Input, InputGate};
    use crate::http::Status;
    use crate::http::request::MAX_HEADERS;
    use crate::ws::frame::encode_client_frame;

    const SECOND: Duration = Duration::from_secs(1);

    fn settings() -> Settings {
        Settings {
            head: HeadLimits {
                max_head_bytes: 8192,
                max_line_bytes: 2048,
            },
            max_body_bytes: 1024,
            frames: reader::Limits {
                max_frame_bytes: 1024,
                max_message_bytes: 1024,
            },
            head_timeout: 10 * SECOND,
            ping_interval: 30 * SECOND,
            pong_timeout: 20 * SECOND,
            close_timeout: 5 * SECOND,
            rate: 1.0,
            burst: 2.0,
            keepalive_tick: Duration::ZERO,
            epoch: Instant::now(),
        }
    }

    fn session() -> SessionId {
        SessionId::new(3, 7)
    }

    /// Everything queued in `out`, taken out.
    fn sent(out: &mut WriteQueue) -> Vec<u8> {
        let mut bytes = Vec::new();
        out.write_to(&mut bytes, &mut Vec::new()).unwrap();
        bytes
    }

    /// A machine upgraded at `t0` to a room socket of `session()`.
    fn chat_socket(t0: Instant) -> Machine {
        let s = settings();
        let mut m = Machine::new("127.0.0.1:5000".parse().unwrap(), t0, &s);
        let upgrade = Upgrade {
            accept: "x".into(),
            protocol: None,
        };
        let mut out = WriteQueue::new();
        m.upgrade(
            &upgrade,
            Role::Chat {
                session: session(),
                dialect: Dialect::Text,
            },
            &mut out,
            t0,
            &s,
        );
        assert!(sent(&mut out).starts_with(b"HTTP/1.1 101 "));
        assert_eq!(m.deadline(), Some(t0 + s.ping_interval));
        m
    }

    fn client(opcode: u8, payload: &[u8]) -> Vec<u8> {
        encode_client_frame(true, opcode, [1, 2, 3, 4], payload)
    }

    /// Feeds all of `bytes`, message by message: the bytes sent and the
    /// actions of the last call.
    fn feed(m: &mut Machine, bytes: &[u8], now: Instant) -> (Vec<u8>, Actions) {
        let mut out = WriteQueue::new();
        let mut last = Actions::default();
        let mut at = 0;
        while at < bytes.len() {
            let (used, actions) = m.on_frame_bytes(&bytes[at..], &mut out, now, &settings());
            assert!(used > 0);
            last = actions;
            at += used;
        }
        (sent(&mut out), last)
    }

    /// The actions of a close with this code (and reason), leaving the
    /// room or not, draining or not.
    fn closing(code: CloseCode, reason: &str, leave: bool, drain: bool) -> Actions {
        Actions {
            close: Some(CloseFrame {
                frame: frame::encode_close(code, reason),
                code: Some(code),
            }),
            leave: leave.then(session),
            drain,
            ..Actions::default()
        }
    }

    #[test]
    fn our_close_waits_for_theirs_then_drains() {
        let t0 = Instant::now();
        let mut m = chat_socket(t0);
        let t1 = t0 + SECOND;
        let reason = CloseReason::new(close::REPLACED, "replaced");
        let actions = m.close(reason, t1, &settings());
        assert_eq!(actions, closing(close::REPLACED, "replaced", true, false));
        let again = m.close(CloseReason::new(1000, ""), t1, &settings());
        assert!(again.is_empty(), "once");
        assert_eq!(m.deadline(), Some(t1 + settings().close_timeout));
        assert!(m.is_websocket() && !m.is_open_websocket());
        let (bytes, actions) = feed(&mut m, &client(1, b"late"), t1);
        assert!(bytes.is_empty() && actions.is_empty(), "data ignored");
        let (bytes, closed) = feed(&mut m, &client(8, &1000u16.to_be_bytes()), t1);
        let drain = Actions {
            drain: true,
            ..Actions::default()
        };
        assert!(bytes.is_empty());
        assert_eq!(closed, drain, "no second close, no second leave");
        assert!(m.is_draining() && !m.finished());
        assert!(m.on_flushed(), "FIN once flushed");
        assert!(!m.on_flushed(), "and only once");
        assert!(m.finished());
        assert!(feed(&mut m, &client(1, b"after"), t1).1.is_empty());
    }

    #[test]
    fn their_close_is_echoed_then_drains() {
        let t0 = Instant::now();
        let mut m = chat_socket(t0);
        let mut payload = 4001u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let (bytes, actions) = feed(&mut m, &client(8, &payload), t0);
        assert!(bytes.is_empty(), "the answer is in the actions");
        assert_eq!(actions, closing(4001, "", true, true));
        assert_eq!(m.deadline(), Some(t0 + settings().close_timeout));
        // An empty close is answered with an empty one, and not counted.
        let mut m = chat_socket(t0);
        let (_, actions) = feed(&mut m, &client(8, b""), t0);
        let answer = actions.close.expect("answered");
        assert_eq!(answer.frame, frame::encode_frame(Opcode::Close, b""));
        assert_eq!(answer.code, None);
    }

    #[test]
    fn the_close_timeout_drops() {
        let t0 = Instant::now();
        let s = settings();
        let mut out = WriteQueue::new();
        let mut m = chat_socket(t0);
        let _ = m.close(CloseReason::new(1001, "bye"), t0, &s);
        let at = m.deadline().unwrap();
        let actions = m.on_timer(&mut out, at, &s);
        assert_eq!(actions.drop, Some(DropReason::CloseTimeout));
        // A draining connection whose peer never closes, likewise.
        let mut m = chat_socket(t0);
        let _ = m.drain(t0, &s);
        let actions = m.on_timer(&mut out, t0 + s.close_timeout, &s);
        assert_eq!(actions.drop, Some(DropReason::CloseTimeout));
    }

    #[test]
    fn keepalive_deadlines_are_batched_on_ticks() {
        let tick = 100 * Duration::from_millis(1);
        let epoch = Instant::now();
        let s = Settings {
            keepalive_tick: tick,
            epoch,
            ..settings()
        };
        let upgrade = Upgrade {
            accept: "x".into(),
            protocol: None,
        };
        let mut out = WriteQueue::new();
        // Sockets upgraded at different instants within one tick ping
        // together, at the first tick at or after their own due time.
        let mut ms: Vec<Machine> = [3, 40, 99]
            .iter()
            .map(|ms| {
                let at = epoch + Duration::from_millis(*ms);
                let mut m = Machine::new("127.0.0.1:5000".parse().unwrap(), at, &s);
                let role = Role::Chat {
                    session: session(),
                    dialect: Dialect::Text,
                };
                m.upgrade(&upgrade, role, &mut out, at, &s);
                m
            })
            .collect();
        let _ = sent(&mut out);
        let due = epoch + s.ping_interval + tick;
        for m in &ms {
            assert_eq!(m.deadline(), Some(due));
        }
        // One exactly on a tick is not moved.
        assert_eq!(s.on_tick(epoch + 2 * tick), epoch + 2 * tick);
        // The ping's pong timeout: rounded up too, never shortened.
        let sent_at = due + Duration::from_millis(7); // a late loop turn
        assert!(ms[0].on_timer(&mut out, sent_at, &s).is_empty());
        assert_eq!(sent(&mut out), frame::PING, "a ping");
        let pong_deadline = ms[0].deadline().unwrap();
        assert!(pong_deadline >= sent_at + s.pong_timeout);
        assert!(pong_deadline < sent_at + s.pong_timeout + tick);
        assert_eq!(s.on_tick(pong_deadline), pong_deadline);
        // A pong moves the next ping to a tick as well.
        let t = sent_at + Duration::from_millis(1);
        let pong = client(0xA, b"");
        let (used, _) = ms[0].on_frame_bytes(&pong, &mut out, t, &s);
        assert_eq!(used, pong.len());
        let next = ms[0].deadline().unwrap();
        assert!(next >= t + s.ping_interval && next < t + s.ping_interval + tick);
        assert_eq!(s.on_tick(next), next);
        // Without a pong, the drop comes at the rounded pong timeout.
        let _ = ms[1].on_timer(&mut out, due, &s);
        let at = ms[1].deadline().unwrap();
        let actions = ms[1].on_timer(&mut out, at, &s);
        assert_eq!(actions.drop, Some(DropReason::PongTimeout));
    }

    #[test]
    fn pings_pongs_and_the_pong_timeout() {
        let t0 = Instant::now();
        let s = settings();
        let mut out = WriteQueue::new();
        let mut m = chat_socket(t0);
        let t1 = t0 + s.ping_interval;
        assert!(m.on_timer(&mut out, t1, &s).is_empty());
        assert_eq!(sent(&mut out), frame::PING);
        assert_eq!(m.deadline(), Some(t1 + s.pong_timeout));
        let t2 = t1 + SECOND;
        assert!(feed(&mut m, &client(10, b""), t2).0.is_empty());
        assert_eq!(m.deadline(), Some(t2 + s.ping_interval), "next ping");
        // A pong nobody asked for changes nothing.
        assert!(feed(&mut m, &client(10, b""), t2 + SECOND).0.is_empty());
        assert_eq!(m.deadline(), Some(t2 + s.ping_interval));
        // Their ping is answered with a pong carrying its payload.
        let pong = frame::encode_frame(Opcode::Pong, b"hi");
        assert_eq!(feed(&mut m, &client(9, b"hi"), t2).0, pong);
        let t3 = t2 + s.ping_interval;
        let _ = m.on_timer(&mut out, t3, &s);
        assert_eq!(sent(&mut out), frame::PING);
        let gone = m.on_timer(&mut out, t3 + s.pong_timeout, &s);
        assert_eq!(gone.drop, Some(DropReason::PongTimeout));
        assert_eq!(m.on_drop(), Some(session()));
        assert_eq!(m.on_drop(), None, "leaves once");
    }

    #[test]
    fn the_rate_limit_closes_with_1008() {
        let t0 = Instant::now();
        let mut m = chat_socket(t0);
        let text = |m: &mut Machine, at| feed(m, &client(1, b"hi"), at);
        let chat = Actions {
            chat: Some((session(), Command::Say { text: "hi".into() })),
            ..Actions::default()
        };
        assert_eq!(text(&mut m, t0).1, chat, "burst of 2");
        assert_eq!(text(&mut m, t0).1, chat);
        assert_eq!(text(&mut m, t0 + SECOND).1, chat, "1 per second");
        let (_, over) = text(&mut m, t0 + SECOND);
        assert_eq!(over, closing(close::POLICY, "rate limit", true, false));
        assert!(
            text(&mut m, t0 + 10 * SECOND).1.is_empty(),
            "closed: ignored"
        );
    }

    #[test]
    fn a_protocol_error_closes_and_drains_and_binary_chat_is_refused() {
        let t0 = Instant::now();
        let mut m = chat_socket(t0);
        let unmasked = frame::encode_frame(Opcode::Text, b"hi");
        let (_, actions) = feed(&mut m, &unmasked, t0);
        assert_eq!(
            actions.close.and_then(|c| c.code),
            Some(close::PROTOCOL_ERROR)
        );
        assert_eq!(actions.leave, Some(session()), "leaves, and drains:");
        assert!(actions.drain);
        let mut m = chat_socket(t0);
        let (_, actions) = feed(&mut m, &client(2, b"\x00"), t0);
        let reason = "text messages only";
        assert_eq!(
            actions,
            closing(close::UNSUPPORTED_DATA, reason, true, false)
        );
    }

    #[test]
    fn echo_sockets_echo() {
        let t0 = Instant::now();
        let s = settings();
        let mut m = Machine::new("127.0.0.1:5000".parse().unwrap(), t0, &s);
        let upgrade = Upgrade {
            accept: "x".into(),
            protocol: None,
        };
        m.upgrade(&upgrade, Role::Echo, &mut WriteQueue::new(), t0, &s);
        let echo = frame::encode_frame(Opcode::Binary, b"\x00\x01");
        assert_eq!(feed(&mut m, &client(2, b"\x00\x01"), t0).0, echo);
        assert_eq!(m.on_drop(), None, "an echo socket is in no room");
    }

    /// The next request of `input`: its path and length, and whether it
    /// asks for keep-alive.
    fn next(m: &mut Machine, input: &[u8], now: Instant) -> Option<(String, usize, bool)> {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut out = WriteQueue::new();
        match m.on_request_bytes(input, &mut storage, &mut out, now, &settings()) {
            HttpInput::Request { request, len, .. } => {
                Some((request.path.to_string(), len, request.keep_alive()))
            }
            HttpInput::NeedMore => None,
            HttpInput::AwaitingBody { .. } => Some(("awaiting body".into(), 0, true)),
            HttpInput::Refused(actions) => panic!("refused: {actions:?}"),
        }
    }

    #[test]
    fn a_waiting_body_is_announced_once_per_request() {
        let t0 = Instant::now();
        let mut m = Machine::new("127.0.0.1:5000".parse().unwrap(), t0, &settings());
        let head =
            "POST /login HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
        let awaiting = Some(("awaiting body".to_string(), 0, true));
        assert_eq!(next(&mut m, head.as_bytes(), t0), awaiting);
        assert_eq!(next(&mut m, head.as_bytes(), t0), None, "answered once");
        let partial = format!("{head}ab");
        assert_eq!(next(&mut m, partial.as_bytes(), t0), None);
        let whole = format!("{head}abc");
        let len = whole.len();
        assert_eq!(
            next(&mut m, whole.as_bytes(), t0),
            Some(("/login".into(), len, true))
        );
        assert_eq!(
            next(&mut m, head.as_bytes(), t0),
            awaiting,
            "the next request"
        );
        let mut out = WriteQueue::new();
        m.continue_body(&mut out);
        assert_eq!(sent(&mut out), b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn keep_alive_pipelining_and_the_head_timeout() {
        let t0 = Instant::now();
        let s = settings();
        let mut out = WriteQueue::new();
        let mut m = Machine::new("127.0.0.1:5000".parse().unwrap(), t0, &s);
        assert_eq!(m.deadline(), Some(t0 + s.head_timeout));
        let input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /c";
        let (path, len, keep) = next(&mut m, input, t0).unwrap();
        assert_eq!((path.as_str(), keep), ("/a", true));
        let t1 = t0 + SECOND;
        let ok = || Response::text(Status::Ok, "ok");
        let actions = m.respond(ok(), false, keep, &mut out, t1, &s);
        assert!(actions.is_empty(), "no drain");
        assert!(sent(&mut out).starts_with(b"HTTP/1.1 200 "));
        assert!(m.is_http());
        assert_eq!(
            m.deadline(),
            Some(t1 + s.head_timeout),
            "a new head timeout"
        );
        let (path, len_b, keep) = next(&mut m, &input[len..], t1).unwrap();
        assert_eq!((path.as_str(), keep), ("/b", false));
        let actions = m.respond(ok(), false, keep, &mut out, t1, &s);
        assert!(actions.drain);
        assert!(m.is_draining());
        assert_eq!(m.deadline(), Some(t1 + s.close_timeout));
        // An unfinished request waits; a head timeout drops.
        let mut m = Machine::new("127.0.0.1:5000".parse().unwrap(), t0, &s);
        assert_eq!(next(&mut m, &input[len + len_b..], t0), None);
        let timeout = m.on_timer(&mut out, t0 + s.head_timeout, &s);
        assert_eq!(timeout.drop, Some(DropReason::HeadTimeout));
    }

    #[test]
    fn a_bad_request_is_answered_and_drained() {
        let t0 = Instant::now();
        let s = settings();
        let mut m = Machine::new("127.0.0.1:5000".parse().unwrap(), t0, &s);
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut out = WriteQueue::new();
        let HttpInput::Refused(actions) =
            m.on_request_bytes(b"NOT HTTP\r\n\r\n", &mut storage, &mut out, t0, &s)
        else {
            panic!("not refused");
        };
        assert!(sent(&mut out).starts_with(b"HTTP/1.1 400 "));
        assert!(actions.drain);
        assert!(m.is_draining());
    }

    /// One connection driven as the core drives it, with no socket: its
    /// machine, its input, its gate, and its queue.
    struct Driven {
        machine: Machine,
        input: Input,
        gate: InputGate,
        out: WriteQueue,
        answered: Vec<String>,
    }

    impl Driven {
        const PAUSE_AT: usize = 300;

        /// Answers pipelined requests while the gate admits them.
        fn process(&mut self, now: Instant) {
            let s = settings();
            while self.gate.admits(self.out.buffered(), Self::PAUSE_AT) {
                let Some((path, len, keep)) = next(&mut self.machine, self.input.pending(), now)
                else {
                    return;
                };
                self.input.consume(len);
                let ok = Response::text(Status::Ok, "ok");
                let _ = self
                    .machine
                    .respond(ok, false, keep, &mut self.out, now, &s);
                self.answered.push(path);
            }
        }

        /// The socket took everything queued.
        fn flush(&mut self) -> bool {
            let _ = sent(&mut self.out);
            self.gate.reopens(self.out.buffered(), Self::PAUSE_AT)
        }
    }

    #[test]
    fn pipelined_requests_wait_at_the_gate() {
        let t0 = Instant::now();
        let s = settings();
        let mut c = Driven {
            machine: Machine::new("127.0.0.1:5000".parse().unwrap(), t0, &s),
            input: Input::default(),
            gate: InputGate::Open,
            out: WriteQueue::new(),
            answered: Vec::new(),
        };
        let requests: Vec<String> = (0..10).map(|i| format!("/{i}")).collect();
        for path in &requests {
            c.input
                .push(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        }
        c.process(t0);
        let first = c.answered.len();
        assert!(first > 0 && first < 10, "paused after {first}");
        assert!(
            c.out.buffered() > Driven::PAUSE_AT,
            "over the level: {}",
            c.out.buffered()
        );
        c.process(t0);
        assert_eq!(c.answered.len(), first, "nothing more while paused");
        let mut flushes = 0;
        while c.answered.len() < 10 {
            assert!(c.flush(), "a paused gate reopens once drained");
            flushes += 1;
            c.process(t0);
            assert!(flushes < 10);
        }
        assert_eq!(c.answered, requests, "every request once, in order");
        assert!(c.input.is_empty());
        assert!(c.machine.is_http(), "still keep-alive");
    }
}

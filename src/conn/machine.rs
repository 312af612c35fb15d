//! The protocol of one connection as a state machine with no I/O: it is
//! given bytes the peer sent, the time, and what the loop decided (the
//! response to a request, a close), and it answers with [`Action`]s: send
//! these bytes, leave the room, post this chat text, drain, drop. It never
//! touches a socket, a queue or another connection; the poll loop applies
//! what it returns, in one place (`Server::apply`).
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
use crate::config::Config;
use crate::http::pipeline::{Framed, next_request};
use crate::http::request::{HeadLimits, Request};
use crate::http::response::{self, Response};
use crate::http::upgrade::{self, Upgrade};
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

/// What the loop must do for a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Queue these bytes for the peer.
    Send(Bytes),
    /// Our close frame with this code is queued (the loop counts it).
    CloseSent(CloseCode),
    /// This socket no longer belongs to its chat session's room.
    Leave(SessionId),
    /// A chat message (a text message of a room socket, within its rate).
    Chat(SessionId, Vec<u8>),
    /// No more input will be read: forget what is pending, send what is
    /// queued, then FIN ([`Machine::on_flushed`]).
    Drain,
    /// Close the socket now.
    Drop(DropReason),
}

/// At most this many actions come from one call.
const MAX_ACTIONS: usize = 4;

/// The actions of one call, in order (a fixed array: no allocation).
#[derive(Debug, Default)]
pub struct Actions {
    list: [Option<Action>; MAX_ACTIONS],
    len: usize,
}

impl Actions {
    /// Appends an action. Every path of the machine pushes at most
    /// `MAX_ACTIONS` (the unit tests and the `conn_machine` fuzz target
    /// check it); one more would be dropped, never a panic.
    fn push(&mut self, action: Action) {
        debug_assert!(self.len < MAX_ACTIONS, "too many actions");
        if let Some(slot) = self.list.get_mut(self.len) {
            *slot = Some(action);
            self.len += 1;
        }
    }

    /// How many actions there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Iterator for Actions {
    type Item = Action;

    fn next(&mut self) -> Option<Action> {
        self.list.iter_mut().find_map(Option::take)
    }
}

/// What an open WebSocket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A chat socket.
    Chat {
        /// The session the socket was opened for.
        session: SessionId,
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
                Role::Chat { session } => Some(session),
                Role::Echo => None,
            },
            _ => None,
        }
    }
}

// ----- HTTP ------------------------------------------------------------

impl Machine {
    /// Frames the request at the front of `input` (`Http` phase only).
    pub fn on_request_bytes<'h, 'b>(
        &mut self,
        input: &'b [u8],
        storage: &'h mut [httparse::Header<'b>],
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
                HttpInput::Refused(self.respond(response, false, false, now, s))
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

    /// Sends the answer to the last request; then the next request (with its
    /// own head timeout), or, without keep-alive, drains.
    pub fn respond(
        &mut self,
        response: Response,
        head_only: bool,
        keep_alive: bool,
        now: Instant,
        s: &Settings,
    ) -> Actions {
        let close = !keep_alive || response.close;
        let (head, body) = response.encode(head_only, !close);
        let mut actions = Actions::default();
        actions.push(Action::Send(head));
        actions.push(Action::Send(body));
        if close {
            self.drain_into(&mut actions, now, s);
        } else {
            self.deadline = Some(now + s.head_timeout);
        }
        actions
    }

    /// Tells a client that waits with its body to send it: `100 Continue`.
    pub fn continue_body(&self) -> Actions {
        let mut actions = Actions::default();
        actions.push(Action::Send(Bytes::Static(response::CONTINUE)));
        actions
    }

    /// Sends `101 Switching Protocols`: the connection is a WebSocket now.
    pub fn upgrade(
        &mut self,
        upgrade: &Upgrade,
        role: Role,
        now: Instant,
        s: &Settings,
    ) -> Actions {
        let mut actions = Actions::default();
        actions.push(Action::Send(Bytes::Owned(upgrade::response_bytes(upgrade))));
        self.phase = Phase::WebSocket(Box::new(WebSocket {
            reader: MessageReader::new(),
            role,
            closing: Closing::Open,
            ping: Ping::Idle,
            bucket: TokenBucket::new(s.burst, now),
        }));
        log::debug!("{}: upgraded to WebSocket ({role:?})", self.peer);
        self.deadline = Some(s.on_tick(now + s.ping_interval));
        actions
    }
}

// ----- WebSocket -------------------------------------------------------

impl Machine {
    /// Feeds `input` to the WebSocket (or to a draining connection, which
    /// ignores it) until one message is complete and handled or the input
    /// is used up. Returns how many bytes were used.
    pub fn on_frame_bytes(&mut self, input: &[u8], now: Instant, s: &Settings) -> (usize, Actions) {
        let Phase::WebSocket(ws) = &mut self.phase else {
            return (input.len(), Actions::default()); // draining: ignored
        };
        let mut rest = input;
        match ws.reader.read(&mut rest, &s.frames) {
            Ok(Some(message)) => {
                let used = input.len() - rest.len();
                (used, self.on_message(message, now, s))
            }
            Ok(None) => (input.len(), Actions::default()),
            Err(e) => {
                let mut actions = Actions::default();
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
    fn on_message(&mut self, message: Message, now: Instant, s: &Settings) -> Actions {
        let mut actions = Actions::default();
        let Phase::WebSocket(ws) = &mut self.phase else {
            return actions;
        };
        match message {
            Message::Close(payload) => self.on_close_frame(&mut actions, payload, now, s),
            _ if ws.closing == Closing::CloseSent => {} // only a close matters now
            Message::Ping(payload) => {
                let pong = frame::encode_frame(Opcode::Pong, &payload);
                actions.push(Action::Send(Bytes::Owned(pong)));
            }
            Message::Pong(_) => {
                if ws.ping == Ping::AwaitingPong {
                    ws.ping = Ping::Idle;
                    self.deadline = Some(s.on_tick(now + s.ping_interval));
                }
            }
            Message::Text(bytes) => self.on_data(&mut actions, Opcode::Text, bytes, now, s),
            Message::Binary(bytes) => self.on_data(&mut actions, Opcode::Binary, bytes, now, s),
        }
        actions
    }

    /// A text or binary message on an open WebSocket: echoed, or a chat
    /// message within the rate (text only).
    fn on_data(
        &mut self,
        actions: &mut Actions,
        opcode: Opcode,
        bytes: Vec<u8>,
        now: Instant,
        s: &Settings,
    ) {
        let Phase::WebSocket(ws) = &mut self.phase else {
            return;
        };
        let session = match ws.role {
            Role::Echo => {
                let echo = frame::encode_frame(opcode, &bytes);
                return actions.push(Action::Send(Bytes::Owned(echo)));
            }
            Role::Chat { session } => session,
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
        actions.push(Action::Chat(session, bytes));
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
            let reply = match &payload {
                Some((code, _)) => frame::encode_close(*code, ""),
                None => frame::encode_frame(Opcode::Close, &[]),
            };
            actions.push(Action::Send(Bytes::Owned(reply)));
            if let Some((code, _)) = payload {
                actions.push(Action::CloseSent(code));
            }
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
        let frame = frame::encode_close(reason.code, reason.reason);
        actions.push(Action::Send(Bytes::Owned(frame)));
        actions.push(Action::CloseSent(reason.code));
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
        actions.push(Action::Drain);
    }

    /// The one place a room socket leaves its room: when it stops being an
    /// open WebSocket (our close, the peer's close, an error, a drop).
    fn leave_into(&mut self, actions: &mut Actions) {
        if let Some(session) = self.open_session() {
            actions.push(Action::Leave(session));
        }
    }

    /// The deadline passed: what it means depends on the state.
    pub fn on_timer(&mut self, now: Instant, s: &Settings) -> Actions {
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
                actions.push(Action::Send(Bytes::Static(frame::PING)));
                self.deadline = Some(s.on_tick(now + s.pong_timeout));
                return actions;
            }
        };
        actions.push(Action::Drop(drop)); // (the loop's drop asks `on_drop`)
        actions
    }

    /// The connection is dropped (by a timer, an I/O error, the peer's FIN,
    /// shutdown): an open room socket leaves its room.
    pub fn on_drop(&mut self, actions: &mut Actions) {
        self.leave_into(actions);
        if let Phase::WebSocket(ws) = &mut self.phase {
            ws.closing = Closing::CloseSent;
        }
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
    //! The protocol with no socket: bytes in, actions out, and a fake clock
    //! (plain `Instant`s moved forward by hand).

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

    /// A machine upgraded at `t0` to a room socket of `session()`.
    fn chat_socket(t0: Instant) -> Machine {
        let s = settings();
        let mut m = Machine::new("127.0.0.1:5000".parse().unwrap(), t0, &s);
        let upgrade = Upgrade {
            accept: "x".into(),
            protocol: None,
        };
        let actions: Vec<Action> = m
            .upgrade(&upgrade, Role::Chat { session: session() }, t0, &s)
            .collect();
        assert!(matches!(&actions[..], [Action::Send(_)]), "{actions:?}");
        assert_eq!(m.deadline(), Some(t0 + s.ping_interval));
        m
    }

    fn client(opcode: u8, payload: &[u8]) -> Vec<u8> {
        encode_client_frame(true, opcode, [1, 2, 3, 4], payload)
    }

    /// Feeds all of `bytes`, message by message; the actions of each.
    fn feed(m: &mut Machine, bytes: &[u8], now: Instant) -> Vec<Action> {
        let mut all = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let (used, actions) = m.on_frame_bytes(&bytes[at..], now, &settings());
            assert!(used > 0 && actions.len() <= MAX_ACTIONS);
            all.extend(actions);
            at += used;
        }
        all
    }

    fn send(bytes: Vec<u8>) -> Action {
        Action::Send(Bytes::Owned(bytes))
    }

    #[test]
    fn our_close_waits_for_theirs_then_drains() {
        let t0 = Instant::now();
        let mut m = chat_socket(t0);
        let t1 = t0 + SECOND;
        let actions: Vec<Action> = m
            .close(
                CloseReason::new(close::REPLACED, "replaced"),
                t1,
                &settings(),
            )
            .collect();
        assert_eq!(
            actions,
            [
                send(frame::encode_close(close::REPLACED, "replaced")),
                Action::CloseSent(close::REPLACED),
                Action::Leave(session()),
            ]
        );
        assert!(
            m.close(CloseReason::new(1000, ""), t1, &settings())
                .is_empty(),
            "once"
        );
        assert_eq!(m.deadline(), Some(t1 + settings().close_timeout));
        assert!(m.is_websocket() && !m.is_open_websocket());
        assert!(
            feed(&mut m, &client(1, b"late"), t1).is_empty(),
            "data ignored"
        );
        let closed = feed(&mut m, &client(8, &1000u16.to_be_bytes()), t1);
        assert_eq!(closed, [Action::Drain], "no second close, no second leave");
        assert!(m.is_draining() && !m.finished());
        assert!(m.on_flushed(), "FIN once flushed");
        assert!(!m.on_flushed(), "and only once");
        assert!(m.finished());
        assert!(feed(&mut m, &client(1, b"after"), t1).is_empty());
    }

    #[test]
    fn their_close_is_echoed_then_drains() {
        let t0 = Instant::now();
        let mut m = chat_socket(t0);
        let mut payload = 4001u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let actions = feed(&mut m, &client(8, &payload), t0);
        assert_eq!(
            actions,
            [
                send(frame::encode_close(4001, "")),
                Action::CloseSent(4001),
                Action::Leave(session()),
                Action::Drain,
            ]
        );
        assert_eq!(m.deadline(), Some(t0 + settings().close_timeout));
        // An empty close is answered with an empty one, and not counted.
        let mut m = chat_socket(t0);
        let actions = feed(&mut m, &client(8, b""), t0);
        let empty_close = frame::encode_frame(Opcode::Close, b"");
        assert_eq!(actions[0], send(empty_close));
        assert!(!actions.iter().any(|a| matches!(a, Action::CloseSent(_))));
    }

    #[test]
    fn the_close_timeout_drops() {
        let t0 = Instant::now();
        let s = settings();
        let mut m = chat_socket(t0);
        let _ = m.close(CloseReason::new(1001, "bye"), t0, &s);
        let at = m.deadline().unwrap();
        let actions: Vec<Action> = m.on_timer(at, &s).collect();
        assert_eq!(actions, [Action::Drop(DropReason::CloseTimeout)]);
        // A draining connection whose peer never closes, likewise.
        let mut m = chat_socket(t0);
        let _ = m.drain(t0, &s);
        let actions: Vec<Action> = m.on_timer(t0 + s.close_timeout, &s).collect();
        assert_eq!(actions, [Action::Drop(DropReason::CloseTimeout)]);
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
        // Sockets upgraded at different instants within one tick ping
        // together, at the first tick at or after their own due time.
        let mut ms: Vec<Machine> = [3, 40, 99]
            .iter()
            .map(|ms| {
                let at = epoch + Duration::from_millis(*ms);
                let mut m = Machine::new("127.0.0.1:5000".parse().unwrap(), at, &s);
                let role = Role::Chat { session: session() };
                let _ = m.upgrade(&upgrade, role, at, &s);
                m
            })
            .collect();
        let due = epoch + s.ping_interval + tick;
        for m in &ms {
            assert_eq!(m.deadline(), Some(due));
        }
        // One exactly on a tick is not moved.
        assert_eq!(s.on_tick(epoch + 2 * tick), epoch + 2 * tick);
        // The ping's pong timeout: rounded up too, never shortened.
        let sent = due + Duration::from_millis(7); // a late loop turn
        assert_eq!(ms[0].on_timer(sent, &s).count(), 1, "a ping");
        let pong_deadline = ms[0].deadline().unwrap();
        assert!(pong_deadline >= sent + s.pong_timeout);
        assert!(pong_deadline < sent + s.pong_timeout + tick);
        assert_eq!(s.on_tick(pong_deadline), pong_deadline);
        // A pong moves the next ping to a tick as well.
        let t = sent + Duration::from_millis(1);
        let _ = feed_with(&mut ms[0], &client(0xA, b""), t, &s);
        let next = ms[0].deadline().unwrap();
        assert!(next >= t + s.ping_interval && next < t + s.ping_interval + tick);
        assert_eq!(s.on_tick(next), next);
        // Without a pong, the drop comes at the rounded pong timeout.
        let _ = ms[1].on_timer(due, &s);
        let at = ms[1].deadline().unwrap();
        let actions: Vec<Action> = ms[1].on_timer(at, &s).collect();
        assert_eq!(actions, [Action::Drop(DropReason::PongTimeout)]);
    }

    fn feed_with(m: &mut Machine, bytes: &[u8], now: Instant, s: &Settings) -> Vec<Action> {
        let (used, actions) = m.on_frame_bytes(bytes, now, s);
        assert_eq!(used, bytes.len());
        actions.collect()
    }

    #[test]
    fn pings_pongs_and_the_pong_timeout() {
        let t0 = Instant::now();
        let s = settings();
        let mut m = chat_socket(t0);
        let t1 = t0 + s.ping_interval;
        let ping = Action::Send(Bytes::Static(frame::PING));
        assert_eq!(m.on_timer(t1, &s).collect::<Vec<_>>(), [ping]);
        assert_eq!(m.deadline(), Some(t1 + s.pong_timeout));
        let t2 = t1 + SECOND;
        assert!(feed(&mut m, &client(10, b""), t2).is_empty());
        assert_eq!(m.deadline(), Some(t2 + s.ping_interval), "next ping");
        // A pong nobody asked for changes nothing.
        assert!(feed(&mut m, &client(10, b""), t2 + SECOND).is_empty());
        assert_eq!(m.deadline(), Some(t2 + s.ping_interval));
        // Their ping is answered with a pong carrying its payload.
        let pong = send(frame::encode_frame(Opcode::Pong, b"hi"));
        assert_eq!(feed(&mut m, &client(9, b"hi"), t2), [pong]);
        let t3 = t2 + s.ping_interval;
        assert_eq!(m.on_timer(t3, &s).count(), 1, "a ping");
        let gone: Vec<Action> = m.on_timer(t3 + s.pong_timeout, &s).collect();
        assert_eq!(gone, [Action::Drop(DropReason::PongTimeout)]);
        let mut left = Actions::default();
        m.on_drop(&mut left);
        assert_eq!(left.collect::<Vec<_>>(), [Action::Leave(session())]);
    }

    #[test]
    fn the_rate_limit_closes_with_1008() {
        let t0 = Instant::now();
        let mut m = chat_socket(t0);
        let text = |m: &mut Machine, at| feed(m, &client(1, b"hi"), at);
        let chat = Action::Chat(session(), b"hi".to_vec());
        assert_eq!(text(&mut m, t0), vec![chat.clone()], "burst of 2");
        assert_eq!(text(&mut m, t0), vec![chat.clone()]);
        assert_eq!(text(&mut m, t0 + SECOND), vec![chat], "1 per second");
        let over = text(&mut m, t0 + SECOND);
        assert_eq!(
            over,
            [
                send(frame::encode_close(close::POLICY, "rate limit")),
                Action::CloseSent(close::POLICY),
                Action::Leave(session()),
            ]
        );
        assert!(text(&mut m, t0 + 10 * SECOND).is_empty(), "closed: ignored");
    }

    #[test]
    fn a_protocol_error_closes_and_drains_and_binary_chat_is_refused() {
        let t0 = Instant::now();
        let mut m = chat_socket(t0);
        let unmasked = frame::encode_frame(Opcode::Text, b"hi");
        let actions = feed(&mut m, &unmasked, t0);
        assert_eq!(actions.len(), MAX_ACTIONS);
        assert!(matches!(
            actions[1],
            Action::CloseSent(close::PROTOCOL_ERROR)
        ));
        assert_eq!(actions[2..], [Action::Leave(session()), Action::Drain]);
        let mut m = chat_socket(t0);
        let actions = feed(&mut m, &client(2, b"\x00"), t0);
        assert_eq!(actions[1], Action::CloseSent(close::UNSUPPORTED_DATA));
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
        let _ = m.upgrade(&upgrade, Role::Echo, t0, &s);
        let echo = send(frame::encode_frame(Opcode::Binary, b"\x00\x01"));
        assert_eq!(feed(&mut m, &client(2, b"\x00\x01"), t0), [echo]);
        let mut left = Actions::default();
        m.on_drop(&mut left);
        assert!(left.is_empty(), "an echo socket is in no room");
    }

    /// The next request of `input`: its path and length, and whether it
    /// asks for keep-alive.
    fn next(m: &mut Machine, input: &[u8], now: Instant) -> Option<(String, usize, bool)> {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match m.on_request_bytes(input, &mut storage, now, &settings()) {
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
        let sent = m.continue_body().map(|a| match a {
            Action::Send(b) => b.as_slice().to_vec(),
            other => panic!("{other:?}"),
        });
        assert_eq!(
            sent.collect::<Vec<_>>(),
            [b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()]
        );
    }

    #[test]
    fn keep_alive_pipelining_and_the_head_timeout() {
        let t0 = Instant::now();
        let s = settings();
        let mut m = Machine::new("127.0.0.1:5000".parse().unwrap(), t0, &s);
        assert_eq!(m.deadline(), Some(t0 + s.head_timeout));
        let input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /c";
        let (path, len, keep) = next(&mut m, input, t0).unwrap();
        assert_eq!((path.as_str(), keep), ("/a", true));
        let t1 = t0 + SECOND;
        let ok = || Response::text(Status::Ok, "ok");
        let actions: Vec<Action> = m.respond(ok(), false, keep, t1, &s).collect();
        assert_eq!(actions.len(), 2, "head and body, no drain");
        assert!(m.is_http());
        assert_eq!(
            m.deadline(),
            Some(t1 + s.head_timeout),
            "a new head timeout"
        );
        let (path, len_b, keep) = next(&mut m, &input[len..], t1).unwrap();
        assert_eq!((path.as_str(), keep), ("/b", false));
        let actions: Vec<Action> = m.respond(ok(), false, keep, t1, &s).collect();
        assert_eq!(actions.last(), Some(&Action::Drain));
        assert!(m.is_draining());
        assert_eq!(m.deadline(), Some(t1 + s.close_timeout));
        // An unfinished request waits; a head timeout drops.
        let mut m = Machine::new("127.0.0.1:5000".parse().unwrap(), t0, &s);
        assert_eq!(next(&mut m, &input[len + len_b..], t0), None);
        let timeout: Vec<Action> = m.on_timer(t0 + s.head_timeout, &s).collect();
        assert_eq!(timeout, [Action::Drop(DropReason::HeadTimeout)]);
    }

    #[test]
    fn a_bad_request_is_answered_and_drained() {
        let t0 = Instant::now();
        let s = settings();
        let mut m = Machine::new("127.0.0.1:5000".parse().unwrap(), t0, &s);
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let HttpInput::Refused(actions) =
            m.on_request_bytes(b"NOT HTTP\r\n\r\n", &mut storage, t0, &s)
        else {
            panic!("not refused");
        };
        let actions: Vec<Action> = actions.collect();
        let Action::Send(head) = &actions[0] else {
            panic!("{actions:?}")
        };
        assert!(head.as_slice().starts_with(b"HTTP/1.1 400 "));
        assert_eq!(actions.last(), Some(&Action::Drain));
        assert!(m.is_draining());
    }

    /// One connection driven as the loop drives it, with no socket: its
    /// machine, its input, its gate, and a count of bytes queued.
    struct Driven {
        machine: Machine,
        input: Input,
        gate: InputGate,
        queued: usize,
        answered: Vec<String>,
    }

    impl Driven {
        const PAUSE_AT: usize = 300;

        /// Answers pipelined requests while the gate admits them.
        fn process(&mut self, now: Instant) {
            let s = settings();
            while self.gate.admits(self.queued, Self::PAUSE_AT) {
                let Some((path, len, keep)) = next(&mut self.machine, self.input.pending(), now)
                else {
                    return;
                };
                self.input.consume(len);
                let ok = Response::text(Status::Ok, "ok");
                for action in self.machine.respond(ok, false, keep, now, &s) {
                    if let Action::Send(bytes) = action {
                        self.queued += bytes.len();
                    }
                }
                self.answered.push(path);
            }
        }

        /// The socket took everything queued.
        fn flush(&mut self) -> bool {
            self.queued = 0;
            self.gate.reopens(self.queued, Self::PAUSE_AT)
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
            queued: 0,
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
        assert!(c.queued > Driven::PAUSE_AT, "over the level: {}", c.queued);
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

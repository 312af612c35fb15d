//! The whole server without I/O: [`Core`] owns the chat state and every
//! connection's protocol state and buffers (its [`Machine`], its input, its
//! input gate, its [`WriteQueue`]), the timers, the metrics and the data
//! file's [`Journal`]. It never touches a socket: the driver (the mio loop
//! in [`crate::server`], or the simulation in the tests) tells it what
//! happened and asks it what to do, like quinn-proto's `Endpoint` or
//! rustls' `ConnectionCommon`.
//!
//! # Events in
//!
//! - [`Core::accept`]: a connection came in (refused at a limit: here are
//!   the bytes of its `503`);
//! - [`Core::read`]: bytes the peer sent; [`Core::eof`]: its FIN;
//!   [`Core::io_error`]: its socket failed; [`Core::writable`]: its socket
//!   has room again;
//! - [`Core::tick`]: the time moved (timers fire);
//! - [`Core::end_turn`]: the driver handled every event of this turn: the
//!   turn's changes are committed and what waited for that is delivered;
//! - [`Core::begin_shutdown`].
//!
//! # What the driver must do, out
//!
//! - [`Core::wants_input`]: may it read from this connection now (the
//!   backpressure gate)?
//! - [`Core::next_dirty`] and [`Core::queue`]: which connections have bytes
//!   to write, and the queue to write them from; [`Core::flushed`] says what
//!   came of it (and whether to send FIN now);
//! - [`Core::next_effect`]: close a socket, or read one again without
//!   waiting for an event;
//! - [`Core::next_wake`]: when to call [`Core::tick`] at the latest.
//!
//! # One turn, one work queue
//!
//! Events only *queue* effects between connections: a chat message, a
//! `join`, a close frame, a socket leaving its room, a logout goes into the
//! turn's outbox (`turn.rs`). At [`Core::end_turn`] the journal commits
//! what the turn recorded (a no-op without a data file: one delivery
//! semantics either way), then the outbox is drained until empty, in
//! order. A receiver a broadcast pushes over `--max-buffered` goes on a
//! work list that is emptied right after that broadcast: it is closed and
//! leaves its room at once, and its `leave` broadcast may put others on the
//! same list. No recursion, no guard flag: a stalled room of thousands is
//! a longer list, not a deeper stack, and the whole cascade ends in the
//! turn it starts.
//!
//! The HTTP side is in `http.rs`, the WebSocket and room side in
//! `websocket.rs`, the turn (outbox, commit, delivery) in `turn.rs`, the
//! data file behind one type in `journal.rs`.

mod edits;
mod http;
mod journal;
mod moderation;
mod turn;
mod websocket;

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::admin::{self, bars::Bars};
use crate::assets::Assets;
use crate::bytes::Bytes;
use crate::chat::{Chat, Expiry, SessionId};
use crate::config::Config;
use crate::conn::machine::{Actions, DropReason, Settings};
use crate::conn::{Conn, ConnId, InputGate, Machine, Via};
use crate::http::Status;
use crate::http::response::Response;
use crate::metrics::{self, Gauges, Metrics};
use crate::outside::Outside;
use crate::peer_limits::{PeerLimits, Refusal};
use crate::queue::{Flushed, WriteQueue};
use crate::shutdown::{self, ConnState, Drain, Verdict};
use crate::table::Table;
use crate::timers::Timers;
use crate::ws::close::{self, CloseReason};

pub use journal::Journal;
use turn::{HeldAnswer, HeldLogin, Outgoing};

/// Timers fired per [`Core::tick`] (see there).
const TIMERS_PER_TURN: usize = 64;

/// What the driver must do with a socket, besides writing queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The connection is gone: close its socket (dropping it does).
    Close(ConnId),
    /// Read it again without waiting for an event: its input gate opened
    /// (its output drained, or its login was answered), or it was stopped
    /// after reading its share of a turn.
    Resume(ConnId),
}

/// A connection refused when it came in: write these bytes (best effort,
/// a short `503`), then close it.
#[derive(Debug)]
pub struct Refused(pub Vec<u8>);

/// After writing a queue: what the driver does with the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterFlush {
    /// Send FIN now (`shutdown(Write)`): the connection is done talking.
    pub fin: bool,
    /// Something is left: ask the poll for `WRITABLE` (else `READABLE`
    /// only).
    pub want_writable: bool,
}

/// What a timer entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    /// A connection's deadline (see `Machine::deadline`).
    Conn(ConnId),
    /// A session's reservation may have lapsed.
    Session(SessionId),
    /// The shutdown drain time is over.
    ShutdownDeadline,
    /// With a data file: a step of retention (`turn.rs`).
    Retention,
    /// With a data file that was busy: a wake-up to try the commit again
    /// (`turn.rs`).
    CommitRetry,
}

/// What one step of input processing did (one request or one message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Handled a unit (or fed all of the input to an unfinished one): this
    /// many bytes are used.
    Took(usize),
    /// The unit at the front is incomplete: keep its bytes, read more.
    NeedMore,
}

/// The server without sockets: chat state, connections, timers, the turn.
pub struct Core {
    config: Config,
    /// What the connections' machines follow (from `config`).
    settings: Settings,
    conns: Table<Conn>,
    chat: Chat,
    timers: Timers<TimerKey>,
    assets: Assets,
    metrics: Metrics,
    /// Connections and logins per client address.
    peer_limits: PeerLimits,
    /// The address of each connection whose TCP peer is a proxy named by
    /// `--trust-proxy` (its own peer becomes the client of its latest
    /// request): a request that names no client is the proxy's own.
    proxy_peers: BTreeMap<ConnId, IpAddr>,
    /// The data file, or nothing to write (committing is then a no-op).
    journal: Journal,
    /// The turn's work queue: broadcasts waiting for the end of the turn.
    outbox: VecDeque<Outgoing>,
    /// Logins whose answer waits for the turn's commit.
    held: Vec<HeldLogin>,
    /// Other answers that wait for the turn's commit (the operator's, a
    /// log-out's).
    held_answers: Vec<HeldAnswer>,
    /// Receivers a broadcast pushed over `--max-buffered`, to close (with
    /// the bytes they had queued).
    too_slow: Vec<(ConnId, usize)>,
    /// Connections with output queued, to write at the end of the turn.
    dirty: VecDeque<ConnId>,
    /// What the driver must do with sockets.
    effects: VecDeque<Effect>,
    /// The last commit failed: `/healthz` answers `503 degraded`.
    degraded: bool,
    /// The data file has been busy since then: the turn's records and
    /// what waits for them are kept, and the commit is tried again
    /// (`turn.rs`).
    busy_since: Option<Instant>,
    /// The data file's syncs as last seen (`turn.rs`): failing ones keep
    /// `/healthz` degraded until one works.
    syncs: turn::SyncWatch,
    /// A read or a commit met a damaged page of the data file: logged
    /// once, and `/healthz` answers `503 degraded` until it is repaired (a
    /// restart on a repaired file).
    damaged: bool,
    /// The retention timer fired: a step runs after this turn's output.
    retention_due: bool,
    /// Connections open from the `--metrics-bind` listener (limited apart
    /// from the others).
    metrics_conns: usize,
    /// Connections open from the `--admin-bind` listener (limited apart
    /// from the others too).
    admin_conns: usize,
    /// The operator's bars on logins and sockets (`crate::admin::bars`).
    bars: Bars,
    now: Instant,
    /// Set once shutdown began: the drain deadline.
    shutting_down: Option<Instant>,
    /// Set with it: when the drain may end (`crate::shutdown`).
    drain: Option<Drain<ConnId>>,
    stopped: bool,
    /// The wall clock and the session tokens (the system's, or a
    /// simulation's).
    outside: Outside,
}

impl Core {
    /// A core with no connection yet and no data file (see
    /// [`Core::use_store`]), whose time starts at `now`.
    pub fn new(config: Config, now: Instant) -> Core {
        Core {
            assets: Assets::new(config.www.clone()),
            peer_limits: PeerLimits::new(&config),
            proxy_peers: BTreeMap::new(),
            settings: Settings::of(&config, now),
            config,
            conns: Table::new(),
            chat: Chat::new(),
            timers: Timers::new(),
            metrics: Metrics::default(),
            journal: Journal::Memory,
            outbox: VecDeque::new(),
            held: Vec::new(),
            held_answers: Vec::new(),
            too_slow: Vec::new(),
            dirty: VecDeque::new(),
            effects: VecDeque::new(),
            degraded: false,
            busy_since: None,
            syncs: turn::SyncWatch::default(),
            damaged: false,
            retention_due: false,
            metrics_conns: 0,
            admin_conns: 0,
            bars: Bars::default(),
            now,
            shutting_down: None,
            drain: None,
            stopped: false,
            outside: Outside::system(),
        }
    }

    /// Takes the wall clock and the session tokens from `outside` instead
    /// of the system (a simulation that replays byte for byte: see
    /// [`Outside::replayable`]).
    /// Call it before [`Core::use_store`], whose epoch then replaces the
    /// one drawn here.
    pub fn set_outside(&mut self, mut outside: Outside) {
        if let Some(epoch) = outside.epoch() {
            self.chat.set_epoch(epoch);
        }
        self.outside = outside;
    }

    /// The wall-clock time of this turn, in Unix milliseconds (what events
    /// carry as `at`).
    fn unix_millis(&self) -> u64 {
        self.outside.unix_millis(self.now)
    }

    /// `/healthz` says `degraded` while commits fail and once the data
    /// file is known to be damaged.
    fn degraded(&self) -> bool {
        self.degraded || self.damaged || self.syncs.failing
    }

    /// The driver's turn took this long (`/metrics`).
    pub fn turn_took(&mut self, took: Duration) {
        self.metrics.turn_took(took);
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters (for a driver's log line, and for tests).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The chat state (read-only: for tests and the simulation).
    pub fn chat(&self) -> &Chat {
        &self.chat
    }

    /// The data file was busy at the last commit: the turns since then
    /// wait, undelivered, for the next one (`turn.rs`). For tests and the
    /// simulation (a client is not caught up meanwhile).
    pub fn waiting_for_commit(&self) -> bool {
        self.busy_since.is_some()
    }

    /// With a data file: makes its syncs fail as a failing disk would, or
    /// work again (see [`SyncStats::fail_syncs`](crate::store::sync::SyncStats::fail_syncs);
    /// for the tests).
    pub fn fail_syncs(&mut self, fail: bool) {
        if let Some(stats) = self.journal.sync_stats() {
            stats.fail_syncs(fail);
        }
    }

    /// With a data file: makes its commits fail as a full disk would, or
    /// work again (see [`Journal::fail_writes`]; for the simulation).
    pub fn fail_writes(&mut self, fail: bool) -> Result<(), rusqlite::Error> {
        self.journal.fail_writes(fail)
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// A connection, if it is still open (read-only: for tests and the
    /// simulation).
    pub fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(id)
    }

    /// Moves the core's clock (the driver's `Instant::now()` once per turn,
    /// or the simulation's virtual clock). Time never goes back.
    pub fn set_now(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    /// True once shutdown is over: the driver stops.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Shutdown began.
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.is_some()
    }

    /// How long the driver may sleep before calling [`Core::tick`].
    pub fn next_wake(&self, now: Instant) -> Option<Duration> {
        self.timers.poll_timeout(now)
    }

    /// The next thing the driver must do with a socket.
    pub fn next_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    // ----- connections -------------------------------------------------

    fn get(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(id)
    }

    /// A new connection from `peer`, accepted on the listener `via`: its
    /// id, or the bytes of its refusal at a limit.
    pub fn accept(&mut self, peer: SocketAddr, via: Via) -> Result<ConnId, Refused> {
        if !self.admits(via) {
            return Err(self.refuse_at_limit(peer, via));
        }
        // A peer named by --trust-proxy is a proxy: the client's address is
        // known once a request head is read (`attribute_client`).
        let via_proxy = via == Via::Main && self.config.trust_proxy.trusts(peer.ip());
        let counted = if via != Via::Main || via_proxy {
            false
        } else {
            match self.peer_limits.open(peer.ip()) {
                Ok(counted) => counted.is_some(),
                Err(refusal) => {
                    self.note_per_address_refusal(peer.ip(), refusal);
                    return Err(Refused(refusal_503(
                        "too many connections from one address",
                    )));
                }
            }
        };
        let mut conn = Conn::new(Machine::new(peer, self.now, &self.settings));
        conn.via = via;
        conn.via_proxy = via_proxy;
        conn.counted = counted;
        let id = self.conns.insert(conn);
        if via_proxy {
            self.proxy_peers.insert(id, peer.ip());
        }
        self.metrics.connections_accepted += 1;
        self.count_side_conn(via, true);
        log::debug!("{peer}: connected");
        self.sync_timer(id);
        Ok(id)
    }

    /// Each listener's connections are limited on their own: the main one
    /// by `--max-connections`, the metrics and admin ones by their few
    /// reserved connections, so a full server still answers its health
    /// checks and its operator.
    fn admits(&self, via: Via) -> bool {
        let (open, max) = (self.conns.len(), self.config.max_connections);
        match via {
            Via::Admin => admin::admits(self.admin_conns),
            Via::Main | Via::Metrics => metrics::admits(
                via == Via::Metrics,
                open - self.admin_conns,
                self.metrics_conns,
                max,
            ),
        }
    }

    /// Counts a connection of the metrics or admin listener in (`opened`)
    /// or out.
    fn count_side_conn(&mut self, via: Via, opened: bool) {
        let count = match via {
            Via::Main => return,
            Via::Metrics => &mut self.metrics_conns,
            Via::Admin => &mut self.admin_conns,
        };
        match opened {
            true => *count += 1,
            false => *count -= 1,
        }
    }

    /// A connection over `--max-connections`: counted once, in
    /// `wsrooms_connections_refused_total` (not also as a refusal by
    /// reason: that family counts requests and per-address limits).
    fn refuse_at_limit(&mut self, peer: SocketAddr, via: Via) -> Refused {
        if via == Via::Admin {
            self.metrics.refuse("admin_connections");
            log::info!("{peer}: refused with 503, the admin listener is full");
            return Refused(refusal_503("too many connections"));
        }
        if via == Via::Metrics {
            // Not the chat's limit: counted apart, so that a scraper's
            // storm does not look like a full server.
            self.metrics.refuse("metrics_connections");
            log::debug!("{peer}: refused with 503, the metrics listener is full");
            return Refused(refusal_503("too many connections"));
        }
        self.metrics.connections_refused += 1;
        if self.metrics.connections_refused == 1 {
            log::warn!(
                "{peer}: refused with 503, --max-connections {} reached \
                 (logged once; see wsrooms_connections_refused_total)",
                self.config.max_connections
            );
        } else {
            log::debug!(
                "{peer}: refused with 503, {} connections open",
                self.conns.len()
            );
        }
        Refused(refusal_503("too many connections"))
    }

    /// Counts a per-address refusal; logs the first at warn, the rest at
    /// debug (a flood must not flood the log too).
    fn note_per_address_refusal(&mut self, ip: std::net::IpAddr, refusal: Refusal) {
        let reason = refusal.metric_reason();
        self.metrics.refuse(reason);
        if self.metrics.refused.get(reason) == Some(&1) {
            log::warn!(
                "{ip}: refused with 503, --max-connections-per-ip {} reached \
                 (logged once; see wsrooms_refused_total{{reason=\"{reason}\"}})",
                self.config.max_connections_per_ip
            );
        } else {
            log::debug!("{ip}: refused with 503 (--max-connections-per-ip)");
        }
    }

    /// The socket failed (a read or a write, or registering it): the
    /// connection is dropped.
    pub fn io_error(&mut self, id: ConnId) {
        self.drop_conn(id, DropReason::IoError);
    }

    /// Forgets the connection and tells the driver to close its socket. A
    /// room socket leaves its room in the turn's order.
    fn drop_conn(&mut self, id: ConnId, why: DropReason) {
        let Some(mut conn) = self.conns.remove(id) else {
            return;
        };
        log::debug!("{}: dropped ({why:?})", conn.peer());
        self.proxy_peers.remove(&id);
        if let Some(drain) = self.drain.as_mut() {
            drain.on_drop(id, conn.machine.finished());
        }
        if conn.counted {
            self.peer_limits.close(conn.peer().ip());
        }
        self.count_side_conn(conn.via, false);
        self.effects.push_back(Effect::Close(id));
        if let Some(session) = conn.machine.on_drop() {
            self.outbox.push_back(Outgoing::Leave { conn: id, session });
        }
    }

    /// Carries out what a connection's machine decided (what it sends is
    /// already in its queue): the one place where its chat text is posted,
    /// its input is forgotten for draining, and it is dropped. Its close
    /// frame and its leaving the room take their place in the turn's
    /// outbox: the socket first gets what the turn delivers before them (a
    /// flooder sees the messages it sent within its rate, then `1008`).
    /// Then its timer follows the machine's deadline.
    fn apply(&mut self, id: ConnId, actions: Actions) {
        let Actions {
            close,
            leave,
            chat,
            drain,
            drop,
        } = actions;
        if drain || self.conns.get(id).is_some_and(|c| !c.out.is_empty()) {
            self.mark_dirty(id); // (draining: flushed even if empty, then FIN)
        }
        if let Some(close) = close {
            if let Some(conn) = self.conns.get_mut(id) {
                conn.owed += close.frame.len();
            }
            self.outbox.push_back(Outgoing::Close { conn: id, close });
        }
        if let Some(session) = leave {
            self.outbox.push_back(Outgoing::Leave { conn: id, session });
        }
        if let Some((session, command)) = chat {
            self.on_command(id, session, command);
        }
        if drain && let Some(conn) = self.get(id) {
            conn.input.clear(); // what the peer sends now is ignored
        }
        if let Some(reason) = drop {
            return self.drop_conn(id, reason);
        }
        self.sync_timer(id);
    }

    /// Queues bytes for a connection, written at the end of the turn.
    fn send(&mut self, id: ConnId, bytes: Bytes) {
        if let Some(conn) = self.get(id) {
            conn.out.push(bytes);
            self.mark_dirty(id);
        }
    }

    /// Puts a connection on the list to write at the end of the turn.
    fn mark_dirty(&mut self, id: ConnId) {
        if let Some(conn) = self.conns.get_mut(id)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push_back(id);
        }
    }

    /// No more input from this connection: send what is queued, FIN, wait
    /// for the peer's FIN (see `Machine::drain`).
    fn drain(&mut self, id: ConnId) {
        let (now, settings) = (self.now, self.settings);
        let Some(conn) = self.get(id) else { return };
        let actions = conn.machine.drain(now, &settings);
        self.apply(id, actions);
    }

    // ----- input -------------------------------------------------------

    /// May the driver read from this connection now? False while its
    /// queued output is over `--pause-reading-at` (backpressure: the
    /// kernel's buffers fill and TCP pushes back on the peer) or its login
    /// waits for the commit, and for a connection that is gone.
    pub fn wants_input(&mut self, id: ConnId) -> bool {
        let pause_at = self.config.pause_reading_at;
        self.get(id)
            .is_some_and(|c| c.gate.admits(c.output(), pause_at))
    }

    /// Bytes the peer sent. What it had read before and not processed yet
    /// goes first; the bytes are processed where they are, and only what is
    /// left (a request cut by the read, or input held back by the gate) is
    /// copied into the connection's input.
    pub fn read(&mut self, id: ConnId, bytes: &[u8]) {
        self.metrics.bytes_in += bytes.len() as u64;
        let Some(conn) = self.get(id) else { return };
        if !conn.input.is_empty() {
            conn.input.push(bytes);
            return self.resume(id);
        }
        let used = self.process(id, bytes);
        if used < bytes.len()
            && let Some(conn) = self.get(id)
            && !conn.machine.is_draining()
        {
            conn.input.push(&bytes[used..]);
        }
    }

    /// Processes the input a connection had already read (after a pause;
    /// the driver calls it before reading a resumed socket).
    pub fn resume(&mut self, id: ConnId) {
        let Some(conn) = self.get(id) else { return };
        if conn.input.is_empty() {
            return;
        }
        let mut input = std::mem::take(&mut conn.input);
        let used = self.process(id, input.pending());
        input.consume(used);
        if let Some(conn) = self.get(id) {
            // (Empty if the connection stopped reading requests meanwhile.)
            if !conn.machine.is_draining() {
                conn.input = input;
            }
        }
    }

    /// The one input-processing loop of a connection: before each request
    /// or message, the gate is asked whether the connection's queued output
    /// allows one more; whatever that unit produces counts for the next
    /// one. Returns how many bytes of `input` were used.
    fn process(&mut self, id: ConnId, input: &[u8]) -> usize {
        let mut used = 0;
        while used < input.len() {
            if !self.wants_input(id) {
                break;
            }
            let rest = &input[used..];
            let step = match self.conns.get(id).map(|c| c.machine.is_http()) {
                None => return input.len(),
                Some(true) => self.http_step(id, rest),
                Some(false) => self.frames_step(id, rest), // (draining: ignored)
            };
            match step {
                // Every step takes at least one byte; one that took none
                // must not spin the loop.
                Step::Took(0) | Step::NeedMore => break,
                Step::Took(n) => used += n,
            }
        }
        used
    }

    /// The peer sent FIN. It may still read: what the turn queues for it
    /// (an answer to its last request, a login's `303` after the commit,
    /// the echo of its close frame) is written at the end of the turn, and
    /// the connection is dropped once all of it is written.
    pub fn eof(&mut self, id: ConnId) {
        let Some(conn) = self.get(id) else { return };
        conn.peer_closed = true;
        if conn.output() == 0 {
            // Nothing queued, nothing owed: its slot is free at once (a
            // connection that comes in later this turn may take it).
            let why = match conn.machine.is_draining() {
                true => DropReason::Done,
                false => DropReason::PeerClosed,
            };
            return self.drop_conn(id, why);
        }
        match conn.machine.is_draining() {
            true => self.mark_dirty(id),
            false => self.drain(id), // (marks it dirty too)
        }
    }

    // ----- output ------------------------------------------------------

    /// The socket has room again: its queue is written at the end of the
    /// turn.
    pub fn writable(&mut self, id: ConnId) {
        self.mark_dirty(id);
    }

    /// The next connection whose queue the driver must write (each once per
    /// turn: call after [`Core::end_turn`]).
    pub fn next_dirty(&mut self) -> Option<ConnId> {
        while let Some(id) = self.dirty.pop_front() {
            if let Some(conn) = self.conns.get_mut(id) {
                conn.dirty = false;
                return Some(id);
            }
        }
        None
    }

    /// The queue of a connection, for the driver to write from.
    pub fn queue(&mut self, id: ConnId) -> Option<&mut WriteQueue> {
        self.get(id).map(|c| &mut c.out)
    }

    /// The driver wrote `written` bytes of the queue, with this result
    /// (`Err`: the write failed). Says whether to send FIN and whether to
    /// wait for `WRITABLE`; `None` if the connection is gone (dropped: its
    /// close is among the effects).
    pub fn flushed(
        &mut self,
        id: ConnId,
        written: usize,
        result: Result<Flushed, ()>,
    ) -> Option<AfterFlush> {
        self.metrics.bytes_out += written as u64;
        let pause_at = self.config.pause_reading_at;
        let Ok(result) = result else {
            self.drop_conn(id, DropReason::IoError);
            return None;
        };
        let conn = self.get(id)?;
        let mut after = AfterFlush {
            fin: false,
            want_writable: result == Flushed::Partly,
        };
        if result == Flushed::All {
            after.fin = conn.machine.on_flushed();
            if conn.peer_closed {
                // Everything was said, and the peer is gone already.
                self.drop_conn(id, DropReason::Done);
                return Some(after);
            }
        }
        if conn.gate.reopens(conn.out.buffered(), pause_at) {
            // Resume: what was read already first, then the socket.
            self.effects.push_back(Effect::Resume(id));
        }
        Some(after)
    }

    // ----- timers ------------------------------------------------------

    /// Makes sure the timers hold an entry for the connection's deadline
    /// (see `timers` for the lazy scheme: a later deadline reuses the
    /// earlier entry, which re-queues itself when it fires).
    fn sync_timer(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let Some(at) = conn.machine.deadline() else {
            return;
        };
        if conn.queued_timer.is_none_or(|q| at < q) {
            conn.queued_timer = Some(at);
            self.timers.add(at, TimerKey::Conn(id));
        }
    }

    /// The time is `now`: fires due timers, at most `TIMERS_PER_TURN`.
    /// Keep-alive deadlines share coarse ticks, so with short ping
    /// intervals and many sockets a tick brings hundreds of pings at once;
    /// the rest wait for the next turn ([`Core::next_wake`] is then zero),
    /// so that the messages of active users in between are not held up.
    pub fn tick(&mut self, now: Instant) {
        self.set_now(now);
        for _ in 0..TIMERS_PER_TURN {
            let Some((at, key)) = self.timers.pop_due(self.now) else {
                return;
            };
            match key {
                TimerKey::Conn(id) => self.on_conn_timer(id, at),
                // After the signal no leave goes out and no session ends:
                // the next process decides (see `leave_room`).
                TimerKey::Session(_) if self.shutting_down() => {}
                TimerKey::Session(sid) => self.on_session_timer(sid, at),
                // A wake-up: `check_shutdown_done` decides.
                TimerKey::ShutdownDeadline => {}
                TimerKey::Retention => self.retention_due(),
                // A wake-up: `end_turn` tries the commit again.
                TimerKey::CommitRetry => {}
            }
        }
    }

    /// A session's leave delay may have ended (the others see its `leave`,
    /// in the turn's order), or its reservation lapsed; either is recorded
    /// (the session must not come back listed, or at all, after a restart).
    fn on_session_timer(&mut self, sid: SessionId, at: Instant) {
        let Some(token_hash) = self.chat.sessions.get(sid).map(|s| s.token_hash) else {
            return;
        };
        let (number, leave) = match self.chat.expire(sid, at, self.now) {
            Expiry::Ended(number) => (number, None),
            Expiry::Leave(due) if !due.ended => {
                self.journal.record_presence(token_hash, false);
                if let Some(next) = due.next {
                    self.timers.add(next, TimerKey::Session(sid));
                }
                return self.post_leave(due.room, due.number, &due.user, sid);
            }
            Expiry::Leave(due) => (due.number, Some(due)),
            Expiry::Later(again) => return self.timers.add(again, TimerKey::Session(sid)),
            Expiry::Kept => return,
        };
        log::debug!("reservation lapsed in room {number}");
        self.journal.record_session_end(token_hash);
        if let Some(due) = leave {
            self.post_leave(due.room, due.number, &due.user, sid);
        }
    }

    fn on_conn_timer(&mut self, id: ConnId, at: Instant) {
        let (now, settings) = (self.now, self.settings);
        let Some(conn) = self.get(id) else { return };
        if conn.queued_timer != Some(at) {
            return; // a stale entry; the live one is due later
        }
        conn.queued_timer = None;
        match conn.machine.deadline() {
            None => {}
            // The deadline moved later since this entry was queued.
            Some(deadline) if deadline > now => self.sync_timer(id),
            Some(_) => {
                let actions = conn.machine.on_timer(&mut conn.out, now, &settings);
                self.apply(id, actions);
            }
        }
    }

    // ----- shutdown ----------------------------------------------------

    /// Sends `1001` to every socket, drops HTTP connections that are idle
    /// or still sending a request, and gives the rest `shutdown_timeout` to
    /// finish. (The driver closes its listeners.)
    pub fn begin_shutdown(&mut self) {
        if self.shutting_down.is_some() {
            return;
        }
        let deadline = self.now + self.config.shutdown_timeout;
        log::info!(
            "shutting down: {} connections, {} WebSockets; draining for up to {:?}",
            self.conns.len(),
            self.websockets(),
            self.config.shutdown_timeout
        );
        self.shutting_down = Some(deadline);
        self.timers.add(deadline, TimerKey::ShutdownDeadline);
        let at_signal = self.conns.len();
        for id in self.conns.ids() {
            let Some(conn) = self.conns.get(id) else {
                continue;
            };
            if conn.machine.is_websocket() {
                let reason = CloseReason::new(close::GOING_AWAY, "server shutting down");
                self.close_ws(id, reason);
            } else if conn.gate == InputGate::Held {
                // Its answer waits for the commit (`end_turn`); it goes out
                // then, as the last on this connection (no keep-alive now).
            } else if conn.machine.is_http() && conn.out.is_empty() {
                // Idle, or half a request in: no answer is coming.
                self.drop_conn(id, DropReason::Shutdown);
            } else if conn.machine.is_http() {
                // Responses still going out: finish them, then FIN (else
                // the socket sits idle, keep-alive, until the deadline);
                // requests not answered yet stay unanswered.
                self.drain(id);
            }
        }
        // (After the idle ones were dropped: those were meant to go.)
        let timeout = self.config.shutdown_timeout;
        self.drain = Some(Drain::new(self.now, timeout, shutdown::STALL, at_signal));
    }

    /// After a turn: ends the drain once every socket has finished (its
    /// close handshake or last response sent and FIN'd; waiting for the
    /// peers' FINs as well would only hold the exit), or the rest made no
    /// progress for a while, or at the deadline: the rule is in
    /// `crate::shutdown`. True once stopped.
    pub fn check_shutdown_done(&mut self) -> bool {
        let Some(drain) = self.drain.as_mut() else {
            return self.stopped;
        };
        if self.stopped {
            return true;
        }
        let states = self.conns.iter().map(|(id, c)| {
            let (finished, buffered) = (c.machine.finished(), c.out.buffered());
            (id, ConnState { finished, buffered })
        });
        let stop = match drain.verdict(self.now, states) {
            Verdict::Wait(wake) => {
                if let Some(at) = wake {
                    self.timers.add(at, TimerKey::ShutdownDeadline);
                }
                return false;
            }
            Verdict::Exit(stop) => stop,
        };
        self.stopped = true;
        log::info!(
            "stopped {stop}; {} accepted in all, {} messages in, {} deliveries",
            self.metrics.connections_accepted,
            self.metrics.messages_in,
            self.metrics.messages_out
        );
        true
    }

    /// Open WebSockets (closing ones included), counted from the table:
    /// no counter to keep in step by hand.
    fn websockets(&self) -> usize {
        self.conns
            .iter()
            .filter(|(_, c)| c.machine.is_websocket())
            .count()
    }

    /// The gauges of `/metrics`, counted from the state.
    pub fn gauges(&self) -> Gauges {
        Gauges {
            connections: self.conns.len(),
            websockets: self.websockets(),
            rooms: self.chat.rooms.len(),
            users: self.chat.rooms.iter().map(|(_, r)| r.members.len()).sum(),
            sessions: self.chat.sessions.len(),
            buffered_bytes: self.conns.iter().map(|(_, c)| c.out.buffered()).sum(),
            history_bytes: self.chat.history_bytes(),
            peer_addresses: self.peer_limits.len(),
            data_file_bytes: self.journal.file_bytes(),
            degraded: self.degraded(),
            process: self.metrics.process(self.now),
        }
    }
}

/// The `503` written to a socket refused at accept, then closed.
fn refusal_503(text: &str) -> Vec<u8> {
    Response::text(Status::ServiceUnavailable, text)
        .header("Retry-After", "5")
        .to_bytes()
}

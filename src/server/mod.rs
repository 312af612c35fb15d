//! The poll loop: one thread, one `mio::Poll`, every connection in one
//! generational table ([`Table`]).
//!
//! Each turn of the loop:
//! 1. sleep in `poll` until a socket is ready or the earliest timer is due;
//! 2. handle each event: accept new connections, read from ready sockets
//!    (until `WouldBlock`: readiness is edge-triggered), parse, act; output
//!    is only *queued*. Input passes one gate (backpressure): a connection
//!    whose queued output is over `--pause-reading-at` is not read, and the
//!    requests or messages it already sent wait, unprocessed, until its
//!    output drains (`process`, `flush`);
//! 3. fire due timers;
//! 4. with a data file, commit what the turn changed in one transaction
//!    (`commit_turn`, in `server/durable.rs`): nothing is written to a
//!    socket before that, so no client sees what a crash could lose;
//! 5. flush every connection that has output, once: what was queued for it
//!    this turn leaves in one write ("corking": ten frames, one syscall).
//!
//! The protocol itself is not here: each connection's [`Machine`] takes the
//! bytes and the time and says what to do, and `Server::apply` does it
//! (queue bytes, leave a room, post a chat message, drain, drop): the one
//! place where a machine's decisions touch the server.
//!
//! The path of one chat message: `on_readable` (here) reads into the loop's
//! scratch buffer → `process` (here) takes it one unit at a time through the
//! gate → `frames_step` (`websocket.rs`) feeds it to the connection's
//! [`Machine`] → a complete text message comes back as `Action::Chat` →
//! `apply` (here) → `on_chat_text` (`websocket.rs`) → `post_message`
//! (`durable.rs`) numbers it and encodes its frame once (with a data file it
//! is recorded and waits for the turn's commit) → `broadcast` (`websocket.rs`)
//! puts that one `Rc` frame in each member's [`WriteQueue`] → `flush_dirty`
//! (here) writes each queue to its socket. A request takes the same way to
//! `process`, then `http_step` (`http.rs`).
//!
//! [`Machine`]: crate::conn::Machine
//! [`WriteQueue`]: crate::queue::WriteQueue
//!
//! The HTTP side is in `server/http.rs`, the WebSocket and room side in
//! `server/websocket.rs`, the data file's part of the turn in
//! `server/durable.rs`.

mod durable;
mod http;
mod websocket;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::assets::Assets;
use crate::bytes::Bytes;
use crate::chat::Chat;
use crate::chat::{Expiry, SessionId};
use crate::config::Config;
use crate::conn::machine::{Action, Actions, DropReason, Settings};
use crate::conn::{Conn, ConnId, Machine};
use crate::http::Status;
use crate::http::response::Response;
use crate::listeners::Listeners;
use crate::metrics::{self, Gauges, Metrics};
use crate::peer_limits::{PeerLimits, Refusal};
use crate::queue::Flushed;
use crate::shutdown::{self, ConnState, Drain, Verdict};
use crate::store::Store;
use crate::table::Table;
use crate::timers::Timers;
use crate::ws::close::{self, CloseReason};

use durable::Durable;

const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
const METRICS_LISTENER: Token = Token(usize::MAX - 2);

/// Bytes read per `read` call, into one buffer shared by all connections.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Reads from one connection per event before others get a turn.
const READS_PER_TURN: usize = 16;
/// Timers fired per loop turn (see `fire_timers`).
const TIMERS_PER_TURN: usize = 64;
/// Pause before accepting again after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);

/// What one step of input processing did (one request or one message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Handled a unit (or fed all of the input to an unfinished one): this
    /// many bytes are used.
    Took(usize),
    /// The unit at the front is incomplete: keep its bytes, read more.
    NeedMore,
}

/// How far `on_readable` reads a socket.
///
/// mio's readiness is edge-triggered: an event says "something changed",
/// and no new event comes until something changes again. Reading until
/// `WouldBlock` is always safe. A read that returns less than it asked for
/// has emptied the kernel's receive queue, so any later byte or FIN is a
/// new change and brings a new event; the `WouldBlock` read after it would
/// be a wasted system call (one of the two per pong of every idle socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadUntil {
    /// Stop after a short read. Only for a fresh readable event that did
    /// not report the peer's FIN (a FIN already reported brings no new
    /// event, so it must be read to `Ok(0)`).
    ShortRead,
    /// Read until the socket says `WouldBlock` (or EOF): after a FIN was
    /// reported, or when resuming a connection whose event came earlier.
    WouldBlock,
}

/// What a timer entry of the loop is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    /// A connection's deadline (see `Machine::deadline`).
    Conn(ConnId),
    /// A session's reservation may have lapsed.
    Session(SessionId),
    /// Try accepting again after running out of file descriptors.
    ResumeAccept,
    /// The shutdown drain time is over.
    ShutdownDeadline,
    /// With a data file: a step of retention (`server/durable.rs`).
    Retention,
}

/// The server: listener, connections, chat state, timers.
pub struct Server {
    poll: Poll,
    /// The listening socket; closed (`None`) once shutdown begins.
    listener: Option<TcpListener>,
    /// The listening socket was passed in by the service manager, which
    /// keeps a copy open (see `close_listeners`).
    listener_inherited: bool,
    local_addr: SocketAddr,
    /// The `--metrics-bind` listener: only `/metrics` and `/healthz`.
    metrics_listener: Option<TcpListener>,
    /// Connections open from it (limited apart from the others).
    metrics_conns: usize,
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
    /// The one read buffer of the loop.
    scratch: Vec<u8>,
    /// The one gather buffer of the loop: small queued chunks are copied
    /// into it to leave in one `write` (see `WriteQueue::write_to`).
    gather: Vec<u8>,
    /// Connections with output queued this turn, to flush at its end.
    dirty: Vec<ConnId>,
    /// Connections to read from without waiting for an event (resumed after
    /// a pause, or stopped at `READS_PER_TURN`).
    to_read: Vec<ConnId>,
    /// Receivers a broadcast pushed over `--max-buffered`, to close (with
    /// the bytes they had queued), and whether a broadcast is closing them.
    too_slow: Vec<(ConnId, usize)>,
    closing_too_slow: bool,
    now: Instant,
    accepting: bool,
    accept_error_logged: bool,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    /// Set once SIGINT/SIGTERM arrived: the drain deadline.
    shutting_down: Option<Instant>,
    /// Set with it: when the drain may end (`crate::shutdown`).
    drain: Option<Drain<ConnId>>,
    stopped: bool,
    /// With `--data-file`: the store, and what the turn waits to deliver
    /// until it is committed.
    durable: Option<Durable>,
}

impl Server {
    /// Opens the listeners (passed in by the service manager, or bound from
    /// `--bind` / `--metrics-bind`: [`crate::listeners`]). The server runs
    /// when [`Server::run`] is called.
    /// With `--data-file` it also opens and loads the store (the binary
    /// does those steps itself, to exit with code 2 on a file it refuses).
    pub fn bind(config: Config) -> io::Result<Server> {
        let listeners = Listeners::open(config.bind, config.metrics_bind)?;
        let data_file = config.data_file.clone();
        let settings = config.store_settings();
        let mut server = Server::with_listeners(config, listeners)?;
        if let Some(path) = data_file {
            let store = Store::open_with(&path, &settings).map_err(io::Error::other)?;
            server.use_store(store).map_err(io::Error::other)?;
        }
        Ok(server)
    }

    /// A server accepting on `listeners`.
    pub fn with_listeners(mut config: Config, listeners: Listeners) -> io::Result<Server> {
        if let Some(fd_limit) = open_files_limit() {
            // Leave room for the listener, the poll, stdio and a few spares,
            // and for the metrics listener's own connections.
            let spare = 16 + metrics::METRICS_CONNECTIONS as u64;
            let cap = fd_limit.saturating_sub(spare).max(1) as usize;
            if config.max_connections > cap {
                log::warn!(
                    "--max-connections {} lowered to {cap} (RLIMIT_NOFILE is {fd_limit})",
                    config.max_connections
                );
                config.max_connections = cap;
            }
        }
        let Listeners {
            main: mut listener,
            metrics: mut metrics_listener,
            inherited,
        } = listeners;
        let local_addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        if let Some(l) = metrics_listener.as_mut() {
            poll.registry()
                .register(l, METRICS_LISTENER, Interest::READABLE)?;
            // A passed metrics socket hides /metrics from the main one, as
            // `--metrics-bind` does.
            config.metrics_bind = Some(l.local_addr()?);
        }
        Ok(Server {
            poll,
            listener: Some(listener),
            listener_inherited: inherited,
            local_addr,
            metrics_listener,
            metrics_conns: 0,
            assets: Assets::new(config.www.clone()),
            peer_limits: PeerLimits::new(&config),
            settings: Settings::of(&config, Instant::now()),
            config,
            conns: Table::new(),
            chat: Chat::new(),
            timers: Timers::new(),
            metrics: Metrics::default(),
            scratch: vec![0; SCRATCH_BYTES],
            gather: Vec::new(),
            dirty: Vec::new(),
            to_read: Vec::new(),
            too_slow: Vec::new(),
            closing_too_slow: false,
            now: Instant::now(),
            accepting: true,
            accept_error_logged: false,
            signals: None,
            shutting_down: None,
            drain: None,
            stopped: false,
            durable: None,
        })
    }

    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The `--metrics-bind` address, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Stop gracefully on SIGINT and SIGTERM (call once, from `main`).
    pub fn handle_signals(&mut self) -> io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Runs the loop until a shutdown signal has been handled.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while !self.stopped {
            let timeout = if self.to_read.is_empty() {
                self.timers.poll_timeout(Instant::now())
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    METRICS_LISTENER => self.accept_metrics(),
                    SIGNALS => self.on_signal(),
                    token => {
                        let id = ConnId::from_token(token);
                        if event.is_writable() {
                            self.on_writable(id);
                        }
                        if event.is_read_closed() || event.is_error() {
                            self.on_readable(id, ReadUntil::WouldBlock);
                        } else if event.is_readable() {
                            self.on_readable(id, ReadUntil::ShortRead);
                        }
                    }
                }
            }
            for id in std::mem::take(&mut self.to_read) {
                self.on_readable(id, ReadUntil::WouldBlock);
            }
            self.fire_timers();
            self.commit_turn();
            self.flush_dirty();
            self.checkpoint_when_due();
            self.check_shutdown_done();
            self.metrics.turn_took(self.now.elapsed());
        }
        Ok(())
    }

    // ----- connections -------------------------------------------------

    /// The connection `id`, if it is still the one that id names.
    fn conn(&mut self, id: ConnId) -> Option<&mut Conn> {
        get_conn(&mut self.conns, id)
    }

    fn accept_all(&mut self) {
        while self.accepting {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.add_conn(stream, peer, false),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_out_of_resources(&e) => {
                    // The listener stays readable while the backlog is full:
                    // accepting in a loop now would spin at 100% CPU. Stop
                    // listening for a moment instead.
                    if !self.accept_error_logged {
                        log::warn!("accept failed ({e}); pausing accepts (logged once)");
                        self.accept_error_logged = true;
                    }
                    self.pause_accepting();
                    self.timers
                        .add(self.now + ACCEPT_BACKOFF, TimerKey::ResumeAccept);
                    return;
                }
                Err(e) => log::debug!("accept: {e}"),
            }
        }
    }

    /// Accepts on the metrics listener (few, short connections: no backoff
    /// needed beyond giving up this turn on an error).
    fn accept_metrics(&mut self) {
        loop {
            let Some(listener) = self.metrics_listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.add_conn(stream, peer, true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    fn pause_accepting(&mut self) {
        if self.accepting {
            self.accepting = false;
            if let Some(listener) = self.listener.as_mut() {
                let _ = self.poll.registry().deregister(listener);
            }
        }
    }

    fn resume_accepting(&mut self) {
        if self.accepting || self.shutting_down.is_some() {
            return;
        }
        let Some(listener) = self.listener.as_mut() else {
            return;
        };
        self.accepting = true;
        if let Err(e) = self
            .poll
            .registry()
            .register(listener, LISTENER, Interest::READABLE)
        {
            log::error!("cannot listen again: {e}");
        }
        self.accept_all();
    }

    /// Closes both listening sockets: from now on a connect is refused at
    /// once (a proxy can fail over) instead of waiting in the backlog for a
    /// server that will never accept it; connects already waiting there are
    /// reset.
    ///
    /// Unless the socket was passed in by the service manager: closing our
    /// copy then leaves the socket open in the service manager, so connects
    /// keep waiting in its backlog and the next process accepts them (a
    /// restart refuses no one). Nothing is accepted here from now on either
    /// way: what waits there is left for the next process.
    fn close_listeners(&mut self) {
        if self.listener_inherited && self.listener.is_some() {
            log::info!(
                "listening socket left to the service manager: new connections wait for the next process"
            );
        }
        self.pause_accepting();
        let registry = self.poll.registry();
        for listener in [self.listener.take(), self.metrics_listener.take()]
            .into_iter()
            .flatten()
        {
            let mut listener = listener;
            let _ = registry.deregister(&mut listener);
            // Dropped here: the socket is closed.
        }
    }

    fn add_conn(&mut self, mut stream: TcpStream, peer: SocketAddr, via_metrics: bool) {
        let (open, max) = (self.conns.len(), self.config.max_connections);
        let admitted = metrics::admits(via_metrics, open, self.metrics_conns, max);
        if !admitted && via_metrics {
            // Not the chat's limit: counted apart, so that a scraper's
            // storm does not look like a full server.
            let _ = stream.write(&refusal_503("too many connections"));
            self.metrics.refuse("metrics_connections");
            log::debug!("{peer}: refused with 503, the metrics listener is full");
            return;
        }
        if !admitted {
            // Best effort: a short answer that fits any socket buffer.
            let _ = stream.write(&refusal_503("too many connections"));
            self.metrics.connections_refused += 1;
            self.metrics.refuse("connections");
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
            return;
        }
        // A peer named by --trust-proxy is a proxy: the client's address is
        // known once a request head is read (`attribute_client`).
        let via_proxy = !via_metrics && self.config.trust_proxy.trusts(peer.ip());
        let counted = if via_metrics || via_proxy {
            false
        } else {
            match self.peer_limits.open(peer.ip()) {
                Ok(counted) => counted.is_some(),
                Err(refusal) => return self.refuse_per_address(stream, peer, refusal),
            }
        };
        let _ = stream.set_nodelay(true);
        let mut conn = Conn::new(stream, Machine::new(peer, self.now, &self.settings));
        conn.via_metrics = via_metrics;
        conn.via_proxy = via_proxy;
        conn.counted = counted;
        let id = self.conns.insert(conn);
        let registry = self.poll.registry();
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        if let Err(e) = registry.register(&mut conn.stream, id.token(), Interest::READABLE) {
            log::warn!("{peer}: cannot register: {e}");
            if counted {
                self.peer_limits.close(peer.ip());
            }
            self.conns.remove(id);
            return;
        }
        self.metrics.connections_accepted += 1;
        self.metrics_conns += via_metrics as usize;
        log::debug!("{peer}: connected");
        self.sync_timer(id);
        // No read now: registering a socket whose request already arrived
        // reports it readable at once (epoll checks the state on add).
    }

    /// A new connection over `--max-connections-per-ip`: a best-effort
    /// `503` as at the global limit, then closed.
    fn refuse_per_address(&mut self, mut stream: TcpStream, peer: SocketAddr, refusal: Refusal) {
        let _ = stream.write(&refusal_503("too many connections from one address"));
        self.note_per_address_refusal(peer.ip(), refusal);
    }

    /// Counts a per-address refusal; logs the first at warn, the rest at
    /// debug (a flood must not flood the log too).
    pub(super) fn note_per_address_refusal(&mut self, ip: std::net::IpAddr, refusal: Refusal) {
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

    /// Closes the socket at once and forgets the connection.
    fn drop_conn(&mut self, id: ConnId, why: DropReason) {
        if self.conn(id).is_none() {
            return;
        }
        // Dropping the stream closes the socket, and closing removes it from
        // the poll: no `deregister` system call needed.
        let Some(mut conn) = self.conns.remove(id) else {
            return;
        };
        log::debug!("{}: dropped ({why:?})", conn.peer());
        if let Some(drain) = self.drain.as_mut() {
            drain.on_drop(id, conn.machine.finished());
        }
        if conn.counted {
            self.peer_limits.close(conn.peer().ip());
        }
        self.metrics_conns -= conn.via_metrics as usize;
        let mut actions = Actions::default();
        conn.machine.on_drop(&mut actions);
        self.apply(id, actions);
    }

    /// Carries out what a connection's machine decided: the one place where
    /// its output is queued, its socket leaves its room, its chat text is
    /// posted, its input is forgotten for draining, and it is dropped. Then
    /// its timer follows the machine's deadline. (`leave_room` and
    /// `on_chat_text` are in `websocket.rs`.)
    fn apply(&mut self, id: ConnId, actions: Actions) {
        for action in actions {
            match action {
                Action::Send(bytes) => self.send(id, bytes),
                Action::CloseSent(code) => self.metrics.closed(code),
                Action::Leave(session) => self.leave_room(session, id),
                Action::Chat(session, text) => self.on_chat_text(id, session, text),
                Action::Drain => {
                    if let Some(conn) = self.conn(id) {
                        conn.input.clear(); // what the peer sends now is ignored
                    }
                    self.mark_dirty(id); // flushed, then FIN
                }
                Action::Drop(reason) => self.drop_conn(id, reason),
            }
        }
        self.sync_timer(id);
    }

    /// Queues bytes for a connection, flushed at the end of the turn.
    fn send(&mut self, id: ConnId, bytes: Bytes) {
        if let Some(conn) = self.conn(id) {
            conn.out.push(bytes);
            self.mark_dirty(id);
        }
    }

    /// Makes sure the timers hold an entry for the connection's
    /// deadline (see `timers` for the lazy scheme: a later deadline reuses
    /// the earlier entry, which re-queues itself when it fires).
    fn sync_timer(&mut self, id: ConnId) {
        let Some(conn) = self.conn(id) else { return };
        let Some(at) = conn.machine.deadline() else {
            return;
        };
        if conn.queued_timer.is_none_or(|q| at < q) {
            conn.queued_timer = Some(at);
            self.timers.add(at, TimerKey::Conn(id));
        }
    }

    // ----- reading -----------------------------------------------------

    /// Reads what the socket has, while the gate lets input in. A resumed
    /// connection first processes what it had already read. `until` says
    /// whether a short read ends it (see [`ReadUntil`]).
    fn on_readable(&mut self, id: ConnId, until: ReadUntil) {
        self.process_pending(id);
        let pause_at = self.config.pause_reading_at;
        for _ in 0..READS_PER_TURN {
            let Some(conn) = get_conn(&mut self.conns, id) else {
                return;
            };
            if !conn.gate.admits(conn.out.buffered(), pause_at) {
                // Backpressure: let the kernel's buffers fill and TCP push
                // back on the peer until we have sent what we owe it.
                return;
            }
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => return self.on_eof(id),
                Ok(n) => {
                    self.metrics.bytes_in += n as u64;
                    let scratch = std::mem::take(&mut self.scratch);
                    self.on_bytes(id, &scratch[..n]);
                    let emptied = n < scratch.len();
                    self.scratch = scratch;
                    if emptied && until == ReadUntil::ShortRead {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.drop_conn(id, DropReason::IoError),
            }
        }
        // More may be waiting: come back next turn, after the others.
        self.to_read.push(id);
    }

    /// The peer sent FIN. It may still read: send what is queued for it (an
    /// answer to its last request, the echo of its close frame) before
    /// closing; if that does not fit in the socket now, drain it with the
    /// close timeout as the bound.
    fn on_eof(&mut self, id: ConnId) {
        if self.durable.is_none() {
            self.flush(id);
        } // else it is flushed after the turn's commit (as it is dirty)
        let Some(conn) = self.conn(id) else { return };
        let draining = conn.machine.is_draining();
        let reason = match draining {
            true => DropReason::Done,
            false => DropReason::PeerClosed,
        };
        if conn.out.is_empty() {
            return self.drop_conn(id, reason);
        }
        if !draining {
            self.drain(id);
        }
    }

    /// No more input from this connection: send what is queued, FIN, wait
    /// for the peer's FIN (see `Machine::drain`).
    fn drain(&mut self, id: ConnId) {
        let (now, settings) = (self.now, self.settings);
        let Some(conn) = self.conn(id) else { return };
        let actions = conn.machine.drain(now, &settings);
        self.apply(id, actions);
    }

    /// Bytes just read. Without earlier input pending they are processed
    /// where they are (the loop's scratch buffer) and only what is left is
    /// copied into the connection's input; else they join that input.
    fn on_bytes(&mut self, id: ConnId, bytes: &[u8]) {
        let Some(conn) = self.conn(id) else { return };
        if !conn.input.is_empty() {
            conn.input.push(bytes);
            return self.process_pending(id);
        }
        let used = self.process(id, bytes);
        if used < bytes.len()
            && let Some(conn) = self.conn(id)
        {
            conn.input.push(&bytes[used..]);
        }
    }

    /// Processes the connection's pending input (after a pause, or with
    /// newly read bytes appended to an incomplete request).
    fn process_pending(&mut self, id: ConnId) {
        let Some(conn) = self.conn(id) else { return };
        if conn.input.is_empty() {
            return;
        }
        let mut input = std::mem::take(&mut conn.input);
        let used = self.process(id, input.pending());
        input.consume(used);
        if let Some(conn) = self.conn(id) {
            // (Empty if the connection stopped reading requests meanwhile.)
            if !conn.machine.is_draining() {
                conn.input = input;
            }
        }
    }

    /// The one input-processing loop of a connection: before each request
    /// or message, the gate is asked whether the connection's queued output
    /// allows one more; whatever that unit produces (responses, pongs,
    /// echoes, closes, broadcasts to its room) counts for the next one.
    /// Returns how many bytes of `input` were used; the caller keeps the
    /// rest in the connection's input. (`http_step` is in `http.rs`,
    /// `frames_step` in `websocket.rs`.)
    fn process(&mut self, id: ConnId, input: &[u8]) -> usize {
        let pause_at = self.config.pause_reading_at;
        let mut used = 0;
        while used < input.len() {
            let Some(conn) = self.conn(id) else {
                return input.len();
            };
            if !conn.gate.admits(conn.out.buffered(), pause_at) {
                break;
            }
            let rest = &input[used..];
            let step = match conn.machine.is_http() {
                true => self.http_step(id, rest),
                false => self.frames_step(id, rest), // (draining: ignored)
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

    // ----- writing -----------------------------------------------------

    fn mark_dirty(&mut self, id: ConnId) {
        if let Some(conn) = self.conn(id)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(id);
        }
    }

    /// The socket has room again. Without a data file it is written at
    /// once; with one, at the end of the turn, after the commit (a queue may
    /// hold this turn's output).
    fn on_writable(&mut self, id: ConnId) {
        match self.durable {
            None => self.flush(id),
            Some(_) => self.mark_dirty(id),
        }
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for id in dirty.drain(..) {
            self.flush(id);
        }
        if self.dirty.is_empty() {
            self.dirty = dirty; // keep the allocation
        }
    }

    /// Writes a connection's queue until done or the socket is full, then
    /// sets its interest: WRITABLE only while something is left.
    fn flush(&mut self, id: ConnId) {
        let pause_at = self.config.pause_reading_at;
        let Some(conn) = get_conn(&mut self.conns, id) else {
            return;
        };
        conn.dirty = false;
        let before = conn.out.buffered();
        let result = conn.out.write_to(&mut conn.stream, &mut self.gather);
        let written = before - conn.out.buffered();
        self.metrics.bytes_out += written as u64;
        let Some(conn) = get_conn(&mut self.conns, id) else {
            return;
        };
        let want = match result {
            Ok(Flushed::All) => {
                if conn.machine.on_flushed() {
                    let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                }
                Interest::READABLE
            }
            Ok(Flushed::Partly) => Interest::READABLE | Interest::WRITABLE,
            Err(_) => return self.drop_conn(id, DropReason::IoError),
        };
        if conn.interest != want {
            conn.interest = want;
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, id.token(), want)
                .is_err()
            {
                return self.drop_conn(id, DropReason::IoError);
            }
        }
        if conn.gate.reopens(conn.out.buffered(), pause_at) {
            // Resume: what was read already first, then the socket.
            self.to_read.push(id);
        }
    }

    // ----- timers ------------------------------------------------------

    /// Fires due timers, at most `TIMERS_PER_TURN`. Keep-alive deadlines
    /// share coarse ticks, so with short ping intervals and many sockets a
    /// tick brings hundreds of pings at once; the rest wait for the next
    /// turn (the poll does not sleep while a timer is due), so that the
    /// messages of active users in between are not held up by all of them.
    fn fire_timers(&mut self) {
        for _ in 0..TIMERS_PER_TURN {
            let Some((at, key)) = self.timers.pop_due(self.now) else {
                return;
            };
            match key {
                TimerKey::Conn(id) => self.on_conn_timer(id, at),
                TimerKey::Session(sid) => self.on_session_timer(sid, at),
                TimerKey::ResumeAccept => self.resume_accepting(),
                // A wake-up: `check_shutdown_done` decides.
                TimerKey::ShutdownDeadline => {}
                TimerKey::Retention => self.retention_due(),
            }
        }
    }

    /// A reservation may have lapsed; with a data file its end is recorded
    /// (the session must not come back after a restart).
    fn on_session_timer(&mut self, sid: SessionId, at: Instant) {
        let Some(token_hash) = self.chat.sessions.get(sid).map(|s| s.token_hash) else {
            return;
        };
        let number = match self.chat.expire(sid, at, self.now) {
            Expiry::Ended(number) => number,
            Expiry::Later(again) => return self.timers.add(again, TimerKey::Session(sid)),
            Expiry::Kept => return,
        };
        log::debug!("reservation lapsed in room {number}");
        if let Some(d) = self.durable.as_mut() {
            d.store.record_session_end(token_hash);
        }
    }

    fn on_conn_timer(&mut self, id: ConnId, at: Instant) {
        let (now, settings) = (self.now, self.settings);
        let Some(conn) = self.conn(id) else { return };
        if conn.queued_timer != Some(at) {
            return; // a stale entry; the live one is due later
        }
        conn.queued_timer = None;
        match conn.machine.deadline() {
            None => {}
            // The deadline moved later since this entry was queued.
            Some(deadline) if deadline > now => self.sync_timer(id),
            Some(_) => {
                let actions = conn.machine.on_timer(now, &settings);
                self.apply(id, actions);
            }
        }
    }

    // ----- shutdown ----------------------------------------------------

    fn on_signal(&mut self) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        let got: Vec<i32> = signals.pending().collect();
        if got.is_empty() || self.shutting_down.is_some() {
            return;
        }
        self.begin_shutdown();
    }

    /// Close the listeners, send `1001` to every socket, drop HTTP
    /// connections that are idle or still sending a request, and give the
    /// rest `shutdown_timeout` to finish.
    pub fn begin_shutdown(&mut self) {
        let deadline = self.now + self.config.shutdown_timeout;
        log::info!(
            "shutting down: {} connections, {} WebSockets; draining for up to {:?}",
            self.conns.len(),
            self.websockets(),
            self.config.shutdown_timeout
        );
        self.close_listeners();
        self.shutting_down = Some(deadline);
        self.timers.add(deadline, TimerKey::ShutdownDeadline);
        let at_signal = self.conns.len();
        for id in self.conns.ids() {
            let Some(conn) = self.conn(id) else { continue };
            if conn.machine.is_websocket() {
                let reason = CloseReason::new(close::GOING_AWAY, "server shutting down");
                self.close_ws(id, reason);
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

    /// Ends the drain once every socket has finished (its close handshake
    /// or last response sent and FIN'd; waiting for the peers' FINs as well
    /// would only hold the exit), or the rest made no progress for a while,
    /// or at the deadline: the rule is in `crate::shutdown`.
    fn check_shutdown_done(&mut self) {
        let Some(drain) = self.drain.as_mut() else {
            return;
        };
        let states = self.conns.iter().map(|(id, c)| {
            let (finished, buffered) = (c.machine.finished(), c.out.buffered());
            (id, ConnState { finished, buffered })
        });
        let stop = match drain.verdict(self.now, states) {
            Verdict::Wait(wake) => {
                if let Some(at) = wake {
                    self.timers.add(at, TimerKey::ShutdownDeadline);
                }
                return;
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
    }

    /// Open WebSockets (closing ones included), counted from the table:
    /// no counter to keep in step by hand.
    fn websockets(&self) -> usize {
        self.conns
            .iter()
            .filter(|(_, c)| c.machine.is_websocket())
            .count()
    }

    fn gauges(&self) -> Gauges {
        Gauges {
            connections: self.conns.len(),
            websockets: self.websockets(),
            rooms: self.chat.rooms.len(),
            users: self.chat.rooms.iter().map(|(_, r)| r.members.len()).sum(),
            sessions: self.chat.sessions.len(),
            buffered_bytes: self.conns.iter().map(|(_, c)| c.out.buffered()).sum(),
            history_bytes: self.chat.history_bytes(),
            peer_addresses: self.peer_limits.len(),
            data_file_bytes: self.data_file_bytes(),
            degraded: self.degraded(),
            process: self.metrics.process(self.now),
        }
    }
}

/// The connection `id` in `conns`, if it is still the one that id names
/// (a free function, so the borrow covers `conns` only, not the server).
fn get_conn(conns: &mut Table<Conn>, id: ConnId) -> Option<&mut Conn> {
    conns.get_mut(id)
}

/// The `503` written to a socket refused at accept, then closed.
fn refusal_503(text: &str) -> Vec<u8> {
    Response::text(Status::ServiceUnavailable, text)
        .header("Retry-After", "5")
        .to_bytes()
}

/// `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`: the process or system is out of
/// something; retrying at once cannot help.
fn is_out_of_resources(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(24) | Some(23) | Some(105) | Some(12))
}

/// The soft `RLIMIT_NOFILE`, read from `/proc/self/limits` (no `unsafe`).
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

//! The poll loop: the thin driver that gives the server [`Core`] its
//! sockets. One thread, one `mio::Poll`; every socket is registered with
//! its connection's [`ConnId`] as its token. The loop owns the sockets and
//! two buffers (one to read into, one to gather small writes in) and no
//! protocol state: what a byte means, who gets a message and when a
//! connection is done is the core's, which never touches a socket.
//!
//! Each turn of the loop:
//! 1. sleep in `poll` until a socket is ready or the core's next timer is
//!    due ([`Core::next_wake`]);
//! 2. handle each event: accept new connections ([`Core::accept`]), read
//!    from ready sockets ([`Core::read`]) while the core lets input in
//!    ([`Core::wants_input`]: backpressure), tell it a socket is writable;
//! 3. [`Core::tick`]: due timers fire;
//! 4. [`Core::end_turn`]: the core commits what the turn changed (with a
//!    data file) and delivers what waited for that: nothing has been
//!    written to a socket yet, so no client sees what a crash could lose;
//! 5. write every connection the core marks dirty, once
//!    ([`Core::next_dirty`]): what was queued for it this turn leaves in
//!    one write ("corking": ten frames, one syscall); then
//!    [`Core::after_flush`] (a retention step, if its timer fired, and a
//!    checkpoint of the data file, if due, handed to the store's helper
//!    thread);
//! 6. carry out the core's effects ([`Core::next_effect`]): close a socket,
//!    or read one again without waiting for an event.
//!
//! # Reading, and where the loop leans on Linux
//!
//! mio's readiness is edge-triggered, and its documented contract is to
//! read until `WouldBlock`: only then is a new event promised. On Linux
//! (epoll) the loop stops earlier, after a read that returned less than it
//! asked for (`ReadUntil::ShortRead`): such a read emptied the kernel's
//! receive queue, and epoll raises a new edge for every byte or FIN that
//! arrives after it, so the `WouldBlock` read would be a wasted system
//! call (one of the two per pong of every idle socket). That rests on
//! epoll's behaviour, not on mio's promise, so it is compiled for Linux
//! only; elsewhere every socket is read until `WouldBlock`.

mod sockets;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::config::Config;
use crate::conn::{ConnId, Via};
use crate::core::{Core, Effect};
use crate::listeners::{Binds, Listeners};
use crate::metrics::Metrics;
use crate::store::{QueryError, Store};

use sockets::{Socket, Sockets};

const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
const METRICS_LISTENER: Token = Token(usize::MAX - 2);
const ADMIN_LISTENER: Token = Token(usize::MAX - 3);

/// Bytes read per `read` call, into one buffer shared by all connections.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Reads from one connection per event before others get a turn.
const READS_PER_TURN: usize = 16;
/// Pause before accepting again after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);

/// How far `on_readable` reads a socket (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadUntil {
    /// Stop after a short read (Linux only). Only for a fresh readable
    /// event that did not report the peer's FIN (a FIN already reported
    /// brings no new event, so it must be read to `Ok(0)`).
    ShortRead,
    /// Read until the socket says `WouldBlock` (or EOF): after a FIN was
    /// reported, when resuming a connection whose event came earlier, and
    /// always where the short-read rule is not known to hold.
    WouldBlock,
}

impl ReadUntil {
    /// For a fresh readable event: stop at a short read where epoll
    /// guarantees the next edge, read until `WouldBlock` elsewhere.
    #[cfg(target_os = "linux")]
    const FRESH_EVENT: ReadUntil = ReadUntil::ShortRead;
    #[cfg(not(target_os = "linux"))]
    const FRESH_EVENT: ReadUntil = ReadUntil::WouldBlock;
}

/// The server: listeners, sockets, and the [`Core`] that runs the rest.
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
    /// The `--admin-bind` listener: only the operator API and `/healthz`.
    admin_listener: Option<TcpListener>,
    core: Core,
    sockets: Sockets,
    /// The one read buffer of the loop.
    scratch: Vec<u8>,
    /// The one gather buffer of the loop: small queued chunks are copied
    /// into it to leave in one `write` (see `WriteQueue::write_to`).
    gather: Vec<u8>,
    /// Connections to read from without waiting for an event.
    to_read: Vec<ConnId>,
    /// While out of file descriptors: when to accept again.
    resume_accept_at: Option<Instant>,
    accept_error_logged: bool,
    signals: Option<signal_hook_mio::v1_0::Signals>,
}

impl Server {
    /// Opens the listeners (passed in by the service manager, or bound from
    /// `--bind` / `--metrics-bind` / `--admin-bind`: [`crate::listeners`])
    /// and, with
    /// `--data-file`, the store (the binary does those steps itself, to
    /// exit with code 2 on a file it refuses). It runs when
    /// [`Server::run`] is called.
    pub fn bind(config: Config) -> io::Result<Server> {
        let listeners = Listeners::open(Binds::of(&config))?;
        let data_file = config.data_file.clone();
        let settings = config.store_settings();
        let mut server = Server::with_listeners(config, listeners)?;
        if let Some(path) = data_file {
            let store = Store::open_with(&path, &settings).map_err(io::Error::other)?;
            server.use_store(store).map_err(io::Error::other)?;
        }
        Ok(server)
    }

    /// A server accepting on `listeners` (without a data file until
    /// [`Server::use_store`]).
    pub fn with_listeners(mut config: Config, listeners: Listeners) -> io::Result<Server> {
        lower_to_fd_limit(&mut config);
        let Listeners {
            main: mut listener,
            metrics: mut metrics_listener,
            admin: mut admin_listener,
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
        if let Some(l) = admin_listener.as_mut() {
            poll.registry()
                .register(l, ADMIN_LISTENER, Interest::READABLE)?;
        }
        let core = Core::new(config, Instant::now());
        Ok(Server {
            poll,
            listener: Some(listener),
            listener_inherited: inherited,
            local_addr,
            metrics_listener,
            admin_listener,
            core,
            sockets: Sockets::default(),
            scratch: vec![0; SCRATCH_BYTES],
            gather: Vec::new(),
            to_read: Vec::new(),
            resume_accept_at: None,
            accept_error_logged: false,
            signals: None,
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

    /// The `--admin-bind` address (or the passed `admin` socket's), if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Takes over the data file's store (see [`Core::use_store`]).
    pub fn use_store(&mut self, store: Store) -> Result<(), QueryError> {
        self.core.use_store(store)
    }

    /// The core's counters.
    pub fn metrics(&self) -> &Metrics {
        self.core.metrics()
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

    /// Runs the loop until a shutdown has finished.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while !self.core.stopped() {
            if let Err(e) = self.poll.poll(&mut events, self.timeout()) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            self.core.set_now(now);
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    METRICS_LISTENER => self.accept_side(Via::Metrics),
                    ADMIN_LISTENER => self.accept_side(Via::Admin),
                    SIGNALS => self.on_signal(),
                    token => {
                        let id = ConnId::from_token(token);
                        if event.is_writable() {
                            self.core.writable(id);
                        }
                        if event.is_read_closed() || event.is_error() {
                            self.on_readable(id, ReadUntil::WouldBlock);
                        } else if event.is_readable() {
                            self.on_readable(id, ReadUntil::FRESH_EVENT);
                        }
                    }
                }
                self.carry_out_effects();
            }
            for id in std::mem::take(&mut self.to_read) {
                self.on_readable(id, ReadUntil::WouldBlock);
                self.carry_out_effects();
            }
            self.core.tick(now);
            if self.resume_accept_at.is_some_and(|at| at <= now) {
                self.resume_accepting();
            }
            self.core.end_turn();
            self.flush_dirty();
            self.core.after_flush();
            self.carry_out_effects();
            self.core.check_shutdown_done();
            self.core.turn_took(now.elapsed());
        }
        Ok(())
    }

    /// How long `poll` may sleep: until the core's next timer (or the end
    /// of an accept pause), not at all while sockets wait to be read.
    fn timeout(&self) -> Option<Duration> {
        if !self.to_read.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let accept = self
            .resume_accept_at
            .map(|at| at.saturating_duration_since(now));
        match (self.core.next_wake(now), accept) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- accepting ---------------------------------------------------

    fn accept_all(&mut self) {
        while self.resume_accept_at.is_none() {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.add_conn(stream, peer, Via::Main),
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
                    return;
                }
                Err(e) => log::debug!("accept: {e}"),
            }
        }
    }

    /// Accepts on the metrics or the admin listener (few, short
    /// connections: no backoff needed beyond giving up this turn on an
    /// error).
    fn accept_side(&mut self, via: Via) {
        loop {
            let listener = match via {
                Via::Admin => self.admin_listener.as_ref(),
                _ => self.metrics_listener.as_ref(),
            };
            let Some(listener) = listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.add_conn(stream, peer, via),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    fn pause_accepting(&mut self) {
        self.resume_accept_at = Some(Instant::now() + ACCEPT_BACKOFF);
        if let Some(listener) = self.listener.as_mut() {
            let _ = self.poll.registry().deregister(listener);
        }
    }

    fn resume_accepting(&mut self) {
        self.resume_accept_at = None;
        let Some(listener) = self.listener.as_mut() else {
            return;
        };
        if let Err(e) = self
            .poll
            .registry()
            .register(listener, LISTENER, Interest::READABLE)
        {
            log::error!("cannot listen again: {e}");
        }
        self.accept_all();
    }

    /// A new socket: the core takes it or refuses it (a best-effort `503`
    /// that fits any socket buffer, then closed).
    fn add_conn(&mut self, mut stream: TcpStream, peer: SocketAddr, via: Via) {
        let id = match self.core.accept(peer, via) {
            Ok(id) => id,
            Err(refused) => {
                let _ = stream.write(&refused.0);
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let registry = self.poll.registry();
        if let Err(e) = registry.register(&mut stream, id.token(), Interest::READABLE) {
            log::warn!("{peer}: cannot register: {e}");
            return self.core.io_error(id);
        }
        self.sockets.insert(id, Socket::new(stream));
        // No read now: registering a socket whose request already arrived
        // reports it readable at once (epoll checks the state on add).
    }

    // ----- reading -----------------------------------------------------

    /// Reads what the socket has, while the core lets input in. A resumed
    /// connection first processes what it had already read. `until` says
    /// whether a short read ends it (see [`ReadUntil`]).
    fn on_readable(&mut self, id: ConnId, until: ReadUntil) {
        self.core.resume(id);
        for _ in 0..READS_PER_TURN {
            if !self.core.wants_input(id) {
                // Gone, or backpressure: let the kernel's buffers fill and
                // TCP push back on the peer until we have sent what we owe.
                return;
            }
            let Some(socket) = self.sockets.get_mut(id) else {
                return;
            };
            match socket.stream.read(&mut self.scratch) {
                Ok(0) => return self.core.eof(id),
                Ok(n) => {
                    self.core.read(id, &self.scratch[..n]);
                    if n < self.scratch.len() && until == ReadUntil::ShortRead {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.core.io_error(id),
            }
        }
        // More may be waiting: come back next turn, after the others.
        self.to_read.push(id);
    }

    // ----- writing -----------------------------------------------------

    /// Writes each connection the core marked dirty, once.
    fn flush_dirty(&mut self) {
        while let Some(id) = self.core.next_dirty() {
            self.flush(id);
        }
    }

    /// Writes a connection's queue until done or the socket is full, then
    /// sends FIN if the core says so and sets the socket's interest:
    /// WRITABLE only while something is left.
    fn flush(&mut self, id: ConnId) {
        let (Some(out), Some(socket)) = (self.core.queue(id), self.sockets.get_mut(id)) else {
            return;
        };
        let before = out.buffered();
        let result = out.write_to(&mut socket.stream, &mut self.gather);
        let written = before - out.buffered();
        let Some(after) = self.core.flushed(id, written, result.map_err(drop)) else {
            return;
        };
        if after.fin {
            let _ = socket.stream.shutdown(std::net::Shutdown::Write);
        }
        let want = match after.want_writable {
            true => Interest::READABLE | Interest::WRITABLE,
            false => Interest::READABLE,
        };
        if socket.interest != want {
            socket.interest = want;
            let registry = self.poll.registry();
            if registry
                .reregister(&mut socket.stream, id.token(), want)
                .is_err()
            {
                self.core.io_error(id);
            }
        }
    }

    /// Closes the sockets the core is done with, and notes which to read
    /// again without an event.
    fn carry_out_effects(&mut self) {
        while let Some(effect) = self.core.next_effect() {
            match effect {
                // Dropping the stream closes the socket, and closing removes
                // it from the poll: no `deregister` system call needed.
                Effect::Close(id) => drop(self.sockets.remove(id)),
                Effect::Resume(id) => self.to_read.push(id),
            }
        }
    }

    // ----- shutdown ----------------------------------------------------

    fn on_signal(&mut self) {
        let Some(signals) = self.signals.as_mut() else {
            return;
        };
        if signals.pending().count() == 0 || self.core.shutting_down() {
            return;
        }
        self.begin_shutdown();
    }

    /// Closes the listeners and lets the core close every connection (see
    /// [`Core::begin_shutdown`]).
    pub fn begin_shutdown(&mut self) {
        self.close_listeners();
        self.core.begin_shutdown();
        self.carry_out_effects();
    }

    /// Closes the listening sockets: from now on a connect is refused at
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
        self.resume_accept_at = None;
        let registry = self.poll.registry();
        let all = [
            self.listener.take(),
            self.metrics_listener.take(),
            self.admin_listener.take(),
        ];
        for listener in all.into_iter().flatten() {
            let mut listener = listener;
            let _ = registry.deregister(&mut listener);
            // Dropped here: the socket is closed.
        }
    }
}

/// Lowers `--max-connections` to what `RLIMIT_NOFILE` allows, leaving room
/// for the listener, the poll, stdio and a few spares.
fn lower_to_fd_limit(config: &mut Config) {
    let Some(fd_limit) = open_files_limit() else {
        return;
    };
    // (And for the metrics and admin listeners' own connections.)
    let spare = 16 + (crate::metrics::METRICS_CONNECTIONS + crate::admin::ADMIN_CONNECTIONS) as u64;
    let cap = fd_limit.saturating_sub(spare).max(1) as usize;
    if config.max_connections > cap {
        log::warn!(
            "--max-connections {} lowered to {cap} (RLIMIT_NOFILE is {fd_limit})",
            config.max_connections
        );
        config.max_connections = cap;
    }
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

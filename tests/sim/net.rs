//! The network of the simulation: virtual TCP connections ([`Pipe`]s)
//! between virtual clients and the real [`Core`], and the driver that runs
//! the core's loop turns over them exactly as the mio driver does over
//! sockets (read while the core lets input in, tick, end the turn, write
//! the dirty queues, carry out the effects), on a virtual clock.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Instant;

use wsrooms::conn::{ConnId, Via};
use wsrooms::core::{Core, Effect};

/// Bytes read per read call, as the loop's scratch buffer.
const READ_BYTES: usize = 64 * 1024;
/// Reads per connection per turn, as the loop.
const READS_PER_TURN: usize = 16;

/// One TCP connection, as both ends see it.
#[derive(Debug, Default)]
pub struct Pipe {
    /// The core's name for it (`None`: refused when it came in).
    pub id: Option<ConnId>,
    /// Client → server: sent, not read by the server yet.
    pub up: Vec<u8>,
    /// The client sent FIN after `up`.
    pub up_fin: bool,
    /// The client reset it: the server's next read fails.
    pub reset: bool,
    /// The core was told of the FIN or the reset.
    told_end: bool,
    /// Server → client: in the client's receive buffer, not consumed yet.
    pub down: Vec<u8>,
    /// A hash of every byte the server sent on it, in order (FNV-1a): two
    /// runs of one seed must give the same.
    pub digest: u64,
    /// How many bytes the kernel holds for the client (both socket
    /// buffers): a client that does not read fills it, then the core's
    /// queue grows.
    pub down_cap: usize,
    /// The server sent FIN.
    pub down_fin: bool,
    /// The server closed the socket.
    pub closed: bool,
    /// The server waits for WRITABLE.
    want_writable: bool,
    /// A readiness event is due (new bytes, FIN, reset, or room to write).
    readable: bool,
    writable: bool,
}

impl Pipe {
    /// The client consumes up to `max` bytes of what the server sent.
    pub fn take(&mut self, max: usize) -> Vec<u8> {
        let n = max.min(self.down.len());
        let taken: Vec<u8> = self.down.drain(..n).collect();
        if n > 0 && self.want_writable {
            self.writable = true;
        }
        taken
    }

    /// The client sends bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        if self.up_fin || self.reset || self.closed {
            return;
        }
        self.up.extend_from_slice(bytes);
        self.readable = true;
    }

    /// The client sends FIN.
    pub fn fin(&mut self) {
        self.up_fin = true;
        self.readable = true;
    }

    /// The client resets the connection.
    pub fn reset(&mut self) {
        self.reset = true;
        self.readable = true;
    }

    /// Nothing more will ever come from the server.
    pub fn is_done(&self) -> bool {
        self.down.is_empty() && (self.closed || self.down_fin)
    }
}

/// Takes at most what fits in the client's kernel buffer, then would block.
struct Kernel<'a> {
    buf: &'a mut Vec<u8>,
    cap: usize,
    digest: &'a mut u64,
}

/// FNV-1a's offset basis: the digest of nothing.
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Adds `bytes` to an FNV-1a hash.
fn fnv1a(digest: &mut u64, bytes: &[u8]) {
    if *digest == 0 {
        *digest = FNV_START;
    }
    for &b in bytes {
        *digest = (*digest ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
}

impl Write for Kernel<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = self.cap.saturating_sub(self.buf.len());
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = room.min(bytes.len());
        self.buf.extend_from_slice(&bytes[..n]);
        fnv1a(self.digest, &bytes[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The core and its virtual sockets.
pub struct Net {
    pub core: Core,
    pub now: Instant,
    pub pipes: Vec<Pipe>,
    by_conn: HashMap<ConnId, usize>,
    to_read: Vec<usize>,
    gather: Vec<u8>,
}

impl Net {
    pub fn new(core: Core, now: Instant) -> Net {
        Net {
            core,
            now,
            pipes: Vec::new(),
            by_conn: HashMap::new(),
            to_read: Vec::new(),
            gather: Vec::new(),
        }
    }

    /// A new connection from `peer`; its pipe's number. A refused one gets
    /// its `503` and is closed at once.
    pub fn connect(&mut self, peer: SocketAddr, down_cap: usize) -> usize {
        self.connect_via(peer, down_cap, Via::Main)
    }

    /// Like [`Net::connect`], on the listener `via` (the admin one, …).
    pub fn connect_via(&mut self, peer: SocketAddr, down_cap: usize, via: Via) -> usize {
        let mut pipe = Pipe {
            down_cap,
            ..Pipe::default()
        };
        match self.core.accept(peer, via) {
            Ok(id) => {
                pipe.id = Some(id);
                self.by_conn.insert(id, self.pipes.len());
            }
            Err(refused) => {
                fnv1a(&mut pipe.digest, &refused.0);
                pipe.down = refused.0;
                pipe.closed = true;
            }
        }
        self.pipes.push(pipe);
        self.pipes.len() - 1
    }

    /// The server dies: every socket is gone with it (what the clients
    /// already hold in their buffers stays readable).
    pub fn crash(&mut self, core: Core) {
        self.core = core;
        for pipe in &mut self.pipes {
            pipe.closed = true;
            pipe.id = None;
        }
        self.by_conn.clear();
        self.to_read.clear();
    }

    /// One turn of the loop at the current virtual time.
    pub fn turn(&mut self) {
        let now = self.now;
        self.core.set_now(now);
        for n in 0..self.pipes.len() {
            let pipe = &mut self.pipes[n];
            let Some(id) = pipe.id.filter(|_| !pipe.closed) else {
                continue;
            };
            if std::mem::take(&mut pipe.writable) {
                self.core.writable(id);
            }
            if std::mem::take(&mut pipe.readable) {
                self.read(n);
            }
            self.effects();
        }
        for n in std::mem::take(&mut self.to_read) {
            self.read(n);
            self.effects();
        }
        self.core.tick(now);
        self.core.end_turn();
        while let Some(id) = self.core.next_dirty() {
            self.flush(id);
        }
        self.core.after_flush();
        self.effects();
        self.core.check_shutdown_done();
    }

    /// Reads a pipe as the loop reads a socket.
    fn read(&mut self, n: usize) {
        let Some(id) = self.pipes[n].id else { return };
        self.core.resume(id);
        for _ in 0..READS_PER_TURN {
            let pipe = &mut self.pipes[n];
            if pipe.closed || !self.core.wants_input(id) {
                return;
            }
            if pipe.reset && !pipe.told_end {
                pipe.told_end = true;
                return self.core.io_error(id);
            }
            if !pipe.up.is_empty() {
                let k = pipe.up.len().min(READ_BYTES);
                let chunk: Vec<u8> = pipe.up.drain(..k).collect();
                self.core.read(id, &chunk);
                continue;
            }
            if pipe.up_fin && !pipe.told_end {
                pipe.told_end = true;
                self.core.eof(id);
            }
            return;
        }
        self.to_read.push(n);
    }

    /// Writes a connection's queue into its pipe as far as the kernel takes.
    fn flush(&mut self, id: ConnId) {
        let Some(&n) = self.by_conn.get(&id) else {
            return;
        };
        let pipe = &mut self.pipes[n];
        let Some(out) = self.core.queue(id) else {
            return;
        };
        let before = out.buffered();
        let mut kernel = Kernel {
            buf: &mut pipe.down,
            cap: pipe.down_cap,
            digest: &mut pipe.digest,
        };
        let result = out.write_to(&mut kernel, &mut self.gather);
        let written = before - out.buffered();
        let Some(after) = self.core.flushed(id, written, result.map_err(drop)) else {
            return;
        };
        pipe.down_fin |= after.fin;
        pipe.want_writable = after.want_writable;
    }

    fn effects(&mut self) {
        while let Some(effect) = self.core.next_effect() {
            match effect {
                Effect::Close(id) => {
                    if let Some(n) = self.by_conn.remove(&id) {
                        self.pipes[n].closed = true;
                    }
                }
                Effect::Resume(id) => {
                    if let Some(&n) = self.by_conn.get(&id) {
                        self.to_read.push(n);
                    }
                }
            }
        }
    }

    /// A hash of everything the server sent on every connection, in the
    /// order the connections came: equal for two runs of one seed when the
    /// core replays byte for byte.
    pub fn digest(&self) -> u64 {
        let mut all = 0;
        for pipe in &self.pipes {
            fnv1a(&mut all, &pipe.digest.to_le_bytes());
        }
        all
    }

    /// Every connection the core still holds, with its pipe.
    pub fn open(&self) -> impl Iterator<Item = (ConnId, usize)> + '_ {
        self.by_conn.iter().map(|(id, n)| (*id, *n))
    }
}

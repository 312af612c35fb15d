//! The load client: one thread with its own `mio` poll loop and a minimal
//! WebSocket client (masked frames out, frame parsing in), driving every
//! simulated user along the real login path and counting deliveries and
//! latencies.

use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::{OPEN_CONCURRENCY, TEXT_LEN, WINDOW};

// ----- the load client ------------------------------------------------------

/// `connect()` on a non-blocking socket has begun (Linux's errno).
const EINPROGRESS: i32 = 115;

/// Where a client is on the login path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Waiting,
    LoginConnect,
    LoginResponse,
    WsConnect,
    WsResponse,
    Open,
    Closed,
}

struct Client {
    idx: u32,
    room: u32,
    st: St,
    stream: Option<TcpStream>,
    /// An unfinished HTTP response or frame.
    inbuf: Vec<u8>,
    /// Bytes the socket did not take yet.
    outbuf: Vec<u8>,
    cookie: String,
    mask: [u8; 4],
    sender: bool,
    in_flight: u32,
}

/// What the client counts while measuring.
#[derive(Default)]
pub(crate) struct Meter {
    counting: bool,
    pub(crate) deliveries: u64,
    /// Own messages that came back to their sender.
    pub(crate) own: u64,
    pub(crate) latency: Option<Histogram<u64>>,
    /// Pings answered (counted whether or not `counting`).
    pings: u64,
}

impl Meter {
    pub(crate) fn reset(&mut self, latency: bool) {
        self.counting = true;
        self.deliveries = 0;
        self.own = 0;
        self.latency =
            latency.then(|| Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"));
    }

    pub(crate) fn take(&mut self) -> Meter {
        let pings = self.pings;
        let m = std::mem::take(self);
        self.counting = false;
        self.pings = pings;
        m
    }
}

pub(crate) struct Load {
    poll: Poll,
    events: Events,
    addr: SocketAddr,
    clients: Vec<Client>,
    scratch: Vec<u8>,
    t0: Instant,
    pending: VecDeque<usize>,
    opening: usize,
    pub(crate) meter: Meter,
    /// Fan-out senders keep `WINDOW` messages in flight.
    pub(crate) window_active: bool,
    /// (next send time in ns since t0, client) for scheduled senders.
    schedule: BinaryHeap<std::cmp::Reverse<(u64, usize)>>,
    period_ns: u64,
    closed_early: usize,
    rng: u64,
    /// Source addresses to spread connections over (bind before connect),
    /// so that one address's ephemeral ports do not run out; empty: any.
    sources: Vec<std::net::IpAddr>,
}

impl Load {
    pub(crate) fn new(addr: SocketAddr) -> io::Result<Load> {
        Ok(Load {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            addr,
            clients: Vec::new(),
            scratch: vec![0; 256 * 1024],
            t0: Instant::now(),
            pending: VecDeque::new(),
            opening: 0,
            meter: Meter::default(),
            window_active: false,
            schedule: BinaryHeap::new(),
            period_ns: 0,
            closed_early: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            sources: Vec::new(),
        })
    }

    fn rand(&mut self) -> u64 {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    pub(crate) fn add_client(&mut self, room: u32, sender: bool) {
        let idx = self.clients.len() as u32;
        let m = self.rand().to_le_bytes();
        self.clients.push(Client {
            idx,
            room,
            st: St::Waiting,
            stream: None,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            cookie: String::new(),
            mask: [m[0], m[1], m[2], m[3]],
            sender,
            in_flight: 0,
        });
        self.pending.push_back(idx as usize);
    }

    fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// Logs in and upgrades every added client, `OPEN_CONCURRENCY` at a time.
    pub(crate) fn open_all(&mut self, limit: Duration) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        while !self.pending.is_empty() || self.opening > 0 {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "opening sockets timed out ({} pending, {} opening)",
                    self.pending.len(),
                    self.opening
                )));
            }
            while self.opening < OPEN_CONCURRENCY {
                let Some(i) = self.pending.pop_front() else {
                    break;
                };
                self.start(i, St::LoginConnect)?;
                self.opening += 1;
            }
            self.turn(Some(Duration::from_millis(50)))?;
        }
        let failed = self.clients.iter().filter(|c| c.st != St::Open).count();
        if failed > 0 {
            return Err(io::Error::other(format!(
                "{failed} clients could not log in and upgrade"
            )));
        }
        Ok(())
    }

    /// Pings answered since the start (one per socket per server ping
    /// round).
    pub(crate) fn pings(&self) -> u64 {
        self.meter.pings
    }

    /// Spreads new connections over these source addresses (e.g.
    /// 127.0.0.2–127.0.0.9), round-robin by client.
    pub(crate) fn spread_sources(&mut self, sources: Vec<std::net::IpAddr>) {
        self.sources = sources;
    }

    /// A non-blocking connect to the server, from the client's source
    /// address if sources are set.
    fn connect(&self, i: usize) -> io::Result<TcpStream> {
        if self.sources.is_empty() {
            return TcpStream::connect(self.addr);
        }
        use socket2::{Domain, Socket, Type};
        let source = self.sources[i % self.sources.len()];
        let socket = Socket::new(Domain::for_address(self.addr), Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::new(source, 0).into())?;
        match socket.connect(&self.addr.into()) {
            Ok(()) => {}
            // EINPROGRESS: the connect goes on; writable says when done.
            Err(e) if e.raw_os_error() == Some(EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(TcpStream::from_std(socket.into()))
    }

    /// Connects client `i` for its login or its WebSocket.
    fn start(&mut self, i: usize, st: St) -> io::Result<()> {
        let mut stream = self.connect(i)?;
        self.poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let c = &mut self.clients[i];
        c.stream = Some(stream);
        c.st = st;
        c.inbuf.clear();
        Ok(())
    }

    pub(crate) fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= end {
                return;
            }
            let mut timeout = end - now;
            if let Some(std::cmp::Reverse((at, _))) = self.schedule.peek() {
                let due = Duration::from_nanos(at.saturating_sub(self.now_ns()));
                timeout = timeout.min(due);
            }
            if let Err(e) = self.turn(Some(timeout)) {
                eprintln!("e2e: poll failed: {e}");
                return;
            }
        }
    }

    fn turn(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let ready: Vec<(usize, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token().0,
                    e.is_readable() || e.is_read_closed() || e.is_error(),
                    e.is_writable(),
                )
            })
            .collect();
        for (i, readable, writable) in ready {
            self.on_event(i, readable, writable);
        }
        self.send_scheduled();
        Ok(())
    }

    fn on_event(&mut self, i: usize, readable: bool, writable: bool) {
        match self.clients[i].st {
            St::LoginConnect | St::WsConnect if writable => self.on_connected(i),
            St::LoginResponse | St::WsResponse if readable => self.read_http(i),
            St::Open => {
                if writable {
                    self.flush(i);
                }
                if readable {
                    self.read_frames(i);
                }
            }
            _ => {}
        }
    }

    fn fail(&mut self, i: usize, why: &str) {
        let c = &mut self.clients[i];
        if c.st == St::Closed {
            return;
        }
        if c.st != St::Open {
            self.opening -= 1;
        } else {
            self.closed_early += 1;
        }
        if self.closed_early + self.opening < 3 {
            eprintln!("e2e: client {} ({:?}): {why}", c.idx, c.st);
        }
        c.st = St::Closed;
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
    }

    fn on_connected(&mut self, i: usize) {
        let port = self.addr.port();
        let c = &mut self.clients[i];
        let stream = c.stream.as_mut().expect("stream");
        if let Ok(Some(e)) | Err(e) = stream.take_error() {
            return self.fail(i, &format!("connect: {e}"));
        }
        if stream.peer_addr().is_err() {
            return; // not connected yet (a spurious event)
        }
        let _ = stream.set_nodelay(true);
        let request = if c.st == St::LoginConnect {
            let body = format!("user=u{:05}&room={}", c.idx, c.room);
            c.st = St::LoginResponse;
            format!(
                "POST /login?room={room} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len(),
                room = c.room,
            )
        } else {
            c.st = St::WsResponse;
            format!(
                "GET /rooms/{room}/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n",
                room = c.room,
                cookie = c.cookie,
            )
        };
        // A fresh socket's send buffer takes a few hundred bytes at once.
        match stream.write(request.as_bytes()) {
            Ok(n) if n == request.len() => self.read_http(i),
            Ok(_) => self.fail(i, "short write of a request"),
            Err(e) => self.fail(i, &format!("write: {e}")),
        }
    }

    /// Reads a login response (until the server closes) or an upgrade
    /// response (until its head is complete).
    fn read_http(&mut self, i: usize) {
        let mut eof = false;
        {
            let c = &mut self.clients[i];
            let Some(stream) = c.stream.as_mut() else {
                return;
            };
            loop {
                match stream.read(&mut self.scratch) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => c.inbuf.extend_from_slice(&self.scratch[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                        eof = true;
                        break;
                    }
                    Err(e) => return self.fail(i, &format!("read: {e}")),
                }
            }
        }
        let c = &mut self.clients[i];
        let Some(head_end) = find(&c.inbuf, b"\r\n\r\n").map(|p| p + 4) else {
            if eof {
                self.fail(i, "closed before a response");
            }
            return;
        };
        let status = std::str::from_utf8(c.inbuf.get(9..12).unwrap_or(b""))
            .unwrap_or("")
            .to_string();
        if c.st == St::LoginResponse {
            if !eof {
                return; // the server closes after the response
            }
            if status != "303" {
                let text = String::from_utf8_lossy(&c.inbuf).into_owned();
                return self.fail(i, &format!("login answered {text:?}"));
            }
            let head = String::from_utf8_lossy(&c.inbuf[..head_end]).into_owned();
            let cookie = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("set-cookie")
                    .then(|| value.trim().split(';').next().unwrap_or("").to_string())
            });
            let Some(cookie) = cookie else {
                return self.fail(i, "login set no cookie");
            };
            c.cookie = cookie;
            if let Some(mut s) = c.stream.take() {
                let _ = self.poll.registry().deregister(&mut s);
            }
            if let Err(e) = self.start(i, St::WsConnect) {
                self.fail(i, &format!("connect: {e}"));
            }
            return;
        }
        if status != "101" {
            let text = String::from_utf8_lossy(&c.inbuf).into_owned();
            return self.fail(i, &format!("upgrade answered {text:?}"));
        }
        c.inbuf.drain(..head_end);
        c.st = St::Open;
        self.opening -= 1;
        // Frames that came with the response.
        let mut rest = std::mem::take(&mut c.inbuf);
        let used = handle_frames(c, &rest, &mut self.meter, 0);
        rest.drain(..used);
        c.inbuf = rest;
        if eof {
            self.fail(i, "closed after the upgrade");
        } else {
            self.read_frames(i);
        }
    }

    fn read_frames(&mut self, i: usize) {
        let Load {
            clients,
            scratch,
            meter,
            t0,
            ..
        } = self;
        let c = &mut clients[i];
        let mut closed = None;
        loop {
            let Some(stream) = c.stream.as_mut() else {
                return;
            };
            match stream.read(scratch) {
                Ok(0) => {
                    closed = Some("server closed the socket".to_string());
                    break;
                }
                Ok(n) => {
                    let now_ns = if meter.latency.is_some() {
                        t0.elapsed().as_nanos() as u64
                    } else {
                        0
                    };
                    if c.inbuf.is_empty() {
                        let used = handle_frames(c, &scratch[..n], meter, now_ns);
                        c.inbuf.extend_from_slice(&scratch[used..n]);
                    } else {
                        c.inbuf.extend_from_slice(&scratch[..n]);
                        let buf = std::mem::take(&mut c.inbuf);
                        let used = handle_frames(c, &buf, meter, now_ns);
                        c.inbuf = buf;
                        c.inbuf.drain(..used);
                    }
                    if c.st == St::Closed {
                        closed = Some("server sent a close frame".into());
                        c.st = St::Open;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    closed = Some(format!("read: {e}"));
                    break;
                }
            }
        }
        if let Some(why) = closed {
            return self.fail(i, &why);
        }
        if self.window_active {
            self.refill(i);
        } else {
            self.flush(i);
        }
    }

    /// Tops a fan-out sender up to `WINDOW` messages in flight.
    pub(crate) fn refill(&mut self, i: usize) {
        let now = self.now_ns();
        let c = &mut self.clients[i];
        if c.sender && c.st == St::Open {
            while c.in_flight < WINDOW {
                push_message(c, now);
            }
        }
        self.flush(i);
    }

    pub(crate) fn schedule_all(&mut self, period: Duration) {
        self.schedule_from(0, period);
    }

    /// Every client from index `first` on sends every `period`, first
    /// sends spread over the first period.
    pub(crate) fn schedule_from(&mut self, first: usize, period: Duration) {
        self.period_ns = period.as_nanos() as u64;
        let now = self.now_ns();
        for i in first..self.clients.len() {
            let at = now + self.rand() % self.period_ns;
            self.schedule.push(std::cmp::Reverse((at, i)));
        }
    }

    pub(crate) fn stop_schedule(&mut self) {
        self.schedule.clear();
    }

    fn send_scheduled(&mut self) {
        let now = self.now_ns();
        while let Some(&std::cmp::Reverse((at, i))) = self.schedule.peek() {
            if at > now {
                break;
            }
            self.schedule.pop();
            let sent_at = self.now_ns();
            let c = &mut self.clients[i];
            if c.st == St::Open {
                push_message(c, sent_at);
                self.flush(i);
            }
            self.schedule
                .push(std::cmp::Reverse((at + self.period_ns, i)));
        }
    }

    fn flush(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let Some(stream) = c.stream.as_mut() else {
            return;
        };
        while !c.outbuf.is_empty() {
            match stream.write(&c.outbuf) {
                Ok(n) => {
                    c.outbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(i, &format!("write: {e}")),
            }
        }
    }

    pub(crate) fn check_closed(&self) -> io::Result<()> {
        if self.closed_early > 0 {
            return Err(io::Error::other(format!(
                "{} sockets closed during the run",
                self.closed_early
            )));
        }
        Ok(())
    }
}

/// Appends one masked text frame carrying `sender:time:` and padding.
fn push_message(c: &mut Client, now_ns: u64) {
    let mut text = [b'x'; TEXT_LEN];
    let mark = format!("{:05}:{:016x}:", c.idx, now_ns);
    text[..mark.len()].copy_from_slice(mark.as_bytes());
    c.outbuf.push(0x81);
    c.outbuf.push(0x80 | TEXT_LEN as u8);
    c.outbuf.extend_from_slice(&c.mask);
    for (k, b) in text.iter().enumerate() {
        c.outbuf.push(b ^ c.mask[k % 4]);
    }
    c.in_flight += 1;
}

/// Handles the whole frames at the start of `buf`; returns the bytes used.
fn handle_frames(c: &mut Client, buf: &[u8], m: &mut Meter, now_ns: u64) -> usize {
    let mut pos = 0;
    loop {
        let b = &buf[pos..];
        if b.len() < 2 {
            return pos;
        }
        let opcode = b[0] & 0x0F;
        let (len, hlen) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")) as usize,
                10,
            ),
            126 | 127 => return pos,
            n => (n as usize, 2),
        };
        if b.len() < hlen + len {
            return pos;
        }
        let payload = &b[hlen..hlen + len];
        pos += hlen + len;
        match opcode {
            1 if payload.starts_with(b"{\"type\":\"message\"") => on_message(c, payload, m, now_ns),
            9 => {
                m.pings += 1;
                // Ping → pong with the same payload (masked).
                c.outbuf.push(0x8A);
                c.outbuf.push(0x80 | payload.len() as u8);
                c.outbuf.extend_from_slice(&c.mask);
                for (k, x) in payload.iter().enumerate() {
                    c.outbuf.push(x ^ c.mask[k % 4]);
                }
            }
            8 => {
                c.st = St::Closed;
                return pos;
            }
            _ => {}
        }
    }
}

fn on_message(c: &mut Client, payload: &[u8], m: &mut Meter, now_ns: u64) {
    if m.counting {
        m.deliveries += 1;
    }
    if !c.sender && m.latency.is_none() {
        return;
    }
    // The text starts with "SSSSS:TTTTTTTTTTTTTTTT:" (sender, send time).
    let Some(at) = find(&payload[20..], b"\"text\":\"").map(|p| p + 28) else {
        return;
    };
    let Some(mark) = payload.get(at..at + 23) else {
        return;
    };
    let Some(sender) = std::str::from_utf8(&mark[..5])
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
    else {
        return;
    };
    if sender == c.idx {
        c.in_flight = c.in_flight.saturating_sub(1);
        if m.counting {
            m.own += 1;
        }
    }
    if let Some(h) = m.latency.as_mut()
        && let Some(sent) = std::str::from_utf8(&mark[6..22])
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
    {
        let us = now_ns.saturating_sub(sent) / 1000;
        let _ = h.record(us.max(1));
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

//! Helpers for the limits tests (`tests/limits*.rs`): raw WebSocket clients
//! that do exactly what a test tells them (never read, never answer a ping,
//! never finish a close), a reader of server frames, and readings of a
//! spawned server's memory and CPU time from `/proc`.
//!
//! A test file uses it next to the shared helpers:
//! `mod common; mod limits_common;`.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::common::{read_response, tcp, IO_TIMEOUT};

/// The upgrade request of a WebSocket to `path`, with the page's Origin.
pub fn upgrade_request(addr: SocketAddr, path: &str, cookie: Option<&str>) -> String {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Origin: http://{addr}\r\n{cookie}\r\n"
    )
}

/// Upgrades `stream` (read byte by byte, so nothing after the `101` head is
/// consumed: the next byte is the first frame).
pub fn upgrade_on(
    mut stream: TcpStream,
    addr: SocketAddr,
    path: &str,
    cookie: Option<&str>,
) -> TcpStream {
    stream
        .write_all(upgrade_request(addr, path, cookie).as_bytes())
        .unwrap();
    let r = read_response(&mut stream);
    assert_eq!(r.status, 101, "upgrade of {path}: {}", r.text());
    stream
}

/// A raw WebSocket on a fresh connection.
pub fn raw_ws(addr: SocketAddr, path: &str, cookie: Option<&str>) -> TcpStream {
    upgrade_on(tcp(addr), addr, path, cookie)
}

/// A connection whose kernel buffers are shrunk before connecting (so a
/// peer that does not read fills them quickly). `0` leaves a size alone.
pub fn small_buffer_tcp(addr: SocketAddr, rcvbuf: usize, sndbuf: usize) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    if rcvbuf > 0 {
        s.set_recv_buffer_size(rcvbuf).unwrap();
    }
    if sndbuf > 0 {
        s.set_send_buffer_size(sndbuf).unwrap();
    }
    s.connect(&addr.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A connection from another loopback address (`127.0.0.2`: all of
/// 127.0.0.0/8 is loopback), for tests of per-address limits.
pub fn tcp_from(source: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(source, 0).into()).unwrap();
    s.connect(&addr.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// One frame from the server (never masked).
#[derive(Debug)]
pub struct RawFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

pub const TEXT: u8 = 1;
pub const CLOSE: u8 = 8;
pub const PING: u8 = 9;
pub const PONG: u8 = 10;

impl RawFrame {
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

/// Reads one frame; `Ok(None)` at a clean end of stream between frames.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<RawFrame>> {
    let mut head = [0u8; 2];
    match r.read(&mut head[..1])? {
        0 => return Ok(None),
        _ => r.read_exact(&mut head[1..])?,
    }
    assert_eq!(head[1] & 0x80, 0, "server frames are never masked");
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    assert!(
        len <= 1 << 24,
        "absurd frame length {len}: the stream is corrupt"
    );
    let mut payload = vec![0; len];
    r.read_exact(&mut payload)?;
    Ok(Some(RawFrame {
        fin: head[0] & 0x80 != 0,
        opcode: head[0] & 0x0F,
        payload,
    }))
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
            Err(e) => panic!("connection still open after {limit:?} ({e})"),
        }
    }
}

/// True if `stream` has been closed by the peer (EOF or reset) — without
/// blocking: no data and no EOF yet means open.
pub fn is_closed(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let closed = match stream.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

/// A field of `/proc/PID/status` in kB (`VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, field: &str) -> u64 {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .expect("field in status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Clock ticks per second for `/proc/PID/stat` (`getconf CLK_TCK`, else 100).
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU time (user + system) a process has used.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the `(comm)`, which may itself contain spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

/// The value of one un-labelled metric from `GET /metrics`.
pub fn metric(addr: SocketAddr, name: &str) -> f64 {
    let r = crate::common::get(addr, "/metrics", "");
    assert_eq!(r.status, 200);
    let text = r.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// Waits for a child to exit, up to `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The soft limit on open files of this process.
pub fn own_fd_limit() -> u64 {
    let text = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap_or(u64::MAX)
}

/// Makes sure this process may open `want` files, raising its soft limit
/// with util-linux `prlimit` if needed (no `unsafe` in the tests). Returns
/// false if that is impossible here.
pub fn ensure_fd_limit(want: u64) -> bool {
    if own_fd_limit() >= want {
        return true;
    }
    let pid = std::process::id().to_string();
    let ok = Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={want}:")])
        .status()
        .is_ok_and(|s| s.success());
    ok && own_fd_limit() >= want
}

/// True when running under CI (missing tools are then failures, not skips).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether a command can be run (`NAME --version` succeeds).
pub fn have_command(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Like `common::spawn_command`, but keeps every line the server writes
/// (its log goes to stdout) for the test to inspect.
pub fn spawn_logged(cmd: &mut Command) -> (crate::common::Spawned, Log) {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = cmd
        .args(["--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().unwrap();
    let log = Log::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix("wsrooms listening on http://") {
                let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
            }
            lines.0.lock().unwrap().push(line);
        }
    });
    let addr = rx
        .recv_timeout(IO_TIMEOUT)
        .expect("wsrooms did not report its address");
    (crate::common::Spawned { child, addr }, log)
}

/// The lines a spawned server has logged so far.
#[derive(Clone, Default)]
pub struct Log(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Log {
    /// Lines containing every one of `parts`.
    pub fn matching(&self, parts: &[&str]) -> Vec<String> {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .cloned()
            .collect()
    }

    /// Waits up to `limit` for a line containing every one of `parts`.
    pub fn wait_for(&self, parts: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.matching(parts).into_iter().next() {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {parts:?} in:\n{}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn all(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// Reads until the peer closes (EOF or reset) and returns the bytes read;
/// panics if the connection is still open after `limit`.
pub fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "connection still open after {limit:?}");
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("connection still open after {limit:?} ({e})"),
        }
    }
}

/// Sends SIGTERM to a process (with `kill`, no `unsafe`).
pub fn sigterm(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill -TERM {pid} failed");
}

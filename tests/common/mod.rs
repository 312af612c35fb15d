//! Helpers shared by the integration tests: start a real server on
//! 127.0.0.1 (in a thread of the test, or as a child process), log in over
//! HTTP, open WebSockets with `tungstenite`, speak raw bytes.
//!
//! Every socket gets read and write timeouts, so no test can hang.

#![allow(dead_code, clippy::result_large_err)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

pub use wsrooms::Config;

/// Default time any single read may take in a test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A config for tests: port 0 (any free port), everything else default.
pub fn test_config() -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        log_level: "warn".into(),
        ..Config::default()
    }
}

/// Starts a server in a thread of this test process; returns its address.
/// (The server is not `Send`, so it is built inside its thread.)
pub fn start(config: Config) -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut server = wsrooms::Server::bind(config).expect("bind");
        tx.send(server.local_addr()).unwrap();
        server.run().expect("server loop");
    });
    rx.recv_timeout(IO_TIMEOUT).expect("server did not start")
}

/// A server started as a child process of the real binary.
pub struct Spawned {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `target/…/wsrooms --bind 127.0.0.1:0 ARGS` and waits for its
/// "listening on" line.
pub fn spawn_binary(args: &[&str]) -> Spawned {
    spawn_command(Command::new(env!("CARGO_BIN_EXE_wsrooms")).args(args))
}

/// Like [`spawn_binary`] with a prepared command (e.g. wrapped in `prlimit`).
pub fn spawn_command(cmd: &mut Command) -> Spawned {
    let mut child = cmd
        .args(["--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn wsrooms");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(Ok(line)) = lines.next() {
            if let Some(addr) = line.strip_prefix("wsrooms listening on http://") {
                let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
            }
        }
    });
    let addr = rx
        .recv_timeout(IO_TIMEOUT)
        .expect("wsrooms did not report its address");
    Spawned { child, addr }
}

/// A raw TCP connection with timeouts.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (head + `Content-Length` body) from `stream`.
pub fn read_response(stream: &mut TcpStream) -> HttpResponse {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read response head");
        assert!(
            n == 1,
            "connection closed before a full response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    stream.read_exact(&mut body).expect("read body");
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// Sends a raw request on a new connection and reads the response.
pub fn http_raw(addr: SocketAddr, request: &str) -> HttpResponse {
    let mut s = tcp(addr);
    s.write_all(request.as_bytes()).unwrap();
    read_response(&mut s)
}

pub fn get(addr: SocketAddr, path: &str, extra_headers: &str) -> HttpResponse {
    http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}Connection: close\r\n\r\n"),
    )
}

/// Percent-encodes a form value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `POST /login?room=N` with the form; returns the response.
pub fn login_raw(addr: SocketAddr, user: &str, room: &str) -> HttpResponse {
    let body = format!("user={}&room={}", urlencode(user), urlencode(room));
    http_raw(
        addr,
        &format!(
            "POST /login?room={} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            urlencode(room),
            body.len()
        ),
    )
}

/// Logs in and returns the cookie pair `wsrooms_session=…`.
pub fn login(addr: SocketAddr, user: &str, room: u32) -> String {
    let r = login_raw(addr, user, &room.to_string());
    assert_eq!(r.status, 303, "login of {user} to {room}: {}", r.text());
    assert_eq!(
        r.header("Location"),
        Some(format!("/rooms/{room}").as_str())
    );
    let cookie = r.header("Set-Cookie").expect("cookie");
    cookie.split(';').next().unwrap().to_string()
}

pub type Ws = WebSocket<TcpStream>;

/// Opens a room socket with the page's own Origin.
pub fn ws_connect(addr: SocketAddr, room: u32, cookie: &str) -> Ws {
    ws_connect_path(
        addr,
        &format!("/rooms/{room}/ws"),
        Some(cookie),
        Some(&format!("http://{addr}")),
    )
    .expect("websocket handshake")
}

/// Opens a WebSocket to any path with optional cookie and Origin.
pub fn ws_connect_path(
    addr: SocketAddr,
    path: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(c) = cookie {
        request.headers_mut().insert("Cookie", c.parse().unwrap());
    }
    if let Some(o) = origin {
        request.headers_mut().insert("Origin", o.parse().unwrap());
    }
    let stream = tcp(addr);
    match tungstenite::client::client(request, stream) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
        Err(tungstenite::HandshakeError::Interrupted(_)) => {
            panic!("blocking handshake interrupted")
        }
    }
}

/// Reads the next text message as JSON (skipping pings).
pub fn next_event(ws: &mut Ws) -> serde_json::Value {
    loop {
        match ws.read().expect("read event") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("event is JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text event, got {other:?}"),
        }
    }
}

/// Reads events until one has `"type": kind`; returns it.
pub fn next_of_type(ws: &mut Ws, kind: &str) -> serde_json::Value {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "no {kind} event in time");
        let e = next_event(ws);
        if e["type"] == kind {
            return e;
        }
    }
}

/// Reads until the server's close frame; returns its code and reason.
pub fn expect_close(ws: &mut Ws) -> (u16, String) {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => {
                return (frame.code.into(), frame.reason.to_string())
            }
            Ok(Message::Close(None)) => return (1005, String::new()),
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got error {e}"),
        }
    }
}

/// Login + connect + read the welcome.
pub fn join(addr: SocketAddr, user: &str, room: u32) -> (Ws, serde_json::Value) {
    let cookie = login(addr, user, room);
    let mut ws = ws_connect(addr, room, &cookie);
    let welcome = next_event(&mut ws);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, welcome)
}

/// A masked client frame.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    wsrooms::ws::frame::encode_client_frame(fin, opcode, [0x37, 0xfa, 0x21, 0x3d], payload)
}

/// Waits until `cond` holds, polling every few milliseconds, up to `limit`.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// A program found on `PATH`.
pub fn on_path(name: &str) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// For tests that need an outside tool: true when it was `found`; otherwise
/// says why `suite` is skipped and returns false, or panics under `CI=true`
/// (CI installs every tool, so a missing one there is a failure).
pub fn require_tool(suite: &str, what: &str, found: bool) -> bool {
    if found {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{suite}: {what} is missing (CI=true, so this is a failure)");
    }
    eprintln!("{suite} SKIPPED: {what} is missing");
    false
}

/// What a child process run by [`run_bounded`] left behind.
pub struct Finished {
    /// `None` when it was killed at the time limit.
    pub status: Option<std::process::ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with its output captured (both pipes drained in threads, so a
/// chatty child cannot block on a full pipe) and kills it, with its process
/// group if it leads one, after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Finished {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start child process");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Finished {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

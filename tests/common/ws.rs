//! WebSocket clients: `tungstenite` ones that log in and read JSON events,
//! and raw sockets upgraded by hand that do exactly what a test tells them
//! (never read, never answer a ping, never finish a close).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use tungstenite::Message;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocket;

use super::IO_TIMEOUT;
use super::http::{login, read_response, tcp};

pub type Ws = WebSocket<TcpStream>;

// ----- tungstenite clients ---------------------------------------------------

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
                return (frame.code.into(), frame.reason.to_string());
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

/// Opens a WebSocket to `path` (with the page's Origin) offering the
/// subprotocols `offer` (one `Sec-WebSocket-Protocol` value); returns it
/// and the subprotocol the `101` named (the client checks it is one it
/// offered).
pub fn ws_connect_offering(
    addr: SocketAddr,
    path: &str,
    cookie: &str,
    offer: &str,
) -> (Ws, Option<String>) {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("Cookie", cookie.parse().unwrap());
    headers.insert("Origin", format!("http://{addr}").parse().unwrap());
    headers.insert("Sec-WebSocket-Protocol", offer.parse().unwrap());
    match tungstenite::client::client(request, tcp(addr)) {
        Ok((ws, response)) => {
            let chosen = response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .map(|v| v.to_str().unwrap().to_string());
            (ws, chosen)
        }
        Err(e) => panic!("websocket handshake: {e:?}"),
    }
}

/// Login + a room socket speaking `wsrooms.v2` (`?since=N` if given) + its
/// welcome; returns the socket, the welcome and the session cookie.
pub fn join_v2(addr: SocketAddr, user: &str, room: u32) -> (Ws, serde_json::Value, String) {
    let cookie = login(addr, user, room);
    let (ws, welcome) = open_v2(addr, room, &cookie, None);
    (ws, welcome, cookie)
}

/// A `wsrooms.v2` room socket of the session `cookie` (with `?since=N` if
/// given), and its welcome.
pub fn open_v2(
    addr: SocketAddr,
    room: u32,
    cookie: &str,
    since: Option<u64>,
) -> (Ws, serde_json::Value) {
    let since = since.map(|n| format!("?since={n}")).unwrap_or_default();
    let path = format!("/rooms/{room}/ws{since}");
    let (mut ws, chosen) = ws_connect_offering(addr, &path, cookie, "wsrooms.v2");
    assert_eq!(chosen.as_deref(), Some("wsrooms.v2"));
    let welcome = next_event(&mut ws);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (ws, welcome)
}

/// Sends one JSON command as a text frame.
pub fn send_json(ws: &mut Ws, command: serde_json::Value) {
    ws.send(Message::text(command.to_string()))
        .expect("send a command");
}

// ----- raw sockets -----------------------------------------------------------

/// The mask key of every client frame the tests write.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client frame.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    wsrooms::ws::frame::encode_client_frame(fin, opcode, MASK, payload)
}

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

/// The `seq` of each message in a `welcome` event's `history`, in order.
pub fn history_seqs(welcome: &serde_json::Value) -> Vec<u64> {
    history_field(welcome, |m| m["seq"].as_u64().unwrap())
}

/// The `text` of each message in a `welcome` event's `history`, in order.
pub fn history_texts(welcome: &serde_json::Value) -> Vec<String> {
    history_field(welcome, |m| m["text"].as_str().unwrap().to_string())
}

/// One value per message of a `welcome` event's `history`, in order.
pub fn history_field<T>(
    welcome: &serde_json::Value,
    field: impl Fn(&serde_json::Value) -> T,
) -> Vec<T> {
    welcome["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(field)
        .collect()
}

// ----- a slow reader -----------------------------------------------------------

/// A client of `/echo` that reads its echo at a bounded rate, from a
/// thread: it sends one binary message of `bytes` (the server needs
/// `--echo` and a `--max-message-bytes` that large), then reads at most
/// `rate` bytes a second until the stream ends or it is dropped. Its kernel
/// receive buffer is small, so the server's queue for it drains at that
/// pace: a peer that makes progress, slowly. (The server sees progress
/// each time its kernel send buffer, which may grow to a few MB, has room
/// again: `rate` must refill a good part of that within the server's stall
/// time, so a few MB a second.)
pub struct SlowReader {
    /// Bytes read so far.
    pub read: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SlowReader {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn slow_echo_reader(addr: SocketAddr, bytes: usize, rate: usize) -> SlowReader {
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;
    let mut stream = upgrade_on(
        super::http::small_buffer_tcp(addr, 4096, 0),
        addr,
        "/echo",
        None,
    );
    stream
        .write_all(&client_frame(
            true,
            super::frames::BINARY,
            &vec![b'x'; bytes],
        ))
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let read = std::sync::Arc::new(AtomicUsize::new(0));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (r, s) = (read.clone(), stop.clone());
    let thread = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let started = Instant::now();
        let mut total = 0usize;
        while !s.load(Ordering::Relaxed) {
            match stream.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    total += n;
                    r.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
            // Ahead of the rate: wait until it catches up.
            while total as f64 > rate as f64 * started.elapsed().as_secs_f64() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    SlowReader {
        read,
        stop,
        thread: Some(thread),
    }
}

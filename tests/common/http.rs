//! Loopback sockets with timeouts (plain, from another loopback address,
//! with shrunk kernel buffers), HTTP/1.1 requests and responses written and
//! read by hand, and the login form.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use super::IO_TIMEOUT;

// ----- sockets ---------------------------------------------------------------

/// A raw TCP connection with timeouts.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    with_timeouts(TcpStream::connect(addr).expect("connect"))
}

/// A connection from another loopback address (`127.0.0.2`: all of
/// 127.0.0.0/8 is loopback), for tests of per-address limits.
pub fn tcp_from(source: IpAddr, addr: SocketAddr) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(source, 0).into()).unwrap();
    s.connect(&addr.into()).unwrap();
    with_timeouts(s.into())
}

/// A connection whose kernel buffers are shrunk before connecting (so a
/// peer that does not read fills them quickly). `0` leaves a size alone.
pub fn small_buffer_tcp(addr: SocketAddr, rcvbuf: usize, sndbuf: usize) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    if rcvbuf > 0 {
        s.set_recv_buffer_size(rcvbuf).unwrap();
    }
    if sndbuf > 0 {
        s.set_send_buffer_size(sndbuf).unwrap();
    }
    s.connect(&addr.into()).unwrap();
    with_timeouts(s.into())
}

/// Read and write timeouts of [`IO_TIMEOUT`], and no Nagle delay.
fn with_timeouts(s: TcpStream) -> TcpStream {
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
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

/// Panics saying what a failed read of `what` means: a read that timed
/// out (`WouldBlock` or `TimedOut`, by the socket's read timeout) is a
/// server that did not answer in time, not a broken one.
#[track_caller]
pub fn read_failed(what: &str, e: &io::Error) -> ! {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => panic!(
            "reading {what}: the server did not answer within {} s",
            IO_TIMEOUT.as_secs()
        ),
        _ => panic!("reading {what}: {e}"),
    }
}

// ----- HTTP ------------------------------------------------------------------

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

/// Reads one response head, through its empty line, byte by byte (so
/// nothing after it is consumed: an upgraded socket's next byte is its
/// first frame).
pub fn read_head(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream
            .read(&mut byte)
            .unwrap_or_else(|e| read_failed("a response head", &e));
        assert!(
            n == 1,
            "connection closed before a full response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    String::from_utf8(buf).unwrap()
}

/// Reads one response (head + `Content-Length` body) from `stream`.
pub fn read_response(stream: &mut TcpStream) -> HttpResponse {
    let head = read_head(stream);
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
    stream
        .read_exact(&mut body)
        .unwrap_or_else(|e| read_failed("a response body", &e));
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

/// `GET path` on a new connection, with `extra_headers` (whole lines).
pub fn get(addr: SocketAddr, path: &str, extra_headers: &str) -> HttpResponse {
    http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}Connection: close\r\n\r\n"),
    )
}

// ----- login -----------------------------------------------------------------

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
    http_raw(addr, &login_request(addr, user, room))
}

/// The bytes of `POST /login?room=N` with the form (`Connection: close`).
pub fn login_request(addr: SocketAddr, user: &str, room: &str) -> String {
    let body = format!("user={}&room={}", urlencode(user), urlencode(room));
    format!(
        "POST /login?room={} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        urlencode(room),
        body.len()
    )
}

/// `POST /logout?room=N` as the room page's button sends it: with the
/// cookie pair (if any), and `extra` header lines (an `Origin`, …).
pub fn logout_raw(addr: SocketAddr, room: u32, cookie: Option<&str>, extra: &str) -> HttpResponse {
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    http_raw(
        addr,
        &format!(
            "POST /logout?room={room} HTTP/1.1\r\nHost: {addr}\r\n{cookie}{extra}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    )
}

/// `POST /login?room=N` from another loopback address (`source`).
pub fn login_from(source: IpAddr, addr: SocketAddr, user: &str, room: u32) -> HttpResponse {
    let mut s = tcp_from(source, addr);
    s.write_all(login_request(addr, user, &room.to_string()).as_bytes())
        .unwrap();
    read_response(&mut s)
}

/// The cookie pair `wsrooms_session=…` of a login's `303`.
pub fn cookie_of(r: &HttpResponse) -> String {
    assert_eq!(r.status, 303, "a login: {}", r.text());
    let cookie = r.header("Set-Cookie").expect("cookie");
    cookie.split(';').next().unwrap().to_string()
}

// ----- the admin API ---------------------------------------------------------

/// `POST path` to the admin API with `form`, as the deployment guide's
/// `curl` lines send it: `Host` the admin address, `Wsrooms-Admin: yes`.
pub fn admin_post(admin: SocketAddr, path: &str, form: &str) -> HttpResponse {
    admin_request(admin, "POST", path, "Wsrooms-Admin: yes\r\n", form)
}

/// A request to the admin API with `Host` the admin address, `headers`
/// (whole lines) and a urlencoded `body` (none if empty and not a POST).
pub fn admin_request(
    admin: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> HttpResponse {
    admin_raw(
        admin,
        method,
        path,
        &format!("Host: {admin}\r\n{headers}"),
        body,
    )
}

/// A request to the admin API with exactly these header lines (`Host`
/// included, or not), and the form `body` for a POST.
pub fn admin_raw(
    admin: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> HttpResponse {
    let form = match method {
        "POST" => format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ),
        _ => String::new(),
    };
    http_raw(
        admin,
        &format!("{method} {path} HTTP/1.1\r\n{headers}{form}Connection: close\r\n\r\n{body}"),
    )
}

/// The JSON body of a response.
pub fn json_of(r: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
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

//! Limits per client address (issue 11 §4): `--max-connections-per-ip`
//! (`503`) and `--login-rate-per-ip` / `--login-burst-per-ip` (`429` with
//! `Retry-After`). The client address is the TCP peer (127.0.0.1 and
//! 127.0.0.2 here: all of 127.0.0.0/8 is loopback), or when that peer is
//! a proxy named by `--trust-proxy`, the last `X-Forwarded-For` entry.
//!
//! The real binary, real sockets. Logins meant to be "rapid" are pipelined
//! in one write, so they arrive in the same instant however slow the machine.

mod common;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

fn spawn(dir: &TempDir, extra: &[&str]) -> Spawned {
    let mut args = vec!["--bind", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    spawn_isolated(&args, &[], dir.join("wsrooms.log"))
}

/// `GET /healthz` on a kept-alive connection, with `extra` header lines.
fn healthz(stream: &mut TcpStream, addr: SocketAddr, extra: &str) -> HttpResponse {
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n").as_bytes())
        .unwrap();
    read_response(stream)
}

/// A fresh connection from `source` that gets `200` for `/healthz`.
fn served(source: Option<IpAddr>, addr: SocketAddr, extra: &str) -> TcpStream {
    let mut s = match source {
        Some(ip) => tcp_from(ip, addr),
        None => tcp(addr),
    };
    let r = healthz(&mut s, addr, extra);
    assert_eq!(r.status, 200, "{}", r.text());
    s
}

/// The `503` a connection over the limit gets, then EOF.
fn assert_refused_503(mut stream: TcpStream, what: &str) {
    let r = read_response(&mut stream);
    assert_eq!(r.status, 503, "{what}: {}", r.text());
    assert!(r.header("Retry-After").is_some(), "{what}: Retry-After");
    read_until_closed(&mut stream, Duration::from_secs(10));
}

fn metrics_from(source: IpAddr, addr: SocketAddr) -> String {
    let mut s = tcp_from(source, addr);
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 200);
    r.text()
}

#[test]
fn one_address_gets_at_most_its_connections() {
    let dir = TempDir::new("per-ip-conns");
    let s = spawn(&dir, &["--max-connections-per-ip", "3", "--echo"]);
    // Three from 127.0.0.1, one of them a WebSocket (sockets count too).
    let ws = raw_ws(s.addr, "/echo", None);
    let _a = served(None, s.addr, "");
    let _b = served(None, s.addr, "");
    // The fourth: 503 at once, then closed.
    assert_refused_503(tcp(s.addr), "4th from 127.0.0.1");
    // Another address is served meanwhile.
    let _c = served(Some(OTHER), s.addr, "");
    let text = metrics_from(OTHER, s.addr);
    assert_eq!(
        metric_with(&text, "wsrooms_refused_total", "reason=\"ip_connections\""),
        Some(1.0)
    );
    assert_eq!(metric(&text, "wsrooms_peer_addresses"), Some(2.0));
    s.log
        .wait_for(&["--max-connections-per-ip 3 reached"], IO_TIMEOUT);
    // One closes: once the server has seen it go, a new one is served.
    drop(ws);
    assert!(
        wait_until(Duration::from_secs(10), || healthz_status(s.addr)
            == Some(200)),
        "no connection served after one closed"
    );
}

/// A fresh connection's answer to `GET /healthz` (`Connection: close`),
/// read to the end, whether it was refused at accept or served.
fn healthz_status(addr: SocketAddr) -> Option<u16> {
    let mut stream = tcp(addr);
    let _ = stream.write_all(
        format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let bytes = read_until_closed(&mut stream, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&bytes);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_address_is_counted() {
    let dir = TempDir::new("per-ip-proxy");
    let s = spawn(
        &dir,
        &[
            "--trust-proxy",
            "--max-connections-per-ip",
            "2",
            "--login-rate-per-ip",
            "1",
            "--login-burst-per-ip",
            "1",
        ],
    );
    let a = "X-Forwarded-For: 203.0.113.7\r\n";
    // The last entry counts: the one the proxy appended.
    let b = "X-Forwarded-For: 203.0.113.7, 198.51.100.9\r\n";
    // Every TCP peer is the proxy (127.0.0.1): more than two connections
    // from it are fine, two per forwarded address.
    let mut a1 = served(None, s.addr, a);
    let _a2 = served(None, s.addr, a);
    let _b1 = served(None, s.addr, b);
    let _b2 = served(None, s.addr, b);
    let mut a3 = tcp(s.addr);
    let r = healthz(&mut a3, s.addr, a);
    assert_eq!(r.status, 503, "{}", r.text());
    read_until_closed(&mut a3, Duration::from_secs(10));
    // A proxy reuses its connections for other clients: a1 now carries a
    // request of another address, so 203.0.113.7 has a place again.
    assert_eq!(
        healthz(&mut a1, s.addr, "X-Forwarded-For: 192.0.2.1\r\n").status,
        200
    );
    let _a3 = served(None, s.addr, a);
    // Logins are counted by forwarded address too.
    let login_a = login_request(s.addr, "hana", "X-Forwarded-For: 192.0.2.3\r\n");
    let r = pipelined(&mut tcp(s.addr), &[login_a.clone(), login_a]);
    assert_eq!((r[0].status, r[1].status), (303, 429));
    let mut other = tcp(s.addr);
    other
        .write_all(login_request(s.addr, "ines", "X-Forwarded-For: 192.0.2.2\r\n").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut other).status, 303);
}

/// `--trust-proxy` names the proxies: a client that reaches the server
/// directly (here from 127.0.0.1, while only 127.0.0.2 is a proxy) and
/// names a fresh address in each request's `X-Forwarded-For` is still
/// counted by its TCP address, so the per-address login limit holds; the
/// proxy's forwarded addresses count as before.
#[test]
fn a_peer_not_named_by_trust_proxy_is_counted_by_its_tcp_address() {
    let dir = TempDir::new("per-ip-spoof");
    let s = spawn(
        &dir,
        &[
            "--trust-proxy",
            "127.0.0.2",
            "--login-rate-per-ip",
            "1",
            "--login-burst-per-ip",
            "2",
        ],
    );
    s.log.wait_for(&["trust_proxy=127.0.0.2/32"], IO_TIMEOUT);
    let spoofed: Vec<String> = (0..6)
        .map(|i| {
            let xff = format!("X-Forwarded-For: 198.51.100.{}\r\n", 10 + i);
            login_request(s.addr, &format!("spoof{i}"), &xff)
        })
        .collect();
    let r = pipelined(&mut tcp(s.addr), &spoofed);
    let statuses: Vec<u16> = r.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [303, 303, 429, 429, 429, 429], "from 127.0.0.1");
    // Through the proxy, each forwarded address has its own burst.
    let proxied: Vec<String> = (0..4)
        .map(|i| {
            let xff = format!("X-Forwarded-For: 192.0.2.{}\r\n", 10 + i);
            login_request(s.addr, &format!("via{i}"), &xff)
        })
        .collect();
    let r = pipelined(&mut tcp_from(OTHER, s.addr), &proxied);
    assert!(r.iter().all(|r| r.status == 303), "via the proxy 127.0.0.2");
    let text = metrics_from(OTHER, s.addr);
    assert_eq!(
        metric_with(&text, "wsrooms_refused_total", "reason=\"login_rate\""),
        Some(4.0)
    );
}

/// A `POST /login` kept alive, for pipelining.
fn login_request(addr: SocketAddr, user: &str, extra: &str) -> String {
    let body = format!("user={}&room=3", urlencode(user));
    format!(
        "POST /login?room=3 HTTP/1.1\r\nHost: {addr}\r\n{extra}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `requests` in one write (so they arrive at once); reads as many
/// responses.
fn pipelined(stream: &mut TcpStream, requests: &[String]) -> Vec<HttpResponse> {
    stream.write_all(requests.concat().as_bytes()).unwrap();
    requests.iter().map(|_| read_response(stream)).collect()
}

#[test]
fn logins_from_one_address_are_rate_limited_refused_ones_included() {
    let dir = TempDir::new("per-ip-logins");
    let s = spawn(
        &dir,
        &["--login-rate-per-ip", "1", "--login-burst-per-ip", "2"],
    );
    // Three at once: an invalid one (400, still counted), a good one, then
    // the bucket is empty.
    let invalid = login_request(s.addr, "", "");
    let good = login_request(s.addr, "jon", "");
    let third = login_request(s.addr, "kim", "");
    let mut stream = tcp(s.addr);
    let r = pipelined(&mut stream, &[invalid, good, third]);
    assert_eq!(r[0].status, 400, "{}", r[0].text());
    assert_eq!(r[1].status, 303, "{}", r[1].text());
    assert_eq!(r[2].status, 429, "{}", r[2].text());
    assert_eq!(r[2].header("Retry-After"), Some("1"));
    assert_eq!(r[2].header("Set-Cookie"), None);
    // Another address is not affected.
    let mut other = tcp_from(OTHER, s.addr);
    other
        .write_all(login_request(s.addr, "kim", "").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut other).status, 303, "from 127.0.0.2");
    let text = metrics_from(OTHER, s.addr);
    assert_eq!(
        metric_with(&text, "wsrooms_refused_total", "reason=\"login_rate\""),
        Some(1.0)
    );
    assert_eq!(metric(&text, "wsrooms_sessions"), Some(2.0), "jon and kim");
    assert_eq!(metric(&text, "wsrooms_peer_addresses"), Some(2.0));
}

//! Two HTTP/1.x courtesies, over real sockets: a client that sends
//! `Expect: 100-continue` and waits with its body gets `100 Continue` when
//! the body is wanted, or the final status at once when it is not
//! (RFC 9110 §10.1.1); and an HTTP/1.0 client that asks to keep its
//! connection (`Connection: keep-alive`) is told it was kept.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

/// How long a client waits for the `100` before it would send the body
/// anyway (curl waits 1 s; a test can afford more).
const CONTINUE_WAIT: Duration = Duration::from_secs(5);

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A login head that announces `body` and waits for `100 Continue`, with
/// `extra` header lines.
fn login_head(addr: SocketAddr, body: &str, extra: &str) -> String {
    format!(
        "POST /login?room=7 HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n{extra}\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
}

/// Reads exactly the bytes of `100 Continue`, or says it did not come.
fn read_continue(s: &mut TcpStream) {
    s.set_read_timeout(Some(CONTINUE_WAIT)).unwrap();
    let mut got = vec![0; CONTINUE.len()];
    if let Err(e) = s.read_exact(&mut got) {
        panic!("no `100 Continue` within {CONTINUE_WAIT:?}: {e}");
    }
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(CONTINUE)
    );
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
}

/// Reads the final answer to a request whose body was never sent: it must
/// come without the body, and the connection closes after it.
fn final_status_without_body(addr: SocketAddr, head: &str) -> HttpResponse {
    let mut s = tcp(addr);
    s.write_all(head.as_bytes()).unwrap();
    s.set_read_timeout(Some(CONTINUE_WAIT)).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.header("Connection"), Some("close"), "{head}");
    assert!(read_until_closed(&mut s, IO_TIMEOUT).is_empty());
    r
}

#[test]
fn a_wanted_body_is_asked_for_with_100_continue() {
    let addr = start(test_config());
    let body = "user=patient&room=7";
    let mut s = tcp(addr);
    s.write_all(login_head(addr, body, "").as_bytes()).unwrap();
    read_continue(&mut s);
    s.write_all(body.as_bytes()).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(r.header("Set-Cookie").is_some());
    // The connection goes on: the next request is answered.
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut s).status, 200);
}

#[test]
fn an_unwanted_body_gets_the_final_status_at_once() {
    let addr = start(test_config());
    let body = "user=eve&room=7";
    let foreign = login_head(addr, body, "Origin: http://evil.example\r\n");
    assert_eq!(final_status_without_body(addr, &foreign).status, 403);
    let not_a_form =
        login_head(addr, body, "").replace("application/x-www-form-urlencoded", "text/plain");
    assert_eq!(final_status_without_body(addr, &not_a_form).status, 415);
    let elsewhere = format!(
        "POST /nowhere HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 10\r\n\
         Expect: 100-continue\r\n\r\n"
    );
    assert_eq!(final_status_without_body(addr, &elsewhere).status, 404);
}

#[test]
fn a_kept_http10_connection_is_told_so() {
    let addr = start(test_config());
    let mut s = tcp(addr);
    for _ in 0..2 {
        s.write_all(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let r = read_response(&mut s);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), Some("keep-alive"));
    }
    s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(read_until_closed(&mut s, IO_TIMEOUT).is_empty());
}

//! Every refusal and forced close is logged as one line naming the peer and
//! the reason (`431`, `403`, `1002`, `1003`, `1008 rate limit`), and a flood
//! gives one line, not one per message.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn each_refusal_and_forced_close_logs_one_line_with_peer_and_reason() {
    let server =
        spawn_command(Command::new(env!("CARGO_BIN_EXE_wsrooms")).args(["--log-level", "info"]));
    let log = server.log.clone();
    let addr = server.addr;
    let wait = Duration::from_secs(5);

    // A request head over --max-head-bytes: 431.
    let mut big = tcp(addr);
    let peer = big.local_addr().unwrap().to_string();
    big.write_all(format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(9000)).as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut big).status, 431);
    log.wait_for(&[&peer, "refused", "431"], wait);

    // A handshake from a foreign origin: 403.
    let cookie = login(addr, "origin", 6);
    let mut foreign = tcp(addr);
    let peer = foreign.local_addr().unwrap().to_string();
    let request = upgrade_request(addr, "/rooms/6/ws", Some(&cookie)).replace(
        &format!("Origin: http://{addr}"),
        "Origin: http://evil.example",
    );
    foreign.write_all(request.as_bytes()).unwrap();
    assert_eq!(read_response(&mut foreign).status, 403);
    log.wait_for(&[&peer, "refused", "403"], wait);

    // A protocol error: 1002.
    let mut bad = raw_ws(addr, "/rooms/6/ws", Some(&cookie));
    let peer = bad.local_addr().unwrap().to_string();
    bad.write_all(&[0x81, 0x02, b'h', b'i']).unwrap(); // unmasked
    assert_eq!(read_until_opcode(&mut bad, CLOSE).close().0, 1002);
    log.wait_for(&[&peer, "1002"], wait);

    // A binary message on a chat socket: 1003.
    let cookie = login(addr, "binary", 6);
    let mut binary = raw_ws(addr, "/rooms/6/ws", Some(&cookie));
    let peer = binary.local_addr().unwrap().to_string();
    binary
        .write_all(&client_frame(true, 2, b"\x00\x01"))
        .unwrap();
    assert_eq!(read_until_opcode(&mut binary, CLOSE).close().0, 1003);
    log.wait_for(&[&peer, "1003"], wait);

    // A flood: one line, not one per message.
    let cookie = login(addr, "flood", 6);
    let mut flood = raw_ws(addr, "/rooms/6/ws", Some(&cookie));
    let peer = flood.local_addr().unwrap().to_string();
    let burst: Vec<u8> = (0..1000)
        .flat_map(|i| client_frame(true, 1, format!("m{i}").as_bytes()))
        .collect();
    flood.write_all(&burst).unwrap();
    assert_eq!(
        read_until_opcode(&mut flood, CLOSE).close(),
        (1008, "rate limit".to_string())
    );
    log.wait_for(&[&peer, "rate limit"], wait);
    // The rest of the flood reaches the server before our close frame, and
    // the server ends the connection only after reading that: once it has
    // (EOF here), every line the flood could cause is written.
    flood
        .write_all(&client_frame(true, CLOSE, &1000u16.to_be_bytes()))
        .unwrap();
    read_to_eof(&mut flood, wait);
    // The log is one stream written in order: once a line the server
    // writes after that shows up, every earlier line has been read.
    let mut marker = tcp(addr);
    let marker_peer = marker.local_addr().unwrap().to_string();
    marker
        .write_all(format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "m".repeat(9000)).as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut marker).status, 431);
    log.wait_for(&[&marker_peer, "refused", "431"], wait);
    assert_eq!(log.matching(&[&peer]).len(), 1, "{}", log.all());
}

//! The limit on open connections: past `--max-connections` a connection gets
//! a well-formed `503` whether it is silent or has sent its request; at the
//! open-files limit the server lowers its connection cap to fit, refuses
//! with `503` below it, and when `accept` fails with `EMFILE` it neither
//! crashes nor spins, and serves the waiting clients once others close.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Runs under `common::harness` (`harness = false` in Cargo.toml), so
/// that a case skipped for a missing tool shows in `cargo test`'s output.
fn main() -> std::process::ExitCode {
    common::harness::run(
        "connection_limits",
        &[
            (
                "out_of_file_descriptors_refuses_stays_responsive_and_does_not_spin",
                out_of_file_descriptors_refuses_stays_responsive_and_does_not_spin,
            ),
            (
                "the_connection_past_max_connections_gets_503",
                the_connection_past_max_connections_gets_503,
            ),
            (
                "the_503_past_max_connections_has_a_correct_content_length",
                the_503_past_max_connections_has_a_correct_content_length,
            ),
        ],
    )
}

fn out_of_file_descriptors_refuses_stays_responsive_and_does_not_spin() {
    if !require(
        "connection_limits::out_of_file_descriptors_refuses_stays_responsive_and_does_not_spin",
        "prlimit",
        "apt-get install util-linux",
        runs("prlimit", &["--version"]),
    ) {
        return;
    }
    let server = spawn_command(Command::new("prlimit").args([
        "--nofile=64:64",
        env!("CARGO_BIN_EXE_wsrooms"),
        "--head-timeout-secs",
        "60",
        "--log-level",
        "info",
    ]));
    let log = server.log.clone();
    let (addr, pid) = (server.addr, server.child.id());
    // The server saw the limit and lowered --max-connections to fit.
    let line = log.wait_for(&["--max-connections", "lowered to"], IO_TIMEOUT);
    let cap: usize = line
        .split("lowered to ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(cap < 64, "{line}");

    // Fill every slot (the last one with the metrics request itself).
    let mut held: Vec<TcpStream> = (0..cap - 1).map(|_| tcp(addr)).collect();
    assert_eq!(read_metric(addr, "wsrooms_connections"), cap as f64);
    held.push(tcp(addr));
    // Beyond it: 503, whether the client is silent or has already sent its
    // request when the server accepts it.
    for i in 0..10 {
        let mut s = tcp(addr);
        if i % 2 == 1 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
        }
        assert_eq!(
            read_response(&mut s).status,
            503,
            "connection {i} beyond the limit"
        );
    }
    let cpu_before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(1));
    let cpu = cpu_time(pid) - cpu_before;
    assert!(
        cpu < Duration::from_millis(200),
        "{cpu:?} of CPU in 1 s while full"
    );
    // Refusals are logged once, not once per connection.
    assert_eq!(
        log.matching(&["refused with 503"]).len(),
        1,
        "{}",
        log.all()
    );

    // Now run it out of descriptors for real (its count of connections
    // still thinks there is room): accept fails with EMFILE while the
    // backlog holds waiting clients. It must neither crash nor spin.
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=32:32"])
        .status()
        .unwrap();
    assert!(status.success(), "prlimit --pid failed");
    held.truncate(cap - 8); // fewer connections, still more fds than 32
    let mut waiting: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = tcp(addr);
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    log.wait_for(
        &["accept failed", "pausing accepts"],
        Duration::from_secs(5),
    );
    let window = Duration::from_secs(2);
    let cpu_before = cpu_time(pid);
    std::thread::sleep(window);
    let cpu = cpu_time(pid) - cpu_before;
    common::harness::note(format!(
        "out of descriptors: server CPU {cpu:?} in {window:?} with a full backlog"
    ));
    assert!(
        cpu < window / 5,
        "the accept loop spins: {cpu:?} of CPU in {window:?}"
    );
    assert_eq!(
        log.matching(&["accept failed"]).len(),
        1,
        "accept errors flood the log:\n{}",
        log.all()
    );
    assert!(is_running(pid), "the server died");

    // Once others close, the waiting clients are served, and new ones too.
    held.clear();
    for s in &mut waiting {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(read_response(s).status, 200);
    }
    assert_eq!(get(addr, "/healthz", "").status, 200);
}

fn the_connection_past_max_connections_gets_503() {
    let addr = start(Config {
        max_connections: 5,
        ..test_config()
    });
    let mut held: Vec<TcpStream> = (0..5).map(|_| tcp(addr)).collect();
    // The sixth: silent, or with its request already sent.
    let mut sixth = tcp(addr);
    let r = read_response(&mut sixth);
    assert_eq!(r.status, 503);
    let mut eager = tcp(addr);
    eager
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut eager).status, 503);
    // One leaves: there is room again.
    held.pop();
    assert!(wait_until(Duration::from_secs(5), || get(
        addr, "/healthz", ""
    )
    .status
        == 200));
    // The five are still there.
    assert!(held.iter().all(|s| !is_closed(s)));
}

/// The `503` sent past `--max-connections` is written by hand: its
/// `Content-Length` must match its body, and nothing may follow the body.
fn the_503_past_max_connections_has_a_correct_content_length() {
    use std::io::Read;
    let addr = start(Config {
        max_connections: 1,
        ..test_config()
    });
    let _held = tcp(addr);
    let mut refused = tcp(addr);
    let r = read_response(&mut refused);
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "too many connections");
    let mut rest = Vec::new();
    let _ = refused.read_to_end(&mut rest);
    assert!(rest.is_empty(), "bytes after the body: {rest:?}");
}

//! The small promises about peer input, over real sockets: HTTP/1.1 heads
//! need exactly one `Host` and may start with empty lines; strings from a
//! peer reach the log escaped; a frame header alone claims no memory for
//! its payload; close codes a peer picks cannot mint metric series.

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
        "input_hygiene",
        &[
            (
                "http11_needs_exactly_one_host",
                http11_needs_exactly_one_host,
            ),
            (
                "empty_lines_before_the_request_line_are_ignored",
                empty_lines_before_the_request_line_are_ignored,
            ),
            (
                "empty_lines_count_towards_the_limits",
                empty_lines_count_towards_the_limits,
            ),
            (
                "peer_strings_reach_the_log_escaped",
                peer_strings_reach_the_log_escaped,
            ),
            (
                "invisible_characters_reach_the_log_escaped",
                invisible_characters_reach_the_log_escaped,
            ),
            (
                "frame_headers_alone_claim_no_payload_memory",
                frame_headers_alone_claim_no_payload_memory,
            ),
            (
                "peer_close_codes_do_not_mint_metric_series",
                peer_close_codes_do_not_mint_metric_series,
            ),
        ],
    )
}

// ----- Host header and leading empty lines --------------------------------

/// Sends `request` on a new connection; returns the response status.
fn status_of(addr: std::net::SocketAddr, request: &str) -> u16 {
    http_raw(addr, request).status
}

fn http11_needs_exactly_one_host() {
    let addr = start(test_config());
    let missing = "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert_eq!(status_of(addr, missing), 400);
    let twice = "GET /healthz HTTP/1.1\r\nHost: a\r\nhost: b\r\nConnection: close\r\n\r\n";
    assert_eq!(status_of(addr, twice), 400);
    // Positive controls: one Host, or HTTP/1.0 without one.
    let one = "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    assert_eq!(status_of(addr, one), 200);
    assert_eq!(status_of(addr, "GET /healthz HTTP/1.0\r\n\r\n"), 200);
}

fn empty_lines_before_the_request_line_are_ignored() {
    let addr = start(test_config());
    for prefix in ["\r\n", "\n", "\r\n\n\r\n\r\n"] {
        let request =
            format!("{prefix}GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let r = http_raw(addr, &request);
        assert_eq!((r.status, r.text()), (200, "ok".into()), "{prefix:?}");
    }
    // Pipelined: the empty line between two requests is skipped too.
    let mut s = tcp(addr);
    s.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    assert_eq!(read_response(&mut s).status, 200);
}

fn empty_lines_count_towards_the_limits() {
    let config = Config {
        max_head_bytes: 4096,
        max_request_line_bytes: 1024,
        ..test_config()
    };
    let addr = start(config);
    // The request line after the empty lines is still held to its limit.
    let long = format!(
        "\r\n\r\nGET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
        "a".repeat(2000)
    );
    assert_eq!(status_of(addr, &long), 414);
    // Empty lines count towards the head size: a request after 4 KiB of
    // them is too large.
    let padded = format!(
        "{}GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
        "\r\n".repeat(2100)
    );
    assert_eq!(status_of(addr, &padded), 431);
    // A stream of nothing but empty lines ends in 431 and a closed
    // connection: the server does not keep collecting them.
    let mut s = tcp(addr);
    s.write_all("\n".repeat(4096 + 512).as_bytes()).unwrap();
    assert_eq!(read_response(&mut s).status, 431);
    read_until_closed(&mut s, Duration::from_secs(5));
}

// ----- log escaping --------------------------------------------------------

/// Characters that must never reach the log raw: they reorder or break the
/// line a reader of the log sees.
const HOSTILE: [char; 6] = [
    '\u{202e}', '\u{2028}', '\u{0085}', '\u{2066}', '\u{200f}', '\u{1b}',
];

fn peer_strings_reach_the_log_escaped() {
    let server =
        spawn_command(Command::new(env!("CARGO_BIN_EXE_wsrooms")).args(["--log-level", "info"]));
    let log = server.log.clone();
    let addr = server.addr;
    // Raw UTF-8 in the request target of a refused upgrade (no such page:
    // 404), as the server accepts it. (ESC is not a valid target byte; it
    // goes percent-encoded and must stay so.)
    let path = "/x\u{202e}gpj.exe\u{2028}INFO:fake-line\u{0085}\u{2066}\u{200f}%1b";
    let mut s = tcp(addr);
    s.write_all(upgrade_request(addr, path, None).as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut s).status, 404);
    let line = log.wait_for(&["handshake to", "refused: 404"], IO_TIMEOUT);
    for c in HOSTILE {
        assert!(!line.contains(c), "raw {c:?} in the log: {line:?}");
    }
    for escaped in [
        "\\u{202e}",
        "\\u{2028}",
        "\\u{85}",
        "\\u{2066}",
        "\\u{200f}",
    ] {
        assert!(line.contains(escaped), "no {escaped} in {line:?}");
    }
    assert!(line.contains("gpj.exe"), "{line:?}");
    // Nothing else in the whole log holds them raw either.
    let all = log.all();
    assert!(!HOSTILE.iter().any(|&c| all.contains(c)), "{all:?}");
}

/// Characters that render as nothing or as a blank (tag characters, musical
/// formatting, Hangul and Khitan fillers, variation selectors, the blank
/// Braille pattern, wide spaces): a log line holding them raw hides text
/// from whoever reads it.
const INVISIBLE: [char; 11] = [
    '\u{e0041}',
    '\u{1d173}',
    '\u{3164}',
    '\u{ffa0}',
    '\u{115f}',
    '\u{fe0f}',
    '\u{034f}',
    '\u{17b4}',
    '\u{16fe4}',
    '\u{2800}',
    '\u{3000}',
];

/// Asserts that `line` holds each of `INVISIBLE` escaped and none raw.
fn assert_escaped(line: &str) {
    for c in INVISIBLE {
        assert!(!line.contains(c), "raw U+{:04X} in {line:?}", c as u32);
        let escaped = format!("\\u{{{:x}}}", c as u32);
        assert!(line.contains(&escaped), "no {escaped} in {line:?}");
    }
}

fn invisible_characters_reach_the_log_escaped() {
    let server =
        spawn_command(Command::new(env!("CARGO_BIN_EXE_wsrooms")).args(["--log-level", "info"]));
    let (log, addr) = (server.log.clone(), server.addr);
    let hidden: String = INVISIBLE.iter().collect();
    // An `Origin` of another site on a login: refused, and logged with it.
    let body = "user=eve&room=1";
    let request = format!(
        "POST /login HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://ev{hidden}il.example\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(http_raw(addr, &request).status, 403);
    assert_escaped(&log.wait_for(&["login refused", "il.example"], IO_TIMEOUT));
    // The path of a refused handshake (no such page: 404).
    let mut s = tcp(addr);
    let path = format!("/hid{hidden}den");
    s.write_all(upgrade_request(addr, &path, None).as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut s).status, 404);
    assert_escaped(&log.wait_for(&["handshake to", "den refused"], IO_TIMEOUT));
    let all = log.all();
    assert!(!INVISIBLE.iter().any(|&c| all.contains(c)), "{all:?}");
}

// ----- frame buffers ---------------------------------------------------------

fn frame_headers_alone_claim_no_payload_memory() {
    const CONNS: usize = 1000;
    const ANNOUNCED: usize = 64 * 1024;
    if !require(
        "input_hygiene::frame_headers_alone_claim_no_payload_memory",
        &format!("an open-files limit of {} (RLIMIT_NOFILE)", CONNS + 200),
        "ulimit -n 4096 (or install util-linux for prlimit)",
        ensure_fd_limit(CONNS as u64 + 200),
    ) {
        return;
    }
    let server = spawn_binary(&["--echo", "--max-message-bytes", "65536"]);
    let (addr, pid) = (server.addr, server.child.id());
    // Every socket upgraded before measuring, so only the headers differ.
    let mut socks: Vec<TcpStream> = (0..CONNS).map(|_| raw_ws(addr, "/echo", None)).collect();
    let before = status_kb(pid, "VmData");
    // A binary frame header announcing 64 KiB, and one byte of payload: the
    // payload has started, but the rest never comes.
    let frame = client_frame(true, 2, &vec![0u8; ANNOUNCED]);
    let sent = frame.len() - ANNOUNCED + 1;
    // `wsrooms_bytes_in_total` counts the scrapes' own requests too: learn
    // what one costs, then wait until the server has read every header.
    let first = read_metric(addr, "wsrooms_bytes_in_total");
    let bytes_in = read_metric(addr, "wsrooms_bytes_in_total");
    let per_scrape = bytes_in - first;
    for s in &mut socks {
        s.write_all(&frame[..sent]).unwrap();
    }
    let mut scrapes = 0.0;
    let all_read = wait_until(IO_TIMEOUT, || {
        scrapes += 1.0;
        let expected = bytes_in + (CONNS * sent) as f64 + scrapes * per_scrape;
        read_metric(addr, "wsrooms_bytes_in_total") >= expected
    });
    assert!(all_read, "the server did not read the frame headers");
    let grown_kb = status_kb(pid, "VmData").saturating_sub(before);
    // Reserving each announced payload would take 1000 × 64 KiB ≈ 62 MiB.
    let bound_kb = (CONNS * ANNOUNCED / 1024 / 8) as u64;
    common::harness::note(format!(
        "VmData grew by {grown_kb} kB for {CONNS} frame headers"
    ));
    assert!(
        grown_kb < bound_kb,
        "VmData grew by {grown_kb} kB for {CONNS} frame headers (bound {bound_kb} kB)"
    );
    drop(socks);
}

// ----- metrics labels ---------------------------------------------------------

fn peer_close_codes_do_not_mint_metric_series() {
    let addr = start(Config {
        echo: true,
        ..test_config()
    });
    let codes: Vec<u16> = (3000..3500).chain(4002..4502).collect();
    assert_eq!(codes.len(), 1000);
    for &code in &codes {
        let mut s = raw_ws(addr, "/echo", None);
        s.write_all(&client_frame(true, 8, &code.to_be_bytes()))
            .unwrap();
        let reply = read_until_opcode(&mut s, CLOSE);
        assert_eq!(reply.close().0, code, "the code is still echoed");
    }
    // Two codes the server knows keep their own label.
    for code in [1000u16, 4000] {
        let mut s = raw_ws(addr, "/echo", None);
        s.write_all(&client_frame(true, 8, &code.to_be_bytes()))
            .unwrap();
        read_until_opcode(&mut s, CLOSE);
    }
    let text = get(addr, "/metrics", "").text();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("wsrooms_closes_total{"))
        .collect();
    assert!(
        series
            == [
                "wsrooms_closes_total{code=\"1000\"} 1",
                "wsrooms_closes_total{code=\"4000\"} 1",
                "wsrooms_closes_total{code=\"other\"} 1000",
            ],
        "{} series of wsrooms_closes_total",
        series.len()
    );
}

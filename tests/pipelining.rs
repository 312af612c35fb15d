//! Backpressure for every byte a connection makes the server queue, not only
//! broadcasts: pipelined HTTP requests and WebSocket pings and echoes from a
//! client that does not read are answered only while its queue is below
//! `--pause-reading-at`; the rest wait in its input, unread and unanswered,
//! and are all answered, in order, once it reads.
//!
//! Every server here is the real binary (memory is read from `/proc`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// The default `--pause-reading-at`.
const PAUSE_AT: usize = 64 * 1024;

/// `request` repeated to fill about `bytes` (one write of the client).
fn pipelined(request: &str, bytes: usize) -> Vec<u8> {
    request.repeat(bytes / request.len()).into_bytes()
}

/// Polls `/metrics` until the server has stopped making progress: the
/// same `wsrooms_buffered_bytes` and no request answered but the polls, for
/// three readings 100 ms apart (at most 20 s). Returns (buffered bytes,
/// requests answered). Between two turns of a busy server the buffered
/// bytes may read 0 (the kernel took them), so they alone prove nothing.
fn settled(addr: SocketAddr) -> (usize, u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut last, mut same) = ((usize::MAX, 0), 0);
    loop {
        let text = get(addr, "/metrics", "").text();
        let read = |name| metric(&text, name).unwrap_or_else(|| panic!("no {name}"));
        let now = (
            read("wsrooms_buffered_bytes") as usize,
            read("wsrooms_http_requests_total") as u64,
        );
        // (Each poll is one request answered.)
        if now.0 == last.0 && now.1 == last.1 + 1 {
            same += 1;
            if same == 3 {
                return now;
            }
        } else {
            same = 0;
        }
        last = now;
        assert!(
            Instant::now() < deadline,
            "still making progress after 20 s ({now:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the server holds more than `level` buffered bytes (a paused
/// connection), at most 20 s; returns that reading.
fn paused_above(addr: SocketAddr, level: usize) -> usize {
    let mut seen = 0;
    let paused = wait_until(Duration::from_secs(20), || {
        seen = read_metric(addr, "wsrooms_buffered_bytes") as usize;
        seen > level
    });
    assert!(paused, "never paused: {seen} bytes buffered");
    seen
}

/// One response from a buffered reader: (status, `Location`, whole length).
fn read_buffered_response(r: &mut impl BufRead) -> (u16, Option<String>, usize) {
    let (mut status, mut location, mut body, mut total) = (0, None, 0, 0);
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).expect("read response line");
        assert!(n > 0, "connection closed inside a response");
        total += n;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if status == 0 {
            status = line.split(' ').nth(1).unwrap().parse().unwrap();
        } else if let Some((name, value)) = line.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "location" => location = Some(value.trim().to_string()),
                "content-length" => body = value.trim().parse().unwrap(),
                _ => {}
            }
        }
    }
    let mut skip = vec![0; body];
    r.read_exact(&mut skip).expect("read body");
    (status, location, total + body)
}

// ----- the reproduction --------------------------------------------------

#[test]
fn twenty_clients_pipelining_metrics_without_reading_stay_bounded() {
    let server = spawn_binary(&["--log-level", "warn"]);
    let (addr, pid) = (server.addr, server.child.id());
    let one = get(addr, "/metrics", "");
    // Head and body of one /metrics answer, with room for its numbers to grow.
    let one_response = one.body.len() + 1024;
    let rss_before = status_kb(pid, "VmRSS");

    let burst = pipelined("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 64 * 1024);
    let clients: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = small_buffer_tcp(addr, 4096, 0);
            s.write_all(&burst).unwrap();
            s
        })
        .collect();
    let (buffered, answered) = settled(addr);
    let rss_after = status_kb(pid, "VmRSS");
    let growth_kb = rss_after.saturating_sub(rss_before);
    eprintln!(
        "20 × {} pipelined GET /metrics: {buffered} bytes buffered, RSS {rss_before} → \
         {rss_after} kB (+{growth_kb} kB), {answered} requests answered",
        burst.len() / 34
    );
    assert!(
        buffered <= 20 * (PAUSE_AT + one_response),
        "{buffered} bytes buffered for 20 clients"
    );
    assert!(growth_kb < 16 * 1024, "RSS grew by {growth_kb} kB");
    assert!(clients.iter().all(|c| !is_closed(c)), "still connected");
}

// ----- every request answered, in order ------------------------------------

#[test]
fn two_thousand_pipelined_requests_are_all_answered_in_order_once_the_client_reads() {
    const PAUSE: usize = 4096;
    let server = spawn_binary(&["--pause-reading-at", "4096", "--log-level", "warn"]);
    let addr = server.addr;
    // Each room request is followed by three /metrics ones: megabytes of
    // answers, more than the kernel's socket buffers take (up to 4 MiB).
    let mut requests = Vec::new();
    for n in 1..=2000 {
        write!(requests, "GET /rooms/{n} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        for _ in 0..3 {
            write!(requests, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        }
    }
    // More than one read of the server (64 KiB): a request is cut between two.
    assert!(requests.len() > 64 * 1024);
    let mut s = small_buffer_tcp(addr, 4096, 0);
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || w.write_all(&requests).unwrap())
    };

    // Paused with about one response over the pause level, not 8,000.
    let one_response = get(addr, "/metrics", "").body.len() + 1024;
    let (buffered, answered) = settled(addr);
    eprintln!("paused at {buffered} bytes buffered, {answered} requests answered");
    // Paused: reading stopped above PAUSE and resumes only below PAUSE / 2;
    // the kernel may have taken some bytes since the pause, so the settled
    // level is anywhere in between, never above one response over PAUSE.
    assert!(
        buffered > PAUSE / 2 && buffered <= PAUSE + one_response,
        "{buffered} bytes buffered for one client"
    );
    assert!(answered < 8000, "all answered before the client read");

    // Now read: every request gets its answer, in order, none lost.
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    for n in 1..=2000 {
        let (status, location, _) = read_buffered_response(&mut r);
        assert_eq!(status, 303, "response {n}");
        assert_eq!(location.as_deref(), Some(&*format!("/?room={n}")));
        for _ in 0..3 {
            let (status, location, _) = read_buffered_response(&mut r);
            assert_eq!((status, location), (200, None), "metrics after room {n}");
        }
    }
    writer.join().unwrap();
    // And the connection goes on as a normal keep-alive one.
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_buffered_response(&mut r).0, 200);
}

#[test]
fn pings_and_echoes_in_one_write_are_all_answered_in_order_once_the_client_reads() {
    const PAUSE: usize = 4096;
    const COUNT: usize = 3000;
    let server = spawn_binary(&[
        "--echo",
        "--pause-reading-at",
        "4096",
        "--log-level",
        "warn",
    ]);
    let addr = server.addr;
    // Echoes of 8 KB and pings between them: megabytes of replies in all,
    // more than the kernel's socket buffers take.
    let payload = |i: usize| {
        let pad = if i.is_multiple_of(2) { 8000 } else { 90 };
        format!("{i:06}-{}", "x".repeat(pad)).into_bytes()
    };
    let mut burst = Vec::new();
    for i in 0..COUNT {
        let opcode = if i % 2 == 0 { TEXT } else { PING };
        burst.extend_from_slice(&client_frame(true, opcode, &payload(i)));
    }
    let mut s = upgrade_on(small_buffer_tcp(addr, 4096, 0), addr, "/echo", None);
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || w.write_all(&burst).unwrap())
    };

    // Paused with about one reply over the pause level: the rest of the
    // server's read waits in its input.
    paused_above(addr, PAUSE);
    let (buffered, _) = settled(addr);
    assert!(
        buffered > PAUSE && buffered <= PAUSE + 8100,
        "{buffered} bytes buffered for one client"
    );

    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(&mut s);
    for i in 0..COUNT {
        let f = read_frame(&mut r).expect("read").expect("closed early");
        let opcode = if i % 2 == 0 { TEXT } else { PONG };
        assert_eq!((f.opcode, &*f.payload), (opcode, &*payload(i)), "reply {i}");
    }
    writer.join().unwrap();
}

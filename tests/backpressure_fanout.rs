//! Backpressure under load, against the real binary: a room of 50 where one
//! client never reads while the others send 10 MB. The slow one is closed
//! with `1008` (its queue freed), everyone else gets every message in order,
//! and the server's peak resident memory stays under a stated bound.
//!
//! (Its own test binary, so no other test competes with it for the CPU.)

mod common;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;

const MEMBERS: usize = 50;
const SENDERS: usize = MEMBERS - 1;
/// Chat text per message (ASCII, so bytes = code points).
const TEXT_BYTES: usize = 8 * 1024;
/// 10 MB of chat text sent in all.
const TOTAL_BYTES: usize = 10_000_000;
const MESSAGES: usize = TOTAL_BYTES.div_ceil(TEXT_BYTES);
/// Messages the senders may have out that some reader has not read yet
/// (keeps the readers' own queues far below `--max-buffered`: this test is
/// about the one that never reads).
const WINDOW: u64 = 16;
const MAX_BUFFERED: usize = 1024 * 1024;
/// The stated bound on the server's peak RSS during this test (it holds
/// 50 sockets, the slow one's ≤ 1 MiB queue, 50 messages of history).
const RSS_BOUND_KB: u64 = 24 * 1024;

#[test]
fn slow_reader_in_a_room_of_50_is_cut_off_and_memory_stays_bounded() {
    let started = Instant::now();
    let server = spawn_command(Command::new(env!("CARGO_BIN_EXE_wsrooms")).args([
        "--max-chat-chars",
        "100000",
        "--rate-limit",
        "0",
        "--max-buffered",
        &MAX_BUFFERED.to_string(),
        // The slow client reads its close frame only at the end.
        "--close-timeout-secs",
        "120",
        "--log-level",
        "info",
    ]));
    let log = server.log.clone();
    let addr = server.addr;
    let pid = server.child.id();
    let rss_start = status_kb(pid, "VmRSS");

    // The slow member: tiny receive buffer, and it never reads until the end.
    let slow_cookie = login(addr, "slow", 7);
    let mut slow = upgrade_on(
        small_buffer_tcp(addr, 4096, 0),
        addr,
        "/rooms/7/ws",
        Some(&slow_cookie),
    );
    let slow_peer = slow.local_addr().unwrap().to_string();

    // The others: a reader thread each (raw frames: the test must not be the
    // slow part), and one writer that round-robins over them.
    let read_counts: Arc<Vec<AtomicU64>> =
        Arc::new((0..SENDERS).map(|_| AtomicU64::new(0)).collect());
    let mut writers: Vec<TcpStream> = Vec::new();
    let mut readers = Vec::new();
    for i in 0..SENDERS {
        let cookie = login(addr, &format!("u{i}"), 7);
        let stream = raw_ws(addr, "/rooms/7/ws", Some(&cookie));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        writers.push(stream.try_clone().unwrap());
        let counts = Arc::clone(&read_counts);
        readers.push(std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(256 * 1024, stream);
            let mut seqs = Vec::with_capacity(MESSAGES);
            // (seq, first bytes) of each message: all readers must agree.
            let mut fingerprint = Vec::with_capacity(MESSAGES);
            while seqs.len() < MESSAGES {
                let f = read_frame(&mut r)
                    .expect("read")
                    .expect("server closed a reader");
                assert_ne!(f.opcode, CLOSE, "reader u{i} closed: {:?}", f.close());
                if let Some(seq) = f.message_seq() {
                    if let Some(last) = seqs.last() {
                        assert_eq!(seq, last + 1, "reader u{i}: seq jumped");
                    }
                    seqs.push(seq);
                    fingerprint.push((seq, f.payload[..64].to_vec(), f.payload.len()));
                    counts[i].fetch_add(1, Ordering::Release);
                }
            }
            fingerprint
        }));
    }

    // Sample the server's memory while the messages flow.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let (mut max_rss, mut max_buffered) = (0u64, 0f64);
            while !done.load(Ordering::Acquire) {
                max_rss = max_rss.max(status_kb(pid, "VmRSS"));
                max_buffered = max_buffered.max(read_metric(addr, "wsrooms_buffered_bytes"));
                std::thread::sleep(Duration::from_millis(20));
            }
            (max_rss, max_buffered)
        })
    };

    let send_start = Instant::now();
    for m in 0..MESSAGES {
        // Flow control: no reader more than WINDOW messages behind.
        let wait_from = Instant::now();
        while m as u64
            - read_counts
                .iter()
                .map(|c| c.load(Ordering::Acquire))
                .min()
                .unwrap()
            >= WINDOW
        {
            assert!(
                wait_from.elapsed() < Duration::from_secs(20),
                "readers stopped making progress"
            );
            std::thread::yield_now();
        }
        let who = m % SENDERS;
        let mut text = format!("{who}:{m}:").into_bytes();
        text.resize(TEXT_BYTES, b'a' + (m % 26) as u8);
        writers[who]
            .write_all(&client_frame(true, 1, &text))
            .unwrap();
    }
    let fingerprints: Vec<_> = readers
        .into_iter()
        .map(|h| h.join().expect("reader failed"))
        .collect();
    let send_time = send_start.elapsed();
    done.store(true, Ordering::Release);
    let (max_rss, max_buffered) = sampler.join().unwrap();
    // (VmHWM is updated lazily: a sample may be above it.)
    let peak_rss = status_kb(pid, "VmHWM").max(max_rss);

    // Every other client got every message, in one order, the same bytes.
    for (i, f) in fingerprints.iter().enumerate() {
        assert_eq!(f.len(), MESSAGES, "reader u{i}");
        assert_eq!(
            f, &fingerprints[0],
            "reader u{i} saw another sequence than u0"
        );
    }
    let first_seq = fingerprints[0][0].0;

    // Now the slow client reads what reached it: a gap-free prefix of the
    // messages, then (after its queue was dropped, mid-frame or not) a
    // well-formed close frame `1008 backpressure limit`.
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut r = BufReader::new(&mut slow);
    let (mut got, mut got_bytes) = (0usize, 0usize);
    let close = loop {
        let f = read_frame(&mut r)
            .expect("slow client read")
            .expect("EOF before the close frame");
        if f.opcode == CLOSE {
            break f.close();
        }
        if let Some(seq) = f.message_seq() {
            assert_eq!(seq, first_seq + got as u64, "slow client: seq jumped");
            got += 1;
            got_bytes += f.payload.len();
        }
    };
    assert_eq!(close, (1008, "backpressure limit".to_string()));
    // One log line says who and why.
    let line = log.wait_for(&[&slow_peer, "too slow"], IO_TIMEOUT);
    assert!(line.contains("1008"), "{line}");
    assert_eq!(log.matching(&["too slow"]).len(), 1, "{}", log.all());
    assert!(
        got < MESSAGES,
        "the slow client was never cut off ({got} messages)"
    );
    // Its queue was freed: nothing much is buffered any more.
    let buffered_after = read_metric(addr, "wsrooms_buffered_bytes");
    assert!(
        buffered_after < 4096.0,
        "{buffered_after} bytes still buffered"
    );

    eprintln!(
        "fan-out: {MESSAGES} messages of {TEXT_BYTES} B to {MEMBERS} members in {send_time:?}; \
         slow client got {got} messages ({got_bytes} B) before its close; \
         RSS start {rss_start} kB, max sampled {max_rss} kB, peak (VmHWM) {peak_rss} kB; \
         max sampled buffered {max_buffered} B; total {:?}",
        started.elapsed()
    );
    assert!(
        peak_rss < RSS_BOUND_KB,
        "peak RSS {peak_rss} kB over the {RSS_BOUND_KB} kB bound"
    );
    // Buffered memory is bounded by connections × max-buffered.
    assert!(max_buffered <= (MEMBERS * MAX_BUFFERED) as f64);
}

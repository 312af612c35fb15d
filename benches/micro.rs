//! Micro benchmarks of the pure parts of the hot path (no sockets):
//!
//! - `frame/read`: a client frame through [`MessageReader`] (header parse,
//!   unmask, UTF-8 check, message assembly) at 16 B, 125 B, 4 KiB, 64 KiB;
//! - `frame/header+unmask`: [`frame::parse_header`] and [`frame::apply_mask`]
//!   alone, same sizes;
//! - `frame/encode`: [`frame::encode_frame`] of a server text frame;
//! - `utf8`: [`Utf8Validator`] over ASCII and Hangul text, whole and in
//!   pieces cut inside characters;
//! - `http/head`: [`request::find_head_end`] + [`request::parse`] of a
//!   browser's WebSocket upgrade request;
//! - `event/message`: the JSON of one chat message ([`events::message`]);
//! - `id/login`: what a login spends on its user id: [`names::check_user`]
//!   and [`names::IdKeys::of`] (NFKC, bidi order, the skeleton-and-fold
//!   loop), for a short Latin id, Hangul, Hindi, a right-to-left id and the
//!   longest (32 characters);
//! - `timers/ping round`: [`Timers`] popping a due keep-alive entry and
//!   adding its next one, with 18,500 sockets spread over 300 ticks (the
//!   loop's work per socket per ping round, without the sockets).
//!
//! Run with `cargo bench --bench micro` (a filter may follow: `-- utf8`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use wsrooms::chat::{events, names};
use wsrooms::http::request::{self, HeadLimits, MAX_HEADERS};
use wsrooms::timers::Timers;
use wsrooms::ws::frame::{self, Opcode, encode_client_frame};
use wsrooms::ws::reader::{Limits, Message, MessageReader};
use wsrooms::ws::utf8::Utf8Validator;

const SIZES: [usize; 4] = [16, 125, 4096, 65536];
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// ASCII text of `n` bytes (a text frame's payload).
fn ascii(n: usize) -> Vec<u8> {
    b"the quick brown fox jumps over the lazy dog. "
        .iter()
        .copied()
        .cycle()
        .take(n)
        .collect()
}

/// Hangul text of about `n` bytes (3 bytes per syllable, spaces between words).
fn hangul(n: usize) -> Vec<u8> {
    let text = "다람쥐 헌 쳇바퀴에 타고파 안녕하세요 반갑습니다 ";
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        out.extend_from_slice(text.as_bytes());
    }
    let mut end = n;
    while std::str::from_utf8(&out[..end]).is_err() {
        end -= 1;
    }
    out.truncate(end);
    out
}

fn frames(c: &mut Criterion) {
    let limits = Limits {
        max_frame_bytes: 1 << 20,
        max_message_bytes: 1 << 20,
    };
    let mut group = c.benchmark_group("frame/read");
    for &n in &SIZES {
        let wire = encode_client_frame(true, 1, MASK, &ascii(n));
        group.throughput(Throughput::Bytes(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &wire, |b, wire| {
            let mut reader = MessageReader::new();
            b.iter(|| {
                let mut input: &[u8] = black_box(wire);
                match reader.read(&mut input, &limits) {
                    Ok(Some(Message::Text(t))) => t.len(),
                    other => panic!("unexpected {other:?}"),
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("frame/header+unmask");
    for &n in &SIZES {
        let wire = encode_client_frame(true, 1, MASK, &ascii(n));
        group.throughput(Throughput::Bytes(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &wire, |b, wire| {
            let mut payload = vec![0u8; n];
            b.iter(|| {
                let (header, len) = frame::parse_header(black_box(wire)).unwrap().unwrap();
                payload.copy_from_slice(&wire[len..]);
                frame::apply_mask(&mut payload, header.mask.unwrap(), 0);
                payload[n - 1]
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("frame/encode");
    for &n in &[64usize, 125, 4096] {
        let payload = ascii(n);
        group.throughput(Throughput::Bytes(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &payload, |b, p| {
            b.iter(|| frame::encode_frame(Opcode::Text, black_box(p)))
        });
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    for (name, text) in [("ascii", ascii(4096)), ("hangul", hangul(4096))] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new(name, "whole"), &text, |b, t| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                v.feed(black_box(t)).unwrap();
                v.is_complete()
            })
        });
        // Pieces of 61 bytes: most cuts fall inside a Hangul syllable.
        group.bench_with_input(BenchmarkId::new(name, "61-byte pieces"), &text, |b, t| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                for piece in black_box(t).chunks(61) {
                    v.feed(piece).unwrap();
                }
                v.is_complete()
            })
        });
    }
    group.finish();
}

/// What Chromium sends to open a room socket (cookie and all).
const UPGRADE: &[u8] = b"GET /rooms/42/ws?since=17 HTTP/1.1\r\n\
Host: chat.example.org\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://chat.example.org\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7\r\n\
Cookie: wsrooms_session=8f14e45fceea167a5a36dedd4bea2543\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";

fn http(c: &mut Criterion) {
    let limits = HeadLimits {
        max_head_bytes: 8192,
        max_line_bytes: 2048,
    };
    let mut group = c.benchmark_group("http/head");
    group.throughput(Throughput::Bytes(UPGRADE.len() as u64));
    group.bench_function("upgrade request", |b| {
        b.iter(|| {
            let buf = black_box(UPGRADE);
            let mut scanned = 0;
            let end = request::find_head_end(buf, &mut scanned, &limits)
                .unwrap()
                .unwrap();
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let req = request::parse(&buf[..end], &mut storage).unwrap();
            req.cookie("wsrooms_session").map(str::len)
        })
    });
    group.finish();
}

fn event(c: &mut Criterion) {
    let mut group = c.benchmark_group("event/message");
    for (name, user, text) in [
        ("ascii 64", "alice", String::from_utf8(ascii(64)).unwrap()),
        (
            "hangul 50 chars",
            "김철수",
            "안녕하세요 ".repeat(9).chars().take(50).collect(),
        ),
        (
            "escapes",
            "bob",
            "say \"hi\"\n\tto <everyone> \\ \u{1}".to_string(),
        ),
    ] {
        group.bench_function(name, |b| {
            let mut out = Vec::with_capacity(256);
            b.iter(|| {
                out.clear();
                events::message(
                    &mut out,
                    black_box(user),
                    black_box(&text),
                    1_763_770_001_000,
                    17,
                );
                out.len()
            })
        });
    }
    group.finish();
}

fn id(c: &mut Criterion) {
    let mut group = c.benchmark_group("id/login");
    let longest = "Nguyễn_Thị_Minh_Khai.1234567890a";
    for (name, user) in [
        ("alice", "alice"),
        ("hangul", "김철수"),
        ("hindi", "कृष्ण"),
        ("hebrew+digits", "דוד-12"),
        ("32 chars", longest),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let user = names::check_user(black_box(user)).unwrap();
                names::IdKeys::of(user)
            })
        });
    }
    group.finish();
}

fn timers(c: &mut Criterion) {
    const SOCKETS: u32 = 18_500;
    const TICKS: u32 = 300;
    let tick = Duration::from_millis(100);
    let t0 = std::time::Instant::now();
    let mut timers = Timers::new();
    for socket in 0..SOCKETS {
        timers.add(t0 + tick * (socket % TICKS), socket);
    }
    let mut now = t0;
    c.bench_function("timers/ping round", |b| {
        b.iter(|| {
            // One socket's round: its entry comes due, the next is added a
            // full interval (300 ticks) later. Time moves on a tick when
            // nothing is due.
            let (_, socket) = loop {
                match timers.pop_due(now) {
                    Some(entry) => break entry,
                    None => now += tick,
                }
            };
            timers.add(now + tick * TICKS, black_box(socket));
        })
    });
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = micro;
    config = config();
    targets = frames, utf8, http, event, id, timers
}
criterion_main!(micro);

//! Pipelined requests: `http::pipeline::next_request` over a connection's
//! input (`conn::Input`), the way the server drives them.
//!
//! Input: 5 control bytes (head limit, line limit, body limit, a seed for
//! the read sizes and for where the connection pauses), then the bytes a
//! client sends. Framed whole (everything already read), and framed as the
//! server does: reads of arbitrary sizes appended to the input, requests
//! taken from the front by offset, and at arbitrary points a pause after
//! which the rest already read is framed before anything new is appended.
//! Both must find the same requests at the same offsets, contiguous and in
//! bounds, and end the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsrooms::conn::Input;
use wsrooms::http::pipeline::{Framed, next_request};
use wsrooms::http::request::{HeadLimits, MAX_HEADERS};

/// How the framing of a stream ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Waiting for more bytes.
    Partial,
    /// Refused (with this status code).
    Refused(u16),
}

struct Limits {
    head: HeadLimits,
    body: usize,
}

/// Frames the request at the front of `input`: `Ok(len)` when complete.
fn frame(input: &[u8], scanned: &mut usize, limits: &Limits) -> Result<usize, End> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match next_request(input, scanned, &limits.head, limits.body, &mut storage) {
        Framed::Complete {
            request,
            head_len,
            len,
        } => {
            assert!(head_len <= len && len <= input.len() && head_len > 0);
            assert!(head_len <= limits.head.max_head_bytes);
            assert!(len - head_len <= limits.body);
            assert!(request.path.starts_with('/'));
            Ok(len)
        }
        Framed::Partial | Framed::AwaitingBody { .. } => {
            assert!(*scanned <= input.len());
            Err(End::Partial)
        }
        Framed::Refused(status) => Err(End::Refused(status.code())),
    }
}

/// A tiny deterministic generator for read sizes and pauses.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let (ctl, stream) = data.split_at(5);
    let limits = Limits {
        head: HeadLimits {
            max_head_bytes: 32 + ctl[0] as usize * 16,
            max_line_bytes: 16 + ctl[1] as usize * 8,
        },
        body: ctl[2] as usize * 4,
    };
    let mut rng = Rng(u32::from(ctl[3]) << 8 | u32::from(ctl[4]) | 1);

    // Whole: every byte already read.
    let mut whole = Vec::new();
    let mut at = 0;
    let whole_end = loop {
        match frame(&stream[at..], &mut 0, &limits) {
            Ok(len) => {
                whole.push((at, len));
                at += len;
            }
            Err(end) => break end,
        }
    };

    // As the server does it.
    let mut input = Input::default();
    let mut found = Vec::new();
    let (mut fed, mut consumed, mut scanned) = (0, 0, 0);
    let mut end = None;
    while end.is_none() {
        // Take requests from the front until one is incomplete, or the
        // connection pauses (its output is full): then nothing is read, and
        // on resume what was read already is framed first.
        let mut paused = false;
        loop {
            if !input.is_empty() && rng.next() % 4 == 0 {
                paused = true;
                break;
            }
            match frame(input.pending(), &mut scanned, &limits) {
                Ok(len) => {
                    found.push((consumed, len));
                    consumed += len;
                    input.consume(len);
                    scanned = 0;
                }
                Err(End::Partial) if fed < stream.len() => break,
                Err(e) => {
                    end = Some(e);
                    break;
                }
            }
        }
        if paused || end.is_some() {
            continue;
        }
        let n = (rng.next() as usize % 97 + 1).min(stream.len() - fed);
        input.push(&stream[fed..fed + n]);
        fed += n;
        assert_eq!(input.pending(), &stream[consumed..fed]);
    }

    // Offsets: contiguous from 0, in bounds.
    let mut next = 0;
    for &(start, len) in &found {
        assert_eq!(start, next);
        assert!(len > 0 && start + len <= stream.len());
        next = start + len;
    }
    assert_eq!(found, whole);
    let end = end.unwrap();
    if limits.head.max_line_bytes < limits.head.max_head_bytes {
        assert_eq!(end, whole_end);
    } else {
        // A line limit at or above the head limit: a growing buffer may hit
        // the head limit (431) before the whole line is seen (414); both
        // are right, so only "refused" must agree.
        assert_eq!(
            matches!(end, End::Refused(_)),
            matches!(whole_end, End::Refused(_))
        );
    }
});

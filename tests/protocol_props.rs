//! Property tests of the WebSocket core's pure parts (issue 3):
//!
//! - any sequence of messages, fragmented anyhow, with any masks, control
//!   frames between fragments, and the byte stream cut anywhere, reads back
//!   as exactly those messages;
//! - on arbitrary (or corrupted) input the reader never panics, gives the
//!   same result whole as cut in pieces, and never holds more than the
//!   configured limits (plus a control frame);
//! - the incremental UTF-8 validator agrees with `std::str::from_utf8` on any
//!   bytes cut anywhere, and fails exactly when the bytes seen so far can no
//!   longer start valid UTF-8.

use proptest::prelude::*;
use wsrooms::ws::close::ProtocolError;
use wsrooms::ws::frame::encode_client_frame;
use wsrooms::ws::reader::{Limits, Message, MessageReader};
use wsrooms::ws::utf8::Utf8Validator;

/// What the reader may hold beyond `max_message_bytes`: one control frame's
/// payload (≤ 125 bytes, its vector rounded up by the allocator's growth).
const SLACK: usize = 256;

/// Feeds `chunks` in order; returns the messages and the first error, and
/// checks the memory bound after every call.
fn feed(
    chunks: &[&[u8]],
    limits: &Limits,
) -> Result<(Vec<Message>, Option<ProtocolError>), TestCaseError> {
    let mut reader = MessageReader::new();
    let mut out = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        loop {
            let before = input.len();
            let result = reader.read(&mut input, limits);
            prop_assert!(
                reader.buffered() <= limits.max_message_bytes + SLACK,
                "buffered {} with limit {}",
                reader.buffered(),
                limits.max_message_bytes
            );
            match result {
                Ok(Some(m)) => {
                    // Every message ends with at least one byte of this input.
                    prop_assert!(input.len() < before, "a message from no input");
                    out.push(m);
                }
                Ok(None) => {
                    prop_assert!(input.is_empty(), "Ok(None) with input left");
                    break;
                }
                Err(e) => return Ok((out, Some(e))),
            }
        }
    }
    Ok((out, None))
}

/// Cuts `bytes` at the given points (taken modulo the length, sorted).
fn cut<'a>(bytes: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = points
        .iter()
        .map(|p| {
            if bytes.is_empty() {
                0
            } else {
                p % (bytes.len() + 1)
            }
        })
        .collect();
    at.sort_unstable();
    let mut pieces = Vec::new();
    let mut last = 0;
    for p in at {
        pieces.push(&bytes[last..p]);
        last = p;
    }
    pieces.push(&bytes[last..]);
    pieces
}

/// One message to send: its kind, its payload, where to cut it into frames,
/// and control frames to put between those frames.
#[derive(Debug, Clone)]
struct Msg {
    text: bool,
    payload: Vec<u8>,
    cuts: Vec<usize>,
    /// (after which fragment, ping?, payload)
    controls: Vec<(usize, bool, Vec<u8>)>,
}

fn any_msg() -> impl Strategy<Value = Msg> {
    let text = ".{0,300}".prop_map(|s: String| (true, s.into_bytes()));
    let binary = prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| (false, b));
    (
        prop_oneof![text, binary],
        prop::collection::vec(any::<usize>(), 0..6),
        prop::collection::vec(
            (
                any::<usize>(),
                any::<bool>(),
                prop::collection::vec(any::<u8>(), 0..=125),
            ),
            0..3,
        ),
    )
        .prop_map(|((text, payload), cuts, controls)| Msg {
            text,
            payload,
            cuts,
            controls,
        })
}

/// Encodes the messages as client frames; returns the stream and the
/// messages the reader must produce, in order.
fn encode(
    msgs: &[Msg],
    masks: &[[u8; 4]],
    close: Option<(u16, String)>,
) -> (Vec<u8>, Vec<Message>) {
    let mut stream = Vec::new();
    let mut expect = Vec::new();
    let mut k = 0;
    let mut mask = || {
        k += 1;
        masks[k % masks.len()]
    };
    for m in msgs {
        let frags = cut(&m.payload, &m.cuts);
        for (i, frag) in frags.iter().enumerate() {
            let opcode = match (i, m.text) {
                (0, true) => 1,
                (0, false) => 2,
                _ => 0,
            };
            stream.extend(encode_client_frame(
                i + 1 == frags.len(),
                opcode,
                mask(),
                frag,
            ));
            if i + 1 < frags.len() {
                for (after, ping, payload) in &m.controls {
                    if after % frags.len() == i {
                        stream.extend(encode_client_frame(
                            true,
                            if *ping { 9 } else { 10 },
                            mask(),
                            payload,
                        ));
                        expect.push(if *ping {
                            Message::Ping(payload.clone())
                        } else {
                            Message::Pong(payload.clone())
                        });
                    }
                }
            }
        }
        expect.push(if m.text {
            Message::Text(m.payload.clone())
        } else {
            Message::Binary(m.payload.clone())
        });
    }
    if let Some((code, reason)) = close {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_bytes());
        stream.extend(encode_client_frame(true, 8, mask(), &p));
        expect.push(Message::Close(Some((code, reason))));
    }
    (stream, expect)
}

const BIG: Limits = Limits {
    max_frame_bytes: 1 << 20,
    max_message_bytes: 1 << 20,
};

fn valid_close_code() -> impl Strategy<Value = u16> {
    prop_oneof![1000u16..=1003, 1007u16..=1011, 3000u16..=4999]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(
        msgs in prop::collection::vec(any_msg(), 0..6),
        masks in prop::collection::vec(any::<[u8; 4]>(), 1..4),
        close in prop::option::of((valid_close_code(), "[^\u{0}]{0,30}")),
        points in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let (stream, expect) = encode(&msgs, &masks, close);
        let (got, err) = feed(&cut(&stream, &points), &BIG)?;
        prop_assert_eq!(err, None);
        prop_assert_eq!(&got, &expect);
        // One byte at a time: the same.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        let (got1, err1) = feed(&bytes, &BIG)?;
        prop_assert_eq!(err1, None);
        prop_assert_eq!(got1, expect);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        points in prop::collection::vec(any::<usize>(), 0..20),
        frame in 125usize..600,
        message in 125usize..2000,
    ) {
        let limits = Limits { max_frame_bytes: frame, max_message_bytes: message };
        let whole = feed(&[&bytes], &limits)?;
        let pieces = feed(&cut(&bytes, &points), &limits)?;
        prop_assert_eq!(&whole, &pieces);
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        prop_assert_eq!(whole, feed(&bytewise, &limits)?);
    }

    /// Mostly valid streams with a few bytes changed reach deeper states.
    #[test]
    fn corrupted_streams_never_panic_and_stay_bounded(
        msgs in prop::collection::vec(any_msg(), 1..5),
        masks in prop::collection::vec(any::<[u8; 4]>(), 1..3),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        points in prop::collection::vec(any::<usize>(), 0..10),
        frame in 125usize..400,
        message in 125usize..900,
    ) {
        let (mut stream, _) = encode(&msgs, &masks, None);
        for (at, value) in flips {
            let n = stream.len();
            stream[at % n] = value;
        }
        let limits = Limits { max_frame_bytes: frame, max_message_bytes: message };
        let whole = feed(&[&stream], &limits)?;
        prop_assert_eq!(&whole, &feed(&cut(&stream, &points), &limits)?);
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        prop_assert_eq!(whole, feed(&bytewise, &limits)?);
    }

    /// Messages within the limits pass; one byte over fails with 1009 —
    /// before its payload is given.
    #[test]
    fn limits_are_exact(
        sizes in prop::collection::vec(0usize..300, 1..6),
        frame in 125usize..300,
        message in 125usize..900,
        mask in any::<[u8; 4]>(),
    ) {
        let limits = Limits { max_frame_bytes: frame, max_message_bytes: message };
        let mut reader = MessageReader::new();
        let mut total = 0usize;
        for (i, &n) in sizes.iter().enumerate() {
            let last = i + 1 == sizes.len();
            let f = encode_client_frame(last, if i == 0 { 2 } else { 0 }, mask, &vec![7u8; n]);
            let header_len = f.len() - n;
            let mut header = &f[..header_len];
            let r = reader.read(&mut header, &limits);
            total += n;
            if n > frame {
                prop_assert_eq!(r, Err(ProtocolError::FrameTooBig));
                return Ok(());
            }
            if total > message {
                prop_assert_eq!(r, Err(ProtocolError::MessageTooBig));
                return Ok(());
            }
            let mut payload = &f[header_len..];
            let r2 = reader.read(&mut payload, &limits);
            prop_assert!(reader.buffered() <= message + SLACK);
            // An empty final frame completes the message with its header.
            let got = match (r, r2) {
                (Ok(Some(m)), Ok(None)) | (Ok(None), Ok(Some(m))) => Some(m),
                (Ok(None), Ok(None)) => None,
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            };
            if last {
                prop_assert_eq!(got, Some(Message::Binary(vec![7u8; total])));
            } else {
                prop_assert_eq!(got, None);
            }
        }
    }
}

// ----- UTF-8 -------------------------------------------------------------------

/// Bytes that are often UTF-8, often nearly so.
fn utf8ish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => ".{0,8}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..4),
        1 => prop::collection::vec(
            prop_oneof![Just(0x80u8), Just(0xBF), Just(0xC0), Just(0xC2), Just(0xE0),
                        Just(0xED), Just(0xEF), Just(0xF0), Just(0xF4), Just(0xF5),
                        Just(0x9F), Just(0xA0), Just(0x8F), Just(0x90)],
            0..4,
        ),
    ];
    prop::collection::vec(piece, 0..10).prop_map(|v| v.concat())
}

/// How std judges a prefix: valid, incomplete (could still become valid), or
/// invalid for good.
fn std_prefix_ok(prefix: &[u8]) -> bool {
    match std::str::from_utf8(prefix) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn utf8_validator_agrees_with_std(
        bytes in prop_oneof![utf8ish(), prop::collection::vec(any::<u8>(), 0..64)],
        points in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut v = Utf8Validator::new();
        let mut seen = 0;
        let mut failed = false;
        for piece in cut(&bytes, &points) {
            seen += piece.len();
            let ok = v.feed(piece).is_ok();
            // Fail fast, and only then: an error exactly when the bytes so
            // far cannot begin any valid UTF-8.
            prop_assert_eq!(ok, std_prefix_ok(&bytes[..seen]), "after {} bytes", seen);
            if !ok {
                failed = true;
                break;
            }
            prop_assert_eq!(v.is_complete(), std::str::from_utf8(&bytes[..seen]).is_ok());
        }
        prop_assert_eq!(!failed && v.is_complete(), std::str::from_utf8(&bytes).is_ok());
    }
}

#[test]
fn utf8_validator_byte_by_byte_on_every_two_byte_sequence() {
    // Exhaustive over two bytes, and over three bytes with a valid lead:
    // each prefix judged like std.
    for a in 0..=255u8 {
        for b in 0..=255u8 {
            check_bytewise(&[a, b]);
            if (0xE0..=0xF4).contains(&a) {
                for c in [0x00u8, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF] {
                    check_bytewise(&[a, b, c]);
                    check_bytewise(&[a, b, c, 0x80]);
                }
            }
        }
    }
}

fn check_bytewise(bytes: &[u8]) {
    let mut v = Utf8Validator::new();
    for n in 1..=bytes.len() {
        let ok = v.feed(&bytes[n - 1..n]).is_ok();
        assert_eq!(ok, std_prefix_ok(&bytes[..n]), "{bytes:02x?} at {n}");
        if !ok {
            return;
        }
    }
    assert_eq!(
        v.is_complete(),
        std::str::from_utf8(bytes).is_ok(),
        "{bytes:02x?}"
    );
}

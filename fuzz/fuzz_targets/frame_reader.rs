//! The WebSocket message reader on arbitrary bytes.
//!
//! Input: 3 control bytes (frame limit, message limit, piece size), then the
//! byte stream a client would send. Checks that the reader never panics,
//! gives the same messages and error whether the stream comes whole, in
//! pieces or one byte at a time, never holds more than its limits (plus one
//! control frame), and only returns text that is UTF-8 and close codes a
//! peer may send.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsrooms::ws::close::{ProtocolError, is_valid_received};
use wsrooms::ws::reader::{Limits, Message, MessageReader};

fn feed<'a>(
    pieces: impl Iterator<Item = &'a [u8]>,
    limits: &Limits,
) -> (Vec<Message>, Option<ProtocolError>) {
    let mut reader = MessageReader::new();
    let mut out = Vec::new();
    for piece in pieces {
        let mut input = piece;
        loop {
            let result = reader.read(&mut input, limits);
            assert!(
                reader.buffered() <= limits.max_message_bytes + 256,
                "buffered {} over limit {}",
                reader.buffered(),
                limits.max_message_bytes
            );
            match result {
                Ok(Some(m)) => {
                    match &m {
                        Message::Text(t) => assert!(std::str::from_utf8(t).is_ok()),
                        Message::Binary(_) => {}
                        Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
                        Message::Close(Some((code, reason))) => {
                            assert!(is_valid_received(*code));
                            assert!(reason.len() <= 123);
                        }
                        Message::Close(None) => {}
                    }
                    if let Message::Text(b) | Message::Binary(b) = &m {
                        assert!(b.len() <= limits.max_message_bytes);
                    }
                    out.push(m);
                }
                Ok(None) => {
                    assert!(input.is_empty());
                    break;
                }
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (ctl, stream) = data.split_at(3);
    let limits = Limits {
        max_frame_bytes: 125 + ctl[0] as usize * 4,
        max_message_bytes: 125 + ctl[1] as usize * 16,
    };
    let step = ctl[2] as usize % 23 + 1;
    let whole = feed(std::iter::once(stream), &limits);
    assert_eq!(whole, feed(stream.chunks(step), &limits));
    assert_eq!(whole, feed(stream.chunks(1), &limits));
});

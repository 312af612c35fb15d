//! Message assembly: turns the bytes a client sends, cut anywhere, into whole
//! messages (RFC 6455 §5.4–§5.6).
//!
//! [`MessageReader::read`] takes whatever bytes arrived and consumes them. It
//! keeps only what it must between calls: up to 14 bytes of an unfinished
//! frame header, the payload of the message being assembled, and the UTF-8
//! state of a text message. Payload bytes are unmasked and validated as they
//! arrive, so an invalid text message fails in its first bad byte and a
//! message is never copied twice. Limits are checked from each frame header,
//! before any of its payload is stored; but memory is taken only for payload
//! bytes that have arrived, so a header announcing a large frame costs the
//! server nothing until the peer actually sends it.
//!
//! Feeding a stream whole or one byte at a time gives the same messages.

use super::close::{self, ProtocolError};
use super::frame::{self, FrameHeader, MAX_HEADER_LEN, Opcode, apply_mask};
use super::utf8::Utf8Validator;

/// A complete message from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (already checked to be UTF-8).
    Text(Vec<u8>),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping and its payload (at most 125 bytes), to be answered with a pong.
    Ping(Vec<u8>),
    /// A pong and its payload.
    Pong(Vec<u8>),
    /// A close frame: `None` when it carried no code.
    Close(Option<(u16, String)>),
}

/// The size limits a reader enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest payload one frame may announce.
    pub max_frame_bytes: usize,
    /// The largest message, all its fragments together.
    pub max_message_bytes: usize,
}

/// Where the reader is inside the frame stream.
#[derive(Debug)]
enum State {
    /// Collecting header bytes (`have` of them are in `buf`).
    Header { buf: [u8; MAX_HEADER_LEN], have: u8 },
    /// Inside a frame's payload.
    Payload {
        header: FrameHeader,
        remaining: u64,
        offset: usize,
    },
}

/// The data message being assembled across frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    Binary,
}

/// Reads messages from the client side of a connection.
#[derive(Debug)]
pub struct MessageReader {
    state: State,
    open: Open,
    utf8: Utf8Validator,
    /// Payload of the open data message.
    data: Vec<u8>,
    /// Payload of the control frame being read (≤ 125 bytes).
    control: Vec<u8>,
}

impl Default for MessageReader {
    fn default() -> Self {
        Self::new()
    }
}

impl MessageReader {
    /// A reader waiting for the first byte of a frame.
    pub fn new() -> Self {
        MessageReader {
            state: State::Header {
                buf: [0; MAX_HEADER_LEN],
                have: 0,
            },
            open: Open::None,
            utf8: Utf8Validator::new(),
            data: Vec::new(),
            control: Vec::new(),
        }
    }

    /// Bytes held for an unfinished message (for memory accounting).
    pub fn buffered(&self) -> usize {
        self.data.capacity() + self.control.capacity()
    }

    /// Consumes bytes from the front of `input` until one message is complete
    /// (returned) or `input` is used up (`Ok(None)`). Call again with the rest
    /// of `input` after a message. An error is final: close with its code.
    pub fn read(
        &mut self,
        input: &mut &[u8],
        limits: &Limits,
    ) -> Result<Option<Message>, ProtocolError> {
        loop {
            match self.state {
                State::Header { .. } => {
                    if !self.read_header(input, limits)? {
                        return Ok(None);
                    }
                }
                State::Payload { .. } => {
                    if let Some(message) = self.read_payload(input, limits)? {
                        return Ok(Some(message));
                    }
                    if input.is_empty() && matches!(self.state, State::Payload { .. }) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Collects header bytes; on a complete header checks it and moves to
    /// `Payload`. Returns false when `input` ran out first.
    fn read_header(&mut self, input: &mut &[u8], limits: &Limits) -> Result<bool, ProtocolError> {
        let State::Header { buf, have } = &mut self.state else {
            return Ok(true);
        };
        // Fast path: nothing held and the whole header is in `input`.
        let parsed = if *have == 0 {
            match frame::parse_header(input)? {
                Some((header, len)) => {
                    *input = &input[len..];
                    Some(header)
                }
                None => None,
            }
        } else {
            None
        };
        let header = match parsed {
            Some(h) => h,
            None => loop {
                // Slow path: one byte at a time into the small header buffer,
                // so we never take more bytes than the header has.
                if let Some((header, _)) = frame::parse_header(&buf[..*have as usize])? {
                    *have = 0;
                    break header;
                }
                let Some((&b, rest)) = input.split_first() else {
                    return Ok(false);
                };
                buf[*have as usize] = b;
                *have += 1;
                *input = rest;
            },
        };
        self.start_frame(header, limits)?;
        Ok(true)
    }

    /// Checks a complete header against the message state and the limits.
    fn start_frame(&mut self, header: FrameHeader, limits: &Limits) -> Result<(), ProtocolError> {
        if header.mask.is_none() {
            return Err(ProtocolError::Unmasked);
        }
        let len = header.payload_len;
        match header.opcode {
            Opcode::Text | Opcode::Binary if self.open != Open::None => {
                return Err(ProtocolError::ExpectedContinuation);
            }
            Opcode::Continuation if self.open == Open::None => {
                return Err(ProtocolError::UnexpectedContinuation);
            }
            Opcode::Text => self.open = Open::Text,
            Opcode::Binary => self.open = Open::Binary,
            _ => {}
        }
        if !header.opcode.is_control() {
            if len > limits.max_frame_bytes as u64 {
                return Err(ProtocolError::FrameTooBig);
            }
            if self.data.len() as u64 + len > limits.max_message_bytes as u64 {
                return Err(ProtocolError::MessageTooBig);
            }
            // Nothing reserved for the payload yet: a header costs a few
            // bytes to send, so memory follows the bytes that arrive.
        }
        self.state = State::Payload {
            header,
            remaining: len,
            offset: 0,
        };
        Ok(())
    }

    /// Moves payload bytes from `input` into the message, unmasking and
    /// validating them. Returns a message when a frame completes one.
    fn read_payload(
        &mut self,
        input: &mut &[u8],
        limits: &Limits,
    ) -> Result<Option<Message>, ProtocolError> {
        let State::Payload {
            header,
            remaining,
            offset,
        } = &mut self.state
        else {
            return Ok(None);
        };
        let take = (*remaining).min(input.len() as u64) as usize;
        let (chunk, rest) = input.split_at(take);
        *input = rest;
        let mask = header.mask.unwrap_or([0; 4]);
        let target = if header.opcode.is_control() {
            &mut self.control
        } else {
            grow_for(&mut self.data, take, limits.max_message_bytes);
            &mut self.data
        };
        let start = target.len();
        target.extend_from_slice(chunk);
        apply_mask(&mut target[start..], mask, *offset);
        if header.opcode != Opcode::Binary
            && !header.opcode.is_control()
            && self.open == Open::Text
            && self.utf8.feed(&self.data[start..]).is_err()
        {
            return Err(ProtocolError::InvalidUtf8);
        }
        *offset += take;
        *remaining -= take as u64;
        if *remaining > 0 {
            return Ok(None);
        }
        let header = *header;
        self.state = State::Header {
            buf: [0; MAX_HEADER_LEN],
            have: 0,
        };
        self.finish_frame(header)
    }

    /// A frame's payload is complete: produce a message if it ends one.
    fn finish_frame(&mut self, header: FrameHeader) -> Result<Option<Message>, ProtocolError> {
        match header.opcode {
            Opcode::Ping => Ok(Some(Message::Ping(std::mem::take(&mut self.control)))),
            Opcode::Pong => Ok(Some(Message::Pong(std::mem::take(&mut self.control)))),
            Opcode::Close => {
                let payload = std::mem::take(&mut self.control);
                parse_close_payload(&payload).map(|c| Some(Message::Close(c)))
            }
            _ if !header.fin => Ok(None),
            _ => {
                let data = std::mem::take(&mut self.data);
                let open = std::mem::replace(&mut self.open, Open::None);
                if open == Open::Text {
                    let complete = self.utf8.is_complete();
                    self.utf8 = Utf8Validator::new();
                    if !complete {
                        return Err(ProtocolError::InvalidUtf8);
                    }
                    return Ok(Some(Message::Text(data)));
                }
                Ok(Some(Message::Binary(data)))
            }
        }
    }
}

/// Makes room in `data` for `extra` bytes that have arrived, doubling like
/// `Vec` (so growth stays amortised) but never past `limit`: the reader holds
/// no more than the bytes it got, times two, and never more than its limit.
/// (The frame header already checked that `data.len() + extra <= limit`.)
fn grow_for(data: &mut Vec<u8>, extra: usize, limit: usize) {
    let need = data.len() + extra;
    if need > data.capacity() {
        let target = need.max((data.capacity() * 2).min(limit));
        data.reserve_exact(target - data.len());
    }
}

/// Checks a close frame's payload (RFC 6455 §5.5.1, §7.4): empty, or a code a
/// peer may send plus a UTF-8 reason.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<(u16, String)>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::BadCloseFrame),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !close::is_valid_received(code) {
                return Err(ProtocolError::BadCloseFrame);
            }
            let reason =
                std::str::from_utf8(&payload[2..]).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some((code, reason.to_string())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::encode_client_frame;

    const LIMITS: Limits = Limits {
        max_frame_bytes: 1 << 20,
        max_message_bytes: 1 << 20,
    };
    const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    /// Reads everything; returns the messages and the first error.
    fn read_all(stream: &[u8], piece: usize) -> (Vec<Message>, Option<ProtocolError>) {
        let mut reader = MessageReader::new();
        let mut out = Vec::new();
        for chunk in stream.chunks(piece.max(1)) {
            let mut input = chunk;
            loop {
                match reader.read(&mut input, &LIMITS) {
                    Ok(Some(m)) => out.push(m),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    fn both_ways(stream: &[u8]) -> (Vec<Message>, Option<ProtocolError>) {
        let whole = read_all(stream, stream.len());
        let bytewise = read_all(stream, 1);
        assert_eq!(whole, bytewise);
        whole
    }

    #[test]
    fn fragmented_text_with_interleaved_ping() {
        let mut s = encode_client_frame(false, 1, MASK, "안녕".as_bytes());
        s.extend(encode_client_frame(true, 9, MASK, b"p"));
        s.extend(encode_client_frame(true, 0, MASK, "하세요".as_bytes()));
        let (msgs, err) = both_ways(&s);
        assert_eq!(err, None);
        assert_eq!(
            msgs,
            vec![
                Message::Ping(b"p".to_vec()),
                Message::Text("안녕하세요".as_bytes().to_vec())
            ]
        );
    }

    #[test]
    fn code_point_split_across_frames_is_valid() {
        let bytes = "€".as_bytes();
        let mut s = encode_client_frame(false, 1, MASK, &bytes[..1]);
        s.extend(encode_client_frame(true, 0, MASK, &bytes[1..]));
        assert_eq!(both_ways(&s), (vec![Message::Text(bytes.to_vec())], None));
    }

    #[test]
    fn errors() {
        let unmasked = frame::encode_frame(Opcode::Text, b"hi");
        assert_eq!(both_ways(&unmasked).1, Some(ProtocolError::Unmasked));
        let cont = encode_client_frame(true, 0, MASK, b"x");
        assert_eq!(
            both_ways(&cont).1,
            Some(ProtocolError::UnexpectedContinuation)
        );
        let mut two = encode_client_frame(false, 1, MASK, b"a");
        two.extend(encode_client_frame(true, 1, MASK, b"b"));
        assert_eq!(both_ways(&two).1, Some(ProtocolError::ExpectedContinuation));
        // Fails fast: the message is not finished, but its first bytes are invalid.
        let bad = encode_client_frame(false, 1, MASK, b"ok\xff");
        assert_eq!(both_ways(&bad).1, Some(ProtocolError::InvalidUtf8));
        let truncated = encode_client_frame(true, 1, MASK, b"\xe2\x82");
        assert_eq!(both_ways(&truncated).1, Some(ProtocolError::InvalidUtf8));
        let close1 = encode_client_frame(true, 8, MASK, b"\x03");
        assert_eq!(both_ways(&close1).1, Some(ProtocolError::BadCloseFrame));
        let close1005 = encode_client_frame(true, 8, MASK, &1005u16.to_be_bytes());
        assert_eq!(both_ways(&close1005).1, Some(ProtocolError::BadCloseFrame));
        let mut bad_reason = 1000u16.to_be_bytes().to_vec();
        bad_reason.push(0xff);
        let close_bad = encode_client_frame(true, 8, MASK, &bad_reason);
        assert_eq!(both_ways(&close_bad).1, Some(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn limits_are_checked_from_the_header() {
        let limits = Limits {
            max_frame_bytes: 10,
            max_message_bytes: 15,
        };
        let mut reader = MessageReader::new();
        let big = encode_client_frame(true, 2, MASK, &[0; 11]);
        // Only the header is given: the limit already trips.
        let mut input = &big[..6];
        assert_eq!(
            reader.read(&mut input, &limits),
            Err(ProtocolError::FrameTooBig)
        );
        let mut reader = MessageReader::new();
        let mut s = encode_client_frame(false, 2, MASK, &[0; 10]);
        s.extend(encode_client_frame(true, 0, MASK, &[0; 10]));
        let mut input = &s[..];
        assert_eq!(
            reader.read(&mut input, &limits),
            Err(ProtocolError::MessageTooBig)
        );
    }

    #[test]
    fn never_holds_more_than_the_message_limit() {
        // Vec's own doubling would take 60 → 120 bytes for a 100-byte limit.
        let limits = Limits {
            max_frame_bytes: 100,
            max_message_bytes: 100,
        };
        let mut s = encode_client_frame(false, 2, MASK, &[1; 60]);
        s.extend(encode_client_frame(true, 0, MASK, &[2; 40]));
        let mut reader = MessageReader::new();
        let mut input = &s[..s.len() - 1];
        assert_eq!(reader.read(&mut input, &limits), Ok(None));
        assert!(reader.buffered() <= 100, "{}", reader.buffered());
    }

    #[test]
    fn a_frame_header_reserves_nothing_for_its_payload() {
        let limits = Limits {
            max_frame_bytes: 64 * 1024,
            max_message_bytes: 64 * 1024,
        };
        let frame = encode_client_frame(true, 2, MASK, &[7; 60 * 1024]);
        let header_len = frame.len() - 60 * 1024;
        let mut reader = MessageReader::new();
        let mut input = &frame[..header_len];
        assert_eq!(reader.read(&mut input, &limits), Ok(None));
        assert_eq!(reader.buffered(), 0, "a bare header claimed memory");
        // Memory follows the bytes that arrive (doubling, so amortised).
        let mut arrived = header_len;
        for step in [1, 100, 1000, 10_000] {
            let mut input = &frame[arrived..arrived + step];
            assert_eq!(reader.read(&mut input, &limits), Ok(None));
            arrived += step;
            let held = arrived - header_len;
            assert!(
                reader.buffered() <= 2 * held,
                "{} bytes held for {held} arrived",
                reader.buffered()
            );
        }
        let mut input = &frame[arrived..];
        let message = reader.read(&mut input, &limits).unwrap().unwrap();
        assert_eq!(message, Message::Binary(vec![7; 60 * 1024]));
    }

    #[test]
    fn close_frames() {
        let mut p = 4999u16.to_be_bytes().to_vec();
        p.extend_from_slice("bye 👋".as_bytes());
        let s = encode_client_frame(true, 8, MASK, &p);
        assert_eq!(
            both_ways(&s).0,
            vec![Message::Close(Some((4999, "bye 👋".into())))]
        );
        let empty = encode_client_frame(true, 8, MASK, b"");
        assert_eq!(both_ways(&empty).0, vec![Message::Close(None)]);
    }
}

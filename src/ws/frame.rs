//! The WebSocket frame (RFC 6455 §5.2): parsing a frame header from bytes,
//! unmasking a payload, and encoding the unmasked frames a server sends.
//!
//! ```text
//!  0               1               2               3
//!  F R R R opcode  M len(7)        extended length (0, 2 or 8 bytes)
//!  I S S S (4)     A               then the masking key (4 bytes, client only)
//!  N V V V         S               then the payload
//!      1 2 3       K
//! ```
//!
//! Everything here is a pure function over bytes: no I/O, no allocation but
//! the output of the encoders.

use super::close::ProtocolError;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// The next fragment of a text or binary message (0x0).
    Continuation,
    /// The first frame of a UTF-8 text message (0x1).
    Text,
    /// The first frame of a binary message (0x2).
    Binary,
    /// Starts or answers the close handshake (0x8).
    Close,
    /// Asks the other side for a pong with the same payload (0x9).
    Ping,
    /// Answers a ping, or tells the other side this one is alive (0xA).
    Pong,
}

impl Opcode {
    /// The opcode for the low four bits of a frame's first byte; `None` for the reserved ones.
    pub fn from_u8(bits: u8) -> Option<Opcode> {
        match bits {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// The four bits this opcode is written as.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, ping and pong: at most 125 bytes, never fragmented.
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The last frame of its message.
    pub fin: bool,
    /// What the frame carries.
    pub opcode: Opcode,
    /// The masking key; `None` for an unmasked (server) frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length the header announces (the payload itself follows).
    pub payload_len: u64,
}

/// The longest header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

/// Parses a frame header from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` does not hold the whole header yet, or the
/// header and its length in bytes. Checks what can be checked from the header
/// alone: RSV bits, opcode, control-frame rules and the length encoding.
/// Whether the mask is required is the caller's rule (a server requires it).
pub fn parse_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = Opcode::from_u8(b0 & 0x0F).ok_or(ProtocolError::UnknownOpcode)?;
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7F;
    if opcode.is_control() && (!fin || len7 > 125) {
        return Err(ProtocolError::BadControlFrame);
    }
    let len_bytes = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + len_bytes + if masked { 4 } else { 0 };
    if buf.len() < header_len {
        return Ok(None);
    }
    let payload_len = match len7 {
        126 => {
            let n = u16::from_be_bytes([buf[2], buf[3]]) as u64;
            if n < 126 {
                return Err(ProtocolError::BadLength);
            }
            n
        }
        127 => {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(&buf[2..10]);
            let n = u64::from_be_bytes(eight);
            if n >> 63 != 0 || n <= 0xFFFF {
                return Err(ProtocolError::BadLength);
            }
            n
        }
        n => n as u64,
    };
    let mask = if masked {
        let at = 2 + len_bytes;
        Some([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
    } else {
        None
    };
    Ok(Some((
        FrameHeader {
            fin,
            opcode,
            mask,
            payload_len,
        },
        header_len,
    )))
}

/// XORs `data` with the masking key, as if `data` started `offset` bytes into
/// the payload (so a payload unmasked in pieces gives the same bytes).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut key = [0u8; 4];
    for (i, k) in key.iter_mut().enumerate() {
        *k = mask[(offset + i) % 4];
    }
    // Eight bytes at a time: the key repeated twice as one u64.
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word) ^ wide;
        chunk.copy_from_slice(&x.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// Appends the header of an unmasked, final frame to `out`.
pub fn encode_header(opcode: Opcode, payload_len: usize, out: &mut Vec<u8>) {
    out.push(0x80 | opcode.bits());
    if payload_len < 126 {
        out.push(payload_len as u8);
    } else if payload_len <= 0xFFFF {
        out.push(126);
        out.extend_from_slice(&(payload_len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(payload_len as u64).to_be_bytes());
    }
}

/// Length of the header [`encode_header`] writes for this payload length.
pub fn header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// The payload of an unmasked frame made by [`encode_frame`].
pub fn payload_of(frame: &[u8]) -> &[u8] {
    let start = match frame.get(1).map(|b| b & 0x7F) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => return &[],
    };
    frame.get(start..).unwrap_or(&[])
}

/// The server's keep-alive ping: FIN, opcode 0x9, no payload. The same two
/// bytes for every socket and every round, so they need no allocation.
pub const PING: &[u8] = &[0x89, 0x00];

/// One unmasked, final frame: header and payload in one buffer.
pub fn encode_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_len(payload.len()) + payload.len());
    encode_header(opcode, payload.len(), &mut out);
    out.extend_from_slice(payload);
    out
}

/// A close frame with a code and a reason (the reason is cut to fit 125 bytes
/// at a character boundary).
pub fn encode_close(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode_frame(Opcode::Close, &payload)
}

/// A masked frame, as a client sends it (for tests and benches).
pub fn encode_client_frame(fin: bool, opcode_bits: u8, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + payload.len());
    out.push(if fin { 0x80 } else { 0 } | (opcode_bits & 0x0F));
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_static_ping_is_an_empty_ping_frame() {
        assert_eq!(PING, encode_frame(Opcode::Ping, b"").as_slice());
    }

    #[test]
    fn parses_the_rfc_examples() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = parse_header(&frame).unwrap().unwrap();
        assert_eq!(n, 6);
        assert!(h.fin);
        assert_eq!(h.opcode, Opcode::Text);
        assert_eq!(h.payload_len, 5);
        let mut payload = frame[6..].to_vec();
        apply_mask(&mut payload, h.mask.unwrap(), 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        let frame = encode_client_frame(true, 2, [1, 2, 3, 4], &[0u8; 70000]);
        for cut in 0..14 {
            assert_eq!(parse_header(&frame[..cut]).unwrap(), None, "cut {cut}");
        }
        assert!(parse_header(&frame[..14]).unwrap().is_some());
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(
            parse_header(&[0xC1, 0x80]),
            Err(ProtocolError::ReservedBits)
        );
        assert_eq!(
            parse_header(&[0x83, 0x80]),
            Err(ProtocolError::UnknownOpcode)
        );
        assert_eq!(
            parse_header(&[0x09, 0x80]),
            Err(ProtocolError::BadControlFrame)
        );
        assert_eq!(
            parse_header(&[0x89, 0xFE]),
            Err(ProtocolError::BadControlFrame)
        );
        assert_eq!(
            parse_header(&[0x82, 0x7E, 0, 5]),
            Err(ProtocolError::BadLength)
        );
        let mut top = vec![0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_header(&top), Err(ProtocolError::BadLength));
        top[2] = 0;
        top[9] = 200;
        assert_eq!(parse_header(&top), Err(ProtocolError::BadLength));
    }

    #[test]
    fn mask_in_pieces_equals_mask_whole() {
        let data: Vec<u8> = (0..100u8).collect();
        let mask = [9, 8, 7, 6];
        let mut whole = data.clone();
        apply_mask(&mut whole, mask, 0);
        let mut pieces = data.clone();
        let (a, b) = pieces.split_at_mut(13);
        apply_mask(a, mask, 0);
        apply_mask(b, mask, 13);
        assert_eq!(whole, pieces);
    }

    #[test]
    fn encodes_all_three_lengths() {
        for n in [0usize, 125, 126, 65535, 65536] {
            let f = encode_frame(Opcode::Binary, &vec![7u8; n]);
            assert_eq!(f.len(), header_len(n) + n);
            let (h, hl) = parse_header(&f).unwrap().unwrap();
            assert_eq!(
                (h.payload_len as usize, hl, h.mask),
                (n, header_len(n), None)
            );
        }
    }
}

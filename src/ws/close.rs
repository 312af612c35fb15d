//! Close codes (RFC 6455 §7.4): which ones a peer may send, which ones we send,
//! and the error type every protocol failure becomes.

/// A close status code.
pub type CloseCode = u16;

/// 1000: the conversation is over (a normal close, or the answer to one).
pub const NORMAL: CloseCode = 1000;
/// 1001: the server is shutting down.
pub const GOING_AWAY: CloseCode = 1001;
/// 1002: the peer broke RFC 6455 (see [`ProtocolError`]).
pub const PROTOCOL_ERROR: CloseCode = 1002;
/// 1003: a kind of message this endpoint does not take (binary in a chat room).
pub const UNSUPPORTED_DATA: CloseCode = 1003;
/// 1007: a text message or close reason that is not UTF-8.
pub const INVALID_PAYLOAD: CloseCode = 1007;
/// 1008: a rule of this server was broken (rate limit, backpressure limit).
pub const POLICY: CloseCode = 1008;
/// 1009: a frame or message over its size limit.
pub const TOO_BIG: CloseCode = 1009;
/// 1011: the server cannot go on with this socket through no fault of the peer.
pub const INTERNAL_ERROR: CloseCode = 1011;
/// Ours (private range): the same session opened a newer socket.
pub const REPLACED: CloseCode = 4000;
/// Ours (private range): the operator removed this user (or barred its
/// address); the page should not reconnect.
pub const REMOVED: CloseCode = 4001;

/// May a peer put this code in a close frame? (RFC 6455 §7.4.1–§7.4.2:
/// 1004, 1005, 1006 and 1015 are reserved and never sent; 0–999 and
/// 1016–2999 are unassigned; 3000–4999 belong to libraries and applications.)
pub fn is_valid_received(code: CloseCode) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// Why we are closing a WebSocket: the code and reason we send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// The status code sent in the close frame.
    pub code: CloseCode,
    /// The text after the code: short, for people reading a trace.
    pub reason: &'static str,
}

impl CloseReason {
    /// A close with this code and reason.
    pub const fn new(code: CloseCode, reason: &'static str) -> Self {
        CloseReason { code, reason }
    }
}

/// Protocol failures found while reading frames; each becomes a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// RSV bits set without a negotiated extension → 1002.
    ReservedBits,
    /// Opcode 3–7 or 0xB–0xF → 1002.
    UnknownOpcode,
    /// A client frame without the mask bit → 1002.
    Unmasked,
    /// A control frame with FIN clear or a payload over 125 bytes → 1002.
    BadControlFrame,
    /// A length that uses more bytes than needed, or the 64-bit one with its top bit set → 1002.
    BadLength,
    /// A continuation frame with no message open → 1002.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is open → 1002.
    ExpectedContinuation,
    /// A close payload of one byte, or a code nobody may send → 1002.
    BadCloseFrame,
    /// A text message or close reason that is not UTF-8 → 1007.
    InvalidUtf8,
    /// A frame over the frame limit → 1009.
    FrameTooBig,
    /// A message over the message limit → 1009.
    MessageTooBig,
}

impl ProtocolError {
    /// The close code this failure is answered with.
    pub fn close_code(self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 => INVALID_PAYLOAD,
            ProtocolError::FrameTooBig | ProtocolError::MessageTooBig => TOO_BIG,
            _ => PROTOCOL_ERROR,
        }
    }

    /// The close reason we send: short, for people reading a trace.
    pub fn reason(self) -> &'static str {
        match self {
            ProtocolError::ReservedBits => "reserved bits set",
            ProtocolError::UnknownOpcode => "unknown opcode",
            ProtocolError::Unmasked => "client frames must be masked",
            ProtocolError::BadControlFrame => "bad control frame",
            ProtocolError::BadLength => "bad payload length",
            ProtocolError::UnexpectedContinuation => "continuation without a message",
            ProtocolError::ExpectedContinuation => "expected a continuation frame",
            ProtocolError::BadCloseFrame => "bad close frame",
            ProtocolError::InvalidUtf8 => "invalid UTF-8",
            ProtocolError::FrameTooBig => "frame too big",
            ProtocolError::MessageTooBig => "message too big",
        }
    }

    /// The close frame this failure is answered with: [`close_code`](Self::close_code) and [`reason`](Self::reason).
    pub fn to_close(self) -> CloseReason {
        CloseReason::new(self.close_code(), self.reason())
    }
}

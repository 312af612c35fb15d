//! The WebSocket opening handshake (RFC 6455 §4.2), which is an HTTP
//! exchange: checking a client's upgrade request and building the
//! `101 Switching Protocols` answer. After it the connection speaks
//! [`crate::ws`] frames, which know nothing of HTTP.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

use super::Status;
use super::request::Request;
use super::response::Response;

/// The GUID every server appends to the key (RFC 6455 §1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The subprotocol we speak when a client offers it.
pub const SUBPROTOCOL: &str = "chat";

/// Why an upgrade request is refused, and with which HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not GET → 405.
    NotGet,
    /// Not HTTP/1.1 or later → 400.
    OldHttp,
    /// No `Upgrade: websocket` → 400 (426 would invite a retry that cannot work).
    NoUpgradeToken,
    /// No `Connection: upgrade` → 400.
    NoConnectionToken,
    /// `Sec-WebSocket-Version` missing or not 13 → 426 with `Sec-WebSocket-Version: 13`.
    BadVersion,
    /// `Sec-WebSocket-Key` missing or not 16 bytes of base64 → 400.
    BadKey,
}

impl HandshakeError {
    /// The status the refused handshake is answered with.
    pub fn status(self) -> Status {
        match self {
            HandshakeError::NotGet => Status::MethodNotAllowed,
            HandshakeError::BadVersion => Status::UpgradeRequired,
            _ => Status::BadRequest,
        }
    }

    /// The body of that answer: which rule the handshake broke.
    pub fn reason(self) -> &'static str {
        match self {
            HandshakeError::NotGet => "WebSocket upgrades use GET",
            HandshakeError::OldHttp => "WebSocket upgrades need HTTP/1.1",
            HandshakeError::NoUpgradeToken => "missing Upgrade: websocket",
            HandshakeError::NoConnectionToken => "missing Connection: upgrade",
            HandshakeError::BadVersion => "unsupported Sec-WebSocket-Version (13 only)",
            HandshakeError::BadKey => "bad Sec-WebSocket-Key",
        }
    }
}

/// A checked upgrade request: what the `101` answer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
    /// The chosen subprotocol, if the client offered one we speak.
    pub protocol: Option<&'static str>,
}

/// Checks the parts of the request RFC 6455 §4.2.1 requires.
pub fn check(req: &Request) -> Result<Upgrade, HandshakeError> {
    if req.method != "GET" {
        return Err(HandshakeError::NotGet);
    }
    if req.version < 1 {
        return Err(HandshakeError::OldHttp);
    }
    if !req.header_has_token("upgrade", "websocket") {
        return Err(HandshakeError::NoUpgradeToken);
    }
    if !req.header_has_token("connection", "upgrade") {
        return Err(HandshakeError::NoConnectionToken);
    }
    let versions: Vec<&[u8]> = req.headers_named("sec-websocket-version").collect();
    if versions.len() != 1 || versions[0].trim_ascii() != b"13" {
        return Err(HandshakeError::BadVersion);
    }
    let keys: Vec<&[u8]> = req.headers_named("sec-websocket-key").collect();
    if keys.len() != 1 {
        return Err(HandshakeError::BadKey);
    }
    let key = keys[0].trim_ascii();
    match BASE64.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(HandshakeError::BadKey),
    }
    let protocol = if req.header_has_token("sec-websocket-protocol", SUBPROTOCOL) {
        Some(SUBPROTOCOL)
    } else {
        None
    };
    Ok(Upgrade {
        accept: accept_key(key),
        protocol,
    })
}

/// `base64(sha1(key + GUID))`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    BASE64.encode(sha.finalize())
}

/// The `101 Switching Protocols` response.
pub fn response(upgrade: &Upgrade) -> Response {
    let response = Response::new(Status::SwitchingProtocols)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Accept", upgrade.accept.clone());
    match upgrade.protocol {
        Some(protocol) => response.header("Sec-WebSocket-Protocol", protocol),
        None => response,
    }
}

/// The `101 Switching Protocols` head as bytes.
pub fn response_bytes(upgrade: &Upgrade) -> Vec<u8> {
    response(upgrade).encode(false, true).0.into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_101_has_no_length_and_ends_its_head() {
        let upgrade = Upgrade {
            accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into(),
            protocol: Some(SUBPROTOCOL),
        };
        let head = String::from_utf8(response_bytes(&upgrade)).unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
    }

    #[test]
    fn rfc_example_key() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}

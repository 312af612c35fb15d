//! Framing pipelined requests: where the next complete request (head and
//! body) in a connection's unprocessed input ends, with no I/O. The server
//! answers one request, moves its offset past it, and asks again, so a batch
//! of pipelined requests costs one pass over its bytes (not one copy of the
//! rest per request).

use super::Status;
use super::request::{self, HeadLimits, Request};

/// What the front of the input holds.
#[derive(Debug)]
pub enum Framed<'h, 'b> {
    /// A whole request: its head parsed, its body `input[head_len..len]`.
    Complete {
        /// The parsed head.
        request: Request<'h, 'b>,
        /// Bytes of the head, blank line included.
        head_len: usize,
        /// Bytes of the whole request, head and body.
        len: usize,
    },
    /// Not all of it has arrived: keep the bytes, read more.
    Partial,
    /// The head is here but not the body, and the client waits to be told
    /// to send it (`Expect: 100-continue`): answer `100 Continue` (once) if
    /// the body is wanted, else the final status at once.
    AwaitingBody {
        /// The parsed head.
        request: Request<'h, 'b>,
    },
    /// Not a request this server takes: answer with this status and close.
    Refused(Status),
}

/// Frames the request at the front of `input`. `scanned` is how far earlier
/// calls looked for the end of its head in the same bytes (0 for a new
/// request); it moves forward while the head is incomplete, so a head sent
/// in many pieces is scanned once.
pub fn next_request<'h, 'b>(
    input: &'b [u8],
    scanned: &mut usize,
    limits: &HeadLimits,
    max_body_bytes: usize,
    storage: &'h mut [httparse::Header<'b>],
) -> Framed<'h, 'b> {
    let head_len = match request::find_head_end(input, scanned, limits) {
        Ok(Some(n)) => n,
        Ok(None) => return Framed::Partial,
        Err(e) => return Framed::Refused(e.status()),
    };
    let request = match request::parse(&input[..head_len], storage) {
        Ok(r) => r,
        Err(e) => return Framed::Refused(e.status()),
    };
    let body_len = match request.content_length() {
        Ok(n) if n > max_body_bytes => return Framed::Refused(Status::PayloadTooLarge),
        Ok(n) => n,
        Err(status) => return Framed::Refused(status),
    };
    let len = head_len + body_len;
    if input.len() < len {
        return match request.expects_continue() {
            true => Framed::AwaitingBody { request },
            false => Framed::Partial,
        };
    }
    Framed::Complete {
        request,
        head_len,
        len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::MAX_HEADERS;

    const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 8192,
        max_line_bytes: 2048,
    };

    /// (path, length) of each complete request, then the final outcome.
    fn frame_all(input: &[u8]) -> (Vec<(String, usize)>, &'static str) {
        let mut at = 0;
        let mut found = Vec::new();
        loop {
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut scanned = 0;
            match next_request(&input[at..], &mut scanned, &LIMITS, 100, &mut storage) {
                Framed::Complete { request, len, .. } => {
                    found.push((request.path.to_string(), len));
                    at += len;
                }
                Framed::Partial | Framed::AwaitingBody { .. } => return (found, "partial"),
                Framed::Refused(_) => return (found, "refused"),
            }
        }
    }

    #[test]
    fn frames_pipelined_requests_with_bodies() {
        let input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\nHost: x\r\n\r\nGET /d";
        let (found, end) = frame_all(input);
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["/a", "/b", "/c"]);
        assert_eq!(found[1].1, 51, "head and body");
        assert_eq!(end, "partial");
    }

    #[test]
    fn a_body_awaited_with_expect_continue_is_said_so() {
        let head =
            b"POST /login HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
        let awaited = |input: &[u8]| {
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            matches!(
                next_request(input, &mut 0, &LIMITS, 100, &mut storage),
                Framed::AwaitingBody { request } if request.path == "/login"
            )
        };
        assert!(awaited(head));
        assert!(awaited(&[&head[..], b"xy"].concat()), "part of the body");
        let (found, _) = frame_all(&[&head[..], b"xyz"].concat());
        assert_eq!(found.len(), 1, "the body is all there: complete");
        // Without the expectation, or in HTTP/1.0 (no `100` there): partial.
        assert!(!awaited(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n"
        ));
        assert!(!awaited(
            b"POST /login HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
        ));
        // Nothing to wait for without a body.
        assert!(!awaited(
            b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n"
        ));
    }

    #[test]
    fn an_incomplete_body_is_partial_and_a_large_one_refused() {
        let (found, end) = frame_all(b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxy");
        assert!(found.is_empty());
        assert_eq!(end, "partial");
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let big = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n";
        assert!(matches!(
            next_request(big, &mut 0, &LIMITS, 100, &mut storage),
            Framed::Refused(Status::PayloadTooLarge)
        ));
        let (found, end) = frame_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nnot http\r\n\r\n");
        assert_eq!((found.len(), end), (1, "refused"));
    }
}

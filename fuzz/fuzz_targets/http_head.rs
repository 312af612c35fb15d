//! The HTTP request head: `find_head_end` on a growing buffer, then `parse`
//! and everything the server asks of a parsed request (tokens, cookies,
//! lengths, the WebSocket upgrade checks, the query).
//!
//! Input: 3 control bytes (head limit, line limit, growth step), then the
//! bytes a client sends. The head end found while the buffer grows in steps
//! (as reads arrive) must equal the one found in the whole buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsrooms::http::form;
use wsrooms::http::request::{HeadLimits, MAX_HEADERS, find_head_end, parse};
use wsrooms::http::upgrade;

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (ctl, buf) = data.split_at(3);
    let limits = HeadLimits {
        max_head_bytes: 64 + ctl[0] as usize * 16,
        max_line_bytes: 16 + ctl[1] as usize * 8,
    };
    let step = ctl[2] as usize % 31 + 1;

    let mut scanned = 0;
    let whole = find_head_end(buf, &mut scanned, &limits);
    // Growing: the server calls again with more bytes and the same `scanned`.
    let mut scanned = 0;
    let mut grown = Ok(None);
    let mut end = 0;
    while end < buf.len() || end == 0 {
        end = (end + step).min(buf.len());
        grown = find_head_end(&buf[..end], &mut scanned, &limits);
        assert!(scanned <= end);
        if !matches!(grown, Ok(None)) || end == buf.len() {
            break;
        }
    }
    // Only the first `max_head_bytes` count, so the answer never depends on
    // how the bytes were cut into reads (limits included).
    assert_eq!(whole, grown);
    let Ok(Some(n)) = whole else {
        return;
    };
    assert!(n <= buf.len() && n <= limits.max_head_bytes);
    assert!(buf[..n].ends_with(b"\n\n") || buf[..n].ends_with(b"\n\r\n"));

    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let Ok(req) = parse(&buf[..n], &mut storage) else {
        return;
    };
    assert!(req.path.starts_with('/'));
    let _ = req.header_has_token("connection", "upgrade");
    // A parsed HTTP/1.1 request has exactly one Host.
    assert!(req.version == 0 || req.headers_named("host").count() == 1);
    let _ = req.header_str("host");
    let _ = req.cookie("wsrooms_session");
    let _ = req.content_length();
    let _ = req.keep_alive();
    if let Some(q) = req.query {
        let _ = form::field(q, "room");
        let _ = form::field(q, "since");
    }
    let _ = form::decode(req.path);
    if let Ok(up) = upgrade::check(&req) {
        assert_eq!(up.accept.len(), 28);
        let head = upgrade::response_bytes(&up);
        assert!(head.ends_with(b"\r\n\r\n"));
    }
});

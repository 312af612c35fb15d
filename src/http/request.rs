//! Request heads: finding where a head ends in a growing buffer without
//! re-scanning it (a slowly sent long head must not cost quadratic time),
//! enforcing the size limits, and parsing it once, zero-copy, with `httparse`.

use super::Status;

/// Most headers a request may have (more → `431`).
pub const MAX_HEADERS: usize = 48;

/// Why a request head is refused, and the status it becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// The request line is over its limit → `414`.
    LineTooLong,
    /// The head is over `--max-head-bytes`, or has too many headers → `431`.
    TooLarge,
    /// Not HTTP → `400`.
    Malformed,
    /// An HTTP/1.1 request without a `Host` header, or any request with
    /// more than one (RFC 9112 §3.2) → `400`.
    BadHost,
}

impl HeadError {
    /// The status this error is answered with.
    pub fn status(self) -> Status {
        match self {
            HeadError::LineTooLong => Status::UriTooLong,
            HeadError::TooLarge => Status::HeadersTooLarge,
            HeadError::Malformed | HeadError::BadHost => Status::BadRequest,
        }
    }
}

/// Size limits for a head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// The longest head, blank line included (`--max-head-bytes`).
    pub max_head_bytes: usize,
    /// The longest request line (more gets `414`).
    pub max_line_bytes: usize,
}

/// Looks for the blank line that ends a head in `buf`, starting near
/// `*scanned` (how far earlier calls looked) and moving `*scanned` forward, so
/// each byte of the head is looked at a bounded number of times however it
/// arrives. Empty lines before the request line (RFC 9112 §2.2) are skipped
/// but belong to the head: they count towards `max_head_bytes`, so a peer
/// sending nothing else gets `431` once the buffer reaches the limit.
/// Returns the head's length (empty lines and blank line included), or an
/// error once the buffer is past a limit without a complete head or line.
pub fn find_head_end(
    buf: &[u8],
    scanned: &mut usize,
    limits: &HeadLimits,
) -> Result<Option<usize>, HeadError> {
    // Only the first `max_head_bytes` matter: what lies beyond cannot be part
    // of an acceptable head. (So the answer is the same whether the bytes
    // come in one read or many.)
    let buf = &buf[..buf.len().min(limits.max_head_bytes)];
    // Where the request line starts. Looked at again on each call, but only
    // a peer that sends empty lines pays for it, and the head limit bounds it.
    let start = leading_empty_lines(buf);
    let from = scanned.saturating_sub(3).max(start);
    let end = blank_line_end(buf, from);
    // The request line ends at the first newline after the empty lines.
    let line = &buf[start..end.unwrap_or(buf.len())];
    match line.iter().position(|&b| b == b'\n') {
        Some(n) if n > limits.max_line_bytes => return Err(HeadError::LineTooLong),
        None if line.len() > limits.max_line_bytes => return Err(HeadError::LineTooLong),
        _ => {}
    }
    match end {
        Some(n) if n > limits.max_head_bytes => Err(HeadError::TooLarge),
        Some(n) => Ok(Some(n)),
        None if buf.len() >= limits.max_head_bytes => Err(HeadError::TooLarge),
        None => {
            *scanned = buf.len();
            Ok(None)
        }
    }
}

/// Length of the complete empty lines (`\r\n` or `\n`) at the start of
/// `buf`. A final lone `\r` is not counted yet: its `\n` may follow.
fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut at = 0;
    loop {
        match buf.get(at..at + 2) {
            Some([b'\r', b'\n']) => at += 2,
            _ if buf.get(at) == Some(&b'\n') => at += 1,
            _ => return at,
        }
    }
}

/// The end of the first blank line ("\n\n" or "\n\r\n") whose first
/// newline is at or after `from`.
fn blank_line_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// A parsed request head. Borrows the connection's buffer: nothing copied.
#[derive(Debug)]
pub struct Request<'h, 'b> {
    /// `GET`, `POST`, … as sent.
    pub method: &'b str,
    /// The path part of the target, still percent-encoded.
    pub path: &'b str,
    /// The query string after `?`, if any.
    pub query: Option<&'b str>,
    /// The host of an absolute-form target (`GET http://HOST/path`), which
    /// stands for the `Host` header (RFC 9112 §3.2.2); see [`Request::host`].
    pub authority: Option<&'b str>,
    /// Minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// The headers in the order sent.
    pub headers: &'h [httparse::Header<'b>],
}

impl<'h, 'b> Request<'h, 'b> {
    /// Values of every header with this (lower-case) name.
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b [u8]> + 's {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The value of a header that should appear once (the first one).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers_named(name).next()
    }

    /// The header as text, if it is there and is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'b str> {
        self.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// The host the request is for: an absolute-form target's, else the
    /// `Host` header's (RFC 9112 §3.2.2: the target's wins).
    pub fn host(&self) -> Option<&'b str> {
        self.authority.or_else(|| self.header_str("host"))
    }

    /// The client address a trusted proxy put last in `X-Forwarded-For`
    /// (only meaningful behind one: anyone else can send the header). Some
    /// proxies write it with its port or IPv6 in brackets: `1.2.3.4:5678`,
    /// `[2001:db8::7]`, `[2001:db8::7]:5678` name the same clients.
    pub fn forwarded_for(&self) -> Option<std::net::IpAddr> {
        let value = self.headers_named("x-forwarded-for").last()?;
        let text = std::str::from_utf8(value).ok()?;
        forwarded_address(text.rsplit(',').next()?.trim())
    }

    /// Does a comma-separated header list (in any of its headers) hold this
    /// token, compared case-insensitively?
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers_named(name).any(|value| {
            value
                .split(|&b| b == b',')
                .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// `Content-Length`, `Ok(0)` when absent; `Err` when unusable.
    pub fn content_length(&self) -> Result<usize, Status> {
        if self.header("transfer-encoding").is_some() {
            return Err(Status::LengthRequired);
        }
        let mut lengths = self.headers_named("content-length");
        let Some(first) = lengths.next() else {
            return Ok(0);
        };
        if lengths.any(|other| other != first) {
            return Err(Status::BadRequest);
        }
        let text = std::str::from_utf8(first)
            .map_err(|_| Status::BadRequest)?
            .trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Status::BadRequest);
        }
        text.parse().map_err(|_| Status::PayloadTooLarge)
    }

    /// Should the connection stay open after the answer?
    pub fn keep_alive(&self) -> bool {
        if self.header_has_token("connection", "close") {
            return false;
        }
        self.version >= 1 || self.header_has_token("connection", "keep-alive")
    }

    /// Does the client wait for `100 Continue` before it sends the body
    /// (`Expect: 100-continue`)? Ignored in HTTP/1.0, which has no `100`
    /// (RFC 9110 §10.1.1).
    pub fn expects_continue(&self) -> bool {
        self.version >= 1 && self.header_has_token("expect", "100-continue")
    }

    /// The value of a cookie.
    pub fn cookie(&self, name: &str) -> Option<&'b str> {
        self.headers_named("cookie")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim())
    }
}

/// One `X-Forwarded-For` entry as an address: `IP`, `IP:port`, `[IPv6]`
/// or `[IPv6]:port`; `None` for anything else (`unknown`, a name, empty).
fn forwarded_address(entry: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Ok(socket) = entry.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// Parses a complete head (as found by [`find_head_end`]) into `storage`.
/// Leading empty lines are skipped; the `Host` rule is checked here.
pub fn parse<'h, 'b>(
    head: &'b [u8],
    storage: &'h mut [httparse::Header<'b>],
) -> Result<Request<'h, 'b>, HeadError> {
    let mut req = httparse::Request::new(storage);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HeadError::Malformed),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    }
    let method = req.method.ok_or(HeadError::Malformed)?;
    let target = req.path.ok_or(HeadError::Malformed)?;
    let version = req.version.ok_or(HeadError::Malformed)?;
    let (authority, target) = split_absolute_form(target)?;
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    // `http://host` and `http://host?x` have the path `/`.
    let path = if path.is_empty() { "/" } else { path };
    let headers: &'h [httparse::Header<'b>] = req.headers;
    check_host(headers, version)?;
    Ok(Request {
        method,
        path,
        query,
        authority,
        version,
        headers,
    })
}

/// The origin-form target (`/path?query`) as it is, or an absolute-form
/// one (`http://host:port/path?query`, which a server must accept: RFC 9112
/// §3.2.2) split into its host and the rest (whose empty path is `/`).
/// Anything else (`*`, `host:port`, another scheme) is malformed here.
fn split_absolute_form(target: &str) -> Result<(Option<&str>, &str), HeadError> {
    if target.starts_with('/') {
        return Ok((None, target));
    }
    let scheme_len = ["http://", "https://"]
        .iter()
        .find(|s| {
            target
                .get(..s.len())
                .is_some_and(|t| t.eq_ignore_ascii_case(s))
        })
        .map(|s| s.len())
        .ok_or(HeadError::Malformed)?;
    let rest = &target[scheme_len..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return Err(HeadError::Malformed);
    }
    Ok((Some(authority), rest))
}

/// Exactly one `Host` in HTTP/1.1; at most one in HTTP/1.0 (RFC 9112 §3.2).
fn check_host(headers: &[httparse::Header], version: u8) -> Result<(), HeadError> {
    let hosts = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .count();
    match (hosts, version) {
        (0, 0) | (1, _) => Ok(()),
        _ => Err(HeadError::BadHost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 8192,
        max_line_bytes: 2048,
    };

    #[test]
    fn an_absolute_form_target_gives_its_path_and_its_host_wins() {
        let mut storage = [httparse::EMPTY_HEADER; 8];
        let head = b"GET HTTP://a.example:8/x/y?z=1 HTTP/1.1\r\nHost: b.example\r\n\r\n";
        let req = parse(head, &mut storage).unwrap();
        assert_eq!((req.path, req.query), ("/x/y", Some("z=1")));
        assert_eq!(req.host(), Some("a.example:8"));
        for (target, path, query) in [
            ("http://a", "/", None),
            ("http://a?q", "/", Some("q")),
            ("https://a/", "/", None),
        ] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            let mut storage = [httparse::EMPTY_HEADER; 8];
            let req = parse(head.as_bytes(), &mut storage).unwrap();
            assert_eq!((req.path, req.query), (path, query), "{target}");
        }
        for target in ["*", "a:80", "ftp://a/x", "http:///x", "http://u@a/x", "x"] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            let mut storage = [httparse::EMPTY_HEADER; 8];
            let parsed = parse(head.as_bytes(), &mut storage);
            assert!(matches!(parsed, Err(HeadError::Malformed)), "{target}");
        }
    }

    #[test]
    fn finds_the_end_when_fed_byte_by_byte() {
        let head = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        let mut scanned = 0;
        for n in 1..head.len() {
            let found = find_head_end(&head[..n], &mut scanned, &LIMITS).unwrap();
            if n < head.len() - 4 {
                assert_eq!(found, None, "at {n}");
            } else {
                assert_eq!(found, Some(head.len() - 4));
                break;
            }
        }
    }

    #[test]
    fn limits() {
        let mut scanned = 0;
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(3000));
        assert_eq!(
            find_head_end(long_line.as_bytes(), &mut scanned, &LIMITS),
            Err(HeadError::LineTooLong)
        );
        let mut scanned = 0;
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(
            find_head_end(big.as_bytes(), &mut scanned, &LIMITS),
            Err(HeadError::TooLarge)
        );
    }

    #[test]
    fn parses_tokens_and_cookies() {
        let head = b"GET /rooms/5/ws?since=3 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nCookie: a=b; wsrooms_session=abc\r\n\r\n";
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let req = parse(head, &mut storage).unwrap();
        assert_eq!(req.path, "/rooms/5/ws");
        assert_eq!(req.query, Some("since=3"));
        assert!(req.header_has_token("connection", "upgrade"));
        assert_eq!(req.cookie("wsrooms_session"), Some("abc"));
        assert!(req.keep_alive());
    }

    /// Feeds `head` whole and then one byte at a time; both must agree.
    fn find_both_ways(head: &[u8], limits: &HeadLimits) -> Result<Option<usize>, HeadError> {
        let whole = find_head_end(head, &mut 0, limits);
        let mut scanned = 0;
        let mut grown = Ok(None);
        for n in 1..=head.len() {
            grown = find_head_end(&head[..n], &mut scanned, limits);
            if grown != Ok(None) {
                break;
            }
        }
        assert_eq!(whole, grown, "{:?}", String::from_utf8_lossy(head));
        whole
    }

    #[test]
    fn empty_lines_before_the_request_line_are_part_of_the_head() {
        for prefix in ["", "\r\n", "\n", "\r\n\r\n", "\n\r\n\n"] {
            let head = format!("{prefix}GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
            let found = find_both_ways(head.as_bytes(), &LIMITS);
            assert_eq!(found, Ok(Some(head.len())), "{prefix:?}");
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let req = parse(head.as_bytes(), &mut storage).unwrap();
            assert_eq!((req.method, req.path), ("GET", "/x"));
        }
        // A lone CR is not an empty line.
        let head = b"\rGET /x HTTP/1.1\r\nHost: a\r\n\r\n";
        let n = find_both_ways(head, &LIMITS).unwrap().unwrap();
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        assert_eq!(
            parse(&head[..n], &mut storage).unwrap_err(),
            HeadError::Malformed
        );
    }

    #[test]
    fn empty_lines_count_towards_the_head_limit_not_the_line_limit() {
        let limits = HeadLimits {
            max_head_bytes: 256,
            max_line_bytes: 64,
        };
        // Many empty lines, then a short request line: only the head limit.
        let head = format!("{}GET / HTTP/1.1\r\n\r\n", "\r\n".repeat(100));
        assert_eq!(
            find_both_ways(head.as_bytes(), &limits),
            Ok(Some(head.len()))
        );
        let head = format!("{}GET / HTTP/1.1\r\n\r\n", "\r\n".repeat(120));
        assert_eq!(
            find_both_ways(head.as_bytes(), &limits),
            Err(HeadError::TooLarge)
        );
        // The request line after them is still held to the line limit,
        // complete or not.
        let long = format!("\n\nGET /{} HTTP/1.1\r\n\r\n", "a".repeat(80));
        assert_eq!(
            find_both_ways(long.as_bytes(), &limits),
            Err(HeadError::LineTooLong)
        );
        let unfinished = format!("\r\nGET /{}", "a".repeat(80));
        assert_eq!(
            find_both_ways(unfinished.as_bytes(), &limits),
            Err(HeadError::LineTooLong)
        );
        // Nothing but empty lines: waits, then 431 at the head limit.
        assert_eq!(find_both_ways(&[b'\n'; 255], &limits), Ok(None));
        assert_eq!(
            find_both_ways(&[b'\n'; 256], &limits),
            Err(HeadError::TooLarge)
        );
        let crlf = "\r\n".repeat(128);
        assert_eq!(
            find_both_ways(crlf.as_bytes(), &limits),
            Err(HeadError::TooLarge)
        );
    }

    #[test]
    fn host_is_required_once_in_http11() {
        let cases: [(&str, Result<(), HeadError>); 6] = [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(())),
            ("GET / HTTP/1.1\r\nX: y\r\n\r\n", Err(HeadError::BadHost)),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nHOST: a\r\n\r\n",
                Err(HeadError::BadHost),
            ),
            ("GET / HTTP/1.0\r\n\r\n", Ok(())),
            ("GET / HTTP/1.0\r\nHost: a\r\n\r\n", Ok(())),
            (
                "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
                Err(HeadError::BadHost),
            ),
        ];
        for (head, want) in cases {
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let got = parse(head.as_bytes(), &mut storage).map(|_| ());
            assert_eq!(got, want, "{head:?}");
        }
        assert_eq!(HeadError::BadHost.status(), Status::BadRequest);
    }

    #[test]
    fn growing_and_whole_agree_on_every_short_input() {
        // Every string of up to 7 bytes over the bytes that matter, fed whole
        // and in steps of 1, 2 and 3: the same answer.
        let alphabet = [b'\r', b'\n', b'G', b':'];
        for (max_head_bytes, max_line_bytes) in [(6, 3), (4, 6), (5, 5)] {
            let limits = HeadLimits {
                max_head_bytes,
                max_line_bytes,
            };
            agree_on_every_short_input(&alphabet, &limits);
        }
    }

    fn agree_on_every_short_input(alphabet: &[u8; 4], limits: &HeadLimits) {
        for len in 1..=7u32 {
            for mut code in 0..4usize.pow(len) {
                let buf: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[code % 4];
                        code /= 4;
                        b
                    })
                    .collect();
                let whole = find_head_end(&buf, &mut 0, limits);
                for step in 1..=3 {
                    let mut scanned = 0;
                    let mut end = 0;
                    let grown = loop {
                        end = (end + step).min(buf.len());
                        let r = find_head_end(&buf[..end], &mut scanned, limits);
                        if r != Ok(None) || end == buf.len() {
                            break r;
                        }
                    };
                    assert_eq!(whole, grown, "{buf:?} in steps of {step}");
                }
            }
        }
    }
}

//! Responses: the one builder of every answer this server sends (pages,
//! errors, redirects, the `101` of an upgrade, the `503` of a refused
//! connection): a status, headers and a body, turned into bytes for the
//! write queue. A body of embedded page bytes is not copied: it goes to the
//! queue as [`Bytes::Static`].

use super::Status;
use crate::bytes::Bytes;

/// Sent with every page: no inline script, nothing from elsewhere.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The interim answer to a client that waits with its body
/// (`Expect: 100-continue`): go on.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A response before it is turned into bytes.
#[derive(Debug)]
pub struct Response {
    /// The status line's code and phrase.
    pub status: Status,
    /// Headers in the order added; `Content-Length` and `Connection` are
    /// written by [`encode`](Self::encode), not kept here.
    pub headers: Vec<(&'static str, String)>,
    /// The body: static (an embedded page), shared or owned.
    pub body: Bytes,
    /// Close the connection after this response.
    pub close: bool,
    /// The request was HTTP/1.0, where a connection closes unless both
    /// sides say `Connection: keep-alive`: a kept connection says so.
    pub http10: bool,
}

impl Response {
    /// A response with this status, no headers and no body.
    pub fn new(status: Status) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Bytes::EMPTY,
            close: false,
            http10: false,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body and its `Content-Type`.
    pub fn body(mut self, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        self.headers
            .push(("Content-Type", content_type.to_string()));
        self.body = body.into();
        self
    }

    /// A plain-text response: a short answer for people and scripts.
    pub fn text(status: Status, text: &str) -> Self {
        Response::new(status).body("text/plain; charset=utf-8", text.as_bytes().to_vec())
    }

    /// Headers every HTML page gets: a strict content policy, no sniffing,
    /// no framing.
    pub fn page_headers(self) -> Self {
        self.header("Content-Security-Policy", CSP)
            .header("X-Content-Type-Options", "nosniff")
            // Not `no-referrer`: under it a browser sends `Origin: null`
            // with the login form's POST, which the login CSRF check must
            // refuse. `same-origin` still sends no referrer to other sites.
            .header("Referrer-Policy", "same-origin")
            .header("X-Frame-Options", "DENY")
    }

    /// A small HTML page explaining an error; `field` names the form input
    /// the message belongs to (the login page's script shows it there).
    pub fn error_page(status: Status, field: &str, message: &str, back: &str) -> Self {
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{code} {phrase}</title><link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\
             <link rel=\"stylesheet\" href=\"/static/style.css\"></head>\
             <body class=\"error-page\"><main class=\"card\"><h1>{phrase}</h1>\
             <p class=\"error\" data-field=\"{field}\">{message}</p>\
             <p><a href=\"{back}\">Back</a></p></main></body></html>\n",
            code = status.code(),
            phrase = status.phrase(),
            field = escape_html(field),
            message = escape_html(message),
            back = escape_html(back),
        );
        Response::new(status)
            .body("text/html; charset=utf-8", html.into_bytes())
            .page_headers()
    }

    /// A redirect (`303` or `307`) to `location`.
    pub fn redirect(status: Status, location: &str) -> Self {
        Response::new(status).header("Location", location)
    }

    /// Marks the connection to be closed after this response.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// Answers a request of this HTTP version (`1` for HTTP/1.1).
    pub fn for_version(mut self, minor: u8) -> Self {
        self.http10 = minor == 0;
        self
    }

    /// The whole response in one buffer, for a connection closed right
    /// after (the `503` written to a refused socket).
    pub fn to_bytes(self) -> Vec<u8> {
        let (head, body) = self.closing().encode(false, false);
        let mut bytes = head.into_vec();
        bytes.extend_from_slice(body.as_slice());
        bytes
    }

    /// The head as bytes, and the body (left out for `HEAD`). A `1xx` or
    /// `304` has no `Content-Length` (it has no body).
    pub fn encode(self, head_only: bool, keep_alive: bool) -> (Bytes, Bytes) {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.code().to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.status.phrase().as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !matches!(
            self.status,
            Status::NotModified | Status::SwitchingProtocols
        ) {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        if !keep_alive || self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if self.http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        let body = if head_only { Bytes::EMPTY } else { self.body };
        (Bytes::Owned(out), body)
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_head() {
        let refused = Response::text(Status::ServiceUnavailable, "too many connections")
            .header("Retry-After", "5")
            .to_bytes();
        let refused = String::from_utf8(refused).unwrap();
        assert!(refused.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(refused.contains("Content-Length: 20\r\n"));
        assert!(refused.contains("Connection: close\r\n"));
        assert!(refused.ends_with("\r\n\r\ntoo many connections"));
        let (head, body) = Response::text(Status::Ok, "ok").encode(false, true);
        let head = String::from_utf8(head.into_vec()).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head.contains("Content-Length: 2\r\n"));
        assert!(!head.contains("Connection: close"));
        assert_eq!(body.len(), 2);
        let (_, body) = Response::text(Status::Ok, "ok").encode(true, false);
        assert!(body.is_empty());
    }

    #[test]
    fn a_kept_http10_connection_says_keep_alive() {
        let head = |r: Response, keep_alive| {
            let (head, _) = r.encode(false, keep_alive);
            String::from_utf8(head.into_vec()).unwrap()
        };
        let ok = || Response::text(Status::Ok, "ok");
        assert!(head(ok().for_version(0), true).contains("\r\nConnection: keep-alive\r\n"));
        assert!(head(ok().for_version(0), false).contains("\r\nConnection: close\r\n"));
        let closing = head(ok().for_version(0).closing(), true);
        assert!(closing.contains("Connection: close") && !closing.contains("keep-alive"));
        assert!(!head(ok().for_version(1), true).contains("Connection:"));
    }

    #[test]
    fn error_pages_escape() {
        let r = Response::error_page(Status::BadRequest, "user", "<b>", "/");
        let s = String::from_utf8(r.body.into_vec()).unwrap();
        assert!(s.contains("&lt;b&gt;") && !s.contains("<b>"));
    }
}

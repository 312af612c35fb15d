//! HTTP/1.1, just enough for the pages, the login form and the WebSocket
//! upgrade:
//!
//! - [`request`]: finding and parsing a request head (with `httparse`), bounded;
//! - [`pipeline`]: where the next whole request in the input ends (sans I/O);
//! - [`response`]: status codes and response bytes (the one builder);
//! - [`upgrade`]: the WebSocket opening handshake (an upgrade is an HTTP
//!   exchange; after its `101` the connection speaks [`crate::ws`]);
//! - [`form`]: `application/x-www-form-urlencoded` bodies and query strings;
//! - [`routes`]: which URL does what.

pub mod form;
pub mod pipeline;
pub mod request;
pub mod response;
pub mod routes;
pub mod upgrade;

/// The HTTP statuses this server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 101: the WebSocket handshake succeeded.
    SwitchingProtocols,
    /// 200: a page, an asset, `/metrics`, `/healthz`.
    Ok,
    /// 303: after a login (to the room) or a form that needs fixing.
    SeeOther,
    /// 307: with `--sharded`, a login sent to `/login?room=N`.
    TemporaryRedirect,
    /// 304: the page's `ETag` matched `If-None-Match`.
    NotModified,
    /// 400: a malformed request or bad form input.
    BadRequest,
    /// 403: a foreign or missing `Origin`, a cross-site login.
    Forbidden,
    /// 404: no such page or room URL.
    NotFound,
    /// 405: the URL exists but not for this method.
    MethodNotAllowed,
    /// 409: the user id (or one like it) is taken, or the room is full.
    Conflict,
    /// 411: a body without `Content-Length`.
    LengthRequired,
    /// 413: a body over its limit.
    PayloadTooLarge,
    /// 414: a request line over its limit.
    UriTooLong,
    /// 415: a login form that is not urlencoded.
    UnsupportedMediaType,
    /// 426: a WebSocket handshake with a version other than 13.
    UpgradeRequired,
    /// 429: logins from one address over `--login-rate-per-ip`.
    TooManyRequests,
    /// 431: a head over `--max-head-bytes`, or too many headers.
    HeadersTooLarge,
    /// 500: the server could not do its part (no randomness for a token).
    InternalError,
    /// 503: a limit of connections or sessions is reached, or the server is shutting down.
    ServiceUnavailable,
}

impl Status {
    /// The three-digit status code.
    pub fn code(self) -> u16 {
        match self {
            Status::SwitchingProtocols => 101,
            Status::Ok => 200,
            Status::SeeOther => 303,
            Status::TemporaryRedirect => 307,
            Status::NotModified => 304,
            Status::BadRequest => 400,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::Conflict => 409,
            Status::LengthRequired => 411,
            Status::PayloadTooLarge => 413,
            Status::UriTooLong => 414,
            Status::UnsupportedMediaType => 415,
            Status::UpgradeRequired => 426,
            Status::TooManyRequests => 429,
            Status::HeadersTooLarge => 431,
            Status::InternalError => 500,
            Status::ServiceUnavailable => 503,
        }
    }

    /// The reason phrase written after the code.
    pub fn phrase(self) -> &'static str {
        match self {
            Status::SwitchingProtocols => "Switching Protocols",
            Status::Ok => "OK",
            Status::SeeOther => "See Other",
            Status::TemporaryRedirect => "Temporary Redirect",
            Status::NotModified => "Not Modified",
            Status::BadRequest => "Bad Request",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::Conflict => "Conflict",
            Status::LengthRequired => "Length Required",
            Status::PayloadTooLarge => "Payload Too Large",
            Status::UriTooLong => "URI Too Long",
            Status::UnsupportedMediaType => "Unsupported Media Type",
            Status::UpgradeRequired => "Upgrade Required",
            Status::TooManyRequests => "Too Many Requests",
            Status::HeadersTooLarge => "Request Header Fields Too Large",
            Status::InternalError => "Internal Server Error",
            Status::ServiceUnavailable => "Service Unavailable",
        }
    }
}

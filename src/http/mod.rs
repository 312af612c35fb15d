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
    SwitchingProtocols,
    Ok,
    SeeOther,
    TemporaryRedirect,
    NotModified,
    BadRequest,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    LengthRequired,
    PayloadTooLarge,
    UriTooLong,
    UnsupportedMediaType,
    UpgradeRequired,
    TooManyRequests,
    HeadersTooLarge,
    InternalError,
    ServiceUnavailable,
}

impl Status {
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

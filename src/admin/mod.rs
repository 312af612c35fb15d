//! The operator API, served only on the `--admin-bind` listener (or the
//! socket passed in under the name `admin`): what a request there asks
//! for, the checks that keep web pages from driving it, and its JSON
//! answers. No I/O and no chat state: [`parse`] turns a request into an
//! [`Action`] (or the answer that refuses it); the core carries the action
//! out (`core/moderation.rs`), and [`bars`] holds the bars it sets.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET HEAD | `/admin/rooms` | the rooms in memory, their ids and sockets |
//! | POST | `/admin/rooms/{n}/remove` | form `user=ID&minutes=M`: close that id's socket with `4001`, end its session, bar its key and address from the room |
//! | POST | `/admin/bar` | form `address=IP&minutes=M`: bar every login and socket from that address |
//! | POST | `/admin/rooms/{n}/messages/{seq}/delete` | delete that message (a `delete` event with `"by":null`) |
//! | GET HEAD | `/healthz` | `200 ok` (or `503 degraded`), as on the other listeners |
//!
//! # Why no web page can drive it
//!
//! - Every request under `/admin/` needs a `Host` that is an IP literal
//!   (`127.0.0.1`, `[::1]`, with or without a port) or `localhost`: a page
//!   of `evil.example` that rebinds its name to 127.0.0.1 still sends
//!   `Host: evil.example` (DNS rebinding), and is refused with `403`.
//! - Every `POST` also needs the header `Wsrooms-Admin: yes`: a page
//!   cannot add a header of its own to a request to another origin without
//!   a CORS preflight, which this listener never grants (and a form cannot
//!   add one at all).
//!
//! The listener should still be bound to loopback or a private address:
//! these checks stop browsers, not someone who can reach the port.

pub mod bars;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::chat::names;
use crate::http::form;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::{Status, routes};

/// Connections the admin listener may hold at once, apart from
/// `--max-connections`: the operator gets in when the server is full.
pub const ADMIN_CONNECTIONS: usize = 4;

/// How long a removal or a bar lasts when the form does not say.
pub const DEFAULT_MINUTES: u32 = 60;

/// The longest a removal or a bar may last: 30 days.
pub const MAX_MINUTES: u32 = 30 * 24 * 60;

/// The header every `POST` must carry, and its value.
pub const CONFIRM_HEADER: (&str, &str) = ("wsrooms-admin", "yes");

/// May the admin listener keep one more connection (`open` are open)?
pub fn admits(open: usize) -> bool {
    open < ADMIN_CONNECTIONS
}

/// What an admin request asks for (checked: every field in range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `GET /healthz`.
    Health,
    /// `GET /admin/rooms`.
    ListRooms,
    /// `POST /admin/rooms/{room}/remove`.
    Remove {
        /// The room number.
        room: u32,
        /// The id as the operator typed it (matched by its look-alike keys).
        user: String,
        /// How long the id and its address stay out of the room.
        minutes: u32,
    },
    /// `POST /admin/rooms/{room}/messages/{seq}/delete`.
    DeleteMessage {
        /// The room number.
        room: u32,
        /// The message's `seq`.
        seq: u64,
    },
    /// `POST /admin/bar`.
    Bar {
        /// The client address barred.
        address: IpAddr,
        /// For how long.
        minutes: u32,
    },
}

/// What a request to the admin listener asks for, or the answer that
/// refuses it (`403` for a foreign `Host` or a `POST` without the
/// confirmation header, `404`, `405`, `415`, `400` for a bad field).
pub fn parse(req: &Request, body: &[u8]) -> Result<Action, Response> {
    let get = req.method == "GET" || req.method == "HEAD";
    if req.path == "/healthz" {
        return match get {
            true => Ok(Action::Health),
            false => Err(not_allowed("GET, HEAD")),
        };
    }
    let Some(rest) = req.path.strip_prefix("/admin/") else {
        return Err(error(Status::NotFound, "not found"));
    };
    if !req.host().is_some_and(host_allowed) {
        return Err(error(
            Status::Forbidden,
            "the Host must be an IP address or localhost",
        ));
    }
    let target = route(rest).ok_or_else(|| error(Status::NotFound, "not found"))?;
    match (target, get) {
        (Target::Rooms, true) => return Ok(Action::ListRooms),
        (Target::Rooms, false) => return Err(not_allowed("GET, HEAD")),
        (_, _) if req.method != "POST" => return Err(not_allowed("POST")),
        _ => {}
    }
    if !confirmed(req) {
        return Err(error(
            Status::Forbidden,
            "a POST needs the header Wsrooms-Admin: yes",
        ));
    }
    if let Target::Delete(room, seq) = target {
        return Ok(Action::DeleteMessage { room, seq });
    }
    let form = post_form(req, body)?;
    match target {
        Target::Rooms | Target::Delete(..) => Err(not_allowed("GET, HEAD")),
        Target::Remove(room) => Ok(Action::Remove {
            room,
            user: user_field(form)?,
            minutes: minutes_field(form)?,
        }),
        Target::Bar => Ok(Action::Bar {
            address: address_field(form)?,
            minutes: minutes_field(form)?,
        }),
    }
}

/// Is the body of this request wanted (it waits with `Expect:
/// 100-continue`)? Only a `POST` that passes the checks made before its
/// form is read.
pub fn wants_body(req: &Request) -> bool {
    req.method == "POST"
        && req.path.starts_with("/admin/")
        && req.host().is_some_and(host_allowed)
        && confirmed(req)
        && routes::is_form(req)
}

/// Which URL under `/admin/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Rooms,
    Remove(u32),
    Delete(u32, u64),
    Bar,
}

/// The part of the path after `/admin/`.
fn route(rest: &str) -> Option<Target> {
    match rest {
        "rooms" => return Some(Target::Rooms),
        "bar" => return Some(Target::Bar),
        _ => {}
    }
    let (room, what) = rest.strip_prefix("rooms/")?.split_once('/')?;
    let room = names::parse_room_path(room)?;
    if what == "remove" {
        return Some(Target::Remove(room));
    }
    let seq = what.strip_prefix("messages/")?.strip_suffix("/delete")?;
    let digits = !seq.is_empty() && seq.len() <= 20 && seq.bytes().all(|b| b.is_ascii_digit());
    let seq: u64 = seq.parse().ok().filter(|&n| digits && n > 0)?;
    Some(Target::Delete(room, seq))
}

/// A `POST`'s form: `415` unless urlencoded, `400` unless UTF-8.
fn post_form<'b>(req: &Request, body: &'b [u8]) -> Result<&'b str, Response> {
    if !routes::is_form(req) {
        return Err(error(
            Status::UnsupportedMediaType,
            "the form must be application/x-www-form-urlencoded",
        ));
    }
    std::str::from_utf8(body).map_err(|_| error(Status::BadRequest, "the form is not UTF-8"))
}

/// Does the request carry `Wsrooms-Admin: yes` (once)?
fn confirmed(req: &Request) -> bool {
    let (name, value) = CONFIRM_HEADER;
    let mut values = req.headers_named(name);
    let first = values.next();
    values.next().is_none()
        && first.is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(value.as_bytes()))
}

/// Is `host` (a `Host` header) an IP literal or `localhost`, with or
/// without a port?
pub fn host_allowed(host: &str) -> bool {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        return address.parse::<Ipv6Addr>().is_ok() && port_ok(after);
    }
    let (name, after) = match host.find(':') {
        Some(at) => host.split_at(at),
        None => (host, ""),
    };
    port_ok(after) && (name.eq_ignore_ascii_case("localhost") || name.parse::<Ipv4Addr>().is_ok())
}

/// Nothing, or `:` and a port number.
fn port_ok(after: &str) -> bool {
    match after.strip_prefix(':') {
        None => after.is_empty(),
        Some(port) => {
            !port.is_empty()
                && port.len() <= 5
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok()
        }
    }
}

/// `user`: a valid id (`400` otherwise).
fn user_field(form: &str) -> Result<String, Response> {
    let user = form::field(form, "user").flatten().unwrap_or_default();
    match names::check_user(&user) {
        Ok(user) => Ok(user.to_string()),
        Err(why) => Err(error(Status::BadRequest, &format!("user: {why}"))),
    }
}

/// `minutes`: 1 to [`MAX_MINUTES`], [`DEFAULT_MINUTES`] if absent.
fn minutes_field(form: &str) -> Result<u32, Response> {
    let Some(value) = form::field(form, "minutes") else {
        return Ok(DEFAULT_MINUTES);
    };
    value
        .filter(|v| !v.is_empty() && v.len() <= 6 && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|m| (1..=MAX_MINUTES).contains(m))
        .ok_or_else(|| {
            error(
                Status::BadRequest,
                &format!("minutes must be a number from 1 to {MAX_MINUTES}"),
            )
        })
}

/// `address`: an IPv4 or IPv6 address (`400` otherwise).
fn address_field(form: &str) -> Result<IpAddr, Response> {
    form::field(form, "address")
        .flatten()
        .and_then(|a| a.trim().parse::<IpAddr>().ok())
        .ok_or_else(|| {
            error(
                Status::BadRequest,
                "address must be an IPv4 or IPv6 address",
            )
        })
}

/// One room of `GET /admin/rooms`.
#[derive(Debug, Serialize)]
pub struct RoomInfo {
    /// The room number.
    pub room: u32,
    /// The ids holding a session there (joined or only reserved), sorted.
    pub users: Vec<String>,
    /// Sockets joined to the room.
    pub sockets: usize,
    /// The `seq` of its last message delivered.
    #[serde(rename = "lastSeq")]
    pub last_seq: u64,
}

/// A JSON answer.
pub fn json(status: Status, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    Response::new(status)
        .body("application/json", body)
        .header("Cache-Control", "no-store")
        .header("X-Content-Type-Options", "nosniff")
}

/// A JSON error: `{"error":"…"}`.
pub fn error(status: Status, text: &str) -> Response {
    #[derive(Serialize)]
    struct Error<'a> {
        error: &'a str,
    }
    json(status, &Error { error: text })
}

fn not_allowed(allow: &'static str) -> Response {
    error(Status::MethodNotAllowed, "method not allowed").header("Allow", allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_are_addresses_or_localhost() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:9091",
            "10.1.2.3:80",
            "[::1]",
            "[::1]:9091",
            "[fe80::1]:1",
            "localhost",
            "LocalHost:9091",
        ] {
            assert!(host_allowed(ok), "{ok}");
        }
        for refused in [
            "",
            "example.com",
            "evil.example:9091",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "127.1",
            "0x7f.0.0.1",
            "::1",
            "[::1",
            "[::1]x",
            "127.0.0.1:",
            "127.0.0.1:99999",
            "127.0.0.1:80:80",
            "localhost:http",
        ] {
            assert!(!host_allowed(refused), "{refused}");
        }
    }

    #[test]
    fn paths_under_admin() {
        assert_eq!(route("rooms"), Some(Target::Rooms));
        assert_eq!(route("bar"), Some(Target::Bar));
        assert_eq!(route("rooms/5/remove"), Some(Target::Remove(5)));
        assert_eq!(route("rooms/0/remove"), None);
        assert_eq!(route("rooms/05/remove"), None);
        assert_eq!(route("rooms/5/kick"), None);
        let delete = |path| route(path);
        assert_eq!(
            delete("rooms/5/messages/17/delete"),
            Some(Target::Delete(5, 17))
        );
        for bad in [
            "rooms/5/messages/0/delete",
            "rooms/5/messages//delete",
            "rooms/5/messages/-1/delete",
            "rooms/5/messages/1e3/delete",
            "rooms/5/messages/99999999999999999999999/delete",
            "rooms/5/messages/17",
            "rooms/0/messages/17/delete",
        ] {
            assert_eq!(delete(bad), None, "{bad}");
        }
        assert_eq!(route("rooms/5"), None);
        assert_eq!(route("other"), None);
    }

    #[test]
    fn minutes_default_and_bounds() {
        let minutes = |form: &str| minutes_field(form).map_err(|r| r.status.code());
        assert_eq!(minutes("user=a"), Ok(DEFAULT_MINUTES));
        assert_eq!(minutes("minutes=1"), Ok(1));
        assert_eq!(minutes(&format!("minutes={MAX_MINUTES}")), Ok(MAX_MINUTES));
        for bad in [
            "minutes=0",
            "minutes=",
            "minutes=-1",
            "minutes=1e3",
            "minutes=43201",
            "minutes=99999999999",
        ] {
            assert_eq!(minutes(bad), Err(400), "{bad}");
        }
    }
}

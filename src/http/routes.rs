//! Which URL does what. A handler looks at a parsed request and answers
//! with an [`Outcome`]: a response to send, a reservation to keep, or a
//! WebSocket upgrade for the server to carry out. Handlers do no I/O and
//! schedule nothing.
//!
//! | method   | path                | what                                        |
//! |----------|---------------------|---------------------------------------------|
//! | GET HEAD | `/`                 | login page                                  |
//! | POST     | `/login`            | reserve an id → 303 (or 400/403/409/429)    |
//! | POST     | `/logout`           | end the cookie's session → 303 to `/` (or 403) |
//! | GET HEAD | `/rooms/{n}`        | room page, or 303 to `/?room=n`             |
//! | GET      | `/rooms/{n}/ws`     | the room's WebSocket (cookie + Origin)      |
//! | GET HEAD | `/rooms/{n}/history`| older messages, a page as JSON (cookie; 429 over the session's budget) |
//! | GET      | `/echo`             | echo WebSocket (only with `--echo`)         |
//! | GET HEAD | `/static/*`, `/favicon.svg` | embedded assets                     |
//! | GET HEAD | `/healthz`, `/metrics` | operations                               |

use std::net::IpAddr;
use std::time::Instant;

use super::Status;
use super::form;
use super::request::Request;
use super::response::Response;
use super::upgrade::{self, HandshakeError, Upgrade};
use crate::admin::bars::{Barred, Bars};
use crate::assets::Assets;
use crate::chat::budget::{Budget, OverBudget, Spend};
use crate::chat::command::{self, Dialect};
use crate::chat::{self, Chat, LoginError, SessionId, names};
use crate::config::Config;
use crate::logsafe::Escaped;
use crate::metrics::Metrics;
use crate::outside::Outside;
use crate::peer_limits::{PeerLimits, Refusal};

/// The session cookie's name.
pub const COOKIE: &str = "wsrooms_session";

/// What to do with a request.
pub enum Outcome {
    /// Send this response; nothing else changes.
    Respond(Response),
    /// A login reserved an id: send `response`, and end the reservation at
    /// `expires` unless a socket of `session` has joined by then.
    Reserved {
        /// The redirect to the room, with the session cookie.
        response: Response,
        /// The new (or reused) session.
        session: SessionId,
        /// When the reservation lapses without a socket (`--reserve-secs`).
        expires: Instant,
    },
    /// Upgrade to a room socket for this session.
    JoinRoom {
        /// The checked handshake, to be answered with `101`.
        upgrade: Upgrade,
        /// The session named by the request's cookie.
        session: SessionId,
        /// `?since=N`: the client has every message up to `seq` N.
        since: Option<u64>,
    },
    /// `POST /logout`: end `session` at once (close its socket, free its id),
    /// then send `response`, which clears the cookie.
    LoggedOut {
        /// The `303` to `/` that clears the cookie.
        response: Response,
        /// The session the request's cookie named.
        session: SessionId,
    },
    /// Upgrade to an echo socket.
    Echo {
        /// The checked handshake, to be answered with `101`.
        upgrade: Upgrade,
    },
    /// Answer with the metrics (the server fills in its gauges).
    Metrics,
    /// Answer with a page of room `room`'s older messages (the server reads
    /// them, from its data file or from memory): the newest `limit` with a
    /// `seq` below `before` (`None`: all). The session was checked.
    History {
        /// The room number.
        room: u32,
        /// Only messages with a smaller `seq` (`None`: after the last one).
        before: Option<u64>,
        /// At most this many, 1–100.
        limit: usize,
    },
}

/// Messages in a scrollback page when `limit` is not given.
pub const DEFAULT_PAGE: usize = 50;
/// The most messages in a scrollback page.
pub const MAX_PAGE: usize = 100;

/// What handlers may read and change.
pub struct Ctx<'a> {
    /// Rooms and sessions (a login reserves an id here).
    pub chat: &'a mut Chat,
    /// Counters (refusals).
    pub metrics: &'a mut Metrics,
    /// The settings: limits, allowed origins, `--sharded`, `--echo`.
    pub config: &'a Config,
    /// The pages and their `ETag`s.
    pub assets: &'a Assets,
    /// The time of this loop turn.
    pub now: Instant,
    /// Where session tokens come from (the OS; a simulation's seed).
    pub outside: &'a mut Outside,
    /// The request came in on the `--metrics-bind` listener.
    pub via_metrics: bool,
    /// The TCP peer is a proxy named by `--trust-proxy`: its
    /// `X-Forwarded-Host` counts.
    pub proxied: bool,
    /// The client's address: the TCP peer, or when that is a proxy named by
    /// `--trust-proxy`, the last `X-Forwarded-For` entry.
    pub client: IpAddr,
    /// The per-address connection and login limits.
    pub peer_limits: &'a mut PeerLimits,
    /// The operator's bars on addresses and ids (`crate::admin::bars`).
    pub bars: &'a Bars,
    /// Writes to the data file are failing, or it is damaged: `/healthz`
    /// answers `503 degraded`.
    pub degraded: bool,
}

/// Routes one request. `body` is the request body (complete).
pub fn handle(req: &Request, body: &[u8], ctx: &mut Ctx) -> Outcome {
    let path = req.path;
    let get = req.method == "GET" || req.method == "HEAD";
    if ctx.via_metrics || (path == "/metrics" && ctx.config.metrics_bind.is_some()) {
        return operations_only(path, get, ctx.via_metrics, ctx.degraded);
    }
    if path == "/login" {
        if req.method != "POST" {
            return Outcome::Respond(not_allowed("POST"));
        }
        return login(req, body, ctx);
    }
    if path == "/logout" {
        if req.method != "POST" {
            return Outcome::Respond(not_allowed("POST"));
        }
        return logout(req, ctx);
    }
    if let Some(rest) = path.strip_prefix("/rooms/") {
        return room_routes(req, rest, ctx);
    }
    if path == "/echo" && ctx.config.echo {
        return match upgrade::check(req) {
            Ok(upgrade) => Outcome::Echo { upgrade },
            Err(e) => Outcome::Respond(refuse_handshake(e, ctx.metrics)),
        };
    }
    let asset = match path {
        "/" => Some("index.html"),
        "/favicon.svg" => Some("favicon.svg"),
        "/static/style.css" => Some("style.css"),
        "/static/login.js" => Some("login.js"),
        "/static/room.js" => Some("room.js"),
        _ => None,
    };
    let known = asset.is_some() || path == "/healthz" || path == "/metrics";
    if known && !get {
        return Outcome::Respond(not_allowed("GET, HEAD"));
    }
    match path {
        "/healthz" => Outcome::Respond(health(ctx.degraded)),
        "/metrics" => Outcome::Metrics,
        _ => match asset {
            Some(file) => Outcome::Respond(serve_asset(req, file, ctx.assets)),
            None => Outcome::Respond(Response::text(Status::NotFound, "not found")),
        },
    }
}

/// The `--metrics-bind` listener serves `/metrics` and `/healthz` only, and
/// the main one then hides `/metrics`.
fn operations_only(path: &str, get: bool, via_metrics: bool, degraded: bool) -> Outcome {
    match path {
        "/metrics" | "/healthz" if !get => Outcome::Respond(not_allowed("GET, HEAD")),
        "/metrics" if via_metrics => Outcome::Metrics,
        "/healthz" => Outcome::Respond(health(degraded)),
        _ => Outcome::Respond(Response::text(Status::NotFound, "not found")),
    }
}

/// `/healthz`: `200 ok`, or `503 degraded` while writes to the data file
/// fail (the server still serves, but cannot keep what it is sent), and
/// once the file is found damaged (until it is repaired).
pub fn health(degraded: bool) -> Response {
    let response = match degraded {
        false => Response::text(Status::Ok, "ok"),
        true => Response::text(Status::ServiceUnavailable, "degraded"),
    };
    response.header("Cache-Control", "no-store")
}

fn not_allowed(allow: &'static str) -> Response {
    Response::text(Status::MethodNotAllowed, "method not allowed").header("Allow", allow)
}

/// What under `/rooms/{n}` a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoomPath {
    /// `/rooms/{n}`: the room page.
    Page,
    /// `/rooms/{n}/ws`: its WebSocket.
    Socket,
    /// `/rooms/{n}/history`: scrollback.
    History,
}

/// `/rooms/{n}`, `/rooms/{n}/ws` and `/rooms/{n}/history`.
fn room_routes(req: &Request, rest: &str, ctx: &mut Ctx) -> Outcome {
    let (number, what) = if let Some(n) = rest.strip_suffix("/ws") {
        (n, RoomPath::Socket)
    } else if let Some(n) = rest.strip_suffix("/history") {
        (n, RoomPath::History)
    } else {
        (rest, RoomPath::Page)
    };
    let Some(room) = names::parse_room_path(number) else {
        return Outcome::Respond(Response::text(Status::NotFound, "no such room"));
    };
    let session = session_cookie(req).and_then(|t| ctx.chat.session_for(&t, room));
    let get = req.method == "GET" || req.method == "HEAD";
    match what {
        RoomPath::Page | RoomPath::History if !get => Outcome::Respond(not_allowed("GET, HEAD")),
        RoomPath::Page => Outcome::Respond(match session {
            Some(_) => {
                serve_asset(req, "room.html", ctx.assets).header("Cache-Control", "no-store")
            }
            None => Response::redirect(Status::SeeOther, &format!("/?room={room}"))
                .header("Cache-Control", "no-store"),
        }),
        RoomPath::History => history(req.query, room, session, ctx),
        RoomPath::Socket => room_socket(req, session, ctx),
    }
}

/// `GET /rooms/{n}/history?before=SEQ&limit=N`: `403` without the room's
/// session, `400` when `before` or `limit` is not such a number, `429` when
/// the session spent its scrollback budget (checked before any message is
/// read: a refused page costs nothing more).
fn history(query: Option<&str>, room: u32, session: Option<SessionId>, ctx: &mut Ctx) -> Outcome {
    let Some(session) = session else {
        return Outcome::Respond(
            Response::text(Status::Forbidden, "no session for this room")
                .header("Cache-Control", "no-store"),
        );
    };
    let (before, limit) = match page_params(query) {
        Ok(params) => params,
        Err(why) => {
            return Outcome::Respond(
                Response::text(Status::BadRequest, why).header("Cache-Control", "no-store"),
            );
        }
    };
    if let Err(answer) = spend(session, Spend::Page, ctx) {
        return Outcome::Respond(answer);
    }
    Outcome::History {
        room,
        before,
        limit,
    }
}

/// Charges `what` to the session's scrollback budget; `Err` is the `429`
/// with `Retry-After` to answer when it is spent (counted by reason).
fn spend(session: SessionId, what: Spend, ctx: &mut Ctx) -> Result<(), Response> {
    let budget = Budget {
        rate: ctx.config.scrollback_rate,
        burst: f64::from(ctx.config.scrollback_burst),
    };
    let Err(over) = ctx.chat.spend_scrollback(session, budget, ctx.now) else {
        return Ok(());
    };
    ctx.metrics.refuse(what.metric_reason());
    let wait = over.retry_after_secs;
    let text = match what {
        Spend::Page => format!("too many scrollback pages; try again in {wait} s"),
        Spend::Socket => format!("too many room sockets opened; try again in {wait} s"),
    };
    Err(Response::text(OverBudget::STATUS, &text)
        .header("Retry-After", wait.to_string())
        .header("Cache-Control", "no-store"))
}

/// `before` (absent: after the last message) and `limit` (absent: 50) of a
/// scrollback request; `Err` says which is not a number in range.
fn page_params(query: Option<&str>) -> Result<(Option<u64>, usize), &'static str> {
    let field = |name| query.and_then(|q| form::field(q, name));
    let before = match field("before") {
        None => None,
        Some(value) => Some(
            value
                .as_deref()
                .and_then(plain_number)
                .ok_or("before must be a message number (0 or more)")?,
        ),
    };
    let limit = match field("limit") {
        None => DEFAULT_PAGE as u64,
        Some(value) => value
            .as_deref()
            .and_then(plain_number)
            .filter(|n| (1..=MAX_PAGE as u64).contains(n))
            .ok_or("limit must be a number from 1 to 100")?,
    };
    Ok((before, limit as usize))
}

/// Decimal digits only (no sign, no space, no exponent), within `u64`.
fn plain_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `GET /rooms/{n}/ws`: a WebSocket handshake, the page's Origin and the
/// room's session, or a refusal; a socket is charged to the session's
/// scrollback budget like a page (`429` with `Retry-After` when spent).
fn room_socket(req: &Request, session: Option<SessionId>, ctx: &mut Ctx) -> Outcome {
    let mut upgrade = match upgrade::check(req) {
        Ok(u) => u,
        Err(e) => return Outcome::Respond(refuse_handshake(e, ctx.metrics)),
    };
    if let Some(barred) = ctx.bars.address_barred(ctx.client, ctx.now) {
        return Outcome::Respond(refuse_barred(barred, "/", ctx));
    }
    // A room socket speaks `wsrooms.v2` when its client offers it (the
    // 101 names it), else the text protocol.
    let offered = req.headers_named("sec-websocket-protocol");
    if command::choose(offered) == Dialect::V2 {
        upgrade.protocol = Some(command::V2);
    }
    if !origin_allowed(req, ctx.config, ctx.proxied) {
        ctx.metrics.refuse("origin");
        return Outcome::Respond(Response::text(Status::Forbidden, "origin not allowed"));
    }
    let Some(session) = session else {
        ctx.metrics.refuse("session");
        return Outcome::Respond(Response::text(
            Status::Forbidden,
            "no session for this room",
        ));
    };
    if let Err(answer) = spend(session, Spend::Socket, ctx) {
        return Outcome::Respond(answer);
    }
    Outcome::JoinRoom {
        upgrade,
        session,
        since: since_param(req.query),
    }
}

fn refuse_handshake(e: HandshakeError, metrics: &mut Metrics) -> Response {
    metrics.refuse(match e {
        HandshakeError::BadVersion => "version",
        _ => "handshake",
    });
    let mut r = Response::text(e.status(), e.reason());
    if e == HandshakeError::BadVersion {
        // RFC 9110 §15.5.22 and §7.8: a 426 names what to upgrade to.
        r = r
            .header("Sec-WebSocket-Version", "13")
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade");
    }
    if e == HandshakeError::NotGet {
        r = r.header("Allow", "GET");
    }
    r
}

fn session_cookie(req: &Request) -> Option<chat::Token> {
    req.cookie(COOKIE).and_then(chat::token_from_hex)
}

/// `since=N` from the query: absent unless a non-negative integer.
fn since_param(query: Option<&str>) -> Option<u64> {
    plain_number(&form::field(query?, "since")??)
}

/// The `Origin` must be the page's own (`http(s)://` + `Host`) or allowed by
/// `--allow-origin` (RFC 6455 §10.2: stops other sites' pages from using
/// the visitor's cookie). The host is the proxy's `X-Forwarded-Host` when
/// the request came through a trusted proxy (`proxied`).
pub fn origin_allowed(req: &Request, config: &Config, proxied: bool) -> bool {
    let Some(origin) = req.header_str("origin") else {
        return false;
    };
    let origin = origin.to_ascii_lowercase();
    if config.allow_origins.contains(&origin) {
        return true;
    }
    let forwarded_host = proxied
        .then(|| req.header_str("x-forwarded-host"))
        .flatten();
    let Some(host) = forwarded_host.or_else(|| req.host()) else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let page = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    page == Some(host.as_str())
}

/// Is this login sent by another site's page (login CSRF)? It is when it
/// says so (`Sec-Fetch-Site: cross-site`) or when its `Origin` is there and
/// is not the page's own nor an `--allow-origin` (`null`, sent by sandboxed
/// frames and some redirects, is foreign too). No `Origin` at all is
/// allowed: curl and scripts send none, and browsers always send one with
/// a `POST`.
pub fn foreign_login(req: &Request, config: &Config, proxied: bool) -> bool {
    if req.header_has_token("sec-fetch-site", "cross-site") {
        return true;
    }
    match req.headers_named("origin").count() {
        0 => false,
        1 => !origin_allowed(req, config, proxied),
        _ => true,
    }
}

/// `POST /login`. Every one counts towards its address's login rate, even
/// those refused for another reason.
fn login(req: &Request, body: &[u8], ctx: &mut Ctx) -> Outcome {
    let form = admit_login(req, ctx).and_then(|()| read_login_form(req, body, ctx));
    let (room, user) = match form {
        Ok(form) => form,
        Err(answer) => return Outcome::Respond(answer),
    };
    let back = format!("/?room={room}");
    if let Some(barred) = ctx.bars.login_barred(room, &user, ctx.client, ctx.now) {
        return Outcome::Respond(refuse_barred(barred, &back, ctx));
    }
    if let Some(answer) = same_login(req, room, &user, ctx) {
        return Outcome::Respond(answer);
    }
    if ctx.chat.sessions.len() >= ctx.config.max_sessions {
        return Outcome::Respond(server_full(&back, ctx));
    }
    reserve(room, &user, &back, ctx)
}

/// `POST /logout` (`?room=N` may say the room, for a proxy that routes by
/// room; the cookie decides): ends the cookie's session at once and clears
/// the cookie, answering `303` to `/`, with or without a session. Refused
/// (`403`) like a login sent by another site's page: a foreign page must
/// not be able to log the visitor out either.
fn logout(req: &Request, ctx: &mut Ctx) -> Outcome {
    if foreign_login(req, ctx.config, ctx.proxied) {
        ctx.metrics.refuse("logout_origin");
        log::info!("{}: logout refused: sent from another site", ctx.client);
        return Outcome::Respond(Response::error_page(
            Status::Forbidden,
            "user",
            "This log-out was sent from another site. Log out from this site's own page.",
            "/",
        ));
    }
    let session = session_cookie(req).and_then(|t| ctx.chat.session_by_token(&t));
    // The room page says which room it logs out of. One browser has one
    // cookie: a login to another room in another tab replaced it, and
    // that other session is not this page's to end.
    let page_room = req
        .query
        .and_then(|q| form::field(q, "room"))
        .flatten()
        .and_then(|r| plain_number(&r));
    let other_room = match (session, page_room) {
        (Some(s), Some(room)) => ctx
            .chat
            .sessions
            .get(s)
            .map(|s| s.room)
            .is_some_and(|r| u64::from(ctx.chat.number(r)) != room),
        _ => false,
    };
    if other_room {
        log::info!(
            "{}: logout from a page of another room than its session's: nothing ended",
            ctx.client
        );
        return Outcome::Respond(
            Response::redirect(Status::SeeOther, "/").header("Cache-Control", "no-store"),
        );
    }
    let cleared = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    let response = Response::redirect(Status::SeeOther, "/")
        .header("Set-Cookie", cleared)
        .header("Cache-Control", "no-store");
    match session {
        Some(session) => Outcome::LoggedOut { response, session },
        None => Outcome::Respond(response),
    }
}

/// Is the body of this request wanted? Asked when a client waits with it
/// (`Expect: 100-continue`): only a login reads a body, and only one that
/// passes the checks made before its form is read (sent from this site's
/// page, as a form). The login rate is counted when the login is answered,
/// not here. `false`: answer now, without the body. `proxied`: the peer
/// is a proxy named by `--trust-proxy` (see [`origin_allowed`]).
pub fn wants_body(req: &Request, config: &Config, via_metrics: bool, proxied: bool) -> bool {
    !via_metrics
        && req.path == "/login"
        && req.method == "POST"
        && !foreign_login(req, config, proxied)
        && is_form(req)
}

/// Is the body a form (`application/x-www-form-urlencoded`)?
pub fn is_form(req: &Request) -> bool {
    req.header_str("content-type").is_some_and(|t| {
        t.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// The checks before the form is read: the login rate of the address, a
/// login sent from another site, a body that is not a form. `Err` is the
/// answer to send instead.
fn admit_login(req: &Request, ctx: &mut Ctx) -> Result<(), Response> {
    if let Err(refusal) = ctx.peer_limits.login(ctx.client, ctx.now) {
        return Err(too_many_logins(refusal, ctx));
    }
    if foreign_login(req, ctx.config, ctx.proxied) {
        ctx.metrics.refuse("login_origin");
        let origin = req.header("origin").map(String::from_utf8_lossy);
        log::info!(
            "{}: login refused: sent from another site (Origin \"{}\")",
            ctx.client,
            Escaped(origin.as_deref().unwrap_or("none"))
        );
        return Err(Response::error_page(
            Status::Forbidden,
            "user",
            "This login was sent from another site. Log in from this site's own page.",
            "/",
        ));
    }
    if !is_form(req) {
        return Err(Response::error_page(
            Status::UnsupportedMediaType,
            "user",
            "The form must be sent as application/x-www-form-urlencoded.",
            "/",
        ));
    }
    Ok(())
}

/// The room number and the checked user id of a login form. `Err` is the
/// answer to send instead: a `400` naming the field, or (with `--sharded`)
/// a `307` to the URL that carries the room for the proxy.
fn read_login_form(req: &Request, body: &[u8], ctx: &mut Ctx) -> Result<(u32, String), Response> {
    let Ok(body) = std::str::from_utf8(body) else {
        return Err(bad("user", "The form is not valid UTF-8.", "/", ctx));
    };
    let user = match form::field(body, "user") {
        Some(Some(u)) => u,
        Some(None) => return Err(bad("user", "The user id is not valid UTF-8.", "/", ctx)),
        None => String::new(),
    };
    let room = login_room(req, body, ctx)?;
    match names::check_user(&user) {
        Ok(u) => Ok((room, u.to_string())),
        Err(why) => Err(bad(
            "user",
            &why.to_string(),
            &format!("/?room={room}"),
            ctx,
        )),
    }
}

/// The room of a login: from the form, the query, or both when they agree.
fn login_room(req: &Request, body: &str, ctx: &mut Ctx) -> Result<u32, Response> {
    let body_room = form::field(body, "room").flatten();
    let query_room = req.query.and_then(|q| form::field(q, "room")).flatten();
    if ctx.config.sharded && query_room.is_none() {
        // A room-hashing proxy routes by the query: send the form there.
        if let Some(Ok(room)) = body_room.as_deref().map(names::parse_room_input) {
            return Err(Response::redirect(
                Status::TemporaryRedirect,
                &format!("/login?room={room}"),
            )
            .header("Cache-Control", "no-store"));
        }
    }
    let room_text = match (&body_room, &query_room) {
        (Some(b), Some(q)) if names::parse_room_input(b) != names::parse_room_input(q) => {
            return Err(bad(
                "room",
                "The room in the form and in the address differ.",
                "/",
                ctx,
            ));
        }
        (Some(b), _) => b.clone(),
        (None, Some(q)) => q.clone(),
        (None, None) => String::new(),
    };
    names::parse_room_input(&room_text).map_err(|msg| bad("room", msg, "/", ctx))
}

/// The same browser logging in again with its own id: same session, so
/// straight to the room.
fn same_login(req: &Request, room: u32, user: &str, ctx: &Ctx) -> Option<Response> {
    let session = session_cookie(req).and_then(|t| ctx.chat.session_for(&t, room))?;
    let present = &ctx.chat.sessions.get(session)?.user;
    names::IdKeys::of(present)
        .meets(&names::IdKeys::of(user))
        .then(|| {
            Response::redirect(Status::SeeOther, &format!("/rooms/{room}"))
                .header("Cache-Control", "no-store")
        })
}

/// `503`: `--max-sessions` are held.
fn server_full(back: &str, ctx: &mut Ctx) -> Response {
    ctx.metrics.refuse("sessions");
    log::warn!(
        "login refused: {} sessions held (--max-sessions)",
        ctx.chat.sessions.len()
    );
    Response::error_page(
        Status::ServiceUnavailable,
        "room",
        "The server is full right now. Try again in a minute.",
        back,
    )
    .header("Retry-After", "60")
}

/// Reserves `user` in `room` for a new session: a `303` to the room with
/// the session cookie, and the reservation's expiry for the caller to keep
/// (routes schedule nothing); or a `409` when the id or the room is taken.
fn reserve(room: u32, user: &str, back: &str, ctx: &mut Ctx) -> Outcome {
    let token = match ctx.outside.new_token() {
        Ok(t) => t,
        Err(e) => {
            log::error!("no randomness for a session token: {e}");
            return Outcome::Respond(Response::text(Status::InternalError, "no randomness"));
        }
    };
    let expires = ctx.now + ctx.config.reserve_timeout;
    let max_users = ctx.config.max_users_per_room;
    match ctx.chat.login(room, user, token, expires, max_users) {
        Ok(session) => {
            log::info!("login: \"{}\" reserved in room {room}", Escaped(user));
            let cookie = format!(
                "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
                chat::token_to_hex(&token)
            );
            let response = Response::redirect(Status::SeeOther, &format!("/rooms/{room}"))
                .header("Set-Cookie", cookie)
                .header("Cache-Control", "no-store");
            Outcome::Reserved {
                response,
                session,
                expires,
            }
        }
        Err(refusal) => Outcome::Respond(login_refused(refusal, room, user, back, ctx)),
    }
}

/// `409`: the id (or one that looks like it) is in the room, or the room is full.
fn login_refused(
    refusal: LoginError,
    room: u32,
    user: &str,
    back: &str,
    ctx: &mut Ctx,
) -> Response {
    match refusal {
        LoginError::Taken { present } => {
            ctx.metrics.refuse("login_taken");
            log::info!(
                "login refused: \"{}\" looks like \"{}\", already in room {room}",
                Escaped(user),
                Escaped(&present)
            );
            Response::error_page(Status::Conflict, "user", &taken(user, &present, room), back)
        }
        LoginError::Full => {
            ctx.metrics.refuse("room_full");
            log::info!("login refused: room {room} is full");
            Response::error_page(
                Status::Conflict,
                "room",
                &format!("Room {room} is full."),
                back,
            )
        }
    }
}

/// `403`: the operator barred the client's address, or removed this id
/// (or one like it, or this address) from the room, for a while.
fn refuse_barred(barred: Barred, back: &str, ctx: &mut Ctx) -> Response {
    ctx.metrics.refuse("barred");
    log::info!("{}: refused with 403, barred by the operator", ctx.client);
    Response::error_page(Status::Forbidden, "user", &barred.message(ctx.now), back)
        .header("Cache-Control", "no-store")
}

/// `429` with `Retry-After` (a refused login by rate).
fn too_many_logins(refusal: Refusal, ctx: &mut Ctx) -> Response {
    ctx.metrics.refuse(refusal.metric_reason());
    let wait = match refusal {
        Refusal::LoginRate { retry_after_secs } => retry_after_secs,
        Refusal::Connections => 5,
    };
    log::debug!("{}: login refused: --login-rate-per-ip", ctx.client);
    Response::error_page(
        refusal.status(),
        "user",
        &format!("Too many logins from your address. Try again in {wait} s."),
        "/",
    )
    .header("Retry-After", wait.to_string())
}

/// The 409 message: which present id the refused one is (or looks like).
fn taken(user: &str, present: &str, room: u32) -> String {
    if user == present {
        format!("“{user}” is already in room {room}.")
    } else {
        format!("“{user}” looks like “{present}”, who is already in room {room}.")
    }
}

fn bad(field: &str, message: &str, back: &str, ctx: &mut Ctx) -> Response {
    ctx.metrics.refuse("login_invalid");
    Response::error_page(Status::BadRequest, field, message, back)
}

/// An embedded page or file, with `ETag` revalidation.
fn serve_asset(req: &Request, file: &str, assets: &Assets) -> Response {
    let Some(found) = assets.get(file) else {
        return Response::text(Status::NotFound, "not found");
    };
    let fresh = req.header_str("if-none-match").is_some_and(|tags| {
        tags.split(',')
            .any(|t| t.trim() == found.etag || t.trim() == "*")
    });
    let response = if fresh {
        Response::new(Status::NotModified)
    } else {
        Response::new(Status::Ok).body(found.content_type, found.bytes)
    };
    let response = response
        .header("ETag", found.etag)
        .header("Cache-Control", "no-cache");
    if file.ends_with(".html") {
        response.page_headers()
    } else {
        response.header("X-Content-Type-Options", "nosniff")
    }
}

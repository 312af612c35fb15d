//! The HTTP side of the core: taking the next complete request from a
//! connection's input (keep-alive and pipelining included: the core asks
//! for one request at a time, and only while the connection is not paused),
//! routing it, and handing the outcome back to the connection's machine
//! (a response, or an upgrade). Part of the core's `impl Core`.

use std::net::{IpAddr, SocketAddr};

use super::{Core, Step};
use crate::admin;
use crate::chat::command::{self, Dialect};
use crate::chat::events;
use crate::conn::machine::{HttpInput, Role};
use crate::conn::{ConnId, Via};
use crate::http::Status;
use crate::http::request::{MAX_HEADERS, Request};
use crate::http::response::Response;
use crate::http::routes::{self, Ctx, Outcome};
use crate::http::upgrade::Upgrade;
use crate::logsafe::Escaped;
use crate::peer_limits::Refusal;

/// How the answer to one request is sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reply {
    head_only: bool,
    keep_alive: bool,
    /// The request's minor HTTP version.
    version: u8,
}

impl Reply {
    /// The answer to `req`, kept alive if it asked to be.
    fn to(req: &Request) -> Self {
        Reply {
            head_only: req.method == "HEAD",
            keep_alive: req.keep_alive(),
            version: req.version,
        }
    }
}

impl Core {
    /// Answers the request at the front of `input`, if it is all there.
    pub(super) fn http_step(&mut self, id: ConnId, input: &[u8]) -> Step {
        let (now, settings) = (self.now, self.settings);
        let Some(conn) = self.conns.get_mut(id) else {
            return Step::Took(input.len());
        };
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match conn
            .machine
            .on_request_bytes(input, &mut storage, &mut conn.out, now, &settings)
        {
            HttpInput::NeedMore => Step::NeedMore,
            HttpInput::Refused(actions) => {
                self.apply(id, actions);
                Step::Took(input.len())
            }
            HttpInput::AwaitingBody { request } => self.answer_expectation(id, &request, input),
            HttpInput::Request { request, body, len } => {
                self.answer_request(id, &request, body, Reply::to(&request));
                Step::Took(len)
            }
        }
    }

    /// A client waits with its body (`Expect: 100-continue`): `100
    /// Continue` if the route wants it, else the final answer now, without
    /// the body, and the connection closes (the body may still come).
    fn answer_expectation(&mut self, id: ConnId, req: &Request, input: &[u8]) -> Step {
        let Some((via, proxied)) = self.get(id).map(|c| (c.via, c.via_proxy)) else {
            return Step::Took(input.len());
        };
        let wanted = match via {
            Via::Admin => admin::wants_body(req),
            _ => routes::wants_body(req, &self.config, via == Via::Metrics, proxied),
        };
        if wanted {
            if let Some(conn) = self.conns.get_mut(id) {
                conn.machine.continue_body(&mut conn.out);
                self.mark_dirty(id);
            }
            return Step::NeedMore;
        }
        let reply = Reply {
            keep_alive: false,
            ..Reply::to(req)
        };
        self.answer_request(id, req, &[], reply);
        Step::Took(input.len())
    }

    /// Answers one complete request: who sent it, where it goes, what
    /// comes of it.
    fn answer_request(&mut self, id: ConnId, req: &Request, body: &[u8], reply: Reply) {
        if self.get(id).is_some_and(|c| c.via == Via::Admin) {
            return self.admin_request(id, req, body, reply);
        }
        let client = match self.attribute_client(id, req) {
            None => return,
            Some(Ok(client)) => client,
            Some(Err((client, refusal))) => return self.refuse_client(id, client, refusal),
        };
        let outcome = self.route(id, req, body, client);
        if let Outcome::Respond(response) = &outcome {
            self.log_refused_upgrade(id, req, response);
        }
        self.carry_out(id, outcome, reply);
    }

    /// `routes::handle` with what it may read and change; while shutting
    /// down, no new socket is opened.
    fn route(&mut self, id: ConnId, req: &Request, body: &[u8], client: IpAddr) -> Outcome {
        let (via_metrics, proxied) = self
            .get(id)
            .map_or((false, false), |c| (c.via == Via::Metrics, c.via_proxy));
        self.metrics.http_requests += 1;
        let degraded = self.degraded();
        let mut ctx = Ctx {
            chat: &mut self.chat,
            metrics: &mut self.metrics,
            config: &self.config,
            assets: &self.assets,
            now: self.now,
            outside: &mut self.outside,
            via_metrics,
            proxied,
            client,
            peer_limits: &mut self.peer_limits,
            bars: &self.bars,
            degraded,
        };
        match routes::handle(req, body, &mut ctx) {
            // A socket opened now would miss the `1001` sent to the others
            // and hold the exit until the drain deadline.
            Outcome::Echo { .. } | Outcome::JoinRoom { .. } if self.shutting_down.is_some() => {
                Outcome::Respond(
                    Response::text(Status::ServiceUnavailable, "shutting down")
                        .header("Retry-After", "5"),
                )
            }
            other => other,
        }
    }

    /// Does what the route decided.
    fn carry_out(&mut self, id: ConnId, outcome: Outcome, reply: Reply) {
        match outcome {
            Outcome::Respond(response) => self.respond(id, response, reply),
            Outcome::Reserved {
                response,
                session,
                expires,
            } => self.hold_login(id, session, response, reply, expires),
            Outcome::LoggedOut { response, session } => {
                // Answered once the session's end is in the data file.
                self.log_out(session);
                self.hold_answer(id, response, None, None, reply);
            }
            Outcome::Metrics => {
                self.count_store_syncs();
                let text = self.metrics.render(&self.gauges());
                let response = Response::new(Status::Ok)
                    .body(
                        "text/plain; version=0.0.4; charset=utf-8",
                        text.into_bytes(),
                    )
                    .header("Cache-Control", "no-store");
                self.respond(id, response, reply);
            }
            Outcome::History {
                room,
                before,
                limit,
            } => {
                let response = self.history_page(room, before, limit);
                self.respond(id, response, reply);
            }
            Outcome::Echo { upgrade } => self.upgrade(id, &upgrade, Role::Echo),
            Outcome::JoinRoom {
                upgrade,
                session,
                since,
            } => {
                let dialect = match upgrade.protocol {
                    Some(command::V2) => Dialect::V2,
                    _ => Dialect::Text,
                };
                self.upgrade(id, &upgrade, Role::Chat { session, dialect });
                self.join_room(id, session, since);
            }
        }
    }

    /// A page of scrollback as JSON: `{"messages":[…],"more":…}`, the
    /// messages as they were sent on the sockets. From the data file if
    /// there is one (it keeps `--keep-messages`), else from the room's
    /// history in memory.
    fn history_page(&mut self, room: u32, before: Option<u64>, limit: usize) -> Response {
        let mut json = Vec::with_capacity(64 + limit * 96);
        match self.stored_page(room, before, limit, &mut json) {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                self.read_failed(&format!("scrollback of room {room}"), &e);
                return Response::text(Status::InternalError, "could not read the history")
                    .header("Cache-Control", "no-store");
            }
            None => {
                let (page, more) = self.chat.page(room, before, limit);
                events::history_page(&mut json, page.into_iter(), more);
            }
        }
        Response::new(Status::Ok)
            .body("application/json", json)
            .header("Cache-Control", "no-store")
            .header("X-Content-Type-Options", "nosniff")
    }

    /// A refused WebSocket handshake is worth a log line.
    fn log_refused_upgrade(&mut self, id: ConnId, req: &Request, response: &Response) {
        let code = response.status.code();
        if code >= 400
            && req.header_has_token("upgrade", "websocket")
            && let Some(conn) = self.get(id)
        {
            let (peer, path) = (conn.peer(), Escaped(req.path));
            log::info!("{peer}: WebSocket handshake to {path} refused: {code}");
        }
    }

    /// A request from an address over `--max-connections-per-ip`: `503`,
    /// then closed.
    fn refuse_client(&mut self, id: ConnId, client: IpAddr, refusal: Refusal) {
        self.note_per_address_refusal(client, refusal);
        let response = Response::text(refusal.status(), "too many connections from one address")
            .header("Retry-After", "5")
            .closing();
        let reply = Reply {
            head_only: false,
            keep_alive: false,
            version: 1,
        };
        self.respond(id, response, reply);
    }

    /// The client's address for this request: the TCP peer, or when that
    /// peer is a proxy named by `--trust-proxy`, the last
    /// `X-Forwarded-For` entry, which then becomes
    /// the connection's peer (in the logs too). Behind a trusted proxy a
    /// connection is counted by `--max-connections-per-ip` under the address
    /// of its latest request (a proxy reuses its connections for different
    /// clients); without one, it was counted by its TCP peer when accepted.
    /// A proxied request that names no client (no `X-Forwarded-For`, or
    /// one that cannot be read) is the proxy's own, never the client of
    /// the connection's previous request.
    /// `None` if the connection is gone; a refusal names the address.
    fn attribute_client(
        &mut self,
        id: ConnId,
        req: &Request,
    ) -> Option<Result<IpAddr, (IpAddr, Refusal)>> {
        let proxy = self.proxy_peers.get(&id).copied();
        let conn = self.get(id)?;
        let proxied = conn.via_proxy;
        let forwarded = if proxied { req.forwarded_for() } else { None };
        let peer = conn.peer();
        let client = forwarded.or(proxy).unwrap_or(peer.ip());
        if !proxied || conn.via != Via::Main || (conn.counted && client == peer.ip()) {
            return Some(Ok(client));
        }
        let was_counted = std::mem::replace(&mut conn.counted, false);
        conn.machine.peer = SocketAddr::new(client, peer.port());
        if was_counted {
            self.peer_limits.close(peer.ip());
        }
        let counted = match self.peer_limits.open(client) {
            Ok(counted) => counted.is_some(),
            Err(refusal) => return Some(Err((client, refusal))),
        };
        if let Some(conn) = self.get(id) {
            conn.counted = counted;
        }
        Some(Ok(client))
    }

    /// Sends a response through the connection's machine (no keep-alive
    /// while shutting down).
    pub(super) fn respond(&mut self, id: ConnId, response: Response, reply: Reply) {
        let keep_alive = reply.keep_alive && self.shutting_down.is_none();
        let response = response.for_version(reply.version);
        let (now, settings) = (self.now, self.settings);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let actions = conn.machine.respond(
            response,
            reply.head_only,
            keep_alive,
            &mut conn.out,
            now,
            &settings,
        );
        self.apply(id, actions);
    }

    /// Sends `101 Switching Protocols` and turns the connection into a WebSocket.
    fn upgrade(&mut self, id: ConnId, upgrade: &Upgrade, role: Role) {
        let (now, settings) = (self.now, self.settings);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        conn.machine
            .upgrade(upgrade, role, &mut conn.out, now, &settings);
        self.mark_dirty(id);
        self.sync_timer(id);
    }
}

//! The HTTP side of a connection: answering the next complete request in its
//! input (keep-alive and pipelining included: the poll loop asks for one
//! request at a time, and only while the connection is not paused), sending
//! the response, and closing cleanly (`Draining`). Part of the poll loop's
//! `impl Server`.

use std::net::{IpAddr, SocketAddr};

use super::TimerKey;
use super::{Server, Step};
use crate::conn::{ConnId, Phase, Role};
use crate::http::pipeline::{next_request, Framed};
use crate::http::request::{HeadLimits, Request, MAX_HEADERS};
use crate::http::response::Response;
use crate::http::routes::{self, Ctx, Outcome};
use crate::http::Status;
use crate::logsafe::Escaped;
use crate::peer_limits::Refusal;

impl Server {
    /// Answers the request at the front of `input`, if it is all there.
    pub(super) fn http_step(&mut self, id: ConnId, input: &[u8]) -> Step {
        let limits = HeadLimits {
            max_head_bytes: self.config.max_head_bytes,
            max_line_bytes: self.config.max_request_line_bytes,
        };
        let max_body_bytes = self.config.max_body_bytes;
        let Some(conn) = self.conn(id) else {
            return Step::Took(input.len());
        };
        let Phase::Http(http) = &mut conn.phase else {
            return Step::Took(0);
        };
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match next_request(
            input,
            &mut http.scanned,
            &limits,
            max_body_bytes,
            &mut storage,
        ) {
            Framed::Partial => Step::NeedMore,
            Framed::Refused(status) => {
                self.answer_and_close(id, status);
                Step::Took(input.len())
            }
            Framed::Complete {
                request,
                head_len,
                len,
            } => {
                http.scanned = 0;
                self.answer_request(id, &request, &input[head_len..len]);
                Step::Took(len)
            }
        }
    }

    /// Answers one complete request.
    pub(super) fn answer_request(&mut self, id: ConnId, req: &Request, body: &[u8]) {
        let Some(attributed) = self.attribute_client(id, req) else {
            return;
        };
        let client = match attributed {
            Ok(client) => client,
            Err((client, refusal)) => {
                self.note_per_address_refusal(client, refusal);
                let mut response =
                    Response::text(refusal.status(), "too many connections from one address")
                        .header("Retry-After", "5");
                response.close = true;
                self.respond(id, response, false, false);
                return;
            }
        };
        let keep_alive = req.keep_alive();
        let head_only = req.method == "HEAD";
        let via_metrics = self.conn(id).is_some_and(|c| c.via_metrics);
        self.metrics.http_requests += 1;
        let outcome = {
            let mut ctx = Ctx {
                chat: &mut self.chat,
                metrics: &mut self.metrics,
                config: &self.config,
                assets: &self.assets,
                now: self.now,
                via_metrics,
                client,
                peer_limits: &mut self.peer_limits,
            };
            routes::handle(req, body, &mut ctx)
        };
        let outcome = match outcome {
            // A socket opened now would miss the `1001` sent to the others
            // and hold the exit until the drain deadline.
            Outcome::Echo { .. } | Outcome::JoinRoom { .. } if self.shutting_down.is_some() => {
                Outcome::Respond(
                    Response::text(Status::ServiceUnavailable, "shutting down")
                        .header("Retry-After", "5"),
                )
            }
            other => other,
        };
        match outcome {
            Outcome::Respond(response) => {
                if response.status.code() >= 400 && req.header_has_token("upgrade", "websocket") {
                    if let Some(conn) = self.conn(id) {
                        let code = response.status.code();
                        let (peer, path) = (conn.peer, Escaped(req.path));
                        log::info!("{peer}: WebSocket handshake to {path} refused: {code}");
                    }
                }
                self.respond(id, response, head_only, keep_alive)
            }
            Outcome::Reserved {
                response,
                session,
                expires,
            } => {
                self.timers.add(expires, TimerKey::Session(session));
                self.respond(id, response, head_only, keep_alive);
            }
            Outcome::Metrics => {
                let text = self.metrics.render(&self.gauges());
                let response = Response::new(Status::Ok)
                    .body(
                        "text/plain; version=0.0.4; charset=utf-8",
                        text.into_bytes(),
                    )
                    .header("Cache-Control", "no-store");
                self.respond(id, response, head_only, keep_alive);
            }
            Outcome::Echo { upgrade } => self.upgrade(id, &upgrade, Role::Echo),
            Outcome::JoinRoom {
                upgrade,
                session,
                since,
            } => {
                self.upgrade(id, &upgrade, Role::Chat { session });
                self.join_room(id, session, since);
            }
        }
    }

    /// The client's address for this request: the TCP peer, or with
    /// `--trust-proxy` the last `X-Forwarded-For` entry, which then becomes
    /// the connection's peer (in the logs too). Behind a trusted proxy a
    /// connection is counted by `--max-connections-per-ip` under the address
    /// of its latest request (a proxy reuses its connections for different
    /// clients); without one, it was counted by its TCP peer when accepted.
    /// `None` if the connection is gone; a refusal names the address.
    fn attribute_client(
        &mut self,
        id: ConnId,
        req: &Request,
    ) -> Option<Result<IpAddr, (IpAddr, Refusal)>> {
        let trust_proxy = self.config.trust_proxy;
        let forwarded = if trust_proxy {
            req.forwarded_for()
        } else {
            None
        };
        let conn = self.conn(id)?;
        let client = forwarded.unwrap_or(conn.peer.ip());
        if !trust_proxy || conn.via_metrics || (conn.counted && client == conn.peer.ip()) {
            return Some(Ok(client));
        }
        let previous = conn.peer.ip();
        let was_counted = std::mem::replace(&mut conn.counted, false);
        conn.peer = SocketAddr::new(client, conn.peer.port());
        if was_counted {
            self.peer_limits.close(previous);
        }
        let counted = match self.peer_limits.open(client) {
            Ok(counted) => counted.is_some(),
            Err(refusal) => return Some(Err((client, refusal))),
        };
        if let Some(conn) = self.conn(id) {
            conn.counted = counted;
        }
        Some(Ok(client))
    }

    pub(super) fn respond(
        &mut self,
        id: ConnId,
        response: Response,
        head_only: bool,
        keep_alive: bool,
    ) {
        let close = !keep_alive || response.close || self.shutting_down.is_some();
        let (head, body) = response.encode(head_only, !close);
        let head_timeout = self.config.head_timeout;
        let now = self.now;
        let Some(conn) = self.conn(id) else { return };
        conn.out.push(head);
        conn.out.push(body);
        self.mark_dirty(id);
        if close {
            self.start_draining(id);
        } else {
            // The next request gets its own head timeout.
            self.set_deadline(id, Some(now + head_timeout));
        }
    }

    /// Answers with a bare status page and closes the connection.
    pub(super) fn answer_and_close(&mut self, id: ConnId, status: Status) {
        if let Some(conn) = self.conn(id) {
            log::info!("{}: request refused: {}", conn.peer, status.code());
        }
        let mut response = Response::text(status, status.phrase());
        response.close = true;
        self.respond(id, response, false, false);
    }

    /// No more requests: send what is queued, then FIN, then wait for the
    /// peer to close (bounded by the close timeout).
    pub(super) fn start_draining(&mut self, id: ConnId) {
        let deadline = self.now + self.config.close_timeout;
        let Some(conn) = self.conn(id) else { return };
        let was_websocket = matches!(conn.phase, Phase::WebSocket(_));
        let session = conn.session();
        conn.phase = Phase::Draining;
        conn.input.clear(); // no more requests: what the peer sent after is ignored
        conn.fin_when_flushed = true;
        if was_websocket {
            self.websockets -= 1;
        }
        if let Some(session) = session {
            self.leave_room(session, id);
        }
        self.mark_dirty(id);
        self.set_deadline(id, Some(deadline));
    }
}

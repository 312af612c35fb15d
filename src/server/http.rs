//! The HTTP side of a connection: answering each complete request in its
//! buffer (keep-alive and pipelining included), sending the response, and
//! closing cleanly (`Draining`). Part of the poll loop's `impl Server`.

use std::net::SocketAddr;

use super::{forwarded_for, Server};
use crate::conn::{ConnId, Phase, Role};
use crate::http::request::{self, HeadLimits, MAX_HEADERS};
use crate::http::response::{Body, Response};
use crate::http::routes::{self, Ctx, Outcome};
use crate::http::Status;
use crate::logsafe::Escaped;
use crate::queue::Chunk;

impl Server {
    /// Answers every complete request in the connection's buffer.
    pub(super) fn on_http_bytes(&mut self, id: ConnId) {
        let limits = HeadLimits {
            max_head_bytes: self.config.max_head_bytes,
            max_line_bytes: self.config.max_request_line_bytes,
        };
        loop {
            let Some(conn) = self.conn(id) else { return };
            let Phase::Http(http) = &mut conn.phase else {
                return;
            };
            let head_len = match request::find_head_end(&http.buf, &mut http.scanned, &limits) {
                Ok(Some(n)) => n,
                Ok(None) => return,
                Err(e) => return self.answer_and_close(id, e.status()),
            };
            let mut buf = std::mem::take(&mut http.buf);
            let used = match self.answer_request(id, &buf, head_len) {
                Some(used) => used,
                None => {
                    // The body is incomplete: keep the bytes, wait for more.
                    if let Some(Phase::Http(http)) = self.conn(id).map(|c| &mut c.phase) {
                        http.buf = buf;
                    }
                    return;
                }
            };
            buf.drain(..used);
            let Some(conn) = self.conn(id) else { return };
            match &mut conn.phase {
                Phase::Http(http) => {
                    http.buf = buf;
                    http.scanned = 0;
                    if http.buf.is_empty() {
                        http.buf = Vec::new(); // an idle keep-alive socket holds no buffer
                    }
                }
                Phase::WebSocket(_) => {
                    // Bytes sent right after the upgrade request are frames.
                    if !buf.is_empty() {
                        self.on_ws_bytes(id, &buf);
                    }
                    return;
                }
                Phase::Draining => return,
            }
        }
    }

    /// Parses and answers one request whose head is `buf[..head_len]`.
    /// Returns the bytes it used, or `None` if its body has not all arrived.
    pub(super) fn answer_request(
        &mut self,
        id: ConnId,
        buf: &[u8],
        head_len: usize,
    ) -> Option<usize> {
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let req = match request::parse(&buf[..head_len], &mut storage) {
            Ok(r) => r,
            Err(e) => {
                self.answer_and_close(id, e.status());
                return Some(buf.len());
            }
        };
        let body_len = match req.content_length() {
            Ok(n) if n > self.config.max_body_bytes => {
                self.answer_and_close(id, Status::PayloadTooLarge);
                return Some(buf.len());
            }
            Ok(n) => n,
            Err(status) => {
                self.answer_and_close(id, status);
                return Some(buf.len());
            }
        };
        if buf.len() < head_len + body_len {
            return None;
        }
        let body = &buf[head_len..head_len + body_len];
        let keep_alive = req.keep_alive();
        let head_only = req.method == "HEAD";
        let via_metrics = self.conn(id).is_some_and(|c| c.via_metrics);
        if self.config.trust_proxy {
            if let Some(ip) = forwarded_for(&req) {
                if let Some(conn) = self.conn(id) {
                    conn.peer = SocketAddr::new(ip, conn.peer.port());
                }
            }
        }
        self.metrics.http_requests += 1;
        let outcome = {
            let mut ctx = Ctx {
                chat: &mut self.chat,
                timers: &mut self.timers,
                metrics: &mut self.metrics,
                config: &self.config,
                assets: &self.assets,
                now: self.now,
                via_metrics,
            };
            routes::handle(&req, body, &mut ctx)
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
            Outcome::Metrics => {
                let text = self.metrics.render(&self.gauges());
                let response = Response::new(Status::Ok)
                    .body(
                        "text/plain; version=0.0.4; charset=utf-8",
                        Body::Owned(text.into_bytes()),
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
        Some(head_len + body_len)
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
        conn.out.push(Chunk::Owned(head));
        match body {
            Body::Empty => {}
            Body::Static(b) => conn.out.push(Chunk::Static(b)),
            Body::Owned(v) => conn.out.push(Chunk::Owned(v)),
        }
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

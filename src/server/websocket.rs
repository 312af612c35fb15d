//! The WebSocket side of a connection: the upgrade, joining and leaving
//! rooms, reading messages, answering pings and closes, and the broadcast of
//! one shared frame to a room. Part of the poll loop's `impl Server`.

use std::rc::Rc;

use super::{Server, Step, TimerKey};
use crate::bytes::Bytes;
use crate::chat::{self, events, RoomId, SessionId};
use crate::conn::{ConnId, Phase, Role, TokenBucket, Ws};
use crate::http::upgrade;
use crate::logsafe::Escaped;
use crate::queue::Frame;
use crate::ws::close::{self, CloseReason};
use crate::ws::frame::{self, Opcode};
use crate::ws::reader::{Limits, Message};

impl Server {
    /// Sends `101 Switching Protocols` and turns the connection into a WebSocket.
    pub(super) fn upgrade(&mut self, id: ConnId, upgrade: &upgrade::Upgrade, role: Role) {
        let now = self.now;
        let burst = self.config.rate_burst;
        let ping_at = now + self.config.ping_interval;
        let Some(conn) = self.conn(id) else { return };
        conn.out
            .push(Bytes::Owned(upgrade::response_bytes(upgrade)));
        conn.phase = Phase::WebSocket(Box::new(Ws {
            reader: Default::default(),
            role,
            close_sent: false,
            awaiting_pong: false,
            bucket: TokenBucket::new(burst, now),
        }));
        log::debug!("{}: upgraded to WebSocket ({role:?})", conn.peer);
        self.websockets += 1;
        self.mark_dirty(id);
        self.set_deadline(id, Some(ping_at));
    }

    /// Puts a new room socket in its room: welcome to it, join to the others.
    pub(super) fn join_room(&mut self, id: ConnId, session: SessionId, since: Option<u64>) {
        let joined = self.chat.join(session, id);
        if let Some(old) = joined.replaced {
            self.close_ws(
                old,
                CloseReason::new(close::REPLACED, "replaced by a newer connection"),
            );
        }
        let welcome = self
            .chat
            .welcome(session, since, self.config.max_chat_chars);
        self.send_owned(id, frame::encode_frame(Opcode::Text, &welcome));
        let Some(s) = self.chat.sessions.get(session) else {
            return;
        };
        let room = s.room;
        let number = self.chat.number(room);
        if joined.replaced.is_none() {
            let mut json = Vec::with_capacity(64);
            events::presence(&mut json, "join", &s.user, chat::unix_millis());
            log::info!("join: \"{}\" in room {number}", Escaped(&s.user));
            let frame: Frame = frame::encode_frame(Opcode::Text, &json).into();
            self.broadcast(room, frame, Some(id));
        } else {
            log::info!(
                "rejoin: \"{}\" in room {number} (newer socket)",
                Escaped(&s.user)
            );
        }
    }

    /// Takes a closing or closed socket out of its room and tells the others.
    pub(super) fn leave_room(&mut self, session: SessionId, id: ConnId) {
        let expires = self.now + self.config.grace_timeout;
        let Some(left) = self.chat.leave(session, id, expires) else {
            return;
        };
        self.timers
            .add(left.expires, TimerKey::Session(left.session));
        log::info!(
            "leave: \"{}\" from room {}",
            Escaped(&left.user),
            self.chat.number(left.room)
        );
        let mut json = Vec::with_capacity(64);
        events::presence(&mut json, "leave", &left.user, chat::unix_millis());
        let frame: Frame = frame::encode_frame(Opcode::Text, &json).into();
        self.broadcast(left.room, frame, None);
    }

    /// Feeds `input` to the connection's message reader until one message
    /// is complete (and handled) or `input` is used up.
    pub(super) fn ws_step(&mut self, id: ConnId, input: &[u8]) -> Step {
        let limits = Limits {
            max_frame_bytes: self.config.max_frame_bytes,
            max_message_bytes: self.config.max_message_bytes,
        };
        let Some(conn) = self.conn(id) else {
            return Step::Took(input.len());
        };
        let Some(ws) = conn.ws() else {
            return Step::Took(0);
        };
        let mut rest = input;
        match ws.reader.read(&mut rest, &limits) {
            Ok(Some(message)) => {
                let took = input.len() - rest.len();
                self.on_message(id, message);
                Step::Took(took)
            }
            Ok(None) => Step::Took(input.len()),
            Err(e) => {
                if !ws.close_sent {
                    let peer = conn.peer;
                    log::info!(
                        "{peer}: protocol error, closing {}: {}",
                        e.close_code(),
                        e.reason()
                    );
                    self.close_ws(id, e.to_close());
                }
                // Fail the connection (RFC 6455 §7.1.7): after a protocol
                // error the stream cannot be parsed any more, so read
                // nothing more from it (not even a close frame); send
                // our close, then FIN.
                self.start_draining(id);
                Step::Took(input.len())
            }
        }
    }

    pub(super) fn on_message(&mut self, id: ConnId, message: Message) {
        let Some(conn) = self.conn(id) else { return };
        let Some(ws) = conn.ws() else { return };
        let (role, close_sent) = (ws.role, ws.close_sent);
        match message {
            Message::Close(payload) => self.on_close_frame(id, payload),
            _ if close_sent => {} // after our close, only a close matters
            Message::Ping(payload) => {
                self.send_owned(id, frame::encode_frame(Opcode::Pong, &payload))
            }
            Message::Pong(_) => {
                if ws.awaiting_pong {
                    ws.awaiting_pong = false;
                    let next = self.now + self.config.ping_interval;
                    self.set_deadline(id, Some(next));
                }
            }
            Message::Text(bytes) => match role {
                Role::Echo => self.send_owned(id, frame::encode_frame(Opcode::Text, &bytes)),
                Role::Chat { session } => self.on_chat_text(id, session, bytes),
            },
            Message::Binary(bytes) => match role {
                Role::Echo => self.send_owned(id, frame::encode_frame(Opcode::Binary, &bytes)),
                Role::Chat { .. } => {
                    if let Some(conn) = self.conn(id) {
                        log::info!("{}: binary message, closing 1003", conn.peer);
                    }
                    self.close_ws(
                        id,
                        CloseReason::new(close::UNSUPPORTED_DATA, "text messages only"),
                    )
                }
            },
        }
    }

    /// The peer's close frame: answer it (echoing its code) unless we
    /// already sent ours; either way the handshake is now complete.
    pub(super) fn on_close_frame(&mut self, id: ConnId, payload: Option<(u16, String)>) {
        let Some(conn) = self.conn(id) else { return };
        let Some(ws) = conn.ws() else { return };
        if !ws.close_sent {
            let reply = match &payload {
                Some((code, _)) => frame::encode_close(*code, ""),
                None => frame::encode_frame(Opcode::Close, &[]),
            };
            ws.close_sent = true;
            conn.out.push(Bytes::Owned(reply));
            if let Some((code, _)) = payload {
                self.metrics.closed(code);
            }
            self.mark_dirty(id);
        }
        self.leave_if_chat(id);
        self.start_draining(id);
    }

    pub(super) fn leave_if_chat(&mut self, id: ConnId) {
        if let Some(session) = self.conn(id).and_then(|c| c.session()) {
            self.leave_room(session, id);
        }
    }

    /// A chat message from a room socket.
    pub(super) fn on_chat_text(&mut self, id: ConnId, session: SessionId, bytes: Vec<u8>) {
        let (now, rate, burst) = (self.now, self.config.rate_limit, self.config.rate_burst);
        let Some(conn) = self.conn(id) else { return };
        let Some(ws) = conn.ws() else { return };
        if !ws.bucket.take(rate, burst, now) {
            let peer = conn.peer;
            log::info!("{peer}: rate limit, closing 1008");
            return self.close_ws(id, CloseReason::new(close::POLICY, "rate limit"));
        }
        self.metrics.messages_in += 1;
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return self.close_ws(
                id,
                CloseReason::new(close::INVALID_PAYLOAD, "invalid UTF-8"),
            );
        };
        let Some(text) = chat::names::chat_text(text, self.config.max_chat_chars) else {
            return; // empty or only whitespace: ignored
        };
        let Some(s) = self.chat.sessions.get(session) else {
            return;
        };
        let (room, user) = (s.room, s.user.clone());
        let Some(frame) = self.chat.post(
            room,
            &user,
            text,
            chat::unix_millis(),
            self.config.history_messages,
        ) else {
            return;
        };
        // Only chat messages count as deliveries, not join/leave events.
        self.metrics.messages_out += self.broadcast(room, frame, None) as u64;
    }

    /// Queues one shared frame for every member of `room` (but `except`);
    /// returns how many receivers it was queued for. Receivers pushed over
    /// `--max-buffered` have their queue freed at once and are closed
    /// afterwards: each close broadcasts a `leave`, so the closes run from a
    /// work list in the outermost call, not nested once per slow receiver
    /// (a stalled room of thousands would overflow the stack).
    pub(super) fn broadcast(
        &mut self,
        room: RoomId,
        frame: Frame,
        except: Option<ConnId>,
    ) -> usize {
        let max_buffered = self.config.max_buffered;
        let mut queued = 0;
        let Some(r) = self.chat.rooms.get(room) else {
            return 0;
        };
        for member in &r.members {
            if Some(member.conn) == except {
                continue;
            }
            let Some(conn) = self.conns.get_mut(member.conn) else {
                continue;
            };
            conn.out.push(Bytes::Shared(Rc::clone(&frame)));
            queued += 1;
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(member.conn);
            }
            if conn.out.buffered() > max_buffered {
                // Freed now, so the leaves broadcast below do not find it
                // over the limit again.
                self.too_slow.push((member.conn, conn.out.buffered()));
                conn.out.clear();
            }
        }
        if self.closing_too_slow {
            return queued; // the outermost broadcast closes them
        }
        self.closing_too_slow = true;
        while let Some((id, buffered)) = self.too_slow.pop() {
            let Some(conn) = self.conn(id) else { continue };
            // Found twice before its close (its queue held the rest of a
            // started frame): closed once.
            if conn.ws().is_none_or(|ws| ws.close_sent) {
                continue;
            }
            log::info!(
                "{}: too slow ({buffered} bytes buffered), closing 1008",
                conn.peer
            );
            self.close_ws(id, CloseReason::new(close::POLICY, "backpressure limit"));
        }
        self.closing_too_slow = false;
        queued
    }

    /// Sends our close frame (once), leaves the room, and waits for the
    /// peer's close frame until the close timeout.
    pub(super) fn close_ws(&mut self, id: ConnId, reason: CloseReason) {
        let deadline = self.now + self.config.close_timeout;
        let Some(conn) = self.conn(id) else { return };
        let Some(ws) = conn.ws() else { return };
        if ws.close_sent {
            return;
        }
        ws.close_sent = true;
        conn.out.push(Bytes::Owned(frame::encode_close(
            reason.code,
            reason.reason,
        )));
        self.metrics.closed(reason.code);
        self.mark_dirty(id);
        self.set_deadline(id, Some(deadline));
        self.leave_if_chat(id);
    }

    pub(super) fn send_owned(&mut self, id: ConnId, bytes: Vec<u8>) {
        if let Some(conn) = self.conn(id) {
            conn.out.push(Bytes::Owned(bytes));
            self.mark_dirty(id);
        }
    }
}

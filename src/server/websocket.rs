//! The WebSocket and room side of the loop: frames in (through the
//! connection's machine), joining and leaving rooms, chat messages, and the
//! broadcast of one shared frame to a room. Part of the poll loop's
//! `impl Server`.
//!
//! The hot path of one chat message: `frames_step` feeds the bytes to the
//! connection's [`Machine`](crate::conn::Machine), which returns
//! `Action::Chat`; `apply` hands it to `on_chat_text`, which posts it
//! (`post_message` in `durable.rs` numbers it and encodes the frame once;
//! with a data file it waits there for the turn's commit) and `broadcast`s
//! that one `Rc` frame into every member's write queue, flushed at the end
//! of the turn.

use std::rc::Rc;

use super::{Server, Step, TimerKey};
use crate::bytes::Bytes;
use crate::chat::{self, RoomId, SessionId, events};
use crate::conn::ConnId;
use crate::logsafe::Escaped;
use crate::queue::Frame;
use crate::ws::close::{self, CloseReason};
use crate::ws::frame::{self, Opcode};

impl Server {
    /// Feeds `input` to the connection's machine until one message is
    /// complete (and handled) or `input` is used up.
    pub(super) fn frames_step(&mut self, id: ConnId, input: &[u8]) -> Step {
        let (now, settings) = (self.now, self.settings);
        let Some(conn) = self.conn(id) else {
            return Step::Took(input.len());
        };
        let (used, actions) = conn.machine.on_frame_bytes(input, now, &settings);
        self.apply(id, actions);
        Step::Took(used)
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
        let limits = (self.config.max_chat_chars, self.config.max_chat_lines);
        let welcome = self.chat.welcome(session, since, limits);
        self.send(
            id,
            Bytes::Owned(frame::encode_frame(Opcode::Text, &welcome)),
        );
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
            self.post_presence(room, frame, Some(id));
        } else {
            log::info!(
                "rejoin: \"{}\" in room {number} (newer socket)",
                Escaped(&s.user)
            );
        }
    }

    /// Takes a closing or closed socket out of its room and tells the others
    /// (for `Action::Leave`, the only caller).
    pub(super) fn leave_room(&mut self, session: SessionId, id: ConnId) {
        let expires = self.now + self.config.grace_timeout;
        let Some(left) = self.chat.leave(session, id, expires) else {
            return;
        };
        if let Some(at) = left.timer {
            self.timers.add(at, TimerKey::Session(left.session));
        }
        log::info!(
            "leave: \"{}\" from room {}",
            Escaped(&left.user),
            self.chat.number(left.room)
        );
        let mut json = Vec::with_capacity(64);
        events::presence(&mut json, "leave", &left.user, chat::unix_millis());
        let frame: Frame = frame::encode_frame(Opcode::Text, &json).into();
        self.post_presence(left.room, frame, None);
    }

    /// Ends a session at once (`POST /logout`): its socket is closed with
    /// `1000 logged out` (the others see its `leave`), its id is freed, and
    /// with a data file its end is recorded in this turn's commit.
    pub(super) fn log_out(&mut self, session: SessionId) {
        let Some(s) = self.chat.sessions.get(session) else {
            return;
        };
        let (socket, token_hash) = (s.socket, s.token_hash);
        if let Some(socket) = socket {
            self.close_ws(socket, CloseReason::new(close::NORMAL, "logged out"));
        }
        let user = self.chat.user(session).to_string();
        if let Some(number) = self.chat.log_out(session) {
            log::info!("logout: \"{}\" from room {number}", Escaped(&user));
        }
        if let Some(d) = self.durable.as_mut() {
            d.store.record_session_end(token_hash);
        }
    }

    /// A chat message from a room socket (within its rate: the machine
    /// checked).
    pub(super) fn on_chat_text(&mut self, id: ConnId, session: SessionId, bytes: Vec<u8>) {
        self.metrics.messages_in += 1;
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return self.close_ws(
                id,
                CloseReason::new(close::INVALID_PAYLOAD, "invalid UTF-8"),
            );
        };
        let (chars, lines) = (self.config.max_chat_chars, self.config.max_chat_lines);
        let Some(text) = chat::names::chat_text(text, chars, lines) else {
            return; // empty or only whitespace: ignored
        };
        let Some(s) = self.chat.sessions.get(session) else {
            return;
        };
        let (room, user) = (s.room, s.user.clone());
        self.post_message(id, room, &user, &text);
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
        if !self.closing_too_slow {
            self.close_too_slow();
        }
        queued
    }

    /// Closes the receivers the outermost broadcast found too slow.
    fn close_too_slow(&mut self) {
        self.closing_too_slow = true;
        while let Some((id, buffered)) = self.too_slow.pop() {
            let Some(conn) = self.conn(id) else { continue };
            // Found twice before its close (its queue held the rest of a
            // started frame): closed once.
            if !conn.machine.is_open_websocket() {
                continue;
            }
            log::info!(
                "{}: too slow ({buffered} bytes buffered), closing 1008",
                conn.peer()
            );
            self.close_ws(id, CloseReason::new(close::POLICY, "backpressure limit"));
        }
        self.closing_too_slow = false;
    }

    /// Starts the close handshake from our side (see `Machine::close`).
    pub(super) fn close_ws(&mut self, id: ConnId, reason: CloseReason) {
        let (now, settings) = (self.now, self.settings);
        let Some(conn) = self.conn(id) else { return };
        let actions = conn.machine.close(reason, now, &settings);
        self.apply(id, actions);
    }
}

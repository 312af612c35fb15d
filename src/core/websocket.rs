//! The WebSocket and room side of the core: frames in (through the
//! connection's machine), joining and leaving rooms, and the broadcast of
//! one shared frame to a room. Part of the core's `impl Core`.
//!
//! The hot path of one chat message: `frames_step` feeds the bytes to the
//! connection's [`Machine`](crate::conn::Machine), which returns them as a
//! command in `Actions::chat`; `apply` hands it to `on_command` (in
//! `edits.rs`, with the other commands), which posts the message
//! (`post_message` in `turn.rs` numbers it, records it and encodes
//! its frame once; it waits in the outbox for the turn's commit); at the
//! end of the turn `broadcast` puts that one `Rc` frame into every member's
//! write queue, and the driver writes the queues.

use std::rc::Rc;

use super::turn::Outgoing;
use super::{Core, Step, TimerKey};
use crate::bytes::Bytes;
use crate::chat::{RoomId, SessionId, events};
use crate::conn::ConnId;
use crate::conn::machine::CloseFrame;
use crate::logsafe::Escaped;
use crate::queue::Frame;
use crate::ws::close::{self, CloseReason};
use crate::ws::frame::{self, Opcode};

impl Core {
    /// Feeds `input` to the connection's machine until one message is
    /// complete (and handled) or `input` is used up.
    pub(super) fn frames_step(&mut self, id: ConnId, input: &[u8]) -> Step {
        let (now, settings) = (self.now, self.settings);
        let Some(conn) = self.conns.get_mut(id) else {
            return Step::Took(input.len());
        };
        let (used, actions) = conn
            .machine
            .on_frame_bytes(input, &mut conn.out, now, &settings);
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
        let limits = (
            self.config.max_chat_chars,
            self.config.max_chat_lines,
            self.config.edit_window.as_secs(),
        );
        let welcome = self.chat.welcome(session, since, limits);
        self.send(
            id,
            Bytes::Owned(frame::encode_frame(Opcode::Text, &welcome)),
        );
        let at = self.unix_millis();
        let Some(s) = self.chat.sessions.get(session) else {
            return;
        };
        let room = s.room;
        let number = self.chat.number(room);
        if joined.announced() {
            let mut json = Vec::with_capacity(64);
            events::presence(&mut json, "join", &s.user, at);
            log::info!("join: \"{}\" in room {number}", Escaped(&s.user));
            self.journal.record_presence(s.token_hash, true);
            let frame: Frame = frame::encode_frame(Opcode::Text, &json).into();
            self.post_join(room, frame, session, id);
        } else if joined.back {
            log::info!(
                "back: \"{}\" in room {number} (within its leave delay: not announced)",
                Escaped(&s.user)
            );
        } else {
            log::info!(
                "rejoin: \"{}\" in room {number} (newer socket)",
                Escaped(&s.user)
            );
        }
    }

    /// Takes a closing or closed socket out of its room (for
    /// `Outgoing::Leave` and `close_now`). The session stays listed for
    /// `--leave-delay-secs` (its timer entry sends the `leave` then, unless
    /// a socket of it joins first); with no delay the others are told now.
    /// After SIGTERM the server leaves, not the person: the session stays
    /// listed (no session timer runs while draining), and the data file
    /// keeps it present for the next process to list again.
    pub(super) fn leave_room(&mut self, session: SessionId, id: ConnId) {
        let expires = self.now + self.config.grace_timeout;
        let delay = self.config.leave_delay;
        let leave_at = match self.shutting_down() {
            true => Some(self.now),
            false => (!delay.is_zero()).then(|| self.now + delay),
        };
        let Some(left) = self.chat.leave(session, id, leave_at, expires) else {
            return;
        };
        if let Some(at) = left.timer {
            self.timers.add(at, TimerKey::Session(left.session));
        }
        let number = self.chat.number(left.room);
        if left.leave_at.is_some() {
            log::debug!(
                "away: \"{}\" from room {number}, its leave in {delay:?} unless it is back",
                Escaped(&left.user)
            );
            return;
        }
        self.record_leave(session);
        // Its `join` has not gone out yet (this socket was closed by the
        // turn's output before it, as too slow): nobody saw it come, so
        // nobody is told it left, and that `join` is not sent either (it
        // is no longer listed when its turn comes: `Core::deliver`).
        if self.chat.sessions.get(session).is_some_and(|s| s.joining) {
            return;
        }
        // (Only called while the turn is delivered: broadcast in order.)
        self.broadcast(
            left.room,
            leave_frame(number, &left.user, self.unix_millis()),
            None,
        );
    }

    /// A listed session is listed no longer: the data file learns it (so
    /// that a restart does not list it again).
    pub(super) fn record_leave(&mut self, session: SessionId) {
        if let Some(s) = self.chat.sessions.get(session) {
            self.journal.record_presence(s.token_hash, false);
        }
    }

    /// A session within its leave delay that ends now (log-out, removal):
    /// the others see its `leave` at once.
    pub(super) fn leave_now(&mut self, session: SessionId) {
        // Its `join` has not gone out: nobody saw it come (see `leave_room`).
        let joining = self.chat.sessions.get(session).is_some_and(|s| s.joining);
        if let Some((room, user)) = self.chat.leave_now(session)
            && !joining
        {
            let frame = leave_frame(self.chat.number(room), &user, self.unix_millis());
            self.broadcast(room, frame, None);
        }
    }

    /// `POST /logout`: the session's end is recorded in this turn's
    /// commit, and the session ends in the turn's order (`end_session`).
    /// What is read after the log-out, in this turn too, finds it over:
    /// its cookie names no session any more (an upgrade, a page, a second
    /// log-out are answered as after it), and its socket is closed now,
    /// so nothing it sends after is read and its `leave` is queued before
    /// the log-out (which then sends it at once).
    pub(super) fn log_out(&mut self, session: SessionId) {
        let Some(s) = self.chat.sessions.get(session) else {
            return;
        };
        self.journal.record_session_end(s.token_hash);
        let socket = s.socket;
        self.chat.forget_token(session);
        if let Some(socket) = socket {
            self.close_ws(socket, CloseReason::new(close::NORMAL, "logged out"));
        }
        self.outbox.push_back(Outgoing::LogOut { session });
    }

    /// Ends a logged-out session, in the turn's order: its socket is closed
    /// with `1000 logged out` (the others see its `leave`) and its id is
    /// freed.
    pub(super) fn end_session(&mut self, session: SessionId) {
        if let Some(socket) = self.chat.sessions.get(session).and_then(|s| s.socket) {
            self.close_now(socket, CloseReason::new(close::NORMAL, "logged out"));
            // Already closing (its own `leave` waits behind this in the
            // outbox, and will find no session): it leaves its room now.
            if self.chat.sessions.get(session).and_then(|s| s.socket) == Some(socket) {
                self.leave_room(session, socket);
            }
        }
        // Not after a leave delay: a log-out is no reload.
        self.leave_now(session);
        let user = self.chat.user(session).to_string();
        if let Some(number) = self.chat.log_out(session) {
            log::info!("logout: \"{}\" from room {number}", Escaped(&user));
        }
    }

    /// Queues one shared frame for every member of `room` (but `except`);
    /// returns how many receivers it was queued for. Receivers pushed over
    /// `--max-buffered` have their queue freed at once and are put on the
    /// `too_slow` list, which the turn closes after this broadcast (each
    /// close posts a `leave` to the back of the outbox: a work queue, not
    /// recursion).
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
                self.dirty.push_back(member.conn);
            }
            if conn.out.buffered() > max_buffered {
                // Freed now, so the leaves broadcast below do not find it
                // over the limit again.
                self.too_slow.push((member.conn, conn.out.buffered()));
                conn.out.clear();
            }
        }
        queued
    }

    /// Closes the receivers a broadcast found too slow, at once (the turn
    /// is delivering: nothing more of it is for them).
    pub(super) fn close_too_slow(&mut self) {
        while let Some((id, buffered)) = self.too_slow.pop() {
            let Some(conn) = self.conns.get(id) else {
                continue;
            };
            // Found twice before its close (its queue held the rest of a
            // started frame): closed once.
            if !conn.machine.is_open_websocket() {
                continue;
            }
            log::info!(
                "{}: too slow ({buffered} bytes buffered), closing 1008",
                conn.peer()
            );
            self.close_now(id, CloseReason::new(close::POLICY, "backpressure limit"));
        }
    }

    /// Starts the close handshake from our side (see `Machine::close`),
    /// in the turn's order: the socket first gets what the turn delivers
    /// before it.
    pub(super) fn close_ws(&mut self, id: ConnId, reason: CloseReason) {
        let (now, settings) = (self.now, self.settings);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let actions = conn.machine.close(reason, now, &settings);
        self.apply(id, actions);
    }

    /// Starts the close handshake now, while the turn is being delivered:
    /// the close frame is queued and the socket leaves its room at once.
    pub(super) fn close_now(&mut self, id: ConnId, reason: CloseReason) {
        let (now, settings) = (self.now, self.settings);
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let actions = conn.machine.close(reason, now, &settings);
        if let Some(close) = actions.close {
            self.queue_close(id, close);
        }
        if let Some(session) = actions.leave {
            self.leave_room(session, id);
        }
        self.sync_timer(id);
    }

    /// Queues a close frame (counted by its code).
    pub(super) fn queue_close(&mut self, id: ConnId, close: CloseFrame) {
        if let Some(code) = close.code {
            self.metrics.closed(code);
        }
        self.send(id, Bytes::Owned(close.frame));
    }
}

/// The `leave` event of `user` from room `number` (logged at info), as one
/// frame. Its `at` is the moment it is sent (after a leave delay, when the
/// delay ended), in Unix milliseconds.
pub(super) fn leave_frame(number: u32, user: &str, at: u64) -> Frame {
    log::info!("leave: \"{}\" from room {number}", Escaped(user));
    let mut json = Vec::with_capacity(64);
    events::presence(&mut json, "leave", user, at);
    frame::encode_frame(Opcode::Text, &json).into()
}

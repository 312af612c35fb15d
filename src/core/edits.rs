//! The chat commands of a room socket (`say`, `edit`, `delete`, `typing`:
//! `chat::command`) and the operator's delete. Part of the core's `impl
//! Core`.
//!
//! An edit or a delete is checked (`chat::edits::check`: the message is a
//! kept one of this room, not deleted, sent by this session, within
//! `--edit-window-secs`), then numbered and recorded like a message: it
//! waits in the outbox for the turn's commit, is delivered to everyone in
//! the room in the one order, and joins the room's history, changing the
//! message it targets. A refused one gets an `error` event on its socket
//! only. A `typing` notice goes to the others at once in the turn's order
//! and is never stored.

use super::Core;
use super::turn::Outgoing;
use crate::chat::command::Command;
use crate::chat::edits::{self, Changer, Found, Refusal, Target};
use crate::chat::{self, RoomId, SessionId, events};
use crate::conn::ConnId;
use crate::queue::Frame;
use crate::store;
use crate::ws::frame::{self, Opcode};

impl Core {
    /// One command of a room socket (within its rate: the machine checked).
    pub(super) fn on_command(&mut self, id: ConnId, session: SessionId, command: Command) {
        self.metrics.messages_in += 1;
        let Some(s) = self.chat.sessions.get(session) else {
            return;
        };
        let (room, hash, user) = (s.room, s.token_hash, s.user.clone());
        let result = match command {
            Command::Say { text } => {
                self.say(id, session, &text);
                Ok(())
            }
            Command::Edit { seq, text } => self.edit(id, session, seq, &text),
            Command::Delete { seq } => {
                let by = Changer::Session(hash);
                self.delete(Some(id), room, seq, (by, &user))
            }
            Command::Typing {} => {
                self.typing(id, session);
                Ok(())
            }
        };
        if let Err(refusal) = result {
            let mut json = Vec::with_capacity(48);
            events::error(&mut json, refusal.reason());
            let frame: Frame = frame::encode_frame(Opcode::Text, &json).into();
            self.outbox.push_back(Outgoing::Reply { conn: id, frame });
        }
    }

    /// A chat message: its text cut and normalised (`names::chat_text`;
    /// empty text is ignored), then posted.
    fn say(&mut self, id: ConnId, session: SessionId, text: &str) {
        let Some(text) = self.chat_text(text) else {
            return; // empty or only whitespace: ignored
        };
        let Some(s) = self.chat.sessions.get(session) else {
            return;
        };
        let (room, user, author) = (s.room, s.user.clone(), s.token_hash);
        self.post_message(id, room, &user, &text, author);
    }

    /// Text cut to `--max-chat-chars` and `--max-chat-lines`, line breaks
    /// as LF; `None` if nothing is left.
    fn chat_text<'t>(&self, text: &'t str) -> Option<std::borrow::Cow<'t, str>> {
        let (chars, lines) = (self.config.max_chat_chars, self.config.max_chat_lines);
        chat::names::chat_text(text, chars, lines)
    }

    /// An edit of message `seq` by `session`.
    fn edit(
        &mut self,
        id: ConnId,
        session: SessionId,
        seq: u64,
        text: &str,
    ) -> Result<(), Refusal> {
        let Some(s) = self.chat.sessions.get(session) else {
            return Ok(());
        };
        let (room, user, hash) = (s.room, s.user.clone(), s.token_hash);
        let text = self.chat_text(text).ok_or(Refusal::Empty)?;
        self.may_change(room, seq, Changer::Session(hash))?;
        let at = self.unix_millis();
        let Some(kept) = self.chat.number_edit(room, seq, &text, at) else {
            return Ok(());
        };
        let kind = store::Kind::Edit { target: seq };
        self.post_event(Some(id), room, kept, (&user, &text, kind));
        Ok(())
    }

    /// A delete of message `seq` of `room`, from a session's socket `id`
    /// or by the operator (`id` `None`); `by` says who, with the user id
    /// its event names (empty for the operator: `"by":null`).
    fn delete(
        &mut self,
        id: Option<ConnId>,
        room: RoomId,
        seq: u64,
        by: (Changer, &str),
    ) -> Result<(), Refusal> {
        let (changer, user) = by;
        self.may_change(room, seq, changer)?;
        let by_name = Some(user).filter(|u| !u.is_empty());
        let at = self.unix_millis();
        let Some(kept) = self.chat.number_delete(room, seq, by_name, at) else {
            return Ok(());
        };
        let kind = store::Kind::Delete { target: seq };
        self.post_event(id, room, kept, (user, "", kind));
        Ok(())
    }

    /// May `by` change message `seq` of `room` now? Also refuses a message
    /// whose delete waits in this turn's outbox.
    fn may_change(&mut self, room: RoomId, seq: u64, by: Changer) -> Result<(), Refusal> {
        let target = self.find_target(room, seq);
        let window = self.config.edit_window.as_millis() as u64;
        edits::check(target, by, self.unix_millis(), window)?;
        if self.delete_waits(room, seq) {
            return Err(Refusal::Deleted);
        }
        Ok(())
    }

    /// A delete of message `seq` of `room` waits in this turn's outbox
    /// (for the commit: with a busy data file, for several turns).
    pub(super) fn delete_waits(&self, room: RoomId, seq: u64) -> bool {
        self.outbox.iter().any(|o| match o {
            Outgoing::Message {
                room: r, message, ..
            } => {
                *r == room
                    && matches!(message.event, edits::Event::Delete { target, .. } if target == seq)
            }
            _ => false,
        })
    }

    /// Message `seq` of `room`: in the history in memory, or, if older,
    /// in the data file.
    fn find_target(&mut self, room: RoomId, seq: u64) -> Option<Target> {
        match self.chat.target(room, seq) {
            Found::Here(target) => Some(target),
            Found::Nowhere => None,
            Found::Older => {
                let number = self.chat.number(room);
                match self.journal.event(number, seq) {
                    Ok(Some(m)) => stored_target(&m),
                    Ok(None) => None,
                    Err(e) => {
                        self.read_failed(&format!("a message of room {number}"), &e);
                        None
                    }
                }
            }
        }
    }

    /// A `typing` notice: to the others in the room, at most one per 3 s
    /// per session (more are dropped silently); never stored, no `seq`.
    fn typing(&mut self, id: ConnId, session: SessionId) {
        if !self.chat.typing.allow(session, self.now) {
            return;
        }
        let Some(s) = self.chat.sessions.get(session) else {
            return;
        };
        let mut json = Vec::with_capacity(48);
        events::typing(&mut json, &s.user);
        let frame: Frame = frame::encode_frame(Opcode::Text, &json).into();
        let room = s.room;
        self.post_presence(room, frame, Some(id));
    }

    /// **The operator's delete** (for the admin API): deletes message
    /// `seq` of room `room` as the operator. Everyone in the room gets
    /// `{"type":"delete","seq":M,"target":seq,"by":null,"at":…}` with the
    /// room's next `seq` `M`, exactly as for a user's delete: it is
    /// recorded in this turn's commit and delivered at the end of the
    /// turn (call it during a turn, as an HTTP handler of the core runs),
    /// and history and scrollback show the message as a tombstone from
    /// then on. No edit window and no owner apply.
    ///
    /// A room nobody holds a session in is brought back from the data
    /// file for the turn (`Core::visit_room`), so its kept messages can
    /// be deleted too.
    ///
    /// Refused ([`Refusal::reason`] says why) when the room has no kept
    /// message with that `seq` ([`Refusal::NoSuchMessage`]; without a data
    /// file that is every room nobody is in, as nothing of it is kept), or
    /// when it is deleted already ([`Refusal::Deleted`]). If the turn's
    /// commit then fails, the delete is dropped like any event of that
    /// turn (nobody sees it).
    pub fn delete_as_operator(&mut self, room: u32, seq: u64) -> Result<(), Refusal> {
        let room_id = match self.chat.room_by_number(room) {
            Some(id) => id,
            None => self.visit_room(room).ok_or(Refusal::NoSuchMessage)?,
        };
        self.delete(None, room_id, seq, (Changer::Operator, ""))?;
        log::info!("operator: message {seq} of room {room} deleted");
        Ok(())
    }

    /// Room `number`, which nobody is in, brought back from the data file
    /// (its `seq` and history, as a login would) for the rest of the turn:
    /// it is closed again at the end of [`Core::end_turn`], after its
    /// events are committed and delivered (`Chat::close_rooms_left_empty`),
    /// unless a login took it meanwhile. Numbering on from its stored
    /// `seq` keeps a login in the same turn, or a later one, from reusing
    /// a number. `None` without a data file, or if the file has no such
    /// room.
    fn visit_room(&mut self, number: u32) -> Option<RoomId> {
        let keep = self.config.history_messages;
        let stored = match self.journal.room(number, keep) {
            Ok(Some(stored)) => stored,
            Ok(None) => return None,
            Err(e) => {
                self.read_failed(&format!("room {number} for the operator's delete"), &e);
                return None;
            }
        };
        let room = self.chat.open_room(number);
        let history = stored.history.iter().map(super::turn::kept).collect();
        self.chat.restore_room(room, stored.last_seq, history, keep);
        Some(room)
    }
}

/// The rules' view of a stored event (only a message is a target).
fn stored_target(m: &store::StoredMessage) -> Option<Target> {
    match m.kind {
        store::Kind::Said { author } => Some(Target {
            at: m.at,
            author,
            deleted: m.deleted,
        }),
        _ => None,
    }
}

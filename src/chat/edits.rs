//! Edits and deletes: what a room's history entry is (a message, an edit,
//! a delete: each a room event with its own `seq`), who may change a
//! message and until when, and how a delivered edit or delete changes the
//! message it targets in the room's history. Pure: no I/O; the core asks
//! [`Chat::target`] (or, for a message older than the history in memory,
//! the data file) and [`check`], then numbers the event
//! ([`Chat::number_edit`], [`Chat::number_delete`]); [`Chat::keep`]
//! applies it when it is delivered.
//!
//! A history entry's frame is what `welcome` and scrollback show: a
//! message in its *current* state (its latest text and `"edited":AT`, or a
//! tombstone without text), an edit or a delete as it was sent, except
//! that when a message is deleted its edits lose their text (`"text":""`;
//! they keep their `seq`, so a history has no holes): a deleted text is
//! never replayed, and the delete that follows them makes the message a
//! tombstone on every page. So a page that applies
//! a `history` in order (an edit sets a message's text, a delete makes it a
//! tombstone, an event for a message it does not show is ignored) ends
//! with what a fresh page shows, whatever `since` it came back with.

use super::{Chat, Kept, RoomId, events};
use crate::queue::Frame;
use crate::token::TokenHash;
use crate::ws::frame::{self, Opcode};

/// What a history entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A chat message, in its current state.
    Message(Box<Said>),
    /// New text for message `target`.
    Edit {
        /// The edited message's `seq`.
        target: u64,
        /// Its new text.
        text: Box<str>,
        /// When (Unix ms).
        at: u64,
    },
    /// Message `target` was deleted.
    Delete {
        /// The deleted message's `seq`.
        target: u64,
        /// When (Unix ms).
        at: u64,
    },
}

impl Event {
    /// When it happened (Unix ms; of a message, when it was sent).
    pub fn at(&self) -> u64 {
        match self {
            Event::Message(said) => said.at,
            Event::Edit { at, .. } | Event::Delete { at, .. } => *at,
        }
    }
}

/// A message's current state, and who may change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    /// The sender's id.
    pub user: Box<str>,
    /// When it was sent (Unix ms).
    pub at: u64,
    /// The session that sent it (the hash of its token); `None` for a
    /// message nobody may edit (one stored before edits existed).
    pub author: Option<TokenHash>,
    /// When it was last edited.
    pub edited: Option<u64>,
    /// Deleted: a tombstone.
    pub deleted: bool,
}

/// Who asks to change a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changer {
    /// A session, by the hash of its token: its own messages, within the
    /// edit window.
    Session(TokenHash),
    /// The operator: any message, at any time (deletes only).
    Operator,
}

/// The message an edit or delete targets, as far as the rules go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// When it was sent (Unix ms).
    pub at: u64,
    /// The session that sent it.
    pub author: Option<TokenHash>,
    /// Already deleted.
    pub deleted: bool,
}

/// Where a target `seq` was looked for in a room's history in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A kept message.
    Here(Target),
    /// Older than the history in memory: the data file may keep it.
    Older,
    /// No such message (never numbered, not yet delivered, an edit or a
    /// delete, or the room is gone).
    Nowhere,
}

/// Why an edit or delete is refused: the `reason` of the `error` event
/// its sender gets (the socket stays open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The message was sent by another session.
    NotYours,
    /// The edit window (`--edit-window-secs`) is over.
    TooLate,
    /// No kept message of this room has that `seq`.
    NoSuchMessage,
    /// The message is deleted already.
    Deleted,
    /// An edit whose text is empty or only white space.
    Empty,
}

impl Refusal {
    /// The `reason` string (a contract: pages match on it).
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotYours => "not yours",
            Refusal::TooLate => "too late",
            Refusal::NoSuchMessage => "no such message",
            Refusal::Deleted => "deleted",
            Refusal::Empty => "empty",
        }
    }
}

/// May `by` change `target` at `now_ms` (Unix ms), with an edit window of
/// `window_ms`? The window is open while `now_ms < at + window_ms` (a
/// window of 0 refuses every change by a session).
pub fn check(
    target: Option<Target>,
    by: Changer,
    now_ms: u64,
    window_ms: u64,
) -> Result<(), Refusal> {
    let target = target.ok_or(Refusal::NoSuchMessage)?;
    if target.deleted {
        return Err(Refusal::Deleted);
    }
    let Changer::Session(session) = by else {
        return Ok(());
    };
    if target.author != Some(session) {
        return Err(Refusal::NotYours);
    }
    if now_ms >= target.at.saturating_add(window_ms) {
        return Err(Refusal::TooLate);
    }
    Ok(())
}

impl Kept {
    /// A chat message's entry, as broadcast (`author`: the sending session).
    pub fn message(seq: u64, user: &str, text: &str, at: u64, author: Option<TokenHash>) -> Kept {
        let mut json = Vec::with_capacity(64 + text.len() + user.len());
        events::message(&mut json, user, text, at, seq);
        let said = Said {
            user: user.into(),
            at,
            author,
            edited: None,
            deleted: false,
        };
        Kept::encoded(seq, &json, Event::Message(Box::new(said)))
    }

    /// A stored message's entry in its current state (`text` `None`: deleted).
    pub fn message_now(seq: u64, said: Said, text: Option<&str>) -> Kept {
        let text = text.filter(|_| !said.deleted);
        let json = now_json(seq, &said, text);
        Kept::encoded(seq, &json, Event::Message(Box::new(said)))
    }

    /// An edit's entry: the `edit` event.
    pub fn edit(seq: u64, target: u64, text: &str, at: u64) -> Kept {
        let mut json = Vec::with_capacity(80 + text.len());
        events::edit(&mut json, seq, target, text, at);
        let event = Event::Edit {
            target,
            text: text.into(),
            at,
        };
        Kept::encoded(seq, &json, event)
    }

    /// A delete's entry: the `delete` event (`by` `None`: the operator).
    pub fn delete(seq: u64, target: u64, by: Option<&str>, at: u64) -> Kept {
        let mut json = Vec::with_capacity(96);
        events::delete(&mut json, seq, target, by, at);
        Kept::encoded(seq, &json, Event::Delete { target, at })
    }

    fn encoded(seq: u64, json: &[u8], event: Event) -> Kept {
        let frame: Frame = frame::encode_frame(Opcode::Text, json).into();
        Kept { seq, frame, event }
    }
}

/// A message's current-state JSON.
fn now_json(seq: u64, said: &Said, text: Option<&str>) -> Vec<u8> {
    let mut json = Vec::with_capacity(80 + said.user.len() + text.map_or(0, str::len));
    events::message_now(
        &mut json,
        events::MessageNow {
            user: &said.user,
            text,
            at: said.at,
            seq,
            edited: said.edited,
        },
    );
    json
}

impl Chat {
    /// Looks for message `seq` in room `room`'s history in memory.
    pub fn target(&self, room: RoomId, seq: u64) -> Found {
        let Some(r) = self.rooms.get(room) else {
            return Found::Nowhere;
        };
        if seq == 0 || seq > r.last_seq {
            return Found::Nowhere;
        }
        match r.history.binary_search_by_key(&seq, |k| k.seq) {
            Ok(i) => match &r.history[i].event {
                Event::Message(said) => Found::Here(Target {
                    at: said.at,
                    author: said.author,
                    deleted: said.deleted,
                }),
                _ => Found::Nowhere,
            },
            Err(0) => Found::Older,
            Err(_) => Found::Nowhere,
        }
    }

    /// Gives an edit of message `target` the room's next `seq` (not yet in
    /// the history: see [`Chat::keep`]). `None` if the room is gone.
    pub fn number_edit(&mut self, room: RoomId, target: u64, text: &str, at: u64) -> Option<Kept> {
        let seq = self.next_seq(room)?;
        Some(Kept::edit(seq, target, text, at))
    }

    /// Gives a delete of message `target` the room's next `seq` (`by`:
    /// the deleting user, `None` for the operator).
    pub fn number_delete(
        &mut self,
        room: RoomId,
        target: u64,
        by: Option<&str>,
        at: u64,
    ) -> Option<Kept> {
        let seq = self.next_seq(room)?;
        Some(Kept::delete(seq, target, by, at))
    }

    /// Numbers the room's next event.
    pub(super) fn next_seq(&mut self, room: RoomId) -> Option<u64> {
        let room = self.rooms.get_mut(room)?;
        room.numbered += 1;
        Some(room.numbered)
    }

    /// A delivered edit or delete changes the message it targets, if the
    /// history in memory holds it: its frame shows the new state. A delete
    /// also takes the text out of the message's edits in the history, even
    /// when the message itself has already left it.
    pub(super) fn apply_change(&mut self, room: RoomId, event: &Event) {
        let (target, text, at) = match event {
            Event::Message(_) => return,
            Event::Edit { target, text, at } => (*target, Some(&**text), *at),
            Event::Delete { target, at } => (*target, None, *at),
        };
        self.show_change(room, target, text, at);
        if text.is_none() {
            self.blank_edits_of(room, target);
        }
    }

    /// The history's entry of message `target` shows it edited (`text`)
    /// or deleted (`None`), if the history holds it and it is not deleted.
    fn show_change(&mut self, room: RoomId, target: u64, text: Option<&str>, at: u64) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let Ok(i) = r.history.binary_search_by_key(&target, |k| k.seq) else {
            return;
        };
        let entry = &mut r.history[i];
        let Event::Message(said) = &mut entry.event else {
            return;
        };
        if said.deleted {
            return;
        }
        match text {
            Some(_) => said.edited = Some(at),
            None => said.deleted = true,
        }
        let json = now_json(target, said, text);
        let old = entry.frame.len();
        entry.frame = frame::encode_frame(Opcode::Text, &json).into();
        self.history_bytes = self.history_bytes - old + entry.frame.len();
    }

    /// A deleted message's edits stay in the history (their `seq`s too: a
    /// history has no holes), without their text, as in the data file.
    fn blank_edits_of(&mut self, room: RoomId, target: u64) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let mut change = 0isize;
        for k in r.history.iter_mut() {
            if let Event::Edit { target: t, at, .. } = k.event
                && t == target
            {
                let blank = Kept::edit(k.seq, target, "", at);
                change += blank.frame.len() as isize - k.frame.len() as isize;
                *k = blank;
            }
        }
        self.history_bytes = self.history_bytes.saturating_add_signed(change);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: TokenHash = TokenHash([1; 32]);

    fn target(at: u64, deleted: bool) -> Option<Target> {
        Some(Target {
            at,
            author: Some(ALICE),
            deleted,
        })
    }

    #[test]
    fn delivered_changes_show_in_the_history_and_its_bytes_are_counted() {
        let mut chat = Chat::new();
        let now = std::time::Instant::now();
        chat.login(1, "al", [1; 16], now, 10).unwrap();
        let room = chat.room_by_number(1).unwrap();
        for text in ["one", "two"] {
            let m = chat.number_said(room, "al", text, 7, Some(ALICE)).unwrap();
            chat.keep(room, m, 10);
        }
        assert_eq!(chat.target(room, 3), Found::Nowhere, "not numbered yet");
        let edit = chat.number_edit(room, 1, "one!", 8).unwrap();
        let edit2 = chat.number_edit(room, 2, "two?", 8).unwrap();
        let delete = chat.number_delete(room, 2, Some("al"), 9).unwrap();
        for kept in [edit, edit2, delete] {
            chat.keep(room, kept, 10);
        }
        let _ = chat.history_bytes(); // a debug build checks the count
        let shown: Vec<String> = chat
            .rooms
            .get(room)
            .unwrap()
            .history
            .iter()
            .map(|k| String::from_utf8_lossy(k.json()).into_owned())
            .collect();
        assert!(shown[0].contains(r#""text":"one!""#) && shown[0].contains(r#""edited":8"#));
        assert!(shown[1].contains(r#""deleted":true"#) && !shown[1].contains("two"));
        assert!(shown[3].contains(r#""text":"""#), "{}", shown[3]);
        let here = |deleted| {
            Found::Here(Target {
                at: 7,
                author: Some(ALICE),
                deleted,
            })
        };
        assert_eq!(
            (chat.target(room, 1), chat.target(room, 2)),
            (here(false), here(true))
        );
        assert_eq!(chat.target(room, 3), Found::Nowhere, "an edit is no target");
        // A ring of 3 drops its oldest (message 1): older than the history.
        let delete = chat.number_delete(room, 1, None, 9).unwrap();
        chat.keep(room, delete, 3);
        assert_eq!(chat.target(room, 1), Found::Older);
        let _ = chat.history_bytes();
    }

    #[test]
    fn a_delete_blanks_the_edits_of_a_message_that_left_the_history() {
        // Found by tests/edits_by_hand.rs: the data file blanked them, the
        // history in memory did not, so a restart changed the history.
        let mut chat = Chat::new();
        let now = std::time::Instant::now();
        chat.login(1, "al", [1; 16], now, 10).unwrap();
        let room = chat.room_by_number(1).unwrap();
        let one = chat.number_said(room, "al", "one", 7, Some(ALICE)).unwrap();
        chat.keep(room, one, 3);
        let two = chat.number_said(room, "al", "two", 7, Some(ALICE)).unwrap();
        chat.keep(room, two, 3);
        let edit = chat.number_edit(room, 1, "one!", 8).unwrap();
        chat.keep(room, edit, 3);
        let four = chat
            .number_said(room, "al", "four", 8, Some(ALICE))
            .unwrap();
        chat.keep(room, four, 3);
        assert_eq!(chat.target(room, 1), Found::Older);
        let delete = chat.number_delete(room, 1, Some("al"), 9).unwrap();
        chat.keep(room, delete, 3);
        let history = &chat.rooms.get(room).unwrap().history;
        let edit = String::from_utf8_lossy(history[0].json()).into_owned();
        assert!(edit.contains(r#""seq":3"#), "{edit}");
        assert!(edit.contains(r#""text":"""#), "{edit}");
        let _ = chat.history_bytes(); // a debug build checks the count
    }

    #[test]
    fn who_may_change_what_and_until_when() {
        let me = Changer::Session(ALICE);
        assert_eq!(check(target(1000, false), me, 1999, 1000), Ok(()));
        assert_eq!(
            check(target(1000, false), me, 2000, 1000),
            Err(Refusal::TooLate)
        );
        assert_eq!(
            check(target(1000, false), me, 1000, 0),
            Err(Refusal::TooLate)
        );
        let other = Changer::Session(TokenHash([2; 32]));
        assert_eq!(
            check(target(1000, false), other, 1000, 1000),
            Err(Refusal::NotYours)
        );
        assert_eq!(
            check(target(1000, true), me, 1000, 1000),
            Err(Refusal::Deleted)
        );
        assert_eq!(check(None, me, 1000, 1000), Err(Refusal::NoSuchMessage));
        let unowned = Some(Target {
            at: 1000,
            author: None,
            deleted: false,
        });
        assert_eq!(check(unowned, me, 1000, 1000), Err(Refusal::NotYours));
        assert_eq!(check(unowned, Changer::Operator, u64::MAX, 0), Ok(()));
        assert_eq!(
            check(target(0, true), Changer::Operator, 0, 0),
            Err(Refusal::Deleted)
        );
    }
}

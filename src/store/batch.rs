//! What one loop turn changed, held in memory until [`Store::commit`]
//! writes it in one transaction.
//!
//! Recording is cheap on purpose (it happens once per message, on the hot
//! path): a message's user and text are appended to one string buffer that
//! keeps its capacity from turn to turn, so a steady stream of messages
//! allocates nothing here.
//!
//! [`Store::commit`]: super::Store::commit

use std::collections::HashMap;
use std::ops::Range;

pub use crate::token::TokenHash;

/// A login recorded this turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login<'a> {
    /// SHA-256 of the session token.
    pub token_hash: TokenHash,
    /// The room number the id is reserved in.
    pub room: u32,
    /// The id as typed.
    pub user: &'a str,
    /// Unix milliseconds.
    pub at: u64,
}

/// A room event recorded this turn: a chat message, an edit or a delete
/// (each has its own `seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The room number.
    pub room: u32,
    /// Its number in the room.
    pub seq: u64,
    /// Unix milliseconds.
    pub at: u64,
    /// The sender's id as typed (of a delete: who deleted, empty for the
    /// operator).
    pub user: &'a str,
    /// The chat text as kept (of an edit: the new text; of a delete: empty).
    pub text: &'a str,
    /// Which event it is.
    pub kind: Kind,
}

/// What a recorded room event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A chat message; `author` is the hash of the sending session's token
    /// (who may edit and delete it), `None` for nobody.
    Said {
        /// The sending session.
        author: Option<TokenHash>,
    },
    /// New text for message `target`.
    Edit {
        /// The edited message's `seq`.
        target: u64,
    },
    /// Message `target` deleted.
    Delete {
        /// The deleted message's `seq`.
        target: u64,
    },
}

impl Kind {
    /// A message nobody may edit (the tests', and the kind before edits).
    pub const SAID: Kind = Kind::Said { author: None };
}

/// An operator's bar, as the data file keeps it (see `schema`, version 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBar {
    /// The room of a removal; `None` for an address bar.
    pub room: Option<u32>,
    /// The removed id (`None` for an address bar).
    pub user: Option<String>,
    /// The barred address (of a removal: its socket's, if it had one).
    pub address: Option<std::net::IpAddr>,
    /// When it ends, in Unix milliseconds.
    pub until: u64,
}

#[derive(Debug, Clone)]
struct LoginRecord {
    token_hash: TokenHash,
    room: u32,
    user: Range<usize>,
    at: u64,
}

#[derive(Debug, Clone)]
struct MessageRecord {
    room: u32,
    seq: u64,
    at: u64,
    user: Range<usize>,
    text: Range<usize>,
    kind: Kind,
}

/// The records of one turn (or, after a failed commit, the part of it that
/// was discarded: see [`super::CommitError`]).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    logins: Vec<LoginRecord>,
    ends: Vec<TokenHash>,
    /// Sessions whose presence changed: listed (`true`) or no longer.
    presence: Vec<(TokenHash, bool)>,
    /// Bars the operator set (rare: no buffer reuse needed).
    bars: Vec<StoredBar>,
    messages: Vec<MessageRecord>,
    /// Each room's highest recorded `seq`.
    last_seqs: HashMap<u32, u64>,
    /// The users and texts of the records, one after another.
    strings: String,
}

impl Batch {
    /// Nothing recorded since the last commit.
    pub fn is_empty(&self) -> bool {
        self.logins.is_empty()
            && self.ends.is_empty()
            && self.messages.is_empty()
            && self.presence.is_empty()
            && self.bars.is_empty()
    }

    /// The logins, in the order they were recorded.
    pub fn logins(&self) -> impl ExactSizeIterator<Item = Login<'_>> {
        self.logins.iter().map(|r| Login {
            token_hash: r.token_hash,
            room: r.room,
            user: &self.strings[r.user.clone()],
            at: r.at,
        })
    }

    /// The messages, in the order they were recorded.
    pub fn messages(&self) -> impl ExactSizeIterator<Item = Message<'_>> {
        self.messages.iter().map(|r| Message {
            room: r.room,
            seq: r.seq,
            at: r.at,
            user: &self.strings[r.user.clone()],
            text: &self.strings[r.text.clone()],
            kind: r.kind,
        })
    }

    /// The sessions that ended.
    pub fn session_ends(&self) -> &[TokenHash] {
        &self.ends
    }

    /// The sessions whose presence changed, in order (the last one of a
    /// session wins).
    pub fn presence(&self) -> &[(TokenHash, bool)] {
        &self.presence
    }

    /// The bars the operator set, in order.
    pub fn bars(&self) -> &[StoredBar] {
        &self.bars
    }

    /// Each room that got messages, with its highest `seq`.
    pub fn last_seqs(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.last_seqs.iter().map(|(&room, &seq)| (room, seq))
    }

    pub(super) fn push_login(&mut self, token_hash: TokenHash, room: u32, user: &str, at: u64) {
        let user = self.push_str(user);
        self.logins.push(LoginRecord {
            token_hash,
            room,
            user,
            at,
        });
    }

    pub(super) fn push_end(&mut self, token_hash: TokenHash) {
        self.ends.push(token_hash);
    }

    pub(super) fn push_presence(&mut self, token_hash: TokenHash, present: bool) {
        self.presence.push((token_hash, present));
    }

    pub(super) fn push_bar(&mut self, bar: StoredBar) {
        self.bars.push(bar);
    }

    pub(super) fn push_message(&mut self, m: Message<'_>) {
        let user = self.push_str(m.user);
        let text = self.push_str(m.text);
        self.messages.push(MessageRecord {
            room: m.room,
            seq: m.seq,
            at: m.at,
            user,
            text,
            kind: m.kind,
        });
        let last = self.last_seqs.entry(m.room).or_insert(m.seq);
        *last = (*last).max(m.seq);
    }

    fn push_str(&mut self, s: &str) -> Range<usize> {
        let start = self.strings.len();
        self.strings.push_str(s);
        start..self.strings.len()
    }

    /// Forgets every record, keeping the buffers' capacity.
    pub(super) fn clear(&mut self) {
        self.logins.clear();
        self.ends.clear();
        self.presence.clear();
        self.bars.clear();
        self.messages.clear();
        self.last_seqs.clear();
        self.strings.clear();
    }

    /// After a failed commit: takes out the logins and messages (returned to
    /// the caller as discarded) and keeps the session ends, presence
    /// changes and bars for the next commit (they took effect anyway).
    pub(super) fn take_failed(&mut self) -> Batch {
        let ends = std::mem::take(&mut self.ends);
        let presence = std::mem::take(&mut self.presence);
        let bars = std::mem::take(&mut self.bars);
        let failed = std::mem::take(self);
        self.ends = ends;
        self.presence = presence;
        self.bars = bars;
        failed
    }
}

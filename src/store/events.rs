//! Room events in the file (schema version 7, see `schema.rs`): a chat
//! message, an edit or a delete, kept in **chunks**. A chunk is one row of
//! `chunks`: the events one loop turn added to one room, oldest first. This module writes a turn's chunk, makes the message an
//! edit or a delete targets show its current state, reads events back as
//! [`StoredMessage`]s, and deletes chunks (pruning, retention).
//!
//! **Why a row per turn, not per event.** A busy room gets dozens of
//! messages per turn, and the commit is a blocking call of the poll loop.
//! SQLite's cost is mostly per row (its b-tree insert, and for every few
//! rows a page of the write-ahead log): one row for the turn's dozens
//! costs about a third of what a row each did (`cargo bench --bench store
//! -- commit`), and the log grows by about half as many pages. A quiet
//! room gets one message per turn, so its chunks hold one event each, as
//! rows did before.
//!
//! **A chunk** is two columns: `authors`, the SHA-256 of each sending
//! session's token (who may edit and delete the message), 32 bytes each,
//! once per chunk; and `events`, a JSON array of the events, oldest first,
//! each an array `[seq, at, user, text, author, kind, target, edited,
//! deleted]`:
//! `author` a message's author as its place in `authors` (null for
//! nobody); `kind` 0 a message, 1 an edit, 2 a delete; `target` the `seq`
//! an edit or delete changes (else null); `edited` when a message was last
//! edited (Unix ms, or null); `deleted` 1 once a message is deleted (its
//! text is then empty, and so is the text of its edits: a deleted text
//! stays in no row). The fields after `text` are left out from the first
//! one on that is at its default (null, or 0 for `kind` and `deleted`):
//! most events are `[seq, at, user, text, author]`. The file has a view
//! `messages` with one row per event, for `sqlite3` and other readers.
//!
//! **Rules the writer keeps**: a chunk's `seq`s rise, its `first` and
//! `last` are its first and last event's, and `at` its newest event's
//! time; a new chunk starts after the room's last `seq` (else the commit
//! fails: a number given twice would replace an event someone may have
//! seen). A chunk that breaks them or does not decode (a file edited by
//! hand) reads as a damaged page of its room.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Deserialize;

use super::{Kind, Message, StoredMessage, TokenHash, to_i64, to_u64};

/// A chunk as its row holds it: `authors`, each distinct author's token
/// hash (32 bytes each, in the order the events first name them), and
/// `events`, their JSON array. Buffers kept from turn to turn.
#[derive(Debug, Default)]
pub struct Encoded {
    /// The authors' hashes, one after the other.
    pub authors: Vec<u8>,
    /// The events' JSON.
    pub events: Vec<u8>,
}

impl Encoded {
    /// The events' JSON as text (always UTF-8: JSON of Rust strings).
    fn json(&self) -> rusqlite::Result<&str> {
        std::str::from_utf8(&self.events).map_err(|e| damaged(&e))
    }
}

/// A chunk's row as read: its range, authors and events' JSON.
struct ChunkRow {
    first: u64,
    last: u64,
    authors: Vec<u8>,
    events: String,
}

/// The columns [`ChunkRow::read`] reads, in its order.
const CHUNK_COLUMNS: &str = "first, last, authors, events";

impl ChunkRow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<ChunkRow> {
        Ok(ChunkRow {
            first: to_u64(row.get(0)?),
            last: to_u64(row.get(1)?),
            authors: row.get(2)?,
            events: row.get(3)?,
        })
    }

    fn decode(&self) -> rusqlite::Result<Vec<StoredMessage>> {
        decode(self.first, self.last, &self.authors, &self.events)
    }
}

/// One event as read back: `[seq, at, user, text, author, kind, target,
/// edited, deleted]`, where the fields after `text` may be left out when
/// they are the default (a tuple struct is a JSON array in serde, and
/// `default` fills the ones missing at the end).
#[derive(Deserialize)]
struct EventIn(
    u64,
    u64,
    String,
    String,
    #[serde(default)] Option<usize>,
    #[serde(default)] u8,
    #[serde(default)] Option<u64>,
    #[serde(default)] Option<u64>,
    #[serde(default)] u8,
);

/// An event to write: a new one ([`Message`]) or one read back and
/// changed ([`StoredMessage`]).
#[derive(Clone, Copy)]
struct EventRef<'a> {
    seq: u64,
    at: u64,
    user: &'a str,
    text: &'a str,
    kind: Kind,
    edited: Option<u64>,
    deleted: bool,
}

impl<'a> From<&'a Message<'a>> for EventRef<'a> {
    fn from(m: &'a Message<'a>) -> Self {
        EventRef {
            seq: m.seq,
            at: m.at,
            user: m.user,
            text: m.text,
            kind: m.kind,
            edited: None,
            deleted: false,
        }
    }
}

impl<'a> From<&'a StoredMessage> for EventRef<'a> {
    fn from(m: &'a StoredMessage) -> Self {
        EventRef {
            seq: m.seq,
            at: m.at,
            user: &m.user,
            text: &m.text,
            kind: m.kind,
            edited: m.edited,
            deleted: m.deleted,
        }
    }
}

/// Writes `events` to `out` (cleared first) as one chunk: each distinct
/// author once, in `authors`, and the events' JSON array, whose messages
/// name their author by its place there (a busy room's turn has dozens of
/// messages from a few people; a quiet room's chunk holds one).
fn encode<'a>(events: impl Iterator<Item = EventRef<'a>> + Clone, out: &mut Encoded) {
    let mut authors: Vec<TokenHash> = Vec::new();
    for e in events.clone() {
        if let Kind::Said {
            author: Some(author),
        } = e.kind
            && !authors.contains(&author)
        {
            authors.push(author);
        }
    }
    out.authors.clear();
    for author in &authors {
        out.authors.extend_from_slice(&author.0);
    }
    let json = &mut out.events;
    json.clear();
    json.push(b'[');
    for (i, e) in events.enumerate() {
        if i > 0 {
            json.push(b',');
        }
        write_event(json, &e, &authors);
    }
    json.push(b']');
}

/// One event's array, the fields after `text` only up to the last one
/// that is not its default.
fn write_event(out: &mut Vec<u8>, e: &EventRef<'_>, authors: &[TokenHash]) {
    let (author, kind, target) = match e.kind {
        Kind::Said { author } => (
            author.and_then(|a| authors.iter().position(|&x| x == a)),
            0,
            None,
        ),
        Kind::Edit { target } => (None, 1, Some(target)),
        Kind::Delete { target } => (None, 2, Some(target)),
    };
    let tail: [Option<u64>; 5] = [
        author.map(|a| a as u64),
        (kind != 0).then_some(kind),
        target,
        e.edited,
        e.deleted.then_some(1),
    ];
    let shown = tail.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
    out.push(b'[');
    write_number(out, e.seq);
    out.push(b',');
    write_number(out, e.at);
    out.push(b',');
    write_string(out, e.user);
    out.push(b',');
    write_string(out, e.text);
    for (i, field) in tail[..shown].iter().enumerate() {
        out.push(b',');
        match field {
            Some(n) => write_number(out, *n),
            // kind and deleted are 0 by default, the others null.
            None if i == 1 || i == 4 => out.push(b'0'),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b']');
}

/// `n` in decimal (a hand-written loop: `write!` costs several times more,
/// and a chunk has a few numbers per event).
fn write_number(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes as JSON needs; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Writes stored events (a chunk read back, or rows of an older file) to
/// `out` as one chunk.
pub fn encode_stored(events: &[StoredMessage], out: &mut Encoded) {
    encode(events.iter().map(EventRef::from), out);
}

/// The events of the chunk `first..=last`, oldest first; an error of its
/// room's damage if `authors` and `json` are not such a chunk (see the
/// module doc).
pub fn decode(
    first: u64,
    last: u64,
    authors: &[u8],
    json: &str,
) -> rusqlite::Result<Vec<StoredMessage>> {
    let events = decode_json(authors, json)?;
    let rising = events.windows(2).all(|w| w[0].seq < w[1].seq);
    let ends = (events.first().map(|e| e.seq), events.last().map(|e| e.seq));
    if !rising || ends != (Some(first), Some(last)) {
        return Err(damaged(&format!(
            "its events are not {first} to {last}, rising"
        )));
    }
    Ok(events)
}

fn decode_json(authors: &[u8], json: &str) -> rusqlite::Result<Vec<StoredMessage>> {
    if !authors.len().is_multiple_of(32) {
        return Err(damaged(&"its authors are not 32 bytes each"));
    }
    let events: Vec<EventIn> = serde_json::from_str(json).map_err(|e| damaged(&e))?;
    events.into_iter().map(|e| stored(e, authors)).collect()
}

fn stored(e: EventIn, authors: &[u8]) -> rusqlite::Result<StoredMessage> {
    let EventIn(seq, at, user, text, author, kind, target, edited, deleted) = e;
    let kind = match (kind, target) {
        (0, _) => Kind::Said {
            author: match author {
                None => None,
                Some(i) => match author_at(authors, i) {
                    Some(hash) => Some(hash),
                    None => return Err(damaged(&format!("event {seq}: author {i}"))),
                },
            },
        },
        (1, Some(target)) => Kind::Edit { target },
        (2, Some(target)) => Kind::Delete { target },
        _ => return Err(damaged(&format!("event {seq}: kind {kind}"))),
    };
    Ok(StoredMessage {
        seq,
        at,
        user,
        text,
        kind,
        edited,
        deleted: deleted != 0,
    })
}

/// The `i`th author's hash in a chunk's `authors`.
fn author_at(authors: &[u8], i: usize) -> Option<TokenHash> {
    let start = i.checked_mul(32)?;
    let bytes = authors.get(start..start.checked_add(32)?)?;
    <[u8; 32]>::try_from(bytes).ok().map(TokenHash)
}

/// What SQLite says of a damaged page, for a chunk that does not decode:
/// the callers treat both alike (`store::is_damage`).
fn damaged(what: &dyn std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
        Some(format!("a chunk of events does not decode: {what}")),
    )
}

/// The last `seq` this process committed in each room it wrote lately.
///
/// A new chunk must start after its room's last `seq`; looking that up in
/// the file is a query per room per commit (about 1 % of the poll loop in
/// a busy room). What this process committed itself it knows: the store
/// notes each room's last `seq` after a commit that wrote all of its
/// batch ([`Written::committed`]), and forgets everything whenever the
/// file may have changed otherwise ([`Written::forget`]: a failed or
/// written-around commit, a retention step, which may remove a room so
/// that it starts again at 1). A room not noted is looked up in the file.
/// At most [`Written::ROOMS`] rooms are kept, then it starts afresh.
#[derive(Debug, Default)]
pub struct Written {
    last: HashMap<u32, u64>,
}

impl Written {
    /// Rooms noted at most.
    pub const ROOMS: usize = 4096;

    /// `room`'s last committed `seq`, if noted.
    pub fn last(&self, room: u32) -> Option<u64> {
        self.last.get(&room).copied()
    }

    /// Every room of `batch` was written, up to its last `seq`.
    pub fn committed(&mut self, batch: &super::Batch) {
        for (room, last) in batch.last_seqs() {
            if self.last.len() >= Self::ROOMS && !self.last.contains_key(&room) {
                self.last.clear();
            }
            self.last.insert(room, last);
        }
    }

    /// The file may have changed otherwise: look every room up again.
    pub fn forget(&mut self) {
        self.last.clear();
    }
}

/// Writes one room's events of the turn as its chunk, then what its edits
/// and deletes change in the messages they target (in the order
/// recorded; they target messages of the same room only).
pub fn write(
    tx: &Transaction,
    room: u32,
    events: &[Message<'_>],
    written: Option<&Written>,
    buf: &mut Encoded,
) -> rusqlite::Result<()> {
    write_chunk(tx, room, events, written, buf)?;
    for m in events {
        apply(tx, m)?;
    }
    Ok(())
}

/// Writes one room's events of the turn (`events`: that room's, in `seq`
/// order, at least one) as one chunk; `buf` is the caller's, reused from
/// turn to turn. Fails, writing nothing, unless the `seq`s rise and start
/// after the room's last (as `written` notes it, else as the file says).
fn write_chunk(
    tx: &Transaction,
    room: u32,
    events: &[Message<'_>],
    written: Option<&Written>,
    buf: &mut Encoded,
) -> rusqlite::Result<()> {
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Ok(());
    };
    if let Some(twice) = events.windows(2).find(|w| w[1].seq <= w[0].seq) {
        return Err(seq_given_twice(room, twice[1].seq));
    }
    let last_seq = match written.and_then(|w| w.last(room)) {
        Some(noted) => Some(noted),
        None => last_seq(tx, room)?,
    };
    if last_seq.is_some_and(|last| last >= first.seq) {
        return Err(seq_given_twice(room, first.seq));
    }
    encode(events.iter().map(EventRef::from), buf);
    let at = events.iter().map(|e| e.at).max().unwrap_or(last.at);
    tx.prepare_cached(
        "INSERT INTO chunks (room, first, last, at, authors, events)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        room,
        to_i64(first.seq),
        to_i64(last.seq),
        to_i64(at),
        buf.authors,
        buf.json()?
    ])
    .map(|_| ())
}

/// A `seq` that is not after the room's last one: the commit fails (as a
/// constraint of SQLite's own would), and nothing of the turn is written.
fn seq_given_twice(room: u32, seq: u64) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
        Some(format!("room {room}: seq {seq} is given twice")),
    )
}

/// What an edit or a delete, once its own event is written, changes in the
/// message it targets (nothing for a chat message, or if the file no longer
/// keeps the target).
fn apply(tx: &Transaction, m: &Message<'_>) -> rusqlite::Result<()> {
    match m.kind {
        Kind::Said { .. } => Ok(()),
        Kind::Edit { target } => edit(tx, m, target),
        Kind::Delete { target } => delete(tx, m.room, target),
    }
}

fn edit(tx: &Transaction, m: &Message<'_>, target: u64) -> rusqlite::Result<()> {
    change_chunk_of(tx, m.room, target, |events| {
        let Some(message) = events.iter_mut().find(|e| is_live_message(e, target)) else {
            return false;
        };
        message.text = m.text.to_owned();
        message.edited = Some(m.at);
        true
    })
}

fn is_live_message(e: &StoredMessage, seq: u64) -> bool {
    e.seq == seq && matches!(e.kind, Kind::Said { .. }) && !e.deleted
}

/// Empties the target's text and marks it deleted, and empties the text of
/// its edits (after it: in its chunk, or in a later one).
fn delete(tx: &Transaction, room: u32, target: u64) -> rusqlite::Result<()> {
    change_chunk_of(tx, room, target, |events| blank(events, target, true))?;
    // Later chunks that may hold an edit of it: an edit's array ends
    // `,1,TARGET]` (kind, then target). Text can hold those characters
    // too; such a chunk is decoded and left as it was.
    let marker = format!(",1,{target}]");
    let later: Vec<ChunkRow> = tx
        .prepare_cached(&format!(
            "SELECT {CHUNK_COLUMNS} FROM chunks
             WHERE room = ?1 AND first > ?2 AND instr(events, ?3) > 0"
        ))?
        .query_map(params![room, to_i64(target), marker], ChunkRow::read)?
        .collect::<rusqlite::Result<_>>()?;
    for chunk in later {
        let mut events = chunk.decode()?;
        if blank(&mut events, target, false) {
            rewrite(tx, room, chunk.first, &events)?;
        }
    }
    Ok(())
}

/// Blanks `target` (a message, if `message`) and its edits in `events`;
/// `true` if anything changed.
fn blank(events: &mut [StoredMessage], target: u64, message: bool) -> bool {
    let mut changed = false;
    for e in events.iter_mut() {
        let hit = match e.kind {
            Kind::Said { .. } => message && e.seq == target,
            Kind::Edit { target: t } => t == target,
            Kind::Delete { .. } => false,
        };
        if hit {
            if matches!(e.kind, Kind::Said { .. }) {
                e.deleted = true;
            }
            changed |= !e.text.is_empty() || matches!(e.kind, Kind::Said { .. });
            e.text.clear();
        }
    }
    changed
}

/// Reads the chunk that holds `seq` of `room`, lets `change` change its
/// events, and writes it back if `change` says it did.
fn change_chunk_of(
    tx: &Transaction,
    room: u32,
    seq: u64,
    change: impl FnOnce(&mut Vec<StoredMessage>) -> bool,
) -> rusqlite::Result<()> {
    let Some(chunk) = chunk_holding(tx, room, seq)? else {
        return Ok(());
    };
    let mut events = chunk.decode()?;
    if change(&mut events) {
        rewrite(tx, room, chunk.first, &events)?;
    }
    Ok(())
}

/// The chunk whose range holds `seq`, if any.
fn chunk_holding(conn: &Connection, room: u32, seq: u64) -> rusqlite::Result<Option<ChunkRow>> {
    conn.prepare_cached(&format!(
        "SELECT {CHUNK_COLUMNS} FROM chunks
         WHERE room = +?1 AND first <= ?2 ORDER BY first DESC LIMIT 1"
    ))?
    .query_row(params![room, to_i64(seq)], ChunkRow::read)
    .optional()
    .map(|found| found.filter(|chunk| chunk.last >= seq))
}

/// Writes `events` (not empty) back as `room`'s chunk that started at
/// `first`, its range and time following them.
pub fn rewrite(
    conn: &Connection,
    room: u32,
    first: u64,
    events: &[StoredMessage],
) -> rusqlite::Result<()> {
    let (Some(new_first), Some(last)) = (events.first(), events.last()) else {
        return Ok(());
    };
    let mut buf = Encoded::default();
    encode_stored(events, &mut buf);
    let at = events.iter().map(|e| e.at).max().unwrap_or(last.at);
    conn.prepare_cached(
        "UPDATE chunks SET first = ?1, last = ?2, at = ?3, authors = ?4, events = ?5
         WHERE room = ?6 AND first = ?7",
    )?
    .execute(params![
        to_i64(new_first.seq),
        to_i64(last.seq),
        to_i64(at),
        buf.authors,
        buf.json()?,
        room,
        to_i64(first)
    ])
    .map(|_| ())
}

/// The room's newest chunk's `last`.
///
/// `+?1`, not `?1`, in this and the other queries with an `ORDER BY`:
/// SQLite plans `room = ?1 … ORDER BY` from the value bound to `?1`, so it
/// would prepare the statement again (parse and plan its SQL) every time
/// it runs, about 15 µs, and this one runs in every commit. `+?1` is the
/// same value as an expression, which the plan does not depend on; the
/// index is used all the same. (`sqlite3_stmt_status` counts the
/// re-preparations: see the test `hot_statements_are_prepared_once`.)
pub const LAST_SEQ: &str = "SELECT last FROM chunks WHERE room = +?1 ORDER BY first DESC LIMIT 1";

/// The room's last `seq`, if the file keeps any event of it (the newest
/// chunk is never pruned).
pub fn last_seq(conn: &Connection, room: u32) -> rusqlite::Result<Option<u64>> {
    conn.prepare_cached(LAST_SEQ)?
        .query_row([room], |row| row.get::<_, i64>(0))
        .optional()
        .map(|last| last.map(to_u64))
}

/// The newest `count` events of `room` with `after < seq < before`,
/// oldest first: chunks read newest first until there are enough.
pub fn newest(
    conn: &Connection,
    room: u32,
    after: u64,
    before: u64,
    count: usize,
) -> rusqlite::Result<Vec<StoredMessage>> {
    let mut newest_first = Vec::new();
    if count == 0 {
        return Ok(newest_first);
    }
    // Only chunks with a kept event (`last > after`): one left whole by
    // pruning, older than what is kept, is not even read.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CHUNK_COLUMNS} FROM chunks
         WHERE room = +?1 AND first < ?2 AND last > ?3 ORDER BY first DESC"
    ))?;
    let mut rows = stmt.query(params![room, to_i64(before), to_i64(after)])?;
    'chunks: while let Some(row) = rows.next()? {
        let events = ChunkRow::read(row)?.decode()?;
        for e in events.into_iter().rev().filter(|e| e.seq < before) {
            if e.seq <= after {
                break 'chunks;
            }
            newest_first.push(e);
            if newest_first.len() == count {
                break 'chunks;
            }
        }
    }
    newest_first.reverse();
    Ok(newest_first)
}

/// The event `seq` of `room`, if the file keeps it.
pub fn one(conn: &Connection, room: u32, seq: u64) -> rusqlite::Result<Option<StoredMessage>> {
    let Some(chunk) = chunk_holding(conn, room, seq)? else {
        return Ok(None);
    };
    Ok(chunk.decode()?.into_iter().find(|e| e.seq == seq))
}

/// Deletes `room`'s chunks whose events all have `seq <= up_to`. A chunk
/// that holds `up_to` and newer events stays whole, so a room keeps up to
/// a chunk's worth more than asked (pruning stays one range delete per
/// turn, not a rewrite).
pub fn prune(conn: &Connection, room: u32, up_to: u64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM chunks WHERE room = ?1 AND first <= ?2 AND last <= ?2")?
        .execute(params![room, to_i64(up_to)])
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(seq: u64, user: &str, text: &str, author: Option<u8>) -> StoredMessage {
        StoredMessage {
            seq,
            at: 1_700_000_000_000 + seq,
            user: user.to_owned(),
            text: text.to_owned(),
            kind: Kind::Said {
                author: author.map(|a| TokenHash([a; 32])),
            },
            edited: None,
            deleted: false,
        }
    }

    fn encoded(events: &[StoredMessage]) -> (Vec<u8>, String) {
        let mut out = Encoded::default();
        encode_stored(events, &mut out);
        (out.authors, String::from_utf8(out.events).unwrap())
    }

    #[test]
    fn every_kind_of_event_reads_back_as_written() {
        let mut edited = said(2, "bo", "new \"text\" \\ ✓", Some(9));
        edited.edited = Some(1_700_000_000_005);
        let mut deleted = said(3, "zoë", "", Some(7));
        deleted.deleted = true;
        let events = vec![
            said(1, "zoë", "hi\nthere", Some(7)),
            edited,
            deleted,
            said(4, "nobody", "from before authors", None),
            StoredMessage {
                kind: Kind::Edit { target: 2 },
                ..said(5, "bo", "new \"text\" \\ ✓", None)
            },
            StoredMessage {
                kind: Kind::Delete { target: 3 },
                ..said(6, "", "", None)
            },
        ];
        let (authors, json) = encoded(&events);
        assert_eq!(decode(1, 6, &authors, &json).unwrap(), events);
    }

    #[test]
    fn authors_are_written_once_and_defaults_are_left_out() {
        let events = [
            said(1, "a", "x", Some(7)),
            said(2, "b", "y", Some(9)),
            said(3, "a", "z", Some(7)),
            said(4, "c", "w", None),
        ];
        let (authors, json) = encoded(&events);
        assert_eq!(authors, [[7u8; 32], [9u8; 32]].concat());
        assert_eq!(
            json,
            "[[1,1700000000001,\"a\",\"x\",0],[2,1700000000002,\"b\",\"y\",1],\
             [3,1700000000003,\"a\",\"z\",0],[4,1700000000004,\"c\",\"w\"]]"
        );
        let edit = StoredMessage {
            kind: Kind::Edit { target: 12 },
            ..said(13, "a", "x", None)
        };
        assert!(
            encoded(&[edit]).1.ends_with(",null,1,12]]"),
            "the marker a delete looks for"
        );
    }

    #[test]
    fn a_chunk_that_does_not_decode_reads_as_damage() {
        let one = [7u8; 32];
        let none: &[u8] = &[];
        for (authors, bad) in [
            (none, ""),
            (none, "{}"),
            (none, "[[1,2,\"u\"]]"),
            (none, "[[1,2,\"u\",\"t\",0]]"),
            (&one[..31], "[[1,2,\"u\",\"t\",0]]"),
            (&one[..], "[[1,2,\"u\",\"t\",1]]"),
            (none, "[[1,2,\"u\",\"t\",null,7,1]]"),
            (none, "[[1,2,\"u\",\"t\",null,1]]"),
            (none, "[[-1,2,\"u\",\"t\"]]"),
            // Not the chunk 1..=1: none, another seq, two, not rising.
            (none, "[]"),
            (none, "[[2,2,\"u\",\"t\"]]"),
            (none, "[[1,2,\"u\",\"t\"],[1,2,\"u\",\"t\"]]"),
        ] {
            let error = decode(1, 1, authors, bad).expect_err(bad);
            assert!(crate::store::is_damage(&error), "{bad}: {error}");
        }
    }
}

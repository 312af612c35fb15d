//! Room events in the file (schema version 4, see `schema.rs`): writing a
//! chat message, an edit or a delete as its row and making the message it
//! changes show its current state; reading rows back as
//! [`StoredMessage`]s; looking up the message an edit or delete targets.

use rusqlite::{Connection, Row, Transaction, params};

use super::{Kind, Message, StoredMessage, TokenHash, to_i64, to_u64};

/// The columns [`from_row`] reads, in its order.
pub const COLUMNS: &str = "seq, at, user, text, kind, target, author, edited, deleted";

/// Parameters [`write()`]'s `INSERT` binds per row (and so does the
/// store's multi-row one).
pub const INSERTED: usize = 8;

/// The `kind`, `target` and `author` columns of an event's row.
pub fn columns(m: &Message<'_>) -> (i64, Option<i64>, Option<[u8; 32]>) {
    match m.kind {
        Kind::Said { author } => (0, None, author.map(|a| a.0)),
        Kind::Edit { target } => (1, Some(to_i64(target)), None),
        Kind::Delete { target } => (2, Some(to_i64(target)), None),
    }
}

/// Writes one recorded event: its row, then, for an edit or a delete, the
/// change to the message it targets (a delete also empties the text of
/// that message's edit rows, so its text stays in no row). A plain `INSERT`: a `(room,
/// seq)` already there fails the commit rather than replace an event
/// someone may have seen.
pub fn write(tx: &Transaction, m: &Message<'_>) -> rusqlite::Result<()> {
    let (kind, target, author) = columns(m);
    tx.prepare_cached(
        "INSERT INTO messages (room, seq, at, user, text, kind, target, author)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        m.room,
        to_i64(m.seq),
        to_i64(m.at),
        m.user,
        m.text,
        kind,
        target,
        author
    ])?;
    apply(tx, m)
}

/// What an edit or a delete, once its row is written, changes in the
/// message it targets (nothing for a chat message).
pub fn apply(tx: &Transaction, m: &Message<'_>) -> rusqlite::Result<()> {
    match m.kind {
        Kind::Said { .. } => Ok(()),
        Kind::Edit { target } => edit(tx, m, target),
        Kind::Delete { target } => delete(tx, m.room, target),
    }
}

fn edit(tx: &Transaction, m: &Message<'_>, target: u64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE messages SET text = ?1, edited = ?2
         WHERE room = ?3 AND seq = ?4 AND kind = 0 AND deleted = 0",
    )?
    .execute(params![m.text, to_i64(m.at), m.room, to_i64(target)])
    .map(|_| ())
}

fn delete(tx: &Transaction, room: u32, target: u64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE messages SET text = '', deleted = 1 WHERE room = ?1 AND seq = ?2 AND kind = 0",
    )?
    .execute(params![room, to_i64(target)])?;
    // Its edits (after it: one range of the primary key) keep their row
    // and `seq`, not their text.
    tx.prepare_cached(
        "UPDATE messages SET text = '' WHERE room = ?1 AND seq > ?2 AND kind = 1 AND target = ?2",
    )?
    .execute(params![room, to_i64(target)])
    .map(|_| ())
}

/// A row of [`COLUMNS`] as a [`StoredMessage`].
pub fn from_row(row: &Row<'_>) -> rusqlite::Result<StoredMessage> {
    let target = to_u64(row.get::<_, Option<i64>>(5)?.unwrap_or(0));
    let kind = match row.get::<_, i64>(4)? {
        1 => Kind::Edit { target },
        2 => Kind::Delete { target },
        _ => Kind::Said {
            author: row
                .get::<_, Option<Vec<u8>>>(6)?
                .and_then(|a| <[u8; 32]>::try_from(a).ok())
                .map(TokenHash),
        },
    };
    Ok(StoredMessage {
        seq: to_u64(row.get(0)?),
        at: to_u64(row.get(1)?),
        user: row.get(2)?,
        text: row.get(3)?,
        kind,
        edited: row.get::<_, Option<i64>>(7)?.map(to_u64),
        deleted: row.get::<_, i64>(8)? != 0,
    })
}

/// The event `seq` of `room`, if the file keeps it.
pub fn one(conn: &Connection, room: u32, seq: u64) -> rusqlite::Result<Option<StoredMessage>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM messages WHERE room = ?1 AND seq = ?2"
    ))?;
    let mut rows = stmt.query_map(params![room, to_i64(seq)], from_row)?;
    rows.next().transpose()
}

//! The database's layout: the tables, the mark that says "this file is
//! wsrooms'", and the list of steps that bring a file of any older version up
//! to [`SCHEMA_VERSION`].
//!
//! A file says what it is in two numbers of SQLite's 100-byte header:
//! `application_id` (offset 68) is [`APPLICATION_ID`] in every file this
//! program made, and `user_version` (offset 60) is its schema version. Both
//! are set only by [`migrate`], which runs with a rollback journal (not the
//! write-ahead log), so the numbers are in the main file itself the moment
//! its transaction commits: reading those 100 bytes is enough to recognise a
//! file, with no SQLite and no side effect (see `file.rs`).

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Transaction, params};

use super::{Kind, StoredMessage, TokenHash, events};

/// "wsRm": the `application_id` of every wsrooms database.
pub const APPLICATION_ID: u32 = u32::from_be_bytes(*b"wsRm");

/// One step from version `n` to `n + 1`, run inside the migration's
/// transaction: SQL, or Rust where SQL alone cannot do it.
#[derive(Clone, Copy)]
pub enum Step {
    /// SQL statements.
    Sql(&'static str),
    /// A function given the transaction.
    Rust(fn(&Transaction) -> rusqlite::Result<()>),
}

/// The steps, in order: `STEPS[n]` brings version `n` to `n + 1`. Version 0
/// is an empty file, so the first step creates the tables of version 1.
/// A later version appends a step here (and never edits an old one: files
/// in the field went through it).
pub const STEPS: &[Step] = &[
    Step::Sql(VERSION_1),
    Step::Sql(VERSION_2),
    Step::Sql(VERSION_3),
    Step::Sql(VERSION_4),
    Step::Sql(VERSION_5),
    Step::Sql(VERSION_6),
    Step::Rust(version_7),
];

/// The schema version this binary writes and understands.
pub const SCHEMA_VERSION: u32 = STEPS.len() as u32;

/// Version 1.
///
/// - `sessions`: one row per login still reserved. The SHA-256 of the token,
///   never the token: a copy of the file gives no cookie that works. `user`
///   is the id as typed; `login_at` (Unix ms) is for operators.
/// - `rooms`: every room that ever had a message, with the `seq` of its last
///   one, so numbering continues after a restart and after the room emptied.
/// - `messages`: the last `--keep-messages` of each room. The primary key
///   (room, seq) in a `WITHOUT ROWID` table keeps a room's messages side by
///   side in seq order: loading a room's tail, a scrollback page and pruning
///   are each one range of one B-tree.
const VERSION_1: &str = "
    CREATE TABLE sessions (
        token_hash BLOB PRIMARY KEY NOT NULL,
        room INTEGER NOT NULL,
        user TEXT NOT NULL,
        login_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE rooms (
        number INTEGER PRIMARY KEY NOT NULL,
        last_seq INTEGER NOT NULL
    );
    CREATE TABLE messages (
        room INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        at INTEGER NOT NULL,
        user TEXT NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (room, seq)
    ) WITHOUT ROWID;
";

/// Version 2: `rooms` keeps only the room numbers. A room's last `seq` is
/// the largest `seq` of its messages (pruning always keeps the newest one),
/// found with one look-up of the primary key, so it is no longer written
/// with every message: a commit changes no page of `rooms` unless a room
/// gets its first message.
const VERSION_2: &str = "
    ALTER TABLE rooms DROP COLUMN last_seq;
";

/// Version 3: `meta`, one row per setting of the file as a whole; the
/// first is the file's **epoch**, a random 64-bit number drawn when the
/// file (or an older file brought up to this version) gets the table, and
/// drawn again by `wsrooms restore`. Every `seq` a page has seen belongs
/// to one epoch: a file put back from an older copy numbers messages again
/// from where the copy was, so the server tells pages the epoch in
/// `welcome`, and a page that knew another one starts the room afresh.
/// (SQLite's `random()` comes from the system's random source.)
const VERSION_3: &str = "
    CREATE TABLE meta (
        key TEXT PRIMARY KEY NOT NULL,
        value NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('epoch', random());
";

/// Version 4: edits and deletes. Each is a room event with its own `seq`,
/// so it is a row of `messages` like a chat message, told apart by `kind`
/// (0 a message, 1 an edit, 2 a delete) and naming the message it changes
/// in `target`. An edit's `user` is its author and `text` the new text; a
/// delete's `user` is who deleted it (empty: the operator) and its `text`
/// is empty. The message row itself holds its current state: `text` is the
/// latest text, `edited` when it was last edited (Unix ms), and `deleted`
/// is 1 once deleted (then `text` is empty, and so is the `text` of its
/// edit rows: a deleted text stays in no row). `author` is the SHA-256
/// of the sending session's token, as `sessions` keeps it (never the
/// token): the session that may edit and delete the message, after a
/// restart too; messages written before version 4 have none, so nobody
/// may edit them.
const VERSION_4: &str = "
    ALTER TABLE messages ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE messages ADD COLUMN target INTEGER;
    ALTER TABLE messages ADD COLUMN author BLOB;
    ALTER TABLE messages ADD COLUMN edited INTEGER;
    ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
";

/// Version 5: `sessions.present`, 1 while the others count the session as
/// in its room (they saw its `join` and not yet its `leave`). Written only
/// when that changes, not per message nor per reconnect; a restart lists
/// those sessions again, so that it makes no `join` per person.
const VERSION_5: &str = "
    ALTER TABLE sessions ADD COLUMN present INTEGER NOT NULL DEFAULT 0;
";

/// Version 6: `bars`, the operator's bars (`src/admin/bars.rs`), so that
/// a restart does not lift them. One row per bar set, in order (a bar set
/// again is a new row; loading applies them in order, so the last one
/// wins, as in memory). `room` is null for an address bar (every login
/// and socket from `address`); otherwise `user` is the removed id and
/// `address` its socket's, if it had one. `until` is when the bar ends
/// (Unix ms); rows that have ended are deleted at start.
const VERSION_6: &str = "
    CREATE TABLE bars (
        room INTEGER,
        user TEXT,
        address TEXT,
        until INTEGER NOT NULL
    );
";

/// Version 7: a room's events of one loop turn are one row of `chunks`
/// (`events.rs` says why, and what the JSON in `events` holds), instead
/// of a row of `messages` each. `first` and `last` are the chunk's first
/// and last `seq`, `at` its newest event's time (for `--keep-days`). The
/// primary key (room, first) is an index beside the table: a room's
/// newest chunk, a scrollback page and pruning are each one range of it.
/// (A `WITHOUT ROWID` table, one b-tree, measured slower: a chunk of a
/// busy turn is several KiB, and appending such rows to a rowid table is
/// SQLite's cheapest insert.)
///
/// `authors` holds the chunk's distinct authors' token hashes, 32 bytes
/// each, which its messages name by their place there (binary, not in the
/// JSON: a quiet room's chunk holds one message, and its author in hex
/// would make it half again as big).
///
/// The step moves the rows of `messages` into chunks of up to
/// [`CHUNK_EVENTS_AT_UPGRADE`] events, through the same encoder as the
/// server's (so in Rust: SQL could not write the authors' list), then puts
/// a view named `messages` in the table's place: one row per event, with
/// the old columns (`author` as hex text), so that `sqlite3 FILE "SELECT …
/// FROM messages"` still reads the history.
const VERSION_7: &str = "
    CREATE TABLE chunks (
        room INTEGER NOT NULL,
        first INTEGER NOT NULL,
        last INTEGER NOT NULL,
        at INTEGER NOT NULL,
        authors BLOB NOT NULL DEFAULT x'',
        events TEXT NOT NULL,
        PRIMARY KEY (room, first)
    );
";

/// The view of version 7. `json_extract`, not the `->>` operator, so that
/// an older `sqlite3` (before 3.38) can still open the file.
const MESSAGES_VIEW: &str = "
    CREATE VIEW messages (room, seq, at, user, text, kind, target, author, edited, deleted) AS
        SELECT c.room,
               json_extract(e.value, '$[0]'), json_extract(e.value, '$[1]'),
               json_extract(e.value, '$[2]'), json_extract(e.value, '$[3]'),
               coalesce(json_extract(e.value, '$[5]'), 0), json_extract(e.value, '$[6]'),
               lower(hex(substr(c.authors, 32 * json_extract(e.value, '$[4]') + 1, 32))),
               json_extract(e.value, '$[7]'), coalesce(json_extract(e.value, '$[8]'), 0)
        FROM chunks AS c, json_each(c.events) AS e;
";

/// Events per chunk when an older file's rows are moved into chunks.
pub const CHUNK_EVENTS_AT_UPGRADE: usize = 64;

fn version_7(tx: &Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(VERSION_7)?;
    let mut read = tx.prepare(
        "SELECT room, seq, at, user, text, kind, target, author, edited, deleted
         FROM messages ORDER BY room, seq",
    )?;
    let mut write = tx.prepare(
        "INSERT INTO chunks (room, first, last, at, authors, events)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut rows = read.query([])?;
    let mut chunk: Vec<StoredMessage> = Vec::new();
    let mut room = 0u32;
    let mut placed: Option<(u32, u64)> = None;
    let mut buf = events::Encoded::default();
    let mut flush = |room: u32, chunk: &mut Vec<StoredMessage>| -> rusqlite::Result<()> {
        let (Some(first), Some(last)) = (chunk.first(), chunk.last()) else {
            return Ok(());
        };
        events::encode_stored(chunk, &mut buf);
        let json = String::from_utf8_lossy(&buf.events);
        let at = chunk.iter().map(|e| e.at).max().unwrap_or(0);
        write.execute(params![
            room,
            first.seq as i64,
            last.seq as i64,
            at as i64,
            buf.authors,
            json
        ])?;
        chunk.clear();
        Ok(())
    };
    while let Some(row) = rows.next()? {
        // A row whose room or seq is not a number (a file edited by hand)
        // cannot be placed: it is left out.
        let Some((this_room, event)) = version_6_row(row) else {
            continue;
        };
        // Seqs must rise within a room (a real seq read as an integer may
        // meet the one before it).
        if placed.is_some_and(|(r, seq)| r == this_room && seq >= event.seq) {
            continue;
        }
        placed = Some((this_room, event.seq));
        if this_room != room || chunk.len() == CHUNK_EVENTS_AT_UPGRADE {
            flush(room, &mut chunk)?;
            room = this_room;
        }
        chunk.push(event);
    }
    flush(room, &mut chunk)?;
    drop(rows);
    drop(read);
    tx.execute_batch("DROP TABLE messages;")?;
    tx.execute_batch(MESSAGES_VIEW)
}

/// A row of version 6's `messages`: its room and event. Read as loosely
/// as SQLite stores (a column holds whatever was put in it, by hand too):
/// a value of another type than the server writes becomes the nearest
/// event rather than stop the upgrade, and so the start.
fn version_6_row(row: &rusqlite::Row<'_>) -> Option<(u32, StoredMessage)> {
    let room = u32::try_from(int(row, 0)?).ok()?;
    let seq = u64::try_from(int(row, 1)?).ok()?;
    let number = |i| int(row, i).map_or(0, |n| n.max(0) as u64);
    let target = number(6);
    let kind = match int(row, 5) {
        Some(1) => Kind::Edit { target },
        Some(2) => Kind::Delete { target },
        _ => Kind::Said {
            author: match row.get_ref(7) {
                Ok(ValueRef::Blob(bytes)) => <[u8; 32]>::try_from(bytes).ok().map(TokenHash),
                _ => None,
            },
        },
    };
    let event = StoredMessage {
        seq,
        at: number(2),
        user: text(row, 3),
        text: text(row, 4),
        kind,
        edited: int(row, 8).map(|n| n.max(0) as u64),
        deleted: int(row, 9).is_some_and(|n| n != 0),
    };
    Some((room, event))
}

/// Column `i` as an integer, if it is one (or a real, or text that reads
/// as one).
fn int(row: &rusqlite::Row<'_>, i: usize) -> Option<i64> {
    match row.get_ref(i).ok()? {
        ValueRef::Integer(n) => Some(n),
        ValueRef::Real(x) => Some(x as i64),
        ValueRef::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
        ValueRef::Null | ValueRef::Blob(_) => None,
    }
}

/// Column `i` as text (a number as its digits, bytes as UTF-8 at best,
/// null as empty).
fn text(row: &rusqlite::Row<'_>, i: usize) -> String {
    match row.get_ref(i) {
        Ok(ValueRef::Text(t) | ValueRef::Blob(t)) => String::from_utf8_lossy(t).into_owned(),
        Ok(ValueRef::Integer(n)) => n.to_string(),
        Ok(ValueRef::Real(x)) => x.to_string(),
        Ok(ValueRef::Null) | Err(_) => String::new(),
    }
}

/// The file's epoch (version 3 and later; see `VERSION_3`).
pub fn epoch(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |row| {
        row.get::<_, i64>(0)
    })
    .map(|n| n as u64)
}

/// The file's epoch, drawing one if its row is missing (a file rebuilt by
/// hand, or by `sqlite3 .recover` from a damaged one).
pub fn ensure_epoch(conn: &Connection) -> rusqlite::Result<u64> {
    match epoch(conn) {
        Err(rusqlite::Error::QueryReturnedNoRows) => {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('epoch', random())",
                [],
            )?;
            epoch(conn)
        }
        other => other,
    }
}

/// Gives the file a new epoch (`wsrooms restore`).
pub fn set_epoch(conn: &Connection, epoch: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('epoch', ?1)",
        [epoch as i64],
    )
    .map(|_| ())
}

/// Runs `steps[from..]` in one transaction and sets `user_version` (and, on a
/// new file, `application_id`) in the same transaction: a crash leaves the
/// file at `from` or at the new version, never between.
///
/// The caller has switched the file to a rollback journal (see the module
/// doc); `steps` is a parameter so the tests can try a step of their own.
pub fn migrate(conn: &mut Connection, from: u32, steps: &[Step]) -> rusqlite::Result<()> {
    let to = steps.len() as u32;
    if from >= to {
        return Ok(());
    }
    let tx = conn.transaction()?;
    if from == 0 {
        tx.pragma_update(None, "application_id", APPLICATION_ID as i32)?;
    }
    for step in &steps[from as usize..] {
        match step {
            Step::Sql(sql) => tx.execute_batch(sql)?,
            Step::Rust(run) => run(&tx)?,
        }
    }
    set_version(&tx, to)?;
    tx.commit()
}

fn set_version(tx: &Transaction, version: u32) -> rusqlite::Result<()> {
    tx.pragma_update(None, "user_version", version as i32)
}

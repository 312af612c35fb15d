//! Retention by age (`--keep-days`), removal of expired empty rooms, and
//! giving free pages back to the file system, in small steps.
//!
//! `--keep-messages` prunes a room when it gets a message (in the commit).
//! What no message touches needs a sweep: [`step`] looks at up to
//! [`ROOMS_PER_STEP`] rooms (in room order, from where the last step
//! stopped) and, for each, at its oldest [`CHUNKS_PER_ROOM`] chunks of
//! events:
//!
//! - messages older than `--keep-days` are deleted, **except a room's
//!   newest**: it carries the room's last `seq`, which must survive while
//!   anyone may have seen it (a room in memory, with sessions);
//! - a room that is **not in memory** (no session: nobody has a page open
//!   on it that could still be reconnected) and whose newest message is
//!   older than `--keep-days` is removed from the file with all its
//!   messages. If someone logs into it later, it starts again at `seq` 1,
//!   as a room never used.
//!
//! A deleted row leaves a free page inside the file; SQLite reuses free
//! pages but never gives them back by itself. Files made by this version
//! have `auto_vacuum=INCREMENTAL` (set before the first table is created),
//! and each step ends with `PRAGMA incremental_vacuum(`[`VACUUM_PAGES`]`)`:
//! at most that many free pages are moved to the end of the file and cut
//! off, so the file shrinks after retention (the main file is cut when the
//! log is next copied into it) without a long pause. A file made by an
//! older version has `auto_vacuum=NONE`, which only a full `VACUUM` can
//! change: [`switch_on`] does it once at start for a file up to
//! [`VACUUM_AT_START_BYTES`], and leaves a bigger one as it is (free pages
//! are then reused, not given back) with a log line saying how to switch it
//! while the server is stopped.
//!
//! The loop runs one step per timer (see `core/turn.rs`), right after
//! a turn's output is written; a step is one short transaction.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::events;

/// Rooms looked at per step.
pub const ROOMS_PER_STEP: usize = 128;

/// A room's oldest chunks (a turn's events each, see `events.rs`) looked
/// at per step: more expired ones than this are deleted in the next passes.
pub const CHUNKS_PER_ROOM: usize = 256;

/// Free pages given back per step (1 MiB of 4 KiB pages).
pub const VACUUM_PAGES: u32 = 256;

/// The largest file of an older version switched to incremental vacuum
/// at start (a full `VACUUM`: about a second per 100 MB on a small VPS).
pub const VACUUM_AT_START_BYTES: u64 = 64 * 1024 * 1024;

/// One day in milliseconds (`--keep-days`).
pub const DAY_MS: u64 = 86_400_000;

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// Messages deleted for their age.
    pub messages: usize,
    /// Rooms removed from the file.
    pub rooms: usize,
    /// Free pages given back to the file system (the main file is cut at
    /// the next checkpoint).
    pub given_back: u32,
    /// Free pages left in the file after the step's vacuum.
    pub free_pages: u32,
    /// The pass over the rooms is not finished, or free pages can still be
    /// given back: step again soon.
    pub more: bool,
}

impl Step {
    /// The step changed the file: worth a checkpoint, so that the main
    /// file is cut (and the log starts again) on a quiet server too.
    pub fn changed(&self) -> bool {
        self.messages > 0 || self.rooms > 0 || self.given_back > 0
    }
}

/// Where the sweep is: the last room number it looked at (0 at the start
/// of a pass).
#[derive(Debug, Default)]
pub struct Sweep {
    cursor: u32,
}

/// `--keep-days` as a cut-off: messages with `at` below it are expired.
pub fn cutoff(now_ms: u64, keep_days: u64) -> Option<u64> {
    (keep_days > 0).then(|| now_ms.saturating_sub(keep_days.saturating_mul(DAY_MS)))
}

/// One step of the sweep (see the module doc). `live` says whether a room
/// is in memory. `vacuum` is whether the file gives pages back.
pub fn step(
    conn: &mut Connection,
    sweep: &mut Sweep,
    cutoff: Option<u64>,
    live: impl Fn(u32) -> bool,
    vacuum: bool,
) -> rusqlite::Result<Step> {
    let mut done = Step::default();
    if let Some(cutoff) = cutoff {
        let tx = conn.transaction()?;
        let numbers = next_rooms(&tx, sweep.cursor)?;
        for &number in &numbers {
            match expire_room(&tx, number, cutoff, live(number), &mut done) {
                // A room with a damaged chunk keeps it; the others go on.
                Err(e) if super::is_damage(&e) => {
                    log::debug!("retention: room {number} skipped: {e}");
                }
                other => other?,
            }
        }
        tx.commit()?;
        sweep.cursor = match numbers.last() {
            Some(&last) if numbers.len() == ROOMS_PER_STEP => last,
            _ => 0,
        };
        done.more = sweep.cursor != 0;
    }
    if vacuum {
        let before = free_pages(conn)?;
        if before > 0 {
            give_back(conn)?;
        }
        done.free_pages = free_pages(conn)?;
        done.given_back = before.saturating_sub(done.free_pages);
        // Only while it works: pages a step cannot give back wait for the
        // next pass.
        done.more |= done.free_pages > 0 && done.free_pages < before;
    }
    Ok(done)
}

fn next_rooms(conn: &Connection, after: u32) -> rusqlite::Result<Vec<u32>> {
    let mut stmt =
        conn.prepare_cached("SELECT number FROM rooms WHERE number > ?1 ORDER BY number LIMIT ?2")?;
    let rows = stmt.query_map(params![after, ROOMS_PER_STEP as i64], |row| row.get(0))?;
    rows.collect()
}

/// Ages out one room's old events, or removes the room.
fn expire_room(
    conn: &Connection,
    number: u32,
    cutoff: u64,
    live: bool,
    done: &mut Step,
) -> rusqlite::Result<()> {
    let newest: Option<(i64, i64, i64)> = conn
        .prepare_cached(
            "SELECT first, last, at FROM chunks WHERE room = +?1 ORDER BY first DESC LIMIT 1",
        )?
        .query_row([number], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    let expired = |at: u64| at < cutoff;
    match newest {
        None if !live => remove_room(conn, number, done),
        Some((_, _, at)) if !live && expired(at.max(0) as u64) => remove_room(conn, number, done),
        Some((newest_first, last, _)) => {
            let oldest = conn
                .prepare_cached(
                    "SELECT first, at FROM chunks WHERE room = +?1 ORDER BY first LIMIT ?2",
                )?
                .query_map(params![number, CHUNKS_PER_ROOM as i64], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for (first, at) in oldest {
                if first < newest_first && expired(at.max(0) as u64) {
                    done.messages += delete_chunk(conn, number, first)?;
                } else {
                    done.messages += trim_chunk(
                        conn,
                        number,
                        first.max(0) as u64,
                        &expired,
                        last.max(0) as u64,
                    )?;
                    break;
                }
            }
            Ok(())
        }
        None => Ok(()),
    }
}

/// How many events a deleted chunk held, for [`Step::messages`] (0 if
/// it is not JSON: a chunk edited by hand is deleted all the same).
const EVENTS_IN_CHUNK: &str =
    "coalesce(CASE WHEN json_valid(events) THEN json_array_length(events) END, 0)";

/// Deletes one chunk; its events.
fn delete_chunk(conn: &Connection, room: u32, first: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached(&format!(
        "DELETE FROM chunks WHERE room = ?1 AND first = ?2 RETURNING {EVENTS_IN_CHUNK}"
    ))?
    .query_map(params![room, first], |row| row.get::<_, i64>(0))?
    .map(|n| n.map(|n| n.max(0) as usize))
    .sum()
}

/// Drops the expired events at the start of a chunk whose newest is not
/// expired (or that holds the room's `last` event, which always stays);
/// the events dropped.
fn trim_chunk(
    conn: &Connection,
    room: u32,
    first: u64,
    expired: &dyn Fn(u64) -> bool,
    last: u64,
) -> rusqlite::Result<usize> {
    let (chunk_last, authors, json): (i64, Vec<u8>, String) = conn
        .prepare_cached("SELECT last, authors, events FROM chunks WHERE room = ?1 AND first = ?2")?
        .query_row(params![room, first as i64], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    let mut events = events::decode(first, chunk_last.max(0) as u64, &authors, &json)?;
    let gone = events
        .iter()
        .take_while(|e| expired(e.at) && e.seq != last)
        .count();
    if gone > 0 {
        events.drain(..gone);
        events::rewrite(conn, room, first, &events)?;
    }
    Ok(gone)
}

fn remove_room(conn: &Connection, number: u32, done: &mut Step) -> rusqlite::Result<()> {
    done.messages += conn
        .prepare_cached(&format!(
            "DELETE FROM chunks WHERE room = ?1 RETURNING {EVENTS_IN_CHUNK}"
        ))?
        .query_map([number], |row| row.get::<_, i64>(0))?
        .map(|n| n.map(|n| n.max(0) as usize))
        .sum::<rusqlite::Result<usize>>()?;
    conn.prepare_cached("DELETE FROM rooms WHERE number = ?1")?
        .execute([number])?;
    done.rooms += 1;
    Ok(())
}

/// `incremental_vacuum` frees one page per step of its statement: run it
/// to its end.
fn give_back(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

/// Free pages in the file.
pub fn free_pages(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "freelist_count", |row| row.get(0))
}

/// The file gives free pages back (`auto_vacuum=INCREMENTAL`).
pub fn incremental(conn: &Connection) -> rusqlite::Result<bool> {
    conn.pragma_query_value(None, "auto_vacuum", |row| row.get::<_, i64>(0))
        .map(|mode| mode == 2)
}

/// Before the first table of a new file: free pages are given back.
pub fn set_incremental(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
}

/// An older file with `auto_vacuum=NONE`: switched by one `VACUUM` if it is
/// small enough (see the module doc); else left, and said so. Returns
/// whether the file now gives pages back.
pub fn switch_on(path: &Path, conn: &Connection) -> rusqlite::Result<bool> {
    if incremental(conn)? {
        return Ok(true);
    }
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
    if bytes > VACUUM_AT_START_BYTES {
        log::warn!(
            "data file {path:?}: free pages are reused but not given back (auto_vacuum is \
             off); to switch it on, stop wsrooms and run: sqlite3 FILE \
             'PRAGMA auto_vacuum=INCREMENTAL; VACUUM'"
        );
        return Ok(false);
    }
    set_incremental(conn)?;
    conn.execute_batch("VACUUM")?;
    incremental(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Message, Settings, Store, TokenHash};

    const NOW: u64 = 1_800_000_000_000;
    const OLD: u64 = NOW - 3 * DAY_MS;

    fn store(dir: &tempfile::TempDir, keep_days: u64) -> Store {
        let settings = Settings {
            keep_days,
            ..Settings::default()
        };
        Store::open_with(&dir.path().join("r.db"), &settings).unwrap()
    }

    /// `count` messages of `room` from seq 1, at `at`, with a long text.
    fn post(store: &mut Store, room: u32, count: u64, at: u64) {
        let text = "x".repeat(1000);
        for seq in 1..=count {
            store.record_message(Message {
                room,
                seq,
                at,
                user: "z",
                text: &text,
                kind: crate::store::Kind::SAID,
            });
        }
        store.commit().unwrap();
    }

    /// Steps until a pass is done and nothing more can be given back.
    fn sweep(store: &mut Store, live: &[u32]) -> Step {
        let mut all = Step::default();
        for _ in 0..10_000 {
            let step = store.retention_step(NOW, |n| live.contains(&n)).unwrap();
            all.messages += step.messages;
            all.rooms += step.rooms;
            all.free_pages = step.free_pages;
            if !step.more {
                return all;
            }
        }
        panic!("the sweep never finished");
    }

    #[test]
    fn expired_rooms_nobody_is_in_go_and_live_ones_keep_their_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(&dir, 1);
        post(&mut s, 1, 30, OLD); // expired, nobody in it: removed
        post(&mut s, 2, 30, OLD); // expired but in use: its newest stays
        post(&mut s, 3, 30, NOW); // recent: untouched
        for room in 4..=300 {
            post(&mut s, room, 1, OLD); // more rooms than one step looks at
        }
        let done = sweep(&mut s, &[2]);
        assert_eq!(done.rooms, 1 + 297);
        assert_eq!(done.messages, 30 + 29 + 297);
        assert_eq!(s.room(1, 50).unwrap(), None);
        let two = s.room(2, 50).unwrap().unwrap();
        assert_eq!((two.last_seq, two.history.len()), (30, 1));
        assert_eq!(s.room(3, 50).unwrap().unwrap().history.len(), 30);
        assert_eq!(s.room(300, 50).unwrap(), None);
        // A removed room starts again at seq 1.
        post(&mut s, 1, 1, NOW);
        assert_eq!(s.room(1, 50).unwrap().unwrap().last_seq, 1);
    }

    #[test]
    fn without_keep_days_nothing_ages_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(&dir, 0);
        post(&mut s, 1, 5, 0);
        s.record_login(TokenHash([7; 32]), 9, "z", 0);
        s.commit().unwrap();
        let done = sweep(&mut s, &[]);
        assert_eq!((done.messages, done.rooms), (0, 0));
        assert_eq!(s.room(1, 50).unwrap().unwrap().history.len(), 5);
    }

    #[test]
    fn the_file_gives_freed_pages_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let mut s = store(&dir, 1);
        for room in 1..=20 {
            post(&mut s, room, 400, OLD);
        }
        s.checkpoint().unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        let done = sweep(&mut s, &[]);
        assert_eq!(done.rooms, 20);
        assert_eq!(done.free_pages, 0, "every free page given back");
        s.checkpoint().unwrap();
        let after = std::fs::metadata(&path).unwrap().len();
        assert!(after * 4 < before, "{before} bytes, then {after}");
    }

    #[test]
    fn an_older_file_is_switched_to_incremental_vacuum_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        drop(Store::open(&path, 10).unwrap());
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "auto_vacuum", "NONE").unwrap();
            conn.execute_batch("VACUUM").unwrap();
            assert!(!incremental(&conn).unwrap());
        }
        let s = Store::open(&path, 10).unwrap();
        assert!(incremental(&s.conn).unwrap());
    }
}

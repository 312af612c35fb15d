//! Writing around damaged pages: which rooms' pages are known to be
//! damaged, and the commit that finds out (see "A damaged file" in the
//! module doc of `store`).
//!
//! A room's events are one range of the `chunks` table. When a commit
//! meets a damaged page, [`write_around`] tries each room of the batch on
//! its own to learn which part fails: a room whose new messages cannot be
//! written is *refused* (its messages of the turn are dropped, and of every
//! later turn: the server closes their senders with `1011`), a room whose
//! pruning meets damage is left *unpruned* (its messages are written; its
//! old, damaged pages stay). [`Damage`] remembers both, so that later
//! commits skip what is known to fail instead of paying for the failure
//! and the retries every turn. It is forgotten at restart: the operator
//! repairs the file with the server stopped.

use std::collections::HashSet;

use rusqlite::{Connection, Transaction};

use super::{
    Batch, events, is_damage, write_bars, write_logins, write_presence, write_session_ends,
};

/// Rooms whose pages are known to be damaged.
#[derive(Debug, Default)]
pub struct Damage {
    /// New messages cannot be written.
    refused: HashSet<u32>,
    /// Pruning meets damage.
    unpruned: HashSet<u32>,
}

impl Damage {
    /// `room`'s messages are written (it is not known to refuse them).
    pub fn writes(&self, room: u32) -> bool {
        self.refused.is_empty() || !self.refused.contains(&room)
    }

    /// `room` is pruned (its pruning is not known to meet damage).
    pub fn prunes(&self, room: u32) -> bool {
        self.unpruned.is_empty() || !self.unpruned.contains(&room)
    }

    /// `room`'s messages are not written from now on.
    pub fn refuse(&mut self, room: u32) {
        self.refused.insert(room);
    }

    /// The rooms of `batch` whose messages are not written.
    pub fn refused_in(&self, batch: &Batch) -> Vec<u32> {
        if self.refused.is_empty() {
            return Vec::new();
        }
        let mut rooms: Vec<u32> = batch
            .last_seqs()
            .map(|(room, _)| room)
            .filter(|room| self.refused.contains(room))
            .collect();
        rooms.sort_unstable();
        rooms
    }

    /// Some room of `batch` is known to be damaged.
    pub fn touches(&self, batch: &Batch) -> bool {
        batch
            .last_seqs()
            .any(|(room, _)| !self.writes(room) || !self.prunes(room))
    }
}

/// The batch again, after a commit met a damaged page.
///
/// First each room's messages, then its pruning, are tried in a
/// transaction of their own that is rolled back, to learn which meet
/// damage (once a statement has met a damaged page, SQLite may fail every
/// later write of the same transaction, and its commit, even when that
/// statement was undone); what is learnt goes into `damage`. Then the batch
/// is written without it. Logins and session ends are not in any room:
/// damage there fails the commit as any error does.
pub fn write_around(
    conn: &mut Connection,
    batch: &Batch,
    keep: u64,
    damage: &mut Damage,
) -> rusqlite::Result<()> {
    for (room, last_seq) in batch.last_seqs() {
        if !damage.writes(room) {
            continue;
        }
        if !undamaged(conn, |tx| write_room(tx, batch, room))? {
            damage.refused.insert(room);
            continue;
        }
        if last_seq <= keep || !damage.prunes(room) {
            continue;
        }
        let pruned = |tx: &Transaction| {
            write_room(tx, batch, room)?;
            prune(tx, room, last_seq - keep)
        };
        if !undamaged(conn, pruned)? {
            damage.unpruned.insert(room);
        }
    }
    let tx = conn.transaction()?;
    write_logins(&tx, batch)?;
    for (room, last_seq) in batch.last_seqs().filter(|&(room, _)| damage.writes(room)) {
        write_room(&tx, batch, room)?;
        if last_seq > keep && damage.prunes(room) {
            prune(&tx, room, last_seq - keep)?;
        }
    }
    write_presence(&tx, batch)?;
    write_session_ends(&tx, batch)?;
    write_bars(&tx, batch)?;
    tx.commit()
}

/// Tries `step` in a transaction that is then rolled back: `true` if it
/// worked, `false` if it met a damaged page; any other error is returned.
fn undamaged(
    conn: &mut Connection,
    step: impl FnOnce(&Transaction) -> rusqlite::Result<()>,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction()?;
    let result = step(&tx);
    tx.rollback()?;
    match result {
        Ok(()) => Ok(true),
        Err(e) if is_damage(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// One room's events of the batch (its chunk, then what its edits and
/// deletes change), and the room in `rooms`.
fn write_room(tx: &Transaction, batch: &Batch, room: u32) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO rooms (number) VALUES (?1)")?
        .execute([room])?;
    let events: Vec<_> = batch.messages().filter(|m| m.room == room).collect();
    events::write(tx, room, &events, None, &mut events::Encoded::default())
}

/// Deletes `room`'s chunks up to `seq`.
fn prune(tx: &Transaction, room: u32, seq: u64) -> rusqlite::Result<()> {
    events::prune(tx, room, seq)
}

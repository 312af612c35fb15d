//! Where the turn's changes go: the data file ([`Store`]), or nowhere.
//! The core records into it and commits it every turn the same way either
//! way; without a data file every record and every commit is a no-op, so
//! the core has one delivery semantics (everything a turn produced waits
//! for the turn's commit) and never asks whether there is a file.

use crate::chat::TokenHash;
use crate::store::{
    self, CommitError, Committed, History, QueryError, Store, StoredBar, StoredMessage, StoredRoom,
    SyncStats, retention,
};

/// The data file, or no data file.
#[derive(Debug)]
pub enum Journal {
    /// No `--data-file`: nothing is written; commits succeed at once.
    Memory,
    /// `--data-file`: every turn's changes are committed to it.
    File(Box<Store>),
}

impl Journal {
    /// A login's reservation (the `303` waits for the commit).
    pub fn record_login(&mut self, token_hash: TokenHash, room: u32, user: &str, at: u64) {
        if let Journal::File(store) = self {
            store.record_login(token_hash, room, user, at);
        }
    }

    /// A numbered chat message.
    pub fn record_message(&mut self, message: store::Message<'_>) {
        if let Journal::File(store) = self {
            store.record_message(message);
        }
    }

    /// A reservation that lapsed.
    pub fn record_session_end(&mut self, token_hash: TokenHash) {
        if let Journal::File(store) = self {
            store.record_session_end(token_hash);
        }
    }

    /// The operator set a bar (kept until it ends, across restarts).
    pub fn record_bar(&mut self, bar: StoredBar) {
        if let Journal::File(store) = self {
            store.record_bar(bar);
        }
    }

    /// A session became listed in its room (its `join` went out) or no
    /// longer (its `leave`).
    pub fn record_presence(&mut self, token_hash: TokenHash, present: bool) {
        if let Journal::File(store) = self {
            store.record_presence(token_hash, present);
        }
    }

    /// Commits what the turn recorded (one transaction; nothing without a
    /// data file or without records).
    pub fn commit(&mut self) -> Result<Committed, CommitError> {
        match self {
            Journal::File(store) if !store.pending().is_empty() => store.commit(),
            _ => Ok(Committed::default()),
        }
    }

    /// Gives up on what was recorded and not committed (the data file
    /// stayed busy too long): see [`Store::abandon`]. Returns how many
    /// messages and logins that was.
    pub fn abandon(&mut self) -> (usize, usize) {
        match self {
            Journal::File(store) => {
                let batch = store.abandon();
                (batch.messages().len(), batch.logins().len())
            }
            Journal::Memory => (0, 0),
        }
    }

    /// A room's counter and history tail, if the data file has it.
    pub fn room(&self, number: u32, keep: usize) -> Result<Option<StoredRoom>, QueryError> {
        match self {
            Journal::Memory => Ok(None),
            Journal::File(store) => store.room(number, keep),
        }
    }

    /// Event `seq` of room `number`, if the data file keeps it (`None`
    /// without one).
    pub fn event(&self, number: u32, seq: u64) -> Result<Option<StoredMessage>, QueryError> {
        match self {
            Journal::Memory => Ok(None),
            Journal::File(store) => store.event(number, seq),
        }
    }

    /// A page of scrollback from the data file; `None` without one (the
    /// room's history in memory serves instead).
    pub fn history(
        &self,
        room: u32,
        before: Option<u64>,
        limit: usize,
    ) -> Option<Result<History, QueryError>> {
        match self {
            Journal::Memory => None,
            Journal::File(store) => Some(store.history(room, before, limit)),
        }
    }

    /// After the turn's output is written: the write-ahead log's copy into
    /// the main file is handed to the store's helper thread if it is due,
    /// or if `changed` (a retention step changed the file, so that it
    /// shrinks on a quiet server too); it runs here, waiting for the disk,
    /// only if the helper's checkpoints have not let the log start again
    /// for a while (see `store::sync`). A failure is only logged (at debug:
    /// it repeats while the disk is full); nothing committed is lost.
    pub fn checkpoint_when_due(&mut self, changed: bool) {
        let Journal::File(store) = self else {
            return;
        };
        if store.checkpoint_overdue() {
            if let Err(e) = store.checkpoint() {
                log::debug!("data file checkpoint failed: {e}");
            }
        } else if changed {
            store.force_checkpoint();
        } else if store.checkpoint_due() {
            store.start_checkpoint();
        }
    }

    /// One step of retention by age and of giving free pages back
    /// (`store::retention`); `live` says whether a room is in memory.
    /// `None` without a data file.
    pub fn retention_step(
        &mut self,
        now_ms: u64,
        live: impl Fn(u32) -> bool,
    ) -> Option<rusqlite::Result<retention::Step>> {
        match self {
            Journal::File(store) => Some(store.retention_step(now_ms, live)),
            Journal::Memory => None,
        }
    }

    /// The store helper's counts of syncs and checkpoints; `None` without
    /// a data file.
    pub fn sync_stats(&self) -> Option<&SyncStats> {
        match self {
            Journal::File(store) => Some(store.sync_stats()),
            Journal::Memory => None,
        }
    }

    /// With a data file, makes its commits fail (or work again), as a full
    /// disk would: see [`Store::fail_writes`]. For the simulation.
    pub fn fail_writes(&mut self, fail: bool) -> Result<(), rusqlite::Error> {
        match self {
            Journal::File(store) => store.fail_writes(fail),
            Journal::Memory => Ok(()),
        }
    }

    /// Bytes of the data file and its log, for `/metrics` (0 without
    /// one).
    pub fn file_bytes(&self) -> u64 {
        match self {
            Journal::File(store) => store.file_bytes(),
            Journal::Memory => 0,
        }
    }
}

//! The durable store (`--data-file`): sessions, each room's `seq` counter and
//! its last `--keep-messages` messages in an SQLite database, written behind
//! the in-memory chat state so that a restart or a crash logs out no one and
//! loses no message. It owns the file and everything written to it; it knows
//! nothing of sockets or of the poll loop, which drives it as below.
//!
//! # How the poll loop uses it
//!
//! ```text
//! let store = Store::open(path, keep_messages)?;  // refused → print, exit 2
//! let loaded = store.load(history_messages)?;     // sessions, seqs, rings
//! loop {
//!     poll();
//!     // Handle events. Each change is also *recorded* (memory only):
//!     store.record_login(hash, room, user, at);   // before queuing the 303
//!     store.record_message(message);              // when a seq is given
//!     store.record_session_end(hash);             // when a reservation lapses
//!     store.record_presence(hash, present);        // when a join or leave goes out
//!     // ...output is queued, not yet written...
//!     match store.commit() {                      // ONE transaction
//!         Ok(_) => {}
//!         Err(e) => { /* see "When a commit fails" */ }
//!     }
//!     flush_output();                              // only now do bytes leave
//! }
//! ```
//!
//! # Write-ahead
//!
//! Every change of a loop turn is committed *before* any byte of that turn's
//! output is written to a socket. Two promises follow:
//!
//! - **No client saw a message that a crash lost.** A client learns of a
//!   message (or gets the `303` and cookie of a login) only from bytes
//!   written after `commit()` returned. When it returned, the transaction was
//!   in the write-ahead log in the kernel's page cache; a crash of the
//!   process (SIGKILL, a panic, an OOM kill) does not lose the page cache,
//!   and the next [`Store::open`] replays the log. Whatever anyone saw is on
//!   disk, with the same `seq`, user and text.
//! - **No `seq` is given twice.** A message is written before anyone sees
//!   it, and a room's newest message is never pruned (at least one is kept),
//!   so after a restart numbering goes on above every `seq` anybody has
//!   seen: a room's last `seq` is the largest one on disk. A `seq` of a turn whose commit
//!   failed was seen by no one (that output is not sent), so using it again
//!   breaks no promise.
//!
//! `synchronous=NORMAL` means a commit is a `write()` to the log, not an
//! `fsync()`: against a crash of the process nothing is lost. Against a
//! *power loss* the log is synced by the store's helper thread within
//! `--sync-ms` of each commit ([`sync`]): only the commits of that window
//! may be missing after one (the database is never inconsistent). With
//! `--sync-ms 0` each turn's commit is synced before its output, like
//! `FULL`, at the price of a disk flush per loop turn.
//!
//! # Group commit, and what it costs
//!
//! A commit has a fixed price (begin, the log header and frame writes, the
//! lock bookkeeping, a `write()` syscall) whatever it holds. One commit per
//! loop turn, not per message, shares that price among all the messages of
//! the turn: under load a turn carries more messages, so commits per second
//! stay bounded while messages per second grow, the same trick as collecting
//! a turn's socket writes into one `writev`.
//!
//! The price is paid inside the loop: while SQLite writes, no socket is
//! served. It is the server's one blocking call on the disk, kept small and
//! bounded: a few prepared (cached) statements per record, a prune by
//! primary-key range per room touched, and no sync (but one small sync of
//! the log's header when the log starts again: see [`sync`]). The syncs
//! come with the *checkpoints*, which copy the log into the main file:
//! SQLite would run one inside a commit every 4 MB of log, costing that
//! turn several milliseconds before its output went out; [`wal`] decides
//! them instead, small and often, and the helper thread runs them on its
//! own connection while the loop goes on ([`sync`]), bounding the log. `benches/store.rs` measures commits, `benches/e2e` the whole. On
//! the 2-core development machine, shared and busy (load 5–10), the median
//! commit took about 10 µs for one message, 27 µs for 10 and 117 µs for 100
//! in one room (1.2 µs per message); a turn whose messages go to 100
//! different rooms costs more (each dirties a 4 KiB page of its own: about
//! 10 µs per message).
//!
//! # When a commit fails
//!
//! (A full disk, a file made read-only, an I/O error.) The transaction is
//! rolled back and the store stays usable: the next `commit()` starts
//! afresh and succeeds once the disk does. The turn's logins and messages
//! are *discarded* and handed back in [`CommitError::discarded`]; the server
//! core sends none of them, decides what their senders and logins are told
//! (the store names no status or close code), and takes them out of its
//! memory. The
//! turn's session ends are *kept* and retried with the next commit: nobody
//! waits for them, and forgetting one would bring that session back after a
//! restart. A *busy* file (another program holds SQLite's write lock) is
//! not such a failure: every record is kept for the next commit
//! ([`is_busy`]).
//!
//! # A damaged file
//!
//! A page that is not what SQLite expects (a disk error, a file edited or
//! cut by hand) makes every read and write that reaches it fail with
//! SQLite's "database disk image is malformed" ([`is_damage`]), and so
//! does a chunk of events that does not decode (`events::decode`). A
//! room's chunks are one range of the `chunks` index, and most of a busy
//! room's rows sit on pages of its own, so damage usually hits one room
//! (or two, whose turns share a page). It must not stop the others:
//!
//! - **Reads** ([`Store::history`], [`Store::room`]) fail for that room
//!   only ([`QueryError::is_damage`]); [`Store::load`] leaves such a room
//!   out and names it in [`Loaded::damaged_rooms`]. Its last `seq` is then
//!   unknown, so its messages are refused from then on
//!   ([`Store::refuse_unreadable`]): numbered again from 1, they would meet
//!   the `seq`s still in the file and fail every commit.
//! - **A commit** that meets damage is written again around it: each
//!   room's messages, then its pruning, are tried on their own; a room
//!   whose new messages cannot be written loses them (named in
//!   [`Committed::refused_rooms`]: the server delivers none of them, as
//!   after a failed commit), a room whose old pages cannot be pruned keeps
//!   them, and everything else is committed ([`Committed::damaged`] says
//!   this happened). Only damage outside the rooms' messages (sessions)
//!   fails the commit as a whole. What was learnt is remembered
//!   ([`Damage`], in [`damage`]): later commits leave those rooms' messages
//!   out, or their pruning, at once, instead of failing and retrying every
//!   turn.
//!
//! Nothing here repairs the file: the operator does, with the server
//! stopped (the deployment guide says how).
//!
//! # Reads
//!
//! [`Store::load`] (at start), [`Store::room`] (a room that emptied and is
//! joined again) and [`Store::history`] (scrollback) read what is committed:
//! records of the current turn are not visible until `commit()`.
//!
//! # Other programs, copies, epochs
//!
//! One server per file is kept by [`lock`]; other programs may read the
//! file meanwhile (a backup), and [`wal`] says what that costs the log.
//! [`copy`] makes and restores copies. Each file has an *epoch*
//! ([`Store::epoch`]): `seq`s are unique within it, and a restore draws a
//! new one, as does the first start after a power loss ([`boot`]).
//!
//! The files: [`schema`] (tables, versions, migrations), [`file`](mod@file) (opening,
//! recognising and refusing files), [`sidefiles`] (what SQLite would replay
//! from the files beside it, read from their bytes), [`batch`] (what a turn
//! recorded), [`boot`] (a power loss and the epoch), [`damage`] (writing
//! around damaged pages), [`wal`] (when the
//! log is checkpointed), [`sync`] (when it is synced: `--sync-ms`),
//! [`retention`] (`--keep-days`, removing expired rooms, giving free pages
//! back).

pub mod batch;
pub mod boot;
pub mod copy;
pub mod damage;
pub mod events;
pub mod file;
pub mod lock;
pub mod retention;
pub mod schema;
pub mod sidefiles;
pub mod sync;
pub mod wal;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, Transaction, params};

pub use batch::{Batch, Kind, Login, Message, StoredBar, TokenHash};
pub use damage::Damage;
pub use file::OpenError;
pub use lock::FileLock;
pub use schema::{APPLICATION_ID, SCHEMA_VERSION};
pub use sync::{SyncEvery, SyncStats};
pub use wal::Wal;

/// The default of `--keep-messages`: messages kept per room on disk.
pub const DEFAULT_KEEP_MESSAGES: u64 = 10_000;

/// The most messages one [`Store::history`] page returns.
pub const MAX_PAGE: usize = 100;

/// How the store keeps the file: the settings of `--keep-messages` and
/// `--sync-ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Messages kept per room (at least 1: the newest carries the room's
    /// last `seq`).
    pub keep_messages: u64,
    /// When commits are synced to the disk ([`sync`]).
    pub sync: SyncEvery,
    /// Messages older than this many days are deleted (0: no age limit;
    /// [`retention`]).
    pub keep_days: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            keep_messages: DEFAULT_KEEP_MESSAGES,
            sync: SyncEvery::from_millis(sync::DEFAULT_SYNC_MS),
            keep_days: 0,
        }
    }
}

/// The open database and the records of the current loop turn.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    keep_messages: u64,
    batch: Batch,
    wal: Wal,
    /// The log, for `--sync-ms 0` (synced by the loop after each commit).
    log: sync::LogFile,
    /// The data file, links resolved: its log and size are beside it.
    real: PathBuf,
    sync_every: SyncEvery,
    /// Syncs the log (`--sync-ms N`, N > 0) and runs checkpoints.
    helper: sync::Helper,
    sync_stats: Arc<SyncStats>,
    keep_days: u64,
    sweep: retention::Sweep,
    /// The file gives free pages back (`auto_vacuum=INCREMENTAL`).
    vacuum: bool,
    epoch: u64,
    /// Held while the store is open: one process per file.
    _lock: FileLock,
    /// Rooms whose pages are known to be damaged (see `damage`).
    damage: Damage,
    /// Each room's last committed `seq`, as far as known (see `events`).
    written: events::Written,
}

/// A session as stored: enough to restore its reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// SHA-256 of the session token (the cookie's value is never stored).
    pub token_hash: TokenHash,
    /// The room number it is reserved in.
    pub room: u32,
    /// The id as typed.
    pub user: String,
    /// Unix milliseconds.
    pub login_at: u64,
    /// The others counted it as in its room when the file was last written
    /// (they saw its `join`, not yet its `leave`).
    pub present: bool,
}

/// A room event as stored: a chat message (in its current state), an edit
/// or a delete (see `schema.rs`, version 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its number in its room.
    pub seq: u64,
    /// Unix milliseconds.
    pub at: u64,
    /// The sender's id as typed (of a delete: who deleted it, empty for
    /// the operator).
    pub user: String,
    /// The chat text as kept (already cut to `--max-chat-chars`); of a
    /// message, its latest text (empty once deleted).
    pub text: String,
    /// Which event it is.
    pub kind: Kind,
    /// Of a message: when it was last edited.
    pub edited: Option<u64>,
    /// Of a message: deleted.
    pub deleted: bool,
}

/// A room as stored: its counter and the tail of its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRoom {
    /// The room number, 1–999999.
    pub number: u32,
    /// The `seq` of its last message: the next one gets `last_seq + 1`.
    pub last_seq: u64,
    /// Its last messages (as many as asked for), oldest first.
    pub history: Vec<StoredMessage>,
}

/// Everything the server needs at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every session still reserved, the newest login first (so that a
    /// server whose `--max-sessions` is below their number keeps the
    /// newest).
    pub sessions: Vec<StoredSession>,
    /// The rooms of those sessions that have had a message. (A session's
    /// room may be missing here: nobody has written in it yet.)
    pub rooms: Vec<StoredRoom>,
    /// Rooms that could not be read: their pages are damaged.
    pub damaged_rooms: Vec<u32>,
}

/// One page of scrollback.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct History {
    /// Oldest first.
    pub messages: Vec<StoredMessage>,
    /// Older messages than the first one are still kept.
    pub more: bool,
}

/// What a successful commit wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Committed {
    /// Logins written.
    pub logins: usize,
    /// Messages written.
    pub messages: usize,
    /// Sessions deleted.
    pub session_ends: usize,
    /// Presence changes written.
    pub presence: usize,
    /// Rooms whose messages of this turn were *not* written: the pages they
    /// go to are damaged (see "A damaged file" in the module doc). Those
    /// messages must not be delivered.
    pub refused_rooms: Vec<u32>,
    /// The commit met damaged pages (a room's messages refused, or a
    /// room's pruning skipped).
    pub damaged: bool,
}

impl Committed {
    /// Nothing was recorded, so no transaction was run.
    pub fn is_empty(&self) -> bool {
        *self == Committed::default()
    }
}

/// SQLite found the file damaged (a page that is not what it should be),
/// as opposed to a failing disk or a full one.
pub fn is_damage(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// Another connection holds the file's write lock: another program
/// writing (a `sqlite3` shell in a transaction, a tool's blocking
/// checkpoint). Nothing was written and nothing is lost: [`Store::commit`]
/// keeps the turn's records for the next try.
pub fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// A commit that failed: the error, and the logins and messages it
/// discarded (see the module doc; boxed: the batch is big and this is the
/// rare path). When the file was busy ([`CommitError::is_busy`]) nothing
/// is discarded: the records wait for the next commit.
#[derive(Debug)]
pub struct CommitError {
    /// What SQLite said (a full disk, a read-only file, …).
    pub error: rusqlite::Error,
    /// What was recorded and is now dropped, unwritten.
    pub discarded: Box<Batch>,
}

impl fmt::Display for CommitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let error = self.error.to_string().replace(['\n', '\r'], " ");
        write!(
            f,
            "writing to the data file failed ({error}): {} message(s) and {} login(s) not committed",
            self.discarded.messages().len(),
            self.discarded.logins().len()
        )
    }
}

impl std::error::Error for CommitError {}

impl CommitError {
    /// The file was busy ([`is_busy`]): the records were kept, and the
    /// next [`Store::commit`] tries them again.
    pub fn is_busy(&self) -> bool {
        is_busy(&self.error)
    }
}

/// A read that failed (a damaged file, an I/O error).
#[derive(Debug)]
pub struct QueryError(pub rusqlite::Error);

impl QueryError {
    /// The read met a damaged page (see [`is_damage`]).
    pub fn is_damage(&self) -> bool {
        is_damage(&self.0)
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let error = self.0.to_string().replace(['\n', '\r'], " ");
        write!(f, "reading the data file failed: {error}")?;
        if self.is_damage() {
            f.write_str(" (the file is damaged: the deployment guide says how to recover it)")?;
        }
        Ok(())
    }
}

impl std::error::Error for QueryError {}

impl From<rusqlite::Error> for QueryError {
    fn from(error: rusqlite::Error) -> Self {
        QueryError(error)
    }
}

impl Store {
    /// Opens the database at `path`, creating it if there is no file (or an
    /// empty one), bringing an older schema up to date. Refuses, changing
    /// nothing and creating nothing beside it: a file that is not SQLite,
    /// another program's SQLite database, a newer schema, a file another
    /// wsrooms holds ([`lock`]). `keep_messages` is `--keep-messages` (at
    /// least 1: the newest message of a room carries its last `seq`).
    pub fn open(path: &Path, keep_messages: u64) -> Result<Store, OpenError> {
        let settings = Settings {
            keep_messages,
            ..Settings::default()
        };
        Store::open_with(path, &settings)
    }

    /// [`Store::open`] with every setting.
    pub fn open_with(path: &Path, settings: &Settings) -> Result<Store, OpenError> {
        let keep_messages = settings.keep_messages.max(1);
        let found = file::inspect(path)?;
        // After the file was recognised (a refused file gets no lock file
        // beside it), before SQLite opens it (and may replay its log).
        let lock = FileLock::acquire(path)?;
        let mut conn = file::connect(path)?;
        let version = file::check(path, &conn, found)?;
        if version < SCHEMA_VERSION {
            file::rollback_journal(path, &conn)?;
            if version == 0 {
                retention::set_incremental(&conn).map_err(|e| file::sqlite_error(path, e))?;
            }
            schema::migrate(&mut conn, version, schema::STEPS)
                .map_err(|e| file::sqlite_error(path, e))?;
        }
        let vacuum = retention::switch_on(path, &conn).map_err(|e| file::sqlite_error(path, e))?;
        file::tune(path, &conn)?;
        let wal = file::page_size(&conn)
            .and_then(|page_size| Wal::install(&mut conn, page_size))
            .map_err(|e| file::sqlite_error(path, e))?;
        schema::ensure_epoch(&conn).map_err(|e| file::sqlite_error(path, e))?;
        // SQLite follows a link to the file it names and keeps its log
        // beside the file itself: the log to sync is there, not beside
        // the link.
        let real = lock::resolved(path);
        let sync_stats = Arc::new(SyncStats::default());
        let mut log = sync::LogFile::beside(&real);
        let epoch = note_open(path, &conn, &mut log, &sync_stats)?;
        let helper = start_helper(path, &real, &wal, settings.sync, &sync_stats)?;
        Ok(Store {
            conn,
            keep_messages,
            batch: Batch::default(),
            wal,
            log,
            real,
            sync_every: settings.sync,
            helper,
            sync_stats,
            keep_days: settings.keep_days,
            sweep: retention::Sweep::default(),
            vacuum,
            epoch,
            _lock: lock,
            damage: Damage::default(),
            written: events::Written::default(),
        })
    }

    /// One step of retention by age and of giving free pages back (see
    /// [`retention`]); `live` says whether a room is in memory. Runs its
    /// own transaction: call it between turns' commits.
    pub fn retention_step(
        &mut self,
        now_ms: u64,
        live: impl Fn(u32) -> bool,
    ) -> rusqlite::Result<retention::Step> {
        let cutoff = retention::cutoff(now_ms, self.keep_days);
        // A room it removes starts again at seq 1.
        self.written.forget();
        retention::step(&mut self.conn, &mut self.sweep, cutoff, live, self.vacuum)
    }

    /// Syncs of the log so far, and their time ([`sync`]).
    pub fn sync_stats(&self) -> &SyncStats {
        &self.sync_stats
    }

    /// A commit was made: synced now (`--sync-ms 0`) or handed to the sync
    /// thread. A failed sync is counted ([`SyncStats::failures`]); the
    /// commit stands (it is in the log, safe against a crash of the
    /// process).
    fn after_commit(&mut self) {
        match self.sync_every {
            SyncEvery::Within(_) => self.helper.committed(),
            SyncEvery::Commit => {
                // Counted in the stats, which the loop reports (once).
                if let Err(e) = self.log.sync(&self.sync_stats) {
                    log::debug!("syncing the data file's log failed: {e}");
                }
            }
        }
    }

    /// The file's epoch: the same across restarts, new after
    /// `wsrooms restore` (see `schema`). The `seq`s of one room are unique
    /// within one epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Bytes of the data file and its log, for `/metrics`.
    pub fn file_bytes(&self) -> u64 {
        let log = file::side_path(&self.real, "-wal");
        [self.real.as_path(), log.as_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// The write-ahead log has grown enough to be worth a checkpoint (see
    /// [`wal`]), and none is running: the loop calls
    /// [`Store::start_checkpoint`] once the turn's output is written.
    pub fn checkpoint_due(&self) -> bool {
        self.wal.due()
    }

    /// The helper's checkpoints have not let the log start again for a
    /// while (see [`Wal::overdue`]): the loop runs [`Store::checkpoint`]
    /// itself, after the turn's output.
    pub fn checkpoint_overdue(&self) -> bool {
        self.wal.overdue()
    }

    /// Has the helper thread copy the write-ahead log into the main file,
    /// syncing both (see [`sync`]); returns at once. `false` if a
    /// checkpoint is running already. On failure the log is simply not
    /// shortened (nothing committed is lost); the next one tries again.
    pub fn start_checkpoint(&mut self) -> bool {
        let started = self.wal.begin();
        if started {
            self.helper.checkpoint();
        }
        started
    }

    /// [`Store::start_checkpoint`] even if one is running: it runs after
    /// that one, so it copies what was committed since (after retention
    /// deleted rows, so that the main file shrinks on a quiet server too).
    pub fn force_checkpoint(&mut self) {
        self.wal.begin();
        self.helper.checkpoint();
    }

    /// [`Store::start_checkpoint`] on the caller's thread, waiting for the
    /// disk (when overdue, and for tests and benchmarks).
    pub fn checkpoint(&mut self) -> rusqlite::Result<()> {
        let started = std::time::Instant::now();
        self.wal.wait(std::time::Duration::from_secs(10));
        self.wal.begin();
        let result = self.wal.checkpoint(&self.conn);
        self.sync_stats.count_loop_checkpoint(started.elapsed());
        result
    }

    /// Pages in the write-ahead log not yet in the main file.
    pub fn wal_pages(&self) -> u32 {
        self.wal.frames()
    }

    /// Records an operator's bar (kept across restarts until it ends).
    pub fn record_bar(&mut self, bar: StoredBar) {
        self.batch.push_bar(bar);
    }

    /// Records a login (its `303` must wait for the commit).
    pub fn record_login(&mut self, token_hash: TokenHash, room: u32, user: &str, at: u64) {
        self.batch.push_login(token_hash, room, user, at);
    }

    /// Records that a session's reservation ended.
    pub fn record_session_end(&mut self, token_hash: TokenHash) {
        self.batch.push_end(token_hash);
    }

    /// Records that the others now count a session as in its room (its
    /// `join` went out) or no longer (its `leave`): a restart lists again
    /// the sessions that were.
    pub fn record_presence(&mut self, token_hash: TokenHash, present: bool) {
        self.batch.push_presence(token_hash, present);
    }

    /// Records a numbered message (its frame must wait for the commit).
    pub fn record_message(&mut self, message: Message<'_>) {
        self.batch.push_message(message);
    }

    /// What has been recorded since the last commit.
    pub fn pending(&self) -> &Batch {
        &self.batch
    }

    /// Gives up on what has been recorded (the file stayed busy too long):
    /// the logins and messages are returned, unwritten, as after a failed
    /// commit; the session ends are kept for the next commit.
    pub fn abandon(&mut self) -> Box<Batch> {
        Box::new(self.batch.take_failed())
    }

    /// Writes everything recorded since the last commit in one transaction.
    /// With nothing recorded it does nothing. On failure, see the module
    /// doc; a busy file ([`is_busy`]) is not a failure of the records: they
    /// are kept, and the next call tries them again with whatever is
    /// recorded meanwhile.
    pub fn commit(&mut self) -> Result<Committed, CommitError> {
        if self.batch.is_empty() {
            return Ok(Committed::default());
        }
        let keep = self.keep_messages;
        let batch = &self.batch;
        let written = match write_batch(&mut self.conn, batch, keep, &self.damage, &self.written) {
            Ok(()) => Ok(false),
            Err(error) if is_damage(&error) => {
                self.rollback();
                damage::write_around(&mut self.conn, &self.batch, keep, &mut self.damage)
                    .map(|()| true)
            }
            Err(error) => Err(error),
        };
        match written {
            Ok(went_around) => {
                if went_around {
                    self.written.forget();
                } else {
                    self.written.committed(&self.batch);
                }
                let committed = self.committed(went_around);
                self.batch.clear();
                self.after_commit();
                Ok(committed)
            }
            Err(error) if is_busy(&error) => {
                self.rollback();
                self.written.forget();
                let discarded = Box::default();
                Err(CommitError { error, discarded })
            }
            Err(error) => {
                self.rollback();
                self.written.forget();
                let discarded = Box::new(self.batch.take_failed());
                Err(CommitError { error, discarded })
            }
        }
    }

    /// Normally already rolled back by the failed transaction; make sure.
    fn rollback(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    /// What the batch wrote (`went_around`: it met damage this time).
    fn committed(&self, went_around: bool) -> Committed {
        let refused_rooms = self.damage.refused_in(&self.batch);
        let messages = self
            .batch
            .messages()
            .filter(|m| !refused_rooms.contains(&m.room))
            .count();
        Committed {
            logins: self.batch.logins().len(),
            messages,
            session_ends: self.batch.session_ends().len(),
            presence: self.batch.presence().len(),
            damaged: went_around || self.damage.touches(&self.batch),
            refused_rooms,
        }
    }

    /// Makes every commit that writes something fail (`true`) as a full
    /// disk would, through SQLite's own error and rollback, or work again
    /// (`false`). Temporary triggers of this connection: nothing is stored
    /// in the file. For the tests and the simulation (a full disk on
    /// demand, without a mount).
    pub fn fail_writes(&mut self, fail: bool) -> rusqlite::Result<()> {
        let sql = if fail {
            "CREATE TEMP TRIGGER IF NOT EXISTS full_disk_m BEFORE INSERT ON chunks \
               BEGIN SELECT RAISE(ABORT, 'database or disk is full (simulated)'); END;\
             CREATE TEMP TRIGGER IF NOT EXISTS full_disk_s BEFORE INSERT ON sessions \
               BEGIN SELECT RAISE(ABORT, 'database or disk is full (simulated)'); END;\
             CREATE TEMP TRIGGER IF NOT EXISTS full_disk_e BEFORE DELETE ON sessions \
               BEGIN SELECT RAISE(ABORT, 'database or disk is full (simulated)'); END;"
        } else {
            "DROP TRIGGER IF EXISTS temp.full_disk_m; DROP TRIGGER IF EXISTS temp.full_disk_s; \
             DROP TRIGGER IF EXISTS temp.full_disk_e;"
        };
        self.conn.execute_batch(sql)
    }

    /// Every session, and the rooms those sessions are in, each with its
    /// `last_seq` and its last `history` messages (`--history-messages`).
    /// Other rooms stay on disk until someone logs into one
    /// ([`Store::room`]): start-up costs what is live, not what the file
    /// holds (one indexed look-up per room of a session).
    /// A room whose pages are damaged is left out and named in
    /// [`Loaded::damaged_rooms`]: it must not keep the others from starting.
    pub fn load(&self, history: usize) -> Result<Loaded, QueryError> {
        let sessions = self.sessions()?;
        let numbers: std::collections::BTreeSet<u32> = sessions.iter().map(|s| s.room).collect();
        let mut rooms = Vec::with_capacity(numbers.len());
        let mut damaged_rooms = Vec::new();
        for number in numbers {
            match self.room(number, history) {
                Ok(room) => rooms.extend(room),
                Err(e) if e.is_damage() => damaged_rooms.push(number),
                Err(e) => return Err(e),
            }
        }
        Ok(Loaded {
            sessions,
            rooms,
            damaged_rooms,
        })
    }

    /// Rooms that could not be read ([`Loaded::damaged_rooms`]): their
    /// last `seq` is unknown, so no message of theirs can be numbered
    /// safely (a number given again would meet one still in the file). Their
    /// messages are refused from now on, as a room's whose pages refused
    /// a write ([`Committed::refused_rooms`]).
    pub fn refuse_unreadable(&mut self, rooms: &[u32]) {
        for &room in rooms {
            self.damage.refuse(room);
        }
    }

    /// One room's `last_seq` and last `history` messages, if it ever had a
    /// message.
    pub fn room(&self, number: u32, history: usize) -> Result<Option<StoredRoom>, QueryError> {
        // The newest message is never pruned: its seq is the room's last.
        let Some(last_seq) = events::last_seq(&self.conn, number)? else {
            return Ok(None);
        };
        let history = self.newest(number, u64::MAX, history)?;
        Ok(Some(StoredRoom {
            number,
            last_seq,
            history,
        }))
    }

    /// Scrollback: the newest `limit` (at most [`MAX_PAGE`]) messages of
    /// `room` with `seq < before` (`None`: after the last), oldest first,
    /// and whether older ones are still kept. One range of the primary key.
    pub fn history(
        &self,
        room: u32,
        before: Option<u64>,
        limit: usize,
    ) -> Result<History, QueryError> {
        let limit = limit.min(MAX_PAGE);
        let mut messages = self.newest(room, before.unwrap_or(u64::MAX), limit + 1)?;
        let more = messages.len() > limit;
        if more {
            messages.remove(0);
        }
        Ok(History { messages, more })
    }

    /// The event `seq` of `room`, if the file keeps it (the message an
    /// edit or delete targets, when it is older than the history in
    /// memory).
    pub fn event(&self, room: u32, seq: u64) -> Result<Option<StoredMessage>, QueryError> {
        if seq <= self.kept_after(room)? {
            return Ok(None);
        }
        Ok(events::one(&self.conn, room, seq)?)
    }

    /// The newest `count` messages of `room` with `seq < before`, oldest first.
    fn newest(
        &self,
        room: u32,
        before: u64,
        count: usize,
    ) -> Result<Vec<StoredMessage>, QueryError> {
        let after = self.kept_after(room)?;
        Ok(events::newest(&self.conn, room, after, before, count)?)
    }

    /// The `seq` after which `room`'s events are kept: the newest
    /// `--keep-messages`. Pruning deletes a turn's chunk only once all of
    /// it is older (`events::prune`), so the file may still hold a few
    /// older ones; they are never read.
    fn kept_after(&self, room: u32) -> Result<u64, QueryError> {
        let last = events::last_seq(&self.conn, room)?.unwrap_or(0);
        Ok(last.saturating_sub(self.keep_messages))
    }

    /// Every bar row, in the order they were set, ended ones too (a row
    /// that has ended may still end an earlier one it shortened): the core
    /// replays them as they were set (`Core::restore_bars`).
    pub fn bars(&self) -> Result<Vec<StoredBar>, QueryError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT room, user, address, until FROM bars ORDER BY rowid")?;
        let rows = stmt.query_map([], |row| {
            let address: Option<String> = row.get(2)?;
            Ok(StoredBar {
                room: row.get(0)?,
                user: row.get(1)?,
                // An address that does not parse (a file edited by hand)
                // bars nothing.
                address: address.and_then(|a| a.parse().ok()),
                until: to_u64(row.get(3)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes the bar rows that can no longer change anything at `now_ms`:
    /// those that ended before the first row still running (or all, when
    /// none is). A row that ended after a running one stays: it may be
    /// that bar set again, shorter. At start; the rows are few (one per
    /// operator action).
    pub fn forget_ended_bars(&mut self, now_ms: u64) -> rusqlite::Result<usize> {
        self.conn.execute(
            "DELETE FROM bars WHERE rowid < coalesce(
                 (SELECT min(rowid) FROM bars WHERE until > ?1),
                 (SELECT max(rowid) FROM bars) + 1)",
            [to_i64(now_ms)],
        )
    }

    fn sessions(&self) -> Result<Vec<StoredSession>, QueryError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT token_hash, room, user, login_at, present FROM sessions \
             ORDER BY login_at DESC",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(StoredSession {
                token_hash: TokenHash(row.get(0)?),
                room: row.get(1)?,
                user: row.get(2)?,
                login_at: to_u64(row.get(3)?),
                present: row.get::<_, i64>(4)? != 0,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Records that the file is open in this boot, after a new epoch if the
/// last process had it open in another one and did not close it (see
/// [`boot`]), and syncs that to the disk before anything is served;
/// returns the epoch.
fn note_open(
    path: &Path,
    conn: &Connection,
    log: &mut sync::LogFile,
    stats: &SyncStats,
) -> Result<u64, OpenError> {
    let stop = boot::note_open(conn, boot::this_boot().as_deref())
        .map_err(|e| file::sqlite_error(path, e))?;
    if stop == boot::LastStop::CrashedBeforeAReboot {
        log::warn!(
            "data file {path:?}: the server that had it open stopped without closing it, \
             before a reboot (a power loss, or a crash of the system?): the commits it had \
             not synced yet (at most its last --sync-ms) may be lost, so the numbering \
             starts a new epoch: open pages load their rooms afresh"
        );
    }
    log.sync(stats).map_err(|error| OpenError::Io {
        path: path.to_owned(),
        error,
    })?;
    schema::epoch(conn).map_err(|e| file::sqlite_error(path, e))
}

/// A clean close: the file is no longer open (see [`boot`]). A failure
/// (the disk) leaves the record, and the next start judges as after a
/// crash: at worst its pages load their rooms afresh.
impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = boot::note_close(&self.conn) {
            log::debug!("data file: could not record its clean close: {e}");
        }
    }
}

/// The helper thread, on a connection of its own to the file at `path`
/// (`real`: that file, links resolved).
fn start_helper(
    path: &Path,
    real: &Path,
    wal: &Wal,
    every: SyncEvery,
    stats: &Arc<SyncStats>,
) -> Result<sync::Helper, OpenError> {
    let conn = file::connect(path)?;
    file::tune_helper(path, &conn)?;
    sync::Helper::start(
        sync::LogFile::beside(real),
        conn,
        wal.clone(),
        every,
        Arc::clone(stats),
    )
    .map_err(|error| OpenError::Io {
        path: path.to_owned(),
        error,
    })
}

/// Writes a batch in one transaction; dropping `tx` on an error rolls back.
/// Rooms known to be damaged are left out (their messages) or left
/// unpruned, as [`Damage`] says.
fn write_batch(
    conn: &mut Connection,
    batch: &Batch,
    keep: u64,
    damage: &Damage,
    written: &events::Written,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    write_logins(&tx, batch)?;
    write_messages(&tx, batch, damage, written)?;
    write_rooms(&tx, batch, keep, damage)?;
    write_presence(&tx, batch)?;
    write_session_ends(&tx, batch)?;
    write_bars(&tx, batch)?;
    tx.commit()
}

/// One row per bar set (see `schema`, version 6).
fn write_bars(tx: &Transaction, batch: &Batch) -> rusqlite::Result<()> {
    if batch.bars().is_empty() {
        return Ok(());
    }
    let mut stmt =
        tx.prepare_cached("INSERT INTO bars (room, user, address, until) VALUES (?1, ?2, ?3, ?4)")?;
    for bar in batch.bars() {
        let address = bar.address.map(|a| a.to_string());
        stmt.execute(params![bar.room, bar.user, address, to_i64(bar.until)])?;
    }
    Ok(())
}

fn write_logins(tx: &Transaction, batch: &Batch) -> rusqlite::Result<()> {
    if batch.logins().len() == 0 {
        return Ok(());
    }
    let mut stmt = tx.prepare_cached(
        "INSERT OR REPLACE INTO sessions (token_hash, room, user, login_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for login in batch.logins() {
        stmt.execute(params![
            login.token_hash.0,
            login.room,
            login.user,
            to_i64(login.at)
        ])?;
    }
    Ok(())
}

/// The turn's events as one chunk per room, each followed by the changes
/// its edits and deletes make to the messages they target
/// (`events::write`). Rooms known to refuse writes are left out.
fn write_messages(
    tx: &Transaction,
    batch: &Batch,
    damage: &Damage,
    written: &events::Written,
) -> rusqlite::Result<()> {
    if batch.messages().len() == 0 {
        return Ok(());
    }
    let mut events: Vec<Message<'_>> = batch.messages().filter(|m| damage.writes(m.room)).collect();
    // Stable: a room's events keep their recorded (rising seq) order. A
    // turn of one room is in order already.
    if !events.is_sorted_by_key(|m| m.room) {
        events.sort_by_key(|m| m.room);
    }
    let mut buf = events::Encoded::default();
    for room_events in events.chunk_by(|a, b| a.room == b.room) {
        let room = room_events[0].room;
        events::write(tx, room, room_events, Some(written), &mut buf)?;
    }
    Ok(())
}

/// Lists each touched room in `rooms` (a room already there is left alone,
/// its page untouched) and prunes it to `keep` messages: one primary-key
/// range below `last_seq - keep` (in a steady stream, as many rows as the
/// batch added to that room). The newest `keep` (at least one) stay, so the
/// largest `seq` kept is always the room's last.
fn write_rooms(
    tx: &Transaction,
    batch: &Batch,
    keep: u64,
    damage: &Damage,
) -> rusqlite::Result<()> {
    let mut list = tx.prepare_cached("INSERT OR IGNORE INTO rooms (number) VALUES (?1)")?;
    for (room, last_seq) in batch.last_seqs() {
        if !damage.writes(room) {
            continue;
        }
        list.execute([room])?;
        if last_seq > keep && damage.prunes(room) {
            events::prune(tx, room, last_seq - keep)?;
        }
    }
    Ok(())
}

/// One small update per change: a join or a leave, not a message.
fn write_presence(tx: &Transaction, batch: &Batch) -> rusqlite::Result<()> {
    if batch.presence().is_empty() {
        return Ok(());
    }
    let mut stmt = tx.prepare_cached("UPDATE sessions SET present = ?2 WHERE token_hash = ?1")?;
    for (hash, present) in batch.presence() {
        stmt.execute(params![hash.0, present])?;
    }
    Ok(())
}

fn write_session_ends(tx: &Transaction, batch: &Batch) -> rusqlite::Result<()> {
    if batch.session_ends().is_empty() {
        return Ok(());
    }
    let mut stmt = tx.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?;
    for hash in batch.session_ends() {
        stmt.execute([hash.0])?;
    }
    Ok(())
}

/// SQLite integers are signed 64-bit; seqs and times never come near the top.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A negative number can only come from a file edited by hand: read it as 0.
fn to_u64(n: i64) -> u64 {
    n.max(0) as u64
}

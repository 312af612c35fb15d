//! The write-ahead log's size: when its commits are copied into the main
//! file (a *checkpoint*), and the bound on how big it gets.
//!
//! A commit appends the pages it changed to the log; a checkpoint copies the
//! log's newest version of each page into the main file, and the next
//! commit starts the log again from its beginning. With
//! `synchronous=NORMAL` the checkpoint is where the syncs are: the log is
//! synced before it is copied and the main file after (and the first commit
//! after it syncs the log's new header, a few hundred microseconds). Those
//! syncs take milliseconds (much more on a busy disk), and SQLite's own rule
//! (checkpoint inside the commit that takes the log past 1,000 pages) ran
//! them inside the poll loop *before* that turn's output was written,
//! several times a second under load.
//!
//! So SQLite's automatic checkpoint is off, and [`Wal`] decides instead:
//!
//! - **On the helper thread** ([`Wal::due`], then `Store::start_checkpoint`):
//!   once the log holds [`CHECKPOINT_BYTES`], the loop asks, after
//!   `flush_dirty`, and the store's helper thread checkpoints on its own
//!   connection (`store::sync`) while the loop goes on committing. The log
//!   starts again at the first commit that finds it all copied, so a
//!   checkpoint also copies what was committed while it ran ([`CATCH_UP`]).
//! - **On the loop, now and then** ([`Wal::overdue`]): if commits never
//!   leave the helper a moment with nothing left to copy (a disk slower
//!   than the commit rate), the loop checkpoints itself once the log holds
//!   [`OVERDUE_CHECKPOINTS`] × [`CHECKPOINT_BYTES`], after the turn's
//!   output, so that the next commit starts the log again.
//! - **Hard cap** ([`HARD_CAP_BYTES`]): whoever drives the store, a commit
//!   that takes the log to the cap checkpoints at once, inside the commit,
//!   as SQLite would. The server never gets there unless a checkpoint keeps
//!   failing (then the log grows until the disk is full, and commits fail
//!   as the module doc of `store` says).
//!
//! **The bound.** A checkpoint copies the log up to what every reader of
//! the file has finished with, and the next commit starts the log again
//! from its beginning once all of it is copied and no reader still uses
//! it. Without other readers (the usual case: the server is the file's only
//! user) the log holds at most [`HARD_CAP_BYTES`] plus the pages of one
//! commit, and in the server between [`CHECKPOINT_BYTES`] and
//! [`HARD_CAP_BYTES`] (16 MiB), plus one turn's commit. `journal_size_limit` cuts
//! the file back to the hard cap when it starts again, so a single huge
//! commit does not leave a huge file behind.
//!
//! **Two connections, one log.** The loop's connection commits while the
//! helper's checkpoints, and a commit may start the log again between two
//! checkpoints of a catch-up. SQLite from 3.7.0 to 3.51.2 had a rare race
//! in exactly that pattern (the "WAL-reset bug", fixed in 3.51.3 and
//! 3.53.0): a checkpoint that began as another connection started the log
//! again could later skip pages, corrupting the file or losing commits.
//! The SQLite built into wsrooms is newer, and a test
//! (`the_built_in_sqlite_has_the_wal_reset_fix`) fails the build's tests
//! if an older one is ever linked.
//!
//! **Readers.** Another program may read the file while the server runs
//! (`sqlite3 .backup`, `VACUUM INTO`, `wsrooms backup`, a Litestream-style
//! replicator). A read transaction sees the file as it was when it began,
//! so SQLite cannot copy into the main file any page committed after that,
//! nor start the log again, until the reader's transaction ends: while it
//! lasts, the log grows by everything committed meanwhile (commit rate ×
//! the reader's transaction time; a `wsrooms backup` of a 100 MB file takes
//! a few seconds). When it ends, the next checkpoint copies the rest and
//! the log starts again. Nothing here waits for a reader: checkpoints are
//! `PASSIVE` (they copy what they can and return, never calling the busy
//! handler), the connection's busy timeout is zero, and readers never lock
//! out SQLite's one writer. While a reader holds the log back, [`Wal::due`]
//! asks for the next checkpoint only once another [`CHECKPOINT_BYTES`] have
//! been committed, so the loop does not retry a useless checkpoint every
//! turn.
//!
//! **Cheaper syncs.** Two settings keep each sync from also waiting for the
//! file system's journal (shared with every other program on the disk, so
//! the slow and unpredictable part of a sync): the main file grows in steps
//! of [`GROW_BYTES`], so most checkpoints do not change its size, and the
//! bundled SQLite is built with `HAVE_FDATASYNC` (`.cargo/config.toml`), so
//! it syncs with `fdatasync`, which skips the file's modification time.
//! Both are as safe after a power loss as before: a size change is still
//! synced. (SQLite calls `fsync` by default only because some old systems
//! had a broken `fdatasync`; Linux's works.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use rusqlite::hooks::Wal as SqliteWal;
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, FileControl};

/// The log size at which the loop asks the helper thread for a checkpoint:
/// 64 pages of 4 KiB. A checkpoint's time grows with the pages written
/// since the last one (measured on a 2-core VM's virtual disk: about
/// 1.2 ms at 256 KiB, 3 ms at 1 MiB, 7 ms at 4 MiB). It runs beside the
/// loop, but on one core it still takes turns with it for the CPU its
/// copying needs, and short bursts delay the loop's turns less than long
/// ones (measured with `benches/e2e` (b): p99 3.5 ms at 256 KiB, 5.8 ms at
/// 2 MiB, both threads on one core). What the loop itself pays per
/// checkpoint is the sync of the log's new header in the commit that
/// starts the log again.
pub const CHECKPOINT_BYTES: u32 = 256 * 1024;

/// How many [`CHECKPOINT_BYTES`] the log may grow by without starting
/// again before the loop checkpoints itself (see [`Wal::overdue`]): 4 MiB.
/// If the helper's checkpoint still runs then, the loop lets it finish and
/// checkpoints the little that is left after it; it waits for the helper
/// only when the log reaches [`HARD_CAP_BYTES`]. Under a steady load the
/// helper's checkpoints never let the log start again, and each wait costs
/// the loop what is left of a helper's checkpoint (tens of ms when the
/// helper gets little CPU beside a busy loop): in `benches/e2e` (a) with a
/// data file, waiting at 8 MiB stalled the loop 6–7 % of its time (about
/// 350 ms in 5 s, `wsrooms_loop_checkpoint_microseconds_total`), at 12 MiB
/// as much, at 16 MiB about 2 %.
pub const OVERDUE_CHECKPOINTS: u32 = 16;

/// Checkpoints in a row at most, each copying what was committed while the
/// one before ran (see [`Wal::checkpoint`]).
pub const CATCH_UP: usize = 2;

/// The log size at which a commit checkpoints at once.
pub const HARD_CAP_BYTES: u32 = 16 * 1024 * 1024;

/// The main file grows (and is cut back) by this much at a time. A sync
/// of a file whose size changed must also commit the file system's journal
/// (on a busy disk, the slow part); growing page by page did that at every
/// checkpoint. The price: up to this much unused space at the file's end.
pub const GROW_BYTES: u32 = 1024 * 1024;

/// How many pages the log holds, as SQLite reports after each commit, and
/// whether a checkpoint is running. Cloned for the helper thread (see
/// `store::sync`), which runs the checkpoints on its own connection: the
/// clones share their counts.
#[derive(Debug, Clone)]
pub struct Wal {
    /// Pages (frames) in the log, updated by the commit hook and by
    /// checkpoints.
    frames: Arc<AtomicU32>,
    /// [`CHECKPOINT_BYTES`] in pages of this file.
    due_frames: u32,
    /// [`HARD_CAP_BYTES`] in pages of this file.
    cap_frames: u32,
    /// The log's size in pages at the last checkpoint, if that checkpoint
    /// could not copy all of it (a reader held pages back); 0 if it could.
    held: Arc<AtomicU32>,
    /// A checkpoint was asked for and has not finished.
    running: Arc<AtomicBool>,
    /// The last checkpoint found a reader holding pages back.
    reader: Arc<AtomicBool>,
}

impl Wal {
    /// Turns SQLite's automatic checkpoint off and installs ours on `conn`
    /// (in WAL mode), for a file of `page_size`-byte pages.
    pub fn install(conn: &mut Connection, page_size: u32) -> rusqlite::Result<Wal> {
        let page_size = page_size.max(512);
        let cap_frames = HARD_CAP_BYTES / page_size;
        conn.pragma_update(None, "journal_size_limit", i64::from(HARD_CAP_BYTES))?;
        let mut chunk = GROW_BYTES as i32;
        conn.file_control(None::<&str>, FileControl::ChunkSize(&mut chunk))?;
        let frames = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&frames);
        // Replaces SQLite's automatic checkpoint (which is itself this hook).
        conn.wal_hook(Some(move |wal: &mut SqliteWal, pages: i32| {
            let mut pages = pages.max(0) as u32;
            if pages >= cap_frames {
                // An error here is ignored, as SQLite's own hook does: the
                // commit has happened, and the log is simply not shortened.
                if let Ok((log, done)) = wal.checkpoint_v2(CheckpointMode::PASSIVE) {
                    pages = pages_left(log, done);
                }
            }
            seen.store(pages, Ordering::Relaxed);
            Ok(())
        }))?;
        Ok(Wal {
            frames,
            due_frames: (CHECKPOINT_BYTES / page_size).max(1),
            cap_frames,
            held: Arc::new(AtomicU32::new(0)),
            running: Arc::new(AtomicBool::new(false)),
            reader: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The log holds [`CHECKPOINT_BYTES`] or more; if a reader held the
    /// last checkpoint back, [`CHECKPOINT_BYTES`] more than it held then
    /// (a smaller log means it was copied and started again since).
    /// Never while a checkpoint runs.
    pub fn due(&self) -> bool {
        self.grown_by(self.due_frames)
    }

    /// The log did not start again for [`OVERDUE_CHECKPOINTS`] checkpoints'
    /// worth of pages: the helper's checkpoints never found a moment with
    /// no commit coming (see [`Wal::checkpoint`]). The loop then runs one
    /// itself, between two commits, so that the next one starts the log
    /// again: the log stays bounded whatever the load, at the price of
    /// the old pause now and then.
    /// Not while a reader holds pages back: a checkpoint of the loop could
    /// not copy them either.
    /// If the helper's checkpoint runs still when the log reaches
    /// [`HARD_CAP_BYTES`], the loop waits for it to end (see [`Wal::wait`]):
    /// the log's bound holds even on a disk slower than the commits.
    pub fn overdue(&self) -> bool {
        let pages = self.due_frames.saturating_mul(OVERDUE_CHECKPOINTS);
        let frames = self.frames();
        if self.reader.load(Ordering::Relaxed) || frames < pages {
            return false;
        }
        !self.running.load(Ordering::Acquire) || frames >= self.cap_frames.max(pages)
    }

    /// Waits until no checkpoint runs (at most `limit`).
    pub fn wait(&self, limit: std::time::Duration) {
        let until = std::time::Instant::now() + limit;
        while self.running.load(Ordering::Acquire) && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }

    /// No checkpoint runs, and the log holds `pages` more than a reader
    /// held back at the last checkpoint (or than nothing, if it was all
    /// copied or started again since).
    fn grown_by(&self, pages: u32) -> bool {
        if self.running.load(Ordering::Acquire) {
            return false;
        }
        let frames = self.frames();
        match self.held.load(Ordering::Relaxed) {
            held if held > 0 && frames >= held => frames >= held.saturating_add(pages),
            _ => frames >= pages,
        }
    }

    /// Marks a checkpoint as asked for; `false` if one is running already.
    /// [`Wal::checkpoint`] ends the mark.
    pub fn begin(&self) -> bool {
        !self.running.swap(true, Ordering::AcqRel)
    }

    /// Pages in the log (0 once a checkpoint has copied all of them).
    pub fn frames(&self) -> u32 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Copies the log into the main file (syncing both), as far as readers
    /// allow, without waiting for them. `conn` may be any connection to
    /// the file (the helper thread's). The log starts again at the first
    /// commit that finds all of it copied; while the loop commits during a
    /// checkpoint (it may: see `store::sync`), that is not so when it ends,
    /// so it copies what came meanwhile too, up to [`CATCH_UP`] times, to
    /// end at a moment when nothing is left.
    pub fn checkpoint(&self, conn: &Connection) -> rusqlite::Result<()> {
        let mut result = Ok(());
        for _ in 0..CATCH_UP {
            match conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
                Err(e) => {
                    result = Err(e);
                    break;
                }
                Ok((log, done)) if self.copied(log, done) => break,
                Ok(_) => {}
            }
        }
        self.running.store(false, Ordering::Release);
        result
    }

    /// Takes in a checkpoint's outcome; `true` if there is no point in
    /// another (all copied and nothing new, or a reader holds pages back).
    fn copied(&self, log: i32, done: i32) -> bool {
        let (log, done) = (log.max(0) as u32, done.max(0) as u32);
        self.reader.store(done < log, Ordering::Relaxed);
        if done < log {
            self.held.store(log, Ordering::Relaxed);
            return true;
        }
        if self.frames() <= log {
            self.frames.store(0, Ordering::Relaxed);
            self.held.store(0, Ordering::Relaxed);
            return true;
        }
        // Commits came while it ran: they are new pages of the same log.
        self.held.store(log, Ordering::Relaxed);
        false
    }
}

/// The log's size in pages after a checkpoint that copied `done` of its
/// `log` pages: none if it copied all (the next commit starts the log
/// again), else all of them (a reader held some back, and the next commit
/// appends to the log).
fn pages_left(log: i32, done: i32) -> u32 {
    if done >= log { 0 } else { log.max(0) as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_of_4k_pages(frames: u32, running: bool) -> Wal {
        Wal {
            frames: Arc::new(AtomicU32::new(frames)),
            due_frames: CHECKPOINT_BYTES / 4096,
            cap_frames: HARD_CAP_BYTES / 4096,
            held: Arc::new(AtomicU32::new(0)),
            running: Arc::new(AtomicBool::new(running)),
            reader: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The loop checkpoints itself from 4 MiB of log if no checkpoint of
    /// the helper's runs, and waits for a running one only at the cap.
    #[test]
    fn the_loop_waits_for_the_helper_only_at_the_hard_cap() {
        let overdue_frames = OVERDUE_CHECKPOINTS * CHECKPOINT_BYTES / 4096;
        let cap_frames = HARD_CAP_BYTES / 4096;
        assert!(!wal_of_4k_pages(overdue_frames - 1, false).overdue());
        assert!(wal_of_4k_pages(overdue_frames, false).overdue());
        assert!(!wal_of_4k_pages(overdue_frames, true).overdue());
        assert!(!wal_of_4k_pages(2 * overdue_frames, true).overdue());
        assert!(!wal_of_4k_pages(cap_frames - 1, true).overdue());
        assert!(wal_of_4k_pages(cap_frames, true).overdue());
    }

    /// See the module doc, "Two connections, one log": 3.51.3, or 3.53.0
    /// and later (3.52.0 was withdrawn without the fix).
    #[test]
    fn the_built_in_sqlite_has_the_wal_reset_fix() {
        let version = rusqlite::version_number();
        let fixed = (3_051_003..3_052_000).contains(&version) || version >= 3_053_000;
        assert!(
            fixed,
            "SQLite {} has the WAL-reset bug",
            rusqlite::version()
        );
    }
}

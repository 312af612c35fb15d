//! The store's helper thread: it syncs the write-ahead log within
//! `--sync-ms` of a commit (the power-loss window) and runs the log's
//! checkpoints, on its own SQLite connection, so that neither waits for
//! the disk inside the poll loop.
//!
//! **Syncs.** A commit is a `write()` to the log (`synchronous=NORMAL`): a
//! crash of the process loses nothing, but a power loss (or a kernel crash)
//! loses whatever the disk had not been told to keep. SQLite alone syncs
//! the log only at a checkpoint, so on a quiet server a commit could wait
//! for a sync for hours. Here every commit is synced within a bound:
//!
//! - **`--sync-ms N` (N > 0, default 1000):** the loop tells the helper
//!   after each commit (a channel send); the helper syncs the log
//!   (`fdatasync` of `FILE-wal`) at once if its last sync began `N` ms ago
//!   or more, else when that is the case. So a commit is on the disk at most
//!   `N` ms (plus the sync's own time) after it was made, and a busy server
//!   syncs at most once per `N` ms whatever its commit rate (the idea of
//!   Redis' `appendfsync everysec`). The loop never waits for it.
//! - **`--sync-ms 0`:** the loop syncs the log itself after each turn's
//!   commit, before that turn's output is written, like SQLite's
//!   `synchronous=FULL` (or PostgreSQL's `synchronous_commit=on`): what a
//!   client saw survives a power loss too. Each turn that committed then
//!   waits for the disk.
//!
//! `fdatasync` through a descriptor of our own flushes what any descriptor
//! wrote to the file: the kernel keeps one page cache per file. The log is
//! opened once it exists and kept open (SQLite overwrites it in place; it
//! removes it only when the last connection closes).
//!
//! **Checkpoints.** When the log is due for one ([`super::wal`]), the loop
//! marks it running and sends a job; the helper runs a `PASSIVE`
//! checkpoint on its own connection (which syncs the log, copies it into
//! the main file and syncs that), and clears the mark. SQLite lets a
//! checkpoint run beside the one writer: the loop's commits go on
//! meanwhile, appending to the log, and are never refused for it. The
//! first commit after a checkpoint that copied everything starts the log
//! again; that commit (on the loop) syncs the log's new header, one small
//! sync per [`super::wal::CHECKPOINT_BYTES`] of log, which SQLite needs to
//! tell the new log from the old after a power loss.
//!
//! Only the loop thread touches sockets and the chat state; the helper
//! owns its connection, the log's descriptor and nothing else, and hears
//! from the loop only through the channel.
//!
//! [`SyncPolicy`] is the rule, without threads or clocks of its own (tested
//! directly); [`Helper`] runs it on its thread.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::wal::Wal;

/// The default of `--sync-ms`.
pub const DEFAULT_SYNC_MS: u64 = 1000;

/// When unsynced commits are synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncEvery {
    /// After each commit, before the turn's output (`--sync-ms 0`).
    Commit,
    /// Within this long of a commit, on the helper thread.
    Within(Duration),
}

impl SyncEvery {
    /// The setting for `--sync-ms ms`.
    pub fn from_millis(ms: u64) -> Self {
        match ms {
            0 => SyncEvery::Commit,
            ms => SyncEvery::Within(Duration::from_millis(ms)),
        }
    }
}

/// What the sync thread does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing is unsynced: wait for the next commit, however long.
    Idle,
    /// Sync now.
    Sync,
    /// Sync at this instant (unless told more before).
    At(Instant),
}

/// The rule of `--sync-ms N`: sync at once unless the last sync began less
/// than `N` ago, then at `N` after it.
#[derive(Debug, Clone)]
pub struct SyncPolicy {
    interval: Duration,
    last_sync: Option<Instant>,
    unsynced: bool,
}

impl SyncPolicy {
    /// Syncs at most once per `interval`, and within `interval` of a commit.
    pub fn new(interval: Duration) -> Self {
        SyncPolicy {
            interval,
            last_sync: None,
            unsynced: false,
        }
    }

    /// A commit was made (its `write()` returned).
    pub fn committed(&mut self) {
        self.unsynced = true;
    }

    /// A sync began at `started`; every commit reported before it is covered.
    pub fn synced(&mut self, started: Instant) {
        self.last_sync = Some(started);
        self.unsynced = false;
    }

    /// What to do at `now`.
    pub fn next(&self, now: Instant) -> Next {
        if !self.unsynced {
            return Next::Idle;
        }
        match self.last_sync.map(|last| last + self.interval) {
            Some(due) if due > now => Next::At(due),
            _ => Next::Sync,
        }
    }
}

/// Syncs and checkpoints done and their time, and the syncs that failed,
/// shared with the loop for `/metrics` and `/healthz`.
#[derive(Debug, Default)]
pub struct SyncStats {
    syncs: AtomicU64,
    micros: AtomicU64,
    checkpoints: AtomicU64,
    checkpoint_micros: AtomicU64,
    loop_checkpoints: AtomicU64,
    loop_checkpoint_micros: AtomicU64,
    failures: AtomicU64,
    /// Every sync fails, as on a failing disk (the tests' switch).
    fail: AtomicBool,
}

impl SyncStats {
    /// Syncs of the log that failed so far (the disk said no: what was
    /// committed since the last good one may be lost at a power loss).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Makes every sync fail (`true`), as a failing disk would, or work
    /// again. For the tests and the simulation.
    pub fn fail_syncs(&self, fail: bool) {
        self.fail.store(fail, Ordering::Relaxed);
    }

    /// Syncs of the log so far (`wsrooms_store_syncs_total`).
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Their time in all, in microseconds.
    pub fn micros(&self) -> u64 {
        self.micros.load(Ordering::Relaxed)
    }

    /// Checkpoints so far (`wsrooms_checkpoints_total`).
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }

    /// Their time in all, in microseconds.
    pub fn checkpoint_micros(&self) -> u64 {
        self.checkpoint_micros.load(Ordering::Relaxed)
    }

    /// Of those, the checkpoints the poll loop ran itself, waiting for the
    /// disk (`wsrooms_loop_checkpoints_total`; see `Wal::overdue`).
    pub fn loop_checkpoints(&self) -> u64 {
        self.loop_checkpoints.load(Ordering::Relaxed)
    }

    /// Their time in all, in microseconds.
    pub fn loop_checkpoint_micros(&self) -> u64 {
        self.loop_checkpoint_micros.load(Ordering::Relaxed)
    }

    /// A checkpoint of the poll loop's own ran for `took` (counted in
    /// [`SyncStats::checkpoints`] too).
    pub fn count_loop_checkpoint(&self, took: Duration) {
        self.count_checkpoint(took);
        self.loop_checkpoints.fetch_add(1, Ordering::Relaxed);
        self.loop_checkpoint_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// A checkpoint ran for `took`.
    pub fn count_checkpoint(&self, took: Duration) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.checkpoint_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    fn count(&self, took: Duration) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// The data file's write-ahead log, opened once it exists, for `fdatasync`.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Option<File>,
}

impl LogFile {
    /// The log of the database at `db` (`FILE-wal`); not opened yet.
    pub fn beside(db: &Path) -> Self {
        let mut path = db.as_os_str().to_owned();
        path.push("-wal");
        LogFile {
            path: PathBuf::from(path),
            file: None,
        }
    }

    /// Syncs the log's data to the disk, counting it in `stats` (or its
    /// failure). A log that does not exist holds nothing to sync.
    pub fn sync(&mut self, stats: &SyncStats) -> io::Result<()> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(file) => self.file = Some(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        let Some(file) = self.file.as_ref() else {
            return Ok(());
        };
        let started = Instant::now();
        let result = match stats.fail.load(Ordering::Relaxed) {
            true => Err(io::Error::other("sync failed (simulated)")),
            false => file.sync_data(),
        };
        match &result {
            Ok(()) => stats.count(started.elapsed()),
            Err(_) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }
}

/// What the loop tells the helper.
#[derive(Debug)]
enum Job {
    /// A commit was made.
    Committed,
    /// The log is due for a checkpoint (already marked running).
    Checkpoint,
}

/// What the helper owns.
struct Work {
    log: LogFile,
    /// The helper's own connection to the file, for checkpoints.
    conn: Connection,
    wal: Wal,
    /// `None` with `--sync-ms 0` (the loop syncs).
    policy: Option<SyncPolicy>,
    stats: Arc<SyncStats>,
}

/// The helper thread. Dropping it syncs what is left and joins the thread.
#[derive(Debug)]
pub struct Helper {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Helper {
    /// Starts the thread: it syncs `log` as `every` says and checkpoints
    /// on `conn` (a connection of its own to the same file).
    pub fn start(
        log: LogFile,
        conn: Connection,
        wal: Wal,
        every: SyncEvery,
        stats: Arc<SyncStats>,
    ) -> io::Result<Self> {
        let policy = match every {
            SyncEvery::Commit => None,
            SyncEvery::Within(interval) => Some(SyncPolicy::new(interval)),
        };
        let work = Work {
            log,
            conn,
            wal,
            policy,
            stats,
        };
        let (jobs, inbox) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("wsrooms-store".into())
            .spawn(move || run(inbox, work))?;
        Ok(Helper {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// A commit was made: it will be synced within the interval.
    pub fn committed(&self) {
        self.send(Job::Committed);
    }

    /// Runs a checkpoint (the caller has marked it running: `Wal::begin`).
    pub fn checkpoint(&self) {
        self.send(Job::Checkpoint);
    }

    fn send(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            // Fails only if the thread is gone (it never exits first).
            let _ = jobs.send(job);
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.jobs = None; // the thread syncs what is left and returns
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The helper: waits for jobs and syncs as the policy says. When the
/// loop's side is dropped it syncs anything unsynced and returns.
fn run(inbox: Receiver<Job>, mut work: Work) {
    loop {
        let next = work.next();
        let received = match next {
            Next::Idle => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Next::At(due) => inbox.recv_timeout(due.saturating_duration_since(Instant::now())),
            Next::Sync => Err(RecvTimeoutError::Timeout),
        };
        match received {
            Ok(job) => work.take(job),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                if work.next() != Next::Idle {
                    work.sync();
                }
                return;
            }
        }
        // Everything already sent is covered by the sync about to start.
        while let Ok(job) = inbox.try_recv() {
            work.take(job);
        }
        if work.next() == Next::Sync {
            work.sync();
        }
    }
}

impl Work {
    fn next(&self) -> Next {
        self.policy
            .as_ref()
            .map_or(Next::Idle, |p| p.next(Instant::now()))
    }

    fn take(&mut self, job: Job) {
        match job {
            Job::Committed => {
                if let Some(policy) = self.policy.as_mut() {
                    policy.committed();
                }
            }
            Job::Checkpoint => self.checkpoint(),
        }
    }

    /// A failure is only logged (at debug: it repeats while the disk is
    /// full); nothing committed is lost, the log just grows until commits
    /// fail too, which the loop reports.
    fn checkpoint(&mut self) {
        let started = Instant::now();
        let result = self.wal.checkpoint(&self.conn);
        self.stats.count_checkpoint(started.elapsed());
        if let Err(e) = result {
            log::debug!("data file checkpoint failed: {e}");
        }
    }

    fn sync(&mut self) {
        let Some(policy) = self.policy.as_mut() else {
            return;
        };
        let started = Instant::now();
        match self.log.sync(&self.stats) {
            Ok(()) => policy.synced(started),
            Err(e) => {
                // Tried again after the interval; counted in the stats,
                // which the loop reports (logged once per outage there).
                log::debug!("syncing the data file's log failed: {e}");
                policy.synced(started);
                policy.committed();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_commit_is_synced_at_once() {
        let mut p = SyncPolicy::new(Duration::from_secs(1));
        let now = Instant::now();
        assert_eq!(p.next(now), Next::Idle);
        p.committed();
        assert_eq!(p.next(now), Next::Sync);
    }

    #[test]
    fn commits_soon_after_a_sync_wait_for_the_interval_and_no_longer() {
        let second = Duration::from_secs(1);
        let mut p = SyncPolicy::new(second);
        let t0 = Instant::now();
        p.committed();
        p.synced(t0);
        assert_eq!(p.next(t0), Next::Idle, "nothing left unsynced");
        p.committed();
        let soon = t0 + Duration::from_millis(10);
        assert_eq!(p.next(soon), Next::At(t0 + second));
        assert_eq!(p.next(t0 + second), Next::Sync);
    }

    #[test]
    fn a_commit_after_a_quiet_time_is_synced_at_once() {
        let mut p = SyncPolicy::new(Duration::from_millis(200));
        let t0 = Instant::now();
        p.synced(t0);
        p.committed();
        assert_eq!(p.next(t0 + Duration::from_secs(3600)), Next::Sync);
    }

    #[test]
    fn zero_means_every_commit() {
        assert_eq!(SyncEvery::from_millis(0), SyncEvery::Commit);
        assert_eq!(
            SyncEvery::from_millis(5),
            SyncEvery::Within(Duration::from_millis(5))
        );
    }

    #[test]
    fn the_thread_syncs_a_commit_and_what_is_left_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let mut conn = Connection::open(&db).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        let wal = Wal::install(&mut conn, 4096).unwrap();
        let stats = Arc::new(SyncStats::default());
        let helper = Helper::start(
            LogFile::beside(&db),
            Connection::open(&db).unwrap(),
            wal.clone(),
            SyncEvery::Within(Duration::from_secs(3600)),
            Arc::clone(&stats),
        )
        .unwrap();
        helper.committed();
        let deadline = Instant::now() + Duration::from_secs(10);
        while stats.syncs() == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(stats.syncs(), 1, "the first commit is synced at once");
        assert!(wal.begin());
        helper.checkpoint();
        helper.committed(); // within the hour: waits, until the drop
        drop(helper);
        assert_eq!(stats.syncs(), 2, "dropping syncs what is left");
        assert_eq!(stats.checkpoints(), 1);
        assert!(wal.begin(), "the checkpoint ended its mark");
    }
}

//! Copies of a data file: `wsrooms backup` (a consistent copy of a file a
//! server may be using) and `wsrooms restore` (putting a copy back, with a
//! new epoch). The command line around them is `admin_cli`.
//!
//! **Backup.** SQLite's online backup API, reading the file in one read
//! transaction: the copy is the file as it was when the backup began,
//! whatever the server commits meanwhile (the server's commits go on
//! undisturbed: in write-ahead-log mode a reader never blocks the writer).
//! The pages are copied [`STEP_PAGES`] at a time with a [`STEP_PAUSE`]
//! between steps, so that the copy does not take a whole core and the disk
//! from the server. While the backup's transaction lasts the server's log
//! cannot be copied into the main file past the backup's snapshot, so it
//! grows by what is committed meanwhile (see `store::wal`). The copy is
//! written to a temporary file beside COPY (mode 0600: it holds the
//! conversations), synced, and renamed into place: a COPY is never half
//! written. A COPY that is replaced (`--force`) must not be in use by a
//! wsrooms (its lock is taken), and the `-wal`, `-shm` and `-journal` left
//! beside it go with it: they are the old COPY's, and SQLite would replay
//! them into the new one.
//!
//! **Restore.** Refuses a FILE that is neither missing, empty nor a
//! wsrooms database (a wrong path, or a link to another program's file,
//! is not replaced). Takes the data file's lock (so no server runs on it,
//! and none starts meanwhile), checks that COPY is a wsrooms database this
//! binary can open, copies it into a temporary file beside FILE, checks
//! it (SQLite's `quick_check`: a damaged copy is refused), brings it
//! to the current schema, gives it a new random epoch and the owner of the
//! file it replaces (a restore run as root for a service's file leaves a
//! file the service can open), syncs it, and renames it over FILE. FILE's
//! `-wal`, `-shm` and `-journal` belong to the file being replaced (SQLite
//! would apply them to the new one): they are moved aside first, removed
//! once the new file is in place, and put back if the rename fails, so a
//! failed restore leaves FILE with its log as it was. The epoch is what
//! tells pages that the `seq`s they saw may now be given to other messages.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::file::{self, Found, OpenError, side_path};
use super::lock::{FileLock, resolved};
use super::schema::{self, SCHEMA_VERSION};

/// Pages copied per step of a backup (1 MiB of 4 KiB pages).
pub const STEP_PAGES: i32 = 256;

/// The pause between two steps of a backup.
pub const STEP_PAUSE: Duration = Duration::from_millis(2);

/// How long a backup's connection waits for a lock SQLite holds for a
/// moment (opening its read transaction while the server starts the log
/// again). It is not the server's connection: the server never waits.
pub const READER_BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Steps in a row that may find a lock busy before a copy gives up
/// (about two seconds of [`STEP_PAUSE`]s).
pub const BUSY_STEPS: u32 = 1000;

/// How far a copy has got: pages copied of all pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Pages copied so far.
    pub done: u64,
    /// Pages in the file.
    pub total: u64,
}

/// What a finished copy wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Pages in the copy.
    pub pages: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// The copy's epoch (a file older than schema version 3 has none yet).
    pub epoch: Option<u64>,
    /// The epoch the source had, for a restore (its replacement is `epoch`).
    pub old_epoch: Option<u64>,
}

/// Why a backup or a restore did not happen. It is printed as one line,
/// and the command exits with status 2; nothing was replaced.
#[derive(Debug)]
pub enum CopyError {
    /// The data file or the copy is not a wsrooms database this binary can
    /// use, or is in use (the same refusals as the server's at start).
    Refused(OpenError),
    /// COPY exists and `--force` was not given.
    Exists {
        /// The copy's path.
        path: PathBuf,
    },
    /// COPY exists and is not a regular file (a directory, a device such
    /// as `/dev/null`, a FIFO, a socket): `--force` replaces files only.
    NotAFile {
        /// The copy's path.
        path: PathBuf,
    },
    /// COPY is the data file itself, or one of the files SQLite or the
    /// lock keep beside it: replacing it would damage the data file.
    SameFile {
        /// The copy's path.
        path: PathBuf,
    },
    /// SQLite's `quick_check` found the copy to restore damaged.
    Damaged {
        /// The copy's path.
        path: PathBuf,
        /// The first thing `quick_check` said.
        why: String,
    },
    /// The source is empty: there is nothing to copy.
    Empty {
        /// Its path.
        path: PathBuf,
    },
    /// Reading, writing or renaming failed.
    Io {
        /// What was being done, with the path.
        what: String,
        /// What the system said.
        error: io::Error,
    },
    /// SQLite failed while copying.
    Sqlite {
        /// What was being done, with the path.
        what: String,
        /// What SQLite said.
        error: rusqlite::Error,
    },
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyError::Refused(e) => write!(f, "{e}"),
            CopyError::Exists { path } => write!(
                f,
                "{path:?} exists; refusing to overwrite it (give --force to replace it)"
            ),
            CopyError::NotAFile { path } => write!(
                f,
                "{path:?} exists and is not a regular file; refusing to replace it"
            ),
            CopyError::SameFile { path } => write!(
                f,
                "{path:?} is the data file or one of the files beside it; refusing to overwrite it"
            ),
            CopyError::Damaged { path, why } => {
                let why = why.replace(['\n', '\r'], " ");
                write!(f, "{path:?} is damaged ({why}); refusing to restore it")
            }
            CopyError::Empty { path } => write!(f, "{path:?} is empty: nothing to copy"),
            CopyError::Io { what, error } => write!(f, "{what}: {error}"),
            CopyError::Sqlite { what, error } => {
                let error = error.to_string().replace(['\n', '\r'], " ");
                write!(f, "{what}: {error}")
            }
        }
    }
}

impl std::error::Error for CopyError {}

impl From<OpenError> for CopyError {
    fn from(e: OpenError) -> Self {
        CopyError::Refused(e)
    }
}

fn io_error(what: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> CopyError {
    move |error| CopyError::Io {
        what: what(),
        error,
    }
}

fn sqlite_error(what: impl FnOnce() -> String) -> impl FnOnce(rusqlite::Error) -> CopyError {
    move |error| CopyError::Sqlite {
        what: what(),
        error,
    }
}

/// Copies the data file `from` (a server may be using it) to `to`, calling
/// `progress` after every step. Refuses an existing `to` unless `force`.
pub fn backup(
    from: &Path,
    to: &Path,
    force: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Copied, CopyError> {
    source_is_ours(from)?;
    if is_part_of(to, from) {
        return Err(CopyError::SameFile { path: to.into() });
    }
    let exists = fs::symlink_metadata(to).is_ok();
    if !force && exists {
        return Err(CopyError::Exists { path: to.into() });
    }
    // Checked before anything is created beside it (the lock, the
    // temporary copy): a link to a regular file is one.
    if exists && !fs::metadata(to).is_ok_and(|m| m.is_file()) {
        return Err(CopyError::NotAFile { path: to.into() });
    }
    // A COPY being replaced must not be a file some wsrooms is using.
    let _lock = match exists {
        true => Some(FileLock::acquire(to)?),
        false => None,
    };
    let temp = temp_beside(to, &format!("backup-{}", std::process::id()));
    let result = backup_into(from, &temp, progress).and_then(|copied| {
        // A log or journal left beside COPY (a server or `sqlite3` that once
        // used an earlier COPY and was killed) belongs to that file: SQLite
        // would replay it into the new copy.
        install_over(&temp, to)?;
        Ok(copied)
    });
    if result.is_err() {
        remove_with_journal(&temp);
    }
    result
}

/// Puts the copy `copy` in place of the data file `file` (a server must
/// not be running on it), with a new epoch.
pub fn restore(
    copy: &Path,
    file: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Copied, CopyError> {
    // The file itself, not a link to it: SQLite keeps the side files
    // beside it, and the link stays a link.
    let file = &resolved(file);
    // Only a wsrooms file (or none) is replaced: not another program's
    // file that a wrong --data-file, or a link, names.
    file::replaceable(file)?;
    // Before the lock is made: a missing or foreign COPY leaves nothing.
    source_is_ours(copy)?;
    let lock = FileLock::acquire(file)?;
    let owner = owner_for(file)?;
    give_owner(lock.path(), owner)?;
    let temp = temp_beside(file, "restore");
    // Holding the lock, a temporary file there is left over from a restore
    // that was interrupted: nobody else uses it.
    remove_with_journal(&temp);
    let result = restore_into(copy, &temp, progress).and_then(|copied| {
        give_owner(&temp, owner)?;
        install_over(&temp, file)?;
        Ok(copied)
    });
    if result.is_err() {
        remove_with_journal(&temp);
    }
    result
}

/// `path` is the data file `file` (by inode, whatever the spelling) or
/// one of its side files (by name).
fn is_part_of(path: &Path, file: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let same_inode = match (fs::metadata(path), fs::metadata(file)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    };
    let (path, base) = (resolved(path), resolved(file));
    let side = ["-wal", "-shm", "-journal", super::lock::LOCK_SUFFIX]
        .iter()
        .any(|suffix| same_place(&path, &side_path(&base, suffix)));
    same_inode || side
}

/// Do two resolved paths name one place, file or not? The same name in
/// the same directory, the directories compared as files (device and
/// inode), so that a bind mount of a directory is that directory too.
fn same_place(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if a == b {
        return true;
    }
    let (Some(dir_a), Some(dir_b)) = (a.parent(), b.parent()) else {
        return false;
    };
    match (fs::metadata(dir_a), fs::metadata(dir_b)) {
        (Ok(x), Ok(y)) => {
            (x.dev(), x.ino()) == (y.dev(), y.ino()) && a.file_name() == b.file_name()
        }
        _ => false,
    }
}

/// The source must be a non-empty wsrooms database this binary knows.
fn source_is_ours(path: &Path) -> Result<(), CopyError> {
    if fs::symlink_metadata(path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        return Err(CopyError::Io {
            what: format!("reading {path:?}"),
            error: io::Error::new(io::ErrorKind::NotFound, "there is no such file"),
        });
    }
    match file::recognise(path)? {
        Found::Empty => Err(CopyError::Empty { path: path.into() }),
        Found::Ours { .. } => Ok(()),
    }
}

/// `DIR/.NAME.KIND` beside `path` (hidden). A backup's KIND names its
/// process (two backups to one COPY do not share it); a restore's needs
/// not: it holds the data file's lock.
fn temp_beside(path: &Path, kind: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{kind}"))
}

/// Copies `from` into a new file `temp` (mode 0600) in one read
/// transaction of `from`.
fn backup_into(
    from: &Path,
    temp: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Copied, CopyError> {
    let source = open_reader(from)?;
    // One read transaction for the whole copy: one snapshot, so the
    // server's commits meanwhile neither change the copy nor restart it.
    let what = || format!("reading {from:?}");
    source.execute_batch("BEGIN").map_err(sqlite_error(what))?;
    let epoch = epoch_of(&source).map_err(sqlite_error(what))?;
    let mut dest = create_dest(temp)?;
    let pages = copy_pages(&source, &mut dest, progress)
        .map_err(sqlite_error(|| format!("copying {from:?} to {temp:?}")))?;
    source.execute_batch("COMMIT").map_err(sqlite_error(what))?;
    drop(dest);
    let bytes = sync(temp)?;
    Ok(Copied {
        pages,
        bytes,
        epoch,
        old_epoch: None,
    })
}

/// Copies `copy` into a new file `temp`, brings it to this binary's schema
/// and gives it a new epoch.
fn restore_into(
    copy: &Path,
    temp: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Copied, CopyError> {
    let source = open_reader(copy)?;
    let old_epoch = epoch_of(&source).map_err(sqlite_error(|| format!("reading {copy:?}")))?;
    let mut dest = create_dest(temp)?;
    let pages = copy_pages(&source, &mut dest, progress)
        .map_err(sqlite_error(|| format!("copying {copy:?} to {temp:?}")))?;
    drop(source);
    let verdict: String = dest
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(sqlite_error(|| format!("checking {temp:?}")))?;
    if verdict != "ok" {
        return Err(CopyError::Damaged {
            path: copy.into(),
            why: verdict,
        });
    }
    let epoch = renew(temp, &mut dest, old_epoch)?;
    drop(dest);
    let bytes = sync(temp)?;
    Ok(Copied {
        pages,
        bytes,
        epoch: Some(epoch),
        old_epoch,
    })
}

/// A connection that only reads `path`: never creating it, waiting a
/// little for SQLite's short locks.
fn open_reader(path: &Path) -> Result<Connection, CopyError> {
    let what = || format!("opening {path:?}");
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(file::sqlite_name(path), flags).map_err(sqlite_error(what))?;
    conn.busy_timeout(READER_BUSY_TIMEOUT)
        .map_err(sqlite_error(what))?;
    Ok(conn)
}

/// The epoch of a file, if its schema has one.
fn epoch_of(conn: &Connection) -> rusqlite::Result<Option<u64>> {
    let version: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version < 3 {
        return Ok(None);
    }
    schema::epoch(conn).map(Some)
}

/// Creates `path` (mode 0600, failing if it exists) and opens it as the
/// destination of a copy: no journal and no syncs while it is written (a
/// copy that fails is removed; the finished one is synced by [`sync`]).
fn create_dest(path: &Path) -> Result<Connection, CopyError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(|| format!("creating {path:?}")))?;
    let what = || format!("opening {path:?}");
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(file::sqlite_name(path), flags).map_err(sqlite_error(what))?;
    conn.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF")
        .map_err(sqlite_error(what))?;
    Ok(conn)
}

/// Runs the backup API from `source` to `dest`, [`STEP_PAGES`] at a time.
fn copy_pages(
    source: &Connection,
    dest: &mut Connection,
    progress: &mut dyn FnMut(Progress),
) -> rusqlite::Result<u64> {
    let backup = Backup::new(source, dest)?;
    let mut busy = 0;
    loop {
        let step = backup.step(STEP_PAGES)?;
        busy = match step {
            StepResult::Busy | StepResult::Locked => busy + 1,
            _ => 0,
        };
        if busy > BUSY_STEPS {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                Some("the file stayed locked".into()),
            ));
        }
        let p = backup.progress();
        let total = p.pagecount.max(0) as u64;
        progress(Progress {
            done: total.saturating_sub(p.remaining.max(0) as u64),
            total,
        });
        match step {
            StepResult::Done => return Ok(total),
            // More pages, or a lock held for a moment: go on after a pause.
            _ => std::thread::sleep(STEP_PAUSE),
        }
    }
}

/// Brings the restored copy to this binary's schema (a copy from an older
/// wsrooms) and draws its new epoch, different from the copy's. Leaves it
/// with a rollback journal, so that no log of it is left beside it.
fn renew(temp: &Path, dest: &mut Connection, old: Option<u64>) -> Result<u64, CopyError> {
    let version = file::check(temp, dest, Found::Ours { version: 0 })?;
    let what = || format!("updating {temp:?}");
    dest.execute_batch("PRAGMA journal_mode=DELETE")
        .map_err(sqlite_error(what))?;
    if version < SCHEMA_VERSION {
        schema::migrate(dest, version, schema::STEPS).map_err(sqlite_error(what))?;
    }
    let epoch = new_epoch(old).map_err(io_error(what))?;
    schema::set_epoch(dest, epoch).map_err(sqlite_error(what))?;
    Ok(epoch)
}

/// A random epoch other than `old`.
pub fn new_epoch(old: Option<u64>) -> io::Result<u64> {
    loop {
        let epoch = getrandom::u64().map_err(|e| io::Error::other(e.to_string()))?;
        if Some(epoch) != old {
            return Ok(epoch);
        }
    }
}

/// Who should own the restored file: the owner of the file it replaces,
/// else of its directory. (Run as root for a service's file, a restore
/// must not leave a file the service cannot open.)
fn owner_for(file: &Path) -> Result<(u32, u32), CopyError> {
    use std::os::unix::fs::MetadataExt;
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let meta = fs::metadata(file)
        .or_else(|_| fs::metadata(dir))
        .map_err(io_error(|| format!("reading {dir:?}")))?;
    Ok((meta.uid(), meta.gid()))
}

/// Gives `path` the owner and group `owner`, if it has others. A symbolic
/// link put in its place is given them itself, never the file it points
/// to: the directory belongs to the service's user, who could otherwise
/// have a restore run as root hand it any file of the system.
fn give_owner(path: &Path, (uid, gid): (u32, u32)) -> Result<(), CopyError> {
    use std::os::unix::fs::MetadataExt;
    let what = || format!("giving {path:?} the owner {uid}:{gid}");
    let meta = fs::symlink_metadata(path).map_err(io_error(what))?;
    if (meta.uid(), meta.gid()) == (uid, gid) {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io_error(what))
}

/// Syncs a finished copy to disk; returns its size.
fn sync(path: &Path) -> Result<u64, CopyError> {
    let what = || format!("syncing {path:?}");
    let file = File::open(path).map_err(io_error(what))?;
    file.sync_all().map_err(io_error(what))?;
    Ok(file.metadata().map_err(io_error(what))?.len())
}

/// The files SQLite keeps beside a database.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Renames `temp` over `path`, whose `-wal`, `-shm` and `-journal` belong
/// to the file being replaced (SQLite would replay them into the new one;
/// the caller holds its lock, so no server has it open). They are first
/// moved aside (`.NAME-wal.aside`), removed once the new file is in place,
/// and put back if it could not be (a file mounted on its own refuses the
/// rename): a failed install leaves the old file with its log, as it was.
fn install_over(temp: &Path, path: &Path) -> Result<(), CopyError> {
    let mut moved = Vec::new();
    for suffix in SIDE_FILES {
        let (side, aside) = side_and_aside(path, suffix);
        match fs::rename(&side, &aside) {
            Ok(()) => moved.push((side, aside)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                put_back(&moved);
                return Err(io_error(|| format!("moving {side:?} aside"))(e));
            }
        }
    }
    if let Err(e) = install(temp, path) {
        put_back(&moved);
        return Err(e);
    }
    for suffix in SIDE_FILES {
        let _ = fs::remove_file(side_and_aside(path, suffix).1);
    }
    Ok(())
}

/// `FILE-wal` and the hidden name it is moved aside to.
fn side_and_aside(file: &Path, suffix: &str) -> (PathBuf, PathBuf) {
    let side = side_path(file, suffix);
    let aside = temp_beside(&side, "aside");
    (side, aside)
}

fn put_back(moved: &[(PathBuf, PathBuf)]) {
    for (side, aside) in moved {
        let _ = fs::rename(aside, side);
    }
}

/// Renames the synced `temp` to `path` and syncs the directory, so the
/// rename survives a power loss.
fn install(temp: &Path, path: &Path) -> Result<(), CopyError> {
    fs::rename(temp, path).map_err(io_error(|| format!("renaming {temp:?} to {path:?}")))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(|| format!("syncing the directory {dir:?}")))
}

/// Removes a temporary copy and a journal SQLite may have left beside it.
fn remove_with_journal(temp: &Path) {
    let _ = fs::remove_file(temp);
    let _ = fs::remove_file(side_path(temp, "-journal"));
}

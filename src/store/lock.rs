//! One process per data file: an advisory lock on a small file beside it.
//!
//! Two servers on one file would number messages twice, and `restore` must
//! not replace a file a server is using. SQLite's own `locking_mode=EXCLUSIVE`
//! would keep a second server out, but it keeps out every *reader* too
//! (`sqlite3 .backup`, `VACUUM INTO`, a read-only look), so backups would
//! need the service stopped. Instead the server (and `wsrooms restore`)
//! holds an exclusive `flock` on `FILE.lock` for as long as it runs, and
//! SQLite runs in its normal shared mode, where readers and the one writer
//! get along.
//!
//! The lock file is empty and stays after the process exits (removing it
//! would race with the next process opening it): it is the lock that
//! counts, not the file.
//!
//! A lock file goes by name, and two *hard links* to one data file are two
//! names, with a lock file beside each. So the data file itself is locked
//! too (an exclusive `flock` on a descriptor of its own), which every name
//! of it shares; `FILE.lock` still covers the moment `wsrooms restore`
//! puts a new file in place of the old one. On Linux a `flock` and
//! SQLite's own locks (POSIX record locks, `fcntl`) do not see each other,
//! and closing a descriptor drops only its own `flock`, so SQLite works on
//! the file exactly as before. The kernel drops the lock when the process ends,
//! however it ends (`SIGKILL` included), so a crash never leaves a file
//! locked. `flock` is advisory: it keeps out wsrooms processes, not a
//! program that writes the database by hand.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::file::OpenError;

/// The suffix of the lock file beside a data file.
pub const LOCK_SUFFIX: &str = ".lock";

/// A held lock on a data file; released when dropped (or when the process
/// ends).
#[derive(Debug)]
pub struct FileLock {
    /// Open for as long as the lock is held: closing it releases the lock.
    _file: File,
    /// The data file itself, locked too (if it exists): see the module doc.
    _data: Option<File>,
    path: PathBuf,
}

impl FileLock {
    /// Takes the lock of the data file `data_file` (creating `FILE.lock`,
    /// mode 0600, if there is none), without waiting: a lock another
    /// process holds is [`OpenError::InUse`]. The lock file is beside the
    /// file itself, not beside a symbolic link to it, so two links to one
    /// file share one lock.
    pub fn acquire(data_file: &Path) -> Result<FileLock, OpenError> {
        let path = lock_path(&resolved(data_file));
        let io = |error| OpenError::Io {
            path: path.clone(),
            error,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let in_use = || OpenError::InUse {
            path: data_file.to_owned(),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(in_use()),
            Err(TryLockError::Error(error)) => return Err(io(error)),
        }
        let data = lock_data_file(data_file)?;
        Ok(FileLock {
            _file: file,
            _data: data,
            path,
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes an exclusive `flock` on the data file itself (see the module
/// doc), if it is there and a regular file (only a regular file is opened:
/// opening a FIFO would wait for a writer).
fn lock_data_file(data_file: &Path) -> Result<Option<File>, OpenError> {
    let io = |error| OpenError::Io {
        path: data_file.to_owned(),
        error,
    };
    match std::fs::metadata(data_file) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    }
    let file = File::open(data_file).map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Err(OpenError::InUse {
            path: data_file.to_owned(),
        }),
        Err(TryLockError::Error(error)) => Err(io(error)),
    }
}

/// The file a path names, links resolved (as SQLite resolves them). If
/// there is no file yet, the name in its directory with the directory's
/// links resolved (so `link/rooms.db-wal` and `rooms.db-wal` from inside
/// the directory name the same file as `real/rooms.db-wal`), and a link
/// to a file not made yet stands for that file; the path itself if the
/// directory does not exist either.
pub fn resolved(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let path = &link_target(path);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return path.to_owned();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    match std::fs::canonicalize(dir) {
        Ok(real_dir) => real_dir.join(name),
        Err(_) => path.to_owned(),
    }
}

/// Where a link that points to no file points (following links to links,
/// as the system does, at most 40); `path` itself if it is not a link.
fn link_target(path: &Path) -> PathBuf {
    let mut path = path.to_owned();
    for _ in 0..40 {
        let Ok(target) = std::fs::read_link(&path) else {
            break;
        };
        // A relative target is relative to the link's directory; `join`
        // keeps an absolute one as it is.
        path = match path.parent() {
            Some(dir) => dir.join(target),
            None => target,
        };
    }
    path
}

/// `FILE.lock` for `FILE`.
pub fn lock_path(data_file: &Path) -> PathBuf {
    super::file::side_path(data_file, LOCK_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_file_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("rooms.db");
        let first = FileLock::acquire(&data).unwrap();
        assert_eq!(first.path(), dir.path().join("rooms.db.lock"));
        let second = FileLock::acquire(&data).expect_err("held");
        assert!(matches!(second, OpenError::InUse { .. }), "{second:?}");
        assert!(second.to_string().contains("rooms.db"), "{second}");
        drop(first);
        FileLock::acquire(&data).expect("free again");
    }

    #[test]
    fn two_hard_links_to_one_file_share_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("rooms.db");
        std::fs::write(&data, "").unwrap();
        let other = dir.path().join("other.db");
        std::fs::hard_link(&data, &other).unwrap();
        let first = FileLock::acquire(&data).unwrap();
        let second = FileLock::acquire(&other).expect_err("the same file");
        assert!(matches!(second, OpenError::InUse { .. }), "{second:?}");
        assert!(second.to_string().contains("other.db"), "{second}");
        drop(first);
        FileLock::acquire(&other).expect("free again");
    }

    #[test]
    fn sqlite_works_on_a_locked_file_and_closing_it_keeps_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("rooms.db");
        std::fs::write(&data, "").unwrap();
        let other = dir.path().join("other.db");
        std::fs::hard_link(&data, &other).unwrap();
        let lock = FileLock::acquire(&data).unwrap();
        let conn = rusqlite::Connection::open(&data).unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(conn); // SQLite closes its descriptors of the file
        // (Through the other name: its lock file is another one.)
        let again = FileLock::acquire(&other).expect_err("still held");
        assert!(matches!(again, OpenError::InUse { .. }), "{again:?}");
        drop(lock);
    }

    #[test]
    fn two_links_to_one_file_share_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("rooms.db");
        std::fs::write(&data, "").unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&data, &link).unwrap();
        let _first = FileLock::acquire(&data).unwrap();
        let second = FileLock::acquire(&link).expect_err("the same file");
        assert!(matches!(second, OpenError::InUse { .. }), "{second:?}");
    }
}

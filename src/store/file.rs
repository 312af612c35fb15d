//! Opening the data file: recognising it before SQLite touches it, refusing
//! what is not ours, creating a new one, and the settings of the connection.
//!
//! **Look before opening.** SQLite, asked to open a file, may create `-wal`,
//! `-shm` or `-journal` files beside it, and may write to it (roll back a
//! journal, checkpoint a log) before we have asked it a single question. So
//! [`inspect`] first reads the 100-byte header with a plain `read`: the magic
//! string, `application_id` and `user_version` (offsets 68 and 60). A file
//! that is not ours is refused there, untouched, with nothing created beside
//! it. Only a file that passes is opened with SQLite, which then checks the
//! same two numbers again (see [`check`]).
//!
//! An empty file, or none at all, is a new database: SQLite itself treats an
//! empty file so, and a crash while a file was being created leaves one. A
//! new file is created with mode 0600: it holds the rooms' conversations.
//!
//! **One process per file** is kept by an advisory lock on `FILE.lock`
//! (see [`lock`](super::lock)), not by SQLite: the connection runs in
//! SQLite's normal shared locking mode, so other programs may *read* the
//! file while the server runs (`sqlite3 FILE ".backup COPY"`,
//! `VACUUM INTO`, `wsrooms backup`). The write-ahead log's index is then
//! shared through the `FILE-shm` file beside it, which SQLite creates and
//! removes itself.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::schema::{APPLICATION_ID, SCHEMA_VERSION};

/// Why the data file cannot be used. The server prints it (one line) and
/// exits with status 2; nothing in the file was changed.
#[derive(Debug)]
pub enum OpenError {
    /// Reading or creating the file failed (missing directory, permissions,
    /// a directory in its place).
    Io {
        /// The `--data-file`.
        path: PathBuf,
        /// What the system said.
        error: io::Error,
    },
    /// Not an SQLite database: text, junk, or too short.
    NotSqlite {
        /// The `--data-file`.
        path: PathBuf,
    },
    /// An SQLite database of some other program.
    Foreign {
        /// The `--data-file`.
        path: PathBuf,
        /// The `application_id` in its header (not wsrooms').
        application_id: u32,
    },
    /// A wsrooms database of a newer schema than this binary knows.
    Newer {
        /// The `--data-file`.
        path: PathBuf,
        /// Its schema version (`user_version`).
        version: u32,
    },
    /// Another process has it open.
    InUse {
        /// The `--data-file`.
        path: PathBuf,
    },
    /// SQLite refused it, or setting it up failed (a damaged file, a full disk).
    Sqlite {
        /// The `--data-file`.
        path: PathBuf,
        /// What SQLite said.
        error: rusqlite::Error,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:?}` quotes the path and escapes any control character in it,
        // so the message stays one line.
        match self {
            OpenError::Io { path, error } => write!(f, "data file {path:?}: {error}"),
            OpenError::NotSqlite { path } => write!(
                f,
                "data file {path:?} is not an SQLite database; refusing to use it (left unchanged)"
            ),
            OpenError::Foreign {
                path,
                application_id,
            } => write!(
                f,
                "data file {path:?} is an SQLite database of another program \
                 (application_id {application_id:#010x}, wsrooms uses {APPLICATION_ID:#010x}); \
                 refusing to use it (left unchanged)"
            ),
            OpenError::Newer { path, version } => write!(
                f,
                "data file {path:?} has schema version {version}, newer than this wsrooms knows \
                 ({SCHEMA_VERSION}); run a newer wsrooms (file left unchanged)"
            ),
            OpenError::InUse { path } => write!(
                f,
                "data file {path:?} is in use by another process \
                 (another wsrooms holds its lock file, or a program is writing to it)"
            ),
            OpenError::Sqlite { path, error } => {
                let error = error.to_string().replace(['\n', '\r'], " ");
                write!(f, "data file {path:?}: {error}")
            }
        }
    }
}

impl std::error::Error for OpenError {}

/// What the header said about a file we may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Empty (or just created): a new database.
    Empty,
    /// A wsrooms database of this schema version or an older one.
    Ours {
        /// Its schema version (`user_version`).
        version: u32,
    },
}

const MAGIC: &[u8; 16] = b"SQLite format 3\0";
const HEADER_LEN: usize = 100;

/// Reads the header of the file at `path` (creating an empty file if there
/// is none) and says whether it is ours. Refusals change nothing on disk.
pub fn inspect(path: &Path) -> Result<Found, OpenError> {
    let io = |error| OpenError::Io {
        path: path.to_owned(),
        error,
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return create(path).map_err(io),
        Err(e) => return Err(io(e)),
    };
    let mut header = [0u8; HEADER_LEN];
    let len = read_up_to(&mut file, &mut header).map_err(io)?;
    classify(path, &header[..len])
}

/// Like [`inspect`] for a file that must already be there (the source of
/// `wsrooms backup` or `restore`): creates nothing.
pub fn recognise(path: &Path) -> Result<Found, OpenError> {
    let io = |error| OpenError::Io {
        path: path.to_owned(),
        error,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut header = [0u8; HEADER_LEN];
    let len = read_up_to(&mut file, &mut header).map_err(io)?;
    classify(path, &header[..len])
}

/// Creates an empty file with mode 0600, failing if one appeared meanwhile.
fn create(path: &Path) -> io::Result<Found> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    Ok(Found::Empty)
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(len)
}

/// Decides from the first (up to) 100 bytes.
fn classify(path: &Path, header: &[u8]) -> Result<Found, OpenError> {
    if header.is_empty() {
        return Ok(Found::Empty);
    }
    if header.len() < HEADER_LEN || !header.starts_with(MAGIC) {
        return Err(OpenError::NotSqlite {
            path: path.to_owned(),
        });
    }
    let be_u32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    judge(path, be_u32(68), be_u32(60))
}

/// The verdict on an `application_id` and a `user_version`.
fn judge(path: &Path, application_id: u32, version: u32) -> Result<Found, OpenError> {
    if application_id != APPLICATION_ID {
        return Err(OpenError::Foreign {
            path: path.to_owned(),
            application_id,
        });
    }
    if version > SCHEMA_VERSION {
        return Err(OpenError::Newer {
            path: path.to_owned(),
            version,
        });
    }
    Ok(Found::Ours { version })
}

/// Opens the inspected file with SQLite: read-write, never creating it, no
/// URI parsing (a path is a path). The caller holds the file's lock
/// ([`lock`](super::lock)).
pub fn connect(path: &Path) -> Result<Connection, OpenError> {
    let sqlite = |error| sqlite_error(path, error);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
    // rusqlite waits up to 5 s for a lock by default, sleeping in the
    // thread that asked: the poll loop's. Readers of the write-ahead log
    // never make the writer wait, and a checkpoint does not wait for them
    // (`store::wal`), so a lock that is busy can only be another program
    // writing: fail that one commit at once instead of stalling the loop.
    conn.busy_timeout(std::time::Duration::ZERO)
        .map_err(sqlite)?;
    Ok(conn)
}

/// Asks SQLite for the two numbers again, now that it has read any log a
/// crash left (the header on disk may lag behind it), and checks that the
/// file is what [`inspect`] found.
pub fn check(path: &Path, conn: &Connection, found: Found) -> Result<u32, OpenError> {
    let sqlite = |error| sqlite_error(path, error);
    let number = |name| conn.pragma_query_value(None, name, |row| row.get::<_, i32>(0));
    let application_id = number("application_id").map_err(sqlite)? as u32;
    let version = number("user_version").map_err(sqlite)? as u32;
    match found {
        Found::Empty if application_id == 0 && version == 0 => Ok(0),
        _ => judge(path, application_id, version).map(|_| version),
    }
}

/// Write-ahead log, synced at checkpoints only (see the module doc of
/// `store`), and a page cache big enough for start-up and scrollback.
pub fn tune(path: &Path, conn: &Connection) -> Result<(), OpenError> {
    let sqlite = |error| sqlite_error(path, error);
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sqlite)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sqlite)?;
    conn.pragma_update(None, "cache_size", -16_384) // KiB: 16 MiB
        .map_err(sqlite)?;
    Ok(())
}

/// The file's page size in bytes.
pub fn page_size(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "page_size", |row| row.get(0))
}

/// Switches to a rollback journal for a migration (see `schema`).
pub fn rollback_journal(path: &Path, conn: &Connection) -> Result<(), OpenError> {
    conn.pragma_update(None, "journal_mode", "DELETE")
        .map_err(|error| sqlite_error(path, error))
}

/// A busy database is another process's; anything else is SQLite's word.
pub fn sqlite_error(path: &Path, error: rusqlite::Error) -> OpenError {
    let path = path.to_owned();
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => OpenError::InUse { path },
        Some(ErrorCode::NotADatabase) => OpenError::NotSqlite { path },
        _ => OpenError::Sqlite { path, error },
    }
}

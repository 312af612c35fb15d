//! Opening the data file: recognising it before SQLite touches it, refusing
//! what is not ours, creating a new one, and the settings of the connection.
//!
//! **Look before opening.** SQLite, asked to open a file, may create `-wal`,
//! `-shm` or `-journal` files beside it, and may write to it (roll back a
//! journal, replay a log) before we have asked it a single question. So
//! [`inspect`] first reads the three files with plain `read`s: the main
//! file's 100-byte header (the magic string, `application_id` and
//! `user_version` at offsets 68 and 60, the journal mode), and any `-journal`
//! and `-wal` beside it, frame by frame, to learn what SQLite would replay
//! (the rules are in `sidefiles`). A file that is not ours, or a side file
//! that would change it into something else, is refused there, all three
//! files untouched, with nothing created beside them. Only files that pass
//! are opened with SQLite, which then checks the same two numbers again
//! (see [`check`]).
//!
//! The data file and its side files must be regular files: a FIFO, a
//! directory, a device or a socket is refused from its metadata, before it
//! is opened (opening a FIFO waits for a writer).
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

use std::ffi::OsString;
use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::schema::{APPLICATION_ID, SCHEMA_VERSION};
use super::sidefiles::{
    self, JOURNAL_HEADER_LEN, Journal, JournalStart, Page1, Record, Refusal, WAL_HEADER_LEN, Wal,
    WalScan, WalStart, Which,
};

pub use super::sidefiles::Effective as Found;

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
    /// Not a regular file: a FIFO, a directory, a device, a socket (the
    /// data file or a file beside it).
    NotRegular {
        /// That file.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// A `-journal` or `-wal` beside the data file that SQLite would replay
    /// into it, and that cannot be this file's (see `sidefiles`).
    Beside {
        /// The `--data-file`.
        path: PathBuf,
        /// The side file.
        side: PathBuf,
        /// What is wrong with it.
        refusal: Refusal,
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
            OpenError::NotRegular { path, kind } => write!(
                f,
                "data file: {path:?} is {kind}, not a regular file; refusing to use it"
            ),
            OpenError::Beside {
                path,
                side,
                refusal,
            } => {
                write!(f, "data file {path:?}: {side:?} beside it ")?;
                beside(f, refusal)?;
                write!(
                    f,
                    "; refusing to use them (all left unchanged: move {side:?} away \
                     if it is not this file's)"
                )
            }
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

/// Reads the file at `path` and the `-journal` and `-wal` beside it, and
/// says whether it is ours, as SQLite will see it once it has replayed
/// them; creates an empty file (mode 0600) if there is none and the side
/// files allow it. Refusals change nothing on disk.
pub fn inspect(path: &Path) -> Result<Found, OpenError> {
    let (exists, found) = examine(path)?;
    if !exists {
        // Through a link to a file not made yet, the file it points to
        // (the link itself exists, so it cannot be created anew).
        create(&super::lock::resolved(path)).map_err(|error| OpenError::Io {
            path: path.to_owned(),
            error,
        })?;
    }
    Ok(found)
}

/// Like [`inspect`] for a file that must already be there (the source of
/// `wsrooms backup` or `restore`, which a server may be using): creates
/// nothing.
pub fn recognise(path: &Path) -> Result<Found, OpenError> {
    match examine(path)? {
        (true, found) => Ok(found),
        (false, _) => Err(OpenError::Io {
            path: path.to_owned(),
            error: io::ErrorKind::NotFound.into(),
        }),
    }
}

/// May `wsrooms restore` put a copy in place of the file at `path`? Only
/// if there is none, it is empty, or its header is wsrooms' (of any
/// version, damaged further in or not: restoring is how a damaged file is
/// recovered). Another program's file, or one that is not SQLite or not a
/// regular file, is refused as the server refuses it. Its side files are
/// not read: the restore removes them.
pub fn replaceable(path: &Path) -> Result<(), OpenError> {
    let path_buf = || path.to_owned();
    match read_main(path)?
        .as_deref()
        .map_or(Page1::Empty, sidefiles::page1)
    {
        Page1::Empty => Ok(()),
        Page1::Sqlite(header) if header.application_id == APPLICATION_ID => Ok(()),
        Page1::Sqlite(header) => Err(OpenError::Foreign {
            path: path_buf(),
            application_id: header.application_id,
        }),
        Page1::NotSqlite => Err(OpenError::NotSqlite { path: path_buf() }),
    }
}

/// [`inspect`]'s reading and verdict: whether the file exists, and what
/// it is with its side files.
fn examine(path: &Path) -> Result<(bool, Found), OpenError> {
    let io = |error| OpenError::Io {
        path: path.to_owned(),
        error,
    };
    let main = read_main(path)?;
    // SQLite resolves symbolic links and keeps the side files beside the
    // file itself, not beside a link to it.
    let base = match main {
        Some(_) => std::fs::canonicalize(path).map_err(io)?,
        None => path.to_owned(),
    };
    let journal = read_journal(&side_path(&base, "-journal"))?;
    let wal = read_wal(&side_path(&base, "-wal"))?;
    let page1 = main.as_deref().map_or(Page1::Empty, sidefiles::page1);
    let found = sidefiles::decide(page1, journal, wal).map_err(|r| refused(path, &base, r))?;
    Ok((main.is_some(), found))
}

/// `path` with `suffix` appended (`-wal`, `-journal`), as SQLite names them.
pub fn side_path(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// Opens an existing regular file for reading: `None` if there is none; a
/// FIFO, directory, device or socket is refused before it is opened.
fn open_regular(path: &Path) -> Result<Option<(File, u64)>, OpenError> {
    let io = |error| OpenError::Io {
        path: path.to_owned(),
        error,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
        Ok(meta) => regular(path, &meta)?,
    }
    let file = File::open(path).map_err(io)?;
    // Checked again on what was opened, in case it was swapped meanwhile
    // (only a FIFO swapped in this instant could still hold up the open).
    let meta = file.metadata().map_err(io)?;
    regular(path, &meta)?;
    Ok(Some((file, meta.len())))
}

fn regular(path: &Path, meta: &Metadata) -> Result<(), OpenError> {
    if meta.is_file() {
        return Ok(());
    }
    let kind = meta.file_type();
    let kind = if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a file"
    };
    Err(OpenError::NotRegular {
        path: path.to_owned(),
        kind,
    })
}

/// The main file's first 100 bytes (fewer if it is shorter); `None` if
/// there is no file.
fn read_main(path: &Path) -> Result<Option<Vec<u8>>, OpenError> {
    let Some((mut file, _)) = open_regular(path)? else {
        return Ok(None);
    };
    let mut header = [0u8; sidefiles::HEADER_LEN];
    let len = read_up_to(&mut file, &mut header).map_err(|error| OpenError::Io {
        path: path.to_owned(),
        error,
    })?;
    Ok(Some(header[..len].to_vec()))
}

/// The `-journal` beside the file: is it hot, and what page 1 would it
/// restore? One record in memory at a time.
fn read_journal(side: &Path) -> Result<Journal, OpenError> {
    let io = |error| OpenError::Io {
        path: side.to_owned(),
        error,
    };
    let Some((mut file, len)) = open_regular(side)? else {
        return Ok(Journal::NotHot);
    };
    let mut head = [0u8; JOURNAL_HEADER_LEN];
    let got = read_up_to(&mut file, &mut head).map_err(io)?;
    let header = match sidefiles::journal_header(&head[..got]) {
        JournalStart::NotHot => return Ok(Journal::NotHot),
        JournalStart::Unreadable => return Ok(Journal::Unreadable),
        JournalStart::Records(header) => header,
    };
    file.seek(SeekFrom::Start(u64::from(header.sector_size)))
        .map_err(io)?;
    let mut record = vec![0u8; header.record_len()];
    for _ in 0..header.record_count(len) {
        if read_up_to(&mut file, &mut record).map_err(io)? < record.len() {
            break;
        }
        match header.record(&record) {
            Record::Restores(1, page) => {
                let page1 = Some(sidefiles::page1(page));
                return Ok(Journal::Hot { header, page1 });
            }
            Record::Restores(..) | Record::Skipped => {}
            Record::Ends => break,
        }
    }
    Ok(Journal::Hot {
        header,
        page1: None,
    })
}

/// The `-wal` beside the file: its frames, read one at a time, as far as
/// SQLite would replay them.
fn read_wal(side: &Path) -> Result<Wal, OpenError> {
    let io = |error| OpenError::Io {
        path: side.to_owned(),
        error,
    };
    let Some((mut file, _)) = open_regular(side)? else {
        return Ok(Wal::Empty);
    };
    let mut head = [0u8; WAL_HEADER_LEN];
    let got = read_up_to(&mut file, &mut head).map_err(io)?;
    if got == 0 {
        return Ok(Wal::Empty);
    }
    let header = match sidefiles::wal_header(&head[..got]) {
        WalStart::Ignored => return Ok(Wal::Ignored),
        WalStart::UnknownVersion(v) => return Ok(Wal::UnknownVersion(v)),
        WalStart::Frames(header) => header,
    };
    let mut scan = WalScan::new(header);
    let mut frame = vec![0u8; scan.frame_len()];
    while read_up_to(&mut file, &mut frame).map_err(io)? == frame.len() && scan.frame(&frame) {}
    Ok(Wal::Frames(scan.summary()))
}

/// A refusal of [`sidefiles::decide`] as the error the server prints
/// (`base`: the file the side files are named after).
fn refused(path: &Path, base: &Path, refusal: Refusal) -> OpenError {
    let path = path.to_owned();
    let which = match refusal {
        Refusal::NotSqlite => return OpenError::NotSqlite { path },
        Refusal::Foreign {
            which: Which::Main,
            application_id,
        } => {
            return OpenError::Foreign {
                path,
                application_id,
            };
        }
        Refusal::Newer {
            which: Which::Main,
            version,
        } => return OpenError::Newer { path, version },
        Refusal::Foreign { which, .. } | Refusal::Newer { which, .. } => which,
        Refusal::Stray { which, .. } => which,
        Refusal::UnknownWalVersion(_) => Which::Wal,
    };
    let side = side_path(base, which.suffix());
    OpenError::Beside {
        path,
        side,
        refusal,
    }
}

/// The middle of the line for a side file that is refused.
fn beside(f: &mut fmt::Formatter<'_>, refusal: &Refusal) -> fmt::Result {
    match refusal {
        Refusal::Foreign { application_id, .. } => write!(
            f,
            "would replace its header with another program's (application_id \
             {application_id:#010x}, wsrooms uses {APPLICATION_ID:#010x})"
        ),
        Refusal::Newer { version, .. } => write!(
            f,
            "would make it schema version {version}, newer than this wsrooms knows \
             ({SCHEMA_VERSION})"
        ),
        Refusal::Stray { why, .. } => f.write_str(why),
        Refusal::UnknownWalVersion(v) => {
            write!(
                f,
                "is a write-ahead log of a format SQLite does not know ({v})"
            )
        }
        Refusal::NotSqlite => f.write_str("is not an SQLite database"),
    }
}

/// Creates an empty file with mode 0600, failing if one appeared meanwhile.
fn create(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    Ok(())
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

/// The name to give SQLite for `path`, so that it opens the file that was
/// checked and locked. The bundled SQLite reads names that begin with
/// `file:` as URIs (it is built with `SQLITE_USE_URI`): `--data-file
/// file:rooms.db` would be checked and locked as the file `file:rooms.db`
/// and opened as `rooms.db`, which another server may hold. A relative
/// name is given as `./NAME`, which is never a URI; an absolute one
/// begins with `/` and is not one either.
pub fn sqlite_name(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        Path::new(".").join(path)
    }
}

/// Opens the inspected file with SQLite: read-write, never creating it,
/// as a path, never a URI ([`sqlite_name`]). The caller holds the file's
/// lock ([`lock`](super::lock)).
pub fn connect(path: &Path) -> Result<Connection, OpenError> {
    let sqlite = |error| sqlite_error(path, error);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(sqlite_name(path), flags).map_err(sqlite)?;
    // rusqlite waits up to 5 s for a lock by default, sleeping in the
    // thread that asked: the poll loop's. Readers of the write-ahead log
    // never make the writer wait, and a checkpoint does not wait for them
    // (`store::wal`), so a lock that is busy can only be another program
    // writing: give up at once instead of stalling the loop; the commit
    // keeps its records and is tried again (`store::is_busy`).
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
        _ => {
            let header = sidefiles::Header {
                application_id,
                user_version: version,
                // Not asked: SQLite has read the file with its own.
                page_size: 0,
                wal_mode: false,
            };
            sidefiles::judge(Which::Main, header).map_err(|r| refused(path, path, r))?;
            Ok(version)
        }
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
    // Every statement the store runs stays prepared (`prepare_cached`):
    // about thirty in all, more than rusqlite keeps by default (16), and
    // its cache forgets the least recently used, so a commit would parse
    // its SQL again every turn.
    conn.set_prepared_statement_cache_capacity(STATEMENTS);
    Ok(())
}

/// Prepared statements the loop's connection keeps (see [`tune`]).
pub const STATEMENTS: usize = 64;

/// The helper thread's connection (checkpoints only): it syncs what it
/// copies, and needs little cache.
pub fn tune_helper(path: &Path, conn: &Connection) -> Result<(), OpenError> {
    let sqlite = |error| sqlite_error(path, error);
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sqlite)?;
    conn.pragma_update(None, "cache_size", -1024) // KiB
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

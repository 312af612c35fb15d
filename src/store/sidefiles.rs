//! Reading the data file and the two files SQLite keeps beside it, byte by
//! byte, before SQLite opens anything: what page 1 (and so the
//! `application_id` and `user_version`) will be once SQLite has replayed
//! them. No I/O here: every function takes bytes; `file.rs` reads them.
//!
//! SQLite, the moment it first reads a database, looks beside it:
//!
//! - a *hot* rollback journal (`FILE-journal`, not empty, first byte not 0)
//!   is played back into the main file: the pages it holds are written over
//!   the file's, and the file is cut to the size the journal names;
//! - a write-ahead log (`FILE-wal`) is used whenever the main file is not
//!   empty (whatever its header says about the journal mode): its frames,
//!   up to the last commit frame, are the newest version of their pages,
//!   and the next checkpoint copies them into the main file.
//!
//! So a stale `-wal` or `-journal` of *another* database, left or copied
//! beside a wsrooms file, would be replayed into it before any check of
//! ours could run. [`decide`] says, from the three files' bytes, whether
//! opening is safe, and what the file will be once SQLite has read it.
//!
//! # What SQLite replays, and so what counts here
//!
//! **The log** (SQLite's `walIndexRecover`). A 32-byte header: the magic
//! `0x377f0682` or `0x377f0683` (its last bit says whether the checksums
//! read the bytes as big- or little-endian words), the format version
//! 3007000, the page size (a power of two, 512–65536), a checkpoint counter,
//! two salts and a checksum of the first 24 bytes. A header that does not
//! hold together makes SQLite ignore the whole log. Then frames: a 24-byte
//! header (page number, the database size in pages for a commit frame or 0,
//! the two salts again, a checksum) and one page. A frame counts only while
//! its salts are the header's and the running checksum (seeded with the
//! header's, over each frame's first 8 header bytes and its page) holds;
//! the first frame that fails ends the log. Only frames up to the last
//! commit frame are used: a transaction cut short is not.
//!
//! **The journal** (SQLite's `pager_playback`). A header padded to a
//! sector: an 8-byte magic, the number of records, a checksum nonce, the
//! database size before the transaction (in pages), the sector size and the
//! page size. Then records: page number, the page's *original* content, a
//! checksum (the nonce plus every 200th byte of the page, from the end).
//! Playing it back restores those pages and cuts the file to its size
//! before the transaction.
//!
//! # The rules ([`decide`])
//!
//! - Beside a missing or empty data file, a log that is not empty, or a hot
//!   journal of a file that had pages, is refused (SQLite would delete it).
//! - A hot journal beside a file in write-ahead-log mode is refused: wsrooms
//!   uses a journal only while upgrading the schema, with the file in
//!   rollback mode. A hot journal is accepted only if it is a journal of
//!   this page size whose page 1 (the header it restores) is wsrooms' of a
//!   version this binary knows, or the journal of a new file (no pages).
//! - A log with committed frames beside a file in rollback mode, or with
//!   another page size than the file's, is refused. Its last committed page
//!   1, if any, must be wsrooms' of a version this binary knows.
//! - A log or journal that SQLite would not replay (a broken header, no
//!   committed frame) is harmless and accepted: SQLite starts it afresh.
//!
//! What these bytes cannot show: whose log it is. A log carries no identity
//! of its database, only salts chosen when it was started and the pages it
//! changes. So the log of *another wsrooms database* passes (its page 1,
//! if any, is wsrooms' too), and so does another program's log whose
//! commits do not include page 1. The deployment guide says never to copy
//! a `-wal` on its own.

use super::schema::{APPLICATION_ID, SCHEMA_VERSION};

/// The 16 bytes every SQLite database starts with.
pub const MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// The length of SQLite's database header (in page 1).
pub const HEADER_LEN: usize = 100;
/// The length of a write-ahead log's header.
pub const WAL_HEADER_LEN: usize = 32;
/// The length of a log frame's header (its page follows).
pub const FRAME_HEADER_LEN: usize = 24;
/// The bytes of a journal's header that say what it is (it is padded to a
/// sector).
pub const JOURNAL_HEADER_LEN: usize = 28;
/// The largest page SQLite writes.
pub const MAX_PAGE_SIZE: u32 = 65_536;

const WAL_MAGIC: u32 = 0x377f_0682;
const WAL_VERSION: u32 = 3_007_000;
const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

/// What a database header (the first 100 bytes of page 1) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The page size in bytes.
    pub page_size: u32,
    /// The file is in write-ahead-log mode (bytes 18 and 19 are 2).
    pub wal_mode: bool,
    /// `application_id` (offset 68).
    pub application_id: u32,
    /// `user_version` (offset 60).
    pub user_version: u32,
}

/// What the first bytes of a main file (or of a page 1 in a log or a
/// journal) are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page1 {
    /// No bytes at all: a new database.
    Empty,
    /// Not an SQLite database header (text, junk, too short).
    NotSqlite,
    /// An SQLite database header.
    Sqlite(Header),
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    match bytes.get(at..at + 4) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

/// Reads a database header from the start of `bytes` (a main file's first
/// bytes, or a whole page 1).
pub fn page1(bytes: &[u8]) -> Page1 {
    if bytes.is_empty() {
        return Page1::Empty;
    }
    if bytes.len() < HEADER_LEN || !bytes.starts_with(MAGIC) {
        return Page1::NotSqlite;
    }
    let raw = u32::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    Page1::Sqlite(Header {
        page_size: if raw == 1 { MAX_PAGE_SIZE } else { raw },
        wal_mode: bytes[18] == 2 && bytes[19] == 2,
        application_id: be_u32(bytes, 68),
        user_version: be_u32(bytes, 60),
    })
}

fn valid_page_size(size: u32) -> bool {
    size.is_power_of_two() && (512..=MAX_PAGE_SIZE).contains(&size)
}

/// The log's header, when SQLite would use the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    /// Checksums read the bytes as big-endian words.
    big_endian: bool,
    /// The page size of its frames.
    pub page_size: u32,
    salts: [u32; 2],
    checksum: (u32, u32),
}

/// What a log's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalStart {
    /// Not a header SQLite would use: it ignores the whole log.
    Ignored,
    /// A log of a format version SQLite does not know: it refuses to open.
    UnknownVersion(u32),
    /// A log whose frames follow.
    Frames(WalHeader),
}

/// Reads a log's 32-byte header.
pub fn wal_header(bytes: &[u8]) -> WalStart {
    if bytes.len() < WAL_HEADER_LEN {
        return WalStart::Ignored;
    }
    let magic = be_u32(bytes, 0);
    let page_size = be_u32(bytes, 8);
    if magic & !1 != WAL_MAGIC || !valid_page_size(page_size) {
        return WalStart::Ignored;
    }
    let big_endian = magic & 1 == 1;
    let checksum = wal_checksum(big_endian, &bytes[..24], (0, 0));
    if checksum != (be_u32(bytes, 24), be_u32(bytes, 28)) {
        return WalStart::Ignored;
    }
    let version = be_u32(bytes, 4);
    if version != WAL_VERSION {
        return WalStart::UnknownVersion(version);
    }
    WalStart::Frames(WalHeader {
        big_endian,
        page_size,
        salts: [be_u32(bytes, 16), be_u32(bytes, 20)],
        checksum,
    })
}

/// SQLite's log checksum: over 32-bit words, two at a time, continuing
/// from `(s1, s2)`. `bytes` is a multiple of 8 long.
pub fn wal_checksum(big_endian: bool, bytes: &[u8], (mut s1, mut s2): (u32, u32)) -> (u32, u32) {
    let word = |b: &[u8]| {
        let b = [b[0], b[1], b[2], b[3]];
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    for pair in bytes.chunks_exact(8) {
        s1 = s1.wrapping_add(word(&pair[..4])).wrapping_add(s2);
        s2 = s2.wrapping_add(word(&pair[4..])).wrapping_add(s1);
    }
    (s1, s2)
}

/// Goes through a log's frames, in order, as SQLite's recovery does.
#[derive(Debug, Clone)]
pub struct WalScan {
    header: WalHeader,
    running: (u32, u32),
    /// The newest page 1 since the last commit frame.
    pending_page1: Option<Page1>,
    committed_page1: Option<Page1>,
    committed_frames: u64,
    frames: u64,
}

/// What a log would change, as far as SQLite would replay it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalSummary {
    /// The page size of its frames.
    pub page_size: u32,
    /// Frames up to and including the last valid commit frame.
    pub committed_frames: u64,
    /// Page 1 as the last committed frame holding it has it.
    pub page1: Option<Page1>,
}

impl WalScan {
    /// Starts after a header that [`wal_header`] accepted.
    pub fn new(header: WalHeader) -> WalScan {
        WalScan {
            header,
            running: header.checksum,
            pending_page1: None,
            committed_page1: None,
            committed_frames: 0,
            frames: 0,
        }
    }

    /// The bytes of one frame: its header and its page.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN + self.header.page_size as usize
    }

    /// Takes the next frame (`frame`: [`WalScan::frame_len`] bytes). Returns
    /// `false` if it is not valid: the log ends before it, and so do the
    /// caller's reads.
    pub fn frame(&mut self, frame: &[u8]) -> bool {
        if frame.len() != self.frame_len() {
            return false;
        }
        let (head, page) = frame.split_at(FRAME_HEADER_LEN);
        let page_number = be_u32(head, 0);
        let salts = [be_u32(head, 8), be_u32(head, 12)];
        if page_number == 0 || salts != self.header.salts {
            return false;
        }
        let big = self.header.big_endian;
        let sum = wal_checksum(big, page, wal_checksum(big, &head[..8], self.running));
        if sum != (be_u32(head, 16), be_u32(head, 20)) {
            return false;
        }
        self.running = sum;
        self.frames += 1;
        if page_number == 1 {
            self.pending_page1 = Some(page1(page));
        }
        if be_u32(head, 4) != 0 {
            self.committed_frames = self.frames;
            if let Some(p) = self.pending_page1.take() {
                self.committed_page1 = Some(p);
            }
        }
        true
    }

    /// What the valid frames so far would change.
    pub fn summary(&self) -> WalSummary {
        WalSummary {
            page_size: self.header.page_size,
            committed_frames: self.committed_frames,
            page1: self.committed_page1,
        }
    }
}

/// A rollback journal's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalHeader {
    /// Records in its first segment (`0xffffffff`: as many as fit).
    pub records: u32,
    nonce: u32,
    /// The database's size in pages before the transaction.
    pub initial_pages: u32,
    /// Where the first record starts.
    pub sector_size: u32,
    /// The page size of its records.
    pub page_size: u32,
}

/// What a journal's first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalStart {
    /// Empty, or starting with a zero byte: SQLite does not play it back.
    NotHot,
    /// Hot, but not a journal SQLite can read.
    Unreadable,
    /// Hot, and its records follow.
    Records(JournalHeader),
}

/// Reads a journal's header (its first [`JOURNAL_HEADER_LEN`] bytes, or
/// fewer if the file is shorter).
pub fn journal_header(bytes: &[u8]) -> JournalStart {
    match bytes.first() {
        None | Some(0) => return JournalStart::NotHot,
        Some(_) => {}
    }
    if bytes.len() < JOURNAL_HEADER_LEN || bytes[..8] != JOURNAL_MAGIC {
        return JournalStart::Unreadable;
    }
    let header = JournalHeader {
        records: be_u32(bytes, 8),
        nonce: be_u32(bytes, 12),
        initial_pages: be_u32(bytes, 16),
        sector_size: be_u32(bytes, 20),
        page_size: be_u32(bytes, 24),
    };
    let sector_ok =
        header.sector_size.is_power_of_two() && (32..=MAX_PAGE_SIZE).contains(&header.sector_size);
    if !sector_ok || !valid_page_size(header.page_size) {
        return JournalStart::Unreadable;
    }
    JournalStart::Records(header)
}

impl JournalHeader {
    /// The bytes of one record: page number, page, checksum.
    pub fn record_len(&self) -> usize {
        self.page_size as usize + 8
    }

    /// How many records of its first segment to read from a journal of
    /// `file_len` bytes.
    pub fn record_count(&self, file_len: u64) -> u64 {
        let room = file_len.saturating_sub(u64::from(self.sector_size)) / self.record_len() as u64;
        match self.records {
            u32::MAX => room,
            n => u64::from(n).min(room),
        }
    }

    /// What SQLite does with one record (SQLite's
    /// `pager_playback_one_page`): a record of page 0 or of the lock-byte
    /// page ends the playback; one of a page beyond the file's size before
    /// the transaction is skipped, its checksum unread; any other is played
    /// back if its checksum holds, and else ends the playback.
    pub fn record<'a>(&self, record: &'a [u8]) -> Record<'a> {
        if record.len() != self.record_len() {
            return Record::Ends;
        }
        let number = be_u32(record, 0);
        if number == 0 || number == lock_byte_page(self.page_size) {
            return Record::Ends;
        }
        if number > self.initial_pages {
            return Record::Skipped;
        }
        let page = &record[4..record.len() - 4];
        let mut sum = self.nonce;
        let mut at = page.len() as i64 - 200;
        while at > 0 {
            sum = sum.wrapping_add(u32::from(page[at as usize]));
            at -= 200;
        }
        match sum == be_u32(record, record.len() - 4) {
            true => Record::Restores(number, page),
            false => Record::Ends,
        }
    }
}

/// One journal record, as SQLite's playback takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// This page number gets this original content back.
    Restores(u32, &'a [u8]),
    /// Not played back; the playback goes on.
    Skipped,
    /// The playback ends before it.
    Ends,
}

/// The page holding the byte at 1 GiB, which SQLite's locks use and never
/// writes (`PENDING_BYTE_PAGE`).
fn lock_byte_page(page_size: u32) -> u32 {
    0x4000_0000 / page_size.max(1) + 1
}

/// A journal as far as it matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    /// None, empty, or not hot.
    NotHot,
    /// Hot, but not a journal SQLite can read.
    Unreadable,
    /// Hot: its header, and the page 1 it would restore (if it holds one
    /// whose checksum holds).
    Hot {
        /// Its header.
        header: JournalHeader,
        /// Page 1's original content, as the journal would restore it.
        page1: Option<Page1>,
    },
}

/// A log as far as it matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wal {
    /// No log, or an empty one.
    Empty,
    /// Not empty, but SQLite would replay nothing of it (a broken header).
    Ignored,
    /// A log of a format version SQLite refuses.
    UnknownVersion(u32),
    /// What its committed frames would change.
    Frames(WalSummary),
}

/// What the file will be once SQLite has read it: the verdict of
/// [`decide`] when opening is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effective {
    /// A new database: no file, an empty one, or a new file's journal.
    Empty,
    /// A wsrooms database of this schema version or an older one.
    Ours {
        /// Its schema version (`user_version`).
        version: u32,
    },
}

/// Which file a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The data file itself.
    Main,
    /// `FILE-journal`.
    Journal,
    /// `FILE-wal`.
    Wal,
}

/// Why the three files must not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The main file is not an SQLite database.
    NotSqlite,
    /// Page 1 (of `which`) is another program's.
    Foreign {
        /// Whose page 1.
        which: Which,
        /// The `application_id` it holds.
        application_id: u32,
    },
    /// Page 1 (of `which`) is of a newer schema.
    Newer {
        /// Whose page 1.
        which: Which,
        /// The `user_version` it holds.
        version: u32,
    },
    /// A side file that cannot belong to this data file; the text says why.
    Stray {
        /// Which side file.
        which: Which,
        /// Why, as the end of a sentence.
        why: &'static str,
    },
    /// A log of a format version SQLite does not know.
    UnknownWalVersion(u32),
}

impl Which {
    /// What SQLite appends to the data file's name for this file.
    pub fn suffix(self) -> &'static str {
        match self {
            Which::Main => "",
            Which::Journal => "-journal",
            Which::Wal => "-wal",
        }
    }
}

/// The verdict on the three files (see the module doc).
pub fn decide(main: Page1, journal: Journal, wal: Wal) -> Result<Effective, Refusal> {
    match main {
        Page1::NotSqlite => Err(Refusal::NotSqlite),
        Page1::Empty => beside_empty(journal, wal),
        Page1::Sqlite(header) => {
            judge(Which::Main, header)?;
            beside_ours(header, journal, wal)
        }
    }
}

/// A missing or empty main file: SQLite would delete the side files.
fn beside_empty(journal: Journal, wal: Wal) -> Result<Effective, Refusal> {
    if wal != Wal::Empty {
        return Err(Refusal::Stray {
            which: Which::Wal,
            why: "is a write-ahead log, and the data file is empty or missing",
        });
    }
    match journal {
        Journal::NotHot => Ok(Effective::Empty),
        Journal::Hot { header, .. } if header.initial_pages == 0 => Ok(Effective::Empty),
        Journal::Hot { .. } | Journal::Unreadable => Err(Refusal::Stray {
            which: Which::Journal,
            why: "is the rollback journal of a database with pages, and the data file is empty or missing",
        }),
    }
}

/// A wsrooms main file: the journal, then the log, as SQLite reads them.
fn beside_ours(main: Header, journal: Journal, wal: Wal) -> Result<Effective, Refusal> {
    let mut effective = Effective::Ours {
        version: main.user_version,
    };
    if journal != Journal::NotHot {
        effective = after_journal(main, journal)?;
    }
    match wal {
        Wal::Empty | Wal::Ignored => Ok(effective),
        Wal::UnknownVersion(v) => Err(Refusal::UnknownWalVersion(v)),
        Wal::Frames(summary) if summary.committed_frames == 0 => Ok(effective),
        Wal::Frames(summary) => after_wal(main, summary, effective),
    }
}

fn stray(which: Which, why: &'static str) -> Refusal {
    Refusal::Stray { which, why }
}

/// A hot journal beside a wsrooms file: only a schema upgrade's own.
fn after_journal(main: Header, journal: Journal) -> Result<Effective, Refusal> {
    let which = Which::Journal;
    if main.wal_mode {
        return Err(stray(
            which,
            "is a rollback journal, and the data file is in write-ahead-log mode",
        ));
    }
    let Journal::Hot { header, page1 } = journal else {
        return Err(stray(which, "is not a rollback journal SQLite can read"));
    };
    if header.page_size != main.page_size {
        return Err(stray(which, "has another page size than the data file"));
    }
    if header.initial_pages == 0 {
        return Ok(Effective::Empty);
    }
    match page1 {
        Some(Page1::Sqlite(restored)) => {
            judge(which, restored)?;
            Ok(Effective::Ours {
                version: restored.user_version,
            })
        }
        _ => Err(stray(which, "does not restore a wsrooms header")),
    }
}

/// A log with committed frames beside a wsrooms file.
fn after_wal(main: Header, wal: WalSummary, effective: Effective) -> Result<Effective, Refusal> {
    let which = Which::Wal;
    if !main.wal_mode {
        return Err(stray(
            which,
            "holds commits, and the data file is in rollback-journal mode",
        ));
    }
    if wal.page_size != main.page_size {
        return Err(stray(which, "has another page size than the data file"));
    }
    match wal.page1 {
        None => Ok(effective),
        Some(Page1::Sqlite(logged)) => {
            judge(which, logged)?;
            Ok(Effective::Ours {
                version: logged.user_version,
            })
        }
        Some(_) => Err(stray(which, "holds a page 1 that is not a database header")),
    }
}

/// A header is wsrooms' of a version this binary knows (also asked of
/// SQLite's own reading, once it has opened the file: `file::check`).
pub fn judge(which: Which, header: Header) -> Result<(), Refusal> {
    if header.application_id != APPLICATION_ID {
        return Err(Refusal::Foreign {
            which,
            application_id: header.application_id,
        });
    }
    if header.user_version > SCHEMA_VERSION {
        return Err(Refusal::Newer {
            which,
            version: header.user_version,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;

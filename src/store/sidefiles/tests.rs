//! The side-file rules over bytes built here (logs and journals with their
//! checksums), and over logs SQLite itself wrote.

use super::*;

const PAGE: u32 = 4096;

/// A page 1 whose header has these numbers (rest zero).
fn header_page(size: u32, wal_mode: bool, application_id: u32, version: u32) -> Vec<u8> {
    let mut page = vec![0u8; size as usize];
    page[..16].copy_from_slice(MAGIC);
    let raw = if size == MAX_PAGE_SIZE {
        1
    } else {
        size as u16
    };
    page[16..18].copy_from_slice(&raw.to_be_bytes());
    let mode = if wal_mode { 2 } else { 1 };
    page[18] = mode;
    page[19] = mode;
    page[60..64].copy_from_slice(&version.to_be_bytes());
    page[68..72].copy_from_slice(&application_id.to_be_bytes());
    page
}

fn ours(version: u32) -> Vec<u8> {
    header_page(PAGE, true, APPLICATION_ID, version)
}

/// A log under construction, checksummed as SQLite does.
struct LogBuilder {
    bytes: Vec<u8>,
    big_endian: bool,
    salts: [u32; 2],
    running: (u32, u32),
}

impl LogBuilder {
    fn new(big_endian: bool) -> Self {
        let magic = WAL_MAGIC | u32::from(big_endian);
        let salts = [0x1111_2222, 0x3333_4444];
        let mut bytes = Vec::new();
        for word in [magic, WAL_VERSION, PAGE, 0, salts[0], salts[1]] {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        let running = wal_checksum(big_endian, &bytes, (0, 0));
        bytes.extend_from_slice(&running.0.to_be_bytes());
        bytes.extend_from_slice(&running.1.to_be_bytes());
        LogBuilder {
            bytes,
            big_endian,
            salts,
            running,
        }
    }

    /// Appends a frame for `page_number`; `commit` makes it a commit frame.
    fn frame(mut self, page_number: u32, page: &[u8], commit: bool) -> Self {
        let mut head = Vec::new();
        let size = if commit { 10 } else { 0 };
        for word in [page_number, size, self.salts[0], self.salts[1]] {
            head.extend_from_slice(&word.to_be_bytes());
        }
        let sum = wal_checksum(self.big_endian, &head[..8], self.running);
        self.running = wal_checksum(self.big_endian, page, sum);
        head.extend_from_slice(&self.running.0.to_be_bytes());
        head.extend_from_slice(&self.running.1.to_be_bytes());
        self.bytes.extend_from_slice(&head);
        self.bytes.extend_from_slice(page);
        self
    }
}

/// Scans a whole log held in memory, as `file.rs` does from the file.
fn scan(bytes: &[u8]) -> Wal {
    if bytes.is_empty() {
        return Wal::Empty;
    }
    let header = match wal_header(bytes) {
        WalStart::Ignored => return Wal::Ignored,
        WalStart::UnknownVersion(v) => return Wal::UnknownVersion(v),
        WalStart::Frames(h) => h,
    };
    let mut scan = WalScan::new(header);
    let len = scan.frame_len();
    for frame in bytes[WAL_HEADER_LEN..].chunks_exact(len) {
        if !scan.frame(frame) {
            break;
        }
    }
    Wal::Frames(scan.summary())
}

fn blank() -> Vec<u8> {
    vec![7u8; PAGE as usize]
}

#[test]
fn a_main_header_is_read_at_its_offsets() {
    let page = header_page(MAX_PAGE_SIZE, true, 0x1234_5678, 9);
    let expected = Header {
        page_size: MAX_PAGE_SIZE,
        wal_mode: true,
        application_id: 0x1234_5678,
        user_version: 9,
    };
    assert_eq!(page1(&page[..HEADER_LEN]), Page1::Sqlite(expected));
    assert_eq!(page1(b""), Page1::Empty);
    assert_eq!(page1(&page[..HEADER_LEN - 1]), Page1::NotSqlite);
    assert_eq!(page1(&[b'x'; 200]), Page1::NotSqlite);
    let rollback = header_page(1024, false, 1, 1);
    assert!(matches!(page1(&rollback), Page1::Sqlite(h) if !h.wal_mode && h.page_size == 1024));
}

#[test]
fn committed_frames_count_and_a_cut_transaction_does_not() {
    for big_endian in [false, true] {
        let log = LogBuilder::new(big_endian)
            .frame(2, &blank(), false)
            .frame(3, &blank(), true)
            .frame(1, &header_page(PAGE, true, 0xbad, 1), false);
        let Wal::Frames(summary) = scan(&log.bytes) else {
            panic!("a valid log");
        };
        assert_eq!(summary.committed_frames, 2, "big endian: {big_endian}");
        assert_eq!(summary.page1, None, "page 1 is in an uncommitted frame");
    }
}

#[test]
fn the_last_committed_page_1_is_the_one_that_counts() {
    let log = LogBuilder::new(false)
        .frame(1, &header_page(PAGE, true, 0xbad, 1), true)
        .frame(1, &ours(1), false)
        .frame(5, &blank(), true);
    let Wal::Frames(summary) = scan(&log.bytes) else {
        panic!("a valid log");
    };
    assert_eq!(summary.committed_frames, 3);
    assert!(matches!(summary.page1, Some(Page1::Sqlite(h)) if h.application_id == APPLICATION_ID));
}

#[test]
fn a_frame_with_a_broken_checksum_or_other_salts_ends_the_log() {
    let foreign = header_page(PAGE, true, 0xbad, 1);
    let good = LogBuilder::new(false).frame(2, &blank(), true);
    let frame_at = good.bytes.len();
    let log = good.frame(1, &foreign, true);
    // A flipped byte in the second frame's page: it and all after are void.
    let mut broken = log.bytes.clone();
    broken[frame_at + FRAME_HEADER_LEN + 200] ^= 1;
    let Wal::Frames(summary) = scan(&broken) else {
        panic!("the header is fine");
    };
    assert_eq!((summary.committed_frames, summary.page1), (1, None));
    // Other salts in the second frame's header: the same.
    let mut salted = log.bytes.clone();
    salted[frame_at + 8] ^= 1;
    let Wal::Frames(summary) = scan(&salted) else {
        panic!("the header is fine");
    };
    assert_eq!((summary.committed_frames, summary.page1), (1, None));
    // Intact, the foreign page 1 is committed.
    let Wal::Frames(summary) = scan(&log.bytes) else {
        panic!("valid");
    };
    assert_eq!(summary.committed_frames, 2);
    assert!(matches!(summary.page1, Some(Page1::Sqlite(h)) if h.application_id == 0xbad));
}

#[test]
fn a_log_whose_header_does_not_hold_is_ignored() {
    let log = LogBuilder::new(false).frame(1, &header_page(PAGE, true, 0xbad, 1), true);
    for at in [0, 8, 16, 27] {
        let mut broken = log.bytes.clone();
        broken[at] ^= 0x40;
        assert_eq!(scan(&broken), Wal::Ignored, "byte {at} changed");
    }
    assert_eq!(scan(&log.bytes[..20]), Wal::Ignored, "too short");
    let mut newer = log.bytes.clone();
    newer[4..8].copy_from_slice(&3_007_001u32.to_be_bytes());
    let sum = wal_checksum(false, &newer[..24], (0, 0));
    newer[24..28].copy_from_slice(&sum.0.to_be_bytes());
    newer[28..32].copy_from_slice(&sum.1.to_be_bytes());
    assert_eq!(scan(&newer), Wal::UnknownVersion(3_007_001));
}

fn main_page(wal_mode: bool, version: u32) -> Page1 {
    page1(&header_page(PAGE, wal_mode, APPLICATION_ID, version))
}

fn committed(page: Option<Page1>) -> Wal {
    Wal::Frames(WalSummary {
        page_size: PAGE,
        committed_frames: 3,
        page1: page,
    })
}

#[test]
fn a_log_that_changes_page_1_to_another_programs_is_refused() {
    let foreign = Some(page1(&header_page(PAGE, true, 0xbad, 1)));
    assert_eq!(
        decide(main_page(true, 2), Journal::NotHot, committed(foreign)),
        Err(Refusal::Foreign {
            which: Which::Wal,
            application_id: 0xbad
        })
    );
    let newer = Some(page1(&ours(SCHEMA_VERSION + 1)));
    assert_eq!(
        decide(main_page(true, 2), Journal::NotHot, committed(newer)),
        Err(Refusal::Newer {
            which: Which::Wal,
            version: SCHEMA_VERSION + 1
        })
    );
}

#[test]
fn our_own_log_is_accepted_with_the_version_it_holds() {
    let logged = Some(page1(&ours(2)));
    assert_eq!(
        decide(main_page(true, 1), Journal::NotHot, committed(logged)),
        Ok(Effective::Ours { version: 2 })
    );
    assert_eq!(
        decide(main_page(true, 2), Journal::NotHot, committed(None)),
        Ok(Effective::Ours { version: 2 })
    );
    for harmless in [Wal::Empty, Wal::Ignored] {
        assert_eq!(
            decide(main_page(true, 2), Journal::NotHot, harmless),
            Ok(Effective::Ours { version: 2 })
        );
    }
}

#[test]
fn a_log_that_cannot_be_this_files_is_refused() {
    let other_size = Wal::Frames(WalSummary {
        page_size: 1024,
        committed_frames: 1,
        page1: None,
    });
    for (main, wal) in [
        (main_page(true, 2), other_size),
        (main_page(false, 2), committed(None)),
        (Page1::Empty, committed(None)),
        (Page1::Empty, Wal::Ignored),
        (main_page(true, 2), committed(Some(Page1::NotSqlite))),
    ] {
        let verdict = decide(main, Journal::NotHot, wal);
        assert!(
            matches!(
                verdict,
                Err(Refusal::Stray {
                    which: Which::Wal,
                    ..
                })
            ),
            "{main:?} {wal:?}: {verdict:?}"
        );
    }
    assert_eq!(
        decide(main_page(true, 2), Journal::NotHot, Wal::UnknownVersion(9)),
        Err(Refusal::UnknownWalVersion(9))
    );
}

/// A hot journal of one segment holding `pages` (number, original content).
fn journal_bytes(initial_pages: u32, pages: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let nonce = 0x0102_0304u32;
    let mut bytes = JOURNAL_MAGIC.to_vec();
    for word in [pages.len() as u32, nonce, initial_pages, 512, PAGE] {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    bytes.resize(512, 0);
    for (number, page) in pages {
        bytes.extend_from_slice(&number.to_be_bytes());
        bytes.extend_from_slice(page);
        let mut sum = nonce;
        let mut at = page.len() as i64 - 200;
        while at > 0 {
            sum = sum.wrapping_add(u32::from(page[at as usize]));
            at -= 200;
        }
        bytes.extend_from_slice(&sum.to_be_bytes());
    }
    bytes
}

/// Reads a journal held in memory, as `file.rs` does from the file.
fn read_journal(bytes: &[u8]) -> Journal {
    let header = match journal_header(&bytes[..bytes.len().min(JOURNAL_HEADER_LEN)]) {
        JournalStart::NotHot => return Journal::NotHot,
        JournalStart::Unreadable => return Journal::Unreadable,
        JournalStart::Records(h) => h,
    };
    let start = header.sector_size as usize;
    let count = header.record_count(bytes.len() as u64) as usize;
    let mut page1 = None;
    for record in bytes[start..].chunks_exact(header.record_len()).take(count) {
        match header.record(record) {
            Record::Restores(1, page) => {
                page1 = Some(super::page1(page));
                break;
            }
            Record::Restores(..) | Record::Skipped => {}
            Record::Ends => break,
        }
    }
    Journal::Hot { header, page1 }
}

#[test]
fn a_journal_is_read_with_its_checksums() {
    let mut original = header_page(PAGE, false, APPLICATION_ID, 1);
    original[1000] = 9;
    let bytes = journal_bytes(5, &[(3, blank()), (1, original.clone())]);
    let Journal::Hot { header, page1 } = read_journal(&bytes) else {
        panic!("hot");
    };
    assert_eq!((header.initial_pages, header.page_size), (5, PAGE));
    assert!(matches!(page1, Some(Page1::Sqlite(h)) if h.user_version == 1));
    // A record whose checksum fails ends the playback before page 1.
    let mut broken = bytes.clone();
    broken[512 + 4 + 3896] ^= 1;
    assert!(matches!(
        read_journal(&broken),
        Journal::Hot { page1: None, .. }
    ));
    // A record beyond the file's size is skipped, its checksum unread.
    let mut beyond = journal_bytes(5, &[(6, blank()), (1, original.clone())]);
    beyond[512 + 4 + 3896] ^= 1;
    assert!(matches!(
        read_journal(&beyond),
        Journal::Hot {
            page1: Some(Page1::Sqlite(_)),
            ..
        }
    ));
    // A record of page 0, or of the lock-byte page, ends the playback.
    for stop in [0, 0x4000_0000 / PAGE + 1] {
        let bytes = journal_bytes(5, &[(stop, blank()), (1, original.clone())]);
        assert!(
            matches!(read_journal(&bytes), Journal::Hot { page1: None, .. }),
            "page {stop}"
        );
    }
    assert_eq!(read_journal(&[0; 600]), Journal::NotHot, "zeroed header");
    assert_eq!(
        read_journal(b"junk junk junk junk junk junk"),
        Journal::Unreadable
    );
}

fn hot(initial_pages: u32, page: Option<Page1>) -> Journal {
    let bytes = journal_bytes(initial_pages, &[]);
    let JournalStart::Records(header) = journal_header(&bytes[..JOURNAL_HEADER_LEN]) else {
        panic!("valid header");
    };
    Journal::Hot {
        header,
        page1: page,
    }
}

#[test]
fn only_a_schema_upgrades_own_journal_is_played_back() {
    let restores_ours = hot(5, Some(main_page(false, 1)));
    assert_eq!(
        decide(main_page(false, 2), restores_ours, Wal::Empty),
        Ok(Effective::Ours { version: 1 })
    );
    assert_eq!(
        decide(main_page(false, 2), hot(0, None), Wal::Empty),
        Ok(Effective::Empty),
        "a new file's journal"
    );
    let foreign = hot(5, Some(page1(&header_page(PAGE, false, 0xbad, 1))));
    assert_eq!(
        decide(main_page(false, 2), foreign, Wal::Empty),
        Err(Refusal::Foreign {
            which: Which::Journal,
            application_id: 0xbad
        })
    );
    for (main, journal) in [
        (main_page(true, 2), restores_ours),
        (main_page(false, 2), hot(5, None)),
        (main_page(false, 2), Journal::Unreadable),
        (Page1::Empty, hot(5, Some(main_page(false, 1)))),
        (Page1::Empty, Journal::Unreadable),
    ] {
        let verdict = decide(main, journal, Wal::Empty);
        assert!(
            matches!(
                verdict,
                Err(Refusal::Stray {
                    which: Which::Journal,
                    ..
                })
            ),
            "{main:?} {journal:?}: {verdict:?}"
        );
    }
    assert_eq!(
        decide(Page1::Empty, hot(0, None), Wal::Empty),
        Ok(Effective::Empty)
    );
}

#[test]
fn the_main_file_is_judged_first() {
    assert_eq!(
        decide(Page1::NotSqlite, Journal::NotHot, Wal::Empty),
        Err(Refusal::NotSqlite)
    );
    assert_eq!(
        decide(
            page1(&header_page(PAGE, true, 0, 0)),
            Journal::NotHot,
            Wal::Empty
        ),
        Err(Refusal::Foreign {
            which: Which::Main,
            application_id: 0
        })
    );
    assert_eq!(
        decide(Page1::Empty, Journal::NotHot, Wal::Empty),
        Ok(Effective::Empty)
    );
}

#[test]
fn a_log_sqlite_wrote_is_read_as_sqlite_replays_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         PRAGMA application_id=4660; CREATE TABLE t (x); INSERT INTO t VALUES (1);",
    )
    .unwrap();
    let log = std::fs::read(dir.path().join("other.db-wal")).unwrap();
    let main = std::fs::read(&path).unwrap();
    drop(conn);
    let Wal::Frames(summary) = scan(&log) else {
        panic!("SQLite's own log: {:?}", wal_header(&log));
    };
    assert!(summary.committed_frames >= 2, "{summary:?}");
    assert!(
        matches!(summary.page1, Some(Page1::Sqlite(h)) if h.application_id == 4660),
        "{summary:?}"
    );
    assert!(
        decide(page1(&main), Journal::NotHot, scan(&log)).is_err(),
        "its own main file is not ours either"
    );
}

#[test]
fn sqlites_own_log_of_a_65536_byte_page_file_is_ours() {
    // Page 1 writes 65536 as 1; the log's header writes it out in full.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA page_size=65536; PRAGMA application_id={APPLICATION_ID};
         PRAGMA user_version={SCHEMA_VERSION}; CREATE TABLE t (x);
         PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE u (y); INSERT INTO t VALUES (1);"
    ))
    .unwrap();
    let main = std::fs::read(&path).unwrap();
    let log = std::fs::read(dir.path().join("big.db-wal")).unwrap();
    drop(conn);
    assert_eq!(u16::from_be_bytes([main[16], main[17]]), 1);
    assert_eq!(be_u32(&log, 8), MAX_PAGE_SIZE);
    let Wal::Frames(summary) = scan(&log) else {
        panic!("{:?}", wal_header(&log));
    };
    assert_eq!(summary.page_size, MAX_PAGE_SIZE);
    assert!(summary.committed_frames >= 2, "{summary:?}");
    assert!(
        matches!(summary.page1, Some(Page1::Sqlite(_))),
        "{summary:?}"
    );
    assert_eq!(
        decide(page1(&main), Journal::NotHot, Wal::Frames(summary)),
        Ok(Effective::Ours {
            version: SCHEMA_VERSION
        })
    );
}

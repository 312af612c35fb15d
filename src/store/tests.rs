//! The store against real files in a temporary directory.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use tempfile::TempDir;

use super::*;

fn temp() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("wsrooms.db");
    (dir, path)
}

/// The names of the files in `dir`.
fn listing(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn token(n: u8) -> [u8; 16] {
    [n; 16]
}

fn message(room: u32, seq: u64, text: &str) -> Message<'_> {
    Message {
        room,
        seq,
        at: 1_700_000_000_000 + seq,
        user: "Zoë",
        text,
    }
}

/// Records messages `seqs` of `room` (text "m{seq}") and commits them.
fn post(store: &mut Store, room: u32, seqs: std::ops::RangeInclusive<u64>) {
    for seq in seqs {
        store.record_message(message(room, seq, &format!("m{seq}")));
    }
    store.commit().expect("commit");
}

fn seqs(messages: &[StoredMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

#[test]
fn a_new_file_is_marked_and_reopens_with_everything() {
    let (dir, path) = temp();
    let mut store = Store::open(&path, 100).expect("create");
    store.record_login(TokenHash::of(&token(1)), 5, "Zoë", 42);
    store.record_login(TokenHash::of(&token(2)), 6, "bob", 43);
    store.record_message(message(5, 1, "hello"));
    store.record_message(message(5, 2, "again"));
    store.record_message(message(6, 1, "other room"));
    store.commit().expect("commit");
    drop(store);
    assert_eq!(
        listing(dir.path()),
        BTreeSet::from(["wsrooms.db".to_string()]),
        "a clean close leaves the one file"
    );
    let bytes = fs::read(&path).unwrap();
    assert_eq!(&bytes[68..72], b"wsRm", "application_id");
    assert_eq!(
        &bytes[60..64],
        &SCHEMA_VERSION.to_be_bytes(),
        "user_version"
    );

    let store = Store::open(&path, 100).expect("reopen");
    let mut loaded = store.load(50).expect("load");
    loaded.sessions.sort_by_key(|s| s.room);
    assert_eq!(
        loaded.sessions,
        vec![
            StoredSession {
                token_hash: TokenHash::of(&token(1)),
                room: 5,
                user: "Zoë".into(),
                login_at: 42
            },
            StoredSession {
                token_hash: TokenHash::of(&token(2)),
                room: 6,
                user: "bob".into(),
                login_at: 43
            },
        ]
    );
    loaded.rooms.sort_by_key(|r| r.number);
    assert_eq!(loaded.rooms.len(), 2);
    assert_eq!((loaded.rooms[0].number, loaded.rooms[0].last_seq), (5, 2));
    assert_eq!(
        loaded.rooms[0].history[1],
        StoredMessage {
            seq: 2,
            at: 1_700_000_000_002,
            user: "Zoë".into(),
            text: "again".into()
        }
    );
    assert_eq!((loaded.rooms[1].number, loaded.rooms[1].last_seq), (6, 1));
}

#[test]
fn the_file_holds_token_hashes_never_tokens() {
    let (_dir, path) = temp();
    let secret = *b"0123456789abcdef";
    let mut store = Store::open(&path, 100).unwrap();
    store.record_login(TokenHash::of(&secret), 1, "a", 0);
    store.commit().unwrap();
    drop(store);
    let bytes = fs::read(&path).unwrap();
    let hash = TokenHash::of(&secret).0;
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(has(&hash), "the hash is stored");
    assert!(!has(&secret), "the token is not");
}

#[test]
fn a_commit_writes_the_turn_and_an_empty_one_does_nothing() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, 100).unwrap();
    assert!(store.commit().unwrap().is_empty());
    store.record_login(TokenHash::of(&token(1)), 1, "a", 0);
    store.record_message(message(1, 1, "x"));
    store.record_message(message(2, 1, "y"));
    store.record_session_end(TokenHash::of(&token(9)));
    assert_eq!(store.pending().messages().len(), 2);
    assert_eq!(
        store.commit().unwrap(),
        Committed {
            logins: 1,
            messages: 2,
            session_ends: 1
        }
    );
    assert!(store.pending().is_empty());
    assert_eq!(seqs(&store.history(2, None, 10).unwrap().messages), [1]);

    store.record_session_end(TokenHash::of(&token(1)));
    store.commit().unwrap();
    assert!(
        store.load(10).unwrap().sessions.is_empty(),
        "the session ended"
    );
}

#[test]
fn rooms_are_pruned_to_keep_messages() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, 10).unwrap();
    post(&mut store, 1, 1..=7);
    post(&mut store, 1, 8..=25);
    post(&mut store, 2, 1..=3);
    let room = store.room(1, 100).unwrap().unwrap();
    assert_eq!(room.last_seq, 25);
    assert_eq!(seqs(&room.history), (16..=25).collect::<Vec<_>>());
    let all = store.history(1, None, 100).unwrap();
    assert_eq!(all.messages.len(), 10);
    assert!(!all.more, "nothing older is kept");
    assert_eq!(
        seqs(&store.room(2, 100).unwrap().unwrap().history),
        [1, 2, 3]
    );
}

#[test]
fn load_gives_the_last_messages_and_seq_of_the_rooms_with_sessions_only() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, 1000).unwrap();
    for room in 1..=4 {
        post(&mut store, room, 1..=(room as u64 * 10));
    }
    for room in 1..=3 {
        store.record_login(TokenHash::of(&token(room as u8)), room, "Zoë", 0);
    }
    store.commit().unwrap();
    drop(store);
    let store = Store::open(&path, 1000).unwrap();
    let mut loaded = store.load(5).unwrap();
    loaded.rooms.sort_by_key(|r| r.number);
    let numbers: Vec<u32> = loaded.rooms.iter().map(|r| r.number).collect();
    assert_eq!(
        numbers,
        [1, 2, 3],
        "room 4 has no session: it stays on disk"
    );
    for (i, room) in loaded.rooms.iter().enumerate() {
        let last = (i as u64 + 1) * 10;
        assert_eq!(room.last_seq, last);
        assert_eq!(seqs(&room.history), ((last - 4)..=last).collect::<Vec<_>>());
        assert_eq!(room.history[4].text, format!("m{last}"));
    }
    assert_eq!(
        store.room(4, 5).unwrap().unwrap().last_seq,
        40,
        "read when used"
    );
    assert_eq!(store.room(5, 5).unwrap(), None, "a room never written in");
}

#[test]
fn history_pages_through_1000_messages_each_exactly_once() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, DEFAULT_KEEP_MESSAGES).unwrap();
    post(&mut store, 7, 1..=1000);
    post(&mut store, 8, 1..=5); // a neighbour that must not leak in
    let mut seen = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let page = store.history(7, before, 100).unwrap();
        pages += 1;
        assert_eq!(page.messages.len(), 100);
        let got = seqs(&page.messages);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "oldest first");
        seen.splice(0..0, got.iter().copied());
        before = Some(got[0]);
        if !page.more {
            break;
        }
        assert!(pages < 10, "more must turn false by the tenth page");
    }
    assert_eq!(pages, 10);
    assert_eq!(seen, (1..=1000).collect::<Vec<_>>());
    assert!(seen.iter().all(|&s| s > 0));
    assert_eq!(store.history(7, Some(1), 100).unwrap(), History::default());
    let page = store.history(7, Some(4), 2).unwrap();
    assert_eq!(seqs(&page.messages), [2, 3]);
    assert!(page.more, "message 1 is older");
    assert_eq!(page.messages[0].text, "m2");
    assert_eq!(
        store.history(7, None, 1000).unwrap().messages.len(),
        MAX_PAGE,
        "a page is capped"
    );
    assert_eq!(store.history(9, None, 10).unwrap(), History::default());
}

/// Tries to open `path`, expecting a refusal, and checks that neither the
/// file nor its directory changed.
fn assert_refused(dir: &Path, path: &Path) -> OpenError {
    let bytes = fs::read(path).unwrap();
    let before = listing(dir);
    let error = Store::open(path, 100).expect_err("must be refused");
    assert_eq!(fs::read(path).unwrap(), bytes, "the file is unchanged");
    assert_eq!(listing(dir), before, "no file appeared beside it");
    let line = error.to_string();
    assert!(!line.contains('\n'), "one line: {line}");
    error
}

#[test]
fn a_text_file_is_refused_untouched() {
    let (dir, path) = temp();
    fs::write(&path, "these are my notes, not a database\n".repeat(10)).unwrap();
    let error = assert_refused(dir.path(), &path);
    assert!(matches!(error, OpenError::NotSqlite { .. }), "{error:?}");
    assert!(error.to_string().contains("not an SQLite database"));
    fs::write(&path, b"SQLite format 3\0short").unwrap();
    let error = assert_refused(dir.path(), &path);
    assert!(matches!(error, OpenError::NotSqlite { .. }), "{error:?}");
}

#[test]
fn another_programs_sqlite_file_is_refused_untouched() {
    let (dir, path) = temp();
    let other = Connection::open(&path).unwrap();
    other
        .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(other);
    let error = assert_refused(dir.path(), &path);
    assert!(
        matches!(
            error,
            OpenError::Foreign {
                application_id: 0,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("another program"));

    let other = Connection::open(&path).unwrap();
    other.pragma_update(None, "application_id", 0x1234).unwrap();
    drop(other);
    let error = assert_refused(dir.path(), &path);
    assert!(
        matches!(
            error,
            OpenError::Foreign {
                application_id: 0x1234,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn another_programs_crashed_database_keeps_its_log() {
    // A foreign database whose program died with commits still in its
    // write-ahead log. SQLite, had we opened it, would have replayed the log
    // into the file and removed it on close; the header check never lets it.
    let (dir, path) = temp();
    let other = Connection::open(&path).unwrap();
    other
        .execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t (x); INSERT INTO t VALUES (1);",
        )
        .unwrap();
    let crashed = tempfile::tempdir().unwrap();
    for name in listing(dir.path()) {
        fs::copy(dir.path().join(&name), crashed.path().join(&name)).unwrap();
    }
    drop(other);
    assert!(listing(crashed.path()).contains("wsrooms.db-wal"));
    let error = assert_refused(crashed.path(), &crashed.path().join("wsrooms.db"));
    assert!(matches!(error, OpenError::Foreign { .. }), "{error:?}");
}

#[test]
fn a_newer_schema_is_refused_untouched() {
    let (dir, path) = temp();
    drop(Store::open(&path, 100).unwrap());
    let newer = Connection::open(&path).unwrap();
    newer
        .pragma_update(None, "user_version", SCHEMA_VERSION as i32 + 1)
        .unwrap();
    drop(newer);
    let error = assert_refused(dir.path(), &path);
    assert!(
        matches!(error, OpenError::Newer { version, .. } if version == SCHEMA_VERSION + 1),
        "{error:?}"
    );
    assert!(error.to_string().contains("newer"));
}

#[test]
fn a_second_store_on_the_same_file_is_refused() {
    let (_dir, path) = temp();
    let mut first = Store::open(&path, 100).unwrap();
    let error = Store::open(&path, 100).expect_err("in use");
    assert!(matches!(error, OpenError::InUse { .. }), "{error:?}");
    post(&mut first, 1, 1..=3);
}

#[test]
fn what_a_killed_process_left_on_disk_opens_with_every_commit() {
    // The files as they are while a store is open, copied aside, are what
    // SIGKILL leaves: the main file and the write-ahead log.
    let (dir, path) = temp();
    let mut store = Store::open(&path, 100).unwrap();
    post(&mut store, 1, 1..=30);
    store.record_login(TokenHash::of(&token(3)), 1, "c", 0);
    store.commit().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    for name in listing(dir.path()) {
        fs::copy(dir.path().join(&name), crashed.path().join(&name)).unwrap();
    }
    assert!(
        listing(crashed.path()).contains("wsrooms.db-wal"),
        "the commits are in the log"
    );
    let copy = Store::open(&crashed.path().join("wsrooms.db"), 100).expect("recovers");
    let loaded = copy.load(100).unwrap();
    assert_eq!(loaded.sessions.len(), 1);
    assert_eq!(loaded.rooms[0].last_seq, 30);
    assert_eq!(seqs(&loaded.rooms[0].history), (1..=30).collect::<Vec<_>>());
    drop(store);
}

#[test]
fn a_failing_commit_discards_the_turn_and_the_store_recovers() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, 100_000).unwrap();
    store.record_login(TokenHash::of(&token(1)), 1, "a", 0);
    post(&mut store, 1, 1..=3);
    // A disk that is full: the file may not grow by a single page.
    let pages: i64 = store
        .conn
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .unwrap();
    store
        .conn
        .pragma_update(None, "max_page_count", pages)
        .unwrap();

    let big = "x".repeat(3000);
    store.record_login(TokenHash::of(&token(2)), 1, "b", 0);
    store.record_session_end(TokenHash::of(&token(1)));
    for seq in 4..=40 {
        store.record_message(message(1, seq, &big));
    }
    let error = store.commit().expect_err("the disk is full");
    assert_eq!(error.close_code(), 1011);
    assert_eq!(error.login_status().code(), 503);
    assert_eq!(error.discarded.messages().len(), 37);
    assert_eq!(error.discarded.messages().next().unwrap().seq, 4);
    assert_eq!(
        error.discarded.logins().map(|l| l.user).collect::<Vec<_>>(),
        ["b"]
    );
    assert!(error.to_string().contains("full"), "{error}");
    assert!(!error.to_string().contains('\n'));
    assert_eq!(
        store.pending().session_ends(),
        [TokenHash::of(&token(1))],
        "a session end is kept for the next commit"
    );
    assert!(store.pending().messages().len() == 0 && store.pending().logins().len() == 0);
    assert_eq!(
        store.room(1, 100).unwrap().unwrap().last_seq,
        3,
        "rolled back"
    );

    // Room again: the next commit succeeds, with none of the discarded turn.
    store
        .conn
        .pragma_update(None, "max_page_count", 1_000_000)
        .unwrap();
    store.record_message(message(1, 4, "after"));
    let committed = store.commit().expect("writes work again");
    assert_eq!((committed.messages, committed.session_ends), (1, 1));
    let room = store.room(1, 100).unwrap().unwrap();
    assert_eq!(seqs(&room.history), [1, 2, 3, 4]);
    assert_eq!(room.history[3].text, "after");
    assert!(store.load(1).unwrap().sessions.is_empty());
}

#[test]
fn migrations_run_from_the_files_version_in_one_step() {
    let (_dir, path) = temp();
    let mut conn = Connection::open(&path).unwrap();
    schema::migrate(&mut conn, 0, &schema::STEPS[..1]).unwrap();
    conn.execute("INSERT INTO rooms VALUES (1, 9)", []).unwrap();
    let version_2: &[schema::Step] = &[
        schema::STEPS[0],
        "ALTER TABLE rooms ADD COLUMN topic TEXT NOT NULL DEFAULT ''",
    ];
    schema::migrate(&mut conn, 1, version_2).unwrap();
    let number = |name| {
        conn.pragma_query_value(None, name, |r| r.get::<_, u32>(0))
            .unwrap()
    };
    assert_eq!(number("user_version"), 2);
    assert_eq!(number("application_id"), APPLICATION_ID);
    let topic: String = conn
        .query_row("SELECT topic FROM rooms WHERE number = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(topic, "", "the old row went through the step");
}

#[test]
fn an_older_file_is_migrated_with_the_version_in_the_main_file_at_once() {
    // Version 0 with our mark stands for "an older version": already in WAL
    // mode, as every file of ours is.
    let (_dir, path) = temp();
    let old = Connection::open(&path).unwrap();
    old.execute_batch("PRAGMA journal_mode=WAL").unwrap();
    old.pragma_update(None, "application_id", APPLICATION_ID as i32)
        .unwrap();
    drop(old);
    let mut store = Store::open(&path, 100).expect("migrates");
    // Still open, so a step written to the log would not be in the file yet:
    // the header must already say the new version (what `inspect` reads).
    let bytes = fs::read(&path).unwrap();
    assert_eq!(&bytes[60..64], &SCHEMA_VERSION.to_be_bytes());
    post(&mut store, 1, 1..=2);
    let mode: String = store
        .conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal", "back to the log after the migration");
}

#[test]
fn an_empty_file_becomes_a_new_database() {
    let (_dir, path) = temp();
    fs::write(&path, b"").unwrap();
    let mut store = Store::open(&path, 100).unwrap();
    post(&mut store, 1, 1..=1);
}

#[test]
fn a_missing_directory_is_an_io_error() {
    let (dir, _) = temp();
    let path = dir.path().join("no/such/dir/wsrooms.db");
    let error = Store::open(&path, 100).expect_err("no directory");
    assert!(matches!(error, OpenError::Io { .. }), "{error:?}");
}

/// A file as version 1 of the schema left it: WAL mode, and each room's
/// `last_seq` in `rooms`.
fn version_1_file(path: &Path) {
    let mut old = Connection::open(path).unwrap();
    schema::migrate(&mut old, 0, &schema::STEPS[..1]).unwrap();
    old.execute_batch(
        "PRAGMA journal_mode=WAL;
         INSERT INTO rooms VALUES (5, 3), (6, 40);
         INSERT INTO messages VALUES (5, 1, 10, 'a', 'one'), (5, 2, 11, 'b', 'two'),
                                     (5, 3, 12, 'a', 'three'), (6, 40, 13, 'c', 'kept');
         INSERT INTO sessions VALUES (zeroblob(32), 5, 'a', 9);",
    )
    .unwrap();
}

#[test]
fn a_version_1_file_is_migrated_with_every_room_seq_and_message() {
    let (_dir, path) = temp();
    version_1_file(&path);
    let mut store = Store::open(&path, 100).expect("migrates");
    let bytes = fs::read(&path).unwrap();
    assert_eq!(&bytes[60..64], &2u32.to_be_bytes(), "user_version 2");
    let mut loaded = store.load(10).unwrap();
    loaded.rooms.sort_by_key(|r| r.number);
    let rooms: Vec<_> = loaded
        .rooms
        .iter()
        .map(|r| (r.number, r.last_seq))
        .collect();
    assert_eq!(rooms, [(5, 3)], "the room of the session");
    assert_eq!(store.room(6, 10).unwrap().unwrap().last_seq, 40);
    assert_eq!(seqs(&loaded.rooms[0].history), [1, 2, 3]);
    assert_eq!(loaded.rooms[0].history[2].text, "three");
    assert_eq!(loaded.sessions.len(), 1);
    let columns: i64 = store
        .conn
        .query_row("SELECT count(*) FROM pragma_table_info('rooms')", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(columns, 1, "rooms keeps only the number");

    post(&mut store, 6, 41..=42);
    post(&mut store, 7, 1..=1);
    drop(store);
    let store = Store::open(&path, 100).unwrap();
    assert_eq!(store.room(6, 10).unwrap().unwrap().last_seq, 42);
    assert_eq!(store.room(7, 10).unwrap().unwrap().last_seq, 1);
}

#[test]
fn a_message_to_a_known_room_writes_one_page() {
    // The room's newest messages share a page; nothing else changes (a
    // room's last seq is not written apart from its messages).
    let (_dir, path) = temp();
    let mut store = Store::open(&path, 100).unwrap();
    post(&mut store, 1, 1..=1);
    post(&mut store, 2, 1..=1);
    for seq in 2..=6 {
        let before = store.wal_pages();
        post(&mut store, 1, seq..=seq);
        assert_eq!(store.wal_pages(), before + 1, "message {seq}");
    }
}

#[test]
fn the_newest_message_is_kept_even_with_keep_0() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, 0).unwrap();
    post(&mut store, 1, 1..=3);
    let room = store.room(1, 10).unwrap().unwrap();
    assert_eq!((room.last_seq, seqs(&room.history)), (3, vec![3]));
}

#[test]
fn a_checkpoint_empties_the_log_and_loses_nothing() {
    let (dir, path) = temp();
    let mut store = Store::open(&path, 100_000).unwrap();
    let text = "x".repeat(200);
    let mut seq = 0;
    while !store.checkpoint_due() {
        seq += 1;
        store.record_message(message(1, seq, &text));
        store.record_message(message(2, seq, &text));
        store.commit().unwrap();
        assert!(seq < 10_000, "never due");
    }
    let page_size = file::page_size(&store.conn).unwrap();
    let pages = store.wal_pages() as u64 * u64::from(page_size);
    assert!(
        pages >= u64::from(wal::CHECKPOINT_BYTES),
        "due at {pages} bytes"
    );
    store.checkpoint().unwrap();
    assert_eq!(store.wal_pages(), 0);
    assert!(!store.checkpoint_due());
    post(&mut store, 1, seq + 1..=seq + 1);
    assert_eq!(store.wal_pages(), 1, "the log starts again");

    // What a kill leaves now (main file + a short log) has everything.
    let crashed = tempfile::tempdir().unwrap();
    for name in listing(dir.path()) {
        fs::copy(dir.path().join(&name), crashed.path().join(&name)).unwrap();
    }
    let copy = Store::open(&crashed.path().join("wsrooms.db"), 100_000).unwrap();
    assert_eq!(copy.room(1, 0).unwrap().unwrap().last_seq, seq + 1);
    assert_eq!(
        copy.room(2, 1000).unwrap().unwrap().history.len() as u64,
        seq
    );
    assert_eq!(copy.room(2, 0).unwrap().unwrap().last_seq, seq);
}

#[test]
fn the_log_stays_under_its_hard_cap_without_checkpoint_calls() {
    let (dir, path) = temp();
    let mut store = Store::open(&path, 100_000).unwrap();
    let page_size = file::page_size(&store.conn).unwrap();
    let cap = u64::from(wal::HARD_CAP_BYTES / page_size);
    let text = "y".repeat(3000);
    let mut most = 0;
    let mut fell = false;
    for seq in 1..=8_000 {
        store.record_message(message(seq as u32 % 50 + 1, seq, &text));
        if seq % 20 == 0 {
            store.commit().unwrap();
            let pages = u64::from(store.wal_pages());
            fell |= pages < most;
            most = most.max(pages);
        }
    }
    assert!(fell, "a commit at the cap checkpoints");
    assert!(
        most < cap,
        "at most {most} pages left in the log, cap {cap}"
    );
    let wal = fs::metadata(dir.path().join("wsrooms.db-wal"))
        .unwrap()
        .len();
    let frame = u64::from(page_size) + 24;
    assert!(wal <= (cap + 200) * frame, "log file {wal} bytes");
}

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
        kind: Kind::SAID,
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
    store.record_presence(TokenHash::of(&token(2)), true);
    store.commit().expect("commit");
    drop(store);
    assert_eq!(
        listing(dir.path()),
        BTreeSet::from(["wsrooms.db".to_string(), "wsrooms.db.lock".to_string()]),
        "a clean close leaves the file (and its empty lock file)"
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
                login_at: 42,
                present: false
            },
            StoredSession {
                token_hash: TokenHash::of(&token(2)),
                room: 6,
                user: "bob".into(),
                login_at: 43,
                present: true
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
            text: "again".into(),
            kind: Kind::SAID,
            edited: None,
            deleted: false,
        }
    );
    assert_eq!((loaded.rooms[1].number, loaded.rooms[1].last_seq), (6, 1));
}

#[test]
fn presence_is_written_when_it_changes_and_kept_over_a_failed_commit() {
    let (_dir, path) = temp();
    let (ann, bob) = (TokenHash::of(&token(1)), TokenHash::of(&token(2)));
    let mut store = Store::open(&path, 100).unwrap();
    store.record_login(ann, 1, "ann", 1);
    store.record_login(bob, 1, "bob", 2);
    store.commit().unwrap();
    store.record_presence(ann, true);
    store.record_presence(bob, true);
    assert_eq!(store.commit().unwrap().presence, 2, "a commit of its own");
    // A commit that fails (a full disk) keeps the presence changes, as it
    // keeps session ends: their events went out.
    store.fail_writes(true).unwrap();
    store.record_presence(bob, false);
    store.record_login(TokenHash::of(&token(3)), 1, "cy", 3);
    assert!(store.commit().is_err());
    store.fail_writes(false).unwrap();
    assert_eq!(store.commit().unwrap().presence, 1, "retried");
    drop(store);
    let store = Store::open(&path, 100).unwrap();
    let mut present: Vec<(String, bool)> = store
        .load(10)
        .unwrap()
        .sessions
        .into_iter()
        .map(|s| (s.user, s.present))
        .collect();
    present.sort();
    assert_eq!(present, [("ann".into(), true), ("bob".into(), false)]);
}

#[test]
fn bars_are_kept_until_they_end_and_then_deleted() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, 100).expect("open");
    let address = Some("192.0.2.7".parse().unwrap());
    let room_bar = StoredBar {
        room: Some(5),
        user: Some("bob".into()),
        address,
        until: 2_000,
    };
    let address_bar = StoredBar {
        room: None,
        user: None,
        address,
        until: 1_000,
    };
    store.record_bar(address_bar.clone());
    store.record_bar(room_bar.clone());
    store.commit().expect("commit");
    drop(store);

    let mut store = Store::open(&path, 100).expect("reopen");
    assert_eq!(store.bars().unwrap(), [address_bar, room_bar.clone()]);
    assert_eq!(store.forget_ended_bars(999).unwrap(), 0, "none ended");
    assert_eq!(
        store.forget_ended_bars(1_000).unwrap(),
        1,
        "the first ended"
    );
    assert_eq!(store.bars().unwrap(), std::slice::from_ref(&room_bar));
    // A row that ended after one still running stays: it may be that bar
    // set again, shorter, and a restart must see it to end the bar.
    let shorter = StoredBar {
        until: 1_500,
        ..room_bar.clone()
    };
    store.record_bar(shorter.clone());
    store.commit().expect("commit");
    assert_eq!(store.forget_ended_bars(1_600).unwrap(), 0);
    assert_eq!(store.bars().unwrap(), [room_bar, shorter]);
    assert_eq!(store.forget_ended_bars(2_000).unwrap(), 2, "all ended");
    assert_eq!(store.bars().unwrap(), []);
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
            session_ends: 1,
            ..Committed::default()
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
        schema::Step::Sql("ALTER TABLE rooms ADD COLUMN topic TEXT NOT NULL DEFAULT ''"),
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
    assert_eq!(
        &bytes[60..64],
        &SCHEMA_VERSION.to_be_bytes(),
        "user_version: the latest"
    );
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
    let old = &loaded.rooms[0].history[2];
    assert_eq!(
        (old.kind, old.edited, old.deleted),
        (Kind::SAID, None, false),
        "a message from before edits: nobody's to edit"
    );
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
fn a_message_to_a_known_room_writes_two_pages() {
    // Its chunk (appended to the table's last page) and the chunk's entry
    // in the index; nothing else changes (a room's last seq is not
    // written apart from its messages).
    let (_dir, path) = temp();
    let mut store = Store::open(&path, 100).unwrap();
    post(&mut store, 1, 1..=1);
    post(&mut store, 2, 1..=1);
    for seq in 2..=6 {
        let before = store.wal_pages();
        post(&mut store, 1, seq..=seq);
        assert_eq!(store.wal_pages(), before + 2, "message {seq}");
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
    // Its chunk and the chunk's entry in the index.
    assert_eq!(store.wal_pages(), 2, "the log starts again");

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

/// SHA-256 of every file in `dir`, by name.
fn digests(dir: &Path) -> std::collections::BTreeMap<String, [u8; 32]> {
    use sha2::Digest;
    listing(dir)
        .into_iter()
        .map(|name| {
            let bytes = fs::read(dir.join(&name)).unwrap();
            (name, sha2::Sha256::digest(bytes).into())
        })
        .collect()
}

/// A wsrooms file with one session, closed cleanly (no side file).
fn ours_with_a_session(path: &Path) {
    let mut store = Store::open(path, 100).unwrap();
    store.record_login(TokenHash::of(&token(1)), 5, "Zoë", 42);
    post(&mut store, 5, 1..=3);
    drop(store);
}

/// Makes another program's database in WAL mode in a directory of its own
/// and copies its log, as its crash would leave it, to `to`.
fn foreign_log(to: &Path, application_id: i32) {
    let other = tempfile::tempdir().unwrap();
    let conn = Connection::open(other.path().join("F.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
         INSERT INTO notes (body) VALUES ('keep me');",
    )
    .unwrap();
    conn.pragma_update(None, "application_id", application_id)
        .unwrap();
    fs::copy(other.path().join("F.db-wal"), to).unwrap();
    drop(conn);
}

#[test]
fn another_programs_log_beside_the_file_is_refused_and_nothing_changes() {
    let (dir, path) = temp();
    ours_with_a_session(&path);
    let wal = file::side_path(&path, "-wal");
    foreign_log(&wal, 0x1234);
    let before = digests(dir.path());
    let error = Store::open(&path, 100).expect_err("a foreign log is refused");
    assert!(
        matches!(
            &error,
            OpenError::Beside {
                refusal: sidefiles::Refusal::Foreign {
                    application_id: 0x1234,
                    ..
                },
                ..
            }
        ),
        "{error:?}"
    );
    let line = error.to_string();
    assert!(
        line.contains("wsrooms.db-wal") && !line.contains('\n'),
        "{line}"
    );
    assert_eq!(digests(dir.path()), before, "all three files as they were");
    // Moved away, the file opens with everything it had.
    fs::remove_file(&wal).unwrap();
    let store = Store::open(&path, 100).expect("ours alone");
    let loaded = store.load(10).unwrap();
    assert_eq!(loaded.sessions.len(), 1);
    assert_eq!(loaded.rooms[0].last_seq, 3);
}

#[test]
fn a_log_of_another_programs_database_with_our_id_still_needs_our_version() {
    // Same application_id, but a schema version this binary does not know.
    let (dir, path) = temp();
    ours_with_a_session(&path);
    let other = tempfile::tempdir().unwrap();
    let conn = Connection::open(other.path().join("F.db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;")
        .unwrap();
    conn.pragma_update(None, "application_id", APPLICATION_ID as i32)
        .unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION as i32 + 7)
        .unwrap();
    fs::copy(
        other.path().join("F.db-wal"),
        dir.path().join("wsrooms.db-wal"),
    )
    .unwrap();
    drop(conn);
    let before = digests(dir.path());
    let error = Store::open(&path, 100).expect_err("refused");
    assert!(
        matches!(
            error,
            OpenError::Beside {
                refusal: sidefiles::Refusal::Newer { .. },
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(digests(dir.path()), before);
}

#[test]
fn a_hot_journal_beside_our_file_is_refused_and_nothing_changes() {
    let (dir, path) = temp();
    ours_with_a_session(&path);
    // Another database in the middle of a transaction: its journal is hot.
    let other = tempfile::tempdir().unwrap();
    let conn = Connection::open(other.path().join("F.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE t (x); INSERT INTO t VALUES (randomblob(100000));
         PRAGMA cache_size = 1; BEGIN; UPDATE t SET x = randomblob(100000);",
    )
    .unwrap();
    fs::copy(
        other.path().join("F.db-journal"),
        file::side_path(&path, "-journal"),
    )
    .unwrap();
    drop(conn);
    let before = digests(dir.path());
    let error = Store::open(&path, 100).expect_err("refused");
    assert!(
        matches!(
            error,
            OpenError::Beside {
                refusal: sidefiles::Refusal::Stray {
                    which: sidefiles::Which::Journal,
                    ..
                },
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(digests(dir.path()), before);
}

#[test]
fn a_log_beside_a_missing_file_is_refused_and_nothing_is_created() {
    let (dir, path) = temp();
    foreign_log(&file::side_path(&path, "-wal"), 0x1234);
    let before = digests(dir.path());
    let error = Store::open(&path, 100).expect_err("refused");
    assert!(matches!(error, OpenError::Beside { .. }), "{error:?}");
    assert_eq!(digests(dir.path()), before, "no data file was created");
}

#[test]
fn a_fifo_or_a_directory_is_refused_before_it_is_opened() {
    let (dir, path) = temp();
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    // Opening a FIFO for reading would wait for a writer for ever.
    let error = Store::open(&path, 100).expect_err("refused");
    assert!(
        matches!(error, OpenError::NotRegular { kind: "a FIFO", .. }),
        "{error:?}"
    );
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let error = Store::open(&path, 100).expect_err("refused");
    assert!(
        matches!(
            error,
            OpenError::NotRegular {
                kind: "a directory",
                ..
            }
        ),
        "{error:?}"
    );
    fs::remove_dir(&path).unwrap();
    ours_with_a_session(&path);
    fs::create_dir(file::side_path(&path, "-wal")).unwrap();
    let error = Store::open(&path, 100).expect_err("refused");
    assert!(error.to_string().contains("wsrooms.db-wal"), "{error}");
    drop(dir);
}

/// Writes 300 messages to room 1 ("one-0001-…") and then 300 to room 2
/// ("two-…"), so each room's messages fill pages of their own, and closes
/// the store (everything in the main file).
/// Room 1, then room 2, each 300 messages in 30 turns of 10: 30 chunks
/// of about 2 KB a room, two to a page of the `chunks` table, the rooms on
/// pages of their own (but for the page where one ends and the other
/// starts).
fn two_full_rooms(path: &Path) {
    let mut store = Store::open(path, 300).unwrap();
    let pad = "x".repeat(150);
    for (room, name) in [(1, "one"), (2, "two")] {
        let texts: Vec<String> = (1..=300).map(|s| format!("{name}-{s:04}-{pad}")).collect();
        for turn in texts.chunks(10).enumerate() {
            let (n, texts) = turn;
            for (i, text) in texts.iter().enumerate() {
                store.record_message(message(room, (n * 10 + i + 1) as u64, text));
            }
            store.commit().unwrap();
        }
        // A session in each room: start-up loads the rooms of sessions.
        store.record_login(TokenHash::of(&token(room as u8)), room, name, 0);
        store.commit().unwrap();
    }
}

/// Writes garbage over every page of the closed file at `path` that holds
/// `marker` in a row of `chunks` (a rowid table: its rows live in table
/// b-tree leaves, pages of type 0x0d; its index holds no text); returns
/// how many.
fn damage_pages(path: &Path, marker: &[u8]) -> usize {
    let mut bytes = fs::read(path).unwrap();
    let size = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    let mut damaged = 0;
    for page in bytes.chunks_mut(size).skip(1) {
        if page[0] == 0x0d && page.windows(marker.len()).any(|w| w == marker) {
            page.fill(0xa5);
            damaged += 1;
        }
    }
    fs::write(path, bytes).unwrap();
    damaged
}

#[test]
fn damaged_old_pages_fail_their_reads_and_only_skip_their_rooms_pruning() {
    let (_dir, path) = temp();
    two_full_rooms(&path);
    assert!(damage_pages(&path, b"one-00") >= 3, "room 1's oldest pages");
    let mut store = Store::open(&path, 300).expect("the header is sound");
    let loaded = store.load(50).expect("the rooms' tails are sound");
    assert_eq!((loaded.rooms.len(), loaded.damaged_rooms.len()), (2, 0));
    let error = store.history(1, Some(50), 10).expect_err("into the damage");
    assert!(error.is_damage(), "{error}");
    assert_eq!(
        seqs(&store.history(1, None, 3).unwrap().messages),
        [298, 299, 300]
    );
    // Each room's next ten messages prune its oldest chunk: room 1's prune
    // meets the damage and is skipped; all the messages are written.
    for seq in 301..=310 {
        store.record_message(message(1, seq, "one more"));
        store.record_message(message(2, seq, "two more"));
    }
    let committed = store.commit().expect("committed around the damage");
    assert!(committed.damaged);
    assert_eq!((committed.messages, committed.refused_rooms), (20, vec![]));
    assert_eq!(seqs(&store.history(1, None, 1).unwrap().messages), [310]);
    assert_eq!(
        seqs(&store.history(2, Some(13), 2).unwrap().messages),
        [11, 12]
    );
    // Known now: room 1 is no longer pruned, and nothing fails.
    store.record_message(message(1, 311, "and another"));
    let committed = store.commit().expect("committed");
    assert_eq!((committed.messages, committed.damaged), (1, true));
}

#[test]
fn a_room_whose_pages_are_all_damaged_loses_only_its_own_messages() {
    let (_dir, path) = temp();
    two_full_rooms(&path);
    assert!(damage_pages(&path, b"one-") >= 10);
    let mut store = Store::open(&path, 300).expect("the header is sound");
    let loaded = store.load(50).expect("room 2 loads");
    assert_eq!(loaded.damaged_rooms, [1]);
    assert_eq!(loaded.rooms.len(), 1);
    store.record_message(message(1, 301, "lost"));
    store.record_message(message(2, 301, "kept"));
    store.record_login(TokenHash::of(&token(7)), 2, "eve", 0);
    let committed = store.commit().expect("room 2's part is committed");
    assert_eq!(committed.refused_rooms, [1]);
    assert_eq!((committed.messages, committed.logins), (1, 1));
    assert_eq!(store.history(2, None, 1).unwrap().messages[0].text, "kept");
    assert_eq!(store.load(1).unwrap().sessions.len(), 3);
    // Known now: the next turn leaves room 1 out at once.
    store.record_message(message(1, 301, "lost again"));
    store.record_message(message(2, 302, "kept too"));
    let committed = store.commit().expect("committed");
    assert_eq!((committed.refused_rooms, committed.messages), (vec![1], 1));
    assert!(committed.damaged);
    store.record_message(message(2, 303, "only room 2"));
    let committed = store.commit().expect("committed");
    assert_eq!((committed.messages, committed.refused_rooms), (1, vec![]));
}

#[test]
fn a_room_that_cannot_be_read_is_not_numbered_again() {
    let (_dir, path) = temp();
    two_full_rooms(&path);
    assert!(
        damage_pages(&path, b"one-0300") >= 1,
        "room 1's newest page"
    );
    let mut store = Store::open(&path, 300).expect("the header is sound");
    let loaded = store.load(50).expect("room 2 loads");
    assert_eq!(loaded.damaged_rooms, [1]);
    store.refuse_unreadable(&loaded.damaged_rooms);
    // The server, not knowing room 1's last seq, would number from 1.
    store.record_message(message(1, 1, "numbered again"));
    store.record_message(message(2, 301, "kept"));
    let committed = store.commit().expect("room 2's part is committed");
    assert_eq!((committed.refused_rooms, committed.messages), (vec![1], 1));
    assert_eq!(store.history(2, None, 1).unwrap().messages[0].text, "kept");
}

#[test]
fn the_side_files_of_a_linked_file_are_read_beside_the_file_itself() {
    // SQLite follows the link and keeps the log beside the real file.
    let (dir, path) = temp();
    let real = dir.path().join("real");
    fs::create_dir(&real).unwrap();
    let target = real.join("rooms.db");
    ours_with_a_session(&target);
    std::os::unix::fs::symlink(&target, &path).unwrap();
    foreign_log(&file::side_path(&target, "-wal"), 0x1234);
    let before = digests(&real);
    let error = Store::open(&path, 100).expect_err("the log beside the target");
    assert!(
        matches!(&error, OpenError::Beside { side, .. } if side.starts_with(real.canonicalize().unwrap())),
        "{error:?}"
    );
    assert_eq!(digests(&real), before);
}

#[test]
fn the_journal_of_our_own_interrupted_upgrade_is_played_back_and_the_upgrade_runs_again() {
    let (dir, path) = temp();
    version_1_file(&path);
    // The upgrade as `Store::open` runs it (rollback journal), stopped
    // before its commit with pages already written to the main file: the
    // files copied now are what a crash at that moment leaves.
    let mut upgrading = Connection::open(&path).unwrap();
    upgrading
        .execute_batch("PRAGMA journal_mode=DELETE; PRAGMA cache_size=1;")
        .unwrap();
    let tx = upgrading.transaction().unwrap();
    let schema::Step::Sql(version_2) = schema::STEPS[1] else {
        panic!("version 2 is SQL")
    };
    tx.execute_batch(version_2).unwrap();
    tx.execute_batch(
        "PRAGMA user_version=2;
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200)
         INSERT INTO messages SELECT 7, x, 0, 'z', hex(randomblob(500)) FROM c;",
    )
    .unwrap();
    let crashed = tempfile::tempdir().unwrap();
    for name in listing(dir.path()) {
        fs::copy(dir.path().join(&name), crashed.path().join(&name)).unwrap();
    }
    drop(tx);
    drop(upgrading);
    assert!(
        listing(crashed.path()).contains("wsrooms.db-journal"),
        "hot journal"
    );
    let store = Store::open(&crashed.path().join("wsrooms.db"), 100).expect("ours");
    let rooms: Vec<_> = (5..=7)
        .filter_map(|number| store.room(number, 10).unwrap())
        .map(|r| (r.number, r.last_seq))
        .collect();
    assert_eq!(
        rooms,
        [(5, 3), (6, 40)],
        "the upgrade's rows were rolled back"
    );
    assert_eq!(
        fs::read(crashed.path().join("wsrooms.db")).unwrap()[60..64],
        SCHEMA_VERSION.to_be_bytes(),
        "the upgrade ran again, to the latest version"
    );
}

/// Fills the log to a checkpoint's size with messages of room 1 from `seq`
/// on; returns the last seq.
fn fill_log(store: &mut Store, mut seq: u64) -> u64 {
    let text = "z".repeat(500);
    loop {
        seq += 1;
        store.record_message(message(1, seq, &text));
        store.commit().unwrap();
        if store.checkpoint_due() {
            return seq;
        }
        assert!(seq < 100_000, "never due");
    }
}

#[test]
fn the_epoch_stays_across_opens_and_an_older_file_gets_one() {
    let (_dir, path) = temp();
    let store = Store::open(&path, 100).unwrap();
    let epoch = store.epoch();
    drop(store);
    assert_eq!(Store::open(&path, 100).unwrap().epoch(), epoch);

    // A file of version 2 (before epochs) gets one when it is brought up to date.
    let (_old_dir, old) = temp();
    let mut conn = Connection::open(&old).unwrap();
    schema::migrate(&mut conn, 0, &schema::STEPS[..2]).unwrap();
    drop(conn);
    let other = Store::open(&old, 100).unwrap().epoch();
    assert_ne!(other, epoch, "each file draws its own");
    assert_eq!(Store::open(&old, 100).unwrap().epoch(), other);
}

#[test]
fn a_file_whose_epoch_row_was_lost_gets_a_new_one() {
    let (_dir, path) = temp();
    let epoch = Store::open(&path, 100).unwrap().epoch();
    let conn = Connection::open(&path).unwrap();
    conn.execute("DELETE FROM meta", []).unwrap();
    drop(conn);
    let again = Store::open(&path, 100).unwrap().epoch();
    assert_ne!(again, epoch);
    assert_eq!(Store::open(&path, 100).unwrap().epoch(), again);
}

#[test]
fn a_reader_holding_the_log_neither_stalls_nor_repeats_checkpoints() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, 100_000).unwrap();
    post(&mut store, 1, 1..=1);
    // Another program's read transaction (a backup) holds a snapshot.
    let reader = Connection::open(&path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let n: i64 = reader
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    let seq = fill_log(&mut store, 1);
    let started = std::time::Instant::now();
    store.checkpoint().expect("a passive checkpoint returns");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert!(store.wal_pages() > 0, "the reader's pages stay in the log");
    assert!(!store.checkpoint_due(), "not again at once");
    post(&mut store, 1, seq + 1..=seq + 1);
    assert!(!store.checkpoint_due(), "not after one more commit either");
    let seq = fill_log(&mut store, seq + 1);
    assert!(
        store.checkpoint_due(),
        "due after another checkpoint's worth"
    );
    // The reader still sees its snapshot; when it ends, all is copied.
    let n: i64 = reader
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    reader.execute_batch("COMMIT").unwrap();
    store.checkpoint().unwrap();
    assert_eq!(store.wal_pages(), 0, "everything copied");
    post(&mut store, 1, seq + 1..=seq + 1);
    // Its chunk and the chunk's entry in the index.
    assert_eq!(store.wal_pages(), 2, "the log starts again");
}

#[test]
fn a_backup_of_an_open_store_has_every_commit_and_its_epoch() {
    let (dir, path) = temp();
    let mut store = Store::open(&path, 100).unwrap();
    store.record_login(TokenHash::of(&token(7)), 3, "Zoë", 1);
    post(&mut store, 3, 1..=20);
    let copy = dir.path().join("copy.db");
    let mut steps = Vec::new();
    let copied = copy::backup(&path, &copy, false, &mut |p| steps.push(p)).unwrap();
    assert_eq!(copied.epoch, Some(store.epoch()));
    assert!(copied.pages > 0 && steps.last().unwrap().done == copied.pages);
    let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&copy).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // The server goes on writing; the copy is as it was.
    post(&mut store, 3, 21..=22);
    for itself in [path.clone(), dir.path().join("./wsrooms.db-wal")] {
        let refused = copy::backup(&path, &itself, true, &mut |_| {}).expect_err("itself");
        assert!(
            matches!(refused, copy::CopyError::SameFile { .. }),
            "{refused}"
        );
    }
    let again = copy::backup(&path, &copy, false, &mut |_| {}).expect_err("exists");
    assert!(matches!(again, copy::CopyError::Exists { .. }), "{again}");
    let restored = Store::open(&copy, 100).unwrap();
    assert_eq!(restored.epoch(), store.epoch());
    let loaded = restored.load(50).unwrap();
    assert_eq!(loaded.sessions.len(), 1);
    assert_eq!(loaded.rooms[0].last_seq, 20);
    drop(restored);
    copy::backup(&path, &copy, true, &mut |_| {}).expect("--force");
    assert_eq!(
        Store::open(&copy, 100)
            .unwrap()
            .room(3, 0)
            .unwrap()
            .unwrap()
            .last_seq,
        22
    );
    assert!(
        !listing(dir.path()).iter().any(|n| n.starts_with('.')),
        "no temporary file left: {:?}",
        listing(dir.path())
    );
}

#[test]
fn a_backup_replacing_a_copy_does_not_inherit_the_log_left_beside_it() {
    let (dir, path) = temp();
    post(&mut Store::open(&path, 100).unwrap(), 1, 1..=3);
    // COPY is the file of a server killed while running on another
    // database (a test of an earlier backup): its log is still beside it.
    let other = tempfile::tempdir().unwrap();
    let mut store = Store::open(&other.path().join("wsrooms.db"), 100).unwrap();
    post(&mut store, 1, 1..=60);
    post(&mut store, 2, 1..=60);
    let copy = dir.path().join("copy.db");
    fs::copy(other.path().join("wsrooms.db"), &copy).unwrap();
    fs::copy(
        other.path().join("wsrooms.db-wal"),
        dir.path().join("copy.db-wal"),
    )
    .unwrap();
    drop(store);
    copy::backup(&path, &copy, true, &mut |_| {}).expect("--force");
    let copied = Store::open(&copy, 100).unwrap();
    assert_eq!(copied.room(2, 50).unwrap(), None, "the other file's rooms");
    assert_eq!(copied.room(1, 50).unwrap().unwrap().last_seq, 3);
    // A COPY a store is using is not replaced.
    let refused = copy::backup(&path, &copy, true, &mut |_| {}).expect_err("in use");
    assert!(
        matches!(refused, copy::CopyError::Refused(OpenError::InUse { .. })),
        "{refused}"
    );
}

#[test]
fn a_restore_is_refused_while_the_file_is_open_and_then_draws_a_new_epoch() {
    let (dir, path) = temp();
    let mut store = Store::open(&path, 100).unwrap();
    post(&mut store, 1, 1..=5);
    let copy = dir.path().join("copy.db");
    copy::backup(&path, &copy, false, &mut |_| {}).unwrap();
    post(&mut store, 1, 6..=9);
    let epoch = store.epoch();
    let refused = copy::restore(&copy, &path, &mut |_| {}).expect_err("in use");
    assert!(
        matches!(refused, copy::CopyError::Refused(OpenError::InUse { .. })),
        "{refused}"
    );
    drop(store);
    let copied = copy::restore(&copy, &path, &mut |_| {}).unwrap();
    assert_eq!(copied.old_epoch, Some(epoch));
    let store = Store::open(&path, 100).unwrap();
    assert_eq!(Some(store.epoch()), copied.epoch);
    assert_ne!(store.epoch(), epoch, "a new epoch");
    assert_eq!(store.room(1, 0).unwrap().unwrap().last_seq, 5, "the copy's");
    drop(store);
    // Something that is not a wsrooms file is refused, and FILE is kept.
    fs::write(dir.path().join("text.db"), "hello").unwrap();
    let refused = copy::restore(&dir.path().join("text.db"), &path, &mut |_| {}).expect_err("text");
    assert!(
        matches!(
            refused,
            copy::CopyError::Refused(OpenError::NotSqlite { .. })
        ),
        "{refused}"
    );
    assert_eq!(
        Store::open(&path, 100)
            .unwrap()
            .room(1, 0)
            .unwrap()
            .unwrap()
            .last_seq,
        5
    );
}

/// A copy of a file with messages 1 to 3 of room 1 (in the first dir),
/// and in the second dir what a server killed after messages 4 to 40 left
/// (`wsrooms.db`, and its log holding those).
fn crashed_with_a_copy() -> (TempDir, PathBuf, TempDir) {
    let (dir, path) = temp();
    let mut store = Store::open(&path, 100).unwrap();
    post(&mut store, 1, 1..=3);
    let copy = dir.path().join("copy.db");
    copy::backup(&path, &copy, false, &mut |_| {}).unwrap();
    post(&mut store, 1, 4..=40);
    let crashed = tempfile::tempdir().unwrap();
    for name in listing(dir.path()) {
        fs::copy(dir.path().join(&name), crashed.path().join(&name)).unwrap();
    }
    drop(store);
    (dir, copy, crashed)
}

#[test]
fn a_restore_replaces_a_file_whose_log_was_left_by_a_crash() {
    // The old file's log must not be applied to the copy put in its place.
    let (_dir, copy, crashed) = crashed_with_a_copy();
    let file = crashed.path().join("wsrooms.db");
    assert!(listing(crashed.path()).contains("wsrooms.db-wal"));
    // An interrupted restore left its temporary file.
    fs::write(crashed.path().join(".wsrooms.db.restore"), "half a copy").unwrap();
    copy::restore(&copy, &file, &mut |_| {}).unwrap();
    assert!(!listing(crashed.path()).iter().any(|n| n.starts_with('.')));
    assert!(!listing(crashed.path()).contains("wsrooms.db-wal"));
    let store = Store::open(&file, 100).unwrap();
    assert_eq!(store.room(1, 10).unwrap().unwrap().last_seq, 3);
}

/// Makes a file immutable (`chattr +i`) for as long as it lives, so that
/// renaming over it fails; `None` where that cannot be done (not root, a
/// file system without the attribute).
struct Immutable(PathBuf);

impl Immutable {
    fn new(path: &Path) -> Option<Immutable> {
        let made = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status();
        made.is_ok_and(|s| s.success())
            .then(|| Immutable(path.to_owned()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_restore_whose_rename_fails_leaves_the_file_its_log() {
    let (_dir, copy, crashed) = crashed_with_a_copy();
    let file = crashed.path().join("wsrooms.db");
    let names = listing(crashed.path());
    {
        let Some(_immutable) = Immutable::new(&file) else {
            return; // chattr needs root and a file system that has it
        };
        let failed = copy::restore(&copy, &file, &mut |_| {}).expect_err("rename refused");
        assert!(matches!(failed, copy::CopyError::Io { .. }), "{failed}");
    }
    let left = listing(crashed.path());
    assert!(left.contains("wsrooms.db-wal"), "{left:?}");
    assert_eq!(left, names, "as it was (and no temporary file)");
    let store = Store::open(&file, 100).unwrap();
    assert_eq!(store.room(1, 0).unwrap().unwrap().last_seq, 40);
}

#[test]
fn a_restore_gives_the_new_file_the_owner_of_the_old_one() {
    use std::os::unix::fs::MetadataExt;
    let (dir, path) = temp();
    post(&mut Store::open(&path, 100).unwrap(), 1, 1..=2);
    let copy = dir.path().join("copy.db");
    copy::backup(&path, &copy, false, &mut |_| {}).unwrap();
    if fs::metadata(&copy).unwrap().uid() != 0 {
        return; // only root can give a file to another user (CI runs as root)
    }
    std::os::unix::fs::chown(&path, Some(4321), Some(4322)).unwrap();
    copy::restore(&copy, &path, &mut |_| {}).unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (4321, 4322), "the service's file");
    let lock = fs::metadata(lock::lock_path(&path)).unwrap();
    assert_eq!((lock.uid(), lock.gid()), (4321, 4322), "and its lock file");
}

#[test]
fn a_restore_as_root_gives_away_no_file_a_link_points_to() {
    use std::os::unix::fs::MetadataExt;
    let (dir, path) = temp();
    post(&mut Store::open(&path, 100).unwrap(), 1, 1..=2);
    let copy = dir.path().join("copy.db");
    copy::backup(&path, &copy, false, &mut |_| {}).unwrap();
    if fs::metadata(&copy).unwrap().uid() != 0 {
        return; // only root can give a file to another user (CI runs as root)
    }
    // The service's user owns the file and its directory, and put a link
    // to a file of root's where the lock file goes.
    let victim = tempfile::NamedTempFile::new().unwrap();
    std::os::unix::fs::chown(&path, Some(4321), Some(4322)).unwrap();
    fs::remove_file(lock::lock_path(&path)).unwrap();
    std::os::unix::fs::symlink(victim.path(), lock::lock_path(&path)).unwrap();
    copy::restore(&copy, &path, &mut |_| {}).unwrap();
    let meta = fs::metadata(victim.path()).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "root's file stays root's");
    assert_eq!(fs::metadata(&path).unwrap().uid(), 4321);
}

#[test]
fn a_restore_replaces_only_a_wsrooms_file() {
    let (dir, path) = temp();
    post(&mut Store::open(&path, 100).unwrap(), 1, 1..=2);
    let copy = dir.path().join("copy.db");
    copy::backup(&path, &copy, false, &mut |_| {}).unwrap();
    // A wrong --data-file, or a link to another program's file.
    let text = dir.path().join("notes.txt");
    fs::write(&text, "not a database").unwrap();
    let foreign = dir.path().join("other.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("PRAGMA application_id=4660; CREATE TABLE t (x);")
        .unwrap();
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&foreign, &link).unwrap();
    for (target, what) in [(&text, "text"), (&foreign, "foreign"), (&link, "link")] {
        let before = fs::read(target).unwrap();
        let refused = copy::restore(&copy, target, &mut |_| {}).expect_err(what);
        assert!(
            matches!(
                refused,
                copy::CopyError::Refused(OpenError::NotSqlite { .. } | OpenError::Foreign { .. })
            ),
            "{what}: {refused}"
        );
        assert_eq!(fs::read(target).unwrap(), before, "{what} unchanged");
    }
    assert!(
        !listing(dir.path()).contains("other.db.lock"),
        "no lock file beside it"
    );
    // No file, an empty one, or a wsrooms one are replaced.
    let empty = dir.path().join("empty.db");
    fs::write(&empty, "").unwrap();
    for target in [dir.path().join("new.db"), empty, path] {
        copy::restore(&copy, &target, &mut |_| {}).expect("replaced");
    }
}

#[test]
fn a_damaged_copy_is_not_restored() {
    let (dir, path) = temp();
    let mut store = Store::open(&path, 100).unwrap();
    let text = "w".repeat(2000);
    for seq in 1..=200 {
        store.record_message(message(1, seq, &text));
    }
    store.commit().unwrap();
    let copy = dir.path().join("copy.db");
    copy::backup(&path, &copy, false, &mut |_| {}).unwrap();
    drop(store);
    // Scribble over pages 61–100, in the middle of the messages.
    let mut bytes = fs::read(&copy).unwrap();
    bytes[4096 * 60..4096 * 100].fill(0x5a);
    fs::write(&copy, bytes).unwrap();
    let refused = copy::restore(&copy, &path, &mut |_| {}).expect_err("damaged");
    assert!(
        matches!(refused, copy::CopyError::Damaged { .. }),
        "{refused}"
    );
    assert_eq!(
        Store::open(&path, 100)
            .unwrap()
            .room(1, 0)
            .unwrap()
            .unwrap()
            .last_seq,
        200,
        "the data file is kept"
    );
}

/// An event of room 5 recorded as the server records it.
fn event<'a>(seq: u64, user: &'a str, text: &'a str, kind: Kind) -> Message<'a> {
    Message {
        room: 5,
        seq,
        at: 1_700_000_000_000 + seq,
        user,
        text,
        kind,
    }
}

#[test]
fn edits_and_deletes_change_their_message_row_and_come_back_after_a_reopen() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, 100).unwrap();
    let alice = TokenHash([9; 32]);
    let said = Kind::Said {
        author: Some(alice),
    };
    for (seq, text) in [(1, "one"), (2, "two")] {
        store.record_message(event(seq, "alice", text, said));
    }
    store.commit().unwrap();
    store.record_message(event(3, "alice", "one!", Kind::Edit { target: 1 }));
    store.record_message(event(4, "alice", "two?", Kind::Edit { target: 2 }));
    store.commit().unwrap();
    store.record_message(event(5, "", "", Kind::Delete { target: 2 }));
    store.commit().unwrap();
    drop(store);

    let store = Store::open(&path, 100).unwrap();
    let room = store.room(5, 10).unwrap().unwrap();
    assert_eq!(room.last_seq, 5);
    let h = &room.history;
    assert_eq!(seqs(h), [1, 2, 3, 4, 5], "every event keeps its seq");
    assert_eq!(
        (h[0].text.as_str(), h[0].edited, h[0].kind),
        ("one!", Some(1_700_000_000_003), said)
    );
    assert_eq!(
        (h[1].text.as_str(), h[1].deleted),
        ("", true),
        "a tombstone"
    );
    assert_eq!(
        (h[2].text.as_str(), h[2].kind),
        ("one!", Kind::Edit { target: 1 })
    );
    assert_eq!(h[3].text, "", "an edit of a deleted message loses its text");
    assert_eq!(
        (h[4].user.as_str(), h[4].kind),
        ("", Kind::Delete { target: 2 })
    );
    assert_eq!(store.event(5, 2).unwrap(), Some(h[1].clone()));
    assert_eq!(store.event(5, 6).unwrap(), None);
    let page = store.history(5, Some(3), 10).unwrap();
    assert_eq!(page.messages, h[..2], "scrollback shows the current state");
}

#[test]
fn a_turn_of_many_messages_is_written_whole_and_in_order() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, 1000).unwrap();
    // 37 messages: two inserts of several rows, then five of one, in two
    // rooms interleaved.
    for seq in 1..=37u64 {
        let room = 1 + (seq % 2) as u32;
        store.record_message(message(room, seq, &format!("m{seq}")));
    }
    assert_eq!(store.commit().expect("commit").messages, 37);
    let odd = store.history(2, None, 100).unwrap().messages;
    assert_eq!(seqs(&odd), (1..=37).step_by(2).collect::<Vec<_>>());
    assert_eq!(odd[18].text, "m37");
    assert_eq!(odd[0].user, "Zoë");
    let even = store.history(1, None, 100).unwrap().messages;
    assert_eq!(seqs(&even), (2..=36).step_by(2).collect::<Vec<_>>());
    // A seq given twice in one turn fails the whole commit, even inside a
    // statement of several rows.
    for seq in 38..=57u64 {
        store.record_message(message(1, seq.min(50), "again"));
    }
    let error = store.commit().expect_err("seq 50 twice");
    assert_eq!(error.discarded.messages().len(), 20);
    assert_eq!(store.history(1, None, 100).unwrap().messages.len(), 18);
}

#[test]
fn edits_and_deletes_in_a_turn_of_many_rows_change_their_messages() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, 1000).unwrap();
    let said = Kind::Said {
        author: Some(TokenHash([9; 32])),
    };
    // One turn: 20 messages (one insert of 16 rows, four of one), then an
    // edit of 3 and a delete of 4 written in the same commit.
    let texts: Vec<String> = (1..=20).map(|n| format!("m{n}")).collect();
    for (n, text) in texts.iter().enumerate() {
        store.record_message(event(n as u64 + 1, "alice", text, said));
    }
    store.record_message(event(21, "alice", "m3!", Kind::Edit { target: 3 }));
    store.record_message(event(22, "", "", Kind::Delete { target: 4 }));
    store.commit().unwrap();
    let h = store.history(5, None, 100).unwrap().messages;
    assert_eq!(seqs(&h), (1..=22).collect::<Vec<_>>());
    assert_eq!(
        (h[2].text.as_str(), h[2].edited),
        ("m3!", Some(1_700_000_000_021))
    );
    assert_eq!((h[3].text.as_str(), h[3].deleted), ("", true));
    assert_eq!(h[19].text, "m20");
}

/// A `seq` that is already in the file fails the whole commit, even when
/// it sits in the middle of one multi-row `INSERT`: the rows that
/// statement wrote before it, and everything else of the turn, are rolled
/// back, and the message that was there keeps its text.
#[test]
fn a_seq_already_in_the_file_fails_the_whole_commit() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, 100).expect("create");
    post(&mut store, 5, 1..=3);
    for seq in 4..=12 {
        store.record_message(message(5, seq, "new"));
    }
    store.record_message(message(5, 2, "replaced?"));
    for seq in 13..=30 {
        store.record_message(message(5, seq, "new"));
    }
    store.record_message(message(6, 1, "another room"));
    let error = store.commit().expect_err("a seq given twice");
    assert!(!error.is_busy());
    assert_eq!(error.discarded.messages().count(), 29);
    let room = store.room(5, 100).expect("read").expect("room 5");
    assert_eq!(room.last_seq, 3);
    assert_eq!(seqs(&room.history), [1, 2, 3]);
    assert_eq!(room.history[1].text, "m2");
    assert!(store.room(6, 100).expect("read").is_none());
    // The store works on: the next turn commits.
    post(&mut store, 5, 4..=4);
    assert_eq!(store.room(5, 100).unwrap().unwrap().last_seq, 4);
}

/// `--sync-ms 0` promises a sync of the log before each turn's output,
/// `--sync-ms N` one within N ms. With `--data-file` a symbolic link,
/// SQLite keeps the log beside the file the link points to: that is the
/// log to sync (syncing `LINK-wal`, which does not exist, synced nothing).
#[test]
fn a_linked_data_file_still_syncs_its_log_every_commit() {
    let (dir, path) = temp();
    let real = dir.path().join("real");
    fs::create_dir(&real).unwrap();
    let target = real.join("rooms.db");
    fs::write(&target, "").unwrap(); // an empty file: a new database
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let settings = Settings {
        sync: SyncEvery::Commit,
        ..Settings::default()
    };
    let mut store = Store::open_with(&path, &settings).expect("open through the link");
    post(&mut store, 1, 1..=1);
    assert!(
        file::side_path(&target, "-wal").exists(),
        "SQLite keeps the log beside the target"
    );
    assert!(
        store.sync_stats().syncs() >= 1,
        "a commit with --sync-ms 0 must sync the log before its output; syncs: {}",
        store.sync_stats().syncs()
    );
    let log = file::side_path(&target, "-wal");
    assert_eq!(
        store.file_bytes(),
        fs::metadata(&target).unwrap().len() + fs::metadata(&log).unwrap().len(),
        "/metrics counts the log beside the real file"
    );
}

/// The same with `--sync-ms N`: the helper thread syncs the real log.
#[test]
fn a_linked_data_file_syncs_its_log_within_sync_ms() {
    let (dir, path) = temp();
    let real = dir.path().join("real");
    fs::create_dir(&real).unwrap();
    let target = real.join("rooms.db");
    fs::write(&target, "").unwrap(); // an empty file: a new database
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let settings = Settings {
        sync: SyncEvery::from_millis(10),
        ..Settings::default()
    };
    let mut store = Store::open_with(&path, &settings).expect("open through the link");
    post(&mut store, 1, 1..=1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while store.sync_stats().syncs() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        store.sync_stats().syncs() >= 1,
        "a commit must be synced within --sync-ms; syncs after 5 s: {}",
        store.sync_stats().syncs()
    );
}

/// The `open_in_boot` record (see `boot`): what a row of it says, or
/// `None` once the file was closed cleanly.
fn open_record(path: &Path) -> Option<String> {
    let conn = Connection::open(path).unwrap();
    conn.query_row(
        "SELECT value FROM meta WHERE key = 'open_in_boot'",
        [],
        |row| row.get(0),
    )
    .ok()
}

/// As a process stopped without closing the file (`kill -9`, a power
/// loss) would leave it, in boot `boot`.
fn leave_open_record(path: &Path, boot: &str) {
    let conn = Connection::open(path).unwrap();
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('open_in_boot', ?1)",
        [boot],
    )
    .unwrap();
}

/// A power loss (or a crash of the system) can take the last `--sync-ms`
/// of commits with it, and their `seq`s would be given again, to other
/// messages: a file last open in another boot, and not closed, takes a new
/// epoch, so that pages start their rooms afresh. After `kill -9` in the
/// same boot nothing was lost, and after a clean close nothing happened:
/// the epoch stays.
#[test]
fn a_file_left_open_before_a_reboot_takes_a_new_epoch() {
    let (_dir, path) = temp();
    let store = Store::open(&path, 100).expect("create");
    let first = store.epoch();
    assert_eq!(
        open_record(&path).as_deref(),
        Some(boot::this_boot().unwrap_or_default().as_str()),
        "recorded while open"
    );
    drop(store);
    assert_eq!(open_record(&path), None, "a clean close deletes it");
    assert_eq!(Store::open(&path, 100).unwrap().epoch(), first);

    let this = boot::this_boot().expect("Linux tells its boot id");
    leave_open_record(&path, &this);
    let store = Store::open(&path, 100).unwrap();
    assert_eq!(store.epoch(), first, "a crash in this boot lost nothing");
    assert!(
        store.sync_stats().syncs() >= 1,
        "the record is synced at open"
    );
    drop(store);

    leave_open_record(&path, "a-boot-before-the-power-went");
    let store = Store::open(&path, 100).unwrap();
    let second = store.epoch();
    assert_ne!(second, first, "commits may be lost: a new epoch");
    assert_eq!(open_record(&path).as_deref(), Some(this.as_str()));
    drop(store);
    assert_eq!(
        Store::open(&path, 100).unwrap().epoch(),
        second,
        "and it stays"
    );
}

/// The loop's own checkpoints (a pause of every connection) are counted
/// apart from the helper thread's, for `wsrooms_loop_checkpoints_total`.
#[test]
fn the_loops_own_checkpoints_are_counted_apart() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, DEFAULT_KEEP_MESSAGES).unwrap();
    post(&mut store, 1, 1..=10);
    store.checkpoint().unwrap();
    let stats = store.sync_stats();
    assert_eq!((stats.checkpoints(), stats.loop_checkpoints()), (1, 1));
    post(&mut store, 1, 11..=20);
    assert!(store.start_checkpoint(), "no checkpoint was running");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.sync_stats().checkpoints() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let stats = store.sync_stats();
    assert_eq!((stats.checkpoints(), stats.loop_checkpoints()), (2, 1));
}

/// A COPY that names one of the data file's side files is refused even
/// when that side file does not exist and the path goes through a link to
/// the directory. (It was written with a whole database: the next start
/// on the data file then deleted a `-wal` copy, the backup gone, or
/// refused to start beside a `-journal` copy.)
#[test]
fn a_backup_into_a_missing_side_file_spelt_through_a_link_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let path = link.join("wsrooms.db");
    post(&mut Store::open(&path, 100).unwrap(), 1, 1..=3);
    // The server stopped: no log beside the file.
    for side in ["-wal", "-journal"] {
        let copy = link.join(format!("wsrooms.db{side}"));
        assert!(!copy.exists(), "{copy:?}");
        let result = copy::backup(&path, &copy, false, &mut |_| {});
        let wrote = copy.exists();
        let _ = fs::remove_file(&copy);
        assert!(
            matches!(result, Err(copy::CopyError::SameFile { .. })),
            "backup into {copy:?} (the data file's own {side}) was {:?}; file written: {wrote}",
            result.map(|c| c.pages)
        );
    }
}

/// A file of schema version 6 at `path` with the rows `sql` inserts.
fn version_6_file(path: &Path, sql: &str) {
    let mut old = Connection::open(path).unwrap();
    schema::migrate(&mut old, 0, &schema::STEPS[..6]).unwrap();
    old.execute_batch(sql).unwrap();
}

/// A file of version 6 (a row per event in `messages`) is moved into
/// chunks at start: every event, its author, its edit and its delete
/// read back as they were, and the view `messages` shows the same rows.
#[test]
fn a_version_6_file_is_moved_into_chunks_and_reads_the_same() {
    let (_dir, path) = temp();
    version_6_file(
        &path,
        "INSERT INTO rooms VALUES (5), (6);
             INSERT INTO messages (room, seq, at, user, text, kind, target, author, edited, deleted)
             VALUES (5, 1, 10, 'a', 'one!', 0, NULL, zeroblob(32), 14, 0),
                    (5, 2, 11, 'b', '', 0, NULL, NULL, NULL, 1),
                    (5, 3, 12, 'a', 'one!', 1, 1, NULL, NULL, 0),
                    (5, 4, 13, '', '', 2, 2, NULL, NULL, 0);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 150)
             INSERT INTO messages (room, seq, at, user, text) SELECT 6, x, x, 'z', 'm' || x FROM c;",
    );
    let store = Store::open(&path, 1000).unwrap();
    let five = store.history(5, None, 10).unwrap().messages;
    assert_eq!(seqs(&five), [1, 2, 3, 4]);
    assert_eq!(
        (five[0].text.as_str(), five[0].edited, five[0].kind),
        (
            "one!",
            Some(14),
            Kind::Said {
                author: Some(TokenHash([0; 32]))
            }
        )
    );
    assert!(five[1].deleted);
    assert_eq!(five[2].kind, Kind::Edit { target: 1 });
    assert_eq!(five[3].kind, Kind::Delete { target: 2 });
    let six = store.room(6, 200).unwrap().unwrap();
    assert_eq!((six.last_seq, six.history.len()), (150, 150));
    assert_eq!(six.history[149].text, "m150");
    let chunks: i64 = store
        .conn
        .query_row("SELECT count(*) FROM chunks WHERE room = 6", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(chunks, 3, "150 events in chunks of 64");
    let view: (i64, String, String, i64) = store
        .conn
        .query_row(
            "SELECT count(*), max(text), max(author), sum(deleted) FROM messages WHERE room = 5",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(view, (4, "one!".to_owned(), "00".repeat(32), 1));
}

/// A delete empties the text of the message's edits in later chunks too,
/// and leaves the other chunks as they were.
#[test]
fn a_delete_empties_its_messages_edits_in_every_chunk() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, 1000).unwrap();
    let said = Kind::Said {
        author: Some(TokenHash([9; 32])),
    };
    store.record_message(event(1, "alice", "secret one", said));
    store.record_message(event(2, "alice", "secret two", Kind::Edit { target: 1 }));
    store.commit().unwrap();
    store.record_message(event(3, "bob", "[1,2,\"x\",1,1]", said));
    store.commit().unwrap();
    store.record_message(event(4, "alice", "secret three", Kind::Edit { target: 1 }));
    store.record_message(event(5, "bob", "other", said));
    store.commit().unwrap();
    store.record_message(event(6, "alice", "", Kind::Delete { target: 1 }));
    store.commit().unwrap();
    let h = store.history(5, None, 10).unwrap().messages;
    assert_eq!(seqs(&h), [1, 2, 3, 4, 5, 6]);
    assert!(h[0].deleted);
    let texts: Vec<&str> = h.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["", "", "[1,2,\"x\",1,1]", "", "other", ""]);
    let left: i64 = store
        .conn
        .query_row(
            "SELECT count(*) FROM chunks WHERE events LIKE '%secret%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "a deleted text stays in no row");
}

/// A room's last `seq` is looked up with a statement prepared once:
/// SQLite prepares a statement again when its plan depends on a bound
/// value (see `events::LAST_SEQ`), and a commit that meets a room it has
/// not noted runs it.
#[test]
fn the_last_seq_statement_is_prepared_once() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, 5).unwrap();
    for seq in 1..=20 {
        for room in 1..=3 {
            store.record_message(message(room, seq, "m"));
        }
        store.commit().unwrap();
    }
    for room in 1..=3 {
        store.room(room, 1).unwrap().expect("a room with messages");
    }
    let stmt = store.conn.prepare_cached(events::LAST_SEQ).unwrap();
    assert!(stmt.get_status(rusqlite::StatementStatus::Run) >= 6);
    assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
}

/// What the store notes of the rooms it wrote stands for the file's own
/// last `seq`: a seq given again is refused all the same, after a commit
/// that failed, and after a retention step removed a room (which then
/// starts again at 1).
#[test]
fn a_seq_given_again_is_refused_with_or_without_the_noted_last_seq() {
    let (_dir, path) = temp();
    let mut store = Store::open(&path, 100).unwrap();
    post(&mut store, 1, 1..=5);
    store.record_message(message(1, 5, "again"));
    assert!(store.commit().is_err(), "noted: 5");
    store.record_message(message(1, 3, "again"));
    assert!(store.commit().is_err(), "looked up after the failure");
    post(&mut store, 1, 6..=6);
    assert_eq!(store.room(1, 10).unwrap().unwrap().last_seq, 6);
}

/// Values of odd types in a version 6 file (put in by hand: SQLite keeps
/// whatever a column is given) do not stop the upgrade to version 7, and
/// with it the start: each becomes the nearest event, and a row that
/// cannot be placed (its seq not a number, or met before) is left out.
#[test]
fn odd_values_in_a_version_6_file_do_not_stop_the_upgrade() {
    let (_dir, path) = temp();
    version_6_file(
        &path,
        "INSERT INTO rooms VALUES (5), (6);
             INSERT INTO messages (room, seq, at, user, text, author, kind, deleted)
             VALUES (5, 1, 10, 'a', 'hello', 'not a blob', 0, 0),
                    (5, 2, 10.5, 7, x'6869', NULL, '0', 'no'),
                    (5, 2.5, 11, 'c', 'met before', NULL, 0, 0),
                    (5, 'x', 12, 'd', 'no seq', NULL, 0, 0),
                    (6, 1, 10, 'b', 'other room', NULL, 0, 0);",
    );
    let store = Store::open(&path, 100).expect("the file opens");
    let five = store.history(5, None, 10).unwrap().messages;
    assert_eq!(seqs(&five), [1, 2]);
    assert_eq!(five[0].kind, Kind::SAID, "not a hash: nobody's");
    assert_eq!(
        (five[1].at, five[1].user.as_str(), five[1].text.as_str()),
        (10, "7", "hi")
    );
    let six = store.room(6, 10).unwrap().unwrap();
    assert_eq!(six.history[0].text, "other room");
}

/// A chunk whose events do not rise (a file edited by hand) is not a chunk
/// the writer could have left: it must read as damage of its room, not
/// serve an event twice and out of order.
#[test]
fn a_chunk_whose_events_do_not_rise_reads_as_damage() {
    let (_dir, path) = temp();
    let store = Store::open(&path, 100).unwrap();
    store
        .conn
        .execute_batch(
            "INSERT INTO rooms VALUES (9);
             INSERT INTO chunks (room, first, last, at, events) VALUES
               (9, 1, 2, 5, '[[2,5,\"u\",\"two\"],[2,5,\"u\",\"again\"],[1,4,\"u\",\"one\"]]');",
        )
        .unwrap();
    match store.history(9, None, 10) {
        Err(e) => assert!(e.is_damage(), "{e}"),
        Ok(page) => panic!("read as {:?}", seqs(&page.messages)),
    }
}

/// Retention by age must not stop for every room because one room's
/// chunk does not decode (which the store otherwise treats as damage of
/// that room only).
#[test]
fn one_undecodable_chunk_does_not_stop_retention_of_the_other_rooms() {
    let (_dir, path) = temp();
    let settings = Settings {
        keep_days: 1,
        ..Settings::default()
    };
    let now = 1_800_000_000_000u64;
    let old = now - 3 * retention::DAY_MS;
    let mut store = Store::open_with(&path, &settings).unwrap();
    for seq in 1..=5 {
        store.record_message(Message {
            at: old,
            ..message(1, seq, "old")
        });
        store.commit().unwrap();
    }
    store
        .conn
        .execute_batch(
            "INSERT INTO rooms VALUES (2);
             INSERT INTO chunks (room, first, last, at, events) VALUES (2, 1, 1, 0, 'not json');",
        )
        .unwrap();
    let step = store.retention_step(now, |room| room == 1);
    assert!(step.is_ok(), "{step:?}");
    assert_eq!(store.room(1, 10).unwrap().unwrap().history.len(), 1);
}

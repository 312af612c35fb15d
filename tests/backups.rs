//! Backups while serving: `sqlite3 FILE ".backup COPY"`, `VACUUM INTO`, a
//! read-only reader and `wsrooms backup` all work on the data file of a
//! running server under load, and give copies that pass SQLite's
//! `integrity_check` and on which wsrooms starts with the same cookies. One
//! process per file (a second server exits 2). `wsrooms restore` is refused
//! while a server runs and gives the file a new epoch, which `welcome`
//! carries; a restart without restore keeps it.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use tungstenite::Message;

/// Runs under `common::harness` (`harness = false` in Cargo.toml), so
/// that a case skipped for a missing `sqlite3` shows in `cargo test`'s output.
fn main() -> std::process::ExitCode {
    common::harness::run(
        "backups",
        &[
            (
                "sqlite3_backup_vacuum_into_and_a_reader_work_under_load",
                sqlite3_backup_vacuum_into_and_a_reader_work_under_load,
            ),
            (
                "wsrooms_backup_under_load_gives_a_copy_that_serves_the_same_cookies",
                wsrooms_backup_under_load_gives_a_copy_that_serves_the_same_cookies,
            ),
            (
                "a_second_server_on_the_same_file_exits_2",
                a_second_server_on_the_same_file_exits_2,
            ),
            (
                "restore_is_refused_while_serving_and_gives_a_new_epoch",
                restore_is_refused_while_serving_and_gives_a_new_epoch,
            ),
            (
                "without_a_data_file_the_epoch_is_per_process",
                without_a_data_file_the_epoch_is_per_process,
            ),
            (
                "a_long_reader_neither_stalls_the_server_nor_gets_a_checkpoint_every_turn",
                a_long_reader_neither_stalls_the_server_nor_gets_a_checkpoint_every_turn,
            ),
            (
                "another_programs_write_lock_is_not_waited_for",
                another_programs_write_lock_is_not_waited_for,
            ),
        ],
    )
}

/// Every `(room, seq)` a client was shown, with its text.
type Seen = Arc<Mutex<BTreeMap<(u32, u64), String>>>;

/// A few clients chatting as fast as their messages come back, in two rooms,
/// until dropped. Each keeps its cookie.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    seen: Seen,
    cookies: Vec<(u32, String)>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Seen = Arc::default();
        let mut threads = Vec::new();
        let mut cookies = Vec::new();
        for i in 0..4u32 {
            let room = 1 + i % 2;
            let cookie = login(addr, &format!("user{i}"), room);
            cookies.push((room, cookie.clone()));
            let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
            threads.push(std::thread::spawn(move || {
                chat(addr, room, &cookie, i, &stop, &seen)
            }));
        }
        let load = Load {
            stop,
            threads,
            seen,
            cookies,
        };
        assert!(
            wait_until(Duration::from_secs(10), || load.count() >= 200),
            "the load got going"
        );
        load
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Stops the clients; returns what they were shown.
    fn finish(mut self) -> BTreeMap<(u32, u64), String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().expect("a chatting client failed");
        }
        self.seen.lock().unwrap().clone()
    }
}

/// One client: sends a message, reads until it comes back, again.
fn chat(addr: SocketAddr, room: u32, cookie: &str, i: u32, stop: &AtomicBool, seen: &Seen) {
    let mut ws = ws_connect(addr, room, cookie);
    next_of_type(&mut ws, "welcome");
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let text = format!("u{i} says {n}");
        ws.send(Message::text(text.clone())).unwrap();
        loop {
            let m = next_of_type(&mut ws, "message");
            let seq = m["seq"].as_u64().unwrap();
            let got = m["text"].as_str().unwrap().to_string();
            let mine = got == text;
            seen.lock().unwrap().insert((room, seq), got);
            if mine {
                break;
            }
        }
    }
}

/// The real binary on the data file `path`, rate limit off.
fn server_on(path: &Path) -> Spawned {
    spawn_binary(&["--rate-limit", "0", "--data-file", path.to_str().unwrap()])
}

fn stop(server: &mut Spawned) {
    sigterm(server.child.id());
    let status = wait_exit(&mut server.child, Duration::from_secs(10)).expect("exit after SIGTERM");
    assert!(status.success(), "{status}");
}

/// `wsrooms ARGS` (not the server), bounded.
fn wsrooms(args: &[&str]) -> Finished {
    run_bounded(
        Command::new(env!("CARGO_BIN_EXE_wsrooms")).args(args),
        None,
        Duration::from_secs(60),
    )
}

/// SQLite's own verdict on a file, read with a connection of this test.
fn integrity(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// Every message in a data file (or copy): `(room, seq)` → text.
fn messages_in(path: &Path) -> BTreeMap<(u32, u64), String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT room, seq, text FROM messages")
        .unwrap();
    stmt.query_map([], |r| {
        Ok(((r.get(0)?, r.get::<_, i64>(1)? as u64), r.get(2)?))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// A copy taken under load: sound, a prefix of what the clients were shown
/// (every seq in it has the text a client saw for it), and wsrooms serves
/// it with the clients' cookies.
fn check_copy(copy: &Path, seen: &BTreeMap<(u32, u64), String>, cookies: &[(u32, String)]) {
    assert_eq!(integrity(copy), "ok", "{copy:?}");
    let kept = messages_in(copy);
    assert!(!kept.is_empty(), "the copy has messages");
    for (key, text) in &kept {
        assert_eq!(seen.get(key), Some(text), "{key:?} in {copy:?}");
    }
    let mut server = server_on(copy);
    for (room, cookie) in cookies {
        let mut ws = ws_connect(server.addr, *room, cookie);
        let welcome = next_of_type(&mut ws, "welcome");
        for m in welcome["history"].as_array().unwrap() {
            let key = (*room, m["seq"].as_u64().unwrap());
            assert_eq!(seen.get(&key).map(String::as_str), m["text"].as_str());
        }
    }
    stop(&mut server);
}

fn sqlite3_backup_vacuum_into_and_a_reader_work_under_load() {
    let sqlite3 = find_program(&["sqlite3"]);
    if !require(
        "backups (sqlite3 .backup)",
        "the sqlite3 program",
        "apt-get install sqlite3",
        sqlite3.is_some(),
    ) {
        return;
    }
    let sqlite3 = sqlite3.unwrap();
    let dir = TempDir::new("backup-sqlite3");
    let file = dir.join("rooms.db");
    let mut server = server_on(&file);
    let load = Load::start(server.addr);
    let run = |args: &[&str]| {
        let out = run_bounded(
            Command::new(&sqlite3).args(args),
            None,
            Duration::from_secs(60),
        );
        assert!(out.exited().success(), "sqlite3 {args:?}: {}", out.stderr);
        out.stdout
    };
    let file_arg = file.to_str().unwrap();
    let copy = dir.join("copy.db");
    run(&[file_arg, &format!(".backup {}", copy.display())]);
    let vacuumed = dir.join("vacuumed.db");
    run(&[file_arg, &format!("VACUUM INTO '{}'", vacuumed.display())]);
    let count = run(&["-readonly", file_arg, "SELECT count(*) FROM messages"]);
    assert!(count.trim().parse::<u64>().unwrap() > 0, "{count}");
    let during = load.count();
    assert!(
        wait_until(Duration::from_secs(10), || load.count() > during + 50),
        "the server kept serving"
    );
    let cookies = load.cookies.clone();
    let seen = load.finish();
    stop(&mut server);
    check_copy(&copy, &seen, &cookies);
    check_copy(&vacuumed, &seen, &cookies);
}

fn wsrooms_backup_under_load_gives_a_copy_that_serves_the_same_cookies() {
    let dir = TempDir::new("backup-wsrooms");
    let file = dir.join("rooms.db");
    let mut server = server_on(&file);
    let load = Load::start(server.addr);
    let copy = dir.join("copy.db");
    let (file_arg, copy_arg) = (file.to_str().unwrap(), copy.to_str().unwrap());
    let out = wsrooms(&["backup", "--data-file", file_arg, copy_arg]);
    assert!(out.exited().success(), "{}", out.stderr);
    assert_eq!(out.stderr, "", "no progress when stderr is not a terminal");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", out.stdout);
    assert!(lines[0].starts_with("wsrooms: backed up"), "{}", lines[0]);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&copy).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "it holds conversations: owner only");

    let again = wsrooms(&["backup", "--data-file", file_arg, copy_arg]);
    assert_eq!(
        again.exited().code(),
        Some(2),
        "an existing copy is refused"
    );
    assert_eq!(again.stderr.lines().count(), 1, "{:?}", again.stderr);
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    let forced = wsrooms(&["backup", "--force", "--data-file", file_arg, copy_arg]);
    assert!(forced.exited().success(), "{}", forced.stderr);

    let cookies = load.cookies.clone();
    let seen = load.finish();
    stop(&mut server);
    check_copy(&copy, &seen, &cookies);
}

fn a_second_server_on_the_same_file_exits_2() {
    let dir = TempDir::new("backup-second");
    let file = dir.join("rooms.db");
    let server = server_on(&file);
    let cookie = login(server.addr, "alice", 1);
    let out = wsrooms(&[
        "--bind",
        "127.0.0.1:0",
        "--data-file",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.exited().code(), Some(2), "stderr: {}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {:?}", out.stderr);
    assert!(lines[0].contains("in use"), "{}", lines[0]);
    // The first one is undisturbed.
    let mut ws = ws_connect(server.addr, 1, &cookie);
    next_of_type(&mut ws, "welcome");
}

/// Alice's welcome on `addr` with her cookie and `since`.
fn welcome(addr: SocketAddr, cookie: &str, since: u64) -> serde_json::Value {
    let mut ws = ws_connect_path(
        addr,
        &format!("/rooms/1/ws?since={since}"),
        Some(cookie),
        Some(&format!("http://{addr}")),
    )
    .expect("the session's socket is accepted");
    next_of_type(&mut ws, "welcome")
}

fn epoch_of(welcome: &serde_json::Value) -> String {
    let epoch = welcome["epoch"].as_str().expect("epoch is a string");
    assert_eq!(epoch.len(), 16, "{epoch}");
    assert!(epoch.bytes().all(|b| b.is_ascii_hexdigit()), "{epoch}");
    epoch.to_string()
}

fn restore_is_refused_while_serving_and_gives_a_new_epoch() {
    let dir = TempDir::new("backup-restore");
    let file = dir.join("rooms.db");
    let copy = dir.join("copy.db");
    let (file_arg, copy_arg) = (file.to_str().unwrap(), copy.to_str().unwrap());
    let mut server = server_on(&file);
    let cookie = login(server.addr, "alice", 1);
    let mut alice = ws_connect(server.addr, 1, &cookie);
    let first = epoch_of(&next_of_type(&mut alice, "welcome"));
    let say = |alice: &mut Ws, text: &str| {
        alice.send(Message::text(text)).unwrap();
        next_of_type(alice, "message")["seq"].as_u64().unwrap()
    };
    assert_eq!(say(&mut alice, "one"), 1);
    assert!(
        wsrooms(&["backup", "--data-file", file_arg, copy_arg])
            .exited()
            .success()
    );
    assert_eq!(say(&mut alice, "two"), 2);

    let refused = wsrooms(&["restore", copy_arg, "--data-file", file_arg]);
    assert_eq!(refused.exited().code(), Some(2), "{}", refused.stdout);
    assert!(refused.stderr.contains("in use"), "{}", refused.stderr);
    assert_eq!(refused.stderr.lines().count(), 1, "{:?}", refused.stderr);
    drop(alice);
    stop(&mut server);

    let restored = wsrooms(&["restore", copy_arg, "--data-file", file_arg]);
    assert!(restored.exited().success(), "{}", restored.stderr);
    assert!(
        restored.stdout.starts_with("wsrooms: restored"),
        "{}",
        restored.stdout
    );
    let mut server = server_on(&file);
    let w = welcome(server.addr, &cookie, 2);
    let second = epoch_of(&w);
    assert_ne!(second, first, "a restore draws a new epoch");
    // The copy's numbering: seq 2 will now be another message, which the
    // new epoch tells the page.
    assert_eq!(history_texts(&w), ["one"]);
    let mut alice = ws_connect(server.addr, 1, &cookie);
    next_of_type(&mut alice, "welcome");
    assert_eq!(say(&mut alice, "two, again"), 2);
    drop(alice);
    stop(&mut server);

    // A restart without a restore keeps the epoch.
    let mut server = server_on(&file);
    assert_eq!(epoch_of(&welcome(server.addr, &cookie, 2)), second);
    stop(&mut server);
}

fn without_a_data_file_the_epoch_is_per_process() {
    let one = spawn_binary(&[]);
    let (_a, wa) = join(one.addr, "alice", 1);
    let (_b, wb) = join(one.addr, "bob", 2);
    assert_eq!(epoch_of(&wa), epoch_of(&wb), "one process, one epoch");
    let two = spawn_binary(&[]);
    let (_c, wc) = join(two.addr, "alice", 1);
    assert_ne!(
        epoch_of(&wa),
        epoch_of(&wc),
        "seqs start again: a new epoch"
    );
}

/// The log's size in pages, as SQLite reports it to a checkpoint of
/// another connection (`PASSIVE`: it copies what it can and waits for
/// nobody).
/// The log's pages between two checkpoints of the server (4 KiB pages).
const CHECKPOINT_PAGES: u64 = wsrooms::store::wal::CHECKPOINT_BYTES as u64 / 4096;
const OVERDUE_CHECKPOINTS: u32 = wsrooms::store::wal::OVERDUE_CHECKPOINTS;

fn log_pages(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
        .unwrap()
}

fn a_long_reader_neither_stalls_the_server_nor_gets_a_checkpoint_every_turn() {
    let dir = TempDir::new("backup-reader");
    let file = dir.join("rooms.db");
    let server = spawn_binary(&[
        "--rate-limit",
        "0",
        "--max-chat-chars",
        "1000",
        "--data-file",
        file.to_str().unwrap(),
    ]);
    let (mut alice, _) = join(server.addr, "alice", 1);
    let text = "x".repeat(900);
    let mut seq = 0u64;
    let mut chat = |alice: &mut Ws, count: u64| {
        let mut slowest = Duration::ZERO;
        for _ in 0..count {
            seq += 1;
            let started = std::time::Instant::now();
            alice.send(Message::text(text.clone())).unwrap();
            assert_eq!(next_of_type(alice, "message")["seq"], seq);
            slowest = slowest.max(started.elapsed());
        }
        slowest
    };
    chat(&mut alice, 20);
    // A reader (a backup, a replicator) holds one snapshot meanwhile.
    let reader = rusqlite::Connection::open(&file).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let seen: i64 = reader
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seen, 20);
    let before = read_metric(server.addr, "wsrooms_checkpoints_total");
    let slowest = chat(&mut alice, 300);
    assert!(slowest < Duration::from_secs(1), "a turn took {slowest:?}");
    let checkpoints = read_metric(server.addr, "wsrooms_checkpoints_total") - before;
    let held = log_pages(&file);
    // 300 commits of a few pages each: one checkpoint per CHECKPOINT_PAGES new pages of
    // log (all of them still in the log, which the reader holds), not one
    // per turn.
    assert!(
        checkpoints <= (held as f64 / CHECKPOINT_PAGES as f64).ceil() + 1.0,
        "{checkpoints} checkpoints while the reader held the log ({held} pages)"
    );
    assert!(
        held > 300,
        "the log grew while the reader held it: {held} pages"
    );
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    // Once it is done, the server's checkpoints copy it all and the log
    // starts again from its beginning: at the latest when the loop
    // checkpoints itself, once the log holds OVERDUE_CHECKPOINTS ×
    // CHECKPOINT_BYTES (every commit adds at least one page).
    let mut after = log_pages(&file);
    let mut sent = 0;
    while after >= held / 2 && sent < OVERDUE_CHECKPOINTS as u64 * CHECKPOINT_PAGES {
        chat(&mut alice, 50);
        sent += 50;
        after = log_pages(&file);
    }
    assert!(
        after < held / 2,
        "the log started again: {after} pages, {held} before ({sent} messages later)"
    );
}

/// (What a busy file does to messages and logins is `tests/busy_file.rs`.)
fn another_programs_write_lock_is_not_waited_for() {
    let dir = TempDir::new("backup-writer");
    let file = dir.join("rooms.db");
    let server = server_on(&file);
    let cookie = login(server.addr, "alice", 1);
    let mut alice = ws_connect(server.addr, 1, &cookie);
    next_of_type(&mut alice, "welcome");
    alice.send(Message::text("before")).unwrap();
    assert_eq!(next_of_type(&mut alice, "message")["seq"], 1);
    // Another program takes SQLite's write lock and keeps it.
    let writer = rusqlite::Connection::open(&file).unwrap();
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    alice.send(Message::text("meets the lock")).unwrap();
    // The loop does not wait for the lock: it answers meanwhile.
    let started = std::time::Instant::now();
    assert_eq!(get(server.addr, "/healthz", "").status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    writer.execute_batch("ROLLBACK").unwrap();
    drop(writer);
    // The message waited for the lock, and is stored and delivered now.
    let m = next_of_type(&mut alice, "message");
    assert_eq!(
        (m["seq"].as_u64(), m["text"].as_str()),
        (Some(2), Some("meets the lock"))
    );
}

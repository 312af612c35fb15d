//! A `--data-file` that is not a wsrooms database (text, another program's
//! SQLite file, a newer schema, a FIFO), or that has another database's
//! `-wal` or `-journal` beside it, stops the server at start, before any
//! port is bound: exit 2, one line on stderr saying why, every file
//! unchanged, nothing created beside it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Runs under `common::harness` (`harness = false` in Cargo.toml), so
/// that a case skipped for a missing tool shows in `cargo test`'s output.
fn main() -> std::process::ExitCode {
    common::harness::run(
        "data_file_refused",
        &[
            ("a_text_file_is_refused", a_text_file_is_refused),
            (
                "another_programs_sqlite_file_is_refused",
                another_programs_sqlite_file_is_refused,
            ),
            ("a_newer_schema_is_refused", a_newer_schema_is_refused),
            (
                "a_missing_file_is_created_and_used",
                a_missing_file_is_created_and_used,
            ),
            (
                "another_programs_log_copied_beside_the_file_is_refused",
                another_programs_log_copied_beside_the_file_is_refused,
            ),
            (
                "a_fifo_is_refused_before_the_port_is_bound",
                a_fifo_is_refused_before_the_port_is_bound,
            ),
        ],
    )
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Starts the binary on `path`; it must refuse: exit 2, one stderr line
/// containing `why`, the file byte for byte as it was, no new file.
fn refused(path: &Path, why: &str) {
    let dir = path.parent().unwrap();
    let before = std::fs::read(path).unwrap();
    let names = listing(dir);
    let line = refusal_line(path);
    assert!(line.contains(why), "{line:?} should say {why:?}");
    assert!(
        line.contains(path.to_str().unwrap()),
        "{line:?} names the file"
    );
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "the file is unchanged"
    );
    assert_eq!(listing(dir), names, "nothing created beside it");
}

/// Runs a Python snippet with `sqlite3` that makes a database at argv[1].
fn make_sqlite(python: &Path, path: &Path, script: &str) {
    let out = run_bounded(
        Command::new(python).args(["-c", script, path.to_str().unwrap()]),
        None,
        TOOL_TIMEOUT,
    );
    assert!(out.exited().success(), "{}", out.stderr);
}

fn a_text_file_is_refused() {
    let dir = TempDir::new("refused-text");
    let path = dir.join("rooms.db");
    std::fs::write(&path, "these are my notes, not a database\n").unwrap();
    refused(&path, "not an SQLite database");
}

fn another_programs_sqlite_file_is_refused() {
    let Some(python) = python("another_programs_sqlite_file_is_refused", &["sqlite3"]) else {
        return;
    };
    let dir = TempDir::new("refused-foreign");
    let path = dir.join("app.db");
    make_sqlite(
        &python,
        &path,
        "import sqlite3, sys\n\
         c = sqlite3.connect(sys.argv[1])\n\
         c.execute('create table notes (id integer primary key, body text)')\n\
         c.execute(\"insert into notes (body) values ('keep me')\")\n\
         c.commit()\n\
         c.close()\n",
    );
    refused(&path, "another program");
}

fn a_newer_schema_is_refused() {
    let Some(python) = python("a_newer_schema_is_refused", &["sqlite3"]) else {
        return;
    };
    let dir = TempDir::new("refused-newer");
    let path = dir.join("rooms.db");
    let script = format!(
        "import sqlite3, sys\n\
         c = sqlite3.connect(sys.argv[1])\n\
         c.execute('pragma application_id = {}')\n\
         c.execute('pragma user_version = {}')\n\
         c.execute('create table future (x)')\n\
         c.commit()\n\
         c.close()\n",
        wsrooms::store::APPLICATION_ID as i32,
        wsrooms::store::SCHEMA_VERSION + 1
    );
    make_sqlite(&python, &path, &script);
    refused(&path, "newer");
}

fn a_missing_file_is_created_and_used() {
    let dir = TempDir::new("data-file-new");
    let path = dir.join("rooms.db");
    let server = spawn_binary(&["--data-file", path.to_str().unwrap()]);
    let cookie = login(server.addr, "alice", 2);
    assert!(cookie.starts_with("wsrooms_session="));
    assert!(path.is_file());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "it holds conversations: owner only");
}

/// SHA-256 of the file at `path`, `None` if there is none.
fn digest(path: &Path) -> Option<Vec<u8>> {
    use sha2::Digest;
    std::fs::read(path)
        .ok()
        .map(|bytes| sha2::Sha256::digest(bytes).to_vec())
}

/// The data file and its two side files, each with its digest.
fn three_files(path: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    ["", "-journal", "-wal"]
        .iter()
        .map(|suffix| {
            let name = format!("{}{suffix}", path.display());
            let hash = digest(Path::new(&name));
            (name, hash)
        })
        .collect()
}

/// The recipe: wsrooms ran on B.db with one login and stopped;
/// another program's WAL-mode database F.db (another `application_id`)
/// died with commits in its log; its log is copied to `B.db-wal`. SQLite
/// would replay it into B.db on opening; wsrooms must refuse first.
fn another_programs_log_copied_beside_the_file_is_refused() {
    let dir = TempDir::new("refused-foreign-wal");
    let path = dir.join("B.db");
    let mut server = spawn_binary(&["--data-file", path.to_str().unwrap()]);
    let cookie = login(server.addr, "alice", 2);
    sigterm(server.child.id());
    let stopped = wait_exit(&mut server.child, Duration::from_secs(20));
    assert!(stopped.is_some_and(|s| s.success()), "{}", server.log.all());

    let other = TempDir::new("foreign-app");
    let conn = rusqlite::Connection::open(other.join("F.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; \
         PRAGMA application_id=4660; \
         CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); \
         INSERT INTO notes (body) VALUES ('not a chat');",
    )
    .unwrap();
    // Copied while F.db is open: what its crash would leave.
    std::fs::copy(other.join("F.db-wal"), dir.join("B.db-wal")).unwrap();
    drop(conn);

    let before = three_files(&path);
    assert!(before[2].1.is_some(), "the stray log is there");
    refused_side(&path, "B.db-wal");
    assert_eq!(three_files(&path), before, "all three files byte for byte");

    // The log moved away, B.db is what it was: alice is still logged in.
    std::fs::remove_file(dir.join("B.db-wal")).unwrap();
    let server = spawn_binary(&["--data-file", path.to_str().unwrap()]);
    let mut ws = ws_connect(server.addr, 2, &cookie);
    assert_eq!(next_of_type(&mut ws, "welcome")["user"], "alice");
}

/// Starts the binary on `path` whose side file `side` must be refused:
/// exit 2, one stderr line naming it, no port served.
fn refused_side(path: &Path, side: &str) {
    let line = refusal_line(path);
    assert!(line.contains(side), "{line:?} names {side}");
    assert!(line.contains("another program"), "{line:?}");
}

/// Starts the binary on `path`, which it must refuse: exit 2, one line on
/// stderr (returned), no port served.
fn refusal_line(path: &Path) -> String {
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_wsrooms")).args([
            "--bind",
            "127.0.0.1:0",
            "--data-file",
            path.to_str().unwrap(),
        ]),
        None,
        Duration::from_secs(20),
    );
    assert_eq!(out.exited().code(), Some(2), "stderr: {}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {:?}", out.stderr);
    assert!(
        !out.stdout.contains("wsrooms listening on"),
        "{}",
        out.stdout
    );
    lines[0].to_string()
}

/// A FIFO as the data file: opening it would wait for a writer for ever.
/// It is refused from its metadata, promptly, and before the port is
/// bound: the test holds the port, so binding first would fail with
/// "address in use" (exit 1) instead.
fn a_fifo_is_refused_before_the_port_is_bound() {
    let dir = TempDir::new("refused-fifo");
    let path = dir.join("rooms.db");
    let made = Command::new("mkfifo").arg(&path).status().expect("mkfifo");
    assert!(made.success());
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = held.local_addr().unwrap().to_string();
    let started = std::time::Instant::now();
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_wsrooms")).args([
            "--bind",
            &bind,
            "--data-file",
            path.to_str().unwrap(),
        ]),
        None,
        Duration::from_secs(20),
    );
    assert_eq!(out.exited().code(), Some(2), "stderr: {}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(5), "promptly");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {:?}", out.stderr);
    assert!(lines[0].contains("FIFO"), "{:?}", lines[0]);
    assert!(
        !out.stdout.contains("wsrooms listening on"),
        "{}",
        out.stdout
    );
    drop(held);
}

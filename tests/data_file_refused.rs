//! A `--data-file` that is not a wsrooms database (text, another program's
//! SQLite file, a newer schema) stops the server at start: exit 2, one
//! line on stderr saying why, the file unchanged, nothing created beside it.

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
    assert!(lines[0].contains(why), "{:?} should say {why:?}", lines[0]);
    assert!(
        lines[0].contains(path.to_str().unwrap()),
        "{:?} names the file",
        lines[0]
    );
    assert!(
        !out.stdout.contains("wsrooms listening on http://"),
        "{}",
        out.stdout
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

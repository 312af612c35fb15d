//! Edges a careless operator or an odd client reaches: data file paths
//! spelt as SQLite URIs, links to files not made yet, bind mounts; backup
//! targets that are not files; two listeners on one address; a `--www`
//! whose name is not UTF-8; absolute-form request targets. Each test was
//! written against a bug a review found (the comment says what it did).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// `--data-file file:rooms.db` names the file `file:rooms.db`. The bundled
/// SQLite reads names that begin with `file:` as URIs, so it opened
/// `rooms.db` (the file checked and locked was `file:rooms.db`): a second
/// server ran on the data file another one held, both giving seqs. Now the
/// second server creates and serves its own `file:rooms.db`: the id taken
/// on the first is free there, and the first's file is not touched.
#[test]
fn a_data_file_spelt_as_an_sqlite_uri_is_the_file_it_names() {
    let dir = TempDir::new("uri-data-file");
    let first = spawn_binary(&["--data-file", dir.join("rooms.db").to_str().unwrap()]);
    let _ = login(first.addr, "alice", 2);
    let second = spawn_command(
        Command::new(env!("CARGO_BIN_EXE_wsrooms"))
            .current_dir(dir.path())
            .args(["--data-file", "file:rooms.db"]),
    );
    // Another file: alice is not in its room 2.
    let _ = login(second.addr, "alice", 2);
    let own = std::fs::metadata(dir.join("file:rooms.db")).expect("file:rooms.db made");
    assert!(own.len() > 0);
    // And the first server's file still has alice (her id is taken there).
    let again = login_raw(first.addr, "alice", "2");
    assert_eq!(again.status, 409, "{}", again.text());
}

/// Runs `wsrooms ARGS` (a command that ends by itself) in `dir`.
fn wsrooms_in(dir: &std::path::Path, args: &[&str]) -> Finished {
    run_bounded(
        Command::new(env!("CARGO_BIN_EXE_wsrooms"))
            .current_dir(dir)
            .args(args),
        None,
        Duration::from_secs(20),
    )
}

/// `wsrooms backup --data-file DATA COPY FLAGS` in `dir`.
fn backup(dir: &std::path::Path, data: &std::path::Path, copy: &str, flags: &[&str]) -> Finished {
    let mut args = vec!["backup", "--data-file", data.to_str().unwrap(), copy];
    args.extend_from_slice(flags);
    wsrooms_in(dir, &args)
}

/// A data file with one login in it, the server stopped (so no `-wal`).
fn stopped_data_file(dir: &TempDir) -> std::path::PathBuf {
    let path = dir.join("rooms.db");
    let mut server = spawn_binary(&["--data-file", path.to_str().unwrap()]);
    let _ = login(server.addr, "alice", 2);
    sigterm(server.child.id());
    let stopped = wait_exit(&mut server.child, Duration::from_secs(20));
    assert!(stopped.is_some_and(|s| s.success()), "{}", server.log.all());
    assert!(!dir.join("rooms.db-wal").exists());
    path
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// `wsrooms backup --force` replaces regular files only. It replaced
/// whatever had COPY's name, a device node included: run as root,
/// `wsrooms backup --data-file F /dev/null --force` (a "does the backup
/// read?" check) turned the system's `/dev/null` into a regular file
/// holding the conversations. Shown with a null device made in a
/// temporary directory.
#[test]
fn backup_force_does_not_replace_a_device_node() {
    if !is_root() {
        eprintln!("skipped: mknod needs root");
        return;
    }
    let dir = TempDir::new("backup-device");
    let data = stopped_data_file(&dir);
    let null = dir.join("null");
    let made = Command::new("mknod")
        .args([null.to_str().unwrap(), "c", "1", "3"])
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: mknod failed");
        return;
    }
    let out = backup(dir.path(), &data, "null", &["--force"]);
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::symlink_metadata(&null).unwrap().file_type();
    assert!(
        kind.is_char_device(),
        "the device node was replaced by a regular file (exit {:?}): {}{}",
        out.status,
        out.stdout,
        out.stderr
    );
    assert_eq!(out.exited().code(), Some(2));
}

/// The same for a directory, refused before anything is made beside it
/// (it was refused only at the rename, after a stray `DIR.lock`).
#[test]
fn backup_force_onto_a_directory_leaves_nothing_behind() {
    let dir = TempDir::new("backup-dir");
    let data = stopped_data_file(&dir);
    std::fs::create_dir(dir.join("sub")).unwrap();
    let out = backup(dir.path(), &data, "sub", &["--force"]);
    assert_eq!(out.exited().code(), Some(2), "{}", out.stderr);
    assert!(
        !dir.join("sub.lock").exists(),
        "a stray sub.lock was created; stderr: {}",
        out.stderr
    );
}

/// A backup into the data file's own missing `-wal`, spelt through a bind
/// mount of its directory (which `canonicalize` does not see through), is
/// refused. It was written as the data file's `-wal`, which the next start
/// deleted (the copy lost); into `-journal`, the next start refused to run.
#[test]
fn a_backup_into_the_data_files_wal_through_a_bind_mount_is_refused() {
    if !is_root() {
        eprintln!("skipped: mount --bind needs root");
        return;
    }
    let dir = TempDir::new("backup-bind");
    let real = TempDir::new("backup-bind-real");
    let data = stopped_data_file(&real);
    let mount = dir.join("mnt");
    std::fs::create_dir(&mount).unwrap();
    let mounted = Command::new("mount")
        .args([
            "--bind",
            real.path().to_str().unwrap(),
            mount.to_str().unwrap(),
        ])
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("skipped: mount --bind failed");
        return;
    }
    let out = backup(dir.path(), &data, "mnt/rooms.db-wal", &[]);
    let wal_written = real.join("rooms.db-wal").exists();
    let _ = Command::new("umount").arg(&mount).status();
    assert!(
        !wal_written,
        "the backup was written as the data file's -wal (exit {:?}): {}{}",
        out.status, out.stdout, out.stderr
    );
    assert_eq!(out.exited().code(), Some(2));
}

/// `--data-file LINK`, a symbolic link to a file not created yet: the
/// server creates the file it points to, as it does a missing file (it
/// said `File exists (os error 17)`: O_EXCL on the link).
#[test]
fn a_data_file_that_is_a_link_to_a_missing_file_is_created() {
    let dir = TempDir::new("dangling-data-file");
    std::fs::create_dir(dir.join("real")).unwrap();
    std::os::unix::fs::symlink("real/rooms.db", dir.join("link.db")).unwrap();
    let server = spawn_command(
        Command::new(env!("CARGO_BIN_EXE_wsrooms"))
            .current_dir(dir.path())
            .args(["--data-file", "link.db"]),
    );
    let _ = login(server.addr, "alice", 2);
    assert!(dir.join("real/rooms.db").is_file());
    assert!(
        std::fs::symlink_metadata(dir.join("link.db"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// `wsrooms restore` onto a link to a missing file puts the copy where
/// the link points, and the link stays a link (it was replaced by the
/// copy).
#[test]
fn a_restore_onto_a_link_to_a_missing_file_keeps_the_link() {
    let dir = TempDir::new("dangling-restore");
    let data = stopped_data_file(&dir);
    std::fs::create_dir(dir.join("real")).unwrap();
    std::os::unix::fs::symlink(dir.join("real/new.db"), dir.join("link.db")).unwrap();
    let out = wsrooms_in(
        dir.path(),
        &["restore", data.to_str().unwrap(), "--data-file", "link.db"],
    );
    assert!(out.exited().success(), "{}", out.stderr);
    let meta = std::fs::symlink_metadata(dir.join("link.db")).unwrap();
    assert!(
        meta.file_type().is_symlink(),
        "link.db is now a regular file; real/new.db exists: {}",
        dir.join("real/new.db").exists()
    );
}

/// `--www DIR` with a directory whose name is not UTF-8 is that directory
/// (it was refused as "not a directory": the value was checked after a
/// lossy conversion to UTF-8).
#[test]
fn a_www_directory_with_a_non_utf8_name_is_accepted() {
    use std::os::unix::ffi::OsStrExt;
    let dir = TempDir::new("www-non-utf8");
    let www = dir.path().join(std::ffi::OsStr::from_bytes(b"w\xff"));
    std::fs::create_dir(&www).unwrap();
    // Parsed in this process: the flag's check is the one `wsrooms` runs.
    let args: Vec<std::ffi::OsString> = vec!["wsrooms".into(), "--www".into(), www.clone().into()];
    match wsrooms::Config::from_args(args) {
        Ok(config) => assert_eq!(config.www.as_deref(), Some(www.as_path())),
        Err(e) => panic!("refused: {e}"),
    }
}

/// RFC 9112 §3.2.2: "A server MUST accept the absolute-form in requests"
/// (it was answered 400).
#[test]
fn an_absolute_form_target_is_accepted() {
    let addr = start(test_config());
    let r = http_raw(
        addr,
        &format!("GET http://{addr}/healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// `--metrics-bind` (or `--admin-bind`) equal to `--bind` is refused as a
/// conflict of two flags, exit 2. It was accepted; the start then failed
/// with exit 1 and "is another wsrooms running?", which it was not.
#[test]
fn the_same_address_for_two_listeners_is_a_refused_value() {
    let args = [
        "wsrooms",
        "--bind",
        "127.0.0.1:18090",
        "--metrics-bind",
        "127.0.0.1:18090",
    ];
    match wsrooms::Config::from_args(args) {
        Ok(_) => panic!("accepted: the start fails later with exit 1 and a wrong hint"),
        Err(e) => assert_eq!(e.exit_code(), 2),
    }
}

/// A backup of a missing data file, or a restore of a missing copy, says
/// so plainly (it said "entity not found") and leaves nothing behind (a
/// restore made the data file's `.lock` first).
#[test]
fn a_missing_source_is_named_and_leaves_nothing() {
    let dir = TempDir::new("missing-source");
    for args in [
        ["backup", "--data-file", "nope.db", "copy.db"],
        ["restore", "nope.db", "--data-file", "rooms.db"],
    ] {
        let out = wsrooms_in(dir.path(), &args);
        assert_eq!(out.exited().code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("\"nope.db\": there is no such file"),
            "{args:?}: {}",
            out.stderr
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
}

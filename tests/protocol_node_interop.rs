//! Interoperability with Node's `ws` client (issue 3): text and binary
//! messages up to 16 MiB, whole and fragmented (text fragments cut inside
//! UTF-8 characters), compared by SHA-256 and type, a ping with a payload,
//! and a close with code 4001 that must come back, against `/echo` of the
//! real binary (tests/browser/ws_interop.mjs does the talking).
//!
//! Needs `node` on `PATH` and `npm ci` run in `tests/browser/` (which
//! installs `ws`). When one is missing the test says so and skips, except
//! under `CI=true`, where that is a failure.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The whole exchange takes about a second; allow two minutes.
const TIMEOUT: Duration = Duration::from_secs(120);

fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Skips (returns false) when something is missing, or fails under CI.
fn require(what: &str, found: bool) -> bool {
    if found {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if ci {
        panic!("node ws interop: {what} is missing (CI=true, so this is a failure)");
    }
    eprintln!("node ws interop SKIPPED: {what} is missing");
    false
}

#[test]
fn node_ws_echo_up_to_16_mib() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("browser");
    let node = on_path("node");
    if !require("node", node.is_some())
        || !require(
            "tests/browser/node_modules/ws (run `npm ci` in tests/browser)",
            dir.join("node_modules")
                .join("ws")
                .join("package.json")
                .is_file(),
        )
    {
        return;
    }
    let server = spawn_binary(&["--echo", "--max-message-bytes", "16777216"]);
    let started = Instant::now();
    let mut child = Command::new(node.unwrap())
        .arg(dir.join("ws_interop.mjs"))
        .arg(format!("ws://{}/echo", server.addr))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    // Drain both pipes in threads so a chatty child cannot block on them.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out.join().unwrap();
    let err = err.join().unwrap();
    let status = status.unwrap_or_else(|| panic!("node ws interop timed out:\n{out}\n{err}"));
    assert!(
        status.success(),
        "node ws interop failed ({status}):\n{out}\n{err}"
    );
    for line in [
        "ok text 16777216 B\n",
        "ok binary 16777216 B\n",
        "ok text 1000 B in 7 B fragments\n",
        "ok text 16777216 B in ~1048576 B fragments\n",
        "ok ping/pong\n",
        "ok close 4001\n",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(out.trim_end().ends_with("all ok"), "{out}");
    eprintln!("node ws interop passed in {:?}", started.elapsed());
}

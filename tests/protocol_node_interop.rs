//! Interoperability with Node's `ws` client (issue 3): text and binary
//! messages up to 16 MiB, whole and fragmented (text fragments cut inside
//! UTF-8 characters), compared by SHA-256 and type, a ping with a payload,
//! and a close with code 4001 that must come back, against `/echo` of the
//! real binary (tests/browser/ws_interop.mjs does the talking).
//!
//! Needs `node` on `PATH` and the npm packages of `tests/browser/` (the
//! test runs `npm ci` there on first use; it installs `ws`). When one is
//! missing the test says so and skips, except under CI (`CI=true` or
//! `CI=1`), where that is a failure.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Runs under `common::harness` (`harness = false` in Cargo.toml), so
/// that a case skipped for a missing tool shows in `cargo test`'s output.
fn main() -> std::process::ExitCode {
    common::harness::run(
        "protocol_node_interop",
        &[("node_ws_echo_up_to_16_mib", node_ws_echo_up_to_16_mib)],
    )
}

/// The whole exchange takes about a second; allow two minutes.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The name this test is skipped under when a tool is missing.
const SUITE: &str = "protocol_node_interop";

fn node_ws_echo_up_to_16_mib() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("browser");
    let node = find_program(&["node"]);
    // `npm ci` on first use; what to run by hand when that failed.
    let enable_node_modules = match setup_node_modules() {
        Ok(()) => "(cd tests/browser && npm ci)".to_string(),
        Err(enable) => enable,
    };
    if !require(SUITE, "node", "apt-get install nodejs npm", node.is_some())
        || !require(
            SUITE,
            "tests/browser/node_modules/ws",
            &enable_node_modules,
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
    let finished = run_bounded(
        Command::new(node.unwrap())
            .arg(dir.join("ws_interop.mjs"))
            .arg(format!("ws://{}/echo", server.addr))
            .current_dir(&dir),
        None,
        TIMEOUT,
    );
    let (status, out, err) = (finished.status, finished.stdout, finished.stderr);
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
    common::harness::note(format!("node ws interop passed in {:?}", started.elapsed()));
}

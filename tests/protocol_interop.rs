//! Interoperability with an independent client (issue 3): Python's
//! `websockets` exchanges text and binary messages up to 16 MiB, whole and
//! fragmented, with `/echo` of the real binary, comparing SHA-256 digests
//! (tests/python/echo_interop.py does the talking).
//!
//! Python comes from `WSROOMS_TEST_PYTHON`, else `target/test-venv/bin/python`
//! (made on first use), else `python3`. Without it (or without `websockets`)
//! the test is skipped, unless under CI (`CI=true` or `CI=1`), where that is
//! a failure.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

/// Runs under `common::harness` (`harness = false` in Cargo.toml), so
/// that a case skipped for a missing tool shows in `cargo test`'s output.
fn main() -> std::process::ExitCode {
    common::harness::run(
        "protocol_interop",
        &[(
            "python_websockets_echo_up_to_16_mib",
            python_websockets_echo_up_to_16_mib,
        )],
    )
}

fn python_websockets_echo_up_to_16_mib() {
    let Some(python) = python("protocol_interop", &["websockets.sync.client"]) else {
        return;
    };
    let server = spawn_binary(&["--echo", "--max-message-bytes", "16777216"]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/echo_interop.py");
    // Bounded: the whole exchange takes seconds; give it two minutes.
    let finished = run_bounded(
        Command::new(&python)
            .arg(&script)
            .arg(format!("ws://{}/echo", server.addr)),
        None,
        Duration::from_secs(120),
    );
    let (status, out, err) = (finished.status, finished.stdout, finished.stderr);
    let status = status.unwrap_or_else(|| panic!("interop timed out:\n{out}\n{err}"));
    assert!(status.success(), "interop failed ({status}):\n{out}\n{err}");
    assert!(out.contains("ok binary 16777216 B\n"), "{out}");
    assert!(
        out.contains("ok text 16777216 B in ~1048576 B fragments\n"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("all ok"), "{out}");
}

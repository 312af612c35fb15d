//! Interoperability with an independent client (issue 3): Python's
//! `websockets` exchanges text and binary messages up to 16 MiB, whole and
//! fragmented, with `/echo` of the real binary, comparing SHA-256 digests
//! (tests/python/echo_interop.py does the talking).
//!
//! Python comes from `WSROOMS_TEST_PYTHON`, else `target/test-venv/bin/python`,
//! else `python3`. Without it (or without `websockets`) the test is skipped,
//! unless `CI=true`, where that is a failure.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("WSROOMS_TEST_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    if venv.exists() {
        return venv;
    }
    "python3".into()
}

/// Returns false (after saying why) when the tool is missing on a developer
/// machine; panics when it is missing in CI.
fn have_websockets(python: &PathBuf) -> bool {
    let ok = Command::new(python)
        .args(["-c", "import websockets.sync.client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require_tool(
        "python interop",
        &format!(
            "websockets for {} (pip install -r tests/python/requirements.txt)",
            python.display()
        ),
        ok,
    )
}

#[test]
fn python_websockets_echo_up_to_16_mib() {
    let python = python();
    if !have_websockets(&python) {
        return;
    }
    let server = spawn_binary(&["--echo", "--max-message-bytes", "16777216"]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/echo_interop.py");
    // Bounded: the whole exchange takes seconds; give it two minutes.
    let finished = run_bounded(
        Command::new(&python)
            .arg(&script)
            .arg(format!("ws://{}/echo", server.addr)),
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

//! The web pages in real headless Chromium (issue 5, and the browser case of
//! issue 8): runs `node --test-force-exit run.mjs` in `tests/browser/`, which starts
//! this build's server binary on 127.0.0.1 and drives Chromium through
//! `playwright-core` (login, chat, 409 inline, HTML as text, server restart,
//! network cut with lossless resume, close codes, scrollback, restarts on a
//! data file, long and multi-line messages, links, date lines and groups,
//! unread count, mentions and notifications, log out, editing and deleting
//! one's messages (live, after a cut, a restart and the edit window),
//! typing, a silent reload, an id kept after the tab closes, the
//! operator's removal, delete and bar as the user sees them, screenshots).
//!
//! Needs Chromium (`/usr/bin/chromium` or `chromium` on `PATH`), `node`, and
//! the npm packages of `tests/browser/` (the test runs `npm ci` there on
//! first use). When one is missing the test says so and skips, except under
//! CI (`CI=true` or `CI=1`), where that is a failure.
//! Each of node's tests is a line of `cargo test`'s output (read from
//! node's TAP); node's readable report is shown when the suite fails, or
//! with `--nocapture`.
//! Screenshots are saved in `target/browser-shots/`; the one of the room
//! page is compared with the README's `docs/room.png` (same size, same
//! page outline: `tests/browser/docshot.mjs`), and
//! `WSROOMS_UPDATE_DOCS_SHOT=1 cargo test --test browser` writes it anew.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::harness::{note, report_tap};
use common::{find_program, require, run_bounded, setup_node_modules};

/// Runs under `common::harness` (`harness = false` in Cargo.toml), so
/// that a case skipped for a missing tool shows in `cargo test`'s output.
fn main() -> std::process::ExitCode {
    common::harness::run("browser", &[("pages_in_chromium", pages_in_chromium)])
}

/// The whole browser suite must finish within this.
const SUITE_TIMEOUT: Duration = Duration::from_secs(600);

/// The name this test is skipped under when a tool is missing.
const SUITE: &str = "browser";

fn pages_in_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("browser");
    let chromium = find_program(&["/usr/bin/chromium", "chromium"]);
    let node = find_program(&["node"]);
    // `npm ci` on first use; what to run by hand when that failed.
    let enable_node_modules = match setup_node_modules() {
        Ok(()) => "(cd tests/browser && npm ci)".to_string(),
        Err(enable) => enable,
    };
    if !require(
        SUITE,
        "Chromium",
        "apt-get install chromium",
        chromium.is_some(),
    ) || !require(SUITE, "node", "apt-get install nodejs npm", node.is_some())
        || !require(
            SUITE,
            "tests/browser/node_modules/playwright-core",
            &enable_node_modules,
            dir.join("node_modules")
                .join("playwright-core")
                .join("package.json")
                .is_file(),
        )
    {
        return;
    }

    let bin = PathBuf::from(env!("CARGO_BIN_EXE_wsrooms"));
    // target/<profile>/wsrooms → target/browser-shots
    let shots = bin
        .parent()
        .and_then(Path::parent)
        .map(|target| target.join("browser-shots"))
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target")
                .join("browser-shots")
        });

    let started = Instant::now();
    let mut command = Command::new(node.unwrap());
    command
        // Run the file directly (one node process, not a runner and a
        // child), and end it as soon as the tests are done: Node 20 can
        // spin forever in its exit-time clean-up (nodejs/node#47748), which
        // once hung CI here for the whole time limit.
        // TAP on stdout, read for the result of each test (each becomes a
        // line of `cargo test`'s output); the readable report on stderr,
        // shown when the suite fails.
        .args([
            "--test-force-exit",
            "--test-reporter=tap",
            "--test-reporter-destination=stdout",
            "--test-reporter=spec",
            "--test-reporter-destination=stderr",
            "run.mjs",
        ])
        .current_dir(&dir)
        .env("WSROOMS_BIN", &bin)
        .env("CHROMIUM_PATH", chromium.unwrap())
        .env("WSROOMS_SHOTS_DIR", &shots)
        // The server must serve its embedded pages, whatever the shell says.
        .env_remove("WSROOMS_WWW");
    // Its own process group, so a timeout can end node, Chromium and the
    // servers it started together.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let finished = run_bounded(&mut command, None, SUITE_TIMEOUT);
    let (status, tap, report) = (finished.status, finished.stdout, finished.stderr);
    note(report.trim_end());
    note(format!(
        "browser suite took {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    ));
    if report_tap(&tap) == 0 {
        note(format!("node's TAP output:\n{tap}"));
    }
    match status {
        None => panic!("browser suite did not finish within {SUITE_TIMEOUT:?}"),
        Some(s) => assert!(s.success(), "browser suite failed ({s}); output above"),
    }
}

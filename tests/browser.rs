//! The web pages in real headless Chromium (issue 5, and the browser case of
//! issue 8): runs `node --test run.mjs` in `tests/browser/`, which starts
//! this build's server binary on 127.0.0.1 and drives Chromium through
//! `playwright-core` (login, chat, 409 inline, HTML as text, server restart,
//! network cut with lossless resume, close codes, screenshots).
//!
//! Needs Chromium (`/usr/bin/chromium` or `chromium` on `PATH`), `node`, and
//! `npm ci` run in `tests/browser/`. When one is missing the test says so and
//! skips, except under `CI=true`, where that is a failure.
//! Screenshots are saved in `target/browser-shots/`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole browser suite must finish within this.
const SUITE_TIMEOUT: Duration = Duration::from_secs(600);

fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn chromium() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/bin/chromium");
    if debian.is_file() {
        return Some(debian);
    }
    on_path("chromium")
}

/// Skips (returns false) when something is missing, or fails under CI.
fn require(what: &str, found: bool) -> bool {
    if found {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if ci {
        panic!("browser tests: {what} is missing (CI=true, so this is a failure)");
    }
    eprintln!("browser tests SKIPPED: {what} is missing");
    false
}

#[test]
fn pages_in_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("browser");
    let chromium = chromium();
    let node = on_path("node");
    if !require("Chromium (apt-get install chromium)", chromium.is_some())
        || !require("node", node.is_some())
        || !require(
            "tests/browser/node_modules/playwright-core (run `npm ci` in tests/browser)",
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
        .args(["--test", "--test-reporter=spec", "run.mjs"])
        .current_dir(&dir)
        .env("WSROOMS_BIN", &bin)
        .env("CHROMIUM_PATH", chromium.unwrap())
        .env("WSROOMS_SHOTS_DIR", &shots)
        // The server must serve its embedded pages, whatever the shell says.
        .env_remove("WSROOMS_WWW")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group, so a timeout can end node, Chromium and the
    // servers it started together.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().expect("start node");

    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > SUITE_TIMEOUT {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    println!("{out}");
    if !err.trim().is_empty() {
        eprintln!("{err}");
    }
    println!(
        "browser suite took {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
    match status {
        None => panic!("browser suite did not finish within {SUITE_TIMEOUT:?}"),
        Some(s) => assert!(s.success(), "browser suite failed ({s}); output above"),
    }
}

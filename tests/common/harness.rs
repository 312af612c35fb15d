//! A small test runner for the suites that need outside programs (Python,
//! node, Chromium, nginx, root…), so that what they skipped shows in
//! `cargo test`'s normal output.
//!
//! Such a suite is a `harness = false` target in Cargo.toml whose `main`
//! calls [`run`] with its cases. Cargo shows such a binary's output as is
//! (libtest would capture a passing test's output, skip lines included).
//! [`run`] runs the cases on a few threads, prints one line per case, the
//! `SKIPPED …` lines [`super::require`] reported, and a summary:
//! `N passed, N failed, N skipped`. A case is skipped when it reported a
//! skip, failed when it panicked. A case that runs a suite of its own (the
//! browser tests under node) reports each of that suite's tests with
//! [`report_part`]: each gets its own line and is counted. What a case says
//! about itself (measurements, set-up steps, a child's output) goes
//! through [`note`]: shown under the summary when the case failed, at once
//! with `--nocapture`, else not at all (as libtest captures output).
//! Arguments: words filter cases by name (as with libtest), `--exact`
//! matches whole names, `--test-threads N` (or `RUST_TEST_THREADS`) sets
//! the threads, `--list` lists the cases, `--ignored` runs none (no case
//! here is ignored), `--nocapture` (or `RUST_TEST_NOCAPTURE=1`) prints
//! notes as they come; other flags are accepted and ignored.

use std::cell::RefCell;
use std::fmt::Display;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use super::tools::collect_skips;

/// `--nocapture`: notes are printed as they come.
static NOCAPTURE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The notes of the case running on this thread, when a runner collects
    /// them.
    static NOTES: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
    /// The parts (tests of its own suite) the case on this thread reported.
    static PARTS: RefCell<Option<Vec<(String, bool)>>> = const { RefCell::new(None) };
}

/// A line about a case that is no result: a measurement, a set-up step, a
/// child's output. Kept for the summary (shown if the case fails) when the
/// case runs under [`run`]; printed at once with `--nocapture`, or outside
/// this runner (where libtest captures it and shows it on failure).
pub fn note(line: impl Display) {
    let line = line.to_string();
    if NOCAPTURE.load(Ordering::Relaxed) {
        return eprintln!("{line}");
    }
    let kept = NOTES.with(|notes| match notes.borrow_mut().as_mut() {
        Some(notes) => {
            notes.push(line.clone());
            true
        }
        None => false,
    });
    if !kept {
        eprintln!("{line}");
    }
}

/// Reports one test of a suite the current case runs (by another runner):
/// `name` passed or failed. It gets its own line and is counted in place
/// of the case.
pub fn report_part(name: &str, passed: bool) {
    PARTS.with(|parts| {
        if let Some(parts) = parts.borrow_mut().as_mut() {
            parts.push((name.to_string(), passed));
        }
    });
}

/// One test: its name and its function.
pub type Case = (&'static str, fn());

/// Reports each test of another runner's TAP output as a part of the
/// current case ([`report_part`]); returns how many there were.
pub fn report_tap(tap: &str) -> usize {
    let tests = tap_results(tap);
    for (name, passed) in &tests {
        report_part(name, *passed);
    }
    tests.len()
}

/// Each test in node's TAP output (`--test-reporter=tap`), named with the
/// `describe` blocks it is in (`room › two people chat …`), and whether it
/// passed (a skipped one counts as passed). Node writes `# Subtest: NAME`
/// when a test or block starts and `ok N - NAME` or `not ok N - NAME`,
/// at the same indentation, when it ends; a block is one that had tests
/// inside.
pub fn tap_results(tap: &str) -> Vec<(String, bool)> {
    let mut open: Vec<(String, bool)> = Vec::new(); // (name, has tests inside)
    let mut results = Vec::new();
    for line in tap.lines().map(str::trim_start) {
        if let Some(name) = line.strip_prefix("# Subtest: ") {
            if let Some(parent) = open.last_mut() {
                parent.1 = true;
            }
            open.push((tap_unescape(name), false));
            continue;
        }
        let passed = if line.starts_with("ok ") {
            true
        } else if line.starts_with("not ok ") {
            false
        } else {
            continue;
        };
        let Some((name, is_block)) = open.pop() else {
            continue;
        };
        if !is_block {
            let path: Vec<&str> = open
                .iter()
                .map(|(n, _)| n.as_str())
                .chain([name.as_str()])
                .collect();
            results.push((path.join(" › "), passed));
        }
    }
    results
}

/// A name as TAP writes it, with `\#` and `\\` unescaped.
fn tap_unescape(name: &str) -> String {
    name.replace("\\#", "#").replace("\\\\", "\\")
}

/// What became of one case.
enum Outcome {
    Passed,
    Failed,
    Skipped(Vec<String>),
}

/// One case's run: its outcome, its notes and the parts it reported.
struct CaseRun {
    outcome: Outcome,
    notes: Vec<String>,
    parts: Vec<(String, bool)>,
}

/// What became of the cases of one run.
#[derive(Default)]
struct Tally {
    passed: usize,
    skipped: usize,
    /// The distinct `SKIPPED …` lines the skipped cases reported.
    skip_lines: Vec<String>,
    /// `FAILED name`, one per failed case.
    failed: Vec<String>,
    /// The notes of the failed cases, each block headed by its case.
    failed_notes: Vec<String>,
}

/// The command line, as far as this runner reads it.
struct Args {
    filters: Vec<String>,
    exact: bool,
    list: bool,
    ignored_only: bool,
    threads: usize,
}

impl Args {
    fn parse() -> Args {
        let mut args = Args {
            filters: Vec::new(),
            exact: false,
            list: false,
            ignored_only: false,
            threads: std::env::var("RUST_TEST_THREADS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        };
        if std::env::var("RUST_TEST_NOCAPTURE").is_ok_and(|v| v != "0") {
            NOCAPTURE.store(true, Ordering::Relaxed);
        }
        let mut words = std::env::args().skip(1);
        while let Some(word) = words.next() {
            match word.as_str() {
                "--exact" => args.exact = true,
                "--nocapture" | "--no-capture" => NOCAPTURE.store(true, Ordering::Relaxed),
                "--list" => args.list = true,
                "--ignored" => args.ignored_only = true,
                "--test-threads" => {
                    args.threads = words.next().and_then(|n| n.parse().ok()).unwrap_or(1)
                }
                w if w.starts_with("--test-threads=") => {
                    args.threads = w["--test-threads=".len()..].parse().unwrap_or(1)
                }
                w if w.starts_with('-') => {}
                w => args.filters.push(w.to_string()),
            }
        }
        args
    }

    fn selects(&self, name: &str) -> bool {
        self.filters.is_empty()
            || self.filters.iter().any(|f| {
                if self.exact {
                    name == f
                } else {
                    name.contains(f.as_str())
                }
            })
    }
}

/// Runs the selected `cases` of `suite` and prints what became of each;
/// fails (exit code 101, like libtest) when one failed.
pub fn run(suite: &str, cases: &[Case]) -> ExitCode {
    let args = Args::parse();
    let chosen: Vec<Case> = cases
        .iter()
        .copied()
        .filter(|(name, _)| !args.ignored_only && args.selects(name))
        .collect();
    if args.list {
        chosen.iter().for_each(|(name, _)| println!("{name}: test"));
        return ExitCode::SUCCESS;
    }
    let plural = if chosen.len() == 1 { "" } else { "s" };
    println!("\nrunning {} test{plural} ({suite})", chosen.len());
    let tally = run_all(&chosen, args.threads.max(1));
    for block in &tally.failed_notes {
        println!("{block}");
    }
    for line in tally.skip_lines.iter().chain(&tally.failed) {
        println!("{line}");
    }
    println!(
        "{suite}: {} passed, {} failed, {} skipped\n",
        tally.passed,
        tally.failed.len(),
        tally.skipped
    );
    if !tally.failed.is_empty() {
        ExitCode::from(101)
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs `cases` on `threads` workers, each case on a thread of its own
/// named after it (so a panic message names the test).
fn run_all(cases: &[Case], threads: usize) -> Tally {
    let next = Mutex::new(cases.iter());
    let (tx, rx) = mpsc::channel();
    let mut tally = Tally::default();
    std::thread::scope(|scope| {
        for _ in 0..threads.min(cases.len()) {
            let (next, tx) = (&next, tx.clone());
            scope.spawn(move || {
                while let Some(&(name, case)) = next.lock().unwrap().next() {
                    let _ = tx.send((name, run_one(name, case)));
                }
            });
        }
        drop(tx);
        for (name, run) in rx {
            tally.add(name, run);
        }
    });
    tally
}

impl Tally {
    /// Counts and prints what became of case `name`: one line for it, or
    /// one per part it reported (then it fails as a case only if it
    /// panicked with every part passing).
    fn add(&mut self, name: &str, run: CaseRun) {
        let failed_before = self.failed.len();
        for (part, passed) in &run.parts {
            let part = format!("{name}::{part}");
            self.count(
                &part,
                if *passed {
                    Outcome::Passed
                } else {
                    Outcome::Failed
                },
            );
        }
        let parts_failed = self.failed.len() > failed_before;
        match run.outcome {
            Outcome::Passed if !run.parts.is_empty() => {}
            Outcome::Failed if parts_failed => {}
            outcome => self.count(name, outcome),
        }
        if self.failed.len() > failed_before && !run.notes.is_empty() {
            self.failed_notes
                .push(format!("---- {name} ----\n{}\n", run.notes.join("\n")));
        }
    }

    /// Counts one outcome and prints its line.
    fn count(&mut self, name: &str, outcome: Outcome) {
        let word = match outcome {
            Outcome::Passed => {
                self.passed += 1;
                "ok"
            }
            Outcome::Failed => {
                self.failed.push(format!("FAILED {name}"));
                "FAILED"
            }
            Outcome::Skipped(lines) => {
                self.skipped += 1;
                for line in lines {
                    if !self.skip_lines.contains(&line) {
                        self.skip_lines.push(line);
                    }
                }
                "skipped"
            }
        };
        println!("test {name} ... {word}");
    }
}

/// Runs one case on a new thread named `name`, collecting its skips,
/// notes and parts.
fn run_one(name: &str, case: fn()) -> CaseRun {
    let thread = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            NOTES.with(|n| *n.borrow_mut() = Some(Vec::new()));
            PARTS.with(|p| *p.borrow_mut() = Some(Vec::new()));
            let skips = std::panic::catch_unwind(AssertUnwindSafe(|| collect_skips(case)));
            let outcome = match skips {
                Ok(skips) if skips.is_empty() => Outcome::Passed,
                Ok(skips) => Outcome::Skipped(skips),
                Err(_panicked) => Outcome::Failed,
            };
            CaseRun {
                outcome,
                notes: NOTES.with(|n| n.borrow_mut().take().unwrap_or_default()),
                parts: PARTS.with(|p| p.borrow_mut().take().unwrap_or_default()),
            }
        });
    match thread.map(|t| t.join()) {
        Ok(Ok(run)) => run,
        Ok(Err(_)) | Err(_) => {
            eprintln!("the thread of {name} could not run it");
            CaseRun {
                outcome: Outcome::Failed,
                notes: Vec::new(),
                parts: Vec::new(),
            }
        }
    }
}

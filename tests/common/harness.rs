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
//! skip, failed when it panicked. Arguments: words filter cases by name
//! (as with libtest), `--exact` matches whole names, `--test-threads N`
//! (or `RUST_TEST_THREADS`) sets the threads, `--list` lists the cases,
//! `--ignored` runs none (no case here is ignored); other flags are
//! accepted and ignored.

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::mpsc;

use super::tools::collect_skips;

/// One test: its name and its function.
pub type Case = (&'static str, fn());

/// What became of one case.
enum Outcome {
    Passed,
    Failed,
    Skipped(Vec<String>),
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
        let mut words = std::env::args().skip(1);
        while let Some(word) = words.next() {
            match word.as_str() {
                "--exact" => args.exact = true,
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
        for (name, outcome) in rx {
            let word = match outcome {
                Outcome::Passed => {
                    tally.passed += 1;
                    "ok"
                }
                Outcome::Failed => {
                    tally.failed.push(format!("FAILED {name}"));
                    "FAILED"
                }
                Outcome::Skipped(lines) => {
                    tally.skipped += 1;
                    for line in lines {
                        if !tally.skip_lines.contains(&line) {
                            tally.skip_lines.push(line);
                        }
                    }
                    "skipped"
                }
            };
            println!("test {name} ... {word}");
        }
    });
    tally
}

/// Runs one case on a new thread named `name`.
fn run_one(name: &str, case: fn()) -> Outcome {
    let thread = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || collect_skips(case));
    match thread.map(|t| t.join()) {
        Ok(Ok(skips)) if skips.is_empty() => Outcome::Passed,
        Ok(Ok(skips)) => Outcome::Skipped(skips),
        Ok(Err(_panicked)) => Outcome::Failed,
        Err(cannot_spawn) => {
            eprintln!("cannot start a thread for {name}: {cannot_spawn}");
            Outcome::Failed
        }
    }
}

//! Outside programs the tests drive, and what happens when one is missing.
//!
//! The skip-or-fail rule lives here and only here ([`require`]): a suite
//! whose tool is missing is skipped with one printed line naming the suite,
//! what is missing and the command that would provide it; under CI (where
//! `.ci/run` installs every tool) the same case is a failure. Also: the
//! one-time setup of what needs no root (the Python venv in
//! `target/test-venv`, the npm packages in `tests/browser/node_modules`),
//! finding and probing programs, running a child to its end within a time
//! limit, the Python with given modules, temporary directories and free
//! ports.

use std::cell::RefCell;
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Longest any helper program (python, openssl, nginx start) may take.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository's root (where Cargo.toml is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ----- skip or fail ----------------------------------------------------------

/// Whether the tests run under CI: `CI` is set to anything but empty, `0`
/// or `false` (so `CI=true` and `CI=1` both count).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| {
        let v = v.trim();
        !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false")
    })
}

/// A suite that cannot run here, and what would let it run.
#[derive(Debug)]
pub struct Skip<'a> {
    /// The test or group of tests that does not run.
    pub suite: &'a str,
    /// What is missing.
    pub what: &'a str,
    /// The one command (or step) that provides it.
    pub enable: &'a str,
}

/// `SUITE: WHAT is missing; to run it: ENABLE`.
impl fmt::Display for Skip<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} is missing; to run it: {}",
            self.suite, self.what, self.enable
        )
    }
}

thread_local! {
    /// The skips of the case running on this thread, when a runner
    /// collects them (see [`collect_skips`]).
    static SKIPS: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

impl Skip<'_> {
    /// Says that the suite is skipped. The one place a skip is reported:
    /// kept for the runner's summary when one collects them (the suites
    /// that need outside programs run under `common::harness`, whose output
    /// `cargo test` shows), printed otherwise.
    fn report(&self) {
        let line = format!("SKIPPED {self}");
        let kept = SKIPS.with(|skips| match skips.borrow_mut().as_mut() {
            Some(skips) => {
                skips.push(line.clone());
                true
            }
            None => false,
        });
        if !kept {
            eprintln!("{line}");
        }
    }
}

/// Runs `case` on this thread and returns the skip lines [`require`]
/// reported meanwhile (empty when nothing was skipped).
pub fn collect_skips(case: impl FnOnce()) -> Vec<String> {
    SKIPS.with(|skips| *skips.borrow_mut() = Some(Vec::new()));
    case();
    SKIPS.with(|skips| skips.borrow_mut().take().unwrap_or_default())
}

/// The skip-or-fail rule. True when the suite's need was `found`;
/// otherwise reports the skip and returns false (the caller then returns),
/// or panics under CI, where a missing tool is a failure.
pub fn require(suite: &str, what: &str, enable: &str, found: bool) -> bool {
    if found {
        return true;
    }
    let skip = Skip {
        suite,
        what,
        enable,
    };
    if ci() {
        panic!("{skip} (CI is set, so a missing tool is a failure: .ci/run installs it)");
    }
    skip.report();
    false
}

// ----- finding programs ------------------------------------------------------

/// The first of `candidates` that exists as a file: a candidate with a `/`
/// is a path, any other is looked up on `PATH`.
pub fn find_program(candidates: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    candidates.iter().find_map(|name| {
        if name.contains('/') {
            Some(PathBuf::from(name)).filter(|p| p.is_file())
        } else {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        }
    })
}

/// Whether `program args…` runs and exits 0 (within 20 s).
pub fn runs(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> bool {
    let mut cmd = Command::new(program);
    cmd.args(args);
    try_run_bounded(&mut cmd, None, Duration::from_secs(20))
        .is_ok_and(|f| f.status.is_some_and(|s| s.success()))
}

/// The Python that has `modules`: `$WSROOMS_TEST_PYTHON`, else
/// `target/test-venv/bin/python` (made on first use, see [`setup_venv`]),
/// else `python3`. `None` (after [`require`] said so) when none of them
/// can import the modules.
pub fn python(suite: &str, modules: &[&str]) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    let mut enable = "python3 -m venv target/test-venv && \
                      target/test-venv/bin/pip install -r tests/python/requirements.txt"
        .to_string();
    if let Ok(p) = std::env::var("WSROOMS_TEST_PYTHON") {
        candidates.push(PathBuf::from(p));
    } else if let Err(failed) = setup_venv() {
        enable = failed;
    }
    candidates.push(repo().join("target/test-venv/bin/python"));
    candidates.push(PathBuf::from("python3"));
    let import = format!("import {}", modules.join(", "));
    let found = candidates
        .into_iter()
        .find(|candidate| runs(candidate, &["-c", &import]));
    let what = format!("a Python with {}", modules.join(" and "));
    if require(suite, &what, &enable, found.is_some()) {
        found
    } else {
        None
    }
}

/// `nginx` and `openssl`, or `false` after [`require`] said which is
/// missing.
pub fn have_nginx_and_openssl(suite: &str) -> bool {
    require(
        suite,
        "nginx",
        "apt-get install nginx",
        runs("nginx", &["-v"]),
    ) && require(
        suite,
        "openssl",
        "apt-get install openssl",
        runs("openssl", &["version"]),
    )
}

// ----- one-time setup ------------------------------------------------------

/// How long one setup step (making the venv, `pip install`, `npm ci`) may
/// take: they download packages.
const SETUP_TIMEOUT: Duration = Duration::from_secs(300);

/// One command of a setup, and the command to suggest when it fails.
struct Step {
    command: Command,
    enable: &'static str,
}

/// Makes `target/test-venv` with `tests/python/requirements.txt`
/// installed, unless it is already there for these requirements. `Err`
/// holds the command that would do what failed.
pub fn setup_venv() -> Result<(), String> {
    let venv = repo().join("target/test-venv");
    let mut steps = Vec::new();
    if !venv.join("bin/python").is_file() {
        let mut command = Command::new("python3");
        command.args(["-m", "venv"]).arg(&venv);
        steps.push(Step {
            command,
            enable: "apt-get install python3-venv",
        });
    }
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["install", "-q", "--disable-pip-version-check"])
        .args(["--retries", "1", "--timeout", "20", "-r"])
        .arg(repo().join("tests/python/requirements.txt"));
    steps.push(Step {
        command: pip,
        enable: "target/test-venv/bin/pip install -r tests/python/requirements.txt",
    });
    let wanted = std::fs::read_to_string(repo().join("tests/python/requirements.txt"))
        .map_err(|e| format!("(tests/python/requirements.txt: {e})"))?;
    set_up_once(&venv.join(".wsrooms-installed"), &wanted, steps)
}

/// Runs `npm ci` in `tests/browser`, unless its `node_modules` is already
/// there for this `package-lock.json`. `Err` holds the command that would
/// do what failed.
pub fn setup_node_modules() -> Result<(), String> {
    let dir = repo().join("tests/browser");
    let wanted = std::fs::read_to_string(dir.join("package-lock.json"))
        .map_err(|e| format!("(tests/browser/package-lock.json: {e})"))?;
    if find_program(&["npm"]).is_none() {
        return Err("apt-get install npm".into());
    }
    let mut command = Command::new("npm");
    command
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir);
    let step = Step {
        command,
        enable: "(cd tests/browser && npm ci)",
    };
    set_up_once(
        &dir.join("node_modules/.wsrooms-installed"),
        &wanted,
        vec![step],
    )
}

/// Runs `steps` unless `stamp` already holds `wanted` (what they were
/// last run for), then writes it there. Holds a lock on
/// `target/test-setup.lock` meanwhile, so test binaries and threads that
/// need the same setup at once run it once, one after the other.
fn set_up_once(stamp: &Path, wanted: &str, steps: Vec<Step>) -> Result<(), String> {
    let target = repo().join("target");
    let _ = std::fs::create_dir_all(&target);
    let lock = File::create(target.join("test-setup.lock"))
        .and_then(|file| file.lock().map(|()| file))
        .map_err(|e| format!("(cannot lock target/test-setup.lock: {e})"))?;
    if std::fs::read_to_string(stamp).is_ok_and(|done| done == wanted) {
        return Ok(());
    }
    for mut step in steps {
        super::harness::note(format!("test setup: running {:?}", step.command));
        let failed = match try_run_bounded(&mut step.command, None, SETUP_TIMEOUT) {
            Ok(f) if f.status.is_some_and(|s| s.success()) => None,
            Ok(f) if f.status.is_none() => Some(format!("took longer than {SETUP_TIMEOUT:?}")),
            Ok(f) => Some(format!("{}{}", f.stdout, f.stderr)),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = failed {
            eprintln!("test setup: {:?} failed: {}", step.command, why.trim());
            return Err(step.enable.to_string());
        }
    }
    let _ = std::fs::write(stamp, wanted);
    drop(lock);
    Ok(())
}

// ----- bounded runs ----------------------------------------------------------

/// What a child process run by [`run_bounded`] left behind.
#[derive(Debug)]
pub struct Finished {
    /// The command, for messages.
    pub command: String,
    /// The time limit it ran under.
    pub limit: Duration,
    /// `None` when it was killed at the time limit.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Its exit status; panics (with what it printed) when it was killed at
    /// the time limit.
    pub fn exited(&self) -> ExitStatus {
        self.status.unwrap_or_else(|| {
            panic!(
                "{} took longer than {:?}; stderr:\n{}",
                self.command, self.limit, self.stderr
            )
        })
    }
}

/// Runs `cmd` with `stdin` as its input (none when `None`) and its output
/// captured (both pipes drained in threads, so a chatty child cannot block
/// on a full pipe); kills it, with its process group if it leads one, after
/// `limit`. Panics when it cannot be started.
pub fn run_bounded(cmd: &mut Command, stdin: Option<&[u8]>, limit: Duration) -> Finished {
    try_run_bounded(cmd, stdin, limit).unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// [`run_bounded`], with an error when the program cannot be started.
pub fn try_run_bounded(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    limit: Duration,
) -> std::io::Result<Finished> {
    let started = Instant::now();
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > limit {
            // What was still running, for the report: a hang is easier to
            // find knowing which process it was and whether it spun.
            eprintln!(
                "{cmd:?} did not finish within {limit:?}; its process group:\n{}",
                process_group_listing(child.id())
            );
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Finished {
        command: format!("{cmd:?}"),
        limit,
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// `ps` lines (pid, state, elapsed time, CPU %, command) of the processes
/// whose process group is `pgid` (the program itself when it did not make
/// its own group).
fn process_group_listing(pgid: u32) -> String {
    let listing = Command::new("ps")
        .args(["-eo", "pgid=,pid=,stat=,etime=,pcpu=,args="])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    listing
        .lines()
        .filter(|line| line.split_whitespace().next() == Some(&pgid.to_string()))
        .map(|line| format!("  {}", line.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `tests/python/{script}` with `args`; panics unless it exits 0.
/// Returns its stdout parsed as JSON.
pub fn run_python(python: &Path, script: &str, args: &[String]) -> serde_json::Value {
    let path = repo().join("tests/python").join(script);
    let out = run_bounded(
        Command::new(python).arg(&path).args(args),
        None,
        TOOL_TIMEOUT,
    );
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert!(
        out.exited().success(),
        "{script} {args:?} failed ({}):\n{stderr}\n{stdout}",
        out.exited()
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}\n{stderr}"))
}

// ----- scratch space ---------------------------------------------------------

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "wsrooms-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

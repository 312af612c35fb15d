//! The server under test: in a thread of the test process (for tests that
//! need a `Config` no flag gives, or many servers cheaply), or as a child
//! process of the real binary (for tests that signal it, read its `/proc`,
//! or wrap it in `prlimit`). A child's log lines (stdout and stderr:
//! `simple_logger` writes to stdout) are collected for the test to read.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub use wsrooms::Config;

use super::IO_TIMEOUT;

/// A config for tests: port 0 (any free port), everything else default.
pub fn test_config() -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        log_level: "warn".into(),
        ..Config::default()
    }
}

/// Starts a server in a thread of this test process; returns its address.
/// (The server is not `Send`, so it is built inside its thread.)
pub fn start(config: Config) -> SocketAddr {
    start_on(std::thread::Builder::new(), config)
}

/// Starts a server in a thread with its admin listener on a free
/// loopback port (`--admin-bind 127.0.0.1:0`); returns the main address and
/// the admin one.
pub fn start_with_admin(mut config: Config) -> (SocketAddr, SocketAddr) {
    config.admin_bind = Some("127.0.0.1:0".parse().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut server = wsrooms::Server::bind(config).expect("bind");
        let admin = server.admin_addr().expect("an admin listener");
        tx.send((server.local_addr(), admin)).unwrap();
        server.run().expect("server loop");
    });
    rx.recv_timeout(IO_TIMEOUT).expect("server did not start")
}

/// Like [`start`], with the server's thread given `stack` bytes.
pub fn start_with_stack(config: Config, stack: usize) -> SocketAddr {
    start_on(std::thread::Builder::new().stack_size(stack), config)
}

fn start_on(thread: std::thread::Builder, config: Config) -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    thread
        .spawn(move || {
            let mut server = wsrooms::Server::bind(config).expect("bind");
            tx.send(server.local_addr()).unwrap();
            server.run().expect("server loop");
        })
        .unwrap();
    rx.recv_timeout(IO_TIMEOUT).expect("server did not start")
}

/// A server started as a child process of the real binary; killed on drop.
pub struct Spawned {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every line it has written so far.
    pub log: Log,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `target/…/wsrooms ARGS --bind 127.0.0.1:0` and waits for its
/// "listening on" line.
pub fn spawn_binary(args: &[&str]) -> Spawned {
    spawn_command(Command::new(env!("CARGO_BIN_EXE_wsrooms")).args(args))
}

/// Like [`spawn_binary`] with a prepared command (e.g. wrapped in
/// `prlimit`); `--bind 127.0.0.1:0` is added last.
pub fn spawn_command(cmd: &mut Command) -> Spawned {
    spawn_collecting(cmd.args(["--bind", "127.0.0.1:0"]), None)
}

/// Runs the binary with exactly `args` and `envs` (the environment is
/// otherwise emptied, so no `WSROOMS_*` or `RUST_LOG` of the caller leaks
/// in; `args` must include `--bind`); its log also goes to the file
/// `log`.
pub fn spawn_isolated(args: &[&str], envs: &[(&str, &str)], log: PathBuf) -> Spawned {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsrooms"));
    cmd.args(args).env_clear().envs(envs.iter().copied());
    spawn_collecting(&mut cmd, Some(log))
}

/// Starts `cmd`, collects every line of its stdout and stderr (stderr is
/// also passed on to the test's own), and waits for the "listening on"
/// line.
fn spawn_collecting(cmd: &mut Command, file: Option<PathBuf>) -> Spawned {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsrooms");
    let log = Log::default();
    let file = file.map(|path| Arc::new(Mutex::new(File::create(path).unwrap())));
    let (tx, rx) = mpsc::channel();
    let collect = |pipe: Box<dyn Read + Send>, tx: Option<mpsc::Sender<SocketAddr>>| {
        let (lines, file) = (log.clone(), file.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                match (&tx, line.strip_prefix("wsrooms listening on http://")) {
                    (Some(tx), Some(addr)) => {
                        let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                    }
                    (None, _) => eprintln!("{line}"),
                    _ => {}
                }
                if let Some(file) = &file {
                    let _ = writeln!(file.lock().unwrap(), "{line}");
                }
                lines.0.lock().unwrap().push(line);
            }
        });
    };
    collect(Box::new(child.stdout.take().unwrap()), Some(tx));
    collect(Box::new(child.stderr.take().unwrap()), None);
    match rx.recv_timeout(IO_TIMEOUT) {
        Ok(addr) => Spawned { child, addr, log },
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!(
                "wsrooms {cmd:?} did not report its address; log:\n{}",
                log.all()
            );
        }
    }
}

/// The lines a spawned server has logged so far.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    /// Lines containing every one of `parts`.
    pub fn matching(&self, parts: &[&str]) -> Vec<String> {
        let lines = self.0.lock().unwrap();
        lines
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .cloned()
            .collect()
    }

    /// Waits up to `limit` for a line containing every one of `parts`;
    /// returns it.
    pub fn wait_for(&self, parts: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.matching(parts).into_iter().next() {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {parts:?} in:\n{}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The whole log so far.
    pub fn all(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// Waits for a child to exit, up to `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends SIGTERM to a process (with `kill`, no `unsafe`).
pub fn sigterm(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill -TERM {pid} failed");
}

/// Stops a process (SIGSTOP) and waits until it is stopped, so that what is
/// sent to it meanwhile waits for it in the kernel: everything sent before
/// [`thaw`] is ready in its next loop turn.
pub fn freeze(pid: u32) {
    let ok = Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill -STOP {pid} failed");
    let stat = format!("/proc/{pid}/stat");
    let deadline = Instant::now() + IO_TIMEOUT;
    // The state is the field after the name in parentheses.
    let stopped = || {
        let text = std::fs::read_to_string(&stat).unwrap_or_default();
        text.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('T'))
    };
    while !stopped() {
        assert!(Instant::now() < deadline, "{pid} did not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Lets a process [`freeze`] stopped go on (SIGCONT).
pub fn thaw(pid: u32) {
    let ok = Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill -CONT {pid} failed");
}

//! The processes under test and the machine they run on: pinning to CPUs,
//! the open-files limit, nice and real-time priority (`Setup`); a server
//! child process of either kind (`Server`); and what a measuring window
//! cost each of them in CPU time and run-queue waits (`CpuMeter`).

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{CLK_TCK, OPEN_CONCURRENCY};

// ----- setup: pinning, file descriptors ---------------------------------

pub(crate) struct Setup {
    /// Prefix for server command lines (`taskset -c 0`), if pinning works.
    pub(crate) pin_server: Option<Vec<String>>,
    pub(crate) load_pinned: bool,
    /// `WSROOMS_BENCH_NICE=N`: run the server and the client at nice N
    /// (e.g. -10, as root) so other programs on a shared machine disturb less.
    pub(crate) nice: Option<i32>,
    /// `WSROOMS_BENCH_RT=PRIO`: run both with `SCHED_FIFO` at PRIO (as root):
    /// on a busy machine, the nearest thing to a quiet one. Both block in
    /// `epoll_wait` when idle, and the kernel's RT throttling leaves others 5 %.
    pub(crate) rt: Option<u32>,
    pub(crate) nofile: u64,
    pub(crate) idle_sockets: usize,
    notes: Vec<String>,
}

impl Setup {
    pub(crate) fn new() -> Setup {
        let mut notes = Vec::new();
        let nofile = match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(n) => n,
            Err(e) => {
                notes.push(format!("could not raise RLIMIT_NOFILE: {e}"));
                rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .map(|(soft, _)| soft)
                    .unwrap_or(1024)
            }
        };
        // Each side holds one descriptor per idle socket, plus logins in
        // flight and a few spares.
        let fit = nofile.saturating_sub(OPEN_CONCURRENCY as u64 + 64) as usize;
        let idle_sockets = 10_000.min(fit);
        if idle_sockets < 10_000 {
            notes.push(format!(
                "RLIMIT_NOFILE is {nofile}: idle workload uses {idle_sockets} sockets, not 10,000"
            ));
        }
        let cpus = allowed_cpus();
        let taskset = Command::new("taskset")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        let (pin_server, load_pinned) = if taskset && cpus.contains(&0) && cpus.contains(&1) {
            let ok = Command::new("taskset")
                .args(["-p", "-c", "1", &std::process::id().to_string()])
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                notes.push("could not pin the load client to CPU 1".into());
            }
            (
                Some(vec!["taskset".to_string(), "-c".into(), "0".into()]),
                ok,
            )
        } else {
            notes.push(format!(
                "not pinning (taskset found: {taskset}, allowed CPUs: {cpus:?})"
            ));
            (None, false)
        };
        let nice = std::env::var("WSROOMS_BENCH_NICE")
            .ok()
            .and_then(|n| n.trim().parse::<i32>().ok());
        if let Some(n) = nice {
            let ok = Command::new("renice")
                .args(["-n", &n.to_string(), "-p", &std::process::id().to_string()])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                notes.push(format!("could not renice the load client to {n}"));
            }
        }
        let rt = std::env::var("WSROOMS_BENCH_RT")
            .ok()
            .and_then(|n| n.trim().parse::<u32>().ok());
        if let Some(prio) = rt {
            let ok = Command::new("chrt")
                .args([
                    "-f",
                    "-p",
                    &prio.to_string(),
                    &std::process::id().to_string(),
                ])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                notes.push(format!(
                    "could not set SCHED_FIFO {prio} for the load client"
                ));
            }
        }
        Setup {
            pin_server,
            load_pinned,
            nice,
            rt,
            nofile,
            idle_sockets,
            notes,
        }
    }

    pub(crate) fn print_notes(&self) {
        for n in &self.notes {
            eprintln!("e2e: note: {n}");
        }
    }
}

/// CPUs this process may run on, from `/proc/self/status`.
fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(list) = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
    else {
        return Vec::new();
    };
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    cpus.extend(a..=b);
                }
            }
            None => cpus.extend(part.parse::<usize>().ok()),
        }
    }
    cpus
}

// ----- server processes --------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Wsrooms,
    /// wsrooms with `--data-file` (a file in a temporary directory).
    WsroomsDataFile,
    Peer,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Wsrooms => "wsrooms",
            Kind::WsroomsDataFile => "wsrooms-data-file",
            Kind::Peer => "peer",
        }
    }
}

/// A server child process, killed on drop.
pub(crate) struct Server {
    child: Child,
    kind: Kind,
    pid: u32,
    pub(crate) addr: SocketAddr,
    /// `perf record` attached to the server (env `WSROOMS_BENCH_PERF`).
    perf: Option<Child>,
    /// The directory of its `--data-file`, removed on drop.
    data_dir: Option<std::path::PathBuf>,
}

impl Server {
    pub(crate) fn start(setup: &Setup, kind: Kind, workload: &str) -> io::Result<Server> {
        Server::start_with(setup, kind, workload, &[])
    }

    /// A server with `extra` flags after the bench's own (wsrooms only).
    pub(crate) fn start_with(
        setup: &Setup,
        kind: Kind,
        workload: &str,
        extra: &[String],
    ) -> io::Result<Server> {
        let mut argv: Vec<String> = Vec::new();
        if let Some(n) = setup.nice {
            argv.extend(["nice".to_string(), "-n".into(), n.to_string()]);
        }
        if let Some(prio) = setup.rt {
            argv.extend(["chrt".to_string(), "-f".into(), prio.to_string()]);
        }
        argv.extend(setup.pin_server.clone().unwrap_or_default());
        let mut data_dir = None;
        match kind {
            Kind::Wsrooms | Kind::WsroomsDataFile => {
                argv.push(env!("CARGO_BIN_EXE_wsrooms").to_string());
                // Lift the limits this load would hit; defaults stay as they are.
                for a in [
                    "--bind=127.0.0.1:0",
                    "--rate-limit=0",
                    "--max-chat-chars=1000",
                    "--max-users-per-room=100000",
                    "--max-connections=20000",
                    "--max-buffered=67108864",
                    "--log-level=warn",
                ] {
                    argv.push(a.to_string());
                }
                argv.extend(extra.iter().cloned());
                // `WSROOMS_BENCH_AA=1`: the same server on both sides (see main.rs).
                if kind == Kind::WsroomsDataFile && std::env::var_os("WSROOMS_BENCH_AA").is_none() {
                    let dir = std::env::temp_dir()
                        .join(format!("wsrooms-e2e-{}-{workload}", std::process::id()));
                    std::fs::create_dir_all(&dir)?;
                    argv.push(format!("--data-file={}", dir.join("rooms.db").display()));
                    // Nothing pruned, so the file's size per message is measured.
                    argv.push("--keep-messages=100000000".into());
                    data_dir = Some(dir);
                }
            }
            Kind::Peer => {
                argv.push(std::env::current_exe()?.to_string_lossy().into_owned());
                argv.push("--peer-server".into());
            }
        }
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if lines.read_line(&mut line)? == 0 {
                let _ = child.kill();
                return Err(io::Error::other(format!(
                    "{} exited before listening",
                    kind.name()
                )));
            }
            if let Some(rest) = line.trim().split("listening on http://").nth(1) {
                break rest.parse::<SocketAddr>().map_err(io::Error::other)?;
            }
        };
        // Keep draining its stdout (the logger writes there) so it never blocks.
        std::thread::spawn(move || io::copy(&mut lines, &mut io::sink()));
        // For profiling: `WSROOMS_BENCH_PERF=DIR` records each server with
        // `perf record` into DIR/<server>-<workload>.data.
        let perf = std::env::var_os("WSROOMS_BENCH_PERF").and_then(|dir| {
            let out = std::path::Path::new(&dir).join(format!("{}-{workload}.data", kind.name()));
            let freq = std::env::var("WSROOMS_BENCH_PERF_FREQ").unwrap_or_else(|_| "2000".into());
            let mut cmd = Command::new("perf");
            cmd.args(["record", "-q", "-F", &freq, "-p", &pid.to_string(), "-o"])
                .arg(out);
            if let Ok(extra) = std::env::var("WSROOMS_BENCH_PERF_ARGS") {
                cmd.args(extra.split_whitespace());
            }
            let child = cmd.stdout(Stdio::null()).spawn().ok()?;
            std::thread::sleep(Duration::from_millis(300));
            Some(child)
        });
        Ok(Server {
            child,
            kind,
            pid,
            addr,
            perf,
            data_dir,
        })
    }

    /// `WSROOMS_BENCH_METRICS=DIR`: saves the server's `/metrics` page in
    /// DIR (see main.rs). Best effort: a failure is reported, not fatal.
    pub(crate) fn save_metrics(&self, workload: &str) {
        let Some(dir) = std::env::var_os("WSROOMS_BENCH_METRICS") else {
            return;
        };
        if self.kind == Kind::Peer {
            return;
        }
        let path = std::path::Path::new(&dir).join(format!(
            "{}-{workload}-{}.txt",
            self.kind.name(),
            self.pid
        ));
        if let Err(e) = self
            .metrics_page()
            .and_then(|page| std::fs::write(&path, page))
        {
            eprintln!("e2e: cannot save {}: {e}", path.display());
        }
    }

    /// The whole `/metrics` answer (wsrooms only).
    fn metrics_page(&self) -> io::Result<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    }

    /// The data file's figures from `/metrics` (wsrooms only).
    pub(crate) fn store_figures(&self) -> io::Result<StoreFigures> {
        let text = self.metrics_page()?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(StoreFigures {
            commits: value("wsrooms_commits_total"),
            commit_us: value("wsrooms_commit_microseconds_total"),
            checkpoints: value("wsrooms_checkpoints_total"),
            checkpoint_us: value("wsrooms_checkpoint_microseconds_total"),
            loop_checkpoint_us: value("wsrooms_loop_checkpoint_microseconds_total"),
            messages: value("wsrooms_messages_in_total"),
            file_bytes: value("wsrooms_data_file_bytes"),
        })
    }

    fn cpu_ticks(&self) -> u64 {
        cpu_ticks(&format!("/proc/{}/stat", self.pid))
    }

    /// CPU time the server's main thread (its poll loop) ran, in ns
    /// (`/proc/<pid>/schedstat`'s first field: exact, where `stat`'s ticks
    /// count 10 ms at a time; the helper thread of `--data-file` is not
    /// in it).
    pub(crate) fn cpu_ns(&self) -> u64 {
        schedstat_field(&format!("/proc/{}/schedstat", self.pid), 0)
    }

    /// `(utime, stime)` in clock ticks: user space and kernel.
    pub(crate) fn user_system_ticks(&self) -> (u64, u64) {
        let (u, s) = stat_fields(&format!("/proc/{}/stat", self.pid));
        (u, s)
    }

    pub(crate) fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut perf) = self.perf.take() {
            let _ = Command::new("kill")
                .args(["-INT", &perf.id().to_string()])
                .status();
            let _ = perf.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.data_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Commits and checkpoints with their time, messages and the data file's size, as `/metrics`
/// says (counters since start; see [`StoreFigures::since`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StoreFigures {
    pub(crate) commits: u64,
    pub(crate) commit_us: u64,
    pub(crate) checkpoints: u64,
    pub(crate) checkpoint_us: u64,
    /// The poll loop's own checkpoints' time (a stall), waits included.
    pub(crate) loop_checkpoint_us: u64,
    pub(crate) messages: u64,
    pub(crate) file_bytes: u64,
}

impl StoreFigures {
    /// Commits, checkpoints and their time since `start`; messages in all and the file
    /// size as now (the file holds every message since the server started).
    pub(crate) fn since(self, start: StoreFigures) -> StoreFigures {
        StoreFigures {
            commits: self.commits - start.commits.min(self.commits),
            commit_us: self.commit_us - start.commit_us.min(self.commit_us),
            checkpoints: self.checkpoints - start.checkpoints.min(self.checkpoints),
            checkpoint_us: self.checkpoint_us - start.checkpoint_us.min(self.checkpoint_us),
            loop_checkpoint_us: self.loop_checkpoint_us
                - start.loop_checkpoint_us.min(self.loop_checkpoint_us),
            messages: self.messages,
            file_bytes: self.file_bytes,
        }
    }
}

/// `utime + stime` of a process, in clock ticks.
fn cpu_ticks(stat_path: &str) -> u64 {
    let (u, s) = stat_fields(stat_path);
    u + s
}

/// `(utime, stime)` of a process, in clock ticks.
fn stat_fields(stat_path: &str) -> (u64, u64) {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at 3.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let get = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (get(14), get(15))
}

/// The kernel's slab memory in KiB (`Slab:` of `/proc/meminfo`): where
/// socket structures live, on both ends of a loopback connection.
pub(crate) fn slab_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds used by the server and by this process between two points.
pub(crate) struct CpuMeter {
    server: u64,
    /// The server's main thread (the poll loop): ns on a CPU.
    server_loop: u64,
    load: u64,
    server_wait: u64,
    load_wait: u64,
    at: Instant,
}

/// How long a task waited, runnable, for a CPU (ns): the second field of
/// `/proc/<pid>/schedstat`. Other programs on the machine show up here.
fn run_queue_wait_ns(path: &str) -> u64 {
    schedstat_field(path, 1)
}

/// Field `n` of a `schedstat` file (0: ns on a CPU, 1: ns waiting for one).
fn schedstat_field(path: &str, n: usize) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_whitespace()
        .nth(n)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What a workload's measuring window cost.
pub(crate) struct Cpu {
    /// Server CPU seconds (utime + stime).
    pub(crate) server: f64,
    /// Load client CPU seconds.
    pub(crate) load: f64,
    pub(crate) wall: f64,
    /// Share of the wall time the server and the client spent waiting for
    /// their CPU (runnable but not running): other programs' noise.
    pub(crate) server_wait: f64,
    pub(crate) load_wait: f64,
    /// Share of the wall time the server's poll loop (its main thread)
    /// ran: below the process's CPU share when another thread of it ran
    /// too, and well below 100 % under a load that should saturate it
    /// when the loop waited (for the disk, a lock).
    pub(crate) server_loop: f64,
}

impl CpuMeter {
    pub(crate) fn start(server: &Server) -> CpuMeter {
        CpuMeter {
            server: server.cpu_ticks(),
            server_loop: server.cpu_ns(),
            load: cpu_ticks("/proc/self/stat"),
            server_wait: run_queue_wait_ns(&format!("/proc/{}/schedstat", server.pid)),
            load_wait: run_queue_wait_ns("/proc/self/schedstat"),
            at: Instant::now(),
        }
    }

    pub(crate) fn stop(&self, server: &Server) -> Cpu {
        let wall = self.at.elapsed().as_secs_f64();
        let sw = run_queue_wait_ns(&format!("/proc/{}/schedstat", server.pid))
            .saturating_sub(self.server_wait);
        let lw = run_queue_wait_ns("/proc/self/schedstat").saturating_sub(self.load_wait);
        Cpu {
            server: server.cpu_ticks().saturating_sub(self.server) as f64 / CLK_TCK,
            load: cpu_ticks("/proc/self/stat").saturating_sub(self.load) as f64 / CLK_TCK,
            wall,
            server_wait: sw as f64 / 1e9 / wall,
            load_wait: lw as f64 / 1e9 / wall,
            server_loop: server.cpu_ns().saturating_sub(self.server_loop) as f64 / 1e9 / wall,
        }
    }
}

//! End-to-end benchmark: wsrooms against a tokio-tungstenite peer, over real
//! sockets on 127.0.0.1, with the real login path (`POST /login` → cookie →
//! `GET /rooms/{room}/ws`). Run it with
//!
//! ```text
//! cargo bench --bench e2e                 # everything (≈35 s)
//! cargo bench --bench e2e -- fanout       # only (a); also `rooms`, `idle`
//! cargo bench --bench e2e -- wsrooms      # only wsrooms; also `peer`
//! WSROOMS_BENCH_RT=10 cargo bench --bench e2e   # SCHED_FIFO, for busy machines
//! ```
//!
//! Environment (all optional):
//! - `WSROOMS_BENCH_RT=PRIO`: run the servers and the load client with
//!   `SCHED_FIFO` priority PRIO (root): on a shared machine this keeps other
//!   programs from stealing their CPUs. `WSROOMS_BENCH_NICE=N` is the milder
//!   version (nice N).
//! - `WSROOMS_BENCH_PERF=DIR`: attach `perf record` to each server, into
//!   `DIR/<server>-<workload>.data` (`WSROOMS_BENCH_PERF_FREQ`, default 2000 Hz;
//!   `WSROOMS_BENCH_PERF_ARGS`, e.g. `-g`).
//!
//! The table's "noise" rows say how much of the time the server or the client
//! was runnable but waiting for its CPU (`/proc/<pid>/schedstat`): above a
//! few %, other programs were running on the same cores and the figures are
//! lower bounds.
//!
//! Each workload starts a fresh server as a child process and measures it
//! from outside:
//!
//! - **(a) fan-out**: 1 room × 100 clients; 10 of them send 64-byte messages,
//!   each keeping at most 8 of its own un-echoed; 5 s. Deliveries per second
//!   (one delivery = one message reaching one client).
//! - **(b) many small rooms**: 100 rooms × 10 clients, each client sends
//!   5 messages/s; 5 s. Send → receive latency of every delivery (HDR
//!   histogram) and the server's CPU use.
//! - **(c) idle**: 10,000 logged-in idle sockets (1,000 rooms × 10). Server
//!   RSS per socket (VmRSS after minus before, / 10,000) and logins+upgrades
//!   per second while opening them.
//!
//! Server CPU time is `utime + stime` from `/proc/<pid>/stat` (100 Hz ticks).
//!
//! The servers:
//! - **wsrooms**: the release binary (`CARGO_BIN_EXE_wsrooms`, built with the
//!   bench profile), with flags that lift the limits this load would hit
//!   (rate limit, chat length, users per room, connections, buffered bytes);
//!   the defaults are untouched.
//! - **peer**: this same executable run as `--peer-server`: an idiomatic
//!   broadcast chat server on a current-thread tokio runtime with
//!   tokio-tungstenite, one `tokio::sync::broadcast` channel per room, each
//!   socket's writer feeding every queued message and flushing once.
//!
//! Both run pinned to CPU 0 (`taskset -c 0`) and the load client to CPU 1,
//! when `taskset` exists and both CPUs are allowed. The load client is one
//! thread with its own `mio` poll loop and a minimal WebSocket client (masked
//! frames out, frame parsing in), so 10,000 sockets cost it little. The
//! table also prints the load client's own CPU use: near 100 % would mean the
//! client, not the server, set the pace.

use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// Own messages a fan-out sender may have un-echoed.
const WINDOW: u32 = 8;
/// Bytes of chat text per message.
const TEXT_LEN: usize = 64;
/// Logins in progress at once while opening sockets.
const OPEN_CONCURRENCY: usize = 256;
const MEASURE: Duration = Duration::from_secs(5);
const CLK_TCK: f64 = 100.0;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--peer-server") {
        peer::main();
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this
    // without it, where a minute-long load test is not wanted.
    if !args.iter().any(|a| a == "--bench") {
        println!("e2e: run with `cargo bench --bench e2e` (skipped in test mode)");
        return;
    }
    let filters: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let want = |name: &str, group: &[&str]| {
        let in_group: Vec<&&str> = filters.iter().filter(|f| group.contains(f)).collect();
        in_group.is_empty() || in_group.iter().any(|f| **f == name)
    };
    let workloads = ["fanout", "rooms", "idle"];
    let servers = ["wsrooms", "peer"];

    let setup = Setup::new();
    setup.print_notes();

    let mut results: Vec<(Kind, Results)> = Vec::new();
    for kind in [Kind::Wsrooms, Kind::Peer] {
        if !want(kind.name(), &servers) {
            continue;
        }
        let mut r = Results::default();
        if want("fanout", &workloads) {
            r.fanout = run_logged(kind, "fan-out", || fanout(&setup, kind));
        }
        if want("rooms", &workloads) {
            r.rooms = run_logged(kind, "rooms", || rooms(&setup, kind));
        }
        if want("idle", &workloads) {
            r.idle = run_logged(kind, "idle", || idle(&setup, kind));
        }
        results.push((kind, r));
    }
    print_table(&setup, &results);
}

fn run_logged<T>(kind: Kind, what: &str, f: impl FnOnce() -> io::Result<T>) -> Option<T> {
    eprintln!("e2e: {} {what} ...", kind.name());
    match f() {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("e2e: {} {what} failed: {e}", kind.name());
            None
        }
    }
}

// ----- setup: pinning, file descriptors ---------------------------------

struct Setup {
    /// Prefix for server command lines (`taskset -c 0`), if pinning works.
    pin_server: Option<Vec<String>>,
    load_pinned: bool,
    /// `WSROOMS_BENCH_NICE=N`: run the server and the client at nice N
    /// (e.g. -10, as root) so other programs on a shared machine disturb less.
    nice: Option<i32>,
    /// `WSROOMS_BENCH_RT=PRIO`: run both with `SCHED_FIFO` at PRIO (as root):
    /// on a busy machine, the nearest thing to a quiet one. Both block in
    /// `epoll_wait` when idle, and the kernel's RT throttling leaves others 5 %.
    rt: Option<u32>,
    nofile: u64,
    idle_sockets: usize,
    notes: Vec<String>,
}

impl Setup {
    fn new() -> Setup {
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

    fn print_notes(&self) {
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
enum Kind {
    Wsrooms,
    Peer,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Wsrooms => "wsrooms",
            Kind::Peer => "peer",
        }
    }
}

/// A server child process, killed on drop.
struct Server {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    /// `perf record` attached to the server (env `WSROOMS_BENCH_PERF`).
    perf: Option<Child>,
}

impl Server {
    fn start(setup: &Setup, kind: Kind, workload: &str) -> io::Result<Server> {
        let mut argv: Vec<String> = Vec::new();
        if let Some(n) = setup.nice {
            argv.extend(["nice".to_string(), "-n".into(), n.to_string()]);
        }
        if let Some(prio) = setup.rt {
            argv.extend(["chrt".to_string(), "-f".into(), prio.to_string()]);
        }
        argv.extend(setup.pin_server.clone().unwrap_or_default());
        match kind {
            Kind::Wsrooms => {
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
            pid,
            addr,
            perf,
        })
    }

    fn cpu_ticks(&self) -> u64 {
        cpu_ticks(&format!("/proc/{}/stat", self.pid))
    }

    fn rss_kib(&self) -> u64 {
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
    }
}

/// `utime + stime` of a process, in clock ticks.
fn cpu_ticks(stat_path: &str) -> u64 {
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
    get(14) + get(15)
}

/// CPU seconds used by the server and by this process between two points.
struct CpuMeter {
    server: u64,
    load: u64,
    server_wait: u64,
    load_wait: u64,
    at: Instant,
}

/// How long a task waited, runnable, for a CPU (ns): the second field of
/// `/proc/<pid>/schedstat`. Other programs on the machine show up here.
fn run_queue_wait_ns(path: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What a workload's measuring window cost.
struct Cpu {
    /// Server CPU seconds (utime + stime).
    server: f64,
    /// Load client CPU seconds.
    load: f64,
    wall: f64,
    /// Share of the wall time the server and the client spent waiting for
    /// their CPU (runnable but not running): other programs' noise.
    server_wait: f64,
    load_wait: f64,
}

impl CpuMeter {
    fn start(server: &Server) -> CpuMeter {
        CpuMeter {
            server: server.cpu_ticks(),
            load: cpu_ticks("/proc/self/stat"),
            server_wait: run_queue_wait_ns(&format!("/proc/{}/schedstat", server.pid)),
            load_wait: run_queue_wait_ns("/proc/self/schedstat"),
            at: Instant::now(),
        }
    }

    fn stop(&self, server: &Server) -> Cpu {
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
        }
    }
}

// ----- workloads -----------------------------------------------------------

#[derive(Default)]
struct Results {
    fanout: Option<Fanout>,
    rooms: Option<Rooms>,
    idle: Option<Idle>,
}

struct Fanout {
    deliveries: u64,
    sent: u64,
    cpu: Cpu,
}

struct Rooms {
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    deliveries: u64,
    cpu: Cpu,
}

struct Idle {
    sockets: usize,
    rss_growth_kib: u64,
    /// CPU use and wall time while opening the sockets.
    cpu: Cpu,
}

fn fanout(setup: &Setup, kind: Kind) -> io::Result<Fanout> {
    let server = Server::start(setup, kind, "fanout")?;
    let mut load = Load::new(server.addr)?;
    let senders: Vec<usize> = (0..100).filter(|i| i % 10 == 0).collect();
    for i in 0..100 {
        load.add_client(1, senders.contains(&i));
    }
    load.open_all(Duration::from_secs(30))?;
    load.run_for(Duration::from_millis(300));
    load.window_active = true;
    for &i in &senders {
        load.refill(i);
    }
    load.run_for(Duration::from_millis(500));
    load.meter.reset(false);
    let meter = CpuMeter::start(&server);
    load.run_for(MEASURE);
    let cpu = meter.stop(&server);
    let m = load.meter.take();
    load.window_active = false;
    load.check_closed()?;
    Ok(Fanout {
        deliveries: m.deliveries,
        sent: m.own,
        cpu,
    })
}

fn rooms(setup: &Setup, kind: Kind) -> io::Result<Rooms> {
    let server = Server::start(setup, kind, "rooms")?;
    let mut load = Load::new(server.addr)?;
    for i in 0..1000u32 {
        load.add_client(1 + i / 10, false);
    }
    load.open_all(Duration::from_secs(30))?;
    load.run_for(Duration::from_millis(300));
    // Everyone sends every 200 ms, first sends spread over the first 200 ms.
    load.schedule_all(Duration::from_millis(200));
    load.run_for(Duration::from_secs(1));
    load.meter.reset(true);
    let meter = CpuMeter::start(&server);
    load.run_for(MEASURE);
    let cpu = meter.stop(&server);
    let m = load.meter.take();
    load.stop_schedule();
    load.check_closed()?;
    let h = m.latency.expect("latency recorded");
    Ok(Rooms {
        p50_us: h.value_at_quantile(0.50),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        deliveries: m.deliveries,
        cpu,
    })
}

fn idle(setup: &Setup, kind: Kind) -> io::Result<Idle> {
    let server = Server::start(setup, kind, "idle")?;
    let mut load = Load::new(server.addr)?;
    let n = setup.idle_sockets;
    for i in 0..n as u32 {
        load.add_client(1 + i / 10, false);
    }
    // Let the server settle, then take the baseline.
    std::thread::sleep(Duration::from_millis(200));
    let base = server.rss_kib();
    let meter = CpuMeter::start(&server);
    load.open_all(Duration::from_secs(120))?;
    let cpu = meter.stop(&server);
    // Join events are flushed and read; then the sockets are idle.
    load.run_for(Duration::from_millis(1000));
    load.check_closed()?;
    let rss = server.rss_kib();
    Ok(Idle {
        sockets: n,
        rss_growth_kib: rss.saturating_sub(base),
        cpu,
    })
}

// ----- the table -------------------------------------------------------------

/// A row's figure from one server's results.
type Getter = Box<dyn Fn(&Results) -> Option<f64>>;
/// Whether wsrooms' figure (given the peer's) meets the target.
type Check = Box<dyn Fn(f64, Option<f64>) -> bool>;

/// One row: a name, a figure per server, and the target (checked on wsrooms).
struct Row {
    name: &'static str,
    digits: usize,
    get: Getter,
    target: Option<(&'static str, Check)>,
}

fn row(name: &'static str, digits: usize, get: impl Fn(&Results) -> Option<f64> + 'static) -> Row {
    Row {
        name,
        digits,
        get: Box::new(get),
        target: None,
    }
}

impl Row {
    /// `check(wsrooms, peer)` decides whether wsrooms meets the target.
    fn target(
        mut self,
        text: &'static str,
        check: impl Fn(f64, Option<f64>) -> bool + 'static,
    ) -> Row {
        self.target = Some((text, Box::new(check)));
        self
    }
}

fn rows() -> Vec<Row> {
    fn a(r: &Results, f: impl Fn(&Fanout) -> f64) -> Option<f64> {
        r.fanout.as_ref().map(f)
    }
    fn b(r: &Results, f: impl Fn(&Rooms) -> f64) -> Option<f64> {
        r.rooms.as_ref().map(f)
    }
    fn c(r: &Results, f: impl Fn(&Idle) -> f64) -> Option<f64> {
        r.idle.as_ref().map(f)
    }
    let per_million = |cpu: &Cpu, deliveries: u64| cpu.server / (deliveries.max(1) as f64 / 1e6);
    vec![
        row("(a) fan-out deliveries/s", 0, |r| {
            a(r, |f| f.deliveries as f64 / f.cpu.wall)
        })
        .target(">= 1.0x peer", |w, p| p.is_none_or(|p| w >= p)),
        row("(a) messages sent/s", 0, |r| {
            a(r, |f| f.sent as f64 / f.cpu.wall)
        }),
        row("(a) server CPU s / M deliveries", 3, move |r| {
            a(r, |f| per_million(&f.cpu, f.deliveries))
        }),
        row("(a) server CPU %", 0, |r| {
            a(r, |f| 100.0 * f.cpu.server / f.cpu.wall)
        }),
        row("(a) load client CPU %", 0, |r| {
            a(r, |f| 100.0 * f.cpu.load / f.cpu.wall)
        }),
        row("(a) noise: server/client CPU wait %", 0, |r| {
            a(r, |f| 100.0 * f.cpu.server_wait.max(f.cpu.load_wait))
        }),
        row("(b) latency p50 ms", 3, |r| b(r, |x| x.p50_us as f64 / 1e3)),
        row("(b) latency p99 ms", 3, |r| b(r, |x| x.p99_us as f64 / 1e3))
            .target("<= 5 ms", |w, _| w <= 5.0),
        row("(b) latency p99.9 ms", 3, |r| {
            b(r, |x| x.p999_us as f64 / 1e3)
        }),
        row("(b) latency max ms", 3, |r| b(r, |x| x.max_us as f64 / 1e3)),
        row("(b) deliveries/s", 0, |r| {
            b(r, |x| x.deliveries as f64 / x.cpu.wall)
        }),
        row("(b) server CPU %", 1, |r| {
            b(r, |x| 100.0 * x.cpu.server / x.cpu.wall)
        })
        .target("< 50 %", |w, _| w < 50.0),
        row("(b) server CPU s / M deliveries", 3, move |r| {
            b(r, |x| per_million(&x.cpu, x.deliveries))
        }),
        row("(b) load client CPU %", 0, |r| {
            b(r, |x| 100.0 * x.cpu.load / x.cpu.wall)
        }),
        row("(b) noise: server/client CPU wait %", 0, |r| {
            b(r, |x| 100.0 * x.cpu.server_wait.max(x.cpu.load_wait))
        }),
        row("(c) server RSS bytes / idle socket", 0, |r| {
            c(r, |x| x.rss_growth_kib as f64 * 1024.0 / x.sockets as f64)
        })
        .target("<= 1024", |w, _| w <= 1024.0),
        row("(c) logins+upgrades/s", 0, |r| {
            c(r, |x| x.sockets as f64 / x.cpu.wall)
        })
        .target(">= 10,000", |w, _| w >= 10_000.0),
        row("(c) server CPU us / login+upgrade", 1, |r| {
            c(r, |x| x.cpu.server * 1e6 / x.sockets as f64)
        }),
        row("(c) server CPU % while opening", 0, |r| {
            c(r, |x| 100.0 * x.cpu.server / x.cpu.wall)
        }),
        row("(c) load client CPU % while opening", 0, |r| {
            c(r, |x| 100.0 * x.cpu.load / x.cpu.wall)
        }),
        row("(c) noise: server/client CPU wait %", 0, |r| {
            c(r, |x| 100.0 * x.cpu.server_wait.max(x.cpu.load_wait))
        }),
    ]
}

fn print_table(setup: &Setup, results: &[(Kind, Results)]) {
    let get = |k: Kind| results.iter().find(|(kind, _)| *kind == k).map(|(_, r)| r);
    let (w, p) = (get(Kind::Wsrooms), get(Kind::Peer));
    let num = |v: Option<f64>, digits: usize| match v {
        Some(v) if digits == 0 => group_thousands(v.round() as u64),
        Some(v) => format!("{v:.digits$}"),
        None => "-".into(),
    };
    let mut table: Vec<[String; 5]> = Vec::new();
    for r in rows() {
        let wv = w.and_then(|x| (r.get)(x));
        let pv = p.and_then(|x| (r.get)(x));
        let ratio = match (wv, pv) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
            _ => "-".into(),
        };
        let target = match (&r.target, wv) {
            (Some((text, check)), Some(v)) => {
                format!("{text} {}", if check(v, pv) { "ok" } else { "MISS" })
            }
            (Some((text, _)), None) => text.to_string(),
            (None, _) => String::new(),
        };
        if wv.is_none() && pv.is_none() {
            continue;
        }
        table.push([
            r.name.to_string(),
            num(wv, r.digits),
            num(pv, r.digits),
            ratio,
            target,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .chain([HEADER[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    println!();
    println!(
        "wsrooms e2e bench: server on CPU 0{}, load client on CPU 1{}{}; RLIMIT_NOFILE {}; idle sockets {}",
        if setup.pin_server.is_some() { "" } else { " (not pinned)" },
        if setup.load_pinned { "" } else { " (not pinned)" },
        setup.nice.map(|n| format!(", both at nice {n}")).unwrap_or_default()
            + &setup.rt.map(|p| format!(", both SCHED_FIFO {p}")).unwrap_or_default(),
        setup.nofile,
        setup.idle_sockets,
    );
    let line = |cells: &[String]| {
        let mut s = format!("| {:<w$} |", cells[0], w = widths[0]);
        for (i, cell) in cells.iter().enumerate().skip(1) {
            if i == 4 {
                s.push_str(&format!(" {:<w$} |", cell, w = widths[i]));
            } else {
                s.push_str(&format!(" {:>w$} |", cell, w = widths[i]));
            }
        }
        s
    };
    println!("{}", line(&HEADER.map(String::from)));
    println!(
        "|{}|",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in &table {
        println!("{}", line(r));
    }
    println!();
    println!("noise = share of the time the server or the client waited for its CPU (other programs running);");
    println!("figures with noise above a few % are lower bounds of what a quiet machine gives.");
    println!();
}

const HEADER: [&str; 5] = [
    "workload",
    "wsrooms",
    "peer",
    "wsrooms/peer",
    "target (wsrooms)",
];

fn group_thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

// ----- the load client ------------------------------------------------------

/// Where a client is on the login path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Waiting,
    LoginConnect,
    LoginResponse,
    WsConnect,
    WsResponse,
    Open,
    Closed,
}

struct Client {
    idx: u32,
    room: u32,
    st: St,
    stream: Option<TcpStream>,
    /// An unfinished HTTP response or frame.
    inbuf: Vec<u8>,
    /// Bytes the socket did not take yet.
    outbuf: Vec<u8>,
    cookie: String,
    mask: [u8; 4],
    sender: bool,
    in_flight: u32,
}

/// What the client counts while measuring.
#[derive(Default)]
struct Meter {
    counting: bool,
    deliveries: u64,
    /// Own messages that came back to their sender.
    own: u64,
    latency: Option<Histogram<u64>>,
}

impl Meter {
    fn reset(&mut self, latency: bool) {
        self.counting = true;
        self.deliveries = 0;
        self.own = 0;
        self.latency =
            latency.then(|| Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"));
    }

    fn take(&mut self) -> Meter {
        let m = std::mem::take(self);
        self.counting = false;
        m
    }
}

struct Load {
    poll: Poll,
    events: Events,
    addr: SocketAddr,
    clients: Vec<Client>,
    scratch: Vec<u8>,
    t0: Instant,
    pending: VecDeque<usize>,
    opening: usize,
    meter: Meter,
    /// Fan-out senders keep `WINDOW` messages in flight.
    window_active: bool,
    /// (next send time in ns since t0, client) for scheduled senders.
    schedule: BinaryHeap<std::cmp::Reverse<(u64, usize)>>,
    period_ns: u64,
    closed_early: usize,
    rng: u64,
}

impl Load {
    fn new(addr: SocketAddr) -> io::Result<Load> {
        Ok(Load {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            addr,
            clients: Vec::new(),
            scratch: vec![0; 256 * 1024],
            t0: Instant::now(),
            pending: VecDeque::new(),
            opening: 0,
            meter: Meter::default(),
            window_active: false,
            schedule: BinaryHeap::new(),
            period_ns: 0,
            closed_early: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        })
    }

    fn rand(&mut self) -> u64 {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn add_client(&mut self, room: u32, sender: bool) {
        let idx = self.clients.len() as u32;
        let m = self.rand().to_le_bytes();
        self.clients.push(Client {
            idx,
            room,
            st: St::Waiting,
            stream: None,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            cookie: String::new(),
            mask: [m[0], m[1], m[2], m[3]],
            sender,
            in_flight: 0,
        });
        self.pending.push_back(idx as usize);
    }

    fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// Logs in and upgrades every added client, `OPEN_CONCURRENCY` at a time.
    fn open_all(&mut self, limit: Duration) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        while !self.pending.is_empty() || self.opening > 0 {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "opening sockets timed out ({} pending, {} opening)",
                    self.pending.len(),
                    self.opening
                )));
            }
            while self.opening < OPEN_CONCURRENCY {
                let Some(i) = self.pending.pop_front() else {
                    break;
                };
                self.start(i, St::LoginConnect)?;
                self.opening += 1;
            }
            self.turn(Some(Duration::from_millis(50)))?;
        }
        let failed = self.clients.iter().filter(|c| c.st != St::Open).count();
        if failed > 0 {
            return Err(io::Error::other(format!(
                "{failed} clients could not log in and upgrade"
            )));
        }
        Ok(())
    }

    /// Connects client `i` for its login or its WebSocket.
    fn start(&mut self, i: usize, st: St) -> io::Result<()> {
        let mut stream = TcpStream::connect(self.addr)?;
        self.poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let c = &mut self.clients[i];
        c.stream = Some(stream);
        c.st = st;
        c.inbuf.clear();
        Ok(())
    }

    fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= end {
                return;
            }
            let mut timeout = end - now;
            if let Some(std::cmp::Reverse((at, _))) = self.schedule.peek() {
                let due = Duration::from_nanos(at.saturating_sub(self.now_ns()));
                timeout = timeout.min(due);
            }
            if let Err(e) = self.turn(Some(timeout)) {
                eprintln!("e2e: poll failed: {e}");
                return;
            }
        }
    }

    fn turn(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let ready: Vec<(usize, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token().0,
                    e.is_readable() || e.is_read_closed() || e.is_error(),
                    e.is_writable(),
                )
            })
            .collect();
        for (i, readable, writable) in ready {
            self.on_event(i, readable, writable);
        }
        self.send_scheduled();
        Ok(())
    }

    fn on_event(&mut self, i: usize, readable: bool, writable: bool) {
        match self.clients[i].st {
            St::LoginConnect | St::WsConnect if writable => self.on_connected(i),
            St::LoginResponse | St::WsResponse if readable => self.read_http(i),
            St::Open => {
                if writable {
                    self.flush(i);
                }
                if readable {
                    self.read_frames(i);
                }
            }
            _ => {}
        }
    }

    fn fail(&mut self, i: usize, why: &str) {
        let c = &mut self.clients[i];
        if c.st == St::Closed {
            return;
        }
        if c.st != St::Open {
            self.opening -= 1;
        } else {
            self.closed_early += 1;
        }
        if self.closed_early + self.opening < 3 {
            eprintln!("e2e: client {} ({:?}): {why}", c.idx, c.st);
        }
        c.st = St::Closed;
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
    }

    fn on_connected(&mut self, i: usize) {
        let port = self.addr.port();
        let c = &mut self.clients[i];
        let stream = c.stream.as_mut().expect("stream");
        if let Ok(Some(e)) | Err(e) = stream.take_error() {
            return self.fail(i, &format!("connect: {e}"));
        }
        if stream.peer_addr().is_err() {
            return; // not connected yet (a spurious event)
        }
        let _ = stream.set_nodelay(true);
        let request = if c.st == St::LoginConnect {
            let body = format!("user=u{:05}&room={}", c.idx, c.room);
            c.st = St::LoginResponse;
            format!(
                "POST /login?room={room} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len(),
                room = c.room,
            )
        } else {
            c.st = St::WsResponse;
            format!(
                "GET /rooms/{room}/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n",
                room = c.room,
                cookie = c.cookie,
            )
        };
        // A fresh socket's send buffer takes a few hundred bytes at once.
        match stream.write(request.as_bytes()) {
            Ok(n) if n == request.len() => self.read_http(i),
            Ok(_) => self.fail(i, "short write of a request"),
            Err(e) => self.fail(i, &format!("write: {e}")),
        }
    }

    /// Reads a login response (until the server closes) or an upgrade
    /// response (until its head is complete).
    fn read_http(&mut self, i: usize) {
        let mut eof = false;
        {
            let c = &mut self.clients[i];
            let Some(stream) = c.stream.as_mut() else {
                return;
            };
            loop {
                match stream.read(&mut self.scratch) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => c.inbuf.extend_from_slice(&self.scratch[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                        eof = true;
                        break;
                    }
                    Err(e) => return self.fail(i, &format!("read: {e}")),
                }
            }
        }
        let c = &mut self.clients[i];
        let Some(head_end) = find(&c.inbuf, b"\r\n\r\n").map(|p| p + 4) else {
            if eof {
                self.fail(i, "closed before a response");
            }
            return;
        };
        let status = std::str::from_utf8(c.inbuf.get(9..12).unwrap_or(b""))
            .unwrap_or("")
            .to_string();
        if c.st == St::LoginResponse {
            if !eof {
                return; // the server closes after the response
            }
            if status != "303" {
                let text = String::from_utf8_lossy(&c.inbuf).into_owned();
                return self.fail(i, &format!("login answered {text:?}"));
            }
            let head = String::from_utf8_lossy(&c.inbuf[..head_end]).into_owned();
            let cookie = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("set-cookie")
                    .then(|| value.trim().split(';').next().unwrap_or("").to_string())
            });
            let Some(cookie) = cookie else {
                return self.fail(i, "login set no cookie");
            };
            c.cookie = cookie;
            if let Some(mut s) = c.stream.take() {
                let _ = self.poll.registry().deregister(&mut s);
            }
            if let Err(e) = self.start(i, St::WsConnect) {
                self.fail(i, &format!("connect: {e}"));
            }
            return;
        }
        if status != "101" {
            let text = String::from_utf8_lossy(&c.inbuf).into_owned();
            return self.fail(i, &format!("upgrade answered {text:?}"));
        }
        c.inbuf.drain(..head_end);
        c.st = St::Open;
        self.opening -= 1;
        // Frames that came with the response.
        let mut rest = std::mem::take(&mut c.inbuf);
        let used = handle_frames(c, &rest, &mut self.meter, 0);
        rest.drain(..used);
        c.inbuf = rest;
        if eof {
            self.fail(i, "closed after the upgrade");
        } else {
            self.read_frames(i);
        }
    }

    fn read_frames(&mut self, i: usize) {
        let Load {
            clients,
            scratch,
            meter,
            t0,
            ..
        } = self;
        let c = &mut clients[i];
        let mut closed = None;
        loop {
            let Some(stream) = c.stream.as_mut() else {
                return;
            };
            match stream.read(scratch) {
                Ok(0) => {
                    closed = Some("server closed the socket".to_string());
                    break;
                }
                Ok(n) => {
                    let now_ns = if meter.latency.is_some() {
                        t0.elapsed().as_nanos() as u64
                    } else {
                        0
                    };
                    if c.inbuf.is_empty() {
                        let used = handle_frames(c, &scratch[..n], meter, now_ns);
                        c.inbuf.extend_from_slice(&scratch[used..n]);
                    } else {
                        c.inbuf.extend_from_slice(&scratch[..n]);
                        let buf = std::mem::take(&mut c.inbuf);
                        let used = handle_frames(c, &buf, meter, now_ns);
                        c.inbuf = buf;
                        c.inbuf.drain(..used);
                    }
                    if c.st == St::Closed {
                        closed = Some("server sent a close frame".into());
                        c.st = St::Open;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    closed = Some(format!("read: {e}"));
                    break;
                }
            }
        }
        if let Some(why) = closed {
            return self.fail(i, &why);
        }
        if self.window_active {
            self.refill(i);
        } else {
            self.flush(i);
        }
    }

    /// Tops a fan-out sender up to `WINDOW` messages in flight.
    fn refill(&mut self, i: usize) {
        let now = self.now_ns();
        let c = &mut self.clients[i];
        if c.sender && c.st == St::Open {
            while c.in_flight < WINDOW {
                push_message(c, now);
            }
        }
        self.flush(i);
    }

    fn schedule_all(&mut self, period: Duration) {
        self.period_ns = period.as_nanos() as u64;
        let now = self.now_ns();
        for i in 0..self.clients.len() {
            let at = now + self.rand() % self.period_ns;
            self.schedule.push(std::cmp::Reverse((at, i)));
        }
    }

    fn stop_schedule(&mut self) {
        self.schedule.clear();
    }

    fn send_scheduled(&mut self) {
        let now = self.now_ns();
        while let Some(&std::cmp::Reverse((at, i))) = self.schedule.peek() {
            if at > now {
                break;
            }
            self.schedule.pop();
            let sent_at = self.now_ns();
            let c = &mut self.clients[i];
            if c.st == St::Open {
                push_message(c, sent_at);
                self.flush(i);
            }
            self.schedule
                .push(std::cmp::Reverse((at + self.period_ns, i)));
        }
    }

    fn flush(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let Some(stream) = c.stream.as_mut() else {
            return;
        };
        while !c.outbuf.is_empty() {
            match stream.write(&c.outbuf) {
                Ok(n) => {
                    c.outbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(i, &format!("write: {e}")),
            }
        }
    }

    fn check_closed(&self) -> io::Result<()> {
        if self.closed_early > 0 {
            return Err(io::Error::other(format!(
                "{} sockets closed during the run",
                self.closed_early
            )));
        }
        Ok(())
    }
}

/// Appends one masked text frame carrying `sender:time:` and padding.
fn push_message(c: &mut Client, now_ns: u64) {
    let mut text = [b'x'; TEXT_LEN];
    let mark = format!("{:05}:{:016x}:", c.idx, now_ns);
    text[..mark.len()].copy_from_slice(mark.as_bytes());
    c.outbuf.push(0x81);
    c.outbuf.push(0x80 | TEXT_LEN as u8);
    c.outbuf.extend_from_slice(&c.mask);
    for (k, b) in text.iter().enumerate() {
        c.outbuf.push(b ^ c.mask[k % 4]);
    }
    c.in_flight += 1;
}

/// Handles the whole frames at the start of `buf`; returns the bytes used.
fn handle_frames(c: &mut Client, buf: &[u8], m: &mut Meter, now_ns: u64) -> usize {
    let mut pos = 0;
    loop {
        let b = &buf[pos..];
        if b.len() < 2 {
            return pos;
        }
        let opcode = b[0] & 0x0F;
        let (len, hlen) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")) as usize,
                10,
            ),
            126 | 127 => return pos,
            n => (n as usize, 2),
        };
        if b.len() < hlen + len {
            return pos;
        }
        let payload = &b[hlen..hlen + len];
        pos += hlen + len;
        match opcode {
            1 if payload.starts_with(b"{\"type\":\"message\"") => on_message(c, payload, m, now_ns),
            9 => {
                // Ping → pong with the same payload (masked).
                c.outbuf.push(0x8A);
                c.outbuf.push(0x80 | payload.len() as u8);
                c.outbuf.extend_from_slice(&c.mask);
                for (k, x) in payload.iter().enumerate() {
                    c.outbuf.push(x ^ c.mask[k % 4]);
                }
            }
            8 => {
                c.st = St::Closed;
                return pos;
            }
            _ => {}
        }
    }
}

fn on_message(c: &mut Client, payload: &[u8], m: &mut Meter, now_ns: u64) {
    if m.counting {
        m.deliveries += 1;
    }
    if !c.sender && m.latency.is_none() {
        return;
    }
    // The text starts with "SSSSS:TTTTTTTTTTTTTTTT:" (sender, send time).
    let Some(at) = find(&payload[20..], b"\"text\":\"").map(|p| p + 28) else {
        return;
    };
    let Some(mark) = payload.get(at..at + 23) else {
        return;
    };
    let Some(sender) = std::str::from_utf8(&mark[..5])
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
    else {
        return;
    };
    if sender == c.idx {
        c.in_flight = c.in_flight.saturating_sub(1);
        if m.counting {
            m.own += 1;
        }
    }
    if let Some(h) = m.latency.as_mut()
        && let Some(sent) = std::str::from_utf8(&mark[6..22])
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
    {
        let us = now_ns.saturating_sub(sent) / 1000;
        let _ = h.record(us.max(1));
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ----- the peer: tokio + tokio-tungstenite ---------------------------------

mod peer {
    //! An idiomatic broadcast chat server on a current-thread tokio runtime:
    //! `POST /login` gives a cookie, `GET /rooms/{n}/ws` with it opens a
    //! tokio-tungstenite WebSocket; one `broadcast` channel per room; each
    //! socket has a reader (chat text → JSON event → channel) and a writer
    //! task (channel → socket, feeding all queued messages, one flush).

    use std::cell::{Cell, RefCell};
    use std::collections::{HashMap, HashSet};
    use std::rc::Rc;

    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
    use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
    use tokio_tungstenite::tungstenite::http::StatusCode;
    use tokio_tungstenite::tungstenite::Message;

    struct Room {
        tx: broadcast::Sender<Message>,
        seq: Cell<u64>,
        users: RefCell<HashSet<String>>,
    }

    #[derive(Default)]
    struct State {
        sessions: HashMap<String, (u32, String)>,
        rooms: HashMap<u32, Rc<Room>>,
        next_token: u64,
    }

    type Shared = Rc<RefCell<State>>;

    pub fn main() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            println!(
                "peer listening on http://{}",
                listener.local_addr().expect("addr")
            );
            let state: Shared = Rc::default();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::task::spawn_local(connection(stream, state.clone()));
            }
        });
    }

    async fn connection(stream: TcpStream, state: Shared) {
        let mut first = [0u8; 4];
        loop {
            match stream.peek(&mut first).await {
                Ok(0) | Err(_) => return,
                Ok(4) => break,
                Ok(_) => tokio::task::yield_now().await,
            }
        }
        if &first == b"POST" {
            login(stream, state).await;
        } else {
            socket(stream, state).await;
        }
    }

    async fn login(mut stream: TcpStream, state: Shared) {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        let (head_len, body_len) = loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let len = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| {
                            std::str::from_utf8(h.value)
                                .ok()?
                                .trim()
                                .parse::<usize>()
                                .ok()
                        })
                        .unwrap_or(0);
                    if buf.len() >= head_len + len {
                        break (head_len, len);
                    }
                }
                Ok(httparse::Status::Partial) => {}
                Err(_) => return,
            }
        };
        let body = String::from_utf8_lossy(&buf[head_len..head_len + body_len]).into_owned();
        let field = |name: &str| {
            body.split('&').find_map(|kv| {
                kv.split_once('=')
                    .filter(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            })
        };
        let user = field("user").unwrap_or_default();
        let room = field("room").and_then(|r| r.parse::<u32>().ok());
        let response = match room {
            Some(room) if !user.is_empty() => {
                let mut st = state.borrow_mut();
                st.next_token += 1;
                let token = format!("{:016x}{:016x}", st.next_token, rand_u64());
                st.sessions.insert(token.clone(), (room, user));
                format!(
                    "HTTP/1.1 303 See Other\r\nLocation: /rooms/{room}\r\nSet-Cookie: session={token}; HttpOnly; SameSite=Strict; Path=/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            }
            _ => "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_string(),
        };
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        // Wait for the client to close its side.
        let _ = stream.read(&mut chunk).await;
    }

    fn rand_u64() -> u64 {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        u64::from_le_bytes(b)
    }

    fn json_str(s: &str) -> String {
        serde_json::to_string(s).unwrap_or_default()
    }

    fn unix_millis() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    async fn socket(stream: TcpStream, state: Shared) {
        let mut found: Option<(u32, String)> = None;
        // The signature is tungstenite's (`Callback`); its error type is large.
        #[allow(clippy::result_large_err)]
        let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            let refuse = |why: &str| {
                let mut r = ErrorResponse::new(Some(why.to_string()));
                *r.status_mut() = StatusCode::FORBIDDEN;
                r
            };
            let room = req
                .uri()
                .path()
                .strip_prefix("/rooms/")
                .and_then(|r| r.strip_suffix("/ws"))
                .and_then(|r| r.parse::<u32>().ok())
                .ok_or_else(|| refuse("no such room"))?;
            let host = req
                .headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let origin = req
                .headers()
                .get("origin")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if origin.strip_prefix("http://") != Some(host) {
                return Err(refuse("origin"));
            }
            let token = req
                .headers()
                .get_all("cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|kv| kv.trim().strip_prefix("session=").map(str::to_string))
                .ok_or_else(|| refuse("no session"))?;
            let st = state.borrow();
            match st.sessions.get(&token) {
                Some((r, user)) if *r == room => {
                    found = Some((room, user.clone()));
                    Ok(resp)
                }
                _ => Err(refuse("no session for this room")),
            }
        };
        let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
            return;
        };
        let Some((number, user)) = found else { return };
        let room = {
            let mut st = state.borrow_mut();
            st.rooms
                .entry(number)
                .or_insert_with(|| {
                    Rc::new(Room {
                        tx: broadcast::channel(1024).0,
                        seq: Cell::new(0),
                        users: RefCell::default(),
                    })
                })
                .clone()
        };
        room.users.borrow_mut().insert(user.clone());
        let mut rx = room.tx.subscribe();
        let (mut sink, mut stream) = ws.split();
        let users: Vec<String> = room.users.borrow().iter().map(|u| json_str(u)).collect();
        let welcome = format!(
            "{{\"type\":\"welcome\",\"room\":{number},\"user\":{},\"users\":[{}],\"history\":[],\"gap\":false}}",
            json_str(&user),
            users.join(",")
        );
        if sink.send(Message::text(welcome)).await.is_err() {
            return;
        }
        let user_json = json_str(&user);
        let _ = room.tx.send(Message::text(format!(
            "{{\"type\":\"join\",\"user\":{user_json},\"at\":{}}}",
            unix_millis()
        )));
        let writer = tokio::task::spawn_local(async move {
            loop {
                let first = match rx.recv().await {
                    Ok(m) => m,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                if sink.feed(first).await.is_err() {
                    return;
                }
                loop {
                    match rx.try_recv() {
                        Ok(m) => {
                            if sink.feed(m).await.is_err() {
                                return;
                            }
                        }
                        Err(TryRecvError::Lagged(_)) => continue,
                        Err(_) => break,
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
        });
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Text(text) => {
                    let text = text.trim();
                    if text.is_empty() {
                        continue;
                    }
                    let seq = room.seq.get() + 1;
                    room.seq.set(seq);
                    let event = format!(
                        "{{\"type\":\"message\",\"user\":{user_json},\"text\":{},\"at\":{},\"seq\":{seq}}}",
                        json_str(text),
                        unix_millis()
                    );
                    let _ = room.tx.send(Message::text(event));
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        writer.abort();
        room.users.borrow_mut().remove(&user);
        let _ = room.tx.send(Message::text(format!(
            "{{\"type\":\"leave\",\"user\":{user_json},\"at\":{}}}",
            unix_millis()
        )));
        if room.users.borrow().is_empty() {
            state.borrow_mut().rooms.remove(&number);
        }
    }
}

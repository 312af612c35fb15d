//! End-to-end benchmark: wsrooms against a tokio-tungstenite peer, over real
//! sockets on 127.0.0.1, with the real login path (`POST /login` → cookie →
//! `GET /rooms/{room}/ws`). Run it with
//!
//! ```text
//! cargo bench --bench e2e                 # everything (≈100 s)
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
//! - `WSROOMS_BENCH_ROUNDS=N` (default 3): (a) and (b) run N times on
//!   wsrooms in memory and N times with `--data-file`, alternating, and the
//!   table shows each one's median run (by deliveries/s for (a), by p99
//!   for (b)); each round's figure goes to stderr.
//! - `WSROOMS_BENCH_AA=1`: the "--data-file" runs are in memory too, an
//!   A/A check: the ratios it prints are what chance alone gives on this
//!   machine (with 3 rounds, within about 10 % of 1 on a quiet 2-core VM;
//!   single runs of (b) varied from 1.1 to 4 ms p99 there).
//! - `WSROOMS_BENCH_METRICS=DIR`: after each measured run of (a) and (b),
//!   the server's whole `/metrics` page goes to
//!   `DIR/<server>-<workload>-<pid>.txt` (wsrooms only), e.g. to compare
//!   the loop-turn and commit histograms of the two sides.
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
//! - **(a) and (b) with `--data-file`**: the same two loads on wsrooms
//!   keeping its rooms in a data file (a temporary file): deliveries/s and
//!   latency next to the in-memory figures, and the store's own figures
//!   from `/metrics`: commits per second, microseconds per commit, and data
//!   file bytes per million messages (nothing pruned during the run), and
//!   for (a) the server's CPU and the share of the time its poll loop (the
//!   main thread) was on a CPU: below the in-memory share under this
//!   saturating load, the loop was waiting (for the disk, for the store's
//!   helper thread).
//! - **(c) idle**: 10,000 logged-in idle sockets (1,000 rooms × 10). Server
//!   RSS per socket (VmRSS after minus before, / 10,000) and logins+upgrades
//!   per second while opening them.
//! - **(d) at scale** (opt-in: `WSROOMS_BENCH_IDLE=1`, wsrooms only): asks
//!   for 100,000 logged-in idle room sockets (rooms of 10) and takes what
//!   `RLIMIT_NOFILE` leaves both ends (the table says how many), the client
//!   spread over source addresses 127.0.0.2–127.0.0.9 so one address's
//!   ephemeral ports do not run out; the server runs with
//!   `--ping-interval-secs=2` (`WSROOMS_BENCH_PING_SECS` to change it). Per socket: server RSS; kernel memory (the
//!   change of `Slab:` in `/proc/meminfo`, client and server ends together,
//!   and anything else the machine did meanwhile); server CPU per login +
//!   upgrade (user and kernel); server CPU per ping round (server CPU over
//!   three ping intervals divided by the pings the client answered: the
//!   same per round at any interval, so at the 30 s default an idle socket
//!   costs a fifteenth of the 2 s rate per second). Then (b)'s workload for
//!   1,000 more users among them: p50/p99/p99.9 (the idle sockets' pings go
//!   on).
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
//!
//! This file holds the command line and the three workloads; `servers` the
//! processes under test and their CPU meters, `load` the load client, `peer`
//! the tokio-tungstenite server, and `report` the table.

mod load;
mod peer;
mod report;
mod scale;
mod servers;

use std::io;
use std::time::Duration;

use load::Load;
use report::print_table;
use scale::{Scale, scale};
use servers::{Cpu, CpuMeter, Kind, Server, Setup, StoreFigures};

/// Own messages a fan-out sender may have un-echoed.
const WINDOW: u32 = 8;
/// Bytes of chat text per message.
const TEXT_LEN: usize = 64;
/// Logins in progress at once while opening sockets.
pub(crate) const OPEN_CONCURRENCY: usize = 256;
pub(crate) const MEASURE: Duration = Duration::from_secs(5);
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
    let workloads = ["fanout", "rooms", "idle", "scale"];
    let scale_wanted = std::env::var("WSROOMS_BENCH_IDLE").is_ok_and(|v| v == "1");
    let servers = ["wsrooms", "wsrooms-data-file", "peer"];

    let setup = Setup::new();
    setup.print_notes();

    let mut results: Vec<(Kind, Results)> = Vec::new();
    // In memory against a data file: (a) and (b) in interleaved rounds.
    let paired =
        want(Kind::Wsrooms.name(), &servers) && want(Kind::WsroomsDataFile.name(), &servers);
    let mut first = Results::default();
    if paired {
        let rounds = rounds();
        if want("fanout", &workloads) {
            let (memory, file) = in_rounds(
                rounds,
                "fan-out",
                |kind| fanout(&setup, kind),
                |f| f.deliveries,
            );
            first.fanout = memory;
            first.fanout_data_file = file;
        }
        if want("rooms", &workloads) {
            let (memory, file) =
                in_rounds(rounds, "rooms", |kind| rooms(&setup, kind), |r| r.p99_us);
            first.rooms = memory;
            first.rooms_data_file = file;
        }
    }
    for kind in [Kind::Wsrooms, Kind::WsroomsDataFile, Kind::Peer] {
        if !want(kind.name(), &servers) || (paired && kind == Kind::WsroomsDataFile) {
            continue;
        }
        let mut r = Results::default();
        if kind == Kind::WsroomsDataFile {
            // Shown in the wsrooms column, next to the in-memory rows.
            if want("fanout", &workloads) {
                r.fanout_data_file = run_logged(kind, "fan-out", || fanout(&setup, kind));
            }
            if want("rooms", &workloads) {
                r.rooms_data_file = run_logged(kind, "rooms", || rooms(&setup, kind));
            }
            match results.iter_mut().find(|(k, _)| *k == Kind::Wsrooms) {
                Some((_, w)) => {
                    w.fanout_data_file = r.fanout_data_file;
                    w.rooms_data_file = r.rooms_data_file;
                }
                None => results.push((Kind::Wsrooms, r)),
            }
            continue;
        }
        if kind == Kind::Wsrooms && paired {
            r = std::mem::take(&mut first);
        } else {
            if want("fanout", &workloads) {
                r.fanout = run_logged(kind, "fan-out", || fanout(&setup, kind));
            }
            if want("rooms", &workloads) {
                r.rooms = run_logged(kind, "rooms", || rooms(&setup, kind));
            }
        }
        if want("idle", &workloads) {
            r.idle = run_logged(kind, "idle", || idle(&setup, kind));
        }
        if kind == Kind::Wsrooms && want("scale", &workloads) {
            if scale_wanted {
                r.scale = run_logged(kind, "(d) at scale", || scale(&setup, kind));
            } else {
                eprintln!("e2e: (d) at scale skipped: set WSROOMS_BENCH_IDLE=1");
            }
        }
        results.push((kind, r));
    }
    print_table(&setup, &results);
}

/// Rounds of the in-memory against data-file comparison
/// (`WSROOMS_BENCH_ROUNDS`, default 3).
fn rounds() -> usize {
    std::env::var("WSROOMS_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1)
}

/// Runs a workload `rounds` times on wsrooms in memory and with a data
/// file, alternating (memory, file, memory, file, …), and keeps each one's
/// median run by `key`. On a shared machine the figures of one run drift
/// by a factor of two or more within minutes; alternating exposes both to
/// the same drift, and the median drops a run that met a burst of it.
/// Each round's figures go to stderr.
fn in_rounds<T>(
    rounds: usize,
    what: &str,
    run: impl Fn(Kind) -> io::Result<T>,
    key: impl Fn(&T) -> u64,
) -> (Option<T>, Option<T>) {
    let (mut memory, mut file) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        for (kind, runs) in [
            (Kind::Wsrooms, &mut memory),
            (Kind::WsroomsDataFile, &mut file),
        ] {
            let label = format!("{what} (round {round} of {rounds})");
            if let Some(r) = run_logged(kind, &label, || run(kind)) {
                eprintln!("e2e: {} {label}: {}", kind.name(), key(&r));
                runs.push(r);
            }
        }
    }
    (median_by(memory, &key), median_by(file, &key))
}

/// The run in the middle by `key` (of an even count, the upper middle).
fn median_by<T>(mut runs: Vec<T>, key: impl Fn(&T) -> u64) -> Option<T> {
    runs.sort_by_key(|r| key(r));
    let middle = runs.len() / 2;
    runs.into_iter().nth(middle)
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

// ----- workloads -----------------------------------------------------------

#[derive(Default)]
struct Results {
    fanout: Option<Fanout>,
    rooms: Option<Rooms>,
    idle: Option<Idle>,
    /// (a) and (b) on wsrooms with `--data-file`.
    fanout_data_file: Option<Fanout>,
    rooms_data_file: Option<Rooms>,
    /// (d): idle sockets up to the open-files limit (wsrooms).
    scale: Option<Scale>,
}

struct Fanout {
    deliveries: u64,
    sent: u64,
    cpu: Cpu,
    /// With `--data-file`: the store's figures over the measured time.
    store: Option<StoreFigures>,
}

pub(crate) struct Rooms {
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    deliveries: u64,
    cpu: Cpu,
    store: Option<StoreFigures>,
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
    let figures = store_figures(&server, kind);
    let meter = CpuMeter::start(&server);
    load.run_for(MEASURE);
    let cpu = meter.stop(&server);
    let store = figures.map(|start| store_figures(&server, kind).unwrap_or(start).since(start));
    server.save_metrics("fanout");
    let m = load.meter.take();
    load.window_active = false;
    load.check_closed()?;
    Ok(Fanout {
        deliveries: m.deliveries,
        sent: m.own,
        cpu,
        store,
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
    let figures = store_figures(&server, kind);
    let meter = CpuMeter::start(&server);
    load.run_for(MEASURE);
    let cpu = meter.stop(&server);
    let store = figures.map(|start| store_figures(&server, kind).unwrap_or(start).since(start));
    server.save_metrics("rooms");
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
        store,
    })
}

/// The store's figures of a wsrooms with `--data-file` (else `None`).
fn store_figures(server: &Server, kind: Kind) -> Option<StoreFigures> {
    (kind == Kind::WsroomsDataFile).then(|| server.store_figures().unwrap_or_default())
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

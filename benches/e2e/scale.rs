//! (d) at scale (opt-in, `WSROOMS_BENCH_IDLE=1`): as many logged-in idle
//! room sockets as the open-files limit lets both ends hold, then 1,000
//! active users chatting among them. What each idle socket costs: server
//! memory, kernel memory, server CPU for its login + upgrade, server CPU
//! per ping round; and the (b) workload's latency with them all present.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use crate::load::Load;
use crate::servers::{Cpu, CpuMeter, Kind, Server, Setup, slab_kib};
use crate::{MEASURE, OPEN_CONCURRENCY, Rooms};

/// What (d) asks for; the open-files limit decides what it gets.
pub(crate) const ASKED: usize = 100_000;
/// Users sending 5 messages/s each, in rooms of 10 of their own.
const ACTIVE: usize = 1_000;
/// The short ping interval the ping rounds are measured with
/// (`WSROOMS_BENCH_PING_SECS`, default 2).
pub(crate) fn ping_secs() -> u64 {
    std::env::var("WSROOMS_BENCH_PING_SECS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&s| s > 0)
        .unwrap_or(2)
}
/// Ping intervals the ping cost is measured over.
const PING_ROUNDS: u64 = 3;
/// Descriptors each process keeps apart from the sockets: logins in
/// flight, the server's listener, poll, store, logger, spares.
const SPARE_FDS: u64 = 244;

pub(crate) struct Scale {
    /// Idle room sockets held (rooms of 10).
    pub(crate) idle: usize,
    pub(crate) rss_growth_kib: u64,
    /// Change of the kernel's `Slab:` (client and server ends together).
    pub(crate) slab_growth_kib: u64,
    /// Server CPU (ns) and user/kernel ticks while logging in and
    /// upgrading the idle sockets.
    pub(crate) login_cpu_ns: u64,
    pub(crate) login_user_ticks: u64,
    pub(crate) login_system_ticks: u64,
    pub(crate) opening: Cpu,
    /// Server CPU (ns) over `PING_ROUNDS` ping intervals, and the pings
    /// the client answered in that time.
    pub(crate) ping_cpu_ns: u64,
    pub(crate) pings: u64,
    pub(crate) ping_wall: f64,
    /// The (b) workload among the idle sockets.
    pub(crate) active: Rooms,
}

/// How many sockets fit: `ASKED`, or what the open-files limit leaves
/// each end (one descriptor per socket on each side), in whole rooms.
pub(crate) fn fit(nofile: u64) -> usize {
    let fit = nofile.saturating_sub(OPEN_CONCURRENCY as u64 + SPARE_FDS) as usize;
    ASKED.min(fit) / 10 * 10
}

pub(crate) fn scale(setup: &Setup, kind: Kind) -> io::Result<Scale> {
    let total = fit(setup.nofile);
    if total <= ACTIVE {
        return Err(io::Error::other(format!(
            "RLIMIT_NOFILE {} leaves room for {total} sockets",
            setup.nofile
        )));
    }
    let idle = total - ACTIVE;
    let ping = ping_secs();
    let extra = [format!("--ping-interval-secs={ping}")];
    let server = Server::start_with(setup, kind, "scale", &extra)?;
    let mut load = Load::new(server.addr)?;
    // 127.0.0.2–127.0.0.9: eight times the ephemeral ports of one address.
    load.spread_sources(
        (2..=9)
            .map(|d| IpAddr::V4(Ipv4Addr::new(127, 0, 0, d)))
            .collect(),
    );
    for i in 0..idle as u32 {
        load.add_client(1 + i / 10, false);
    }
    std::thread::sleep(Duration::from_millis(200));
    let (rss0, slab0) = (server.rss_kib(), slab_kib());
    let (cpu0, (user0, sys0)) = (server.cpu_ns(), server.user_system_ticks());
    let meter = CpuMeter::start(&server);
    load.open_all(Duration::from_secs(180))?;
    let opening = meter.stop(&server);
    let (cpu1, (user1, sys1)) = (server.cpu_ns(), server.user_system_ticks());
    load.run_for(Duration::from_millis(1000));
    load.check_closed()?;
    let (rss1, slab1) = (server.rss_kib(), slab_kib());

    // Ping rounds: nothing but keep-alive for a few intervals.
    let (pings0, ping_cpu0, at) = (load.pings(), server.cpu_ns(), Instant::now());
    load.run_for(Duration::from_secs(ping * PING_ROUNDS));
    let (pings, ping_cpu_ns) = (load.pings() - pings0, server.cpu_ns() - ping_cpu0);
    let ping_wall = at.elapsed().as_secs_f64();
    load.check_closed()?;

    let active = chat_among(&server, &mut load, idle)?;
    Ok(Scale {
        idle,
        rss_growth_kib: rss1.saturating_sub(rss0),
        slab_growth_kib: slab1.saturating_sub(slab0),
        login_cpu_ns: cpu1 - cpu0,
        login_user_ticks: user1 - user0,
        login_system_ticks: sys1 - sys0,
        opening,
        ping_cpu_ns,
        pings,
        ping_wall,
        active,
    })
}

/// The (b) workload (rooms of 10, 5 messages/s each) for `ACTIVE` more
/// users, next to the idle ones (whose pings go on).
fn chat_among(server: &Server, load: &mut Load, idle: usize) -> io::Result<Rooms> {
    let first_room = 1 + idle as u32 / 10;
    for i in 0..ACTIVE as u32 {
        load.add_client(first_room + i / 10, false);
    }
    load.open_all(Duration::from_secs(60))?;
    load.run_for(Duration::from_millis(300));
    load.schedule_from(idle, Duration::from_millis(200));
    load.run_for(Duration::from_secs(1));
    load.meter.reset(true);
    let meter = CpuMeter::start(server);
    load.run_for(MEASURE);
    let cpu = meter.stop(server);
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
        store: None,
    })
}

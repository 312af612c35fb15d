//! The table printed at the end: one row per figure, one column per
//! server, and the target each wsrooms figure is checked against.

use crate::scale::{Scale, ping_secs};
use crate::servers::{Cpu, Kind, Setup, StoreFigures};
use crate::{Fanout, Idle, Results, Rooms};

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
    fn d(r: &Results, f: impl Fn(&Scale) -> f64) -> Option<f64> {
        r.scale.as_ref().map(f)
    }
    fn ad(r: &Results, f: impl Fn(&Fanout) -> f64) -> Option<f64> {
        r.fanout_data_file.as_ref().map(f)
    }
    fn bd(r: &Results, f: impl Fn(&Rooms) -> f64) -> Option<f64> {
        r.rooms_data_file.as_ref().map(f)
    }
    fn commits_per_s(s: Option<StoreFigures>, wall: f64) -> f64 {
        s.map_or(0.0, |s| s.commits as f64 / wall)
    }
    fn us_per_commit(s: Option<StoreFigures>) -> f64 {
        s.map_or(0.0, |s| s.commit_us as f64 / s.commits.max(1) as f64)
    }
    fn checkpoints_per_s(s: Option<StoreFigures>, wall: f64) -> f64 {
        s.map_or(0.0, |s| s.checkpoints as f64 / wall)
    }
    fn us_per_checkpoint(s: Option<StoreFigures>) -> f64 {
        s.map_or(0.0, |s| {
            s.checkpoint_us as f64 / s.checkpoints.max(1) as f64
        })
    }
    fn loop_stall_percent(s: Option<StoreFigures>, wall: f64) -> f64 {
        s.map_or(0.0, |s| s.loop_checkpoint_us as f64 / 1e4 / wall.max(1e-9))
    }
    fn bytes_per_million(s: Option<StoreFigures>, messages: u64) -> f64 {
        s.map_or(0.0, |s| {
            s.file_bytes as f64 / (messages.max(1) as f64 / 1e6)
        })
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
        row("(a) poll loop on a CPU %", 0, |r| {
            a(r, |f| 100.0 * f.cpu.server_loop)
        }),
        row("(a) load client CPU %", 0, |r| {
            a(r, |f| 100.0 * f.cpu.load / f.cpu.wall)
        }),
        row("(a) noise: server/client CPU wait %", 0, |r| {
            a(r, |f| 100.0 * f.cpu.server_wait.max(f.cpu.load_wait))
        }),
        row("(a) --data-file: deliveries/s", 0, |r| {
            ad(r, |f| f.deliveries as f64 / f.cpu.wall)
        }),
        row("(a) --data-file: / in memory", 2, |r| {
            let in_memory = a(r, |f| f.deliveries as f64 / f.cpu.wall)?;
            ad(r, |f| f.deliveries as f64 / f.cpu.wall / in_memory)
        })
        .target(">= 0.90", |w, _| w >= 0.90),
        row("(a) --data-file: server CPU %", 0, |r| {
            ad(r, |f| 100.0 * f.cpu.server / f.cpu.wall)
        }),
        row("(a) --data-file: poll loop on a CPU %", 0, |r| {
            ad(r, |f| 100.0 * f.cpu.server_loop)
        }),
        row(
            "(a) --data-file: server CPU s / M deliveries",
            3,
            move |r| ad(r, |f| per_million(&f.cpu, f.deliveries)),
        ),
        row("(a) --data-file: noise: server/client CPU wait %", 0, |r| {
            ad(r, |f| 100.0 * f.cpu.server_wait.max(f.cpu.load_wait))
        }),
        row("(a) --data-file: commits/s", 0, |r| {
            ad(r, |f| commits_per_s(f.store, f.cpu.wall))
        }),
        row("(a) --data-file: us / commit", 1, |r| {
            ad(r, |f| us_per_commit(f.store))
        }),
        row("(a) --data-file: checkpoints/s", 1, |r| {
            ad(r, |f| checkpoints_per_s(f.store, f.cpu.wall))
        }),
        row("(a) --data-file: us / checkpoint", 1, |r| {
            ad(r, |f| us_per_checkpoint(f.store))
        }),
        row("(a) --data-file: loop in its own checkpoints %", 1, |r| {
            ad(r, |f| loop_stall_percent(f.store, f.cpu.wall))
        }),
        row("(a) --data-file: file bytes / M messages", 0, |r| {
            ad(r, |f| {
                bytes_per_million(f.store, f.store.map_or(0, |s| s.messages))
            })
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
        row("(b) --data-file: latency p50 ms", 3, |r| {
            bd(r, |x| x.p50_us as f64 / 1e3)
        }),
        row("(b) --data-file: latency p99 ms", 3, |r| {
            bd(r, |x| x.p99_us as f64 / 1e3)
        })
        .target("<= 2 ms", |w, _| w <= 2.0),
        row("(b) --data-file: p99 / in memory", 2, |r| {
            let in_memory = b(r, |x| x.p99_us as f64)?;
            bd(r, |x| x.p99_us as f64 / in_memory)
        })
        .target("<= 1.50", |w, _| w <= 1.50),
        row("(b) --data-file: latency p99.9 ms", 3, |r| {
            bd(r, |x| x.p999_us as f64 / 1e3)
        }),
        row("(b) --data-file: latency max ms", 3, |r| {
            bd(r, |x| x.max_us as f64 / 1e3)
        }),
        row("(b) --data-file: deliveries/s", 0, |r| {
            bd(r, |x| x.deliveries as f64 / x.cpu.wall)
        }),
        row("(b) --data-file: server CPU %", 1, |r| {
            bd(r, |x| 100.0 * x.cpu.server / x.cpu.wall)
        }),
        row("(b) --data-file: commits/s", 0, |r| {
            bd(r, |x| commits_per_s(x.store, x.cpu.wall))
        }),
        row("(b) --data-file: us / commit", 1, |r| {
            bd(r, |x| us_per_commit(x.store))
        }),
        row("(b) --data-file: checkpoints/s", 1, |r| {
            bd(r, |x| checkpoints_per_s(x.store, x.cpu.wall))
        }),
        row("(b) --data-file: us / checkpoint", 1, |r| {
            bd(r, |x| us_per_checkpoint(x.store))
        }),
        row("(b) --data-file: loop in its own checkpoints %", 1, |r| {
            bd(r, |x| loop_stall_percent(x.store, x.cpu.wall))
        }),
        row("(b) --data-file: file bytes / M messages", 0, |r| {
            bd(r, |x| {
                bytes_per_million(x.store, x.store.map_or(0, |s| s.messages))
            })
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
        row("(d) idle sockets (asked 100,000; RLIMIT_NOFILE)", 0, |r| {
            d(r, |x| x.idle as f64)
        }),
        row("(d) server RSS bytes / idle socket", 0, |r| {
            d(r, |x| x.rss_growth_kib as f64 * 1024.0 / x.idle as f64)
        }),
        row("(d) kernel Slab bytes / socket, both ends", 0, |r| {
            d(r, |x| x.slab_growth_kib as f64 * 1024.0 / x.idle as f64)
        }),
        row("(d) logins+upgrades/s", 0, |r| {
            d(r, |x| x.idle as f64 / x.opening.wall)
        }),
        row("(d) server CPU us / login+upgrade", 1, |r| {
            d(r, |x| x.login_cpu_ns as f64 / 1e3 / x.idle as f64)
        })
        .target("<= 60", |w, _| w <= 60.0),
        row("(d)   of which kernel %", 0, |r| {
            d(r, |x| {
                let all = (x.login_user_ticks + x.login_system_ticks).max(1);
                100.0 * x.login_system_ticks as f64 / all as f64
            })
        }),
        row("(d) load client CPU % while opening", 0, |r| {
            d(r, |x| 100.0 * x.opening.load / x.opening.wall)
        }),
        row("(d) pings answered / idle socket / interval", 2, |r| {
            d(r, |x| {
                let intervals = x.ping_wall / ping_secs() as f64;
                x.pings as f64 / x.idle as f64 / intervals
            })
        }),
        row("(d) server CPU us / socket / ping round", 2, |r| {
            d(r, |x| x.ping_cpu_ns as f64 / 1e3 / x.pings.max(1) as f64)
        })
        .target("<= 10", |w, _| w <= 10.0),
        row("(d) server CPU % for idle sockets at 30 s pings", 3, |r| {
            d(r, |x| {
                let per_round_s = x.ping_cpu_ns as f64 / 1e9 / x.pings.max(1) as f64;
                100.0 * per_round_s * x.idle as f64 / 30.0
            })
        }),
        row("(d) +1,000 active: latency p50 ms", 3, |r| {
            d(r, |x| x.active.p50_us as f64 / 1e3)
        }),
        row("(d) +1,000 active: latency p99 ms", 3, |r| {
            d(r, |x| x.active.p99_us as f64 / 1e3)
        }),
        row("(d) +1,000 active: latency p99.9 ms", 3, |r| {
            d(r, |x| x.active.p999_us as f64 / 1e3)
        }),
        row("(d) +1,000 active: server CPU %", 1, |r| {
            d(r, |x| 100.0 * x.active.cpu.server / x.active.cpu.wall)
        }),
        row("(d) noise: server/client CPU wait % (opening)", 0, |r| {
            d(r, |x| {
                100.0 * x.opening.server_wait.max(x.opening.load_wait)
            })
        }),
    ]
}

pub(crate) fn print_table(setup: &Setup, results: &[(Kind, Results)]) {
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
        "wsrooms e2e bench: server on CPU 0{}, load client on CPU 1{}{}; RLIMIT_NOFILE {} (each process); idle sockets {}{}",
        if setup.pin_server.is_some() {
            ""
        } else {
            " (not pinned)"
        },
        if setup.load_pinned {
            ""
        } else {
            " (not pinned)"
        },
        setup
            .nice
            .map(|n| format!(", both at nice {n}"))
            .unwrap_or_default()
            + &setup
                .rt
                .map(|p| format!(", both SCHED_FIFO {p}"))
                .unwrap_or_default(),
        setup.nofile,
        setup.idle_sockets,
        results
            .iter()
            .find_map(|(_, r)| r.scale.as_ref())
            .map(|x| format!(
                " (c), {} (d) of 100,000 asked: the open-files limit allows no more",
                x.idle
            ))
            .unwrap_or_default(),
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
    println!(
        "noise = share of the time the server or the client waited for its CPU (other programs running);"
    );
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

//! Prometheus' standard process series (`process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_cpu_seconds_total`, `process_start_time_seconds`), read from
//! `/proc` when `/metrics` is scraped, with the names and meanings other
//! exporters give them, so that the usual dashboards work unchanged.
//!
//! The parsers below take the files' text and are tested on samples;
//! [`read`] is the only function that opens files. Where there is no
//! `/proc` (not Linux) it returns `None` and the series are absent.

use std::fmt::Write;

/// One reading of the process.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    /// Resident set size in bytes (`VmRSS`).
    pub resident_bytes: u64,
    /// Virtual memory size in bytes (`vsize`).
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open files; `None` when unlimited.
    pub max_fds: Option<u64>,
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// What `/proc/self/stat` tells: CPU time and start time in clock ticks,
/// virtual memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// User plus system time, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time after boot, in clock ticks.
    pub start_ticks: u64,
    /// Virtual memory size in bytes.
    pub virtual_bytes: u64,
}

/// Parses `/proc/self/stat`. The command name (field 2) is in
/// parentheses and may itself hold spaces and `)`, so the fields are
/// counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After `)`: state is field 3 of the file, so field N is at N - 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
    })
}

/// A `kB` value of `/proc/self/status` (`VmRSS`), in bytes.
pub fn parse_status_kb(text: &str, key: &str) -> Option<u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    let kb: u64 = line.split_whitespace().next()?.parse().ok()?;
    kb.checked_mul(1024)
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("btime "))?;
    line.trim().parse().ok()
}

/// The soft limit on open files from `/proc/self/limits`; `None` when
/// unlimited or absent.
pub fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// `AT_CLKTCK` (the clock ticks per second of `/proc`'s times) from the
/// process's auxiliary vector (`/proc/self/auxv`: pairs of native words,
/// key then value, ending with key 0).
pub fn parse_clock_ticks(auxv: &[u8]) -> Option<u64> {
    const AT_CLKTCK: u64 = 17;
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |b: &[u8]| -> Option<u64> {
        let bytes: [u8; WORD] = b.try_into().ok()?;
        u64::try_from(usize::from_ne_bytes(bytes)).ok()
    };
    for pair in auxv.chunks_exact(2 * WORD) {
        match word(&pair[..WORD])? {
            0 => return None,
            AT_CLKTCK => return word(&pair[WORD..]).filter(|&t| t > 0),
            _ => {}
        }
    }
    None
}

/// CPU seconds and start time (seconds since the epoch) from the
/// readings in ticks (`ticks` per second; 100 when unknown, as on every
/// common Linux).
pub fn seconds(stat: Stat, boot_time: u64, ticks: Option<u64>) -> (f64, f64) {
    let ticks = ticks.unwrap_or(100) as f64;
    let cpu = stat.cpu_ticks as f64 / ticks;
    let start = boot_time as f64 + stat.start_ticks as f64 / ticks;
    (cpu, start)
}

/// Reads the process from `/proc` (Linux only; `None` elsewhere or when
/// a file cannot be read). Costs a few small reads and one directory
/// listing of the open descriptors: done only when `/metrics` is scraped.
pub fn read() -> Option<Process> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let text = |path: &str| std::fs::read_to_string(path).ok();
    let stat = parse_stat(&text("/proc/self/stat")?)?;
    let resident_bytes = parse_status_kb(&text("/proc/self/status")?, "VmRSS")?;
    let boot_time = parse_boot_time(&text("/proc/stat")?)?;
    let ticks = std::fs::read("/proc/self/auxv")
        .ok()
        .and_then(|a| parse_clock_ticks(&a));
    // The listing's own descriptor is among those it counts: not ours to
    // keep, so it is taken off.
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let (cpu_seconds, start_time_seconds) = seconds(stat, boot_time, ticks);
    Some(Process {
        resident_bytes,
        virtual_bytes: stat.virtual_bytes,
        open_fds: open_fds.saturating_sub(1),
        max_fds: text("/proc/self/limits").and_then(|t| parse_max_fds(&t)),
        cpu_seconds,
        start_time_seconds,
    })
}

impl Process {
    /// Appends the series in the text exposition format.
    pub fn render(&self, out: &mut String) {
        let mut one = |name: &str, kind: &str, help: &str, value: String| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        };
        one(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            self.resident_bytes.to_string(),
        );
        one(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            self.virtual_bytes.to_string(),
        );
        one(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            self.open_fds.to_string(),
        );
        if let Some(max) = self.max_fds {
            one(
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                max.to_string(),
            );
        }
        one(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            self.cpu_seconds.to_string(),
        );
        one(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            self.start_time_seconds.to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line, with a command name holding a space and a `)`.
    const STAT: &str = "4242 (ws rooms) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
        250 130 0 0 20 0 1 0 46213 3133440 382 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(
            s,
            Stat {
                cpu_ticks: 380,
                start_ticks: 46213,
                virtual_bytes: 3_133_440
            }
        );
        assert_eq!(parse_stat("4242 (cut"), None);
        assert_eq!(parse_stat("4242 (x) S 1 2"), None, "too few fields");
    }

    #[test]
    fn status_limits_and_boot_time() {
        let status =
            "Name:\twsrooms\nVmPeak:\t  9000 kB\nVmSize:\t    3892 kB\nVmRSS:\t    2144 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(2144 * 1024));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63704                63704                processes \n\
                      Max open files            20000                524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(20000));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_fds(unlimited), None);
        let proc_stat = "cpu  1 2 3\nintr 5\nctxt 99\nbtime 1796592213\nprocesses 7\n";
        assert_eq!(parse_boot_time(proc_stat), Some(1_796_592_213));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }

    fn auxv(pairs: &[(usize, usize)]) -> Vec<u8> {
        pairs
            .iter()
            .flat_map(|&(k, v)| [k.to_ne_bytes(), v.to_ne_bytes()].concat())
            .collect()
    }

    #[test]
    fn clock_ticks_come_from_the_auxiliary_vector() {
        assert_eq!(
            parse_clock_ticks(&auxv(&[(33, 7), (6, 4096), (17, 250), (0, 0)])),
            Some(250)
        );
        assert_eq!(
            parse_clock_ticks(&auxv(&[(6, 4096), (0, 0), (17, 250)])),
            None,
            "ends at 0"
        );
        assert_eq!(parse_clock_ticks(&auxv(&[(17, 0)])), None);
        assert_eq!(parse_clock_ticks(&[1, 2, 3]), None);
    }

    #[test]
    fn cpu_and_start_time_in_seconds() {
        let s = parse_stat(STAT).unwrap();
        let (cpu, start) = seconds(s, 1_796_592_213, Some(100));
        assert_eq!(cpu, 3.8);
        assert_eq!(start, 1_796_592_213.0 + 462.13);
        let (cpu, _) = seconds(s, 0, None);
        assert_eq!(cpu, 3.8, "100 ticks a second when unknown");
    }

    #[test]
    fn this_process_reads_on_linux_and_renders_every_series() {
        let reading = read();
        assert_eq!(reading.is_some(), cfg!(target_os = "linux"), "{reading:?}");
        let Some(p) = reading else { return };
        assert!(p.resident_bytes > 0 && p.virtual_bytes >= p.resident_bytes);
        assert!(p.open_fds >= 3, "stdio at least: {p:?}");
        assert!(p.start_time_seconds > 1.5e9, "{p:?}");
        let mut out = String::new();
        p.render(&mut out);
        for name in [
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_cpu_seconds_total",
            "process_start_time_seconds",
        ] {
            assert!(out.contains(&format!("\n{name} ")), "{name}: {out}");
        }
    }
}

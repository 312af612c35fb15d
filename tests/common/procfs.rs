//! Readings of a process from `/proc`: memory (`status`), CPU time and
//! state (`stat`), the open-files limit (`limits`), and raising that limit
//! with util-linux `prlimit` (no `unsafe` in the tests).

use std::process::Command;
use std::time::Duration;

/// `/proc/{who}/{file}` (`who` is a pid or `self`); `None` when the
/// process is gone.
fn read(who: &str, file: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{who}/{file}")).ok()
}

/// The first whitespace-separated value after `key` on the line of `text`
/// that starts with `key`.
fn value_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
}

/// The fields of `/proc/PID/stat` after `(comm)` (which may itself contain
/// spaces): the process state is field 0 of these, utime and stime 11 and 12.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = read(&pid.to_string(), "stat")?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// A field of `/proc/PID/status` in kB (`VmRSS`, `VmHWM`, `VmData`).
pub fn status_kb(pid: u32, field: &str) -> u64 {
    let text = read(&pid.to_string(), "status").expect("read /proc/PID/status");
    value_after(&text, &format!("{field}:"))
        .expect("field in status")
        .parse()
        .unwrap()
}

/// Clock ticks per second for `/proc/PID/stat` (`getconf CLK_TCK`, else 100).
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU time (user + system) a process has used.
pub fn cpu_time(pid: u32) -> Duration {
    let fields = stat_fields(pid).expect("read /proc/PID/stat");
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

/// Whether a process exists and is not a zombie.
pub fn is_running(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f[0] != "Z")
}

/// The soft limit on open files of this process.
pub fn own_fd_limit() -> u64 {
    let text = read("self", "limits").unwrap();
    value_after(&text, "Max open files")
        .unwrap()
        .parse()
        .unwrap_or(u64::MAX)
}

/// Makes sure this process may open `want` files, raising its soft limit
/// with util-linux `prlimit` if needed. Returns false if that is impossible
/// here.
pub fn ensure_fd_limit(want: u64) -> bool {
    if own_fd_limit() >= want {
        return true;
    }
    let pid = std::process::id().to_string();
    let ok = Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={want}:")])
        .status()
        .is_ok_and(|s| s.success());
    ok && own_fd_limit() >= want
}

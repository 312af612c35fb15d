//! Counters for `/metrics`, in the Prometheus text exposition format.
//! Counting is a field increment (a histogram's observation, a few
//! comparisons); rendering happens only when scraped. Also the standard
//! `process_*` series ([`process`]), the build's version and commit, and
//! how many connections the `--metrics-bind` listener may hold beyond
//! `--max-connections` ([`METRICS_CONNECTIONS`]).

mod histogram;
pub mod process;

pub use histogram::Histogram;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::time::{Duration, Instant};

use crate::build_info;

use crate::ws::close::{self, CloseCode};

/// Everything counted since start.
#[derive(Debug, Default)]
pub struct Metrics {
    /// TCP connections accepted (`wsrooms_connections_accepted_total`).
    pub connections_accepted: u64,
    /// TCP connections refused at `--max-connections` (`wsrooms_connections_refused_total`).
    pub connections_refused: u64,
    /// HTTP requests answered (`wsrooms_http_requests_total`).
    pub http_requests: u64,
    /// Successful logins (`wsrooms_logins_total`), counted once answered
    /// `303` (with a data file: once committed), so never taken back.
    pub logins: u64,
    /// Chat messages received (`wsrooms_messages_in_total`).
    pub messages_in: u64,
    /// Chat messages queued for receivers, one per receiver (`wsrooms_messages_out_total`).
    pub messages_out: u64,
    /// Bytes read from sockets (`wsrooms_bytes_in_total`).
    pub bytes_in: u64,
    /// Bytes written to sockets (`wsrooms_bytes_out_total`).
    pub bytes_out: u64,
    /// Data file transactions committed, one per loop turn that changed
    /// something (`wsrooms_commits_total`).
    pub commits: u64,
    /// The time those commits took in all (`wsrooms_commit_microseconds_total`).
    pub commit_micros: u64,
    /// Write-ahead log checkpoints run after a turn's output
    /// (`wsrooms_checkpoints_total`).
    pub checkpoints: u64,
    /// The time those took in all (`wsrooms_checkpoint_microseconds_total`).
    pub checkpoint_micros: u64,
    /// Of those, the checkpoints the poll loop ran itself, waiting for the
    /// disk between two turns, because the helper thread's never let the
    /// log start again (`wsrooms_loop_checkpoints_total`).
    pub loop_checkpoints: u64,
    /// The time those took in all
    /// (`wsrooms_loop_checkpoint_microseconds_total`).
    pub loop_checkpoint_micros: u64,
    /// Syncs of the data file's log to the disk, by the loop
    /// (`--sync-ms 0`) or by the sync thread (`wsrooms_store_syncs_total`;
    /// checkpoints sync too and are counted apart).
    pub store_syncs: u64,
    /// The time those took in all (`wsrooms_store_sync_microseconds_total`).
    pub store_sync_micros: u64,
    /// Commits that failed (their messages and logins were refused) and
    /// syncs of the log that failed.
    pub persist_errors: u64,
    /// How long loop turns took, from the wake-up to the end of the turn's
    /// work (`wsrooms_loop_turn_seconds`).
    pub loop_turns: Histogram,
    /// How long commits took (`wsrooms_commit_seconds`).
    pub commit_times: Histogram,
    /// The last reading of the process and when it was taken (see
    /// [`Metrics::process`]).
    process_reading: RefCell<Option<(Instant, process::Process)>>,
    /// Close frames we sent, by code (peer-chosen codes share one label).
    pub closes: BTreeMap<CloseLabel, u64>,
    /// Refused handshakes, logins, per-address connections and scrollback
    /// pages, by reason.
    pub refused: BTreeMap<&'static str, u64>,
}

/// The `code` label of `wsrooms_closes_total`. We echo whatever code a peer
/// closes with, and peers may pick any of 3000–4999: as labels those would
/// let one client mint thousands of series. So only the codes RFC 6455
/// defines (1000–1015) and our own keep their number; the rest are `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CloseLabel {
    /// A code RFC 6455 defines, or the server's own `4000` and `4001`:
    /// labelled by its number.
    Code(CloseCode),
    /// Any code a peer chose from 3000–4999.
    Other,
}

impl CloseLabel {
    /// The label a close frame with `code` is counted under.
    pub fn of(code: CloseCode) -> Self {
        match code {
            1000..=1015 | close::REPLACED | close::REMOVED => CloseLabel::Code(code),
            _ => CloseLabel::Other,
        }
    }
}

impl fmt::Display for CloseLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseLabel::Code(code) => write!(f, "{code}"),
            CloseLabel::Other => f.write_str("other"),
        }
    }
}

/// Values that are read from the server's state at scrape time.
pub struct Gauges {
    /// Open TCP connections (`wsrooms_connections`).
    pub connections: usize,
    /// Open WebSocket connections (`wsrooms_websockets`).
    pub websockets: usize,
    /// Rooms in memory (`wsrooms_rooms`).
    pub rooms: usize,
    /// Users joined to a room by an open socket (`wsrooms_users`).
    pub users: usize,
    /// Sessions, joined or only reserved (`wsrooms_sessions`).
    pub sessions: usize,
    /// Outgoing bytes queued and not yet sent, all connections together (`wsrooms_buffered_bytes`).
    pub buffered_bytes: usize,
    /// Frame bytes held in the rooms' history rings (`wsrooms_history_bytes`).
    pub history_bytes: usize,
    /// Addresses in the per-address limits' table.
    pub peer_addresses: usize,
    /// Bytes of the data file and its write-ahead log (0 without one).
    pub data_file_bytes: u64,
    /// The last commit failed (`/healthz` says `degraded`).
    pub degraded: bool,
    /// The process's memory, files, CPU time and start time (Linux only).
    pub process: Option<process::Process>,
}

/// Connections the `--metrics-bind` listener may hold at once, on top of
/// `--max-connections`: so that `/healthz` and `/metrics` are answered when
/// the main listener is full, and a scraper that opens connections without
/// end cannot take descriptors from the chat. (The server keeps this many
/// descriptors spare below the open-files limit.)
pub const METRICS_CONNECTIONS: usize = 8;

/// May a connection just accepted be kept? The main listener's connections
/// are limited by `--max-connections` (`max`), the metrics listener's by
/// [`METRICS_CONNECTIONS`], each on its own: a full server still answers
/// its health checks. `open` and `open_metrics` count the connections open
/// now, all of them and the metrics listener's.
pub fn admits(via_metrics: bool, open: usize, open_metrics: usize, max: usize) -> bool {
    match via_metrics {
        true => open_metrics < METRICS_CONNECTIONS,
        false => open.saturating_sub(open_metrics) < max,
    }
}

/// How long a reading of the process (`/proc`) is served again before it is
/// taken anew: a flood of `/metrics` requests reads `/proc` once a second.
pub const PROCESS_READING_AGE: Duration = Duration::from_secs(1);

impl Metrics {
    /// The process's reading for a scrape at `now`: the last one if it is
    /// younger than [`PROCESS_READING_AGE`], else a new one from `/proc`.
    pub fn process(&self, now: Instant) -> Option<process::Process> {
        let mut last = self.process_reading.borrow_mut();
        match last.as_ref() {
            Some((at, p)) if now.saturating_duration_since(*at) < PROCESS_READING_AGE => {
                Some(p.clone())
            }
            _ => {
                let p = process::read()?;
                *last = Some((now, p.clone()));
                Some(p)
            }
        }
    }

    /// One loop turn's work took `took`.
    pub fn turn_took(&mut self, took: Duration) {
        self.loop_turns.observe(took);
    }

    /// One commit took `took` (also counted in `commit_micros`).
    pub fn commit_took(&mut self, took: Duration) {
        self.commit_micros += took.as_micros() as u64;
        self.commit_times.observe(took);
    }

    /// Counts one refusal under `reason` (`wsrooms_refused_total`).
    pub fn refuse(&mut self, reason: &'static str) {
        *self.refused.entry(reason).or_default() += 1;
    }

    /// Counts one close frame sent with `code` (`wsrooms_closes_total`).
    pub fn closed(&mut self, code: CloseCode) {
        *self.closes.entry(CloseLabel::of(code)).or_default() += 1;
    }

    /// The text exposition of every series: gauges, counters, then the
    /// labelled counters.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(2048);
        for (name, help, value) in g.series() {
            series(&mut out, name, "gauge", help, value);
        }
        for (name, help, value) in self.counters() {
            series(&mut out, name, "counter", help, value);
        }
        out.push_str("# HELP wsrooms_closes_total WebSocket close frames sent, by code (other: a code a peer chose).\n# TYPE wsrooms_closes_total counter\n");
        for (code, n) in &self.closes {
            // `code` is a `CloseLabel`: a number we know, or "other".
            let _ = writeln!(out, "wsrooms_closes_total{{code=\"{code}\"}} {n}");
        }
        out.push_str("# HELP wsrooms_refused_total Refused handshakes, logins, per-address connections and scrollback pages, by reason.\n# TYPE wsrooms_refused_total counter\n");
        for (reason, n) in &self.refused {
            let _ = writeln!(out, "wsrooms_refused_total{{reason=\"{reason}\"}} {n}");
        }
        self.render_more(&mut out, g);
        out
    }

    /// The histograms, the build and the process.
    fn render_more(&self, out: &mut String, g: &Gauges) {
        self.loop_turns.render(
            out,
            "wsrooms_loop_turn_seconds",
            "Time a turn of the poll loop took, from its wake-up to the end of its work.",
        );
        self.commit_times.render(
            out,
            "wsrooms_commit_seconds",
            "Time a data file commit took (one per loop turn that changed something).",
        );
        let _ = write!(
            out,
            "# HELP wsrooms_build_info The version and commit wsrooms was built from.\n\
             # TYPE wsrooms_build_info gauge\n\
             wsrooms_build_info{{version=\"{}\",commit=\"{}\"}} 1\n",
            build_info::VERSION,
            build_info::COMMIT
        );
        if let Some(process) = &g.process {
            process.render(out);
        }
    }

    /// The unlabelled counters: name, help, value.
    fn counters(&self) -> [(&'static str, &'static str, u64); 17] {
        [
            (
                "wsrooms_connections_accepted_total",
                "TCP connections accepted.",
                self.connections_accepted,
            ),
            (
                "wsrooms_connections_refused_total",
                "TCP connections refused at the limit.",
                self.connections_refused,
            ),
            (
                "wsrooms_http_requests_total",
                "HTTP requests answered.",
                self.http_requests,
            ),
            (
                "wsrooms_logins_total",
                "Successful logins (with a data file: committed ones).",
                self.logins,
            ),
            (
                "wsrooms_messages_in_total",
                "Chat messages received.",
                self.messages_in,
            ),
            (
                "wsrooms_messages_out_total",
                "Chat message deliveries queued (one per receiver).",
                self.messages_out,
            ),
            (
                "wsrooms_bytes_in_total",
                "Bytes read from sockets.",
                self.bytes_in,
            ),
            (
                "wsrooms_bytes_out_total",
                "Bytes written to sockets.",
                self.bytes_out,
            ),
            (
                "wsrooms_commits_total",
                "Data file transactions committed (at most one per loop turn).",
                self.commits,
            ),
            (
                "wsrooms_commit_microseconds_total",
                "Time spent committing to the data file, in microseconds.",
                self.commit_micros,
            ),
            (
                "wsrooms_checkpoints_total",
                "Data file write-ahead log checkpoints (copies into the main file, with syncs).",
                self.checkpoints,
            ),
            (
                "wsrooms_checkpoint_microseconds_total",
                "Time spent in data file checkpoints, in microseconds.",
                self.checkpoint_micros,
            ),
            (
                "wsrooms_loop_checkpoints_total",
                "Of those, checkpoints run on the poll loop (a stall: the helper thread's never caught up).",
                self.loop_checkpoints,
            ),
            (
                "wsrooms_loop_checkpoint_microseconds_total",
                "Time the poll loop spent in its own checkpoints, in microseconds.",
                self.loop_checkpoint_micros,
            ),
            (
                "wsrooms_store_syncs_total",
                "Syncs of the data file's write-ahead log to the disk (besides checkpoints).",
                self.store_syncs,
            ),
            (
                "wsrooms_store_sync_microseconds_total",
                "Time spent syncing the data file's write-ahead log, in microseconds.",
                self.store_sync_micros,
            ),
            (
                "wsrooms_persist_errors_total",
                "Data file commits (their messages and logins were refused) and syncs that failed.",
                self.persist_errors,
            ),
        ]
    }
}

impl Gauges {
    /// Every gauge: name, help, value.
    fn series(&self) -> [(&'static str, &'static str, u64); 10] {
        [
            (
                "wsrooms_connections",
                "Open TCP connections.",
                self.connections as u64,
            ),
            (
                "wsrooms_websockets",
                "Open WebSocket connections.",
                self.websockets as u64,
            ),
            ("wsrooms_rooms", "Rooms in memory.", self.rooms as u64),
            (
                "wsrooms_users",
                "Users joined to a room by an open socket.",
                self.users as u64,
            ),
            (
                "wsrooms_sessions",
                "Sessions (joined or reserved ids).",
                self.sessions as u64,
            ),
            (
                "wsrooms_buffered_bytes",
                "Outgoing bytes queued and not yet sent.",
                self.buffered_bytes as u64,
            ),
            (
                "wsrooms_history_bytes",
                "Bytes of message history held by rooms.",
                self.history_bytes as u64,
            ),
            (
                "wsrooms_peer_addresses",
                "Client addresses tracked by the per-address limits (bounded).",
                self.peer_addresses as u64,
            ),
            (
                "wsrooms_data_file_bytes",
                "Bytes of the data file and its write-ahead log (0 without --data-file).",
                self.data_file_bytes,
            ),
            (
                "wsrooms_degraded",
                "1 while writes to the data file fail (/healthz answers 503 degraded).",
                self.degraded as u64,
            ),
        ]
    }
}

/// One unlabelled series with its `HELP` and `TYPE` lines.
fn series(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges() -> Gauges {
        Gauges {
            connections: 0,
            websockets: 0,
            rooms: 0,
            users: 0,
            sessions: 0,
            buffered_bytes: 0,
            history_bytes: 0,
            peer_addresses: 0,
            data_file_bytes: 0,
            degraded: false,
            process: None,
        }
    }

    fn close_series(m: &Metrics) -> Vec<String> {
        m.render(&gauges())
            .lines()
            .filter(|l| l.starts_with("wsrooms_closes_total{"))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn each_listener_has_its_own_limit() {
        // The main listener full (10 of 10, with 3 metrics connections on top).
        assert!(!admits(false, 13, 3, 10));
        assert!(admits(true, 13, 3, 10), "health checks still answered");
        assert!(admits(false, 12, 3, 10));
        // The metrics listener full: bounded, and the chat unaffected.
        let m = METRICS_CONNECTIONS;
        assert!(!admits(true, m, m, 10));
        assert!(admits(false, m, m, 10));
    }

    #[test]
    fn histograms_build_and_process_are_rendered() {
        let mut m = Metrics::default();
        m.turn_took(Duration::from_micros(70));
        m.commit_took(Duration::from_micros(300));
        assert_eq!(m.commit_micros, 300);
        let mut g = gauges();
        g.process = process::read();
        let text = m.render(&g);
        assert!(
            text.contains("wsrooms_loop_turn_seconds_bucket{le=\"0.0001\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("wsrooms_commit_seconds_count 1\n"), "{text}");
        let build = format!(
            "wsrooms_build_info{{version=\"{}\",commit=\"{}\"}} 1\n",
            build_info::VERSION,
            build_info::COMMIT
        );
        assert!(text.contains(&build), "{text}");
        assert_eq!(
            text.contains("\nprocess_open_fds "),
            cfg!(target_os = "linux"),
            "{text}"
        );
    }

    #[test]
    fn the_process_is_read_at_most_once_a_second() {
        let m = Metrics::default();
        let t0 = Instant::now();
        let first = m.process(t0);
        assert_eq!(first.is_some(), cfg!(target_os = "linux"));
        let Some(first) = first else { return };
        let again = m.process(t0 + Duration::from_millis(999)).unwrap();
        assert_eq!(again, first, "the same reading within the second");
        // (The values may well be the same: when it was taken tells.)
        m.process(t0 + PROCESS_READING_AGE).unwrap();
        let at = m.process_reading.borrow().as_ref().map(|(at, _)| *at);
        assert_eq!(at, Some(t0 + PROCESS_READING_AGE), "taken anew after it");
    }

    #[test]
    fn peer_chosen_close_codes_share_one_label() {
        let mut m = Metrics::default();
        for code in (3000..3500).chain(4002..4502) {
            m.closed(code);
        }
        for code in [1000, 1001, 1002, 1009, 4000, 4001] {
            m.closed(code);
        }
        assert_eq!(
            close_series(&m),
            [
                "wsrooms_closes_total{code=\"1000\"} 1",
                "wsrooms_closes_total{code=\"1001\"} 1",
                "wsrooms_closes_total{code=\"1002\"} 1",
                "wsrooms_closes_total{code=\"1009\"} 1",
                "wsrooms_closes_total{code=\"4000\"} 1",
                "wsrooms_closes_total{code=\"4001\"} 1",
                "wsrooms_closes_total{code=\"other\"} 1000",
            ]
        );
    }
}

//! Counters for `/metrics`, in the Prometheus text exposition format.
//! Counting is a field increment; rendering happens only when scraped.

use std::collections::BTreeMap;
use std::fmt::{self, Write};

use crate::ws::close::{self, CloseCode};

/// Everything counted since start.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub http_requests: u64,
    pub logins: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Close frames we sent, by code (peer-chosen codes share one label).
    pub closes: BTreeMap<CloseLabel, u64>,
    /// Refused handshakes, logins and per-address connections, by reason.
    pub refused: BTreeMap<&'static str, u64>,
}

/// The `code` label of `wsrooms_closes_total`. We echo whatever code a peer
/// closes with, and peers may pick any of 3000–4999: as labels those would
/// let one client mint thousands of series. So only the codes RFC 6455
/// defines (1000–1015) and our own keep their number; the rest are `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CloseLabel {
    Code(CloseCode),
    Other,
}

impl CloseLabel {
    pub fn of(code: CloseCode) -> Self {
        match code {
            1000..=1015 | close::REPLACED => CloseLabel::Code(code),
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
    pub connections: usize,
    pub websockets: usize,
    pub rooms: usize,
    pub users: usize,
    pub sessions: usize,
    pub buffered_bytes: usize,
    pub history_bytes: usize,
    /// Addresses in the per-address limits' table.
    pub peer_addresses: usize,
}

impl Metrics {
    pub fn refuse(&mut self, reason: &'static str) {
        *self.refused.entry(reason).or_default() += 1;
    }

    pub fn closed(&mut self, code: CloseCode) {
        *self.closes.entry(CloseLabel::of(code)).or_default() += 1;
    }

    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(2048);
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        };
        one(
            "wsrooms_connections",
            "gauge",
            "Open TCP connections.",
            g.connections as u64,
        );
        one(
            "wsrooms_websockets",
            "gauge",
            "Open WebSocket connections.",
            g.websockets as u64,
        );
        one("wsrooms_rooms", "gauge", "Rooms in memory.", g.rooms as u64);
        one(
            "wsrooms_users",
            "gauge",
            "Users joined to a room by an open socket.",
            g.users as u64,
        );
        one(
            "wsrooms_sessions",
            "gauge",
            "Sessions (joined or reserved ids).",
            g.sessions as u64,
        );
        one(
            "wsrooms_buffered_bytes",
            "gauge",
            "Outgoing bytes queued and not yet sent.",
            g.buffered_bytes as u64,
        );
        one(
            "wsrooms_history_bytes",
            "gauge",
            "Bytes of message history held by rooms.",
            g.history_bytes as u64,
        );
        one(
            "wsrooms_peer_addresses",
            "gauge",
            "Client addresses tracked by the per-address limits (bounded).",
            g.peer_addresses as u64,
        );
        one(
            "wsrooms_connections_accepted_total",
            "counter",
            "TCP connections accepted.",
            self.connections_accepted,
        );
        one(
            "wsrooms_connections_refused_total",
            "counter",
            "TCP connections refused at the limit.",
            self.connections_refused,
        );
        one(
            "wsrooms_http_requests_total",
            "counter",
            "HTTP requests answered.",
            self.http_requests,
        );
        one(
            "wsrooms_logins_total",
            "counter",
            "Successful logins.",
            self.logins,
        );
        one(
            "wsrooms_messages_in_total",
            "counter",
            "Chat messages received.",
            self.messages_in,
        );
        one(
            "wsrooms_messages_out_total",
            "counter",
            "Chat message deliveries queued (one per receiver).",
            self.messages_out,
        );
        one(
            "wsrooms_bytes_in_total",
            "counter",
            "Bytes read from sockets.",
            self.bytes_in,
        );
        one(
            "wsrooms_bytes_out_total",
            "counter",
            "Bytes written to sockets.",
            self.bytes_out,
        );
        out.push_str("# HELP wsrooms_closes_total WebSocket close frames sent, by code (other: a code a peer chose).\n# TYPE wsrooms_closes_total counter\n");
        for (code, n) in &self.closes {
            // `code` is a `CloseLabel`: a number we know, or "other".
            let _ = writeln!(out, "wsrooms_closes_total{{code=\"{code}\"}} {n}");
        }
        out.push_str("# HELP wsrooms_refused_total Refused handshakes, logins and per-address connections, by reason.\n# TYPE wsrooms_refused_total counter\n");
        for (reason, n) in &self.refused {
            let _ = writeln!(out, "wsrooms_refused_total{{reason=\"{reason}\"}} {n}");
        }
        out
    }
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
    fn peer_chosen_close_codes_share_one_label() {
        let mut m = Metrics::default();
        for code in (3000..3500).chain(4001..4501) {
            m.closed(code);
        }
        for code in [1000, 1001, 1002, 1009, 4000] {
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
                "wsrooms_closes_total{code=\"other\"} 1000",
            ]
        );
    }
}

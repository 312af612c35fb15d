//! Counters for `/metrics`, in the Prometheus text exposition format.
//! Counting is a field increment; rendering happens only when scraped.

use std::collections::BTreeMap;
use std::fmt::Write;

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
    /// Close frames we sent, by code.
    pub closes: BTreeMap<u16, u64>,
    /// Refused handshakes, logins and per-address connections, by reason.
    pub refused: BTreeMap<&'static str, u64>,
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

    pub fn closed(&mut self, code: u16) {
        *self.closes.entry(code).or_default() += 1;
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
        out.push_str("# HELP wsrooms_closes_total WebSocket close frames sent, by code.\n# TYPE wsrooms_closes_total counter\n");
        for (code, n) in &self.closes {
            let _ = writeln!(out, "wsrooms_closes_total{{code=\"{code}\"}} {n}");
        }
        out.push_str("# HELP wsrooms_refused_total Refused handshakes, logins and per-address connections, by reason.\n# TYPE wsrooms_refused_total counter\n");
        for (reason, n) in &self.refused {
            let _ = writeln!(out, "wsrooms_refused_total{{reason=\"{reason}\"}} {n}");
        }
        out
    }
}

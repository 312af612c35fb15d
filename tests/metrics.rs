//! `/metrics` (issue 7): scraped during a small chat, its counters
//! and gauges move by exactly what happened; its text parses with the real
//! Prometheus parser (Python `prometheus_client`), histograms and the
//! standard `process_*` series included; `--metrics-bind` serves it on a
//! separate listener and hides it from the main one, and answers there
//! when the main one is full (issue 20 §5); every series the shipped
//! Grafana dashboard and alert rules use is served.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

/// Runs under `common::harness` (`harness = false` in Cargo.toml), so
/// that a case skipped for a missing tool shows in `cargo test`'s output.
fn main() -> std::process::ExitCode {
    common::harness::run(
        "metrics",
        &[
            (
                "counters_move_by_exactly_what_a_small_chat_did",
                counters_move_by_exactly_what_a_small_chat_did,
            ),
            (
                "metrics_parse_as_prometheus_text_with_help_and_type",
                metrics_parse_as_prometheus_text_with_help_and_type,
            ),
            (
                "metrics_bind_serves_metrics_there_and_hides_them_from_the_main_port",
                metrics_bind_serves_metrics_there_and_hides_them_from_the_main_port,
            ),
            (
                "health_checks_are_answered_on_the_metrics_listener_at_the_connection_limit",
                health_checks_are_answered_on_the_metrics_listener_at_the_connection_limit,
            ),
            (
                "the_shipped_dashboard_and_alerts_use_only_served_series",
                the_shipped_dashboard_and_alerts_use_only_served_series,
            ),
        ],
    )
}

/// How much each sample moved between two scrapes (absent = 0).
fn delta(before: &str, after: &str, key: &str) -> f64 {
    let (b, a) = (samples(before), samples(after));
    a.get(key).copied().unwrap_or(0.0) - b.get(key).copied().unwrap_or(0.0)
}

fn gauge(text: &str, name: &str) -> f64 {
    metric(text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn counters_move_by_exactly_what_a_small_chat_did() {
    let mut config = test_config();
    config.rate_limit = 0.0;
    let addr = start(config);
    let s0 = scrape(addr);
    assert_eq!(gauge(&s0, "wsrooms_websockets"), 0.0);
    assert_eq!(gauge(&s0, "wsrooms_rooms"), 0.0);

    let (mut alice, _) = join(addr, "alice", 4);
    let (mut bob, _) = join(addr, "bob", 4);
    next_of_type(&mut alice, "join");
    let s1 = scrape(addr);
    assert_eq!(delta(&s0, &s1, "wsrooms_logins_total"), 2.0);
    assert_eq!(gauge(&s1, "wsrooms_websockets"), 2.0);
    assert_eq!(gauge(&s1, "wsrooms_users"), 2.0);
    assert_eq!(gauge(&s1, "wsrooms_rooms"), 1.0);
    assert_eq!(gauge(&s1, "wsrooms_sessions"), 2.0);

    // alice sends 5, bob 3; both receive all 8.
    let (n_alice, n_bob) = (5, 3);
    for i in 0..n_alice {
        alice.send(Message::text(format!("a{i}"))).unwrap();
    }
    for i in 0..n_bob {
        bob.send(Message::text(format!("b{i}"))).unwrap();
    }
    // One empty message: ignored, not delivered (but it was received).
    alice.send(Message::text("   ")).unwrap();
    for ws in [&mut alice, &mut bob] {
        for _ in 0..n_alice + n_bob {
            next_of_type(ws, "message");
        }
    }
    let s2 = scrape(addr);
    let sent = (n_alice + n_bob) as f64;
    assert_eq!(delta(&s1, &s2, "wsrooms_messages_in_total"), sent + 1.0);
    assert_eq!(
        delta(&s1, &s2, "wsrooms_messages_out_total"),
        sent * 2.0,
        "every message goes to both users, and nothing else counts"
    );
    assert!(delta(&s1, &s2, "wsrooms_bytes_in_total") >= sent * 8.0);
    assert!(delta(&s1, &s2, "wsrooms_bytes_out_total") >= sent * 2.0 * 40.0);
    assert_eq!(delta(&s1, &s2, "wsrooms_logins_total"), 0.0);

    // bob leaves with a normal close: the server echoes 1000.
    bob.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    loop {
        match bob.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("closing: {e}"),
        }
    }
    next_of_type(&mut alice, "leave");
    let s3 = scrape(addr);
    assert_eq!(delta(&s2, &s3, "wsrooms_closes_total{code=\"1000\"}"), 1.0);
    assert_eq!(gauge(&s3, "wsrooms_websockets"), 1.0);
    assert_eq!(gauge(&s3, "wsrooms_users"), 1.0);
    assert_eq!(
        delta(&s2, &s3, "wsrooms_messages_out_total"),
        0.0,
        "a leave event is not a chat message"
    );

    // A refused handshake (foreign Origin) is counted by reason.
    let cookie = login(addr, "carol", 4);
    let refused = ws_connect_path(
        addr,
        "/rooms/4/ws",
        Some(&cookie),
        Some("http://evil.example"),
    );
    assert!(refused.is_err());
    let s4 = scrape(addr);
    assert_eq!(
        delta(&s3, &s4, "wsrooms_refused_total{reason=\"origin\"}"),
        1.0
    );
    assert_eq!(
        metric_with(&s4, "wsrooms_refused_total", "reason=\"origin\""),
        Some(1.0)
    );
    // Each scrape is an HTTP request too.
    assert!(delta(&s0, &s4, "wsrooms_http_requests_total") >= 9.0);
    assert!(delta(&s0, &s4, "wsrooms_connections_accepted_total") >= 9.0);
}

/// Makes the labelled families non-empty (a refused handshake, a close)
/// in `room`, then scrapes.
fn scrape_with_labels(addr: SocketAddr, room: u32) -> String {
    let (mut ws, _) = join(addr, "dora", room);
    let cookie = login(addr, "eve", room);
    let path = format!("/rooms/{room}/ws");
    assert!(ws_connect_path(addr, &path, Some(&cookie), None).is_err());
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .unwrap();
    while ws.read().is_ok() {}
    scrape(addr)
}

fn metrics_parse_as_prometheus_text_with_help_and_type() {
    let addr = start(test_config());
    let text = scrape_with_labels(addr, 8);
    // Every sample's family has HELP and TYPE lines before it.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        let typed = text
            .lines()
            .any(|l| l.starts_with(&format!("# TYPE {family}")));
        let helped = text
            .lines()
            .any(|l| l.starts_with(&format!("# HELP {family}")));
        assert!(typed && helped, "{name} lacks TYPE or HELP");
    }

    let Some(python) = python(
        "metrics::metrics_parse_as_prometheus_text_with_help_and_type",
        &["prometheus_client"],
    ) else {
        return;
    };
    let out = run_bounded(
        Command::new(&python).arg(repo().join("tests/python/parse_metrics.py")),
        Some(text.as_bytes()),
        TOOL_TIMEOUT,
    );
    assert!(
        out.exited().success(),
        "prometheus_client rejects /metrics: {}\n{text}",
        out.stderr
    );
    let parsed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let families = parsed["families"].as_array().unwrap();
    let family = |name: &str| {
        families
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no family {name} in {parsed}"))
    };
    for gauge in [
        "wsrooms_connections",
        "wsrooms_websockets",
        "wsrooms_rooms",
        "wsrooms_users",
        "wsrooms_buffered_bytes",
    ] {
        assert_eq!(family(gauge)["type"], "gauge", "{gauge}");
    }
    for counter in [
        "wsrooms_logins",
        "wsrooms_messages_in",
        "wsrooms_messages_out",
        "wsrooms_bytes_in",
        "wsrooms_bytes_out",
        "wsrooms_closes",
        "wsrooms_refused",
        "wsrooms_connections_accepted",
    ] {
        let f = family(counter);
        assert_eq!(f["type"], "counter", "{counter}");
        assert!(!f["help"].as_str().unwrap().is_empty(), "{counter}");
    }
    // The parser's values are the ones in the text.
    let logins = &family("wsrooms_logins")["samples"][0];
    assert_eq!(logins["name"], "wsrooms_logins_total");
    assert_eq!(logins["value"], 2.0);
    let closes = family("wsrooms_closes")["samples"].as_array().unwrap();
    assert!(
        closes
            .iter()
            .any(|s| s["labels"]["code"] == "1000" && s["value"] == 1.0),
        "{closes:?}"
    );
    let refused = family("wsrooms_refused")["samples"].as_array().unwrap();
    assert!(
        refused
            .iter()
            .any(|s| s["labels"]["reason"] == "origin" && s["value"] == 1.0),
        "{refused:?}"
    );
    // The latency histograms: cumulative buckets ending in +Inf, _sum, _count.
    for histogram in ["wsrooms_loop_turn_seconds", "wsrooms_commit_seconds"] {
        let f = family(histogram);
        assert_eq!(f["type"], "histogram", "{histogram}");
        let samples = f["samples"].as_array().unwrap();
        let count = samples
            .iter()
            .find(|s| s["name"] == format!("{histogram}_count"))
            .unwrap_or_else(|| panic!("{histogram}_count"))["value"]
            .as_f64()
            .unwrap();
        let inf = samples
            .iter()
            .find(|s| s["labels"]["le"] == "+Inf")
            .unwrap_or_else(|| panic!("{histogram} +Inf"))["value"]
            .as_f64()
            .unwrap();
        assert_eq!(inf, count, "{histogram}");
    }
    let turns = &family("wsrooms_loop_turn_seconds")["samples"];
    assert!(
        turns
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "wsrooms_loop_turn_seconds_count"
                && s["value"].as_f64().unwrap() > 0.0),
        "the server has turned: {turns}"
    );
    let build = &family("wsrooms_build_info")["samples"][0];
    assert_eq!(build["value"], 1.0);
    assert_eq!(
        build["labels"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{build}"
    );
    assert!(
        build["labels"]["commit"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    // The standard process series, with the types other exporters give them.
    for (name, kind) in [
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_cpu_seconds", "counter"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert_eq!(family(name)["type"], kind, "{name}");
    }
    assert!(families.len() >= 26, "{parsed}");
}

/// At `--max-connections` the main listener answers `503`, but the
/// `--metrics-bind` listener has connections of its own, so a health check
/// does not restart a healthy, full server; those are bounded too
/// (`METRICS_CONNECTIONS`), without taking any from the chat.
fn health_checks_are_answered_on_the_metrics_listener_at_the_connection_limit() {
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut config = test_config();
    config.max_connections = 4;
    config.metrics_bind = Some(metrics_addr);
    let addr = start(config);
    let _full: Vec<_> = (0..4).map(|_| tcp(addr)).collect();
    // The main listener is full: the next connection gets 503.
    assert_eq!(get(addr, "/healthz", "").status, 503);
    // The metrics listener still answers.
    let r = get(metrics_addr, "/healthz", "");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let text = scrape(metrics_addr);
    assert_eq!(
        metric(&text, "wsrooms_connections_refused_total"),
        Some(1.0)
    );
    // Its own connections are bounded.
    let reserved = wsrooms::metrics::METRICS_CONNECTIONS;
    let _held: Vec<_> = (0..reserved).map(|_| tcp(metrics_addr)).collect();
    assert_eq!(get(metrics_addr, "/healthz", "").status, 503);
    drop(_held);
    assert!(
        wait_until(Duration::from_secs(5), || get(metrics_addr, "/healthz", "")
            .status
            == 200),
        "the metrics listener answers again once its connections closed"
    );
    // Counted apart from the chat's refusals.
    let text = scrape(metrics_addr);
    assert_eq!(
        metric(&text, "wsrooms_connections_refused_total"),
        Some(1.0)
    );
    let key = "reason=\"metrics_connections\"";
    let refused = metric_with(&text, "wsrooms_refused_total", key);
    assert!(refused.is_some_and(|n| n >= 1.0), "{text}");
}

/// Every `wsrooms_*` and `process_*` series named in
/// deploy/grafana-dashboard.json and deploy/prometheus-alerts.yml (a
/// histogram's `_bucket`, `_sum` and `_count` included) is one a running
/// server serves; the dashboard is valid JSON.
fn the_shipped_dashboard_and_alerts_use_only_served_series() {
    let dir = TempDir::new("dashboard");
    let mut config = test_config();
    config.data_file = Some(dir.join("rooms.db"));
    let addr = start(config);
    let text = scrape_with_labels(addr, 6);
    let served: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    let dashboard = std::fs::read_to_string(repo().join("deploy/grafana-dashboard.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    assert!(json["panels"].as_array().is_some_and(|p| p.len() >= 10));
    let alerts = std::fs::read_to_string(repo().join("deploy/prometheus-alerts.yml")).unwrap();
    assert!(alerts.contains("groups:") && alerts.matches("expr:").count() >= 8);
    for (file, content) in [
        ("grafana-dashboard.json", &dashboard),
        ("prometheus-alerts.yml", &alerts),
    ] {
        let used = series_names(content);
        assert!(used.len() >= 8, "{file}: {used:?}");
        for name in used {
            assert!(
                served.contains(name.as_str()),
                "deploy/{file} uses {name}, not served:\n{text}"
            );
        }
    }
}

/// The `wsrooms_*` and `process_*` names in a text (at word starts).
fn series_names(text: &str) -> std::collections::BTreeSet<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = std::collections::BTreeSet::new();
    for (i, _) in text.char_indices() {
        let rest = &text[i..];
        let starts_word = text[..i].chars().next_back().is_none_or(|c| !is_name(c));
        if starts_word && (rest.starts_with("wsrooms_") || rest.starts_with("process_")) {
            let end = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
            names.insert(rest[..end].to_string());
        }
    }
    names
}

fn metrics_bind_serves_metrics_there_and_hides_them_from_the_main_port() {
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut config = test_config();
    config.metrics_bind = Some(metrics_addr);
    let addr = start(config);
    // The main port: pages and /healthz, no /metrics.
    assert_eq!(get(addr, "/metrics", "").status, 404);
    assert_eq!(get(addr, "/healthz", "").status, 200);
    assert_eq!(get(addr, "/", "").status, 200);
    // The metrics port: /metrics and /healthz only.
    let text = scrape(metrics_addr);
    assert!(text.contains("# TYPE wsrooms_websockets gauge"), "{text}");
    let r = get(metrics_addr, "/healthz", "");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(get(metrics_addr, "/", "").status, 404);
    assert_eq!(get(metrics_addr, "/static/room.js", "").status, 404);
    let r = login_raw(metrics_addr, "frank", "3");
    assert_eq!(r.status, 404, "no logins on the metrics port");
    // What happens on the main port shows on the metrics port.
    let (_ws, _) = join(addr, "gina", 3);
    assert!(wait_until(Duration::from_secs(5), || metric(
        &scrape(metrics_addr),
        "wsrooms_websockets"
    ) == Some(1.0)));
    assert_eq!(
        metric(&scrape(metrics_addr), "wsrooms_logins_total"),
        Some(1.0)
    );
}

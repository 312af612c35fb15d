//! `/metrics` (issue 7): scraped during a small chat, its counters
//! and gauges move by exactly what happened; its text parses with the real
//! Prometheus parser (Python `prometheus_client`); `--metrics-bind` serves
//! it on a separate listener and hides it from the main one.

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

fn metrics_parse_as_prometheus_text_with_help_and_type() {
    let addr = start(test_config());
    // Make the labelled families non-empty.
    let (mut ws, _) = join(addr, "dora", 8);
    let cookie = login(addr, "eve", 8);
    assert!(ws_connect_path(addr, "/rooms/8/ws", Some(&cookie), None).is_err());
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .unwrap();
    while ws.read().is_ok() {}
    let text = scrape(addr);
    // Every sample's family has HELP and TYPE lines before it.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = name.strip_suffix("_total").unwrap_or(name);
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
    assert!(families.len() >= 17, "{parsed}");
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

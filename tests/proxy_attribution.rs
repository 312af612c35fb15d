//! Behind a proxy named by `--trust-proxy`, which client a request is
//! charged to (bars, the login rate, the per-address connection limit):
//! the last `X-Forwarded-For` entry, in the forms proxies write it, and
//! the proxy itself when a request names no client. Each test was written
//! against a bug a review found (its comment says what it did).

#[allow(dead_code)]
mod sim;

use std::net::SocketAddr;
use std::time::Duration;

use sim::by_hand::{admin_post, net};
use sim::net::Net;
use wsrooms::Config;
use wsrooms::trust_proxy::TrustProxy;

fn config() -> Config {
    Config {
        log_level: "off".into(),
        leave_delay: Duration::ZERO,
        max_connections_per_ip: 0,
        ..sim::sim_config(None)
    }
}

fn proxied_config() -> Config {
    Config {
        trust_proxy: TrustProxy::parse("10.9.9.9").unwrap(),
        ..config()
    }
}

const PROXY: ([u8; 4], u16) = ([10, 9, 9, 9], 33_000);

/// Every status line in `bytes`, in order.
fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| text.get(at + 9..at + 12)?.parse().ok())
        .collect()
}

fn login_req(user: &str, room: u32, extra: &str) -> String {
    let body = format!("user={user}&room={room}");
    format!(
        "POST /login HTTP/1.1\r\nHost: sim\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         {extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Requests sent on one connection from `peer`, answered over a few turns;
/// the statuses.
fn on_one_connection(net: &mut Net, peer: SocketAddr, requests: &[String]) -> Vec<u16> {
    let p = net.connect(peer, 1 << 20);
    let mut got = Vec::new();
    for r in requests {
        net.pipes[p].send(r.as_bytes());
        for _ in 0..3 {
            net.now += Duration::from_millis(10);
            net.turn();
        }
        got.extend(statuses(&net.pipes[p].take(usize::MAX)));
    }
    got
}

/// A proxy reuses one upstream connection for several clients. A request
/// on it whose `X-Forwarded-For` is absent or cannot be read is the
/// proxy's own (its TCP address), not the previous client's. (It was the
/// previous client's: a barred client's bar was applied to someone else's
/// login.)
#[test]
fn a_request_without_a_readable_forwarded_for_is_not_charged_to_the_previous_client() {
    // Another client, whose address the proxy wrote as `unknown` (nginx's
    // `$remote_addr` over a unix socket, …).
    after_the_barred_client_on_one_connection("X-Forwarded-For: unknown\r\n");
}

#[test]
fn a_request_without_forwarded_for_is_not_charged_to_the_previous_client() {
    after_the_barred_client_on_one_connection("");
}

/// The barred client asks for the health check on a proxy connection
/// (answered), then carol logs in on it, her request carrying `carol_xff`.
fn after_the_barred_client_on_one_connection(carol_xff: &str) {
    let mut net = net(proxied_config());
    assert_eq!(
        admin_post(&mut net, "/admin/bar", "address=203.0.113.7&minutes=60"),
        200
    );
    let got = on_one_connection(
        &mut net,
        SocketAddr::from(PROXY),
        &[
            "GET /healthz HTTP/1.1\r\nHost: sim\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n".into(),
            login_req("carol", 5, carol_xff),
        ],
    );
    assert_eq!(got, vec![200, 303], "carol is not the barred client");
}

/// Proxies that write the client's port (Azure Application Gateway, IIS
/// ARR: `203.0.113.7:51234`) or an IPv6 address in brackets
/// (`[2001:db8::7]`, `[2001:db8::7]:51234`): the entry still names the
/// client. (They were not read, so the request was charged to the proxy:
/// a barred client was let in, and every such client shared one address
/// for the per-address limits and the room bars.)
#[test]
fn a_forwarded_for_entry_with_a_port_or_brackets_still_names_the_client() {
    for (bar, entry) in [
        ("203.0.113.7", "203.0.113.7:51234"),
        ("2001:db8::7", "[2001:db8::7]"),
        ("2001:db8::7", "[2001:db8::7]:51234"),
    ] {
        let mut net = net(proxied_config());
        let form = format!("address={bar}&minutes=60");
        assert_eq!(admin_post(&mut net, "/admin/bar", &form), 200);
        let got = on_one_connection(
            &mut net,
            SocketAddr::from(PROXY),
            &[login_req(
                "mallory",
                5,
                &format!("X-Forwarded-For: {entry}\r\n"),
            )],
        );
        assert_eq!(
            got,
            vec![403],
            "X-Forwarded-For: {entry} is the barred {bar}"
        );
    }
}

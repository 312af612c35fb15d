//! Login CSRF (issue 11 §3): a `POST /login` sent by another site's page
//! (a foreign or `null` `Origin`, or `Sec-Fetch-Site: cross-site`) gets
//! `403`, sets no cookie and reserves nothing, so a foreign page cannot
//! replace a visitor's session. Positive controls: the page's own origin,
//! no `Origin` at all (curl, scripts), an `--allow-origin`, and
//! `Sec-Fetch-Site: same-origin` all log in (`303`).
//!
//! The real binary, real sockets on 127.0.0.1.

mod common;

use std::net::SocketAddr;

use common::*;

const PARTNER: &str = "https://partner.example";

/// `POST /login?room=N` with `user` and `extra` header lines.
fn post_login(addr: SocketAddr, host: &str, user: &str, room: u32, extra: &str) -> HttpResponse {
    let body = format!("user={}&room={room}", urlencode(user));
    http_raw(
        addr,
        &format!(
            "POST /login?room={room} HTTP/1.1\r\nHost: {host}\r\n{extra}\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn spawn(dir: &TempDir, extra: &[&str]) -> Spawned {
    let mut args = vec!["--bind", "127.0.0.1:0", "--allow-origin", PARTNER];
    args.extend_from_slice(extra);
    spawn_isolated(&args, &[], dir.join("wsrooms.log"))
}

fn assert_refused(r: &HttpResponse, what: &str) {
    assert_eq!(r.status, 403, "{what}: {}", r.text());
    assert_eq!(r.header("Set-Cookie"), None, "{what}: no cookie");
}

fn assert_logged_in(r: &HttpResponse, what: &str) {
    assert_eq!(r.status, 303, "{what}: {}", r.text());
    assert!(
        r.header("Set-Cookie")
            .is_some_and(|c| c.starts_with("wsrooms_session=")),
        "{what}: a session cookie"
    );
}

#[test]
fn a_foreign_page_cannot_log_in_and_reserves_nothing() {
    let dir = TempDir::new("csrf");
    let s = spawn(&dir, &[]);
    let host = s.addr.to_string();
    let own = format!("Origin: http://{host}\r\n");

    let r = post_login(s.addr, &host, "vera", 5, "Origin: https://evil.example\r\n");
    assert_refused(&r, "foreign Origin");
    s.log.wait_for(
        &["login refused: sent from another site (Origin \"https://evil.example\")"],
        IO_TIMEOUT,
    );
    let text = scrape(s.addr);
    assert_eq!(
        metric(&text, "wsrooms_sessions"),
        Some(0.0),
        "nothing reserved"
    );
    assert_eq!(
        metric_with(&text, "wsrooms_refused_total", "reason=\"login_origin\""),
        Some(1.0)
    );
    // The id is still free: the visitor's own page gets it.
    assert_logged_in(
        &post_login(s.addr, &host, "vera", 5, &own),
        "same origin after",
    );

    assert_refused(
        &post_login(s.addr, &host, "wim", 5, "Origin: null\r\n"),
        "Origin: null",
    );
    assert_refused(
        &post_login(s.addr, &host, "wim", 5, "Sec-Fetch-Site: cross-site\r\n"),
        "Sec-Fetch-Site: cross-site, no Origin",
    );
    assert_refused(
        &post_login(
            s.addr,
            &host,
            "wim",
            5,
            &format!("{own}Sec-Fetch-Site: cross-site\r\n"),
        ),
        "Sec-Fetch-Site: cross-site with the page's Origin",
    );
    assert_refused(
        &post_login(
            s.addr,
            &host,
            "wim",
            5,
            &format!("Origin: https://{host}.evil.example\r\n"),
        ),
        "an origin that only starts like the page's",
    );
    assert_refused(
        &post_login(
            s.addr,
            &host,
            "wim",
            5,
            &format!("{own}Origin: https://evil.example\r\n"),
        ),
        "a second, foreign Origin",
    );
    let text = scrape(s.addr);
    assert_eq!(metric(&text, "wsrooms_sessions"), Some(1.0), "only vera");
    assert_eq!(
        metric_with(&text, "wsrooms_refused_total", "reason=\"login_origin\""),
        Some(6.0)
    );
}

#[test]
fn own_page_scripts_and_allowed_origins_log_in() {
    let dir = TempDir::new("csrf-ok");
    let s = spawn(&dir, &[]);
    let host = s.addr.to_string();
    let own = format!("Origin: http://{host}\r\n");
    assert_logged_in(&post_login(s.addr, &host, "ana", 1, &own), "same origin");
    assert_logged_in(&post_login(s.addr, &host, "ben", 1, ""), "no Origin (curl)");
    assert_logged_in(
        &post_login(s.addr, &host, "cem", 1, &format!("Origin: {PARTNER}\r\n")),
        "an --allow-origin",
    );
    assert_logged_in(
        &post_login(
            s.addr,
            &host,
            "dag",
            1,
            &format!("{own}Sec-Fetch-Site: same-origin\r\n"),
        ),
        "Sec-Fetch-Site: same-origin",
    );
    assert_logged_in(
        &post_login(s.addr, &host, "eli", 1, "Sec-Fetch-Site: none\r\n"),
        "Sec-Fetch-Site: none (typed or bookmarked)",
    );
}

#[test]
fn behind_a_trusted_proxy_the_page_origin_is_the_forwarded_host() {
    let dir = TempDir::new("csrf-proxy");
    let forwarded = "X-Forwarded-Host: chat.example\r\nX-Forwarded-For: 203.0.113.5\r\n";
    let proxied = spawn(&dir, &["--trust-proxy"]);
    let host = proxied.addr.to_string();
    assert_logged_in(
        &post_login(
            proxied.addr,
            &host,
            "fay",
            2,
            &format!("{forwarded}Origin: https://chat.example\r\n"),
        ),
        "the forwarded host's origin",
    );
    assert_refused(
        &post_login(
            proxied.addr,
            &host,
            "gus",
            2,
            &format!("{forwarded}Origin: http://{host}\r\n"),
        ),
        "the backend's own address is not the page's origin behind the proxy",
    );
    drop(proxied);
    // Without --trust-proxy the forwarded host means nothing.
    let direct = spawn(&dir, &[]);
    assert_refused(
        &post_login(
            direct.addr,
            &direct.addr.to_string(),
            "fay",
            2,
            &format!("{forwarded}Origin: https://chat.example\r\n"),
        ),
        "X-Forwarded-Host without --trust-proxy",
    );
    drop(direct);
    // Nor from a peer --trust-proxy does not name (the proxy is 127.0.0.2,
    // this client 127.0.0.1).
    let elsewhere = spawn(&dir, &["--trust-proxy", "127.0.0.2"]);
    assert_refused(
        &post_login(
            elsewhere.addr,
            &elsewhere.addr.to_string(),
            "fay",
            2,
            &format!("{forwarded}Origin: https://chat.example\r\n"),
        ),
        "X-Forwarded-Host from a peer that is not a named proxy",
    );
}

//! End to end: login, rooms and chat over real sockets (docs/PROTOCOL.md).

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use tungstenite::Message;

#[test]
fn login_sets_a_cookie_and_redirects() {
    let addr = start(test_config());
    let r = login_raw(addr, "alice", "5");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("Location"), Some("/rooms/5"));
    let cookie = r.header("Set-Cookie").unwrap();
    let token = cookie
        .strip_prefix("wsrooms_session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    assert_eq!(token.len(), 32, "128 bits as hex");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    // The room page needs that cookie.
    let page = get(
        addr,
        "/rooms/5",
        &format!("Cookie: {}\r\n", cookie.split(';').next().unwrap()),
    );
    assert_eq!(page.status, 200);
    assert!(
        page.header("Content-Security-Policy")
            .unwrap()
            .contains("script-src 'self'")
    );
    let no_cookie = get(addr, "/rooms/5", "");
    assert_eq!(no_cookie.status, 303);
    assert_eq!(no_cookie.header("Location"), Some("/?room=5"));
}

#[test]
fn duplicate_ids_get_409_in_any_case() {
    let addr = start(test_config());
    login(addr, "Alice", 1);
    let again = login_raw(addr, "aLICE", "1");
    assert_eq!(again.status, 409);
    assert!(again.header("Location").is_none());
    assert!(again.text().contains("data-field=\"user\""));
    // Another room is another namespace.
    login(addr, "alice", 2);
    // Hangul ids, folded the same way.
    login(addr, "김철수", 1);
    assert_eq!(login_raw(addr, "김철수", "1").status, 409);
    // The same syllables typed as conjoining jamo, and fullwidth letters,
    // look the same and are the same id.
    login(addr, "가나", 1);
    assert_eq!(
        login_raw(addr, "\u{1100}\u{1161}\u{1102}\u{1161}", "1").status,
        409
    );
    assert_eq!(login_raw(addr, "ＡＬＩＣＥ", "1").status, 409);
}

#[test]
fn invalid_input_gets_400() {
    let addr = start(test_config());
    for (user, room) in [
        ("", "1"),
        ("a b", "1"),
        ("<script>", "1"),
        (&"x".repeat(33), "1"),
        ("bob", "0"),
        ("bob", "1000000"),
        ("bob", "abc"),
        ("bob", ""),
    ] {
        let r = login_raw(addr, user, room);
        assert_eq!(r.status, 400, "user {user:?} room {room:?}");
        assert!(r.text().contains("class=\"error\""));
    }
    // The id is trimmed: 32 characters plus spaces is fine.
    assert_eq!(
        login_raw(addr, &format!("  {}  ", "가".repeat(32)), "3").status,
        303
    );
}

#[test]
fn upgrade_needs_the_rooms_cookie_and_our_origin() {
    let addr = start(test_config());
    let cookie = login(addr, "alice", 1);
    let origin = format!("http://{addr}");
    let status = |r: Result<Ws, tungstenite::Error>| match r {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => 101,
    };
    assert_eq!(
        status(ws_connect_path(addr, "/rooms/1/ws", None, Some(&origin))),
        403
    );
    assert_eq!(
        status(ws_connect_path(
            addr,
            "/rooms/2/ws",
            Some(&cookie),
            Some(&origin)
        )),
        403
    );
    assert_eq!(
        status(ws_connect_path(
            addr,
            "/rooms/1/ws",
            Some(&cookie),
            Some("http://evil.example")
        )),
        403
    );
    assert_eq!(
        status(ws_connect_path(addr, "/rooms/1/ws", Some(&cookie), None)),
        403
    );
    assert_eq!(
        status(ws_connect_path(
            addr,
            "/rooms/1/ws",
            Some("wsrooms_session=00000000000000000000000000000000"),
            Some(&origin)
        )),
        403
    );
    assert_eq!(
        status(ws_connect_path(
            addr,
            "/rooms/1/ws",
            Some(&cookie),
            Some(&origin)
        )),
        101
    );
}

#[test]
fn allowed_origins_are_accepted() {
    let mut config = test_config();
    config.allow_origins.push("https://chat.example".into());
    let addr = start(config);
    let cookie = login(addr, "alice", 1);
    ws_connect_path(
        addr,
        "/rooms/1/ws",
        Some(&cookie),
        Some("https://chat.example"),
    )
    .expect("allowed");
}

#[test]
fn two_users_chat_in_one_order_and_another_room_hears_nothing() {
    let addr = start(test_config());
    let (mut alice, welcome) = join(addr, "alice", 1);
    assert_eq!(welcome["room"], 1);
    assert_eq!(welcome["user"], "alice");
    assert_eq!(welcome["users"], serde_json::json!(["alice"]));
    assert_eq!(welcome["maxChars"], 2000);
    let (mut carol, _) = join(addr, "carol", 2);
    let (mut bob, welcome) = join(addr, "bob", 1);
    assert_eq!(welcome["users"], serde_json::json!(["alice", "bob"]));
    let j = next_event(&mut alice);
    assert_eq!(
        (j["type"].as_str(), j["user"].as_str()),
        (Some("join"), Some("bob"))
    );
    assert!(j["at"].as_u64().unwrap() > 1_700_000_000_000);

    for i in 0..5 {
        alice.send(Message::text(format!("a{i}"))).unwrap();
        bob.send(Message::text(format!("b{i}"))).unwrap();
    }
    let read_ten = |ws: &mut Ws| -> Vec<(String, String, u64)> {
        (0..10)
            .map(|_| {
                let e = next_of_type(ws, "message");
                (
                    e["user"].as_str().unwrap().to_string(),
                    e["text"].as_str().unwrap().to_string(),
                    e["seq"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let seen_by_alice = read_ten(&mut alice);
    let seen_by_bob = read_ten(&mut bob);
    assert_eq!(seen_by_alice, seen_by_bob, "one order for all");
    let seqs: Vec<u64> = seen_by_alice.iter().map(|m| m.2).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    // Each sender's own messages in the order sent.
    let alices: Vec<&str> = seen_by_alice
        .iter()
        .filter(|m| m.0 == "alice")
        .map(|m| m.1.as_str())
        .collect();
    assert_eq!(alices, ["a0", "a1", "a2", "a3", "a4"]);

    // Carol, in room 2, got nothing: her next event is her own message.
    carol.send(Message::text("only me")).unwrap();
    let e = next_event(&mut carol);
    assert_eq!(
        (e["type"].as_str(), e["text"].as_str(), e["seq"].as_u64()),
        (Some("message"), Some("only me"), Some(1))
    );
}

#[test]
fn leave_is_announced_and_the_id_frees_after_grace() {
    let mut config = test_config();
    config.grace_timeout = Duration::from_millis(300);
    // The leave at once, then the id held (tests/presence.rs has the delay).
    config.leave_delay = Duration::ZERO;
    let addr = start(config);
    let (mut alice, _) = join(addr, "alice", 1);
    let (mut bob, _) = join(addr, "bob", 1);
    next_of_type(&mut alice, "join");
    bob.close(None).unwrap();
    let leave = next_of_type(&mut alice, "leave");
    assert_eq!(leave["user"], "bob");
    // Held during the grace period…
    assert_eq!(login_raw(addr, "bob", "1").status, 409);
    // …and free after it.
    assert!(wait_until(Duration::from_secs(5), || login_raw(
        addr, "BOB", "1"
    )
    .status
        == 303));
}

#[test]
fn an_id_is_held_a_day_after_its_socket_closes_by_default() {
    assert_eq!(test_config().grace_timeout, Duration::from_secs(86_400));
    let addr = start(test_config());
    let (mut alice, _) = join(addr, "alice", 1);
    let (bob, _) = join(addr, "bob", 1);
    drop(bob);
    next_of_type(&mut alice, "leave");
    assert_eq!(login_raw(addr, "bob", "1").status, 409);
}

/// Login, socket and welcome; returns the socket and the cookie pair.
fn join_keeping_cookie(addr: std::net::SocketAddr, user: &str, room: u32) -> (Ws, String) {
    let cookie = login(addr, user, room);
    let mut ws = ws_connect(addr, room, &cookie);
    assert_eq!(next_event(&mut ws)["type"], "welcome");
    (ws, cookie)
}

#[test]
fn logout_ends_the_session_at_once() {
    let addr = start(test_config());
    let (mut alice, cookie) = join_keeping_cookie(addr, "alice", 1);
    let (mut bob, _) = join(addr, "bob", 1);
    next_of_type(&mut alice, "join");
    let origin = format!("Origin: http://{addr}\r\n");
    let r = logout_raw(addr, 1, Some(&cookie), &origin);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("Location"), Some("/"));
    let cleared = r.header("Set-Cookie").unwrap();
    assert!(cleared.starts_with("wsrooms_session=;"), "{cleared}");
    for attr in ["Max-Age=0", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cleared.contains(attr), "{cleared}");
    }
    // Its socket is closed, the others see it leave, and the id is free now.
    assert_eq!(expect_close(&mut alice), (1000, "logged out".to_string()));
    assert_eq!(next_of_type(&mut bob, "leave")["user"], "alice");
    assert_eq!(login_raw(addr, "ALICE", "1").status, 303);
    // The old cookie opens nothing any more.
    assert_eq!(
        get(addr, "/rooms/1", &format!("Cookie: {cookie}\r\n")).status,
        303
    );
    // Logging out again, or without any session: the same answer.
    assert_eq!(logout_raw(addr, 1, Some(&cookie), &origin).status, 303);
    assert_eq!(logout_raw(addr, 1, None, "").status, 303);
}

#[test]
fn a_session_without_a_socket_logs_out_too() {
    let addr = start(test_config());
    let (mut alice, cookie) = join_keeping_cookie(addr, "alice", 2);
    alice.close(None).unwrap();
    expect_close(&mut alice);
    assert_eq!(
        login_raw(addr, "alice", "2").status,
        409,
        "held in its grace"
    );
    assert_eq!(logout_raw(addr, 2, Some(&cookie), "").status, 303);
    assert_eq!(login_raw(addr, "alice", "2").status, 303);
}

#[test]
fn a_logout_from_another_site_is_refused() {
    let addr = start(test_config());
    let (mut alice, cookie) = join_keeping_cookie(addr, "alice", 3);
    for extra in [
        "Origin: http://evil.example\r\n",
        "Origin: null\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
    ] {
        let r = logout_raw(addr, 3, Some(&cookie), extra);
        assert_eq!(r.status, 403, "{extra}");
        assert!(r.header("Set-Cookie").is_none(), "{extra}");
    }
    let get_logout = get(addr, "/logout", &format!("Cookie: {cookie}\r\n"));
    assert_eq!(get_logout.status, 405);
    // Still in the room, still holding the id.
    alice.send(Message::text("still here")).unwrap();
    assert_eq!(next_of_type(&mut alice, "message")["text"], "still here");
    assert_eq!(login_raw(addr, "alice", "3").status, 409);
}

#[test]
fn an_unused_reservation_lapses() {
    let mut config = test_config();
    config.reserve_timeout = Duration::from_millis(200);
    let addr = start(config);
    let cookie = login(addr, "dave", 9);
    assert!(wait_until(Duration::from_secs(5), || login_raw(
        addr, "dave", "9"
    )
    .status
        == 303));
    // The old session is gone: its cookie opens nothing.
    assert!(matches!(
        ws_connect_path(
            addr,
            "/rooms/9/ws",
            Some(&cookie),
            Some(&format!("http://{addr}"))
        ),
        Err(tungstenite::Error::Http(_))
    ));
}

#[test]
fn long_messages_are_cut_at_characters() {
    // The seed demo's limit, as `--max-chat-chars 50` gives it.
    let mut config = test_config();
    config.max_chat_chars = 50;
    let addr = start(config);
    let (mut alice, welcome) = join(addr, "alice", 1);
    assert_eq!(welcome["maxChars"], 50);
    alice.send(Message::text("x".repeat(200))).unwrap();
    let e = next_of_type(&mut alice, "message");
    assert_eq!(e["text"].as_str().unwrap(), "x".repeat(50));
    let hangul = "가나다라마바사아자차카타파하".repeat(10);
    alice.send(Message::text(hangul.clone())).unwrap();
    let e = next_of_type(&mut alice, "message");
    let text = e["text"].as_str().unwrap();
    assert_eq!(text.chars().count(), 50);
    assert!(hangul.starts_with(text));
    let emoji = "👍🏽".repeat(40);
    alice.send(Message::text(emoji.clone())).unwrap();
    let e = next_of_type(&mut alice, "message");
    assert_eq!(e["text"].as_str().unwrap().chars().count(), 50);
    // Blank messages are ignored: the next event is the next real message.
    alice.send(Message::text("   \n\t ")).unwrap();
    alice.send(Message::text("after")).unwrap();
    let e = next_of_type(&mut alice, "message");
    assert_eq!(e["text"], "after");
}

#[test]
fn messages_keep_2000_characters_and_40_lines_by_default() {
    let addr = start(test_config());
    let (mut alice, welcome) = join(addr, "alice", 1);
    let (mut bob, _) = join(addr, "bob", 1);
    assert_eq!(
        (welcome["maxChars"].as_u64(), welcome["maxLines"].as_u64()),
        (Some(2000), Some(40))
    );
    // A 62-character URL and a 1,999-character text arrive whole.
    let url = format!("https://example.com/{}", "a".repeat(42));
    alice.send(Message::text(url.clone())).unwrap();
    assert_eq!(next_of_type(&mut bob, "message")["text"], url.as_str());
    let long = "가".repeat(1999);
    alice.send(Message::text(long.clone())).unwrap();
    assert_eq!(next_of_type(&mut bob, "message")["text"], long.as_str());
    // 2,500 four-byte characters: cut to 2,000 whole ones.
    alice.send(Message::text("😀".repeat(2500))).unwrap();
    assert_eq!(
        next_of_type(&mut bob, "message")["text"],
        "😀".repeat(2000).as_str()
    );

    // Line breaks are kept, each as LF, whatever the sender wrote.
    alice
        .send(Message::text("one\r\ntwo\rthree\nfour"))
        .unwrap();
    assert_eq!(
        next_of_type(&mut bob, "message")["text"],
        "one\ntwo\nthree\nfour"
    );
    // Lines past the 40th are dropped, with the break that would start them.
    let lines: Vec<String> = (1..=60).map(|i| format!("line {i}")).collect();
    alice.send(Message::text(lines.join("\r\n"))).unwrap();
    assert_eq!(
        next_of_type(&mut bob, "message")["text"],
        lines[..40].join("\n").as_str()
    );
    // Blank lines and whitespace alone are still nothing.
    alice.send(Message::text("\r\n \n\t\r")).unwrap();
    alice.send(Message::text("after")).unwrap();
    assert_eq!(next_of_type(&mut bob, "message")["text"], "after");
    // The sender sees exactly what the others see.
    let texts: Vec<String> = (0..6)
        .map(|_| {
            next_of_type(&mut alice, "message")["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(texts[3], "one\ntwo\nthree\nfour");
    assert_eq!(texts[5], "after");
}

#[test]
fn max_chat_lines_is_a_setting() {
    let mut config = test_config();
    config.max_chat_lines = 2;
    let addr = start(config);
    let (mut alice, welcome) = join(addr, "alice", 1);
    assert_eq!(welcome["maxLines"], 2);
    alice.send(Message::text("a\nb\nc")).unwrap();
    assert_eq!(next_of_type(&mut alice, "message")["text"], "a\nb");
}

#[test]
fn html_in_messages_is_just_text_in_json() {
    let addr = start(test_config());
    let (mut alice, _) = join(addr, "alice", 1);
    alice
        .send(Message::text("<img src=x onerror=alert(1)>"))
        .unwrap();
    let e = next_of_type(&mut alice, "message");
    assert_eq!(e["text"], "<img src=x onerror=alert(1)>");
}

#[test]
fn binary_closes_1003_and_close_is_echoed() {
    let addr = start(test_config());
    let (mut alice, _) = join(addr, "alice", 1);
    alice.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(expect_close(&mut alice).0, 1003);

    let (mut bob, _) = join(addr, "bob", 1);
    bob.close(Some(tungstenite::protocol::CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    assert_eq!(expect_close(&mut bob).0, 1000);
}

#[test]
fn fragments_are_reassembled_and_pings_answered() {
    let addr = start(test_config());
    let cookie = login(addr, "alice", 1);
    let mut s = tcp(addr);
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    write!(
        s,
        "GET /rooms/1/ws HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nCookie: {cookie}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    let welcome = next_frame(&mut s);
    assert_eq!(welcome.opcode, 1);
    // "안녕" split inside a character, a ping in between.
    let bytes = "안녕".as_bytes();
    let mut out = client_frame(false, 1, &bytes[..2]);
    out.extend(client_frame(true, 9, b"are you there?"));
    out.extend(client_frame(true, 0, &bytes[2..]));
    s.write_all(&out).unwrap();
    let pong = next_frame(&mut s);
    assert_eq!(
        (pong.opcode, pong.payload),
        (0xA, b"are you there?".to_vec())
    );
    let msg = next_frame(&mut s);
    let e: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(e["text"], "안녕");
}

#[test]
fn a_second_socket_of_a_session_replaces_the_first() {
    let addr = start(test_config());
    let (mut watcher, _) = join(addr, "watcher", 1);
    let cookie = login(addr, "alice", 1);
    let mut first = ws_connect(addr, 1, &cookie);
    next_of_type(&mut first, "welcome");
    assert_eq!(next_of_type(&mut watcher, "join")["user"], "alice");
    let mut second = ws_connect(addr, 1, &cookie);
    let welcome = next_of_type(&mut second, "welcome");
    assert_eq!(welcome["users"], serde_json::json!(["watcher", "alice"]));
    let (code, reason) = expect_close(&mut first);
    assert_eq!(
        (code, reason.as_str()),
        (4000, "replaced by a newer connection")
    );
    // The room saw no leave and no second join: alice never left.
    second.send(Message::text("still here")).unwrap();
    let e = next_event(&mut watcher);
    assert_eq!(
        (e["type"].as_str(), e["text"].as_str()),
        (Some("message"), Some("still here"))
    );
}

#[test]
fn pages_assets_and_errors() {
    let addr = start(test_config());
    let index = get(addr, "/", "");
    assert_eq!(index.status, 200);
    assert!(
        index
            .header("Content-Type")
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(index.header("X-Content-Type-Options"), Some("nosniff"));
    assert!(index.header("Content-Security-Policy").is_some());
    for (path, ty) in [
        ("/static/style.css", "text/css"),
        ("/static/login.js", "text/javascript"),
        ("/static/room.js", "text/javascript"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let r = get(addr, path, "");
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("Content-Type").unwrap().starts_with(ty), "{path}");
        let etag = r.header("ETag").unwrap().to_string();
        let again = get(addr, path, &format!("If-None-Match: {etag}\r\n"));
        assert_eq!(again.status, 304, "{path}");
    }
    assert_eq!(get(addr, "/nope", "").status, 404);
    assert_eq!(get(addr, "/rooms/0", "").status, 404);
    assert_eq!(get(addr, "/healthz", "").text(), "ok");
    assert_eq!(get(addr, "/login", "").status, 405);
    let mut s = tcp(addr);
    write!(
        s,
        "HEAD / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "HEAD has no body");
    let post = http_raw(
        addr,
        &format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(post.status, 405);
    let garbage = http_raw(addr, "NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(garbage.status, 400);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let addr = start(test_config());
    let mut s = tcp(addr);
    // Two pipelined requests, then a third after reading.
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_response(&mut s).text(), "ok");
    assert_eq!(read_response(&mut s).text(), "ok");
    write!(s, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let head = read_head(&mut s);
    assert!(head.contains("200 OK"));
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_response(&mut s).text(), "ok");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "closed after Connection: close");
}

#[test]
fn the_login_form_works_without_the_query_and_with_plus_and_percent() {
    let addr = start(test_config());
    let body = "user=%EA%B9%80%EC%B2%A0%EC%88%98&room=+42+";
    let r = http_raw(
        addr,
        &format!(
            "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded; charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("Location"), Some("/rooms/42"));
    // Not a form: 415.
    let r = http_raw(
        addr,
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert_eq!(r.status, 415);
}

#[test]
fn a_client_that_half_closes_still_gets_its_answer() {
    let addr = start(test_config());
    let mut s = tcp(addr);
    s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let text = String::from_utf8(all).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "{text}");
}

/// Spins for `micros` µs: a varied gap between two writes, so that the
/// second lands before, during or after the server's read of the first
/// (not a wait for anything).
fn gap(micros: u64) {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_micros(micros) {
        std::hint::spin_loop();
    }
}

/// The server ends a read after a short read instead of reading again for
/// `WouldBlock` (one system call less per pong). A FIN that comes with the
/// data, or during or right after that read, must still be seen at once:
/// here each keep-alive connection ends within a second of its FIN, not at
/// the 30 s head timeout.
#[test]
fn a_fin_with_or_right_after_a_request_is_never_missed() {
    let mut config = test_config();
    config.head_timeout = Duration::from_secs(30);
    let addr = start(config);
    for i in 0..300u64 {
        let mut s = tcp(addr);
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        gap(i % 60);
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let text = String::from_utf8(read_until_closed(&mut s, Duration::from_secs(1))).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n"),
            "connection {i}: {text}"
        );
    }
}

/// The same for a WebSocket: a frame, then the peer's FIN without a close
/// frame. The server must drop the socket at once, not at a ping timeout.
#[test]
fn a_fin_right_after_a_frame_is_never_missed() {
    let mut config = test_config();
    config.echo = true;
    let addr = start(config);
    for i in 0..200u64 {
        let mut s = raw_ws(addr, "/echo", None);
        s.write_all(&client_frame(true, 0x1, b"hi")).unwrap();
        gap(i % 60);
        s.shutdown(std::net::Shutdown::Write).unwrap();
        read_to_eof(&mut s, Duration::from_secs(1));
    }
}

#[test]
fn logins_past_max_sessions_get_503() {
    let mut config = test_config();
    config.max_sessions = 2;
    let addr = start(config);
    login(addr, "a", 1);
    login(addr, "b", 2);
    let r = login_raw(addr, "c", "3");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("Retry-After"), Some("60"));
}

//! The operator API on `--admin-bind`, over real TCP with real clients:
//! each action as the affected user and the others in the room see it
//! (close `4001`, `leave`, `403` at login and at the socket), the checks
//! that keep web pages out (`Host`, `Wsrooms-Admin: yes`), its answers to
//! bad requests, its place apart from the public and metrics listeners, and
//! its reserved connections. The bars' expiry is tested on the core's
//! virtual clock (`core_by_hand.rs`), the `admin` socket name in
//! `socket_activation.rs`.

mod common;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;

const ALICE_IP: [u8; 4] = [127, 0, 0, 1];
const BOB_IP: [u8; 4] = [127, 0, 0, 2];

fn ip(octets: [u8; 4]) -> IpAddr {
    IpAddr::from(octets)
}

/// Logs `user` in from `source` and opens its room socket from there;
/// returns the socket (its welcome read) and the cookie.
fn join_from(source: IpAddr, addr: SocketAddr, user: &str, room: u32) -> (Ws, String) {
    let cookie = cookie_of(&login_from(source, addr, user, room));
    let mut ws = ws_connect_from(source, addr, room, &cookie).expect("room socket");
    assert_eq!(next_event(&mut ws)["type"], "welcome");
    (ws, cookie)
}

/// The status a room socket's handshake got (101 when it opened).
fn upgrade_status(source: IpAddr, addr: SocketAddr, room: u32, cookie: &str) -> u16 {
    match ws_connect_from(source, addr, room, cookie) {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("handshake: {e}"),
    }
}

#[test]
fn listing_rooms_shows_their_ids_sockets_and_last_seq() {
    let (addr, admin) = start_with_admin(test_config());
    let (mut alice, _) = join(addr, "alice", 5);
    let (mut bob, _) = join(addr, "bob", 5);
    login(addr, "carol", 6); // reserved, no socket yet
    for text in ["one", "two"] {
        alice.send(tungstenite::Message::text(text)).unwrap();
        assert_eq!(next_of_type(&mut bob, "message")["text"], text);
    }

    let r = admin_request(admin, "GET", "/admin/rooms", "", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(
        json_of(&r),
        serde_json::json!([
            {"room": 5, "users": ["alice", "bob"], "sockets": 2, "lastSeq": 2},
            {"room": 6, "users": ["carol"], "sockets": 0, "lastSeq": 0},
        ])
    );
}

#[test]
fn removing_an_id_closes_it_with_4001_ends_its_session_and_bars_its_key_and_address() {
    let (addr, admin) = start_with_admin(test_config());
    let (mut alice, _) = join_from(ip(ALICE_IP), addr, "alice", 5);
    let (mut bob, bob_cookie) = join_from(ip(BOB_IP), addr, "bob", 5);
    assert_eq!(next_of_type(&mut alice, "join")["user"], "bob");

    // The operator types a look-alike of the id: matched by its key.
    let r = admin_post(admin, "/admin/rooms/5/remove", "user=B0B&minutes=60");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        json_of(&r),
        serde_json::json!({"room": 5, "user": "bob", "address": "127.0.0.2", "minutes": 60})
    );

    // Bob's socket is closed with 4001; alice sees him leave at once.
    assert_eq!(
        expect_close(&mut bob),
        (4001, "removed by the operator".to_string())
    );
    assert_eq!(next_of_type(&mut alice, "leave")["user"], "bob");

    // His session is over: the cookie opens no socket, from anywhere.
    assert_eq!(upgrade_status(ip(ALICE_IP), addr, 5, &bob_cookie), 403);
    // The id and its look-alikes are refused in that room, with a reason
    // the login page shows; so is his address, whatever the id.
    for (source, user) in [
        (ALICE_IP, "bob"),
        (ALICE_IP, "b0b"),
        (ALICE_IP, "BOB"),
        (BOB_IP, "carol"),
    ] {
        let r = login_from(ip(source), addr, user, 5);
        assert_eq!(r.status, 403, "{user} from {source:?}: {}", r.text());
        assert!(
            r.text().contains("removed from room 5 by the operator"),
            "{}",
            r.text()
        );
    }
    // Others, and other rooms, are not barred.
    assert_eq!(login_from(ip(ALICE_IP), addr, "carol", 5).status, 303);
    assert_eq!(login_from(ip(BOB_IP), addr, "bob", 6).status, 303);
    assert_eq!(
        json_of(&admin_request(admin, "GET", "/admin/rooms", "", ""))[0]["users"],
        serde_json::json!(["alice", "carol"])
    );
}

#[test]
fn removing_a_reserved_id_ends_its_session_too() {
    let (addr, admin) = start_with_admin(test_config());
    let (mut alice, _) = join(addr, "alice", 5);
    let bob_cookie = login(addr, "bob", 5);
    let r = admin_post(admin, "/admin/rooms/5/remove", "user=bob");
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = json_of(&r);
    assert_eq!(answer["address"], serde_json::Value::Null, "no socket");
    assert_eq!(answer["minutes"], 60, "the default");
    assert_eq!(upgrade_status(ip(ALICE_IP), addr, 5, &bob_cookie), 403);
    assert_eq!(login_raw(addr, "bob", "5").status, 403);
    // Alice is still there and may go on.
    alice
        .send(tungstenite::Message::text("still here"))
        .unwrap();
    assert_eq!(next_of_type(&mut alice, "message")["text"], "still here");
}

#[test]
fn removing_an_id_that_is_not_there_is_404() {
    let (addr, admin) = start_with_admin(test_config());
    let _alice = join(addr, "alice", 5);
    for (path, form) in [
        ("/admin/rooms/5/remove", "user=bob"),
        ("/admin/rooms/6/remove", "user=alice"),
    ] {
        let r = admin_post(admin, path, form);
        assert_eq!(r.status, 404, "{path} {form}: {}", r.text());
        assert!(json_of(&r)["error"].is_string());
    }
    assert_eq!(login_raw(addr, "bob", "5").status, 303, "nothing barred");
}

#[test]
fn a_bar_refuses_logins_and_sockets_from_the_address_and_closes_its_sockets() {
    let (addr, admin) = start_with_admin(test_config());
    let (mut alice, _) = join_from(ip(ALICE_IP), addr, "alice", 7);
    let (mut bob, bob_cookie) = join_from(ip(BOB_IP), addr, "bob", 7);
    assert_eq!(next_of_type(&mut alice, "join")["user"], "bob");

    let r = admin_post(admin, "/admin/bar", "address=127.0.0.2&minutes=5");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        json_of(&r),
        serde_json::json!({"address": "127.0.0.2", "minutes": 5, "closed": 1})
    );
    assert_eq!(
        expect_close(&mut bob),
        (4001, "removed by the operator".to_string())
    );
    assert_eq!(next_of_type(&mut alice, "leave")["user"], "bob");

    // From that address: no login, to any room, and no socket.
    for room in [7, 8] {
        let r = login_from(ip(BOB_IP), addr, "dave", room);
        assert_eq!(r.status, 403, "{}", r.text());
        assert!(r.text().contains("barred by the operator"), "{}", r.text());
    }
    assert_eq!(upgrade_status(ip(BOB_IP), addr, 7, &bob_cookie), 403);
    // Elsewhere all goes on; bob's session was kept (it holds his id).
    assert_eq!(login_from(ip(ALICE_IP), addr, "dave", 7).status, 303);
    assert_eq!(login_from(ip(ALICE_IP), addr, "bob", 7).status, 409);
    assert_eq!(upgrade_status(ip(ALICE_IP), addr, 7, &bob_cookie), 101);
}

#[test]
fn the_host_and_the_confirmation_header_are_checked() {
    let (addr, admin) = start_with_admin(test_config());
    let rooms = |host: &str| {
        let headers = match host {
            "" => String::new(),
            host => format!("Host: {host}\r\n"),
        };
        admin_raw(admin, "GET", "/admin/rooms", &headers, "").status
    };
    let port = admin.port();
    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".into(),
        format!("localhost:{port}"),
        "[::1]".into(),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(rooms(&host), 200, "Host: {host}");
    }
    // A rebound name, a name that merely starts like an address.
    for host in [
        format!("evil.example:{port}"),
        "127.0.0.1.nip.io".into(),
        "localhost.evil.example".into(),
    ] {
        assert_eq!(rooms(&host), 403, "Host: {host}");
    }
    let bar = "address=127.0.0.2&minutes=5";
    let post = |headers: &str| admin_raw(admin, "POST", "/admin/bar", headers, bar);
    let host = format!("Host: {admin}\r\n");
    for headers in [
        host.clone(),
        format!("{host}Wsrooms-Admin: no\r\n"),
        format!("{host}Wsrooms-Admin: yes\r\nWsrooms-Admin: yes\r\n"),
        "Host: evil.example\r\nWsrooms-Admin: yes\r\n".to_string(),
    ] {
        let r = post(&headers);
        assert_eq!(r.status, 403, "{headers:?}: {}", r.text());
        assert!(json_of(&r)["error"].is_string());
    }
    assert_eq!(
        login_from(ip(BOB_IP), addr, "bob", 5).status,
        303,
        "no refused request barred anything"
    );
    assert_eq!(post(&format!("{host}Wsrooms-Admin: yes\r\n")).status, 200);
    assert_eq!(login_from(ip(BOB_IP), addr, "carol", 5).status, 403);
}

#[test]
fn bad_requests_get_4xx_with_a_json_error() {
    let (_addr, admin) = start_with_admin(test_config());
    let cases = [
        ("POST", "/admin/bar", "address=example.com", 400),
        ("POST", "/admin/bar", "minutes=5", 400),
        ("POST", "/admin/bar", "address=127.0.0.9&minutes=0", 400),
        ("POST", "/admin/bar", "address=127.0.0.9&minutes=43201", 400),
        ("POST", "/admin/rooms/5/remove", "minutes=5", 400),
        ("POST", "/admin/rooms/5/remove", "user=a%20b", 400),
        ("POST", "/admin/rooms/0/remove", "user=bob", 404),
        ("POST", "/admin/rooms/5/kick", "user=bob", 404),
        ("POST", "/admin/nothing", "", 404),
        ("GET", "/admin/bar", "", 405),
        ("POST", "/admin/rooms", "", 405),
    ];
    for (method, path, body, status) in cases {
        let r = admin_request(admin, method, path, "Wsrooms-Admin: yes\r\n", body);
        assert_eq!(r.status, status, "{method} {path} {body}: {}", r.text());
        assert!(json_of(&r)["error"].is_string(), "{}", r.text());
    }
    let not_a_form = format!(
        "POST /admin/bar HTTP/1.1\r\nHost: {admin}\r\nWsrooms-Admin: yes\r\nContent-Type: text/plain\r\nContent-Length: 19\r\nConnection: close\r\n\r\naddress=127.0.0.9&x"
    );
    assert_eq!(http_raw(admin, &not_a_form).status, 415);
}

#[test]
fn the_admin_api_is_only_on_its_own_listener() {
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut config = test_config();
    config.metrics_bind = Some(metrics_addr);
    let (addr, admin) = start_with_admin(config);
    for public in [addr, metrics_addr] {
        assert_eq!(
            get(public, "/admin/rooms", "").status,
            404,
            "GET on {public}"
        );
        let r = admin_request(
            public,
            "POST",
            "/admin/bar",
            "Wsrooms-Admin: yes\r\n",
            "address=127.0.0.2",
        );
        assert_eq!(r.status, 404, "POST on {public}");
    }
    assert_eq!(
        login_from(ip(BOB_IP), addr, "bob", 5).status,
        303,
        "not barred"
    );
    // And the admin listener serves nothing else but its health.
    for path in ["/", "/metrics", "/rooms/5", "/static/login.js"] {
        assert_eq!(get(admin, path, "").status, 404, "{path} on the admin port");
    }
    assert_eq!(get(admin, "/healthz", "").status, 200);
}

/// A keep-alive connection whose first request was answered (so the server
/// has surely accepted it), left open.
fn held(addr: SocketAddr) -> std::net::TcpStream {
    let mut s = tcp(addr);
    s.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    s
}

#[test]
fn the_admin_api_answers_when_the_server_is_full() {
    let mut config = test_config();
    config.max_connections = 2;
    let (addr, admin) = start_with_admin(config);
    let _full = [held(addr), held(addr)];
    assert_eq!(
        get(addr, "/healthz", "").status,
        503,
        "the main listener is full"
    );
    let r = admin_request(admin, "GET", "/admin/rooms", "", "");
    assert_eq!(r.status, 200, "{}", r.text());
    // Its own few connections are limited too.
    let _admins: Vec<_> = (0..wsrooms::admin::ADMIN_CONNECTIONS)
        .map(|_| held(admin))
        .collect();
    assert_eq!(
        get(admin, "/healthz", "").status,
        503,
        "admin listener full"
    );
}

#[test]
fn every_action_is_logged_at_info() {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = spawn_binary(&["--admin-bind", &admin.to_string(), "--log-level", "info"]);
    let addr = server.addr;
    server
        .log
        .wait_for(&["admin API on", &admin.to_string()], IO_TIMEOUT);
    login(addr, "bob", 5);
    assert_eq!(
        admin_request(admin, "GET", "/admin/rooms", "", "").status,
        200
    );
    let remove = admin_post(admin, "/admin/rooms/5/remove", "user=bob&minutes=3");
    assert_eq!(remove.status, 200, "{}", remove.text());
    assert_eq!(
        admin_post(admin, "/admin/bar", "address=192.0.2.1").status,
        200
    );
    // A path chosen by the peer: written escaped, as every peer text.
    let refused = admin_raw(admin, "GET", "/admin/\"x", "Host: evil.example\r\n", "");
    assert_eq!(refused.status, 403);
    let limit = Duration::from_secs(5);
    server
        .log
        .wait_for(&["INFO", "admin 127.0.0.1: listed 1 rooms"], limit);
    server
        .log
        .wait_for(&["INFO", "removed \"bob\" from room 5", "for 3 min"], limit);
    server
        .log
        .wait_for(&["INFO", "barred 192.0.2.1", "for 60 min"], limit);
    server
        .log
        .wait_for(&["INFO", "GET /admin/\\\"x refused: 403"], limit);
}

#[test]
fn a_post_that_waits_with_its_body_gets_100_continue_only_when_it_may_pass() {
    let (_addr, admin) = start_with_admin(test_config());
    let body = "address=192.0.2.5&minutes=5";
    let head = |confirm: &str| {
        format!(
            "POST /admin/bar HTTP/1.1\r\nHost: {admin}\r\n{confirm}Expect: 100-continue\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
    };
    let mut s = tcp(admin);
    s.write_all(head("Wsrooms-Admin: yes\r\n").as_bytes())
        .unwrap();
    assert_eq!(
        read_head(&mut s).lines().next(),
        Some("HTTP/1.1 100 Continue")
    );
    s.write_all(body.as_bytes()).unwrap();
    let r = read_response(&mut s);
    assert_eq!(r.status, 200, "{}", r.text());
    // Without the header: the final answer at once, without the body.
    let mut s = tcp(admin);
    s.write_all(head("").as_bytes()).unwrap();
    assert_eq!(read_response(&mut s).status, 403);
}

#[test]
fn deleting_a_message_sends_a_delete_by_null_and_leaves_a_tombstone() {
    let (addr, admin) = start_with_admin(test_config());
    let (mut alice, _) = join(addr, "alice", 5);
    let (mut bob, _) = join(addr, "bob", 5);
    alice.send(tungstenite::Message::text("spam")).unwrap();
    assert_eq!(next_of_type(&mut bob, "message")["seq"], 1);

    let path = "/admin/rooms/5/messages/1/delete";
    let r = admin_request(admin, "POST", path, "Wsrooms-Admin: yes\r\n", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        json_of(&r),
        serde_json::json!({"room": 5, "seq": 1, "already": false})
    );
    for ws in [&mut alice, &mut bob] {
        let delete = next_of_type(ws, "delete");
        assert_eq!(delete["target"], 1, "{delete}");
        assert_eq!(delete["seq"], 2, "{delete}");
        assert!(delete["by"].is_null(), "{delete}");
    }
    // A page that comes now sees a tombstone, without the text.
    let (_carol, welcome) = join(addr, "carol", 5);
    let history = welcome["history"].as_array().expect("history");
    let first = history.iter().find(|m| m["seq"] == 1).expect("message 1");
    assert_eq!(first["deleted"], true, "{first}");
    assert!(first.get("text").is_none(), "{first}");

    let again = admin_request(admin, "POST", path, "Wsrooms-Admin: yes\r\n", "");
    assert_eq!(again.status, 200);
    assert_eq!(json_of(&again)["already"], true);
    for missing in [
        "/admin/rooms/5/messages/99/delete",
        "/admin/rooms/6/messages/1/delete",
    ] {
        let r = admin_request(admin, "POST", missing, "Wsrooms-Admin: yes\r\n", "");
        assert_eq!(r.status, 404, "{missing}: {}", r.text());
    }
    let unconfirmed = admin_request(admin, "POST", path, "", "");
    assert_eq!(unconfirmed.status, 403);
}

/// The flags of a server with its data file in `dir` and the admin API on
/// a free port; that port.
fn with_data_file_and_admin(dir: &TempDir) -> (Vec<String>, SocketAddr) {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let path = dir.join("rooms.db");
    let args = [
        "--data-file",
        path.to_str().unwrap(),
        "--admin-bind",
        &admin.to_string(),
    ];
    (args.map(String::from).to_vec(), admin)
}

/// Stops a spawned server with SIGTERM and waits for it.
fn stop(server: &mut Spawned) {
    sigterm(server.child.id());
    let status = wait_exit(&mut server.child, IO_TIMEOUT).expect("exit after SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn with_a_data_file_a_removed_session_stays_ended_and_the_bars_outlast_a_restart() {
    let dir = TempDir::new("admin-restart");
    let (args, admin) = with_data_file_and_admin(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    const BARRED_IP: [u8; 4] = [127, 0, 0, 3];
    let mut server = spawn_binary(&args);
    let (bob, _) = join_from(ip(BOB_IP), server.addr, "bob", 5);
    let carol_cookie = login(server.addr, "carol", 5);
    let r = admin_post(admin, "/admin/rooms/5/remove", "user=bob&minutes=60");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = admin_post(admin, "/admin/bar", "address=127.0.0.3&minutes=30");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(login_raw(server.addr, "bob", "5").status, 403);
    drop(bob);
    stop(&mut server);

    let server = spawn_binary(&args);
    let addr = server.addr;
    // Carol's session came back; bob's did not.
    let mut carol = ws_connect(addr, 5, &carol_cookie);
    assert_eq!(next_event(&mut carol)["type"], "welcome");
    assert_eq!(
        json_of(&admin_request(admin, "GET", "/admin/rooms", "", ""))[0]["users"],
        serde_json::json!(["carol"])
    );
    // The bars came back with the time they had left: the id (and its
    // look-alikes) and bob's address in room 5, and the barred address
    // everywhere.
    for (source, user) in [(ALICE_IP, "bob"), (ALICE_IP, "B0B"), (BOB_IP, "dave")] {
        let r = login_from(ip(source), addr, user, 5);
        assert_eq!(r.status, 403, "{user} from {source:?}: {}", r.text());
        assert!(
            r.text().contains("removed from room 5 by the operator")
                && r.text().contains("60 minute(s)"),
            "{}",
            r.text()
        );
    }
    let r = login_from(ip(BARRED_IP), addr, "erin", 7);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("30 more minute(s)"), "{}", r.text());
    // Nobody else is barred.
    assert_eq!(login_from(ip(ALICE_IP), addr, "dave", 5).status, 303);
    assert_eq!(login_from(ip(BOB_IP), addr, "bob", 6).status, 303);
}

#[test]
fn with_a_data_file_a_message_of_a_room_nobody_is_in_can_be_deleted() {
    let dir = TempDir::new("admin-empty-room");
    let (args, admin) = with_data_file_and_admin(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = spawn_binary(&args);
    let addr = server.addr;
    let (mut alice, _) = join_from(ip(ALICE_IP), addr, "alice", 9);
    for text in ["spam", "hello"] {
        alice.send(tungstenite::Message::text(text)).unwrap();
        next_of_type(&mut alice, "message");
    }
    // Removing alice ends the room's only session: the room leaves memory.
    let r = admin_post(admin, "/admin/rooms/9/remove", "user=alice&minutes=1");
    assert_eq!(r.status, 200, "{}", r.text());
    drop(alice);
    let rooms = json_of(&admin_request(admin, "GET", "/admin/rooms", "", ""));
    assert_eq!(rooms, serde_json::json!([]), "{rooms}");

    let r = admin_post(admin, "/admin/rooms/9/messages/1/delete", "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        json_of(&r),
        serde_json::json!({"room": 9, "seq": 1, "already": false})
    );
    // The room was brought back for that turn only.
    let rooms = json_of(&admin_request(admin, "GET", "/admin/rooms", "", ""));
    assert_eq!(rooms, serde_json::json!([]), "{rooms}");
    let again = admin_post(admin, "/admin/rooms/9/messages/1/delete", "");
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(json_of(&again)["already"], true);
    for missing in [
        "/admin/rooms/9/messages/99/delete",
        "/admin/rooms/8/messages/1/delete",
    ] {
        let r = admin_post(admin, missing, "");
        assert_eq!(r.status, 404, "{missing}: {}", r.text());
    }

    // Whoever comes next sees the tombstone, and the room numbers on from
    // the delete's seq (3), reusing none.
    let cookie = cookie_of(&login_from(ip(BOB_IP), addr, "bob", 9));
    let mut bob = ws_connect_from(ip(BOB_IP), addr, 9, &cookie).expect("room socket");
    let welcome = next_event(&mut bob);
    let history = welcome["history"].as_array().expect("history");
    let first = history.iter().find(|m| m["seq"] == 1).expect("message 1");
    assert_eq!(first["deleted"], true, "{first}");
    assert!(first.get("text").is_none(), "{first}");
    let second = history.iter().find(|m| m["seq"] == 2).expect("message 2");
    assert_eq!(second["text"], "hello", "{second}");
    bob.send(tungstenite::Message::text("after")).unwrap();
    assert_eq!(next_of_type(&mut bob, "message")["seq"], 4);
}

//! Durable rooms (`--data-file`): a restart (SIGTERM) or a crash (SIGKILL)
//! logs out no one and loses no message anyone saw; a room that emptied
//! keeps its messages and numbering on disk.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;

/// The real binary on the data file `path`, rate limit off.
fn server_on(path: &Path, extra: &[&str]) -> Spawned {
    let mut args = vec!["--rate-limit", "0", "--data-file", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    spawn_binary(&args)
}

/// SIGTERM, and the clean exit that follows.
fn stop(server: &mut Spawned) {
    sigterm(server.child.id());
    let status = wait_exit(&mut server.child, Duration::from_secs(10)).expect("exit after SIGTERM");
    assert!(status.success(), "{status}");
}

/// The page's reconnect: a room socket with its old cookie and `?since=N`.
fn reconnect(addr: SocketAddr, room: u32, cookie: &str, since: u64) -> Ws {
    ws_connect_path(
        addr,
        &format!("/rooms/{room}/ws?since={since}"),
        Some(cookie),
        Some(&format!("http://{addr}")),
    )
    .expect("the old session's socket is accepted")
}

/// `(seq, user, text)` of a message event.
fn triple(m: &serde_json::Value) -> (u64, String, String) {
    (
        m["seq"].as_u64().unwrap(),
        m["user"].as_str().unwrap().to_string(),
        m["text"].as_str().unwrap().to_string(),
    )
}

#[test]
fn after_sigterm_and_restart_the_old_cookie_gets_exactly_the_missed_messages() {
    let dir = TempDir::new("durable-restart");
    let path = dir.join("rooms.db");
    let mut server = server_on(&path, &[]);
    let addr = server.addr;
    let alice_cookie = login(addr, "alice", 1);
    let mut alice = ws_connect(addr, 1, &alice_cookie);
    next_of_type(&mut alice, "welcome");
    let bob_cookie = login(addr, "bob", 1);
    let mut bob = ws_connect(addr, 1, &bob_cookie);
    next_of_type(&mut bob, "welcome");
    for text in ["one", "two", "three"] {
        alice.send(Message::text(text)).unwrap();
    }
    let seen: Vec<u64> = (0..3)
        .map(|_| next_of_type(&mut bob, "message")["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seen, [1, 2, 3]);
    // Bob's page loses its socket (a reset, no close frame)…
    socket2::SockRef::from(bob.get_ref())
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(bob);
    next_of_type(&mut alice, "leave");
    // …while alice goes on.
    for text in ["four", "five"] {
        alice.send(Message::text(text)).unwrap();
    }
    assert_eq!(next_of_type(&mut alice, "message")["seq"], 4);
    assert_eq!(next_of_type(&mut alice, "message")["seq"], 5);
    stop(&mut server);
    drop(server);

    let server = server_on(&path, &[]);
    let addr = server.addr;
    let page = get(addr, "/rooms/1", &format!("Cookie: {bob_cookie}\r\n"));
    assert_eq!(
        page.status, 200,
        "the restored session still opens the room page"
    );
    let mut bob = reconnect(addr, 1, &bob_cookie, 3);
    let welcome = next_of_type(&mut bob, "welcome");
    let missed = history_field(&welcome, triple);
    assert_eq!(
        missed,
        [
            (4, "alice".into(), "four".into()),
            (5, "alice".into(), "five".into())
        ]
    );
    assert_eq!(welcome["gap"], false);
    // Chat goes on with the next number.
    let mut alice = reconnect(addr, 1, &alice_cookie, 5);
    assert_eq!(
        history_seqs(&next_of_type(&mut alice, "welcome")),
        Vec::<u64>::new()
    );
    alice.send(Message::text("six")).unwrap();
    let next = next_of_type(&mut bob, "message");
    assert_eq!(triple(&next), (6, "alice".into(), "six".into()));
    // A cookie nobody was given is still refused.
    let stranger = "wsrooms_session=0123456789abcdef0123456789abcdef";
    assert_eq!(
        get(addr, "/rooms/1", &format!("Cookie: {stranger}\r\n")).status,
        303
    );
}

#[test]
fn a_room_that_emptied_comes_back_with_its_messages_and_numbering() {
    let dir = TempDir::new("durable-empty-room");
    let path = dir.join("rooms.db");
    let server = server_on(&path, &["--grace-secs", "0"]);
    let addr = server.addr;
    let (mut alice, _) = join(addr, "alice", 7);
    for text in ["a", "b", "c"] {
        alice.send(Message::text(text)).unwrap();
    }
    assert_eq!(next_of_type(&mut alice, "message")["seq"], 1);
    assert_eq!(next_of_type(&mut alice, "message")["seq"], 2);
    assert_eq!(next_of_type(&mut alice, "message")["seq"], 3);
    alice.close(None).unwrap();
    expect_close(&mut alice);
    // The room is gone from memory once alice's reservation ends: the id is free.
    assert!(wait_until(Duration::from_secs(5), || {
        let r = read_metric(addr, "wsrooms_rooms");
        r == 0.0
    }));
    let (mut zed, welcome) = join(addr, "zed", 7);
    let back = history_field(&welcome, triple);
    assert_eq!(
        back,
        [
            (1, "alice".into(), "a".into()),
            (2, "alice".into(), "b".into()),
            (3, "alice".into(), "c".into())
        ]
    );
    zed.send(Message::text("d")).unwrap();
    assert_eq!(next_of_type(&mut zed, "message")["seq"], 4);
}

// ----- crash consistency -----------------------------------------------------

/// A small deterministic generator for the kill moments.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Reads message events from a raw room socket until the connection dies.
fn collect_messages(mut stream: TcpStream) -> std::thread::JoinHandle<Vec<serde_json::Value>> {
    std::thread::spawn(move || {
        let mut got = Vec::new();
        while let Ok(Some(frame)) = read_frame(&mut stream) {
            if frame.opcode != 1 {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&frame.payload).unwrap();
            if v["type"] == "message" {
                got.push(v);
            }
        }
        got
    })
}

/// Every message of room `room` the data file keeps, through scrollback.
fn whole_history(addr: SocketAddr, room: u32, cookie: &str) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    let mut query = "?limit=100".to_string();
    loop {
        let r = get(
            addr,
            &format!("/rooms/{room}/history{query}"),
            &format!("Cookie: {cookie}\r\n"),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let page = v["messages"].as_array().unwrap().clone();
        let Some(first) = page.first() else { break };
        query = format!("?before={}&limit=100", first["seq"]);
        all.splice(0..0, page);
        if v["more"] == false {
            break;
        }
    }
    all
}

/// One crash: 3 clients, one sending 200 messages at ~500/s, SIGKILL after
/// `kill_after`; then every message anyone received is in the restarted
/// server's history, under the same number.
fn crash_once(kill_after: Duration) {
    let dir = TempDir::new("durable-crash");
    let path = dir.join("rooms.db");
    let mut server = server_on(&path, &["--log-level", "warn"]);
    let addr = server.addr;
    let mut readers = Vec::new();
    let mut sender = None;
    for user in ["sender", "reader1", "reader2"] {
        let cookie = login(addr, user, 1);
        let stream = raw_ws(addr, "/rooms/1/ws", Some(&cookie));
        let reading = stream.try_clone().unwrap();
        readers.push(collect_messages(reading));
        if user == "sender" {
            sender = Some(stream);
        }
    }
    let mut sender = sender.unwrap();
    let writer = std::thread::spawn(move || {
        let started = Instant::now();
        for i in 0..200u32 {
            let frame = client_frame(true, 1, format!("msg {i}").as_bytes());
            if sender.write_all(&frame).is_err() {
                return;
            }
            // ~500 per second, paced by the clock, not by sleeps adding up.
            let due = started + Duration::from_millis(2 * (i as u64 + 1));
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    });
    std::thread::sleep(kill_after);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    writer.join().unwrap();
    let received: Vec<Vec<serde_json::Value>> =
        readers.into_iter().map(|r| r.join().unwrap()).collect();
    drop(server);

    let server = server_on(&path, &["--log-level", "warn"]);
    let addr = server.addr;
    let cookie = login(addr, "checker", 1);
    let kept: BTreeMap<u64, (String, String)> = whole_history(addr, 1, &cookie)
        .iter()
        .map(|m| {
            let (seq, user, text) = triple(m);
            (seq, (user, text))
        })
        .collect();
    let mut highest = 0;
    for (client, messages) in received.iter().enumerate() {
        let seqs: Vec<u64> = messages.iter().map(|m| triple(m).0).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "client {client}: numbers not strictly increasing: {seqs:?}"
        );
        for m in messages {
            let (seq, user, text) = triple(m);
            assert_eq!(
                kept.get(&seq),
                Some(&(user.clone(), text.clone())),
                "client {client} saw #{seq} {user}: {text:?} before the kill ({kill_after:?}); \
                 the restarted server keeps {} messages",
                kept.len()
            );
            highest = highest.max(seq);
        }
    }
    let kept_seqs: Vec<u64> = kept.keys().copied().collect();
    assert_eq!(
        kept_seqs,
        (1..=kept_seqs.len() as u64).collect::<Vec<_>>(),
        "no hole, none twice"
    );
    let mut ws = ws_connect(addr, 1, &cookie);
    next_of_type(&mut ws, "welcome");
    ws.send(Message::text("after the crash")).unwrap();
    let next = next_of_type(&mut ws, "message");
    let next_seq = next["seq"].as_u64().unwrap();
    assert!(
        next_seq > highest,
        "#{next_seq} after a crash that had shown #{highest}"
    );
    assert_eq!(next_seq, kept_seqs.len() as u64 + 1);
    eprintln!(
        "killed after {kill_after:?}: clients had seen up to #{highest}, {} kept, next #{next_seq}",
        kept.len()
    );
}

#[test]
fn after_sigkill_every_message_anyone_saw_is_kept_with_its_number() {
    let mut moments = Lcg(0x5eed_2024);
    for _ in 0..5 {
        // Somewhere in the 400 ms the sender takes (or just after).
        let kill_after = Duration::from_millis(20 + moments.below(400));
        crash_once(kill_after);
    }
}

#[test]
fn a_logout_is_kept_across_a_restart() {
    let dir = TempDir::new("durable-logout");
    let path = dir.join("rooms.db");
    let mut server = server_on(&path, &[]);
    let addr = server.addr;
    let alice = login(addr, "alice", 4);
    let bob = login(addr, "bob", 4);
    let r = logout_raw(addr, 4, Some(&alice), &format!("Origin: http://{addr}\r\n"));
    assert_eq!(r.status, 303);
    stop(&mut server);
    let server = server_on(&path, &[]);
    let addr = server.addr;
    // Bob's session came back; Alice's did not, and her id is free.
    let page = |cookie: &str| get(addr, "/rooms/4", &format!("Cookie: {cookie}\r\n")).status;
    assert_eq!((page(&bob), page(&alice)), (200, 303));
    assert_eq!(login_raw(addr, "alice", "4").status, 303);
    assert_eq!(login_raw(addr, "bob", "4").status, 409);
}

#[test]
fn after_a_restart_an_id_is_held_for_the_grace_not_only_the_reserve() {
    let dir = TempDir::new("durable-grace");
    let path = dir.join("rooms.db");
    // A reservation of 1 s, a grace of a day (the default).
    let mut server = server_on(&path, &["--reserve-secs", "1"]);
    let addr = server.addr;
    let (mut alice, _) = join(addr, "alice", 5);
    alice.close(None).unwrap();
    expect_close(&mut alice);
    stop(&mut server);
    let server = server_on(&path, &["--reserve-secs", "1"]);
    // Well past --reserve-secs after the start, alice's id is still hers.
    // (A wait, not an event: what is checked is that nothing happens.)
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(login_raw(server.addr, "alice", "5").status, 409);
}

/// `--max-sessions` holds after a restart: with 100 sessions on disk and a
/// cap of 10, the 10 newest logins are restored (and work), the 90 older
/// ones end (and are deleted from the file), and a new login is `503` only
/// while the cap is reached.
#[test]
fn sessions_restored_from_disk_respect_max_sessions_newest_first() {
    let dir = TempDir::new("durable-max-sessions");
    let path = dir.join("rooms.db");
    let mut server = server_on(&path, &[]);
    let cookies: Vec<String> = (0..100)
        .map(|i| login(server.addr, &format!("u{i}"), 1 + i % 10))
        .collect();
    stop(&mut server);
    // Logins within one millisecond share a time: make the order explicit.
    let db = rusqlite::Connection::open(&path).unwrap();
    for i in 0..100 {
        db.execute(
            "UPDATE sessions SET login_at = ?1 WHERE user = ?2",
            rusqlite::params![1_700_000_000_000i64 + i, format!("u{i}")],
        )
        .unwrap();
    }
    drop(db);

    let mut server = server_on(&path, &["--max-sessions", "10"]);
    let addr = server.addr;
    assert_eq!(read_metric(addr, "wsrooms_sessions"), 10.0);
    for i in 90..100u32 {
        let mut ws = ws_connect(addr, 1 + i % 10, &cookies[i as usize]);
        assert_eq!(next_of_type(&mut ws, "welcome")["user"], format!("u{i}"));
    }
    for i in [0u32, 45, 89] {
        let refused = ws_connect_path(
            addr,
            &format!("/rooms/{}/ws", 1 + i % 10),
            Some(&cookies[i as usize]),
            Some(&format!("http://{addr}")),
        );
        assert!(
            matches!(&refused, Err(tungstenite::Error::Http(r)) if r.status() == 403),
            "u{i}'s old session ended: {refused:?}"
        );
    }
    assert_eq!(login_raw(addr, "newcomer", "3").status, 503, "at the cap");
    server
        .log
        .wait_for(&["90 older sessions ended"], Duration::from_secs(5));
    stop(&mut server);

    // The 90 were deleted from the file: one more allowed, one more login.
    let server = server_on(&path, &["--max-sessions", "11"]);
    assert_eq!(read_metric(server.addr, "wsrooms_sessions"), 10.0);
    login(server.addr, "newcomer", 3);
    assert_eq!(read_metric(server.addr, "wsrooms_sessions"), 11.0);
}

/// Sends `count` messages "{name}-0001-…" to `ws`'s room, each after the
/// one before came back: one per loop turn, as in a quiet room, so each is
/// a chunk of its own and the room's rows fill pages of their own (a
/// page of the `chunks` table holds the rows of the turns that wrote it,
/// whatever their rooms).
fn fill_room(ws: &mut Ws, name: &str, count: u64) {
    let pad = "x".repeat(150);
    for seq in 1..=count {
        ws.send(Message::text(format!("{name}-{seq:04}-{pad}")))
            .unwrap();
        while next_of_type(ws, "message")["seq"] != seq {}
    }
}

/// Writes garbage over every page of the (closed) file that holds
/// `marker` in a row of `chunks`: a table b-tree leaf (type 0x0d), or an
/// overflow page, where a row of several KiB (a busy turn's chunk) goes on
/// (it starts with the next overflow page's number, so with a 0 byte in a
/// file this small). The index holds no text.
fn damage_leaf_pages(path: &Path, marker: &[u8]) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let size = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    let mut damaged = 0;
    for page in bytes.chunks_mut(size).skip(1) {
        let rows = page[0] == 0x0d || page[0] == 0;
        if rows && page.windows(marker.len()).any(|w| w == marker) {
            page.fill(0xa5);
            damaged += 1;
        }
    }
    std::fs::write(path, bytes).unwrap();
    damaged
}

/// Alice in room 1 and Bob in room 2, each room filled with 300 messages
/// ("one-…", "two-…"), then the server stopped: their cookies.
fn two_full_rooms(path: &Path, flags: &[&str]) -> (String, String) {
    let mut server = server_on(path, flags);
    let addr = server.addr;
    let (alice_cookie, bob_cookie) = (login(addr, "alice", 1), login(addr, "bob", 2));
    let mut alice = ws_connect(addr, 1, &alice_cookie);
    fill_room(&mut alice, "one", 300);
    let mut bob = ws_connect(addr, 2, &bob_cookie);
    fill_room(&mut bob, "two", 300);
    drop((alice, bob));
    stop(&mut server);
    (alice_cookie, bob_cookie)
}

/// A damaged page in one room's old messages: scrollback into it is `500`
/// and logged once for all requests, a new message in that room (whose
/// pruning reaches the damage) is still delivered, the other room works as
/// before, and `/healthz` stays `503 degraded`.
#[test]
fn damaged_pages_of_one_room_do_not_take_the_others_down() {
    let dir = TempDir::new("durable-damaged");
    let path = dir.join("rooms.db");
    let keep = ["--keep-messages", "300"];
    let (alice_cookie, bob_cookie) = two_full_rooms(&path, &keep);
    assert!(!dir.join("rooms.db-wal").exists(), "all in the main file");
    let n = damage_leaf_pages(&path, b"one-00");
    assert!(n >= 2, "room 1 oldest: {n}");

    let server = server_on(&path, &keep);
    let addr = server.addr;
    let mut alice = reconnect(addr, 1, &alice_cookie, 300);
    let mut bob = reconnect(addr, 2, &bob_cookie, 300);
    let alice_header = format!("Cookie: {alice_cookie}\r\n");
    for _ in 0..3 {
        let page = get(addr, "/rooms/1/history?before=50&limit=10", &alice_header);
        assert_eq!(page.status, 500, "{}", page.text());
    }
    let healthz = get(addr, "/healthz", "");
    assert_eq!(
        (healthz.status, healthz.text().trim()),
        (503, "degraded"),
        "{}",
        server.log.all()
    );
    // Room 1's next message prunes its oldest (damaged) pages: delivered.
    alice.send(Message::text("after the damage")).unwrap();
    assert_eq!(next_of_type(&mut alice, "message")["seq"], 301);
    bob.send(Message::text("room 2 as before")).unwrap();
    assert_eq!(next_of_type(&mut bob, "message")["seq"], 301);
    let page = get(
        addr,
        "/rooms/2/history?before=50&limit=10",
        &format!("Cookie: {bob_cookie}\r\n"),
    );
    assert_eq!(page.status, 200, "{}", page.text());
    for _ in 0..3 {
        assert_eq!(get(addr, "/healthz", "").status, 503, "steadily");
    }
    let errors = server.log.matching(&[" ERROR "]);
    assert_eq!(errors.len(), 1, "logged once:\n{}", server.log.all());
    assert!(errors[0].contains("damaged"), "{}", errors[0]);
}

/// Damage in one room's newest messages: the room cannot be read at
/// start, so its numbering is unknown. A message to it is refused (its
/// sender closed with `1011`) rather than numbered from 1 again, which
/// met the `seq`s still in the file and failed the whole commit, the other
/// room's messages with it.
#[test]
fn a_room_that_cannot_be_read_at_start_refuses_messages_and_the_other_goes_on() {
    let dir = TempDir::new("durable-unreadable");
    let path = dir.join("rooms.db");
    let keep = ["--keep-messages", "300"];
    let (alice_cookie, bob_cookie) = two_full_rooms(&path, &keep);
    let n = damage_leaf_pages(&path, b"one-029") + damage_leaf_pages(&path, b"one-0300");
    assert!(n >= 1, "room 1 newest");

    let server = server_on(&path, &keep);
    let addr = server.addr;
    let mut alice = reconnect(addr, 1, &alice_cookie, 300);
    let mut bob = reconnect(addr, 2, &bob_cookie, 300);
    alice.send(Message::text("into the unknown")).unwrap();
    bob.send(Message::text("room 2 as before")).unwrap();
    assert_eq!(next_of_type(&mut bob, "message")["seq"], 301);
    assert_eq!(expect_close(&mut alice).0, 1011, "{}", server.log.all());
    bob.send(Message::text("and again")).unwrap();
    assert_eq!(next_of_type(&mut bob, "message")["seq"], 302);
    assert_eq!(get(addr, "/healthz", "").status, 503);
}

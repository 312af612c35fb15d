//! A busy data file: another process holds the file's write lock (a
//! `sqlite3` shell in `BEGIN IMMEDIATE`, a tool's blocking checkpoint)
//! while clients chat. The turn's commit finds the file busy; it keeps its
//! messages and logins and is tried again until the lock is let go:
//! nothing is delivered before it is stored, nothing is lost, nothing is
//! delivered twice, nobody is closed with `1011`, and `/healthz` says
//! `503 degraded` while it lasts more than a second.
//!
//! The other process is this test's own, with its own SQLite connection:
//! SQLite's locks are POSIX locks between processes, as a shell's would be.

mod common;

use std::time::Duration;

use common::*;
use tungstenite::Message;

fn health(server: &Spawned) -> (u16, String) {
    let r = get(server.addr, "/healthz", "");
    (r.status, r.text())
}

fn delivered(server: &Spawned) -> f64 {
    read_metric(server.addr, "wsrooms_messages_out_total")
}

#[test]
fn messages_wait_for_a_busy_file_and_all_arrive_once_it_is_free() {
    let dir = TempDir::new("busy-file");
    let path = dir.join("rooms.db");
    let server = spawn_binary(&["--rate-limit", "0", "--data-file", path.to_str().unwrap()]);
    let (mut alice, _) = join(server.addr, "alice", 1);
    let (mut bob, _) = join(server.addr, "bob", 1);
    next_of_type(&mut alice, "join"); // bob's
    alice.send(Message::text("before")).unwrap();
    let before = next_of_type(&mut bob, "message");
    next_of_type(&mut alice, "message");
    let first_seq = before["seq"].as_u64().unwrap();

    // Another process takes the write lock and keeps it.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();

    let out_before = delivered(&server);
    const HELD: u64 = 20;
    for n in 0..HELD {
        alice.send(Message::text(format!("held {n}"))).unwrap();
    }
    // A login meanwhile waits for the lock as well (its 303 is held).
    let addr = server.addr;
    let carol = std::thread::spawn(move || login(addr, "carol", 1));
    assert!(
        wait_until(Duration::from_secs(10), || health(&server).0 == 503),
        "/healthz never said degraded while the file was busy"
    );
    let (_, text) = health(&server);
    assert!(text.contains("degraded"), "{text}");
    assert_eq!(
        delivered(&server),
        out_before,
        "a message was delivered before it was stored"
    );
    assert!(
        !carol.is_finished(),
        "the login was answered before it was stored"
    );
    server
        .log
        .wait_for(&["data file is busy"], Duration::from_secs(5));

    // The other process lets go: everything arrives, in order, once.
    other.execute_batch("ROLLBACK").unwrap();
    for n in 0..HELD {
        let m = next_of_type(&mut bob, "message");
        assert_eq!(m["text"], format!("held {n}"), "{m}");
        assert_eq!(m["seq"].as_u64().unwrap(), first_seq + 1 + n, "{m}");
        let echo = next_of_type(&mut alice, "message");
        assert_eq!(echo["seq"], m["seq"]);
    }
    let cookie = carol.join().expect("carol's login got its 303");
    assert!(cookie.starts_with("wsrooms"), "{cookie}");
    alice.send(Message::text("after")).unwrap();
    let after = next_of_type(&mut bob, "message");
    assert_eq!(after["seq"].as_u64().unwrap(), first_seq + 1 + HELD);
    assert!(
        wait_until(Duration::from_secs(5), || health(&server).0 == 200),
        "/healthz stayed degraded after the file was free: {:?}",
        health(&server)
    );
    server.log.wait_for(
        &["writing to the data file works again"],
        Duration::from_secs(5),
    );
    drop(server);

    // Every message is in the file, once.
    let file = rusqlite::Connection::open(&path).unwrap();
    let (count, distinct): (i64, i64) = file
        .query_row(
            "SELECT count(*), count(DISTINCT text) FROM messages WHERE room = 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!((count, distinct), (HELD as i64 + 2, HELD as i64 + 2));
}

/// The last session of a room ends while an event of the room (here the
/// operator's delete) waits for the busy file, and someone logs in to the
/// room before the file is free: the room stays in memory until that
/// event is out, so the new login numbers on from it. (It used to be
/// freed at once and read back from the file, which did not have the
/// event yet: the next message took the same `seq`, its commit failed,
/// and its sender got `1011`, again at every try.)
#[test]
fn a_room_emptied_while_its_event_waits_numbers_on_from_that_event() {
    let dir = TempDir::new("busy-file-emptied");
    let path = dir.join("rooms.db");
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = spawn_binary(&[
        "--rate-limit",
        "0",
        "--data-file",
        path.to_str().unwrap(),
        "--admin-bind",
        &admin.to_string(),
        "--leave-delay-secs",
        "0",
        "--grace-secs",
        "1",
    ]);
    let addr = server.addr;
    let (mut alice, _) = join(addr, "alice", 7);
    alice.send(Message::text("first")).unwrap();
    assert_eq!(next_of_type(&mut alice, "message")["seq"], 1);
    // Alice closes her page: her id stays reserved for a second.
    alice.close(None).unwrap();
    while alice.read().is_ok() {}

    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    // The operator's delete: its answer waits for the file, as its event.
    let requests = read_metric(addr, "wsrooms_http_requests_total");
    let delete =
        std::thread::spawn(move || admin_post(admin, "/admin/rooms/7/messages/1/delete", ""));
    assert!(
        wait_until(IO_TIMEOUT, || {
            read_metric(addr, "wsrooms_http_requests_total") >= requests + 2.0
        }),
        "the server never read the delete"
    );
    // The delete (seq 2) waits; alice's reservation lapses meanwhile, and
    // the room has nobody.
    assert!(
        wait_until(IO_TIMEOUT, || read_metric(addr, "wsrooms_sessions") == 0.0),
        "alice's reservation never lapsed"
    );
    // Bob logs in to the room meanwhile; his 303 waits for the file.
    let requests = read_metric(addr, "wsrooms_http_requests_total");
    let bob_login = std::thread::spawn(move || login(addr, "bob", 7));
    assert!(
        wait_until(IO_TIMEOUT, || {
            read_metric(addr, "wsrooms_http_requests_total") >= requests + 2.0
        }),
        "the server never read bob's login"
    );
    drop(other); // lets the lock go

    let r = delete.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = bob_login.join().unwrap();
    let mut bob = ws_connect(addr, 7, &cookie);
    let welcome = next_event(&mut bob);
    let seqs: Vec<u64> = welcome["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|m| m["seq"].as_u64())
        .collect();
    assert!(seqs.contains(&1) && !seqs.contains(&3), "{welcome}");
    bob.send(Message::text("after")).unwrap();
    let after = next_of_type(&mut bob, "message");
    assert_eq!(after["seq"], 3, "{after}");
    assert_eq!(after["text"], "after", "{after}");
    assert_eq!(read_metric(addr, "wsrooms_persist_errors_total"), 0.0);
}

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

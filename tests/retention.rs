//! Retention by age (`--keep-days`): a server started on a file whose
//! messages are days old deletes them, removes the rooms nobody is in, and
//! gives the space back: the file shrinks while it runs. A room with a
//! recent message keeps it. (The old `at` times are written into the file
//! before the start: the binary has no clock to set.)

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use tungstenite::Message;
use wsrooms::store::{self, Store};

const DAY_MS: u64 = 86_400_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `count` messages of `room` from seq 1, all at `at`.
fn post(store: &mut Store, room: u32, count: u64, at: u64, text: &str) {
    for seq in 1..=count {
        store.record_message(store::Message {
            room,
            seq,
            at,
            user: "old",
            text,
            kind: store::Kind::SAID,
        });
    }
    store.commit().unwrap();
}

/// The data file's size in bytes (its log is bounded apart: see the
/// checkpoints test).
fn bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[test]
fn messages_older_than_keep_days_go_and_the_file_shrinks() {
    let dir = TempDir::new("retention");
    let path = dir.join("rooms.db");
    let text = "x".repeat(900);
    {
        let mut store = Store::open(&path, 10_000).unwrap();
        let old = now_ms() - 3 * DAY_MS;
        for room in 2..=201 {
            post(&mut store, room, 50, old, &text);
        }
        post(&mut store, 1, 5, now_ms(), "recent");
    }
    let before = bytes(&path);
    assert!(before > 8_000_000, "{before} bytes to start with");

    let server = spawn_binary(&[
        "--rate-limit",
        "0",
        "--keep-days",
        "1",
        "--log-level",
        "debug",
        "--data-file",
        path.to_str().unwrap(),
    ]);
    let shrunk = wait_until(Duration::from_secs(30), || bytes(&path) < before / 4);
    let wal = std::fs::metadata(path.with_extension("db-wal")).map(|m| m.len());
    assert!(
        shrunk,
        "the file still has {} of {before} bytes (log: {wal:?}); {}",
        bytes(&path),
        server.log.all()
    );

    // Room 2 was removed: it starts again like a new room.
    let (mut bob, welcome) = join(server.addr, "bob", 2);
    assert!(history_seqs(&welcome).is_empty(), "{welcome}");
    bob.send(Message::text("new")).unwrap();
    assert_eq!(next_of_type(&mut bob, "message")["seq"], 1);
    // Room 1's messages are recent: all kept.
    let (_carol, welcome) = join(server.addr, "carol", 1);
    assert_eq!(history_seqs(&welcome), [1, 2, 3, 4, 5]);
}

//! Start-up is bounded by what is live, not by the file: on a file of
//! 100,000 rooms × 20 messages (and one session), the real binary answers
//! `/healthz` within 1 s of its start with at most 64 MB of peak resident
//! memory, and a room left on disk comes back, with its numbering, when
//! someone logs into it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;
use wsrooms::store::{Store, TokenHash};

const ROOMS: u32 = 100_000;
const PER_ROOM: u32 = 20;

#[test]
fn a_hundred_thousand_rooms_on_disk_start_in_a_second_and_64_mb() {
    let dir = TempDir::new("startup-bounded");
    let path = dir.join("rooms.db");
    {
        let mut store = Store::open(&path, 10_000).unwrap();
        store.record_login(TokenHash([1; 32]), 7, "zoë", 0);
        store.commit().unwrap();
    }
    // The rows, written by SQL (the schema is the store's own): each room's
    // messages as one chunk (`src/store/events.rs`), the same for every room.
    let events: Vec<String> = (1..=PER_ROOM)
        .map(|k| {
            format!(
                "[{k},{},\"someone\",\"a chat line of ordinary length, about sixty characters long\"]",
                1_700_000_000_000u64 + k as u64
            )
        })
        .collect();
    let chunk = format!("[{}]", events.join(","));
    let mut conn = rusqlite::Connection::open(&path).unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute_batch(&format!(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < {ROOMS})
         INSERT INTO rooms (number) SELECT n FROM r;"
    ))
    .unwrap();
    tx.execute(
        "INSERT INTO chunks (room, first, last, at, events)
         SELECT number, 1, ?1, ?2, ?3 FROM rooms",
        rusqlite::params![PER_ROOM, 1_700_000_000_000i64 + PER_ROOM as i64, chunk],
    )
    .unwrap();
    tx.commit().unwrap();
    drop(conn);

    let started = Instant::now();
    let server = spawn_binary(&["--data-file", path.to_str().unwrap()]);
    assert!(
        wait_until(Duration::from_secs(10), || get(server.addr, "/healthz", "")
            .status
            == 200),
        "no /healthz"
    );
    let ready = started.elapsed();
    let peak_kb = status_kb(server.child.id(), "VmHWM");
    assert!(ready < Duration::from_secs(1), "healthy after {ready:?}");
    assert!(peak_kb <= 64 * 1024, "peak RSS {peak_kb} kB");

    // A room read only now: its history and numbering are there.
    let (mut bob, welcome) = join(server.addr, "bob", 54_321);
    assert_eq!(history_seqs(&welcome).len(), PER_ROOM as usize);
    bob.send(Message::text("hello")).unwrap();
    assert_eq!(
        next_of_type(&mut bob, "message")["seq"],
        u64::from(PER_ROOM) + 1
    );
}

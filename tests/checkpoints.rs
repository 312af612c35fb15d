//! With `--data-file`, the log's checkpoints (copies into the main file)
//! run on the store's helper thread, after a turn's output is written, once
//! the log holds `CHECKPOINT_BYTES`; the log starts again once a checkpoint
//! found nothing more to copy, and if commits never leave it such a moment,
//! the loop checkpoints itself at `OVERDUE_CHECKPOINTS` times that (waiting
//! for the helper's checkpoint only at `HARD_CAP_BYTES`): the log file stays bounded
//! under a steady stream of messages, and every message is still there
//! after a crash.

mod common;

use common::*;
use tungstenite::Message;
use wsrooms::store::wal::{CHECKPOINT_BYTES, HARD_CAP_BYTES};

/// The log's size bound in the server, plus one turn's commit and the
/// header (generous for the one-message turns used here).
const LOG_BOUND: u64 = HARD_CAP_BYTES as u64 + 64 * 1024;

#[test]
fn the_log_stays_small_and_a_crash_loses_nothing() {
    let dir = TempDir::new("checkpoints");
    let path = dir.join("rooms.db");
    let args = [
        "--rate-limit",
        "0",
        "--max-chat-chars",
        "1000",
        "--data-file",
        path.to_str().unwrap(),
    ];
    let mut server = spawn_binary(&args);
    let (mut alice, _) = join(server.addr, "alice", 1);
    // About 3 pages of 4 KiB per message: each is its own turn and commit.
    let text = "x".repeat(900);
    let messages = 3 * u64::from(CHECKPOINT_BYTES) / (3 * 4096) + 100;
    for seq in 1..=messages {
        alice.send(Message::text(text.clone())).unwrap();
        assert_eq!(next_of_type(&mut alice, "message")["seq"], seq);
    }
    // The helper thread's checkpoints run beside the loop: on a busy
    // machine the last ones may still be running (their syncs waiting for
    // the disk) when the last message comes back. On a disk other programs
    // keep busy, one checkpoint whose syncs take seconds can copy the whole
    // stream (it copies what came meanwhile too), so one is all that is
    // sure to end.
    let checkpoints = || read_metric(server.addr, "wsrooms_checkpoints_total");
    assert!(
        wait_until(6 * IO_TIMEOUT, || checkpoints() >= 1.0),
        "{} checkpoints",
        checkpoints()
    );
    let log = std::fs::metadata(dir.join("rooms.db-wal")).unwrap().len();
    assert!(log <= LOG_BOUND, "the log file has {log} bytes");

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = spawn_binary(&args);
    let (_bob, welcome) = join(server.addr, "bob", 1);
    let history = welcome["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["seq"], messages, "{welcome}");
    let cookie = format!("Cookie: {}\r\n", login(server.addr, "carol", 1));
    let r = get(server.addr, "/rooms/1/history?before=2&limit=1", &cookie);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"seq\":1"), "the oldest: {}", r.text());
}

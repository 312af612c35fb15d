//! The power-loss window (`--sync-ms`): with a data file, every commit is
//! synced to the disk within `--sync-ms` of being made, on a quiet server
//! too, and `--sync-ms 0` syncs each turn's commit before its output. The
//! syncs are read from `/metrics` (`wsrooms_store_syncs_total`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;

fn server_with(dir: &TempDir, sync_ms: &str) -> Spawned {
    let path = dir.join("rooms.db");
    spawn_binary(&[
        "--rate-limit",
        "0",
        "--data-file",
        path.to_str().unwrap(),
        "--sync-ms",
        sync_ms,
    ])
}

fn syncs(server: &Spawned) -> f64 {
    read_metric(server.addr, "wsrooms_store_syncs_total")
}

/// Sends `text` and waits for its own message event: the commit is made.
fn say(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).unwrap();
    next_of_type(ws, "message");
}

#[test]
fn a_quiet_server_syncs_a_commit_within_sync_ms() {
    let dir = TempDir::new("sync-quiet");
    let server = server_with(&dir, "200");
    let (mut alice, _) = join(server.addr, "alice", 1);
    for round in 0..3 {
        let before = syncs(&server);
        say(&mut alice, &format!("quiet {round}"));
        let committed = Instant::now();
        assert!(
            wait_until(Duration::from_secs(5), || syncs(&server) > before),
            "round {round}: no sync after a commit"
        );
        let took = committed.elapsed();
        // 200 ms, plus the sync itself and the scrapes on a busy machine.
        assert!(
            took < Duration::from_millis(600),
            "round {round}: synced {took:?} after the commit"
        );
        // Quiet for longer than the window: the next commit is the only one.
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_busy_server_syncs_at_most_once_per_window() {
    let dir = TempDir::new("sync-busy");
    let server = server_with(&dir, "1000");
    let (mut alice, _) = join(server.addr, "alice", 1);
    let started = Instant::now();
    let before = syncs(&server);
    let commits_before = read_metric(server.addr, "wsrooms_commits_total");
    for n in 0..30 {
        say(&mut alice, &format!("busy {n}"));
    }
    let commits = read_metric(server.addr, "wsrooms_commits_total") - commits_before;
    let syncs_made = syncs(&server) - before;
    let windows = started.elapsed().as_secs_f64().ceil() + 1.0;
    assert!(commits >= 30.0, "{commits} commits");
    assert!(
        syncs_made <= windows,
        "{syncs_made} syncs for {commits} commits in {:?}",
        started.elapsed()
    );
}

#[test]
fn sync_ms_zero_syncs_every_commit_before_its_output() {
    let dir = TempDir::new("sync-every");
    let server = server_with(&dir, "0");
    let (mut alice, _) = join(server.addr, "alice", 1);
    let before = syncs(&server);
    let commits_before = read_metric(server.addr, "wsrooms_commits_total");
    for n in 0..10 {
        say(&mut alice, &format!("synced {n}"));
        // Read right after the message arrived: its sync came before it.
        let commits = read_metric(server.addr, "wsrooms_commits_total") - commits_before;
        assert_eq!(syncs(&server) - before, commits, "after message {n}");
    }
}

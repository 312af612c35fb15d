//! What the durable store costs the poll loop: time per commit (a blocking
//! call per loop turn) for turns of 1, 10 and 100 messages and of the
//! checkpoints that follow them (the other blocking call), the
//! time to record a message, messages per second sustained (with pruning
//! at work), database bytes per million messages, and the start-up
//! `open + load` with 10,000 rooms × 50 messages and 100,000 sessions.
//!
//! Real files in a temporary directory under `target/` (on disk, not a
//! tmpfs). Numbers are wall-clock on a shared machine: compare runs on the
//! same machine only.
//!
//! The last row starts the real binary on a file of 100,000 rooms × 20
//! messages (and no session) and measures the time until `/healthz`
//! answers and the process's peak resident memory: start-up reads the
//! sessions and their rooms only.
//!
//! `cargo bench --bench store` (all rows), `cargo bench --bench store --
//! startup` (the start-up rows only), `… -- sync` (the commit with each
//! `--sync-ms`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wsrooms::store::{DEFAULT_KEEP_MESSAGES, Kind, Message, Settings, Store, SyncEvery, TokenHash};

const TEXT: &str = "a chat line of ordinary length, about sixty characters long";

fn message(room: u32, seq: u64, text: &str) -> Message<'_> {
    Message {
        room,
        seq,
        at: 1_763_770_000_000 + seq,
        user: "someone",
        text,
        // As the server writes a message: with its author's token hash.
        kind: Kind::Said {
            author: Some(TokenHash([7; 32])),
        },
    }
}

/// Round-robin over `rooms`, keeping each room's next seq.
struct Feed {
    next_seq: Vec<u64>,
    turn: usize,
    /// The checkpoints' times, taken as the server does (after a turn, when due).
    checkpoints: Vec<Duration>,
}

impl Feed {
    fn new(rooms: usize) -> Self {
        Feed {
            next_seq: vec![1; rooms],
            turn: 0,
            checkpoints: Vec::new(),
        }
    }

    /// Records `count` messages and commits them; returns the commit's time.
    /// Then checkpoints if the log is due for one (timed apart).
    fn turn(&mut self, store: &mut Store, count: usize) -> Duration {
        let commit = self.commit_turn(store, count);
        if store.checkpoint_due() {
            let start = Instant::now();
            store.checkpoint().expect("checkpoint");
            self.checkpoints.push(start.elapsed());
        }
        commit
    }

    fn commit_turn(&mut self, store: &mut Store, count: usize) -> Duration {
        for _ in 0..count {
            let room = self.turn % self.next_seq.len();
            self.turn += 1;
            let seq = self.next_seq[room];
            self.next_seq[room] += 1;
            store.record_message(message(room as u32 + 1, seq, TEXT));
        }
        let start = Instant::now();
        store.commit().expect("commit");
        start.elapsed()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn file_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir")
}

/// µs per commit for turns of `batch` messages spread over `rooms` rooms.
/// One room is the fan-out case (every message of a turn lands on the same
/// B-tree page); 100 rooms round-robin is the worst case (each message of a
/// turn dirties a page of its own, and a commit writes whole 4 KiB pages).
fn commit_cost(rooms: usize, batch: usize, turns: usize) {
    commit_cost_with(rooms, batch, turns, &Settings::default());
}

/// [`commit_cost`] with the store's settings (`--sync-ms`); the time of a
/// commit includes its sync with `--sync-ms 0`.
fn commit_cost_with(rooms: usize, batch: usize, turns: usize, settings: &Settings) {
    let dir = temp_dir();
    let mut store = Store::open_with(&dir.path().join("bench.db"), settings).unwrap();
    let mut feed = Feed::new(rooms);
    for _ in 0..100 {
        feed.turn(&mut store, batch); // warm up: statements prepared, pages cached
    }
    feed.checkpoints.clear();
    let mut times: Vec<Duration> = (0..turns).map(|_| feed.turn(&mut store, batch)).collect();
    times.sort();
    let mean = times.iter().sum::<Duration>() / turns as u32;
    let slow = times
        .iter()
        .filter(|t| **t > Duration::from_millis(1))
        .count();
    let sync_ms = match settings.sync {
        SyncEvery::Commit => 0,
        SyncEvery::Within(d) => d.as_millis(),
    };
    println!(
        "commit, --sync-ms {sync_ms:>4}, {rooms:>3} room(s), {batch:>3} message(s)/turn: \
         mean {:7.1} µs  p50 {:7.1}  p99 {:7.1}  max {:8.1}  = {:5.2} µs/message; \
         {slow} of {turns} commits over 1 ms; {} log syncs",
        us(mean),
        us(percentile(&times, 0.5)),
        us(percentile(&times, 0.99)),
        us(times[turns - 1]),
        us(mean) / batch as f64,
        store.sync_stats().syncs()
    );
    let mut checkpoints = std::mem::take(&mut feed.checkpoints);
    checkpoints.sort();
    if let Some(max) = checkpoints.last() {
        let n = checkpoints.len();
        println!(
            "    then {n} checkpoints (one per {:.0} commits): p50 {:7.1} µs  p99 {:7.1}  max {:8.1}",
            turns as f64 / n as f64,
            us(percentile(&checkpoints, 0.5)),
            us(percentile(&checkpoints, 0.99)),
            us(*max)
        );
    }
}

/// ns per `record_message` (the hot-path half of the store's cost).
fn record_cost() {
    let dir = temp_dir();
    let mut store = Store::open(&dir.path().join("bench.db"), DEFAULT_KEEP_MESSAGES).unwrap();
    let per_turn = 100;
    let turns = 2_000;
    let mut recording = Duration::ZERO;
    for turn in 0..turns {
        let start = Instant::now();
        for i in 0..per_turn {
            let seq = (turn * per_turn + i + 1) as u64;
            store.record_message(message((i % 10) as u32 + 1, seq, TEXT));
        }
        recording += start.elapsed();
        store.commit().unwrap();
    }
    let ns = recording.as_secs_f64() * 1e9 / (turns * per_turn) as f64;
    println!("record_message: {ns:.0} ns per message");
}

/// Messages per second through record + commit, turns of 100, `rooms`
/// rooms, `keep` kept per room; returns the directory's bytes at the end
/// (after a clean close, so the log is folded in).
fn sustained(total: usize, rooms: usize, keep: u64, label: &str) -> u64 {
    let dir = temp_dir();
    let mut store = Store::open(&dir.path().join("bench.db"), keep).unwrap();
    let mut feed = Feed::new(rooms);
    let start = Instant::now();
    for _ in 0..total / 100 {
        feed.turn(&mut store, 100);
    }
    let elapsed = start.elapsed();
    println!(
        "sustained ({label}): {:.0} messages/s, {:.0} commits/s ({total} messages in {:.2} s)",
        total as f64 / elapsed.as_secs_f64(),
        (total / 100) as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    drop(store);
    file_bytes(dir.path())
}

/// A file with 10,000 rooms × 50 messages and 100,000 sessions, then the
/// time of `open` + `load(50)` on it (warm page cache).
fn startup() {
    let dir = temp_dir();
    let path = dir.path().join("bench.db");
    let mut store = Store::open(&path, DEFAULT_KEEP_MESSAGES).unwrap();
    for room in 1..=10_000u32 {
        for seq in 1..=50 {
            store.record_message(message(room, seq, TEXT));
        }
        if room % 200 == 0 {
            store.commit().unwrap();
        }
    }
    for n in 0..100_000u32 {
        let mut token = [0u8; 16];
        token[..4].copy_from_slice(&n.to_be_bytes());
        store.record_login(TokenHash::of(&token), n % 10_000 + 1, "someone", 0);
        if n % 10_000 == 9_999 {
            store.commit().unwrap();
        }
    }
    drop(store);
    let bytes = file_bytes(dir.path());
    let start = Instant::now();
    let store = Store::open(&path, DEFAULT_KEEP_MESSAGES).unwrap();
    let opened = start.elapsed();
    let loaded = store.load(50).unwrap();
    let total = start.elapsed();
    let messages: usize = loaded.rooms.iter().map(|r| r.history.len()).sum();
    assert_eq!((loaded.rooms.len(), messages), (10_000, 500_000));
    assert_eq!(loaded.sessions.len(), 100_000);
    println!(
        "start-up: open {:.1} ms + load {:.0} ms = {:.0} ms for 10,000 rooms × 50 messages \
         and 100,000 sessions ({:.1} MB file, warm page cache)",
        opened.as_secs_f64() * 1e3,
        (total - opened).as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3,
        bytes as f64 / 1e6
    );
}

/// The commit as the loop sees it with `--sync-ms 0` (each commit synced
/// before the turn's output) next to the default (synced by the sync
/// thread within 1000 ms).
fn sync_rows() {
    let every = Settings {
        sync: SyncEvery::Commit,
        ..Settings::default()
    };
    for batch in [1, 10] {
        commit_cost_with(1, batch, 2_000, &Settings::default());
        commit_cost_with(1, batch, 2_000, &every);
    }
}

/// A file of `rooms` rooms × `per_room` messages, no session.
fn many_rooms_file(path: &Path, rooms: u32, per_room: u64) {
    let mut store = Store::open(path, DEFAULT_KEEP_MESSAGES).unwrap();
    for room in 1..=rooms {
        for seq in 1..=per_room {
            store.record_message(message(room, seq, TEXT));
        }
        if room % 500 == 0 {
            store.commit().unwrap();
        }
    }
    store.commit().unwrap();
}

/// `GET /healthz` answered `200`.
fn healthy(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

/// A `/proc/PID/status` field in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The real binary on a file of 100,000 rooms × 20 messages: the time
/// from its start until `/healthz` answers, and its peak RSS then.
fn startup_binary() {
    let (rooms, per_room) = (100_000, 20);
    let dir = temp_dir();
    let path = dir.path().join("rooms.db");
    let built = Instant::now();
    many_rooms_file(&path, rooms, per_room);
    let bytes = file_bytes(dir.path());
    let building = built.elapsed();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsrooms"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--log-level",
            "warn",
            "--data-file",
        ])
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start wsrooms");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    while !healthy(&addr) {
        assert!(started.elapsed() < Duration::from_secs(60), "no /healthz");
    }
    let ready = started.elapsed();
    let (peak, rss) = (
        status_kib(child.id(), "VmHWM:"),
        status_kib(child.id(), "VmRSS:"),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    println!(
        "start-up of the binary on {rooms} rooms × {per_room} messages ({:.0} MB file, built \
         in {:.1} s, warm page cache): /healthz after {:.0} ms, peak RSS {:.1} MB \
         (now {:.1} MB)",
        bytes as f64 / 1e6,
        building.as_secs_f64(),
        ready.as_secs_f64() * 1e3,
        peak as f64 / 1024.0,
        rss as f64 / 1024.0
    );
}

fn main() {
    if std::env::args().any(|a| a == "startup") {
        startup();
        startup_binary();
        return;
    }
    if std::env::args().any(|a| a == "sync") {
        sync_rows();
        return;
    }
    for rooms in [1, 100] {
        commit_cost(rooms, 1, 20_000);
        commit_cost(rooms, 10, 10_000);
        commit_cost(rooms, 100, 2_000);
    }
    sync_rows();
    record_cost();
    let bytes = sustained(
        200_000,
        1_000,
        DEFAULT_KEEP_MESSAGES,
        "1,000 rooms, no pruning",
    );
    println!(
        "database size: {:.1} MB per million messages (extrapolated from 200,000 messages of \
         {} characters in 1,000 rooms: {:.1} MB)",
        bytes as f64 * 5.0 / 1e6,
        TEXT.len(),
        bytes as f64 / 1e6
    );
    sustained(
        200_000,
        10,
        1_000,
        "10 rooms, keep 1,000: pruning every turn",
    );
    startup();
    startup_binary();
}

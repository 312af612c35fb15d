//! Memory held by room histories: fills 10,000 rooms with `--history-messages`
//! (50) messages each, through the same `Chat::post` the server uses, and
//! prints the bytes per room (resident memory from `/proc/self/status`, and
//! the frame bytes the rooms hold).
//!
//! `cargo bench --bench history`

use std::time::Instant;

use wsrooms::chat::Chat;

const ROOMS: u32 = 10_000;
const KEEP: usize = 50;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn fill(chat: &mut Chat, text: &str, rounds: usize) {
    let now = Instant::now();
    for number in 1..=ROOMS {
        let token = [
            number as u8,
            (number >> 8) as u8,
            (number >> 16) as u8,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
        ];
        if chat.room_by_number(number).is_none() {
            chat.login(number, "someone", token, now, 1000)
                .expect("login");
        }
        let room = chat.room_by_number(number).unwrap();
        for i in 0..rounds {
            let frame = chat.post(room, "someone", text, 1_763_770_000_000 + i as u64, KEEP);
            drop(frame); // the broadcast copy; the history keeps its own Rc
        }
    }
}

fn cases() -> [(&'static str, String); 2] {
    [
        ("50 ASCII chars", "x".repeat(50)),
        ("50 Hangul chars", "가".repeat(50)),
    ]
}

/// Measures one case in this process (a fresh heap, so RSS is honest).
fn measure(case: usize) {
    let (label, text) = &cases()[case];
    let mut chat = Chat::new();
    let before = rss_bytes();
    // Three rounds: the ring fills, then wraps twice (steady state).
    fill(&mut chat, text, KEEP * 3);
    let after = rss_bytes();
    let held = chat.history_bytes() as f64 / ROOMS as f64;
    let rss = after.saturating_sub(before) as f64 / ROOMS as f64;
    println!(
        "history, {ROOMS} rooms × {KEEP} messages of {label}: {held:.0} frame bytes/room held, \
         {rss:.0} B/room resident (room, session, ring and allocator overhead included)"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--case") {
        return measure(args[i + 1].parse().unwrap());
    }
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` only checks that it runs
    }
    let exe = std::env::current_exe().expect("own path");
    for case in 0..cases().len() {
        let status = std::process::Command::new(&exe)
            .args(["--case", &case.to_string()])
            .status()
            .expect("run case");
        assert!(status.success());
    }
}

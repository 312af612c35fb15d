//! Keep-alive deadlines are batched on coarse ticks (so idle sockets cost
//! one loop turn per tick, not one each), but dead-peer detection stays
//! exact: a room socket that answered its first ping and then stops
//! answering gets its next ping one interval after its pong (plus at most
//! a tick), and is dropped no sooner than the pong timeout after that ping
//! and no later than ping interval + pong timeout + two ticks after its
//! last pong. Sending chat text does not count as a pong.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

const INTERVAL: Duration = Duration::from_secs(2);
const PONG_TIMEOUT: Duration = Duration::from_secs(1);
/// The server's keep-alive tick at a 2 s interval (an eighth of it, at
/// most 100 ms).
const TICK: Duration = Duration::from_millis(100);
/// Scheduling and loopback delays on a busy test machine.
const SLACK: Duration = Duration::from_millis(150);

#[test]
fn a_peer_that_stops_answering_pings_is_dropped_within_interval_plus_pong_timeout() {
    let server = spawn_binary(&[
        "--ping-interval-secs",
        "2",
        "--pong-timeout-secs",
        "1",
        "--log-level",
        "info",
    ]);
    let addr = server.addr;
    let cookie = login(addr, "quiet", 4);
    let mut ws = raw_ws(addr, "/rooms/4/ws", Some(&cookie));
    let upgraded = Instant::now();
    ws.set_read_timeout(Some(IO_TIMEOUT)).unwrap();

    // First round: answered.
    let ping = read_until_opcode(&mut ws, PING);
    let first_ping = upgraded.elapsed();
    assert!(
        first_ping >= INTERVAL - SLACK && first_ping <= INTERVAL + TICK + SLACK,
        "first ping {first_ping:?} after the upgrade"
    );
    ws.write_all(&client_frame(true, 0xA, &ping.payload))
        .unwrap();
    let ponged = Instant::now();

    // Chat text is not a pong: the next round still needs one.
    ws.write_all(&client_frame(true, 0x1, b"still typing"))
        .unwrap();
    read_until_opcode(&mut ws, PING);
    let second_ping = ponged.elapsed();
    assert!(
        second_ping >= INTERVAL - SLACK && second_ping <= INTERVAL + TICK + SLACK,
        "second ping {second_ping:?} after the pong"
    );

    // Second round: no pong. Dropped without a close handshake.
    let rest = read_to_eof(&mut ws, Duration::from_secs(5));
    let dropped = ponged.elapsed();
    assert!(
        rest.iter().all(|f| f.opcode != CLOSE),
        "a dead peer gets no close frame"
    );
    assert!(
        dropped >= second_ping + PONG_TIMEOUT - SLACK,
        "dropped {dropped:?} after the last pong, ping at {second_ping:?}: before the pong timeout"
    );
    assert!(
        dropped <= INTERVAL + PONG_TIMEOUT + 2 * TICK + SLACK,
        "dropped {dropped:?} after the last pong: later than interval + pong timeout + 2 ticks"
    );
    server.log.wait_for(&["no pong"], Duration::from_secs(2));
    eprintln!(
        "pings at {first_ping:?} (after upgrade) and {second_ping:?} (after the pong), dropped at {dropped:?}"
    );
}

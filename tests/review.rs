//! Regression tests for bugs found in a review of the poll loop: each test
//! failed before its fix.

mod common;

use std::time::Duration;

use common::*;
use tungstenite::Message;

/// One broadcast that pushes several receivers over `--max-buffered` at once:
/// closing the first one broadcasts its `leave`, which closes the others
/// (nested); the outer loop must not then clear their queued close frames.
/// Every one of them must get a well-formed `1008 backpressure limit`.
#[test]
fn several_receivers_too_slow_in_one_broadcast_all_get_their_close_frame() {
    let addr = start(Config {
        max_buffered: 4096,
        pause_reading_at: 4096,
        max_chat_chars: 100_000,
        rate_limit: 0.0,
        close_timeout: Duration::from_secs(2),
        ..test_config()
    });
    let (mut a, _) = join(addr, "a", 3);
    let (mut b, _) = join(addr, "b", 3);
    next_of_type(&mut a, "join");
    let (mut c, _) = join(addr, "c", 3);
    next_of_type(&mut a, "join");
    next_of_type(&mut b, "join");
    // One message bigger than --max-buffered: every receiver is over the
    // limit the moment it is queued.
    a.send(Message::text("x".repeat(10_000))).unwrap();
    for (name, ws) in [("a", &mut a), ("b", &mut b), ("c", &mut c)] {
        assert_eq!(
            expect_close(ws),
            (1008, "backpressure limit".to_string()),
            "{name}"
        );
    }
}

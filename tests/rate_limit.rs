//! The chat rate limit: a client that floods its room is closed with
//! `1008 rate limit` after its burst, and the rest of the room sees exactly
//! the messages that passed, then its leave, and carries on.

mod common;

use common::*;
use tungstenite::Message;

#[test]
fn a_flood_of_1000_messages_is_closed_1008_and_the_room_carries_on() {
    let addr = start(test_config()); // 20/s, burst 40
    let (mut flooder, _) = join(addr, "flood", 9);
    let (mut calm, _) = join(addr, "calm", 9);
    next_of_type(&mut flooder, "join"); // calm joined

    for i in 0..1000 {
        flooder.write(Message::text(format!("spam {i}"))).unwrap();
    }
    flooder.flush().unwrap();
    let mut passed = 0;
    let close = loop {
        match flooder.read().expect("read") {
            Message::Text(t) if t.as_str().contains("\"type\":\"message\"") => passed += 1,
            Message::Close(Some(f)) => break (u16::from(f.code), f.reason.to_string()),
            Message::Close(None) => panic!("close without a code"),
            _ => {}
        }
    };
    assert_eq!(close, (1008, "rate limit".to_string()));
    assert!(
        (40..=45).contains(&passed),
        "{passed} messages passed the burst of 40"
    );

    // The other member saw exactly those, then the flooder leave…
    let mut seen = 0;
    loop {
        let e = next_event(&mut calm);
        match e["type"].as_str().unwrap() {
            "message" => {
                assert_eq!(e["text"], format!("spam {seen}"));
                seen += 1;
            }
            "leave" => {
                assert_eq!(e["user"], "flood");
                break;
            }
            other => panic!("unexpected {other}: {e}"),
        }
    }
    assert_eq!(seen, passed);
    // …and is unaffected: it still sends and receives.
    for i in 0..5 {
        calm.send(Message::text(format!("calm {i}"))).unwrap();
        assert_eq!(
            next_of_type(&mut calm, "message")["text"],
            format!("calm {i}")
        );
    }
}

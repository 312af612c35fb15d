//! The `wsrooms.v2` subprotocol over real sockets (docs/PROTOCOL.md, "The
//! `wsrooms.v2` subprotocol"): its negotiation, the JSON commands (`say`,
//! `edit`, `delete`, `typing`), who may edit and delete what and until
//! when, the `error` event, what text-protocol sockets in the same room
//! get, history and scrollback after edits and deletes, and a restart from
//! the data file.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tungstenite::Message;
use wsrooms::Config;

fn config() -> Config {
    Config {
        rate_limit: 0.0,
        ..test_config()
    }
}

fn say(ws: &mut Ws, text: &str) {
    send_json(ws, json!({"type": "say", "text": text}));
}

/// The next event that is not a `join` or `leave`.
fn next_chat_event(ws: &mut Ws) -> Value {
    loop {
        let e = next_event(ws);
        if e["type"] != "join" && e["type"] != "leave" {
            return e;
        }
    }
}

/// Reads up to the `message` whose text is `marker` (which the caller
/// had said after what it wants to check): everything before it but joins
/// and leaves. Shows that nothing else was sent to `reader` in between.
fn until_marker(reader: &mut Ws, marker: &str) -> Vec<Value> {
    let mut before = Vec::new();
    loop {
        let e = next_chat_event(reader);
        if e["type"] == "message" && e["text"] == marker {
            return before;
        }
        before.push(e);
    }
}

/// The `101`'s `Sec-WebSocket-Protocol` for an upgrade with these extra
/// header lines.
fn chosen_protocol(addr: SocketAddr, cookie: &str, headers: &str) -> Option<String> {
    let mut stream = tcp(addr);
    let request = upgrade_request(addr, "/rooms/1/ws", Some(cookie));
    let request = request.replacen("\r\n\r\n", &format!("\r\n{headers}\r\n"), 1);
    stream.write_all(request.as_bytes()).unwrap();
    let r = read_response(&mut stream);
    assert_eq!(r.status, 101, "{}", r.text());
    r.header("Sec-WebSocket-Protocol").map(String::from)
}

#[test]
fn wsrooms_v2_is_chosen_only_when_offered() {
    let addr = start(config());
    let cookie = login(addr, "alice", 1);
    let v2 = Some("wsrooms.v2".to_string());
    for (headers, want) in [
        ("Sec-WebSocket-Protocol: wsrooms.v2\r\n", v2.clone()),
        ("Sec-WebSocket-Protocol: chat, wsrooms.v2\r\n", v2.clone()),
        (
            "Sec-WebSocket-Protocol: superchat\r\nSec-WebSocket-Protocol: mqtt,wsrooms.v2 \r\n",
            v2.clone(),
        ),
        ("", None),
        (
            "Sec-WebSocket-Protocol: wsrooms.v1, WSROOMS.V2, wsrooms.v20\r\n",
            None,
        ),
        // The subprotocol the server already spoke stays as it was.
        ("Sec-WebSocket-Protocol: chat\r\n", Some("chat".to_string())),
    ] {
        assert_eq!(chosen_protocol(addr, &cookie, headers), want, "{headers:?}");
    }
}

#[test]
fn without_the_subprotocol_every_text_frame_is_a_say() {
    let addr = start(config());
    let (mut old, _) = join(addr, "alice", 1);
    let cookie = login(addr, "bob", 1);
    let (mut other, chosen) = ws_connect_offering(addr, "/rooms/1/ws", &cookie, "chat");
    assert_eq!(chosen.as_deref(), Some("chat"));
    next_of_type(&mut other, "welcome");
    for frame in [
        r#"{"type":"say","text":"x"}"#,
        r#"{"type":"delete","seq":1}"#,
        r#"{"type":"typing"}"#,
    ] {
        old.send(Message::text(frame)).unwrap();
        let m = next_of_type(&mut old, "message");
        assert_eq!(m["text"], frame, "the whole frame is the text");
        other.send(Message::text(frame)).unwrap();
        assert_eq!(next_of_type(&mut old, "message")["text"], frame);
    }
}

#[test]
fn a_frame_that_is_not_a_command_closes_1008_bad_command() {
    let addr = start(Config {
        scrollback_burst: 100, // a socket costs a page: many sockets here
        ..config()
    });
    let (mut watcher, _, _) = join_v2(addr, "watcher", 1);
    let cookie = login(addr, "alice", 1);
    for bad in [
        "hello",
        "",
        "null",
        "[]",
        r#"["say","hi"]"#,
        r#""say""#,
        "{}",
        r#"{"type":"shout","text":"x"}"#,
        r#"{"type":"say"}"#,
        r#"{"type":"say","text":7}"#,
        r#"{"type":"say","text":"x","extra":true}"#,
        r#"{"type":"say","text":"x","text":"y"}"#,
        r#"{"type":"edit","seq":"1","text":"x"}"#,
        r#"{"type":"edit","seq":-1,"text":"x"}"#,
        r#"{"type":"delete"}"#,
        r#"{"type":"typing","user":"bob"}"#,
        r#"{"type":"say","text":"x"}{"type":"typing"}"#,
    ] {
        let (mut ws, _) = open_v2(addr, 1, &cookie, None);
        ws.send(Message::text(bad)).unwrap();
        assert_eq!(
            expect_close(&mut ws),
            (1008, "bad command".into()),
            "{bad:?}"
        );
    }
    let (mut ws, _) = open_v2(addr, 1, &cookie, None);
    ws.send(Message::binary(b"{}".to_vec())).unwrap();
    assert_eq!(expect_close(&mut ws).0, 1003, "binary stays 1003");
    // None of it was a message.
    say(&mut watcher, "m");
    assert_eq!(until_marker(&mut watcher, "m"), Vec::<Value>::new());
}

#[test]
fn say_edit_delete_and_typing_reach_the_room() {
    let addr = start(config());
    let (mut alice, _, _) = join_v2(addr, "alice", 1);
    let (mut bob, _, _) = join_v2(addr, "bob", 1);
    // say: today's message path (line breaks as LF, cut to the limits).
    say(&mut alice, "hi\r\nthere\rbob");
    for ws in [&mut alice, &mut bob] {
        let m = next_chat_event(ws);
        assert_eq!(
            (m["type"].as_str(), m["seq"].as_u64()),
            (Some("message"), Some(1))
        );
        assert_eq!(
            (m["user"].as_str(), m["text"].as_str()),
            (Some("alice"), Some("hi\nthere\nbob"))
        );
    }
    say(&mut alice, " \n\t ");
    // edit: its own seq, to everyone, the sender included.
    send_json(
        &mut alice,
        json!({"type": "edit", "seq": 1, "text": "hi\r\nall"}),
    );
    for ws in [&mut alice, &mut bob] {
        let e = next_chat_event(ws);
        assert_eq!(e["type"], "edit", "the empty say was ignored: {e}");
        assert_eq!(
            (e["seq"].as_u64(), e["target"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(e["text"], "hi\nall");
        assert!(e["at"].as_u64().unwrap() >= 1_700_000_000_000);
    }
    // typing: to the others only, at most one per 3 s (more are dropped).
    for _ in 0..3 {
        send_json(&mut bob, json!({"type": "typing"}));
    }
    say(&mut bob, "marker");
    assert_eq!(
        until_marker(&mut alice, "marker"),
        [json!({"type": "typing", "user": "bob"})]
    );
    assert_eq!(
        until_marker(&mut bob, "marker"),
        Vec::<Value>::new(),
        "not to its sender"
    );
    // delete: its own seq, by the deleter's id.
    send_json(&mut alice, json!({"type": "delete", "seq": 1}));
    for ws in [&mut alice, &mut bob] {
        let d = next_chat_event(ws);
        assert_eq!(d["type"], "delete");
        assert_eq!(
            (d["seq"].as_u64(), d["target"].as_u64()),
            (Some(4), Some(1))
        );
        assert_eq!(d["by"], "alice");
    }
    // One order for all: a say after it is 5 for both.
    say(&mut bob, "after");
    for ws in [&mut alice, &mut bob] {
        assert_eq!(next_chat_event(ws)["seq"], 5);
    }
}

#[test]
fn only_its_sender_may_change_a_message_and_a_refusal_goes_to_it_alone() {
    let addr = start(config());
    let (mut alice, _, _) = join_v2(addr, "alice", 1);
    let (mut bob, _, _) = join_v2(addr, "bob", 1);
    say(&mut alice, "mine");
    next_of_type(&mut bob, "message");
    next_of_type(&mut alice, "message");
    let refused = |ws: &mut Ws, command: Value, reason: &str| {
        send_json(ws, command.clone());
        let e = next_chat_event(ws);
        assert_eq!(e, json!({"type": "error", "reason": reason}), "{command}");
    };
    refused(
        &mut bob,
        json!({"type": "edit", "seq": 1, "text": "yours?"}),
        "not yours",
    );
    refused(&mut bob, json!({"type": "delete", "seq": 1}), "not yours");
    refused(
        &mut alice,
        json!({"type": "edit", "seq": 9, "text": "x"}),
        "no such message",
    );
    refused(
        &mut alice,
        json!({"type": "delete", "seq": 0}),
        "no such message",
    );
    refused(
        &mut alice,
        json!({"type": "edit", "seq": 1, "text": " \r\n "}),
        "empty",
    );
    send_json(
        &mut alice,
        json!({"type": "edit", "seq": 1, "text": "mine!"}),
    );
    assert_eq!(next_chat_event(&mut alice)["seq"], 2);
    // An edit is not a message: it cannot be edited itself.
    refused(
        &mut alice,
        json!({"type": "edit", "seq": 2, "text": "x"}),
        "no such message",
    );
    send_json(&mut alice, json!({"type": "delete", "seq": 1}));
    assert_eq!(next_chat_event(&mut alice)["type"], "delete");
    refused(&mut alice, json!({"type": "delete", "seq": 1}), "deleted");
    refused(
        &mut alice,
        json!({"type": "edit", "seq": 1, "text": "back"}),
        "deleted",
    );
    // Bob saw his own refusals, alice's changes, and none of alice's refusals.
    say(&mut alice, "end");
    let seen: Vec<Value> = until_marker(&mut bob, "end")
        .into_iter()
        .map(|e| json!([e["type"], e["seq"]]))
        .collect();
    assert_eq!(seen, [json!(["edit", 2]), json!(["delete", 3])]);
}

#[test]
fn the_edit_window_closes() {
    // A window of 0: a sender may change nothing.
    let addr = start(Config {
        edit_window: Duration::ZERO,
        ..config()
    });
    let (mut alice, welcome, _) = join_v2(addr, "alice", 1);
    assert_eq!(welcome["editWindowSecs"], 0, "the welcome names the window");
    say(&mut alice, "fixed");
    next_of_type(&mut alice, "message");
    send_json(&mut alice, json!({"type": "edit", "seq": 1, "text": "x"}));
    assert_eq!(next_chat_event(&mut alice)["reason"], "too late");
    send_json(&mut alice, json!({"type": "delete", "seq": 1}));
    assert_eq!(next_chat_event(&mut alice)["reason"], "too late");

    // A window of 1 s: an edit at once works; one arrives that is too late.
    let addr = start(Config {
        edit_window: Duration::from_secs(1),
        ..config()
    });
    let (mut alice, welcome, _) = join_v2(addr, "alice", 1);
    assert_eq!(welcome["editWindowSecs"], 1);
    say(&mut alice, "soon fixed");
    let sent = next_of_type(&mut alice, "message")["at"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut edits = 0;
    let refused_at = loop {
        assert!(Instant::now() < deadline, "the window never closed");
        send_json(
            &mut alice,
            json!({"type": "edit", "seq": 1, "text": "fixed"}),
        );
        let e = next_chat_event(&mut alice);
        if e["type"] == "error" {
            assert_eq!(e["reason"], "too late");
            break wsrooms::chat::unix_millis();
        }
        assert_eq!(e["type"], "edit");
        assert!(
            e["at"].as_u64().unwrap() < sent + 1000,
            "edited after the window: {e}"
        );
        edits += 1;
        std::thread::sleep(Duration::from_millis(50)); // pacing, not waiting
    };
    assert!(edits >= 1, "an edit at once works");
    assert!(
        refused_at >= sent + 1000,
        "refused only once the window is over"
    );
}

#[test]
fn text_protocol_sockets_in_the_room_get_the_new_events() {
    let addr = start(config());
    let (mut v2, _, _) = join_v2(addr, "alice", 1);
    let (mut old, _) = join(addr, "bob", 1);
    say(&mut v2, "hi");
    next_of_type(&mut v2, "message"); // (a message is changed once seen)
    send_json(&mut v2, json!({"type": "edit", "seq": 1, "text": "hello"}));
    send_json(&mut v2, json!({"type": "typing"}));
    send_json(&mut v2, json!({"type": "delete", "seq": 1}));
    old.send(Message::text("end")).unwrap();
    let kinds: Vec<Value> = until_marker(&mut old, "end")
        .into_iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(kinds, ["message", "edit", "typing", "delete"]);
}

#[test]
fn every_command_counts_against_the_rate_limit() {
    let addr = start(Config {
        rate_limit: 1.0,
        rate_burst: 3.0,
        ..test_config()
    });
    let (mut alice, _, _) = join_v2(addr, "alice", 1);
    for _ in 0..4 {
        send_json(&mut alice, json!({"type": "typing"}));
    }
    assert_eq!(expect_close(&mut alice), (1008, "rate limit".into()));
}

/// A page as the events it got make it: each message by `seq` as
/// `(user, text or null, edited, deleted)`. An edit sets the text of a
/// message it shows (not a deleted one), a delete makes a tombstone.
fn page_of(events: &[Value]) -> std::collections::BTreeMap<u64, Value> {
    let mut page = std::collections::BTreeMap::new();
    for e in events {
        let target = e["target"].as_u64().unwrap_or(0);
        match e["type"].as_str().unwrap() {
            "message" => {
                let shown = json!([e["user"], e["text"], e["edited"], e["deleted"] == true]);
                page.insert(e["seq"].as_u64().unwrap(), shown);
            }
            "edit" => {
                if let Some(m) = page.get_mut(&target).filter(|m| m[3] == false) {
                    m[1] = e["text"].clone();
                    m[2] = e["at"].clone();
                }
            }
            "delete" => {
                if let Some(m) = page.get_mut(&target) {
                    *m = json!([m[0], null, null, true]);
                }
            }
            _ => {}
        }
    }
    page
}

fn history(welcome: &Value) -> Vec<Value> {
    welcome["history"].as_array().unwrap().clone()
}

/// The room's changes while bob is away: alice says 1–5 first; then 2 and
/// 4 are edited (4 twice), 3 deleted, 5 edited then deleted, and 10 said.
fn changes_while_away(alice: &mut Ws) {
    for (command, seq) in [
        (json!({"type": "edit", "seq": 2, "text": "two!"}), 6),
        (json!({"type": "delete", "seq": 3}), 7),
        (json!({"type": "edit", "seq": 4, "text": "four?"}), 8),
        (json!({"type": "edit", "seq": 4, "text": "four!"}), 9),
        (json!({"type": "edit", "seq": 5, "text": "secret"}), 10),
        (json!({"type": "delete", "seq": 5}), 11),
        (json!({"type": "say", "text": "twelve"}), 12),
    ] {
        send_json(alice, command);
        assert_eq!(next_chat_event(alice)["seq"], seq);
    }
}

/// What every page must show in the end.
fn shown_in_the_end() -> Vec<(u64, Option<&'static str>)> {
    vec![
        (1, Some("m1")),
        (2, Some("two!")),
        (3, None),
        (4, Some("four!")),
        (5, None),
        (12, Some("twelve")),
    ]
}

fn texts(page: &std::collections::BTreeMap<u64, Value>) -> Vec<(u64, Option<&str>)> {
    page.iter().map(|(seq, m)| (*seq, m[1].as_str())).collect()
}

#[test]
fn a_page_back_with_since_shows_what_a_fresh_page_shows() {
    let addr = start(config());
    let (mut alice, _, _) = join_v2(addr, "alice", 1);
    let (mut bob, _, bob_cookie) = join_v2(addr, "bob", 1);
    let mut bob_saw = Vec::new();
    for n in 1..=5 {
        say(&mut alice, &format!("m{n}"));
        next_chat_event(&mut alice);
        bob_saw.push(next_chat_event(&mut bob));
    }
    bob.close(None).unwrap();
    next_of_type(&mut alice, "leave");
    changes_while_away(&mut alice);
    let (_, back) = open_v2(addr, 1, &bob_cookie, Some(5));
    assert_eq!(back["gap"], false);
    let replayed: Vec<u64> = history(&back)
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(replayed, (6..=12).collect::<Vec<_>>(), "no seq missing");
    let blanked = &history(&back)[4];
    assert_eq!(
        (blanked["seq"].as_u64(), blanked["text"].as_str()),
        (Some(10), Some(""))
    );
    assert!(
        !back.to_string().contains("secret"),
        "a deleted text is never replayed"
    );
    bob_saw.extend(history(&back));
    let (_, fresh, _) = join_v2(addr, "carol", 1);
    let fresh_page = page_of(&history(&fresh));
    assert_eq!(texts(&page_of(&bob_saw)), shown_in_the_end());
    assert_eq!(page_of(&bob_saw), fresh_page);
    // The fresh page's messages are already current, with `edited`; a
    // deleted one is a tombstone without text.
    let messages: Vec<Value> = history(&fresh)
        .into_iter()
        .filter(|e| e["type"] == "message")
        .collect();
    assert_eq!(page_of(&messages), fresh_page);
    let tombstone = &messages[2];
    assert_eq!(tombstone["deleted"], true);
    assert!(
        tombstone.get("text").is_none() && tombstone.get("edited").is_none(),
        "{tombstone}"
    );
    assert_eq!(messages[3]["edited"], fresh_page[&4][2]);
    // Scrollback pages show the same.
    let page = get(
        addr,
        "/rooms/1/history",
        &format!("Cookie: {bob_cookie}\r\n"),
    );
    let page: Value = serde_json::from_slice(&page.body).unwrap();
    let scrolled = page["messages"].as_array().unwrap();
    assert_eq!(page_of(scrolled), fresh_page);
    assert_eq!(scrolled, &history(&fresh), "the same events as the welcome");
}

/// The real binary on the data file `path`.
fn server_on(path: &Path) -> Spawned {
    spawn_binary(&["--rate-limit", "0", "--data-file", path.to_str().unwrap()])
}

#[test]
fn edits_and_deletes_survive_a_restart_and_so_does_who_may_make_them() {
    let dir = TempDir::new("v2-restart");
    let path = dir.join("rooms.db");
    let mut server = server_on(&path);
    let addr = server.addr;
    let (mut alice, _, alice_cookie) = join_v2(addr, "alice", 1);
    for n in 1..=5 {
        say(&mut alice, &format!("m{n}"));
        next_chat_event(&mut alice);
    }
    changes_while_away(&mut alice);
    let (_, before) = open_v2(addr, 1, &alice_cookie, None);
    sigterm(server.child.id());
    let status = wait_exit(&mut server.child, Duration::from_secs(10)).expect("exit after SIGTERM");
    assert!(status.success(), "{status}");

    let server = server_on(&path);
    let addr = server.addr;
    let (mut alice, after) = open_v2(addr, 1, &alice_cookie, None);
    assert_eq!(
        history(&after),
        history(&before),
        "the same history after the restart"
    );
    assert_eq!(texts(&page_of(&history(&after))), shown_in_the_end());
    let page = get(
        addr,
        "/rooms/1/history",
        &format!("Cookie: {alice_cookie}\r\n"),
    );
    let page: Value = serde_json::from_slice(&page.body).unwrap();
    assert_eq!(
        page["messages"].as_array().unwrap(),
        &history(&after),
        "from the file"
    );
    // The session that sent a message may still change it; another may not.
    send_json(&mut alice, json!({"type": "edit", "seq": 1, "text": "one"}));
    assert_eq!(next_chat_event(&mut alice)["seq"], 13);
    let (mut bob, _, _) = join_v2(addr, "bob", 1);
    send_json(&mut bob, json!({"type": "delete", "seq": 1}));
    assert_eq!(next_chat_event(&mut bob)["reason"], "not yours");
    // No row of the file holds a deleted text any more.
    drop(server);
    let db = rusqlite::Connection::open(&path).unwrap();
    let rows: i64 = db
        .query_row(
            "SELECT count(*) FROM messages WHERE text LIKE '%secret%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 0, "a deleted text stays in a row");
}

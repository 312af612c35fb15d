//! Edits and deletes against the core, with no socket (the simulation's
//! virtual pipes, `tests/sim/`): random says, edits, deletes, typing,
//! reconnects with `since` and restarts from the data file, then the one
//! promise that matters: **a page that came back with `since` shows
//! exactly what a fresh page shows**, once each has applied the events it
//! got in order (a `message` shows a message in the state it carries; an
//! `edit` sets the text of a message it shows, unless deleted; a `delete`
//! makes a message it shows a tombstone; an event for a message it does
//! not show changes nothing).

#[allow(dead_code)]
mod sim;

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;
use sim::by_hand::{join, net, open, read, turn};
use sim::client::{Client, Phase};
use sim::net::Net;
use wsrooms::Config;
use wsrooms::core::Core;
use wsrooms::ws::frame::encode_client_frame;

/// The room of every test here.
const ROOM: u32 = 7;

/// One message as a page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    user: String,
    text: Option<String>,
    edited: Option<u64>,
    deleted: bool,
}

/// What a page shows: its messages by `seq`.
type Page = BTreeMap<u64, Shown>;

/// Applies one event to a page, as the rule in the module doc says.
fn apply(page: &mut Page, e: &Value) {
    let seq = |k: &str| e[k].as_u64().unwrap_or(0);
    match e["type"].as_str() {
        Some("welcome") if e["gap"] == true => page.clear(), // it reloads
        Some("message") => {
            let shown = Shown {
                user: e["user"].as_str().unwrap().to_string(),
                text: e["text"].as_str().map(String::from),
                edited: e["edited"].as_u64(),
                deleted: e["deleted"] == true,
            };
            assert_eq!(shown.deleted, shown.text.is_none(), "{e}");
            page.insert(seq("seq"), shown);
        }
        Some("edit") => {
            if let Some(m) = page.get_mut(&seq("target"))
                && !m.deleted
            {
                m.text = e["text"].as_str().map(String::from);
                m.edited = e["at"].as_u64();
            }
        }
        Some("delete") => {
            if let Some(m) = page.get_mut(&seq("target")) {
                m.text = None;
                m.edited = None;
                m.deleted = true;
            }
        }
        _ => {}
    }
}

/// The page a client's events build.
fn page_of(c: &Client) -> Page {
    let mut page = Page::new();
    for e in c.log.iter().flatten() {
        apply(&mut page, e);
    }
    page
}

/// A client of room [`ROOM`] that logs every event, speaking `wsrooms.v2`
/// or (`v2` false) the text protocol.
fn client(n: usize, v2: bool) -> Client {
    let mut c = Client::new(n, ROOM);
    c.protocol = v2.then_some("wsrooms.v2");
    c.log = Some(Vec::new());
    c
}

/// A masked text frame.
fn text_frame(payload: &str) -> Vec<u8> {
    encode_client_frame(true, 1, [3, 1, 4, 1], payload.as_bytes())
}

/// What one step of a run does.
#[derive(Debug, Clone)]
enum Op {
    /// Client `who` says something (the text client sends plain text).
    Say(usize),
    /// Client `who` edits the `seq` picked from what the room numbered.
    Edit(usize, u64),
    /// Client `who` deletes the picked `seq`.
    Delete(usize, u64),
    /// Client `who` is typing.
    Typing(usize),
    /// Client `who` closes its socket.
    Leave(usize),
    /// Client `who` opens its socket again, with `since`.
    Back(usize),
    /// The server restarts from its data file (with one).
    Restart,
    /// A fresh page opens: everyone open must show what it shows.
    Check,
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..3usize;
    prop_oneof![
        4 => who.clone().prop_map(Op::Say),
        3 => (who.clone(), 0..64u64).prop_map(|(w, s)| Op::Edit(w, s)),
        2 => (who.clone(), 0..64u64).prop_map(|(w, s)| Op::Delete(w, s)),
        1 => who.clone().prop_map(Op::Typing),
        1 => who.clone().prop_map(Op::Leave),
        2 => who.prop_map(Op::Back),
        1 => Just(Op::Restart),
        1 => Just(Op::Check),
    ]
}

/// One run: the clients, the core, the data file.
struct Run {
    net: Net,
    clients: Vec<Client>,
    config: Config,
    fresh: usize,
    said: u64,
    _dir: tempfile::TempDir,
}

impl Run {
    fn new(history: usize, durable: bool) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            rate_limit: 0.0,
            history_messages: history,
            max_connections_per_ip: 0,
            grace_timeout: std::time::Duration::from_secs(3600),
            reserve_timeout: std::time::Duration::from_secs(3600),
            ping_interval: std::time::Duration::from_secs(3600),
            data_file: durable.then(|| dir.path().join("rooms.db")),
            ..sim::sim_config(None)
        };
        let mut run = Run {
            net: net(Config::default()),
            clients: vec![client(1, true), client(2, true), client(3, false)],
            config,
            fresh: 100,
            said: 0,
            _dir: dir,
        };
        run.net.core = sim::start_core(&run.config, run.net.now);
        for n in 0..run.clients.len() {
            let (mine, mut others) = split(&mut run.clients, n);
            join(&mut run.net, mine, &mut others);
        }
        run
    }

    /// One turn; every client reads.
    fn turn(&mut self) {
        let mut all: Vec<&mut Client> = self.clients.iter_mut().collect();
        turn(&mut self.net, &mut all);
    }

    /// Client `who` sends `payload` if its socket is open.
    fn send(&mut self, who: usize, payload: &str) {
        if let Some(p) = self.open_pipe(who) {
            self.net.pipes[p].send(&text_frame(payload));
        }
    }

    fn open_pipe(&self, who: usize) -> Option<usize> {
        match self.clients[who].phase {
            Phase::Open(p) => Some(p),
            _ => None,
        }
    }

    /// The room's last numbered event (0 before the first).
    fn last_seq(&self) -> u64 {
        let chat = self.net.core.chat();
        chat.room_by_number(ROOM)
            .and_then(|r| chat.rooms.get(r))
            .map_or(0, |r| r.last_seq)
    }

    fn step(&mut self, op: &Op) {
        let v2 = |who: usize| who < 2;
        match *op {
            Op::Say(who) => {
                self.said += 1;
                let text = format!("m{} \"by\" {who}\r\nline", self.said);
                let payload = match v2(who) {
                    true => serde_json::json!({"type":"say","text":text}).to_string(),
                    false => text,
                };
                self.send(who, &payload);
            }
            Op::Edit(who, pick) if v2(who) => {
                let seq = pick % (self.last_seq() + 2);
                let text = format!("edit {pick} of {seq}");
                let json = serde_json::json!({"type":"edit","seq":seq,"text":text});
                self.send(who, &json.to_string());
            }
            Op::Delete(who, pick) if v2(who) => {
                let seq = pick % (self.last_seq() + 2);
                let json = serde_json::json!({"type":"delete","seq":seq});
                self.send(who, &json.to_string());
            }
            Op::Typing(who) if v2(who) => self.send(who, r#"{"type":"typing"}"#),
            Op::Leave(who) => self.leave(who),
            Op::Back(who) => self.back(who),
            Op::Restart => self.restart(),
            Op::Check => self.check(),
            _ => {}
        }
        self.turn();
    }

    fn leave(&mut self, who: usize) {
        let Some(p) = self.open_pipe(who) else { return };
        let close = self.clients[who].close_frame();
        self.net.pipes[p].send(&close);
        for _ in 0..5 {
            self.turn();
            if self.clients[who].phase == Phase::In {
                return;
            }
        }
        panic!("client {who} could not close its socket");
    }

    fn back(&mut self, who: usize) {
        if self.clients[who].phase != Phase::In {
            return;
        }
        let (mine, mut others) = split(&mut self.clients, who);
        open(&mut self.net, mine, &mut others);
    }

    fn restart(&mut self) {
        if self.config.data_file.is_none() {
            return;
        }
        let before = self.ring();
        self.net
            .crash(Core::new(sim::sim_config(None), self.net.now));
        self.net.core = sim::start_core(&self.config, self.net.now);
        assert_eq!(
            self.ring(),
            before,
            "the history in memory comes back the same"
        );
        self.turn();
        for c in &mut self.clients {
            read(&mut self.net, c);
        }
    }

    /// The room's history in memory, as `welcome` would send it (empty
    /// when the room is not in memory).
    fn ring(&self) -> Vec<String> {
        let chat = self.net.core.chat();
        let Some(room) = chat.room_by_number(ROOM).and_then(|r| chat.rooms.get(r)) else {
            return Vec::new();
        };
        let json = |k: &wsrooms::chat::Kept| String::from_utf8_lossy(k.json()).into_owned();
        room.history.iter().map(json).collect()
    }

    /// A fresh page of a new user opens: every client whose socket is open
    /// shows, for each message the fresh page shows, the same.
    fn check(&mut self) {
        self.fresh += 1;
        let mut fresh = client(self.fresh, true);
        let mut all: Vec<&mut Client> = self.clients.iter_mut().collect();
        join(&mut self.net, &mut fresh, &mut all);
        let want = page_of(&fresh);
        // The history carries each message in its current state: its
        // `message` entries alone already show what applying every
        // entry shows.
        let mut messages_only = Page::new();
        for e in fresh
            .log
            .iter()
            .flatten()
            .filter(|e| e["type"] == "message")
        {
            apply(&mut messages_only, e);
        }
        assert_eq!(messages_only, want, "the history's messages are current");
        // …and has no holes: its seqs are consecutive.
        let seqs: Vec<u64> = fresh
            .log
            .iter()
            .flatten()
            .filter_map(|e| e["seq"].as_u64())
            .collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        for (n, c) in self.clients.iter().enumerate() {
            if !matches!(c.phase, Phase::Open(_)) {
                continue;
            }
            let got = page_of(c);
            for (seq, shown) in &want {
                assert_eq!(got.get(seq), Some(shown), "client {n}, seq {seq}");
            }
        }
        // The fresh page leaves at once: rooms stay small.
        let p = fresh.pipe().unwrap();
        let close = fresh.close_frame();
        self.net.pipes[p].send(&close);
        self.turn();
        read(&mut self.net, &mut fresh);
    }

    /// Everyone comes back, then a last check.
    fn finish(&mut self) {
        for who in 0..self.clients.len() {
            self.back(who);
        }
        self.turn();
        self.check();
    }
}

/// Client `n`, and the others.
fn split(clients: &mut [Client], n: usize) -> (&mut Client, Vec<&mut Client>) {
    let (before, rest) = clients.split_at_mut(n);
    let (mine, after) = rest.split_first_mut().unwrap();
    (mine, before.iter_mut().chain(after.iter_mut()).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// In memory, with a small history (so reconnects find gaps too).
    #[test]
    fn a_page_back_with_since_shows_what_a_fresh_page_shows(
        history in 3..24usize,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut run = Run::new(history, false);
        for op in &ops {
            run.step(op);
        }
        run.finish();
    }

    /// With a data file and restarts: the state after a restart is the
    /// state before it.
    #[test]
    fn and_so_after_a_restart_from_the_data_file(
        history in 3..24usize,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut run = Run::new(history, true);
        for op in &ops {
            run.step(op);
        }
        run.finish();
    }
}

/// A seed that is easy to read: alice edits twice and deletes, bob was
/// away for all of it, and comes back with `since` showing the tombstone;
/// the edits of the deleted message keep their `seq` but not their text.
#[test]
fn a_deleted_message_leaves_no_text_in_the_history() {
    let mut run = Run::new(50, false);
    run.step(&Op::Say(0));
    run.step(&Op::Leave(1));
    run.step(&Op::Edit(0, 1));
    run.step(&Op::Edit(0, 1));
    run.step(&Op::Delete(0, 1));
    run.step(&Op::Back(1));
    let bob = page_of(&run.clients[1]);
    assert!(bob[&1].deleted, "{bob:?}");
    run.check();
    // A fresh page gets the tombstone, the two edits without text, the
    // delete: every seq, no text.
    let mut fresh = client(999, true);
    let mut all: Vec<&mut Client> = run.clients.iter_mut().collect();
    join(&mut run.net, &mut fresh, &mut all);
    let history: Vec<(String, u64, Value)> = fresh
        .log
        .iter()
        .flatten()
        .filter(|e| e.get("seq").is_some())
        .map(|e| {
            (
                e["type"].as_str().unwrap().into(),
                e["seq"].as_u64().unwrap(),
                e["text"].clone(),
            )
        })
        .collect();
    let blank = Value::from("");
    assert_eq!(
        history,
        [
            ("message".into(), 1, Value::Null),
            ("edit".into(), 2, blank.clone()),
            ("edit".into(), 3, blank),
            ("delete".into(), 4, Value::Null),
        ]
    );
}

/// A delete and then an edit or a second delete of the same message in
/// one turn (both checked before either is delivered): the later ones are
/// refused as `deleted`, and the message stays a tombstone.
#[test]
fn a_change_behind_a_delete_in_the_same_turn_is_refused() {
    let mut run = Run::new(50, false);
    run.step(&Op::Say(0));
    let p = run.open_pipe(0).unwrap();
    for command in [
        r#"{"type":"delete","seq":1}"#,
        r#"{"type":"edit","seq":1,"text":"back"}"#,
        r#"{"type":"delete","seq":1}"#,
    ] {
        run.net.pipes[p].send(&text_frame(command));
    }
    run.turn();
    let log = run.clients[0].log.as_ref().unwrap();
    let said = log.iter().position(|e| e["type"] == "message").unwrap();
    let alice: Vec<String> = log[said + 1..].iter().map(|e| e.to_string()).collect();
    assert_eq!(alice.len(), 3, "{alice:?}");
    assert!(alice[0].contains(r#""type":"delete""#), "{alice:?}");
    for refusal in &alice[1..] {
        assert_eq!(refusal, r#"{"reason":"deleted","type":"error"}"#);
    }
    run.check();
    assert!(page_of(&run.clients[1])[&1].deleted);
}

/// The operator's delete (the seam the admin API calls): the same
/// `delete` event with `by: null`, to everyone, kept across a restart;
/// refused for a message that is not there or is deleted already.
#[test]
fn the_operator_deletes_any_message() {
    use wsrooms::chat::edits::Refusal;
    let mut run = Run::new(50, true);
    run.step(&Op::Say(1));
    run.step(&Op::Say(2));
    assert_eq!(run.net.core.delete_as_operator(ROOM, 1), Ok(()));
    run.turn();
    for c in &run.clients {
        let last = c.log.as_ref().unwrap().last().unwrap();
        assert_eq!(last["type"], "delete", "{last}");
        assert_eq!(
            (last["seq"].as_u64(), last["target"].as_u64()),
            (Some(3), Some(1))
        );
        assert!(last["by"].is_null(), "{last}");
    }
    let core = &mut run.net.core;
    assert_eq!(core.delete_as_operator(ROOM, 1), Err(Refusal::Deleted));
    assert_eq!(
        core.delete_as_operator(ROOM, 3),
        Err(Refusal::NoSuchMessage)
    );
    assert_eq!(
        core.delete_as_operator(ROOM, 9),
        Err(Refusal::NoSuchMessage)
    );
    assert_eq!(
        core.delete_as_operator(ROOM + 1, 1),
        Err(Refusal::NoSuchMessage)
    );
    run.step(&Op::Restart);
    run.finish();
    let carol = page_of(&run.clients[2]);
    assert!(carol[&1].deleted && !carol[&2].deleted, "{carol:?}");
}

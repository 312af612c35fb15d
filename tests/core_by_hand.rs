//! The server core driven by hand, with no socket: a login, a message, a
//! slow reader; then the three bugs the core's one work queue and its
//! `Actions` fixed (a cascade of closes that waited for the next wake-up,
//! a dropped action that left a ghost in a room, a refusal counted twice).
//!
//! The clients and the virtual sockets are the simulation's
//! (`tests/sim/`): a client writes bytes into its pipe, `Net::turn` runs
//! one turn of the loop exactly as the mio driver does, and the client
//! reads what the core wrote. `docs/LEARN.md` walks through the first test.

#[allow(dead_code)]
mod sim;

use std::time::Duration;

use sim::by_hand::{admin_post, join, net, read, request, status_of, turn};
use sim::client::{Client, Seen};
use sim::net::Net;
use wsrooms::Config;
use wsrooms::conn::Via;
use wsrooms::core::Core;
use wsrooms::outside::Outside;

fn messages(seen: &[Seen]) -> Vec<u64> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Message { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

fn leaves(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Presence {
                join: false, user, ..
            } => Some(user.clone()),
            _ => None,
        })
        .collect()
}

/// The simulation's settings, with no leave delay: these tests are about
/// the leaves a turn's closes send at once (the delayed ones go through the
/// same outbox when their timer fires; the simulation covers them).
fn config() -> Config {
    Config {
        log_level: "off".into(),
        leave_delay: Duration::ZERO,
        ..sim::sim_config(None)
    }
}

#[test]
fn a_login_a_message_and_a_slow_reader() {
    let mut net = net(Config {
        rate_limit: 0.0, // alice may send as fast as she likes
        ..config()
    });
    let (mut alice, mut bob) = (Client::new(1, 7), Client::new(2, 7));
    // Alice logs in (POST /login → 303 and a cookie) and opens her socket.
    let welcome = join(&mut net, &mut alice, &mut []);
    assert!(matches!(welcome, Seen::Welcome { gap: false, .. }));
    join(&mut net, &mut bob, &mut [&mut alice]);
    assert_eq!(alice.roster, ["u1", "u2"], "alice saw bob join");

    // Alice writes one frame; after one turn both have the message, seq 1.
    let frame = alice.chat_frame();
    net.pipes[alice.pipe().unwrap()].send(&frame);
    let seen = turn(&mut net, &mut [&mut alice, &mut bob]);
    assert_eq!(messages(&seen[0]), [1]);
    assert_eq!(messages(&seen[1]), [1]);

    // Bob stops reading: his kernel buffer fills, then his queue in the
    // core grows, until --max-buffered closes him with 1008; alice sees him
    // leave in the very turn it happens.
    let bob_pipe = bob.pipe().unwrap();
    net.pipes[bob_pipe].down_cap = 0;
    let mut sent = 0;
    let left = loop {
        for _ in 0..40 {
            let frame = alice.chat_frame();
            net.pipes[alice.pipe().unwrap()].send(&frame);
        }
        sent += 40;
        net.now += Duration::from_millis(10);
        net.turn();
        let seen = read(&mut net, &mut alice);
        if !leaves(&seen).is_empty() {
            break leaves(&seen);
        }
        assert!(sent < 10_000, "bob was never closed");
    };
    assert_eq!(left, ["u2"]);
    let bob_id = net.pipes[bob_pipe].id.unwrap();
    let bob_conn = net.core.conn(bob_id).expect("closing, not dropped yet");
    assert!(!bob_conn.machine.is_open_websocket(), "closed with 1008");
    assert!(
        bob_conn.out.buffered() < 1024,
        "its queue was freed: {}",
        bob_conn.out.buffered()
    );
    assert_eq!(net.core.metrics().closes.values().sum::<u64>(), 1);
}

/// Bug: `deliver_late_presence` returned after its first pass, so the
/// `leave` of a receiver that another receiver's `leave` pushed over
/// `--max-buffered` waited for the next wake-up. Now the turn's outbox is
/// drained until empty: the whole cascade is delivered in one turn.
#[test]
fn a_cascade_of_too_slow_closes_ends_in_the_turn_it_starts() {
    // First with room to spare, to measure the frames; then with
    // --max-buffered set so that the message pushes s1 over, and s1's
    // leave pushes s2 over, and nobody else.
    let max_buffered = cascade(1 << 20, false);
    cascade(max_buffered, true);
}

/// Room 3: `a` and four more readers, `s1` stalled with four join frames
/// queued, `s2` stalled with two; `a` sends one message. Every member's
/// queue grows by what the turn delivers (nothing is written before its
/// end), so with --max-buffered = what s2 holds after the message + one
/// join frame: s1 is over at once, s2 only with s1's leave, and the
/// readers (the message and two leaves) stay under. Returns that limit.
fn cascade(max_buffered: usize, expect_cascade: bool) -> usize {
    let mut net = net(Config {
        max_buffered,
        ..config()
    });
    let mut c: Vec<Client> = (10..17).map(|n| Client::new(n, 3)).collect();
    let [a, s1, y, z, s2, x1, x2] = &mut c[..] else {
        unreachable!()
    };
    let stall = |net: &mut Net, c: &Client| net.pipes[c.pipe().unwrap()].down_cap = 0;
    join(&mut net, a, &mut []);
    join(&mut net, s1, &mut [a]);
    join(&mut net, y, &mut [a, s1]);
    stall(&mut net, s1);
    join(&mut net, z, &mut [a, y]);
    join(&mut net, s2, &mut [a, y, z]);
    stall(&mut net, s2);
    join(&mut net, x1, &mut [a, y, z]);
    join(&mut net, x2, &mut [a, y, z, x1]);
    let id = |net: &Net, c: &Client| net.pipes[c.pipe().unwrap()].id.unwrap();
    let (s1_id, s2_id) = (id(&net, s1), id(&net, s2));
    let queued = |net: &Net, id| net.core.conn(id).unwrap().out.buffered();
    let join_frame = queued(&net, s2_id) / 2;
    assert_eq!(queued(&net, s1_id), 4 * join_frame);

    let frame = a.chat_frame();
    net.pipes[a.pipe().unwrap()].send(&frame);
    let seen = turn(&mut net, &mut [a, y, z, x1, x2]);
    let open = |net: &Net, id| {
        net.core
            .conn(id)
            .is_some_and(|c| c.machine.is_open_websocket())
    };
    if !expect_cascade {
        assert!(open(&net, s1_id) && open(&net, s2_id));
        return queued(&net, s2_id) + join_frame;
    }
    assert!(!open(&net, s1_id) && !open(&net, s2_id), "both closed");
    for reader in &seen {
        assert_eq!(leaves(reader), ["u11", "u14"], "both leaves in one turn");
    }
    let room = net.core.chat().room_by_number(3).unwrap();
    assert_eq!(net.core.chat().rooms.get(room).unwrap().members.len(), 5);
    max_buffered
}

/// Bug: `Actions` held four actions and silently dropped a fifth in a
/// release build (a dropped `Leave` leaves a ghost in its room). Now each
/// kind of consequence has its own field: a protocol error on a room
/// socket closes it (1002), drains it and takes it out of its room, all
/// from one call.
#[test]
fn a_protocol_error_takes_the_socket_out_of_its_room() {
    let mut net = net(config());
    let (mut a, mut b) = (Client::new(20, 4), Client::new(21, 4));
    join(&mut net, &mut a, &mut []);
    join(&mut net, &mut b, &mut [&mut a]);
    // An unmasked client frame: a protocol error.
    let unmasked = wsrooms::ws::frame::encode_frame(wsrooms::ws::frame::Opcode::Text, b"hi");
    net.pipes[b.pipe().unwrap()].send(&unmasked);
    let seen = turn(&mut net, &mut [&mut a, &mut b]);
    assert_eq!(leaves(&seen[0]), ["u21"]);
    assert!(seen[1].contains(&Seen::Close(1002)));
    let room = net.core.chat().room_by_number(4).unwrap();
    let members = &net.core.chat().rooms.get(room).unwrap().members;
    assert_eq!(members.len(), 1, "no ghost");
}

/// Bug: a connection refused at `--max-connections` was counted twice,
/// in `wsrooms_connections_refused_total` and in `wsrooms_refused_total`.
#[test]
fn a_refused_connection_is_counted_once() {
    let mut net = net(Config {
        max_connections: 1,
        ..config()
    });
    let c = Client::new(30, 1);
    net.connect(c.peer, 4096);
    let refused = net.connect(c.peer, 4096);
    assert!(net.pipes[refused].id.is_none());
    assert!(
        String::from_utf8_lossy(&net.pipes[refused].down).starts_with("HTTP/1.1 503 "),
        "a 503"
    );
    let m = net.core.metrics();
    assert_eq!(m.connections_refused, 1);
    assert_eq!(m.refused.values().sum::<u64>(), 0, "{:?}", m.refused);
}

/// A client that sends its last message, its close frame and its FIN at
/// once still gets its message back and its close answered: what the turn
/// owes a connection is written before it is dropped.
#[test]
fn a_close_sent_with_its_fin_is_answered() {
    let mut net = net(config());
    let mut c = Client::new(40, 2);
    join(&mut net, &mut c, &mut []);
    let p = c.pipe().unwrap();
    let (last, close) = (c.chat_frame(), c.close_frame());
    net.pipes[p].send(&last);
    net.pipes[p].send(&close);
    net.pipes[p].fin();
    let seen = turn(&mut net, &mut [&mut c]);
    assert_eq!(messages(&seen[0]), [1], "its message came back");
    assert!(seen[0].contains(&Seen::Close(1000)), "{:?}", seen[0]);
    assert!(net.pipes[p].closed, "then the connection was dropped");
    assert!(net.core.conn(net.pipes[p].id.unwrap()).is_none());
}

/// After SIGTERM the server leaves, not its people: the sessions of the
/// sockets the shutdown closes stay listed, even once the leave delay is
/// over (with a data file, present for the next process to list again).
#[test]
fn a_shutdown_sends_no_leave_and_keeps_everyone_listed() {
    let mut net = net(Config {
        leave_delay: Duration::from_secs(1),
        ..config()
    });
    let (mut a, mut b) = (Client::new(50, 6), Client::new(51, 6));
    join(&mut net, &mut a, &mut []);
    join(&mut net, &mut b, &mut [&mut a]);
    net.core.begin_shutdown();
    let seen = turn(&mut net, &mut [&mut a, &mut b]);
    assert!(
        seen.iter().all(|s| s.contains(&Seen::Close(1001))),
        "{seen:?}"
    );
    for _ in 0..6 {
        net.now += Duration::from_millis(500);
        turn(&mut net, &mut [&mut a, &mut b]);
    }
    let mut listed = net.core.chat().listed(6);
    listed.sort_unstable();
    assert_eq!(listed, ["u50", "u51"]);
}

/// One seed of the simulation, as `docs/LEARN.md` runs it.
#[test]
fn one_seed_of_the_simulation() {
    sim::run_seed(1).unwrap_or_else(|e| panic!("{e}"));
}

// ----- the operator's bars end on the core's clock ---------------------------

/// `c`'s login from its own address; its status.
fn login_status(net: &mut Net, c: &Client) -> u16 {
    request(net, c.peer, Via::Main, &c.login_request())
}

fn bar_config() -> Config {
    Config {
        max_connections_per_ip: 0,
        ..config()
    }
}

#[test]
fn an_address_bar_ends_after_its_minutes() {
    let mut net = net(bar_config());
    let barred = Client::new(1, 5);
    let form = format!("address={}&minutes=1", barred.peer.ip());
    assert_eq!(admin_post(&mut net, "/admin/bar", &form), 200);
    assert_eq!(login_status(&mut net, &barred), 403);
    net.now += Duration::from_secs(59);
    assert_eq!(login_status(&mut net, &barred), 403, "a minute is not over");
    net.now += Duration::from_secs(1);
    assert_eq!(login_status(&mut net, &barred), 303, "the bar ended");
}

#[test]
fn a_removal_ends_after_its_minutes() {
    let mut net = net(bar_config());
    let (mut alice, mut bob) = (Client::new(1, 5), Client::new(2, 5));
    join(&mut net, &mut alice, &mut []);
    join(&mut net, &mut bob, &mut [&mut alice]);
    assert_eq!(
        admin_post(&mut net, "/admin/rooms/5/remove", "user=u2&minutes=2"),
        200
    );
    assert_eq!(login_status(&mut net, &bob), 403);
    net.now += Duration::from_secs(119);
    assert_eq!(
        login_status(&mut net, &bob),
        403,
        "two minutes are not over"
    );
    net.now += Duration::from_secs(1);
    assert_eq!(login_status(&mut net, &bob), 303, "back in room 5");
}

/// The wall clock of the cores of the restart tests (Unix ms at their
/// `start`): virtual time and Unix time move on together across a restart.
const T0: u64 = 1_765_000_000_000;

/// A core on the data file of `config`, its wall clock `T0` at `start`.
fn core_at(config: &Config, start: std::time::Instant, now: std::time::Instant) -> Core {
    sim::start_core_with(config, now, Outside::replayable(T0, start, 7))
}

fn durable_bar_config(dir: &tempfile::TempDir) -> Config {
    Config {
        data_file: Some(dir.path().join("rooms.db")),
        ..bar_config()
    }
}

/// The server stops (`kill -9`: it lets go of the file) and a new core
/// takes the data file over, `now` being the net's time.
fn restart(net: &mut Net, config: &Config, start: std::time::Instant) {
    let now = net.now;
    net.crash(Core::new(config.clone(), now));
    net.core = core_at(config, start, now);
}

/// Bug: a bar set again, shorter, ended in memory when it said last; but
/// the data file kept one row per time it was set, and a restart put back
/// only the rows still running: the first, longer one. The address was
/// barred again for most of an hour.
#[test]
fn a_bar_shortened_by_barring_again_stays_short_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = durable_bar_config(&dir);
    let start = std::time::Instant::now();
    let mut net = Net::new(core_at(&config, start, start), start);
    let carol = Client::new(3, 5);
    let address = carol.peer.ip();
    let bar = |minutes| format!("address={address}&minutes={minutes}");
    assert_eq!(admin_post(&mut net, "/admin/bar", &bar(60)), 200);
    assert_eq!(admin_post(&mut net, "/admin/bar", &bar(1)), 200);
    net.now += Duration::from_secs(120);
    net.turn(); // the core's clock moves on before the login comes
    assert_eq!(
        login_status(&mut net, &carol),
        303,
        "the one minute is over"
    );
    restart(&mut net, &config, start);
    // Another id from the same address (carol's id is hers until it expires).
    let mut dave = Client::new(4, 5);
    dave.peer = std::net::SocketAddr::new(address, 40_001);
    assert_eq!(login_status(&mut net, &dave), 303, "and stays over");
}

/// `POST path` with `form` on the admin listener, sent now; its pipe.
fn admin_send(net: &mut Net, path: &str, form: &str) -> usize {
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 50_000));
    let p = net.connect_via(peer, 1 << 20, Via::Admin);
    let bytes = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nWsrooms-Admin: yes\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{form}",
        form.len()
    );
    net.pipes[p].send(bytes.as_bytes());
    p
}

/// Bug: while the data file was busy (another program holding its write
/// lock), the operator's removal was answered `200` at once, though the
/// session's end and the bar only waited for the commit: a crash then,
/// and the next process put the session back. Now the answer waits for
/// the commit, as a login's `303` does; once it comes, the removal is in
/// the file and a restart keeps it.
#[test]
fn the_operators_answer_waits_for_a_busy_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = durable_bar_config(&dir);
    let start = std::time::Instant::now();
    let mut net = Net::new(core_at(&config, start, start), start);
    let (mut alice, mut bob) = (Client::new(1, 5), Client::new(2, 5));
    join(&mut net, &mut alice, &mut []);
    join(&mut net, &mut bob, &mut [&mut alice]);

    let other = rusqlite::Connection::open(config.data_file.as_ref().unwrap()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let p = admin_send(&mut net, "/admin/rooms/5/remove", "user=u2&minutes=60");
    for _ in 0..5 {
        turn(&mut net, &mut [&mut alice]);
    }
    assert_eq!(
        net.pipes[p].take(usize::MAX),
        b"",
        "no answer while the removal is not in the file"
    );
    drop(other);
    turn(&mut net, &mut [&mut alice]);
    assert_eq!(status_of(&net.pipes[p].take(usize::MAX)), 200);

    restart(&mut net, &config, start);
    let mut bob_again = Client::new(2, 5);
    bob_again.peer = std::net::SocketAddr::from(([10, 9, 9, 9], 40_000));
    assert_eq!(
        login_status(&mut net, &bob_again),
        403,
        "the removal's bar is in the file"
    );
}

/// The same for the operator's delete, when the server gives up on the
/// busy file (as on a failed write): the delete is dropped, and the
/// operator is told so (`503`), not `200`; asked again once the file is
/// free, it is done.
#[test]
fn an_operators_delete_the_busy_file_dropped_is_answered_503() {
    let dir = tempfile::tempdir().unwrap();
    let config = durable_bar_config(&dir);
    let start = std::time::Instant::now();
    let mut net = Net::new(core_at(&config, start, start), start);
    let mut alice = Client::new(1, 5);
    join(&mut net, &mut alice, &mut []);
    let p = alice.pipe().unwrap();
    let frame = alice.chat_frame();
    net.pipes[p].send(&frame);
    turn(&mut net, &mut [&mut alice]);

    let other = rusqlite::Connection::open(config.data_file.as_ref().unwrap()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let delete = admin_send(&mut net, "/admin/rooms/5/messages/1/delete", "");
    for _ in 0..12 {
        net.now += Duration::from_secs(1);
        net.turn();
    }
    let answer = net.pipes[delete].take(usize::MAX);
    assert_eq!(
        status_of(&answer),
        503,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(other);
    turn(&mut net, &mut [&mut alice]);
    let shown = |net: &Net| {
        let chat = net.core.chat();
        let room = chat.room_by_number(5).and_then(|r| chat.rooms.get(r));
        String::from_utf8_lossy(room.unwrap().history[0].json()).into_owned()
    };
    assert!(
        !shown(&net).contains(r#""deleted":true"#),
        "{}",
        shown(&net)
    );

    let again = admin_send(&mut net, "/admin/rooms/5/messages/1/delete", "");
    turn(&mut net, &mut [&mut alice]);
    assert_eq!(status_of(&net.pipes[again].take(usize::MAX)), 200);
    assert!(shown(&net).contains(r#""deleted":true"#), "{}", shown(&net));
}

/// A login that waits for a busy file, and whose id the operator removes
/// meanwhile, gets `403`, not a `303` with the cookie of a session that has
/// ended; a login of another id in the same wait still gets in.
#[test]
fn a_login_removed_while_it_waits_for_a_busy_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = durable_bar_config(&dir);
    let start = std::time::Instant::now();
    let mut net = Net::new(core_at(&config, start, start), start);
    let other = rusqlite::Connection::open(config.data_file.as_ref().unwrap()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let login = |net: &mut Net, c: &mut Client| {
        let p = net.connect(c.peer, 1 << 20);
        net.pipes[p].send(&c.login_request());
        c.phase = sim::client::Phase::LoggingIn(p);
        p
    };
    let (mut alice, mut bob) = (Client::new(1, 5), Client::new(2, 5));
    let p = login(&mut net, &mut alice);
    turn(&mut net, &mut []);
    let removal = admin_send(&mut net, "/admin/rooms/5/remove", "user=u1&minutes=5");
    turn(&mut net, &mut []);
    login(&mut net, &mut bob);
    turn(&mut net, &mut []);
    drop(other);
    turn(&mut net, &mut []);
    assert_eq!(status_of(&net.pipes[removal].take(usize::MAX)), 200);
    assert_eq!(status_of(&net.pipes[p].take(usize::MAX)), 403);
    read(&mut net, &mut bob);
    assert_eq!(bob.phase, sim::client::Phase::In, "bob got his 303");
}

/// A log-out's `303` waits for its session's end to be in the data file,
/// as a login's `303` waits for its session: a crash after the answer does
/// not bring the session back.
#[test]
fn a_logout_is_answered_once_it_is_in_the_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = durable_bar_config(&dir);
    let start = std::time::Instant::now();
    let mut net = Net::new(core_at(&config, start, start), start);
    let mut alice = Client::new(1, 5);
    join(&mut net, &mut alice, &mut []);
    let other = rusqlite::Connection::open(config.data_file.as_ref().unwrap()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let logout = net.connect(alice.peer, 1 << 20);
    let request = format!(
        "POST /logout HTTP/1.1\r\nHost: sim\r\nOrigin: http://sim\r\nCookie: {}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n",
        alice.cookie.as_deref().unwrap()
    );
    net.pipes[logout].send(request.as_bytes());
    turn(&mut net, &mut [&mut alice]);
    turn(&mut net, &mut [&mut alice]);
    assert_eq!(
        net.pipes[logout].take(usize::MAX),
        b"",
        "not in the file yet"
    );
    drop(other);
    turn(&mut net, &mut [&mut alice]);
    assert_eq!(status_of(&net.pipes[logout].take(usize::MAX)), 303);
    restart(&mut net, &config, start);
    assert_eq!(net.core.chat().sessions.len(), 0, "the session stays ended");
}

/// A removal whose write fails (a full disk) took effect (the socket is
/// closed, the id barred) but is not in the file yet: the operator is told
/// so with `503`, and the next commit that works writes it.
#[test]
fn a_removal_whose_write_fails_is_answered_503_and_written_later() {
    let dir = tempfile::tempdir().unwrap();
    let config = durable_bar_config(&dir);
    let start = std::time::Instant::now();
    let mut net = Net::new(core_at(&config, start, start), start);
    let (mut alice, mut bob) = (Client::new(1, 5), Client::new(2, 5));
    join(&mut net, &mut alice, &mut []);
    join(&mut net, &mut bob, &mut [&mut alice]);
    net.core.fail_writes(true).unwrap();
    let p = admin_send(&mut net, "/admin/rooms/5/remove", "user=u2&minutes=60");
    turn(&mut net, &mut [&mut alice]);
    let answer = net.pipes[p].take(usize::MAX);
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), 503, "{text}");
    assert!(text.contains("restart before then undoes it"), "{text}");
    assert_eq!(login_status(&mut net, &bob), 403, "in force meanwhile");

    net.core.fail_writes(false).unwrap();
    let frame = alice.chat_frame();
    net.pipes[alice.pipe().unwrap()].send(&frame); // a turn with a commit
    turn(&mut net, &mut [&mut alice]);
    restart(&mut net, &config, start);
    let mut bob_again = Client::new(2, 5);
    bob_again.peer = std::net::SocketAddr::from(([10, 9, 9, 9], 40_000));
    assert_eq!(login_status(&mut net, &bob_again), 403, "written since");
}

/// Bug: a login (or an operator's request) whose answer waited for a busy
/// data file longer than the head timeout (2 s here, 10 s by default: as
/// long as the server waits for a busy file) was dropped by that timeout,
/// its head long in, and never answered. Its answer now comes when the
/// file is free.
#[test]
fn an_answer_held_for_a_busy_file_outlives_the_head_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let config = durable_bar_config(&dir);
    assert_eq!(config.head_timeout, Duration::from_secs(2));
    let start = std::time::Instant::now();
    let mut net = Net::new(core_at(&config, start, start), start);
    let other = rusqlite::Connection::open(config.data_file.as_ref().unwrap()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut alice = Client::new(1, 5);
    let login = net.connect(alice.peer, 1 << 20);
    net.pipes[login].send(&alice.login_request());
    alice.phase = sim::client::Phase::LoggingIn(login);
    let bar = admin_send(&mut net, "/admin/bar", "address=192.0.2.1&minutes=5");
    for _ in 0..5 {
        net.now += Duration::from_secs(1);
        net.turn();
    }
    drop(other);
    turn(&mut net, &mut []);
    assert_eq!(status_of(&net.pipes[bar].take(usize::MAX)), 200);
    read(&mut net, &mut alice);
    assert_eq!(alice.phase, sim::client::Phase::In, "the login got its 303");
}

/// Bug: with no leave delay, a socket that the turn's output closed as
/// too slow before its own `join` went out (a message earlier in the turn
/// pushed it over --max-buffered) had its `leave` sent at once, and then
/// the `join`: the others listed it for good. Now nobody hears of it.
#[test]
fn a_socket_closed_before_its_own_join_went_out_is_never_announced() {
    let max_buffered = ghost_join(1 << 20, None);
    ghost_join(max_buffered - 1, Some(max_buffered));
}

/// `a` and `b` in room 4; in one turn `a` sends a message and `n` opens
/// its socket (stalled: it reads nothing), in that order. Returns what
/// `n` then holds queued. With `calibrated` (what it held with room to
/// spare) the message pushes it over: `b` must see neither its join nor
/// its leave.
fn ghost_join(max_buffered: usize, calibrated: Option<usize>) -> usize {
    use sim::client::Phase;
    let mut net = net(Config {
        max_buffered,
        rate_limit: 0.0,
        ..config()
    });
    let (mut a, mut b, mut n) = (Client::new(1, 4), Client::new(2, 4), Client::new(3, 4));
    join(&mut net, &mut a, &mut []);
    join(&mut net, &mut b, &mut [&mut a]);
    let p = net.connect(n.peer, 1 << 20);
    net.pipes[p].send(&n.login_request());
    n.phase = Phase::LoggingIn(p);
    turn(&mut net, &mut [&mut a, &mut b]);
    read(&mut net, &mut n);
    assert_eq!(n.phase, Phase::In, "n logged in");

    let frame = a.chat_frame();
    net.pipes[a.pipe().unwrap()].send(&frame);
    let q = net.connect(n.peer, 0);
    net.pipes[q].send(&n.upgrade_request());
    let seen = turn(&mut net, &mut [&mut a, &mut b]);
    assert_eq!(messages(&seen[1]), [1]);
    let presence: Vec<(bool, String)> = seen[1]
        .iter()
        .filter_map(|s| match s {
            Seen::Presence { join, user, .. } => Some((*join, user.clone())),
            _ => None,
        })
        .collect();
    let id = net.pipes[q].id.unwrap();
    if calibrated.is_none() {
        assert_eq!(presence, [(true, "u3".to_string())]);
        return net.core.conn(id).unwrap().out.buffered();
    }
    let closed = net
        .core
        .conn(id)
        .is_none_or(|c| !c.machine.is_open_websocket());
    assert!(closed, "n was closed as too slow");
    assert_eq!(presence, [], "b heard of n");
    assert_eq!(b.roster, ["u1", "u2"]);
    assert_eq!(net.core.chat().listed(4), ["u1", "u2"]);
    max_buffered
}

/// Bug: an operator's removal whose `200` waits for a busy data
/// file, when SIGTERM comes meanwhile: `begin_shutdown` takes the admin
/// connection (nothing in its queue yet) for an idle one and drops it. The
/// removal is then committed once the file is free, but the operator never
/// gets an answer (before the held answers, the `200` was queued at once
/// and drained out at shutdown).
#[test]
fn a_held_answer_survives_the_start_of_a_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let config = durable_bar_config(&dir);
    let start = std::time::Instant::now();
    let mut net = Net::new(core_at(&config, start, start), start);
    let (mut alice, mut bob) = (Client::new(1, 5), Client::new(2, 5));
    join(&mut net, &mut alice, &mut []);
    join(&mut net, &mut bob, &mut [&mut alice]);

    let other = rusqlite::Connection::open(config.data_file.as_ref().unwrap()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let p = admin_send(&mut net, "/admin/rooms/5/remove", "user=u2&minutes=60");
    turn(&mut net, &mut [&mut alice]);
    assert_eq!(net.pipes[p].take(usize::MAX), b"", "held for the file");
    net.core.begin_shutdown(); // SIGTERM
    drop(other);
    turn(&mut net, &mut [&mut alice]);
    let answer = net.pipes[p].take(usize::MAX);
    assert!(
        !answer.is_empty(),
        "the removal was committed but its answer was never sent (pipe closed: {})",
        net.pipes[p].closed
    );
    assert_eq!(status_of(&answer), 200);
}

/// Bug, with no data file at all (a user-visible change from
/// before the held answers): a log-out read in the same loop turn as
/// SIGTERM (one `poll` batch) is never answered. Its `303` is held for
/// the turn's commit (a no-op in memory), so its connection's queue is
/// empty when `begin_shutdown` runs, and it is dropped as idle.
#[test]
fn a_logout_read_in_the_turn_of_the_signal_is_answered_in_memory() {
    let mut net = net(config());
    let mut alice = Client::new(1, 5);
    join(&mut net, &mut alice, &mut []);
    let logout = net.connect(alice.peer, 1 << 20);
    let request = format!(
        "POST /logout HTTP/1.1\r\nHost: sim\r\nOrigin: http://sim\r\nCookie: {}\r\n\
         Content-Length: 0\r\n\r\n",
        alice.cookie.as_deref().unwrap()
    );
    // The loop reads the request, then the signal of the same poll batch.
    let id = net.pipes[logout].id.unwrap();
    net.core.read(id, request.as_bytes());
    net.core.begin_shutdown();
    net.now += Duration::from_millis(10);
    net.turn();
    let answer = net.pipes[logout].take(usize::MAX);
    assert!(
        !answer.is_empty(),
        "the log-out took effect but was never answered (pipe closed: {})",
        net.pipes[logout].closed
    );
    assert_eq!(status_of(&answer), 303);
}

/// Bug: the operator's delete asked twice while the first waits
/// for a busy data file. The second finds the first in the outbox
/// (`may_change`: `Refusal::Deleted`) and is answered at once,
/// `200 {"already":true}`, before the first is in the file. The server
/// then gave up on the busy file: the delete was dropped (the first got
/// `503`, "not deleted"), yet the operator had been told `200` that it
/// was deleted already. Now the second waits for the same commit.
#[test]
fn a_second_delete_is_not_told_done_before_the_first_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = durable_bar_config(&dir);
    let start = std::time::Instant::now();
    let mut net = Net::new(core_at(&config, start, start), start);
    let mut alice = Client::new(1, 5);
    join(&mut net, &mut alice, &mut []);
    let p = alice.pipe().unwrap();
    let frame = alice.chat_frame();
    net.pipes[p].send(&frame);
    turn(&mut net, &mut [&mut alice]);

    let other = rusqlite::Connection::open(config.data_file.as_ref().unwrap()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let first = admin_send(&mut net, "/admin/rooms/5/messages/1/delete", "");
    turn(&mut net, &mut [&mut alice]);
    let second = admin_send(&mut net, "/admin/rooms/5/messages/1/delete", "");
    turn(&mut net, &mut [&mut alice]);
    let early = net.pipes[second].take(usize::MAX);
    assert_eq!(
        early,
        b"",
        "answered before the first delete is in the file: {}",
        String::from_utf8_lossy(&early)
    );
    for _ in 0..12 {
        net.now += Duration::from_secs(1);
        net.turn();
    }
    assert_eq!(status_of(&net.pipes[first].take(usize::MAX)), 503);
    let answer = net.pipes[second].take(usize::MAX);
    assert_ne!(
        status_of(&answer),
        200,
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// `GET /healthz` on the main listener; its status.
fn health(net: &mut Net) -> u16 {
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 50_001));
    let bytes = b"GET /healthz HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n";
    request(net, peer, Via::Main, bytes)
}

/// A sync of the log that fails (a failing disk) was only logged at
/// `warn`, every time: `/healthz` said `ok` while what was committed
/// could be lost at a power loss. Now it is a persist error, logged once,
/// and `/healthz` is degraded until a sync works again. (The commit
/// stands, and its output went out: it is safe against a crash of the
/// process.)
#[test]
fn a_failing_sync_degrades_health_until_one_works() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        sync_ms: 0, // every turn's commit is synced before its output
        ..durable_bar_config(&dir)
    };
    let start = std::time::Instant::now();
    let mut net = Net::new(core_at(&config, start, start), start);
    let mut alice = Client::new(1, 5);
    join(&mut net, &mut alice, &mut []);
    assert_eq!(health(&mut net), 200);

    net.core.fail_syncs(true);
    let frame = alice.chat_frame();
    net.pipes[alice.pipe().unwrap()].send(&frame);
    let seen = turn(&mut net, &mut [&mut alice]);
    assert!(
        seen[0]
            .iter()
            .any(|s| matches!(s, sim::client::Seen::Message { .. })),
        "the commit stands and is delivered: {seen:?}"
    );
    assert_eq!(health(&mut net), 503, "degraded while syncs fail");

    net.core.fail_syncs(false);
    let frame = alice.chat_frame();
    net.pipes[alice.pipe().unwrap()].send(&frame);
    turn(&mut net, &mut [&mut alice]);
    assert_eq!(health(&mut net), 200, "a sync worked again");
}

/// Bug: `--keep-days` deleted old messages from the data file, but a room
/// in use went on serving them from its in-memory history: a newcomer's
/// `welcome` still held messages days past the limit. Now the retention
/// step drops them from memory too, keeping the room's newest (as the
/// file does while the room is in use).
#[test]
fn messages_past_keep_days_leave_the_memory_history_too() {
    use sim::client::Phase;
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        keep_days: 1,
        rate_limit: 0.0,
        // Alice stays connected across the days this test skips.
        ping_interval: Duration::from_secs(3600),
        pong_timeout: Duration::from_secs(3600),
        ..durable_bar_config(&dir)
    };
    let start = std::time::Instant::now();
    let mut net = Net::new(core_at(&config, start, start), start);
    let mut alice = Client::new(1, 5);
    join(&mut net, &mut alice, &mut []);
    for _ in 0..3 {
        let frame = alice.chat_frame();
        net.pipes[alice.pipe().unwrap()].send(&frame);
    }
    let seen = turn(&mut net, &mut [&mut alice]);
    assert_eq!(messages(&seen[0]), [1, 2, 3]);
    // Two days, an hour at a time (alice answers her pings).
    for _ in 0..48 {
        net.now += Duration::from_secs(3600);
        turn(&mut net, &mut [&mut alice]);
    }
    let mut bob = Client::new(2, 5);
    let p = net.connect(bob.peer, 1 << 20);
    net.pipes[p].send(&bob.login_request());
    bob.phase = Phase::LoggingIn(p);
    turn(&mut net, &mut [&mut alice]);
    read(&mut net, &mut bob);
    let p = net.connect(bob.peer, 1 << 20);
    net.pipes[p].send(&bob.upgrade_request());
    bob.phase = Phase::Opening(p);
    turn(&mut net, &mut [&mut alice]);
    let seen = read(&mut net, &mut bob);
    assert!(
        matches!(seen.first(), Some(Seen::Welcome { .. })),
        "{seen:?}"
    );
    assert_eq!(messages(&seen), [3], "only the newest is kept: {seen:?}");
}

//! A deterministic simulation of the whole server: the real [`Core`] (the
//! same type the mio loop drives), hundreds of virtual clients on virtual
//! TCP connections, a virtual clock, and faults, all drawn from one seed.
//! After every loop turn it checks what must always hold:
//!
//! - **one history**: every `seq` of a room means one event for every
//!   client that ever sees it (a message: same sender, same text as sent
//!   unless a history shows it edited or deleted; an edit or a delete:
//!   same target, and a delete's `by` is the target's sender), even across
//!   failed commits and restarts from the data file (no `seq` reused);
//!   half the clients speak `wsrooms.v2` and edit and delete their own
//!   messages now and then, and the operator deletes anyone's, in rooms
//!   nobody is in too;
//! - **exactly once, in order, none missed**: each client sees its room's
//!   messages with consecutive `seq`s, across reconnects with `since`
//!   (unless its welcome says `gap`);
//! - **every member gets it**: at the end, every client with an open
//!   socket has seen the room's last message;
//! - **no ghost**: every room member is an open socket of the core, and a
//!   client that has read everything sees exactly the room's listed users:
//!   its members and the sessions within their leave delay (every `join`
//!   and `leave` arrived in the turn it happened);
//! - **presence without noise**: a session whose socket closed stays
//!   listed until its leave is due: it goes off the list (the others see
//!   `leave`) only once it was away `--leave-delay-secs` or its session
//!   ended, never later than its delay (plus a few turns of timer slack);
//!   a socket back within the delay is not announced, so no client ever
//!   reads a `join` of someone it counts as there, nor a `leave` of someone
//!   it does not; after a crash, those listed before it are listed again
//!   (`--restart-leave-delay-secs`);
//! - **bounded memory**: no connection holds more than `--max-buffered`
//!   plus one unit of its own output queued, nor more than one read plus
//!   one request of input;
//! - **timeouts**: every connection has a deadline and is never kept past
//!   it;
//! - **counters**: no `/metrics` counter goes down, and every refused
//!   connection is counted exactly once.
//!
//! A failure names its seed; `WSROOMS_SIM_SEED=N` replays that seed alone
//! (the same clients, faults and turns).

#[allow(dead_code)] // (for the by-hand tests, not the simulation)
pub mod by_hand;
pub mod client;
pub mod net;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use wsrooms::Config;
use wsrooms::chat::RoomId;
use wsrooms::chat::edits::Refusal;
use wsrooms::core::Core;
use wsrooms::outside::Outside;
use wsrooms::store::Store;

use client::{Client, Phase, Seen};
use net::Net;

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True `per_mille` times in a thousand.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// The shape of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub clients: usize,
    pub rooms: u32,
    pub turns: u64,
    /// With a data file (crashes and failed commits are possible then).
    pub durable: bool,
}

impl Plan {
    /// The plan a seed draws: 40–300 clients (most seeds fewer than 100)
    /// in 1–8 rooms, 150–400 turns, a data file for two seeds in three.
    pub fn of(seed: u64) -> Plan {
        let mut rng = Rng::new(seed ^ 0xA5A5);
        let clients = match rng.chance(150) {
            true => 100 + rng.below(201),
            false => 40 + rng.below(61),
        };
        Plan {
            clients: clients as usize,
            rooms: 1 + rng.below(8) as u32,
            turns: 150 + rng.below(251),
            durable: !seed.is_multiple_of(3),
        }
    }
}

/// The server's settings in the simulation: short timeouts and small
/// buffers, so that every limit is reached within a few hundred turns.
pub fn sim_config(data_file: Option<PathBuf>) -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        log_level: "off".into(),
        max_connections: 400,
        max_connections_per_ip: 4,
        head_timeout: Duration::from_secs(2),
        ping_interval: Duration::from_secs(3),
        pong_timeout: Duration::from_secs(2),
        close_timeout: Duration::from_secs(1),
        reserve_timeout: Duration::from_secs(6),
        grace_timeout: Duration::from_secs(4),
        pause_reading_at: 8 * 1024,
        max_buffered: 24 * 1024,
        rate_limit: 5.0,
        rate_burst: 8.0,
        history_messages: 20,
        max_chat_chars: 50,
        // Shorter than the grace: most leaves come when the delay ends,
        // some with the reservation's end; many sockets come back within.
        leave_delay: Duration::from_secs(2),
        restart_leave_delay: Duration::from_secs(3),
        data_file,
        ..Config::default()
    }
}

/// What went wrong, and when.
pub type Failure = String;

/// What one `seq` of a room was seen to be.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A message from `user`; `text` as it was sent, once seen so.
    Said { user: String, text: Option<String> },
    /// An edit or a delete of message `target`.
    Change { target: u64, delete: bool },
}

/// One simulated world.
pub struct World {
    pub plan: Plan,
    pub rng: Rng,
    pub net: Net,
    pub clients: Vec<Client>,
    config: Config,
    /// The data file, in a directory removed at the end.
    _dir: Option<tempfile::TempDir>,
    /// Every `seq` of every room: what it is (one history).
    history: HashMap<u32, BTreeMap<u64, Entry>>,
    /// Each room number's room in the core at the last check: a new one
    /// (freed and made again, even within one turn) numbers from 1 again.
    room_ids: HashMap<u32, Option<RoomId>>,
    /// Pipes of sockets opened into a room that has since been freed: what
    /// they still deliver (written before, read only now) belongs to the
    /// room's earlier numbering and is not checked against the new one.
    stale_pipes: HashSet<usize>,
    /// Counter values at the last check.
    counters: BTreeMap<String, f64>,
    /// Connections refused at accept, as the clients saw them.
    refused: u64,
    /// Commits fail until this turn.
    failing_until: u64,
    /// Commits fail now.
    commits_failing: bool,
    /// Each session listed at the last check, by room and user: since when
    /// it was seen listed without a socket (`None`: a socket is joined).
    listed: HashMap<(u32, String), Option<Instant>>,
    /// Another program's connection holding the data file's write lock
    /// (`BEGIN IMMEDIATE`) while commits "fail" this way: they find the
    /// file busy and wait, instead of failing.
    locker: Option<rusqlite::Connection>,
    pub turn: u64,
    /// The seed, and when the world began (the wall clock and the session
    /// tokens of each core started are drawn from them).
    seed: u64,
    start: Instant,
    /// Cores started so far (each draws its own tokens).
    cores: u64,
    /// What happened, for a failure's report (the last events).
    pub log: Vec<String>,
}

impl World {
    pub fn new(seed: u64, plan: Plan) -> World {
        let dir = plan
            .durable
            .then(|| tempfile::tempdir().expect("a temporary directory"));
        let path = dir.as_ref().map(|d| d.path().join("sim.db"));
        let config = Config {
            // Fewer than the clients: refusals happen.
            max_connections: plan.clients * 3 / 4,
            ..sim_config(path)
        };
        let start = Instant::now();
        if let Some(path) = &config.data_file {
            fix_epoch(path);
        }
        let core = start_core_with(&config, start, replayable(seed, start, 0));
        let clients = (0..plan.clients)
            .map(|n| {
                let mut c = Client::new(n, 1 + (n as u32 % plan.rooms));
                c.protocol = (n % 2 == 0).then_some("wsrooms.v2");
                c
            })
            .collect();
        World {
            rng: Rng::new(seed),
            net: Net::new(core, start),
            clients,
            config,
            _dir: dir,
            history: HashMap::new(),
            room_ids: HashMap::new(),
            stale_pipes: HashSet::new(),
            counters: BTreeMap::new(),
            refused: 0,
            failing_until: 0,
            commits_failing: false,
            listed: HashMap::new(),
            locker: None,
            turn: 0,
            seed,
            start,
            cores: 1,
            log: Vec::new(),
            plan,
        }
    }

    fn note(&mut self, what: String) {
        if self.log.len() >= 40 {
            self.log.remove(0);
        }
        self.log.push(format!("turn {}: {what}", self.turn));
    }

    /// Runs the plan: turns with clients acting and faults, then a calm
    /// end in which everyone reads, then the final checks.
    pub fn run(&mut self) -> Result<(), Failure> {
        for _ in 0..self.plan.turns {
            self.step(true)?;
        }
        self.calm()?;
        self.check_counters()?;
        self.check_everyone_has_everything()
    }

    /// One turn: time moves, some clients act, maybe a fault, the loop
    /// turns, everyone who reads reads, and the invariants are checked.
    pub fn step(&mut self, faults: bool) -> Result<(), Failure> {
        self.turn += 1;
        let ms = match self.rng.chance(30) {
            true => 500 + self.rng.below(2500),
            false => 1 + self.rng.below(120),
        };
        // With timers still due (at most 64 fire a turn), the loop turns
        // again at once, as the real one does (its poll does not sleep).
        let due = self.net.core.next_wake(self.net.now) == Some(Duration::ZERO);
        self.net.now += Duration::from_millis(if due { 1 } else { ms });
        let acting = 1 + self.rng.below(self.clients.len() as u64 / 25 + 1);
        for _ in 0..acting {
            let n = self.rng.below(self.clients.len() as u64) as usize;
            self.act(n, faults);
        }
        if faults {
            self.world_fault()?;
        }
        self.net.turn();
        self.read_all()?;
        self.check()
    }

    /// A quiet end: faults stop, stalled clients read again, commits work;
    /// sockets settle over a few seconds of virtual time.
    fn calm(&mut self) -> Result<(), Failure> {
        self.set_failing(false);
        for c in &mut self.clients {
            c.stalled_until = 0;
            c.read_rate = usize::MAX;
        }
        for _ in 0..100 {
            self.turn += 1;
            self.net.now += Duration::from_millis(50);
            for n in 0..self.clients.len() {
                if self.clients[n].phase == Phase::In {
                    self.open_socket(n);
                }
            }
            self.net.turn();
            self.read_all()?;
            self.check()?;
        }
        // A socket opened in the last of those turns (after many refusals
        // of a full server) may still have its welcome on the way, a small
        // receive buffer taking a few turns: let what is queued drain,
        // opening nothing new, before the final checks.
        for _ in 0..20 {
            self.turn += 1;
            self.net.now += Duration::from_millis(50);
            self.net.turn();
            self.read_all()?;
            self.check()?;
        }
        Ok(())
    }

    // ----- clients -----------------------------------------------------

    /// Client `n` does something its state allows, drawn from the seed.
    fn act(&mut self, n: usize, faults: bool) {
        let roll = self.rng.below(1000);
        match self.clients[n].phase {
            Phase::Out => self.log_in(n),
            Phase::In => self.open_socket(n),
            Phase::LoggingIn(p) | Phase::Opening(p) if faults && roll < 20 => {
                // Gone in the middle of a request head.
                self.note(format!(
                    "{} resets its pipe {p} mid-head",
                    self.clients[n].user
                ));
                self.net.pipes[p].reset();
            }
            Phase::LoggingIn(_) | Phase::Opening(_) => {}
            Phase::Open(p) => self.act_open(n, p, roll, faults),
        }
    }

    fn log_in(&mut self, n: usize) {
        let p = self.connect_from(n, 64 * 1024);
        let request = self.clients[n].login_request();
        // Sometimes in two pieces: a head cut anywhere.
        let cut = self.rng.below(request.len() as u64) as usize;
        self.net.pipes[p].send(&request[..cut]);
        self.net.pipes[p].send(&request[cut..]);
        self.clients[n].phase = Phase::LoggingIn(p);
    }

    fn open_socket(&mut self, n: usize) {
        let cap = match self.rng.chance(100) {
            true => 2 * 1024, // a small receive buffer: fills quickly
            false => 32 * 1024,
        };
        let p = self.connect_from(n, cap);
        let request = self.clients[n].upgrade_request();
        self.net.pipes[p].send(&request);
        self.clients[n].phase = Phase::Opening(p);
    }

    /// A new connection from client `n`'s address (receive buffer `cap`),
    /// counted when the server refuses it at accept; its pipe.
    fn connect_from(&mut self, n: usize, cap: usize) -> usize {
        let p = self.net.connect(self.clients[n].peer, cap);
        if self.net.pipes[p].id.is_none() {
            self.refused += 1;
        }
        p
    }

    fn act_open(&mut self, n: usize, p: usize, roll: u64, faults: bool) {
        let user = self.clients[n].user.clone();
        match roll {
            0..600 => {
                let frame = self.clients[n].chat_frame();
                self.net.pipes[p].send(&frame);
            }
            600..650 if faults => {
                // A flood: past the burst, so the rate limit closes it.
                self.note(format!("{user} floods"));
                for _ in 0..12 {
                    let frame = self.clients[n].chat_frame();
                    self.net.pipes[p].send(&frame);
                }
            }
            650..700 if faults => {
                // A slow reader, or a stalled one.
                let turns = 5 + self.rng.below(60);
                self.note(format!("{user} stalls for {turns} turns"));
                self.clients[n].stalled_until = self.turn + turns;
                self.clients[n].read_rate = 256 * self.rng.below(4) as usize;
            }
            700..720 if faults => {
                // Reset in the middle of a frame.
                self.note(format!("{user} resets mid-frame"));
                let frame = self.clients[n].chat_frame();
                self.net.pipes[p].send(&frame[..frame.len() / 2]);
                self.net.pipes[p].reset();
            }
            720..760 => {
                // Leaves and comes back later with `since`.
                let close = self.clients[n].close_frame();
                self.net.pipes[p].send(&close);
            }
            775..830 => {
                // A `wsrooms.v2` client edits or deletes one of its own.
                if let Some(frame) = self.clients[n].change_frame(roll, roll >= 815) {
                    self.net.pipes[p].send(&frame);
                }
            }
            830..850 => {
                if let Some(frame) = self.clients[n].typing_frame() {
                    self.net.pipes[p].send(&frame);
                }
            }
            850..862 => {
                // The page's Log out button: `POST /logout` and, in the
                // same turn half the time, its socket's close (before or
                // after the log-out is read: the pipes are read in order).
                // Its socket is then closed `1000 logged out`, its next
                // upgrade refused, and it logs in again.
                self.note(format!("{user} logs out"));
                let q = self.connect_from(n, 32 * 1024);
                let request = self.clients[n].logout_request();
                self.net.pipes[q].send(&request);
                if roll.is_multiple_of(2) {
                    let close = self.clients[n].close_frame();
                    self.net.pipes[p].send(&close);
                }
            }
            760..775 if faults => {
                // A second socket for the same session (another tab).
                self.note(format!("{user} opens a second socket"));
                let q = self.connect_from(n, 32 * 1024);
                let request = self.clients[n].upgrade_request();
                self.net.pipes[q].send(&request);
                self.clients[n].phase = Phase::Opening(q);
                self.net.pipes[p].fin();
            }
            _ => {}
        }
    }

    /// Every client that reads takes what its pipe holds (at its rate)
    /// and answers (pongs, close answers); what it saw is checked.
    fn read_all(&mut self) -> Result<(), Failure> {
        for n in 0..self.clients.len() {
            let Some(p) = self.clients[n].pipe() else {
                continue;
            };
            if self.clients[n].stalled_until > self.turn {
                continue;
            }
            let rate = self.clients[n].read_rate.max(1);
            let bytes = self.net.pipes[p].take(rate);
            let done = self.net.pipes[p].is_done();
            let (reply, seen) = self.clients[n].on_bytes(&bytes, done);
            self.net.pipes[p].send(&reply);
            if !self.stale_pipes.contains(&p) {
                for s in seen {
                    self.saw(n, s)?;
                }
            }
            if done {
                // Its socket ended: the client closes its side too.
                self.net.pipes[p].fin();
            }
        }
        Ok(())
    }

    // ----- faults of the whole world ------------------------------------

    fn world_fault(&mut self) -> Result<(), Failure> {
        if self.plan.durable && self.rng.chance(4) {
            self.crash()?;
        }
        if self.plan.durable && self.failing_until <= self.turn && self.rng.chance(6) {
            // A period that ends now ends before the next begins (else the
            // next lock would wait for this one's, held by the same thread).
            self.locker = None;
            self.failing_until = self.turn + 1 + self.rng.below(8);
            if self.rng.chance(500) {
                self.note(format!(
                    "the file is busy until turn {}",
                    self.failing_until
                ));
                self.hold_lock();
            } else {
                self.note(format!("commits fail until turn {}", self.failing_until));
                self.set_failing(true);
            }
        } else if self.failing_until == self.turn {
            self.set_failing(false);
        }
        if self.rng.chance(8) {
            // A room's readers stall together (a train in a tunnel): their
            // queues fill side by side, so one's `leave` may push the next
            // over --max-buffered.
            let room = 1 + self.rng.below(u64::from(self.plan.rooms)) as u32;
            let until = self.turn + 20 + self.rng.below(60);
            self.note(format!("readers of room {room} stall until turn {until}"));
            for n in 0..self.clients.len() {
                if self.clients[n].room == room && self.rng.chance(600) {
                    self.clients[n].stalled_until = until;
                    self.clients[n].read_rate = 0;
                }
            }
        }
        if self.rng.chance(6) {
            self.operator_deletes()?;
        }
        if self.rng.chance(5) {
            // Many connections from one address at once.
            let n = self.rng.below(self.clients.len() as u64) as usize;
            let peer = self.clients[n].peer;
            self.note(format!("{peer} opens 6 connections"));
            for _ in 0..6 {
                let p = self.net.connect(peer, 4096);
                if self.net.pipes[p].id.is_none() {
                    self.refused += 1;
                }
                self.net.pipes[p].send(b"GET /healthz HTTP/1.1\r\nHost: sim\r\n\r\n");
                self.net.pipes[p].fin();
            }
        }
        Ok(())
    }

    /// The operator deletes a message of a room, whoever sent it, in a
    /// room nobody is in too (read back from the data file, with one): a
    /// `delete` with `"by":null`, numbered in the room's one history.
    fn operator_deletes(&mut self) -> Result<(), Failure> {
        let mut room = 1 + self.rng.below(u64::from(self.plan.rooms)) as u32;
        // Rooms nobody is in are rarer: look for one half the time.
        if self.plan.durable && self.rng.chance(500) {
            let chat = self.net.core.chat();
            if let Some(empty) = (1..=self.plan.rooms).find(|&r| chat.room_by_number(r).is_none()) {
                room = empty;
            }
        }
        let last = self
            .history
            .get(&room)
            .and_then(|h| h.keys().next_back().copied())
            .unwrap_or(0);
        let seq = 1 + self.rng.below(last + 1);
        let in_memory = self.net.core.chat().room_by_number(room).is_some();
        let result = self.net.core.delete_as_operator(room, seq);
        self.note(format!(
            "the operator deletes message {seq} of room {room} ({}): {result:?}",
            if in_memory {
                "in memory"
            } else {
                "nobody in it"
            }
        ));
        // A message someone saw is in the data file: in a room nobody is
        // in, it is read back from there (deleted already, at most).
        let seen = matches!(
            self.history.get(&room).and_then(|h| h.get(&seq)),
            Some(Entry::Said { .. })
        );
        if self.plan.durable && !in_memory && seen && result == Err(Refusal::NoSuchMessage) {
            return Err(format!(
                "the operator could not delete message {seq} of room {room}, nobody in it"
            ));
        }
        Ok(())
    }

    fn set_failing(&mut self, fail: bool) {
        if self.plan.durable {
            self.net.core.fail_writes(fail).expect("the trigger");
            if !fail {
                self.locker = None; // rolls back: the lock is free
            }
        }
        self.commits_failing = fail;
    }

    /// Everyone listed in a room of the plan, by room.
    fn everyone_listed(&self) -> BTreeMap<u32, Vec<String>> {
        let chat = self.net.core.chat();
        (1..=self.plan.rooms)
            .map(|room| {
                let mut users: Vec<String> =
                    chat.listed(room).into_iter().map(String::from).collect();
                users.sort_unstable();
                (room, users)
            })
            .collect()
    }

    /// Another program takes the data file's write lock (a real SQLite
    /// connection of this process: the core's is another connection).
    fn hold_lock(&mut self) {
        let Some(path) = &self.config.data_file else {
            return;
        };
        let other = rusqlite::Connection::open(path).expect("the file opens");
        // The store's helper thread may hold the lock for a moment (a
        // checkpoint that resets the log), or the server's own connection
        // may (a commit that found the file busy before keeps its
        // transaction to try again): then this program finds it busy, as
        // a real one would, and takes no lock this time.
        other
            .busy_timeout(std::time::Duration::from_millis(200))
            .expect("a busy timeout");
        match other.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => self.locker = Some(other),
            Err(e) => self.note(format!("the file is busy already ({e}): no lock taken")),
        }
    }

    /// The whole server dies and starts again from the same data file.
    fn crash(&mut self) -> Result<(), Failure> {
        self.check_counters()?;
        self.note("the server crashes and restarts".into());
        self.failing_until = 0;
        // What the last turn's commit wrote is what the new process lists
        // (a restart makes no join per person); after a failed commit, or
        // with one waiting for a busy file, the file may lag behind.
        let committed = !self.commits_failing && self.locker.is_none();
        let listed = self.everyone_listed();
        self.commits_failing = false;
        self.locker = None;
        // The old process is gone (with its lock on the file) before the
        // new one opens it.
        self.net.crash(Core::new(sim_config(None), self.net.now));
        let outside = replayable(self.seed, self.start, self.cores);
        self.cores += 1;
        self.net.core = start_core_with(&self.config, self.net.now, outside);
        if committed && self.everyone_listed() != listed {
            return Err(format!(
                "after a restart the rooms list {:?}; before it they listed {listed:?}",
                self.everyone_listed()
            ));
        }
        // A new process: its counters start from zero, and those it lists
        // without a socket are away from its start.
        self.counters.clear();
        self.listed.clear();
        self.refused = 0;
        Ok(())
    }

    // ----- what the clients saw ------------------------------------------

    fn saw(&mut self, n: usize, seen: Seen) -> Result<(), Failure> {
        let room = self.clients[n].room;
        match seen {
            Seen::Message {
                seq,
                user,
                text,
                changed,
            } => {
                self.saw_message(room, seq, user, text, changed)
                    .map_err(|e| format!("{e} (seen by {})", self.clients[n].user))?;
                self.check_order(n, seq)
            }
            Seen::Change {
                seq,
                target,
                delete,
                by,
            } => {
                self.saw_change(room, seq, target, delete, by)
                    .map_err(|e| format!("{e} (seen by {})", self.clients[n].user))?;
                self.check_order(n, seq)
            }
            Seen::Welcome { gap, .. } => {
                // A gap: what it missed is no longer kept; start afresh.
                if gap {
                    self.clients[n].expected = None;
                }
                Ok(())
            }
            Seen::Presence { join, user, listed } if join == listed => Err(format!(
                "{} in room {room} read a {} of {user}, whom it counted {} (noise)",
                self.clients[n].user,
                if join { "join" } else { "leave" },
                if listed { "there" } else { "gone" },
            )),
            Seen::Presence { .. } | Seen::Close(_) => Ok(()),
        }
    }

    /// A message `seq` of `room`: one sender, and the text it was sent with
    /// whenever it is shown unchanged.
    fn saw_message(
        &mut self,
        room: u32,
        seq: u64,
        user: String,
        text: String,
        changed: bool,
    ) -> Result<(), Failure> {
        let ours = self.history.entry(room).or_default();
        let sent = (!changed).then(|| text.clone());
        if let Some(t) = &sent
            && !t.starts_with(&format!("{user}."))
        {
            return Err(format!("message {seq} is not its sender's: {user} {t}"));
        }
        match ours.get_mut(&seq) {
            Some(Entry::Said { user: u, text: t }) if *u == user => match (t.as_ref(), sent) {
                (Some(first), Some(now)) if *first != now => Err(format!(
                    "seq {seq} of room {room} reused: {first:?}, then {now:?}"
                )),
                (None, Some(now)) => {
                    *t = Some(now);
                    Ok(())
                }
                _ => Ok(()),
            },
            Some(first) => Err(format!(
                "seq {seq} of room {room} reused: {first:?}, then {:?}",
                (user, text)
            )),
            None => {
                ours.insert(seq, Entry::Said { user, text: sent });
                Ok(())
            }
        }
    }

    /// An edit or delete `seq` of `room`: one target, and a delete by the
    /// target's own sender.
    fn saw_change(
        &mut self,
        room: u32,
        seq: u64,
        target: u64,
        delete: bool,
        by: Option<String>,
    ) -> Result<(), Failure> {
        let ours = self.history.entry(room).or_default();
        if let (Some(by), Some(Entry::Said { user, .. })) = (&by, ours.get(&target))
            && by != user
        {
            return Err(format!(
                "{by} deleted {user}'s message {target} of room {room}"
            ));
        }
        let entry = Entry::Change { target, delete };
        match ours.get(&seq) {
            Some(first) if *first != entry => Err(format!(
                "seq {seq} of room {room} reused: {first:?}, then {entry:?}"
            )),
            Some(_) => Ok(()),
            None => {
                ours.insert(seq, entry);
                Ok(())
            }
        }
    }

    /// Each client sees consecutive `seq`s: none twice, none missed.
    fn check_order(&mut self, n: usize, seq: u64) -> Result<(), Failure> {
        let c = &mut self.clients[n];
        if let Some(expected) = c.expected
            && seq != expected
        {
            return Err(format!(
                "{} in room {} saw seq {seq} after {} (exactly once, in order)",
                c.user,
                c.room,
                expected - 1
            ));
        }
        c.expected = Some(seq + 1);
        Ok(())
    }

    // ----- invariants ----------------------------------------------------

    /// Everything that must hold after every turn.
    pub fn check(&mut self) -> Result<(), Failure> {
        self.forget_freed_rooms();
        self.check_members()?;
        self.check_presence()?;
        self.check_connections()?;
        // (Rendering /metrics is the check's dearest part: every 4th turn,
        // before a crash and at the end.)
        match self.turn.is_multiple_of(4) {
            true => self.check_counters(),
            false => Ok(()),
        }
    }

    /// Without a data file a room that emptied is gone, and its numbering
    /// starts again: its history here and its clients' `since` go too, and
    /// what its old sockets still deliver is not checked against the new
    /// numbering. A room freed and made again within one turn has a new id.
    fn forget_freed_rooms(&mut self) {
        if self.plan.durable {
            return;
        }
        let chat = self.net.core.chat();
        for room in 1..=self.plan.rooms {
            let now = chat.room_by_number(room);
            let before = self.room_ids.insert(room, now);
            if before.flatten() == now {
                continue;
            }
            self.history.remove(&room);
            let freed = before.flatten().is_some();
            for c in self.clients.iter_mut().filter(|c| c.room == room) {
                c.forget_room();
                if let (true, Some(p)) = (freed, c.pipe()) {
                    self.stale_pipes.insert(p);
                }
            }
        }
    }

    /// No ghost: every member of a room is an open socket, and a client
    /// that read everything knows exactly who is there.
    fn check_members(&self) -> Result<(), Failure> {
        let core = &self.net.core;
        let chat = core.chat();
        for (_, room) in chat.rooms.iter() {
            for m in &room.members {
                let open = core
                    .conn(m.conn)
                    .is_some_and(|c| c.machine.is_open_websocket());
                // (While the data file is busy, a closed socket's `leave`
                // waits in the outbox with the turn's other events.)
                if !open && !core.waiting_for_commit() {
                    return Err(format!(
                        "a ghost in room {}: member {:?} ({}) is not an open socket",
                        room.number,
                        m.conn,
                        chat.user(m.session)
                    ));
                }
            }
            // A room nobody is in leaves memory once the turn's output is
            // out (the operator's, or one whose events waited for a commit).
            if room.names.is_empty() && !core.waiting_for_commit() {
                return Err(format!(
                    "room {} stays in memory with nobody in it",
                    room.number
                ));
            }
            let mut users = chat.listed(room.number);
            users.sort_unstable();
            for c in self.clients.iter().filter(|c| c.room == room.number) {
                let Phase::Open(p) = c.phase else { continue };
                let Some(id) = self.net.pipes[p].id else {
                    continue;
                };
                // (While the data file is busy, the turns' events wait.)
                let caught_up = self.net.pipes[p].down.is_empty()
                    && c.is_idle()
                    && !core.waiting_for_commit()
                    && core
                        .conn(id)
                        .is_some_and(|k| k.out.is_empty() && k.machine.is_open_websocket());
                if !caught_up {
                    continue;
                }
                if !c
                    .roster
                    .iter()
                    .map(String::as_str)
                    .eq(users.iter().copied())
                {
                    let roster = &c.roster;
                    return Err(format!(
                        "{} in room {} believes {roster:?} are there; they are {users:?}",
                        c.user, room.number
                    ));
                }
            }
        }
        Ok(())
    }

    /// Presence without noise, on the core's state: a listed session goes
    /// off the list while it lasts only once it was away the leave delay
    /// (never at once when its socket closes), and never stays past its
    /// leave.
    fn check_presence(&mut self) -> Result<(), Failure> {
        let now = self.net.now;
        let (delay, restart) = (self.config.leave_delay, self.config.restart_leave_delay);
        let chat = self.net.core.chat();
        let mut listed = HashMap::new();
        let mut gone_off = HashSet::new();
        for (_, s) in chat.sessions.iter() {
            let key = (chat.number(s.room), s.user.clone());
            if !s.listed() {
                gone_off.insert(key);
                continue;
            }
            let Some(leave_at) = s.leave_at.filter(|_| s.socket.is_none()) else {
                listed.insert(key, None);
                continue;
            };
            if leave_at > now + delay.max(restart) || now > leave_at + Duration::from_secs(4) {
                return Err(format!(
                    "{} in room {}: its leave is due in {:?}, the delay is {delay:?}",
                    key.1,
                    key.0,
                    leave_at.checked_duration_since(now)
                ));
            }
            let since = self.listed.get(&key).copied().flatten().unwrap_or(now);
            listed.insert(key, Some(since));
        }
        for (key, away) in &self.listed {
            // Gone (its session ended: it leaves at once) or still listed:
            // fine. Off the list while its session lasts: only after the
            // delay.
            if !gone_off.contains(key) {
                continue;
            }
            let after = away.map(|since| now - since);
            if after.is_none_or(|after| after < delay) {
                return Err(format!(
                    "{} in room {} left after {after:?} away, before its delay of {delay:?}",
                    key.1, key.0,
                ));
            }
        }
        self.listed = listed;
        Ok(())
    }

    /// Memory and time: what each connection holds, and its deadline.
    fn check_connections(&self) -> Result<(), Failure> {
        let cfg = &self.config;
        let max_out = cfg.max_buffered + cfg.pause_reading_at + 64 * 1024;
        let max_in = 64 * 1024 + cfg.max_head_bytes + cfg.max_body_bytes;
        let now = self.net.now;
        for (id, _) in self.net.open() {
            let Some(conn) = self.net.core.conn(id) else {
                return Err(format!("{id:?}: the driver holds a socket the core forgot"));
            };
            if conn.out.buffered() > max_out {
                return Err(format!("{id:?}: {} bytes queued", conn.out.buffered()));
            }
            if conn.input.pending().len() > max_in {
                return Err(format!(
                    "{id:?}: {} bytes of input",
                    conn.input.pending().len()
                ));
            }
            let Some(deadline) = conn.machine.deadline() else {
                return Err(format!("{id:?}: a connection without a deadline"));
            };
            // Timers fire at most 64 a turn: a burst may be a few turns late.
            if deadline + Duration::from_secs(4) < now {
                return Err(format!(
                    "{id:?}: kept {:?} past its deadline",
                    now - deadline
                ));
            }
        }
        if self.net.open().count() != self.net.core.connections() {
            return Err(format!(
                "the core holds {} connections, the driver {} sockets",
                self.net.core.connections(),
                self.net.open().count()
            ));
        }
        Ok(())
    }

    /// No counter of `/metrics` goes down; refused connections are
    /// counted once each.
    fn check_counters(&mut self) -> Result<(), Failure> {
        let core = &self.net.core;
        let text = core.metrics().render(&core.gauges());
        let now = counters(&text);
        for (name, value) in &now {
            if let Some(before) = self.counters.get(name)
                && value < before
            {
                return Err(format!("counter {name} went down: {before} → {value}"));
            }
        }
        let refused: f64 = ["wsrooms_connections_refused_total"]
            .iter()
            .map(|n| n.to_string())
            .chain(
                now.keys()
                    .filter(|k| {
                        k.starts_with("wsrooms_refused_total{reason=\"")
                            && k.contains("connections")
                    })
                    .cloned(),
            )
            .filter_map(|k| now.get(&k))
            .sum();
        if refused != self.refused as f64 {
            return Err(format!(
                "{} connections were refused, the counters say {refused}",
                self.refused
            ));
        }
        self.counters = now;
        Ok(())
    }

    /// At the end: every client with an open socket has its room's last
    /// message.
    fn check_everyone_has_everything(&self) -> Result<(), Failure> {
        let chat = self.net.core.chat();
        for c in &self.clients {
            let Phase::Open(_) = c.phase else { continue };
            let Some(room) = chat.room_by_number(c.room).and_then(|r| chat.rooms.get(r)) else {
                continue;
            };
            if room.last_seq > 0 && c.last_seq != Some(room.last_seq) {
                return Err(format!(
                    "{} in room {} has seen up to {:?}, the room is at {}",
                    c.user, c.room, c.last_seq, room.last_seq
                ));
            }
        }
        Ok(())
    }
}

/// The Unix time the simulation's wall clock reads at its start
/// (2026-01-01).
const SIM_UNIX_MS: u64 = 1_767_225_600_000;

/// The wall clock and tokens of the `nth` core of seed `seed`'s world: its
/// run replays byte for byte, and no two cores of a world draw the same
/// tokens (a restarted one holds the sessions of the one before).
fn replayable(seed: u64, start: Instant, nth: u64) -> Outside {
    Outside::replayable(SIM_UNIX_MS, start, seed ^ nth.rotate_right(16))
}

/// Gives a new data file a fixed epoch instead of its random one, so that
/// a seed's welcomes carry the same bytes in every run.
fn fix_epoch(path: &std::path::Path) {
    let config = sim_config(Some(path.to_path_buf()));
    drop(Store::open(path, config.keep_messages as u64).expect("the data file opens"));
    let conn = rusqlite::Connection::open(path).expect("the data file opens for its epoch");
    conn.execute("UPDATE meta SET value = 1 WHERE key = 'epoch'", [])
        .expect("the epoch is set");
}

/// A core as the binary starts one: with the data file if there is one.
#[allow(dead_code)]
pub fn start_core(config: &Config, now: Instant) -> Core {
    start_core_with(config, now, Outside::system())
}

/// [`start_core`] with the wall clock and the tokens from `outside`.
pub fn start_core_with(config: &Config, now: Instant, outside: Outside) -> Core {
    let mut core = Core::new(config.clone(), now);
    core.set_outside(outside);
    if let Some(path) = &config.data_file {
        // As the server opens it: with `--keep-messages`, `--sync-ms`, `--keep-days`.
        let store = Store::open_with(path, &config.store_settings()).expect("the data file opens");
        core.use_store(store).expect("the data file loads");
    }
    core
}

/// The counters of a `/metrics` text, by series (labels included).
fn counters(text: &str) -> BTreeMap<String, f64> {
    let mut kinds = HashMap::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                kinds.insert(name.to_string(), kind.to_string());
            }
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if kinds.get(name).map(String::as_str) == Some("counter")
            && let Ok(v) = value.parse()
        {
            out.insert(series.to_string(), v);
        }
    }
    out
}

/// Runs one seed; the failure names the seed and the last events.
pub fn run_seed(seed: u64) -> Result<u64, Failure> {
    let plan = Plan::of(seed);
    let mut world = World::new(seed, plan.clone());
    match world.run() {
        Ok(()) => Ok(world.turn),
        Err(e) => Err(format!(
            "seed {seed} failed at turn {} ({plan:?}): {e}\nthe last events:\n  {}\n\
             replay: WSROOMS_SIM_SEED={seed} cargo test --test simulation -- --nocapture",
            world.turn,
            world.log.join("\n  ")
        )),
    }
}

/// Runs one seed and gives a hash of every byte the server sent in it.
#[allow(dead_code)]
pub fn digest_of_seed(seed: u64) -> Result<u64, Failure> {
    let mut world = World::new(seed, Plan::of(seed));
    world
        .run()
        .map_err(|e| format!("seed {seed} failed at turn {}: {e}", world.turn))?;
    Ok(world.net.digest())
}

#[allow(dead_code)]
/// The address a client connects from (for tests that build their own).
pub fn client_addr(n: usize) -> SocketAddr {
    Client::new(n, 1).peer
}

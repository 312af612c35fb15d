//! One connection's protocol machine (`conn::Machine`), driven the way the
//! poll loop drives it but with no socket: arbitrary bytes read in pieces
//! of arbitrary sizes, timer ticks at arbitrary times, flushes, and the
//! server's own closes, in an order the input decides. A request that is a
//! valid WebSocket upgrade is upgraded (to a room socket or an echo
//! socket); any other is answered `200`, with keep-alive if it asks.
//!
//! Input: 3 control bytes (a seed for piece sizes and events, the role,
//! the frame limit), then the bytes a client sends.
//!
//! Checked: no panic; every call that is given bytes uses at least one and
//! at most all; one close frame at most; nothing is sent after our close
//! frame, after `Drain` or after `Drop`, and nothing happens after `Drop`;
//! a room socket leaves its room at most once; the bytes sent on the
//! WebSocket are bounded by the bytes received plus a small amount per
//! call; a live connection always has a deadline.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use wsrooms::chat::SessionId;
use wsrooms::chat::command::Dialect;
use wsrooms::conn::machine::{Actions, HttpInput, Role, Settings};
use wsrooms::conn::{Input, Machine};
use wsrooms::http::Status;
use wsrooms::http::request::{HeadLimits, MAX_HEADERS};
use wsrooms::http::response::Response;
use wsrooms::http::upgrade;
use wsrooms::queue::WriteQueue;
use wsrooms::ws::close::CloseReason;
use wsrooms::ws::reader;

/// A tiny deterministic generator for piece sizes and events.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

/// What the actions so far allow, checked action by action.
#[derive(Default)]
struct Watch {
    closed: bool,
    draining: bool,
    dropped: bool,
    left: usize,
    /// WebSocket bytes sent, and a budget: bytes received plus a little
    /// per call.
    sent: usize,
    budget: usize,
}

impl Watch {
    /// Checks one call's actions and the bytes it queued (`ws`: the call
    /// was on a WebSocket, whose output is bounded by its input).
    fn check(&mut self, actions: Actions, sent: usize, ws: bool) {
        assert!(
            !self.dropped || (actions.is_empty() && sent == 0),
            "acted after Drop"
        );
        self.budget += 64;
        if sent > 0 {
            assert!(!self.closed && !self.draining, "sent after a close");
            if ws {
                self.sent += sent;
            }
        }
        if let Some(close) = &actions.close {
            assert!(!self.closed, "two close frames");
            self.closed = true;
            if ws {
                self.sent += close.frame.len();
            }
        }
        self.left += usize::from(actions.leave.is_some());
        self.draining |= actions.drain;
        self.dropped |= actions.drop.is_some();
        assert!(self.left <= 1, "left the room twice");
        assert!(
            self.sent <= self.budget,
            "{} sent, {} allowed",
            self.sent,
            self.budget
        );
    }
}

fn settings(frame_limit: usize) -> Settings {
    Settings {
        head: HeadLimits {
            max_head_bytes: 1024,
            max_line_bytes: 512,
        },
        max_body_bytes: 64,
        frames: reader::Limits {
            max_frame_bytes: frame_limit,
            max_message_bytes: frame_limit * 4,
        },
        head_timeout: Duration::from_secs(10),
        ping_interval: Duration::from_secs(30),
        pong_timeout: Duration::from_secs(20),
        close_timeout: Duration::from_secs(5),
        rate: 2.0,
        burst: 4.0,
        keepalive_tick: Duration::ZERO,
        epoch: Instant::now(),
    }
}

/// The connection as the harness holds it.
struct Harness {
    machine: Machine,
    input: Input,
    /// What the machine queued, emptied after each call.
    out: WriteQueue,
    now: Instant,
    s: Settings,
    role: Role,
    watch: Watch,
}

impl Harness {
    /// What the last call queued (then forgotten, as if written).
    fn sent(&mut self) -> usize {
        let n = self.out.buffered();
        let _ = self.out.write_to(&mut std::io::sink(), &mut Vec::new());
        n
    }

    /// Processes pending input one unit at a time, as `Core::process`.
    fn process(&mut self) {
        while !self.input.is_empty() && !self.watch.dropped {
            let pending = self.input.pending();
            let len = pending.len();
            let used = if self.machine.is_http() {
                match self.http(len) {
                    Some(used) => used,
                    None => return, // an incomplete request
                }
            } else {
                let ws = self.machine.is_websocket();
                let (used, actions) =
                    self.machine
                        .on_frame_bytes(pending, &mut self.out, self.now, &self.s);
                self.watch.budget += used.min(len);
                let sent = self.sent();
                self.watch.check(actions, sent, ws);
                used
            };
            assert!(used > 0 && used <= len, "used {used} of {len}");
            if self.machine.is_draining() {
                self.input.clear();
            } else {
                self.input.consume(used);
            }
        }
    }

    /// One HTTP request: upgraded, or answered 200. `None`: incomplete.
    fn http(&mut self, len: usize) -> Option<usize> {
        let pending = self.input.pending();
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let (now, s) = (self.now, self.s);
        match self
            .machine
            .on_request_bytes(pending, &mut storage, &mut self.out, now, &s)
        {
            HttpInput::NeedMore => None,
            HttpInput::AwaitingBody { .. } => {
                self.machine.continue_body(&mut self.out);
                let sent = self.sent();
                self.watch.check(Actions::default(), sent, false);
                None
            }
            HttpInput::Refused(actions) => {
                let sent = self.sent();
                self.watch.check(actions, sent, false);
                assert!(self.machine.is_draining());
                Some(len)
            }
            HttpInput::Request { request, body, len } => {
                assert!(body.len() <= 64);
                let actions = match upgrade::check(&request) {
                    Ok(up) => {
                        self.machine.upgrade(&up, self.role, &mut self.out, now, &s);
                        Actions::default()
                    }
                    Err(_) => {
                        let ok = Response::text(Status::Ok, "ok");
                        let keep = request.keep_alive();
                        self.machine
                            .respond(ok, false, keep, &mut self.out, now, &s)
                    }
                };
                let sent = self.sent();
                self.watch.check(actions, sent, false);
                Some(len)
            }
        }
    }

    /// One event chosen by `pick`: time passes (the timer fires if due), a
    /// flush, or the server closes or drains the connection.
    fn event(&mut self, pick: u32) {
        let ws = self.machine.is_websocket();
        let actions = match pick % 8 {
            0..=3 => {
                self.now += Duration::from_millis(u64::from(pick >> 8) % 40_000);
                match self.machine.deadline() {
                    Some(at) if at <= self.now => {
                        self.machine.on_timer(&mut self.out, self.now, &self.s)
                    }
                    _ => return,
                }
            }
            4 | 5 => {
                let _ = self.machine.on_flushed();
                return;
            }
            6 => self
                .machine
                .close(CloseReason::new(1001, "bye"), self.now, &self.s),
            _ => self.machine.drain(self.now, &self.s),
        };
        let sent = self.sent();
        self.watch.check(actions, sent, ws);
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (ctl, stream) = data.split_at(3);
    let mut rng = Rng(u32::from(ctl[0]) << 8 | 0x5A | 1);
    let chat = |dialect| Role::Chat {
        session: SessionId::new(1, 1),
        dialect,
    };
    let role = match ctl[1] % 3 {
        0 => chat(Dialect::Text),
        1 => Role::Echo,
        _ => chat(Dialect::V2),
    };
    let s = settings(16 + usize::from(ctl[2]) * 4);
    let now = Instant::now();
    let mut h = Harness {
        machine: Machine::new("127.0.0.1:1".parse().unwrap(), now, &s),
        input: Input::default(),
        out: WriteQueue::new(),
        now,
        s,
        role,
        watch: Watch::default(),
    };
    let mut fed = 0;
    while fed < stream.len() && !h.watch.dropped {
        let n = (rng.next() as usize % 61 + 1).min(stream.len() - fed);
        h.input.push(&stream[fed..fed + n]);
        fed += n;
        h.process();
        if rng.next() % 4 == 0 && !h.watch.dropped {
            h.event(rng.next());
        }
        assert!(h.watch.dropped || h.machine.deadline().is_some());
    }
    // Time runs out: a live connection is dropped by its timer eventually.
    for _ in 0..4 {
        if h.watch.dropped {
            break;
        }
        h.now += Duration::from_secs(60);
        let ws = h.machine.is_websocket();
        let actions = h.machine.on_timer(&mut h.out, h.now, &h.s);
        let sent = h.sent();
        h.watch.check(actions, sent, ws);
    }
    assert!(h.watch.dropped, "still alive after its timers");
});

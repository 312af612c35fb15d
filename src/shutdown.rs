//! The drain after SIGINT/SIGTERM, as a rule with no I/O: once every
//! socket has been sent its `1001` (or its last response), when may the
//! process exit?
//!
//! A restart is only as fast as the old process's exit: the service
//! manager starts the next one after it. (The data file is not what holds
//! it: the core closes the file right after the commit of the signal's
//! turn, see `Core::after_flush`, so a next process started early could
//! open it while this one drains.) So the drain waits for a connection
//! only while waiting can still help:
//!
//! - a connection that has **finished** (its close handshake done, or its
//!   last response sent, and FIN sent) holds nothing;
//! - a connection that has made **no write progress for [`STALL`]** holds
//!   nothing either: a frozen client that never reads (its queue cannot
//!   drain, so our close frame cannot even be written), or one that read
//!   our close frame and never answers it. Waiting longer for those only
//!   delays the next process;
//! - a connection whose queue is still draining holds the exit, up to the
//!   drain deadline (`--shutdown-timeout-secs`).
//!
//! The process exits at the first moment every connection is finished or
//! stalled, or at the deadline. Progress is the number of bytes a
//! connection still has queued *falling*: after the `1001` little more is
//! queued for it, and whatever is (a pong to a peer that pings without
//! reading) is our writing, not the peer's reading, so it does not count.
//!
//! The server calls [`Drain::verdict`] at the end of each loop turn with
//! every connection's state, and wakes at [`Verdict::Wait`]'s instant when
//! no socket does. The tests below drive it with a made-up clock.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A connection that has written nothing for this long after the signal
/// (or since its last write) no longer holds the exit. Long enough for a
/// peer on a slow mobile link to answer the close, short enough that the
/// next process serves well within a second and a half of the signal.
pub const STALL: Duration = Duration::from_millis(500);

/// What the drain needs to know of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnState {
    /// Its close handshake (or last response) is done and FIN sent.
    pub finished: bool,
    /// Bytes still queued for it.
    pub buffered: usize,
}

/// The drain of one shutdown: when it began, its deadline, and when each
/// unfinished connection last made progress.
#[derive(Debug)]
pub struct Drain<K> {
    began: Instant,
    deadline: Instant,
    stall: Duration,
    /// Connections open at the signal.
    at_signal: usize,
    /// Connections dropped during the drain before they had finished.
    dropped_unfinished: usize,
    /// Each unfinished connection's queued bytes when last seen, and since when.
    seen: HashMap<K, Seen>,
    /// The wake-up last asked for (asked again only when it changes).
    wake: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    buffered: usize,
    since: Instant,
}

/// What the server should do after a turn of the drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep serving; if `Some`, make sure the loop wakes at that instant
    /// (when a connection would become stalled) even without an event.
    Wait(Option<Instant>),
    /// Exit now.
    Exit(Stop),
}

/// Why and how the drain ended: what the last log line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// Why it ended.
    pub why: Why,
    /// From the signal to now.
    pub took: Duration,
    /// Connections open at the signal.
    pub at_signal: usize,
    /// Connections still open and not finished now (their sockets close
    /// with the process), stalled ones included.
    pub unfinished: usize,
    /// Of those, the ones that had made no progress for the stall time.
    pub stalled: usize,
    /// Connections dropped during the drain before they had finished
    /// (a reset, or the close timeout).
    pub dropped_unfinished: usize,
}

/// Why the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Every connection finished.
    AllFinished,
    /// The connections left had made no progress for the stall time.
    RestStalled,
    /// The drain deadline (`--shutdown-timeout-secs`) passed.
    Deadline,
}

impl<K: Copy + Eq + Hash> Drain<K> {
    /// A drain that began at `now` with `at_signal` connections open and
    /// ends by `now + timeout`; connections stall after `stall`.
    pub fn new(now: Instant, timeout: Duration, stall: Duration, at_signal: usize) -> Self {
        Drain {
            began: now,
            deadline: now + timeout,
            stall,
            at_signal,
            dropped_unfinished: 0,
            seen: HashMap::new(),
            wake: None,
        }
    }

    /// A connection was dropped during the drain; `finished` says whether
    /// it had finished closing first.
    pub fn on_drop(&mut self, key: K, finished: bool) {
        self.seen.remove(&key);
        if !finished {
            self.dropped_unfinished += 1;
        }
    }

    /// Looks at every open connection now: exit, or wait (and until when
    /// at the latest before looking again).
    pub fn verdict(
        &mut self,
        now: Instant,
        conns: impl IntoIterator<Item = (K, ConnState)>,
    ) -> Verdict {
        let (mut unfinished, mut stalled) = (0, 0);
        let mut next: Option<Instant> = None;
        for (key, state) in conns {
            if state.finished {
                continue;
            }
            unfinished += 1;
            let began = self.began;
            let seen = self.seen.entry(key).or_insert(Seen {
                buffered: state.buffered,
                since: began,
            });
            // Progress is the queue falling (the peer read). A queue that
            // grew (a pong, a last response) is not: that was us writing.
            if state.buffered < seen.buffered {
                seen.since = now;
            }
            seen.buffered = state.buffered;
            let stalls_at = seen.since + self.stall;
            match stalls_at <= now {
                true => stalled += 1,
                false => next = Some(next.map_or(stalls_at, |n| n.min(stalls_at))),
            }
        }
        let why = match () {
            _ if unfinished == 0 => Why::AllFinished,
            _ if now >= self.deadline => Why::Deadline,
            _ if stalled == unfinished => Why::RestStalled,
            _ => return self.wait(next),
        };
        Verdict::Exit(Stop {
            why,
            took: now.saturating_duration_since(self.began),
            at_signal: self.at_signal,
            unfinished,
            stalled,
            dropped_unfinished: self.dropped_unfinished,
        })
    }

    /// Wait until the next connection would stall, or the deadline.
    fn wait(&mut self, next: Option<Instant>) -> Verdict {
        let at = next.map_or(self.deadline, |n| n.min(self.deadline));
        if self.wake == Some(at) {
            return Verdict::Wait(None);
        }
        self.wake = Some(at);
        Verdict::Wait(Some(at))
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Why::AllFinished => "every connection finished closing",
            Why::RestStalled => "the connections left made no progress",
            Why::Deadline => "the drain time was over",
        })
    }
}

impl fmt::Display for Stop {
    /// `312 ms after the signal (the connections left made no progress):
    /// 1 of 201 connections had not finished closing (1 stalled: no
    /// progress for 500 ms), 0 dropped before finishing`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ms after the signal ({}): {} of {} connections had not finished closing \
             ({} stalled: no progress for {} ms), {} dropped before finishing",
            self.took.as_millis(),
            self.why,
            self.unfinished,
            self.at_signal,
            self.stalled,
            STALL.as_millis(),
            self.dropped_unfinished
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn open(buffered: usize) -> ConnState {
        ConnState {
            finished: false,
            buffered,
        }
    }

    const DONE: ConnState = ConnState {
        finished: true,
        buffered: 0,
    };

    fn drain(t0: Instant, at_signal: usize) -> Drain<u32> {
        Drain::new(t0, 5000 * MS, STALL, at_signal)
    }

    fn stop(v: Verdict) -> Stop {
        match v {
            Verdict::Exit(stop) => stop,
            other => panic!("expected an exit, got {other:?}"),
        }
    }

    #[test]
    fn exits_as_soon_as_every_connection_finished() {
        let t0 = Instant::now();
        let mut d = drain(t0, 2);
        assert_eq!(
            d.verdict(t0, [(1, open(10)), (2, DONE)]),
            Verdict::Wait(Some(t0 + STALL))
        );
        let s = stop(d.verdict(t0 + 20 * MS, [(1, DONE), (2, DONE)]));
        assert_eq!(
            (s.why, s.unfinished, s.took),
            (Why::AllFinished, 0, 20 * MS)
        );
    }

    #[test]
    fn a_frozen_client_holds_the_exit_for_the_stall_time_only() {
        let t0 = Instant::now();
        let mut d = drain(t0, 3);
        // Its queue never moves; the others finish at once.
        assert!(
            matches!(d.verdict(t0, [(1, open(900_000))]), Verdict::Wait(Some(at)) if at == t0 + STALL)
        );
        assert_eq!(
            d.verdict(t0 + 100 * MS, [(1, open(900_000))]),
            Verdict::Wait(None),
            "the wake-up is asked for once"
        );
        let s = stop(d.verdict(t0 + STALL, [(1, open(900_000))]));
        assert_eq!(s.why, Why::RestStalled);
        assert_eq!((s.unfinished, s.stalled, s.at_signal), (1, 1, 3));
        assert_eq!(s.took, STALL);
    }

    #[test]
    fn a_peer_that_never_answers_the_close_stalls_too() {
        let t0 = Instant::now();
        let mut d = drain(t0, 1);
        // Our close frame went out (nothing queued), no answer comes.
        assert!(matches!(d.verdict(t0, [(1, open(8))]), Verdict::Wait(_)));
        assert!(matches!(
            d.verdict(t0 + 10 * MS, [(1, open(0))]),
            Verdict::Wait(Some(at)) if at == t0 + 10 * MS + STALL
        ));
        let s = stop(d.verdict(t0 + 10 * MS + STALL, [(1, open(0))]));
        assert_eq!((s.why, s.stalled), (Why::RestStalled, 1));
    }

    #[test]
    fn a_draining_connection_holds_the_exit_until_the_deadline() {
        let t0 = Instant::now();
        let mut d = drain(t0, 2);
        let mut buffered = 1_000_000;
        let mut now = t0;
        while now < t0 + 5000 * MS {
            // One slow reader takes a little every 300 ms; one frozen.
            match d.verdict(now, [(1, open(buffered)), (2, open(777))]) {
                Verdict::Wait(_) => {}
                Verdict::Exit(s) => panic!("exited at {:?}: {s:?}", now - t0),
            }
            buffered -= 1000;
            now += 300 * MS;
        }
        let s = stop(d.verdict(t0 + 5000 * MS, [(1, open(buffered)), (2, open(777))]));
        assert_eq!(s.why, Why::Deadline);
        assert_eq!((s.unfinished, s.stalled), (2, 1));
        // Once its progress stops, it stalls like any other.
        let mut d = drain(t0, 1);
        // (First seen 400 ms in: unmoved since the signal, as far as it knows.)
        assert!(matches!(
            d.verdict(t0 + 400 * MS, [(1, open(5))]),
            Verdict::Wait(_)
        ));
        assert!(matches!(
            d.verdict(t0 + 450 * MS, [(1, open(4))]),
            Verdict::Wait(_)
        ));
        assert!(matches!(
            d.verdict(t0 + 900 * MS, [(1, open(4))]),
            Verdict::Wait(_)
        ));
        let s = stop(d.verdict(t0 + 950 * MS, [(1, open(4))]));
        assert_eq!((s.why, s.took), (Why::RestStalled, 950 * MS));
    }

    #[test]
    fn the_count_names_what_the_exit_cut_and_what_was_dropped() {
        let t0 = Instant::now();
        let mut d = drain(t0, 4);
        assert!(matches!(
            d.verdict(t0, [(1, open(1)), (2, open(1)), (3, open(1)), (4, DONE)]),
            Verdict::Wait(_)
        ));
        d.on_drop(3, false); // reset by the peer
        d.on_drop(4, true);
        let s = stop(d.verdict(t0 + STALL, [(1, open(1)), (2, open(1))]));
        assert_eq!((s.unfinished, s.stalled, s.dropped_unfinished), (2, 2, 1));
        let line = s.to_string();
        assert!(
            line.contains("2 of 4 connections had not finished closing")
                && line.contains("(2 stalled: no progress for 500 ms)")
                && line.contains("1 dropped before finishing"),
            "{line}"
        );
    }

    #[test]
    fn a_queue_that_grows_is_not_progress() {
        let t0 = Instant::now();
        let mut d = drain(t0, 1);
        // A peer that never reads but makes us queue a little now and then.
        for (at, queued) in [(0, 100), (200, 106), (400, 112)] {
            assert!(matches!(
                d.verdict(t0 + at * MS, [(1, open(queued))]),
                Verdict::Wait(_)
            ));
        }
        let s = stop(d.verdict(t0 + STALL, [(1, open(118))]));
        assert_eq!((s.why, s.stalled), (Why::RestStalled, 1));
        // Reading after growing is progress again.
        let mut d = drain(t0, 1);
        assert!(matches!(d.verdict(t0, [(1, open(100))]), Verdict::Wait(_)));
        assert!(matches!(
            d.verdict(t0 + 100 * MS, [(1, open(150))]),
            Verdict::Wait(_)
        ));
        assert!(matches!(
            d.verdict(t0 + 400 * MS, [(1, open(140))]),
            Verdict::Wait(_)
        ));
        assert!(matches!(
            d.verdict(t0 + 800 * MS, [(1, open(140))]),
            Verdict::Wait(_)
        ));
        let s = stop(d.verdict(t0 + 900 * MS, [(1, open(140))]));
        assert_eq!((s.why, s.took), (Why::RestStalled, 900 * MS));
    }

    #[test]
    fn a_zero_drain_time_exits_at_once() {
        let t0 = Instant::now();
        let mut d: Drain<u32> = Drain::new(t0, Duration::ZERO, STALL, 1);
        assert_eq!(stop(d.verdict(t0, [(1, open(5))])).why, Why::Deadline);
    }
}

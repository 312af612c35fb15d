//! The turn: what a turn's events produced waits in the outbox (and a
//! login's answer in `held`) until [`Core::end_turn`] has committed the
//! turn's records to the [`Journal`](super::Journal); then the outbox is
//! drained until empty. Part of the core's `impl Core`.
//!
//! # One turn
//!
//! 1. Events are handled; what must not be seen before it is on disk
//!    waits:
//!    - a chat message is *numbered* (`Chat::number_message`) and
//!      *recorded* in the journal; its frame waits in the outbox,
//!      unbroadcast and not yet in the room's history;
//!    - a login's reservation is recorded; its answer (the `303` with the
//!      cookie) waits in `held`, and the connection's input gate is held so
//!      that no later request of it is answered first;
//!    - `join` and `leave` events wait in the outbox too, behind the
//!      messages, so everyone sees one order;
//!    - a reservation that lapsed is recorded as ended.
//!
//!    No socket is written meanwhile: the driver writes only after
//!    `end_turn`.
//! 2. [`Core::end_turn`]: one commit (nothing to do without a data file or
//!    without records). Then:
//!    - **it worked**: the outbox is delivered in order (each message joins
//!      its room's history and is broadcast), held logins get their `303`;
//!      except the messages of a room whose pages in the file are damaged
//!      (the store wrote the rest around them, see `store`): those are
//!      refused as below, and the damage is logged once and keeps
//!      `/healthz` at `503 degraded`;
//!    - **it failed** (disk full, file made read-only): the turn's messages
//!      are dropped (no client ever gets them) and their rooms take their
//!      numbers back (`Chat::unnumber`), so a `seq` is never given to two
//!      messages anyone saw; their senders are closed with `1011`; held
//!      logins are cancelled and get `503`; the failure is logged once (per
//!      outage), counted in `wsrooms_persist_errors_total`, and `/healthz`
//!      answers `503 degraded` until a commit works again;
//!    - **the file was busy** (another program holds its write lock):
//!      nothing is refused; the turn's records stay in the store, the
//!      outbox and the held logins wait, and the next turn commits them
//!      with its own (see `busy_gives_up` for how long).
//!
//!    The outbox is one work queue: a receiver a broadcast pushes over
//!    `--max-buffered` is closed right after that broadcast, and its
//!    `leave` goes to the back of the same queue; the queue is drained
//!    until it is empty, so every cascade of closes ends in this turn.
//! 3. The driver writes every dirty queue, then calls
//!    [`Core::after_flush`]: a step of retention if its timer fired
//!    (`--keep-days`, giving free pages back: `store::retention`), and if
//!    the write-ahead log has grown enough, its copy into the main file
//!    (the syncs that take milliseconds) is handed to the store's helper
//!    thread, which runs it on its own connection while the loop goes on
//!    (see `store::sync` and `store::wal`). The helper also syncs the log
//!    within `--sync-ms` of a commit (`--sync-ms 0`: the commit syncs it
//!    before the turn's output); it touches no socket and no chat state.
//!
//! So a client sees a message, or a cookie, only once it is in the
//! database's log: a crash (SIGKILL included) afterwards loses nothing
//! anyone saw, and numbering after a restart goes on above every `seq`
//! anyone saw. The price is one blocking commit per turn that changed
//! something.

use std::time::{Duration, Instant};

use super::http::Reply;
use super::{Core, TimerKey};
use crate::chat::edits::Said;
use crate::chat::{self, Kept, RoomId, SessionId, events};
use crate::conn::ConnId;
use crate::conn::machine::CloseFrame;
use crate::http::Status;
use crate::http::response::Response;
use crate::logsafe::Escaped;
use crate::queue::Frame;
use crate::store::{self, CommitError, QueryError, Store, StoredMessage};
use crate::ws::close::{CloseReason, INTERNAL_ERROR};

/// Time between retention steps while a pass (or giving pages back) is
/// under way.
const RETENTION_STEP: Duration = Duration::from_millis(10);

/// Time between retention passes over the rooms.
const RETENTION_PASS: Duration = Duration::from_secs(60);

/// How soon a commit the data file refused as busy is tried again (if no
/// event comes first: every turn tries it).
const BUSY_RETRY: Duration = Duration::from_millis(2);

/// A data file busy this long: `/healthz` answers `503 degraded` (and one
/// line is logged) until a commit works again.
const BUSY_DEGRADED: Duration = Duration::from_secs(1);

/// A data file busy this long: what waited for it is refused as after a
/// failed write (senders closed with `1011`, logins `503`), so that no
/// sender waits without end; later turns keep trying.
const BUSY_GIVE_UP: Duration = Duration::from_secs(10);

/// One broadcast waiting for the end of the turn.
pub(super) enum Outgoing {
    /// A numbered room event (a chat message, an edit, a delete) from
    /// `sender`'s socket (`None`: the operator's).
    Message {
        room: RoomId,
        message: Kept,
        sender: Option<ConnId>,
    },
    /// An event for one socket only (an `error`).
    Reply { conn: ConnId, frame: Frame },
    /// The `join` event of `session`'s socket `conn` (to everyone else).
    Join {
        room: RoomId,
        frame: Frame,
        session: SessionId,
        conn: ConnId,
    },
    /// A `join` or `leave` event (to everyone but `except`).
    Presence {
        room: RoomId,
        frame: Frame,
        except: Option<ConnId>,
    },
    /// The `leave` of `session` whose leave delay ended. If the session
    /// is back in the room by the time it goes out (it waited for a busy
    /// data file meanwhile), its new socket does not get it: its welcome
    /// listed it, and its `join` follows for the others.
    DueLeave {
        room: RoomId,
        frame: Frame,
        session: SessionId,
        user: String,
    },
    /// A close frame for `conn` (ours, or the answer to its peer's).
    Close { conn: ConnId, close: CloseFrame },
    /// `conn` leaves its session's room (it closed or was dropped): out of
    /// the room, and a `leave` event to the others.
    Leave { conn: ConnId, session: SessionId },
    /// A session logged out: its socket closes, its id is freed.
    LogOut { session: SessionId },
}

/// A login whose `303` waits for the commit.
pub(super) struct HeldLogin {
    conn: ConnId,
    session: SessionId,
    /// The session's token hash: the slot may hold another session by the
    /// time the answer goes out, if this one was removed meanwhile.
    token_hash: store::TokenHash,
    room: u32,
    response: Response,
    reply: Reply,
    expires: Instant,
}

/// An answer whose request recorded something for the turn's commit (an
/// operator's removal, bar or delete; a log-out): it waits for the commit
/// as a login's `303` does, so that nobody is told "done" of what a crash
/// can undo.
pub(super) struct HeldAnswer {
    conn: ConnId,
    /// The answer when the commit worked.
    done: Response,
    /// The answer when it did not (`None`: `done` all the same: what the
    /// request did took effect, and is written with the next commit).
    lost: Option<Response>,
    /// A delete's room: its answer is `lost` too when the store refused
    /// that room's records (its pages are damaged).
    room: Option<u32>,
    reply: Reply,
}

/// The data file's syncs as the loop last saw them.
#[derive(Debug, Default)]
pub(super) struct SyncWatch {
    syncs: u64,
    failures: u64,
    /// A sync failed, and none has worked since.
    pub(super) failing: bool,
}

/// What the turn's commit came to, for its messages and logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Committed (or nothing to commit): deliver.
    Stored,
    /// The commit failed: deliver no message, refuse the logins.
    Lost,
}

impl Core {
    /// Takes over `store` (`--data-file`): restores its sessions (each
    /// reserved for `--reserve-secs` or `--grace-secs` from now, whichever
    /// is longer: the file does not say when a session's socket closed, and
    /// one that was away during the restart keeps its id as long as if
    /// there had been none; the newest `--max-sessions` of them, the older
    /// ones end and are deleted from the file with the first commit), its
    /// rooms' `seq` counters and their histories, and the operator's bars that
    /// have not ended (with the time they had left). From now on every turn
    /// commits to it before anything is written.
    pub fn use_store(&mut self, mut store: Store) -> Result<(), QueryError> {
        let keep = self.config.history_messages;
        let now_ms = self.unix_millis();
        let loaded = store.load(keep)?;
        store.refuse_unreadable(&loaded.damaged_rooms);
        let bars = store.bars()?;
        if let Err(e) = store.forget_ended_bars(now_ms) {
            log::warn!("data file: could not delete the bars that ended: {e}");
        }
        let bars = self.restore_bars(&bars, now_ms);
        let held = self.config.reserve_timeout.max(self.config.grace_timeout);
        let expires = self.now + held;
        // Those who were in a room when the server stopped are listed again,
        // until they come back or this delay ends: a restart makes no join.
        let delay = self.config.restart_leave_delay;
        let listed_until = (!delay.is_zero()).then(|| self.now + delay);
        let (mut restored, mut over_cap, mut listed) = (0, 0, 0);
        // Newest first: over `--max-sessions`, the oldest logins end.
        for s in &loaded.sessions {
            if self.chat.sessions.len() >= self.config.max_sessions {
                store.record_session_end(s.token_hash);
                over_cap += 1;
                continue;
            }
            let leave_at = listed_until.filter(|_| s.present);
            match self
                .chat
                .restore(s.room, &s.user, s.token_hash, expires, leave_at)
            {
                Some(session) => {
                    if let Some(at) = self.chat.timer_of(session) {
                        self.timers.add(at, TimerKey::Session(session));
                    }
                    restored += 1;
                    listed += usize::from(leave_at.is_some());
                }
                None => {
                    log::warn!(
                        "data file: session of \"{}\" in room {} not restored (the id is taken)",
                        Escaped(&s.user),
                        s.room
                    );
                    store.record_session_end(s.token_hash);
                }
            }
        }
        for r in loaded.rooms {
            if let Some(room) = self.chat.room_by_number(r.number) {
                let history = r.history.iter().map(kept).collect();
                self.chat.restore_room(room, r.last_seq, history, keep);
            }
        }
        self.chat.set_epoch(store.epoch());
        log::info!(
            "data file: {restored} sessions restored in {} rooms, {listed} of them \
             listed as present for {delay:?}, {bars} operator's bars (epoch {:016x})",
            self.chat.rooms.len(),
            store.epoch()
        );
        if over_cap > 0 {
            log::warn!(
                "data file: {over_cap} older sessions ended, not restored: \
                 more than --max-sessions {}",
                self.config.max_sessions
            );
        }
        self.journal = super::Journal::File(Box::new(store));
        // The first retention step runs after the first turn.
        self.timers.add(self.now, TimerKey::Retention);
        let damaged_rooms = loaded.damaged_rooms.len();
        if damaged_rooms > 0 {
            self.note_damage(&format!(
                "{damaged_rooms} room(s) could not be read at start"
            ));
        }
        Ok(())
    }

    /// A read of the data file failed (scrollback, a room coming back):
    /// a damaged page is logged once for the whole file (it stays damaged
    /// until the operator repairs it; every request into it would log it
    /// again), any other error each time.
    pub(super) fn read_failed(&mut self, what: &str, e: &QueryError) {
        if e.is_damage() {
            self.note_damage(&format!("{what}: {e}"));
        } else {
            log::error!("{what}: {e}");
        }
    }

    /// The data file has a damaged page: the first time, one ERROR line
    /// saying what to do; then only debug lines. `/healthz` stays `503
    /// degraded` from now on; the rooms whose pages are sound go on.
    fn note_damage(&mut self, what: &str) {
        if self.damaged {
            log::debug!("data file damaged: {what}");
            return;
        }
        self.damaged = true;
        log::error!(
            "the data file is damaged ({what}); rooms whose pages are sound go on, \
             /healthz answers 503 degraded until it is repaired (stop the server, \
             then recover it or restore a backup: see the deployment guide); \
             logged once"
        );
    }

    // ----- during the turn ---------------------------------------------

    /// A chat message from `sender` (whose session's token hashes to
    /// `author`): numbered and recorded now, delivered at the end of the
    /// turn once committed.
    pub(super) fn post_message(
        &mut self,
        sender: ConnId,
        room: RoomId,
        user: &str,
        text: &str,
        author: chat::TokenHash,
    ) {
        let at = self.unix_millis();
        let Some(message) = self.chat.number_said(room, user, text, at, Some(author)) else {
            return;
        };
        let kind = store::Kind::Said {
            author: Some(author),
        };
        self.post_event(Some(sender), room, message, (user, text, kind));
    }

    /// A numbered room event: recorded in the journal (`record`: its user,
    /// text and kind as the data file keeps them) and put in the outbox,
    /// its sender owing its bytes.
    pub(super) fn post_event(
        &mut self,
        sender: Option<ConnId>,
        room: RoomId,
        message: Kept,
        record: (&str, &str, store::Kind),
    ) {
        let (user, text, kind) = record;
        self.journal.record_message(store::Message {
            room: self.chat.number(room),
            seq: message.seq,
            at: message.event.at(),
            user,
            text,
            kind,
        });
        if let Some(conn) = sender.and_then(|s| self.conns.get_mut(s)) {
            conn.owed += message.frame.len();
        }
        self.outbox.push_back(Outgoing::Message {
            room,
            message,
            sender,
        });
    }

    /// A `join` or `leave` event, after the turn's messages before it.
    pub(super) fn post_presence(&mut self, room: RoomId, frame: Frame, except: Option<ConnId>) {
        self.outbox.push_back(Outgoing::Presence {
            room,
            frame,
            except,
        });
    }

    /// The `join` of `session` (its socket `conn`), after the turn's
    /// messages before it; welcomes made meanwhile leave it out.
    pub(super) fn post_join(
        &mut self,
        room: RoomId,
        frame: Frame,
        session: SessionId,
        conn: ConnId,
    ) {
        self.outbox.push_back(Outgoing::Join {
            room,
            frame,
            session,
            conn,
        });
    }

    /// A `leave` that a timer decided (a leave delay ended), after the
    /// turn's messages before it.
    pub(super) fn post_leave(&mut self, room: RoomId, number: u32, user: &str, session: SessionId) {
        let frame = super::websocket::leave_frame(number, user, self.unix_millis());
        if let Some(r) = self.chat.rooms.get_mut(room) {
            r.leaving.push(user.to_string());
        }
        self.outbox.push_back(Outgoing::DueLeave {
            room,
            frame,
            session,
            user: user.to_string(),
        });
    }

    /// A new login: recorded, its answer held until the commit. A room that
    /// comes back (it had emptied, or was never in memory since the start)
    /// first gets its `seq` and history from the data file; if that read
    /// fails, the login is refused with `503`.
    pub(super) fn hold_login(
        &mut self,
        conn: ConnId,
        session: SessionId,
        response: Response,
        reply: Reply,
        expires: Instant,
    ) {
        let Some(s) = self.chat.sessions.get(session) else {
            return;
        };
        let (room_id, token_hash, user) = (s.room, s.token_hash, s.user.clone());
        let room = self.chat.number(room_id);
        if let Err(e) = self.bring_back_room(room_id) {
            self.read_failed(&format!("login to room {room} refused"), &e);
            self.chat.cancel(session);
            return self.respond(conn, not_stored(room), reply);
        }
        self.journal
            .record_login(token_hash, room, &user, self.unix_millis());
        self.held.push(HeldLogin {
            conn,
            session,
            token_hash,
            room,
            response,
            reply,
            expires,
        });
        let until = self.answer_deadline();
        if let Some(c) = self.conns.get_mut(conn) {
            c.gate.hold();
            c.machine.answer_waits(until);
        }
    }

    /// Holds the answer `done` until the turn's commit (`lost` if it
    /// fails; `room`: see [`HeldAnswer`]); the connection reads no further
    /// request meanwhile.
    pub(super) fn hold_answer(
        &mut self,
        conn: ConnId,
        done: Response,
        lost: Option<Response>,
        room: Option<u32>,
        reply: Reply,
    ) {
        self.held_answers.push(HeldAnswer {
            conn,
            done,
            lost,
            room,
            reply,
        });
        let until = self.answer_deadline();
        if let Some(c) = self.conns.get_mut(conn) {
            c.gate.hold();
            c.machine.answer_waits(until);
        }
    }

    /// How long a held answer's connection may wait: the commit is tried
    /// until [`BUSY_GIVE_UP`] and answers then in any case; the head
    /// timeout once more is a margin, not a wait.
    fn answer_deadline(&self) -> Instant {
        self.now + BUSY_GIVE_UP + BUSY_RETRY + self.config.head_timeout
    }

    /// A room just created in memory by a login, holding nothing yet: its
    /// past, if the data file has one.
    fn bring_back_room(&mut self, room: RoomId) -> Result<(), QueryError> {
        let keep = self.config.history_messages;
        let Some(r) = self.chat.rooms.get(room) else {
            return Ok(());
        };
        if !(r.names.len() == 1 && r.numbered == 0 && r.history.is_empty()) {
            return Ok(());
        }
        if let Some(stored) = self.journal.room(r.number, keep)? {
            let history = stored.history.iter().map(kept).collect();
            self.chat.restore_room(room, stored.last_seq, history, keep);
        }
        Ok(())
    }

    /// A page of scrollback from the data file, written into `json` as
    /// `{"messages":[…],"more":…}`; `None` without a data file.
    pub(super) fn stored_page(
        &self,
        room: u32,
        before: Option<u64>,
        limit: usize,
        json: &mut Vec<u8>,
    ) -> Option<Result<(), QueryError>> {
        Some(self.journal.history(room, before, limit)?.map(|page| {
            let messages: Vec<Vec<u8>> = page.messages.iter().map(event).collect();
            events::history_page(json, messages.iter().map(Vec::as_slice), page.more);
        }))
    }

    // ----- the end of the turn -----------------------------------------

    /// Every event of the turn is handled: commits what the turn recorded,
    /// then delivers what waited for it (or refuses it if the commit
    /// failed), draining the outbox until it is empty. The driver writes
    /// the dirty queues after this.
    pub fn end_turn(&mut self) {
        let started = Instant::now();
        let (verdict, refused_rooms) = match self.journal.commit() {
            Ok(committed) => {
                // (Nothing to write proves nothing: degraded until a real
                // commit works.)
                if !committed.is_empty() {
                    self.metrics.commits += 1;
                    self.metrics.commit_took(started.elapsed());
                    self.writes_work_again();
                }
                if committed.damaged {
                    let rooms = committed.refused_rooms.len();
                    self.note_damage(&format!("a commit left out {rooms} room(s)"));
                }
                (Verdict::Stored, committed.refused_rooms)
            }
            Err(e) if e.is_busy() => {
                if !self.busy_gives_up(&e) {
                    return;
                }
                (Verdict::Lost, Vec::new())
            }
            Err(e) => {
                self.writes_fail(&e);
                (Verdict::Lost, Vec::new())
            }
        };
        self.busy_since = None;
        while let Some(outgoing) = self.outbox.pop_front() {
            self.deliver(outgoing, verdict, &refused_rooms);
            self.close_too_slow();
        }
        // After the outbox: a removal's log-out has ended its session there.
        let held = std::mem::take(&mut self.held);
        self.answer_held(held, verdict);
        let answers = std::mem::take(&mut self.held_answers);
        self.answer_requests(answers, verdict, &refused_rooms);
        self.chat.close_rooms_left_empty();
    }

    /// After the driver wrote the turn's output: a retention step if its
    /// timer fired, and a checkpoint (on the store's helper thread) if the
    /// log is due for one or retention changed the file (see
    /// [`Journal::checkpoint_when_due`](super::Journal::checkpoint_when_due)).
    pub fn after_flush(&mut self) {
        self.watch_syncs();
        let changed = self.retention_when_due();
        self.journal.checkpoint_when_due(changed);
        self.release_store_when_draining();
    }

    /// A sync of the data file's log failed (the disk said no: what was
    /// committed since the last good sync could be lost at a power loss):
    /// counted as a persist error, logged once, and `/healthz` is degraded
    /// until a sync works again. (The commits stand: they are in the log,
    /// safe against a crash of the process; their output went out.)
    fn watch_syncs(&mut self) {
        let Some(stats) = self.journal.sync_stats() else {
            return;
        };
        let (syncs, failures) = (stats.syncs(), stats.failures());
        let watch = &mut self.syncs;
        if failures > watch.failures {
            self.metrics.persist_errors += failures - watch.failures;
            if !watch.failing {
                log::error!(
                    "syncing the data file's log to the disk failed: commits since the last \
                     good sync could be lost at a power loss; /healthz answers 503 degraded \
                     until a sync works (see wsrooms_persist_errors_total)"
                );
            }
            watch.failing = true;
        } else if watch.failing && syncs > watch.syncs {
            watch.failing = false;
            log::warn!("syncing the data file's log works again");
        }
        (watch.syncs, watch.failures) = (syncs, failures);
    }

    /// Once shutdown began and its turn's commit is made, nothing more is
    /// written to the data file: every WebSocket was sent its `1001` (what
    /// its peer sends after that is not read as chat), HTTP connections
    /// answer no new request, and the listeners are closed. So the file is
    /// closed then (its log synced, SQLite's connections closed, its lock
    /// let go) rather than when the process exits: the next process can
    /// open it while this one still drains slow readers. (A reservation
    /// lapsing during the drain is then not recorded; the next process
    /// restores it and it lapses there.) Not while a commit waits for a
    /// busy file or a failed one's session ends wait to be written.
    fn release_store_when_draining(&mut self) {
        if self.shutting_down.is_none()
            || self.busy_since.is_some()
            || !self.held.is_empty()
            || !self.held_answers.is_empty()
        {
            return;
        }
        if let super::Journal::File(store) = &self.journal
            && store.pending().is_empty()
        {
            let started = Instant::now();
            self.journal = super::Journal::Memory;
            log::info!(
                "data file closed after the last commit (in {} ms): the next process may \
                 open it while this one drains",
                started.elapsed().as_millis()
            );
        }
    }

    /// The retention timer fired: a step runs after this turn's output.
    pub(super) fn retention_due(&mut self) {
        self.retention_due = true;
    }

    /// A step of retention by age and of giving free pages back
    /// (`store::retention`), after the turn's output is written; the next
    /// one soon if there is more to do, else after [`RETENTION_PASS`].
    /// Returns whether the step changed the file.
    fn retention_when_due(&mut self) -> bool {
        if !std::mem::take(&mut self.retention_due) {
            return false;
        }
        let now_ms = self.unix_millis();
        if self.config.keep_days > 0 {
            let cutoff = now_ms.saturating_sub(
                self.config
                    .keep_days
                    .saturating_mul(store::retention::DAY_MS),
            );
            self.chat.forget_before(cutoff);
        }
        let chat = &self.chat;
        let live = |number| chat.room_by_number(number).is_some();
        let Some(result) = self.journal.retention_step(now_ms, live) else {
            return false;
        };
        let (next, changed) = match result {
            Ok(step) => {
                if step.changed() {
                    log::debug!(
                        "data file retention: {} old messages and {} rooms removed, \
                         {} free pages given back, {} left",
                        step.messages,
                        step.rooms,
                        step.given_back,
                        step.free_pages
                    );
                }
                let next = if step.more {
                    RETENTION_STEP
                } else {
                    RETENTION_PASS
                };
                (next, step.changed())
            }
            Err(e) => {
                log::debug!("data file retention step failed: {e}");
                (RETENTION_PASS, false)
            }
        };
        self.timers.add(self.now + next, TimerKey::Retention);
        changed
    }

    /// The store helper's counts, copied into the metrics before a scrape.
    pub(super) fn count_store_syncs(&mut self) {
        if let Some(stats) = self.journal.sync_stats() {
            self.metrics.store_syncs = stats.syncs();
            self.metrics.store_sync_micros = stats.micros();
            self.metrics.checkpoints = stats.checkpoints();
            self.metrics.checkpoint_micros = stats.checkpoint_micros();
            self.metrics.loop_checkpoints = stats.loop_checkpoints();
            self.metrics.loop_checkpoint_micros = stats.loop_checkpoint_micros();
        }
    }

    /// One item of the turn's outbox. A message is delivered if its turn
    /// was stored and its room was not left out of the commit (`refused`:
    /// rooms whose pages in the file are damaged); else its room takes the
    /// number back and its sender is closed with `1011`. Presence events,
    /// closes and leaves need no commit: they go out either way, in order.
    fn deliver(&mut self, outgoing: Outgoing, verdict: Verdict, refused: &[u32]) {
        // What this item owed its connection is queued now (or never).
        match &outgoing {
            Outgoing::Message {
                sender: Some(sender),
                message,
                ..
            } => self.settle(*sender, message.frame.len()),
            Outgoing::Close { conn, close } => self.settle(*conn, close.frame.len()),
            _ => {}
        }
        let verdict = match &outgoing {
            Outgoing::Message { room, .. } if refused.contains(&self.chat.number(*room)) => {
                Verdict::Lost
            }
            _ => verdict,
        };
        match (outgoing, verdict) {
            (Outgoing::Message { room, message, .. }, Verdict::Stored) => {
                self.deliver_message(room, message)
            }
            (Outgoing::Message { room, sender, .. }, Verdict::Lost) => {
                self.chat.unnumber(room);
                if let Some(sender) = sender {
                    let reason = CloseReason::new(INTERNAL_ERROR, "message not stored");
                    self.close_now(sender, reason);
                }
            }
            (Outgoing::Reply { conn, frame }, _) => {
                self.send(conn, crate::bytes::Bytes::Shared(frame));
            }
            (
                Outgoing::Presence {
                    room,
                    frame,
                    except,
                },
                _,
            ) => {
                self.broadcast(room, frame, except);
            }
            (
                Outgoing::Join {
                    room,
                    frame,
                    session,
                    conn,
                },
                _,
            ) => {
                self.chat.announced(session);
                // No longer listed: its socket was closed before this join
                // went out (too slow, with no leave delay) or its session
                // ended, and the others had its `leave` at once. Sending the
                // join now would list it for good.
                let Some(s) = self.chat.sessions.get(session).filter(|s| s.listed()) else {
                    return;
                };
                // Its socket now: a newer one may have replaced `conn` while
                // the join waited (for a busy data file), and was welcomed
                // with its own id listed.
                let now = s.socket;
                self.broadcast(room, frame, now.or(Some(conn)));
            }
            (
                Outgoing::DueLeave {
                    room,
                    frame,
                    session,
                    user,
                },
                _,
            ) => {
                if let Some(r) = self.chat.rooms.get_mut(room)
                    && let Some(i) = r.leaving.iter().position(|u| *u == user)
                {
                    r.leaving.swap_remove(i);
                }
                let back = self.chat.sessions.get(session).and_then(|s| s.socket);
                self.broadcast(room, frame, back);
            }
            (Outgoing::Close { conn, close }, _) => self.queue_close(conn, close),
            (Outgoing::Leave { conn, session }, _) => self.leave_room(session, conn),
            (Outgoing::LogOut { session }, _) => self.end_session(session),
        }
    }

    /// `owed` bytes that `id`'s gate counted ahead are queued now (or never).
    fn settle(&mut self, id: ConnId, owed: usize) {
        if let Some(conn) = self.conns.get_mut(id) {
            conn.owed = conn.owed.saturating_sub(owed);
        }
    }

    /// A message may be seen now, and so may the messages of the same room
    /// right behind it in the outbox (a turn's messages to a busy room
    /// usually are): each joins the room's history, and together they go
    /// to every member as one chunk, copied once. So a turn's messages cost
    /// each receiver one entry in its queue and no copy of its own, however
    /// many there are.
    fn deliver_message(&mut self, room: RoomId, message: Kept) {
        let keep = self.config.history_messages;
        let followers = self
            .outbox
            .iter()
            .take_while(|o| matches!(o, Outgoing::Message { room: r, .. } if *r == room))
            .count();
        if followers == 0 {
            let frame = message.frame.clone();
            self.chat.keep(room, message, keep);
            // Only chat messages count as deliveries, not join/leave events.
            self.metrics.messages_out += self.broadcast(room, frame, None) as u64;
            return;
        }
        let mut joined = Vec::with_capacity(message.frame.len() * (followers + 1));
        joined.extend_from_slice(&message.frame);
        self.chat.keep(room, message, keep);
        for _ in 0..followers {
            let Some(Outgoing::Message {
                message, sender, ..
            }) = self.outbox.pop_front()
            else {
                break;
            };
            if let Some(sender) = sender {
                self.settle(sender, message.frame.len());
            }
            joined.extend_from_slice(&message.frame);
            self.chat.keep(room, message, keep);
        }
        let receivers = self.broadcast(room, Frame::from(joined), None) as u64;
        self.metrics.messages_out += receivers * (followers as u64 + 1);
    }

    /// Answers the logins held for the commit: `303` with the cookie if it
    /// was stored; else the session is cancelled, nothing of it stays, and
    /// the answer is `503`; `403` if the operator removed the id meanwhile
    /// (its session is gone, and its slot may be another's). Their
    /// connections read again.
    fn answer_held(&mut self, held: Vec<HeldLogin>, verdict: Verdict) {
        for h in held {
            let hash = self.chat.sessions.get(h.session).map(|s| s.token_hash);
            match verdict {
                // The operator removed the id while its login waited.
                _ if hash != Some(h.token_hash) => {
                    self.respond(h.conn, ended_meanwhile(h.room), h.reply);
                }
                Verdict::Stored => {
                    self.metrics.logins += 1;
                    self.timers.add(h.expires, TimerKey::Session(h.session));
                    self.respond(h.conn, h.response, h.reply);
                }
                Verdict::Lost => {
                    self.chat.cancel(h.session);
                    self.respond(h.conn, not_stored(h.room), h.reply);
                }
            }
            if let Some(conn) = self.conns.get_mut(h.conn) {
                conn.gate.release();
                self.effects.push_back(super::Effect::Resume(h.conn));
            }
        }
    }

    /// Answers the requests held for the commit (see [`HeldAnswer`]).
    fn answer_requests(&mut self, held: Vec<HeldAnswer>, verdict: Verdict, refused: &[u32]) {
        for h in held {
            let refused = h.room.is_some_and(|room| refused.contains(&room));
            let response = match (verdict, h.lost) {
                (Verdict::Stored, _) if !refused => h.done,
                (_, Some(lost)) => lost,
                (_, None) => h.done,
            };
            self.respond(h.conn, response, h.reply);
            if let Some(conn) = self.conns.get_mut(h.conn) {
                conn.gate.release();
                self.effects.push_back(super::Effect::Resume(h.conn));
            }
        }
    }

    /// The data file was busy (another program holds its write lock): the
    /// turn's records stay in the store and everything that waits for them
    /// (the outbox, the held logins) stays where it is, undelivered; the
    /// next turn, or a wake-up in [`BUSY_RETRY`], tries again, and the
    /// loop goes on serving meanwhile. Nothing is lost or delivered twice:
    /// the same records are committed once, later. After [`BUSY_DEGRADED`]
    /// `/healthz` is degraded; after [`BUSY_GIVE_UP`] the waiting records
    /// are given up as after a failed write (returns `true`: the caller
    /// refuses them).
    fn busy_gives_up(&mut self, e: &CommitError) -> bool {
        let since = *self.busy_since.get_or_insert(self.now);
        let waited = self.now.saturating_duration_since(since);
        if waited >= BUSY_GIVE_UP {
            let pending = self.journal.abandon();
            log::error!(
                "the data file stayed busy for {} s ({}): {} message(s) and {} login(s) \
                 refused; still trying",
                waited.as_secs(),
                e.error,
                pending.0,
                pending.1
            );
            self.metrics.persist_errors += 1;
            self.degraded = true;
            return true;
        }
        if waited >= BUSY_DEGRADED && !self.degraded {
            self.degraded = true;
            log::error!(
                "the data file is busy ({}): another program holds its write lock; \
                 messages and logins wait for it (refused after {} s), /healthz \
                 answers 503 degraded until a write succeeds (logged once)",
                e.error,
                BUSY_GIVE_UP.as_secs()
            );
        } else {
            log::debug!("data file busy, commit to be tried again: {}", e.error);
        }
        self.timers
            .add(self.now + BUSY_RETRY, TimerKey::CommitRetry);
        false
    }

    /// A commit failed: counted, logged once per outage (a full disk must
    /// not fill the log too), `/healthz` degraded.
    fn writes_fail(&mut self, e: &CommitError) {
        self.metrics.persist_errors += 1;
        if store::is_damage(&e.error) {
            self.note_damage(&e.to_string());
        }
        if !self.degraded {
            self.degraded = true;
            log::error!(
                "{e}; /healthz answers 503 degraded until a write succeeds \
                 (logged once; see wsrooms_persist_errors_total)"
            );
        } else {
            log::debug!("{e}");
        }
    }

    /// A commit worked after failures.
    fn writes_work_again(&mut self) {
        if self.degraded {
            self.degraded = false;
            log::warn!(
                "writing to the data file works again ({} failed commits in all)",
                self.metrics.persist_errors
            );
        }
    }
}

/// The answer (`503`) to a login that could not be stored.
fn not_stored(room: u32) -> Response {
    Response::error_page(
        Status::ServiceUnavailable,
        "room",
        "The server could not save your login right now. Try again in a minute.",
        &format!("/?room={room}"),
    )
    .header("Retry-After", "60")
}

/// The answer (`403`) to a login whose session ended while the answer
/// waited for the commit: the operator removed that id.
fn ended_meanwhile(room: u32) -> Response {
    Response::error_page(
        Status::Forbidden,
        "user",
        "The operator removed this id from the room while your login was being saved.",
        &format!("/?room={room}"),
    )
}

/// A stored event as history and scrollback show it (a message in its
/// current state).
fn event(m: &StoredMessage) -> Vec<u8> {
    kept(m).json().to_vec()
}

/// A stored event as the room's history keeps it (its frame encoded once).
pub(super) fn kept(m: &StoredMessage) -> Kept {
    match m.kind {
        store::Kind::Said { author } => {
            let said = Said {
                user: m.user.as_str().into(),
                at: m.at,
                author,
                edited: m.edited,
                deleted: m.deleted,
            };
            Kept::message_now(m.seq, said, Some(&m.text))
        }
        store::Kind::Edit { target } => Kept::edit(m.seq, target, &m.text, m.at),
        store::Kind::Delete { target } => {
            let by = Some(m.user.as_str()).filter(|u| !u.is_empty());
            Kept::delete(m.seq, target, by, m.at)
        }
    }
}

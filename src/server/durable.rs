//! Durable rooms in the loop (`--data-file`): what a loop turn changed is
//! committed to the [`Store`] *before* any byte of that turn's output is
//! written to a socket (write-ahead), in one transaction per turn (group
//! commit). Part of the poll loop's `impl Server`; the loop owns the store,
//! and routes and chat stay free of I/O.
//!
//! # One turn with a data file
//!
//! 1. Events are handled as without one, except that what must not be seen
//!    before it is on disk waits in [`Durable`]:
//!    - a chat message is *numbered* (`Chat::number_message`) and *recorded*
//!      in the store's batch; its frame waits in the outbox, unbroadcast and
//!      not yet in the room's history;
//!    - a login's reservation is recorded; its answer (the `303` with the
//!      cookie) waits in `held`, and the connection's input gate is held so
//!      that no later request of it is answered first;
//!    - `join` and `leave` events wait in the outbox too, behind the
//!      messages, so everyone sees one order as without a data file;
//!    - a reservation that lapsed is recorded as ended.
//!
//!    No socket is written meanwhile: a writable socket or a peer's EOF
//!    only marks the connection for the end of the turn.
//! 2. Timers fire (same rules).
//! 3. [`Server::commit_turn`]: one `commit()`. Then:
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
//!      answers `503 degraded` until a commit works again.
//! 4. Only now does `flush_dirty` write every queue to its socket.
//! 5. [`Server::checkpoint_when_due`]: a step of retention if its timer
//!    fired (`--keep-days`, giving free pages back: `store::retention`),
//!    and if the write-ahead log has grown enough, its copy into the main
//!    file (the syncs that take milliseconds) is handed to the store's
//!    helper thread, which runs it on its own connection while the loop
//!    goes on (see `store::sync` and `store::wal`). The helper also syncs
//!    the log within `--sync-ms`; it touches no socket and no chat state.
//!
//! So a client sees a message, or a cookie, only once it is in the
//! database's log: a crash (SIGKILL included) afterwards loses nothing
//! anyone saw, and numbering after a restart goes on above every `seq`
//! anyone saw. The price is one blocking commit per turn that changed
//! something (tens of microseconds; a turn carries every message that
//! arrived during it, so commits per second stay bounded under load).
//!
//! Without a data file none of this runs: messages and presence events are
//! broadcast at once and sockets are written as before.

use std::time::{Duration, Instant};

use super::http::Reply;
use super::{Server, TimerKey};
use crate::chat::{self, Kept, RoomId, SessionId, events};
use crate::conn::ConnId;
use crate::http::Status;
use crate::http::response::Response;
use crate::logsafe::Escaped;
use crate::queue::Frame;
use crate::store::{self, CommitError, QueryError, Store, StoredMessage};
use crate::ws::close::{CloseReason, INTERNAL_ERROR};
use crate::ws::frame::{self, Opcode};

/// Time between retention steps while a pass (or giving pages back) is
/// under way.
const RETENTION_STEP: Duration = Duration::from_millis(10);

/// Time between retention passes over the rooms.
const RETENTION_PASS: Duration = Duration::from_secs(60);

/// The store and what the current turn waits to deliver.
pub(super) struct Durable {
    pub store: Store,
    /// Room broadcasts of this turn, in order, waiting for its commit.
    pub outbox: Vec<Outgoing>,
    /// Logins of this turn whose answer waits for its commit.
    pub held: Vec<HeldLogin>,
    /// The last commit failed: `/healthz` answers `503 degraded`.
    pub degraded: bool,
    /// A retention step is due after this turn's output.
    pub retention_due: bool,
    /// A read or a commit met a damaged page: logged once, and `/healthz`
    /// answers `503 degraded` until the file is repaired (a restart on a
    /// repaired file).
    pub damaged: bool,
}

/// One broadcast waiting for the turn's commit.
pub(super) enum Outgoing {
    /// A numbered chat message from `sender`'s socket.
    Message {
        room: RoomId,
        message: Kept,
        sender: ConnId,
    },
    /// A `join` or `leave` event (to everyone but `except`).
    Presence {
        room: RoomId,
        frame: Frame,
        except: Option<ConnId>,
    },
}

/// A login whose `303` waits for the commit.
pub(super) struct HeldLogin {
    conn: ConnId,
    session: SessionId,
    room: u32,
    response: Response,
    reply: Reply,
    expires: Instant,
}

impl Durable {
    pub fn new(store: Store) -> Self {
        Durable {
            store,
            outbox: Vec::new(),
            held: Vec::new(),
            degraded: false,
            retention_due: false,
            damaged: false,
        }
    }
}

impl Server {
    /// Takes over `store`: restores its sessions (each reserved for
    /// `--reserve-secs` or `--grace-secs` from now, whichever is longer: the
    /// file does not say when a session's socket closed, and one that was
    /// away during the restart keeps its id as long as if there had been
    /// none; the newest `--max-sessions` of them, the older ones end and are
    /// deleted from the file with the first commit), its rooms' `seq`
    /// counters and their histories. From now on every turn commits before
    /// it writes.
    pub fn use_store(&mut self, mut store: Store) -> Result<(), QueryError> {
        let keep = self.config.history_messages;
        let loaded = store.load(keep)?;
        store.refuse_unreadable(&loaded.damaged_rooms);
        let held = self.config.reserve_timeout.max(self.config.grace_timeout);
        let expires = self.now + held;
        let mut restored = 0;
        let mut over_cap = 0;
        // Newest first: over `--max-sessions`, the oldest logins end.
        for s in &loaded.sessions {
            if self.chat.sessions.len() >= self.config.max_sessions {
                store.record_session_end(s.token_hash);
                over_cap += 1;
                continue;
            }
            match self.chat.restore(s.room, &s.user, s.token_hash, expires) {
                Some(session) => {
                    self.timers.add(expires, TimerKey::Session(session));
                    restored += 1;
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
            "data file: {restored} sessions restored in {} rooms (epoch {:016x})",
            self.chat.rooms.len(),
            store.epoch()
        );
        let damaged_rooms = loaded.damaged_rooms.len();
        if over_cap > 0 {
            log::warn!(
                "data file: {over_cap} older sessions ended, not restored: \
                 more than --max-sessions {}",
                self.config.max_sessions
            );
        }
        self.durable = Some(Durable::new(store));
        // The first retention step runs after the first turn.
        self.timers.add(self.now, TimerKey::Retention);
        if damaged_rooms > 0 {
            self.note_damage(&format!(
                "{damaged_rooms} room(s) could not be read at start"
            ));
        }
        Ok(())
    }

    /// With a data file, `/healthz` says `degraded` while commits fail and
    /// once the file is known to be damaged.
    pub(super) fn degraded(&self) -> bool {
        self.durable
            .as_ref()
            .is_some_and(|d| d.degraded || d.damaged)
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
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        if d.damaged {
            log::debug!("data file damaged: {what}");
            return;
        }
        d.damaged = true;
        log::error!(
            "the data file is damaged ({what}); rooms whose pages are sound go on, \
             /healthz answers 503 degraded until it is repaired (stop the server, \
             then recover it or restore a backup: see the deployment guide); \
             logged once"
        );
    }

    /// The store helper's counts, copied into the metrics before a scrape.
    pub(super) fn count_store_syncs(&mut self) {
        if let Some(d) = self.durable.as_ref() {
            let stats = d.store.sync_stats();
            self.metrics.store_syncs = stats.syncs();
            self.metrics.store_sync_micros = stats.micros();
            self.metrics.checkpoints = stats.checkpoints();
            self.metrics.checkpoint_micros = stats.checkpoint_micros();
        }
    }

    /// Bytes of the data file and its log, for `/metrics`.
    pub(super) fn data_file_bytes(&self) -> u64 {
        let Some(path) = self
            .config
            .data_file
            .as_ref()
            .filter(|_| self.durable.is_some())
        else {
            return 0;
        };
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        [path.as_os_str(), wal.as_os_str()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    // ----- during the turn ---------------------------------------------

    /// A chat message from `sender`: numbered now; without a data file
    /// delivered at once, with one recorded and delivered after the commit.
    pub(super) fn post_message(&mut self, sender: ConnId, room: RoomId, user: &str, text: &str) {
        let at = chat::unix_millis();
        let Some(message) = self.chat.number_message(room, user, text, at) else {
            return;
        };
        let number = self.chat.number(room);
        match self.durable.as_mut() {
            None => self.deliver_message(room, message),
            Some(d) => {
                d.store.record_message(store::Message {
                    room: number,
                    seq: message.seq,
                    at,
                    user,
                    text,
                });
                d.outbox.push(Outgoing::Message {
                    room,
                    message,
                    sender,
                });
            }
        }
    }

    /// A `join` or `leave` event: broadcast at once without a data file,
    /// after the turn's messages with one.
    pub(super) fn post_presence(&mut self, room: RoomId, frame: Frame, except: Option<ConnId>) {
        match self.durable.as_mut() {
            None => {
                self.broadcast(room, frame, except);
            }
            Some(d) => d.outbox.push(Outgoing::Presence {
                room,
                frame,
                except,
            }),
        }
    }

    /// A new login with a data file: recorded, its answer held until the
    /// commit. A room that comes back (it had emptied, or was never in
    /// memory since the start) first gets its `seq` and history from the
    /// file; if that read fails, the login is refused with `503`.
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
            return self.respond(conn, not_stored(Status::ServiceUnavailable, room), reply);
        }
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        d.store
            .record_login(token_hash, room, &user, chat::unix_millis());
        d.held.push(HeldLogin {
            conn,
            session,
            room,
            response,
            reply,
            expires,
        });
        if let Some(c) = self.conn(conn) {
            c.gate.hold();
        }
    }

    /// A room just created in memory by a login, holding nothing yet: its
    /// past, if the data file has one.
    fn bring_back_room(&mut self, room: RoomId) -> Result<(), QueryError> {
        let keep = self.config.history_messages;
        let Some(r) = self.chat.rooms.get(room) else {
            return Ok(());
        };
        let fresh = r.names.len() == 1 && r.numbered == 0 && r.history.is_empty();
        let (Some(d), true) = (self.durable.as_ref(), fresh) else {
            return Ok(());
        };
        if let Some(stored) = d.store.room(r.number, keep)? {
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
        let d = self.durable.as_ref()?;
        Some(d.store.history(room, before, limit).map(|page| {
            let messages: Vec<Vec<u8>> = page.messages.iter().map(event).collect();
            events::history_page(json, messages.iter().map(Vec::as_slice), page.more);
        }))
    }

    // ----- the end of the turn -----------------------------------------

    /// Commits what the turn recorded, then delivers what waited for it (or
    /// refuses it if the commit failed). Runs before `flush_dirty`.
    pub(super) fn commit_turn(&mut self) {
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        if d.outbox.is_empty() && d.held.is_empty() && d.store.pending().is_empty() {
            return;
        }
        let started = Instant::now();
        let result = d.store.commit();
        let outbox = std::mem::take(&mut d.outbox);
        let held = std::mem::take(&mut d.held);
        match result {
            Ok(committed) => {
                if !committed.is_empty() {
                    self.metrics.commits += 1;
                    self.metrics.commit_took(started.elapsed());
                }
                self.writes_work_again();
                if committed.damaged {
                    let rooms = committed.refused_rooms.len();
                    self.note_damage(&format!("a commit left out {rooms} room(s)"));
                }
                if committed.refused_rooms.is_empty() {
                    self.deliver(outbox);
                } else {
                    self.deliver_stored(outbox, &committed.refused_rooms);
                }
                self.answer_held(held, None);
            }
            Err(e) => {
                self.writes_fail(&e);
                self.refuse_messages(
                    outbox,
                    CloseReason::new(e.close_code(), "message not stored"),
                );
                self.answer_held(held, Some(e.login_status()));
            }
        }
        self.deliver_late_presence();
    }

    /// After the turn's output is written: a retention step if one is due,
    /// and a checkpoint (on the store's helper thread) if the log is due
    /// for one or retention changed the file. A failed checkpoint is only
    /// logged there; nothing committed is lost, the log just grows until
    /// commits fail too, which are reported.
    pub(super) fn checkpoint_when_due(&mut self) {
        let changed = self.retention_when_due();
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        // On the store's helper thread: the loop goes on at once; on the
        // loop only if the log could not start again for a while.
        if d.store.checkpoint_overdue() {
            if let Err(e) = d.store.checkpoint() {
                log::debug!("data file checkpoint failed: {e}");
            }
        } else if changed {
            d.store.force_checkpoint();
        } else if d.store.checkpoint_due() {
            d.store.start_checkpoint();
        }
    }

    /// The retention timer fired: a step runs after this turn's output.
    pub(super) fn retention_due(&mut self) {
        if let Some(d) = self.durable.as_mut() {
            d.retention_due = true;
        }
    }

    /// A step of retention by age and of giving free pages back
    /// (`store::retention`), after the turn's output is written; the next
    /// one soon if there is more to do, else after [`RETENTION_PASS`].
    /// Returns whether the step changed the file.
    fn retention_when_due(&mut self) -> bool {
        let Some(d) = self.durable.as_mut().filter(|d| d.retention_due) else {
            return false;
        };
        d.retention_due = false;
        let chat = &self.chat;
        let live = |number| chat.room_by_number(number).is_some();
        let (next, changed) = match d.store.retention_step(chat::unix_millis(), live) {
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

    /// Delivers a committed turn's broadcasts, in order.
    fn deliver(&mut self, outbox: Vec<Outgoing>) {
        for outgoing in outbox {
            match outgoing {
                Outgoing::Message { room, message, .. } => self.deliver_message(room, message),
                Outgoing::Presence {
                    room,
                    frame,
                    except,
                } => {
                    self.broadcast(room, frame, except);
                }
            }
        }
    }

    /// Delivers a committed turn's broadcasts in order, except the messages
    /// of `refused` rooms (their pages are damaged: not written), which are
    /// refused as a failed commit's are: their rooms take the numbers back
    /// and their senders are closed with `1011`.
    fn deliver_stored(&mut self, outbox: Vec<Outgoing>, refused: &[u32]) {
        let (mut stored, mut unstored) = (Vec::new(), Vec::new());
        for outgoing in outbox {
            match &outgoing {
                Outgoing::Message { room, .. } if refused.contains(&self.chat.number(*room)) => {
                    unstored.push(outgoing);
                }
                _ => stored.push(outgoing),
            }
        }
        self.deliver(stored);
        let reason = CloseReason::new(INTERNAL_ERROR, "message not stored");
        self.refuse_messages(unstored, reason);
    }

    /// A message may be seen now: it joins its room's history and goes to
    /// every member.
    fn deliver_message(&mut self, room: RoomId, message: Kept) {
        let frame = message.frame.clone();
        self.chat.keep(room, message, self.config.history_messages);
        // Only chat messages count as deliveries, not join/leave events.
        self.metrics.messages_out += self.broadcast(room, frame, None) as u64;
    }

    /// The commit failed: no message of the turn is delivered; their rooms
    /// take the numbers back and their senders are closed with `1011`.
    /// Presence events still go out, in order.
    fn refuse_messages(&mut self, outbox: Vec<Outgoing>, reason: CloseReason) {
        let mut senders = Vec::new();
        for outgoing in outbox {
            match outgoing {
                Outgoing::Message { room, sender, .. } => {
                    self.chat.unnumber(room);
                    if !senders.contains(&sender) {
                        senders.push(sender);
                    }
                }
                Outgoing::Presence {
                    room,
                    frame,
                    except,
                } => {
                    self.broadcast(room, frame, except);
                }
            }
        }
        for sender in senders {
            self.close_ws(sender, reason.clone());
        }
    }

    /// Answers the logins held for the commit: `303` with the cookie if it
    /// worked; else (`refused` is the status) the session is cancelled and
    /// nothing of it stays. Their connections read again.
    fn answer_held(&mut self, held: Vec<HeldLogin>, refused: Option<Status>) {
        for h in held {
            match refused {
                None => {
                    self.metrics.logins += 1;
                    self.timers.add(h.expires, TimerKey::Session(h.session));
                    self.respond(h.conn, h.response, h.reply);
                }
                Some(status) => {
                    self.chat.cancel(h.session);
                    self.respond(h.conn, not_stored(status, h.room), h.reply);
                }
            }
            if let Some(conn) = self.conn(h.conn) {
                conn.gate.release();
                self.to_read.push(h.conn);
            }
        }
    }

    /// Closing senders or too-slow receivers after the commit may have
    /// queued `leave` events: they need no commit, so they go out now
    /// rather than wait for the next turn.
    fn deliver_late_presence(&mut self) {
        loop {
            let Some(d) = self.durable.as_mut() else {
                return;
            };
            if d.outbox.is_empty() {
                return;
            }
            let outbox = std::mem::take(&mut d.outbox);
            // Only presence events can be queued here (no input is read
            // after the commit); a message would wait for the next commit.
            let (messages, presence): (Vec<_>, Vec<_>) = outbox
                .into_iter()
                .partition(|o| matches!(o, Outgoing::Message { .. }));
            self.deliver(presence);
            if let Some(d) = self.durable.as_mut() {
                d.outbox.extend(messages);
                if !d.outbox.is_empty() {
                    return;
                }
            }
        }
    }

    /// A commit failed: counted, logged once per outage (a full disk must
    /// not fill the log too), `/healthz` degraded.
    fn writes_fail(&mut self, e: &CommitError) {
        self.metrics.persist_errors += 1;
        if store::is_damage(&e.error) {
            self.note_damage(&e.to_string());
        }
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        if !d.degraded {
            d.degraded = true;
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
        if let Some(d) = self.durable.as_mut().filter(|d| d.degraded) {
            d.degraded = false;
            log::warn!(
                "writing to the data file works again ({} failed commits in all)",
                self.metrics.persist_errors
            );
        }
    }
}

/// The answer (`503`) to a login that could not be stored.
fn not_stored(status: Status, room: u32) -> Response {
    Response::error_page(
        status,
        "room",
        "The server could not save your login right now. Try again in a minute.",
        &format!("/?room={room}"),
    )
    .header("Retry-After", "60")
}

/// A stored message's event, as it was sent on the sockets.
fn event(m: &StoredMessage) -> Vec<u8> {
    let mut json = Vec::with_capacity(64 + m.user.len() + m.text.len());
    events::message(&mut json, &m.user, &m.text, m.at, m.seq);
    json
}

/// A stored message as the room's history keeps it (its frame encoded once).
fn kept(m: &StoredMessage) -> Kept {
    let frame: Frame = frame::encode_frame(Opcode::Text, &event(m)).into();
    Kept { seq: m.seq, frame }
}

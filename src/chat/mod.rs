//! Rooms, sessions and reservations: the chat state, kept in memory, with no
//! I/O. The server asks it questions ("may alice log in to room 5?", "who must
//! get this frame?") and does the sending.
//!
//! - Rooms live in a [`Table`], found by number through a `HashMap`.
//! - Sessions (one per successful login) live in a [`Table`], found by the
//!   hash of their random token (the same hash the data file keeps, so a
//!   session restored after a restart is found by the cookie the browser
//!   still has); a socket, a timer or a room names its session by a
//!   checked [`SessionId`], so a stale one finds nothing.
//!   A session reserves its user id in its room from login
//!   until it expires: 60 s to open a socket, then a day of grace after its
//!   socket closes (`--grace-secs`), so a reload, a network blip or a phone
//!   that slept gets the same id back; a log-out ends it at once.
//! - **Presence without noise:** a session is *listed* in its room (in
//!   `welcome.users`; the others saw its `join`) while a socket of it is
//!   joined, and for a leave delay after its last socket closed
//!   ([`Session::leave_at`], `--leave-delay-secs`): a socket of it that
//!   joins within the delay is announced to no one (a reload, a network
//!   blip), and only when the delay ends do the others see `leave`
//!   ([`Expiry::Leave`]). A session restored after a restart that was
//!   listed when the server stopped is listed again, with a leave delay
//!   of its own (`--restart-leave-delay-secs`), so that a restart makes no
//!   `join` per person. A log-out or a lapsed reservation leaves at once.
//! - A session has at most one live timer entry ([`Session::timer`]), due
//!   at the earlier of its leave and the end of its reservation: a socket
//!   that closes again and again does not add an entry each time (each
//!   would live a day); the entry that comes due finds the later instant
//!   and is queued again once ([`Expiry::Later`]).
//! - A room is freed when its last session is gone, and its history with it
//!   (with a data file, its messages and `seq` stay on disk and come back
//!   when it is used again: the server does that, this module does no I/O).
//! - A message is *numbered* first ([`Chat::number_message`]) and *kept*
//!   once it may be delivered ([`Chat::keep`]): with a data file the server
//!   delivers a loop turn's messages only after they are committed, and a
//!   turn whose commit failed takes its numbers back ([`Chat::unnumber`]).

pub mod budget;
pub mod command;
pub mod edits;
pub mod events;
pub mod id_key;
pub mod names;
pub mod typing;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::conn::ConnId;
use crate::queue::Frame;
use crate::rate::TokenBucket;
use crate::table::{Id, Table};
use crate::ws::frame;

pub use crate::token::{Token, TokenHash};

/// A session's slot plus a generation, so a timer or socket that refers
/// to a removed session never touches a later one in the same slot.
pub type SessionId = Id<Session>;

/// A room's slot plus a generation.
pub type RoomId = Id<Room>;

/// One login: a user id reserved in a room.
#[derive(Debug)]
pub struct Session {
    /// The hash of its token (the token itself is only in the cookie).
    pub token_hash: TokenHash,
    /// The room the id is reserved in.
    pub room: RoomId,
    /// The id as typed, as everyone sees it. (What the room compares it by,
    /// [`names::IdKey`], is kept once, in the room's `names`: an idle
    /// session costs one string less; it is computed again when the
    /// session ends.)
    pub user: String,
    /// The socket currently joined for this session.
    pub socket: Option<ConnId>,
    /// When the reservation lapses (only while no socket is joined).
    pub expires: Option<Instant>,
    /// Its scrollback budget, shared by all its connections; made on its
    /// first page ([`budget::spend`]).
    pub scrollback: Option<TokenBucket>,
    /// When the one timer entry the server queued for this session is due
    /// (`None` when there is none): entries due at another instant are stale.
    pub timer: Option<Instant>,
    /// Its `join` waits in the server's turn: the `welcome` of another
    /// socket made meanwhile leaves it out (that socket gets the `join`),
    /// until [`Chat::announced`].
    pub joining: bool,
    /// Still listed in its room though no socket of it is joined (its
    /// socket closed, or the server restarted while it was in): the others
    /// see its `leave` at this instant, unless a socket of it joins first.
    pub leave_at: Option<Instant>,
}

impl Session {
    /// The others count it as in the room: a socket of it is joined, or it
    /// is within its leave delay.
    pub fn listed(&self) -> bool {
        self.socket.is_some() || self.leave_at.is_some()
    }

    /// When its timer entry must come due: the earlier of its leave and
    /// the end of its reservation.
    fn due(&self) -> Option<Instant> {
        match (self.leave_at, self.expires) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What a session's timer entry found when it came due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiry {
    /// The reservation lapsed: the session is gone, the id free. Holds the
    /// room number.
    Ended(u32),
    /// The reservation runs longer now (a socket came and went): queue an
    /// entry for this instant.
    Later(Instant),
    /// The session's leave delay ended with no socket of it back (or its
    /// reservation lapsed within the delay): the others see its `leave`
    /// now.
    Leave(LeaveDue),
    /// Nothing to do: a stale entry, a joined session, or a session gone.
    Kept,
}

/// A `leave` that is due ([`Expiry::Leave`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveDue {
    /// The room it leaves (it may be gone, with no one left to tell).
    pub room: RoomId,
    /// That room's number.
    pub number: u32,
    /// The id the others see leave.
    pub user: String,
    /// The reservation lapsed too: the session is gone, its id free.
    pub ended: bool,
    /// Queue the session's timer entry for this instant (its
    /// reservation's end); `None` when it ended.
    pub next: Option<Instant>,
}

/// One room event kept for late joiners (a message, an edit or a delete:
/// [`edits`]): its number and its encoded frame (a message's in its
/// current state; an edit's or a delete's the very bytes broadcast).
#[derive(Debug, Clone)]
pub struct Kept {
    /// The event's number in its room (1, 2, …).
    pub seq: u64,
    /// The event as one encoded server frame.
    pub frame: Frame,
    /// What it is (and, for a message, who may change it).
    pub event: edits::Event,
}

impl Kept {
    /// The event's JSON, inside the frame.
    pub fn json(&self) -> &[u8] {
        frame::payload_of(&self.frame)
    }
}

/// A joined socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// The joined socket.
    pub conn: ConnId,
    /// The session it was opened for.
    pub session: SessionId,
}

/// One room.
#[derive(Debug)]
pub struct Room {
    /// The room's number, as in `/rooms/{number}`.
    pub number: u32,
    /// Look-alike key of each user id → session key, for every session of
    /// the room (joined or only reserved).
    pub names: HashMap<names::IdKey, SessionId>,
    /// The other keys of each id (with case folded first; of the stored
    /// order of right-to-left letters: [`names::IdKeys`]) → session key.
    pub also_names: HashMap<names::IdKey, SessionId>,
    /// Joined sockets, in the order they joined.
    pub members: Vec<Member>,
    /// The `seq` of the last message delivered (0 before the first): what
    /// `welcome` and `since` go by.
    pub last_seq: u64,
    /// The `seq` of the last message numbered: above `last_seq` only while
    /// the messages of a loop turn wait for their commit.
    pub numbered: u64,
    /// The last `history_messages` message frames. Changed only by
    /// [`Chat`]'s methods, which keep [`Chat::history_bytes`] in step.
    pub history: VecDeque<Kept>,
    /// Ids whose `leave` is decided but waits in the turn's outbox (a busy
    /// data file can hold it over several turns): a welcome made meanwhile
    /// still lists them, since its socket gets that `leave` after it.
    pub leaving: Vec<String>,
}

impl Room {
    /// The session whose id is the same person as one with these keys
    /// (any key in common), if any.
    pub fn owner_of(&self, keys: &names::IdKeys) -> Option<SessionId> {
        keys.iter()
            .find_map(|k| self.names.get(k).or_else(|| self.also_names.get(k)))
            .copied()
    }
}

/// Why a login is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// An id that looks the same is present or reserved in the room → 409.
    Taken {
        /// That id, as its owner typed it.
        present: String,
    },
    /// The room holds `max_users_per_room` → 409.
    Full,
}

/// What joining a socket to its session did.
#[derive(Debug, PartialEq, Eq)]
pub struct Joined {
    /// The older socket of the same session, now replaced (close it with 4000).
    pub replaced: Option<ConnId>,
    /// The session was within its leave delay: it was listed all along,
    /// and the others see no `join`.
    pub back: bool,
}

impl Joined {
    /// The others must see a `join`: the session was not listed before.
    pub fn announced(&self) -> bool {
        self.replaced.is_none() && !self.back
    }
}

/// A socket left its room.
#[derive(Debug)]
pub struct Left {
    /// The room it left.
    pub room: RoomId,
    /// The session's user id, for the `leave` event.
    pub user: String,
    /// The session, now without a socket.
    pub session: SessionId,
    /// When the session's reservation lapses unless a socket joins again (the grace period).
    pub expires: Instant,
    /// When the others see its `leave`, unless a socket of it joins before
    /// (`None`: now, there is no leave delay).
    pub leave_at: Option<Instant>,
    /// Queue a timer entry for the session at this instant (`None`: the
    /// entry already queued is due no later, and will queue one again).
    pub timer: Option<Instant>,
}

/// All rooms and sessions.
#[derive(Debug, Default)]
pub struct Chat {
    /// Every room with at least one session, and, until the end of the
    /// turn's output, the rooms in `left_empty`.
    pub rooms: Table<Room>,
    by_number: HashMap<u32, RoomId>,
    /// Rooms without a session kept until the turn's output is out: their
    /// last session ended while events of theirs waited for the commit, or
    /// the operator opened them ([`Chat::open_room`]).
    left_empty: Vec<RoomId>,
    /// Every session, joined or only reserved.
    pub sessions: Table<Session>,
    by_token: HashMap<TokenHash, SessionId>,
    /// The epoch `welcome` carries: the `seq`s of a room are unique within
    /// one epoch (see [`Chat::set_epoch`]).
    epoch: u64,

    /// Frame bytes in all rooms' histories, counted as they change, so that
    /// a `/metrics` scrape does not walk every kept message.
    history_bytes: usize,
    /// When sessions last had a `typing` event sent.
    pub typing: typing::Typing,
}

impl Chat {
    /// No rooms and no sessions, and a random epoch: without a data file
    /// every start of the process begins every room's numbering again.
    pub fn new() -> Self {
        Chat {
            epoch: random_epoch(),
            ..Self::default()
        }
    }

    /// Takes the data file's epoch (the same across restarts, new after a
    /// restore), instead of the random one of [`Chat::new`].
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// The epoch `welcome` carries.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The room numbered `number`, if it has any session (or is kept until
    /// the end of the turn's output: see `left_empty`).
    pub fn room_by_number(&self, number: u32) -> Option<RoomId> {
        self.by_number.get(&number).copied()
    }

    /// Reserves `user` in room `number` for a new session.
    pub fn login(
        &mut self,
        number: u32,
        user: &str,
        token: Token,
        expires: Instant,
        max_users: usize,
    ) -> Result<SessionId, LoginError> {
        self.login_hashed(number, user, TokenHash::of(&token), expires, max_users)
    }

    /// Brings back a session from the data file, reserved until `expires`
    /// (the room's limit does not apply: it held the id before), and, if
    /// `leave_at` is given (it was listed when the server stopped), listed
    /// until then. Queue its timer entry at [`Chat::timer_of`]. `None` if
    /// an id that looks the same is already there.
    pub fn restore(
        &mut self,
        number: u32,
        user: &str,
        token_hash: TokenHash,
        expires: Instant,
        leave_at: Option<Instant>,
    ) -> Option<SessionId> {
        let id = self
            .login_hashed(number, user, token_hash, expires, usize::MAX)
            .ok()?;
        if let Some(s) = self.sessions.get_mut(id) {
            s.leave_at = leave_at;
            s.timer = s.due();
        }
        Some(id)
    }

    /// When the session's one timer entry is due, if it has one.
    pub fn timer_of(&self, id: SessionId) -> Option<Instant> {
        self.sessions.get(id).and_then(|s| s.timer)
    }

    fn login_hashed(
        &mut self,
        number: u32,
        user: &str,
        token_hash: TokenHash,
        expires: Instant,
        max_users: usize,
    ) -> Result<SessionId, LoginError> {
        let keys = names::IdKeys::of(user);
        if let Some(room) = self.room_by_number(number).and_then(|r| self.rooms.get(r)) {
            if let Some(owner) = room.owner_of(&keys) {
                let present = self.user(owner).to_string();
                return Err(LoginError::Taken { present });
            }
            if room.names.len() >= max_users {
                return Err(LoginError::Full);
            }
        }
        let room = self.room_or_create(number);
        let id = self.sessions.insert(Session {
            token_hash,
            room,
            user: user.to_string(),
            socket: None,
            expires: Some(expires),
            // The caller queues a timer entry at `expires`.
            timer: Some(expires),
            scrollback: None,
            leave_at: None,
            joining: false,
        });
        if let Some(room) = self.rooms.get_mut(room) {
            room.names.insert(keys.shown, id);
            for key in keys.also {
                room.also_names.insert(key, id);
            }
        }
        self.by_token.insert(token_hash, id);
        Ok(id)
    }

    /// Room `number` in memory, created empty (no session, `seq` 0) if it
    /// is not: for the operator, who may change a room nobody is in. The
    /// core restores its past from the data file; it is closed again at
    /// the end of the turn ([`Chat::close_rooms_left_empty`]) unless a
    /// login took it meanwhile.
    pub fn open_room(&mut self, number: u32) -> RoomId {
        let room = self.room_or_create(number);
        self.left_empty.push(room);
        room
    }

    /// Frees `room` if no session holds it. A room with events still
    /// waiting for their commit (numbered, not yet delivered: a busy data
    /// file can hold them over several turns) stays until they are out,
    /// so that whoever opens it next numbers on from them rather than from
    /// the file, which does not have them yet; [`Chat::close_rooms_left_empty`]
    /// frees it then.
    fn close_if_unused(&mut self, room: RoomId) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        if !r.names.is_empty() {
            return;
        }
        if r.numbered > r.last_seq {
            if !self.left_empty.contains(&room) {
                self.left_empty.push(room);
            }
            return;
        }
        let number = r.number;
        if let Some(gone) = self.rooms.remove(room) {
            self.history_bytes -= frame_bytes(&gone.history);
        }
        self.by_number.remove(&number);
    }

    /// After a turn's output went out (its events delivered, or taken back
    /// when the commit failed): frees the rooms that were left without a
    /// session while events of theirs waited, and the ones the operator
    /// opened, unless a session holds them now.
    pub fn close_rooms_left_empty(&mut self) {
        for room in std::mem::take(&mut self.left_empty) {
            self.close_if_unused(room);
        }
    }

    fn room_or_create(&mut self, number: u32) -> RoomId {
        if let Some(&room) = self.by_number.get(&number) {
            return room;
        }
        let room = self.rooms.insert(Room {
            number,
            names: HashMap::new(),
            also_names: HashMap::new(),
            members: Vec::new(),
            last_seq: 0,
            numbered: 0,
            history: VecDeque::new(),
            leaving: Vec::new(),
        });
        self.by_number.insert(number, room);
        room
    }

    /// The session with this token, if it belongs to room `number`.
    pub fn session_for(&self, token: &Token, number: u32) -> Option<SessionId> {
        let &id = self.by_token.get(&TokenHash::of(token))?;
        let session = self.sessions.get(id)?;
        (self.rooms.get(session.room)?.number == number).then_some(id)
    }

    /// The session's cookie names it no more (it logged out; the session
    /// itself ends in the turn's order, [`Chat::log_out`]).
    pub fn forget_token(&mut self, id: SessionId) {
        if let Some(s) = self.sessions.get(id) {
            self.by_token.remove(&s.token_hash);
        }
    }

    /// The session with this token, in whichever room.
    pub fn session_by_token(&self, token: &Token) -> Option<SessionId> {
        self.by_token.get(&TokenHash::of(token)).copied()
    }

    /// Charges one scrollback page (or a room socket, which costs as much)
    /// to `session` at `now` ([`budget::spend`]);
    /// a session that is gone has nothing to spend from and is let through
    /// (the caller checked it a moment ago).
    pub fn spend_scrollback(
        &mut self,
        session: SessionId,
        limits: budget::Budget,
        now: Instant,
    ) -> Result<(), budget::OverBudget> {
        match self.sessions.get_mut(session) {
            Some(s) => budget::spend(&mut s.scrollback, limits, now),
            None => Ok(()),
        }
    }

    /// The user id of a session (empty if it is gone).
    pub fn user(&self, session: SessionId) -> &str {
        self.sessions.get(session).map_or("", |s| s.user.as_str())
    }

    /// The room number of a room (0, which no room has, if it is gone).
    pub fn number(&self, room: RoomId) -> u32 {
        self.rooms.get(room).map_or(0, |r| r.number)
    }

    /// Joins `conn` to its session's room. A session has one socket: a
    /// newer one takes the older one's place.
    /// A session within its leave delay is back: it was listed all along
    /// ([`Joined::back`]).
    pub fn join(&mut self, session: SessionId, conn: ConnId) -> Joined {
        let none = Joined {
            replaced: None,
            back: false,
        };
        let Some(s) = self.sessions.get_mut(session) else {
            return none;
        };
        s.expires = None;
        let back = s.leave_at.take().is_some();
        let old = s.socket.replace(conn);
        // A join still waiting to go out (a busy data file holds the turn's
        // output) stays waiting when a newer socket takes over, or the
        // session comes back: welcomes made until it goes out leave it out.
        s.joining = s.joining || (old.is_none() && !back);
        let Some(room) = self.rooms.get_mut(s.room) else {
            return none;
        };
        match old.and_then(|old| room.members.iter_mut().find(|m| m.conn == old)) {
            Some(member) => {
                member.conn = conn;
                Joined {
                    replaced: old,
                    back,
                }
            }
            None => {
                room.members.push(Member { conn, session });
                Joined {
                    replaced: None,
                    back,
                }
            }
        }
    }

    /// Takes `conn` out of its room. Does nothing (returns `None`) if `conn`
    /// is no longer its session's socket (it was replaced). The session
    /// stays listed until `leave_at` (`None`: the others see its `leave`
    /// now) and keeps its id until `expires`.
    pub fn leave(
        &mut self,
        session: SessionId,
        conn: ConnId,
        leave_at: Option<Instant>,
        expires: Instant,
    ) -> Option<Left> {
        let s = self.sessions.get_mut(session)?;
        if s.socket != Some(conn) {
            return None;
        }
        s.socket = None;
        s.expires = Some(expires);
        s.leave_at = leave_at;
        let due = s.due().unwrap_or(expires);
        let timer = s.timer.is_none_or(|t| t > due).then_some(due);
        if timer.is_some() {
            s.timer = timer;
        }
        if let Some(room) = self.rooms.get_mut(s.room) {
            room.members.retain(|m| m.conn != conn);
        }
        Some(Left {
            room: s.room,
            user: s.user.clone(),
            session,
            expires,
            leave_at,
            timer,
        })
    }

    /// The session's `join` went out: the others' welcomes list it now.
    pub fn announced(&mut self, session: SessionId) {
        if let Some(s) = self.sessions.get_mut(session) {
            s.joining = false;
        }
    }

    /// A session within its leave delay is no longer listed, at once (it
    /// logs out, or is removed): its room and id, for the `leave` the
    /// others must see now. `None` if it was not within its delay.
    pub fn leave_now(&mut self, session: SessionId) -> Option<(RoomId, String)> {
        let s = self.sessions.get_mut(session)?;
        s.leave_at.take()?;
        Some((s.room, s.user.clone()))
    }

    /// A session's timer entry due at `due` came due at `now`: its leave
    /// is due if its leave delay ended, and the session ends if its
    /// reservation lapsed (freeing its room when empty); else it says when
    /// to look again.
    pub fn expire(&mut self, id: SessionId, due: Instant, now: Instant) -> Expiry {
        let Some(s) = self.sessions.get_mut(id) else {
            return Expiry::Kept;
        };
        if s.timer != Some(due) {
            return Expiry::Kept; // a stale entry: the live one is due earlier
        }
        s.timer = None;
        if s.socket.is_some() {
            return Expiry::Kept;
        }
        let lapsed = s.expires.is_some_and(|t| t <= now);
        let leave = s.leave_at.is_some_and(|t| t <= now || lapsed);
        if !lapsed && !leave {
            s.timer = s.due();
            return s.timer.map_or(Expiry::Kept, Expiry::Later);
        }
        let user = match leave {
            true => s.leave_at.take().map(|_| s.user.clone()),
            false => None,
        };
        let room = s.room;
        let number = self.number(room);
        if !lapsed {
            let s = self.sessions.get_mut(id);
            let next = s.and_then(|s| {
                s.timer = s.due();
                s.timer
            });
            let user = user.unwrap_or_default();
            return Expiry::Leave(LeaveDue {
                room,
                number,
                user,
                ended: false,
                next,
            });
        }
        let Some(number) = self.remove_session(id) else {
            return Expiry::Kept;
        };
        match user {
            Some(user) => Expiry::Leave(LeaveDue {
                room,
                number,
                user,
                ended: true,
                next: None,
            }),
            None => Expiry::Ended(number),
        }
    }

    /// Ends a session at once (`POST /logout`): its id is free and its room
    /// freed when empty. Its socket, if any, must be closed by the caller
    /// first, so that the others see its `leave`. Returns the room number.
    pub fn log_out(&mut self, id: SessionId) -> Option<u32> {
        self.remove_session(id)
    }

    /// Takes back a login that could not be committed: the session is gone
    /// at once, as if it had never been (it has no socket yet).
    pub fn cancel(&mut self, id: SessionId) -> Option<u32> {
        self.remove_session(id)
    }

    /// Removes a session and frees its id; frees its room when empty.
    fn remove_session(&mut self, id: SessionId) -> Option<u32> {
        let s = self.sessions.remove(id)?;
        self.by_token.remove(&s.token_hash);
        let room = self.rooms.get_mut(s.room)?;
        let keys = names::IdKeys::of(&s.user);
        room.names.remove(&keys.shown);
        for key in &keys.also {
            room.also_names.remove(key);
        }
        let number = room.number;
        self.close_if_unused(s.room);
        Some(number)
    }

    /// Sets a room's `seq` counter and history from the data file (at start,
    /// or when a room that had emptied is used again). `history` is oldest
    /// first; the last `keep` are kept.
    pub fn restore_room(&mut self, room: RoomId, last_seq: u64, history: Vec<Kept>, keep: usize) {
        let Some(room) = self.rooms.get_mut(room) else {
            return;
        };
        room.last_seq = last_seq;
        room.numbered = last_seq;
        let skip = history.len().saturating_sub(keep);
        let old = std::mem::replace(&mut room.history, history.into_iter().skip(skip).collect());
        self.history_bytes = self.history_bytes - frame_bytes(&old) + frame_bytes(&room.history);
    }

    /// Numbers a message, keeps it in the room's history and returns the
    /// frame to broadcast ([`Chat::number_message`], then [`Chat::keep`]).
    /// `None` if the room is gone.
    pub fn post(
        &mut self,
        room: RoomId,
        user: &str,
        text: &str,
        at: u64,
        keep: usize,
    ) -> Option<Frame> {
        let kept = self.number_message(room, user, text, at)?;
        self.keep(room, kept.clone(), keep);
        Some(kept.frame)
    }

    /// Gives a message the room's next `seq` and encodes its frame once.
    /// It is not in the history yet: see [`Chat::keep`].
    pub fn number_message(
        &mut self,
        room: RoomId,
        user: &str,
        text: &str,
        at: u64,
    ) -> Option<Kept> {
        self.number_said(room, user, text, at, None)
    }

    /// [`Chat::number_message`] for a message its sender may edit and
    /// delete: `author` is the hash of the sending session's token.
    pub fn number_said(
        &mut self,
        room: RoomId,
        user: &str,
        text: &str,
        at: u64,
        author: Option<TokenHash>,
    ) -> Option<Kept> {
        let seq = self.next_seq(room)?;
        Some(Kept::message(seq, user, text, at, author))
    }

    /// A numbered event is being delivered: it is the room's last, and
    /// joins its history (which holds at most `keep` events); an edit or a
    /// delete changes the message it targets ([`edits`]).
    pub fn keep(&mut self, room: RoomId, message: Kept, keep: usize) {
        self.apply_change(room, &message.event);
        let Some(room) = self.rooms.get_mut(room) else {
            return;
        };
        room.last_seq = room.last_seq.max(message.seq);
        if keep > 0 {
            if room.history.len() >= keep
                && let Some(old) = room.history.pop_front()
            {
                self.history_bytes -= old.frame.len();
            }
            self.history_bytes += message.frame.len();
            room.history.push_back(message);
        }
    }

    /// Takes back the numbers of messages that will not be delivered (their
    /// commit failed): the next message gets `last_seq + 1` again. Nobody saw
    /// those numbers, so giving them again breaks no promise.
    pub fn unnumber(&mut self, room: RoomId) {
        if let Some(room) = self.rooms.get_mut(room) {
            room.numbered = room.last_seq;
        }
    }

    /// The `welcome` event for a socket of `session`, with the history after
    /// `since` (and `gap` when messages after `since` are no longer kept).
    /// `limits` are the longest chat text in code points and in lines, and
    /// the edit window in seconds.
    /// Empty if the session or its room is gone.
    pub fn welcome(
        &self,
        session: SessionId,
        since: Option<u64>,
        limits: (usize, usize, u64),
    ) -> Vec<u8> {
        let Some(s) = self.sessions.get(session) else {
            return Vec::new();
        };
        let Some(room) = self.rooms.get(s.room) else {
            return Vec::new();
        };
        // A `since` beyond the last seq belongs to an older room of that number.
        let since = since.filter(|&n| n <= room.last_seq);
        let first_kept = room
            .history
            .front()
            .map(|k| k.seq)
            .unwrap_or(room.last_seq + 1);
        let gap = since.is_some_and(|n| n < room.last_seq && first_kept > n + 1);
        let after = since.unwrap_or(0);
        let mut users: Vec<&str> = self
            .joined(room, Some(session))
            .chain(self.away(room).into_iter().map(|id| self.user(id)))
            .collect();
        for id in &room.leaving {
            if !users.contains(&id.as_str()) {
                users.push(id);
            }
        }
        let history = room
            .history
            .iter()
            .filter(|k| k.seq > after)
            .map(Kept::json);
        let mut out = Vec::with_capacity(128 + room.history.len() * 96);
        events::welcome(
            &mut out,
            events::Welcome {
                room: room.number,
                user: &s.user,
                users: users.into_iter(),
                max_chars: limits.0,
                max_lines: limits.1,
                edit_window_secs: limits.2,
                history,
                gap,
                epoch: self.epoch,
            },
        );
        out
    }

    /// The ids of `room`'s joined sockets whose `join` went out (and
    /// `own`'s, which gets no `join` for itself), in the order they joined.
    fn joined<'a>(
        &'a self,
        room: &'a Room,
        own: Option<SessionId>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        room.members
            .iter()
            .filter(move |m| {
                Some(m.session) == own || self.sessions.get(m.session).is_some_and(|s| !s.joining)
            })
            .map(|m| self.user(m.session))
    }

    /// The sessions of `room` listed without a socket (within their leave
    /// delay), in a fixed order.
    fn away(&self, room: &Room) -> Vec<SessionId> {
        let mut away: Vec<SessionId> = room
            .names
            .values()
            .copied()
            .filter(|&id| {
                self.sessions
                    .get(id)
                    .is_some_and(|s| s.socket.is_none() && s.leave_at.is_some())
            })
            .collect();
        away.sort_unstable();
        away
    }

    /// The ids listed in room `number` (in `welcome.users`): its joined
    /// sockets' and those within their leave delay.
    pub fn listed(&self, number: u32) -> Vec<&str> {
        let Some(room) = self.room_by_number(number).and_then(|r| self.rooms.get(r)) else {
            return Vec::new();
        };
        let away = self.away(room).into_iter().map(|id| self.user(id));
        self.joined(room, None).chain(away).collect()
    }

    /// One page of scrollback from room `number`'s in-memory history: the
    /// newest `limit` kept messages with `seq < before` (`None`: all),
    /// oldest first, and whether older ones are still kept. Empty if the
    /// room is gone.
    pub fn page(&self, number: u32, before: Option<u64>, limit: usize) -> (Vec<&[u8]>, bool) {
        let Some(room) = self.room_by_number(number).and_then(|r| self.rooms.get(r)) else {
            return (Vec::new(), false);
        };
        let end = match before {
            Some(before) => room.history.partition_point(|k| k.seq < before),
            None => room.history.len(),
        };
        let start = end.saturating_sub(limit);
        let page = room.history.range(start..end).map(Kept::json).collect();
        (page, start > 0)
    }

    /// Drops from every room's history the events from before `cutoff`
    /// (Unix ms), oldest first, keeping each room's newest: what
    /// `--keep-days` deleted from the data file is not served from memory
    /// either. Returns how many were dropped.
    pub fn forget_before(&mut self, cutoff: u64) -> usize {
        let mut dropped = 0;
        for room in self.rooms.values_mut() {
            while room.history.len() > 1
                && room.history.front().is_some_and(|k| k.event.at() < cutoff)
                && let Some(old) = room.history.pop_front()
            {
                self.history_bytes -= old.frame.len();
                dropped += 1;
            }
        }
        dropped
    }

    /// Bytes of message frames held in histories (for `/metrics`): a
    /// count kept as they change (a debug build checks it against every
    /// room's history).
    pub fn history_bytes(&self) -> usize {
        debug_assert_eq!(
            self.history_bytes,
            self.rooms
                .iter()
                .map(|(_, r)| frame_bytes(&r.history))
                .sum::<usize>(),
            "history bytes counted out of step"
        );
        self.history_bytes
    }
}

/// A random epoch; should the system's random source fail (it does not on
/// Linux), the clock's nanoseconds, which differ from one start to the next.
fn random_epoch() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    })
}

/// Bytes of the frames in one history.
fn frame_bytes(history: &VecDeque<Kept>) -> usize {
    history.iter().map(|k| k.frame.len()).sum()
}

/// A new random session token.
pub fn new_token() -> std::io::Result<Token> {
    let mut token = [0u8; 16];
    getrandom::fill(&mut token).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(token)
}

/// The token as its cookie carries it: 32 lower-case hex digits.
pub fn token_to_hex(token: &Token) -> String {
    token.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a token in the one form [`token_to_hex`] writes: exactly 32
/// lower-case hex digits. Anything else (upper case, a sign, another length)
/// is not a token, so one session has one spelling.
pub fn token_from_hex(text: &str) -> Option<Token> {
    let digits = text.as_bytes();
    if digits.len() != 32 {
        return None;
    }
    let mut token = [0u8; 16];
    for (byte, pair) in token.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(token)
}

/// The value of one lower-case hex digit.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Milliseconds since the Unix epoch, for `at`.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(key: u32) -> ConnId {
        ConnId::new(key, 1)
    }

    #[test]
    fn login_join_leave_expire() {
        let mut chat = Chat::new();
        let now = Instant::now();
        let id = chat.login(5, "Alice", [1; 16], now, 10).unwrap();
        assert_eq!(
            chat.login(5, "alice", [2; 16], now, 10),
            Err(LoginError::Taken {
                present: "Alice".into()
            })
        );
        assert!(chat.login(6, "alice", [3; 16], now, 10).is_ok());
        let key = chat.session_for(&[1; 16], 5).unwrap();
        assert_eq!(chat.session_for(&[1; 16], 6), None);
        assert_eq!(
            chat.join(key, conn(1)),
            Joined {
                replaced: None,
                back: false
            }
        );
        assert_eq!(
            chat.join(key, conn(2)),
            Joined {
                replaced: Some(conn(1)),
                back: false
            }
        );
        assert!(
            chat.leave(key, conn(1), None, now).is_none(),
            "a replaced socket does not leave"
        );
        assert_eq!(
            chat.expire(id, now, now),
            Expiry::Kept,
            "joined sessions do not expire"
        );
        let left = chat.leave(key, conn(2), None, now).unwrap();
        assert_eq!(left.user, "Alice");
        assert_eq!(left.timer, Some(now));
        assert_eq!(chat.expire(id, now, now), Expiry::Ended(5));
        assert_eq!(
            chat.room_by_number(5),
            None,
            "the room went with its last user"
        );
        assert!(chat.login(5, "alice", [4; 16], now, 10).is_ok());
    }

    #[test]
    fn a_join_not_yet_announced_stays_unannounced_across_a_newer_socket_or_a_return() {
        let mut chat = Chat::new();
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let id = chat.login(5, "alice", [1; 16], later, 10).unwrap();
        chat.join(id, conn(1));
        assert!(
            chat.sessions.get(id).unwrap().joining,
            "its join waits in the outbox"
        );
        // A busy data file holds the join; a second tab takes over.
        chat.join(id, conn(2));
        assert!(
            chat.sessions.get(id).unwrap().joining,
            "welcomes made now must still leave it out"
        );
        // The socket closes within its leave delay and comes back.
        chat.leave(id, conn(2), Some(later), later).unwrap();
        chat.join(id, conn(3));
        assert!(chat.sessions.get(id).unwrap().joining);
        chat.announced(id);
        assert!(!chat.sessions.get(id).unwrap().joining);
        // Once announced, neither makes it a new join.
        chat.join(id, conn(4));
        chat.leave(id, conn(4), Some(later), later).unwrap();
        chat.join(id, conn(5));
        assert!(!chat.sessions.get(id).unwrap().joining);
    }

    #[test]
    fn a_session_has_one_timer_entry_however_often_its_socket_closes() {
        let mut chat = Chat::new();
        let t0 = Instant::now();
        let reserve = t0 + Duration::from_secs(60);
        let id = chat.login(1, "bob", [1; 16], reserve, 10).unwrap();
        let grace = Duration::from_secs(86_400);
        // A grace shorter than what is left of the reservation: an earlier
        // entry is needed, and the one at `reserve` goes stale.
        chat.join(id, conn(1));
        let short = t0 + Duration::from_secs(5);
        assert_eq!(
            chat.leave(id, conn(1), None, short).unwrap().timer,
            Some(short)
        );
        assert_eq!(chat.expire(id, reserve, reserve), Expiry::Kept, "stale");
        // Back, and away again and again: no new entry after the first.
        let mut queued = Vec::new();
        for i in 1..=100u64 {
            chat.join(id, conn(1 + i as u32));
            let away = t0 + Duration::from_secs(i) + grace;
            queued.extend(
                chat.leave(id, conn(1 + i as u32), None, away)
                    .unwrap()
                    .timer,
            );
        }
        assert_eq!(queued, [], "the entry at {short:?} will look again");
        // The one entry comes due: the reservation runs longer, queue once more.
        let last = t0 + Duration::from_secs(100) + grace;
        assert_eq!(chat.expire(id, short, short), Expiry::Later(last));
        assert_eq!(chat.expire(id, short, last), Expiry::Kept, "now stale");
        assert_eq!(chat.expire(id, last, last), Expiry::Ended(1));
        assert!(chat.login(1, "bob", [2; 16], last, 10).is_ok());
    }

    #[test]
    fn a_socket_back_within_the_leave_delay_is_not_announced() {
        let mut chat = Chat::new();
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let id = chat.login(1, "bob", [1; 16], s(60), 10).unwrap();
        let eve = chat.login(1, "eve", [2; 16], s(60), 10).unwrap();
        chat.join(eve, conn(9));
        chat.announced(eve);
        assert!(chat.join(id, conn(1)).announced(), "a first socket joins");
        chat.announced(id);
        let left = chat.leave(id, conn(1), Some(s(5)), s(100)).unwrap();
        assert_eq!((left.leave_at, left.timer), (Some(s(5)), Some(s(5))));
        assert_eq!(chat.listed(1), ["eve", "bob"], "listed within its delay");
        let back = chat.join(id, conn(2));
        assert!(back.back && !back.announced(), "back unannounced");
        assert_eq!(chat.expire(id, s(5), s(5)), Expiry::Kept, "joined again");
        // Away again, and not back within the delay: its leave is due.
        let left = chat.leave(id, conn(2), Some(s(7)), s(102)).unwrap();
        assert_eq!(left.timer, Some(s(7)));
        let room = chat.room_by_number(1).unwrap();
        let due = LeaveDue {
            room,
            number: 1,
            user: "bob".into(),
            ended: false,
            next: Some(s(102)),
        };
        assert_eq!(chat.expire(id, s(7), s(7)), Expiry::Leave(due));
        assert_eq!(chat.listed(1), ["eve"]);
        assert!(
            chat.join(id, conn(3)).announced(),
            "after its leave: a join"
        );
        chat.leave(id, conn(3), None, s(102)).unwrap();
        assert_eq!(chat.leave_now(id), None, "no delay: it left at once");
        assert_eq!(chat.expire(id, s(102), s(102)), Expiry::Ended(1));
    }

    #[test]
    fn a_reservation_that_lapses_within_the_leave_delay_leaves_at_once() {
        let mut chat = Chat::new();
        let t0 = Instant::now();
        let id = chat.login(2, "ann", [1; 16], t0 + Duration::from_secs(60), 10);
        let id = id.unwrap();
        chat.join(id, conn(1));
        let (delay, grace) = (t0 + Duration::from_secs(5), t0 + Duration::from_secs(1));
        let left = chat.leave(id, conn(1), Some(delay), grace).unwrap();
        assert_eq!(left.timer, Some(grace));
        let room = chat.room_by_number(2).unwrap();
        let due = LeaveDue {
            room,
            number: 2,
            user: "ann".into(),
            ended: true,
            next: None,
        };
        assert_eq!(chat.expire(id, grace, grace), Expiry::Leave(due));
        assert!(chat.sessions.get(id).is_none(), "the session ended");
    }

    #[test]
    fn a_leave_delay_adds_no_timer_entry_per_close() {
        let mut chat = Chat::new();
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let id = chat.login(1, "bob", [1; 16], s(60), 10).unwrap();
        chat.join(id, conn(1));
        let first = chat.leave(id, conn(1), Some(s(5)), s(1000)).unwrap();
        assert_eq!(first.timer, Some(s(5)));
        let mut queued = Vec::new();
        for i in 1..=100u64 {
            let c = conn(1 + i as u32);
            assert!(chat.join(id, c).back);
            let left = chat.leave(id, c, Some(s(5 + i)), s(1000 + i)).unwrap();
            queued.extend(left.timer);
        }
        assert_eq!(queued, [], "the entry at 5 s will look again");
        assert_eq!(chat.expire(id, s(60), s(60)), Expiry::Kept, "stale");
        assert_eq!(chat.expire(id, s(5), s(5)), Expiry::Later(s(105)));
        let Expiry::Leave(due) = chat.expire(id, s(105), s(105)) else {
            panic!("the leave is due at 105 s");
        };
        assert_eq!((due.ended, due.next), (false, Some(s(1100))));
        assert_eq!(chat.expire(id, s(1100), s(1100)), Expiry::Ended(1));
    }

    #[test]
    fn a_restored_session_that_was_listed_is_listed_until_it_is_back() {
        let mut chat = Chat::new();
        let t0 = Instant::now();
        let (until, expires) = (t0 + Duration::from_secs(20), t0 + Duration::from_secs(60));
        let ann = chat.restore(4, "ann", TokenHash([1; 32]), expires, Some(until));
        let bob = chat.restore(4, "bob", TokenHash([2; 32]), expires, None);
        let (ann, bob) = (ann.unwrap(), bob.unwrap());
        assert_eq!(
            (chat.timer_of(ann), chat.timer_of(bob)),
            (Some(until), Some(expires))
        );
        assert_eq!(chat.listed(4), ["ann"], "bob was not in the room");
        assert!(chat.join(ann, conn(1)).back, "ann's return is silent");
        assert!(chat.join(bob, conn(2)).announced(), "bob joins");
        // Until bob's join goes out, a welcome leaves him out (its socket
        // gets the join); his own welcome lists him.
        assert_eq!(chat.listed(4), ["ann"]);
        let users =
            |w: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&w).unwrap()["users"].clone();
        assert_eq!(
            users(chat.welcome(bob, None, (50, 40, 900))),
            serde_json::json!(["ann", "bob"])
        );
        chat.announced(bob);
        assert_eq!(chat.listed(4), ["ann", "bob"]);
    }

    #[test]
    fn log_out_frees_the_id_at_once() {
        let mut chat = Chat::new();
        let now = Instant::now();
        let id = chat.login(3, "carol", [7; 16], now, 10).unwrap();
        chat.login(3, "dave", [8; 16], now, 10).unwrap();
        assert_eq!(chat.session_by_token(&[7; 16]), Some(id));
        assert_eq!(chat.log_out(id), Some(3));
        assert_eq!(chat.session_by_token(&[7; 16]), None);
        assert!(chat.login(3, "Carol", [9; 16], now, 10).is_ok());
        assert_eq!(chat.log_out(id), None, "once");
    }

    #[test]
    fn an_id_holds_all_its_keys_until_it_goes() {
        let mut chat = Chat::new();
        let now = Instant::now();
        let id = chat.login(5, "א-ב", [1; 16], now, 2).unwrap();
        let taken = Err(LoginError::Taken {
            present: "א-ב".into(),
        });
        assert_eq!(chat.login(5, "ב-א", [2; 16], now, 2), taken, "stored order");
        assert_eq!(chat.login(5, "א-ב", [3; 16], now, 2), taken, "shown order");
        // Two keys, one user: the room is not full.
        assert!(chat.login(5, "b", [4; 16], now, 2).is_ok());
        chat.cancel(id);
        assert!(
            chat.login(5, "ב-א", [5; 16], now, 3).is_ok(),
            "both keys freed"
        );
        let room = chat
            .room_by_number(5)
            .and_then(|r| chat.rooms.get(r))
            .unwrap();
        let also = names::IdKeys::of("ב-א").also.len() + names::IdKeys::of("b").also.len();
        assert_eq!((room.names.len(), room.also_names.len()), (2, also));
        // A key of the present id's that is not its shown key still counts.
        chat.login(7, "ALICE", [6; 16], now, 3).unwrap();
        let taken = Err(LoginError::Taken {
            present: "ALICE".into(),
        });
        assert_eq!(chat.login(7, "alice", [7; 16], now, 3), taken);
    }

    #[test]
    fn rooms_fill_up() {
        let mut chat = Chat::new();
        let now = Instant::now();
        chat.login(1, "a", [1; 16], now, 2).unwrap();
        chat.login(1, "b", [2; 16], now, 2).unwrap();
        assert_eq!(chat.login(1, "c", [3; 16], now, 2), Err(LoginError::Full));
    }

    #[test]
    fn history_and_since() {
        let mut chat = Chat::new();
        let now = Instant::now();
        chat.login(1, "a", [1; 16], now, 10).unwrap();
        let key = chat.session_for(&[1; 16], 1).unwrap();
        let room = chat.room_by_number(1).unwrap();
        for i in 0..8 {
            chat.post(room, "a", &format!("m{i}"), 0, 5);
        }
        let seqs = |w: Vec<u8>| {
            let v: serde_json::Value = serde_json::from_slice(&w).unwrap();
            let seqs: Vec<u64> = v["history"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["seq"].as_u64().unwrap())
                .collect();
            (seqs, v["gap"].as_bool().unwrap())
        };
        assert_eq!(
            seqs(chat.welcome(key, None, (50, 40, 900))),
            (vec![4, 5, 6, 7, 8], false)
        );
        assert_eq!(
            seqs(chat.welcome(key, Some(6), (50, 40, 900))),
            (vec![7, 8], false)
        );
        assert_eq!(
            seqs(chat.welcome(key, Some(3), (50, 40, 900))),
            (vec![4, 5, 6, 7, 8], false)
        );
        assert_eq!(
            seqs(chat.welcome(key, Some(1), (50, 40, 900))),
            (vec![4, 5, 6, 7, 8], true)
        );
        assert_eq!(
            seqs(chat.welcome(key, Some(8), (50, 40, 900))),
            (vec![], false)
        );
        assert_eq!(
            seqs(chat.welcome(key, Some(99), (50, 40, 900))),
            (vec![4, 5, 6, 7, 8], false)
        );
    }

    #[test]
    fn scrollback_pages_come_from_the_ring() {
        let mut chat = Chat::new();
        chat.login(1, "a", [1; 16], Instant::now(), 10).unwrap();
        let room = chat.room_by_number(1).unwrap();
        for i in 0..8 {
            chat.post(room, "a", &format!("m{i}"), 0, 5);
        }
        let seqs = |(page, more): (Vec<&[u8]>, bool)| {
            let seqs: Vec<u64> = page
                .iter()
                .map(|j| {
                    serde_json::from_slice::<serde_json::Value>(j).unwrap()["seq"]
                        .as_u64()
                        .unwrap()
                })
                .collect();
            (seqs, more)
        };
        assert_eq!(seqs(chat.page(1, None, 2)), (vec![7, 8], true));
        assert_eq!(seqs(chat.page(1, Some(7), 2)), (vec![5, 6], true));
        assert_eq!(seqs(chat.page(1, Some(6), 2)), (vec![4, 5], false));
        assert_eq!(seqs(chat.page(1, Some(5), 50)), (vec![4], false));
        assert_eq!(seqs(chat.page(1, Some(4), 50)), (vec![], false));
        assert_eq!(seqs(chat.page(1, None, 50)), (vec![4, 5, 6, 7, 8], false));
        assert_eq!(seqs(chat.page(2, None, 50)), (vec![], false));
    }

    #[test]
    fn history_bytes_are_counted_as_histories_change() {
        let mut chat = Chat::new();
        let now = Instant::now();
        let walk = |chat: &Chat| -> usize {
            chat.rooms
                .iter()
                .map(|(_, r)| r.history.iter().map(|k| k.frame.len()).sum::<usize>())
                .sum()
        };
        let a = chat.login(1, "a", [1; 16], now, 10).unwrap();
        chat.login(2, "b", [2; 16], now, 10).unwrap();
        let (one, two) = (
            chat.room_by_number(1).unwrap(),
            chat.room_by_number(2).unwrap(),
        );
        for i in 0..8 {
            chat.post(one, "a", &"x".repeat(i), 0, 5); // the ring drops the oldest
            chat.post(two, "b", "y", 0, 5);
        }
        assert!(chat.history_bytes() > 0);
        assert_eq!(chat.history_bytes(), walk(&chat));
        let kept = chat.number_message(two, "b", "restored", 0).unwrap();
        chat.restore_room(two, 9, vec![kept], 5);
        assert_eq!(chat.history_bytes(), walk(&chat));
        chat.expire(a, now, now);
        assert_eq!(chat.room_by_number(1), None, "room 1 went with its history");
        assert_eq!(chat.history_bytes(), walk(&chat));
    }

    #[test]
    fn tokens_round_trip() {
        let t = new_token().unwrap();
        assert_eq!(token_from_hex(&token_to_hex(&t)), Some(t));
        assert_eq!(token_from_hex("zz"), None);
    }

    #[test]
    fn only_the_canonical_token_form_is_accepted() {
        let canonical = "0123456789abcdef0123456789abcdef";
        assert!(token_from_hex(canonical).is_some());
        let refused = [
            "+f23456789abcdef0123456789abcdef".to_string(), // from_str_radix takes "+f"
            "0123456789abcdef0123456789abcde+".to_string(),
            canonical.to_uppercase(),
            "0123456789ABCDEF0123456789abcdef".to_string(),
            canonical[..31].to_string(),
            format!("{canonical}0"),
            format!("{}é", &canonical[..30]), // 32 bytes, not ASCII
            format!("{}٣", &canonical[..30]), // an Arabic-Indic digit
            " 123456789abcdef0123456789abcdef".to_string(),
            String::new(),
        ];
        for text in refused {
            assert_eq!(token_from_hex(&text), None, "{text:?}");
        }
    }
}

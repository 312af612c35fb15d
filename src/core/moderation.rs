//! The operator API's side of the core: carrying out what a request on the
//! `--admin-bind` listener asks for ([`crate::admin`] parses it), with the
//! chat state and the connections in hand. Part of the core's `impl Core`.
//!
//! - Listing the rooms reads the chat state: the rooms in memory (a room
//!   whose messages are only in the data file, with nobody holding a
//!   session there, is not listed).
//! - Removing an id closes its socket with `4001` (in the turn's order, so
//!   the others see its `leave` in this turn), ends its session as a
//!   log-out does (recorded in the turn's commit: the cookie no longer
//!   works, the id is free), and bars the id's look-alike keys and its
//!   socket's client address from the room.
//! - Deleting a message is the operator's delete (`Core::delete_as_operator`):
//!   a `delete` event with `"by":null` to the room, in the turn's order.
//! - Barring an address closes every WebSocket open from it with `4001`;
//!   their sessions stay (holding their ids) but cannot open a socket
//!   again until the bar ends.
//!
//! Every action is logged at info, peer text escaped.

use std::net::IpAddr;

use serde::Serialize;

use super::Core;
use super::http::Reply;
use crate::admin::bars::Full;
use crate::admin::{self, Action, RoomInfo};
use crate::chat::edits::Refusal;
use crate::chat::names::IdKeys;
use crate::conn::{ConnId, Via};
use crate::http::Status;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::routes;
use crate::logsafe::Escaped;
use crate::store::StoredBar;
use crate::ws::close::{self, CloseReason};

/// The close a removed or barred user's socket gets.
const REMOVED: CloseReason = CloseReason::new(close::REMOVED, "removed by the operator");

/// The answer to a removal.
#[derive(Serialize)]
struct Removed<'a> {
    room: u32,
    /// The id as its owner typed it.
    user: &'a str,
    /// The address barred with it (`null`: the id had no socket open).
    address: Option<IpAddr>,
    minutes: u32,
}

/// The answer to a bar.
#[derive(Serialize)]
struct BarredAddress {
    address: IpAddr,
    minutes: u32,
    /// WebSockets from that address closed now.
    closed: usize,
}

/// When an action's answer goes out.
enum Answer {
    /// Now: the action changed nothing the data file keeps.
    Now(Response),
    /// After the turn's commit, which holds what the action changed (see
    /// `HeldAnswer`): `done` if it worked, else `lost`.
    AfterCommit {
        done: Response,
        lost: Response,
        /// A delete's room.
        room: Option<u32>,
    },
}

impl Core {
    /// Answers a request that came in on the admin listener.
    pub(super) fn admin_request(&mut self, id: ConnId, req: &Request, body: &[u8], reply: Reply) {
        self.metrics.http_requests += 1;
        let Some(peer) = self.conns.get(id).map(|c| c.peer()) else {
            return;
        };
        let answer = match admin::parse(req, body) {
            Ok(action) => self.admin_action(action, peer.ip()),
            Err(refused) => {
                log::info!(
                    "admin {peer}: {} {} refused: {}",
                    Escaped(req.method),
                    Escaped(req.path),
                    refused.status.code()
                );
                Answer::Now(refused)
            }
        };
        match answer {
            Answer::Now(response) => self.respond(id, response, reply),
            Answer::AfterCommit { done, lost, room } => {
                self.hold_answer(id, done, Some(lost), room, reply)
            }
        }
    }

    /// Carries out one checked action; `by` is who asked (for the log).
    fn admin_action(&mut self, action: Action, by: IpAddr) -> Answer {
        match action {
            Action::Health => Answer::Now(routes::health(self.degraded())),
            Action::ListRooms => {
                let rooms = self.room_list();
                log::info!("admin {by}: listed {} rooms", rooms.len());
                Answer::Now(admin::json(Status::Ok, &rooms))
            }
            Action::Remove {
                room,
                user,
                minutes,
            } => self.remove_user(room, &user, minutes, by),
            Action::Bar { address, minutes } => self.bar_address(address, minutes, by),
            Action::DeleteMessage { room, seq } => self.delete_message(room, seq, by),
        }
    }

    /// The rooms in memory, by number (not one that only waits for its
    /// last events to go out before it leaves memory: nobody is in it).
    fn room_list(&self) -> Vec<RoomInfo> {
        let mut rooms: Vec<RoomInfo> = self
            .chat
            .rooms
            .iter()
            .filter(|(_, r)| !r.names.is_empty())
            .map(|(_, r)| {
                let mut users: Vec<String> = r
                    .names
                    .values()
                    .map(|&s| self.chat.user(s).to_string())
                    .collect();
                users.sort();
                RoomInfo {
                    room: r.number,
                    users,
                    sockets: r.members.len(),
                    last_seq: r.last_seq,
                }
            })
            .collect();
        rooms.sort_by_key(|r| r.room);
        rooms
    }

    /// `POST /admin/rooms/{room}/remove`: `404` unless an id that looks
    /// like `user` holds a session in the room.
    fn remove_user(&mut self, room: u32, user: &str, minutes: u32, by: IpAddr) -> Answer {
        let owner = self
            .chat
            .room_by_number(room)
            .and_then(|r| self.chat.rooms.get(r))
            .and_then(|r| r.owner_of(&IdKeys::of(user)));
        let found = owner.and_then(|s| self.chat.sessions.get(s).map(|x| (s, x.socket)));
        let Some((session, socket)) = found else {
            log::info!(
                "admin {by}: remove \"{}\" from room {room}: no such id there",
                Escaped(user)
            );
            return Answer::Now(admin::error(Status::NotFound, "no such id in this room"));
        };
        let present = self.chat.user(session).to_string();
        let address = socket
            .and_then(|c| self.conns.get(c))
            .map(|c| c.peer().ip());
        self.bars.forget_ended(self.now);
        let keys = IdKeys::of(&present);
        let Ok(held) = self
            .bars
            .bar_in_room(room, keys, address, minutes, self.now)
        else {
            return Answer::Now(bars_full(by));
        };
        // The bar as it now stands (an earlier one's address kept), so
        // that the row alone says what a restart must put back.
        self.keep_bar(Some(room), Some(&present), held, minutes);
        if let Some(socket) = socket {
            self.close_ws(socket, REMOVED);
        }
        self.log_out(session);
        log::info!(
            "admin {by}: removed \"{}\" from room {room}; the id and address {} barred there for {minutes} min",
            Escaped(&present),
            address.map_or("(none: no socket)".to_string(), |a| a.to_string())
        );
        Answer::AfterCommit {
            done: admin::json(
                Status::Ok,
                &Removed {
                    room,
                    user: &present,
                    address,
                    minutes,
                },
            ),
            lost: not_written(
                "removed and barred, but the data file could not be written yet: \
                 it is written with the next commit that works, and a restart \
                 before then undoes it",
            ),
            room: None,
        }
    }

    /// Puts back the bars a data file kept, in the order they were set,
    /// ended ones too: a bar set again ends when it said last, even when
    /// that is before an earlier row's end (a bar shortened). Then forgets
    /// those that have ended by `now_ms`; returns how many are running.
    pub(super) fn restore_bars(&mut self, bars: &[StoredBar], now_ms: u64) -> usize {
        for bar in bars {
            let left = std::time::Duration::from_millis(bar.until.saturating_sub(now_ms));
            let until = self.now + left;
            let restored = match (bar.room, bar.address) {
                (Some(room), address) => {
                    let keys = IdKeys::of(bar.user.as_deref().unwrap_or(""));
                    self.bars
                        .bar_in_room_until(room, keys, address, until, self.now)
                        .map(|_| ())
                }
                (None, Some(address)) => self
                    .bars
                    .bar_address_until(address, until, self.now)
                    .map(|_| ()),
                (None, None) => continue, // bars nothing (a row edited by hand)
            };
            if restored == Err(Full) {
                log::warn!(
                    "data file: more bars than {} running; the rest not restored",
                    crate::admin::bars::MAX_BARS
                );
                break;
            }
        }
        self.bars.forget_ended(self.now);
        self.bars.len()
    }

    /// With a data file, records a bar just set, so that a restart keeps
    /// it until it ends (see `use_store`).
    fn keep_bar(
        &mut self,
        room: Option<u32>,
        user: Option<&str>,
        address: Option<IpAddr>,
        minutes: u32,
    ) {
        let until = self.unix_millis() + u64::from(minutes) * 60_000;
        self.journal.record_bar(StoredBar {
            room,
            user: user.map(str::to_string),
            address: address.map(|a| a.to_canonical()),
            until,
        });
    }

    /// `POST /admin/bar`: bars the address and closes its WebSockets.
    fn bar_address(&mut self, address: IpAddr, minutes: u32, by: IpAddr) -> Answer {
        self.bars.forget_ended(self.now);
        if self.bars.bar_address(address, minutes, self.now) == Err(Full) {
            return Answer::Now(bars_full(by));
        }
        let address = address.to_canonical();
        self.keep_bar(None, None, Some(address), minutes);
        let open: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.via == Via::Main && c.machine.is_open_websocket())
            .filter(|(_, c)| c.peer().ip().to_canonical() == address)
            .map(|(id, _)| id)
            .collect();
        for &id in &open {
            self.close_ws(id, REMOVED);
        }
        log::info!(
            "admin {by}: barred {address} from every login and socket for {minutes} min; {} sockets closed",
            open.len()
        );
        Answer::AfterCommit {
            done: admin::json(
                Status::Ok,
                &BarredAddress {
                    address,
                    minutes,
                    closed: open.len(),
                },
            ),
            lost: not_written(
                "barred, but the data file could not be written yet: it is \
                 written with the next commit that works, and a restart before \
                 then lifts the bar",
            ),
            room: None,
        }
    }

    /// `POST /admin/rooms/{room}/messages/{seq}/delete`: everyone in the
    /// room gets a `delete` event with `"by":null` (`Core::delete_as_operator`);
    /// `404` when the room keeps no such message (with a data file, a room
    /// nobody is in is read back from it for the delete); `200`
    /// with `"already":true` when it is deleted already.
    fn delete_message(&mut self, room: u32, seq: u64, by: IpAddr) -> Answer {
        let already = match self.delete_as_operator(room, seq) {
            Ok(()) => false,
            Err(Refusal::Deleted) => true,
            Err(why) => {
                log::info!(
                    "admin {by}: delete message {seq} of room {room}: {}",
                    why.reason()
                );
                return Answer::Now(admin::error(
                    Status::NotFound,
                    "no such message in this room",
                ));
            }
        };
        log::info!(
            "admin {by}: deleted message {seq} of room {room}{}",
            if already { " (deleted already)" } else { "" }
        );
        let done = admin::json(Status::Ok, &DeletedMessage { room, seq, already });
        // Deleted already, and written: nothing waits. (A delete still
        // waiting for the commit is only as done as that one.)
        let waits = self
            .chat
            .room_by_number(room)
            .is_some_and(|r| self.delete_waits(r, seq));
        if already && !waits {
            return Answer::Now(done);
        }
        Answer::AfterCommit {
            done,
            lost: not_written(
                "the data file could not be written: the message was not deleted; try again",
            ),
            room: Some(room),
        }
    }
}

/// `503`: what an action did could not be written to the data file.
fn not_written(what: &str) -> Response {
    admin::error(Status::ServiceUnavailable, what)
}

/// The answer to a message delete.
#[derive(Serialize)]
struct DeletedMessage {
    room: u32,
    seq: u64,
    /// It was deleted already: nothing was sent.
    already: bool,
}

/// `503`: [`crate::admin::bars::MAX_BARS`] bars are running.
fn bars_full(by: IpAddr) -> Response {
    log::warn!("admin {by}: refused: the table of bars is full of running bars");
    admin::error(
        Status::ServiceUnavailable,
        "too many bars are running; wait for some to end",
    )
}

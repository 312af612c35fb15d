//! A virtual user: logs in over HTTP, opens its room's WebSocket (with
//! `since` when it comes back), answers pings, sends chat messages, and
//! reads what the server sends, as the room page does. It parses the
//! server's bytes itself (HTTP heads, unmasked frames, the JSON events) and
//! reports every message it sees to the caller, which checks them.

use std::net::SocketAddr;

use wsrooms::ws::frame::encode_client_frame;

/// Where the user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No session (or it was refused): logs in when it acts.
    Out,
    /// `POST /login` sent on this pipe.
    LoggingIn(usize),
    /// A session cookie, no socket.
    In,
    /// The upgrade request sent on this pipe.
    Opening(usize),
    /// The room socket is open on this pipe.
    Open(usize),
}

/// What a client saw that the checker must know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A `message` event (live, or from a welcome's history; `changed`:
    /// the history shows it edited or deleted, so `text` is not the one
    /// it was sent with).
    Message {
        seq: u64,
        user: String,
        text: String,
        changed: bool,
    },
    /// An `edit` or `delete` event of message `target` (`by`: who deleted).
    Change {
        seq: u64,
        target: u64,
        delete: bool,
        by: Option<String>,
    },
    /// A welcome: its user list and whether it says messages were missed.
    Welcome { users: Vec<String>, gap: bool },
    /// A `join` or `leave` of this user; `listed`: the client counted the
    /// user as in the room before it (from the welcome and the events
    /// since).
    Presence {
        join: bool,
        user: String,
        listed: bool,
    },
    /// A close frame from the server.
    Close(u16),
}

/// One virtual user.
#[derive(Debug)]
pub struct Client {
    pub user: String,
    pub room: u32,
    pub peer: SocketAddr,
    pub cookie: Option<String>,
    pub phase: Phase,
    /// The newest `seq` seen in its room (for `since`).
    pub last_seq: Option<u64>,
    /// The `seq` it must see next (`None`: any; after a welcome's gap, or
    /// before its first message).
    pub expected: Option<u64>,
    /// Who it believes is in the room (from the welcome, joins, leaves),
    /// sorted.
    pub roster: Vec<String>,
    /// Reads nothing until this turn.
    pub stalled_until: u64,
    /// Bytes it reads per turn (slow readers read few).
    pub read_rate: usize,
    /// Messages it sent.
    pub sent: u64,
    /// Bytes read and not parsed yet.
    buf: Vec<u8>,
    /// It sent its close frame on the open socket.
    closing: bool,
    /// The `Sec-WebSocket-Protocol` its upgrade offers (`None`: none).
    pub protocol: Option<&'static str>,
    /// When set, every event it reads is appended here as JSON (a
    /// welcome's history entries each on their own, after the welcome).
    pub log: Option<Vec<serde_json::Value>>,
    /// The `seq`s of its own last messages (at most 4), unchanged as far
    /// as it knows: what it may edit or delete.
    pub mine: Vec<u64>,
}

impl Client {
    pub fn new(n: usize, room: u32) -> Client {
        let ip = [10, (n >> 16) as u8, (n >> 8) as u8, n as u8];
        Client {
            user: format!("u{n}"),
            room,
            peer: SocketAddr::from((ip, 40_000)),
            cookie: None,
            phase: Phase::Out,
            last_seq: None,
            expected: None,
            roster: Vec::new(),
            stalled_until: 0,
            read_rate: usize::MAX,
            sent: 0,
            buf: Vec::new(),
            closing: false,
            protocol: None,
            log: None,
            mine: Vec::new(),
        }
    }

    /// The pipe it is using, if any.
    pub fn pipe(&self) -> Option<usize> {
        match self.phase {
            Phase::LoggingIn(p) | Phase::Opening(p) | Phase::Open(p) => Some(p),
            Phase::Out | Phase::In => None,
        }
    }

    /// The login request.
    pub fn login_request(&self) -> Vec<u8> {
        let body = format!("user={}&room={}", self.user, self.room);
        format!(
            "POST /login HTTP/1.1\r\nHost: sim\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// `POST /logout?room=N` with its cookie, as the room page's button
    /// sends it.
    pub fn logout_request(&self) -> Vec<u8> {
        format!(
            "POST /logout?room={} HTTP/1.1\r\nHost: sim\r\nOrigin: http://sim\r\nCookie: {}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.room,
            self.cookie.as_deref().unwrap_or("")
        )
        .into_bytes()
    }

    /// The upgrade request of its room socket, with `since` once it has
    /// seen a message.
    pub fn upgrade_request(&self) -> Vec<u8> {
        let since = self
            .last_seq
            .map(|s| format!("?since={s}"))
            .unwrap_or_default();
        format!(
            "GET /rooms/{}/ws{since} HTTP/1.1\r\nHost: sim\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Origin: http://sim\r\nCookie: {}\r\n{}\r\n",
            self.room,
            self.cookie.as_deref().unwrap_or(""),
            self.protocol
                .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
                .unwrap_or_default()
        )
        .into_bytes()
    }

    /// A chat message frame, numbered by the client (a `say` command
    /// when it speaks `wsrooms.v2`).
    pub fn chat_frame(&mut self) -> Vec<u8> {
        self.sent += 1;
        let text = format!("{}.{}", self.user, self.sent);
        match self.protocol {
            Some(_) => {
                let say = format!(r#"{{"type":"say","text":"{text}"}}"#);
                encode_client_frame(true, 1, [7, 1, 3, 5], say.as_bytes())
            }
            None => encode_client_frame(true, 1, [7, 1, 3, 5], text.as_bytes()),
        }
    }

    /// An edit (or, with `delete`, a delete) of one of its own messages,
    /// picked by `pick`; `None` if it speaks no `wsrooms.v2` or knows no
    /// message of its own.
    pub fn change_frame(&mut self, pick: u64, delete: bool) -> Option<Vec<u8>> {
        self.protocol?;
        let i = (pick % self.mine.len().max(1) as u64) as usize;
        let seq = *self.mine.get(i)?;
        let command = match delete {
            true => {
                self.mine.remove(i);
                format!(r#"{{"type":"delete","seq":{seq}}}"#)
            }
            false => format!(
                r#"{{"type":"edit","seq":{seq},"text":"{}.e{pick}"}}"#,
                self.user
            ),
        };
        Some(encode_client_frame(
            true,
            1,
            [7, 1, 3, 5],
            command.as_bytes(),
        ))
    }

    /// A `typing` notice, if it speaks `wsrooms.v2`.
    pub fn typing_frame(&self) -> Option<Vec<u8>> {
        self.protocol?;
        Some(encode_client_frame(
            true,
            1,
            [7, 1, 3, 5],
            br#"{"type":"typing"}"#,
        ))
    }

    /// Bytes the client read from its pipe: what it learns from them.
    /// `done`: the pipe will bring nothing more. Returns the bytes to send
    /// back (pongs, a close answer) and what it saw.
    pub fn on_bytes(&mut self, bytes: &[u8], done: bool) -> (Vec<u8>, Vec<Seen>) {
        self.buf.extend_from_slice(bytes);
        let mut reply = Vec::new();
        let mut seen = Vec::new();
        loop {
            let progressed = match self.phase {
                Phase::LoggingIn(_) => self.on_login_answer(),
                Phase::Opening(p) => self.on_upgrade_answer(p),
                Phase::Open(_) => self.on_frame(&mut reply, &mut seen),
                Phase::Out | Phase::In => false,
            };
            if !progressed {
                break;
            }
        }
        if done && self.pipe().is_some() {
            // The connection ended (closed, reset, answered and done).
            self.buf.clear();
            self.closing = false;
            self.phase = match self.cookie {
                Some(_) => Phase::In,
                None => Phase::Out,
            };
        }
        (reply, seen)
    }

    fn on_login_answer(&mut self) -> bool {
        let Some((status, head, len)) = http_response(&self.buf) else {
            return false;
        };
        if status == 303 {
            self.cookie = head
                .lines()
                .find_map(|l| l.strip_prefix("Set-Cookie: "))
                .and_then(|c| c.split(';').next())
                .map(String::from);
        }
        self.buf.drain(..len);
        self.phase = match self.cookie {
            Some(_) => Phase::In,
            None => Phase::Out,
        };
        true
    }

    fn on_upgrade_answer(&mut self, pipe: usize) -> bool {
        let Some((status, _, len)) = http_response(&self.buf) else {
            return false;
        };
        self.buf.drain(..len);
        match status {
            101 => self.phase = Phase::Open(pipe),
            403 => {
                // The session is gone (lapsed, or lost): log in again.
                self.cookie = None;
                self.phase = Phase::Out;
            }
            _ => self.phase = Phase::In,
        }
        true
    }

    fn on_frame(&mut self, reply: &mut Vec<u8>, seen: &mut Vec<Seen>) -> bool {
        let Some((opcode, payload, len)) = server_frame(&self.buf) else {
            return false;
        };
        self.buf.drain(..len);
        match opcode {
            1 => self.on_event(&payload, seen),
            9 => reply.extend(encode_client_frame(true, 10, [1, 2, 3, 4], &payload)),
            8 => {
                let code = match payload.len() {
                    0 | 1 => 1005,
                    _ => u16::from_be_bytes([payload[0], payload[1]]),
                };
                seen.push(Seen::Close(code));
                if !self.closing {
                    self.closing = true;
                    reply.extend(encode_client_frame(
                        true,
                        8,
                        [1, 2, 3, 4],
                        &payload[..payload.len().min(2)],
                    ));
                }
            }
            _ => {}
        }
        true
    }

    fn on_event(&mut self, payload: &[u8], seen: &mut Vec<Seen>) {
        // The common case, read without a JSON parser (the simulation's
        // texts and ids need no escapes): a debug build spends its time here.
        if let Some(log) = &mut self.log {
            let v: serde_json::Value = serde_json::from_slice(payload).expect("an event is JSON");
            if let Some(history) = v["history"].as_array() {
                let mut welcome = v.clone();
                welcome["history"] = serde_json::json!([]);
                log.push(welcome);
                log.extend(history.iter().cloned());
            } else {
                log.push(v);
            }
        }
        if let Some((seq, user, text)) = plain_message(payload) {
            self.last_seq = Some(seq);
            self.remember(seq, &user, false);
            return seen.push(Seen::Message {
                seq,
                user,
                text,
                changed: false,
            });
        }
        let v: serde_json::Value = serde_json::from_slice(payload).expect("an event is JSON");
        let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
        match v["type"].as_str() {
            Some("welcome") => {
                let users: Vec<String> = v["users"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|u| u.as_str().map(String::from))
                    .collect();
                self.roster = users.clone();
                self.roster.sort();
                self.roster.dedup();
                seen.push(Seen::Welcome {
                    users,
                    gap: v["gap"].as_bool() == Some(true),
                });
                for m in v["history"].as_array().into_iter().flatten() {
                    match m["type"].as_str() {
                        Some("message") => self.on_message(m, seen),
                        _ => self.on_change(m, seen),
                    }
                }
            }
            Some("message") => self.on_message(&v, seen),
            Some("edit" | "delete") => self.on_change(&v, seen),
            Some(kind @ ("join" | "leave")) => {
                let user = text(&v, "user");
                // (Kept sorted, as a set.)
                let found = self.roster.binary_search(&user);
                match (kind, found) {
                    ("join", Err(i)) => self.roster.insert(i, user.clone()),
                    ("leave", Ok(i)) => drop(self.roster.remove(i)),
                    _ => {}
                }
                seen.push(Seen::Presence {
                    join: kind == "join",
                    user,
                    listed: found.is_ok(),
                });
            }
            _ => {}
        }
    }

    fn on_message(&mut self, m: &serde_json::Value, seen: &mut Vec<Seen>) {
        let seq = m["seq"].as_u64().expect("a message has a seq");
        let user = m["user"].as_str().unwrap_or_default().to_string();
        let changed = m.get("edited").is_some() || m["deleted"] == true;
        self.remember(seq, &user, changed);
        seen.push(Seen::Message {
            seq,
            user,
            text: m["text"].as_str().unwrap_or_default().to_string(),
            changed,
        });
        self.last_seq = Some(seq);
    }

    /// An `edit` or `delete` (live or in a history).
    fn on_change(&mut self, e: &serde_json::Value, seen: &mut Vec<Seen>) {
        let seq = e["seq"].as_u64().expect("a change has a seq");
        let target = e["target"].as_u64().expect("a change has a target");
        let delete = e["type"] == "delete";
        if delete {
            self.mine.retain(|&s| s != target);
        }
        seen.push(Seen::Change {
            seq,
            target,
            delete,
            by: e["by"].as_str().map(String::from),
        });
        self.last_seq = Some(seq);
    }

    /// One of its own messages, unchanged: it may change it later.
    fn remember(&mut self, seq: u64, user: &str, changed: bool) {
        if user == self.user && !changed && !self.mine.contains(&seq) {
            self.mine.push(seq);
            if self.mine.len() > 4 {
                self.mine.remove(0);
            }
        }
    }

    /// Starts our close handshake (the server answers, then closes).
    pub fn close_frame(&mut self) -> Vec<u8> {
        self.closing = true;
        encode_client_frame(true, 8, [9, 9, 9, 9], &1000u16.to_be_bytes())
    }

    /// Forgets a room whose incarnation ended (no data file: the room was
    /// freed, and its numbering starts again).
    pub fn forget_room(&mut self) {
        self.last_seq = None;
        self.expected = None;
        self.mine.clear();
    }

    /// It has parsed everything it read.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty()
    }
}

/// A `message` event whose strings hold no escape: its seq, user, text.
fn plain_message(payload: &[u8]) -> Option<(u64, String, String)> {
    let text = std::str::from_utf8(payload).ok()?;
    let rest = text.strip_prefix("{\"type\":\"message\",\"user\":\"")?;
    let (user, rest) = rest.split_once("\",\"text\":\"")?;
    let (said, rest) = rest.split_once("\",\"at\":")?;
    let (_, seq) = rest.split_once(",\"seq\":")?;
    let seq = seq.strip_suffix('}')?.parse().ok()?;
    if user.contains('\\') || said.contains('\\') {
        return None;
    }
    Some((seq, user.to_string(), said.to_string()))
}

/// A complete HTTP response at the front of `buf`: status, head, length.
fn http_response(buf: &[u8]) -> Option<(u16, String, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let length = if status == 101 { 0 } else { length };
    (buf.len() >= end + length).then_some((status, head, end + length))
}

/// A complete server frame at the front of `buf`: opcode, payload, length.
fn server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    assert_eq!(b1 & 0x80, 0, "a server frame is never masked");
    let (len, at) = match b1 & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    Some((b0 & 0x0f, payload, at + len))
}

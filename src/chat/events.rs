//! The JSON events the server sends to room sockets, encoded straight into bytes.
//! Strings go through `serde_json` so every quote and control character is
//! escaped; numbers are written as they are.

use std::io::Write;

/// Appends `s` as a JSON string literal.
fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// `{"type":"message","user":…,"text":…,"at":…,"seq":…}`
pub fn message(out: &mut Vec<u8>, user: &str, text: &str, at: u64, seq: u64) {
    out.extend_from_slice(b"{\"type\":\"message\",\"user\":");
    push_str(out, user);
    out.extend_from_slice(b",\"text\":");
    push_str(out, text);
    let _ = write!(out, ",\"at\":{at},\"seq\":{seq}}}");
}

/// `{"type":"join","user":…,"at":…}` or `leave`.
pub fn presence(out: &mut Vec<u8>, kind: &str, user: &str, at: u64) {
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"user\":");
    push_str(out, user);
    let _ = write!(out, ",\"at\":{at}}}");
}

/// `{"messages":[…],"more":…}`: one page of scrollback (`messages` are
/// already-encoded `message` events, oldest first).
pub fn history_page<'a>(out: &mut Vec<u8>, messages: impl Iterator<Item = &'a [u8]>, more: bool) {
    out.extend_from_slice(b"{\"messages\":[");
    for (i, event) in messages.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(event);
    }
    let _ = write!(out, "],\"more\":{more}}}");
}

/// What a `welcome` event says.
pub struct Welcome<'a, U, H> {
    /// The room number.
    pub room: u32,
    /// The id of the receiving socket's user, as typed.
    pub user: &'a str,
    /// The ids of everyone in the room with an open socket, this user included.
    pub users: U,
    /// The longest chat text in code points (`--max-chat-chars`), for the page's input.
    pub max_chars: usize,
    /// The most lines of one chat text (`--max-chat-lines`), for the page's input.
    pub max_lines: usize,
    /// Already-encoded `message` events, oldest first.
    pub history: H,
    /// True when messages the client asked for (`since`) are no longer kept.
    pub gap: bool,
    /// The epoch of the room's numbering (written as 16 hex digits in a
    /// string: a JavaScript number would lose its low bits).
    pub epoch: u64,
}

/// `{"type":"welcome","room":…,"user":…,"users":[…],"maxChars":…,"maxLines":…,"history":[…],"gap":…,"epoch":"…"}`
pub fn welcome<'a, U, H>(out: &mut Vec<u8>, w: Welcome<'a, U, H>)
where
    U: Iterator<Item = &'a str>,
    H: Iterator<Item = &'a [u8]>,
{
    let _ = write!(out, "{{\"type\":\"welcome\",\"room\":{},\"user\":", w.room);
    push_str(out, w.user);
    out.extend_from_slice(b",\"users\":[");
    for (i, user) in w.users.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, user);
    }
    let _ = write!(
        out,
        "],\"maxChars\":{},\"maxLines\":{},\"history\":[",
        w.max_chars, w.max_lines
    );
    for (i, event) in w.history.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(event);
    }
    let _ = write!(out, "],\"gap\":{},\"epoch\":\"{:016x}\"}}", w.gap, w.epoch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_valid_json() {
        let mut m = Vec::new();
        message(&mut m, "al\"ice", "<b>hi</b>\n", 5, 17);
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        assert_eq!(v["text"], "<b>hi</b>\n");
        assert_eq!(v["user"], "al\"ice");
        assert_eq!(v["seq"], 17);
        let mut p = Vec::new();
        presence(&mut p, "join", "bob", 9);
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["type"], "join");
        let mut w = Vec::new();
        welcome(
            &mut w,
            Welcome {
                room: 5,
                user: "bob",
                users: ["alice", "bob"].into_iter(),
                max_chars: 50,
                max_lines: 40,
                history: [&m[..], &m[..]].into_iter(),
                gap: true,
                epoch: 0x00ab_cdef_0123_4567,
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&w).unwrap();
        assert_eq!(v["epoch"], "00abcdef01234567");
        assert_eq!(v["users"][1], "bob");
        assert_eq!(v["history"][1]["seq"], 17);
        assert_eq!(v["gap"], true);
        let mut h = Vec::new();
        history_page(&mut h, [&m[..]].into_iter(), false);
        let v: serde_json::Value = serde_json::from_slice(&h).unwrap();
        assert_eq!(v["messages"][0]["seq"], 17);
        assert_eq!(v["more"], false);
    }
}

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

/// A message as history and scrollback show it now: its current text and
/// `"edited":AT` once edited, or, once deleted, a tombstone without text:
/// `{"type":"message","user":…,"at":…,"seq":…,"deleted":true}`.
pub fn message_now(out: &mut Vec<u8>, m: MessageNow<'_>) {
    let Some(text) = m.text else {
        out.extend_from_slice(b"{\"type\":\"message\",\"user\":");
        push_str(out, m.user);
        let _ = write!(out, ",\"at\":{},\"seq\":{},\"deleted\":true}}", m.at, m.seq);
        return;
    };
    message(out, m.user, text, m.at, m.seq);
    if let Some(edited) = m.edited {
        out.pop(); // the closing brace
        let _ = write!(out, ",\"edited\":{edited}}}");
    }
}

/// What [`message_now`] writes.
#[derive(Debug, Clone, Copy)]
pub struct MessageNow<'a> {
    /// The sender's id.
    pub user: &'a str,
    /// Its current text; `None` once deleted.
    pub text: Option<&'a str>,
    /// When it was sent (Unix ms).
    pub at: u64,
    /// Its number in the room.
    pub seq: u64,
    /// When it was last edited, if it was.
    pub edited: Option<u64>,
}

/// `{"type":"edit","seq":…,"target":…,"text":…,"at":…}`
pub fn edit(out: &mut Vec<u8>, seq: u64, target: u64, text: &str, at: u64) {
    let _ = write!(
        out,
        "{{\"type\":\"edit\",\"seq\":{seq},\"target\":{target},\"text\":"
    );
    push_str(out, text);
    let _ = write!(out, ",\"at\":{at}}}");
}

/// `{"type":"delete","seq":…,"target":…,"by":…,"at":…}` (`by` is `null`
/// for the operator).
pub fn delete(out: &mut Vec<u8>, seq: u64, target: u64, by: Option<&str>, at: u64) {
    let _ = write!(
        out,
        "{{\"type\":\"delete\",\"seq\":{seq},\"target\":{target},\"by\":"
    );
    match by {
        Some(user) => push_str(out, user),
        None => out.extend_from_slice(b"null"),
    }
    let _ = write!(out, ",\"at\":{at}}}");
}

/// `{"type":"typing","user":…}`
pub fn typing(out: &mut Vec<u8>, user: &str) {
    out.extend_from_slice(b"{\"type\":\"typing\",\"user\":");
    push_str(out, user);
    out.push(b'}');
}

/// `{"type":"error","reason":…}`: a refused command, to its sender only.
pub fn error(out: &mut Vec<u8>, reason: &str) {
    out.extend_from_slice(b"{\"type\":\"error\",\"reason\":");
    push_str(out, reason);
    out.push(b'}');
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
    /// How long after its `at` a message may be edited or deleted by its
    /// sender, in seconds (`--edit-window-secs`; 0: never), for the page's
    /// buttons.
    pub edit_window_secs: u64,
    /// Already-encoded `message` events, oldest first.
    pub history: H,
    /// True when messages the client asked for (`since`) are no longer kept.
    pub gap: bool,
    /// The epoch of the room's numbering (written as 16 hex digits in a
    /// string: a JavaScript number would lose its low bits).
    pub epoch: u64,
}

/// `{"type":"welcome","room":…,"user":…,"users":[…],"maxChars":…,"maxLines":…,"editWindowSecs":…,"history":[…],"gap":…,"epoch":"…"}`
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
        "],\"maxChars\":{},\"maxLines\":{},\"editWindowSecs\":{},\"history\":[",
        w.max_chars, w.max_lines, w.edit_window_secs
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
                edit_window_secs: 900,
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

    #[test]
    fn edits_deletes_and_states_are_valid_json() {
        let json = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            f(&mut out);
            serde_json::from_slice::<serde_json::Value>(&out).unwrap()
        };
        let now = |text, edited| {
            move |o: &mut Vec<u8>| {
                message_now(
                    o,
                    MessageNow {
                        user: "a\"b",
                        text,
                        at: 5,
                        seq: 9,
                        edited,
                    },
                )
            }
        };
        let v = json(&now(Some("x\"y"), Some(7)));
        assert_eq!(
            (v["text"].as_str(), v["edited"].as_u64()),
            (Some("x\"y"), Some(7))
        );
        let v = json(&now(Some("x"), None));
        assert!(v.get("edited").is_none());
        let v = json(&now(None, Some(7)));
        assert_eq!(v["deleted"], true);
        assert!(v.get("text").is_none() && v.get("edited").is_none());
        assert_eq!(
            (v["seq"].as_u64(), v["user"].as_str()),
            (Some(9), Some("a\"b"))
        );
        let v = json(&|o| edit(o, 10, 9, "new\n", 11));
        assert_eq!(
            (v["type"].as_str(), v["target"].as_u64()),
            (Some("edit"), Some(9))
        );
        let v = json(&|o| delete(o, 11, 9, None, 12));
        assert!(v["by"].is_null());
        let v = json(&|o| delete(o, 11, 9, Some("al"), 12));
        assert_eq!(v["by"], "al");
        assert_eq!(json(&|o| typing(o, "bo\"b"))["user"], "bo\"b");
        assert_eq!(json(&|o| error(o, "not yours"))["reason"], "not yours");
    }
}

//! What a room socket's client may ask, and the two ways it can say it:
//! the text protocol (no subprotocol: every text frame is a chat message)
//! and the `wsrooms.v2` subprotocol (every text frame is one JSON
//! command). Pure: bytes in, a typed [`Command`] or [`BadCommand`] out.
//!
//! The `wsrooms.v2` grammar is strict. A frame is exactly one JSON object
//! with a `"type"` of `say`, `edit`, `delete` or `typing` and exactly the
//! fields of that type, each of its JSON type (`text`: a string, `seq`: a
//! whole number ≥ 0). Anything else is a [`BadCommand`] (close `1008`
//! `bad command`): not JSON, not an object, an unknown type, a field
//! missing, of another type, repeated, or one the type does not have.
//! The frame is already bounded by `--max-message-bytes` when it gets here.

use serde::Deserialize;

use crate::ws::close::{self, CloseReason};

/// The subprotocol token a client offers for the JSON commands.
pub const V2: &str = "wsrooms.v2";

/// How a room socket's client speaks: chosen once, at the handshake. One
/// byte in the connection's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// No subprotocol: every text frame is a `say` of its whole text.
    #[default]
    Text,
    /// `wsrooms.v2`: every text frame is one JSON [`Command`].
    V2,
}

/// One thing a client asks of its room.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Command {
    /// A chat message.
    Say {
        /// Its text, as typed (cut and normalised by the server).
        text: String,
    },
    /// New text for one of the sender's own messages.
    Edit {
        /// The message's `seq`.
        seq: u64,
        /// Its new text (cut and normalised like a `say`).
        text: String,
    },
    /// Delete one of the sender's own messages.
    Delete {
        /// The message's `seq`.
        seq: u64,
    },
    /// The sender is typing (sent on to the others, at most once per 3 s).
    Typing {},
}

/// A `wsrooms.v2` frame that is not a command: close `1008` `bad command`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadCommand;

impl BadCommand {
    /// The close it becomes: `1008 bad command`.
    pub fn close_reason(self) -> CloseReason {
        CloseReason::new(close::POLICY, "bad command")
    }
}

/// Reads one text frame's payload as `dialect` says.
pub fn parse(dialect: Dialect, payload: Vec<u8>) -> Result<Command, BadCommand> {
    match dialect {
        Dialect::Text => match String::from_utf8(payload) {
            Ok(text) => Ok(Command::Say { text }),
            Err(_) => Err(BadCommand), // the frame reader checked UTF-8 already
        },
        Dialect::V2 => {
            // serde's derived reading of a tagged enum also takes an array
            // (`["say","hi"]`): only an object is a command.
            if payload.trim_ascii_start().first() != Some(&b'{') {
                return Err(BadCommand);
            }
            serde_json::from_slice(&payload).map_err(|_| BadCommand)
        }
    }
}

/// The dialect a room socket's handshake chose: `wsrooms.v2` if it is
/// among the offered subprotocol tokens (each header value a comma list).
pub fn choose<'a>(offered: impl IntoIterator<Item = &'a [u8]>) -> Dialect {
    let v2 = offered.into_iter().any(|value| {
        value
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii() == V2.as_bytes())
    });
    if v2 { Dialect::V2 } else { Dialect::Text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(json: &str) -> Result<Command, BadCommand> {
        parse(Dialect::V2, json.as_bytes().to_vec())
    }

    #[test]
    fn the_four_commands() {
        assert_eq!(
            v2(r#"{"type":"say","text":"hi"}"#),
            Ok(Command::Say { text: "hi".into() })
        );
        assert_eq!(
            v2(r#" {"text":"x\ny","seq":7,"type":"edit"} "#),
            Ok(Command::Edit {
                seq: 7,
                text: "x\ny".into()
            })
        );
        assert_eq!(
            v2(r#"{"type":"delete","seq":0}"#),
            Ok(Command::Delete { seq: 0 })
        );
        assert_eq!(v2(r#"{"type":"typing"}"#), Ok(Command::Typing {}));
    }

    #[test]
    fn everything_else_is_a_bad_command() {
        for bad in [
            "",
            "hi",
            "null",
            "[]",
            r#"["say","hi"]"#,
            r#"["typing"]"#,
            r#"["edit",1,"x"]"#,
            r#"["delete",1]"#,
            "\"say\"",
            "{}",
            r#"{"type":"shout","text":"x"}"#,
            r#"{"type":"SAY","text":"x"}"#,
            r#"{"type":"say"}"#,
            r#"{"type":"say","text":5}"#,
            r#"{"type":"say","text":"x","extra":1}"#,
            r#"{"type":"say","text":"x","text":"y"}"#,
            r#"{"type":"edit","text":"x"}"#,
            r#"{"type":"edit","seq":"3","text":"x"}"#,
            r#"{"type":"edit","seq":-1,"text":"x"}"#,
            r#"{"type":"edit","seq":1.5,"text":"x"}"#,
            r#"{"type":"delete","seq":null}"#,
            r#"{"type":"delete","seq":18446744073709551616}"#,
            r#"{"type":"typing","user":"bob"}"#,
            r#"{"type":"say","text":"x"} {"type":"typing"}"#,
            r#"{"type":"say","text":"x"}x"#,
        ] {
            assert_eq!(v2(bad), Err(BadCommand), "{bad:?}");
        }
    }

    #[test]
    fn the_text_protocol_says_the_whole_frame() {
        assert_eq!(
            parse(Dialect::Text, br#"{"type":"typing"}"#.to_vec()),
            Ok(Command::Say {
                text: r#"{"type":"typing"}"#.into()
            })
        );
    }

    #[test]
    fn v2_is_chosen_among_other_tokens() {
        assert_eq!(choose([&b"wsrooms.v2"[..]]), Dialect::V2);
        assert_eq!(choose([&b"chat, wsrooms.v2 "[..]]), Dialect::V2);
        assert_eq!(choose([&b"chat"[..], &b" wsrooms.v2"[..]]), Dialect::V2);
        assert_eq!(choose([&b"chat"[..]]), Dialect::Text);
        assert_eq!(choose([&b"wsrooms.v22, WSROOMS.V2"[..]]), Dialect::Text);
        assert_eq!(choose(std::iter::empty()), Dialect::Text);
    }
}

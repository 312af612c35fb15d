//! The `wsrooms.v2` command parser.
//!
//! Input: any bytes, as a text frame's payload. `command::parse` must never
//! panic. A command it accepts must be what a plain reading of the bytes
//! as a JSON value says: an object with exactly the fields of its `type`,
//! of their JSON types, with the same values; whatever that reading
//! refuses, the parser refuses too. (The parser may refuse more: a field
//! given twice.) Without the subprotocol any UTF-8 is a `say` of itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wsrooms::chat::command::{Command, Dialect, parse};

/// The command a JSON value is, read by hand.
fn by_hand(v: &Value) -> Option<Command> {
    let object = v.as_object()?;
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let text = || object.get("text")?.as_str().map(String::from);
    let seq = || object.get("seq")?.as_u64();
    match (object.get("type")?.as_str()?, keys.as_slice()) {
        ("say", ["text", "type"]) => Some(Command::Say { text: text()? }),
        ("edit", ["seq", "text", "type"]) => Some(Command::Edit {
            seq: seq()?,
            text: text()?,
        }),
        ("delete", ["seq", "type"]) => Some(Command::Delete { seq: seq()? }),
        ("typing", ["type"]) => Some(Command::Typing {}),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse(Dialect::V2, data.to_vec()).ok();
    let expected = serde_json::from_slice::<Value>(data)
        .ok()
        .and_then(|v| by_hand(&v));
    if let Some(command) = &parsed {
        assert_eq!(
            Some(command),
            expected.as_ref(),
            "accepted what a plain reading refuses"
        );
    }
    if expected.is_none() {
        assert_eq!(parsed, None);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let say = Command::Say { text: text.into() };
        assert_eq!(parse(Dialect::Text, data.to_vec()), Ok(say));
    }
});

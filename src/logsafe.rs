//! Text from a peer, made safe to write to the log.
//!
//! A path, a user id or a header value is chosen by whoever sent it. Written
//! raw, it could break a log line in two (a line or paragraph separator, NEL,
//! a bare CR), reorder what a reader sees (bidi controls such as U+202E), hide
//! text (zero-width characters) or drive a terminal (ESC). Every such string
//! goes through [`Escaped`] on its way to a `log::` call: those characters are
//! written as `\u{…}` escapes, a backslash as `\\`, a double quote as `\"`,
//! and a long value is cut with a marker saying how much was left out.

use std::fmt;

/// Bytes of a value written before it is cut.
pub const MAX_LOGGED_BYTES: usize = 256;

/// Displays a peer's string escaped and truncated:
/// `log::info!("path {}", Escaped(path))`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        for (at, c) in text.char_indices() {
            if at >= MAX_LOGGED_BYTES {
                return write!(f, "…[{} more bytes]", text.len() - at);
            }
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                c if must_escape(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

/// Characters a log line must not hold raw: C0 and C1 controls (NEL
/// included), DEL, line and paragraph separators, bidi controls, and
/// invisible formatting characters.
pub fn must_escape(c: char) -> bool {
    c.is_control() // C0, DEL, C1 (U+0085 NEL among them)
        || matches!(
            c,
            '\u{00ad}'                    // soft hyphen
            | '\u{061c}'                  // Arabic letter mark
            | '\u{180e}'                  // Mongolian vowel separator
            | '\u{200b}'..='\u{200f}'     // zero-width characters, LRM, RLM
            | '\u{2028}' | '\u{2029}'     // line and paragraph separators
            | '\u{202a}'..='\u{202e}'     // bidi embeddings and overrides
            | '\u{2060}'..='\u{206f}'     // word joiner, bidi isolates, …
            | '\u{feff}'                  // zero-width no-break space (BOM)
            | '\u{fff9}'..='\u{fffb}' // interlinear annotation
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        Escaped(s).to_string()
    }

    #[test]
    fn plain_text_of_any_script_is_kept() {
        for s in [
            "/rooms/12/ws",
            "alice",
            "कृष्ण",
            "ខ្មែរ",
            "안녕",
            "👋🏽",
            "%E2%80%AE",
        ] {
            assert_eq!(esc(s), s);
        }
    }

    #[test]
    fn controls_separators_and_bidi_are_escaped() {
        let cases = [
            ("a\u{202e}b", "a\\u{202e}b"),
            ("a\u{2028}b\u{2029}", "a\\u{2028}b\\u{2029}"),
            ("a\u{85}b", "a\\u{85}b"),
            ("a\u{9b}b", "a\\u{9b}b"),
            (
                "\r\n\t\0\u{1b}[31m\u{7f}",
                "\\u{d}\\u{a}\\u{9}\\u{0}\\u{1b}[31m\\u{7f}",
            ),
            ("\u{2066}x\u{2069}", "\\u{2066}x\\u{2069}"),
            ("\u{200e}\u{200f}\u{61c}", "\\u{200e}\\u{200f}\\u{61c}"),
            ("\u{feff}\u{200b}", "\\u{feff}\\u{200b}"),
            ("a\\u{202e}\"", "a\\\\u{202e}\\\""),
        ];
        for (raw, want) in cases {
            assert_eq!(esc(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn nothing_escapable_survives() {
        let all: String = (0..0x3000u32).filter_map(char::from_u32).collect();
        let chunks: Vec<char> = all.chars().collect();
        for piece in chunks.chunks(100) {
            let piece: String = piece.iter().collect();
            let out = esc(&piece);
            assert!(!out.chars().any(must_escape), "{out:?}");
        }
    }

    #[test]
    fn long_values_are_cut_with_a_marker() {
        let long = "é".repeat(1000); // 2,000 bytes
        let out = esc(&long);
        assert!(out.starts_with(&"é".repeat(MAX_LOGGED_BYTES / 2)));
        assert!(out.ends_with(&format!("…[{} more bytes]", 2000 - MAX_LOGGED_BYTES)));
        assert!(out.len() < MAX_LOGGED_BYTES + 32);
        // Exactly at the limit: nothing cut.
        let edge = "a".repeat(MAX_LOGGED_BYTES);
        assert_eq!(esc(&edge), edge);
    }
}

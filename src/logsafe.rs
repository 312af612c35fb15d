//! Text from a peer, made safe to write to the log.
//!
//! A path, a user id or a header value is chosen by whoever sent it. Written
//! raw, it could break a log line in two (a line or paragraph separator, NEL,
//! a bare CR), reorder what a reader sees (bidi controls such as U+202E), hide
//! text (zero-width characters, tag characters, Hangul fillers, the blank
//! Braille pattern, spaces that look like none) or drive a terminal (ESC).
//! Every such string goes through [`Escaped`] on its way to a `log::` call:
//! those characters are written as `\u{…}` escapes, a backslash as `\\`, a
//! double quote as `\"`, and a long value is cut with a marker saying how
//! much was left out. Which characters: see [`must_escape`].

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

/// Characters a log line must not hold raw. By Unicode's own properties
/// (ICU4X data):
/// - every code point that is not a graphic character, that is, whose
///   general category is a control, format, surrogate, private-use or
///   unassigned one, or a line or paragraph separator (controls, NEL, bidi
///   controls, tag characters, U+1D173…);
/// - every `Default_Ignorable_Code_Point`, graphic or not: those render as
///   nothing (U+034F, the variation selectors such as U+FE0F, U+17B4, the
///   Hangul fillers U+115F, U+3164, U+FFA0, which are letters by category);
/// - every `White_Space` character but U+0020 (U+00A0, U+3000, …);
/// - the few graphic characters that are not default-ignorable yet are
///   drawn blank by design ([`BLANK_GLYPHS`]).
pub fn must_escape(c: char) -> bool {
    use icu_properties::props::{
        DefaultIgnorableCodePoint, GeneralCategory as Gc, GeneralCategoryGroup, WhiteSpace,
    };
    use icu_properties::{CodePointMapData, CodePointSetData};
    if c == ' ' {
        return false;
    }
    let category = CodePointMapData::<Gc>::new().get(c);
    let graphic = GeneralCategoryGroup::Letter.contains(category)
        || GeneralCategoryGroup::Mark.contains(category)
        || GeneralCategoryGroup::Number.contains(category)
        || GeneralCategoryGroup::Punctuation.contains(category)
        || GeneralCategoryGroup::Symbol.contains(category)
        || category == Gc::SpaceSeparator;
    !graphic
        || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || CodePointSetData::new::<WhiteSpace>().contains(c)
        || BLANK_GLYPHS.contains(&c)
}

/// Graphic characters, neither default-ignorable nor spaces, whose glyph
/// is empty by definition: fillers and blanks that only hold a place.
pub const BLANK_GLYPHS: [char; 3] = [
    '\u{2800}',  // BRAILLE PATTERN BLANK (So)
    '\u{16fe4}', // KHITAN SMALL SCRIPT FILLER (Mn)
    '\u{1d159}', // MUSICAL SYMBOL NULL NOTEHEAD (So)
];

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

    /// Invisible characters that once reached the log raw, each with the
    /// rule that catches it.
    #[test]
    fn invisible_characters_of_every_kind_are_escaped() {
        use icu_properties::CodePointSetData;
        use icu_properties::props::{DefaultIgnorableCodePoint, WhiteSpace};
        let ignorable = |c| CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c);
        let space = |c| CodePointSetData::new::<WhiteSpace>().contains(c);
        let cases: [(char, &str); 12] = [
            ('\u{e0041}', "not graphic (Cf), default-ignorable"),
            ('\u{1d173}', "not graphic (Cf), default-ignorable"),
            ('\u{3164}', "default-ignorable (Lo)"),
            ('\u{ffa0}', "default-ignorable (Lo)"),
            ('\u{115f}', "default-ignorable (Lo)"),
            ('\u{fe0f}', "default-ignorable (Mn)"),
            ('\u{034f}', "default-ignorable (Mn)"),
            ('\u{17b4}', "default-ignorable (Mn)"),
            ('\u{16fe4}', "blank glyph (Mn)"),
            ('\u{2800}', "blank glyph (So)"),
            ('\u{1d159}', "blank glyph (So)"),
            ('\u{3000}', "white space (Zs)"),
        ];
        for (c, why) in cases {
            let raw = format!("a{c}b");
            let want = format!("a\\u{{{:x}}}b", c as u32);
            assert_eq!(esc(&raw), want, "U+{:04X}: {why}", c as u32);
            let caught_by = if why.starts_with("default-ignorable") || why.contains(", default") {
                ignorable(c)
            } else if why.starts_with("blank") {
                BLANK_GLYPHS.contains(&c) && !ignorable(c) && !space(c)
            } else {
                space(c)
            };
            assert!(caught_by, "U+{:04X} is caught as {why}", c as u32);
        }
    }

    #[test]
    fn every_space_but_the_plain_one_is_escaped() {
        for c in [
            '\u{a0}', '\u{1680}', '\u{2000}', '\u{200a}', '\u{202f}', '\u{205f}',
        ] {
            assert_eq!(esc(&c.to_string()), format!("\\u{{{:x}}}", c as u32));
        }
        assert_eq!(esc("a b"), "a b");
    }

    #[test]
    fn private_use_and_unassigned_code_points_are_escaped() {
        for c in [
            '\u{e000}',
            '\u{f0000}',
            '\u{10ffff}',
            '\u{fffe}',
            '\u{e0080}',
        ] {
            assert!(must_escape(c), "U+{:04X}", c as u32);
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

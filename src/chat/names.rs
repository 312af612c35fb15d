//! The rules for user ids, room numbers and chat text. What two ids are
//! compared by (their look-alike key) is in [`super::id_key`].

use unicode_normalization::UnicodeNormalization;
use unicode_security::GeneralSecurityProfile;

pub use super::id_key::{IdKey, IdKeys};

use std::borrow::Cow;

/// Longest user id, in Unicode scalar values as typed (before any
/// normalisation).
pub const MAX_USER_CHARS: usize = 32;
/// Most combining marks after one letter or digit (in the id's NFKD form):
/// enough for every script's real writing (Vietnamese, Tibetan stacks,
/// Hebrew with points), not for a tower of accents that covers the letters
/// around it.
pub const MAX_MARKS_PER_BASE: usize = 4;
/// Highest room number.
pub const MAX_ROOM: u32 = 999_999;

/// Why a user id is refused. The login answers each with `400 Bad Request`
/// and the message of its `Display`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadUserId {
    /// Nothing but spaces.
    Empty,
    /// More than [`MAX_USER_CHARS`]; holds the count.
    TooLong(usize),
    /// A character that shows nothing or reorders text (zero-width
    /// characters, fillers, variation selectors, bidi controls, other control
    /// and format characters): two ids would look alike while differing.
    Invisible(char),
    /// A space, punctuation other than `_ - .`, a symbol, an emoji…
    NotAllowed(char),
    /// A combining mark with nothing to combine with: at the start, or after
    /// `_`, `-` or `.`.
    StrayMark(char),
    /// A character that Unicode does not recommend for identifiers (not
    /// Allowed in UTS #39's General Security Profile, after NFKC): obsolete
    /// or technical letters, fillers, combining marks for symbols…
    Restricted(char),
    /// More than [`MAX_MARKS_PER_BASE`] combining marks on one letter or
    /// digit; holds the first one too many.
    TooManyMarks(char),
    /// The same combining mark twice in a row on one letter (it looks like
    /// once, or covers its neighbours).
    RepeatedMark(char),
}

impl std::fmt::Display for BadUserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Empty => write!(f, "Enter a user id."),
            Self::TooLong(n) => write!(
                f,
                "A user id has at most {MAX_USER_CHARS} characters (this one has {n})."
            ),
            Self::Invisible(c) => write!(
                f,
                "A user id may not hold invisible or control characters (U+{:04X}).",
                c as u32
            ),
            Self::NotAllowed(c) => write!(
                f,
                "A user id may hold letters, digits, _, - and . only (not U+{:04X}).",
                c as u32
            ),
            Self::StrayMark(c) => write!(
                f,
                "A combining mark (U+{:04X}) must follow a letter or a digit.",
                c as u32
            ),
            Self::Restricted(c) => write!(
                f,
                "A user id may not hold U+{:04X}: it is not among the characters Unicode recommends for names.",
                c as u32
            ),
            Self::TooManyMarks(c) => write!(
                f,
                "At most {MAX_MARKS_PER_BASE} combining marks may follow a letter (U+{:04X} is one too many).",
                c as u32
            ),
            Self::RepeatedMark(c) => write!(
                f,
                "A combining mark may not follow itself (U+{:04X} twice).",
                c as u32
            ),
        }
    }
}

/// What one character of a user id is, for the id rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdChar {
    /// A letter or decimal digit of any script (general categories L, Nd).
    Base,
    /// `_`, `-` or `.`.
    Joiner,
    /// A combining mark (general category M): vowel signs, viramas, accents.
    Mark,
    /// Default-ignorable, bidi control, control or format character.
    Invisible,
    /// Anything else.
    Other,
}

impl IdChar {
    /// Classifies `c`. Invisibility is asked first, because some invisible
    /// characters are letters or marks by category: the Hangul fillers
    /// U+3164 and U+FFA0 are `Lo`, U+034F and the variation selectors `Mn`.
    fn of(c: char) -> Self {
        use icu_properties::props::{
            BidiControl, DefaultIgnorableCodePoint, GeneralCategory as Gc, GeneralCategoryGroup,
        };
        use icu_properties::{CodePointMapData, CodePointSetData};
        if CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
            || CodePointSetData::new::<BidiControl>().contains(c)
        {
            return Self::Invisible;
        }
        if matches!(c, '_' | '-' | '.') {
            return Self::Joiner;
        }
        let category = CodePointMapData::<Gc>::new().get(c);
        if GeneralCategoryGroup::Letter.contains(category) || category == Gc::DecimalNumber {
            Self::Base
        } else if GeneralCategoryGroup::Mark.contains(category) {
            Self::Mark
        } else if matches!(category, Gc::Control | Gc::Format) {
            Self::Invisible
        } else {
            Self::Other
        }
    }
}

/// Checks a user id; returns it trimmed, or why it is refused.
///
/// An id is 1–32 characters (counted as typed), each a letter or digit of any
/// script, `_`, `-`, `.`, or a combining mark that follows a letter, a digit
/// or another mark (so `कृष्ण` and `e` + U+0301 are ids, a lone accent is not).
/// Its NFKC form holds only characters Unicode recommends for identifiers
/// ([`is_allowed`]), and no letter carries more than
/// [`MAX_MARKS_PER_BASE`] marks or the same mark twice in a row.
pub fn check_user(raw: &str) -> Result<&str, BadUserId> {
    let user = raw.trim();
    let count = user.chars().count();
    if count == 0 {
        return Err(BadUserId::Empty);
    }
    if count > MAX_USER_CHARS {
        return Err(BadUserId::TooLong(count));
    }
    check_characters(user)?;
    check_allowed(user)?;
    check_marks(user)?;
    Ok(user)
}

/// Each character as typed: a letter, digit, joiner, or a mark after a
/// letter, digit or mark; nothing invisible.
fn check_characters(user: &str) -> Result<(), BadUserId> {
    let mut previous = IdChar::Joiner; // the start: a mark may not come first
    for c in user.chars() {
        let kind = IdChar::of(c);
        match kind {
            IdChar::Invisible => return Err(BadUserId::Invisible(c)),
            IdChar::Other => return Err(BadUserId::NotAllowed(c)),
            IdChar::Mark if previous == IdChar::Joiner => return Err(BadUserId::StrayMark(c)),
            IdChar::Base | IdChar::Joiner | IdChar::Mark => {}
        }
        previous = kind;
    }
    Ok(())
}

/// The NFKC form holds only allowed characters. Each typed character is
/// asked first (so the message names what was typed), then the whole form
/// (composition may make a character that no typed one was).
fn check_allowed(user: &str) -> Result<(), BadUserId> {
    for c in user.chars() {
        if !std::iter::once(c).nfkc().all(is_allowed) {
            return Err(BadUserId::Restricted(c));
        }
    }
    match user.nfkc().find(|&c| !is_allowed(c)) {
        Some(c) => Err(BadUserId::Restricted(c)),
        None => Ok(()),
    }
}

/// Whether an id's NFKC form may hold `c`: `_ - .`, a character whose
/// UTS #39 Identifier_Status is Allowed, or a modern conjoining jamo
/// ([`is_also_allowed`]).
pub fn is_allowed(c: char) -> bool {
    matches!(c, '_' | '-' | '.') || c.identifier_allowed() || is_also_allowed(c)
}

/// The addition to Unicode's Allowed set that the id rule itself makes:
/// the modern conjoining jamo (U+1100–U+1112, U+1161–U+1175,
/// U+11A8–U+11C2), which a Korean keyboard types as lone consonants or
/// vowels (`ㅋㅋㅋ`: NFKC turns those into these) and which Unicode allows
/// only inside syllables; the rule keeps them valid, and its look-alike
/// keys make them one with the syllables they spell.
///
/// The Hebrew points (niqqud) were allowed here too once, beyond the rule:
/// some are drawn exactly like another allowed mark that UTS #39's table
/// does not tie them to (U+05C7 qamats qatan and U+05B8 qamats; U+05BF
/// rafe and U+0304 macron; U+05B7 patah and U+0331 macron below), so two
/// people could hold ids that look the same in one room. Like every
/// character whose Identifier_Status is not Allowed, they are refused.
pub fn is_also_allowed(c: char) -> bool {
    matches!(c, '\u{1100}'..='\u{1112}' | '\u{1161}'..='\u{1175}' | '\u{11A8}'..='\u{11C2}')
}

/// In the NFKD form (every mark that shows, precomposed or not), at most
/// [`MAX_MARKS_PER_BASE`] marks follow each letter or digit, and no mark
/// follows itself.
fn check_marks(user: &str) -> Result<(), BadUserId> {
    let mut marks = 0;
    let mut previous = None;
    for c in user.nfkd() {
        if !super::id_key::is_mark(c) {
            marks = 0;
            previous = Some(c);
            continue;
        }
        marks += 1;
        if marks > MAX_MARKS_PER_BASE {
            return Err(BadUserId::TooManyMarks(c));
        }
        if previous == Some(c) {
            return Err(BadUserId::RepeatedMark(c));
        }
        previous = Some(c);
    }
    Ok(())
}

/// Parses a room number typed into a form (surrounding spaces and leading
/// zeros allowed).
pub fn parse_room_input(raw: &str) -> Result<u32, &'static str> {
    let digits = raw.trim();
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("A room is a number from 1 to 999999.");
    }
    match digits.parse::<u32>() {
        Ok(n) if (1..=MAX_ROOM).contains(&n) => Ok(n),
        _ => Err("A room is a number from 1 to 999999."),
    }
}

/// Parses a room number in a URL path: canonical digits only (`/rooms/05` is
/// not room 5, so one room has one URL).
pub fn parse_room_path(segment: &str) -> Option<u32> {
    if segment.is_empty() || segment.len() > 6 || segment.starts_with('0') {
        return None;
    }
    if !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok()
}

/// Chat text as it is kept: `None` if it is empty or only whitespace, else
/// with every line break written as LF, cut after `max_lines` lines and
/// then to `max_chars` code points (never inside a character). Borrowed
/// when nothing needed changing, the common case.
///
/// A line break is LF, CR LF or CR (the two latter become LF), and also
/// the other breaks Unicode says must end a line (NEL, vertical tab, form
/// feed, U+2028, U+2029), which become LF too: otherwise a page that shows
/// them as breaks would show more than `max_lines` lines.
pub fn chat_text(text: &str, max_chars: usize, max_lines: usize) -> Option<Cow<'_, str>> {
    let mut text = if text.contains(is_other_break) {
        Cow::Owned(lf_breaks(text))
    } else {
        Cow::Borrowed(text)
    };
    let end = kept_len(&text, max_chars, max_lines);
    match &mut text {
        Cow::Borrowed(s) => *s = &s[..end],
        Cow::Owned(s) => s.truncate(end),
    }
    (!text.trim().is_empty()).then_some(text)
}

/// A line break other than LF, which [`chat_text`] turns into LF.
fn is_other_break(c: char) -> bool {
    matches!(
        c,
        '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// `text` with CR LF and every other line break written as one LF.
fn lf_breaks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() == Some(&'\n') {
            continue; // the LF that follows is the break
        }
        out.push(if is_other_break(c) { '\n' } else { c });
    }
    out
}

/// Bytes of `text` (whose breaks are all LF) to keep: up to the end of its
/// `max_lines`-th line (the LF that ends it goes too) and at most
/// `max_chars` code points.
fn kept_len(text: &str, max_chars: usize, max_lines: usize) -> usize {
    let mut lines = 1;
    for (count, (at, c)) in text.char_indices().enumerate() {
        if count == max_chars {
            return at;
        }
        if c == '\n' {
            if lines == max_lines {
                return at;
            }
            lines += 1;
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        assert_eq!(check_user("  alice "), Ok("alice"));
        assert_eq!(check_user("김철수_1.x-y"), Ok("김철수_1.x-y"));
        assert_eq!(check_user(""), Err(BadUserId::Empty));
        assert_eq!(check_user("a b"), Err(BadUserId::NotAllowed(' ')));
        assert_eq!(
            check_user("a\u{3164}"),
            Err(BadUserId::Invisible('\u{3164}'))
        );
        assert_eq!(check_user("_\u{301}"), Err(BadUserId::StrayMark('\u{301}')));
        assert!(check_user(&"가".repeat(32)).is_ok());
        assert_eq!(check_user(&"가".repeat(33)), Err(BadUserId::TooLong(33)));
        assert_eq!(IdKey::of("Alice"), IdKey::of("alice"));
        assert_ne!(IdKey::of("alice"), IdKey::of("alicf"));
        // The table of scripts, refused characters and look-alikes is in
        // tests/user_ids.rs.
    }

    #[test]
    fn rooms() {
        assert_eq!(parse_room_input(" 007 "), Ok(7));
        assert!(parse_room_input("0").is_err());
        assert!(parse_room_input("1000000").is_err());
        assert!(parse_room_input("-1").is_err());
        assert_eq!(parse_room_path("999999"), Some(999_999));
        assert_eq!(parse_room_path("05"), None);
        assert_eq!(parse_room_path("0"), None);
    }

    #[test]
    fn chat_text_is_cut_at_characters() {
        let kept = |text, chars, lines| chat_text(text, chars, lines).map(Cow::into_owned);
        assert_eq!(kept("   ", 50, 40), None);
        assert_eq!(kept(" \r\n\t\u{2028}", 50, 40), None);
        assert_eq!(kept("abc", 2, 40), Some("ab".into()));
        assert_eq!(kept("한국어입니다", 3, 40), Some("한국어".into()));
        assert_eq!(kept("👍👍", 1, 40), Some("👍".into()));
        // A thumbs-up with its skin tone is two code points: cut between them,
        // never inside one.
        assert_eq!(kept("👍🏽", 1, 40), Some("👍".into()));
        // Whitespace at the cut still leaves text.
        assert_eq!(kept("a  ", 2, 40), Some("a ".into()));
        // Only spaces before the cut: nothing to send.
        assert_eq!(kept("  x", 2, 40), None);
    }

    #[test]
    fn chat_text_keeps_line_breaks_as_lf() {
        let kept = |text, chars, lines| chat_text(text, chars, lines).map(Cow::into_owned);
        assert_eq!(kept("a\nb", 50, 40), Some("a\nb".into()));
        assert_eq!(kept("a\r\nb\rc", 50, 40), Some("a\nb\nc".into()));
        assert_eq!(kept("a\r\r\nb", 50, 40), Some("a\n\nb".into()));
        assert_eq!(
            kept("a\u{2028}b\u{2029}c\u{85}d\u{0B}e\u{0C}f", 50, 40),
            Some("a\nb\nc\nd\ne\nf".into())
        );
        // CR LF counts as one character once it is LF.
        assert_eq!(kept("ab\r\ncd", 4, 40), Some("ab\nc".into()));
        // Unchanged text is not copied.
        assert!(matches!(chat_text("a\nb", 50, 40), Some(Cow::Borrowed(_))));
    }

    #[test]
    fn chat_text_drops_lines_past_the_limit() {
        let kept = |text, chars, lines| chat_text(text, chars, lines).map(Cow::into_owned);
        assert_eq!(kept("1\n2\n3\n4", 50, 2), Some("1\n2".into()));
        assert_eq!(kept("1\r\n2\r\n3", 50, 2), Some("1\n2".into()));
        assert_eq!(kept("1\n2\n", 50, 2), Some("1\n2".into()));
        assert_eq!(kept("1\n2\n\n", 50, 2), Some("1\n2".into()));
        assert_eq!(kept("one line", 50, 1), Some("one line".into()));
        let many = "x\n".repeat(100);
        assert_eq!(kept(&many, 2000, 40).map(|t| t.lines().count()), Some(40));
        // Blank lines count: 40 empty lines and then text is nothing.
        assert_eq!(kept(&format!("{}x", "\n".repeat(40)), 2000, 40), None);
    }
}

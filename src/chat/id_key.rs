//! The look-alike key of a user id: what a room compares ids by, so that two
//! ids that look the same on screen are one person.
//!
//! The key is computed from the id's NFKC form in three steps:
//! 1. ids holding right-to-left letters are put in the order they are shown
//!    in (the Unicode bidirectional algorithm in a left-to-right paragraph,
//!    as the pages show ids), so `א1` and `1א`, which look alike, have one
//!    key (this is UTS #39's bidiSkeleton; ids without such letters are
//!    shown as stored);
//! 2. the UTS #39 confusable skeleton and full case folding are applied in
//!    turn until a round gives the text back, skeleton first (`I` must
//!    become `l` before folding turns it into `i`; `0` becomes `O` and then
//!    `o`), with two additions where Unicode's table is silent (`w` is
//!    `vv`; a dot above on a soft-dotted letter is dropped);
//! 3. what is left is the key.
//!
//! An id whose right-to-left letters are reordered for display is also
//! known by the key of its stored order ([`IdKeys`]): logs and terminals
//! show that order.
//!
//! The work is bounded: at most [`MAX_USER_CHARS`] characters of the input
//! are read, and the loop of step 2 runs at most [`MAX_ROUNDS`] times.

use unicode_normalization::UnicodeNormalization;

use super::names::MAX_USER_CHARS;

/// How many skeleton-and-fold rounds a key may take.
///
/// Why the loop ends well before: both steps act on each character on its
/// own (the skeleton maps each character of the NFD form, then decomposes
/// again, which only reorders marks; full case folding has no context), so
/// once every character of a text has reached its own fixed point the text
/// has too, and a text settles in as many rounds as its slowest character.
/// `tests/user_ids.rs` walks every assigned code point and finds that none
/// needs more than 4 rounds, the last of which only confirms that nothing
/// changes. (Dropping a soft-dotted letter's dot looks at the letter
/// before, but only ever shortens the text, by one dot per round at most.)
/// The cap is there so that future tables whose steps undid each other
/// could not loop for ever; such a key would be the text after the last
/// round, still the same for the same id.
pub const MAX_ROUNDS: usize = 8;

/// What a room compares ids by: two ids with the same key *look* the same,
/// so they are one person in a room. `Alice` and `alice`, `Straße` and
/// `STRASSE`, fullwidth `Ａｌｉｃｅ`, Cyrillic `аlice` and Latin `alice`,
/// `aIice` and `alice`, `b0b` and `bob`, `rn` and `m`, `א1` and `1א`, `가`
/// as one syllable or as two conjoining jamo: each pair has one key.
///
/// Computed once per login (see the module's documentation for how).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdKey(String);

impl IdKey {
    /// The key of `user`. Only the first [`MAX_USER_CHARS`] characters are
    /// read: a longer text is never an id.
    pub fn of(user: &str) -> Self {
        let bounded: String = user.chars().take(MAX_USER_CHARS).collect();
        let compatible: String = bounded.nfkc().collect();
        Self(fixed_point(shown_order(&compatible)))
    }

    /// The key as text (for tests and logs).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Every key an id is known by: its [`IdKey`] (the id as the pages show
/// it, skeleton first), and the other keys it may be read as. Two ids are
/// one person when any key of one is a key of the other
/// ([`IdKeys::meets`]). The others:
/// - the key with case folded *before* the first skeleton: skeleton first
///   makes a capital `I` an `l`, so `ALICE`'s own key is `allce`'s, not
///   `alice`'s; this one keeps ids that differ only in case one person;
/// - for an id whose right-to-left letters are shown in another order than
///   they are stored, the keys of the stored order. Not every program
///   applies the bidirectional algorithm (logs, terminals, a plain-text
///   client show the stored order), so `א-ב`, shown as `ב-א` on the pages,
///   is also seen as `א-ב`; a second person calling themselves `ב-א` would
///   be read as the first in one of the two places. The price: a
///   right-to-left id and its letters reversed (`אב`, `בא`) are one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdKeys {
    /// The key of the id as the pages show it.
    pub shown: IdKey,
    /// The other keys (none equal to `shown` or to each other).
    pub also: Vec<IdKey>,
}

impl IdKeys {
    /// The keys of `user` (only its first [`MAX_USER_CHARS`] characters
    /// are read).
    pub fn of(user: &str) -> Self {
        let bounded: String = user.chars().take(MAX_USER_CHARS).collect();
        let compatible: String = bounded.nfkc().collect();
        let shown_text = shown_order(&compatible);
        let mut others = vec![fixed_point(fold(&shown_text))];
        if shown_text != compatible {
            others.push(fixed_point(fold(&compatible)));
            others.push(fixed_point(compatible));
        }
        let shown = IdKey(fixed_point(shown_text));
        let mut also: Vec<IdKey> = Vec::new();
        for key in others.into_iter().map(IdKey) {
            if key != shown && !also.contains(&key) {
                also.push(key);
            }
        }
        Self { shown, also }
    }

    /// Each key: the shown one first.
    pub fn iter(&self) -> impl Iterator<Item = &IdKey> {
        std::iter::once(&self.shown).chain(&self.also)
    }

    /// Whether the two ids are one person: a key in common.
    pub fn meets(&self, other: &IdKeys) -> bool {
        self.iter().any(|key| other.iter().any(|k| k == key))
    }
}

/// Full case folding (`ß` → `ss`, `I` → `i`), from ICU4X.
fn fold(text: &str) -> String {
    icu_casemap::CaseMapper::new()
        .fold_string(text)
        .into_owned()
}

/// Skeleton, then full case folding, again and again until a round gives
/// the text back (at most [`MAX_ROUNDS`] rounds).
fn fixed_point(mut text: String) -> String {
    for _ in 0..MAX_ROUNDS {
        let (settled, next) = round(&text);
        if settled {
            break;
        }
        text = next;
    }
    text
}

/// One round: the skeleton of `text` (with the additions below), then its
/// full case folding; `true` when the round gave `text` back. (Not
/// "neither step changed anything": a few prototypes are capitals whose
/// folding is the letter they stand for, so `ꝺ` → `Ꝺ` → `ꝺ` for ever.)
fn round(text: &str) -> (bool, String) {
    let skeleton = drop_soft_dots(&skeleton(text));
    let folded = icu_casemap::CaseMapper::new()
        .fold_string(&skeleton)
        .into_owned();
    (folded == text, folded)
}

/// The UTS #39 skeleton, with the prototypes Unicode's table lacks (see
/// [`EXTRA_PROTOTYPES`]).
fn skeleton(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in unicode_security::skeleton(text) {
        match EXTRA_PROTOTYPES.iter().find(|(from, _)| *from == c) {
            Some((_, to)) => out.push_str(to),
            None => out.push(c),
        }
    }
    out
}

/// Look-alikes that UTS #39's table does not list, in its own form (one
/// character → its prototype): `w` is drawn as two `v`s in many fonts, as
/// `m` is drawn as `r` + `n` (which the table does list). Keep it short:
/// each entry merges ids for everyone.
const EXTRA_PROTOTYPES: &[(char, &str)] = &[('w', "vv")];

/// Drops a dot above (U+0307) that sits on a soft-dotted letter (`i`, `j`,
/// Cyrillic `і`, … : Unicode's Soft_Dotted property). Such a letter shows
/// one dot whether or not the dot is also written (Unicode: an accent
/// above replaces the soft dot, and an explicit U+0307 is how the dot is
/// kept), so `i` + U+0307 looks like `i`. `text` is in NFD (a skeleton), so
/// the marks after a base are in canonical order: the dot counts as on the
/// letter until a mark of the same class (above, 230) comes first.
fn drop_soft_dots(text: &str) -> String {
    use icu_properties::CodePointSetData;
    use icu_properties::props::SoftDotted;
    use unicode_normalization::char::canonical_combining_class;
    const ABOVE: u8 = 230;
    let soft_dotted = CodePointSetData::new::<SoftDotted>();
    let mut out = String::with_capacity(text.len());
    let mut dotted_base = false;
    for c in text.chars() {
        let class = canonical_combining_class(c);
        if c == '\u{307}' && dotted_base {
            dotted_base = false;
            continue;
        }
        if class == 0 {
            dotted_base = soft_dotted.contains(c);
        } else if class == ABOVE {
            dotted_base = false;
        }
        out.push(c);
    }
    out
}

/// How many rounds the key's loop takes for `text` until nothing changes
/// (the last round is the one that changes nothing); `None` if it did not
/// settle within `cap` rounds. For the tests that bound [`MAX_ROUNDS`].
pub fn rounds_to_settle(text: &str, cap: usize) -> Option<usize> {
    let mut text = text.to_string();
    for number in 1..=cap {
        let (settled, next) = round(&text);
        if settled {
            return Some(number);
        }
        text = next;
    }
    None
}

/// `text` in the order it is shown in a left-to-right paragraph, each
/// combining mark still after its base (rules L1–L3 of the bidirectional
/// algorithm; ids hold no mirrored characters, so L4 changes nothing).
/// Text without right-to-left characters is returned as it is.
pub fn shown_order(text: &str) -> String {
    use unicode_bidi::{Level, ParagraphBidiInfo};
    let classes = icu_properties::CodePointMapData::<icu_properties::props::BidiClass>::new();
    let info = ParagraphBidiInfo::new_with_data_source(&classes, text, Some(Level::ltr()));
    if !info.has_rtl() {
        return text.to_string();
    }
    let (levels, runs) = info.visual_runs(0..text.len());
    let mut shown = String::with_capacity(text.len());
    for run in runs {
        let piece = &text[run.clone()];
        if levels[run.start].is_rtl() {
            for cluster in clusters(piece).into_iter().rev() {
                shown.push_str(cluster);
            }
        } else {
            shown.push_str(piece);
        }
    }
    shown
}

/// `text` cut before each character that is not a combining mark: each
/// piece is a base and the marks that follow it (a leading mark is a piece
/// of its own).
fn clusters(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (at, c) in text.char_indices() {
        if at > start && !is_mark(c) {
            pieces.push(&text[start..at]);
            start = at;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// A combining mark: general category M (Mn, Mc, Me).
pub fn is_mark(c: char) -> bool {
    use icu_properties::CodePointMapData;
    use icu_properties::props::{GeneralCategory, GeneralCategoryGroup};
    GeneralCategoryGroup::Mark.contains(CodePointMapData::<GeneralCategory>::new().get(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(IdKey::of("aIice").as_str(), "alice");
        assert_eq!(IdKey::of("B0B").as_str(), "bob");
        assert_eq!(IdKey::of("vvill"), IdKey::of("will"));
        assert_eq!(IdKey::of("ali\u{307}ce").as_str(), "alice");
        assert_eq!(IdKey::of("1א"), IdKey::of("א1"));
        assert_ne!(IdKey::of("alice"), IdKey::of("alicf"));
        // The tables of pairs are in tests/user_ids.rs.
    }

    #[test]
    fn normalisation_and_security_tables_are_one_unicode_version() {
        // The skeleton decomposes with unicode-normalization's tables and
        // maps with unicode-security's: a bump of one alone must be seen.
        let security = unicode_security::UNICODE_VERSION;
        let normalization = unicode_normalization::UNICODE_VERSION;
        assert_eq!(security.0, u64::from(normalization.0));
        assert_eq!(security.1, u64::from(normalization.1));
    }

    #[test]
    fn a_cycle_of_skeleton_and_folding_settles() {
        assert_eq!(rounds_to_settle("\u{A77A}", 8), Some(1));
        assert_eq!(IdKey::of("\u{A779}"), IdKey::of("\u{A77A}"));
    }
}

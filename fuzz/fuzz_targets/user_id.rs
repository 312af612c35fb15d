//! The user id rule and the look-alike key.
//!
//! Input: any bytes, read as UTF-8 (invalid sequences become U+FFFD).
//! `check_user` and `IdKey::of` must never panic, on any text. An accepted
//! id must be the trimmed input, 1–32 characters, each a letter, a decimal
//! digit, `_ - .` or a mark that follows a letter, digit or mark; none
//! default-ignorable (asked of both ICU4X and unicode-security, two sources),
//! a bidi control, or a control or format character; its NFKC form only
//! allowed characters; at most 4 marks on a letter in its NFKD form, no mark
//! twice in a row. The key must be the same when computed twice and for
//! the id's NFD and NFC forms (when they are 32 characters at most), must settle before the round cap, and
//! grow at most 7 characters per character of the id; only the first 32
//! characters of any text are read; the other keys are at most 3, none
//! equal to the key.
#![no_main]

use icu_properties::props::{
    BidiControl, DefaultIgnorableCodePoint, GeneralCategory as Gc, GeneralCategoryGroup,
};
use icu_properties::{CodePointMapData, CodePointSetData};
use libfuzzer_sys::fuzz_target;
use unicode_normalization::UnicodeNormalization;
use wsrooms::chat::id_key::{MAX_ROUNDS, rounds_to_settle, shown_order};
use wsrooms::chat::names::{
    IdKey, IdKeys, MAX_MARKS_PER_BASE, MAX_USER_CHARS, check_user, is_allowed,
};

fn is_mark(c: char) -> bool {
    GeneralCategoryGroup::Mark.contains(CodePointMapData::<Gc>::new().get(c))
}

fn is_base(c: char) -> bool {
    let gc = CodePointMapData::<Gc>::new().get(c);
    GeneralCategoryGroup::Letter.contains(gc) || gc == Gc::DecimalNumber
}

/// Default-ignorable by unicode-security's own table: its skeleton drops
/// such characters and maps every other one to at least one character.
fn skeleton_drops(c: char) -> bool {
    unicode_security::skeleton(c.encode_utf8(&mut [0; 4]))
        .next()
        .is_none()
}

fn check_characters(id: &str) {
    let mut previous: Option<char> = None;
    for c in id.chars() {
        let gc = CodePointMapData::<Gc>::new().get(c);
        assert!(!CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c));
        assert!(!CodePointSetData::new::<BidiControl>().contains(c));
        assert!(
            !skeleton_drops(c),
            "U+{:04X} is default-ignorable",
            c as u32
        );
        assert!(!c.is_control() && gc != Gc::Format && gc != Gc::Control);
        if is_mark(c) {
            let after = previous.is_some_and(|p| is_base(p) || is_mark(p));
            assert!(after, "mark U+{:04X} after {previous:?}", c as u32);
        } else {
            assert!(
                is_base(c) || matches!(c, '_' | '-' | '.'),
                "U+{:04X}",
                c as u32
            );
        }
        previous = Some(c);
    }
}

fn check_marks(id: &str) {
    assert!(id.nfkc().all(is_allowed), "NFKC form of {id:?}");
    let mut run: Vec<char> = Vec::new();
    for c in id.nfkd() {
        if is_mark(c) {
            assert_ne!(run.last(), Some(&c), "{id:?}");
            run.push(c);
            assert!(run.len() <= MAX_MARKS_PER_BASE, "{id:?}");
        } else {
            run.clear();
        }
    }
}

fn check_accepted(input: &str, id: &str) {
    assert_eq!(id, input.trim());
    let count = id.chars().count();
    assert!((1..=MAX_USER_CHARS).contains(&count), "{count} characters");
    check_characters(id);
    check_marks(id);
    let key = IdKey::of(id);
    assert!(key.as_str().chars().count() <= 7 * count);
    // (Only the first 32 characters of a text are read: a decomposed id
    // may be longer.)
    for form in [id.nfd().collect::<String>(), id.nfc().collect()] {
        if form.chars().count() <= MAX_USER_CHARS {
            assert_eq!(IdKey::of(&form), key, "{form:?}, a normal form of {id:?}");
        }
    }
    let compatible: String = id.nfkc().collect();
    let rounds = rounds_to_settle(&shown_order(&compatible), MAX_ROUNDS);
    assert!(rounds.is_some_and(|n| n < MAX_ROUNDS), "{id:?}: {rounds:?}");
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let key = IdKey::of(&input);
    assert_eq!(IdKey::of(&input), key, "computed twice");
    let first: String = input.chars().take(MAX_USER_CHARS).collect();
    assert_eq!(IdKey::of(&first), key, "only 32 characters read");
    let keys = IdKeys::of(&input);
    assert_eq!(keys.shown, key, "the shown key is the key");
    assert!(keys.also.len() <= 3 && !keys.also.contains(&key));
    assert!(keys.meets(&keys));
    if let Ok(id) = check_user(&input) {
        check_accepted(&input, id);
    }
});

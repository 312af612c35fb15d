//! The user id rule: which ids are accepted (letters, digits and combining
//! marks of every script), which characters are refused (invisible, bidi,
//! control, format, stray marks), and which ids count as the same person
//! because they look alike. First as tables against the rule itself, then
//! end to end over a real socket.

mod common;

use common::*;
use wsrooms::chat::names::{BadUserId, IdKey, check_user};

/// Accepted ids: every script named in the rule, plus more. Some hold
/// combining marks that `char::is_alphanumeric` refuses (virama U+094D,
/// U+0CCD, coeng U+17D2, asat U+103A, combining acute U+0301).
const ACCEPTED: &[(&str, &str)] = &[
    ("Latin", "alice"),
    ("Latin with a combining acute", "e\u{301}"),
    ("Latin, precomposed", "Nguyễn_Thị"),
    ("Hindi", "कृष्ण"),
    ("Hindi", "अर्जुन"),
    ("Devanagari digits", "राम१२३"),
    ("Kannada", "ಕನ್ನಡ"),
    ("Khmer", "ខ្មែរ"),
    ("Burmese", "မြန်မာ"),
    ("Thai", "สมศักดิ์"),
    ("Arabic", "علي"),
    ("Arabic with harakat", "مُحَمَّد"),
    ("Arabic-Indic digits", "٣٤٥"),
    ("Hebrew", "דוד"),
    ("Hebrew with niqqud", "שָׁלוֹם"),
    ("Han", "张伟"),
    ("Hangul", "김철수"),
    ("Hangul as conjoining jamo", "\u{1100}\u{1161}\u{11A8}"),
    ("Hiragana and Katakana", "さくら.カタカナ"),
    ("Cyrillic", "Наташа"),
    ("Greek", "Αλέξης"),
    ("Armenian", "Արամ"),
    ("Georgian", "ნინო"),
    ("Bengali", "রবীন্দ্র"),
    ("Tamil", "தமிழ்"),
    ("Telugu", "తెలుగు"),
    ("Malayalam", "മലയാളം"),
    ("Gujarati", "ગુજરાતી"),
    ("Gurmukhi", "ਪੰਜਾਬੀ"),
    ("Sinhala", "සිංහල"),
    ("Lao", "ລາວ"),
    ("Tibetan", "བོད"),
    ("Ethiopic", "አበበ"),
    ("a mark after a mark", "क\u{94D}\u{93C}"),
    ("an enclosing mark after a letter", "a\u{20DD}"),
    ("joiners between letters", "a_b-c.d"),
    ("joiners only", "_-."),
];

/// Characters refused anywhere in an id, by what they are. Each is tried
/// between letters (`ali?ce`), at the end and at the start.
const INVISIBLE: &[(&str, char)] = &[
    ("zero width space", '\u{200B}'),
    ("zero width non-joiner", '\u{200C}'),
    ("zero width joiner", '\u{200D}'),
    ("word joiner", '\u{2060}'),
    ("zero width no-break space", '\u{FEFF}'),
    ("soft hyphen", '\u{AD}'),
    ("Hangul choseong filler (Lo)", '\u{115F}'),
    ("Hangul jungseong filler (Lo)", '\u{1160}'),
    ("Hangul filler (Lo)", '\u{3164}'),
    ("halfwidth Hangul filler (Lo)", '\u{FFA0}'),
    ("variation selector 1 (Mn)", '\u{FE00}'),
    ("variation selector 16 (Mn)", '\u{FE0F}'),
    ("variation selector 17 (Mn)", '\u{E0100}'),
    ("variation selector 256 (Mn)", '\u{E01EF}'),
    ("combining grapheme joiner (Mn)", '\u{34F}'),
    ("Mongolian free variation selector (Mn)", '\u{180B}'),
    ("Mongolian vowel separator", '\u{180E}'),
    ("Khmer inherent vowel (Mn)", '\u{17B4}'),
    ("Arabic letter mark", '\u{61C}'),
    ("left-to-right mark", '\u{200E}'),
    ("right-to-left mark", '\u{200F}'),
    ("left-to-right embedding", '\u{202A}'),
    ("right-to-left embedding", '\u{202B}'),
    ("pop directional formatting", '\u{202C}'),
    ("left-to-right override", '\u{202D}'),
    ("right-to-left override", '\u{202E}'),
    ("left-to-right isolate", '\u{2066}'),
    ("right-to-left isolate", '\u{2067}'),
    ("first strong isolate", '\u{2068}'),
    ("pop directional isolate", '\u{2069}'),
    ("NUL", '\u{0}'),
    ("BEL", '\u{7}'),
    ("ESC", '\u{1B}'),
    ("DEL", '\u{7F}'),
    ("next line (C1)", '\u{85}'),
    ("C1 control", '\u{9F}'),
    ("Arabic number sign (Cf)", '\u{600}'),
    ("interlinear annotation anchor (Cf)", '\u{FFF9}'),
    ("Kaithi number sign (Cf)", '\u{110BD}'),
    ("language tag", '\u{E0001}'),
    ("tag latin small a", '\u{E0061}'),
];

/// Neither letter, digit nor mark: spaces, punctuation, symbols.
const NOT_ALLOWED: &[char] = &[
    ' ', '\u{A0}', '\u{3000}', '\u{2028}', '@', '<', '/', '\'', '"', '+', '😀', '№', '½', 'Ⅻ',
];

/// Pairs that look the same: one person in a room.
const LOOK_ALIKE: &[(&str, &str)] = &[
    ("Alice", "alice"),
    ("Straße", "STRASSE"),
    ("Ａｌｉｃｅ", "alice"),
    ("\u{430}lice", "alice"),                     // Cyrillic а
    ("p\u{430}yp\u{430}l", "paypal"),             // Cyrillic а twice
    ("\u{3BF}scar", "oscar"),                     // Greek ο
    ("가나", "\u{1100}\u{1161}\u{1102}\u{1161}"), // syllables / conjoining jamo
    ("ㄱ", "\u{1100}"),                           // compatibility / conjoining jamo
    ("\u{E9}", "e\u{301}"),                       // precomposed / combining acute
    ("\u{FB01}ona", "fiona"),                     // ﬁ ligature
    ("\u{212A}im", "kim"),                        // Kelvin sign
    ("corn", "com"),                              // r + n looks like m
];

/// Pairs that must stay two people.
const DISTINCT: &[(&str, &str)] = &[
    ("alice", "alicf"),
    ("가", "나"),
    ("bob", "bobby"),
    ("김철수", "김철주"),
    ("e", "e\u{301}"),
    ("कृष्ण", "कृष्णा"),
    ("ab", "a.b"),
    ("a_b", "a-b"),
    ("ana", "anna"),
];

#[test]
fn every_script_is_welcome() {
    let mut scripts: Vec<&str> = Vec::new();
    for &(script, id) in ACCEPTED {
        assert_eq!(check_user(id), Ok(id), "{script}: {id:?}");
        let first = script.split([',', ' ']).next().unwrap();
        if !scripts.contains(&first) {
            scripts.push(first);
        }
    }
    assert!(scripts.len() >= 12, "{scripts:?}");
}

#[test]
fn invisible_bidi_control_and_format_characters_are_refused() {
    for &(what, c) in INVISIBLE {
        let mut ids = vec![format!("ali{c}ce")];
        if !c.is_whitespace() {
            // (U+0085 is white space: trimmed at either end.)
            ids.extend([format!("alice{c}"), format!("{c}alice")]);
        }
        for id in ids {
            assert_eq!(
                check_user(&id),
                Err(BadUserId::Invisible(c)),
                "{what} U+{:04X} in {id:?}",
                c as u32
            );
        }
    }
    for &c in NOT_ALLOWED {
        assert_eq!(
            check_user(&format!("ali{c}ce")),
            Err(BadUserId::NotAllowed(c)),
            "U+{:04X}",
            c as u32
        );
    }
}

#[test]
fn a_mark_needs_a_letter_or_digit_before_it() {
    for (id, mark) in [
        ("\u{301}e", '\u{301}'),
        ("\u{94D}क", '\u{94D}'),
        ("\u{93E}क", '\u{93E}'),   // a spacing vowel sign (Mc)
        ("\u{20DD}a", '\u{20DD}'), // an enclosing mark (Me)
        ("a_\u{301}", '\u{301}'),
        ("a-\u{94D}", '\u{94D}'),
        ("a.\u{17D2}", '\u{17D2}'),
    ] {
        assert_eq!(check_user(id), Err(BadUserId::StrayMark(mark)), "{id:?}");
    }
    assert_eq!(check_user("1\u{301}"), Ok("1\u{301}"), "after a digit");
    assert_eq!(
        check_user("  \u{301}a"),
        Err(BadUserId::StrayMark('\u{301}'))
    );
}

#[test]
fn length_is_counted_as_typed() {
    let accents = "e\u{301}".repeat(16); // 32 scalar values, 16 once composed
    assert_eq!(check_user(&accents), Ok(accents.as_str()));
    assert_eq!(
        check_user(&format!("{accents}e")),
        Err(BadUserId::TooLong(33)),
        "33 as typed, though 17 after composing"
    );
    let jamo = "\u{1100}\u{1161}".repeat(16);
    assert!(check_user(&jamo).is_ok());
    assert_eq!(
        check_user(&format!("{jamo}\u{1100}")),
        Err(BadUserId::TooLong(33))
    );
    // 32 characters that expand a lot under NFKC are still 32.
    let wide = "\u{3392}".repeat(32); // ㎒ is So: refused, but not for length
    assert_eq!(check_user(&wide), Err(BadUserId::NotAllowed('\u{3392}')));
    let ligatures = "\u{FB03}".repeat(32); // ﬃ, a letter: 96 letters under NFKC
    assert!(check_user(&ligatures).is_ok());
    assert_eq!(
        check_user(&format!("  {}  ", "x".repeat(32))),
        Ok("x".repeat(32).as_str()),
        "spaces around do not count"
    );
    assert_eq!(check_user(" \t "), Err(BadUserId::Empty));
}

#[test]
fn look_alike_ids_have_one_key() {
    for &(a, b) in LOOK_ALIKE {
        assert!(
            check_user(a).is_ok() && check_user(b).is_ok(),
            "{a:?} {b:?}"
        );
        assert_eq!(IdKey::of(a), IdKey::of(b), "{a:?} and {b:?} look alike");
    }
    for &(a, b) in DISTINCT {
        assert!(
            check_user(a).is_ok() && check_user(b).is_ok(),
            "{a:?} {b:?}"
        );
        assert_ne!(IdKey::of(a), IdKey::of(b), "{a:?} and {b:?} differ");
    }
}

#[test]
fn login_refuses_a_look_alike_and_names_the_present_id() {
    let addr = start(test_config());
    login(addr, "alice", 5);
    let r = login_raw(addr, "\u{430}lice", "5");
    assert_eq!(r.status, 409);
    assert!(
        r.text()
            .contains("“\u{430}lice” looks like “alice”, who is already in room 5."),
        "{}",
        r.text()
    );
    login(addr, "Straße", 5);
    let r = login_raw(addr, "STRASSE", "5");
    assert_eq!(r.status, 409);
    assert!(r.text().contains("looks like “Straße”"), "{}", r.text());
    // The same id typed the same way keeps the short message.
    let r = login_raw(addr, "alice", "5");
    assert_eq!(r.status, 409);
    assert!(r.text().contains("“alice” is already in room 5."));
}

#[test]
fn login_accepts_indic_ids_and_refuses_a_hangul_filler() {
    let addr = start(test_config());
    for id in ["कृष्ण", "अर्जुन", "ಕನ್ನಡ", "ខ្មែរ", "မြန်မာ", "e\u{301}"]
    {
        login(addr, id, 7);
    }
    let r = login_raw(addr, "alice\u{3164}", "7");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("U+3164"), "{}", r.text());
    // A welcome names the id exactly as typed.
    let (_ws, welcome) = join(addr, "अर्जुनa", 8);
    assert_eq!(welcome["user"], "अर्जुनa");
}

/// A key costs at most 18 characters per character of the id (U+FDFA ﷺ
/// becomes 18 letters under NFKC), so the longest key of a 32-character id
/// is 576 characters.
#[test]
fn key_growth_is_bounded() {
    let mut worst = (0, 'a');
    for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
        let id = format!("a{c}"); // after a letter, so marks count too
        if check_user(&id).is_ok() {
            let n = IdKey::of(&id).as_str().chars().count() - 1;
            worst = worst.max((n, c));
        }
    }
    assert_eq!(worst, (18, '\u{FDFA}'));
    let longest = IdKey::of(&"\u{FDFA}".repeat(32));
    assert_eq!(longest.as_str().chars().count(), 18 * 32);
}

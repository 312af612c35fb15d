//! The user id rule: which ids are accepted (letters, digits and combining
//! marks of every script), which characters are refused (invisible, bidi,
//! control, format, stray marks, characters Unicode does not recommend for
//! identifiers, towers of marks), and which ids count as the same person
//! because they look alike. First as tables against the rule itself, then
//! end to end over a real socket.

mod common;

use common::*;
use wsrooms::chat::id_key::{MAX_ROUNDS, rounds_to_settle, shown_order};
use wsrooms::chat::names::{BadUserId, IdKey, IdKeys, check_user};

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
    (
        "Vietnamese, four marks on one letter",
        "e\u{323}\u{302}\u{301}\u{306}",
    ),
    ("Hangul consonants typed alone", "ㅋㅋㅋ"),
    ("Hangul, one compatibility jamo", "ㄱ"),
    (
        "Lithuanian i with its dot kept under an accent",
        "i\u{307}\u{301}",
    ),
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

/// Characters that Unicode does not recommend for identifiers (UTS #39
/// Identifier_Status not Allowed, after NFKC): refused, named as typed.
const RESTRICTED: &[(&str, char)] = &[
    ("a\u{16FE4}b", '\u{16FE4}'), // Khitan small script filler
    ("alice\u{332}", '\u{332}'),  // combining low line: an underlined e
    ("a\u{20DD}", '\u{20DD}'),    // an enclosing circle (a symbol, not writing)
    ("\u{FDFA}", '\u{FDFA}'),     // a ligature whose NFKC form holds spaces
    ("\u{1113}", '\u{1113}'),     // an old (not modern) conjoining jamo
    // Hebrew points (not Allowed: some are drawn like allowed marks that
    // UTS #39 does not tie them to, e.g. qamats qatan like qamats).
    ("\u{5D3}\u{5C7}\u{5D5}\u{5D3}", '\u{5C7}'),
    ("\u{5D3}\u{5B8}\u{5D5}\u{5D3}", '\u{5B8}'),
    ("\u{5D1}\u{5BF}\u{5D5}", '\u{5BF}'),
    ("\u{5D1}\u{5B7}\u{5D5}", '\u{5B7}'),
];

/// Towers of marks: at most 4 after a letter, never one mark twice in a row.
const MARK_TOWERS: &[(&str, BadUserId)] = &[
    ("a\u{301}\u{301}", BadUserId::RepeatedMark('\u{301}')),
    ("\u{E1}\u{301}", BadUserId::RepeatedMark('\u{301}')), // á precomposed
    (
        "a\u{300}\u{301}\u{302}\u{303}\u{304}",
        BadUserId::TooManyMarks('\u{304}'),
    ),
    (
        "\u{1EC7}\u{301}\u{306}\u{300}",
        BadUserId::TooManyMarks('\u{300}'),
    ), // ệ is 2 already
];

/// Pairs that look the same: one person in a room. The look-alike pairs of
/// the third hostile-input round come first.
const LOOK_ALIKE: &[(&str, &str)] = &[
    ("alice", "aIice"), // capital I for l
    ("paypal", "paypaI"),
    ("llya", "Ilya"),
    ("bob", "b0b"), // zero for o
    ("bob", "B0B"),
    ("b0b", "B0B"),
    ("lll", "III"),
    ("Il", "lI"),
    ("0O", "O0"),
    ("will", "vvill"),          // w drawn as two v
    ("o", "\u{CE6}"),           // Kannada digit zero
    ("alice", "ali\u{307}ce"),  // a dot above on the i's own dot
    ("\u{1D5BA}lice", "alice"), // mathematical sans-serif a
    ("\u{131}", "i"),           // dotless i
    ("\u{131}\u{307}", "i"),    // dotless i with a dot above
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
    ("i\u{307}\u{301}", "i"), // the Lithuanian dot shows beside the accent
    ("vill", "will"),
];

/// Right-to-left ids and the same letters in another order that is shown
/// alike (in a left-to-right paragraph, as the pages show ids): one person.
const SHOWN_ALIKE: &[(&str, &str)] = &[
    ("א1", "1א"),
    ("א12", "12א"),
    ("דוד1", "1דוד"),
    ("אב1", "1אב"), // both shown as 1בא
];

/// Right-to-left ids whose stored order is the other one's shown order:
/// they look different on the pages, but a log or a terminal that shows
/// the stored order would show one as the other looks on the page, so
/// they are one person too (an id has a second key, its stored order's).
const SHOWN_AS_STORED: &[(&str, &str)] =
    &[("ب١", "١ب"), ("abאב", "abבא"), ("א-ב", "ב-א"), ("אב", "בא")];

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
fn characters_unicode_does_not_recommend_are_refused() {
    for &(id, c) in RESTRICTED {
        assert_eq!(check_user(id), Err(BadUserId::Restricted(c)), "{id:?}");
    }
    // Fullwidth letters and conjoining jamo are not Allowed as typed, but
    // NFKC turns them into letters that are.
    for id in ["Ａｌｉｃｅ", "\u{1100}\u{1161}\u{11A8}", "\u{FB03}"] {
        assert_eq!(check_user(id), Ok(id), "{id:?}");
    }
}

#[test]
fn towers_of_marks_are_refused() {
    for &(id, why) in MARK_TOWERS {
        assert_eq!(check_user(id), Err(why), "{id:?}");
    }
    let tower = format!("a{}", "\u{301}".repeat(31));
    assert_eq!(check_user(&tower), Err(BadUserId::RepeatedMark('\u{301}')));
    let four = "a\u{300}\u{301}\u{302}\u{303}";
    assert_eq!(check_user(four), Ok(four), "four marks are fine");
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
fn right_to_left_ids_are_compared_as_shown() {
    for &(a, b) in SHOWN_ALIKE {
        assert!(check_user(a).is_ok() && check_user(b).is_ok());
        assert_eq!(shown_order(a), shown_order(b), "{a:?} {b:?}");
        assert_eq!(IdKey::of(a), IdKey::of(b), "{a:?} and {b:?} look alike");
    }
    // Marks stay on their letters, and ids without right-to-left letters
    // are left as stored.
    assert_eq!(shown_order("שָׁלוֹם"), "םו\u{5B9}לש\u{5B8}\u{5C1}");
    assert_eq!(shown_order("ab1"), "ab1");
    assert_ne!(IdKey::of("אב"), IdKey::of("בא"), "shown as בא and אב");
}

#[test]
fn a_right_to_left_id_is_also_known_by_its_stored_order() {
    for &(a, b) in SHOWN_AS_STORED {
        assert!(check_user(a).is_ok() && check_user(b).is_ok());
        assert_ne!(
            IdKey::of(a),
            IdKey::of(b),
            "{a:?} and {b:?} are shown apart"
        );
        assert_eq!(shown_order(a), b, "{a:?} is shown as {b:?} is stored");
        assert!(IdKeys::of(a).meets(&IdKeys::of(b)), "{a:?} {b:?}");
    }
    for &(a, b) in LOOK_ALIKE.iter().chain(SHOWN_ALIKE) {
        assert!(IdKeys::of(a).meets(&IdKeys::of(b)), "{a:?} {b:?}");
    }
    for &(a, b) in DISTINCT {
        assert!(!IdKeys::of(a).meets(&IdKeys::of(b)), "{a:?} {b:?}");
    }
    // Lower-case ids shown as stored have one key.
    for id in ["alice", "1א", "ab1", "張伟"] {
        assert_eq!(IdKeys::of(id).also, [], "{id:?}");
    }
    assert_eq!(IdKeys::of("א-ב").also.len(), 1);
}

#[test]
fn ids_that_differ_only_in_case_are_one_person() {
    // Skeleton first makes a capital I an l: ALICE's own key is allce's.
    assert_eq!(IdKey::of("ALICE"), IdKey::of("allce"));
    assert_ne!(IdKey::of("ALICE"), IdKey::of("alice"));
    // Its key with case folded first is alice's.
    for (a, b) in [
        ("ALICE", "alice"),
        ("aLICE", "Alice"),
        ("ＡＬＩＣＥ", "alice"),
        ("İSTANBUL", "istanbul"),
    ] {
        assert!(IdKeys::of(a).meets(&IdKeys::of(b)), "{a:?} {b:?}");
    }
    assert!(IdKeys::of("ALICE").meets(&IdKeys::of("allce")));
    // The Turkish dotted capital looks unlike I, but folds to i as I does.
    assert_ne!(IdKey::of("\u{130}"), IdKey::of("I"));
    assert!(IdKeys::of("\u{130}").meets(&IdKeys::of("I")));
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
fn login_refuses_every_look_alike_pair_of_round_three() {
    let addr = start(test_config());
    let pairs = LOOK_ALIKE.iter().chain(SHOWN_ALIKE).chain(SHOWN_AS_STORED);
    for (room, &(present, other)) in (100..).zip(pairs) {
        login(addr, present, room);
        let r = login_raw(addr, other, &room.to_string());
        assert_eq!(r.status, 409, "{present:?} then {other:?}");
        let named = format!("“{other}” looks like “{present}”, who is already in room {room}.");
        assert!(r.text().contains(&named), "{}", r.text());
    }
}

#[test]
fn login_names_a_restricted_character_and_a_tower_of_marks() {
    let addr = start(test_config());
    let tower = format!("a{}", "\u{301}".repeat(31));
    for (id, named) in [
        ("a\u{16FE4}b", "U+16FE4"),
        ("alice\u{332}", "U+0332"),
        (tower.as_str(), "U+0301"),
        ("a\u{300}\u{301}\u{302}\u{303}\u{304}", "U+0304"),
    ] {
        let r = login_raw(addr, id, "9");
        assert_eq!(r.status, 400, "{id:?}");
        assert!(r.text().contains(named), "{id:?}: {}", r.text());
    }
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

/// Every character reaches the key's fixed point within 4 rounds of
/// skeleton and folding (the last changing nothing), well inside
/// `MAX_ROUNDS`; and a key costs at most 7 characters per character of the
/// id (a Hangul syllable: three jamo, each a look-alike of two or three
/// letters), so the longest key of a 32-character id is 224 characters.
#[test]
fn key_rounds_and_growth_are_bounded() {
    use unicode_normalization::UnicodeNormalization;
    let mut worst = (0, 'a');
    let mut slowest = (0, 'a');
    use icu_properties::{CodePointMapData, props::GeneralCategory as Gc};
    let assigned = |c: &char| {
        let gc = CodePointMapData::<Gc>::new().get(*c);
        gc != Gc::Unassigned && gc != Gc::PrivateUse // (both keyed as they are)
    };
    for c in (0..=0x10FFFFu32)
        .filter_map(char::from_u32)
        .filter(assigned)
    {
        let alone: String = std::iter::once(c).nfkc().collect();
        let rounds = rounds_to_settle(&alone, 100).expect("settles");
        slowest = slowest.max((rounds, c));
        let id = format!("a{c}"); // after a letter, so marks count too
        if check_user(&id).is_ok() {
            let n = IdKey::of(&id).as_str().chars().count() - 1;
            worst = worst.max((n, c));
        }
    }
    assert!(slowest.0 <= 4, "{slowest:?}");
    assert!(
        2 * slowest.0 <= MAX_ROUNDS,
        "the cap leaves room for newer tables"
    );
    assert!(worst.0 <= 7, "{worst:?}");
    let longest = IdKey::of(&worst.1.to_string().repeat(32));
    assert!(longest.as_str().chars().count() <= 7 * 32);
    // Only the first 32 characters are read.
    assert_eq!(IdKey::of(&"x".repeat(1000)), IdKey::of(&"x".repeat(32)));
}

//! The rules for user ids, room numbers and chat text (SPEC §3–§4).

/// Longest user id, in code points.
pub const MAX_USER_CHARS: usize = 32;
/// Highest room number.
pub const MAX_ROOM: u32 = 999_999;

/// Checks a user id; returns it trimmed, or what is wrong with it.
pub fn check_user(raw: &str) -> Result<&str, &'static str> {
    let user = raw.trim();
    let count = user.chars().count();
    if count == 0 {
        return Err("Enter a user id.");
    }
    if count > MAX_USER_CHARS {
        return Err("A user id has at most 32 characters.");
    }
    if !user
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err("A user id may hold letters, digits, _, - and . only.");
    }
    Ok(user)
}

/// The form of an id used to compare ids: `Alice` and `alice` are one
/// person, and so are ids that only look alike because they are encoded
/// differently (Unicode compatibility normalisation, NFKC): `가` typed as one
/// syllable or as two conjoining jamo, `Ａlice` in fullwidth letters.
pub fn fold(user: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let lower: String = user.nfkc().collect::<String>().to_lowercase();
    lower.nfkc().collect()
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
/// cut to `max_chars` code points (never inside a character).
pub fn chat_text(text: &str, max_chars: usize) -> Option<&str> {
    if text.trim().is_empty() {
        return None;
    }
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => Some(&text[..cut]),
        None => Some(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        assert_eq!(check_user("  alice "), Ok("alice"));
        assert_eq!(check_user("김철수_1.x-y"), Ok("김철수_1.x-y"));
        assert!(check_user("").is_err());
        assert!(check_user("a b").is_err());
        assert!(check_user("<script>").is_err());
        assert!(check_user(&"가".repeat(32)).is_ok());
        assert!(check_user(&"가".repeat(33)).is_err());
        assert_eq!(fold("Alice"), fold("aLICE"));
        assert_eq!(
            fold("가나"),
            fold("\u{1100}\u{1161}\u{1102}\u{1161}"),
            "jamo compose"
        );
        assert_eq!(fold("Alice"), fold("Ａｌｉｃｅ"), "fullwidth");
        assert_ne!(fold("alice"), fold("alicf"));
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
        assert_eq!(chat_text("   ", 50), None);
        assert_eq!(chat_text("abc", 2), Some("ab"));
        assert_eq!(chat_text("한국어입니다", 3), Some("한국어"));
        assert_eq!(chat_text("👍👍", 1), Some("👍"));
    }
}

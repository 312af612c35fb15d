//! `application/x-www-form-urlencoded`: the login form's body and query
//! strings. `+` is a space, `%XX` a byte, and the decoded bytes must be UTF-8.

/// Decodes one percent-encoded component; `None` when it is not valid
/// percent-encoding of UTF-8.
pub fn decode(component: &str) -> Option<String> {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Finds a field; `Some(None)` when the field is there but badly encoded.
pub fn field(encoded: &str, name: &str) -> Option<Option<String>> {
    encoded
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k).as_deref() == Some(name)).then(|| decode(v))
        })
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        assert_eq!(decode("a+b%20c").as_deref(), Some("a b c"));
        assert_eq!(decode("%ED%95%9C").as_deref(), Some("한"));
        assert_eq!(decode("%ff"), None);
        assert_eq!(decode("%4"), None);
        assert_eq!(
            field("user=al%69ce&room=5", "user"),
            Some(Some("alice".into()))
        );
        assert_eq!(field("user=x&room=5", "room"), Some(Some("5".into())));
        assert_eq!(field("user=x", "room"), None);
    }
}

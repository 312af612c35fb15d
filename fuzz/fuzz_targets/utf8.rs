//! The incremental UTF-8 validator against `std::str::from_utf8`.
//!
//! Input: 1 control byte (piece size), then the bytes. Fed whole, in pieces
//! and one byte at a time, the validator must fail exactly when the bytes
//! seen so far can no longer begin valid UTF-8 (fail fast, and never
//! sooner), and accept the whole exactly when std does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsrooms::ws::utf8::Utf8Validator;

/// Valid so far: valid, or cut inside a character that may still complete.
fn prefix_ok(prefix: &[u8]) -> bool {
    match std::str::from_utf8(prefix) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

fn check<'a>(bytes: &[u8], pieces: impl Iterator<Item = &'a [u8]>) {
    let mut v = Utf8Validator::new();
    let mut seen = 0;
    for piece in pieces {
        seen += piece.len();
        let ok = v.feed(piece).is_ok();
        assert_eq!(ok, prefix_ok(&bytes[..seen]), "after {seen} bytes");
        if !ok {
            assert!(std::str::from_utf8(bytes).is_err());
            return;
        }
        assert_eq!(v.is_complete(), std::str::from_utf8(&bytes[..seen]).is_ok());
    }
    assert_eq!(v.is_complete(), std::str::from_utf8(bytes).is_ok());
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, bytes)) = data.split_first() else {
        return;
    };
    check(bytes, std::iter::once(bytes));
    check(bytes, bytes.chunks(ctl as usize % 13 + 1));
    check(bytes, bytes.chunks(1));
});

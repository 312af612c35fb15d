//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! A text message may be split into frames, and frames into TCP reads, at any
//! byte, even inside a character. [`Utf8Validator`] remembers the unfinished
//! character between pieces and fails as soon as the bytes seen so far cannot
//! be the start of valid UTF-8 (RFC 6455 §8.1, "fail fast"), not only at the
//! end of the message.
//!
//! Whole runs of bytes are checked with the standard library's fast validator;
//! only the few bytes of a character cut at a piece boundary go through the
//! byte-at-a-time state machine below.

/// The bytes are not, and cannot become, valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validation state carried between pieces of one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    /// Continuation bytes still needed to finish the current character.
    need: u8,
    /// Smallest allowed value of the next continuation byte.
    low: u8,
    /// Largest allowed value of the next continuation byte.
    high: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no character is cut open: the message may end here.
    pub fn is_complete(&self) -> bool {
        self.need == 0
    }

    /// Checks the next piece of the message.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        // Finish a character left open by the previous piece.
        while self.need > 0 {
            let Some((&b, rest)) = bytes.split_first() else {
                return Ok(());
            };
            self.step(b)?;
            bytes = rest;
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            // `error_len() == None` means "ends inside a character": valid so
            // far. Remember that character's bytes for the next piece.
            Err(e) if e.error_len().is_none() => {
                for &b in &bytes[e.valid_up_to()..] {
                    self.step(b)?;
                }
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Advances the state machine by one byte (Unicode Table 3-7).
    fn step(&mut self, b: u8) -> Result<(), InvalidUtf8> {
        if self.need > 0 {
            if b < self.low || b > self.high {
                return Err(InvalidUtf8);
            }
            self.need -= 1;
            self.low = 0x80;
            self.high = 0xBF;
            return Ok(());
        }
        let (need, low, high) = match b {
            0x00..=0x7F => (0, 0x80, 0xBF),
            0xC2..=0xDF => (1, 0x80, 0xBF),
            0xE0 => (2, 0xA0, 0xBF),
            0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
            0xED => (2, 0x80, 0x9F), // no UTF-16 surrogates
            0xF0 => (3, 0x90, 0xBF),
            0xF1..=0xF3 => (3, 0x80, 0xBF),
            0xF4 => (3, 0x80, 0x8F), // nothing above U+10FFFF
            _ => return Err(InvalidUtf8),
        };
        self.need = need;
        self.low = low;
        self.high = high;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(bytes: &[u8]) -> bool {
        let mut v = Utf8Validator::new();
        v.feed(bytes).is_ok() && v.is_complete()
    }

    fn split_everywhere(bytes: &[u8]) -> bool {
        let mut v = Utf8Validator::new();
        for b in bytes {
            if v.feed(std::slice::from_ref(b)).is_err() {
                return false;
            }
        }
        v.is_complete()
    }

    #[test]
    fn agrees_with_std_on_samples() {
        let samples: &[&[u8]] = &[
            b"",
            b"hello",
            "안녕하세요".as_bytes(),
            "κόσμε 🎉".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xed\x9f\xbf",
            b"\xef\xbf\xbf",
            b"\xf4\x8f\xbf\xbf",
            b"\xff",
            b"\xe2\x82",
        ];
        for s in samples {
            let expect = std::str::from_utf8(s).is_ok();
            assert_eq!(whole(s), expect, "{s:?}");
            assert_eq!(split_everywhere(s), expect, "{s:?}");
        }
    }

    #[test]
    fn fails_fast_on_an_impossible_prefix() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xce\xba\xe1").is_ok());
        assert!(v.feed(b"\xbd\xb9\xed\xa0").is_err()); // surrogate start
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"ok\xf5").is_err());
    }
}

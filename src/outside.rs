//! The two things the core takes from the world besides its events: the
//! wall-clock time its events carry (`at`, Unix milliseconds), fresh
//! session tokens, and the epoch of a core without a data file. Everything else it is told (bytes, instants).
//!
//! The server reads both from the system ([`Outside::system`]). A
//! simulation gives a fixed wall-clock start and a seeded token generator
//! ([`Outside::replayable`]): then the same events give the same bytes, to
//! the last one, and a seed's run can be replayed and compared byte for
//! byte.

use std::time::Instant;

use crate::token::Token;

/// Where the wall clock and the tokens come from.
#[derive(Debug, Clone)]
pub struct Outside {
    wall: Wall,
    tokens: Tokens,
}

/// The wall clock.
#[derive(Debug, Clone)]
enum Wall {
    /// The system's clock.
    System,
    /// `unix_ms` at `at`, moving with the instants the core is given.
    From { unix_ms: u64, at: Instant },
}

/// The source of session tokens.
#[derive(Debug, Clone)]
enum Tokens {
    /// The operating system's random numbers.
    Os,
    /// A SplitMix64 sequence from a seed: fine for a simulation, never
    /// for a server (anyone who knows the seed knows every token).
    Seeded(u64),
}

impl Outside {
    /// The system clock and the OS's random numbers: the server's.
    pub fn system() -> Outside {
        Outside {
            wall: Wall::System,
            tokens: Tokens::Os,
        }
    }

    /// A wall clock reading `unix_ms` at `at` and moving with the instants
    /// the core is given, and tokens drawn from `seed`: the same events
    /// then give the same bytes.
    pub fn replayable(unix_ms: u64, at: Instant, seed: u64) -> Outside {
        Outside {
            wall: Wall::From { unix_ms, at },
            tokens: Tokens::Seeded(seed),
        }
    }

    /// The wall-clock time at `now`, in Unix milliseconds.
    pub fn unix_millis(&self, now: Instant) -> u64 {
        match self.wall {
            Wall::System => crate::chat::unix_millis(),
            Wall::From { unix_ms, at } => {
                let since = now.saturating_duration_since(at).as_millis();
                unix_ms.saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
            }
        }
    }

    /// The epoch of a core without a data file: `None` for the system's
    /// (the chat state draws a random one), one drawn from the seed for a
    /// replayable one. (With a data file, the file's epoch replaces it.)
    pub fn epoch(&mut self) -> Option<u64> {
        match &mut self.tokens {
            Tokens::Os => None,
            Tokens::Seeded(state) => Some(splitmix64(state)),
        }
    }

    /// A fresh session token.
    pub fn new_token(&mut self) -> std::io::Result<Token> {
        match &mut self.tokens {
            Tokens::Os => crate::chat::new_token(),
            Tokens::Seeded(state) => {
                let mut token = [0; 16];
                token[..8].copy_from_slice(&splitmix64(state).to_le_bytes());
                token[8..].copy_from_slice(&splitmix64(state).to_le_bytes());
                Ok(token)
            }
        }
    }
}

/// One step of SplitMix64 (Steele, Lea and Flood, 2014).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_replayable_clock_moves_with_the_instants_it_is_given() {
        let t0 = Instant::now();
        let outside = Outside::replayable(1_000, t0, 7);
        assert_eq!(outside.unix_millis(t0), 1_000);
        assert_eq!(
            outside.unix_millis(t0 + Duration::from_millis(1_500)),
            2_500
        );
    }

    #[test]
    fn seeded_tokens_repeat_for_a_seed_and_differ_from_each_other() {
        let t0 = Instant::now();
        let (mut a, mut b) = (Outside::replayable(0, t0, 7), Outside::replayable(0, t0, 7));
        let first = a.new_token().unwrap();
        assert_eq!(first, b.new_token().unwrap());
        assert_ne!(first, a.new_token().unwrap());
    }
}

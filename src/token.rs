//! Session tokens and their hashes: what the cookie carries and what the
//! chat state and the data file find a session by. Below both `chat` and
//! `store`, which name it and nothing of each other.

use sha2::{Digest, Sha256};

/// A session token: 128 random bits, sent as 32 hex digits.
pub type Token = [u8; 16];

/// The SHA-256 of a session token: what the database keeps instead of the
/// token. A token is 128 random bits, so a fast hash is enough: nobody can
/// search that space for a token that fits a hash, and a copy of the file
/// holds no cookie that works. The server hashes a cookie to find a
/// restored session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// The hash of a session token.
    pub fn of(token: &Token) -> Self {
        TokenHash(Sha256::digest(token).into())
    }
}

//! One type for output bytes, whoever owns them: [`Bytes`] is what a
//! response body, an asset and an entry of the write queue all are.

use std::rc::Rc;

/// Bytes to send: embedded in the binary, shared by many receivers, or
/// owned by one connection. Cloning a `Static` or `Shared` one copies no
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bytes {
    /// Embedded in the binary (a page, a fixed answer).
    Static(&'static [u8]),
    /// Encoded once and shared (a broadcast frame: one buffer, many queues).
    Shared(Rc<[u8]>),
    /// For one connection only (a response head, a pong, a welcome).
    Owned(Vec<u8>),
}

impl Bytes {
    /// No bytes at all.
    pub const EMPTY: Bytes = Bytes::Static(b"");

    /// The bytes as one slice, whichever kind they are.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Static(bytes) => bytes,
            Bytes::Shared(bytes) => bytes,
            Bytes::Owned(bytes) => bytes,
        }
    }

    /// The bytes as a `Vec` (copied unless owned already).
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Bytes::Owned(bytes) => bytes,
            other => other.as_slice().to_vec(),
        }
    }

    /// How many bytes.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::Owned(bytes)
    }
}

impl From<&'static [u8]> for Bytes {
    fn from(bytes: &'static [u8]) -> Self {
        Bytes::Static(bytes)
    }
}

impl From<Rc<[u8]>> for Bytes {
    fn from(bytes: Rc<[u8]>) -> Self {
        Bytes::Shared(bytes)
    }
}

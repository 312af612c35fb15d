//! The write queue of one connection: what it must still send, and how many
//! bytes that is (`buffered`, like the browser's `bufferedAmount`).
//!
//! A broadcast frame is encoded once and held here as a [`Frame`]
//! (`Rc<[u8]>`): a hundred receivers hold a hundred pointers to one buffer,
//! not a hundred copies. Embedded page bytes are held as `&'static [u8]`.
//!
//! [`WriteQueue::write_to`] sends everything queued during one poll-loop
//! iteration in as few system calls as it can ("corking"): small frames are
//! copied into a gather buffer the loop owns and passes in (one for all
//! connections: an idle socket holds none) and leave in one `write`; a big
//! chunk (a page, a large frame) goes as it is, with a vectored write.
//! Copying a few KiB in user space is cheaper than the kernel walking a
//! `writev` of dozens of tiny pieces.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use crate::bytes::Bytes;

/// An encoded frame shared by every receiver.
pub type Frame = Rc<[u8]>;

/// Chunks handed to one `writev` at most.
const MAX_IOVECS: usize = 64;

/// Bytes gathered for one `write` at most; a chunk of half this or more is
/// written from where it is instead of being copied.
const GATHER_BYTES: usize = 64 * 1024;

/// Owned chunks up to this size are appended to an owned chunk before them
/// (while that one is under this size too).
const MERGE_BYTES: usize = 4096;

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything was sent.
    All,
    /// The socket is full (`WouldBlock`); the rest waits for `WRITABLE`.
    Partly,
}

/// Outgoing chunks, oldest first, and the count of bytes not yet sent.
#[derive(Debug, Default)]
pub struct WriteQueue {
    chunks: VecDeque<Bytes>,
    /// Bytes of the front chunk already sent.
    sent_of_front: usize,
    buffered: usize,
}

impl WriteQueue {
    /// An empty queue (it owns no buffer until something is pushed).
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes queued and not yet accepted by the kernel.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// True when everything queued has been handed to the kernel.
    pub fn is_empty(&self) -> bool {
        self.buffered == 0
    }

    /// Queues `chunk` after everything queued before.
    pub fn push(&mut self, chunk: Bytes) {
        let n = chunk.len();
        if n == 0 {
            return;
        }
        self.buffered += n;
        // A small frame for this connection only (a pong, an echo) joins
        // the owned bytes queued just before it: a peer sending empty pings
        // and never reading must not cost a chunk and an allocation per
        // 2-byte pong (≈40 times what `buffered` counts).
        if let Bytes::Owned(bytes) = &chunk
            && n <= MERGE_BYTES
            && let Some(Bytes::Owned(back)) = self.chunks.back_mut()
            && back.len() < MERGE_BYTES
        {
            back.extend_from_slice(bytes);
            return;
        }
        self.chunks.push_back(chunk);
    }

    /// Drops everything queued (a connection closed for backpressure gets
    /// its memory back at once) — except the rest of a frame the kernel has
    /// already taken part of (with any small frames merged into its chunk):
    /// cutting it would corrupt the stream, and the close frame queued next
    /// would be read as its payload.
    pub fn clear(&mut self) {
        let started = if self.sent_of_front > 0 {
            self.chunks.pop_front()
        } else {
            None
        };
        self.chunks = VecDeque::new();
        self.buffered = 0;
        match started {
            Some(front) => {
                self.buffered = front.len() - self.sent_of_front;
                self.chunks.push_back(front);
            }
            None => self.sent_of_front = 0,
        }
    }

    /// Writes queued bytes until the queue is empty or `w` would block.
    /// `gather` is the loop's buffer for copying small chunks together (its
    /// contents do not matter before or after).
    pub fn write_to<W: Write>(&mut self, w: &mut W, gather: &mut Vec<u8>) -> io::Result<Flushed> {
        while let Some(front) = self.chunks.front() {
            let first = front.len() - self.sent_of_front;
            if self.chunks.len() > 1 && first < GATHER_BYTES / 2 {
                if !self.write_gathered(w, gather)? {
                    return Ok(Flushed::Partly);
                }
                continue;
            }
            let written = {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let mut n = 0;
                for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                    let bytes = chunk.as_slice();
                    slices[i] = IoSlice::new(if i == 0 {
                        &bytes[self.sent_of_front..]
                    } else {
                        bytes
                    });
                    n += 1;
                }
                match w.write_vectored(&slices[..n]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(written) => written,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Partly),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            self.advance(written);
        }
        // An idle connection holds no buffer at all (one allocation per
        // busy flush costs far less than the write it follows).
        self.chunks = VecDeque::new();
        Ok(Flushed::All)
    }

    /// Copies chunks from the front into `buf` (up to `GATHER_BYTES`) and
    /// writes them. Returns false when `w` would block.
    fn write_gathered<W: Write>(&mut self, w: &mut W, buf: &mut Vec<u8>) -> io::Result<bool> {
        buf.clear();
        for (i, chunk) in self.chunks.iter().enumerate() {
            let bytes = chunk.as_slice();
            let bytes = if i == 0 {
                &bytes[self.sent_of_front..]
            } else {
                bytes
            };
            if i > 0 && buf.len() + bytes.len() > GATHER_BYTES {
                break;
            }
            buf.extend_from_slice(bytes);
        }
        let mut off = 0;
        while off < buf.len() {
            match w.write(&buf[off..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.advance(n);
                    off += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Forgets `n` bytes that were written.
    fn advance(&mut self, mut n: usize) {
        self.buffered -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.len() - self.sent_of_front;
            if n >= left {
                n -= left;
                self.chunks.pop_front();
                self.sent_of_front = 0;
            } else {
                self.sent_of_front += n;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call, then blocks.
    struct Trickle {
        out: Vec<u8>,
        cap: usize,
        calls: usize,
        budget: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls += 1;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.cap - n).min(self.budget);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                self.budget -= take;
                if n == self.cap || self.budget == 0 {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_order_and_count() {
        let mut q = WriteQueue::new();
        let shared: Frame = Rc::from(&b"shared-"[..]);
        q.push(Bytes::Owned(b"head-".to_vec()));
        q.push(Bytes::Shared(shared.clone()));
        q.push(Bytes::Static(b"static"));
        assert_eq!(q.buffered(), 18);
        let mut w = Trickle {
            out: Vec::new(),
            cap: 4,
            calls: 0,
            budget: 10,
        };
        assert_eq!(
            q.write_to(&mut w, &mut Vec::new()).unwrap(),
            Flushed::Partly
        );
        assert_eq!(q.buffered(), 8);
        w.budget = 100;
        assert_eq!(q.write_to(&mut w, &mut Vec::new()).unwrap(), Flushed::All);
        assert_eq!(w.out, b"head-shared-static");
        assert_eq!(q.buffered(), 0);
    }

    #[test]
    fn clear_keeps_the_rest_of_a_started_frame() {
        let mut q = WriteQueue::new();
        q.push(Bytes::Owned(b"frame-one".to_vec()));
        // (A broadcast frame: small owned ones would join frame-one's chunk.)
        q.push(Bytes::Shared(Rc::from(&b"frame-two"[..])));
        let mut w = Trickle {
            out: Vec::new(),
            cap: 4,
            calls: 0,
            budget: 4,
        };
        assert_eq!(
            q.write_to(&mut w, &mut Vec::new()).unwrap(),
            Flushed::Partly
        );
        q.clear();
        assert_eq!(q.buffered(), 5, "the rest of frame-one only");
        q.push(Bytes::Static(b"close"));
        w.budget = 100;
        assert_eq!(q.write_to(&mut w, &mut Vec::new()).unwrap(), Flushed::All);
        assert_eq!(w.out, b"frame-oneclose");
        // A queue with nothing started empties completely.
        q.push(Bytes::Static(b"x"));
        q.clear();
        assert!(q.is_empty());
    }

    #[test]
    fn tiny_owned_frames_share_chunks() {
        let mut q = WriteQueue::new();
        let mut expected = Vec::new();
        for i in 0..10_000u32 {
            let pong = vec![0x8A, (i % 100) as u8];
            expected.extend_from_slice(&pong);
            q.push(Bytes::Owned(pong));
            if i == 5_000 {
                q.push(Bytes::Static(b"static"));
                expected.extend_from_slice(b"static");
            }
        }
        assert_eq!(q.buffered(), expected.len());
        assert!(q.chunks.len() <= 12, "{} chunks", q.chunks.len());
        let mut w = Trickle {
            out: Vec::new(),
            cap: 1000,
            calls: 0,
            budget: usize::MAX,
        };
        assert_eq!(q.write_to(&mut w, &mut Vec::new()).unwrap(), Flushed::All);
        assert_eq!(w.out, expected);
    }

    #[test]
    fn many_frames_one_call() {
        let mut q = WriteQueue::new();
        let f: Frame = Rc::from(&b"0123456789"[..]);
        for _ in 0..50 {
            q.push(Bytes::Shared(f.clone()));
        }
        assert_eq!(Rc::strong_count(&f), 51, "shared, not copied");
        let mut w = Trickle {
            out: Vec::new(),
            cap: 1 << 20,
            calls: 0,
            budget: 1 << 20,
        };
        q.write_to(&mut w, &mut Vec::new()).unwrap();
        assert_eq!(w.calls, 1);
        assert_eq!(w.out.len(), 500);
        assert_eq!(Rc::strong_count(&f), 1);
    }

    #[test]
    fn more_frames_than_iovecs_one_call_and_big_chunks_in_order() {
        let mut q = WriteQueue::new();
        let f: Frame = Rc::from(&b"0123456789"[..]);
        for _ in 0..500 {
            q.push(Bytes::Shared(f.clone()));
        }
        let mut w = Trickle {
            out: Vec::new(),
            cap: 1 << 20,
            calls: 0,
            budget: 1 << 20,
        };
        assert_eq!(q.write_to(&mut w, &mut Vec::new()).unwrap(), Flushed::All);
        assert_eq!(w.calls, 1, "500 small frames, one write");
        assert_eq!(w.out.len(), 5000);

        // Small, big, small, big: every byte once, in order, through short writes.
        let big_a = vec![b'a'; 40_000];
        let big_b = vec![b'b'; 70_000];
        let mut expected = Vec::new();
        for (i, chunk) in [
            b"head".to_vec(),
            big_a,
            b"mid".to_vec(),
            big_b,
            b"tail".to_vec(),
        ]
        .into_iter()
        .enumerate()
        {
            expected.extend_from_slice(&chunk);
            q.push(if i % 2 == 0 {
                Bytes::Shared(Rc::from(chunk))
            } else {
                Bytes::Owned(chunk)
            });
        }
        let mut w = Trickle {
            out: Vec::new(),
            cap: 7_777,
            calls: 0,
            budget: 50_000,
        };
        assert_eq!(
            q.write_to(&mut w, &mut Vec::new()).unwrap(),
            Flushed::Partly
        );
        assert_eq!(q.buffered(), expected.len() - 50_000);
        w.budget = usize::MAX;
        assert_eq!(q.write_to(&mut w, &mut Vec::new()).unwrap(), Flushed::All);
        assert_eq!(w.out, expected);
        assert!(q.is_empty());
    }
}

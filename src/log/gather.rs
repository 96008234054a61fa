//! The bytes of one positional write, gathered without copying entry bodies: record headers,
//! padding and small bodies are copied into one buffer, and larger bodies are kept as shared
//! references to the batches that hold them, so the write (`pwritev`) reads them in place.
//!
//! Invariants:
//! - The write's bytes are the pieces in order; [`GatherWrite::len`] is their total.
//! - A shared body is an immutable [`Bytes`]: what is written is what was staged, however
//!   long the write waits for the writer thread.
//! - No piece is empty (a large body is at least [`SHARED_BODY_BYTES_MIN`] bytes), and
//!   consecutive copied pieces are one piece, so a write of small records is one slice.

use std::io::IoSlice;
use std::ops::Range;

use bytes::Bytes;

/// Bodies shorter than this are copied: below it, one more slice costs more than the copy.
pub const SHARED_BODY_BYTES_MIN: usize = 1024;

#[derive(Debug)]
enum Piece {
    /// A range of [`GatherWrite::copied`].
    Copied(Range<usize>),
    Shared(Bytes),
}

/// Bytes to write at one offset (see the module docs).
#[derive(Debug)]
pub struct GatherWrite {
    copied: Vec<u8>,
    pieces: Vec<Piece>,
    len: usize,
}

impl GatherWrite {
    /// An empty write whose copied bytes start with room for `capacity`.
    pub fn with_capacity(capacity: usize) -> GatherWrite {
        GatherWrite {
            copied: Vec::with_capacity(capacity),
            pieces: Vec::new(),
            len: 0,
        }
    }

    /// Total bytes of the write.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the write has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held in the write's own buffer (headers, padding, small bodies).
    pub fn copied_len(&self) -> usize {
        self.copied.len()
    }

    /// Appends a copy of `bytes`.
    pub fn copy(&mut self, bytes: &[u8]) {
        let start = self.copied.len();
        self.copied.extend_from_slice(bytes);
        self.extend_copied(start);
    }

    /// Appends `n` zero bytes.
    pub fn zeros(&mut self, n: usize) {
        let start = self.copied.len();
        self.copied.resize(start + n, 0);
        self.extend_copied(start);
    }

    /// Appends `body`: shared if it is at least [`SHARED_BODY_BYTES_MIN`] long, else copied.
    pub fn body(&mut self, body: &Bytes) {
        if body.len() < SHARED_BODY_BYTES_MIN {
            self.copy(body);
        } else {
            self.len += body.len();
            self.pieces.push(Piece::Shared(body.clone()));
        }
    }

    fn extend_copied(&mut self, start: usize) {
        let end = self.copied.len();
        if end == start {
            return;
        }
        self.len += end - start;
        match self.pieces.last_mut() {
            Some(Piece::Copied(range)) if range.end == start => range.end = end,
            _ => self.pieces.push(Piece::Copied(start..end)),
        }
    }

    /// The write's bytes as slices, in order.
    pub fn slices(&self) -> Vec<IoSlice<'_>> {
        self.pieces
            .iter()
            .map(|piece| match piece {
                Piece::Copied(range) => IoSlice::new(&self.copied[range.clone()]),
                Piece::Shared(bytes) => IoSlice::new(bytes),
            })
            .collect()
    }

    /// The write's bytes in one buffer (for tests and diagnostics).
    pub fn to_vec(&self) -> Vec<u8> {
        self.slices().iter().flat_map(|s| s.iter().copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_come_out_in_order_with_large_bodies_shared() {
        let large = Bytes::from(vec![7u8; SHARED_BODY_BYTES_MIN]);
        let small = Bytes::from_static(b"tiny");
        let mut write = GatherWrite::with_capacity(0);
        write.copy(b"head");
        write.body(&large);
        write.zeros(3);
        write.copy(b"next");
        write.body(&small);
        write.body(&large);
        write.zeros(0);
        let mut expected = b"head".to_vec();
        expected.extend_from_slice(&large);
        expected.extend_from_slice(&[0, 0, 0]);
        expected.extend_from_slice(b"nexttiny");
        expected.extend_from_slice(&large);
        assert_eq!(write.to_vec(), expected);
        assert_eq!(write.len(), expected.len());
        // Large bodies are not copied; the copied pieces between them are one slice, and
        // nothing adds an empty one.
        assert_eq!(write.copied_len(), expected.len() - 2 * large.len());
        let slices = write.slices();
        assert_eq!(slices.len(), 4);
        assert_eq!(slices[1].as_ptr(), large.as_ptr());
        assert_eq!(slices[3].as_ptr(), large.as_ptr());
    }
}

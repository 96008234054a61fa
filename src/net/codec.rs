//! Bounds-checked little-endian reading and writing shared by the body codecs.
//!
//! Every read goes through [`Reader`], which checks the remaining length before touching a
//! byte, so a body codec cannot index out of bounds whatever the input.

use std::ops::Range;

/// A read that needed more bytes than the body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Truncated {
    /// Offset of the read.
    pub at: usize,
    /// Bytes the read needed.
    pub need: usize,
    /// Length of the whole body.
    pub len: usize,
}

/// A cursor over a body.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Moves to `pos`, which must lie within the body (callers check it first).
    pub fn seek(&mut self, pos: usize) {
        assert!(pos <= self.bytes.len(), "seek beyond the body");
        self.pos = pos;
    }

    /// The range of the next `n` bytes, consumed.
    pub fn range(&mut self, n: usize) -> Result<Range<usize>, Truncated> {
        if n > self.remaining() {
            return Err(Truncated {
                at: self.pos,
                need: n,
                len: self.bytes.len(),
            });
        }
        let range = self.pos..self.pos + n;
        self.pos += n;
        Ok(range)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        let range = self.range(n)?;
        Ok(&self.bytes[range])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        Ok(self.take(N)?.try_into().expect("exact length"))
    }

    pub fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Truncated> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, Truncated> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, Truncated> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Consumes `n` bytes and says whether they are all zero.
    pub fn zeros(&mut self, n: usize) -> Result<bool, Truncated> {
        Ok(self.take(n)?.iter().all(|&b| b == 0))
    }
}

pub(crate) fn put_u8(out: &mut Vec<u8>, value: u8) {
    out.push(value);
}

pub(crate) fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_zeros(out: &mut Vec<u8>, n: usize) {
    out.resize(out.len() + n, 0);
}

/// Overwrites the little-endian u32 at `at` (a count reserved earlier).
pub(crate) fn patch_u32(out: &mut [u8], at: usize, value: u32) {
    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

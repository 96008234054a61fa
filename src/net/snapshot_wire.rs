//! Snapshot transfer traffic: pieces of a snapshot file ([`FrameKind::SnapshotChunk`], leader
//! to follower) and the receiver's progress ([`FrameKind::SnapshotAck`], follower to leader).
//!
//! A snapshot travels as the raw bytes of the sender's snapshot file, in contiguous chunks from
//! offset 0; the receiver verifies the whole file before installing it (see
//! [`crate::snapshot::RawSnapshotWriter`]), so these frames carry no checksum of their own
//! beyond the frame's.
//!
//! # Body layouts (explicit little-endian)
//!
//! ```text
//! SnapshotChunk (56 B + len): from: u64 | group: u64 | term: u64 | index: u64 | offset: u64
//!                             | total_len: u64 | len: u32 | reserved: u32 (0) | len bytes
//! SnapshotAck (40 B):         from: u64 | group: u64 | index: u64 | received: u64
//!                             | flags: u8 (bit0 done) | reserved: 7 B (0)
//! ```
//!
//! # Invariants
//!
//! - The encoding is canonical: reserved bytes and unknown flag bits are zero and checked, so
//!   decode(encode(x)) == x and whatever decodes re-encodes to the same bytes.
//! - A chunk carries 1 to [`SNAPSHOT_CHUNK_BYTES_MAX`] bytes, `len` equals the bytes that follow
//!   (nothing trails them), and `offset + len <= total_len` without overflow.
//! - Terms are at most [`TERM_MAX`]; snapshot indexes lie in `1..=`[`INDEX_MAX`].
//! - Decoding never panics and allocates nothing: a chunk's bytes are a zero-copy slice of the
//!   frame body.

use bytes::Bytes;

use crate::constants::{INDEX_MAX, SNAPSHOT_CHUNK_BYTES_MAX, TERM_MAX};
use crate::net::codec::{put_u32, put_u64, put_u8, put_zeros, Reader, Truncated};
use crate::net::frame::{begin_frame, Frame, FrameError, FrameKind};
use crate::types::{GroupId, LogIndex, NodeId, Term};

/// Fixed bytes of a chunk body before its data.
pub const CHUNK_FIXED_BYTES: usize = 56;
/// Bytes of an acknowledgement body.
pub const ACK_BYTES: usize = 40;

const FLAG_DONE: u8 = 1;

/// Bytes `offset..offset + bytes.len()` of `from`'s snapshot file of `group` at `index`, whose
/// whole length is `total_len`, sent in leader term `term`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    pub from: NodeId,
    pub group: GroupId,
    pub term: Term,
    pub index: LogIndex,
    pub offset: u64,
    pub total_len: u64,
    pub bytes: Bytes,
}

/// The receiver `from` holds the first `received` bytes of the snapshot of `group` at `index`;
/// `done`: the whole file verified and durable in its store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotAck {
    pub from: NodeId,
    pub group: GroupId,
    pub index: LogIndex,
    pub received: u64,
    pub done: bool,
}

/// Why a snapshot frame could not be decoded (or encoded). A decoding error means the peer is
/// broken or hostile: close the connection.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotWireError {
    #[error("frame of kind {0:?} where a snapshot frame was expected")]
    WrongKind(FrameKind),
    #[error("snapshot frame truncated: {need} bytes needed at offset {at} of a {len}-byte body")]
    Truncated { at: usize, need: usize, len: usize },
    #[error("non-canonical snapshot frame: {0} must be zero")]
    NotZero(&'static str),
    #[error("snapshot chunk of {len} bytes (1 to {SNAPSHOT_CHUNK_BYTES_MAX} allowed)")]
    ChunkLength { len: u64 },
    #[error("snapshot chunk announces {announced} bytes but {present} follow")]
    LengthMismatch { announced: u32, present: usize },
    #[error("snapshot chunk {offset}+{len} lies beyond the file's {total_len} bytes")]
    BeyondFile {
        offset: u64,
        len: u32,
        total_len: u64,
    },
    #[error("snapshot frame carries a term above {TERM_MAX} or an index outside 1..={INDEX_MAX}")]
    BeyondLimits,
    #[error("{0} trailing bytes after a snapshot acknowledgement")]
    TrailingBytes(usize),
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl From<Truncated> for SnapshotWireError {
    fn from(t: Truncated) -> Self {
        SnapshotWireError::Truncated {
            at: t.at,
            need: t.need,
            len: t.len,
        }
    }
}

fn check_limits(term: Term, index: LogIndex) -> Result<(), SnapshotWireError> {
    if term.0 > TERM_MAX || index.0 == 0 || index.0 > INDEX_MAX {
        return Err(SnapshotWireError::BeyondLimits);
    }
    Ok(())
}

impl SnapshotChunk {
    /// Appends this chunk as one frame to `out`; returns its wire length. A chunk that breaks
    /// the invariants of the module documentation is an error and appends nothing.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<usize, SnapshotWireError> {
        let len = self.bytes.len();
        if len == 0 || len > SNAPSHOT_CHUNK_BYTES_MAX {
            return Err(SnapshotWireError::ChunkLength { len: len as u64 });
        }
        if self
            .offset
            .checked_add(len as u64)
            .is_none_or(|end| end > self.total_len)
        {
            return Err(SnapshotWireError::BeyondFile {
                offset: self.offset,
                len: len as u32,
                total_len: self.total_len,
            });
        }
        check_limits(self.term, self.index)?;
        let frame = begin_frame(out, FrameKind::SnapshotChunk);
        put_u64(out, self.from.0);
        put_u64(out, self.group.0);
        put_u64(out, self.term.0);
        put_u64(out, self.index.0);
        put_u64(out, self.offset);
        put_u64(out, self.total_len);
        put_u32(out, len as u32);
        put_u32(out, 0);
        out.extend_from_slice(&self.bytes);
        Ok(frame.finish(out)?)
    }

    /// Decodes a frame that must be of kind [`FrameKind::SnapshotChunk`].
    pub fn decode_frame(frame: &Frame) -> Result<SnapshotChunk, SnapshotWireError> {
        if frame.kind != FrameKind::SnapshotChunk {
            return Err(SnapshotWireError::WrongKind(frame.kind));
        }
        SnapshotChunk::decode(&frame.body)
    }

    /// Decodes a chunk body; the chunk's bytes are a zero-copy slice of `body`.
    pub fn decode(body: &Bytes) -> Result<SnapshotChunk, SnapshotWireError> {
        let mut reader = Reader::new(body);
        let from = NodeId(reader.u64()?);
        let group = GroupId(reader.u64()?);
        let term = Term(reader.u64()?);
        let index = LogIndex(reader.u64()?);
        let offset = reader.u64()?;
        let total_len = reader.u64()?;
        let len = reader.u32()?;
        if !reader.zeros(4)? {
            return Err(SnapshotWireError::NotZero("chunk reserved bytes"));
        }
        check_limits(term, index)?;
        if len == 0 || len as usize > SNAPSHOT_CHUNK_BYTES_MAX {
            return Err(SnapshotWireError::ChunkLength { len: len as u64 });
        }
        if reader.remaining() != len as usize {
            return Err(SnapshotWireError::LengthMismatch {
                announced: len,
                present: reader.remaining(),
            });
        }
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > total_len)
        {
            return Err(SnapshotWireError::BeyondFile {
                offset,
                len,
                total_len,
            });
        }
        let range = reader.range(len as usize)?;
        Ok(SnapshotChunk {
            from,
            group,
            term,
            index,
            offset,
            total_len,
            bytes: body.slice(range),
        })
    }
}

impl SnapshotAck {
    /// Appends this acknowledgement as one frame to `out`; returns its wire length.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<usize, SnapshotWireError> {
        check_limits(Term(0), self.index)?;
        let frame = begin_frame(out, FrameKind::SnapshotAck);
        put_u64(out, self.from.0);
        put_u64(out, self.group.0);
        put_u64(out, self.index.0);
        put_u64(out, self.received);
        put_u8(out, if self.done { FLAG_DONE } else { 0 });
        put_zeros(out, 7);
        Ok(frame.finish(out)?)
    }

    /// Decodes a frame that must be of kind [`FrameKind::SnapshotAck`].
    pub fn decode_frame(frame: &Frame) -> Result<SnapshotAck, SnapshotWireError> {
        if frame.kind != FrameKind::SnapshotAck {
            return Err(SnapshotWireError::WrongKind(frame.kind));
        }
        SnapshotAck::decode(&frame.body)
    }

    /// Decodes an acknowledgement body.
    pub fn decode(body: &[u8]) -> Result<SnapshotAck, SnapshotWireError> {
        let mut reader = Reader::new(body);
        let from = NodeId(reader.u64()?);
        let group = GroupId(reader.u64()?);
        let index = LogIndex(reader.u64()?);
        let received = reader.u64()?;
        let flags = reader.u8()?;
        if flags & !FLAG_DONE != 0 {
            return Err(SnapshotWireError::NotZero("unknown acknowledgement flags"));
        }
        if !reader.zeros(7)? {
            return Err(SnapshotWireError::NotZero("acknowledgement reserved bytes"));
        }
        if reader.remaining() != 0 {
            return Err(SnapshotWireError::TrailingBytes(reader.remaining()));
        }
        check_limits(Term(0), index)?;
        Ok(SnapshotAck {
            from,
            group,
            index,
            received,
            done: flags & FLAG_DONE != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::frame::FrameDecoder;

    fn decode_one(out: &[u8]) -> Frame {
        let mut decoder = FrameDecoder::new();
        decoder.push(out);
        decoder.next_frame().unwrap().unwrap()
    }

    fn chunk() -> SnapshotChunk {
        SnapshotChunk {
            from: NodeId(1),
            group: GroupId(3),
            term: Term(7),
            index: LogIndex(100),
            offset: 10,
            total_len: 15,
            bytes: Bytes::from_static(b"hello"),
        }
    }

    #[test]
    fn chunks_and_acks_round_trip() {
        let mut out = Vec::new();
        chunk().encode(&mut out).unwrap();
        let frame = decode_one(&out);
        assert_eq!(frame.kind, FrameKind::SnapshotChunk);
        assert_eq!(SnapshotChunk::decode_frame(&frame).unwrap(), chunk());
        let ack = SnapshotAck {
            from: NodeId(2),
            group: GroupId(3),
            index: LogIndex(100),
            received: 15,
            done: true,
        };
        out.clear();
        assert_eq!(ack.encode(&mut out).unwrap(), 32 + ACK_BYTES + 8);
        assert_eq!(SnapshotAck::decode_frame(&decode_one(&out)).unwrap(), ack);
    }

    #[test]
    fn chunks_beyond_the_file_or_empty_are_refused() {
        let mut out = Vec::new();
        let mut beyond = chunk();
        beyond.offset = 11;
        assert!(matches!(
            beyond.encode(&mut out),
            Err(SnapshotWireError::BeyondFile { .. })
        ));
        let mut empty = chunk();
        empty.bytes = Bytes::new();
        assert!(empty.encode(&mut out).is_err());
        let mut overflow = chunk();
        overflow.offset = u64::MAX - 1;
        overflow.total_len = u64::MAX;
        assert!(overflow.encode(&mut out).is_err());
        assert!(out.is_empty());
    }
}

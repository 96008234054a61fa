//! Record format: one 64-byte header followed by a body, padded to [`RECORD_ALIGN`].
//!
//! Invariants:
//! - Records start at 16-byte aligned segment offsets and the header is 64 bytes, so a body
//!   starts 16-byte aligned: an entries body read into an aligned buffer is a valid
//!   [`EntryBatch`](crate::batch::EntryBatch) body without copying or re-encoding.
//! - The body of an entries record is the batch's encoded body **verbatim** (the whole archive;
//!   `skip`/`count` select the window), so a follower stores the bytes it received.
//! - The CRC-32 covers header bytes `0..60` and the unpadded body. Padding is zero.
//! - `segment` is the sequence of the segment the record was written to, so a record is bound
//!   to one life of its file: a recycled segment file (see [`segment`](super::segment)) still
//!   holds records of its earlier lives, and those carry an older sequence and never validate
//!   as part of the log. The CRC covers the field.
//! - An all-zero header marks the end of written data: every flush writes one (at most
//!   [`RECORD_HEADER_BYTES`] zeros, cut at the segment's end) right after its last record,
//!   and the next flush overwrites it with its first record.
//! - `flush` is the sequence number of the flush that wrote the record; it never decreases
//!   along the log. Recovery uses it to tell a torn final write from corruption.
//!
//! Header layout (little-endian):
//!
//! | offset | field | notes |
//! |---|---|---|
//! | 0 | magic `u32` | [`RECORD_MAGIC`] |
//! | 4 | kind `u8` + 3 zero bytes | 1 entries, 2 truncate, 3 compact |
//! | 8 | body_len `u32` | unpadded |
//! | 12 | count `u32` | entries in the window (0 for control records) |
//! | 16 | group `u64` | |
//! | 24 | first `u64` | entries: first index; truncate: first removed; compact: last compacted |
//! | 32 | term `u64` | entries: their term; compact: term at the compacted index |
//! | 40 | flush `u64` | flush sequence |
//! | 48 | skip `u32` | window start within the body's entries |
//! | 52 | segment `u64` | sequence of the segment written to |
//! | 60 | crc `u32` | |

use bytes::Bytes;

use super::gather::GatherWrite;
use crate::types::{GroupId, LogIndex, Term};

/// First four bytes of every record header ("RRLG" on disk).
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"RRLG");
/// Bytes of a record header.
pub const RECORD_HEADER_BYTES: usize = 64;
/// Offset of the `segment` field in a record header.
pub const SEGMENT_FIELD: usize = 52;
/// Alignment of record starts, and so of bodies.
pub const RECORD_ALIGN: usize = 16;

/// What a record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A window of an entry batch.
    Entries,
    /// Remove the group's entries from `first` on.
    Truncate,
    /// Entries up to and including `first` (term `term`) are compacted.
    Compact,
}

impl RecordKind {
    fn code(self) -> u8 {
        match self {
            RecordKind::Entries => 1,
            RecordKind::Truncate => 2,
            RecordKind::Compact => 3,
        }
    }

    fn from_code(code: u8) -> Option<RecordKind> {
        match code {
            1 => Some(RecordKind::Entries),
            2 => Some(RecordKind::Truncate),
            3 => Some(RecordKind::Compact),
            _ => None,
        }
    }
}

/// A decoded record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: RecordKind,
    pub body_len: u32,
    pub count: u32,
    pub group: GroupId,
    pub first: LogIndex,
    pub term: Term,
    pub flush: u64,
    pub skip: u32,
    /// Sequence of the segment the record belongs to.
    pub segment: u64,
}

/// `len` rounded up to [`RECORD_ALIGN`].
pub fn pad_to_align(len: usize) -> usize {
    len.div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

impl RecordHeader {
    /// Total bytes of the record on disk (header, body and padding).
    pub fn record_len(&self) -> usize {
        RECORD_HEADER_BYTES + pad_to_align(self.body_len as usize)
    }

    /// Last index covered by an entries record.
    pub fn last(&self) -> LogIndex {
        self.first.plus(u64::from(self.count.max(1)) - 1)
    }

    /// The indexes the record names: `first ..= last` for entries, `first` alone for a
    /// truncation or compaction.
    pub fn indexes(&self) -> (LogIndex, LogIndex) {
        match self.kind {
            RecordKind::Entries => (self.first, self.last()),
            RecordKind::Truncate | RecordKind::Compact => (self.first, self.first),
        }
    }

    /// The header bytes for `body`, checksum included.
    pub fn encode(&self, body: &[u8]) -> [u8; RECORD_HEADER_BYTES] {
        debug_assert_eq!(body.len(), self.body_len as usize);
        let mut h = [0u8; RECORD_HEADER_BYTES];
        h[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        h[4] = self.kind.code();
        h[8..12].copy_from_slice(&self.body_len.to_le_bytes());
        h[12..16].copy_from_slice(&self.count.to_le_bytes());
        h[16..24].copy_from_slice(&self.group.0.to_le_bytes());
        h[24..32].copy_from_slice(&self.first.0.to_le_bytes());
        h[32..40].copy_from_slice(&self.term.0.to_le_bytes());
        h[40..48].copy_from_slice(&self.flush.to_le_bytes());
        h[48..52].copy_from_slice(&self.skip.to_le_bytes());
        h[SEGMENT_FIELD..SEGMENT_FIELD + 8].copy_from_slice(&self.segment.to_le_bytes());
        let crc = checksum(&h, body);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Parses a header without checking the CRC. Fails on a wrong magic, unknown kind,
    /// non-zero reserved bytes or inconsistent lengths.
    pub fn decode(h: &[u8]) -> Result<RecordHeader, &'static str> {
        if h.len() < RECORD_HEADER_BYTES {
            return Err("header cut short");
        }
        if u32_at(h, 0) != RECORD_MAGIC {
            return Err("bad record magic");
        }
        let kind = RecordKind::from_code(h[4]).ok_or("unknown record kind")?;
        if h[5..8] != [0; 3] {
            return Err("non-zero reserved header bytes");
        }
        let header = RecordHeader {
            kind,
            body_len: u32_at(h, 8),
            count: u32_at(h, 12),
            group: GroupId(u64_at(h, 16)),
            first: LogIndex(u64_at(h, 24)),
            term: Term(u64_at(h, 32)),
            flush: u64_at(h, 40),
            skip: u32_at(h, 48),
            segment: u64_at(h, SEGMENT_FIELD),
        };
        match kind {
            RecordKind::Entries => {
                if header.count == 0 || header.body_len == 0 || header.first.0 == 0 {
                    return Err("entries record without entries");
                }
                if header
                    .first
                    .0
                    .checked_add(u64::from(header.count))
                    .is_none()
                {
                    return Err("index range overflows");
                }
            }
            RecordKind::Truncate | RecordKind::Compact => {
                if header.count != 0 || header.body_len != 0 || header.skip != 0 {
                    return Err("control record with a body");
                }
            }
        }
        Ok(header)
    }

    /// Whether the stored CRC of header bytes `h` matches `body`.
    pub fn crc_matches(h: &[u8], body: &[u8]) -> bool {
        u32_at(h, 60) == checksum(h, body)
    }
}

/// Appends the record (header, body, zero padding) to `out`; a large body is shared, not
/// copied (see [`GatherWrite`]).
pub fn encode_record(out: &mut GatherWrite, header: &RecordHeader, body: &Bytes) {
    out.copy(&header.encode(body));
    out.body(body);
    out.zeros(pad_to_align(body.len()) - body.len());
}

fn checksum(h: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&h[..60]);
    hasher.update(body);
    hasher.finalize()
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_flips() {
        let body = [7u8; 20];
        let header = RecordHeader {
            kind: RecordKind::Entries,
            body_len: 20,
            count: 3,
            group: GroupId(9),
            first: LogIndex(5),
            term: Term(2),
            flush: 11,
            skip: 1,
            segment: 4,
        };
        let mut write = GatherWrite::with_capacity(0);
        encode_record(&mut write, &header, &Bytes::copy_from_slice(&body));
        let out = write.to_vec();
        assert_eq!(out.len(), header.record_len());
        assert_eq!(out.len() % RECORD_ALIGN, 0);
        assert_eq!(RecordHeader::decode(&out).unwrap(), header);
        assert!(RecordHeader::crc_matches(&out, &body));
        let mut flipped = body;
        flipped[3] ^= 1;
        assert!(!RecordHeader::crc_matches(&out, &flipped));
        assert_eq!(header.last(), LogIndex(7));
    }
}

//! Segment files: naming, the checksummed segment header, creation.
//!
//! Invariants:
//! - A segment is named `{sequence:020}.seg`, so lexical order is log order; sequences of the
//!   live segments are consecutive (a gap is corruption, a missing prefix is compaction).
//! - A segment is created complete under a temporary name (full size, header written, fsynced),
//!   then renamed into place, then the directory is fsynced. A file with the final name
//!   therefore always had a valid header and full size when it appeared; leftover temporaries
//!   are incomplete creations and are deleted on open, as are spares (files the writer keeps
//!   for future segments, named `*.seg.spare`: one prepared ahead of need, complete or not,
//!   and retired segments kept for recycling).
//! - A new segment is either zero-filled or **recycled**: a whole segment deleted by compaction
//!   is renamed to a spare instead of being removed (by default at most [`RETIRED_KEEP`] at a
//!   time), and
//!   later gets a new header (new sequence, `recycled` flag) and an end marker (a zero record
//!   header) right after it, instead of a zero-fill. Its old records stay behind the marker;
//!   they carry their old segment sequence (see [`record`](super::record)), so they never
//!   validate as records of the new life. Zero-filling is the fallback when nothing is left to
//!   recycle. Either way the blocks are already written, which makes later `fdatasync`s cheap
//!   (rather than `fallocate`: no extent conversion or size change must be journaled), and a
//!   recycled segment is not written twice.
//! - The header (64 bytes) holds magic, format version, cluster id, shard, sequence, size and
//!   flags, with a CRC-32 of the first 60 bytes. Records start right after it. A header of
//!   another format version is refused ([`Error::UnsupportedFormat`]): version 2 added the
//!   record's segment field and recycling; version 1 segments are not read.
//!
//! Header layout (little-endian): magic `[u8; 8]` at 0, version `u32` at 8, shard `u32` at 12,
//! cluster `u64` at 16, sequence `u64` at 24, size `u64` at 32, flags `u32` at 40 (bit 0:
//! recycled; other bits zero), zeros 44..60, crc `u32` at 60.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::io::{open_rw, Files};
use super::record::{u32_at, u64_at, RECORD_HEADER_BYTES};
use crate::types::ShardId;

/// Magic at the start of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RRAFTSEG";
/// Format version written into segment headers; segments of another version are refused.
pub const SEGMENT_FORMAT_VERSION: u32 = 2;
/// Default of the most retired segments the writer keeps for recycling
/// ([`LogConfig::retired_keep`](super::LogConfig::retired_keep)); further ones are deleted.
pub const RETIRED_KEEP: usize = 2;
/// Header flag: the file is recycled, so bytes of earlier lives may follow the end marker.
const FLAG_RECYCLED: u32 = 1;
/// Bytes of the segment header; the first record starts here.
pub const SEGMENT_HEADER_BYTES: u64 = 64;
/// Extension of segment files.
pub const SEGMENT_EXT: &str = "seg";
/// Suffix of a segment still being created.
pub const TEMP_SUFFIX: &str = ".tmp";
/// Suffix of a segment prepared ahead of need by the writer (complete or not).
pub const SPARE_SUFFIX: &str = ".spare";

/// A decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub cluster_id: u64,
    pub shard: ShardId,
    pub sequence: u64,
    pub size: u64,
    /// The file held an earlier segment: bytes after the end of the records need not be zero.
    pub recycled: bool,
}

/// Why a segment header is unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// A well-formed header of another format version.
    UnsupportedVersion(u32),
    /// Anything else.
    Invalid(String),
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::UnsupportedVersion(v) => write!(
                f,
                "segment format version {v} is not supported (this build reads version \
                 {SEGMENT_FORMAT_VERSION} only)"
            ),
            HeaderError::Invalid(why) => f.write_str(why),
        }
    }
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES as usize] {
        let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
        h[0..8].copy_from_slice(&SEGMENT_MAGIC);
        h[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.shard.0.to_le_bytes());
        h[16..24].copy_from_slice(&self.cluster_id.to_le_bytes());
        h[24..32].copy_from_slice(&self.sequence.to_le_bytes());
        h[32..40].copy_from_slice(&self.size.to_le_bytes());
        let flags = if self.recycled { FLAG_RECYCLED } else { 0 };
        h[40..44].copy_from_slice(&flags.to_le_bytes());
        let crc = crc32fast::hash(&h[..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    pub fn decode(h: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let invalid = |why: String| Err(HeaderError::Invalid(why));
        if h.len() < SEGMENT_HEADER_BYTES as usize {
            return invalid(format!("file is only {} bytes long", h.len()));
        }
        if h[0..8] != SEGMENT_MAGIC {
            return invalid("bad segment magic".into());
        }
        if crc32fast::hash(&h[..60]) != u32_at(h, 60) {
            return invalid("segment header checksum mismatch".into());
        }
        let version = u32_at(h, 8);
        if version != SEGMENT_FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        let flags = u32_at(h, 40);
        if flags & !FLAG_RECYCLED != 0 {
            return invalid(format!("unknown segment flags {flags:#x}"));
        }
        Ok(SegmentHeader {
            shard: ShardId(u32_at(h, 12)),
            cluster_id: u64_at(h, 16),
            sequence: u64_at(h, 24),
            size: u64_at(h, 32),
            recycled: flags & FLAG_RECYCLED != 0,
        })
    }

    /// The bytes a recycled file gets at offset 0: this header followed by an end marker (an
    /// all-zero record header), so the new life has no records yet.
    pub fn encode_with_end_marker(&self) -> Vec<u8> {
        let mut bytes = self.encode().to_vec();
        bytes.resize(SEGMENT_HEADER_BYTES as usize + RECORD_HEADER_BYTES, 0);
        bytes
    }
}

/// File name of segment `sequence`.
pub fn segment_file_name(sequence: u64) -> String {
    format!("{sequence:020}.{SEGMENT_EXT}")
}

/// The sequence of a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// What a shard directory holds.
#[derive(Debug, Default)]
pub struct DirListing {
    /// Segments by ascending sequence.
    pub segments: Vec<(u64, PathBuf)>,
    /// Incomplete segment creations.
    pub temporaries: Vec<PathBuf>,
    /// Segments prepared ahead of need (not part of the log).
    pub spares: Vec<PathBuf>,
}

/// Lists the segments and leftover temporaries of `dir`.
pub fn list_dir(dir: &Path) -> Result<DirListing> {
    let mut listing = DirListing::default();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(sequence) = parse_segment_name(name) {
            listing.segments.push((sequence, entry.path()));
        } else if name.ends_with(TEMP_SUFFIX) {
            listing.temporaries.push(entry.path());
        } else if name.ends_with(SPARE_SUFFIX) {
            listing.spares.push(entry.path());
        }
    }
    listing.segments.sort();
    Ok(listing)
}

/// Creates segment `header.sequence` in `dir` as described in the module doc; returns the open
/// file and its path.
pub(crate) fn create_segment(
    files: &Files,
    dir: &Path,
    header: &SegmentHeader,
) -> Result<(File, PathBuf)> {
    let path = dir.join(segment_file_name(header.sequence));
    let temp = dir.join(format!(
        "{}{TEMP_SUFFIX}",
        segment_file_name(header.sequence)
    ));
    files.remove(&temp)?;
    let file = files.create_new(&temp)?;
    files.zero_fill(&file, &temp, header.size)?;
    files.write_at(&file, &temp, &header.encode(), 0)?;
    files.sync_all(&file, &temp)?;
    files.rename(&temp, &path)?;
    files.sync_dir(dir)?;
    Ok((file, path))
}

/// Turns the retired segment file `retired` into a segment with `header` (which must say
/// `recycled` and the file's size) under the name `temp`: renames it, writes the header and
/// the end marker, and syncs it. The caller renames `temp` into place and fsyncs the directory.
pub(crate) fn recycle_segment(
    files: &Files,
    retired: &Path,
    temp: &Path,
    header: &SegmentHeader,
) -> Result<File> {
    debug_assert!(header.recycled);
    files.remove(temp)?;
    files.rename(retired, temp)?;
    let file = open_rw(temp)?;
    files.write_at(&file, temp, &header.encode_with_end_marker(), 0)?;
    files.sync_all(&file, temp)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse() {
        assert_eq!(segment_file_name(7), "00000000000000000007.seg");
        assert_eq!(parse_segment_name(&segment_file_name(123)), Some(123));
        assert_eq!(parse_segment_name("7.seg"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
        let h = SegmentHeader {
            cluster_id: 5,
            shard: ShardId(2),
            sequence: 3,
            size: 4096,
            recycled: true,
        };
        assert_eq!(SegmentHeader::decode(&h.encode()).unwrap(), h);
        let mut bad = h.encode();
        bad[30] ^= 1;
        assert!(SegmentHeader::decode(&bad).is_err());
    }
}

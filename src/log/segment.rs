//! Segment files: naming, the checksummed segment header, creation.
//!
//! Invariants:
//! - A segment is named `{sequence:020}.seg`, so lexical order is log order; sequences of the
//!   live segments are consecutive (a gap is corruption, a missing prefix is compaction).
//! - A segment is created complete under a temporary name (zero-filled to its full size, header
//!   written, fsynced), then renamed into place, then the directory is fsynced. A file with the
//!   final name therefore always had a valid header and full size when it appeared; leftover
//!   temporaries are incomplete creations and are deleted on open, as are spares (segments
//!   the writer prepared ahead of need, named `*.seg.spare`).
//! - Pre-zeroing (rather than `fallocate`) makes later `fdatasync`s cheap: the blocks are
//!   already written, so no extent conversion or size change must be journaled.
//! - The header (64 bytes) holds magic, format version, cluster id, shard, sequence and size,
//!   with a CRC-32 of the first 60 bytes. Records start right after it.
//!
//! Header layout (little-endian): magic `[u8; 8]` at 0, version `u32` at 8, shard `u32` at 12,
//! cluster `u64` at 16, sequence `u64` at 24, size `u64` at 32, zeros 40..60, crc `u32` at 60.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::io::Files;
use super::record::{u32_at, u64_at};
use crate::types::ShardId;

/// Magic at the start of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RRAFTSEG";
/// On-disk format version written into segment and hard-state headers.
pub const FORMAT_VERSION: u32 = 1;
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
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES as usize] {
        let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
        h[0..8].copy_from_slice(&SEGMENT_MAGIC);
        h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.shard.0.to_le_bytes());
        h[16..24].copy_from_slice(&self.cluster_id.to_le_bytes());
        h[24..32].copy_from_slice(&self.sequence.to_le_bytes());
        h[32..40].copy_from_slice(&self.size.to_le_bytes());
        let crc = crc32fast::hash(&h[..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    pub fn decode(h: &[u8]) -> Result<SegmentHeader, String> {
        if h.len() < SEGMENT_HEADER_BYTES as usize {
            return Err(format!("file is only {} bytes long", h.len()));
        }
        if h[0..8] != SEGMENT_MAGIC {
            return Err("bad segment magic".into());
        }
        if crc32fast::hash(&h[..60]) != u32_at(h, 60) {
            return Err("segment header checksum mismatch".into());
        }
        let version = u32_at(h, 8);
        if version != FORMAT_VERSION {
            return Err(format!("unsupported format version {version}"));
        }
        Ok(SegmentHeader {
            shard: ShardId(u32_at(h, 12)),
            cluster_id: u64_at(h, 16),
            sequence: u64_at(h, 24),
            size: u64_at(h, 32),
        })
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
        };
        assert_eq!(SegmentHeader::decode(&h.encode()).unwrap(), h);
        let mut bad = h.encode();
        bad[30] ^= 1;
        assert!(SegmentHeader::decode(&bad).is_err());
    }
}

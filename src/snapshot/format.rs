//! The snapshot file format: names, the checksummed header and the trailer.
//!
//! A snapshot file is `header | body | trailer`. The body is the engine's: from version 2 on,
//! the group's client sessions, then the state machine's bytes ([`SNAPSHOT_VERSION`]).
//!
//! Header layout (little-endian): magic `[u8; 8]` "RRAFTSNP" at 0, version `u32` at 8,
//! membership length `u32` at 12, group `u64` at 16, index `u64` at 24, term `u64` at 32,
//! membership bytes at 40, then a `u32` CRC-32 of everything before it. The membership length is
//! capped at [`MAX_MEMBERSHIP_BYTES`], checked before anything is allocated for it.
//!
//! Trailer layout (24 bytes): body length `u64` at 0, body CRC-32 `u32` at 8, CRC-32 of the
//! first 12 trailer bytes `u32` at 12, magic `[u8; 8]` "RRSNPEND" at 16. A file that does not
//! end with the trailer magic was cut short (or its end is damaged).
//!
//! Names: `{group:020}-{index:020}.snap`, so lexical order is (group, index) order. Files still
//! being written end in [`TEMP_SUFFIX`] and are never read as snapshots.

use super::SnapshotInfo;
use crate::log::record::{u32_at, u64_at};
use crate::types::{GroupId, LogIndex, Term};

/// Magic at the start of every snapshot file.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RRAFTSNP";
/// Format version written into snapshot headers (the log segments have their own). A version 2
/// body starts with the group's client sessions (written and read by the engine,
/// [`crate::engine::sessions`]), then holds the state machine's bytes.
pub const SNAPSHOT_VERSION: u32 = 2;
/// The version written before client sessions existed: the body is the state machine's bytes
/// alone. Still read (the group then starts without sessions).
pub const SNAPSHOT_VERSION_WITHOUT_SESSIONS: u32 = 1;
/// Magic at the end of every complete snapshot file.
pub const TRAILER_MAGIC: [u8; 8] = *b"RRSNPEND";
/// Bytes of the header before the membership bytes.
pub const HEADER_FIXED_BYTES: usize = 40;
/// Bytes of the trailer.
pub const TRAILER_BYTES: usize = 24;
/// Largest membership accepted (64 KiB).
pub const MAX_MEMBERSHIP_BYTES: usize = 64 << 10;
/// Extension of snapshot files.
pub const SNAPSHOT_EXT: &str = "snap";
/// Suffix of a snapshot file still being written or received.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Total header bytes for a membership of `membership_len` bytes.
pub fn header_len(membership_len: usize) -> usize {
    HEADER_FIXED_BYTES + membership_len + 4
}

/// Encodes the header of `meta`. The caller checks the membership cap.
pub fn encode_header(meta: &SnapshotInfo) -> Vec<u8> {
    let n = meta.membership.len();
    let mut h = vec![0u8; header_len(n)];
    h[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    h[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(n as u32).to_le_bytes());
    h[16..24].copy_from_slice(&meta.group.0.to_le_bytes());
    h[24..32].copy_from_slice(&meta.index.0.to_le_bytes());
    h[32..40].copy_from_slice(&meta.term.0.to_le_bytes());
    h[40..40 + n].copy_from_slice(&meta.membership);
    let crc = crc32fast::hash(&h[..40 + n]);
    h[40 + n..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Why a header could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderProblem {
    /// The bytes end before the header does; `needed` bytes would be required.
    Short { needed: usize },
    /// The header is damaged.
    Corrupt(String),
}

/// Checks the fixed part of a header and returns the full header length it announces.
pub fn announced_header_len(fixed: &[u8]) -> Result<usize, HeaderProblem> {
    if fixed.len() < HEADER_FIXED_BYTES {
        return Err(HeaderProblem::Short {
            needed: HEADER_FIXED_BYTES,
        });
    }
    if fixed[0..8] != SNAPSHOT_MAGIC {
        return Err(HeaderProblem::Corrupt("bad snapshot magic".into()));
    }
    let n = u32_at(fixed, 12) as usize;
    if n > MAX_MEMBERSHIP_BYTES {
        return Err(HeaderProblem::Corrupt(format!(
            "membership length {n} exceeds the limit of {MAX_MEMBERSHIP_BYTES}"
        )));
    }
    Ok(header_len(n))
}

/// Decodes a header from the start of `h`; returns the meta and the header length.
pub fn decode_header(h: &[u8]) -> Result<(SnapshotInfo, usize), HeaderProblem> {
    let len = announced_header_len(h)?;
    if h.len() < len {
        return Err(HeaderProblem::Short { needed: len });
    }
    let n = len - HEADER_FIXED_BYTES - 4;
    if crc32fast::hash(&h[..40 + n]) != u32_at(h, 40 + n) {
        return Err(HeaderProblem::Corrupt("header checksum mismatch".into()));
    }
    let version = header_version(h);
    if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_WITHOUT_SESSIONS {
        return Err(HeaderProblem::Corrupt(format!(
            "unsupported format version {version} (this build reads versions \
             {SNAPSHOT_VERSION_WITHOUT_SESSIONS} and {SNAPSHOT_VERSION})"
        )));
    }
    let meta = SnapshotInfo {
        group: GroupId(u64_at(h, 16)),
        index: LogIndex(u64_at(h, 24)),
        term: Term(u64_at(h, 32)),
        membership: h[40..40 + n].to_vec(),
    };
    Ok((meta, len))
}

/// The format version of a header that [`decode_header`] accepted.
pub fn header_version(h: &[u8]) -> u32 {
    u32_at(h, 8)
}

/// Encodes the trailer of a body of `body_len` bytes with checksum `body_crc`.
pub fn encode_trailer(body_len: u64, body_crc: u32) -> [u8; TRAILER_BYTES] {
    let mut t = [0u8; TRAILER_BYTES];
    t[0..8].copy_from_slice(&body_len.to_le_bytes());
    t[8..12].copy_from_slice(&body_crc.to_le_bytes());
    let crc = crc32fast::hash(&t[..12]);
    t[12..16].copy_from_slice(&crc.to_le_bytes());
    t[16..24].copy_from_slice(&TRAILER_MAGIC);
    t
}

/// Why a trailer could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrailerProblem {
    /// No trailer magic: the file was cut short or its end is damaged.
    Missing,
    /// The trailer's own checksum does not match.
    Corrupt,
}

/// Decodes a trailer into `(body_len, body_crc)`.
pub fn decode_trailer(t: &[u8; TRAILER_BYTES]) -> Result<(u64, u32), TrailerProblem> {
    if t[16..24] != TRAILER_MAGIC {
        return Err(TrailerProblem::Missing);
    }
    if crc32fast::hash(&t[..12]) != u32_at(t, 12) {
        return Err(TrailerProblem::Corrupt);
    }
    Ok((u64_at(t, 0), u32_at(t, 8)))
}

/// File name of the snapshot of `group` at `index`.
pub fn snapshot_file_name(group: GroupId, index: LogIndex) -> String {
    format!("{:020}-{:020}.{SNAPSHOT_EXT}", group.0, index.0)
}

/// The group and index of a snapshot file name, if it is one.
pub fn parse_snapshot_name(name: &str) -> Option<(GroupId, LogIndex)> {
    let stem = name.strip_suffix(".snap")?;
    let (group, index) = stem.split_once('-')?;
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(group) || !digits(index) {
        return None;
    }
    Some((GroupId(group.parse().ok()?), LogIndex(index.parse().ok()?)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn meta(membership: Vec<u8>) -> SnapshotInfo {
        SnapshotInfo {
            group: GroupId(3),
            index: LogIndex(77),
            term: Term(5),
            membership,
        }
    }

    #[test]
    fn names_sort_and_parse() {
        let name = snapshot_file_name(GroupId(4), LogIndex(9));
        assert_eq!(name, "00000000000000000004-00000000000000000009.snap");
        assert_eq!(parse_snapshot_name(&name), Some((GroupId(4), LogIndex(9))));
        assert!(name < snapshot_file_name(GroupId(4), LogIndex(10)));
        assert_eq!(parse_snapshot_name(&format!("{name}{TEMP_SUFFIX}")), None);
        assert_eq!(parse_snapshot_name("4-9.snap"), None);
        assert_eq!(
            parse_snapshot_name("0000000000000000000x-00000000000000000009.snap"),
            None
        );
    }

    #[test]
    fn every_header_bit_flip_is_detected() {
        let h = encode_header(&meta(b"n1,n2,n3".to_vec()));
        for byte in 0..h.len() {
            for bit in 0..8 {
                let mut bad = h.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode_header(&bad).is_err(),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn an_oversized_membership_length_is_refused_before_reading_it() {
        let mut h = encode_header(&meta(Vec::new()));
        h[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        match decode_header(&h) {
            Err(HeaderProblem::Corrupt(reason)) => assert!(reason.contains("exceeds"), "{reason}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn headers_of_the_version_before_sessions_are_read_and_unknown_versions_refused() {
        let with_version = |version: u32| {
            let mut h = encode_header(&meta(b"m".to_vec()));
            h[8..12].copy_from_slice(&version.to_le_bytes());
            let n = h.len() - 4;
            let crc = crc32fast::hash(&h[..n]);
            h[n..].copy_from_slice(&crc.to_le_bytes());
            h
        };
        assert_eq!(
            header_version(&encode_header(&meta(Vec::new()))),
            SNAPSHOT_VERSION
        );
        let old = with_version(SNAPSHOT_VERSION_WITHOUT_SESSIONS);
        assert_eq!(decode_header(&old).unwrap().0, meta(b"m".to_vec()));
        assert_eq!(header_version(&old), SNAPSHOT_VERSION_WITHOUT_SESSIONS);
        match decode_header(&with_version(3)) {
            Err(HeaderProblem::Corrupt(reason)) => {
                assert!(reason.contains("version 3"), "{reason}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn short_headers_ask_for_more() {
        let h = encode_header(&meta(vec![1; 100]));
        assert_eq!(
            decode_header(&h[..10]),
            Err(HeaderProblem::Short {
                needed: HEADER_FIXED_BYTES
            })
        );
        assert_eq!(
            decode_header(&h[..h.len() - 1]),
            Err(HeaderProblem::Short { needed: h.len() })
        );
    }

    #[test]
    fn trailer_round_trips_and_detects_damage() {
        let t = encode_trailer(123_456, 0xdead_beef);
        assert_eq!(decode_trailer(&t), Ok((123_456, 0xdead_beef)));
        for byte in 0..16 {
            let mut bad = t;
            bad[byte] ^= 0x10;
            assert_eq!(decode_trailer(&bad), Err(TrailerProblem::Corrupt));
        }
        let mut bad = t;
        bad[20] ^= 1;
        assert_eq!(decode_trailer(&bad), Err(TrailerProblem::Missing));
    }

    proptest! {
        #[test]
        fn header_round_trips(
            group in any::<u64>(),
            index in any::<u64>(),
            term in any::<u64>(),
            membership in proptest::collection::vec(any::<u8>(), 0..2048),
            extra in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let meta = SnapshotInfo {
                group: GroupId(group),
                index: LogIndex(index),
                term: Term(term),
                membership,
            };
            let mut bytes = encode_header(&meta);
            let len = bytes.len();
            prop_assert_eq!(len, header_len(meta.membership.len()));
            // Body bytes after the header do not disturb decoding.
            bytes.extend_from_slice(&extra);
            let (decoded, decoded_len) = decode_header(&bytes).unwrap();
            prop_assert_eq!(decoded, meta);
            prop_assert_eq!(decoded_len, len);
        }
    }
}

//! Reading a segment image: its header, its valid records, and how it ends.
//!
//! Invariants:
//! - A record is valid only if its header decodes, it fits in the segment, its CRC matches, it
//!   names this segment's sequence (a record of an earlier life of a recycled file names an
//!   older one) and (for entries) its body validates as an archive holding its window.
//!   Validation happens here, once, right after the CRC.
//! - The scan stops at the first spot that is not a valid record. An all-zero header (the end
//!   marker every flush writes) is a clean end when what follows holds no more data of this
//!   segment: only zeros in a zero-filled segment; in a recycled one, anything but a valid
//!   record (bytes of earlier lives). Anything else is a [`BadSpot`], for which the scan also
//!   lists every valid record found after it (at 16-byte aligned offsets). Whether a bad spot
//!   is a torn tail or corruption is the caller's decision (recovery and inspection apply the
//!   same rule, [`is_torn_tail`]).
//! - The image must start at a 16-byte aligned address (bodies are validated in place).

use super::record::{
    u32_at, u64_at, RecordHeader, RecordKind, RECORD_ALIGN, RECORD_HEADER_BYTES, RECORD_MAGIC,
    SEGMENT_FIELD,
};
use super::segment::{SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::batch::EntryBatch;

/// A valid record and where it starts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScannedRecord {
    pub offset: u64,
    pub header: RecordHeader,
}

/// The first spot of a segment that is not a valid record nor a clean end.
#[derive(Clone, Debug)]
pub(crate) struct BadSpot {
    pub offset: u64,
    pub reason: String,
    /// The header as it reads there, when its magic and fields are plausible.
    pub claimed: Option<RecordHeader>,
    /// Valid records found after the bad spot.
    pub valid_after: Vec<ScannedRecord>,
    /// One past the last byte a repair must clear: the last non-zero byte of a zero-filled
    /// segment; in a recycled one, the end of the last valid record after the spot, and at
    /// least of an end marker at the spot.
    pub dirty_end: u64,
}

/// The result of scanning one segment image.
#[derive(Clone, Debug)]
pub(crate) struct SegmentScan {
    pub header: SegmentHeader,
    pub records: Vec<ScannedRecord>,
    /// Offset after the last valid record.
    pub end: u64,
    pub bad: Option<BadSpot>,
}

/// Checks the record at `offset` of segment `sequence`; `Err` carries the reason and the
/// plausible header, if any.
fn check_record(
    image: &[u8],
    offset: usize,
    sequence: u64,
) -> Result<RecordHeader, (&'static str, Option<RecordHeader>)> {
    let header = RecordHeader::decode(&image[offset..offset + RECORD_HEADER_BYTES])
        .map_err(|why| (why, None))?;
    let end = offset + header.record_len();
    if end > image.len() {
        return Err(("record runs past the end of the segment", Some(header)));
    }
    let body_start = offset + RECORD_HEADER_BYTES;
    let body = &image[body_start..body_start + header.body_len as usize];
    if !RecordHeader::crc_matches(&image[offset..offset + RECORD_HEADER_BYTES], body) {
        return Err(("record checksum mismatch", Some(header)));
    }
    if header.segment != sequence {
        return Err((
            "record of another segment sequence (an earlier life of a recycled file)",
            None,
        ));
    }
    if header.kind == RecordKind::Entries
        && EntryBatch::validate_body(body, header.skip, header.count).is_err()
    {
        return Err(("record body is not a valid entry archive", Some(header)));
    }
    Ok(header)
}

/// The valid records of segment `sequence` at 16-byte aligned offsets from `from` on.
fn valid_records_from(image: &[u8], from: usize, sequence: u64) -> Vec<ScannedRecord> {
    let mut found = Vec::new();
    let mut at = from;
    while at + RECORD_HEADER_BYTES <= image.len() {
        // Cheap filters first: bytes of earlier lives hold many records of other sequences.
        if u32_at(image, at) == RECORD_MAGIC && u64_at(image, at + SEGMENT_FIELD) == sequence {
            if let Ok(header) = check_record(image, at, sequence) {
                found.push(ScannedRecord {
                    offset: at as u64,
                    header,
                });
                at += header.record_len();
                continue;
            }
        }
        at += RECORD_ALIGN;
    }
    found
}

/// Scans a whole segment image (the file's bytes, zero-extended to its declared size by the
/// caller if the file is short). `Err` when the segment header itself is bad.
pub(crate) fn scan_segment(image: &[u8]) -> Result<SegmentScan, String> {
    let header = SegmentHeader::decode(image).map_err(|e| e.to_string())?;
    if header.size != image.len() as u64 {
        return Err(format!(
            "segment image is {} bytes, header says {}",
            image.len(),
            header.size
        ));
    }
    let size = image.len();
    let sequence = header.sequence;
    let mut records = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES as usize;
    let mut bad = None;
    while offset + RECORD_HEADER_BYTES <= size {
        let h = &image[offset..offset + RECORD_HEADER_BYTES];
        if h.iter().all(|&b| b == 0) {
            if header.recycled {
                if !valid_records_from(image, offset + RECORD_ALIGN, sequence).is_empty() {
                    bad = Some(("end marker followed by records of this segment", None));
                }
            } else if !image[offset..].iter().all(|&b| b == 0) {
                bad = Some(("zero record header followed by non-zero bytes", None));
            }
            break;
        }
        match check_record(image, offset, sequence) {
            Ok(header) => {
                records.push(ScannedRecord {
                    offset: offset as u64,
                    header,
                });
                offset += header.record_len();
            }
            Err(problem) => {
                bad = Some(problem);
                break;
            }
        }
    }
    // Too short for a record header: the end marker there is cut short, but still all zeros.
    if bad.is_none()
        && offset + RECORD_HEADER_BYTES > size
        && !image[offset..].iter().all(|&b| b == 0)
    {
        bad = Some(("non-zero bytes after the last record", None));
    }
    let bad = bad.map(|(reason, claimed)| {
        let valid_after = valid_records_from(image, offset + RECORD_ALIGN, sequence);
        let dirty_end = if header.recycled {
            // What follows is of earlier lives but for the records found: clearing those and
            // an end marker at the spot leaves a clean end.
            let marker_end = (offset + RECORD_HEADER_BYTES).min(size) as u64;
            valid_after
                .last()
                .map_or(marker_end, |r| r.offset + r.header.record_len() as u64)
                .max(marker_end)
        } else {
            image.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1) as u64
        };
        BadSpot {
            offset: offset as u64,
            reason: reason.to_string(),
            claimed,
            valid_after,
            dirty_end,
        }
    });
    Ok(SegmentScan {
        header,
        records,
        end: offset as u64,
        bad,
    })
}

/// The torn-tail rule, applied to a bad spot in the **last** segment: it is a torn final write
/// (and may be cut off) when nothing valid follows it, or when everything valid that follows
/// belongs to one flush no older than the last good record before it — the page cache may
/// write the pages of one unsynced write in any order. Anything else is corruption.
pub(crate) fn is_torn_tail(bad: &BadSpot, last_good_flush: Option<u64>) -> bool {
    let Some(first) = bad.valid_after.first() else {
        return true;
    };
    let flush = first.header.flush;
    bad.valid_after.iter().all(|r| r.header.flush == flush)
        && last_good_flush.is_none_or(|f| f <= flush)
}

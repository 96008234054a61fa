//! Reading a segment image: its header, its valid records, and how it ends.
//!
//! Invariants:
//! - A record is valid only if its header decodes, it fits in the segment, its CRC matches and
//!   (for entries) its body validates as an archive holding its window. Validation happens
//!   here, once, right after the CRC.
//! - The scan stops at the first spot that is not a valid record: an all-zero header followed
//!   only by zeros is a clean end; anything else is a [`BadSpot`], for which the scan also lists
//!   every valid record found after it (at 16-byte aligned offsets). Whether a bad spot is a
//!   torn tail or corruption is the caller's decision (recovery and inspection apply the same
//!   rule, [`is_torn_tail`]).
//! - The image must start at a 16-byte aligned address (bodies are validated in place).

use super::record::{
    u32_at, RecordHeader, RecordKind, RECORD_ALIGN, RECORD_HEADER_BYTES, RECORD_MAGIC,
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
    /// One past the last non-zero byte of the image.
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

/// Checks the record at `offset`; `Err` carries the reason and the plausible header, if any.
fn check_record(
    image: &[u8],
    offset: usize,
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
    if header.kind == RecordKind::Entries
        && EntryBatch::validate_body(body, header.skip, header.count).is_err()
    {
        return Err(("record body is not a valid entry archive", Some(header)));
    }
    Ok(header)
}

/// Scans a whole segment image (the file's bytes, zero-extended to its declared size by the
/// caller if the file is short). `Err` when the segment header itself is bad.
pub(crate) fn scan_segment(image: &[u8]) -> Result<SegmentScan, String> {
    let header = SegmentHeader::decode(image)?;
    if header.size != image.len() as u64 {
        return Err(format!(
            "segment image is {} bytes, header says {}",
            image.len(),
            header.size
        ));
    }
    let size = image.len();
    let mut records = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES as usize;
    let mut bad = None;
    while offset + RECORD_HEADER_BYTES <= size {
        let h = &image[offset..offset + RECORD_HEADER_BYTES];
        if h.iter().all(|&b| b == 0) {
            if !image[offset..].iter().all(|&b| b == 0) {
                bad = Some(("zero record header followed by non-zero bytes", None));
            }
            break;
        }
        match check_record(image, offset) {
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
    if bad.is_none() && offset < size && !image[offset..].iter().all(|&b| b == 0) {
        bad = Some(("non-zero bytes after the last record", None));
    }
    let bad = bad.map(|(reason, claimed)| {
        let mut valid_after = Vec::new();
        let mut at = offset + RECORD_ALIGN;
        while at + RECORD_HEADER_BYTES <= size {
            if u32_at(image, at) == RECORD_MAGIC {
                if let Ok(header) = check_record(image, at) {
                    valid_after.push(ScannedRecord {
                        offset: at as u64,
                        header,
                    });
                    at += header.record_len();
                    continue;
                }
            }
            at += RECORD_ALIGN;
        }
        let dirty_end = image.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        BadSpot {
            offset: offset as u64,
            reason: reason.to_string(),
            claimed,
            valid_after,
            dirty_end: dirty_end as u64,
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

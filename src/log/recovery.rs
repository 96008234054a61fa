//! Opening a shard directory: verify every segment and record, cut a torn tail, refuse on
//! corruption, and rebuild the in-memory view.
//!
//! Invariants:
//! - Only a bad spot in the **last** segment that passes the torn-tail rule (`scan::is_torn_tail`) is repaired, by
//!   zeroing from the bad spot to the end of the written bytes (then fdatasync). Everything
//!   else — a bad segment header, a bad record in an earlier segment, a bad record followed by
//!   valid records of an older flush, a gap in segment sequences, a record that does not follow
//!   its group's log — is [`Error::Corrupt`] naming the file, offset, group and index range.
//! - Leftover temporaries (incomplete segment or hard-state creations) are deleted.
//! - Everything recovery trusts is made durable before `recover` returns: every segment and
//!   the hard-state file are fdatasynced, the shard directory and its parent fsynced. A process
//!   that was killed (not a power loss) leaves writes in the page cache that were never synced;
//!   reading them back does not make them durable, and the log reports everything it recovered
//!   as durable (the node then acknowledges it). Without these syncs a power loss after the
//!   restart could lose acknowledged entries or a granted vote. The syncs are cheap when the
//!   page cache holds nothing dirty, which is the normal case.
//! - Replay applies the records in log order with the same rules as live staging, with one
//!   allowance: a group's first surviving record may start anywhere (older segments may have
//!   been deleted by compaction). Compaction keeps the latest compaction point of every group
//!   in a surviving segment (see `disk.rs`), so replay restores the same first index.
//! - Flush sequence numbers never decrease along the log; the next flush continues after the
//!   highest one found.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rkyv::util::AlignedVec;

use super::error::{Corruption, Error, Result};
use super::hard_state::{read_hard_state, LoadedHardState, SLOT_BYTES_MIN};
use super::index::{DiskLoc, ShardView, Span};
use super::io::{open_rw, Files};
use super::record::{RecordHeader, RecordKind, RECORD_HEADER_BYTES};
use super::scan::{is_torn_tail, scan_segment, ScannedRecord, SegmentScan};
use super::segment::{
    create_segment, list_dir, segment_file_name, SegmentHeader, SEGMENT_HEADER_BYTES,
};
use crate::batch::BODY_ALIGN;
use crate::types::{GroupId, LogIndex, ShardId, Term};

/// A torn tail that recovery cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
    /// Bytes zeroed (from `offset` to the end of the written data).
    pub bytes_discarded: u64,
    /// Valid records after the bad spot that were discarded with it (a torn multi-page write).
    pub records_discarded: usize,
}

/// What recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    pub torn_tail: Option<TornTail>,
    pub removed_temporaries: Vec<PathBuf>,
    /// Hard-state slots found unreadable (recovery used the other one).
    pub damaged_hard_state_slots: Vec<usize>,
}

/// An open segment.
#[derive(Debug)]
pub(crate) struct OpenSegment {
    pub path: PathBuf,
    pub file: Option<Arc<File>>,
}

pub(crate) struct Recovered {
    pub view: ShardView,
    pub segments: BTreeMap<u64, OpenSegment>,
    pub active: u64,
    pub active_offset: u64,
    pub active_size: u64,
    pub next_flush: u64,
    pub hard_state: LoadedHardState,
    pub report: RecoveryReport,
}

/// Reads a file into a 16-byte aligned buffer, zero-extended to at least `min_len`.
pub(crate) fn read_aligned(path: &Path) -> Result<AlignedVec<BODY_ALIGN>> {
    let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len() as usize;
    let mut image = AlignedVec::<BODY_ALIGN>::with_capacity(len);
    image.resize(len, 0);
    file.read_exact(&mut image)
        .map_err(|e| Error::io("read", path, e))?;
    Ok(image)
}

/// Reads and scans one segment. A file shorter than its declared size reads as zero-extended
/// (`short_by` tells by how much). `Err(Corruption)` when the header is bad.
pub(crate) fn load_segment(
    path: &Path,
) -> Result<std::result::Result<(SegmentScan, u64), Corruption>> {
    let mut image = read_aligned(path)?;
    let declared = SegmentHeader::decode(&image).map(|h| h.size);
    let short_by = match declared {
        Ok(size) if (image.len() as u64) < size => {
            let short_by = size - image.len() as u64;
            image.resize(size as usize, 0);
            short_by
        }
        Ok(size) if (image.len() as u64) > size => {
            image.resize(size as usize, 0);
            0
        }
        _ => 0,
    };
    Ok(scan_segment(&image)
        .map(|scan| (scan, short_by))
        .map_err(|reason| Corruption {
            file: path.to_path_buf(),
            offset: 0,
            group: None,
            indexes: None,
            reason,
        }))
}

pub(crate) fn corruption_at(
    file: &Path,
    offset: u64,
    header: Option<&RecordHeader>,
    reason: impl Into<String>,
) -> Corruption {
    Corruption {
        file: file.to_path_buf(),
        offset,
        group: header.map(|h| h.group),
        indexes: header.map(|h| match h.kind {
            RecordKind::Entries => (h.first, h.last()),
            _ => (h.first, h.first),
        }),
        reason: reason.into(),
    }
}

/// Replays records into a view.
///
/// Records in the oldest surviving segments may refer to entries that lived in segments since
/// deleted by compaction (a truncation below what survives, entries resuming after a deleted
/// stretch). Every such deletion wrote compaction records for all compacted groups after those
/// records, so replay resets the group where the log refers to deleted data and requires that a
/// later compaction record covers the missing stretch; if none does, entries were lost and
/// [`Replayer::finish`] reports it.
#[derive(Default)]
pub(crate) struct Replayer {
    pub view: ShardView,
    seen: BTreeSet<GroupId>,
    /// Per group reset over missing entries: a compaction through at least this index must
    /// follow (with the record that caused the reset, and its segment).
    gaps: BTreeMap<GroupId, (LogIndex, ScannedRecord, u64)>,
    pub last_flush: Option<u64>,
    pub records_per_group: BTreeMap<GroupId, u64>,
}

impl Replayer {
    fn reset(&mut self, group: GroupId, first: LogIndex, record: &ScannedRecord, segment: u64) {
        let g = self.view.group_mut(group);
        g.spans.clear();
        g.first = first;
        g.prev_term = Term::ZERO;
        if first > LogIndex(1) {
            self.gaps.insert(group, (first.prev(), *record, segment));
        }
    }

    pub fn apply(&mut self, segment: u64, record: &ScannedRecord) -> Result<(), String> {
        let h = &record.header;
        if let Some(last) = self.last_flush {
            if h.flush < last {
                return Err(format!(
                    "flush sequence goes back from {last} to {}",
                    h.flush
                ));
            }
        }
        self.last_flush = Some(h.flush);
        *self.records_per_group.entry(h.group).or_default() += 1;
        let seen = !self.seen.insert(h.group);
        let (first, last) = self.view.with_group(h.group, |g| (g.first, g.last_index()));
        match h.kind {
            RecordKind::Entries => {
                if !seen || h.first > last.next() {
                    self.reset(h.group, h.first, record, segment);
                }
                let span = Span {
                    first: h.first,
                    last: h.last(),
                    term: h.term,
                    loc: Some(DiskLoc {
                        segment,
                        body_offset: record.offset + RECORD_HEADER_BYTES as u64,
                        body_len: h.body_len,
                        first: h.first,
                        skip: h.skip,
                        count: h.count,
                        flush: h.flush,
                    }),
                    cached: None,
                };
                self.view
                    .append(h.group, span)
                    .map_err(|e| format!("record does not follow its group's log: {e}"))
            }
            RecordKind::Truncate => {
                if !seen || h.first < first {
                    self.reset(h.group, h.first, record, segment);
                    return Ok(());
                }
                self.view
                    .truncate(h.group, h.first)
                    .map(|_| ())
                    .map_err(|e| format!("invalid truncation: {e}"))
            }
            RecordKind::Compact => {
                if self
                    .gaps
                    .get(&h.group)
                    .is_some_and(|(need, _, _)| h.first >= *need)
                {
                    self.gaps.remove(&h.group);
                }
                let g = self.view.group_mut(h.group);
                if h.first.next() == g.first {
                    g.prev_term = h.term;
                    return Ok(());
                }
                self.view
                    .compact(h.group, h.first, h.term)
                    .map(|_| ())
                    .map_err(|e| format!("invalid compaction: {e}"))
            }
        }
    }

    /// Checks the end state: a gap no compaction covered means entries were lost. Returns the
    /// segment, record and reason of the first such gap.
    pub fn finish(&self) -> Result<(), (u64, ScannedRecord, String)> {
        match self.gaps.values().next() {
            Some(&(need, record, segment)) => Err((
                segment,
                record,
                format!(
                    "entries before this record are missing and no compaction through {need} follows"
                ),
            )),
            None => Ok(()),
        }
    }
}

/// Opens (creating if needed) the shard directory described by the arguments.
pub(crate) fn recover(
    files: &Files,
    dir: &Path,
    cluster_id: u64,
    shard: ShardId,
    segment_bytes: u64,
) -> Result<Recovered> {
    files.create_dir_all(dir)?;
    let mut report = RecoveryReport::default();
    let listing = list_dir(dir)?;
    for temp in &listing.temporaries {
        files.remove(temp)?;
        report.removed_temporaries.push(temp.clone());
    }
    for spare in &listing.spares {
        files.remove(spare)?;
    }

    let hard_state = read_hard_state(dir, Some((cluster_id, shard)))?;
    if hard_state.slot_bytes > 0 && hard_state.slot_bytes < SLOT_BYTES_MIN {
        return Err(Error::HardStateCorrupt {
            path: hard_state.path.clone(),
            reason: format!("file is {} bytes long", hard_state.slot_bytes * 2),
        });
    }
    if hard_state.newest.is_none() && !hard_state.damaged_slots().is_empty() {
        return Err(Error::HardStateCorrupt {
            path: hard_state.path.clone(),
            reason: "both slots are unreadable".into(),
        });
    }
    report.damaged_hard_state_slots = hard_state.damaged_slots();

    for pair in listing.segments.windows(2) {
        let (a, b) = (pair[0].0, pair[1].0);
        if b != a + 1 {
            return Err(Error::corrupt(Corruption {
                file: dir.join(segment_file_name(a + 1)),
                offset: 0,
                group: None,
                indexes: None,
                reason: format!("segment missing between sequences {a} and {b}"),
            }));
        }
    }

    let mut replayer = Replayer::default();
    let mut segments = BTreeMap::new();
    let mut active = None;
    let count = listing.segments.len();
    for (position, (sequence, path)) in listing.segments.iter().enumerate() {
        let is_last = position + 1 == count;
        let (scan, short_by) = load_segment(path)?.map_err(Error::corrupt)?;
        let header = scan.header;
        if header.cluster_id != cluster_id || header.shard != shard {
            return Err(Error::WrongOwner {
                path: path.clone(),
                cluster: cluster_id,
                shard,
                found_cluster: header.cluster_id,
                found_shard: header.shard,
            });
        }
        if header.sequence != *sequence {
            return Err(Error::corrupt(corruption_at(
                path,
                0,
                None,
                format!("header says sequence {}", header.sequence),
            )));
        }
        for record in &scan.records {
            replayer.apply(*sequence, record).map_err(|why| {
                Error::corrupt(corruption_at(
                    path,
                    record.offset,
                    Some(&record.header),
                    why,
                ))
            })?;
            report.records += 1;
        }
        let mut end = scan.end;
        if let Some(bad) = &scan.bad {
            let last_good = scan
                .records
                .last()
                .map(|r| r.header.flush)
                .or(replayer.last_flush);
            if !is_last || !is_torn_tail(bad, last_good) {
                let why = match bad.valid_after.first() {
                    Some(next) => format!(
                        "{}; a valid record follows at offset {}",
                        bad.reason, next.offset
                    ),
                    None => format!("{}; later segments hold valid data", bad.reason),
                };
                return Err(Error::corrupt(corruption_at(
                    path,
                    bad.offset,
                    bad.claimed.as_ref(),
                    why,
                )));
            }
            let file = open_rw(path)?;
            let len = bad.dirty_end.saturating_sub(bad.offset);
            files.zero_range(&file, path, bad.offset, len)?;
            if short_by > 0 {
                file.set_len(header.size)
                    .map_err(|e| Error::io("extend", path, e))?;
                files.sync_all(&file, path)?;
            } else {
                files.sync_data(&file, path)?;
            }
            report.torn_tail = Some(TornTail {
                file: path.clone(),
                offset: bad.offset,
                bytes_discarded: len,
                records_discarded: bad.valid_after.len(),
            });
            end = bad.offset;
        } else if short_by > 0 && is_last {
            let file = open_rw(path)?;
            file.set_len(header.size)
                .map_err(|e| Error::io("extend", path, e))?;
            files.sync_all(&file, path)?;
        }
        if is_last {
            active = Some((*sequence, end, header.size));
        }
        segments.insert(
            *sequence,
            OpenSegment {
                path: path.clone(),
                file: None,
            },
        );
    }
    if let Err((segment, record, why)) = replayer.finish() {
        let path = &segments[&segment].path;
        return Err(Error::corrupt(corruption_at(
            path,
            record.offset,
            Some(&record.header),
            why,
        )));
    }
    report.segments = segments.len();

    let (active, active_offset, active_size) = match active {
        Some(a) => a,
        None => {
            let header = SegmentHeader {
                cluster_id,
                shard,
                sequence: 1,
                size: segment_bytes,
            };
            let (_, path) = create_segment(files, dir, &header)?;
            segments.insert(1, OpenSegment { path, file: None });
            (1, SEGMENT_HEADER_BYTES, segment_bytes)
        }
    };
    for segment in segments.values_mut() {
        let file = open_rw(&segment.path)?;
        files.sync_data(&file, &segment.path)?;
        segment.file = Some(Arc::new(file));
    }
    if hard_state.slot_bytes > 0 {
        let file = open_rw(&hard_state.path)?;
        files.sync_data(&file, &hard_state.path)?;
    }
    files.sync_dir_and_parent(dir)?;
    Ok(Recovered {
        view: replayer.view,
        segments,
        active,
        active_offset,
        active_size,
        next_flush: replayer.last_flush.map_or(1, |f| f + 1),
        hard_state,
        report,
    })
}

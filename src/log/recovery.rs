//! Opening a shard directory: one scan of it (`shard_scan`) finds what is wrong; recovery
//! deletes leftover temporaries, cuts a torn tail, refuses on anything fatal, makes what it
//! trusts durable and hands over the replayed view.
//!
//! Invariants:
//! - Only a bad spot in the **last** segment that passes the torn-tail rule
//!   (`scan::is_torn_tail`) is repaired, by zeroing from the bad spot to the end of what that
//!   write left (then fdatasync; see below); a last segment shorter than its header says is extended to full
//!   size (then fsync). Every other finding the scan calls fatal refuses the open — a bad
//!   segment header, a bad record in an earlier segment, a bad record followed by valid records
//!   of an older flush, a gap in segment sequences, a record that does not follow its group's
//!   log, an earlier segment shorter than its header says — as [`Error::Corrupt`] naming the
//!   file, offset, group and index range (a foreign segment is [`Error::WrongOwner`], one of
//!   another format version [`Error::UnsupportedFormat`], an unusable hard-state file
//!   [`Error::HardStateCorrupt`]).
//! - The torn-tail repair zeroes what `scan` says must go: in a zero-filled segment every
//!   written byte from the bad spot on; in a recycled one an end marker at the spot and every
//!   record of the segment after it (the bytes of earlier lives behind them may stay).
//! - Spares are deleted first; then findings are acted on in the order found, and the first
//!   fatal one refuses: leftover temporaries (incomplete segment or hard-state creations) found
//!   before it are deleted, and the last segment is repaired only when nothing refuses.
//! - Everything recovery trusts is made durable before `recover` returns: every segment and
//!   the hard-state file are fdatasynced, the shard directory and its parent fsynced. A process
//!   that was killed (not a power loss) leaves writes in the page cache that were never synced;
//!   reading them back does not make them durable, and the log reports everything it recovered
//!   as durable (the node then acknowledges it). Without these syncs a power loss after the
//!   restart could lose acknowledged entries or a granted vote. The syncs are cheap when the
//!   page cache holds nothing dirty, which is the normal case.
//! - The recovered view is the scan's replay of every record (`replay`); the next flush
//!   continues after the highest flush sequence found.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{Error, Result};
use super::hard_state::LoadedHardState;
use super::index::ShardView;
use super::io::{open_rw, Files};
use super::segment::{create_segment, SegmentHeader, SEGMENT_FORMAT_VERSION, SEGMENT_HEADER_BYTES};
use super::shard_scan::{scan_shard, Finding, Problem, ScannedSegment, Severity, ShardScan};
use crate::types::ShardId;

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

impl OpenSegment {
    /// The segment at `path`, not opened yet.
    fn closed(path: &Path) -> OpenSegment {
        OpenSegment {
            path: path.to_path_buf(),
            file: None,
        }
    }
}

pub(crate) struct RecoveredLog {
    pub view: ShardView,
    pub segments: BTreeMap<u64, OpenSegment>,
    pub active: u64,
    pub active_offset: u64,
    pub active_size: u64,
    pub next_flush: u64,
    pub hard_state: LoadedHardState,
    pub report: RecoveryReport,
}

/// Repairs of the last segment, made once nothing refused the open.
#[derive(Default)]
struct TailRepair {
    torn: Option<TornTail>,
    /// The file is shorter than its header says.
    extend: bool,
}

impl TailRepair {
    /// Zeroes the torn tail and extends a short file to its declared size, then syncs it (the
    /// whole inode when the size changed).
    fn apply(&self, files: &Files, segment: &ScannedSegment) -> Result<()> {
        if self.torn.is_none() && !self.extend {
            return Ok(());
        }
        let path = &segment.path;
        let file = open_rw(path)?;
        if let Some(torn) = &self.torn {
            files.zero_range(&file, path, torn.offset, torn.bytes_discarded)?;
        }
        if self.extend {
            file.set_len(segment.header.size)
                .map_err(|e| Error::io("extend", path, e))?;
            files.sync_all(&file, path)
        } else {
            files.sync_data(&file, path)
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
) -> Result<RecoveredLog> {
    files.create_dir_all(dir)?;
    let scan = scan_shard(dir, Some((cluster_id, shard)))?;
    let report = act_on_findings(files, &scan)?;
    let mut segments: BTreeMap<u64, OpenSegment> = scan
        .segments
        .iter()
        .map(|s| (s.sequence, OpenSegment::closed(&s.path)))
        .collect();
    let (active, active_offset, active_size) = match scan.segments.last() {
        Some(last) => (last.sequence, last.end, last.header.size),
        None => {
            let header = SegmentHeader {
                cluster_id,
                shard,
                sequence: 1,
                size: segment_bytes,
                recycled: false,
            };
            let (_, path) = create_segment(files, dir, &header)?;
            segments.insert(1, OpenSegment::closed(&path));
            (1, SEGMENT_HEADER_BYTES, segment_bytes)
        }
    };
    make_durable(files, dir, &mut segments, &scan.hard_state)?;
    Ok(RecoveredLog {
        view: scan.replay.view,
        segments,
        active,
        active_offset,
        active_size,
        next_flush: scan.replay.last_flush.map_or(1, |f| f + 1),
        hard_state: scan.hard_state,
        report,
    })
}

/// Deletes spares, acts on every finding in order (refusing at the first fatal one), then
/// repairs the last segment.
fn act_on_findings(files: &Files, scan: &ShardScan) -> Result<RecoveryReport> {
    for spare in &scan.spares {
        files.remove(spare)?;
    }
    let mut report = RecoveryReport {
        segments: scan.segments.len(),
        records: scan.segments.iter().map(|s| s.records as u64).sum(),
        damaged_hard_state_slots: scan.hard_state.damaged_slots(),
        ..RecoveryReport::default()
    };
    let mut repair = TailRepair::default();
    for finding in &scan.findings {
        act(files, finding, &mut report, &mut repair)?;
    }
    if let Some(last) = scan.segments.last() {
        repair.apply(files, last)?;
    }
    report.torn_tail = repair.torn;
    Ok(report)
}

/// Acts on one finding: deletes a leftover temporary, notes a repair of the last segment, or
/// refuses the open.
fn act(
    files: &Files,
    finding: &Finding,
    report: &mut RecoveryReport,
    repair: &mut TailRepair,
) -> Result<()> {
    match &finding.problem {
        Problem::LeftoverTemporary => {
            files.remove(&finding.file)?;
            report.removed_temporaries.push(finding.file.clone());
        }
        Problem::TornTail {
            bytes,
            records_after,
            ..
        } => {
            repair.torn = Some(TornTail {
                file: finding.file.clone(),
                offset: finding.offset.expect("a bad spot has an offset"),
                bytes_discarded: *bytes,
                records_discarded: *records_after,
            });
        }
        Problem::ShortSegment { last: true, .. } => repair.extend = true,
        problem if problem.severity() == Severity::Fatal => return Err(refusal(finding)),
        // A damaged hard-state slot: the other one is used, and the next save overwrites it.
        _ => {}
    }
    Ok(())
}

/// The error that refuses the open on a fatal finding.
fn refusal(finding: &Finding) -> Error {
    match &finding.problem {
        Problem::HardStateTooShort { .. } | Problem::HardStateSlot { .. } => {
            Error::HardStateCorrupt {
                path: finding.file.clone(),
                reason: finding.problem.reason(),
            }
        }
        Problem::WrongOwner { expected, found } => Error::WrongOwner {
            path: finding.file.clone(),
            cluster: expected.0,
            shard: expected.1,
            found_cluster: found.0,
            found_shard: found.1,
        },
        Problem::UnsupportedVersion(found) => Error::UnsupportedFormat {
            path: finding.file.clone(),
            found: *found,
            supported: SEGMENT_FORMAT_VERSION,
        },
        _ => Error::corrupt(finding.corruption()),
    }
}

/// Syncs everything recovery trusts (see the module docs) and opens every segment.
fn make_durable(
    files: &Files,
    dir: &Path,
    segments: &mut BTreeMap<u64, OpenSegment>,
    hard_state: &LoadedHardState,
) -> Result<()> {
    for segment in segments.values_mut() {
        let file = open_rw(&segment.path)?;
        files.sync_data(&file, &segment.path)?;
        segment.file = Some(Arc::new(file));
    }
    if hard_state.slot_bytes > 0 {
        let file = open_rw(&hard_state.path)?;
        files.sync_data(&file, &hard_state.path)?;
    }
    files.sync_dir_and_parent(dir)
}

//! One read-only pass over a shard directory that applies every check the log's files must
//! pass and lists what fails as [`Finding`]s. Recovery acts on the findings; `inspect`
//! reports them. The checks and their verdicts live here and nowhere else.
//!
//! Invariants:
//! - Reads only: nothing is created, changed, deleted or synced.
//! - Goes on after a problem, so one pass finds every bad spot, each with its file, its offset
//!   where it has one, and the header of the record concerned when legible.
//! - Findings come in the order recovery meets them: leftover temporaries; the hard-state file
//!   (its size, then each slot); gaps between segment sequences; per segment in log order its
//!   header, owner, sequence, size, rejected records and bad spot; last, the entries replay
//!   found missing. Recovery refuses with the first fatal one.
//! - The checks:
//!   - the hard-state file, when present, holds two slots of at least `SLOT_BYTES_MIN` bytes,
//!     each never written or valid;
//!   - segment sequences are consecutive (a missing prefix is compaction, not a gap);
//!   - a segment's header decodes and has the supported format version (a segment whose
//!     header does not is skipped), names the expected owner (without one, the first
//!     segment's) and the file name's sequence, and the file is as long as the header says (a
//!     short file reads as zero-extended);
//!   - every valid record replays (`replay`), in log order;
//!   - a bad spot (see `scan`) is a torn tail when it lies in the last segment and passes
//!     `scan::is_torn_tail` against the last flush replayed before it; anywhere else it is
//!     corruption.
//! - [`Problem::severity`] is the one verdict: a fatal finding makes recovery refuse to open
//!   the shard. An earlier segment shorter than its header says is fatal: segments appear at
//!   full size and only the last one is ever extended, so a short earlier one was cut by
//!   something else, and a cut at a record boundary reads like a clean end while it lost
//!   synced records.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use rkyv::util::AlignedVec;

use super::error::{Corruption, Error, Result};
use super::hard_state::{read_hard_state, LoadedHardState, SlotState, SLOT_BYTES_MIN};
use super::record::RecordHeader;
use super::replay::Replayer;
use super::scan::{is_torn_tail, scan_segment, BadSpot, SegmentScan};
use super::segment::{list_dir, segment_file_name, HeaderError, SegmentHeader};
use crate::batch::BODY_ALIGN;
use crate::types::ShardId;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Recovery repairs it on open (torn tail, leftover temporary, one damaged hard-state slot).
    Repairable,
    /// Recovery refuses to open the shard.
    Fatal,
}

/// What is wrong at the place of a [`Finding`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    /// A temporary file left by an incomplete segment or hard-state creation.
    LeftoverTemporary,
    /// The hard-state file is too short for two slots of `SLOT_BYTES_MIN` bytes.
    HardStateTooShort { slot_bytes: u64 },
    /// A hard-state slot is unreadable; `fallback` is the valid slot used instead, if any.
    HardStateSlot {
        slot: usize,
        why: String,
        fallback: Option<usize>,
    },
    /// No segment between two present sequences (the finding names the first one missing).
    MissingSegment { after: u64, before: u64 },
    /// The segment header is unreadable; the segment is skipped.
    BadSegmentHeader(String),
    /// The segment header is of another format version; the segment is skipped.
    UnsupportedVersion(u32),
    /// The segment belongs to another cluster or shard than `expected`.
    WrongOwner {
        expected: (u64, ShardId),
        found: (u64, ShardId),
    },
    /// The segment header names this sequence, the file name another.
    WrongSequence(u64),
    /// The segment file is shorter than its header says; `last` when it is the last segment.
    ShortSegment { short_by: u64, last: bool },
    /// A valid record that replay rejects.
    RejectedRecord(String),
    /// A bad spot that passes the torn-tail rule: `bytes` written bytes from it on, holding
    /// `records_after` valid records, are cut on open.
    TornTail {
        reason: String,
        bytes: u64,
        records_after: usize,
    },
    /// A bad spot that is not a torn tail; `next_valid` is the offset of the first valid record
    /// after it in the same segment, if any.
    CorruptSpot {
        reason: String,
        next_valid: Option<u64>,
    },
    /// Replay ended with entries missing before the finding's record.
    MissingEntries(String),
}

impl Problem {
    /// The verdict: what recovery does about it (see the module documentation).
    pub fn severity(&self) -> Severity {
        match self {
            Problem::LeftoverTemporary
            | Problem::HardStateSlot {
                fallback: Some(_), ..
            }
            | Problem::ShortSegment { last: true, .. }
            | Problem::TornTail { .. } => Severity::Repairable,
            _ => Severity::Fatal,
        }
    }

    /// What is wrong, in the words of recovery's errors and of inspection's report.
    pub fn reason(&self) -> String {
        match self {
            Problem::LeftoverTemporary => {
                "leftover temporary file of an incomplete creation (deleted on open)".to_string()
            }
            Problem::HardStateTooShort { slot_bytes } => {
                format!("file is {} bytes long", slot_bytes * 2)
            }
            Problem::HardStateSlot {
                slot,
                why,
                fallback: Some(other),
            } => format!("hard-state slot {slot} unreadable ({why}); slot {other} is used"),
            Problem::HardStateSlot {
                slot,
                why,
                fallback: None,
            } => format!("hard-state slot {slot} unreadable ({why}) and no valid slot remains"),
            Problem::MissingSegment { after, before } => {
                format!("segment missing between sequences {after} and {before}")
            }
            Problem::BadSegmentHeader(why)
            | Problem::RejectedRecord(why)
            | Problem::MissingEntries(why) => why.clone(),
            Problem::WrongOwner { expected, found } => format!(
                "segment belongs to cluster {} {}, others to cluster {} {}",
                found.0, found.1, expected.0, expected.1
            ),
            Problem::WrongSequence(sequence) => format!("header says sequence {sequence}"),
            Problem::UnsupportedVersion(version) => {
                HeaderError::UnsupportedVersion(*version).to_string()
            }
            Problem::ShortSegment { short_by, .. } => {
                format!("file is {short_by} bytes shorter than its header says")
            }
            Problem::TornTail {
                reason,
                bytes,
                records_after,
            } => format!("{reason} ({bytes} bytes, {records_after} records after it, cut on open)"),
            Problem::CorruptSpot {
                reason,
                next_valid: Some(next),
            } => format!("{reason}; a valid record follows at offset {next}"),
            Problem::CorruptSpot {
                reason,
                next_valid: None,
            } => format!("{reason}; later segments hold valid data"),
        }
    }
}

/// One problem found, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Finding {
    /// The file concerned (for a missing segment, the first missing file).
    pub file: PathBuf,
    /// The byte offset within `file`, where the problem has one.
    pub offset: Option<u64>,
    /// The header of the record concerned, when legible.
    pub record: Option<RecordHeader>,
    pub problem: Problem,
}

impl Finding {
    fn new(
        file: &Path,
        offset: Option<u64>,
        record: Option<RecordHeader>,
        problem: Problem,
    ) -> Finding {
        Finding {
            file: file.to_path_buf(),
            offset,
            record,
            problem,
        }
    }

    /// The finding as a corruption report (at offset 0 where it has no offset).
    pub fn corruption(&self) -> Corruption {
        Corruption::at(
            &self.file,
            self.offset.unwrap_or(0),
            self.record.as_ref(),
            self.problem.reason(),
        )
    }
}

/// One segment with a readable header, as scanned.
#[derive(Clone, Debug)]
pub(crate) struct ScannedSegment {
    pub sequence: u64,
    pub path: PathBuf,
    pub header: SegmentHeader,
    /// Valid records before the first bad spot.
    pub records: usize,
    /// Offset after the last valid record: where the written data ends once a bad spot there
    /// is cut.
    pub end: u64,
}

/// Everything one pass over a shard directory read and found.
pub(crate) struct ShardScan {
    /// Segments the writer prepared ahead of need (not part of the log; no finding).
    pub spares: Vec<PathBuf>,
    pub hard_state: LoadedHardState,
    /// The expected owner, else that of the first segment with a readable header.
    pub owner: Option<(u64, ShardId)>,
    /// Every segment with a readable header, in log order.
    pub segments: Vec<ScannedSegment>,
    /// The replay of every valid record of those segments.
    pub replay: Replayer,
    pub findings: Vec<Finding>,
}

/// Scans the shard directory `dir`. `expected`, when given, is the (cluster, shard) every file
/// must belong to: a foreign segment is a finding, a foreign hard-state slot an
/// [`Error::WrongOwner`]. Without it, segments must agree with the first one and hard-state
/// owners go unchecked. Errors only on that and on I/O failures (a missing hard-state file
/// reads as empty).
pub(crate) fn scan_shard(dir: &Path, expected: Option<(u64, ShardId)>) -> Result<ShardScan> {
    let listing = list_dir(dir)?;
    let hard_state = read_hard_state(dir, expected)?;
    let mut findings: Vec<Finding> = listing
        .temporaries
        .iter()
        .map(|temp| Finding::new(temp, None, None, Problem::LeftoverTemporary))
        .collect();
    findings.extend(hard_state_findings(&hard_state));
    findings.extend(sequence_gaps(dir, &listing.segments));
    let mut scan = ShardScan {
        spares: listing.spares,
        hard_state,
        owner: expected,
        segments: Vec::new(),
        replay: Replayer::default(),
        findings,
    };
    let count = listing.segments.len();
    for (position, (sequence, path)) in listing.segments.iter().enumerate() {
        scan.scan_segment(*sequence, path, position + 1 == count)?;
    }
    scan.finish_replay(dir);
    Ok(scan)
}

/// The hard-state file's findings: its size, then each unreadable slot.
fn hard_state_findings(hard: &LoadedHardState) -> Vec<Finding> {
    let mut findings = Vec::new();
    if hard.slot_bytes > 0 && hard.slot_bytes < SLOT_BYTES_MIN {
        let problem = Problem::HardStateTooShort {
            slot_bytes: hard.slot_bytes,
        };
        findings.push(Finding::new(&hard.path, None, None, problem));
    }
    for (slot, state) in hard.slots.iter().enumerate() {
        if let SlotState::Invalid(why) = state {
            let problem = Problem::HardStateSlot {
                slot,
                why: why.clone(),
                fallback: hard.newest,
            };
            let offset = slot as u64 * hard.slot_bytes;
            findings.push(Finding::new(&hard.path, Some(offset), None, problem));
        }
    }
    findings
}

/// A finding for each gap between the sequences of `segments` (sorted).
fn sequence_gaps(dir: &Path, segments: &[(u64, PathBuf)]) -> Vec<Finding> {
    segments
        .windows(2)
        .map(|pair| (pair[0].0, pair[1].0))
        .filter(|&(after, before)| before != after + 1)
        .map(|(after, before)| {
            let missing = dir.join(segment_file_name(after + 1));
            Finding::new(
                &missing,
                None,
                None,
                Problem::MissingSegment { after, before },
            )
        })
        .collect()
}

impl ShardScan {
    fn found(
        &mut self,
        file: &Path,
        offset: Option<u64>,
        record: Option<RecordHeader>,
        problem: Problem,
    ) {
        self.findings
            .push(Finding::new(file, offset, record, problem));
    }

    /// Scans segment `sequence`, replaying its valid records.
    fn scan_segment(&mut self, sequence: u64, path: &Path, is_last: bool) -> Result<()> {
        let (scan, short_by) = match load_segment(path)? {
            Ok(loaded) => loaded,
            Err(problem) => {
                self.found(path, Some(0), None, problem);
                return Ok(());
            }
        };
        self.check_header(sequence, path, &scan.header);
        if short_by > 0 {
            let problem = Problem::ShortSegment {
                short_by,
                last: is_last,
            };
            self.found(path, None, None, problem);
        }
        for record in &scan.records {
            if let Err(why) = self.replay.apply(sequence, record) {
                let problem = Problem::RejectedRecord(why);
                self.found(path, Some(record.offset), Some(record.header), problem);
            }
        }
        if let Some(bad) = &scan.bad {
            let problem = self.judge(bad, is_last);
            self.found(path, Some(bad.offset), bad.claimed, problem);
        }
        self.segments.push(ScannedSegment {
            sequence,
            path: path.to_path_buf(),
            header: scan.header,
            records: scan.records.len(),
            end: scan.end,
        });
        Ok(())
    }

    /// Checks the owner and the sequence a segment header names.
    fn check_header(&mut self, sequence: u64, path: &Path, header: &SegmentHeader) {
        let found = (header.cluster_id, header.shard);
        match self.owner {
            None => self.owner = Some(found),
            Some(expected) if expected != found => {
                self.found(path, Some(0), None, Problem::WrongOwner { expected, found });
            }
            Some(_) => {}
        }
        if header.sequence != sequence {
            let problem = Problem::WrongSequence(header.sequence);
            self.found(path, Some(0), None, problem);
        }
    }

    /// A bad spot is a torn tail or corruption: the torn-tail rule, in the last segment only,
    /// against the last flush replayed before the spot.
    fn judge(&self, bad: &BadSpot, is_last: bool) -> Problem {
        if is_last && is_torn_tail(bad, self.replay.last_flush) {
            Problem::TornTail {
                reason: bad.reason.clone(),
                bytes: bad.dirty_end.saturating_sub(bad.offset),
                records_after: bad.valid_after.len(),
            }
        } else {
            Problem::CorruptSpot {
                reason: bad.reason.clone(),
                next_valid: bad.valid_after.first().map(|record| record.offset),
            }
        }
    }

    /// Ends replay: a stretch of entries no compaction covered is missing.
    fn finish_replay(&mut self, dir: &Path) {
        if let Err((segment, record, why)) = self.replay.finish() {
            let path = dir.join(segment_file_name(segment));
            let problem = Problem::MissingEntries(why);
            self.found(&path, Some(record.offset), Some(record.header), problem);
        }
    }
}

/// Reads a whole file into a 16-byte aligned buffer.
fn read_aligned(path: &Path) -> Result<AlignedVec<BODY_ALIGN>> {
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

/// Reads and scans one segment, with the bytes by which the file is shorter than its header
/// says (it reads as zero-extended; a longer file is read up to the declared size). The inner
/// `Err` is what is wrong with the segment header.
fn load_segment(path: &Path) -> Result<Result<(SegmentScan, u64), Problem>> {
    let mut image = read_aligned(path)?;
    let size = match SegmentHeader::decode(&image) {
        Ok(header) => header.size,
        Err(HeaderError::UnsupportedVersion(v)) => return Ok(Err(Problem::UnsupportedVersion(v))),
        Err(HeaderError::Invalid(why)) => return Ok(Err(Problem::BadSegmentHeader(why))),
    };
    let short_by = size.saturating_sub(image.len() as u64);
    image.resize(size as usize, 0);
    Ok(scan_segment(&image)
        .map(|scan| (scan, short_by))
        .map_err(Problem::BadSegmentHeader))
}

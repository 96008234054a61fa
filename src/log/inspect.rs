//! `inspect`: a read-only verification of a data directory, for `ringraft inspect`.
//!
//! Invariants:
//! - Never modifies anything (it reports what recovery would repair, and what it would refuse).
//! - Reports the findings of the very scan recovery acts on (`shard_scan`), so both apply the
//!   same checks and the same torn-tail rule; the scan keeps going after a problem, so one run
//!   lists every bad spot, each with file and offset.
//! - [`InspectReport::is_clean`] is false when anything at all is wrong (a CLI exits non-zero);
//!   [`Severity::Fatal`] findings are exactly those that make the log refuse to open.
//! - With no expected owner, segments are checked against the first segment's owner, and
//!   hard-state owners are not checked.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::hard_state::{LoadedHardState, SlotState, HARD_STATE_FILE};
use super::index::GroupLog;
use super::record::RecordHeader;
use super::segment::list_dir;
use super::shard_scan::{self, scan_shard, Problem, ScannedSegment, ShardScan};
use crate::types::{GroupId, HardState, LogIndex, ShardId, Term};

pub use super::shard_scan::Severity;

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub file: PathBuf,
    pub offset: Option<u64>,
    pub group: Option<GroupId>,
    pub indexes: Option<(LogIndex, LogIndex)>,
    pub what: String,
}

/// A run of entries of one term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TermRun {
    pub term: Term,
    pub first: LogIndex,
    pub last: LogIndex,
}

/// One group's log as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InspectedGroup {
    pub group: GroupId,
    /// First index present (compaction point + 1).
    pub first: LogIndex,
    /// Last index present (`first - 1` when empty).
    pub last: LogIndex,
    pub terms: Vec<TermRun>,
    /// Records of this group (entries, truncations, compactions).
    pub records: u64,
    pub hard_state: Option<HardState>,
}

/// One segment as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    pub file: PathBuf,
    pub sequence: u64,
    pub records: usize,
    /// Offset after the last valid record.
    pub bytes_used: u64,
}

/// One shard directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardReport {
    pub dir: PathBuf,
    pub cluster_id: Option<u64>,
    pub shard: Option<ShardId>,
    pub segments: Vec<SegmentSummary>,
    pub groups: Vec<InspectedGroup>,
    /// Each hard-state slot: its generation when valid, or what is wrong with it.
    pub hard_state_slots: [String; 2],
    pub findings: Vec<Finding>,
}

/// Everything found under a data directory.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InspectReport {
    pub shards: Vec<ShardReport>,
}

impl InspectReport {
    /// Whether nothing at all is wrong.
    pub fn is_clean(&self) -> bool {
        self.findings().next().is_none()
    }

    /// Whether some shard would refuse to open.
    pub fn has_fatal(&self) -> bool {
        self.findings().any(|f| f.severity == Severity::Fatal)
    }

    /// Every finding of every shard.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.shards.iter().flat_map(|s| s.findings.iter())
    }
}

/// Verifies every shard under `data_dir` (its `shard-*` subdirectories, or `data_dir` itself
/// when it holds segments or a hard-state file). Errors only when a directory cannot be listed
/// or a file cannot be read.
pub fn inspect(data_dir: &Path) -> Result<InspectReport> {
    let mut dirs = Vec::new();
    let listing = list_dir(data_dir)?;
    if !listing.segments.is_empty() || data_dir.join(HARD_STATE_FILE).exists() {
        dirs.push(data_dir.to_path_buf());
    }
    let entries = std::fs::read_dir(data_dir).map_err(|e| Error::io("list", data_dir, e))?;
    let mut subdirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| e.file_name().to_string_lossy().starts_with("shard-"))
        .map(|e| e.path())
        .collect();
    subdirs.sort();
    dirs.extend(subdirs);
    let shards = dirs
        .iter()
        .map(|dir| inspect_shard(dir))
        .collect::<Result<Vec<_>>>()?;
    Ok(InspectReport { shards })
}

fn inspect_shard(dir: &Path) -> Result<ShardReport> {
    let scan = scan_shard(dir, None)?;
    Ok(ShardReport {
        dir: dir.to_path_buf(),
        cluster_id: scan.owner.map(|o| o.0),
        shard: scan.owner.map(|o| o.1),
        segments: scan.segments.iter().map(SegmentSummary::from).collect(),
        groups: group_summaries(&scan),
        hard_state_slots: slot_states(&scan.hard_state),
        findings: scan.findings.iter().map(Finding::from).collect(),
    })
}

impl From<&shard_scan::Finding> for Finding {
    fn from(found: &shard_scan::Finding) -> Finding {
        let reason = found.problem.reason();
        let what = match found.problem {
            Problem::TornTail { .. } => format!("torn tail: {reason}"),
            Problem::CorruptSpot { .. } => format!("corrupt: {reason}"),
            _ => reason,
        };
        Finding {
            severity: found.problem.severity(),
            file: found.file.clone(),
            offset: found.offset,
            group: found.record.map(|h| h.group),
            indexes: found.record.as_ref().map(RecordHeader::indexes),
            what,
        }
    }
}

impl From<&ScannedSegment> for SegmentSummary {
    fn from(segment: &ScannedSegment) -> SegmentSummary {
        SegmentSummary {
            file: segment.path.clone(),
            sequence: segment.sequence,
            records: segment.records,
            bytes_used: segment.end,
        }
    }
}

/// Each hard-state slot: its generation when valid, or what is wrong with it.
fn slot_states(hard: &LoadedHardState) -> [String; 2] {
    hard.slots.each_ref().map(|slot| match slot {
        SlotState::Empty => "never written".to_string(),
        SlotState::Valid { generation, .. } => format!("generation {generation}"),
        SlotState::Invalid(why) => format!("unreadable: {why}"),
    })
}

/// Every group with a log or a hard state, in order.
fn group_summaries(scan: &ShardScan) -> Vec<InspectedGroup> {
    let (_, hard_states) = scan.hard_state.table();
    let replay = &scan.replay;
    let mut groups: BTreeMap<GroupId, InspectedGroup> = BTreeMap::new();
    for (&group, log) in &replay.view.groups {
        groups.insert(
            group,
            InspectedGroup {
                group,
                first: log.first,
                last: log.last_index(),
                terms: term_runs(log),
                records: replay.records_per_group.get(&group).copied().unwrap_or(0),
                hard_state: hard_states.get(&group).copied(),
            },
        );
    }
    for (&group, &state) in &hard_states {
        groups.entry(group).or_insert(InspectedGroup {
            group,
            first: LogIndex(1),
            last: LogIndex::ZERO,
            terms: Vec::new(),
            records: 0,
            hard_state: Some(state),
        });
    }
    groups.into_values().collect()
}

/// A group's entries as runs of one term.
fn term_runs(log: &GroupLog) -> Vec<TermRun> {
    let mut terms: Vec<TermRun> = Vec::new();
    for span in &log.spans {
        match terms.last_mut() {
            Some(run) if run.term == span.term => run.last = span.last,
            _ => terms.push(TermRun {
                term: span.term,
                first: span.first,
                last: span.last,
            }),
        }
    }
    terms
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.shards.is_empty() {
            writeln!(f, "no shard directories found")?;
        }
        for shard in &self.shards {
            write!(f, "{}", shard.dir.display())?;
            if let (Some(cluster), Some(id)) = (shard.cluster_id, shard.shard) {
                write!(f, " (cluster {cluster}, {id})")?;
            }
            writeln!(f)?;
            let records: usize = shard.segments.iter().map(|s| s.records).sum();
            writeln!(
                f,
                "  segments: {}, records: {records}",
                shard.segments.len()
            )?;
            for segment in &shard.segments {
                writeln!(
                    f,
                    "    {}: {} records, {} bytes used",
                    segment
                        .file
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy(),
                    segment.records,
                    segment.bytes_used
                )?;
            }
            writeln!(
                f,
                "  hard state: slot 0 {}, slot 1 {}",
                shard.hard_state_slots[0], shard.hard_state_slots[1]
            )?;
            for group in &shard.groups {
                write!(
                    f,
                    "  group {}: indexes {}..={}, {} records, terms",
                    group.group, group.first, group.last, group.records
                )?;
                if group.terms.is_empty() {
                    write!(f, " -")?;
                }
                for run in &group.terms {
                    write!(f, " {}@{}..={}", run.term, run.first, run.last)?;
                }
                if let Some(hs) = group.hard_state {
                    write!(f, "; hard state {} commit {}", hs.term, hs.commit)?;
                    if let Some(vote) = hs.vote {
                        write!(f, " vote {vote}")?;
                    }
                }
                writeln!(f)?;
            }
            for finding in &shard.findings {
                let level = match finding.severity {
                    Severity::Repairable => "REPAIRABLE",
                    Severity::Fatal => "FATAL",
                };
                write!(f, "  {level} {}", finding.file.display())?;
                if let Some(offset) = finding.offset {
                    write!(f, " offset {offset}")?;
                }
                if let Some(group) = finding.group {
                    write!(f, " group {group}")?;
                }
                if let Some((a, b)) = finding.indexes {
                    write!(f, " indexes {a}..={b}")?;
                }
                writeln!(f, ": {}", finding.what)?;
            }
        }
        let verdict = if self.is_clean() {
            "OK"
        } else if self.has_fatal() {
            "CORRUPT (would refuse to open)"
        } else {
            "REPAIRABLE (recovery would fix it)"
        };
        writeln!(f, "verdict: {verdict}")
    }
}

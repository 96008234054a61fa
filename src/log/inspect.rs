//! `inspect`: a read-only verification of a data directory, for `ringraft inspect`.
//!
//! Invariants:
//! - Never modifies anything (it reports what recovery would repair, and what it would refuse).
//! - Applies the same checks and the same torn-tail rule as recovery, but keeps going after a
//!   problem so that one run lists every bad spot, each with file and offset.
//! - [`InspectReport::is_clean`] is false when anything at all is wrong (a CLI exits non-zero);
//!   [`Severity::Fatal`] findings are those that make the log refuse to open.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::hard_state::{read_hard_state, SlotState, HARD_STATE_FILE};
use super::recovery::{load_segment, Replayer};
use super::scan::is_torn_tail;
use super::segment::{list_dir, segment_file_name};
use crate::types::{GroupId, HardState, LogIndex, ShardId, Term};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Recovery repairs it on open (torn tail, leftover temporary, one damaged hard-state slot).
    Repairable,
    /// Recovery refuses to open the shard.
    Fatal,
}

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
pub struct GroupSummary {
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
    pub groups: Vec<GroupSummary>,
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

fn finding(
    severity: Severity,
    file: &Path,
    offset: Option<u64>,
    what: impl Into<String>,
) -> Finding {
    Finding {
        severity,
        file: file.to_path_buf(),
        offset,
        group: None,
        indexes: None,
        what: what.into(),
    }
}

fn inspect_shard(dir: &Path) -> Result<ShardReport> {
    let mut findings = Vec::new();
    let listing = list_dir(dir)?;
    for temp in &listing.temporaries {
        findings.push(finding(
            Severity::Repairable,
            temp,
            None,
            "leftover temporary file of an incomplete creation (deleted on open)",
        ));
    }

    let hard = read_hard_state(dir, None)?;
    let mut slots = [String::new(), String::new()];
    for (k, slot) in hard.slots.iter().enumerate() {
        slots[k] = match slot {
            SlotState::Empty => "never written".to_string(),
            SlotState::Valid { generation, .. } => format!("generation {generation}"),
            SlotState::Invalid(why) => {
                let severity = if hard.newest.is_some() {
                    Severity::Repairable
                } else {
                    Severity::Fatal
                };
                let what = match hard.newest {
                    Some(other) => {
                        format!("hard-state slot {k} unreadable ({why}); slot {other} is used")
                    }
                    None => {
                        format!("hard-state slot {k} unreadable ({why}) and no valid slot remains")
                    }
                };
                findings.push(finding(
                    severity,
                    &hard.path,
                    Some(k as u64 * hard.slot_bytes),
                    what,
                ));
                format!("unreadable: {why}")
            }
        };
    }
    let (_, hard_states) = hard.table();

    for pair in listing.segments.windows(2) {
        let (a, b) = (pair[0].0, pair[1].0);
        if b != a + 1 {
            findings.push(finding(
                Severity::Fatal,
                &dir.join(segment_file_name(a + 1)),
                None,
                format!("segment missing between sequences {a} and {b}"),
            ));
        }
    }

    let mut owner: Option<(u64, ShardId)> = None;
    let mut segments = Vec::new();
    let mut replayer = Replayer::default();
    let count = listing.segments.len();
    for (position, (sequence, path)) in listing.segments.iter().enumerate() {
        let is_last = position + 1 == count;
        let (scan, short_by) = match load_segment(path)? {
            Ok(loaded) => loaded,
            Err(c) => {
                findings.push(finding(Severity::Fatal, path, Some(c.offset), c.reason));
                continue;
            }
        };
        let this_owner = (scan.header.cluster_id, scan.header.shard);
        match owner {
            None => owner = Some(this_owner),
            Some(o) if o != this_owner => findings.push(finding(
                Severity::Fatal,
                path,
                Some(0),
                format!(
                    "segment belongs to cluster {} {}, others to cluster {} {}",
                    this_owner.0, this_owner.1, o.0, o.1
                ),
            )),
            Some(_) => {}
        }
        if scan.header.sequence != *sequence {
            findings.push(finding(
                Severity::Fatal,
                path,
                Some(0),
                format!("header says sequence {}", scan.header.sequence),
            ));
        }
        if short_by > 0 {
            findings.push(finding(
                if is_last {
                    Severity::Repairable
                } else {
                    Severity::Fatal
                },
                path,
                None,
                format!("file is {short_by} bytes shorter than its header says"),
            ));
        }
        for record in &scan.records {
            if let Err(why) = replayer.apply(*sequence, record) {
                let h = &record.header;
                findings.push(Finding {
                    group: Some(h.group),
                    indexes: Some((h.first, h.last())),
                    ..finding(Severity::Fatal, path, Some(record.offset), why)
                });
            }
        }
        if let Some(bad) = &scan.bad {
            let torn = is_last && is_torn_tail(bad, replayer.last_flush);
            let what = if torn {
                format!(
                    "torn tail: {} ({} bytes, {} records after it, cut on open)",
                    bad.reason,
                    bad.dirty_end.saturating_sub(bad.offset),
                    bad.valid_after.len()
                )
            } else {
                match bad.valid_after.first() {
                    Some(next) => format!(
                        "corrupt: {}; a valid record follows at offset {}",
                        bad.reason, next.offset
                    ),
                    None => format!("corrupt: {}; later segments hold valid data", bad.reason),
                }
            };
            findings.push(Finding {
                group: bad.claimed.map(|h| h.group),
                indexes: bad.claimed.map(|h| (h.first, h.last())),
                ..finding(
                    if torn {
                        Severity::Repairable
                    } else {
                        Severity::Fatal
                    },
                    path,
                    Some(bad.offset),
                    what,
                )
            });
        }
        segments.push(SegmentSummary {
            file: path.clone(),
            sequence: *sequence,
            records: scan.records.len(),
            bytes_used: scan.end,
        });
    }

    if let Err((segment, record, why)) = replayer.finish() {
        let path = dir.join(segment_file_name(segment));
        let h = &record.header;
        findings.push(Finding {
            group: Some(h.group),
            indexes: Some((h.first, h.last())),
            ..finding(Severity::Fatal, &path, Some(record.offset), why)
        });
    }
    let mut groups: BTreeMap<GroupId, GroupSummary> = BTreeMap::new();
    for (&group, log) in &replayer.view.groups {
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
        groups.insert(
            group,
            GroupSummary {
                group,
                first: log.first,
                last: log.last_index(),
                terms,
                records: replayer.records_per_group.get(&group).copied().unwrap_or(0),
                hard_state: hard_states.get(&group).copied(),
            },
        );
    }
    for (&group, &state) in &hard_states {
        groups.entry(group).or_insert(GroupSummary {
            group,
            first: LogIndex(1),
            last: LogIndex::ZERO,
            terms: Vec::new(),
            records: 0,
            hard_state: Some(state),
        });
    }
    Ok(ShardReport {
        dir: dir.to_path_buf(),
        cluster_id: owner.map(|o| o.0),
        shard: owner.map(|o| o.1),
        segments,
        groups: groups.into_values().collect(),
        hard_state_slots: slots,
        findings,
    })
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

//! Replaying scanned records, in log order, into the in-memory view of a shard.
//!
//! Invariants:
//! - Records replay with the same rules as live staging (`index`), with one allowance: a
//!   group's first surviving record may start anywhere, because older segments may have been
//!   deleted by compaction. Compaction keeps the latest compaction point of every group in a
//!   surviving segment (see `disk.rs`), so replay restores the same first index.
//! - Where a record refers to entries that are no longer there, the group is reset, and a later
//!   compaction record must cover the missing stretch; [`Replayer::finish`] reports any stretch
//!   none covers (entries were lost).
//! - Flush sequence numbers never decrease along the log; a record whose flush goes back is
//!   rejected. `last_flush` is the highest flush replayed.
//! - Replay may go on after a rejected record, so that inspection finds every problem; what it
//!   builds after a rejection is only reported, never opened (recovery refuses at the first).

use std::collections::{BTreeMap, BTreeSet};

use super::index::{DiskLoc, ShardView, Span};
use super::record::{RecordKind, RECORD_HEADER_BYTES};
use super::scan::ScannedRecord;
use crate::types::{GroupId, LogIndex, Term};

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

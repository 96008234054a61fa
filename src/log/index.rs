//! The in-memory view of every group's log on a shard, shared by the disk log, its recovery
//! and the in-memory twin so that all three apply identical rules.
//!
//! Invariants of a [`GroupLog`]:
//! - Its entries are exactly `first ..= last` with no gap; spans are sorted, contiguous and
//!   non-empty, and span terms never decrease.
//! - `term_at(first - 1)` is known (`prev_term`) once the group was compacted; `term_at(0)` is
//!   `Term::ZERO`.
//! - Appends must start at `last + 1` with a term not below the last term; truncation and
//!   compaction never touch indexes below `first` (compacted entries cannot be changed).
//! - A span's `cached` batch, when present, covers the span; a span without a cached batch has
//!   a disk location.

use std::collections::{BTreeMap, VecDeque};

use super::error::{Error, Result};
use crate::batch::EntryBatch;
use crate::types::{GroupId, LogIndex, Term};

/// Where an entries record's body lives on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DiskLoc {
    pub segment: u64,
    pub body_offset: u64,
    pub body_len: u32,
    /// The record's own window (before any later truncation or compaction narrowed the span).
    pub first: LogIndex,
    pub skip: u32,
    pub count: u32,
    /// The flush that writes the record.
    pub flush: u64,
}

/// A run of entries of one term stored by one record.
#[derive(Clone, Debug)]
pub(crate) struct Span {
    pub first: LogIndex,
    pub last: LogIndex,
    pub term: Term,
    pub loc: Option<DiskLoc>,
    pub cached: Option<EntryBatch>,
}

impl Span {
    pub fn from_batch(batch: &EntryBatch, loc: Option<DiskLoc>) -> Span {
        Span {
            first: batch.first_index(),
            last: batch.last_index(),
            term: batch.term(),
            loc,
            cached: Some(batch.clone()),
        }
    }
}

/// One group's log.
#[derive(Clone, Debug)]
pub(crate) struct GroupLog {
    pub first: LogIndex,
    pub prev_term: Term,
    pub spans: VecDeque<Span>,
}

impl Default for GroupLog {
    fn default() -> Self {
        GroupLog {
            first: LogIndex(1),
            prev_term: Term::ZERO,
            spans: VecDeque::new(),
        }
    }
}

impl GroupLog {
    pub fn last_index(&self) -> LogIndex {
        self.spans.back().map_or(self.first.prev(), |s| s.last)
    }

    pub fn last_term(&self) -> Term {
        self.spans.back().map_or(self.prev_term, |s| s.term)
    }

    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == LogIndex::ZERO {
            return Some(Term::ZERO);
        }
        if index == self.first.prev() {
            return Some(self.prev_term);
        }
        self.find(index).map(|k| self.spans[k].term)
    }

    /// Position of the span holding `index`.
    pub fn find(&self, index: LogIndex) -> Option<usize> {
        if index < self.first || index > self.last_index() {
            return None;
        }
        let k = self.spans.partition_point(|s| s.last < index);
        (k < self.spans.len()).then_some(k)
    }

    pub fn check_append(&self, group: GroupId, first: LogIndex, term: Term) -> Result<()> {
        let expected = self.last_index().next();
        if first != expected {
            return Err(Error::NotContiguous {
                group,
                expected,
                got: first,
            });
        }
        if term < self.last_term() {
            return Err(Error::TermRegression {
                group,
                last: self.last_term(),
                got: term,
            });
        }
        Ok(())
    }

    /// Whether `truncate(from)` would remove anything; errors if `from` is compacted.
    pub fn check_truncate(&self, group: GroupId, from: LogIndex) -> Result<bool> {
        if from < self.first {
            return Err(Error::Compacted {
                group,
                index: from,
                first: self.first,
            });
        }
        Ok(from <= self.last_index())
    }

    pub fn truncate(&mut self, from: LogIndex) {
        while let Some(back) = self.spans.back_mut() {
            if back.first >= from {
                self.spans.pop_back();
            } else {
                if back.last >= from {
                    back.last = from.prev();
                }
                break;
            }
        }
    }

    /// Whether `compact(through, term)` would change anything; errors on a term conflict.
    pub fn check_compact(&self, group: GroupId, through: LogIndex, term: Term) -> Result<bool> {
        if through < self.first {
            return Ok(false);
        }
        if let Some(found) = self.term_at(through) {
            if found != term {
                return Err(Error::CompactTermMismatch {
                    group,
                    through,
                    term,
                    found,
                });
            }
        }
        Ok(true)
    }

    pub fn compact(&mut self, through: LogIndex, term: Term) {
        while let Some(front) = self.spans.front_mut() {
            if front.last <= through {
                self.spans.pop_front();
            } else {
                if front.first <= through {
                    front.first = through.next();
                }
                break;
            }
        }
        self.first = through.next();
        self.prev_term = term;
    }

    /// The spans overlapping `from ..= to`, narrowed to it. Errors unless the range lies in
    /// `first ..= last` (an empty range `from > to` reads as nothing).
    pub fn spans_in(&self, group: GroupId, from: LogIndex, to: LogIndex) -> Result<Vec<Span>> {
        if from > to {
            return Ok(Vec::new());
        }
        if from < self.first {
            return Err(Error::Compacted {
                group,
                index: from,
                first: self.first,
            });
        }
        let last = self.last_index();
        if to > last {
            return Err(Error::Unavailable {
                group,
                index: to,
                last,
            });
        }
        let start = self.find(from).expect("from lies in the log");
        let mut out = Vec::new();
        for span in self.spans.range(start..) {
            if span.first > to {
                break;
            }
            let mut piece = span.clone();
            piece.first = piece.first.max(from);
            piece.last = piece.last.min(to);
            out.push(piece);
        }
        Ok(out)
    }
}

/// The position a group's log ends at: its last index and that entry's term.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    pub index: LogIndex,
    pub term: Term,
}

/// All groups of a shard. `BTreeMap` keeps every iteration (and so every report) in group
/// order, which the deterministic simulator relies on.
#[derive(Clone, Debug, Default)]
pub(crate) struct ShardView {
    pub groups: BTreeMap<GroupId, GroupLog>,
}

impl ShardView {
    pub fn group(&self, group: GroupId) -> Option<&GroupLog> {
        self.groups.get(&group)
    }

    /// Runs `f` on the group's log, or on an empty log if the group is unknown.
    pub fn with_group<R>(&self, group: GroupId, f: impl FnOnce(&GroupLog) -> R) -> R {
        match self.group(group) {
            Some(g) => f(g),
            None => f(&GroupLog::default()),
        }
    }

    pub fn group_mut(&mut self, group: GroupId) -> &mut GroupLog {
        self.groups.entry(group).or_default()
    }

    pub fn position(&self, group: GroupId) -> LogPosition {
        self.group(group)
            .map_or_else(LogPosition::default, |g| LogPosition {
                index: g.last_index(),
                term: g.last_term(),
            })
    }

    pub fn first_index(&self, group: GroupId) -> LogIndex {
        self.group(group).map_or(LogIndex(1), |g| g.first)
    }

    pub fn last_index(&self, group: GroupId) -> LogIndex {
        self.group(group).map_or(LogIndex::ZERO, |g| g.last_index())
    }

    pub fn term_at(&self, group: GroupId, index: LogIndex) -> Option<Term> {
        match self.group(group) {
            Some(g) => g.term_at(index),
            None => (index == LogIndex::ZERO).then_some(Term::ZERO),
        }
    }

    pub fn spans_in(&self, group: GroupId, from: LogIndex, to: LogIndex) -> Result<Vec<Span>> {
        match self.group(group) {
            Some(g) => g.spans_in(group, from, to),
            None => GroupLog::default().spans_in(group, from, to),
        }
    }

    /// Validates and applies an append.
    pub fn append(&mut self, group: GroupId, span: Span) -> Result<()> {
        let g = self.group_mut(group);
        g.check_append(group, span.first, span.term)?;
        g.spans.push_back(span);
        Ok(())
    }

    /// Validates and applies a truncation; `Ok(false)` when it removes nothing.
    pub fn truncate(&mut self, group: GroupId, from: LogIndex) -> Result<bool> {
        let g = self.group_mut(group);
        let changes = g.check_truncate(group, from)?;
        if changes {
            g.truncate(from);
        }
        Ok(changes)
    }

    /// Validates and applies a compaction; `Ok(false)` when it changes nothing.
    pub fn compact(&mut self, group: GroupId, through: LogIndex, term: Term) -> Result<bool> {
        let g = self.group_mut(group);
        let changes = g.check_compact(group, through, term)?;
        if changes {
            g.compact(through, term);
        }
        Ok(changes)
    }
}

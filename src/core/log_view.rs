//! The core's view of its group's log: the entries it holds in memory and how far they are
//! durable.
//!
//! Invariants:
//! - `batches` are contiguous: each starts right after the previous one ends, and the first
//!   starts at `base_index + 1`. `(base_index, base_term)` names the entry just before the
//!   first held one (`(0, 0)` for a log that starts empty).
//! - `durable_index <= last_index()`, and every entry up to `durable_index` is durable with the
//!   content held here (a truncation lowers `durable_index` below the cut).
//! - terms never decrease along the log.

use std::collections::VecDeque;

use crate::batch::EntryBatch;
use crate::types::{LogIndex, Term};

#[derive(Clone, Debug, Default)]
pub struct LogView {
    batches: VecDeque<EntryBatch>,
    base_index: LogIndex,
    base_term: Term,
    durable_index: LogIndex,
}

impl LogView {
    /// A log whose entries start after `(base_index, base_term)` (a compaction point, or
    /// `(0, 0)`) and continue with `batches`, all of them durable.
    pub fn recovered(base_index: LogIndex, base_term: Term, batches: Vec<EntryBatch>) -> LogView {
        let mut view = LogView {
            base_index,
            base_term,
            durable_index: base_index,
            ..LogView::default()
        };
        for batch in batches {
            view.append(batch);
        }
        view.durable_index = view.last_index();
        view
    }

    pub fn last_index(&self) -> LogIndex {
        self.batches
            .back()
            .map_or(self.base_index, EntryBatch::last_index)
    }

    pub fn last_term(&self) -> Term {
        self.batches.back().map_or(self.base_term, EntryBatch::term)
    }

    pub fn durable_index(&self) -> LogIndex {
        self.durable_index
    }

    /// The entry just before the first one held (the compaction point).
    pub fn base_index(&self) -> LogIndex {
        self.base_index
    }

    /// Drops the entries up to `through` (held), which becomes the base. A snapshot covers
    /// them, so the log counts as durable up to `through` at least.
    pub fn compact(&mut self, through: LogIndex) {
        assert!(
            through > self.base_index && through <= self.last_index(),
            "compaction point {through} outside the log"
        );
        self.durable_index = self.durable_index.max(through);
        let term = self.term_at(through).expect("held");
        while let Some(first) = self.batches.front() {
            if first.last_index() <= through {
                self.batches.pop_front();
            } else {
                if first.first_index() <= through {
                    let kept = first.slice(through.next(), first.last_index());
                    *self.batches.front_mut().expect("checked above") = kept;
                }
                break;
            }
        }
        self.base_index = through;
        self.base_term = term;
    }

    /// Drops every entry; the log continues after `(index, term)`, durable up to there (a
    /// snapshot replaced it).
    pub fn reset(&mut self, index: LogIndex, term: Term) {
        self.batches.clear();
        self.base_index = index;
        self.base_term = term;
        self.durable_index = index;
    }

    /// The term of the entry at `index`, if this view knows it.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        self.batch_position(index).map(|at| self.batches[at].term())
    }

    /// Appends a batch that starts right after the last entry.
    pub fn append(&mut self, batch: EntryBatch) {
        assert_eq!(
            batch.first_index(),
            self.last_index().next(),
            "appended batch is not contiguous"
        );
        assert!(
            batch.term() >= self.last_term(),
            "terms decrease in the log"
        );
        self.batches.push_back(batch);
    }

    /// Removes every entry from `from` on.
    pub fn truncate_from(&mut self, from: LogIndex) {
        assert!(
            from > self.base_index,
            "cannot truncate below the log's base"
        );
        while let Some(last) = self.batches.back() {
            if last.first_index() >= from {
                self.batches.pop_back();
            } else {
                if last.contains(from) {
                    let kept = last.slice(last.first_index(), from.prev());
                    *self.batches.back_mut().expect("checked above") = kept;
                }
                break;
            }
        }
        self.durable_index = self.durable_index.min(from.prev());
    }

    /// Records that the log is durable up to `index` if it still holds an entry of `term` there.
    /// Returns whether the durable index advanced.
    pub fn mark_durable(&mut self, index: LogIndex, term: Term) -> bool {
        if index <= self.durable_index || index > self.last_index() {
            return false;
        }
        if self.term_at(index) != Some(term) {
            return false;
        }
        self.durable_index = index;
        true
    }

    /// Entries from `from` on, at most `bytes_max` encoded bytes (but always at least one batch
    /// when `from <= last_index()`).
    pub fn entries_from(&self, from: LogIndex, bytes_max: usize) -> Vec<EntryBatch> {
        let mut out = Vec::new();
        let Some(start) = self.batch_position(from) else {
            return out;
        };
        let mut bytes = 0;
        for batch in self.batches.range(start..) {
            if !out.is_empty() && bytes + batch.encoded_len() > bytes_max {
                break;
            }
            bytes += batch.encoded_len();
            if batch.first_index() < from {
                out.push(batch.slice(from, batch.last_index()));
            } else {
                out.push(batch.clone());
            }
        }
        out
    }

    /// Entries `from ..= to` (both held).
    pub fn entries_between(&self, from: LogIndex, to: LogIndex) -> Vec<EntryBatch> {
        let mut out = Vec::new();
        let Some(start) = self.batch_position(from) else {
            return out;
        };
        for batch in self.batches.range(start..) {
            if batch.first_index() > to {
                break;
            }
            let first = batch.first_index().max(from);
            let last = batch.last_index().min(to);
            if first == batch.first_index() && last == batch.last_index() {
                out.push(batch.clone());
            } else {
                out.push(batch.slice(first, last));
            }
        }
        out
    }

    /// The first index holding an entry of `term`, searching back from `at` (which holds one).
    pub fn first_index_of_term_at(&self, at: LogIndex) -> LogIndex {
        let term = self.term_at(at).expect("index is held");
        let Some(mut position) = self.batch_position(at) else {
            return at;
        };
        while position > 0 && self.batches[position - 1].term() == term {
            position -= 1;
        }
        self.batches[position].first_index()
    }

    /// The last index holding an entry of `term`, if the log holds any.
    pub fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        self.batches
            .iter()
            .rev()
            .find(|batch| batch.term() == term)
            .map(EntryBatch::last_index)
    }

    /// Whether a log ending at `(last_index, last_term)` is at least as up to date as this one
    /// (§5.4.1).
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Position in `batches` of the batch holding `index`.
    fn batch_position(&self, index: LogIndex) -> Option<usize> {
        if index <= self.base_index || index > self.last_index() {
            return None;
        }
        let position = self
            .batches
            .partition_point(|batch| batch.last_index() < index);
        Some(position)
    }

    /// Checks, in O(1), what the module docs' invariants say about the log's ends: the first
    /// held batch starts right after the base, the last one's term is not below the base's,
    /// and `durable_index <= last_index()`.
    pub fn check_ends(&self) -> Result<(), String> {
        if let Some(first) = self.batches.front() {
            if first.first_index() != self.base_index.next() {
                return Err(format!(
                    "log gap: {first:?} where {} was expected",
                    self.base_index.next()
                ));
            }
        }
        if self.last_term() < self.base_term {
            return Err(format!(
                "log term decreases: last term {} below base term {}",
                self.last_term(),
                self.base_term
            ));
        }
        if self.durable_index > self.last_index() {
            return Err(format!(
                "durable index {} beyond last index {}",
                self.durable_index,
                self.last_index()
            ));
        }
        Ok(())
    }

    /// Checks all the structural invariants (see the module docs): walks every held batch,
    /// O(batches held).
    pub fn check(&self) -> Result<(), String> {
        let mut expected = self.base_index.next();
        let mut term = self.base_term;
        for batch in &self.batches {
            if batch.first_index() != expected {
                return Err(format!("log gap: {batch:?} where {expected} was expected"));
            }
            if batch.term() < term {
                return Err(format!("log term decreases at {batch:?}"));
            }
            expected = batch.last_index().next();
            term = batch.term();
        }
        self.check_ends()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchKind;

    fn batch(term: u64, first: u64, count: usize) -> EntryBatch {
        let payloads: Vec<Vec<u8>> = (0..count).map(|i| vec![i as u8; 3]).collect();
        EntryBatch::encode(
            BatchKind::Command,
            Term(term),
            LogIndex(first),
            payloads.iter().map(Vec::as_slice),
        )
    }

    #[test]
    fn truncate_inside_a_batch_keeps_the_prefix() {
        let mut log = LogView::recovered(
            LogIndex::ZERO,
            Term::ZERO,
            vec![batch(1, 1, 3), batch(2, 4, 4)],
        );
        assert_eq!(log.durable_index(), LogIndex(7));
        log.truncate_from(LogIndex(6));
        assert_eq!(log.last_index(), LogIndex(5));
        assert_eq!(log.term_at(LogIndex(5)), Some(Term(2)));
        assert_eq!(log.durable_index(), LogIndex(5));
        log.truncate_from(LogIndex(2));
        assert_eq!(log.last_index(), LogIndex(1));
        assert_eq!(log.last_term(), Term(1));
        log.check().unwrap();
    }

    #[test]
    fn ranges_and_term_searches() {
        let log = LogView::recovered(
            LogIndex::ZERO,
            Term::ZERO,
            vec![batch(1, 1, 3), batch(1, 4, 2), batch(3, 6, 2)],
        );
        let between = log.entries_between(LogIndex(2), LogIndex(6));
        let indexes: Vec<(u64, u64)> = between
            .iter()
            .map(|b| (b.first_index().0, b.last_index().0))
            .collect();
        assert_eq!(indexes, vec![(2, 3), (4, 5), (6, 6)]);
        assert_eq!(log.first_index_of_term_at(LogIndex(5)), LogIndex(1));
        assert_eq!(log.last_index_of_term(Term(1)), Some(LogIndex(5)));
        assert_eq!(log.last_index_of_term(Term(2)), None);
        assert_eq!(log.entries_from(LogIndex(3), 1).len(), 1);
        assert_eq!(log.term_at(LogIndex(0)), Some(Term(0)));
        assert_eq!(log.term_at(LogIndex(8)), None);
    }

    #[test]
    fn stale_persisted_reports_are_ignored() {
        let mut log = LogView::default();
        log.append(batch(1, 1, 2));
        log.truncate_from(LogIndex(2));
        log.append(batch(2, 2, 1));
        assert!(!log.mark_durable(LogIndex(2), Term(1)));
        assert!(log.mark_durable(LogIndex(2), Term(2)));
        assert_eq!(log.durable_index(), LogIndex(2));
    }

    #[test]
    fn compaction_keeps_the_base_term_and_reset_empties() {
        let mut log = LogView::recovered(
            LogIndex::ZERO,
            Term::ZERO,
            vec![batch(1, 1, 3), batch(2, 4, 4)],
        );
        log.compact(LogIndex(5));
        assert_eq!(log.base_index(), LogIndex(5));
        assert_eq!(log.term_at(LogIndex(5)), Some(Term(2)));
        assert_eq!(log.term_at(LogIndex(4)), None);
        assert_eq!(
            log.entries_from(LogIndex(6), 1 << 20)[0].first_index(),
            LogIndex(6)
        );
        assert_eq!(log.last_index(), LogIndex(7));
        log.check().unwrap();
        log.reset(LogIndex(20), Term(4));
        assert_eq!((log.last_index(), log.last_term()), (LogIndex(20), Term(4)));
        assert_eq!(log.durable_index(), LogIndex(20));
        log.append(batch(4, 21, 1));
        log.check().unwrap();
    }
}

//! Proposals waiting for their entries to be applied, kept per accepted batch rather than per
//! entry.
//!
//! A proposal is answered "not applied" ([`ProposalError::Superseded`]) only when that is
//! certain: an entry of another term was applied at its index. Everything else that ends a
//! wait without an apply of its own entry is an unknown outcome:
//! - a new batch placed at or below a waiting one means this node's log was cut below those
//!   entries; another node may still hold them and commit them later (a leader of a later term
//!   that has them). Such waiters are *displaced*: they keep waiting for the apply at their
//!   index and are decided by its term there, like any other waiter;
//! - a snapshot restored over waiting entries applies them (or others) without telling which:
//!   those waiters are answered [`ProposalError::OutcomeUnknown`];
//! - deadlines and shutdown answer `Timeout` and `ShuttingDown`, both unknown outcomes.
//!
//! Invariants: per group, placed batches are in increasing index order and do not overlap
//! (displaced ones may overlap them and each other); every reply is handed back exactly once.

use std::collections::{BTreeMap, VecDeque};

use crate::core::BrokenRule;
use crate::engine::{Committed, ProposalError};
use crate::types::{GroupId, LogIndex, Term};

/// Answers handed back: `(reply, result)`.
pub type Answers<R> = Vec<(R, Result<Committed, ProposalError>)>;

struct PendingBatch<R> {
    term: Term,
    first: LogIndex,
    deadline_ticks: u64,
    /// Reply of entry `first + i`; `None` once answered.
    replies: VecDeque<Option<R>>,
}

impl<R> PendingBatch<R> {
    fn last(&self) -> LogIndex {
        self.first.plus(self.replies.len() as u64).prev()
    }

    fn answer_all(&mut self, error: &ProposalError, answers: &mut Answers<R>) {
        self.answer_each(|_| error.clone(), answers);
    }

    /// Answers every waiting reply with `error(index of its entry)`.
    fn answer_each(&mut self, error: impl Fn(LogIndex) -> ProposalError, answers: &mut Answers<R>) {
        for (position, reply) in self.replies.drain(..).enumerate() {
            if let Some(reply) = reply {
                answers.push((reply, Err(error(self.first.plus(position as u64)))));
            }
        }
    }

    /// Decides the replies up to `last` (at most) from an apply of `first ..= last` in
    /// `term`, then drops them: the entry's answer where the terms match, superseded where they
    /// differ, unknown for entries below `first` (applied earlier without this waiter seeing
    /// it).
    fn decide_through(
        &mut self,
        first: LogIndex,
        last: LogIndex,
        term: Term,
        answer: &mut impl FnMut(usize) -> Result<Committed, ProposalError>,
        answers: &mut Answers<R>,
    ) {
        let through = (last.0.min(self.last().0) - self.first.0) as usize;
        for (position, reply) in self.replies.drain(..=through).enumerate() {
            let Some(reply) = reply else { continue };
            let index = self.first.plus(position as u64);
            let result = if index < first {
                Err(ProposalError::OutcomeUnknown)
            } else if self.term == term {
                answer((index.0 - first.0) as usize)
            } else {
                Err(ProposalError::Superseded { index })
            };
            answers.push((reply, result));
        }
        self.first = self.first.plus(through as u64 + 1);
    }
}

/// The waiters of one group.
struct GroupWaiters<R> {
    /// Batches placed in this node's log, in index order, not overlapping.
    placed: VecDeque<PendingBatch<R>>,
    /// Batches whose entries were cut from this node's log before being applied (see the
    /// module docs); rare, so kept unordered.
    displaced: Vec<PendingBatch<R>>,
}

impl<R> Default for GroupWaiters<R> {
    fn default() -> Self {
        GroupWaiters {
            placed: VecDeque::new(),
            displaced: Vec::new(),
        }
    }
}

impl<R> GroupWaiters<R> {
    fn batches_mut(&mut self) -> impl Iterator<Item = &mut PendingBatch<R>> {
        self.placed.iter_mut().chain(self.displaced.iter_mut())
    }

    fn is_empty(&self) -> bool {
        self.placed.is_empty() && self.displaced.is_empty()
    }
}

pub struct Waiters<R> {
    groups: BTreeMap<GroupId, GroupWaiters<R>>,
    /// A rule of this module broken on purpose, for the simulator's negative controls.
    broken_rule: Option<BrokenRule>,
}

impl<R> Default for Waiters<R> {
    fn default() -> Self {
        Waiters {
            groups: BTreeMap::new(),
            broken_rule: None,
        }
    }
}

impl<R> Waiters<R> {
    /// Waiters that break `rule` if it is one of theirs
    /// ([`BrokenRule::SupersedeDisplaced`], [`BrokenRule::SupersedeUnderSnapshot`]).
    pub fn with_broken_rule(rule: Option<BrokenRule>) -> Self {
        Waiters {
            broken_rule: rule,
            ..Waiters::default()
        }
    }

    /// The proposals `replies` were placed at `first..` in `term`. Waiting entries at or above
    /// `first` were cut from this node's log: they become displaced (see the module docs).
    pub fn accepted(
        &mut self,
        group: GroupId,
        first: LogIndex,
        term: Term,
        deadline_ticks: u64,
        replies: Vec<R>,
        answers: &mut Answers<R>,
    ) {
        let waiters = self.groups.entry(group).or_default();
        while let Some(back) = waiters.placed.back_mut() {
            if back.last() < first {
                break;
            }
            let keep = first.0.saturating_sub(back.first.0) as usize;
            let cut = PendingBatch {
                term: back.term,
                first: back.first.plus(keep as u64),
                deadline_ticks: back.deadline_ticks,
                replies: back.replies.drain(keep..).collect(),
            };
            if back.replies.is_empty() {
                waiters.placed.pop_back();
            }
            if self.broken_rule == Some(BrokenRule::SupersedeDisplaced) {
                let mut cut = cut;
                cut.answer_each(|index| ProposalError::Superseded { index }, answers);
            } else if cut.replies.iter().any(Option::is_some) {
                waiters.displaced.push(cut);
            }
        }
        if !replies.is_empty() {
            waiters.placed.push_back(PendingBatch {
                term,
                first,
                deadline_ticks,
                replies: replies.into_iter().map(Some).collect(),
            });
        }
    }

    /// Entries `first ..= first + len - 1` of `term` were applied; `answer(i)` is the answer
    /// to the proposal of the `i`-th of them (the state machine's output, or a client
    /// session's refusal).
    pub fn applied(
        &mut self,
        group: GroupId,
        first: LogIndex,
        len: u64,
        term: Term,
        mut answer: impl FnMut(usize) -> Result<Committed, ProposalError>,
        answers: &mut Answers<R>,
    ) {
        let Some(waiters) = self.groups.get_mut(&group) else {
            return;
        };
        let last = first.plus(len).prev();
        while let Some(front) = waiters.placed.front_mut() {
            if front.first > last {
                break;
            }
            front.decide_through(first, last, term, &mut answer, answers);
            if front.replies.is_empty() {
                waiters.placed.pop_front();
            } else {
                break;
            }
        }
        if !waiters.displaced.is_empty() {
            for batch in &mut waiters.displaced {
                if batch.first <= last {
                    batch.decide_through(first, last, term, &mut answer, answers);
                }
            }
            waiters.displaced.retain(|batch| !batch.replies.is_empty());
        }
    }

    /// `group`'s state machine was replaced by a snapshot covering everything up to `index`:
    /// waiters there are answered [`ProposalError::OutcomeUnknown`] (the snapshot does not
    /// tell which entries it holds).
    pub fn restored(&mut self, group: GroupId, index: LogIndex, answers: &mut Answers<R>) {
        let Some(waiters) = self.groups.get_mut(&group) else {
            return;
        };
        let error = |index| match self.broken_rule {
            Some(BrokenRule::SupersedeUnderSnapshot) => ProposalError::Superseded { index },
            _ => ProposalError::OutcomeUnknown,
        };
        for batch in waiters.batches_mut() {
            if batch.first <= index {
                let through = (index.0.min(batch.last().0) - batch.first.0) as usize;
                for (position, reply) in batch.replies.drain(..=through).enumerate() {
                    if let Some(reply) = reply {
                        let at = batch.first.plus(position as u64);
                        answers.push((reply, Err(error(at))));
                    }
                }
                batch.first = batch.first.plus(through as u64 + 1);
            }
        }
        waiters.placed.retain(|batch| !batch.replies.is_empty());
        waiters.displaced.retain(|batch| !batch.replies.is_empty());
    }

    /// Answers `Timeout` for every batch whose deadline has passed.
    pub fn expire(&mut self, now_ticks: u64, answers: &mut Answers<R>) {
        for waiters in self.groups.values_mut() {
            while waiters
                .placed
                .front()
                .is_some_and(|front| front.deadline_ticks <= now_ticks)
            {
                let mut front = waiters.placed.pop_front().expect("checked");
                front.answer_all(&ProposalError::Timeout, answers);
            }
            waiters.displaced.retain_mut(|batch| {
                let expired = batch.deadline_ticks <= now_ticks;
                if expired {
                    batch.answer_all(&ProposalError::Timeout, answers);
                }
                !expired
            });
        }
    }

    /// Answers every waiting proposal with `error`.
    pub fn drain(&mut self, error: ProposalError, answers: &mut Answers<R>) {
        for (_, mut waiters) in std::mem::take(&mut self.groups) {
            for batch in waiters.batches_mut() {
                batch.answer_all(&error, answers);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.values().all(GroupWaiters::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const G: GroupId = GroupId(0);

    fn committed(index: u64) -> Result<Committed, ProposalError> {
        Ok(Committed {
            index: LogIndex(index),
            output: Bytes::from(index.to_le_bytes().to_vec()),
        })
    }

    fn superseded(index: u64) -> ProposalError {
        ProposalError::Superseded {
            index: LogIndex(index),
        }
    }

    fn output_from(first: u64) -> impl FnMut(usize) -> Result<Committed, ProposalError> {
        move |offset| committed(first + offset as u64)
    }

    #[test]
    fn applies_across_batch_boundaries_in_order() {
        let (mut waiters, mut answers) = (Waiters::default(), Vec::new());
        waiters.accepted(G, LogIndex(2), Term(1), 100, vec![1, 2, 3], &mut answers);
        waiters.accepted(G, LogIndex(5), Term(1), 100, vec![4, 5], &mut answers);
        waiters.applied(G, LogIndex(1), 2, Term(1), output_from(1), &mut answers);
        waiters.applied(G, LogIndex(3), 3, Term(1), output_from(3), &mut answers);
        assert_eq!(
            answers,
            vec![
                (1, committed(2)),
                (2, committed(3)),
                (3, committed(4)),
                (4, committed(5))
            ]
        );
        answers.clear();
        waiters.applied(G, LogIndex(6), 1, Term(1), output_from(6), &mut answers);
        assert_eq!(answers, vec![(5, committed(6))]);
        assert!(waiters.is_empty());
    }

    #[test]
    fn another_term_at_the_index_supersedes_and_a_lower_placement_displaces_older_waiters() {
        let (mut waiters, mut answers) = (Waiters::default(), Vec::new());
        waiters.accepted(G, LogIndex(5), Term(2), 100, vec![1, 2, 3], &mut answers);
        // Leadership lost and regained: the log was cut at 6 and the new batch starts there.
        // Entries 6 and 7 of term 2 may still be committed by another node: no answer yet.
        waiters.accepted(G, LogIndex(6), Term(4), 100, vec![9], &mut answers);
        assert_eq!(answers, vec![]);
        waiters.applied(G, LogIndex(5), 1, Term(3), output_from(5), &mut answers);
        waiters.applied(G, LogIndex(6), 1, Term(4), output_from(6), &mut answers);
        assert_eq!(
            answers,
            vec![
                (1, Err(superseded(5))),
                (9, committed(6)),
                (2, Err(superseded(6)))
            ]
        );
        answers.clear();
        waiters.applied(G, LogIndex(7), 1, Term(4), output_from(7), &mut answers);
        assert_eq!(answers, vec![(3, Err(superseded(7)))]);
        assert!(waiters.is_empty());
    }

    /// Issue 13, finding 1: five nodes; A places X at 5 in term 2 and replicates it to B only;
    /// C wins term 3 without X and cuts A's log; A wins term 4 and places Y at 5; B wins term
    /// 5 and commits X. A must answer X committed, not "not applied".
    #[test]
    fn a_displaced_entry_committed_by_another_leader_is_answered_committed() {
        let (mut waiters, mut answers) = (Waiters::default(), Vec::new());
        waiters.accepted(G, LogIndex(5), Term(2), 100, vec![10], &mut answers);
        waiters.accepted(G, LogIndex(5), Term(4), 100, vec![20], &mut answers);
        assert_eq!(answers, vec![], "neither outcome is known yet");
        waiters.applied(G, LogIndex(5), 1, Term(2), output_from(5), &mut answers);
        assert_eq!(answers, vec![(20, Err(superseded(5))), (10, committed(5))]);
        assert!(waiters.is_empty());
    }

    #[test]
    fn a_restored_snapshot_leaves_the_outcome_of_covered_waiters_unknown() {
        let (mut waiters, mut answers) = (Waiters::default(), Vec::new());
        waiters.accepted(G, LogIndex(3), Term(2), 100, vec![1, 2, 3], &mut answers);
        waiters.restored(G, LogIndex(4), &mut answers);
        assert_eq!(
            answers,
            vec![
                (1, Err(ProposalError::OutcomeUnknown)),
                (2, Err(ProposalError::OutcomeUnknown))
            ]
        );
        answers.clear();
        waiters.applied(G, LogIndex(5), 1, Term(2), output_from(5), &mut answers);
        assert_eq!(answers, vec![(3, committed(5))]);
        assert!(waiters.is_empty());
    }

    #[test]
    fn the_broken_rules_answer_not_applied_where_the_outcome_is_unknown() {
        let mut answers = Vec::new();
        let mut displacing = Waiters::with_broken_rule(Some(BrokenRule::SupersedeDisplaced));
        displacing.accepted(G, LogIndex(5), Term(2), 100, vec![1], &mut answers);
        displacing.accepted(G, LogIndex(5), Term(4), 100, vec![2], &mut answers);
        assert_eq!(answers, vec![(1, Err(superseded(5)))]);
        answers.clear();
        let mut restoring = Waiters::with_broken_rule(Some(BrokenRule::SupersedeUnderSnapshot));
        restoring.accepted(G, LogIndex(5), Term(2), 100, vec![1], &mut answers);
        restoring.restored(G, LogIndex(5), &mut answers);
        assert_eq!(answers, vec![(1, Err(superseded(5)))]);
    }

    #[test]
    fn deadlines_and_shutdown_answer_everything_once() {
        let (mut waiters, mut answers) = (Waiters::default(), Vec::new());
        waiters.accepted(G, LogIndex(1), Term(1), 10, vec![1, 2], &mut answers);
        waiters.accepted(G, LogIndex(3), Term(1), 20, vec![3], &mut answers);
        waiters.expire(15, &mut answers);
        assert_eq!(
            answers,
            vec![
                (1, Err(ProposalError::Timeout)),
                (2, Err(ProposalError::Timeout))
            ]
        );
        answers.clear();
        waiters.drain(ProposalError::ShuttingDown, &mut answers);
        assert_eq!(answers, vec![(3, Err(ProposalError::ShuttingDown))]);
        assert!(waiters.is_empty());
    }
}

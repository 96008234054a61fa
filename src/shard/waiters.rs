//! Proposals waiting for their entries to be applied, kept per accepted batch rather than per
//! entry.
//!
//! Invariants: per group, pending batches are in increasing index order and do not overlap;
//! every reply is handed back exactly once (committed, superseded, timed out or shut down).
//! A new batch placed at or below an older pending one means this node's log was cut below
//! those entries (it lost leadership and regained it), so the older replies are superseded.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::shard::engine::{Committed, ProposalError};
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
        for reply in self.replies.drain(..).flatten() {
            answers.push((reply, Err(error.clone())));
        }
    }
}

pub struct Waiters<R> {
    groups: BTreeMap<GroupId, VecDeque<PendingBatch<R>>>,
}

impl<R> Default for Waiters<R> {
    fn default() -> Self {
        Waiters {
            groups: BTreeMap::new(),
        }
    }
}

impl<R> Waiters<R> {
    /// The proposals `replies` were placed at `first..` in `term`.
    pub fn accepted(
        &mut self,
        group: GroupId,
        first: LogIndex,
        term: Term,
        deadline_ticks: u64,
        replies: Vec<R>,
        answers: &mut Answers<R>,
    ) {
        let queue = self.groups.entry(group).or_default();
        while let Some(back) = queue.back_mut() {
            if back.last() < first {
                break;
            }
            let keep = first.0.saturating_sub(back.first.0) as usize;
            for reply in back.replies.drain(keep..).flatten() {
                answers.push((reply, Err(ProposalError::Superseded)));
            }
            if back.replies.is_empty() {
                queue.pop_back();
            }
        }
        if !replies.is_empty() {
            queue.push_back(PendingBatch {
                term,
                first,
                deadline_ticks,
                replies: replies.into_iter().map(Some).collect(),
            });
        }
    }

    /// Entries `first ..= first + len - 1` of `term` were applied; `output(i)` is the state
    /// machine's output for the `i`-th of them.
    pub fn applied(
        &mut self,
        group: GroupId,
        first: LogIndex,
        len: u64,
        term: Term,
        mut output: impl FnMut(usize) -> Bytes,
        answers: &mut Answers<R>,
    ) {
        let Some(queue) = self.groups.get_mut(&group) else {
            return;
        };
        let last = first.plus(len).prev();
        while let Some(front) = queue.front_mut() {
            if front.first > last {
                break;
            }
            // Entries below `first` were applied before without deciding these replies (which
            // the ordering of placements rules out); they did not commit as proposed.
            let skip = first.0.saturating_sub(front.first.0) as usize;
            let through = (last.0.min(front.last().0) - front.first.0) as usize;
            for position in 0..=through {
                if let Some(reply) = front.replies[position].take() {
                    let index = front.first.plus(position as u64);
                    let result = if position >= skip && front.term == term {
                        let offset = (index.0 - first.0) as usize;
                        Ok(Committed {
                            index,
                            output: output(offset),
                        })
                    } else {
                        Err(ProposalError::Superseded)
                    };
                    answers.push((reply, result));
                }
            }
            front.replies.drain(..=through);
            front.first = front.first.plus(through as u64 + 1);
            if front.replies.is_empty() {
                queue.pop_front();
            } else {
                break;
            }
        }
    }

    /// Answers `Timeout` for every batch whose deadline has passed.
    pub fn expire(&mut self, now_ticks: u64, answers: &mut Answers<R>) {
        for queue in self.groups.values_mut() {
            while queue
                .front()
                .is_some_and(|front| front.deadline_ticks <= now_ticks)
            {
                let mut front = queue.pop_front().expect("checked");
                front.answer_all(&ProposalError::Timeout, answers);
            }
        }
    }

    /// Answers every waiting proposal with `error`.
    pub fn drain(&mut self, error: ProposalError, answers: &mut Answers<R>) {
        for (_, mut queue) in std::mem::take(&mut self.groups) {
            for batch in &mut queue {
                batch.answer_all(&error, answers);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.values().all(VecDeque::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: GroupId = GroupId(0);

    fn committed(index: u64) -> Result<Committed, ProposalError> {
        Ok(Committed {
            index: LogIndex(index),
            output: Bytes::from(index.to_le_bytes().to_vec()),
        })
    }

    fn output_from(first: u64) -> impl FnMut(usize) -> Bytes {
        move |offset| Bytes::from((first + offset as u64).to_le_bytes().to_vec())
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
    fn another_term_at_the_index_supersedes_and_a_lower_placement_cuts_older_waiters() {
        let (mut waiters, mut answers) = (Waiters::default(), Vec::new());
        waiters.accepted(G, LogIndex(5), Term(2), 100, vec![1, 2, 3], &mut answers);
        // Leadership lost and regained: the log was cut at 6 and the new batch starts there.
        waiters.accepted(G, LogIndex(6), Term(4), 100, vec![9], &mut answers);
        assert_eq!(
            answers,
            vec![
                (2, Err(ProposalError::Superseded)),
                (3, Err(ProposalError::Superseded))
            ]
        );
        answers.clear();
        waiters.applied(G, LogIndex(5), 1, Term(3), output_from(5), &mut answers);
        waiters.applied(G, LogIndex(6), 1, Term(4), output_from(6), &mut answers);
        assert_eq!(
            answers,
            vec![(1, Err(ProposalError::Superseded)), (9, committed(6))]
        );
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

//! Reads of a shard's state machine, from arrival to answer.
//!
//! A read is `(group, query, consistency, reply)`. Stale reads are answered on arrival. The
//! others are gathered during a turn and, at its end, per group: lease reads are stamped with
//! the commit index when the group's lease holds ([`crate::core::ReadLease`]); the rest become
//! **one** ReadIndex request to the core for the whole turn (one heartbeat round confirms them
//! all). Once a read has an index it waits until the state machine has applied that index, and
//! is then answered by [`crate::api::StateMachine::query`].
//!
//! Invariants:
//! - every reply is answered exactly once: served, refused, timed out or shut down;
//! - a read is served only after the engine applied its index (the engine's own applied index,
//!   not the core's, which runs ahead of the `Apply` actions still being carried out);
//! - per group, reads waiting for apply are kept in index order, so those an apply makes
//!   servable are a prefix.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;

use crate::engine::{Committed, ProposalError};
use crate::types::{GroupId, LogIndex, ReadConsistency};

/// One read waiting for an answer.
pub struct Read<R> {
    pub query: Bytes,
    pub reply: R,
}

/// Reads stamped with the index they must see, and when they give up.
struct Stamped<R> {
    index: LogIndex,
    deadline_ticks: u64,
    reads: Vec<Read<R>>,
}

/// Answers handed back: `(reply, result)`; a served read's `Committed` carries its read index
/// and the query's answer.
pub type ReadAnswers<R> = Vec<(R, Result<Committed, ProposalError>)>;

/// See the module documentation.
pub struct ReadQueue<R> {
    next_id: u64,
    /// Non-stale reads gathered this turn, per group.
    gathered: BTreeMap<GroupId, Vec<(ReadConsistency, Read<R>)>>,
    /// ReadIndex requests the cores have not answered yet, by id.
    awaiting_leader: HashMap<u64, (GroupId, u64, Vec<Read<R>>)>,
    /// Reads with an index, waiting for the state machine to apply it.
    awaiting_apply: BTreeMap<GroupId, VecDeque<Stamped<R>>>,
    /// The index the state machine has applied, per group.
    applied: BTreeMap<GroupId, LogIndex>,
}

impl<R> Default for ReadQueue<R> {
    fn default() -> Self {
        ReadQueue {
            next_id: 0,
            gathered: BTreeMap::new(),
            awaiting_leader: HashMap::new(),
            awaiting_apply: BTreeMap::new(),
            applied: BTreeMap::new(),
        }
    }
}

impl<R> ReadQueue<R> {
    /// The index the state machine of `group` has applied.
    pub fn applied(&self, group: GroupId) -> LogIndex {
        self.applied.get(&group).copied().unwrap_or(LogIndex::ZERO)
    }

    /// Gathers a linearizable or lease read until the end of the turn.
    pub fn gather(&mut self, group: GroupId, consistency: ReadConsistency, read: Read<R>) {
        self.gathered
            .entry(group)
            .or_default()
            .push((consistency, read));
    }

    /// Takes the reads gathered this turn, per group.
    pub fn take_gathered(&mut self) -> BTreeMap<GroupId, Vec<(ReadConsistency, Read<R>)>> {
        std::mem::take(&mut self.gathered)
    }

    /// Registers reads sent to `group`'s core as one ReadIndex request; returns its id.
    pub fn send_to_leader(
        &mut self,
        group: GroupId,
        deadline_ticks: u64,
        reads: Vec<Read<R>>,
    ) -> u64 {
        self.next_id += 1;
        self.awaiting_leader
            .insert(self.next_id, (group, deadline_ticks, reads));
        self.next_id
    }

    /// The core confirmed ReadIndex request `id` at `index`. Returns its group.
    pub fn leader_confirmed(&mut self, id: u64, index: LogIndex) -> Option<GroupId> {
        let (group, deadline_ticks, reads) = self.awaiting_leader.remove(&id)?;
        self.stamp(group, index, deadline_ticks, reads);
        Some(group)
    }

    /// The core refused ReadIndex request `id`.
    pub fn leader_refused(&mut self, id: u64, error: &ProposalError, answers: &mut ReadAnswers<R>) {
        if let Some((_, _, reads)) = self.awaiting_leader.remove(&id) {
            answer_all(reads, error, answers);
        }
    }

    /// Queues `reads` to be served once `group` has applied `index`.
    pub fn stamp(
        &mut self,
        group: GroupId,
        index: LogIndex,
        deadline_ticks: u64,
        reads: Vec<Read<R>>,
    ) {
        let queue = self.awaiting_apply.entry(group).or_default();
        // Lease reads may be stamped before ReadIndex reads that arrived earlier with a lower
        // commit index are confirmed: insert in index order.
        let at = queue.partition_point(|stamped| stamped.index <= index);
        queue.insert(
            at,
            Stamped {
                index,
                deadline_ticks,
                reads,
            },
        );
    }

    /// The state machine of `group` applied up to `index`: answers, with `query`, every read
    /// of the group that waited for `index` or less.
    pub fn applied_up_to(
        &mut self,
        group: GroupId,
        index: LogIndex,
        mut query: impl FnMut(&[u8]) -> Bytes,
        answers: &mut ReadAnswers<R>,
    ) {
        let applied = self.applied.entry(group).or_insert(LogIndex::ZERO);
        *applied = (*applied).max(index);
        let applied = *applied;
        let Some(queue) = self.awaiting_apply.get_mut(&group) else {
            return;
        };
        while queue
            .front()
            .is_some_and(|stamped| stamped.index <= applied)
        {
            let stamped = queue.pop_front().expect("peeked");
            for read in stamped.reads {
                let output = query(&read.query);
                answers.push((
                    read.reply,
                    Ok(Committed {
                        index: stamped.index,
                        output,
                    }),
                ));
            }
        }
    }

    /// Answers `Timeout` to every read whose deadline passed.
    pub fn expire(&mut self, now_ticks: u64, answers: &mut ReadAnswers<R>) {
        let expired: Vec<u64> = self
            .awaiting_leader
            .iter()
            .filter(|(_, (_, deadline, _))| *deadline <= now_ticks)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            self.leader_refused(id, &ProposalError::Timeout, answers);
        }
        for queue in self.awaiting_apply.values_mut() {
            queue.retain_mut(|stamped| {
                if stamped.deadline_ticks > now_ticks {
                    return true;
                }
                answer_all(
                    std::mem::take(&mut stamped.reads),
                    &ProposalError::Timeout,
                    answers,
                );
                false
            });
        }
    }

    /// Whether no read is waiting for an answer.
    pub fn is_empty(&self) -> bool {
        self.gathered.is_empty()
            && self.awaiting_leader.is_empty()
            && self.awaiting_apply.values().all(VecDeque::is_empty)
    }

    /// Answers every outstanding read with `error`.
    pub fn drain(&mut self, error: &ProposalError, answers: &mut ReadAnswers<R>) {
        for (_, reads) in std::mem::take(&mut self.gathered) {
            answer_all(reads.into_iter().map(|(_, read)| read), error, answers);
        }
        for (_, (_, _, reads)) in self.awaiting_leader.drain() {
            answer_all(reads, error, answers);
        }
        for (_, queue) in std::mem::take(&mut self.awaiting_apply) {
            for stamped in queue {
                answer_all(stamped.reads, error, answers);
            }
        }
    }
}

fn answer_all<R>(
    reads: impl IntoIterator<Item = Read<R>>,
    error: &ProposalError,
    answers: &mut ReadAnswers<R>,
) {
    for read in reads {
        answers.push((read.reply, Err(error.clone())));
    }
}

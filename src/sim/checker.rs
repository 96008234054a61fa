//! Safety checks over the whole simulated cluster, run after every event.
//!
//! The checker keeps the cluster's ground truth as it is revealed:
//! - `leaders`: the one leader of each term (Election Safety, §5.2);
//! - `entries`: the content of each `(index, term)` ever appended anywhere — one leader makes
//!   at most one entry per index in its term, so a second content is a violation, and by the
//!   Log Matching property two logs that share `(index, term)` share the whole prefix;
//! - `committed`: the content committed at each index, learnt from applied entries (State
//!   Machine Safety: every node applies the same content at each index);
//! - `acknowledged`: client values whose commit was reported, each at its index (no committed
//!   proposal is ever lost: every later leader holds it — Leader Completeness, §5.4).

use std::collections::{BTreeMap, HashMap};

use crate::batch::{BatchKind, EntryBatch};
use crate::types::{LogIndex, NodeId, Term};

/// What one log position holds: kind and payload.
pub type EntryContent = (BatchKind, Vec<u8>);

/// A broken safety property, with what showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation(pub String);

#[derive(Default)]
pub struct Checker {
    leaders: HashMap<Term, NodeId>,
    entries: HashMap<(LogIndex, Term), EntryContent>,
    committed: BTreeMap<LogIndex, (Term, EntryContent)>,
    /// Client value -> index where its commit was acknowledged.
    acknowledged: BTreeMap<u64, LogIndex>,
    /// The highest index in `acknowledged`.
    highest_acknowledged: LogIndex,
}

fn violation<T>(message: String) -> Result<T, Violation> {
    Err(Violation(message))
}

impl Checker {
    /// `node` became leader of `term` holding `log_terms(index)` for its log.
    pub fn leader_elected(
        &mut self,
        node: NodeId,
        term: Term,
        term_at: impl Fn(LogIndex) -> Option<Term>,
    ) -> Result<(), Violation> {
        if let Some(&other) = self.leaders.get(&term) {
            if other != node {
                return violation(format!("two leaders in {term}: {other} and {node}"));
            }
        }
        self.leaders.insert(term, node);
        for (&index, (committed_term, _)) in &self.committed {
            if term_at(index) != Some(*committed_term) {
                return violation(format!(
                    "leader {node} of {term} lacks committed entry {index} of {committed_term} \
                     (holds {:?})",
                    term_at(index)
                ));
            }
        }
        Ok(())
    }

    /// A batch was appended to `node`'s log.
    pub fn appended(&mut self, node: NodeId, batch: &EntryBatch) -> Result<(), Violation> {
        for (offset, payload) in batch.payloads().enumerate() {
            let index = batch.first_index().plus(offset as u64);
            let content = (batch.kind(), payload.to_vec());
            match self.entries.get(&(index, batch.term())) {
                Some(known) if *known != content => {
                    return violation(format!(
                        "{node} appended different content at {index} of {}",
                        batch.term()
                    ));
                }
                Some(_) => {}
                None => {
                    self.entries.insert((index, batch.term()), content);
                }
            }
        }
        Ok(())
    }

    /// `node` applied `batch` (the next entries of its state machine, in order).
    pub fn applied(&mut self, node: NodeId, batch: &EntryBatch) -> Result<(), Violation> {
        for (offset, payload) in batch.payloads().enumerate() {
            let index = batch.first_index().plus(offset as u64);
            let content = (batch.kind(), payload.to_vec());
            match self.committed.get(&index) {
                Some((term, known)) if *term != batch.term() || *known != content => {
                    return violation(format!(
                        "{node} applied {} at {index}, but {term} was committed there",
                        batch.term()
                    ));
                }
                Some(_) => {}
                None => {
                    self.committed.insert(index, (batch.term(), content));
                }
            }
        }
        Ok(())
    }

    /// The client learnt that `value` committed at `index`.
    pub fn acknowledged(&mut self, value: u64, index: LogIndex) {
        self.acknowledged.insert(value, index);
        self.highest_acknowledged = self.highest_acknowledged.max(index);
    }

    /// The highest index at which a value was acknowledged so far: every read that begins
    /// now must see at least this index.
    pub fn highest_acknowledged(&self) -> LogIndex {
        self.highest_acknowledged
    }

    /// Every acknowledged value is where it was acknowledged in `log` (a leader's or a final
    /// log), as far as `log` reaches.
    pub fn check_acknowledged_in(
        &self,
        node: NodeId,
        payload_at: impl Fn(LogIndex) -> Option<Vec<u8>>,
        last_index: LogIndex,
    ) -> Result<(), Violation> {
        for (&value, &index) in &self.acknowledged {
            if index > last_index {
                return violation(format!(
                    "{node} log ends at {last_index}, before acknowledged value {value} at {index}"
                ));
            }
            if payload_at(index) != Some(value.to_le_bytes().to_vec()) {
                return violation(format!(
                    "acknowledged value {value} is not at {index} in {node}'s log"
                ));
            }
        }
        Ok(())
    }

    pub fn acknowledged_count(&self) -> usize {
        self.acknowledged.len()
    }

    pub fn committed_count(&self) -> usize {
        self.committed.len()
    }

    pub fn highest_committed(&self) -> LogIndex {
        self.committed
            .keys()
            .next_back()
            .copied()
            .unwrap_or(LogIndex::ZERO)
    }

    /// Log Matching between two logs: wherever both hold an entry of the same term, the
    /// prefixes up to it are identical.
    pub fn logs_match(
        a: (NodeId, &[EntryBatch]),
        b: (NodeId, &[EntryBatch]),
    ) -> Result<(), Violation> {
        let flatten = |log: &[EntryBatch]| -> Vec<(Term, EntryContent)> {
            log.iter()
                .flat_map(|batch| {
                    batch
                        .payloads()
                        .map(|payload| (batch.term(), (batch.kind(), payload.to_vec())))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let (left, right) = (flatten(a.1), flatten(b.1));
        let common = left.len().min(right.len());
        let Some(last_shared) = (0..common).rev().find(|&i| left[i].0 == right[i].0) else {
            return Ok(());
        };
        if let Some(i) = (0..=last_shared).find(|&i| left[i] != right[i]) {
            return violation(format!(
                "logs of {} and {} share index {} in {} but differ at index {}",
                a.0,
                b.0,
                last_shared + 1,
                left[last_shared].0,
                i + 1
            ));
        }
        Ok(())
    }
}

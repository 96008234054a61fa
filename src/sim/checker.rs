//! Safety checks over the whole simulated cluster, run after every event.
//!
//! The checker keeps the cluster's ground truth as it is revealed:
//! - `leaders`: the one leader of each term (Election Safety, §5.2);
//! - `entries`: the content of each `(index, term)` ever appended anywhere — one leader makes
//!   at most one entry per index in its term, so a second content is a violation, and by the
//!   Log Matching property two logs that share `(index, term)` share the whole prefix;
//! - `committed`: the content committed at each index, learnt from applied entries (State
//!   Machine Safety: every node applies the same content at each index, and a snapshot a node
//!   restores holds exactly the committed prefix);
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
    /// `node` became leader of `term` holding `term_at(index)` for its log above `log_base`
    /// (entries up to the base are in its snapshot, checked when it was restored or taken).
    pub fn leader_elected(
        &mut self,
        node: NodeId,
        term: Term,
        log_base: LogIndex,
        term_at: impl Fn(LogIndex) -> Option<Term>,
    ) -> Result<(), Violation> {
        if let Some(&other) = self.leaders.get(&term) {
            if other != node {
                return violation(format!("two leaders in {term}: {other} and {node}"));
            }
        }
        self.leaders.insert(term, node);
        for (&index, (committed_term, _)) in self.committed.range(log_base.next()..) {
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

    /// `node` restored a snapshot holding `state` (the entries applied up to its index, from
    /// index 1): it must be the committed prefix.
    pub fn restored(
        &mut self,
        node: NodeId,
        state: &[(Term, EntryContent)],
    ) -> Result<(), Violation> {
        for (offset, (term, content)) in state.iter().enumerate() {
            let index = LogIndex(offset as u64 + 1);
            match self.committed.get(&index) {
                Some((known_term, known)) if known_term != term || known != content => {
                    return violation(format!(
                        "{node} restored a snapshot holding {term} at {index}, but \
                         {known_term} was committed there"
                    ));
                }
                Some(_) => {}
                None => {
                    self.committed.insert(index, (*term, content.clone()));
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

    /// Log Matching between two logs (each possibly compacted, so starting anywhere):
    /// wherever both hold an entry of the same term, the entries both hold up to it are
    /// identical.
    pub fn logs_match(
        a: (NodeId, &[EntryBatch]),
        b: (NodeId, &[EntryBatch]),
    ) -> Result<(), Violation> {
        let entries = |log: &[EntryBatch]| -> BTreeMap<LogIndex, (Term, EntryContent)> {
            log.iter()
                .flat_map(|batch| {
                    batch.payloads().enumerate().map(move |(offset, payload)| {
                        (
                            batch.first_index().plus(offset as u64),
                            (batch.term(), (batch.kind(), payload.to_vec())),
                        )
                    })
                })
                .collect()
        };
        let (left, right) = (entries(a.1), entries(b.1));
        let Some(last_shared) = left
            .iter()
            .rev()
            .find(|(index, (term, _))| right.get(index).is_some_and(|(t, _)| t == term))
            .map(|(&index, _)| index)
        else {
            return Ok(());
        };
        for (index, entry) in left.range(..=last_shared) {
            if right.get(index).is_some_and(|other| other != entry) {
                return violation(format!(
                    "logs of {} and {} share {last_shared} in {} but differ at index {index}",
                    a.0, b.0, left[&last_shared].0
                ));
            }
        }
        Ok(())
    }
}

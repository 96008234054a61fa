//! Safety checks over the whole simulated cluster, run as the engines execute their actions.
//!
//! Every node's engine carries a [`NodeObserver`] ([`ActionObserver`]): it sees each action
//! the engine executed, with the group's core and the state machine as they are then, and
//! feeds the one [`Checker`] all observers share. The checker keeps each group's ground truth
//! as it is revealed:
//! - `leaders`: the one leader of each term (Election Safety, §5.2);
//! - `entries`: the content of each `(index, term)` ever appended anywhere — one leader makes
//!   at most one entry per index in its term, so a second content is a violation, and by the
//!   Log Matching property two logs that share `(index, term)` share the whole prefix;
//! - `committed`: the content committed at each index, learnt from applied entries (State
//!   Machine Safety: every node applies the same content at each index, and a snapshot a node
//!   restores reflects exactly the committed command entries up to its index, compared by the
//!   digest of [`crate::sim::machine`]);
//! - every newly elected leader holds every committed entry above its snapshot (Leader
//!   Completeness, §5.4), so no acknowledged write is ever lost;
//! - a write a client was told is done sits, with its content, at the index it was told;
//! - client sessions: every node decides the same for the session entry at each index
//!   (registered, applied, answered as a duplicate, refused), and each request of a session
//!   is applied by the state machine at one index at most; a write of a session a client was
//!   told is done is the request applied at the index it was told. So every request is
//!   applied at most once on every node, and every acknowledged one exactly once.
//!
//! The first violation is kept and reported after the engine call that caused it returns.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use crate::batch::{BatchKind, EntryBatch, SessionEntry, SESSION_HEADER_BYTES};
use crate::core::{Action, Raft, Role};
use crate::engine::sessions::SessionOutcome;
use crate::engine::ActionObserver;
use crate::sim::machine::{chain, Applied, SimMachine};
use crate::types::SessionRefusal;
use crate::types::{GroupId, LogIndex, NodeId, SessionId, SessionRequest, Term};

/// What one log position holds: kind and payload.
pub type EntryContent = (BatchKind, Vec<u8>);

/// A broken safety property, with what showed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation(pub String);

fn violation<T>(message: String) -> Result<T, Violation> {
    Err(Violation(message))
}

#[derive(Default)]
pub struct Checker {
    leaders: HashMap<(GroupId, Term), NodeId>,
    /// Every entry appended anywhere, with the one node that holds it while only one does
    /// (`None` once another node appended it too).
    entries: HashMap<(GroupId, LogIndex, Term), (EntryContent, Option<NodeId>)>,
    committed: BTreeMap<(GroupId, LogIndex), (Term, EntryContent)>,
    /// Per group, each rise of a leader's commit index: (index, the leader's term), in index
    /// order. The first one at or above an index says in which term it was committed.
    commit_rises: BTreeMap<GroupId, Vec<(LogIndex, Term)>>,
    leaders_elected: u64,
    snapshots_restored: u64,
    /// What the session entry at each index did, as the first node to apply it decided.
    session_outcomes: HashMap<(GroupId, LogIndex), SessionOutcome>,
    /// Where the state machine applied each request of a session.
    applied_requests: HashMap<(GroupId, SessionId, u64), LogIndex>,
    /// Session entries answered with the output of an earlier application (retries of applied
    /// requests), and refused for an unknown session.
    session_duplicates: u64,
    session_unknown: u64,
}

impl Checker {
    /// `node` became leader of `group` in `term` with `core`'s log.
    fn leader_elected(
        &mut self,
        node: NodeId,
        group: GroupId,
        term: Term,
        core: &Raft,
    ) -> Result<(), Violation> {
        self.leaders_elected += 1;
        if let Some(&other) = self.leaders.get(&(group, term)) {
            if other != node {
                return violation(format!(
                    "group {group}: two leaders in {term}: {other} and {node}"
                ));
            }
        }
        self.leaders.insert((group, term), node);
        let above_snapshot = (group, core.log_base().next())..=(group, LogIndex(u64::MAX));
        for (&(_, index), (committed_term, _)) in self.committed.range(above_snapshot) {
            // Leader completeness covers entries committed in earlier terms: a candidate of
            // an old term may still win with votes granted before a later term committed more.
            let earlier = self
                .commit_term(group, index)
                .is_some_and(|commit| commit < term);
            if earlier && core.term_at(index) != Some(*committed_term) {
                return violation(format!(
                    "group {group}: leader {node} of {term} lacks committed entry {index} of \
                     {committed_term} (holds {:?})",
                    core.term_at(index)
                ));
            }
        }
        Ok(())
    }

    /// `group`'s leader of `term` committed everything up to `index`.
    fn leader_committed(&mut self, group: GroupId, index: LogIndex, term: Term) {
        let rises = self.commit_rises.entry(group).or_default();
        if rises.last().is_none_or(|&(last, _)| index > last) {
            rises.push((index, term));
        }
    }

    /// The term in which `index` of `group` was committed, if a leader's commit was seen.
    fn commit_term(&self, group: GroupId, index: LogIndex) -> Option<Term> {
        let rises = self.commit_rises.get(&group)?;
        let at = rises.partition_point(|&(upto, _)| upto < index);
        rises.get(at).map(|&(_, term)| term)
    }

    /// `batch` was appended to `node`'s log of `group`.
    fn appended(
        &mut self,
        node: NodeId,
        group: GroupId,
        batch: &EntryBatch,
    ) -> Result<(), Violation> {
        for (offset, payload) in batch.payloads().enumerate() {
            let index = batch.first_index().plus(offset as u64);
            let content = (batch.kind(), payload.to_vec());
            match self.entries.get_mut(&(group, index, batch.term())) {
                Some((known, _)) if *known != content => {
                    return violation(format!(
                        "group {group}: {node} appended different content at {index} of {}",
                        batch.term()
                    ));
                }
                Some((_, holder)) => {
                    if *holder != Some(node) {
                        *holder = None;
                    }
                }
                None => {
                    self.entries
                        .insert((group, index, batch.term()), (content, Some(node)));
                }
            }
        }
        Ok(())
    }

    /// `node` restarted with `core` for `group`: entries that only it ever held and that its
    /// recovered log lacks were lost by its crash before anybody else saw them; they are
    /// forgotten, so that a leader that lost its unsynced term with them may place other
    /// entries there (what must not happen is that such an entry reached another node first,
    /// which the records of entries held elsewhere still catch).
    ///
    /// Likewise a leadership of a term its recovered hard state lacks: only a leader elected
    /// by its own vote alone can lose its term in a crash (every other candidate persists its
    /// term before asking for votes), and such a leader sends nothing until its term is
    /// durable, so nobody else learned of it and another node may be elected in that term.
    pub fn restarted(&mut self, node: NodeId, group: GroupId, core: &Raft) {
        let term = core.term();
        self.leaders
            .retain(|&(g, t), leader| g != group || *leader != node || t <= term);
        let base = core.log_base();
        self.entries.retain(|&(g, index, term), (_, holder)| {
            g != group
                || *holder != Some(node)
                || index <= base
                || core.term_at(index) == Some(term)
        });
    }

    /// `node` applied `batch` of `group`.
    fn applied(
        &mut self,
        node: NodeId,
        group: GroupId,
        batch: &EntryBatch,
    ) -> Result<(), Violation> {
        for (offset, payload) in batch.payloads().enumerate() {
            let index = batch.first_index().plus(offset as u64);
            let content = (batch.kind(), payload.to_vec());
            match self.committed.get(&(group, index)) {
                Some((term, known)) if *term != batch.term() || *known != content => {
                    return violation(format!(
                        "group {group}: {node} applied {} at {index}, but {term} was committed \
                         there",
                        batch.term()
                    ));
                }
                Some(_) => {}
                None => {
                    self.committed
                        .insert((group, index), (batch.term(), content));
                }
            }
        }
        Ok(())
    }

    /// `node` applied the session batch `batch` of `group`, whose entries did `outcomes`.
    fn session_applied(
        &mut self,
        node: NodeId,
        group: GroupId,
        batch: &EntryBatch,
        outcomes: &[SessionOutcome],
    ) -> Result<(), Violation> {
        if outcomes.len() as u64 != batch.len() {
            return violation(format!(
                "group {group}: {node} applied {} session entries at {} but reported {} outcomes",
                batch.len(),
                batch.first_index(),
                outcomes.len()
            ));
        }
        for (offset, (entry, &outcome)) in batch.payloads().zip(outcomes).enumerate() {
            let index = batch.first_index().plus(offset as u64);
            if let Some(&decided) = self.session_outcomes.get(&(group, index)) {
                if decided != outcome {
                    return violation(format!(
                        "group {group}: {node} decided {outcome:?} for the session entry at \
                         {index}, which another node decided {decided:?}"
                    ));
                }
                continue;
            }
            self.session_outcomes.insert((group, index), outcome);
            match outcome {
                SessionOutcome::Duplicate { .. } => self.session_duplicates += 1,
                SessionOutcome::Refused(SessionRefusal::Unknown(_)) => self.session_unknown += 1,
                _ => {}
            }
            if outcome != SessionOutcome::Applied {
                continue;
            }
            let Ok((SessionEntry::Request { request, .. }, _)) = SessionEntry::decode(entry) else {
                return violation(format!(
                    "group {group}: {node} applied the session entry at {index}, which is no \
                     request"
                ));
            };
            let key = (group, request.session(), request.seq());
            if let Some(&earlier) = self.applied_requests.get(&key) {
                return violation(format!(
                    "group {group}: request {} of session {} applied at {earlier} and again at \
                     {index}",
                    request.seq(),
                    request.session()
                ));
            }
            self.applied_requests.insert(key, index);
        }
        Ok(())
    }

    /// `node`'s state machine of `group` was restored from a snapshot at `index`, and now
    /// reflects `applied`: exactly the committed command entries up to `index`.
    pub fn restored(
        &mut self,
        node: NodeId,
        group: GroupId,
        index: LogIndex,
        applied: Applied,
    ) -> Result<(), Violation> {
        self.snapshots_restored += 1;
        let mut expected = Applied::default();
        for position in 1..=index.0 {
            let Some((_, (kind, payload))) = self.committed.get(&(group, LogIndex(position)))
            else {
                return violation(format!(
                    "group {group}: {node} restored a snapshot at {index}, but nothing was \
                     applied anywhere at {position}"
                ));
            };
            let command = match kind {
                BatchKind::Command => Some(&payload[..]),
                BatchKind::Session => {
                    let outcome = self.session_outcomes.get(&(group, LogIndex(position)));
                    (outcome == Some(&SessionOutcome::Applied))
                        .then(|| &payload[SESSION_HEADER_BYTES..])
                }
                BatchKind::Noop | BatchKind::Config => None,
            };
            if let Some(command) = command {
                expected.digest = chain(expected.digest, LogIndex(position), command);
                expected.index = LogIndex(position);
            }
        }
        if applied != expected {
            return violation(format!(
                "group {group}: {node} restored a snapshot at {index} reflecting {applied:?}, \
                 but the committed entries give {expected:?}"
            ));
        }
        Ok(())
    }

    /// A client was told its write `entry` to `group` is done at `index`.
    pub fn acknowledged(
        &self,
        group: GroupId,
        index: LogIndex,
        entry: &[u8],
    ) -> Result<(), Violation> {
        match self.committed.get(&(group, index)) {
            Some((_, (BatchKind::Command, payload))) if payload == entry => Ok(()),
            other => violation(format!(
                "group {group}: a write was acknowledged at {index}, which holds {other:?}"
            )),
        }
    }

    /// A client was told its write `entry` to `group`, `request` of a session, is done at
    /// `index`: the state machine applied that request there, with that content.
    pub fn acknowledged_in_session(
        &self,
        group: GroupId,
        index: LogIndex,
        request: SessionRequest,
        entry: &[u8],
    ) -> Result<(), Violation> {
        let key = (group, request.session(), request.seq());
        if self.applied_requests.get(&key) != Some(&index) {
            return violation(format!(
                "group {group}: request {} of session {} was acknowledged at {index}, but it was \
                 applied at {:?}",
                request.seq(),
                request.session(),
                self.applied_requests.get(&key)
            ));
        }
        match self.committed.get(&(group, index)) {
            Some((_, (BatchKind::Session, payload)))
                if payload.get(SESSION_HEADER_BYTES..) == Some(entry) =>
            {
                Ok(())
            }
            other => violation(format!(
                "group {group}: a write of a session was acknowledged at {index}, which holds \
                 {other:?}"
            )),
        }
    }

    /// A client was told its write `entry` to `group` was not applied, because another
    /// entry was applied at `index`: that must be so already. `unique` says no other command
    /// has the same entry (then the entry applied there must not be this one either).
    pub fn superseded(
        &self,
        group: GroupId,
        index: LogIndex,
        entry: &[u8],
        unique: bool,
    ) -> Result<(), Violation> {
        match self.committed.get(&(group, index)) {
            Some((_, (_, payload))) if unique && payload == entry => violation(format!(
                "group {group}: a write was answered not applied, but it was applied at {index}"
            )),
            Some(_) => Ok(()),
            None => violation(format!(
                "group {group}: a write was answered not applied because of the entry applied \
                 at {index}, but nothing was applied there yet: it may still commit"
            )),
        }
    }

    /// The lowest term above `term` in which some node was elected leader of `group`, with
    /// that leader, if any.
    pub fn leader_above(&self, group: GroupId, term: Term) -> Option<(Term, NodeId)> {
        self.leaders
            .iter()
            .filter(|&(&(g, t), _)| g == group && t > term)
            .map(|(&(_, t), &node)| (t, node))
            .min()
    }

    /// The highest index of `group` known to be committed.
    pub fn highest_committed(&self, group: GroupId) -> LogIndex {
        self.committed
            .range((group, LogIndex::ZERO)..=(group, LogIndex(u64::MAX)))
            .next_back()
            .map_or(LogIndex::ZERO, |(&(_, index), _)| index)
    }

    pub fn committed_count(&self) -> usize {
        self.committed.len()
    }

    pub fn leaders_elected(&self) -> u64 {
        self.leaders_elected
    }

    pub fn snapshots_restored(&self) -> u64 {
        self.snapshots_restored
    }

    /// Retries of applied requests answered with the earlier output, and requests refused for
    /// an unknown session, over the committed log.
    pub fn session_counts(&self) -> (u64, u64) {
        (self.session_duplicates, self.session_unknown)
    }

    /// Log Matching between two logs (each possibly compacted, so starting anywhere):
    /// wherever both hold an entry of the same term, the entries both hold up to it are
    /// identical.
    pub fn logs_match(
        group: GroupId,
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
                    "group {group}: logs of {} and {} share {last_shared} in {} but differ at \
                     index {index}",
                    a.0, b.0, left[&last_shared].0
                ));
            }
        }
        Ok(())
    }
}

/// What the observers of all nodes share: the checker, the first violation, and how to trace.
#[derive(Default)]
pub struct Observations {
    pub checker: Checker,
    pub violation: Option<Violation>,
    /// Print every action, stamped with `now_us`.
    pub trace: bool,
    pub now_us: u64,
}

/// One node's view into the shared [`Observations`]; set on the node's engine.
pub struct NodeObserver {
    pub node: NodeId,
    pub shared: Rc<RefCell<Observations>>,
}

impl NodeObserver {
    fn check(
        checker: &mut Checker,
        node: NodeId,
        group: GroupId,
        action: &Action,
        core: &Raft,
        machine: &SimMachine,
        sessions: &[SessionOutcome],
    ) -> Result<(), Violation> {
        match action {
            Action::AppendLog(batch) => checker.appended(node, group, batch),
            Action::Apply(batch) if batch.kind() == BatchKind::Session => {
                checker.applied(node, group, batch)?;
                checker.session_applied(node, group, batch, sessions)
            }
            Action::Apply(batch) => checker.applied(node, group, batch),
            Action::RestoreSnapshot(meta) => {
                checker.restored(node, group, meta.index, machine.applied(group))
            }
            Action::RoleChanged {
                role: Role::Leader,
                term,
                ..
            } => checker.leader_elected(node, group, *term, core),
            Action::Commit { index } if core.role() == Role::Leader => {
                checker.leader_committed(group, *index, core.term());
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl ActionObserver<SimMachine> for NodeObserver {
    fn executed(
        &mut self,
        group: GroupId,
        action: &Action,
        core: &Raft,
        machine: &SimMachine,
        sessions: &[SessionOutcome],
    ) {
        let shared = &mut *self.shared.borrow_mut();
        if shared.trace {
            println!(
                "{:>10.3}ms {} {group} {}",
                shared.now_us as f64 / 1000.0,
                self.node,
                describe(action)
            );
        }
        if shared.violation.is_none() {
            let result = Self::check(
                &mut shared.checker,
                self.node,
                group,
                action,
                core,
                machine,
                sessions,
            );
            shared.violation = result.err();
        }
    }
}

fn describe(action: &Action) -> String {
    match action {
        Action::Send {
            to,
            message,
            after_persist,
        } => format!(
            "-> {to}{} {message:?}",
            if *after_persist {
                " (after persist)"
            } else {
                ""
            }
        ),
        other => format!("{other:?}"),
    }
}

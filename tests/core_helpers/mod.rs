//! Test support for the core: build a node in a given state, drive it into a role, write
//! messages and expected actions tersely, and pump messages between a few cores.
//!
//! Every random choice comes from [`RNG_SEED`] (the core's own election-timeout generator), so
//! every test here is deterministic.

// Each test crate includes this module and uses a different subset of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ringraft::batch::{BatchKind, EntryBatch};
use ringraft::core::{
    Action, AppendOutcome, AppendRequest, BrokenRule, Config, Input, Message, Raft, Recovered,
    RejectHint, Role,
};
use ringraft::types::{HardState, LogIndex, NodeId, Term};

/// Seed of every core built here.
pub const RNG_SEED: u64 = 0x5eed;

pub fn n(id: u64) -> NodeId {
    NodeId(id)
}

pub fn t(term: u64) -> Term {
    Term(term)
}

pub fn i(index: u64) -> LogIndex {
    LogIndex(index)
}

// ---- batches and logs ----------------------------------------------------------------------

/// A command batch of `count` entries at `first ..` in `term`; entry `k` holds the payload
/// `"<term>.<index>"`, so batches at different positions or terms never compare equal.
pub fn batch(term: u64, first: u64, count: u64) -> EntryBatch {
    assert!(count > 0);
    let payloads: Vec<Vec<u8>> = (first..first + count)
        .map(|index| format!("{term}.{index}").into_bytes())
        .collect();
    EntryBatch::encode(
        BatchKind::Command,
        Term(term),
        LogIndex(first),
        payloads.iter().map(Vec::as_slice),
    )
}

/// A proposal carrying `payloads` (its position is set by the leader).
pub fn proposal(payloads: &[&str]) -> EntryBatch {
    EntryBatch::encode(
        BatchKind::Command,
        Term::ZERO,
        LogIndex::ZERO,
        payloads.iter().map(|payload| payload.as_bytes()),
    )
}

/// The no-op a leader of `term` appends at `index` when elected.
pub fn noop(term: u64, index: u64) -> EntryBatch {
    EntryBatch::encode(BatchKind::Noop, Term(term), LogIndex(index), [&[][..]])
}

/// A log from index 1 given as runs of `(term, count)`; each run is one batch.
pub fn log(runs: &[(u64, u64)]) -> Vec<EntryBatch> {
    let mut next = 1;
    runs.iter()
        .map(|&(term, count)| {
            let made = batch(term, next, count);
            next += count;
            made
        })
        .collect()
}

/// The terms of `raft`'s log, index 1 first.
pub fn terms_of(raft: &Raft) -> Vec<u64> {
    (1..=raft.last_index().0)
        .map(|index| raft.term_at(LogIndex(index)).expect("held").0)
        .collect()
}

/// Expands `(term, count)` runs into one term per index.
pub fn terms(runs: &[(u64, u64)]) -> Vec<u64> {
    runs.iter()
        .flat_map(|&(term, count)| std::iter::repeat_n(term, count as usize))
        .collect()
}

// ---- building a node -----------------------------------------------------------------------

/// A node of a group of `voters` (ids `1..=voters`) in a chosen durable state.
pub struct Node {
    config: Config,
    hard_state: HardState,
    runs: Vec<(u64, u64)>,
}

impl Node {
    pub fn new(id: u64, voters: u64) -> Node {
        let mut config = Config::new(NodeId(id), (1..=voters).map(NodeId).collect());
        config.rng_seed = RNG_SEED;
        config.check_expensive_invariants = true;
        // Exact-action tests start nodes and ask for votes at once; the quiet start has its
        // own tests.
        config.quiet_start = false;
        Node {
            config,
            hard_state: HardState::default(),
            runs: Vec::new(),
        }
    }

    /// The current term (raised to the last log term if lower).
    pub fn term(mut self, term: u64) -> Node {
        self.hard_state.term = Term(term);
        self
    }

    pub fn vote(mut self, vote: u64) -> Node {
        self.hard_state.vote = Some(NodeId(vote));
        self
    }

    pub fn commit(mut self, commit: u64) -> Node {
        self.hard_state.commit = LogIndex(commit);
        self
    }

    /// The durable log as `(term, count)` runs from index 1.
    pub fn log(mut self, runs: &[(u64, u64)]) -> Node {
        self.runs = runs.to_vec();
        self
    }

    pub fn without_pre_vote(mut self) -> Node {
        self.config.pre_vote = false;
        self
    }

    pub fn without_check_quorum(mut self) -> Node {
        self.config.check_quorum = false;
        self
    }

    /// Changes other settings.
    pub fn configure(mut self, change: impl FnOnce(&mut Config)) -> Node {
        change(&mut self.config);
        self
    }

    /// Breaks a rule on purpose, to show that a test notices.
    pub fn breaking(mut self, rule: BrokenRule) -> Node {
        self.config.broken_rule = Some(rule);
        self
    }

    pub fn build(self) -> Raft {
        let batches = log(&self.runs);
        let mut hard_state = self.hard_state;
        if let Some(last) = batches.last() {
            hard_state.term = hard_state.term.max(last.term());
        }
        Raft::new(
            self.config,
            Recovered {
                hard_state,
                batches,
                ..Recovered::default()
            },
        )
    }
}

// ---- driving a node ------------------------------------------------------------------------

pub fn step(raft: &mut Raft, input: Input) -> Vec<Action> {
    let mut out = Vec::new();
    raft.step(input, &mut out);
    out
}

/// Delivers `message` from `from`.
pub fn deliver(raft: &mut Raft, from: u64, message: Message) -> Vec<Action> {
    step(
        raft,
        Input::Message {
            from: NodeId(from),
            message,
        },
    )
}

pub fn tick(raft: &mut Raft) -> Vec<Action> {
    step(raft, Input::Tick)
}

pub fn persisted(raft: &mut Raft, index: u64, term: u64) -> Vec<Action> {
    step(
        raft,
        Input::Persisted {
            index: LogIndex(index),
            term: Term(term),
        },
    )
}

/// Reports the whole log durable.
pub fn persist_all(raft: &mut Raft) -> Vec<Action> {
    let (index, term) = (raft.last_index(), raft.last_term());
    step(raft, Input::Persisted { index, term })
}

pub fn propose(raft: &mut Raft, payloads: &[&str]) -> Vec<Action> {
    step(raft, Input::Propose(proposal(payloads)))
}

/// Ticks until the node leaves the follower role (at most two election timeouts); returns the
/// actions of the tick that started the campaign.
pub fn tick_until_campaign(raft: &mut Raft) -> Vec<Action> {
    for _ in 0..2 * raft.config().election_timeout_ticks {
        let out = tick(raft);
        if raft.role() != Role::Follower {
            return out;
        }
    }
    panic!(
        "{} did not campaign within two election timeouts",
        raft.id()
    );
}

/// Makes the node leader: it times out, and enough peers grant its pre-vote (if enabled) and
/// its vote. Returns the actions of the step that made it leader.
pub fn elect(raft: &mut Raft) -> Vec<Action> {
    tick_until_campaign(raft);
    let peers: Vec<NodeId> = raft
        .config()
        .voters
        .iter()
        .copied()
        .filter(|&voter| voter != raft.id())
        .collect();
    let mut out = Vec::new();
    for pre_vote in [true, false] {
        let wanted = if pre_vote {
            Role::PreCandidate
        } else {
            Role::Candidate
        };
        for &peer in &peers {
            if raft.role() != wanted {
                break;
            }
            let term = if pre_vote {
                raft.term().next()
            } else {
                raft.term()
            };
            out = deliver(raft, peer.0, vote_response(term.0, pre_vote, true));
        }
    }
    assert_eq!(raft.role(), Role::Leader, "{} was not elected", raft.id());
    out
}

/// Makes a fresh leader whose no-op is durable everywhere: every follower acknowledged the
/// whole log and is in the replicate state. Returns the actions of those steps.
pub fn elect_and_settle(raft: &mut Raft) -> Vec<Action> {
    elect(raft);
    let mut out = persist_all(raft);
    let last = raft.last_index().0;
    let (term, me) = (raft.term().0, raft.id());
    for voter in raft.config().voters.clone() {
        if voter != me {
            out.extend(deliver(raft, voter.0, accepted(term, last)));
        }
    }
    out
}

/// Makes the node a follower of `leader` in `term` (a heartbeat that matches any log).
pub fn follow(raft: &mut Raft, leader: u64, term: u64) -> Vec<Action> {
    let out = deliver(raft, leader, heartbeat(term, 0, 0, 0));
    assert_eq!(raft.leader(), Some(NodeId(leader)));
    out
}

// ---- messages and actions ------------------------------------------------------------------

pub fn append(term: u64, prev: (u64, u64), commit: u64, batches: Vec<EntryBatch>) -> Message {
    Message::Append(AppendRequest {
        term: Term(term),
        prev_index: LogIndex(prev.0),
        prev_term: Term(prev.1),
        commit: LogIndex(commit),
        read_round: 0,
        batches,
    })
}

pub fn heartbeat(term: u64, prev_index: u64, prev_term: u64, commit: u64) -> Message {
    Message::Append(heartbeat_request(term, prev_index, prev_term, commit))
}

pub fn heartbeat_request(term: u64, prev_index: u64, prev_term: u64, commit: u64) -> AppendRequest {
    AppendRequest {
        term: Term(term),
        prev_index: LogIndex(prev_index),
        prev_term: Term(prev_term),
        commit: LogIndex(commit),
        read_round: 0,
        batches: Vec::new(),
    }
}

/// `message` (an AppendEntries) as sent in the leader's read round `round`.
pub fn in_round(message: Message, round: u64) -> Message {
    match message {
        Message::Append(request) => Message::Append(AppendRequest {
            read_round: round,
            ..request
        }),
        other => panic!("only AppendEntries carry a read round, not {other:?}"),
    }
}

pub fn accepted(term: u64, match_index: u64) -> Message {
    Message::AppendResponse {
        term: Term(term),
        outcome: AppendOutcome::Accepted {
            match_index: LogIndex(match_index),
            read_round: 0,
        },
    }
}

/// A rejection of the AppendEntries at `prev_index` by a follower whose log ends at
/// `last_index` and holds an entry of `conflict.0` at `prev_index`, its term starting at
/// `conflict.1`.
pub fn rejected(
    term: u64,
    prev_index: u64,
    last_index: u64,
    conflict: Option<(u64, u64)>,
) -> Message {
    Message::AppendResponse {
        term: Term(term),
        outcome: AppendOutcome::Rejected {
            prev_index: LogIndex(prev_index),
            hint: RejectHint {
                last_index: LogIndex(last_index),
                conflict: conflict.map(|(term, first)| (Term(term), LogIndex(first))),
            },
        },
    }
}

/// A (pre-)vote request of a candidate whose log ends at `last = (index, term)`.
pub fn vote_request(term: u64, last: (u64, u64), pre_vote: bool) -> Message {
    Message::VoteRequest {
        term: Term(term),
        last_index: LogIndex(last.0),
        last_term: Term(last.1),
        pre_vote,
        transfer: false,
    }
}

pub fn vote_response(term: u64, pre_vote: bool, granted: bool) -> Message {
    Message::VoteResponse {
        term: Term(term),
        pre_vote,
        granted,
    }
}

/// A send that may go at once.
pub fn send(to: u64, message: Message) -> Action {
    Action::Send {
        to: NodeId(to),
        message,
        after_persist: false,
    }
}

/// A send held until earlier storage actions are durable.
pub fn send_after_persist(to: u64, message: Message) -> Action {
    Action::Send {
        to: NodeId(to),
        message,
        after_persist: true,
    }
}

pub fn save(term: u64, vote: Option<u64>, commit: u64) -> Action {
    Action::SaveHardState(HardState {
        term: Term(term),
        vote: vote.map(NodeId),
        commit: LogIndex(commit),
    })
}

pub fn role_changed(role: Role, term: u64, leader: Option<u64>) -> Action {
    Action::RoleChanged {
        role,
        term: Term(term),
        leader: leader.map(NodeId),
    }
}

pub fn commit(index: u64) -> Action {
    Action::Commit {
        index: LogIndex(index),
    }
}

/// Every message sent in `actions`, with its destination.
pub fn sends(actions: &[Action]) -> Vec<(NodeId, Message)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send { to, message, .. } => Some((*to, message.clone())),
            _ => None,
        })
        .collect()
}

/// Every AppendEntries sent in `actions`, with its destination.
pub fn appends(actions: &[Action]) -> Vec<(NodeId, AppendRequest)> {
    sends(actions)
        .into_iter()
        .filter_map(|(to, message)| match message {
            Message::Append(request) => Some((to, request)),
            _ => None,
        })
        .collect()
}

/// The indexes of the `Commit` actions in `actions`.
pub fn commits(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Commit { index } => Some(index.0),
            _ => None,
        })
        .collect()
}

/// Whether `actions` persist anything (hard state or log).
pub fn touches_storage(actions: &[Action]) -> bool {
    actions.iter().any(|action| {
        matches!(
            action,
            Action::SaveHardState(_) | Action::AppendLog(_) | Action::TruncateLog { .. }
        )
    })
}

// ---- a few cores connected by a perfect network --------------------------------------------

/// Cores connected by an in-order network whose storage is durable at once. Messages wait in
/// one queue until [`Cluster::deliver_all`]; links to isolated nodes drop everything.
pub struct Cluster {
    pub nodes: BTreeMap<NodeId, Raft>,
    queue: VecDeque<(NodeId, NodeId, Message)>,
    isolated: BTreeSet<NodeId>,
    /// Every message delivered so far, as `(from, to, message)`.
    pub delivered: Vec<(NodeId, NodeId, Message)>,
    /// Every action emitted so far, per node.
    pub actions: BTreeMap<NodeId, Vec<Action>>,
}

impl Cluster {
    pub fn new(nodes: Vec<Raft>) -> Cluster {
        Cluster {
            nodes: nodes.into_iter().map(|raft| (raft.id(), raft)).collect(),
            queue: VecDeque::new(),
            isolated: BTreeSet::new(),
            delivered: Vec::new(),
            actions: BTreeMap::new(),
        }
    }

    /// `count` fresh nodes with empty logs.
    pub fn fresh(count: u64) -> Cluster {
        Cluster::new((1..=count).map(|id| Node::new(id, count).build()).collect())
    }

    pub fn node(&self, id: u64) -> &Raft {
        &self.nodes[&NodeId(id)]
    }

    /// Steps one node and carries out its actions.
    pub fn step(&mut self, id: u64, input: Input) {
        let raft = self.nodes.get_mut(&NodeId(id)).expect("known node");
        let out = step(raft, input);
        self.carry_out(id, out);
    }

    /// Storage becomes durable at once (reported back with `Persisted`); sends are queued.
    fn carry_out(&mut self, id: u64, out: Vec<Action>) {
        let mut last_appended = None;
        for action in &out {
            match action {
                Action::AppendLog(batch) => {
                    last_appended = Some((batch.last_index(), batch.term()));
                }
                Action::Send { to, message, .. } => {
                    self.queue.push_back((NodeId(id), *to, message.clone()));
                }
                _ => {}
            }
        }
        self.actions.entry(NodeId(id)).or_default().extend(out);
        if let Some((index, term)) = last_appended {
            self.step(id, Input::Persisted { index, term });
        }
    }

    /// Delivers queued messages, and those they cause, until none is left.
    pub fn deliver_all(&mut self) {
        while let Some((from, to, message)) = self.queue.pop_front() {
            if self.isolated.contains(&from) || self.isolated.contains(&to) {
                continue;
            }
            self.delivered.push((from, to, message.clone()));
            self.step(
                to.0,
                Input::Message {
                    from,
                    message: message.clone(),
                },
            );
        }
    }

    /// One tick on every node, then delivery.
    pub fn tick_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.step(id.0, Input::Tick);
        }
        self.deliver_all();
    }

    /// Ticks until `done` holds; panics after `ticks_max` ticks.
    pub fn tick_until(&mut self, ticks_max: u32, done: impl Fn(&Cluster) -> bool) {
        for _ in 0..ticks_max {
            if done(self) {
                return;
            }
            self.tick_all();
        }
        assert!(done(self), "condition not reached within {ticks_max} ticks");
    }

    /// Ticks until some node is leader and every other connected node follows it.
    pub fn elect_any(&mut self) -> NodeId {
        self.tick_until(200, |cluster| cluster.agreed_leader().is_some());
        self.agreed_leader().expect("checked above")
    }

    /// The connected leader every connected node follows, if they agree on one.
    pub fn agreed_leader(&self) -> Option<NodeId> {
        let leaders: BTreeSet<Option<NodeId>> = self
            .nodes
            .values()
            .filter(|raft| !self.isolated.contains(&raft.id()))
            .map(Raft::leader)
            .collect();
        match leaders.into_iter().collect::<Vec<_>>()[..] {
            [Some(leader)]
                if self.nodes[&leader].role() == Role::Leader
                    && !self.isolated.contains(&leader) =>
            {
                Some(leader)
            }
            _ => None,
        }
    }

    /// Makes `id` leader without asking the others: it times out and is handed the grants of
    /// every peer (its own vote requests are dropped). For scenarios, like the paper's figures,
    /// whose point is what the leader does once elected.
    pub fn force_elect(&mut self, id: u64) {
        let raft = self.nodes.get_mut(&NodeId(id)).expect("known node");
        let out = elect(raft);
        self.carry_out(id, out);
    }

    pub fn isolate(&mut self, id: u64) {
        self.isolated.insert(NodeId(id));
    }

    pub fn rejoin(&mut self, id: u64) {
        self.isolated.remove(&NodeId(id));
    }

    pub fn heal(&mut self) {
        self.isolated.clear();
    }

    /// Messages delivered from `from` to `to`, in delivery order.
    pub fn delivered_between(&self, from: u64, to: u64) -> Vec<&Message> {
        self.delivered
            .iter()
            .filter(|(sender, receiver, _)| *sender == NodeId(from) && *receiver == NodeId(to))
            .map(|(_, _, message)| message)
            .collect()
    }
}

/// The entries of a proposal of `payloads` as a leader of `term` places them at `first`.
pub fn placed(payloads: &[&str], term: u64, first: u64) -> EntryBatch {
    proposal(payloads).placed_at(Term(term), LogIndex(first))
}

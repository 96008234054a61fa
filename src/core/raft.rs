//! The state machine of one Raft group on one node.
//!
//! Term reconciliation happens first for every message (see [`Raft::step_message`]); the role
//! handlers below it only ever see messages of the current term (or, for pre-votes, the
//! proposed next term).
//!
//! Peers are not trusted: a message is first checked for what any correct peer's message
//! satisfies ([`Message::check_well_formed`]), and the handlers check what depends on this
//! node's state (an answer naming an index beyond the leader's log, entries that would conflict
//! with committed ones or go back in term, a second leader of this node's term). A message that
//! fails is dropped, logged and counted ([`Raft::invalid_messages`]); no peer input reaches an
//! assertion.
//!
//! Votes and the leader lease: a node refuses to help elect anybody (except the transfer
//! target its leader named) while it leads, or for one election timeout after it last heard
//! from a leader or started, by ticks; adopting a higher term does not end that promise.
//!
//! Invariants. [`Raft::step`] checks them and panics with "invariant violated on {node}: ..."
//! if one breaks (the simulator reports such panics as violations). Which run when:
//! - **cheap, after every step** (every build, release included; a few inlined comparisons):
//!   - `applied <= commit <= last_index` and `applied <= durable_index <= last_index`;
//!   - across the step: the term never decreases, the vote changes only together with the
//!     term, the commit and applied indexes never decrease.
//! - **cheap, after every tick, every change of role, every membership change and every saved
//!   snapshot** (every build; O(1), and O(members) for a leader). After every step they would
//!   add several percent to a step's cost (a walk of the progress map, lookups in the
//!   membership); a violation that another step causes is caught at the next tick if it lasts
//!   until then:
//!   - the log's base (compaction point) is at most the snapshot's index, which is at most the
//!     applied index;
//!   - the log's ends: its first held batch starts right after the base, its last term is not
//!     below the base's (see `core::log_view`);
//!   - a non-leader keeps no follower progress and no pending reads;
//!   - a leader has `leader == Some(id)` and `vote == Some(id)` and is a voter of the
//!     configuration in force, unless that configuration (which removes it) is not committed
//!     yet; its progress map has an entry for every other member (voters of both sides and
//!     learners) and none for itself; for each follower, `match_index < next_index` and
//!     `next_index <= last_index + 1`, and no bytes counted in flight to it when no message
//!     is; the newest pending read is of a round already started.
//! - **expensive, after every step when [`Config::check_expensive_invariants`] is set** (the
//!   default in debug builds; the simulator, the fuzz target and the core's tests set it; all
//!   the cheap ones then run after every step too). Each walks something that grows with the
//!   log or the traffic:
//!   - the whole log is contiguous and its terms never decrease (every held batch);
//!   - the configuration history is ordered by index, above its base, and the configuration in
//!     force is within the log (every configuration entry);
//!   - each follower's count of bytes in flight is the sum of its messages in flight (the
//!     inflight window);
//!   - the pending reads awaiting a quorum are in round and index order (all of them).
//!
//! [`Raft::cheap_invariants`] checks every cheap within-state invariant at once,
//! [`Raft::expensive_invariants`] every expensive one, [`Raft::invariants`] both.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::batch::{BatchKind, EntryBatch};
use crate::core::config::{BrokenRule, Config};
use crate::core::config_history::{ConfigEntry, ConfigHistory};
use crate::core::io::{Action, Input, ProposeError, Role};
use crate::core::log_view::LogView;
use crate::core::membership::{Membership, MembershipChange};
use crate::core::message::{AppendOutcome, AppendRequest, Message, RejectHint, SnapshotMeta};
use crate::core::progress::{Progress, ProgressState};
use crate::core::reads::ReadTracker;
use crate::types::{HardState, LogIndex, NodeId, Term};

/// Durable state a node starts from.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The newest durable snapshot; the driver restored the state machine from it.
    pub snapshot: Option<SnapshotMeta>,
    /// The log's compaction point `(index, term)`: `(0, 0)` for a log never compacted. At
    /// most the snapshot's index.
    pub log_base: (LogIndex, Term),
    /// The log, contiguous from just after `log_base`.
    pub batches: Vec<EntryBatch>,
}

/// One quick retry of a pre-vote per silence of the leader. A first pre-vote that does not win
/// right after the leader fell silent most likely missed the voters' promises by a tick or so:
/// their refusal windows end a little after this node's timer fired (they count ticks at other
/// moments, and may have heard from the leader a little later). So the first round after each
/// contact with a leader lasts only a few ticks before it is asked again, whether the voters
/// refused it or did not answer (a dead leader never does); every later round lasts a full
/// randomized timeout. A node that cannot win thus sends one pre-vote round more per silence of
/// its leader than without the retry, and voters are unchanged (so is the lease they promise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PreVoteRetry {
    /// Since the last contact with a leader (or the start), no pre-vote round has begun.
    Armed,
    /// The short first round is running (or lost to a quorum's refusal: retried as soon).
    Short,
    /// The quick retry is used up until the next contact with a leader.
    Spent,
}

/// The core of one Raft group on one node. See the module docs.
pub struct Raft {
    config: Config,
    rng: Xoshiro256PlusPlus,
    role: Role,
    term: Term,
    vote: Option<NodeId>,
    leader: Option<NodeId>,
    log: LogView,
    /// The configurations in the log; the last one is in force.
    configs: ConfigHistory,
    /// The newest durable snapshot (index 0 when there is none).
    snapshot: SnapshotMeta,
    commit: LogIndex,
    applied: LogIndex,
    /// Ticks since the last reset of the election timer (or, for a leader, of the
    /// check-quorum round).
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_timeout: u32,
    /// Voters that granted this (pre-)candidacy, this node included.
    votes_granted: Vec<NodeId>,
    votes_refused: Vec<NodeId>,
    /// Leader only: one entry per other member.
    progress: BTreeMap<NodeId, Progress>,
    /// Leader only: the voter leadership is being handed to, and ticks since it began.
    transfer: Option<(NodeId, u32)>,
    /// Follower only: highest index known to match the current leader's log this term.
    leader_match: LogIndex,
    /// Follower only: highest match index already acknowledged to the current leader.
    acked_index: LogIndex,
    /// Ticks since this node last heard from a leader (`u32::MAX`: never), the clock of its
    /// promise not to help elect anybody for an election timeout after that (what lease reads
    /// rely on). A node that starts quietly ([`Config::quiet_start`]) counts its start as such
    /// contact. Adopting a higher term does not reset it: the node forgets who led, not when
    /// it heard from them.
    ticks_since_leader_contact: u32,
    /// Where this node is in its one quick pre-vote retry per silence of its leader (see
    /// [`PreVoteRetry`]).
    pre_vote_retry: PreVoteRetry,
    /// Leader only: this leader sent TimeoutNow in its term. The transfer vote it causes skips
    /// the followers' promise, so the read lease does not hold again in this term.
    sent_timeout_now: bool,
    /// Leader only: set when this node won its term by its own vote alone (a single voter),
    /// so no vote response proved its term and vote durable: the index of its term's first
    /// entry. Until the log is durable there (storage actions become durable in order, so its
    /// term is then too), everything it sends waits for persistence: a crash could otherwise
    /// lose the term, and the node would lead the same term again with other entries at the
    /// same indexes, which followers holding the first ones would take as matching.
    term_durable_from: Option<LogIndex>,
    /// Follower only: highest read round received from the current term's leader.
    leader_read_round: u64,
    /// Leader only (empty otherwise): reads waiting for proof of leadership.
    reads: ReadTracker,
    /// Messages from peers dropped as invalid (no correct peer sends them).
    invalid_messages: u64,
}

impl Raft {
    /// A core starting from durable state, as a follower with no known leader.
    pub fn new(config: Config, recovered: Recovered) -> Raft {
        if let Err(problem) = config.validate() {
            panic!("invalid core configuration: {problem}");
        }
        let snapshot = recovered.snapshot.unwrap_or_default();
        let (base_index, base_term) = recovered.log_base;
        let mut log = LogView::recovered(base_index, base_term, recovered.batches);
        if log.term_at(snapshot.index) != Some(snapshot.term) {
            // The log does not continue the snapshot (a crash between storing an installed
            // snapshot and compacting the log): the snapshot replaces it.
            log.reset(snapshot.index, snapshot.term);
        }
        let mut configs = ConfigHistory::new(if snapshot.index > LogIndex::ZERO {
            ConfigEntry {
                index: snapshot.index,
                membership: snapshot.membership.clone(),
                context: snapshot.context.clone(),
            }
        } else {
            ConfigEntry {
                index: LogIndex::ZERO,
                membership: Membership::with_voters(config.voters.iter().copied()),
                context: Bytes::new(),
            }
        });
        for batch in log.entries_from(snapshot.index.max(base_index).next(), usize::MAX) {
            if let Some(entry) = config_entry(&batch) {
                configs.push(entry);
            }
        }
        let commit = recovered
            .hard_state
            .commit
            .max(snapshot.index)
            .min(log.last_index());
        let rng = Xoshiro256PlusPlus::seed_from_u64(config.rng_seed ^ config.id.0.rotate_left(32));
        let mut raft = Raft {
            rng,
            role: Role::Follower,
            term: recovered.hard_state.term,
            vote: recovered.hard_state.vote,
            leader: None,
            log,
            configs,
            commit,
            applied: snapshot.index,
            snapshot,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: config.election_timeout_ticks,
            votes_granted: Vec::new(),
            votes_refused: Vec::new(),
            progress: BTreeMap::new(),
            transfer: None,
            leader_match: LogIndex::ZERO,
            acked_index: LogIndex::ZERO,
            ticks_since_leader_contact: if config.quiet_start { 0 } else { u32::MAX },
            pre_vote_retry: PreVoteRetry::Armed,
            sent_timeout_now: false,
            term_durable_from: None,
            leader_read_round: 0,
            reads: ReadTracker::default(),
            invalid_messages: 0,
            config,
        };
        raft.reset_election_timer();
        raft
    }

    /// Feeds one input; the actions it causes are appended to `out` in the order the driver
    /// must carry them out.
    pub fn step(&mut self, input: Input, out: &mut Vec<Action>) {
        let before = self.step_snapshot();
        // `state_due`: all the cheap checks run after this input: ticks (so that they run
        // regularly whatever else happens), and the inputs that change membership or compact
        // the log.
        let state_due = match input {
            Input::Tick => {
                self.tick(out);
                true
            }
            Input::Propose(batch) => {
                self.propose(batch, out);
                false
            }
            Input::Message { from, message } => {
                self.step_message(from, message, out);
                false
            }
            Input::Persisted { index, term } => {
                self.persisted(index, term, out);
                false
            }
            Input::Unreachable { peer } => {
                if let Some(progress) = self.progress.get_mut(&peer) {
                    if progress.state != ProgressState::Probe {
                        let next = progress.match_index.next();
                        progress.become_probe(next);
                    }
                }
                false
            }
            Input::TransferLeadership { to } => {
                self.transfer_leadership(to, out);
                false
            }
            Input::ReadIndex { id } => {
                self.read_index(id, out);
                false
            }
            Input::ChangeMembership { change, context } => {
                self.change_membership(change, context, out);
                true
            }
            Input::SnapshotSaved { index, term } => {
                self.snapshot_saved(index, term, out);
                true
            }
        };
        self.check_step(before, state_due);
    }

    /// The invariant checks after a step (see the module docs for which run when): the cursor
    /// and across-step checks as a few inlined comparisons; everything else, and the
    /// description of a violation, out of line.
    #[inline(always)]
    fn check_step(&self, before: StepSnapshot, state_due: bool) {
        if !(self.cursors_in_order() && self.step_is_monotone(&before))
            || state_due
            || self.config.check_expensive_invariants
            || self.role != before.role
        {
            self.check_step_fully(before);
        }
    }

    /// Checks the cheap invariants (the expensive ones too when
    /// [`Config::check_expensive_invariants`] is set) and the across-step ones; panics on the
    /// first violated one.
    #[inline(never)]
    fn check_step_fully(&self, before: StepSnapshot) {
        let mut checked = self
            .cursor_invariants()
            .and_then(|()| self.check_monotone(&before))
            .and_then(|()| self.state_invariants());
        if checked.is_ok() && self.config.check_expensive_invariants {
            checked = self.expensive_invariants();
        }
        if let Err(problem) = checked {
            invariant_violated(self.config.id, &problem);
        }
    }

    // ---- accessors -------------------------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.config.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_index(&self) -> LogIndex {
        self.commit
    }
    pub fn applied_index(&self) -> LogIndex {
        self.applied
    }
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }
    pub fn last_term(&self) -> Term {
        self.log.last_term()
    }
    pub fn durable_index(&self) -> LogIndex {
        self.log.durable_index()
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.commit,
        }
    }
    /// The term of the entry at `index`, if held.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term_at(index)
    }
    /// Entries `from ..= to` as held in memory.
    pub fn entries(&self, from: LogIndex, to: LogIndex) -> Vec<EntryBatch> {
        self.log.entries_between(from, to)
    }
    /// Leader only: a follower's progress.
    pub fn progress(&self, peer: NodeId) -> Option<&Progress> {
        self.progress.get(&peer)
    }
    /// Leader only: the follower leadership is being transferred to.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer.map(|(to, _)| to)
    }
    /// Leader only: whether this leader sent TimeoutNow in its term (a transfer vote, which
    /// followers grant despite their lease, may be on its way even if the transfer was
    /// abandoned).
    pub fn sent_timeout_now(&self) -> bool {
        self.role == Role::Leader && self.sent_timeout_now
    }
    /// How many messages from peers this core dropped because no correct peer sends them (a
    /// bug or corruption elsewhere; each one is also logged).
    pub fn invalid_messages(&self) -> u64 {
        self.invalid_messages
    }
    /// The read round this node's AppendEntries carry (grows with every heartbeat round).
    pub fn read_round(&self) -> u64 {
        self.reads.round()
    }
    /// Leader only: the latest read round a majority has acknowledged, i.e. the latest round at
    /// whose start this node was provably still the leader (0 when there is none).
    pub fn confirmed_read_round(&self) -> u64 {
        if self.role != Role::Leader {
            return 0;
        }
        let own_round = self.reads.round();
        self.membership()
            .quorum_value(|id| match self.progress.get(&id) {
                Some(progress) => progress.read_round_acked,
                None if id == self.config.id => own_round,
                None => 0,
            })
            .unwrap_or(0)
    }
    /// Whether the leader has committed an entry of its own term (before that, its commit
    /// index may lag what earlier leaders committed and must not be used to serve reads).
    pub fn committed_in_current_term(&self) -> bool {
        self.log.term_at(self.commit) == Some(self.term)
    }
    /// The configuration in force (the last one in the log, committed or not).
    pub fn membership(&self) -> &Membership {
        &self.configs.latest().membership
    }
    /// The configuration in force and the index and context of its entry.
    pub fn membership_entry(&self) -> &ConfigEntry {
        self.configs.latest()
    }
    /// The newest durable snapshot the core knows (index 0 when none).
    pub fn snapshot(&self) -> &SnapshotMeta {
        &self.snapshot
    }
    /// The log's compaction point: entries up to it are gone from the log.
    pub fn log_base(&self) -> LogIndex {
        self.log.base_index()
    }
    /// What a snapshot of the state machine taken now covers: the applied index, its term and
    /// the configuration in force there. `None` before anything was applied.
    pub fn snapshot_point(&self) -> Option<SnapshotMeta> {
        if self.applied == LogIndex::ZERO {
            return None;
        }
        let config = self.configs.at(self.applied);
        Some(SnapshotMeta {
            index: self.applied,
            term: self
                .log
                .term_at(self.applied)
                .expect("applied entries are held"),
            membership: config.membership.clone(),
            context: config.context.clone(),
        })
    }
    /// Ticks after which a follower that heard nothing campaigns (randomized per reset).
    pub fn randomized_election_timeout(&self) -> u32 {
        self.randomized_timeout
    }

    // ---- time ------------------------------------------------------------------------------

    fn tick(&mut self, out: &mut Vec<Action>) {
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        self.ticks_since_leader_contact = self.ticks_since_leader_contact.saturating_add(1);
        if self.role == Role::Leader {
            self.tick_leader(out);
        } else if self.election_elapsed >= self.randomized_timeout && self.can_campaign() {
            // A node that may not campaign lets its timer run on, so its leader lease (what
            // makes it refuse votes) still ends when the leader falls silent.
            self.campaign(self.config.pre_vote, false, out);
        }
    }

    fn tick_leader(&mut self, out: &mut Vec<Action>) {
        if let Some((_, elapsed)) = self.transfer.as_mut() {
            *elapsed += 1;
            if *elapsed >= self.config.election_timeout_ticks {
                self.transfer = None; // the target did not take over in time
            }
        }
        if self.election_elapsed >= self.config.election_timeout_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_recently_active() {
                self.become_follower(self.term, None, out);
                return;
            }
            for progress in self.progress.values_mut() {
                progress.recently_active = false;
            }
        }
        self.heartbeat_elapsed += 1;
        if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            // Every heartbeat round is a read round too, so a quiet leader keeps proving its
            // leadership (what a driver's lease reads rely on).
            self.reads.next_round();
            self.broadcast_heartbeat(out);
        }
    }

    fn quorum_recently_active(&self) -> bool {
        self.membership().has_quorum(|id| {
            id == self.config.id
                || self
                    .progress
                    .get(&id)
                    .is_some_and(|progress| progress.recently_active)
        })
    }

    /// Whether this node may stand for election: it votes in the configuration in force, or
    /// in the last one it knows committed while a newer one that removes it is not. (Learners,
    /// joining nodes and removed members never campaign; but a node that appended a
    /// configuration removing it may be the only one holding that entry, and the others may
    /// need it to lead long enough to commit it.)
    fn can_campaign(&self) -> bool {
        let id = self.config.id;
        self.membership().is_voter(id) || self.configs.at(self.commit).membership.is_voter(id)
    }

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let base = self.config.election_timeout_ticks;
        self.randomized_timeout = self.rng.random_range(base..2 * base);
    }

    /// How long the first pre-vote round after a leader's silence may take before it is asked
    /// again: one tick up to a quarter of the election timeout (a tick at least), drawn at
    /// random so that two nodes that missed together do not retry together.
    fn short_retry_ticks(&mut self) -> u32 {
        let most = (self.config.election_timeout_ticks / 4).max(1);
        self.rng.random_range(1..=most)
    }

    /// Whether this node leads, or heard from a leader recently enough to refuse to help unseat
    /// it (or started too recently to know whether it did). Only a transfer vote, which the
    /// leader itself asked for, is granted inside the lease.
    fn in_leader_lease(&self) -> bool {
        self.config.check_quorum
            && (self.role == Role::Leader
                || self.ticks_since_leader_contact < self.config.election_timeout_ticks)
    }

    // ---- role changes ----------------------------------------------------------------------

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>, out: &mut Vec<Action>) {
        let term_changed = term != self.term;
        if term_changed {
            assert!(term > self.term, "terms never decrease");
            self.term = term;
            self.vote = None;
            self.leader_match = LogIndex::ZERO;
            self.acked_index = LogIndex::ZERO;
            self.leader_read_round = 0;
            out.push(Action::SaveHardState(self.hard_state()));
        }
        if self.role == Role::Leader {
            self.reads.abandon(|id| {
                out.push(Action::ReadRefused {
                    id,
                    error: ProposeError::NotLeader { leader },
                })
            });
        }
        if leader.is_none()
            && self.config.broken_rule == Some(BrokenRule::VoteRefusalNeedsKnownLeader)
        {
            self.ticks_since_leader_contact = u32::MAX;
        }
        let changed = term_changed || self.role != Role::Follower || self.leader != leader;
        self.role = Role::Follower;
        self.leader = leader;
        self.progress.clear();
        self.transfer = None;
        self.reset_election_timer();
        if changed {
            self.announce_role(out);
        }
    }

    fn announce_role(&self, out: &mut Vec<Action>) {
        out.push(Action::RoleChanged {
            role: self.role,
            term: self.term,
            leader: self.leader,
        });
    }

    fn campaign(&mut self, pre_vote: bool, transfer: bool, out: &mut Vec<Action>) {
        self.reset_election_timer();
        if pre_vote {
            self.pre_vote_retry = match self.pre_vote_retry {
                PreVoteRetry::Armed => {
                    self.randomized_timeout = self.short_retry_ticks();
                    PreVoteRetry::Short
                }
                PreVoteRetry::Short | PreVoteRetry::Spent => PreVoteRetry::Spent,
            };
        }
        self.leader = None;
        self.votes_granted.clear();
        self.votes_refused.clear();
        self.votes_granted.push(self.config.id);
        let vote_term = if pre_vote {
            self.role = Role::PreCandidate;
            self.term.next()
        } else {
            self.role = Role::Candidate;
            self.term = self.term.next();
            self.vote = Some(self.config.id);
            self.leader_match = LogIndex::ZERO;
            self.acked_index = LogIndex::ZERO;
            self.leader_read_round = 0;
            out.push(Action::SaveHardState(self.hard_state()));
            self.term
        };
        self.announce_role(out);
        self.term_durable_from = None;
        if self.has_quorum(&self.votes_granted) {
            if !pre_vote {
                self.term_durable_from = Some(self.log.last_index().next());
            }
            self.election_won(out);
            return;
        }
        let membership = self.configs.latest().membership.clone();
        for voter in membership.members() {
            if voter == self.config.id || !membership.is_voter(voter) {
                continue;
            }
            out.push(Action::Send {
                to: voter,
                message: Message::VoteRequest {
                    term: vote_term,
                    last_index: self.log.last_index(),
                    last_term: self.log.last_term(),
                    pre_vote,
                    transfer,
                },
                // A candidate's own vote must be durable before it can be counted.
                after_persist: !pre_vote,
            });
        }
    }

    fn has_quorum(&self, votes: &[NodeId]) -> bool {
        self.membership().has_quorum(|id| votes.contains(&id))
    }

    fn election_won(&mut self, out: &mut Vec<Action>) {
        if self.role == Role::PreCandidate {
            self.campaign(false, false, out);
        } else {
            self.become_leader(out);
        }
    }

    fn become_leader(&mut self, out: &mut Vec<Action>) {
        self.role = Role::Leader;
        self.leader = Some(self.config.id);
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.transfer = None;
        self.sent_timeout_now = false;
        let last = self.log.last_index();
        self.progress.clear();
        self.track_members();
        self.announce_role(out);
        // An entry of the new term lets earlier entries commit (§5.4.2).
        let noop = EntryBatch::encode(BatchKind::Noop, self.term, last.next(), [&[][..]]);
        self.append_own(noop, out);
        self.broadcast_append(out);
    }

    // ---- proposals -------------------------------------------------------------------------

    fn propose(&mut self, batch: EntryBatch, out: &mut Vec<Action>) {
        if self.role != Role::Leader {
            out.push(Action::Rejected(ProposeError::NotLeader {
                leader: self.leader,
            }));
            return;
        }
        if self.transfer.is_some() {
            out.push(Action::Rejected(ProposeError::Transferring));
            return;
        }
        let batch = batch.placed_at(self.term, self.log.last_index().next());
        out.push(Action::Accepted {
            first_index: batch.first_index(),
            last_index: batch.last_index(),
            term: self.term,
        });
        self.append_own(batch, out);
        self.broadcast_append(out);
    }

    fn append_own(&mut self, batch: EntryBatch, out: &mut Vec<Action>) {
        self.append_to_log(batch, out);
        if self.config.broken_rule == Some(BrokenRule::AckBeforePersist) {
            let (last, term) = (self.log.last_index(), self.log.last_term());
            self.log.mark_durable(last, term);
            self.maybe_commit(out);
        }
    }

    fn transfer_leadership(&mut self, to: NodeId, out: &mut Vec<Action>) {
        if self.role != Role::Leader
            || to == self.config.id
            || !self.progress.contains_key(&to)
            || !self.membership().voters.contains(&to)
        {
            return;
        }
        self.transfer = Some((to, 0));
        if self.progress[&to].match_index == self.log.last_index() {
            self.send_timeout_now(to, out);
        } else {
            self.send_append(to, out);
        }
    }

    // ---- configuration -----------------------------------------------------------------------

    /// Starts a configuration change (thesis §4.3): one at a time, only once this leader has
    /// committed an entry of its term, voter changes through a joint configuration.
    fn change_membership(
        &mut self,
        change: MembershipChange,
        context: Bytes,
        out: &mut Vec<Action>,
    ) {
        let refusal = if self.role != Role::Leader {
            Some(ProposeError::NotLeader {
                leader: self.leader,
            })
        } else if self.transfer.is_some() {
            Some(ProposeError::Transferring)
        } else if self.configs.latest().index > self.commit
            || self.membership().is_joint()
            || !self.committed_in_current_term()
        {
            Some(ProposeError::ChangeInProgress)
        } else {
            None
        };
        let refusal = refusal.or_else(|| match change {
            MembershipChange::Promote(id) if !self.caught_up(id) => {
                Some(ProposeError::LearnerBehind)
            }
            _ => None,
        });
        if let Some(error) = refusal {
            out.push(Action::Rejected(error));
            return;
        }
        match self.membership().changed(change) {
            Ok(next) => {
                let index = self.log.last_index().next();
                out.push(Action::Accepted {
                    first_index: index,
                    last_index: index,
                    term: self.term,
                });
                self.append_config(&next, &context, out);
            }
            Err(_) => out.push(Action::Rejected(ProposeError::ChangeNotAllowed)),
        }
    }

    /// Whether follower or learner `id` is caught up enough to become a voter: it receives the
    /// log in pipeline and holds the committed log but for at most the compaction's trailing
    /// entries, which it can take from the log (no snapshot). Not a follower of this leader:
    /// true, so that [`Membership::changed`] names what is wrong.
    fn caught_up(&self, id: NodeId) -> bool {
        self.progress.get(&id).is_none_or(|progress| {
            progress.state == ProgressState::Replicate
                && progress
                    .match_index
                    .0
                    .saturating_add(self.config.compaction_trailing_entries)
                    >= self.commit.0
        })
    }

    /// Appends a configuration entry as leader and replicates it.
    fn append_config(&mut self, membership: &Membership, context: &[u8], out: &mut Vec<Action>) {
        let payload = membership.encode(context);
        let index = self.log.last_index().next();
        let batch = EntryBatch::encode(BatchKind::Config, self.term, index, [&payload[..]]);
        self.append_own(batch, out);
        self.broadcast_append(out);
    }

    /// Appends `batch` to the log (leader or follower), putting a configuration it carries
    /// into force.
    fn append_to_log(&mut self, batch: EntryBatch, out: &mut Vec<Action>) {
        let config = config_entry(&batch);
        self.log.append(batch.clone());
        out.push(Action::AppendLog(batch));
        if let Some(entry) = config {
            self.configs.push(entry);
            self.membership_changed(out);
        }
    }

    /// Removes the log's entries from `from` on; a configuration among them goes out of force.
    fn truncate_log(&mut self, from: LogIndex, out: &mut Vec<Action>) {
        self.log.truncate_from(from);
        out.push(Action::TruncateLog { from });
        if self.configs.truncate_from(from) {
            self.membership_changed(out);
        }
    }

    /// The configuration in force changed: announce it and, as leader, track the new members.
    fn membership_changed(&mut self, out: &mut Vec<Action>) {
        let latest = self.configs.latest();
        out.push(Action::MembershipChanged {
            membership: latest.membership.clone(),
            context: latest.context.clone(),
        });
        if self.role == Role::Leader {
            self.track_members();
        }
    }

    /// Leader: keeps a progress entry for every other member and none for anybody else.
    fn track_members(&mut self) {
        let members = self.membership().members();
        self.progress.retain(|id, _| members.contains(id));
        let last = self.log.last_index();
        for member in members {
            if member != self.config.id {
                self.progress
                    .entry(member)
                    .or_insert_with(|| Progress::new(last));
            }
        }
        if let Some((to, _)) = self.transfer {
            if !self.progress.contains_key(&to) {
                self.transfer = None;
            }
        }
    }

    /// After the commit index advanced, as leader: a committed joint configuration is followed
    /// by its final one, and a leader that the committed configuration no longer counts among
    /// its voters steps down (thesis §4.2.2).
    fn configuration_committed(&mut self, out: &mut Vec<Action>) {
        let latest = self.configs.latest();
        if self.role != Role::Leader || latest.index > self.commit {
            return;
        }
        if latest.membership.is_joint() {
            let (final_config, context) = (latest.membership.leave_joint(), latest.context.clone());
            self.append_config(&final_config, &context, out);
        } else if !latest.membership.is_voter(self.config.id) {
            self.become_follower(self.term, None, out);
        }
    }

    // ---- snapshots -------------------------------------------------------------------------

    /// The driver saved a snapshot at `index`: remember it and compact the log behind it,
    /// keeping a trailing window for followers that are slightly behind.
    fn snapshot_saved(&mut self, index: LogIndex, term: Term, out: &mut Vec<Action>) {
        if index <= self.snapshot.index
            || index > self.applied
            || self.log.term_at(index) != Some(term)
        {
            return;
        }
        let config = self.configs.at(index).clone();
        self.snapshot = SnapshotMeta {
            index,
            term,
            membership: config.membership,
            context: config.context,
        };
        let through = LogIndex(
            index
                .0
                .saturating_sub(self.config.compaction_trailing_entries),
        );
        if through > self.log.base_index() {
            let through_term = self.log.term_at(through).expect("held above the base");
            self.log.compact(through);
            self.configs.compact(through);
            out.push(Action::CompactLog {
                through,
                term: through_term,
            });
        }
    }

    /// Leader: `peer` needs entries the log no longer holds; send the snapshot.
    fn send_snapshot(&mut self, peer: NodeId, out: &mut Vec<Action>) {
        out.push(Action::Send {
            to: peer,
            message: Message::InstallSnapshot {
                term: self.term,
                snapshot: self.snapshot.clone(),
            },
            after_persist: !self.term_is_durable(),
        });
        let progress = self.progress.get_mut(&peer).expect("peer has progress");
        progress.become_snapshot(self.snapshot.index);
    }

    /// Follower: the leader's snapshot, already durable here, replaces the log up to its index
    /// (thesis §5.1: a log that holds the snapshot's last entry keeps what follows it).
    fn install_snapshot(&mut self, from: NodeId, snapshot: SnapshotMeta, out: &mut Vec<Action>) {
        if !self.follow(from, out) && self.drop_invalid(from, "snapshot claims this leader's term")
        {
            return;
        }
        if snapshot.index > self.commit {
            if self.log.term_at(snapshot.index) == Some(snapshot.term) {
                self.log.compact(snapshot.index);
                self.configs.compact(snapshot.index);
            } else {
                if self.log.last_index() > self.log.base_index() {
                    self.truncate_log(self.log.base_index().next(), out);
                }
                self.log.reset(snapshot.index, snapshot.term);
                self.configs.reset(ConfigEntry {
                    index: snapshot.index,
                    membership: snapshot.membership.clone(),
                    context: snapshot.context.clone(),
                });
                self.membership_changed(out);
            }
            out.push(Action::CompactLog {
                through: snapshot.index,
                term: snapshot.term,
            });
            out.push(Action::RestoreSnapshot(snapshot.clone()));
            self.commit = snapshot.index;
            out.push(Action::Commit { index: self.commit });
            self.applied = snapshot.index;
            self.snapshot = snapshot.clone();
        }
        // Committed entries match every leader's log.
        self.leader_match = self.leader_match.max(snapshot.index.min(self.commit));
        let ack = self.durable_leader_match();
        self.acked_index = self.acked_index.max(ack);
        out.push(Action::Send {
            to: from,
            message: Message::AppendResponse {
                term: self.term,
                outcome: self.accepted(ack),
            },
            // The snapshot is durable, but a term raised by this message may not be yet.
            after_persist: true,
        });
    }

    // ---- reads -----------------------------------------------------------------------------

    /// ReadIndex (thesis §6.4; protocol in `core::reads`).
    fn read_index(&mut self, id: u64, out: &mut Vec<Action>) {
        if self.role != Role::Leader {
            out.push(Action::ReadRefused {
                id,
                error: ProposeError::NotLeader {
                    leader: self.leader,
                },
            });
            return;
        }
        if self.config.broken_rule == Some(BrokenRule::ReadWithoutQuorumCheck) {
            out.push(Action::ReadReady {
                id,
                index: self.commit,
            });
            return;
        }
        if !self.committed_in_current_term() {
            self.reads.await_commit(id);
            return;
        }
        let round = self.reads.next_round();
        self.reads.await_quorum(id, self.commit, round);
        self.broadcast_heartbeat(out);
        self.confirm_reads(out);
    }

    /// Releases the reads whose round a majority has acknowledged.
    fn confirm_reads(&mut self, out: &mut Vec<Action>) {
        let confirmed = self.confirmed_read_round();
        self.reads.confirm(confirmed, |read| {
            out.push(Action::ReadReady {
                id: read.id,
                index: read.index,
            })
        });
    }

    fn send_timeout_now(&mut self, to: NodeId, out: &mut Vec<Action>) {
        self.sent_timeout_now = true;
        out.push(Action::Send {
            to,
            message: Message::TimeoutNow { term: self.term },
            after_persist: false,
        });
    }

    // ---- messages --------------------------------------------------------------------------

    /// Reconciles terms, then dispatches to the handler for the message.
    fn step_message(&mut self, from: NodeId, message: Message, out: &mut Vec<Action>) {
        if from == self.config.id && self.drop_invalid(from, "a message from this node itself") {
            return;
        }
        if let Err(problem) = message.check_well_formed() {
            if self.drop_invalid(from, problem) {
                return;
            }
        }
        let message_term = message.term();
        if message_term > self.term {
            match &message {
                Message::VoteRequest { pre_vote: true, .. } => {}
                Message::VoteResponse {
                    pre_vote: true,
                    granted: true,
                    ..
                } => {
                    // A grant carries the term asked for, and no node asks beyond the next.
                    if message_term != self.term.next()
                        && self.drop_invalid(from, "pre-vote granted for a term nobody asked")
                    {
                        return;
                    }
                }
                Message::VoteRequest {
                    transfer: false, ..
                } if self.in_leader_lease() => return,
                Message::Append(_) | Message::InstallSnapshot { .. } => {
                    self.become_follower(message_term, Some(from), out)
                }
                _ => self.become_follower(message_term, None, out),
            }
        } else if message_term < self.term {
            match message {
                Message::Append(request) => out.push(Action::Send {
                    to: from,
                    message: Message::AppendResponse {
                        term: self.term,
                        outcome: AppendOutcome::Rejected {
                            prev_index: request.prev_index,
                            hint: RejectHint {
                                last_index: self.log.last_index(),
                                conflict: None,
                            },
                        },
                    },
                    after_persist: false,
                }),
                Message::VoteRequest { pre_vote, .. } => out.push(Action::Send {
                    to: from,
                    message: Message::VoteResponse {
                        term: self.term,
                        pre_vote,
                        granted: false,
                    },
                    after_persist: false,
                }),
                Message::InstallSnapshot { snapshot, .. } => out.push(Action::Send {
                    to: from,
                    message: Message::AppendResponse {
                        term: self.term,
                        outcome: AppendOutcome::Rejected {
                            prev_index: snapshot.index,
                            hint: RejectHint {
                                last_index: self.log.last_index(),
                                conflict: None,
                            },
                        },
                    },
                    after_persist: false,
                }),
                _ => {}
            }
            return;
        }
        match message {
            Message::VoteRequest {
                term,
                last_index,
                last_term,
                pre_vote,
                transfer,
            } => self.handle_vote_request(
                from,
                term,
                (last_index, last_term),
                pre_vote,
                transfer,
                out,
            ),
            Message::VoteResponse {
                pre_vote: true,
                granted: true,
                ..
            } if message_term == self.term => {
                // A grant for an earlier pre-campaign, which asked for the term this node has
                // now: the current pre-campaign asks for the next one.
            }
            Message::VoteResponse {
                pre_vote, granted, ..
            } => self.handle_vote_response(from, pre_vote, granted, out),
            Message::Append(request) => self.handle_append(from, request, out),
            Message::AppendResponse { outcome, .. } => {
                self.handle_append_response(from, outcome, out)
            }
            Message::TimeoutNow { .. } => {
                if self.role == Role::Follower && self.leader == Some(from) && self.can_campaign() {
                    self.campaign(false, true, out);
                }
            }
            Message::InstallSnapshot { snapshot, .. } => self.install_snapshot(from, snapshot, out),
        }
    }

    /// A (pre-)vote request of the current term (or a pre-vote for a later one) from a
    /// candidate whose log ends at `last`.
    /// A message from `from` that no correct peer sends: logs and counts it, and returns
    /// whether to drop it (always, unless a test breaks [`BrokenRule::TrustPeerInput`]).
    fn drop_invalid(&mut self, from: NodeId, problem: &'static str) -> bool {
        if self.config.broken_rule == Some(BrokenRule::TrustPeerInput) {
            return false;
        }
        self.invalid_messages += 1;
        tracing::warn!(node = %self.config.id, %from, term = %self.term, problem, "dropped an invalid message");
        true
    }

    fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        (last_index, last_term): (LogIndex, Term),
        pre_vote: bool,
        transfer: bool,
        out: &mut Vec<Action>,
    ) {
        let up_to_date = self.log.is_up_to_date(last_index, last_term)
            || self.config.broken_rule == Some(BrokenRule::VoteWithoutLogCheck);
        // Inside the lease this node helps nobody but the transfer target its leader named.
        let lease_allows = transfer || !self.in_leader_lease();
        let granted = if pre_vote {
            term > self.term && up_to_date && lease_allows
        } else {
            let free = self.vote == Some(from)
                || (self.vote.is_none() && self.leader.is_none() && lease_allows);
            free && up_to_date
        };
        if granted && !pre_vote {
            self.vote = Some(from);
            self.reset_election_timer();
            out.push(Action::SaveHardState(self.hard_state()));
        }
        out.push(Action::Send {
            to: from,
            message: Message::VoteResponse {
                term: if granted { term } else { self.term },
                pre_vote,
                granted,
            },
            after_persist: granted && !pre_vote,
        });
    }

    fn handle_vote_response(
        &mut self,
        from: NodeId,
        pre_vote: bool,
        granted: bool,
        out: &mut Vec<Action>,
    ) {
        let expected_role = if pre_vote {
            Role::PreCandidate
        } else {
            Role::Candidate
        };
        if self.role != expected_role
            || self.votes_granted.contains(&from)
            || self.votes_refused.contains(&from)
        {
            return;
        }
        if granted {
            self.votes_granted.push(from);
            if self.has_quorum(&self.votes_granted) {
                self.election_won(out);
            }
        } else {
            self.votes_refused.push(from);
            if self
                .membership()
                .quorum_blocked(|id| self.votes_refused.contains(&id))
            {
                self.become_follower(self.term, None, out);
                if pre_vote && self.pre_vote_retry == PreVoteRetry::Short {
                    // Refused by a quorum in the short round: ask again just as soon.
                    self.pre_vote_retry = PreVoteRetry::Spent;
                    self.randomized_timeout = self.short_retry_ticks();
                }
            }
        }
    }

    // ---- follower side of replication ------------------------------------------------------

    /// A message of the current term from `from`, which leads it: follow it. Returns false
    /// when this node itself leads the term (two leaders in one term cannot happen; a peer
    /// claiming so is ignored).
    fn follow(&mut self, from: NodeId, out: &mut Vec<Action>) -> bool {
        if self.role == Role::Leader {
            return false;
        }
        if self.role != Role::Follower || self.leader != Some(from) {
            self.become_follower(self.term, Some(from), out);
        }
        self.reset_election_timer();
        self.ticks_since_leader_contact = 0;
        self.pre_vote_retry = PreVoteRetry::Armed;
        true
    }

    fn handle_append(&mut self, from: NodeId, request: AppendRequest, out: &mut Vec<Action>) {
        if !self.follow(from, out)
            && self.drop_invalid(from, "AppendEntries claims this leader's term")
        {
            return;
        }
        let AppendRequest {
            mut prev_index,
            mut prev_term,
            commit,
            read_round,
            mut batches,
            ..
        } = request;
        self.leader_read_round = self.leader_read_round.max(read_round);
        let base = self.log.base_index();
        if prev_index < base {
            // Entries up to the base are in this node's snapshot: committed, so they match
            // every leader's log. Continue from the base.
            batches.retain(|batch| batch.last_index() > base);
            if let Some(first) = batches.first_mut() {
                if first.first_index() <= base {
                    *first = first.slice(base.next(), first.last_index());
                }
            }
            prev_index = base;
            prev_term = self.log.term_at(base).expect("the base term is known");
            // The request's terms never decrease (checked on arrival), but from its own
            // `prev_term`, not necessarily from the base's.
            if batches
                .first()
                .is_some_and(|first| first.term() < prev_term)
                && self.drop_invalid(from, "AppendEntries goes back in term after the snapshot")
            {
                return;
            }
        }
        match self.log.term_at(prev_index) {
            Some(term) if term == prev_term => {}
            held => {
                let conflict = held.map(|term| (term, self.log.first_index_of_term_at(prev_index)));
                self.respond_append(
                    from,
                    AppendOutcome::Rejected {
                        prev_index,
                        hint: RejectHint {
                            last_index: self.log.last_index(),
                            conflict,
                        },
                    },
                    out,
                );
                return;
            }
        }
        if let Some(conflict) = self.first_conflict(&batches) {
            if conflict <= self.commit
                && self.drop_invalid(from, "AppendEntries conflicts with a committed entry")
            {
                return;
            }
            self.truncate_log(conflict, out);
        }
        // Everything held now matches the request: append what lies beyond the log.
        let mut appended = false;
        let mut matched = prev_index;
        for batch in batches {
            matched = batch.last_index();
            let first_new = self.log.last_index().next();
            if matched >= first_new {
                let new_part = if batch.first_index() == first_new {
                    batch
                } else {
                    batch.slice(first_new, matched)
                };
                self.append_to_log(new_part, out);
                appended = true;
            }
        }
        self.leader_match = self.leader_match.max(matched);
        if self.config.broken_rule == Some(BrokenRule::AckBeforePersist) {
            let (last, term) = (self.log.last_index(), self.log.last_term());
            self.log.mark_durable(last, term);
        }
        let new_commit = commit.min(matched);
        if new_commit > self.commit {
            self.commit = new_commit;
            out.push(Action::Commit { index: self.commit });
        }
        self.apply_ready(out);
        if !appended || self.config.broken_rule == Some(BrokenRule::AckBeforePersist) {
            let ack = self.durable_leader_match();
            self.acked_index = self.acked_index.max(ack);
            self.respond_append(from, self.accepted(ack), out);
        }
    }

    /// The first index at which `batches` (contiguous, following a matching entry) hold an
    /// entry of another term than the log, if any.
    fn first_conflict(&self, batches: &[EntryBatch]) -> Option<LogIndex> {
        let last_held = self.log.last_index();
        batches
            .iter()
            .flat_map(|batch| {
                let held_end = batch.last_index().min(last_held);
                (batch.first_index().0..=held_end.0)
                    .map(move |index| (LogIndex(index), batch.term()))
            })
            .find(|&(index, term)| self.log.term_at(index) != Some(term))
            .map(|(index, _)| index)
    }

    /// The highest index that is both durable here and known to match the leader.
    fn durable_leader_match(&self) -> LogIndex {
        self.log.durable_index().min(self.leader_match)
    }

    /// An acknowledgement of `match_index`, echoing the leader's read round.
    fn accepted(&self, match_index: LogIndex) -> AppendOutcome {
        AppendOutcome::Accepted {
            match_index,
            read_round: self.leader_read_round,
        }
    }

    fn respond_append(&self, to: NodeId, outcome: AppendOutcome, out: &mut Vec<Action>) {
        out.push(Action::Send {
            to,
            message: Message::AppendResponse {
                term: self.term,
                outcome,
            },
            after_persist: false,
        });
    }

    fn persisted(&mut self, index: LogIndex, term: Term, out: &mut Vec<Action>) {
        if !self.log.mark_durable(index, term) {
            return;
        }
        match self.role {
            Role::Leader => {
                self.maybe_commit(out);
                // Entries that durable followers committed while this copy was still being
                // written become applicable only now.
                self.apply_ready(out);
            }
            Role::Follower => {
                self.apply_ready(out);
                let ack = self.durable_leader_match();
                if let Some(leader) = self.leader {
                    if ack > self.acked_index {
                        self.acked_index = ack;
                        self.respond_append(leader, self.accepted(ack), out);
                    }
                }
            }
            Role::PreCandidate | Role::Candidate => self.apply_ready(out),
        }
    }

    // ---- leader side of replication --------------------------------------------------------

    fn handle_append_response(
        &mut self,
        from: NodeId,
        outcome: AppendOutcome,
        out: &mut Vec<Action>,
    ) {
        if self.role != Role::Leader {
            return;
        }
        if !self.progress.contains_key(&from) {
            return;
        }
        // Within a leadership the log only grows: no answer names an index beyond it.
        let last_index = self.log.last_index();
        let problem = match outcome {
            AppendOutcome::Accepted {
                match_index,
                read_round,
            } if match_index > last_index || read_round > self.reads.round() => {
                Some("acknowledges an index or read round never sent")
            }
            AppendOutcome::Rejected { prev_index, .. } if prev_index > last_index => {
                Some("rejects an index beyond the leader's log")
            }
            _ => None,
        };
        if problem.is_some_and(|problem| self.drop_invalid(from, problem)) {
            return;
        }
        let progress = self.progress.get_mut(&from).expect("checked above");
        progress.recently_active = true;
        match outcome {
            AppendOutcome::Accepted {
                match_index,
                read_round,
            } => {
                if read_round > progress.read_round_acked {
                    progress.read_round_acked = read_round;
                    self.confirm_reads(out);
                }
                let progress = self.progress.get_mut(&from).expect("checked above");
                // Only progress triggers an immediate send. An acknowledgement that does not
                // advance (the follower is still syncing, or answers a heartbeat) unpauses a
                // probe, and the next heartbeat round carries what the follower lacks (see
                // `broadcast_heartbeat`): answering each such ack at once would ping-pong the
                // same entries until the follower's write is durable, and with duplicated
                // messages the exchanges multiply.
                if progress.acknowledged(match_index) {
                    self.maybe_commit(out);
                    // The commit may have completed a change that removed `from` (the final
                    // configuration no longer tracks it), or this leader's own removal.
                    if self.role == Role::Leader && self.progress.contains_key(&from) {
                        self.send_append(from, out);
                    }
                }
                if let Some((to, _)) = self.transfer {
                    let caught_up = self.progress.get(&from).map(|p| p.match_index)
                        == Some(self.log.last_index());
                    if to == from && caught_up {
                        self.send_timeout_now(from, out);
                    }
                }
            }
            AppendOutcome::Rejected { prev_index, hint } => {
                if prev_index < progress.match_index
                    || (progress.state == ProgressState::Probe
                        && prev_index != progress.next_index.prev())
                {
                    return; // stale
                }
                let retry_from = match hint.conflict {
                    Some((term, first_of_term)) => match self.log.last_index_of_term(term) {
                        Some(last_of_term) if last_of_term < prev_index => last_of_term.next(),
                        _ => first_of_term,
                    },
                    None => hint.last_index.next(),
                };
                let progress = self.progress.get_mut(&from).expect("checked above");
                if hint.last_index < progress.match_index {
                    // The follower no longer holds entries it acknowledged as durable: its disk
                    // was replaced (it rejoined with `--init`). Match it again from scratch.
                    progress.forget_match(hint.last_index);
                }
                progress.become_probe(retry_from.min(prev_index));
                self.send_append(from, out);
            }
        }
    }

    fn broadcast_append(&mut self, out: &mut Vec<Action>) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            self.send_append(peer, out);
        }
    }

    /// One AppendEntries to every follower: empty, except that a probing follower that is not
    /// waiting for an answer and lacks entries is sent them (after `Unreachable`, this is what
    /// resends the entries lost with the connection, at the heartbeat's pace).
    fn broadcast_heartbeat(&mut self, out: &mut Vec<Action>) {
        let last_index = self.log.last_index();
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            let progress = &self.progress[&peer];
            let probe_with_entries = progress.state == ProgressState::Probe
                && !progress.paused
                && progress.next_index <= last_index;
            let behind_base = progress.next_index <= self.log.base_index()
                && !matches!(progress.state, ProgressState::Snapshot { .. });
            if behind_base {
                // No heartbeat can ask about entries compacted away (and a lost message may
                // have paused the probe for good): the snapshot is what this follower needs.
                self.send_snapshot(peer, out);
            } else if probe_with_entries {
                self.send_append(peer, out);
            } else {
                out.push(self.append_to(peer, progress.next_index, Vec::new()));
            }
        }
    }

    /// AppendEntries to `peer` carrying `batches`, which follow the leader's entry `next - 1`.
    fn append_to(&self, peer: NodeId, next: LogIndex, batches: Vec<EntryBatch>) -> Action {
        // A follower waiting for a snapshot may be behind the base (a newer snapshot moved it):
        // its heartbeats name the base, and the answers are ignored until it acknowledges.
        let prev_index = next.prev().max(self.log.base_index());
        let prev_term = self.log.term_at(prev_index).expect("leader holds its log");
        Action::Send {
            to: peer,
            message: Message::Append(AppendRequest {
                term: self.term,
                prev_index,
                prev_term,
                commit: self.commit,
                read_round: self.reads.round(),
                batches,
            }),
            after_persist: !self.term_is_durable(),
        }
    }

    /// Whether this leader's term is known durable (see `term_durable_from`).
    fn term_is_durable(&self) -> bool {
        self.term_durable_from
            .is_none_or(|first| self.log.durable_index() >= first)
    }

    /// Sends `peer` the entries it lacks, as far as its window allows.
    fn send_append(&mut self, peer: NodeId, out: &mut Vec<Action>) {
        let last_index = self.log.last_index();
        loop {
            let progress = &self.progress[&peer];
            if !progress.can_send(
                self.config.inflight_messages_max,
                self.config.inflight_bytes_max,
            ) {
                return;
            }
            let next = progress.next_index;
            // With nothing new to send, a probe would only repeat the heartbeat's question
            // (does the follower match at `next - 1`?); answering it at once would ping-pong
            // until the follower's write is durable. Heartbeats ask it at their pace.
            if next > last_index {
                return;
            }
            if next <= self.log.base_index() {
                self.send_snapshot(peer, out);
                return;
            }
            let batches = self.log.entries_from(next, self.config.message_bytes_max);
            let bytes = batches.iter().map(EntryBatch::encoded_len).sum();
            let sent_last = batches.last().map_or(next.prev(), EntryBatch::last_index);
            out.push(self.append_to(peer, next, batches));
            let progress = self.progress.get_mut(&peer).expect("peer has progress");
            progress.sent(sent_last, bytes);
            if progress.state == ProgressState::Probe {
                return;
            }
        }
    }

    /// Advances the commit index to the highest current-term index durable on a majority.
    fn maybe_commit(&mut self, out: &mut Vec<Action>) {
        if self.role != Role::Leader {
            return;
        }
        let durable = self.log.durable_index();
        let candidate = self
            .membership()
            .quorum_value(|id| match self.progress.get(&id) {
                Some(progress) => progress.match_index,
                None if id == self.config.id => durable,
                None => LogIndex::ZERO,
            })
            .unwrap_or(LogIndex::ZERO);
        if candidate <= self.commit {
            return;
        }
        let current_term_rule =
            self.config.broken_rule != Some(BrokenRule::CommitPreviousTermByCounting);
        if current_term_rule && self.log.term_at(candidate) != Some(self.term) {
            return;
        }
        self.commit = candidate;
        out.push(Action::Commit { index: candidate });
        if self.reads.has_awaiting_commit() {
            let round = self.reads.next_round();
            self.reads.stamp_awaiting_commit(candidate, round);
            self.broadcast_heartbeat(out);
            self.confirm_reads(out);
        }
        self.apply_ready(out);
        self.configuration_committed(out);
    }

    /// Hands committed entries that are durable here to the state machine.
    fn apply_ready(&mut self, out: &mut Vec<Action>) {
        let ready = self.commit.min(self.log.durable_index());
        if ready <= self.applied {
            return;
        }
        for batch in self.log.entries_between(self.applied.next(), ready) {
            out.push(Action::Apply(batch));
        }
        self.applied = ready;
    }

    // ---- invariants ------------------------------------------------------------------------

    /// Checks every invariant of the module docs that holds within one state: the cheap ones
    /// ([`Raft::cheap_invariants`]) and the expensive ones ([`Raft::expensive_invariants`]),
    /// whatever [`Config::check_expensive_invariants`] says.
    pub fn invariants(&self) -> Result<(), String> {
        self.cheap_invariants()?;
        self.expensive_invariants()
    }

    /// Checks the cheap invariants of the module docs that hold within one state (O(1) or
    /// O(members)). [`Raft::step`] checks the cursor ones after every step and the rest after
    /// ticks, role changes, membership changes and saved snapshots, in every build.
    pub fn cheap_invariants(&self) -> Result<(), String> {
        self.cursor_invariants()?;
        self.state_invariants()
    }

    /// Whether the cursor invariants hold: exactly the conditions [`Raft::cursor_invariants`]
    /// checks one by one, as a few comparisons for the check after every step.
    #[inline(always)]
    fn cursors_in_order(&self) -> bool {
        let last = self.log.last_index();
        let durable = self.log.durable_index();
        durable <= last
            && self.applied <= self.commit
            && self.commit <= last
            && self.applied <= durable
    }

    /// The invariants of the cursors (module docs, "cheap, after every step").
    fn cursor_invariants(&self) -> Result<(), String> {
        let last = self.log.last_index();
        let durable = self.log.durable_index();
        if durable > last {
            return Err(format!("durable index {durable} beyond last index {last}"));
        }
        if !(self.applied <= self.commit && self.commit <= last) {
            return Err(format!(
                "cursor order broken: applied {} commit {} last {last}",
                self.applied, self.commit
            ));
        }
        if self.applied > durable {
            return Err(format!("applied {} beyond durable index", self.applied));
        }
        Ok(())
    }

    /// The cheap invariants checked after ticks, role changes, membership changes and saved
    /// snapshots (module docs, "cheap, after every tick..."): O(1) for a follower or
    /// candidate, O(members) for a leader.
    fn state_invariants(&self) -> Result<(), String> {
        self.log.check_ends()?;
        if !(self.log.base_index() <= self.snapshot.index && self.snapshot.index <= self.applied) {
            return Err(format!(
                "log base {} / snapshot {} / applied {} out of order",
                self.log.base_index(),
                self.snapshot.index,
                self.applied
            ));
        }
        if self.role != Role::Leader {
            if !self.progress.is_empty() || !self.reads.is_empty() {
                return Err("a non-leader keeps follower progress or pending reads".into());
            }
            return Ok(());
        }
        if self.leader != Some(self.config.id) || self.vote != Some(self.config.id) {
            return Err("a leader must know itself as leader and have voted for itself".into());
        }
        self.reads.check_newest()?;
        // A leader that appended a configuration without itself leads until that entry
        // commits, and steps down in the step that commits it (thesis §4.2.2).
        let membership = self.membership();
        if !membership.is_voter(self.config.id) && self.configs.latest().index <= self.commit {
            return Err(format!(
                "leader is not a voter of the committed configuration {membership}"
            ));
        }
        // The progress keys are the other members: as many, and each one a member.
        let others = membership.member_count() - usize::from(membership.is_member(self.config.id));
        if self.progress.len() != others {
            return Err("leader progress does not cover exactly the other members".into());
        }
        let last = self.log.last_index();
        for (&id, progress) in &self.progress {
            if id == self.config.id || !membership.is_member(id) {
                return Err("leader progress does not cover exactly the other members".into());
            }
            progress.check_bounds(last)?;
        }
        Ok(())
    }

    /// Checks the invariants of the module docs whose cost grows with the log, the
    /// configuration history or the traffic in flight (module docs, "expensive"). [`Raft::step`]
    /// checks them after every step only when [`Config::check_expensive_invariants`] is set.
    pub fn expensive_invariants(&self) -> Result<(), String> {
        self.log.check()?;
        self.configs.check(self.log.last_index())?;
        for progress in self.progress.values() {
            progress.check_inflight()?;
        }
        self.reads.check()
    }

    fn step_snapshot(&self) -> StepSnapshot {
        StepSnapshot {
            term: self.term,
            vote: self.vote,
            commit: self.commit,
            applied: self.applied,
            role: self.role,
        }
    }

    /// Whether the invariants across one step hold: exactly the conditions
    /// [`Raft::check_monotone`] checks one by one.
    #[inline(always)]
    fn step_is_monotone(&self, before: &StepSnapshot) -> bool {
        self.term >= before.term
            && (self.term != before.term || before.vote.is_none() || self.vote == before.vote)
            && self.commit >= before.commit
            && self.applied >= before.applied
    }

    /// The invariants across one step (module docs, "cheap, after every step").
    fn check_monotone(&self, before: &StepSnapshot) -> Result<(), String> {
        let term = before.term;
        if self.term < term {
            return Err(format!("term went back from {term} to {}", self.term));
        }
        if self.term == term && before.vote.is_some() && self.vote != before.vote {
            return Err(format!(
                "vote changed within {term}: {:?} -> {:?}",
                before.vote, self.vote
            ));
        }
        if self.commit < before.commit || self.applied < before.applied {
            return Err("commit or applied index went back".into());
        }
        Ok(())
    }
}

/// What [`Raft::step`] remembers from before a step to check the step's effect.
#[derive(Clone, Copy)]
struct StepSnapshot {
    term: Term,
    vote: Option<NodeId>,
    commit: LogIndex,
    applied: LogIndex,
    role: Role,
}

/// Panics the way every violated invariant does (the simulator turns such panics into reported
/// violations). Out of line, so the checks that run after every step stay small.
#[cold]
#[inline(never)]
fn invariant_violated(id: NodeId, problem: &str) -> ! {
    panic!("invariant violated on {id}: {problem}");
}

/// The configuration a batch carries, if it is a configuration entry that decodes. A leader
/// only writes valid ones; an undecodable one (from a faulty peer) is kept in the log, as log
/// matching requires, but never put in force.
fn config_entry(batch: &EntryBatch) -> Option<ConfigEntry> {
    if batch.kind() != BatchKind::Config {
        return None;
    }
    let (membership, context) = Membership::decode(batch.payload(batch.first_index())).ok()?;
    Some(ConfigEntry {
        index: batch.first_index(),
        membership,
        context,
    })
}

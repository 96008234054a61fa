//! The simulated cluster: nodes, network, disks, client and the event loop that drives them.
//!
//! Every random choice comes from one generator seeded by the run's seed, and every collection
//! that is iterated is ordered, so a seed replays exactly.
//!
//! Each node's disk is a [`MemLog`] (the in-memory twin of the production log, same
//! [`LogStore`] contract) holding one group, [`GROUP`]:
//! - The core's storage actions (`SaveHardState`, `TruncateLog`, `AppendLog`) are staged on the
//!   log in emission order. A flush starts whenever none is in flight and something is staged;
//!   it completes at a `SyncDone` event after a sync delay drawn from the run's
//!   [`FaultPlan`]. Its [`SyncReport`](crate::log::SyncReport) gives the group's durable log
//!   position, which the core receives as `Input::Persisted`.
//! - A `Send` with `after_persist` is held until every storage action emitted before it is
//!   durable: until the flush in flight completes if nothing is staged, or else until the next
//!   flush (which takes the staged actions) completes.
//!
//! Fault model of the disk (a crash is power loss): storage actions reach the medium in the
//! order they were issued, at flush granularity; a completed flush makes everything it took
//! durable; a crash keeps a random prefix (possibly empty, possibly all) of the operations
//! written but not synced ([`MemLog::crash_with`]: the flush in flight, whose sync had not
//! returned), as volatile data that a restart must sync before trusting it
//! ([`MemLog::reopen`]), and loses everything staged after it began (never written). Nothing is reordered and nothing
//! already durable is damaged: disk corruption and torn records are tested against the real
//! log. A restarting node recovers what its log then holds, read through [`LogStore`].
//!
//! With [`SimOptions::snapshots`], nodes snapshot their state machine at random moments (a
//! snapshot is durable at once, as the engine stores it before the core hears of it), cores
//! compact their logs behind snapshots, and a leader's InstallSnapshot carries the sender's
//! snapshot to a follower, which stores it before its core sees the message. A lost
//! InstallSnapshot is reported to its sender as `Unreachable`, as a transport whose transfer
//! failed would. A node's state machine is the list of entries it applied; a restored snapshot
//! must equal the committed prefix.
//!
//! With [`SimOptions::membership`], only the first [`SimOptions::initial_voters`] nodes form the
//! bootstrap configuration (the others start empty, as joining nodes do), and the client asks
//! the leader at random to add learners, promote them and remove members.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::rc::Rc;

use bytes::Bytes;

use rand::seq::IteratorRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::batch::{BatchKind, EntryBatch};
use crate::core::{
    Action, BrokenRule, Config, Input, MembershipChange, Message, Raft, Recovered, Role,
    SnapshotMeta,
};
use crate::log::{LogStore, MemLog, PendingFlush};
use crate::sim::checker::{Checker, EntryContent, Violation};
use crate::sim::faults::FaultPlan;
use crate::sim::reads::{ReadClient, ReadStart};
use crate::types::{GroupId, HardState, LogIndex, NodeId, Term};

/// The one Raft group of every simulated node's log.
pub const GROUP: GroupId = GroupId(1);

/// Simulated microseconds per core tick.
pub const TICK_US: u64 = 10_000;

/// How one run is shaped.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub nodes: usize,
    /// Ticks of the safety phase (faults on).
    pub safety_ticks: u64,
    /// Ticks the liveness phase may take to elect a leader and commit a new proposal.
    pub liveness_ticks: u64,
    /// Print every event.
    pub trace: bool,
    /// Break a rule on every node, to show the checkers catch it (tests only).
    pub broken_rule: Option<BrokenRule>,
    /// Take snapshots, compact logs and install snapshots (see the module docs).
    pub snapshots: bool,
    /// Change the group's members while the run goes on (see the module docs).
    pub membership: bool,
    /// With `membership`: how many nodes form the bootstrap configuration.
    pub initial_voters: usize,
}

/// Per tick, with [`SimOptions::snapshots`]: chance that some node snapshots.
const SNAPSHOT_PER_TICK: f64 = 0.1;
/// Per tick, with [`SimOptions::membership`]: chance that the client asks for a change.
const MEMBERSHIP_CHANGE_PER_TICK: f64 = 0.05;
/// Entries a core keeps behind its snapshot, with [`SimOptions::snapshots`].
const COMPACTION_TRAILING_ENTRIES: u64 = 2;

impl SimOptions {
    pub fn new(nodes: usize) -> SimOptions {
        SimOptions {
            nodes,
            safety_ticks: 400,
            liveness_ticks: 300,
            trace: false,
            broken_rule: None,
            snapshots: false,
            membership: false,
            initial_voters: nodes,
        }
    }

    /// Options with snapshots and membership changes on: `nodes` nodes, of which three (or
    /// all, if fewer) form the bootstrap configuration.
    pub fn reconfiguring(nodes: usize) -> SimOptions {
        SimOptions {
            snapshots: true,
            membership: true,
            initial_voters: nodes.min(3),
            ..SimOptions::new(nodes)
        }
    }
}

/// What one run did.
#[derive(Clone, Debug, Default)]
pub struct SimSummary {
    pub events: u64,
    pub leaders_elected: u64,
    pub committed_entries: usize,
    pub acknowledged_values: usize,
    pub messages_lost: u64,
    pub messages_duplicated: u64,
    pub partitions: u64,
    pub crashes: u64,
    pub reads_served: u64,
    pub snapshots_taken: u64,
    pub snapshots_installed: u64,
    pub membership_changes: u64,
}

/// A snapshot as the simulation stores it: what it covers and the state machine it holds
/// (the entries applied up to its index, by index from 1).
#[derive(Debug)]
struct SimSnapshot {
    meta: SnapshotMeta,
    state: Vec<(Term, EntryContent)>,
}

#[derive(Debug)]
enum Event {
    Tick(NodeId),
    Deliver {
        from: NodeId,
        to: NodeId,
        epochs: (u64, u64),
        message: Message,
        /// For InstallSnapshot: the snapshot's data.
        snapshot: Option<Rc<SimSnapshot>>,
    },
    /// A snapshot transfer from `from` to `to` failed.
    TransferFailed {
        from: NodeId,
        to: NodeId,
        epoch: u64,
    },
    SyncDone {
        node: NodeId,
        epoch: u64,
    },
    /// Once per tick: the fault and client schedule.
    Schedule,
    Heal,
}

struct SimNode {
    id: NodeId,
    raft: Option<Raft>,
    /// The node's disk; it survives crashes (see the module documentation).
    log: MemLog,
    /// The flush in flight, completed at its `SyncDone` event.
    flush: Option<PendingFlush>,
    /// Flushes started and flushes completed (or ended by a crash) so far.
    flushes_started: u64,
    flushes_done: u64,
    /// The durable hard state, as the last sync report or crash left it.
    durable_hard: HardState,
    /// Incremented at every crash: messages and syncs of an older life are void.
    epoch: u64,
    /// Sends waiting for the disk: (`flushes_done` needed, destination, message).
    held: Vec<(u64, NodeId, Message)>,
    /// Client values proposed through this node that were accepted: (index, term, value).
    pending: Vec<(LogIndex, Term, u64)>,
    applied: LogIndex,
    /// The state machine: every entry applied, by index from 1 (`len() == applied`).
    state: Vec<(Term, EntryContent)>,
    /// Stored snapshots by index, the newest [`SNAPSHOTS_KEPT`]; like the disk, they survive
    /// crashes. A received snapshot is stored even if the core then ignores it (a stale
    /// message), as the engine's store does.
    snapshots: BTreeMap<LogIndex, Rc<SimSnapshot>>,
}

/// Snapshots a simulated node keeps.
const SNAPSHOTS_KEPT: usize = 3;

impl SimNode {
    fn store_snapshot(&mut self, snapshot: Rc<SimSnapshot>) {
        self.snapshots.insert(snapshot.meta.index, snapshot);
        while self.snapshots.len() > SNAPSHOTS_KEPT {
            self.snapshots.pop_first();
        }
    }
}

pub struct Cluster {
    options: SimOptions,
    rng: Xoshiro256PlusPlus,
    plan: FaultPlan,
    seed: u64,
    now_us: u64,
    sequence: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<SimNode>,
    /// Directed links that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    checker: Checker,
    summary: SimSummary,
    next_value: u64,
    actions: Vec<Action>,
    reads: ReadClient,
}

/// An event due at `at_us`; ties run in scheduling order (`sequence`).
struct Scheduled {
    at_us: u64,
    sequence: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.sequence) == (other.at_us, other.sequence)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_us, self.sequence).cmp(&(other.at_us, other.sequence))
    }
}

impl Cluster {
    pub fn new(seed: u64, options: SimOptions) -> Cluster {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let plan = FaultPlan::draw(&mut rng);
        let ids: Vec<NodeId> = (1..=options.nodes as u64).map(NodeId).collect();
        let mut cluster = Cluster {
            rng,
            plan,
            seed,
            now_us: 0,
            sequence: 0,
            queue: BinaryHeap::new(),
            nodes: Vec::new(),
            cut: BTreeSet::new(),
            checker: Checker::default(),
            summary: SimSummary::default(),
            next_value: 1,
            actions: Vec::new(),
            reads: ReadClient::new(seed, options.nodes, lease_us(&options)),
            options,
        };
        for &id in &ids {
            let mut log = MemLog::new();
            let raft = Raft::new(cluster.core_config(id, 0), recover(&mut log, None));
            cluster.nodes.push(SimNode {
                id,
                raft: Some(raft),
                log,
                flush: None,
                flushes_started: 0,
                flushes_done: 0,
                durable_hard: HardState::default(),
                epoch: 0,
                held: Vec::new(),
                pending: Vec::new(),
                applied: LogIndex::ZERO,
                state: Vec::new(),
                snapshots: BTreeMap::new(),
            });
            let phase = cluster.rng.random_range(0..TICK_US);
            cluster.schedule(phase, Event::Tick(id));
        }
        cluster.schedule(TICK_US / 2, Event::Schedule);
        cluster
    }

    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    fn core_config(&self, id: NodeId, epoch: u64) -> Config {
        let initial = self.options.initial_voters as u64;
        let voters = if id.0 <= initial {
            (1..=initial).map(NodeId).collect()
        } else {
            Vec::new() // joining: the leader's log tells it the configuration
        };
        let mut config = Config::new(id, voters);
        if self.options.snapshots {
            config.compaction_trailing_entries = COMPACTION_TRAILING_ENTRIES;
        }
        config.rng_seed = self.seed ^ (epoch << 20);
        config.check_invariants = true;
        config.broken_rule = self.options.broken_rule;
        config
    }

    fn schedule(&mut self, delay_us: u64, event: Event) {
        self.sequence += 1;
        self.queue.push(Reverse(Scheduled {
            at_us: self.now_us + delay_us,
            sequence: self.sequence,
            event,
        }));
    }

    /// Runs the safety phase, then heals and requires progress. Returns what happened.
    pub fn run(mut self) -> Result<SimSummary, Violation> {
        let heal_at = self.options.safety_ticks * TICK_US;
        self.run_until(heal_at)?;
        self.heal_everything();
        let acknowledged_at_heal = self.checker.acknowledged_count();
        let deadline = heal_at + self.options.liveness_ticks * TICK_US;
        while self.now_us < deadline {
            self.run_until(self.now_us + TICK_US)?;
            if self.checker.acknowledged_count() > acknowledged_at_heal && self.leader().is_some() {
                return self.final_checks();
            }
        }
        Err(Violation(format!(
            "no progress within {} ticks after healing (leader: {:?})",
            self.options.liveness_ticks,
            self.leader()
        )))
    }

    fn run_until(&mut self, until_us: u64) -> Result<(), Violation> {
        while self
            .queue
            .peek()
            .is_some_and(|Reverse(next)| next.at_us <= until_us)
        {
            let Reverse(Scheduled { at_us, event, .. }) = self.queue.pop().expect("peeked");
            self.now_us = at_us;
            self.summary.events += 1;
            self.handle(event)?;
        }
        self.now_us = until_us;
        Ok(())
    }

    fn trace(&self, line: impl FnOnce() -> String) {
        if self.options.trace {
            println!("{:>10.3}ms {}", self.now_us as f64 / 1000.0, line());
        }
    }

    fn handle(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Tick(id) => {
                if self.node(id).raft.is_some() {
                    self.step(id, Input::Tick)?;
                    self.schedule(TICK_US, Event::Tick(id));
                }
            }
            Event::Deliver {
                from,
                to,
                epochs,
                message,
                snapshot,
            } => {
                if (self.node(from).epoch, self.node(to).epoch) == epochs
                    && self.node(to).raft.is_some()
                {
                    self.trace(|| format!("{to} <- {from} {message:?}"));
                    if let Some(snapshot) = snapshot {
                        self.store_received_snapshot(to, snapshot);
                    }
                    self.step(to, Input::Message { from, message })?;
                } else if snapshot.is_some() {
                    self.transfer_failed(from, to, epochs.0);
                }
            }
            Event::TransferFailed { from, to, epoch } => {
                if self.node(from).epoch == epoch && self.node(from).raft.is_some() {
                    self.step(from, Input::Unreachable { peer: to })?;
                }
            }
            Event::SyncDone { node, epoch } => {
                if self.node(node).epoch == epoch && self.node(node).raft.is_some() {
                    self.sync_done(node)?;
                }
            }
            Event::Schedule => {
                self.inject_faults()?;
                self.schedule(TICK_US, Event::Schedule);
            }
            Event::Heal => {
                self.trace(|| "network healed".into());
                self.cut.clear();
            }
        }
        Ok(())
    }

    fn node(&self, id: NodeId) -> &SimNode {
        &self.nodes[id.0 as usize - 1]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut SimNode {
        &mut self.nodes[id.0 as usize - 1]
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|node| node.raft.as_ref())
            .filter(|raft| raft.role() == Role::Leader)
            .max_by_key(|raft| raft.term())
            .map(Raft::id)
    }

    /// Steps `id`'s core with `input` and carries out the actions.
    fn step(&mut self, id: NodeId, input: Input) -> Result<(), Violation> {
        let mut actions = std::mem::take(&mut self.actions);
        actions.clear();
        let raft = self.nodes[id.0 as usize - 1]
            .raft
            .as_mut()
            .expect("stepping a live node");
        raft.step(input, &mut actions);
        self.reads.observe(id, raft, self.now_us);
        let result = self.execute(id, &actions);
        self.actions = actions;
        result
    }

    fn execute(&mut self, id: NodeId, actions: &[Action]) -> Result<(), Violation> {
        for action in actions {
            self.trace(|| format!("{id} {}", describe(action)));
            let log = &mut self.node_mut(id).log;
            let staged = match action {
                Action::SaveHardState(state) => Some(log.save_hard_state(GROUP, *state)),
                Action::TruncateLog { from } => Some(log.truncate(GROUP, *from)),
                Action::AppendLog(batch) => Some(log.append(GROUP, batch)),
                Action::CompactLog { through, term } => Some(log.compact(GROUP, *through, *term)),
                _ => None,
            };
            if let Some(result) = staged {
                if let Err(error) = result {
                    return Err(Violation(format!(
                        "{id}'s log refused {}: {error}",
                        describe(action)
                    )));
                }
                if let Action::AppendLog(batch) = action {
                    self.checker.appended(id, batch)?;
                }
                self.start_sync(id);
                continue;
            }
            match action {
                Action::Send {
                    to,
                    message,
                    after_persist,
                } => {
                    let node = self.node_mut(id);
                    // Every storage action emitted before this send is durable once the flush
                    // in flight completes, unless some are staged: then the next one.
                    let mark = node.flushes_started + u64::from(node.log.has_staged());
                    if *after_persist && mark > node.flushes_done {
                        node.held.push((mark, *to, message.clone()));
                    } else {
                        self.send(id, *to, message.clone());
                    }
                }
                Action::Accepted {
                    first_index,
                    last_index,
                    term,
                } => self.record_pending(id, *first_index, *last_index, *term),
                Action::Apply(batch) => self.apply(id, batch)?,
                Action::RestoreSnapshot(meta) => self.restore(id, meta)?,
                Action::ReadReady { id: read, index } => {
                    self.reads.ready(id, *read, *index);
                    self.reads.serve(id, self.node(id).applied)?;
                }
                Action::ReadRefused { id: read, .. } => self.reads.refused(id, *read),
                Action::RoleChanged {
                    role: Role::Leader,
                    term,
                    ..
                } => {
                    self.summary.leaders_elected += 1;
                    let raft = self.nodes[id.0 as usize - 1].raft.as_ref().expect("live");
                    self.checker
                        .leader_elected(id, *term, raft.log_base(), |index| raft.term_at(index))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Starts a flush of everything staged on `id`'s log, unless one is in flight or nothing
    /// is staged; it completes at a `SyncDone` after the simulated sync delay.
    fn start_sync(&mut self, id: NodeId) {
        let (min, max) = (self.plan.sync_min_us, self.plan.sync_max_us);
        let delay = self.rng.random_range(min..=max);
        let node = self.node_mut(id);
        if node.flush.is_some() || !node.log.has_staged() {
            return;
        }
        let pending = node
            .log
            .start_flush()
            .expect("the simulated log never fails")
            .expect("something is staged");
        node.flush = Some(pending);
        node.flushes_started += 1;
        let epoch = node.epoch;
        self.schedule(delay, Event::SyncDone { node: id, epoch });
    }

    fn sync_done(&mut self, id: NodeId) -> Result<(), Violation> {
        let node = self.node_mut(id);
        let done = node
            .flush
            .take()
            .and_then(|mut pending| pending.try_take())
            .expect("a SyncDone completes the flush in flight, whose I/O is done");
        let report = node
            .log
            .finish_flush(done)
            .map_err(|error| Violation(format!("{id}'s log failed a flush: {error}")))?;
        node.flushes_done += 1;
        for &(group, state) in &report.hard_states {
            if group == GROUP {
                if state.commit < node.durable_hard.commit {
                    return Err(Violation(format!("{id}'s durable commit hint went back")));
                }
                node.durable_hard = state;
            }
        }
        if let Some(&(_, position)) = report.log.iter().find(|(group, _)| *group == GROUP) {
            let (index, term) = (position.index, position.term);
            self.step(id, Input::Persisted { index, term })?;
        }
        let node = self.node_mut(id);
        let done = node.flushes_done;
        let (ready, waiting): (Vec<_>, Vec<_>) =
            node.held.drain(..).partition(|(mark, _, _)| *mark <= done);
        node.held = waiting;
        for (_, to, message) in ready {
            self.send(id, to, message);
        }
        self.start_sync(id);
        Ok(())
    }

    fn send(&mut self, from: NodeId, to: NodeId, message: Message) {
        let snapshot = match &message {
            Message::InstallSnapshot { snapshot, .. } => {
                self.node(from).snapshots.get(&snapshot.index).cloned()
            }
            _ => None,
        };
        if self.cut.contains(&(from, to)) || self.rng.random_bool(self.plan.loss) {
            self.summary.messages_lost += 1;
            if snapshot.is_some() {
                self.transfer_failed(from, to, self.node(from).epoch);
            }
            return;
        }
        let copies = if self.rng.random_bool(self.plan.duplication) {
            self.summary.messages_duplicated += 1;
            2
        } else {
            1
        };
        let epochs = (self.node(from).epoch, self.node(to).epoch);
        for _ in 0..copies {
            let delay = self.rng.random_range(1..=self.plan.delay_max_us);
            self.schedule(
                delay,
                Event::Deliver {
                    from,
                    to,
                    epochs,
                    message: message.clone(),
                    snapshot: snapshot.clone(),
                },
            );
        }
    }

    /// The transfer of a snapshot from `from` (in its life `epoch`) to `to` failed: the sender
    /// hears of it a little later, as from a transport whose connection broke.
    fn transfer_failed(&mut self, from: NodeId, to: NodeId, epoch: u64) {
        let delay = self.rng.random_range(1..=self.plan.delay_max_us);
        self.schedule(delay, Event::TransferFailed { from, to, epoch });
    }

    /// `id` received a snapshot and stored it durably.
    fn store_received_snapshot(&mut self, id: NodeId, snapshot: Rc<SimSnapshot>) {
        self.node_mut(id).store_snapshot(snapshot);
    }

    /// `id`'s core restores the snapshot `meta` describes: it must be one stored.
    fn restore(&mut self, id: NodeId, meta: &SnapshotMeta) -> Result<(), Violation> {
        let node = self.node_mut(id);
        let snapshot = node
            .snapshots
            .get(&meta.index)
            .filter(|held| held.meta == *meta)
            .cloned()
            .ok_or_else(|| {
                Violation(format!(
                    "{id} restores a snapshot it does not hold: {meta:?}"
                ))
            })?;
        node.state = snapshot.state.clone();
        node.applied = meta.index;
        node.pending.retain(|&(index, _, _)| index > meta.index);
        self.summary.snapshots_installed += 1;
        self.checker.restored(id, &snapshot.state)?;
        self.reads.serve(id, meta.index)
    }

    /// `id` snapshots its state machine, and its core compacts behind the snapshot.
    fn take_snapshot(&mut self, id: NodeId) -> Result<(), Violation> {
        let node = self.node(id);
        let Some(point) = node.raft.as_ref().and_then(Raft::snapshot_point) else {
            return Ok(());
        };
        if node.snapshots.contains_key(&point.index) {
            return Ok(());
        }
        let (index, term) = (point.index, point.term);
        let snapshot = SimSnapshot {
            meta: point,
            state: node.state.clone(),
        };
        self.trace(|| format!("{id} snapshots at {index}"));
        self.node_mut(id).store_snapshot(Rc::new(snapshot));
        self.summary.snapshots_taken += 1;
        self.step(id, Input::SnapshotSaved { index, term })
    }

    /// The client asks the leader for a random membership change.
    fn change_membership(&mut self) -> Result<(), Violation> {
        let Some(leader) = self.leader() else {
            return Ok(());
        };
        let membership = self
            .node(leader)
            .raft
            .as_ref()
            .expect("live")
            .membership()
            .clone();
        let target = NodeId(self.rng.random_range(1..=self.options.nodes as u64));
        let change = if membership.learners.contains(&target) && self.rng.random_bool(0.7) {
            MembershipChange::Promote(target)
        } else if membership.is_member(target) {
            MembershipChange::Remove(target)
        } else {
            MembershipChange::AddLearner(target)
        };
        self.trace(|| format!("client asks {leader} to {change:?} (now {membership})"));
        self.summary.membership_changes += 1;
        self.step(
            leader,
            Input::ChangeMembership {
                change,
                context: Bytes::new(),
            },
        )
    }

    /// Remembers the client values of an accepted proposal, to acknowledge them when the
    /// proposing node applies them.
    fn record_pending(&mut self, id: NodeId, first: LogIndex, last: LogIndex, term: Term) {
        let raft = self.node(id).raft.as_ref().expect("live");
        let mut values = Vec::new();
        // A configuration change is accepted like a proposal; only client values are tracked.
        for batch in raft.entries(first, last) {
            if batch.kind() != BatchKind::Command {
                continue;
            }
            for (offset, payload) in batch.payloads().enumerate() {
                let value = u64::from_le_bytes(payload.try_into().expect("8-byte client value"));
                values.push((batch.first_index().plus(offset as u64), term, value));
            }
        }
        self.node_mut(id).pending.extend(values);
    }

    fn apply(&mut self, id: NodeId, batch: &EntryBatch) -> Result<(), Violation> {
        let node = self.node_mut(id);
        if batch.first_index() != node.applied.next() {
            return Err(Violation(format!(
                "{id} applied {:?} after {}",
                batch, node.applied
            )));
        }
        node.applied = batch.last_index();
        node.state.extend(
            batch
                .payloads()
                .map(|payload| (batch.term(), (batch.kind(), payload.to_vec()))),
        );
        let (first, last, term) = (batch.first_index(), batch.last_index(), batch.term());
        let mut acknowledged = Vec::new();
        node.pending.retain(|&(index, pending_term, value)| {
            if index < first || index > last {
                return index > last;
            }
            if pending_term == term && batch.payload(index) == value.to_le_bytes() {
                acknowledged.push((value, index));
            }
            false
        });
        for (value, index) in acknowledged {
            self.checker.acknowledged(value, index);
        }
        self.checker.applied(id, batch)?;
        self.reads.serve(id, last)
    }

    // ---- faults and the client -------------------------------------------------------------

    fn inject_faults(&mut self) -> Result<(), Violation> {
        if self.cut.is_empty() && self.rng.random_bool(self.plan.partition_per_tick) {
            self.partition();
        }
        if self.rng.random_bool(self.plan.crash_per_tick) {
            self.crash_some_node()?;
        }
        if self.rng.random_bool(self.plan.restart_per_tick) {
            let crashed = self.nodes.iter().filter(|n| n.raft.is_none()).map(|n| n.id);
            if let Some(id) = crashed.choose(&mut self.rng) {
                self.restart(id)?;
            }
        }
        if self.rng.random_bool(self.plan.transfer_per_tick) {
            if let Some(leader) = self.leader() {
                let to = NodeId(self.rng.random_range(1..=self.options.nodes as u64));
                self.step(leader, Input::TransferLeadership { to })?;
            }
        }
        if self.rng.random_bool(self.plan.propose_per_tick) {
            self.propose()?;
        }
        if self.options.snapshots && self.rng.random_bool(SNAPSHOT_PER_TICK) {
            let live = self.nodes.iter().filter(|n| n.raft.is_some()).map(|n| n.id);
            if let Some(id) = live.choose(&mut self.rng) {
                self.take_snapshot(id)?;
            }
        }
        if self.options.membership && self.rng.random_bool(MEMBERSHIP_CHANGE_PER_TICK) {
            self.change_membership()?;
        }
        let cores = self.nodes.iter().filter_map(|node| node.raft.as_ref());
        let required = self.checker.highest_acknowledged();
        if let ReadStart::ReadIndex { node, id } =
            self.reads.maybe_start(cores, required, self.now_us)
        {
            self.step(node, Input::ReadIndex { id })?;
        }
        Ok(())
    }

    fn partition(&mut self) {
        self.summary.partitions += 1;
        let ids: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
        let kind = self.rng.random_range(0..3);
        let isolated: Vec<NodeId> = match (kind, self.leader()) {
            (0, Some(leader)) => vec![leader],
            _ => {
                let size = self.rng.random_range(1..=ids.len() / 2);
                ids.iter().copied().choose_multiple(&mut self.rng, size)
            }
        };
        let one_way = kind == 2;
        let inbound_only = self.rng.random_bool(0.5);
        for &inside in &isolated {
            for &outside in ids.iter().filter(|id| !isolated.contains(id)) {
                if !one_way || inbound_only {
                    self.cut.insert((outside, inside));
                }
                if !one_way || !inbound_only {
                    self.cut.insert((inside, outside));
                }
            }
        }
        self.trace(|| format!("partition {:?} (one way: {one_way})", isolated));
        let duration = self.rng.random_range(5..100) * TICK_US;
        self.schedule(duration, Event::Heal);
    }

    fn crash_some_node(&mut self) -> Result<(), Violation> {
        let leader = self.leader();
        let target = match leader {
            Some(leader) if self.rng.random_bool(0.3) => Some(leader),
            _ => self
                .nodes
                .iter()
                .filter(|n| n.raft.is_some())
                .map(|n| n.id)
                .choose(&mut self.rng),
        };
        let Some(id) = target else { return Ok(()) };
        self.summary.crashes += 1;
        let node = self.node(id);
        let (inflight, staged) = (node.log.unsynced_ops(), node.log.has_staged());
        let survivors = self.rng.random_range(0..=inflight);
        self.trace(|| {
            format!(
                "{id} crashes ({survivors} of {inflight} unsynced writes survive{})",
                if staged { ", staged writes lost" } else { "" }
            )
        });
        let node = self.node_mut(id);
        node.raft = None;
        node.log.crash_with(survivors);
        node.flush = None;
        node.flushes_done = node.flushes_started;
        node.epoch += 1;
        node.held.clear();
        node.pending.clear();
        self.reads.crashed(id);
        let node = self.node_mut(id);
        // After a crash the log reads as its durable state.
        let durable_hard = node.log.hard_state(GROUP);
        if durable_hard.commit < node.durable_hard.commit {
            return Err(Violation(format!("{id}'s durable commit hint went back")));
        }
        node.durable_hard = durable_hard;
        Ok(())
    }

    fn restart(&mut self, id: NodeId) -> Result<(), Violation> {
        let node = self.node_mut(id);
        let snapshot = node.snapshots.values().next_back().cloned();
        let recovered = recover(&mut node.log, snapshot.as_ref().map(|s| s.meta.clone()));
        let (applied_before, epoch) = (node.applied, node.epoch);
        let durable_last = recovered
            .batches
            .last()
            .map_or(recovered.log_base.0, EntryBatch::last_index);
        if durable_last < applied_before {
            return Err(Violation(format!(
                "{id} had applied up to {applied_before} but recovered a log ending at {durable_last}"
            )));
        }
        self.trace(|| format!("{id} restarts (log to {durable_last})"));
        let config = self.core_config(id, epoch);
        let node = self.node_mut(id);
        node.raft = Some(Raft::new(config, recovered));
        node.state = snapshot.map(|s| s.state.clone()).unwrap_or_default();
        node.applied = LogIndex(node.state.len() as u64);
        // Recovery may have staged the replacement of a log that does not continue the
        // snapshot.
        self.start_sync(id);
        let phase = self.rng.random_range(1..TICK_US);
        self.schedule(phase, Event::Tick(id));
        Ok(())
    }

    fn propose(&mut self) -> Result<(), Violation> {
        let live: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.raft.is_some())
            .map(|n| n.id)
            .collect();
        let target = match self.leader() {
            Some(leader) if self.rng.random_bool(0.9) => leader,
            _ => match live.iter().copied().choose(&mut self.rng) {
                Some(id) => id,
                None => return Ok(()),
            },
        };
        let count = self.rng.random_range(1..=3);
        let values: Vec<[u8; 8]> = (0..count)
            .map(|_| {
                self.next_value += 1;
                self.next_value.to_le_bytes()
            })
            .collect();
        let batch = EntryBatch::encode(
            BatchKind::Command,
            Term::ZERO,
            LogIndex::ZERO,
            values.iter().map(|v| v.as_slice()),
        );
        self.step(target, Input::Propose(batch))
    }

    // ---- the end ---------------------------------------------------------------------------

    fn heal_everything(&mut self) {
        self.trace(|| "liveness phase: heal network, restart crashed nodes".into());
        self.plan = self.plan.healed();
        self.cut.clear();
    }

    fn final_checks(mut self) -> Result<SimSummary, Violation> {
        let logs: Vec<Vec<EntryBatch>> = self
            .nodes
            .iter_mut()
            .map(|n| read_log(&mut n.log))
            .collect();
        for a in 0..self.nodes.len() {
            for b in a + 1..self.nodes.len() {
                Checker::logs_match((self.nodes[a].id, &logs[a]), (self.nodes[b].id, &logs[b]))?;
            }
        }
        let leader = self.leader().expect("liveness phase found a leader");
        let node = self.node(leader);
        let raft = node.raft.as_ref().expect("live");
        self.checker.check_acknowledged_in(
            leader,
            |index| {
                if index <= raft.log_base() {
                    // Compacted: the entry is in the state machine (base <= applied).
                    let (_, (_, payload)) = &node.state[index.0 as usize - 1];
                    return Some(payload.clone());
                }
                raft.entries(index, index)
                    .first()
                    .map(|batch| batch.payload(index).to_vec())
            },
            raft.last_index(),
        )?;
        self.summary.committed_entries = self.checker.committed_count();
        self.summary.acknowledged_values = self.checker.acknowledged_count();
        self.summary.reads_served = self.reads.served();
        Ok(self.summary)
    }
}

/// How long a majority-acknowledged read round lets a leader serve lease reads: a follower's
/// first tick may come at once after it heard from the leader, so it is quiet for one tick less
/// than the election timeout. Simulated clocks do not drift.
fn lease_us(options: &SimOptions) -> u64 {
    let quiet_ticks = u64::from(Config::new(NodeId(1), vec![NodeId(1)]).election_timeout_ticks) - 1;
    let factor = match options.broken_rule {
        Some(BrokenRule::LeaseBeyondElectionTimeout) => 4,
        _ => 1,
    };
    quiet_ticks * TICK_US * factor
}

/// Every entry of `log`'s group, read through the [`LogStore`] API (a crashed node's log is
/// reopened first, as its restart would).
fn read_log(log: &mut MemLog) -> Vec<EntryBatch> {
    log.reopen();
    log.read(GROUP, log.first_index(GROUP), log.last_index(GROUP))
        .expect("the simulated log never fails")
}

/// What a node (re)starting on `log` recovers. Called on a fresh log or right after a crash,
/// when nothing is staged or in flight: the log then reads as its durable state.
fn recover(log: &mut MemLog, snapshot: Option<SnapshotMeta>) -> Recovered {
    log.reopen();
    debug_assert!(!log.has_staged() && log.inflight_ops() == 0);
    crate::engine::recover::recover(log, GROUP, snapshot).expect("the simulated log never fails")
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

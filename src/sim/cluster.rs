//! The simulated cluster: nodes running the engine that ships, a network, disks, clients, and
//! the event loop that drives them.
//!
//! Every random choice comes from one generator seeded by the run's seed, and every collection
//! that is iterated is ordered, so a seed replays exactly.
//!
//! Each node runs one [`ShardEngine`] holding [`GROUPS`] Raft groups, over a [`MemLog`] (the
//! in-memory twin of the production log) and a [`MemSnapshots`] (the twin of the snapshot
//! files), with the kv store as state machine ([`SimMachine`]). The cluster drives each engine
//! exactly as the glommio runtime does: every event that reaches a node is one turn —
//! `begin_turn(now)`, the event (`tick`, `receive`, `unreachable`, `propose`, `read`,
//! `flush_done`, `snapshot_stored`, ...), `end_turn` — after which the turn's output is carried
//! out: a flush starts if the engine wants one and completes at a later `SyncDone`; snapshots
//! the state machine wrote are stored at a later `SnapshotStored`; each message of the outbox
//! crosses the network; snapshot sends copy the stored snapshot from the sender's store to the
//! receiver's and then deliver the `InstallSnapshot`; answers go to the clients.
//!
//! Fault model. Network: each message may be lost, duplicated, delayed (which reorders),
//! stalled (held for many ticks, like a connection that stops moving), garbled into one no
//! correct peer sends ([`crate::sim::garble`]), or cut by a partition (symmetric, one-way, or
//! isolating the leader); a snapshot transfer that
//! is lost or whose snapshot the sender no longer holds is reported to the sender as
//! `unreachable`. Disk (a crash is power loss): a node's writes reach the medium in issue
//! order, at flush granularity; a completed flush makes everything it took durable; a crash
//! keeps a random prefix of the unsynced writes ([`MemLog::crash_with`]) as volatile data (in
//! the page cache: visible after the restart, lost by a later crash unless synced, which the
//! restart does before trusting it) and loses everything staged. Syncs take a delay drawn per seed, and may fail: a failed sync is fatal for
//! the node (the engine returns an error), which the simulation treats as a crash. Snapshots
//! are durable only once stored, as [`MemSnapshots`] documents: a crash loses those written
//! but not yet stored. Messages and completions of a node's earlier life are void.
//!
//! With [`SimOptions::snapshots`], engines snapshot every few applied entries (and at random
//! moments) and cores compact behind them, so lagging nodes need InstallSnapshot. With
//! [`SimOptions::membership`], only the first [`SimOptions::initial_voters`] nodes form each
//! group's bootstrap configuration and an operator asks leaders, through
//! `ShardEngine::change_membership`, to add learners, promote them and remove members.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use rand::seq::IteratorRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::batch::EntryBatch;
use crate::core::{BrokenRule, Config, MembershipChange, Message, Role};
use crate::engine::sessions::{SessionLimits, SAVED_OUTPUT_OVERHEAD_BYTES};
use crate::engine::snapshot_due::{SnapshotPolicy, LOG_RATIO_DEFAULT};
use crate::engine::{
    Committed, EngineConfig, EngineError, PendingSnapshot, ProposalError, ShardEngine,
    SnapshotSend, UNCOMMITTED_BYTES_MAX_DEFAULT,
};
use crate::log::{LogStore, MemLog, PendingFlush};
use crate::sim::checker::{Checker, NodeObserver, Observations, Violation};
use crate::sim::clients::{Ask, AttemptOn, Clients, Next};
use crate::sim::faults::{FaultMix, STALL_TICKS};
use crate::sim::garble::garble;
use crate::sim::machine::SimMachine;
use crate::sim::promises::LeasePromises;
use crate::snapshot::MemSnapshots;
use crate::types::ReadConsistency;
use crate::types::{GroupId, LogIndex, NodeId, Term};

/// Raft groups on every node (the kv keys hash over them).
pub const GROUPS: u32 = 2;

/// Simulated microseconds per engine tick.
pub const TICK_US: u64 = 10_000;

/// How one run is shaped.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub nodes: usize,
    /// Ticks of the safety phase (faults on).
    pub safety_ticks: u64,
    /// Ticks the liveness phase may take to elect leaders and acknowledge a new write.
    pub liveness_ticks: u64,
    /// Print every event and every action.
    pub trace: bool,
    /// Break a rule on every node (cores and engines), to show the checkers catch it.
    pub broken_rule: Option<BrokenRule>,
    /// Take snapshots, compact logs and install snapshots (see the module docs).
    pub snapshots: bool,
    /// Change the groups' members while the run goes on (see the module docs).
    pub membership: bool,
    /// With `membership`: how many nodes form the bootstrap configuration.
    pub initial_voters: usize,
}

/// Per tick, with [`SimOptions::snapshots`]: chance that some node snapshots some group.
const SNAPSHOT_PER_TICK: f64 = 0.1;
/// Per tick, with [`SimOptions::membership`]: chance that the operator asks for a change.
const MEMBERSHIP_CHANGE_PER_TICK: f64 = 0.05;
/// Entries a core keeps behind its snapshot, with [`SimOptions::snapshots`].
const COMPACTION_TRAILING_ENTRIES: u64 = 2;
/// Ticks before a proposal or read that has not completed is answered `Timeout`.
const PROPOSAL_TIMEOUT_TICKS: u64 = 100;
/// The OS error a failing sync reports.
const EIO: i32 = 5;

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
    pub acknowledged_writes: usize,
    pub reads_served: u64,
    pub messages_lost: u64,
    pub messages_duplicated: u64,
    pub messages_stalled: u64,
    pub messages_garbled: u64,
    pub partitions: u64,
    pub crashes: u64,
    pub failed_syncs: u64,
    pub snapshots_taken: u64,
    pub snapshots_installed: u64,
    pub membership_changes: u64,
    /// Lease reads sent to deposed leaders (see `Cluster::probe_deposed_leaders`).
    pub probes: u64,
    /// Retries of applied requests of client sessions answered with the earlier output.
    pub session_duplicates: u64,
    /// Requests refused because the group no longer knew their session.
    pub sessions_unknown: u64,
}

/// Where an engine's answer goes.
#[derive(Clone, Copy, Debug)]
enum Reply {
    /// A client's attempt: (client, attempt number).
    Client(usize, u64),
    /// The operator's membership change.
    Operator,
    /// A lease read the cluster sent to `group`'s leader of `term` after `newer` (term and
    /// node) had been elected: it must not be served (see [`Cluster::probe_deposed_leaders`]).
    Probe {
        group: GroupId,
        term: Term,
        newer: (Term, NodeId),
    },
}

type Engine = ShardEngine<MemLog, SimMachine, Reply, MemSnapshots>;

enum Event {
    /// A tick of `node` in its life `epoch` (each life has its own chain of ticks: a node
    /// restarted at the instant it crashed must not tick twice as fast).
    Tick {
        node: NodeId,
        epoch: u64,
    },
    Deliver {
        from: NodeId,
        to: NodeId,
        epochs: (u64, u64),
        group: GroupId,
        message: Message,
    },
    /// A snapshot transfer reaches its receiver.
    Transfer {
        from: NodeId,
        epochs: (u64, u64),
        send: SnapshotSend,
    },
    /// A snapshot transfer from `from` (in its life `epoch`) to `to` failed.
    TransferFailed {
        from: NodeId,
        to: NodeId,
        epoch: u64,
    },
    SyncDone {
        node: NodeId,
        epoch: u64,
    },
    SnapshotStored {
        node: NodeId,
        epoch: u64,
        pending: PendingSnapshot<MemSnapshots>,
    },
    ClientAttempt(usize),
    /// Once per tick: the fault, operator and client schedule.
    Schedule,
    Heal,
}

/// A node is up (its engine runs) or down (only its disk remains).
enum Life {
    Up(Box<Engine>),
    Down(Box<MemLog>),
}

struct SimNode {
    id: NodeId,
    life: Life,
    /// The snapshot files; like the disk, they survive crashes.
    snapshots: MemSnapshots,
    /// The flush in flight, completed at its `SyncDone` event.
    flush: Option<PendingFlush>,
    /// Incremented at every crash: messages, syncs and answers of an older life are void.
    epoch: u64,
    /// Whether the flush in flight was told to fail.
    sync_failing: bool,
    /// Per group, at the last crash: the applied index (a restart must recover at least that
    /// far) and the durable commit hint (which never goes back).
    applied_at_crash: Vec<LogIndex>,
    durable_commit: Vec<LogIndex>,
}

impl SimNode {
    fn engine(&self) -> Option<&Engine> {
        match &self.life {
            Life::Up(engine) => Some(engine),
            Life::Down(_) => None,
        }
    }

    fn engine_mut(&mut self) -> Option<&mut Engine> {
        match &mut self.life {
            Life::Up(engine) => Some(engine),
            Life::Down(_) => None,
        }
    }
}

pub struct Cluster {
    options: SimOptions,
    rng: Xoshiro256PlusPlus,
    plan: FaultMix,
    seed: u64,
    now_us: u64,
    sequence: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<SimNode>,
    /// Directed links that drop everything.
    cut: BTreeSet<(NodeId, NodeId)>,
    observations: Rc<RefCell<Observations>>,
    clients: Clients,
    summary: SimSummary,
    /// Applied entries past its last snapshot after which an engine snapshots a group.
    snapshot_entries: u64,
    /// The checker's election count when deposed leaders were last probed.
    elections_probed: u64,
    promises: LeasePromises,
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

fn groups() -> impl Iterator<Item = GroupId> {
    (0..u64::from(GROUPS)).map(GroupId)
}

impl Cluster {
    pub fn new(seed: u64, options: SimOptions) -> Result<Cluster, Violation> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let plan = FaultMix::draw(&mut rng);
        let snapshot_entries = if options.snapshots {
            rng.random_range(5..=30)
        } else {
            0
        };
        let observations = Rc::new(RefCell::new(Observations {
            trace: options.trace,
            ..Observations::default()
        }));
        let mut cluster = Cluster {
            rng,
            plan,
            seed,
            now_us: 0,
            sequence: 0,
            queue: BinaryHeap::new(),
            nodes: Vec::new(),
            cut: BTreeSet::new(),
            observations,
            clients: Clients::new(GROUPS, clients_use_sessions(seed)),
            summary: SimSummary::default(),
            snapshot_entries,
            elections_probed: 0,
            promises: LeasePromises::new(lease_us(&options)),
            options,
        };
        for id in (1..=cluster.options.nodes as u64).map(NodeId) {
            cluster.nodes.push(SimNode {
                id,
                life: Life::Down(Box::new(MemLog::new())),
                snapshots: MemSnapshots::new(),
                flush: None,
                sync_failing: false,
                epoch: 0,
                applied_at_crash: vec![LogIndex::ZERO; GROUPS as usize],
                durable_commit: vec![LogIndex::ZERO; GROUPS as usize],
            });
            cluster.start(id)?;
        }
        cluster.schedule(TICK_US / 2, Event::Schedule);
        Ok(cluster)
    }

    pub fn plan(&self) -> &FaultMix {
        &self.plan
    }

    fn core_config(&self, id: NodeId, group: GroupId, epoch: u64) -> Config {
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
        config.rng_seed = self.seed ^ (epoch << 20) ^ (group.0 << 40);
        config.check_expensive_invariants = true;
        config.broken_rule = self.options.broken_rule;
        config
    }

    fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            proposal_timeout_ticks: PROPOSAL_TIMEOUT_TICKS,
            read_lease: Some(Duration::from_micros(lease_us(&self.options))),
            snapshots: SnapshotPolicy {
                entries: self.snapshot_entries,
                log_ratio: snapshot_log_ratio(self.seed),
            },
            broken_rule: self.options.broken_rule,
            uncommitted_bytes_max: UNCOMMITTED_BYTES_MAX_DEFAULT,
            sessions: session_limits(self.seed),
        }
    }

    fn schedule(&mut self, delay_us: u64, event: Event) {
        self.sequence += 1;
        self.queue.push(Reverse(Scheduled {
            at_us: self.now_us + delay_us,
            sequence: self.sequence,
            event,
        }));
    }

    /// Runs the safety phase, then heals and requires progress, then checks what clients
    /// saw. Returns what happened.
    pub fn run(mut self) -> Result<SimSummary, Violation> {
        let heal_at = self.options.safety_ticks * TICK_US;
        self.run_until(heal_at)?;
        self.heal_everything();
        let acknowledged_at_heal = self.clients.acknowledged_writes();
        let deadline = heal_at + self.options.liveness_ticks * TICK_US;
        while self.now_us < deadline {
            self.run_until(self.now_us + TICK_US)?;
            if self.clients.acknowledged_writes() > acknowledged_at_heal
                && groups().all(|group| self.leader(group).is_some())
                && self.caught_up_nodes().is_some()
            {
                return self.final_checks();
            }
        }
        Err(Violation(format!(
            "no progress within {} ticks after healing (leaders: {:?})",
            self.options.liveness_ticks,
            groups().map(|group| self.leader(group)).collect::<Vec<_>>()
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
            self.observations.borrow_mut().now_us = at_us;
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

    fn node(&self, id: NodeId) -> &SimNode {
        &self.nodes[id.0 as usize - 1]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut SimNode {
        &mut self.nodes[id.0 as usize - 1]
    }

    fn is_up(&self, id: NodeId) -> bool {
        self.node(id).engine().is_some()
    }

    fn live(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|node| node.engine().is_some())
            .map(|node| node.id)
            .collect()
    }

    /// The live nodes that believe they lead `group`.
    fn claimants(&self, group: GroupId) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter_map(|node| node.engine()?.core(group))
            .filter(|core| core.role() == Role::Leader)
            .map(|core| core.id())
            .collect()
    }

    /// The node that leads `group` in the highest term, as the nodes believe.
    fn leader(&self, group: GroupId) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|node| node.engine()?.core(group))
            .filter(|core| core.role() == Role::Leader)
            .max_by_key(|core| core.term())
            .map(|core| core.id())
    }

    fn handle(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Tick { node, epoch } => {
                if self.node(node).epoch == epoch && self.is_up(node) {
                    self.turn(node, |engine| engine.tick())?;
                    self.schedule(TICK_US, Event::Tick { node, epoch });
                }
            }
            Event::Deliver {
                from,
                to,
                epochs,
                group,
                message,
            } => {
                if self.epochs(from, to) == epochs && self.is_up(to) {
                    self.trace(|| format!("{to} <- {from} {group} {message:?}"));
                    self.promises.delivered(to, group, &message);
                    self.turn(to, |engine| engine.receive(from, group, message))?;
                }
            }
            Event::Transfer { from, epochs, send } => self.transfer(from, epochs, send)?,
            Event::TransferFailed { from, to, epoch } => {
                if self.node(from).epoch == epoch && self.is_up(from) {
                    self.trace(|| format!("{from}: snapshot transfer to {to} failed"));
                    self.turn(from, |engine| engine.unreachable(to))?;
                }
            }
            Event::SyncDone { node, epoch } => {
                if self.node(node).epoch == epoch && self.is_up(node) {
                    let done = self
                        .node_mut(node)
                        .flush
                        .take()
                        .and_then(|mut pending| pending.try_take())
                        .expect("a SyncDone completes the flush in flight, whose I/O is done");
                    self.turn(node, |engine| engine.flush_done(done))?;
                }
            }
            Event::SnapshotStored {
                node,
                epoch,
                pending,
            } => {
                // A crash before this event lost the unfinished snapshot.
                if self.node(node).epoch == epoch && self.is_up(node) {
                    let (group, index, term) = (pending.group, pending.index, pending.term);
                    let result = pending.store();
                    self.trace(|| format!("{node} stored its snapshot of {group} at {index}"));
                    self.summary.snapshots_taken += 1;
                    self.turn(node, |engine| {
                        engine.snapshot_stored(group, index, term, result)
                    })?;
                }
            }
            Event::ClientAttempt(client) => self.client_attempt(client)?,
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

    fn epochs(&self, from: NodeId, to: NodeId) -> (u64, u64) {
        (self.node(from).epoch, self.node(to).epoch)
    }

    /// One turn of `id`'s engine around `work`, then the turn's output carried out (see the
    /// module docs). An engine error is fatal for the node: it crashes.
    fn turn(
        &mut self,
        id: NodeId,
        work: impl FnOnce(&mut Engine) -> Result<(), EngineError>,
    ) -> Result<(), Violation> {
        let now_us = self.now_us;
        let engine = self
            .node_mut(id)
            .engine_mut()
            .expect("a turn of a live node");
        engine.begin_turn(now_us, now_us / 1000);
        let result = work(engine).and_then(|()| engine.end_turn());
        self.take_violation()?;
        match result {
            Ok(()) => self.after_turn(id)?,
            Err(error) => self.engine_failed(id, error)?,
        }
        let elections = self.observations.borrow().checker.leaders_elected();
        if elections != self.elections_probed {
            self.elections_probed = elections;
            self.probe_deposed_leaders()?;
        }
        Ok(())
    }

    /// Sends a lease read to every node that still leads a group in some term although a
    /// leader of a later term was elected: none may serve it. A lease rests on a majority
    /// that promised not to vote for a while, so a newer leader means the lease was not
    /// one (or a transfer vote slipped past it); the probe catches that at once, without
    /// waiting for a client's read to land in the window. Runs after each election and each
    /// tick.
    fn probe_deposed_leaders(&mut self) -> Result<(), Violation> {
        for group in groups() {
            for node in self.claimants(group) {
                let core = self
                    .node(node)
                    .engine()
                    .and_then(|engine| engine.core(group));
                let Some(term) = core.map(|core| core.term()) else {
                    continue;
                };
                let newer = self.observations.borrow().checker.leader_above(group, term);
                let Some(newer) = newer else { continue };
                self.summary.probes += 1;
                let entry = self.clients.probe_entry();
                let reply = Reply::Probe { group, term, newer };
                self.turn(node, |engine| {
                    engine.read(group, entry, ReadConsistency::Lease, reply);
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    /// `id`'s engine stopped with `error`: a crash if it is the sync failure the simulation
    /// injected (fatal for the node, as the runtime treats it), a violation otherwise.
    fn engine_failed(&mut self, id: NodeId, error: EngineError) -> Result<(), Violation> {
        if !self.node(id).sync_failing {
            return Err(Violation(format!("{id}'s engine failed: {error}")));
        }
        self.trace(|| format!("{id} stops: {error}"));
        self.summary.failed_syncs += 1;
        self.crash(id)
    }

    fn take_violation(&self) -> Result<(), Violation> {
        match self.observations.borrow_mut().violation.take() {
            Some(violation) => Err(violation),
            None => Ok(()),
        }
    }

    fn after_turn(&mut self, id: NodeId) -> Result<(), Violation> {
        let (sync_min, sync_max) = (self.plan.sync_min_us, self.plan.sync_max_us);
        let fail_sync = self.rng.random_bool(self.plan.sync_failure);
        let epoch = self.node(id).epoch;
        let engine = self.node_mut(id).engine_mut().expect("live");
        let pending_snapshots = engine.take_pending_snapshots();
        engine.take_membership_changes();
        engine.take_role_changes();
        let mut flush = None;
        if engine.wants_flush() {
            if fail_sync {
                engine.log_mut().fail_next_flush(EIO);
            }
            match engine.start_flush() {
                Ok(started) => flush = started,
                Err(error) => return self.engine_failed(id, error),
            }
        }
        let outbox = engine.take_outbox();
        let snapshot_sends = engine.take_snapshot_sends();
        let completions: Vec<_> = engine.drain_completions().collect();
        for pending in pending_snapshots {
            let delay = self.rng.random_range(sync_min..=sync_max);
            self.schedule(
                delay,
                Event::SnapshotStored {
                    node: id,
                    epoch,
                    pending,
                },
            );
        }
        if let Some(flush) = flush {
            let node = self.node_mut(id);
            node.flush = Some(flush);
            node.sync_failing = fail_sync;
            let delay = self.rng.random_range(sync_min..=sync_max);
            self.schedule(delay, Event::SyncDone { node: id, epoch });
        }
        for (to, messages) in outbox {
            for (group, message) in messages {
                self.send(id, to, group, message)?;
            }
        }
        for send in snapshot_sends {
            self.send_snapshot(id, send);
        }
        for (reply, result) in completions {
            self.answer(id, reply, result)?;
        }
        Ok(())
    }

    /// Whether the network drops a message from `from` to `to` now.
    fn lost(&mut self, from: NodeId, to: NodeId) -> bool {
        let lost = self.cut.contains(&(from, to)) || self.rng.random_bool(self.plan.loss);
        self.summary.messages_lost += u64::from(lost);
        lost
    }

    fn send(
        &mut self,
        from: NodeId,
        to: NodeId,
        group: GroupId,
        message: Message,
    ) -> Result<(), Violation> {
        self.promises.sent(from, to, group, &message, self.now_us)?;
        if self.lost(from, to) {
            return Ok(());
        }
        let copies = if self.rng.random_bool(self.plan.duplication) {
            self.summary.messages_duplicated += 1;
            2
        } else {
            1
        };
        let epochs = self.epochs(from, to);
        for _ in 0..copies {
            let mut delay = self.rng.random_range(1..=self.plan.delay_max_us);
            if self.rng.random_bool(self.plan.stall) {
                self.summary.messages_stalled += 1;
                delay += self.rng.random_range(STALL_TICKS) * TICK_US;
            }
            let message = if self.rng.random_bool(self.plan.garble) {
                self.summary.messages_garbled += 1;
                garble(&message, &mut self.rng)
            } else {
                message.clone()
            };
            self.schedule(
                delay,
                Event::Deliver {
                    from,
                    to,
                    epochs,
                    group,
                    message,
                },
            );
        }
        Ok(())
    }

    /// Starts streaming a snapshot: it arrives after a network delay, or the sender hears it
    /// failed.
    fn send_snapshot(&mut self, from: NodeId, send: SnapshotSend) {
        let to = send.to;
        let delay = self.rng.random_range(1..=self.plan.delay_max_us);
        if self.lost(from, to) {
            let epoch = self.node(from).epoch;
            self.schedule(delay, Event::TransferFailed { from, to, epoch });
            return;
        }
        let epochs = self.epochs(from, to);
        self.schedule(delay, Event::Transfer { from, epochs, send });
    }

    /// A snapshot transfer arrives: the receiver stores the sender's snapshot durably, then
    /// its engine receives the `InstallSnapshot`.
    fn transfer(
        &mut self,
        from: NodeId,
        epochs: (u64, u64),
        send: SnapshotSend,
    ) -> Result<(), Violation> {
        let to = send.to;
        if self.node(from).epoch != epochs.0 {
            return Ok(()); // the sender's life that asked for it is over
        }
        let stored = self
            .node(from)
            .snapshots
            .get(send.group, send.snapshot.index);
        let (Some(stored), true) = (stored, self.node(to).epoch == epochs.1 && self.is_up(to))
        else {
            let delay = self.rng.random_range(1..=self.plan.delay_max_us);
            let epoch = epochs.0;
            self.schedule(delay, Event::TransferFailed { from, to, epoch });
            return Ok(());
        };
        self.trace(|| {
            format!(
                "{to} <- {from} {} snapshot at {}",
                send.group, send.snapshot.index
            )
        });
        self.node(to).snapshots.install(stored);
        let message = Message::InstallSnapshot {
            term: send.term,
            snapshot: send.snapshot,
        };
        self.turn(to, |engine| engine.receive(from, send.group, message))
    }

    fn answer(
        &mut self,
        node: NodeId,
        reply: Reply,
        result: Result<Committed, ProposalError>,
    ) -> Result<(), Violation> {
        let (client, attempt) = match reply {
            Reply::Client(client, attempt) => (client, attempt),
            Reply::Operator => {
                self.trace(|| format!("operator: membership change answered {result:?}"));
                return Ok(());
            }
            Reply::Probe { group, term, newer } => {
                self.trace(|| format!("probe of {node} in {group}: {result:?}"));
                return match result {
                    Ok(_) => Err(Violation(format!(
                        "{node} served a lease read of {group} as leader of {term}, but {} had \
                         been elected leader of {} before the read reached it",
                        newer.1, newer.0
                    ))),
                    Err(_) => Ok(()),
                };
            }
        };
        self.trace(|| format!("client {client} attempt {attempt} on {node}: {result:?}"));
        let next = {
            let observations = self.observations.borrow();
            let checker: &Checker = &observations.checker;
            self.clients
                .answered((client, attempt), node, result, self.now_us, checker)?
        };
        self.follow(next);
        Ok(())
    }

    fn follow(&mut self, next: Next) {
        if let Next::RetryAfter(client, delay) = next {
            self.schedule(delay, Event::ClientAttempt(client));
        }
    }

    fn client_attempt(&mut self, client: usize) -> Result<(), Violation> {
        if !self.clients.waiting(client) {
            return Ok(());
        }
        let live = self.live();
        let claimants: Vec<Vec<NodeId>> = groups().map(|group| self.claimants(group)).collect();
        let attempt = {
            let observations = self.observations.borrow();
            self.clients.attempt(
                client,
                &live,
                &claimants,
                &observations.checker,
                &mut self.rng,
            )
        };
        let Some(AttemptOn {
            node,
            group,
            entry,
            ask,
            reply,
        }) = attempt
        else {
            let next = self.clients.retry_or_give_up(client, self.now_us)?;
            self.follow(next);
            return Ok(());
        };
        self.trace(|| format!("client {client} attempt {} on {node}: {ask:?}", reply.1));
        if matches!(ask, Ask::Read(_)) {
            let core = self
                .node(node)
                .engine()
                .and_then(|engine| engine.core(group));
            if let Some(core) = core.filter(|core| core.role() == Role::Leader) {
                let newer = self
                    .observations
                    .borrow()
                    .checker
                    .leader_above(group, core.term());
                if let Some(newer) = newer {
                    self.clients.reached(client, node, core.term(), newer);
                }
            }
        }
        let reply = Reply::Client(reply.0, reply.1);
        self.turn(node, |engine| {
            match ask {
                Ask::Read(consistency) => engine.read(group, entry, consistency, reply),
                Ask::Write => engine.propose(group, entry, reply),
                Ask::Register => engine.register_session(group, reply),
                Ask::WriteInSession(request) => {
                    engine.propose_in_session(group, request, entry, reply)
                }
            }
            Ok(())
        })
    }

    // ---- faults, the operator and the clients ------------------------------------------------

    fn inject_faults(&mut self) -> Result<(), Violation> {
        self.probe_deposed_leaders()?;
        if self.cut.is_empty() && self.rng.random_bool(self.plan.partition_per_tick) {
            self.partition();
        }
        if self.rng.random_bool(self.plan.crash_per_tick) {
            self.crash_some_node()?;
        }
        if self.rng.random_bool(self.plan.restart_per_tick) {
            let crashed = self.nodes.iter().filter(|n| n.engine().is_none());
            if let Some(id) = crashed.map(|n| n.id).choose(&mut self.rng) {
                self.start(id)?;
            }
        }
        if self.rng.random_bool(self.plan.transfer_per_tick) {
            let group = GroupId(self.rng.random_range(0..u64::from(GROUPS)));
            if let Some(leader) = self.leader(group) {
                let to = NodeId(self.rng.random_range(1..=self.options.nodes as u64));
                self.turn(leader, |engine| engine.transfer_leadership(group, to))?;
            }
        }
        if self.options.snapshots && self.rng.random_bool(SNAPSHOT_PER_TICK) {
            let group = GroupId(self.rng.random_range(0..u64::from(GROUPS)));
            if let Some(id) = self.live().into_iter().choose(&mut self.rng) {
                self.turn(id, |engine| engine.snapshot(group).map(drop))?;
            }
        }
        if self.options.membership && self.rng.random_bool(MEMBERSHIP_CHANGE_PER_TICK) {
            self.change_membership()?;
        }
        for client in self.clients.idle() {
            if self.rng.random_bool(self.plan.propose_per_tick) {
                self.clients.start(client, &mut self.rng, self.now_us);
                self.trace(|| format!("client {client} starts {}", self.clients.describe(client)));
                self.client_attempt(client)?;
            }
        }
        Ok(())
    }

    /// The operator asks a group's leader for a random membership change.
    fn change_membership(&mut self) -> Result<(), Violation> {
        let group = GroupId(self.rng.random_range(0..u64::from(GROUPS)));
        let Some(leader) = self.leader(group) else {
            return Ok(());
        };
        let engine = self.node(leader).engine().expect("live");
        let membership = engine.core(group).expect("held").membership().clone();
        let target = NodeId(self.rng.random_range(1..=self.options.nodes as u64));
        let change = if membership.learners.contains(&target) && self.rng.random_bool(0.7) {
            MembershipChange::Promote(target)
        } else if membership.is_member(target) {
            MembershipChange::Remove(target)
        } else {
            MembershipChange::AddLearner(target)
        };
        self.trace(|| {
            format!("operator asks {leader} to {change:?} in {group} (now {membership})")
        });
        self.summary.membership_changes += 1;
        self.turn(leader, |engine| {
            engine.change_membership(group, change, Bytes::new(), Reply::Operator)
        })
    }

    fn partition(&mut self) {
        self.summary.partitions += 1;
        let ids: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
        let kind = self.rng.random_range(0..3);
        let group = GroupId(self.rng.random_range(0..u64::from(GROUPS)));
        let isolated: Vec<NodeId> = match (kind, self.leader(group)) {
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
        self.trace(|| format!("partition {isolated:?} (one way: {one_way})"));
        let duration = self.rng.random_range(5..100) * TICK_US;
        self.schedule(duration, Event::Heal);
    }

    fn crash_some_node(&mut self) -> Result<(), Violation> {
        let group = GroupId(self.rng.random_range(0..u64::from(GROUPS)));
        let target = match self.leader(group) {
            Some(leader) if self.rng.random_bool(0.3) => Some(leader),
            _ => self.live().into_iter().choose(&mut self.rng),
        };
        match target {
            Some(id) => self.crash(id),
            None => Ok(()),
        }
    }

    /// Power loss at `id`: its engine is gone, its disk keeps what the fault model allows.
    fn crash(&mut self, id: NodeId) -> Result<(), Violation> {
        self.summary.crashes += 1;
        let node = self.node_mut(id);
        let Life::Up(engine) =
            std::mem::replace(&mut node.life, Life::Down(Box::new(MemLog::new())))
        else {
            unreachable!("crashing a live node");
        };
        for group in groups() {
            let applied = engine.core(group).expect("held").applied_index();
            node.applied_at_crash[group.0 as usize] = applied;
        }
        let mut log = Box::new(engine.into_log());
        let unsynced = log.unsynced_ops();
        let survivors = self.rng.random_range(0..=unsynced);
        let staged = log.has_staged();
        log.crash_with(survivors);
        let node = self.node_mut(id);
        node.flush = None;
        node.sync_failing = false;
        node.epoch += 1;
        for group in groups() {
            let commit = log.hard_state(group).commit;
            let before = &mut node.durable_commit[group.0 as usize];
            if commit < *before {
                return Err(Violation(format!(
                    "{id}'s durable commit hint of {group} went back from {before} to {commit}"
                )));
            }
            *before = commit;
        }
        node.life = Life::Down(log);
        self.trace(|| {
            format!(
                "{id} crashes ({survivors} of {unsynced} unsynced writes survive{})",
                if staged { ", staged writes lost" } else { "" }
            )
        });
        let next = self.clients.crashed(id, self.now_us)?;
        next.into_iter().for_each(|next| self.follow(next));
        Ok(())
    }

    /// Starts (or restarts) `id` on what its disk and snapshot store hold.
    fn start(&mut self, id: NodeId) -> Result<(), Violation> {
        let epoch = self.node(id).epoch;
        let configs: Vec<Config> = groups()
            .map(|group| self.core_config(id, group, epoch))
            .collect();
        let engine_config = self.engine_config();
        let trust_unsynced = self.options.broken_rule == Some(BrokenRule::RecoveryTrustsUnsynced);
        let node = self.node_mut(id);
        let Life::Down(mut log) =
            std::mem::replace(&mut node.life, Life::Down(Box::new(MemLog::new())))
        else {
            unreachable!("starting a node that is up");
        };
        // The restart reads back what survived the crash, page cache included, and must sync
        // it before trusting it (unless that rule is broken on purpose).
        log.set_trust_unsynced_recovery(trust_unsynced);
        log.reopen();
        let snapshots = node.snapshots.clone();
        let applied_at_crash = node.applied_at_crash.clone();
        let mut engine = ShardEngine::new(
            id,
            groups(),
            *log,
            SimMachine::new(snapshot_in_jobs(self.seed)),
            Some(snapshots),
            engine_config,
            |group| configs[group.0 as usize].clone(),
        )
        .map_err(|error| Violation(format!("{id} could not recover: {error}")))?;
        let mut observations = self.observations.borrow_mut();
        for group in groups() {
            let core = engine.core(group).expect("held");
            let before = applied_at_crash[group.0 as usize];
            if core.last_index() < before {
                return Err(Violation(format!(
                    "{id} had applied {group} up to {before} but recovered a log ending at {}",
                    core.last_index()
                )));
            }
            observations.checker.restarted(id, group, core);
            let snapshot = core.snapshot().index;
            if snapshot > LogIndex::ZERO {
                let applied = engine.state_machine().applied(group);
                observations
                    .checker
                    .restored(id, group, snapshot, applied)?;
            }
        }
        drop(observations);
        engine.set_observer(Box::new(NodeObserver {
            node: id,
            shared: self.observations.clone(),
        }));
        self.node_mut(id).life = Life::Up(Box::new(engine));
        self.trace(|| format!("{id} starts"));
        // Recovery may have staged the replacement of a log that does not continue the
        // snapshot: an empty turn flushes it.
        self.turn(id, |_| Ok(()))?;
        let phase = self.rng.random_range(1..TICK_US);
        self.schedule(phase, Event::Tick { node: id, epoch });
        Ok(())
    }

    // ---- the end ---------------------------------------------------------------------------

    fn heal_everything(&mut self) {
        self.trace(|| "liveness phase: heal network, restart crashed nodes".into());
        self.plan = self.plan.healed();
        self.cut.clear();
    }

    /// Per group, a live node that applied everything known to be committed, if every group
    /// has one.
    fn caught_up_nodes(&self) -> Option<Vec<NodeId>> {
        let observations = self.observations.borrow();
        groups()
            .map(|group| {
                let committed = observations.checker.highest_committed(group);
                self.nodes
                    .iter()
                    .filter_map(|node| node.engine())
                    .find(|engine| engine.core(group).expect("held").applied_index() >= committed)
                    .map(|engine| engine.node())
            })
            .collect()
    }

    fn final_checks(mut self) -> Result<SimSummary, Violation> {
        for group in groups() {
            let logs: Vec<(NodeId, Vec<EntryBatch>)> = self
                .nodes
                .iter()
                .filter_map(|node| {
                    let engine = node.engine()?;
                    let core = engine.core(group).expect("held");
                    Some((
                        node.id,
                        core.entries(core.log_base().next(), core.last_index()),
                    ))
                })
                .collect();
            for (a, (id_a, log_a)) in logs.iter().enumerate() {
                for (id_b, log_b) in &logs[a + 1..] {
                    Checker::logs_match(group, (*id_a, log_a), (*id_b, log_b))?;
                }
            }
        }
        self.clients.abandon(self.now_us)?;
        let caught_up = self
            .caught_up_nodes()
            .expect("checked by the liveness phase");
        let counter_reads = self.clients.counter_reads(self.now_us);
        let answers: Vec<Bytes> = counter_reads
            .iter()
            .map(|(_, group, query)| {
                let node = caught_up[group.0 as usize];
                let engine = self.node(node).engine().expect("live");
                crate::api::StateMachine::query(engine.state_machine(), *group, query)
            })
            .collect();
        self.clients
            .check(|counter| answers[counter as usize].clone())?;
        let observations = self.observations.borrow();
        self.summary.leaders_elected = observations.checker.leaders_elected();
        self.summary.snapshots_installed = observations.checker.snapshots_restored();
        self.summary.committed_entries = observations.checker.committed_count();
        self.summary.acknowledged_writes = self.clients.acknowledged_writes();
        self.summary.reads_served = self.clients.reads_served();
        (
            self.summary.session_duplicates,
            self.summary.sessions_unknown,
        ) = observations.checker.session_counts();
        Ok(self.summary.clone())
    }
}

/// How long a majority-acknowledged read round lets a leader serve lease reads: a follower's
/// first tick may come at once after it heard from the leader, so it is quiet for one tick less
/// than the election timeout. Simulated clocks do not drift.
/// Whether the clients of seed `seed` write in client sessions: in even seeds most do, in odd
/// seeds none. Both workloads are needed: with sessions in every seed, the broken lease rules
/// were caught far later in a sweep (first at seeds 14,737 and 4,178, against 379 and 105 with
/// no sessions at all); why the session workload hides them so well is not established.
fn clients_use_sessions(seed: u64) -> bool {
    seed % 2 == 0
}

/// The client session limits of seed `seed`: every fourth seed (one of those with sessions)
/// keeps so few sessions, for so short a time, with so little room for answers, that clients
/// lose theirs to expiry and eviction; the others keep the defaults.
fn session_limits(seed: u64) -> SessionLimits {
    if seed % 4 != 0 {
        return SessionLimits::default();
    }
    SessionLimits {
        sessions_max: 4,
        idle_expiry: Duration::from_millis(300),
        saved_bytes_max: 6 * (SAVED_OUTPUT_OVERHEAD_BYTES + 8),
    }
}

/// The snapshot log ratio of seed `seed` ([`crate::engine::snapshot_due`]): by entry count
/// alone, a ratio of 1, or the production default, a third of the seeds each (independent of
/// [`session_limits`]'s choice).
fn snapshot_log_ratio(seed: u64) -> u64 {
    [0, 1, LOG_RATIO_DEFAULT][(seed / 4 % 3) as usize]
}

/// Whether seed `seed`'s state machines write their snapshots by snapshot jobs (half the seeds,
/// independent of [`snapshot_log_ratio`]'s and [`session_limits`]'s choices).
fn snapshot_in_jobs(seed: u64) -> bool {
    seed / 12 % 2 == 1
}

fn lease_us(options: &SimOptions) -> u64 {
    let quiet_ticks = u64::from(Config::new(NodeId(1), vec![NodeId(1)]).election_timeout_ticks) - 1;
    let factor = match options.broken_rule {
        Some(BrokenRule::LeaseBeyondElectionTimeout) => 4,
        _ => 1,
    };
    quiet_ticks * TICK_US * factor
}

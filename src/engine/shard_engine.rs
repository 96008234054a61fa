//! The IO-free heart of a shard: the Raft cores of the shard's groups, their log, their state
//! machine, and the bookkeeping between them. The glommio runtime feeds it events and carries
//! out what it leaves in its queues; tests drive it directly over a `MemLog`.
//!
//! Invariants:
//! - storage actions go to the shard's one log in the order the cores emit them, so they become
//!   durable in that order (the core's storage contract);
//! - a send marked `after_persist` is released only after a flush that started after it was
//!   emitted has completed: flushes take everything staged when they start and complete in
//!   order, so that flush covers every storage action emitted before the send;
//! - proposals that arrive during one turn of the event loop are encoded into one batch per
//!   group ([`ShardEngine::end_turn`]), so one turn costs one Raft entry batch per group, not
//!   one per proposal; proposals of client sessions go into batches of their own kind
//!   ([`BatchKind::Session`]), and a turn that mixes both kinds cuts a batch at each change of
//!   kind, so proposals keep their order;
//! - client sessions ([`crate::engine::sessions`]): a session batch is applied through its
//!   group's session table, which lets the state machine see each request at most once (the
//!   others are answered from the table or refused); the table is written at the front of every
//!   snapshot body and restored with the state machine;
//! - every proposal gets exactly one completion: committed (with the state machine's output),
//!   refused, or timed out (outcome unknown: it may still commit);
//! - reads follow [`crate::engine::reads`]: linearizable and lease reads of one turn cost one
//!   ReadIndex request per group; every read is answered exactly once;
//! - lease rounds are observed at the end of every turn with the time the turn began, before
//!   the turn's messages leave, so a recorded round start is never later than its sends;
//! - snapshots: a group's state machine is snapshotted (streamed into the snapshot store
//!   between two applies, or by its [`SnapshotJob`] off the event loop from a copy made between
//!   two applies; durable before the core hears of it) when [`EngineConfig::snapshots`] says it
//!   is due ([`crate::engine::snapshot_due`]: entries and bytes applied past its last
//!   snapshot); the core then compacts the log behind it. A snapshot the core asks to send
//!   leaves through [`ShardEngine::take_snapshot_sends`] (the runtime streams the file), never
//!   through the outbox; a received snapshot reaches the core only after the runtime stored it
//!   durably ([`ShardEngine::receive`] of its `InstallSnapshot`). Snapshots go through a
//!   [`SnapshotStorage`]: the files in production, their in-memory twin in the simulator;
//! - an [`ActionObserver`], when one is set, sees every action after it was executed, with the
//!   group's core and the state machine as they are then; without one the only cost is one
//!   branch per action (the simulator's checkers are observers: it runs this engine, not a copy);
//! - memory: a leader refuses a proposal ([`ProposalError::Overloaded`], before placing it)
//!   while its group's log holds [`EngineConfig::uncommitted_bytes_max`] bytes the state
//!   machine has not applied (counting the turn's gathered proposals), unless it holds none (so
//!   a single large proposal always gets its chance). Without a working majority nothing
//!   applies, so the leader's memory stops growing at the cap instead of at the clients' rate
//!   (etcd's `MaxUncommittedEntriesSize`). The count ([`crate::engine::unapplied`]) follows the
//!   log actions, so it falls as entries apply, are truncated, or are replaced by a snapshot.
//!   A gathered proposal is judged by its payload plus [`BATCH_ENTRY_OVERHEAD_BYTES`], so the
//!   count may pass the cap by the few bytes of fixed archive overhead of one turn's batches.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::time::Duration;

use bytes::Bytes;

use crate::batch::{BatchKind, EntryBatch, SessionEntry, SESSION_HEADER_BYTES};
use crate::constants::{BATCH_BYTES_MAX, CLIENT_PAYLOAD_BYTES_MAX};
use crate::core::{
    Action, BrokenRule, Config, Input, Membership, MembershipChange, Message, ProposeError, Raft,
    ReadLease, Role, SnapshotMeta,
};
use crate::engine::counters::EngineCounters;
use crate::engine::reads::{Read, ReadQueue};
use crate::engine::recover::recover;
use crate::engine::sessions::{Decision, SessionLimits, SessionOutcome, SessionTable};
use crate::engine::snapshot_due::{CountingWriter, SnapshotDue, SnapshotPolicy};
use crate::engine::stages::{StageHistograms, StageTimer};
use crate::engine::state_machine::{CommittedEntries, SnapshotJob, StateMachine};
use crate::engine::unapplied::UnappliedBytes;
use crate::engine::waiters::Waiters;
use crate::log::{self, LogStore, SyncReport};
use crate::net::client_wire::{GroupSummary, ShardStats};
use crate::snapshot::{self, SnapshotError, SnapshotRead, SnapshotStorage, SnapshotStore};
use crate::types::{
    GroupId, LogIndex, NodeId, ReadConsistency, SessionRefusal, SessionRequest, Term,
};

/// Archive bytes an entry costs in a batch body besides its payload (a relative pointer and
/// length, plus alignment), with headroom.
const BATCH_ENTRY_OVERHEAD_BYTES: usize = 16;

/// Default of [`EngineConfig::uncommitted_bytes_max`]: 64 MiB per group, as etcd's
/// `MaxUncommittedEntriesSize` is commonly set; far above what a healthy group holds between
/// commits, low enough that a shard of many groups stays within ordinary memory.
pub const UNCOMMITTED_BYTES_MAX_DEFAULT: usize = 64 << 20;

/// The result of one proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Where the entry was applied (for a read: the index the answer reflects).
    pub index: LogIndex,
    /// The state machine's answer.
    pub output: Bytes,
}

/// Why a proposal did not commit (as far as this node knows).
///
/// Certain errors ([`ProposalError::certainly_not_applied`]) say the entry was not applied
/// and never will be; the others ([`ProposalError::Timeout`], [`ProposalError::OutcomeUnknown`],
/// [`ProposalError::ShuttingDown`]) leave the outcome unknown: the entry may still commit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposalError {
    /// Certain: this node does not lead the group; `leader` is the leader it knows of.
    #[error("not the leader of this group (leader: {leader:?})")]
    NotLeader {
        /// The leader, if this node knows it.
        leader: Option<NodeId>,
    },
    /// Certain: this node is handing the group's leadership over; ask the new leader.
    #[error("leadership of this group is being transferred")]
    Transferring,
    /// Certain: no such group on this node.
    #[error("group {0} is not served by this node")]
    UnknownGroup(GroupId),
    /// Certain: the payload is larger than one entry may be.
    #[error("payload of {bytes} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The payload's size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Unknown outcome: not committed within the proposal timeout; it may still commit.
    #[error("no commit within the proposal timeout; the entry may still commit")]
    Timeout,
    /// Certain: an entry of another term was applied at the proposal's index, `index`.
    #[error("not applied: another leader's entry was applied at its index {index}")]
    Superseded {
        /// The index the proposal had.
        index: LogIndex,
    },
    /// The entry left this node's log (another leader's entries replaced it here) or a
    /// snapshot covered it before it was applied here: it may have committed elsewhere.
    #[error("outcome unknown: the entry left this node's log before it was applied; it may still commit")]
    OutcomeUnknown,
    /// Unknown outcome: the node stopped before it knew the outcome.
    #[error("the shard is shutting down")]
    ShuttingDown,
    /// Certain: the previous membership change is not complete yet.
    #[error("a configuration change is still in progress")]
    ChangeInProgress,
    /// Certain: the change does not apply to the current members (adding a member twice,
    /// promoting a voter, transferring to a non-voter).
    #[error("the configuration change does not apply to the current members")]
    ChangeNotAllowed,
    /// Certain: the learner to promote has not caught up with the log yet (it does not receive
    /// the log in pipeline, or lacks more of the committed log than the trailing entries kept
    /// behind a snapshot); retry once it has.
    #[error("the learner has not caught up with the log yet")]
    LearnerBehind,
    /// Certain: refused before being placed, because the group's log holds `bytes` unapplied
    /// bytes (waiting for a majority) and the limit is `max`. Retry after a pause.
    #[error(
        "overloaded: the group holds {bytes} bytes not yet applied (limit {max}); retry later"
    )]
    Overloaded {
        /// Bytes the group holds unapplied.
        bytes: usize,
        /// The limit ([`crate::config::NodeConfig::uncommitted_bytes_max`]).
        max: usize,
    },
    /// Certain for this attempt: its entry was committed, but its client session did not let
    /// the state machine apply it (see [`SessionRefusal`] for what that says of earlier
    /// attempts of the same request).
    #[error(transparent)]
    Session(#[from] SessionRefusal),
}

/// A snapshot to finish off the event loop: written by the state machine already, or still
/// to be written by its [`SnapshotJob`]; then made durable.
pub struct PendingSnapshot<P: SnapshotStorage = SnapshotStore> {
    pub group: GroupId,
    pub index: LogIndex,
    pub term: Term,
    writer: P::Writer,
    /// Bytes written into `writer` so far.
    written: u64,
    job: Option<SnapshotJob>,
    store: P,
}

impl<P: SnapshotStorage> PendingSnapshot<P> {
    /// Runs the state machine's job, if any, then makes the snapshot durable (for files:
    /// syncs the file, renames it into place, syncs the directory) and removes the group's
    /// snapshots beyond the newest two. Returns the snapshot body's size in bytes. Blocking: a
    /// directory sync can wait for the whole filesystem journal.
    pub fn store(mut self) -> Result<u64, SnapshotError> {
        let mut written = self.written;
        if let Some(job) = self.job.take() {
            let mut counted = CountingWriter::new(&mut self.writer);
            job(&mut counted).map_err(SnapshotError::Job)?;
            written += counted.bytes();
        }
        self.store.store(self.writer, SNAPSHOTS_KEPT)?;
        Ok(written)
    }
}

impl<P: SnapshotStorage> std::fmt::Debug for PendingSnapshot<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSnapshot")
            .field("group", &self.group)
            .field("index", &self.index)
            .field("term", &self.term)
            .finish_non_exhaustive()
    }
}

/// Sees every action a [`ShardEngine`] executes (see the module documentation); the
/// simulator's checkers implement it.
pub trait ActionObserver<S> {
    /// `action` of `group`'s core was just executed; `core` and `state_machine` are as it left
    /// them. For the apply of a session batch, `sessions` holds what each entry of it did (in
    /// order); it is empty otherwise.
    fn executed(
        &mut self,
        group: GroupId,
        action: &Action,
        core: &Raft,
        state_machine: &S,
        sessions: &[SessionOutcome],
    );
}

/// A failure that stops the shard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] log::Error),
    /// The snapshot store failed.
    #[error("snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    /// A leader sent a snapshot to a shard that was started without a snapshot store.
    #[error("a snapshot arrived but this node keeps no snapshots")]
    NoSnapshotStore,
    /// A stored snapshot's membership does not decode.
    #[error("group {group}: stored snapshot at {index} has an unreadable configuration")]
    SnapshotConfig {
        /// The group of the snapshot.
        group: GroupId,
        /// The last index the snapshot covers.
        index: LogIndex,
    },
    /// [`crate::api::StateMachine::restore`] failed.
    #[error(
        "group {group}: the state machine could not restore the snapshot at {index}: {source}"
    )]
    Restore {
        /// The group of the snapshot.
        group: GroupId,
        /// The last index the snapshot covers.
        index: LogIndex,
        /// What the state machine reported.
        #[source]
        source: io::Error,
    },
}

/// A snapshot the core wants sent: the runtime streams the stored file to `to`, then delivers
/// `message` (an `InstallSnapshot`) once the peer holds the file durably.
#[derive(Clone, Debug)]
pub struct SnapshotSend {
    pub to: NodeId,
    pub group: GroupId,
    pub term: Term,
    pub snapshot: SnapshotMeta,
}

impl ProposalError {
    /// Whether the proposal certainly was not applied and never will be: it was refused
    /// before being placed in a log, another entry was applied at its index, or its client
    /// session refused it. `false` means the outcome is unknown (a timeout, a shutdown, an
    /// entry displaced from this node's log): a write must then not be retried blindly, only
    /// within its client session, with the same sequence number.
    pub fn certainly_not_applied(&self) -> bool {
        match self {
            ProposalError::NotLeader { .. }
            | ProposalError::Transferring
            | ProposalError::UnknownGroup(_)
            | ProposalError::TooLarge { .. }
            | ProposalError::Superseded { .. }
            | ProposalError::ChangeInProgress
            | ProposalError::ChangeNotAllowed
            | ProposalError::LearnerBehind
            | ProposalError::Overloaded { .. }
            | ProposalError::Session(_) => true,
            ProposalError::Timeout
            | ProposalError::OutcomeUnknown
            | ProposalError::ShuttingDown => false,
        }
    }
}

impl From<ProposeError> for ProposalError {
    fn from(error: ProposeError) -> Self {
        match error {
            ProposeError::NotLeader { leader } => ProposalError::NotLeader { leader },
            ProposeError::Transferring => ProposalError::Transferring,
            ProposeError::ChangeInProgress => ProposalError::ChangeInProgress,
            ProposeError::ChangeNotAllowed => ProposalError::ChangeNotAllowed,
            ProposeError::LearnerBehind => ProposalError::LearnerBehind,
        }
    }
}

/// Status of one group on this node: the summary clients also receive, and for a leader each
/// follower's durable match index.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupStatus {
    /// Role, term, leader, commit and applied indexes, as clients also receive them.
    pub summary: GroupSummary,
    /// Where this node leads the group: each follower and its durable match index (empty
    /// otherwise).
    pub followers: Vec<(NodeId, LogIndex)>,
    /// The configuration in force on this node (the latest configuration entry it holds).
    pub membership: Membership,
    /// Index of the newest durable snapshot of the group on this node (0: none).
    pub snapshot_index: LogIndex,
    /// The log's compaction point on this node: entries up to it are gone from the log.
    pub log_base: LogIndex,
}

/// Proposals of one group gathered during the current turn.
struct Gathered<R> {
    payloads: Vec<Bytes>,
    replies: Vec<R>,
    /// The payloads in runs of one batch kind, in order: `(kind, count)`. Proposals without a
    /// session make one run, so they cost one batch per turn as before sessions existed; a
    /// change of kind starts a new batch, so proposals keep their order.
    runs: Vec<(BatchKind, usize)>,
    /// What the payloads will cost in their batch: payload plus per-entry overhead.
    bytes: usize,
}

impl<R> Default for Gathered<R> {
    fn default() -> Self {
        Gathered {
            payloads: Vec::new(),
            replies: Vec::new(),
            runs: Vec::new(),
            bytes: 0,
        }
    }
}

impl<R> Gathered<R> {
    fn push(&mut self, kind: BatchKind, payload: Bytes, reply: R, cost: usize) {
        match self.runs.last_mut() {
            Some((last, count)) if *last == kind => *count += 1,
            _ => self.runs.push((kind, 1)),
        }
        self.payloads.push(payload);
        self.replies.push(reply);
        self.bytes += cost;
    }

    /// Empties it, keeping the vectors' capacity.
    fn clear(&mut self) {
        self.payloads.clear();
        self.replies.clear();
        self.runs.clear();
        self.bytes = 0;
    }
}

/// Settings of the engine that are not the cores'.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Ticks after which a proposal or read that has not completed is answered `Timeout`.
    pub proposal_timeout_ticks: u64,
    /// How long a majority-acknowledged read round lets a leader serve lease reads (the
    /// election timeout shortened by the assumed clock drift); `None` turns lease reads into
    /// ReadIndex reads.
    pub read_lease: Option<Duration>,
    /// When a group snapshots its state machine ([`crate::engine::snapshot_due`]; never
    /// without a snapshot store or when the state machine does not support snapshots).
    pub snapshots: SnapshotPolicy,
    /// Most bytes of log entries a group may hold unapplied before its leader refuses new
    /// proposals with [`ProposalError::Overloaded`] (see the module documentation). Default
    /// [`UNCOMMITTED_BYTES_MAX_DEFAULT`].
    pub uncommitted_bytes_max: usize,
    /// How many client sessions each group keeps, and for how long
    /// ([`crate::engine::sessions`]).
    pub sessions: SessionLimits,
    /// An engine rule broken on purpose, for the simulator's negative controls; `None`
    /// everywhere else.
    pub broken_rule: Option<BrokenRule>,
}

/// See the module documentation. `R` identifies where a proposal's answer goes; `P` stores
/// snapshots.
pub struct ShardEngine<L: LogStore, S: StateMachine, R, P: SnapshotStorage = SnapshotStore> {
    node: NodeId,
    cores: BTreeMap<GroupId, Raft>,
    log: L,
    state_machine: S,
    config: EngineConfig,
    now_ticks: u64,
    actions: Vec<Action>,
    outputs: Vec<Bytes>,
    outbox: BTreeMap<NodeId, Vec<(GroupId, Message)>>,
    held: VecDeque<(u64, NodeId, GroupId, Message)>,
    flushes_started: u64,
    flushes_completed: u64,
    gathered: BTreeMap<GroupId, Gathered<R>>,
    /// Emptied [`Gathered`]s of earlier turns, reused so that a turn's proposals do not grow
    /// their vectors from nothing again.
    gathered_spare: Vec<Gathered<R>>,
    waiters: Waiters<R>,
    completions: Vec<(R, Result<Committed, ProposalError>)>,
    role_changes: Vec<(GroupId, Role, Term, Option<NodeId>)>,
    reads: ReadQueue<R>,
    leases: BTreeMap<GroupId, ReadLease>,
    /// When the current turn began, in microseconds of the driver's monotonic clock.
    turn_started_us: u64,
    /// The wall clock (ms since the Unix epoch) when the current turn began: the stamp of the
    /// session entries placed in it.
    turn_started_ms: u64,
    /// Per group: its client sessions ([`crate::engine::sessions`]).
    sessions: BTreeMap<GroupId, SessionTable>,
    /// The answers and outcomes of the entries of the session batch being applied.
    session_answers: Vec<Result<Committed, ProposalError>>,
    session_outcomes: Vec<SessionOutcome>,
    stats: ShardStats,
    counters: EngineCounters,
    /// `stats.entries_written` when the last flush started.
    entries_at_flush: u64,
    stages: StageTimer,
    snapshots: Option<P>,
    /// Per group: when the next snapshot is due.
    snapshot_due: BTreeMap<GroupId, SnapshotDue>,
    snapshot_sends: Vec<SnapshotSend>,
    pending_snapshots: Vec<PendingSnapshot<P>>,
    /// Groups with a snapshot being made durable (at most one each).
    snapshots_storing: BTreeSet<GroupId>,
    membership_changes: Vec<(GroupId, Membership, Bytes)>,
    unapplied: UnappliedBytes,
    observer: Option<Box<dyn ActionObserver<S>>>,
}

impl<L: LogStore, S: StateMachine, R, P: SnapshotStorage> ShardEngine<L, S, R, P> {
    /// Builds the cores of `groups` from what `log` and `snapshots` recovered (restoring the
    /// state machine from each group's newest snapshot). `core_config(group)` gives each
    /// group's core configuration.
    pub fn new(
        node: NodeId,
        groups: impl IntoIterator<Item = GroupId>,
        mut log: L,
        mut state_machine: S,
        snapshots: Option<P>,
        config: EngineConfig,
        core_config: impl Fn(GroupId) -> Config,
    ) -> Result<Self, EngineError> {
        let mut cores = BTreeMap::new();
        let mut leases = BTreeMap::new();
        let mut snapshot_due = BTreeMap::new();
        let mut sessions = BTreeMap::new();
        for group in groups {
            let (snapshot, table) = match &snapshots {
                Some(store) => load_snapshot(store, group, &mut state_machine)?,
                None => (None, SessionTable::default()),
            };
            sessions.insert(group, table);
            let recovered = recover(&mut log, group, snapshot)?;
            let core = Raft::new(core_config(group), recovered);
            snapshot_due.insert(group, config.snapshots.after(core.snapshot().index));
            cores.insert(group, core);
            if let Some(lease) = config.read_lease {
                leases.insert(group, ReadLease::new(lease.as_micros() as u64));
            }
        }
        let broken_rule = config.broken_rule;
        Ok(ShardEngine {
            node,
            cores,
            log,
            state_machine,
            config,
            now_ticks: 0,
            actions: Vec::new(),
            outputs: Vec::new(),
            outbox: BTreeMap::new(),
            held: VecDeque::new(),
            flushes_started: 0,
            flushes_completed: 0,
            gathered: BTreeMap::new(),
            gathered_spare: Vec::new(),
            waiters: Waiters::with_broken_rule(broken_rule),
            completions: Vec::new(),
            role_changes: Vec::new(),
            reads: ReadQueue::default(),
            leases,
            turn_started_us: 0,
            turn_started_ms: 0,
            sessions,
            session_answers: Vec::new(),
            session_outcomes: Vec::new(),
            stats: ShardStats::default(),
            counters: EngineCounters::default(),
            entries_at_flush: 0,
            stages: StageTimer::default(),
            snapshots,
            snapshot_due,
            snapshot_sends: Vec::new(),
            pending_snapshots: Vec::new(),
            snapshots_storing: BTreeSet::new(),
            membership_changes: Vec::new(),
            unapplied: UnappliedBytes::default(),
            observer: None,
        })
    }

    /// Shows every action executed from now on to `observer` (see the module documentation).
    pub fn set_observer(&mut self, observer: Box<dyn ActionObserver<S>>) {
        self.observer = Some(observer);
    }

    /// The core of `group`, for inspection.
    pub fn core(&self, group: GroupId) -> Option<&Raft> {
        self.cores.get(&group)
    }

    /// The state machine, for inspection.
    pub fn state_machine(&self) -> &S {
        &self.state_machine
    }

    /// Gives the log back, dropping everything else the engine holds: what survives the
    /// process (the simulator's power loss keeps the disk).
    pub fn into_log(self) -> L {
        self.log
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    pub fn log_mut(&mut self) -> &mut L {
        &mut self.log
    }

    pub fn groups(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.cores.keys().copied()
    }

    /// One tick for every group; proposals past their deadline are answered `Timeout`.
    pub fn tick(&mut self) -> Result<(), EngineError> {
        self.now_ticks += 1;
        let groups: Vec<GroupId> = self.cores.keys().copied().collect();
        for group in groups {
            self.step(group, Input::Tick)?;
        }
        self.waiters.expire(self.now_ticks, &mut self.completions);
        self.reads.expire(self.now_ticks, &mut self.completions);
        Ok(())
    }

    /// Starts a turn of the event loop at `now_us` (microseconds of the driver's monotonic
    /// clock, from any origin): the time lease reads are judged by, and stage latencies are
    /// measured with, until the next turn. A clock that goes back is held at its last value.
    /// `wall_ms` is the wall clock (ms since the Unix epoch), stamped into the session entries
    /// placed during the turn (the only use the engine makes of it).
    pub fn begin_turn(&mut self, now_us: u64, wall_ms: u64) {
        self.turn_started_us = now_us.max(self.turn_started_us);
        self.turn_started_ms = wall_ms;
    }

    /// A message for `group` from `from`. Messages for groups this shard does not hold are
    /// dropped, and so is an `InstallSnapshot` whose file the snapshot store does not hold (a
    /// stale or forged message must not make the engine restore something absent).
    pub fn receive(
        &mut self,
        from: NodeId,
        group: GroupId,
        message: Message,
    ) -> Result<(), EngineError> {
        if let Message::InstallSnapshot { snapshot, .. } = &message {
            let stored = self
                .snapshots
                .as_ref()
                .is_some_and(|store| store.holds(group, snapshot.index));
            if !stored {
                tracing::warn!(%from, %group, index = %snapshot.index, "InstallSnapshot without its file; dropped");
                return Ok(());
            }
        }
        if self.cores.contains_key(&group) {
            self.step(group, Input::Message { from, message })?;
        }
        Ok(())
    }

    /// The connection to `peer` broke: entries in flight to it may be lost.
    pub fn unreachable(&mut self, peer: NodeId) -> Result<(), EngineError> {
        let groups: Vec<GroupId> = self.cores.keys().copied().collect();
        for group in groups {
            self.step(group, Input::Unreachable { peer })?;
        }
        Ok(())
    }

    /// Refuses a request of `bytes` for `group` when it is too large or the group is not held
    /// here (answering `reply`); otherwise gives `reply` back.
    fn admit(&mut self, group: GroupId, bytes: usize, reply: R) -> Option<R> {
        let refusal = if bytes > CLIENT_PAYLOAD_BYTES_MAX {
            ProposalError::TooLarge {
                bytes,
                max: CLIENT_PAYLOAD_BYTES_MAX,
            }
        } else if !self.cores.contains_key(&group) {
            ProposalError::UnknownGroup(group)
        } else {
            return Some(reply);
        };
        self.completions.push((reply, Err(refusal)));
        None
    }

    /// Queues a proposal; it is placed in the log at the end of the turn. Payloads over
    /// [`CLIENT_PAYLOAD_BYTES_MAX`] are refused (a batch must fit in one frame), and so are
    /// proposals to a leader whose group holds too much unapplied
    /// ([`ProposalError::Overloaded`], see the module documentation).
    pub fn propose(&mut self, group: GroupId, payload: Bytes, reply: R) {
        self.counters.proposals += 1;
        let Some(reply) = self.admit(group, payload.len(), reply) else {
            return;
        };
        self.gather(group, BatchKind::Command, payload, reply);
    }

    /// Queues `request` of a client session, like [`Self::propose`]: its entry carries the
    /// session, the request's number and this turn's wall clock, and once committed the
    /// group's session table decides whether the state machine applies `payload`
    /// ([`crate::engine::sessions`]). A request applied before is answered with the output it
    /// had then; a refusal is [`ProposalError::Session`].
    pub fn propose_in_session(
        &mut self,
        group: GroupId,
        request: SessionRequest,
        payload: Bytes,
        reply: R,
    ) {
        self.counters.proposals += 1;
        let Some(reply) = self.admit(group, payload.len(), reply) else {
            return;
        };
        let stamp_ms = self.turn_started_ms;
        let entry = SessionEntry::Request { request, stamp_ms }.encode(&payload);
        self.gather(group, BatchKind::Session, entry, reply);
    }

    /// Queues the registration of a new client session of `group`; once applied it is
    /// answered with an empty output at the entry's index, which is the session's id
    /// ([`SessionId`](crate::types::SessionId)).
    pub fn register_session(&mut self, group: GroupId, reply: R) {
        self.counters.proposals += 1;
        let Some(reply) = self.admit(group, SESSION_HEADER_BYTES, reply) else {
            return;
        };
        let stamp_ms = self.turn_started_ms;
        let entry = SessionEntry::Register { stamp_ms }.encode(&[]);
        self.gather(group, BatchKind::Session, entry, reply);
    }

    /// Adds an admitted proposal's `entry` to the turn's batches of `group`, unless the group's
    /// leader holds too much unapplied (see the module documentation).
    fn gather(&mut self, group: GroupId, kind: BatchKind, entry: Bytes, reply: R) {
        let cost = entry.len() + BATCH_ENTRY_OVERHEAD_BYTES;
        let spare = &mut self.gathered_spare;
        let gathered = self
            .gathered
            .entry(group)
            .or_insert_with(|| spare.pop().unwrap_or_default());
        let held = self.unapplied.of(group) + gathered.bytes;
        let max = self.config.uncommitted_bytes_max;
        // Only a leader places proposals; anyone else lets its core refuse them (`NotLeader`
        // names the leader, which is more useful to the proposer).
        if held > 0 && held + cost > max && self.cores[&group].role() == Role::Leader {
            self.completions
                .push((reply, Err(ProposalError::Overloaded { bytes: held, max })));
            return;
        }
        gathered.push(kind, entry, reply, cost);
    }

    /// The client sessions `group` knows ([`crate::engine::sessions`]).
    pub fn sessions(&self, group: GroupId) -> Option<&SessionTable> {
        self.sessions.get(&group)
    }

    /// Bytes of `group`'s log entries not applied here yet: what
    /// [`EngineConfig::uncommitted_bytes_max`] caps.
    pub fn unapplied_bytes(&self, group: GroupId) -> usize {
        self.unapplied.of(group)
    }

    /// Queues a read of `group`'s state machine: `query` goes to [`StateMachine::query`] once
    /// `consistency` allows, and the answer (with the index it reflects) to `reply`.
    pub fn read(&mut self, group: GroupId, query: Bytes, consistency: ReadConsistency, reply: R) {
        self.counters.reads += 1;
        let Some(reply) = self.admit(group, query.len(), reply) else {
            return;
        };
        let read = Read { query, reply };
        if consistency == ReadConsistency::Stale {
            let output = self.state_machine.query(group, &read.query);
            let index = self.reads.applied(group);
            self.completions
                .push((read.reply, Ok(Committed { index, output })));
        } else {
            self.reads.gather(group, consistency, read);
        }
    }

    /// Hands leadership of `group` to `to`.
    pub fn transfer_leadership(&mut self, group: GroupId, to: NodeId) -> Result<(), EngineError> {
        if self.cores.contains_key(&group) {
            self.step(group, Input::TransferLeadership { to })?;
        }
        Ok(())
    }

    /// Asks `group`'s core (which must lead it) to change the group's members, with `context`
    /// (the members' addresses) in the configuration entry. Answered like a proposal: once the
    /// entry (for a voter change: the joint one) is committed and applied, with its index and an
    /// empty output, or refused (`NotLeader`, `ChangeInProgress`, `ChangeNotAllowed`, ...).
    pub fn change_membership(
        &mut self,
        group: GroupId,
        change: MembershipChange,
        context: Bytes,
        reply: R,
    ) -> Result<(), EngineError> {
        let Some(reply) = self.admit(group, context.len(), reply) else {
            return Ok(());
        };
        self.actions.clear();
        self.cores
            .get_mut(&group)
            .expect("admitted groups are held")
            .step(
                Input::ChangeMembership { change, context },
                &mut self.actions,
            );
        let mut replies = Some(vec![reply]);
        self.execute(group, &mut replies)?;
        for reply in replies.into_iter().flatten() {
            self.completions
                .push((reply, Err(ProposalError::ChangeNotAllowed)));
        }
        Ok(())
    }

    /// `(snapshot index, log base, configuration index)` of `group`: the newest snapshot the
    /// core knows of, the index the log starts after, and the index of the entry of the
    /// configuration in force.
    pub fn log_bounds(&self, group: GroupId) -> Option<(LogIndex, LogIndex, LogIndex)> {
        let core = self.cores.get(&group)?;
        Some((
            core.snapshot().index,
            core.log_base(),
            core.membership_entry().index,
        ))
    }

    /// Ends a turn of the event loop: places the gathered proposals, one batch per group (more
    /// only when they exceed [`BATCH_BYTES_MAX`]), then the gathered reads.
    pub fn end_turn(&mut self) -> Result<(), EngineError> {
        self.place_proposals()?;
        self.place_reads()?;
        self.take_due_snapshots()?;
        let now = self.turn_started_us;
        for (group, lease) in &mut self.leases {
            lease.observe(&self.cores[group], now);
        }
        Ok(())
    }

    /// Serves the turn's lease reads whose lease holds and sends the rest, per group, as one
    /// ReadIndex request.
    fn place_reads(&mut self) -> Result<(), EngineError> {
        let now = self.turn_started_us;
        let deadline = self.now_ticks + self.config.proposal_timeout_ticks;
        for (group, gathered) in self.reads.take_gathered() {
            let lease_index = match self.leases.get_mut(&group) {
                Some(lease) if gathered.iter().any(|(c, _)| *c == ReadConsistency::Lease) => {
                    lease.index(&self.cores[&group], now)
                }
                _ => None,
            };
            let mut confirm = Vec::new();
            let mut leased = Vec::new();
            for (consistency, read) in gathered {
                match (consistency, lease_index) {
                    (ReadConsistency::Lease, Some(_)) => leased.push(read),
                    _ => confirm.push(read),
                }
            }
            if let Some(index) = lease_index.filter(|_| !leased.is_empty()) {
                self.reads.stamp(group, index, deadline, leased);
                self.serve_reads(group);
            }
            if !confirm.is_empty() {
                let id = self.reads.send_to_leader(group, deadline, confirm);
                self.step(group, Input::ReadIndex { id })?;
            }
        }
        Ok(())
    }

    /// Answers the reads of `group` that the state machine's applied index allows.
    fn serve_reads(&mut self, group: GroupId) {
        self.serve_reads_up_to(group, self.reads.applied(group));
    }

    fn place_proposals(&mut self) -> Result<(), EngineError> {
        while let Some((group, mut gathered)) = self.gathered.pop_first() {
            let mut payloads = &gathered.payloads[..];
            let mut replies = gathered.replies.drain(..);
            for &(kind, run) in &gathered.runs {
                let (mut in_run, rest) = payloads.split_at(run);
                payloads = rest;
                while !in_run.is_empty() {
                    let count = batch_prefix(in_run);
                    let batch = EntryBatch::encode(
                        kind,
                        Term::ZERO,
                        LogIndex::ZERO,
                        in_run[..count].iter().map(|payload| &payload[..]),
                    );
                    in_run = &in_run[count..];
                    self.actions.clear();
                    self.cores
                        .get_mut(&group)
                        .expect("gathered only for held groups")
                        .step(Input::Propose(batch), &mut self.actions);
                    let mut batch_replies = Some(replies.by_ref().take(count).collect());
                    self.execute(group, &mut batch_replies)?;
                }
            }
            drop(replies);
            gathered.clear();
            self.gathered_spare.push(gathered);
        }
        Ok(())
    }

    /// Whether a flush was started and has not completed.
    pub fn flush_in_flight(&self) -> bool {
        self.flushes_started != self.flushes_completed
    }

    /// Whether a flush should start (something is staged and none is in flight).
    pub fn wants_flush(&self) -> bool {
        self.flushes_started == self.flushes_completed && self.log.has_staged()
    }

    /// Starts a flush; the runtime awaits it and hands the result to [`Self::flush_done`].
    pub fn start_flush(&mut self) -> Result<Option<log::PendingFlush>, EngineError> {
        let leads = self.cores.values().any(|core| core.role() == Role::Leader);
        self.log.allow_blocking_flush(!leads);
        let pending = self.log.start_flush()?;
        if pending.is_some() {
            self.flushes_started += 1;
            let entries = self.stats.entries_written - self.entries_at_flush;
            self.entries_at_flush = self.stats.entries_written;
            self.counters.flush_entries.record(entries as f64);
        }
        Ok(pending)
    }

    /// A flush completed: report durability to the cores and release held sends.
    pub fn flush_done(&mut self, done: log::FlushDone) -> Result<(), EngineError> {
        if let Some(sync_time) = done.sync_time() {
            self.counters.log_syncs.record_duration(sync_time);
        }
        let report: SyncReport = self.log.finish_flush(done)?;
        self.flushes_completed += 1;
        self.stats.flushes += 1;
        for (group, position) in report.log {
            if self.cores.contains_key(&group) {
                let input = Input::Persisted {
                    index: position.index,
                    term: position.term,
                };
                // Before the step: it may apply (and stop timing) the batches now durable.
                self.stages
                    .durable(group, position.index, self.turn_started_us);
                self.step(group, input)?;
            }
        }
        while let Some(&(flush, _, _, _)) = self.held.front() {
            if flush > self.flushes_completed {
                break;
            }
            let (_, to, group, message) = self.held.pop_front().expect("peeked");
            self.outbox.entry(to).or_default().push((group, message));
        }
        Ok(())
    }

    /// Messages to send, per peer, in order. The caller sends each peer's list as one write.
    pub fn take_outbox(&mut self) -> BTreeMap<NodeId, Vec<(GroupId, Message)>> {
        std::mem::take(&mut self.outbox)
    }

    /// Answers for proposals, in the order they were decided. The buffer keeps its capacity
    /// for the next turn's answers.
    pub fn drain_completions(
        &mut self,
    ) -> std::vec::Drain<'_, (R, Result<Committed, ProposalError>)> {
        self.completions.drain(..)
    }

    /// Role changes since the last call: `(group, role, term, leader)`.
    pub fn take_role_changes(&mut self) -> Vec<(GroupId, Role, Term, Option<NodeId>)> {
        std::mem::take(&mut self.role_changes)
    }

    /// Whether every proposal and read this engine took has been answered (its answer may
    /// still wait in [`Self::drain_completions`]).
    pub fn all_answered(&self) -> bool {
        self.gathered.is_empty() && self.waiters.is_empty() && self.reads.is_empty()
    }

    /// Answers every outstanding proposal `ShuttingDown`.
    pub fn shut_down(&mut self) {
        for (_, gathered) in std::mem::take(&mut self.gathered) {
            for reply in gathered.replies {
                self.completions
                    .push((reply, Err(ProposalError::ShuttingDown)));
            }
        }
        self.waiters
            .drain(ProposalError::ShuttingDown, &mut self.completions);
        self.reads
            .drain(&ProposalError::ShuttingDown, &mut self.completions);
    }

    pub fn status(&self) -> Vec<GroupStatus> {
        self.cores
            .iter()
            .map(|(&group, core)| GroupStatus {
                summary: GroupSummary {
                    group,
                    role: core.role(),
                    term: core.term(),
                    leader: core.leader(),
                    commit: core.commit_index(),
                    applied: core.applied_index(),
                    last_index: core.last_index(),
                },
                followers: core
                    .config()
                    .voters
                    .iter()
                    .filter_map(|&peer| Some((peer, core.progress(peer)?.match_index)))
                    .collect(),
                membership: core.membership().clone(),
                snapshot_index: core.snapshot().index,
                log_base: core.log_base(),
            })
            .collect()
    }

    /// Work counters since the shard started.
    pub fn stats(&self) -> ShardStats {
        self.stats
    }

    /// What this shard's engine counted since it started.
    pub fn counters(&self) -> &EngineCounters {
        &self.counters
    }

    /// Latency of the batches this shard placed as leader, by stage, since it started.
    pub fn stage_histograms(&self) -> &StageHistograms {
        self.stages.histograms()
    }

    /// The leader of `group` as this node knows it.
    pub fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        self.cores.get(&group).and_then(Raft::leader)
    }

    /// Snapshots requested by the cores, for the runtime to stream (see the module docs).
    pub fn take_snapshot_sends(&mut self) -> Vec<SnapshotSend> {
        std::mem::take(&mut self.snapshot_sends)
    }

    /// Configurations that came into force since the last call: `(group, members, context)`.
    pub fn take_membership_changes(&mut self) -> Vec<(GroupId, Membership, Bytes)> {
        std::mem::take(&mut self.membership_changes)
    }

    /// The snapshot store, if this node keeps snapshots.
    pub fn snapshot_store(&self) -> Option<&P> {
        self.snapshots.as_ref()
    }

    /// The configuration in force in `group`, with its entry's context.
    pub fn membership(&self, group: GroupId) -> Option<(&Membership, &Bytes)> {
        let entry = self.cores.get(&group)?.membership_entry();
        Some((&entry.membership, &entry.context))
    }

    /// Snapshots every group whose snapshot is due ([`EngineConfig::snapshots`]).
    fn take_due_snapshots(&mut self) -> Result<(), EngineError> {
        if self.snapshots.is_none() {
            return Ok(());
        }
        let due: Vec<GroupId> = self
            .cores
            .iter()
            .filter(|(group, core)| self.snapshot_due[group].is_due(core.applied_index()))
            .map(|(&group, _)| group)
            .collect();
        for group in due {
            self.snapshot(group)?;
        }
        Ok(())
    }

    /// Snapshots `group`'s state machine now (if it applied anything since its last snapshot
    /// and none is being stored): the state machine writes it into a new snapshot file at once;
    /// syncing and renaming that file is left to the runtime ([`Self::take_pending_snapshots`]),
    /// off the event loop, and once it is durable ([`Self::snapshot_stored`]) the core compacts
    /// the log behind it. Returns the snapshot's index. A state machine without snapshot
    /// support turns snapshots off; other failures are logged and retried once the policy's
    /// entry count is applied again.
    pub fn snapshot(&mut self, group: GroupId) -> Result<Option<LogIndex>, EngineError> {
        let (Some(store), Some(core)) = (&self.snapshots, self.cores.get(&group)) else {
            return Ok(None);
        };
        let Some(point) = core.snapshot_point() else {
            return Ok(None);
        };
        if point.index <= core.snapshot().index || self.snapshots_storing.contains(&group) {
            return Ok(Some(point.index));
        }
        self.snapshot_due
            .insert(group, self.config.snapshots.after(point.index));
        let stored = snapshot::SnapshotInfo {
            group,
            index: point.index,
            term: point.term,
            membership: point.membership.encode(&point.context),
        };
        let mut writer = store.create(stored)?;
        let mut counted = CountingWriter::new(&mut writer);
        let paused = std::time::Instant::now();
        let job = self.state_machine.snapshot_job(group);
        let written = self.sessions[&group]
            .write_to(&mut counted)
            .and_then(|()| match job {
                Some(_) => Ok(()), // written later, by the job
                None => self.state_machine.snapshot(group, &mut counted),
            });
        let written_bytes = counted.bytes();
        self.counters
            .snapshot_pauses
            .record_duration(paused.elapsed());
        match written {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Unsupported => {
                self.snapshot_due
                    .values_mut()
                    .for_each(|due| *due = SnapshotDue::NEVER);
                return Ok(None);
            }
            Err(error) => {
                tracing::warn!(%group, index = %point.index, %error, "state machine snapshot failed");
                return Ok(None);
            }
        }
        self.snapshots_storing.insert(group);
        self.pending_snapshots.push(PendingSnapshot {
            group,
            index: point.index,
            term: point.term,
            writer,
            written: written_bytes,
            job,
            store: store.clone(),
        });
        Ok(Some(point.index))
    }

    /// Snapshots the runtime is to finish (run their job, if any) and make durable
    /// ([`PendingSnapshot::store`], a blocking call), then report to [`Self::snapshot_stored`].
    pub fn take_pending_snapshots(&mut self) -> Vec<PendingSnapshot<P>> {
        std::mem::take(&mut self.pending_snapshots)
    }

    /// A pending snapshot of `group` at `index` (of `term`) is durable, or failed to be.
    pub fn snapshot_stored(
        &mut self,
        group: GroupId,
        index: LogIndex,
        term: Term,
        result: Result<u64, SnapshotError>,
    ) -> Result<(), EngineError> {
        self.snapshots_storing.remove(&group);
        match result {
            Ok(bytes) if self.cores.contains_key(&group) => {
                self.counters.snapshots_created += 1;
                if let Some(due) = self.snapshot_due.get_mut(&group) {
                    self.config.snapshots.learned_size(due, index, bytes);
                }
                self.step(group, Input::SnapshotSaved { index, term })
            }
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::warn!(%group, %index, %error, "storing a snapshot failed");
                Ok(())
            }
        }
    }

    fn step(&mut self, group: GroupId, input: Input) -> Result<(), EngineError> {
        self.actions.clear();
        self.cores
            .get_mut(&group)
            .expect("stepping a held group")
            .step(input, &mut self.actions);
        self.execute(group, &mut None)
    }

    /// Carries out the actions of one step of `group`'s core. `replies` holds the answers of
    /// the proposal that was stepped, if any.
    fn execute(&mut self, group: GroupId, replies: &mut Option<Vec<R>>) -> Result<(), EngineError> {
        let actions = std::mem::take(&mut self.actions);
        let result = self.execute_actions(group, &actions, replies);
        self.actions = actions;
        result
    }

    fn execute_actions(
        &mut self,
        group: GroupId,
        actions: &[Action],
        replies: &mut Option<Vec<R>>,
    ) -> Result<(), EngineError> {
        for action in actions {
            match action {
                Action::SaveHardState(state) => self.log.save_hard_state(group, *state)?,
                Action::TruncateLog { from } => {
                    self.log.truncate(group, *from)?;
                    self.unapplied.truncated(group, *from);
                }
                Action::AppendLog(batch) => {
                    self.log.append(group, batch)?;
                    self.unapplied.appended(group, batch);
                    self.stats.entries_written += batch.len();
                    self.stats.bytes_written += batch.encoded_len() as u64;
                }
                Action::Send {
                    to,
                    message: Message::InstallSnapshot { term, snapshot },
                    ..
                } => {
                    self.counters.snapshots_sent += 1;
                    self.snapshot_sends.push(SnapshotSend {
                        to: *to,
                        group,
                        term: *term,
                        snapshot: snapshot.clone(),
                    })
                }
                Action::Send {
                    to,
                    message,
                    after_persist: false,
                } => self
                    .outbox
                    .entry(*to)
                    .or_default()
                    .push((group, message.clone())),
                Action::Send {
                    to,
                    message,
                    after_persist: true,
                } => self
                    .held
                    .push_back((self.flushes_started + 1, *to, group, message.clone())),
                Action::Accepted {
                    first_index,
                    last_index,
                    term,
                } => {
                    self.stages.placed(group, *last_index, self.turn_started_us);
                    let deadline = self.now_ticks + self.config.proposal_timeout_ticks;
                    self.waiters.accepted(
                        group,
                        *first_index,
                        *term,
                        deadline,
                        replies.take().unwrap_or_default(),
                        &mut self.completions,
                    );
                }
                Action::Rejected(error) => {
                    for reply in replies.take().into_iter().flatten() {
                        self.completions.push((reply, Err((*error).into())));
                    }
                }
                Action::Apply(batch) => {
                    if let Some(due) = self.snapshot_due.get_mut(&group) {
                        due.applied(batch.encoded_len() as u64);
                    }
                    self.apply(group, batch)
                }
                Action::RoleChanged { role, term, leader } => {
                    self.role_changes.push((group, *role, *term, *leader))
                }
                Action::ReadReady { id, index } => {
                    if let Some(group) = self.reads.leader_confirmed(*id, *index) {
                        self.serve_reads(group);
                    }
                }
                Action::ReadRefused { id, error } => {
                    self.reads
                        .leader_refused(*id, &(*error).into(), &mut self.completions)
                }
                Action::Commit { index } => {
                    self.stages.committed(group, *index, self.turn_started_us)
                }
                Action::CompactLog { through, term } => {
                    self.counters.compactions += 1;
                    self.log.compact(group, *through, *term)?;
                    self.unapplied.released_through(group, *through);
                }
                Action::RestoreSnapshot(snapshot) => {
                    let store = self
                        .snapshots
                        .as_ref()
                        .ok_or(EngineError::NoSnapshotStore)?;
                    let table =
                        restore_state(store, group, snapshot.index, &mut self.state_machine)?;
                    self.sessions.insert(group, table);
                    self.counters.snapshots_installed += 1;
                    self.unapplied.released_through(group, snapshot.index);
                    self.waiters
                        .restored(group, snapshot.index, &mut self.completions);
                    self.snapshot_due
                        .insert(group, self.config.snapshots.after(snapshot.index));
                    self.serve_reads_up_to(group, snapshot.index);
                }
                Action::MembershipChanged {
                    membership,
                    context,
                } => self
                    .membership_changes
                    .push((group, membership.clone(), context.clone())),
            }
            if let Some(observer) = &mut self.observer {
                let sessions = match action {
                    Action::Apply(batch) if batch.kind() == BatchKind::Session => {
                        &self.session_outcomes[..]
                    }
                    _ => &[],
                };
                observer.executed(
                    group,
                    action,
                    &self.cores[&group],
                    &self.state_machine,
                    sessions,
                );
            }
        }
        Ok(())
    }

    fn apply(&mut self, group: GroupId, batch: &EntryBatch) {
        let first = batch.first_index();
        let (term, len) = (batch.term(), batch.len());
        match batch.kind() {
            BatchKind::Command => {
                self.outputs.clear();
                self.state_machine
                    .apply(group, CommittedEntries::new(batch), &mut self.outputs);
                assert_eq!(
                    self.outputs.len() as u64,
                    len,
                    "the state machine must give one output per entry"
                );
                let outputs = &self.outputs;
                let answer = |offset: usize| {
                    Ok(Committed {
                        index: first.plus(offset as u64),
                        output: outputs[offset].clone(),
                    })
                };
                self.waiters
                    .applied(group, first, len, term, answer, &mut self.completions);
            }
            BatchKind::Session => {
                apply_session_batch(
                    group,
                    batch,
                    SessionApply {
                        table: self.sessions.entry(group).or_default(),
                        limits: &self.config.sessions,
                        apply_duplicates: self.config.broken_rule
                            == Some(BrokenRule::ApplyDuplicates),
                        state_machine: &mut self.state_machine,
                        outputs: &mut self.outputs,
                        answers: &mut self.session_answers,
                        outcomes: &mut self.session_outcomes,
                    },
                );
                self.counters.session_duplicates += self
                    .session_outcomes
                    .iter()
                    .filter(|outcome| matches!(outcome, SessionOutcome::Duplicate { .. }))
                    .count() as u64;
                let answers = &self.session_answers;
                let answer = |offset: usize| answers[offset].clone();
                self.waiters
                    .applied(group, first, len, term, answer, &mut self.completions);
            }
            BatchKind::Noop | BatchKind::Config => {
                let answer = |offset: usize| {
                    Ok(Committed {
                        index: first.plus(offset as u64),
                        output: Bytes::new(),
                    })
                };
                self.waiters
                    .applied(group, first, len, term, answer, &mut self.completions);
            }
        }
        self.stages
            .applied(group, batch.last_index(), self.turn_started_us);
        self.unapplied.released_through(group, batch.last_index());
        self.serve_reads_up_to(group, batch.last_index());
    }

    /// The state machine of `group` reflects every entry up to `index`: serve the reads that
    /// waited for it.
    fn serve_reads_up_to(&mut self, group: GroupId, index: LogIndex) {
        let state_machine = &self.state_machine;
        self.reads.applied_up_to(
            group,
            index,
            |query| state_machine.query(group, query),
            &mut self.completions,
        );
    }
}

/// How many of `payloads` (at least one) fit in one batch of at most [`BATCH_BYTES_MAX`]
/// encoded bytes.
fn batch_prefix(payloads: &[Bytes]) -> usize {
    let mut bytes = 0;
    payloads
        .iter()
        .take_while(|payload| {
            bytes += payload.len() + BATCH_ENTRY_OVERHEAD_BYTES;
            bytes <= BATCH_BYTES_MAX
        })
        .count()
        .max(1)
}

/// What applying a session batch works with (the engine's fields it borrows).
struct SessionApply<'a, S> {
    table: &'a mut SessionTable,
    limits: &'a SessionLimits,
    /// [`BrokenRule::ApplyDuplicates`]: give requests applied before to the state machine again.
    apply_duplicates: bool,
    state_machine: &'a mut S,
    outputs: &'a mut Vec<Bytes>,
    answers: &'a mut Vec<Result<Committed, ProposalError>>,
    outcomes: &'a mut Vec<SessionOutcome>,
}

/// Applies the session batch `batch` of `group`: the session table decides each entry in
/// order; the requests it lets through go to the state machine in runs (a run ends before an
/// entry that repeats a request of the run, which needs that request's output), and each
/// entry's answer and outcome are left in `answers` and `outcomes`, by position.
fn apply_session_batch<S: StateMachine>(
    group: GroupId,
    batch: &EntryBatch,
    with: SessionApply<'_, S>,
) {
    let SessionApply {
        table,
        limits,
        apply_duplicates,
        state_machine,
        outputs,
        answers,
        outcomes,
    } = with;
    answers.clear();
    outcomes.clear();
    let mut picked: Vec<(LogIndex, &[u8])> = Vec::new();
    let mut requests: Vec<(usize, SessionRequest)> = Vec::new();
    let mut apply_run =
        |picked: &mut Vec<(LogIndex, &[u8])>,
         requests: &mut Vec<(usize, SessionRequest)>,
         table: &mut SessionTable,
         answers: &mut Vec<Result<Committed, ProposalError>>| {
            if picked.is_empty() {
                return;
            }
            outputs.clear();
            state_machine.apply(group, CommittedEntries::picked(picked), outputs);
            assert_eq!(
                outputs.len(),
                picked.len(),
                "the state machine must give one output per entry"
            );
            for ((&(offset, request), &(index, _)), output) in
                requests.iter().zip(picked.iter()).zip(outputs.iter())
            {
                table.record(&request, index, output);
                answers[offset] = Ok(Committed {
                    index,
                    output: output.clone(),
                });
            }
            picked.clear();
            requests.clear();
        };
    for (offset, entry) in batch.payloads().enumerate() {
        let index = batch.first_index().plus(offset as u64);
        let (header, payload) =
            SessionEntry::decode(entry).expect("a session batch holds only session entries");
        let decision = loop {
            match table.decide(index, &header, limits) {
                Decision::AwaitOutput => apply_run(&mut picked, &mut requests, table, answers),
                decision => break decision,
            }
        };
        let (answer, outcome) = match decision {
            Decision::Registered => (
                Ok(Committed {
                    index,
                    output: Bytes::new(),
                }),
                SessionOutcome::Registered,
            ),
            Decision::Duplicate(committed) if !apply_duplicates => (
                Ok(committed.clone()),
                SessionOutcome::Duplicate {
                    of: committed.index,
                },
            ),
            Decision::Apply | Decision::Duplicate(_) => {
                let SessionEntry::Request { request, .. } = header else {
                    unreachable!("only requests are applied");
                };
                picked.push((index, payload));
                requests.push((offset, request));
                // Replaced by the output once the run is applied.
                (Err(ProposalError::OutcomeUnknown), SessionOutcome::Applied)
            }
            Decision::Refused(refusal) => (Err(refusal.into()), SessionOutcome::Refused(refusal)),
            Decision::AwaitOutput => unreachable!("decided again above"),
        };
        answers.push(answer);
        outcomes.push(outcome);
    }
    apply_run(&mut picked, &mut requests, table, answers);
    table.enforce_saved_bytes(limits);
}

/// Snapshots kept per group: the newest, and the one before it (which a transfer to a slow
/// follower may still be reading).
const SNAPSHOTS_KEPT: usize = 2;

/// Restores `state_machine` from `group`'s newest stored snapshot; returns what it covers and
/// the group's client sessions (none without a snapshot).
fn load_snapshot<S: StateMachine, P: SnapshotStorage>(
    store: &P,
    group: GroupId,
    state_machine: &mut S,
) -> Result<(Option<SnapshotMeta>, SessionTable), EngineError> {
    let Some(stored) = store.latest(group)? else {
        return Ok((None, SessionTable::default()));
    };
    let (membership, context) =
        Membership::decode(&stored.membership).map_err(|_| EngineError::SnapshotConfig {
            group,
            index: stored.index,
        })?;
    let table = restore_state(store, group, stored.index, state_machine)?;
    let meta = SnapshotMeta {
        index: stored.index,
        term: stored.term,
        membership,
        context,
    };
    Ok((Some(meta), table))
}

/// Replaces `group`'s state in `state_machine` with the stored snapshot at `index`, reading
/// the body to its end so that its checksum is verified; returns the group's client sessions
/// as the snapshot holds them (none in a snapshot written before sessions existed).
fn restore_state<S: StateMachine, P: SnapshotStorage>(
    store: &P,
    group: GroupId,
    index: LogIndex,
    state_machine: &mut S,
) -> Result<SessionTable, EngineError> {
    let mut body = store.open_body(group, index)?;
    let mut restore = || -> io::Result<SessionTable> {
        let table = if body.holds_sessions() {
            SessionTable::read_from(&mut body)?
        } else {
            SessionTable::default()
        };
        state_machine.restore(group, &mut body)?;
        io::copy(&mut body, &mut io::sink())?;
        Ok(table)
    };
    restore().map_err(|source| EngineError::Restore {
        group,
        index,
        source,
    })
}

//! What goes into the core ([`Input`]) and what comes out ([`Action`]).
//!
//! Storage contract the driver must keep: `SaveHardState`, `TruncateLog` and `AppendLog` take
//! effect (become readable) in emission order and become **durable in emission order**. The
//! driver reports durability of the log with [`Input::Persisted`]; a `Persisted { index, term }`
//! promises that every storage action emitted before the one that wrote `index` is durable too.
//!
//! A [`Action::Send`] with `after_persist` must be held until every storage action emitted
//! before it is durable (vote replies, a candidate's vote requests). Other sends may go at once,
//! in particular a leader's AppendEntries while its own write is still being synced.

use bytes::Bytes;

use crate::batch::EntryBatch;
use crate::core::membership::{Membership, MembershipChange};
use crate::core::message::{Message, SnapshotMeta};
use crate::types::{HardState, LogIndex, NodeId, Term};

/// One input to [`crate::core::Raft::step`].
#[derive(Clone, Debug)]
pub enum Input {
    /// One unit of logical time passed.
    Tick,
    /// Append these entries (its position fields are ignored; the leader places the batch).
    Propose(EntryBatch),
    /// A message from another member.
    Message { from: NodeId, message: Message },
    /// The log is durable up to `index`, which held an entry of `term` when it was written.
    /// Reports about entries that were truncated since are recognised by the term and ignored.
    Persisted { index: LogIndex, term: Term },
    /// The transport lost its connection to `peer`: messages in flight may be lost.
    Unreachable { peer: NodeId },
    /// Hand leadership to `to` (a voter that is caught up receives TimeoutNow).
    TransferLeadership { to: NodeId },
    /// A linearizable read (ReadIndex): answered with [`Action::ReadReady`] once this node has
    /// proven it still leads, or [`Action::ReadRefused`]. `id` is the driver's; one id may stand
    /// for many reads gathered together.
    ReadIndex { id: u64 },
    /// Leader only: change the group's members (one change at a time; voter changes go through
    /// a joint configuration). Answered like a proposal: [`Action::Accepted`] with the index of
    /// the configuration entry, or [`Action::Rejected`]. `context` travels with the entry (the
    /// driver's record of members' addresses).
    ChangeMembership {
        change: MembershipChange,
        context: Bytes,
    },
    /// The driver durably saved a snapshot of the state machine covering the log up to
    /// `index` (of `term`; at most the applied index). The core compacts its log up to
    /// [`crate::core::Config::compaction_trailing_entries`] before it.
    SnapshotSaved { index: LogIndex, term: Term },
}

/// Why a proposal was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("leadership is being transferred")]
    Transferring,
    #[error("a configuration change is still in progress (or this leader has not committed an entry of its term yet)")]
    ChangeInProgress,
    #[error("the configuration change does not apply to the current members")]
    ChangeNotAllowed,
    /// A learner is to be promoted before it caught up: it is not receiving the log in
    /// pipeline, or holds less than the committed log minus the compaction's trailing entries.
    /// As a voter it could leave the group without a quorum until it catches up.
    #[error("the learner has not caught up with the log yet")]
    LearnerBehind,
}

/// A node's role in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one to appear).
    Follower,
    /// Asks for pre-votes before starting an election, so a node cut off from the cluster does
    /// not disturb it by raising the term.
    PreCandidate,
    /// Asks for votes in a new term.
    Candidate,
    /// Leads the group.
    Leader,
}

/// One thing for the driver to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Persist term, vote and commit hint.
    SaveHardState(HardState),
    /// Remove every entry from `from` on.
    TruncateLog { from: LogIndex },
    /// Append a batch right after the current last entry.
    AppendLog(EntryBatch),
    /// Drop the entries up to `through` (whose term is `term`); `through` may lie beyond the
    /// last entry after a snapshot replaced the log.
    CompactLog { through: LogIndex, term: Term },
    /// Replace the state machine with the snapshot `meta` describes (the driver received and
    /// stored it durably before it handed the core [`Message::InstallSnapshot`]). The core
    /// continues from `meta.index` as applied.
    RestoreSnapshot(SnapshotMeta),
    /// Deliver `message` to `to`; if `after_persist`, only once all earlier storage actions
    /// are durable.
    Send {
        to: NodeId,
        message: Message,
        after_persist: bool,
    },
    /// The proposal just stepped was placed at `first_index ..= last_index` in `term`.
    Accepted {
        first_index: LogIndex,
        last_index: LogIndex,
        term: Term,
    },
    /// The proposal just stepped was refused.
    Rejected(ProposeError),
    /// The commit index advanced to `index`.
    Commit { index: LogIndex },
    /// Hand these committed, locally durable entries to the state machine (in log order; each
    /// entry is handed over exactly once per node lifetime).
    Apply(EntryBatch),
    /// The read `id` may be served once the state machine has applied `index`.
    ReadReady { id: u64, index: LogIndex },
    /// The read `id` cannot be served by this node.
    ReadRefused { id: u64, error: ProposeError },
    /// The configuration in force changed (an entry was appended or truncated, or a snapshot
    /// was restored); `context` is the one attached to its entry.
    MembershipChanged {
        membership: Membership,
        context: Bytes,
    },
    /// Role, term or known leader changed.
    RoleChanged {
        role: Role,
        term: Term,
        leader: Option<NodeId>,
    },
}

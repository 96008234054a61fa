//! A graceful stop of one shard: hand every group this node leads to a follower, stop taking
//! new work, and say when everything taken has been answered.
//!
//! While a shard drains:
//! - each group it leads is handed to its most caught-up follower ([`successor`]): a voter
//!   heard from recently, with the highest durable match index. The core sends `TimeoutNow`
//!   once that follower holds the whole log, so the follower starts its election at once and
//!   wins it without waiting for an election timeout. A transfer that does not complete within
//!   an election timeout is dropped by the core; the next turn starts another;
//! - new proposals and non-stale reads for a group it still leads are refused as
//!   [`ProposalError::Transferring`] (certainly not applied; clients see "not leader" and ask
//!   again). Once it follows, requests are refused with the leader's name as on any follower;
//! - requests taken before keep their waiters: entries this leader placed are in the
//!   successor's log before `TimeoutNow` leaves (the core sends it only to a follower whose
//!   durable match is the leader's last index), so they commit under the new leader and are
//!   answered here when this node applies them, as a follower.
//!
//! The shard is **drained** once it leads no group that another voter could take over, every
//! proposal and read it took has been decided ([`ShardEngine::all_answered`]), and its client
//! connections have been quiet for [`CLIENTS_QUIET`]: a client answered a moment ago may be
//! sending its next request, which should get a redirect rather than meet a closed socket. The
//! shard keeps running after that (answering redirects) until it is stopped.

use std::time::Duration;

use crate::core::{Raft, Role};
use crate::engine::state_machine::StateMachine;
use crate::engine::{EngineError, ProposalError, ShardEngine};
use crate::log::LogStore;
use crate::shard::runtime::ReplyTo;
use crate::types::{GroupId, NodeId};

type Engine<L, S> = ShardEngine<L, S, ReplyTo>;

/// How long client connections must have sent nothing before a draining shard reports drained:
/// far longer than a client on the same network takes to send its next request after an
/// answer.
pub const CLIENTS_QUIET: Duration = Duration::from_millis(100);

/// A drain in progress on one shard.
pub struct Drain {
    /// Told once, when the shard is drained.
    done: Option<flume::Sender<()>>,
}

impl Drain {
    /// Starts draining; `done` hears once the shard is drained.
    pub fn new(done: flume::Sender<()>) -> Drain {
        Drain { done: Some(done) }
    }

    /// Whether new work for `group` is refused (see the module docs): this node still leads it.
    pub fn refuses<L: LogStore, S: StateMachine>(engine: &Engine<L, S>, group: GroupId) -> bool {
        engine.leader_of(group) == Some(engine.node())
    }

    /// The answer to refused work.
    pub fn refusal() -> ProposalError {
        ProposalError::Transferring
    }

    /// After a turn: starts a transfer for every led group without one, and tells the waiting
    /// caller once the shard is drained (`clients_quiet`: its client connections have been
    /// quiet for [`CLIENTS_QUIET`]).
    pub fn advance<L: LogStore, S: StateMachine>(
        &mut self,
        engine: &mut Engine<L, S>,
        clients_quiet: bool,
    ) -> Result<(), EngineError> {
        let mut leads_with_successor = false;
        let groups: Vec<GroupId> = engine.groups().collect();
        for group in groups {
            let Some(core) = engine.core(group) else {
                continue;
            };
            if core.role() != Role::Leader {
                continue;
            }
            let Some(to) = successor(core) else {
                continue;
            };
            leads_with_successor = true;
            if core.transfer_target().is_none() {
                tracing::info!(node = %engine.node(), %group, %to, "stopping: handing leadership over");
                engine.transfer_leadership(group, to)?;
            }
        }
        if !leads_with_successor && engine.all_answered() && clients_quiet {
            if let Some(done) = self.done.take() {
                let _ = done.send(());
            }
        }
        Ok(())
    }
}

/// The voter best placed to take over from `core`, a leader: among the other voters heard from
/// since the last check-quorum round, the one with the highest durable match index (ties: the
/// lowest id). `None` when there is none (a single-voter group, or every follower silent).
pub fn successor(core: &Raft) -> Option<NodeId> {
    let me = core.id();
    core.membership()
        .voters
        .iter()
        .filter(|&&voter| voter != me)
        .filter_map(|&voter| {
            let progress = core.progress(voter)?;
            progress
                .recently_active
                .then_some((progress.match_index, std::cmp::Reverse(voter)))
        })
        .max()
        .map(|(_, std::cmp::Reverse(voter))| voter)
}

//! Lease reads: a leader that a majority acknowledged recently serves reads without a round
//! trip, trusting that no other leader can be elected before its lease runs out.
//!
//! The lease rests on check-quorum: a follower that heard from its leader refuses to vote
//! (except for a transfer the leader itself asked for) for one election timeout after that, by
//! its own clock, even if it meanwhile adopted a higher term and forgot who led; and a node
//! that just started refuses for one election timeout as well
//! ([`crate::core::Config::quiet_start`]). Because a transfer vote skips that refusal, a leader
//! that sent TimeoutNow serves no lease reads for the rest of its term, even once the transfer
//! is abandoned: the vote may still be in flight. So if a majority acknowledged a read round that
//! started at time `t` on the leader's monotonic clock, no other leader can exist before
//! `t + election timeout`. The lease is that, shortened by the clock drift the operator
//! assumes between nodes: `t + timeout × (1 − drift)`.
//!
//! The core has no clock, so this lives beside it: the driver calls [`ReadLease::observe`]
//! after each step of the core with the time (microseconds of any monotonic clock), which
//! records when each read round started, and asks [`ReadLease::index`] when it has lease reads
//! to serve.
//!
//! Invariants: `started` holds `(round, start)` pairs in increasing order of both, never round
//! 0 (the echo of a follower that heard nothing), and only for the current leadership (cleared
//! whenever the core is not leader); a round's recorded start is never later than the moment
//! its messages were handed to the transport.

use std::collections::VecDeque;

use crate::core::config::BrokenRule;
use crate::core::io::Role;
use crate::core::raft::Raft;
use crate::types::LogIndex;

/// Read rounds remembered per group; a confirmation older than all of them grants no lease.
const ROUNDS_REMEMBERED: usize = 256;

/// See the module documentation.
#[derive(Debug)]
pub struct ReadLease {
    duration_micros: u64,
    started: VecDeque<(u64, u64)>,
}

impl ReadLease {
    /// A lease of `duration_micros` after the start of a confirmed round (the election timeout
    /// shortened by the assumed clock drift).
    pub fn new(duration_micros: u64) -> ReadLease {
        ReadLease {
            duration_micros,
            started: VecDeque::new(),
        }
    }

    /// Records the start of `core`'s current read round at `now_micros`, if it is new.
    pub fn observe(&mut self, core: &Raft, now_micros: u64) {
        if core.role() != Role::Leader {
            self.started.clear();
            return;
        }
        let round = core.read_round();
        // Round 0 is what a follower echoes before it heard anything: it proves nothing.
        if round == 0 || self.started.back().is_some_and(|&(last, _)| last >= round) {
            return;
        }
        if self.started.len() == ROUNDS_REMEMBERED {
            self.started.pop_front();
        }
        self.started.push_back((round, now_micros));
    }

    /// The index a lease read may be served at (once applied), or `None` when the lease does
    /// not hold: not leader, no check-quorum, a transfer under way or attempted in this term,
    /// nothing committed in this term yet, or no majority-acknowledged round recent enough.
    pub fn index(&mut self, core: &Raft, now_micros: u64) -> Option<LogIndex> {
        let transfer_attempted = core.sent_timeout_now()
            && core.config().broken_rule != Some(BrokenRule::LeaseAfterTransfer);
        let usable = core.role() == Role::Leader
            && core.config().check_quorum
            && core.transfer_target().is_none()
            && !transfer_attempted
            && core.committed_in_current_term();
        if !usable {
            return None;
        }
        let confirmed = core.confirmed_read_round();
        while self.started.len() > 1 && self.started[1].0 <= confirmed {
            self.started.pop_front();
        }
        let &(round, start) = self.started.front()?;
        let holds = round <= confirmed && now_micros < start.saturating_add(self.duration_micros);
        holds.then(|| core.commit_index())
    }
}

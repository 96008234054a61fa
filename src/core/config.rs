//! Settings of one Raft group's core, with their defaults and the relations they must keep.

use crate::types::NodeId;

/// A rule that a test deliberately breaks, to show that the simulator's checkers catch it.
/// Never set outside tests.
#[doc(hidden)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr, strum::EnumString,
)]
#[strum(ascii_case_insensitive)]
pub enum BrokenRule {
    /// Followers acknowledge entries as soon as they are appended, before they are durable, and
    /// a leader counts its appended (not durable) index.
    AckBeforePersist,
    /// A leader commits an entry of an earlier term by counting replicas (violates §5.4.2).
    CommitPreviousTermByCounting,
    /// Voters grant votes without checking that the candidate's log is up to date (§5.4.1).
    VoteWithoutLogCheck,
    /// A leader answers ReadIndex at once, without confirming that it still leads (§6.4).
    ReadWithoutQuorumCheck,
    /// The driver trusts a read lease for four election timeouts instead of less than one
    /// (a driver setting: the simulator reads it; the core does not).
    LeaseBeyondElectionTimeout,
    /// The engine answers "not applied" for proposals whose entries were cut from its log by a
    /// newer leader's entries, although another node may still commit them (an engine rule).
    SupersedeDisplaced,
    /// The engine answers "not applied" for proposals a restored snapshot covers, although the
    /// snapshot may hold them (an engine rule).
    SupersedeUnderSnapshot,
    /// A restarting node reports what its log reads back as durable without syncing it first,
    /// so writes that survived a crash only in the page cache are acknowledged and a later
    /// crash can lose them (a storage setting: the simulator maps it onto
    /// `MemLog::set_trust_unsynced_recovery`; the core does not read it).
    RecoveryTrustsUnsynced,
    /// A follower refuses votes only while it knows a leader: adopting a higher term from a
    /// message that is not from a leader (a refused vote, an append response) forgets the
    /// lease along with the leader, and a new leader can be elected inside the old one's lease.
    VoteRefusalNeedsKnownLeader,
    /// A leader's read lease resumes after an abandoned leadership transfer, although the
    /// transfer vote its TimeoutNow caused skips the followers' lease and may still win.
    LeaseAfterTransfer,
    /// The core acts on every message from a member without checking it first, so a corrupted
    /// or confused peer's message can panic it (or break its invariants).
    TrustPeerInput,
    /// The engine gives the state machine a request of a client session that it applied
    /// before, instead of answering its retry with the saved output (an engine rule).
    ApplyDuplicates,
}

impl BrokenRule {
    /// Every rule, in declaration order.
    pub fn all() -> impl Iterator<Item = BrokenRule> {
        <BrokenRule as strum::IntoEnumIterator>::iter()
    }

    /// The rule's name, as the CLI spells it (its variant name).
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The rule named `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<BrokenRule> {
        name.parse().ok()
    }
}

/// Configuration of one group's core on one node.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// The voters of the bootstrap configuration, in force until the log or a snapshot holds a
    /// configuration entry. Empty for a node that joins an existing group (it learns the
    /// configuration from the leader).
    pub voters: Vec<NodeId>,
    /// Ticks without hearing from a leader before a follower campaigns. The effective timeout
    /// is drawn uniformly from `[election_timeout_ticks, 2 * election_timeout_ticks)`, except
    /// for the first pre-vote round after each contact with a leader: if it has not won after
    /// 1 to `election_timeout_ticks / 4` ticks it is asked again, since it most likely missed
    /// the voters' refusal windows by a tick.
    pub election_timeout_ticks: u32,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_interval_ticks: u32,
    /// Ask for pre-votes before starting a real election, so a node that was partitioned cannot
    /// raise everybody's term when it returns.
    pub pre_vote: bool,
    /// A leader that has not heard from a majority within an election timeout steps down, and
    /// followers that heard from a leader within an election timeout refuse to vote.
    pub check_quorum: bool,
    /// With `check_quorum`: a node refuses (pre-)votes for one election timeout after it
    /// starts, as if it had just heard from a leader. A follower that restarts quickly has
    /// forgotten when it last heard from its leader; without this it could help elect a new
    /// leader while the old one still relies on that follower's promise (lease reads).
    pub quiet_start: bool,
    /// Most AppendEntries messages in flight to one follower in the replicate state.
    pub inflight_messages_max: usize,
    /// Most body bytes in flight to one follower in the replicate state.
    pub inflight_bytes_max: usize,
    /// Most body bytes in one AppendEntries message (at least one batch is always sent).
    pub message_bytes_max: usize,
    /// After a snapshot, how many entries before its index stay in the log, so that followers
    /// slightly behind catch up from the log rather than needing the snapshot.
    pub compaction_trailing_entries: u64,
    /// Seed of the core's own random number generator (election timeouts).
    pub rng_seed: u64,
    /// Also check the expensive invariants ([`crate::core::Raft::expensive_invariants`]: those
    /// that walk the log, the configuration history, the messages in flight or the pending
    /// reads) after every step, and with them all the cheap ones after every step. Default: on
    /// in debug builds, off in release builds; the simulator, the fuzz target and the core's
    /// tests turn it on. Off, the core still checks the cheap invariants in every build: the
    /// cursor order and the across-step ones after every step, the rest after ticks, role
    /// changes, membership changes and saved snapshots (see the `core::raft` module docs). A
    /// violated invariant panics with "invariant violated on {node}: ...".
    pub check_expensive_invariants: bool,
    #[doc(hidden)]
    pub broken_rule: Option<BrokenRule>,
}

impl Config {
    /// A configuration with the documented defaults for `id` in a group of `voters`.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            voters,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            quiet_start: true,
            inflight_messages_max: 256,
            inflight_bytes_max: 32 << 20,
            message_bytes_max: 1 << 20,
            compaction_trailing_entries: 4096,
            rng_seed: 0,
            check_expensive_invariants: cfg!(debug_assertions),
            broken_rule: None,
        }
    }

    /// Checks the relations between settings; returns a description of the first violated one.
    pub fn validate(&self) -> Result<(), String> {
        if !self.voters.is_empty() && !self.voters.contains(&self.id) {
            return Err(format!("node {} is not among the voters", self.id));
        }
        let mut sorted = self.voters.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.voters.len() {
            return Err("a voter is listed twice".into());
        }
        if self.heartbeat_interval_ticks == 0 {
            return Err("heartbeat interval must be at least one tick".into());
        }
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks {
            return Err(format!(
                "election timeout ({} ticks) must exceed the heartbeat interval ({} ticks)",
                self.election_timeout_ticks, self.heartbeat_interval_ticks
            ));
        }
        if self.inflight_messages_max == 0 || self.inflight_bytes_max == 0 {
            return Err("inflight window must allow at least one message".into());
        }
        if self.message_bytes_max == 0 {
            return Err("message byte limit must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::BrokenRule;

    #[test]
    fn every_broken_rule_parses_back_from_its_name() {
        for rule in BrokenRule::all() {
            assert_eq!(BrokenRule::from_name(rule.name()), Some(rule));
        }
        assert_eq!(BrokenRule::from_name("NoSuchRule"), None);
    }
}

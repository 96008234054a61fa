//! What one shard tells its node's metrics endpoint: a [`ShardMetrics`] snapshot, built in
//! the event loop when the endpoint asks ([`crate::api::NodeObserver`]), from the engine's
//! status and counters, the shard's own request timing ([`RequestTimes`]) and its peers'
//! traffic.
//!
//! Invariants: a snapshot is taken between two turns, so each group's figures are consistent
//! with one another; every counter in it only grows over the shard's life; building one reads
//! state and copies it, and changes nothing the shard does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::engine::counters::{BucketHistogram, EngineCounters, LATENCY_BOUNDS_SECONDS};
use crate::engine::stages::StageHistograms;
use crate::engine::GroupStatus;
use crate::net::client_wire::ShardStats;
use crate::types::{GroupId, NodeId, ShardId};

/// What a request to the engine was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Propose,
    Read,
}

/// When a request reached the shard, in microseconds of the event loop's clock.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    pub kind: RequestKind,
    pub at_us: u64,
}

/// Outcomes and latencies of one kind of request, from reaching the shard to being answered.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestFigures {
    pub failed: u64,
    pub latency: BucketHistogram,
}

impl Default for RequestFigures {
    fn default() -> Self {
        RequestFigures {
            failed: 0,
            latency: BucketHistogram::new(LATENCY_BOUNDS_SECONDS),
        }
    }
}

/// What the event loop records about requests, leaders and its own timeliness (see the module
/// docs), with the monotonic clock the loop measures time on.
#[derive(Clone, Debug)]
pub struct RequestTimes {
    pub proposals: RequestFigures,
    pub reads: RequestFigures,
    /// How late each tick of the shard's timer ran: how long its thread stood still (blocked,
    /// or without CPU) past the tick's due time.
    pub tick_lateness: BucketHistogram,
    /// Per group: how often this node saw the group's leader change to another known node.
    pub leader_changes: BTreeMap<GroupId, u64>,
    last_leader: BTreeMap<GroupId, NodeId>,
    origin: Instant,
}

impl Default for RequestTimes {
    fn default() -> Self {
        RequestTimes {
            proposals: RequestFigures::default(),
            reads: RequestFigures::default(),
            tick_lateness: BucketHistogram::new(LATENCY_BOUNDS_SECONDS),
            leader_changes: BTreeMap::new(),
            last_leader: BTreeMap::new(),
            origin: Instant::now(),
        }
    }
}

impl RequestTimes {
    /// Where the clock starts.
    pub fn clock_origin(&self) -> Instant {
        self.origin
    }

    /// Microseconds since the clock's origin.
    pub fn clock_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    /// A request that arrived as `arrival` was answered at `now_us`.
    pub fn answered(&mut self, arrival: Arrival, now_us: u64, ok: bool) {
        let figures = match arrival.kind {
            RequestKind::Propose => &mut self.proposals,
            RequestKind::Read => &mut self.reads,
        };
        if !ok {
            figures.failed += 1;
        }
        let micros = now_us.saturating_sub(arrival.at_us);
        figures.latency.record(micros as f64 / 1e6);
    }

    /// A tick of the shard's timer ran `late` after it was due.
    pub fn tick_ran_late(&mut self, late: Duration) {
        self.tick_lateness.record_duration(late);
    }

    /// `group`'s core changed role; `leader` is the leader it now knows of.
    pub fn role_changed(&mut self, group: GroupId, leader: Option<NodeId>) {
        let Some(leader) = leader else {
            return;
        };
        if self.last_leader.insert(group, leader) != Some(leader) {
            *self.leader_changes.entry(group).or_default() += 1;
        }
    }
}

/// One peer link of a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerMetrics {
    pub peer: NodeId,
    /// Whether the outgoing connection is up.
    pub connected: bool,
    /// Outgoing connections made so far.
    pub connections: u64,
    /// Bytes handed to the outgoing connection.
    pub sent_bytes: u64,
    /// Bytes of frames read from the peer's connections to this shard.
    pub received_bytes: u64,
}

/// A shard's figures at one moment (see the module docs).
#[derive(Clone, Debug)]
// The shard fills them in any build; only the `metrics` endpoint reads them.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub struct ShardMetrics {
    pub shard: ShardId,
    pub groups: Vec<GroupStatus>,
    pub log: ShardStats,
    pub counters: EngineCounters,
    pub stages: StageHistograms,
    pub requests: RequestTimes,
    pub peers: Vec<PeerMetrics>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_change_counts_once_per_new_known_leader() {
        let mut times = RequestTimes::default();
        let group = GroupId(3);
        for leader in [None, Some(2), Some(2), None, Some(2), Some(1), Some(2)] {
            times.role_changed(group, leader.map(NodeId));
        }
        assert_eq!(times.leader_changes[&group], 3);
    }

    #[test]
    fn answers_are_timed_by_kind_and_failures_counted() {
        let mut times = RequestTimes::default();
        let read = Arrival {
            kind: RequestKind::Read,
            at_us: 1_000,
        };
        times.answered(read, 3_000, true);
        times.answered(read, 1_500, false);
        assert_eq!(times.reads.failed, 1);
        assert_eq!(times.reads.latency.count(), 2);
        assert!((times.reads.latency.sum() - 0.0025).abs() < 1e-12);
        assert_eq!(times.proposals.latency.count(), 0);
    }
}

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

    /// `answered` requests that all arrived as `arrival` were answered at `now_us`, `failed`
    /// of them with an error. Requests of one loop turn share their arrival, so a turn's
    /// answers are recorded with a few calls rather than one per request.
    pub fn answered(&mut self, arrival: Arrival, now_us: u64, answered: u64, failed: u64) {
        let figures = match arrival.kind {
            RequestKind::Propose => &mut self.proposals,
            RequestKind::Read => &mut self.reads,
        };
        figures.failed += failed;
        let micros = now_us.saturating_sub(arrival.at_us);
        figures.latency.record_many(micros as f64 / 1e6, answered);
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

/// Records one turn's answers into [`RequestTimes`], one call per run of answers that arrived
/// together (answers come in log order, so a turn's requests answer in runs); the last run is
/// recorded on drop.
pub struct AnswerTally<'a> {
    times: &'a mut RequestTimes,
    now_us: u64,
    /// The current run: its arrival, how many answered, how many of them failed.
    run: Option<(Arrival, u64, u64)>,
}

impl<'a> AnswerTally<'a> {
    /// A tally of answers given at `now_us`.
    pub fn new(times: &'a mut RequestTimes, now_us: u64) -> AnswerTally<'a> {
        AnswerTally {
            times,
            now_us,
            run: None,
        }
    }

    /// A request that arrived as `arrival` was answered, successfully if `ok`.
    pub fn answered(&mut self, arrival: Arrival, ok: bool) {
        let failed = u64::from(!ok);
        match &mut self.run {
            Some((same, answered, failed_in_run)) if *same == arrival => {
                *answered += 1;
                *failed_in_run += failed;
            }
            run => {
                if let Some((arrival, answered, failed)) = run.replace((arrival, 1, failed)) {
                    self.times.answered(arrival, self.now_us, answered, failed);
                }
            }
        }
    }
}

impl Drop for AnswerTally<'_> {
    fn drop(&mut self) {
        if let Some((arrival, answered, failed)) = self.run.take() {
            self.times.answered(arrival, self.now_us, answered, failed);
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
        times.answered(read, 3_000, 1, 0);
        times.answered(read, 1_500, 1, 1);
        assert_eq!(times.reads.failed, 1);
        assert_eq!(times.reads.latency.count(), 2);
        assert!((times.reads.latency.sum() - 0.0025).abs() < 1e-12);
        assert_eq!(times.proposals.latency.count(), 0);
    }

    /// A turn's answers come in runs of one arrival; every answer counts once, with its own
    /// arrival's latency and kind, however the runs interleave.
    #[test]
    fn a_tally_records_every_answer_of_interleaved_runs() {
        let propose = |at_us| Arrival {
            kind: RequestKind::Propose,
            at_us,
        };
        let read = Arrival {
            kind: RequestKind::Read,
            at_us: 100,
        };
        let answers = [
            (propose(100), true),
            (propose(100), false),
            (propose(100), true),
            (read, true),
            (propose(100), true),
            (propose(400), false),
            (propose(400), true),
        ];
        let mut times = RequestTimes::default();
        {
            let mut tally = AnswerTally::new(&mut times, 1_100);
            for (arrival, ok) in answers {
                tally.answered(arrival, ok);
            }
        }
        assert_eq!(times.proposals.latency.count(), 6);
        assert_eq!(times.proposals.failed, 2);
        // Four answered 1 ms after arriving, two 0.7 ms after.
        assert!((times.proposals.latency.sum() - (4.0 * 0.001 + 2.0 * 0.0007)).abs() < 1e-12);
        assert_eq!(times.reads.latency.count(), 1);
        assert_eq!(times.reads.failed, 0);
    }
}

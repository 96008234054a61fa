//! `/readyz`: whether this node is ready to serve, judged from one scrape of its shards.
//!
//! A node is ready when its storage is recovered (the node started: every shard recovered its
//! log before [`crate::api::Node::start`] returned), every shard answered, every group has a
//! known leader, and this node has applied every entry it knows to be committed. Each failing
//! condition is named in one line of the answer.

use crate::metrics::exposition::Scrape;

/// The conditions `scrape` fails, one line each; empty when the node is ready.
pub fn unready_reasons(scrape: &Scrape) -> Vec<String> {
    let mut reasons = Vec::new();
    for (shard, metrics) in &scrape.shards {
        let Some(metrics) = metrics else {
            reasons.push(format!("shard {} did not answer", shard.0));
            continue;
        };
        for status in &metrics.groups {
            let summary = &status.summary;
            if summary.leader.is_none() {
                reasons.push(format!("group {} has no known leader", summary.group.0));
            }
            if summary.applied < summary.commit {
                reasons.push(format!(
                    "group {} applied {} of {} committed",
                    summary.group.0, summary.applied.0, summary.commit.0
                ));
            }
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Role;
    use crate::engine::counters::EngineCounters;
    use crate::engine::stages::StageHistograms;
    use crate::engine::GroupStatus;
    use crate::net::client_wire::{GroupSummary, ShardStats};
    use crate::shard::metrics::{RequestTimes, ShardMetrics};
    use crate::types::{GroupId, LogIndex, NodeId, ShardId, Term};

    fn shard(groups: &[(u64, Option<u64>, u64, u64)]) -> ShardMetrics {
        ShardMetrics {
            shard: ShardId(0),
            groups: groups
                .iter()
                .map(|&(group, leader, commit, applied)| GroupStatus {
                    summary: GroupSummary {
                        group: GroupId(group),
                        role: Role::Follower,
                        term: Term(1),
                        leader: leader.map(NodeId),
                        commit: LogIndex(commit),
                        applied: LogIndex(applied),
                        last_index: LogIndex(commit),
                    },
                    followers: Vec::new(),
                    membership: Default::default(),
                    snapshot_index: LogIndex::ZERO,
                    log_base: LogIndex::ZERO,
                })
                .collect(),
            log: ShardStats::default(),
            counters: EngineCounters::default(),
            stages: StageHistograms::default(),
            requests: RequestTimes::default(),
            peers: Vec::new(),
        }
    }

    #[test]
    fn every_failing_condition_is_named() {
        let ready = Scrape {
            shards: vec![(ShardId(0), Some(shard(&[(0, Some(2), 5, 5)])))],
        };
        assert!(unready_reasons(&ready).is_empty());
        let unready = Scrape {
            shards: vec![
                (
                    ShardId(0),
                    Some(shard(&[(0, None, 5, 5), (2, Some(1), 9, 7)])),
                ),
                (ShardId(1), None),
            ],
        };
        assert_eq!(
            unready_reasons(&unready),
            vec![
                "group 0 has no known leader",
                "group 2 applied 7 of 9 committed",
                "shard 1 did not answer",
            ]
        );
    }
}

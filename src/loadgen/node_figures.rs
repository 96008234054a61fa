//! What the nodes themselves report about a measured window: each node's counters are read
//! through the client protocol's status request at the window's start and end, and the
//! figures here are the differences (log flushes, stage latencies, elections). A node that does
//! not answer at either end is left out rather than counted as zero.

use std::net::SocketAddr;

use serde::Serialize;

use crate::client::{Client, NodeStats};
use crate::loadgen::report::Percentiles;
use crate::types::NodeId;

/// What one node's log did during the measured window.
#[derive(Serialize)]
pub(crate) struct NodeLogFigures {
    pub node: u64,
    /// Log flushes per second (each one write + one `fdatasync`).
    pub flushes_per_second: f64,
    pub entries_per_flush: f64,
    pub megabytes_written_per_second: f64,
}

/// Latency percentiles of each stage a leader measures (see `engine::stages`).
#[derive(Serialize)]
pub(crate) struct StagePercentiles {
    /// Placed in the leader's log → durable in the leader's log.
    pub leader_durable: Percentiles,
    /// Placed → committed (durable on a majority).
    pub committed: Percentiles,
    /// Placed → applied by the leader's state machine (answered right after).
    pub applied: Percentiles,
}

/// Each node's counters, where the node answers.
pub(crate) fn node_counters(
    client: &mut Client,
    nodes: &[(NodeId, SocketAddr)],
) -> Vec<(u64, NodeStats)> {
    nodes
        .iter()
        .filter_map(|&(id, _)| Some((id.0, client.node_stats(id).ok()?)))
        .collect()
}

/// The stage latencies recorded by all nodes between the two samples.
pub(crate) fn stage_figures(
    start: &[(u64, NodeStats)],
    end: &[(u64, NodeStats)],
) -> Option<StagePercentiles> {
    let mut total: Option<crate::engine::stages::StageHistograms> = None;
    for (node, after) in end {
        let delta = match start.iter().find(|(id, _)| id == node) {
            Some((_, before)) => after.stages.since(&before.stages),
            None => after.stages.clone(),
        };
        match total.as_mut() {
            None => total = Some(delta),
            Some(total) => total.add_buckets(&delta.to_buckets()),
        }
    }
    let total = total.filter(|total| !total.applied.is_empty())?;
    Some(StagePercentiles {
        leader_durable: Percentiles::of(&total.leader_durable),
        committed: Percentiles::of(&total.committed),
        applied: Percentiles::of(&total.applied),
    })
}

/// Each node's log flushes over the window of `seconds`.
pub(crate) fn log_figures(
    start: &[(u64, NodeStats)],
    end: &[(u64, NodeStats)],
    seconds: f64,
) -> Vec<NodeLogFigures> {
    start
        .iter()
        .filter_map(|(node, before)| {
            let (_, after) = end.iter().find(|(id, _)| id == node)?;
            let (before, after) = (&before.log, &after.log);
            let flushes = after.flushes.saturating_sub(before.flushes) as f64;
            let entries = after.entries_written.saturating_sub(before.entries_written) as f64;
            let bytes = after.bytes_written.saturating_sub(before.bytes_written) as f64;
            Some(NodeLogFigures {
                node: *node,
                flushes_per_second: flushes / seconds,
                entries_per_flush: if flushes > 0.0 {
                    entries / flushes
                } else {
                    0.0
                },
                megabytes_written_per_second: bytes / seconds / 1e6,
            })
        })
        .collect()
}

/// Elections begun in the window: for each group, the highest term any node reports at the end
/// minus the highest at the start (pre-vote keeps a failed campaign from raising the term, so
/// every step is a real election). `None` when no node answered at one of the ends.
pub(crate) fn elections(start: &[(u64, NodeStats)], end: &[(u64, NodeStats)]) -> Option<u64> {
    let highest = |samples: &[(u64, NodeStats)]| {
        let mut terms = std::collections::BTreeMap::new();
        for (_, stats) in samples {
            for group in &stats.groups {
                let term = terms.entry(group.group).or_insert(group.term.0);
                *term = (*term).max(group.term.0);
            }
        }
        terms
    };
    if start.is_empty() || end.is_empty() {
        return None;
    }
    let (before, after) = (highest(start), highest(end));
    Some(
        after
            .iter()
            .map(|(group, term)| term.saturating_sub(*before.get(group).unwrap_or(term)))
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Role;
    use crate::net::client_wire::GroupSummary;
    use crate::types::{GroupId, LogIndex, Term};

    fn node(id: u64, terms: &[(u64, u64)]) -> (u64, NodeStats) {
        let groups = terms
            .iter()
            .map(|&(group, term)| GroupSummary {
                group: GroupId(group),
                role: Role::Follower,
                term: Term(term),
                leader: None,
                commit: LogIndex(0),
                applied: LogIndex(0),
                last_index: LogIndex(0),
            })
            .collect();
        let stats = NodeStats {
            groups,
            ..NodeStats::default()
        };
        (id, stats)
    }

    #[test]
    fn elections_count_term_steps_of_the_highest_term_per_group() {
        let start = [node(1, &[(0, 3), (1, 7)]), node(2, &[(0, 2), (1, 7)])];
        // Group 0 moved from term 3 to 5 (node 2 lagging behind does not count twice); group 1
        // stayed.
        let end = [node(1, &[(0, 5), (1, 7)]), node(2, &[(0, 4), (1, 7)])];
        assert_eq!(elections(&start, &end), Some(2));
        assert_eq!(elections(&start, &start), Some(0));
        assert_eq!(elections(&[], &end), None);
    }
}

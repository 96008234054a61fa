//! [`NodeObserver`]: a handle on a running node's shards for its metrics and health endpoint,
//! independent of the [`crate::api::Node`] handle's lifetime.
//!
//! Invariants: asking never waits and never queues more than [`METRICS_QUEUED_MAX`] requests
//! per shard (a shard that has that many unanswered is skipped), and it goes through a channel
//! of its own, not the shard's request channel, so neither a busy shard nor a slow scraper
//! holds up the other. A shard whose thread ended is seen as stopped.

use crate::shard::metrics::ShardMetrics;
use crate::types::NodeId;

/// Most metrics requests waiting for one shard.
pub const METRICS_QUEUED_MAX: usize = 4;

/// See the module documentation. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NodeObserver {
    pub(crate) node: NodeId,
    pub(crate) shards: Vec<flume::Sender<flume::Sender<ShardMetrics>>>,
}

impl NodeObserver {
    /// The observed node's id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Asks every shard for a snapshot of its figures: one receiver per shard, in shard
    /// order, `None` for a shard that stopped or already has [`METRICS_QUEUED_MAX`]
    /// requests waiting. (The figures are the endpoint's to format: [`crate::metrics`].)
    #[cfg(feature = "metrics")]
    pub(crate) fn ask(&self) -> Vec<Option<flume::Receiver<ShardMetrics>>> {
        self.shards
            .iter()
            .map(|shard| {
                let (reply, answer) = flume::bounded(1);
                shard.try_send(reply).ok().map(|()| answer)
            })
            .collect()
    }

    /// Whether a shard has stopped (its thread ended, e.g. on a fatal storage error).
    pub fn shard_stopped(&self) -> bool {
        self.shards.iter().any(flume::Sender::is_disconnected)
    }
}

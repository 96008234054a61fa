//! Errors a node reports to whoever started it. Per-call errors of proposals are
//! [`crate::engine::ProposalError`]; storage errors are [`crate::log::Error`].

use std::path::PathBuf;

use crate::types::ShardId;

// The errors a `NodeError` carries, for embedders to match on.
pub use crate::engine::EngineError;
pub use crate::log::{Corruption, Error as LogError};
pub use crate::snapshot::SnapshotError;

/// Why a node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("data directory {path}: {reason}")]
    DataDir { path: PathBuf, reason: String },
    #[error("shard {shard}: storage: {source}")]
    Log {
        shard: ShardId,
        #[source]
        source: crate::log::Error,
    },
    #[error("shard {shard}: {source}")]
    Shard {
        shard: ShardId,
        #[source]
        source: crate::engine::EngineError,
    },
    #[error("shard {shard}: {what}: {source}")]
    Io {
        shard: ShardId,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("shard {shard}: executor: {reason}")]
    Executor { shard: ShardId, reason: String },
    #[error("shard {shard} stopped unexpectedly")]
    ShardGone { shard: ShardId },
    /// The platform refuses what the runtime needs (io_uring, locked memory): not a bug of
    /// the node or of its configuration, but of where it runs. The message says how to fix it.
    #[error("{what} ({detail}).\nFix: {fix}")]
    Platform {
        what: String,
        detail: String,
        fix: &'static str,
    },
}

impl NodeError {
    /// Whether the platform, not the node, is the problem ([`NodeError::Platform`]).
    pub fn is_platform(&self) -> bool {
        matches!(self, NodeError::Platform { .. })
    }
}

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
    /// [`crate::config::NodeConfig::validate`] refused the configuration; nothing was started.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory is not this node's, or could not be claimed for it
    /// ([`crate::api::data_dir`]); nothing was started.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The data directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The shard's log failed (recovery or a fatal write, sync or delete).
    #[error("shard {shard}: storage: {source}")]
    Log {
        /// The shard whose log failed.
        shard: ShardId,
        /// The log's error.
        #[source]
        source: crate::log::Error,
    },
    /// The shard's engine failed (snapshots, restore) and stopped.
    #[error("shard {shard}: {source}")]
    Shard {
        /// The shard that stopped.
        shard: ShardId,
        /// The engine's error.
        #[source]
        source: crate::engine::EngineError,
    },
    /// A system call of the shard failed (`what` names it: binding a port, spawning a thread).
    #[error("shard {shard}: {what}: {source}")]
    Io {
        /// The shard that made the call.
        shard: ShardId,
        /// What it was doing.
        what: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The shard's executor could not be built or run its tasks.
    #[error("shard {shard}: executor: {reason}")]
    Executor {
        /// The shard whose executor failed.
        shard: ShardId,
        /// The runtime's message.
        reason: String,
    },
    /// The shard's thread ended without saying why.
    #[error("shard {shard} stopped unexpectedly")]
    ShardGone {
        /// The shard that ended.
        shard: ShardId,
    },
    /// The platform refuses what the runtime needs (io_uring, locked memory): not a bug of
    /// the node or of its configuration, but of where it runs. The message says how to fix it.
    #[error("{what} ({detail}).\nFix: {fix}")]
    Platform {
        /// What the platform refused.
        what: String,
        /// The system's answer.
        detail: String,
        /// How to change the platform so that it allows it.
        fix: &'static str,
    },
}

impl NodeError {
    /// Whether the platform, not the node, is the problem ([`NodeError::Platform`]).
    pub fn is_platform(&self) -> bool {
        matches!(self, NodeError::Platform { .. })
    }
}

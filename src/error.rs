//! Errors a node reports to whoever started it. Per-call errors of proposals are
//! [`crate::engine::ProposalError`]; storage errors are [`crate::log::Error`]; an invalid
//! configuration is a [`ConfigError`].
//!
//! Every error enum of the public API is `#[non_exhaustive]`: match it with a wildcard arm, as
//! later versions may add variants.

#![warn(missing_docs)]

use std::path::PathBuf;

pub use crate::config::ConfigError;
use crate::types::ShardId;

// The errors a `NodeError` carries, for embedders to match on.
pub use crate::engine::EngineError;
pub use crate::log::{Corruption, Error as LogError};
pub use crate::snapshot::SnapshotError;

/// Why a node could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// [`crate::config::NodeConfig::validate`] refused the configuration; nothing was started.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The data directory is not this node's, or could not be claimed for it
    /// ([`crate::api::data_dir`]); nothing was started.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The data directory.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: DataDirError,
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
    #[error("shard {shard}: executor: {source}")]
    Executor {
        /// The shard whose executor failed.
        shard: ShardId,
        /// What failed.
        #[source]
        source: ExecutorError,
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

/// Why a data directory cannot be used by a node ([`NodeError::DataDir`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// The directory carries the marker of another node or cluster.
    #[error("belongs to another node or cluster ({found}), not {expected}")]
    OtherOwner {
        /// The marker found.
        found: String,
        /// The marker this node expects.
        expected: String,
    },
    /// The directory holds no node and [`crate::config::NodeConfig::init`] is not set: a
    /// member whose disk was wiped has forgotten its votes, so bringing one back is a
    /// deliberate act.
    #[error(
        "holds no node (no marker file); if this node is new, or its disk was replaced and you \
         accept that it may have forgotten its votes, start it with `init` set"
    )]
    NotInitialised,
    /// Reading or writing the marker failed; `step` names what was being done.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a shard's executor failed ([`NodeError::Executor`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The io_uring executor could not be built (the runtime's own message).
    #[error("cannot build the executor: {0}")]
    Build(String),
    /// A task queue of the executor could not be created (the runtime's own message).
    #[error("cannot create the {queue} task queue: {reason}")]
    TaskQueue {
        /// Which queue.
        queue: &'static str,
        /// The runtime's message.
        reason: String,
    },
    /// The shard's thread panicked.
    #[error("the shard thread panicked")]
    Panicked,
}

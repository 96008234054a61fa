//! The engine of one shard: the Raft cores of the shard's groups, their log, their state
//! machine, and everything between a core's actions and a client's answer (turn batching,
//! proposal waiters, the read queue, sends held until the flush that covers them, apply,
//! snapshots, latency by stage, counters for operators).
//!
//! The engine does no IO of its own and has no clock: storage goes through a
//! [`crate::log::LogStore`] and a snapshot store, messages leave through an outbox the driver
//! empties, and time arrives as an argument ([`ShardEngine::begin_turn`], [`ShardEngine::tick`]).
//! The same engine therefore runs in the glommio shard (production) and in the deterministic
//! simulator ([`crate::sim`]), so what a client is told is simulated, not just the core.
//!
//! Client sessions ([`sessions`]) are part of each group's replicated state: the engine keeps
//! them beside the state machine, applies session entries through them, and writes them into
//! (and restores them from) every snapshot of the group.

pub mod counters;
pub mod reads;
pub mod recover;
pub mod sessions;
mod shard_engine;
pub mod snapshot_due;
pub mod stages;
pub mod state_machine;
mod unapplied;
pub mod waiters;

pub use shard_engine::*;
pub use state_machine::{CommittedEntries, LogOnly, SnapshotJob, StateMachine};

//! A shard: one executor thread holding some of the node's Raft groups, their shared log,
//! their state machine, and their connections. Shards share nothing.

pub mod admin;
pub mod answers;
pub mod clients;
pub mod drain;
pub mod gate;
pub mod link;
pub mod mailbox;
pub mod metrics;
pub mod peers;
pub mod platform;
pub mod runtime;
pub mod tasks;
pub mod transfer;
pub mod work;

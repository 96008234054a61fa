//! The client side of ringraft: a blocking Rust client over the native client protocol (the
//! port [`crate::config::NodeConfig::client_listen`] opens).

#![warn(missing_docs)]

mod blocking;

pub use crate::engine::Committed;
pub use crate::net::client_wire::{ClientError, GroupAdminStatus, ShardStats, StageBuckets};
pub use blocking::{CallError, Client, NodeAdminStatus, NodeStats};

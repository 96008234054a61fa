//! The client side of ringraft: a blocking Rust client over the client protocol
//! ([`crate::net::client_wire`]).

mod blocking;

pub use crate::engine::Committed;
pub use crate::net::client_wire::{ClientError, GroupAdminStatus, ShardStats, StageBuckets};
pub use blocking::{CallError, Client, NodeAdminStatus, NodeStats};

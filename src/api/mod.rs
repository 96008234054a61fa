//! The embedding API: configure and start a [`Node`], implement a [`StateMachine`], propose.
//!
//! ```no_run
//! use ringraft::api::{CommittedEntries, Node, NodeConfig, PeerConfig, StateMachine};
//! use ringraft::types::{GroupId, NodeId};
//! use bytes::Bytes;
//!
//! /// Counts the bytes of every committed entry and answers with the running total.
//! #[derive(Default)]
//! struct ByteCounter(u64);
//!
//! impl StateMachine for ByteCounter {
//!     fn apply(&mut self, _group: GroupId, entries: CommittedEntries<'_>, outputs: &mut Vec<Bytes>) {
//!         for (_index, payload) in entries.iter() {
//!             self.0 += payload.len() as u64;
//!             outputs.push(Bytes::copy_from_slice(&self.0.to_le_bytes()));
//!         }
//!     }
//! }
//!
//! let peers = vec![PeerConfig { id: NodeId(1), addr: "127.0.0.1:7000".parse().unwrap(), client_addr: None }];
//! let mut config = NodeConfig::new(NodeId(1), "127.0.0.1:7000".parse().unwrap(), peers, "/tmp/ringraft-doc".into());
//! config.init = true;
//! let node = Node::start(config, |_shard| ByteCounter::default()).expect("node starts");
//! let committed = node.propose_blocking(GroupId(0), &b"hello"[..]).expect("committed");
//! println!("committed at {} -> {:?}", committed.index, committed.output);
//! node.shutdown().unwrap();
//! ```

#![warn(missing_docs)]

pub mod data_dir;
pub mod node;
pub mod observer;

pub use crate::config::{ConfigError, NodeConfig};
pub use crate::core::{Membership, MembershipChange, Role};
pub use crate::engine::sessions::SessionLimits;
pub use crate::engine::{
    Committed, CommittedEntries, GroupStatus, LogOnly, ProposalError, SnapshotJob, StateMachine,
};
pub use crate::error::NodeError;
pub use crate::net::client_wire::GroupSummary;
pub use crate::shard::work::Work;
pub use crate::types::{PeerConfig, ReadConsistency, SessionId, SessionRefusal, SessionRequest};
pub use node::Node;
pub use observer::NodeObserver;

// The limits of client sessions, and what a membership entry that does not decode reports.
pub use crate::core::MembershipError;
pub use crate::engine::sessions::{SAVED_OUTPUT_OVERHEAD_BYTES, SESSION_UNANSWERED_MAX};

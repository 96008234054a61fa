//! ringraft: a thread-per-core Raft log-replication engine.
//!
//! Embedders start a [`api::Node`] with a [`api::StateMachine`] per shard and propose through
//! it; remote programs use [`client::Client`]; [`kv`] is the replicated key-value service built
//! on the same API; [`metrics`] serves a node's Prometheus metrics and health checks. The
//! layers below (`types`, `batch`, `core`, `log`, `snapshot`, `net`, `tls`, `engine`, `shard`)
//! are public for tests and tools that work at their level; every import between them points
//! down (checked by `tests/layering.rs`).
//!
//! # Embedding
//!
//! A state machine applies committed entries in log order and answers each with an output; the
//! node replicates, persists and commits. One node that is its own majority:
//!
//! ```
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use ringraft::api::{CommittedEntries, Node, NodeConfig, PeerConfig, ProposalError, StateMachine};
//! use ringraft::types::{GroupId, NodeId};
//!
//! /// Adds each entry's little-endian u64 to a total and answers with the new total.
//! #[derive(Default)]
//! struct Counter(u64);
//!
//! impl StateMachine for Counter {
//!     fn apply(&mut self, _group: GroupId, entries: CommittedEntries<'_>, outputs: &mut Vec<Bytes>) {
//!         for (_index, payload) in entries.iter() {
//!             self.0 += payload.try_into().map(u64::from_le_bytes).unwrap_or_default();
//!             outputs.push(Bytes::copy_from_slice(&self.0.to_le_bytes()));
//!         }
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data = tempfile::tempdir()?;
//! let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?; // a free port
//! let peers = vec![PeerConfig { id: NodeId(1), addr: listen.into(), client_addr: None }];
//! let mut config = NodeConfig::new(NodeId(1), listen, peers, data.path().into());
//! config.shards = 1;
//! config.groups = 1;
//! config.init = true; // a new data directory
//! let node = Node::start(config, |_shard| Counter::default())?;
//!
//! // Until the node has elected itself, proposals are answered "not leader".
//! let committed = loop {
//!     match node.propose_blocking(GroupId(0), 5u64.to_le_bytes().to_vec()) {
//!         Ok(committed) => break committed,
//!         Err(ProposalError::NotLeader { .. }) => std::thread::sleep(Duration::from_millis(20)),
//!         Err(other) => return Err(other.into()),
//!     }
//! };
//! assert_eq!(committed.output, Bytes::copy_from_slice(&5u64.to_le_bytes()));
//! node.shutdown()?;
//! # Ok(())
//! # }
//! ```
//!
//! A cluster lists every member in `peers`; `examples/embedded_counter.rs` runs three nodes in
//! one process. [`api::StateMachine::snapshot`] and [`api::StateMachine::restore`] let the node
//! compact its log; [`api::Node::change_membership`] adds and removes members.
//!
//! The harnesses of the `ringraft` binary — the simulator, the checkers, process spawning, the
//! load generator, the chaos harness and the command line — are compiled into the library so
//! that the binary and the integration tests can reach them, but they are not part of its API
//! and are hidden from its documentation.

/// Declares an internal layer: public under the `internals` feature, for the tests, benchmarks,
/// fuzz targets and tools that work at its level, and crate-private otherwise. Hidden from the
/// documentation either way: it is not part of the API.
macro_rules! internal_layer {
    ($name:ident) => {
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        // What only the tests and tools use of the layer is compiled but unused here.
        #[allow(dead_code, unused_imports)]
        pub(crate) mod $name;
    };
}

pub mod api;
pub mod client;
pub mod config;
pub mod error;
#[cfg(feature = "kv")]
pub mod kv;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod tls;
pub mod types;

internal_layer!(batch);
internal_layer!(constants);
internal_layer!(core);
internal_layer!(engine);
internal_layer!(log);
internal_layer!(net);
internal_layer!(snapshot);
mod log_limit;
mod shard;

#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod chaos;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod check;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod loadgen;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod procs;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod sim;

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
//! A cluster lists every member in `peers`; `examples/counter_service/` is a small service
//! built this way, a replicated counter with a TCP protocol of its own.
//! [`api::StateMachine::snapshot`] and [`api::StateMachine::restore`] let the node compact its
//! log; [`api::Node::change_membership`] adds and removes members.
//!
//! Outcomes: a proposal answered `Ok` was committed and applied; an error for which
//! [`api::ProposalError::certainly_not_applied`] holds was not applied and never will be; any
//! other error (a timeout, a lost leadership, a shutdown) leaves the outcome unknown: the entry
//! may still commit. Retry such a proposal only in a client session
//! ([`api::Node::propose_in_session`]), which applies it at most once.
//!
//! The harnesses of the `ringraft` binary — the simulator, the checkers, process spawning, the
//! load generator, the chaos harness and the command line — are compiled into the library so
//! that the binary and the integration tests can reach them, but they are not part of its API
//! and are hidden from its documentation.

pub mod api;
pub mod batch;
pub mod client;
pub mod config;
pub mod constants;
pub mod core;
pub mod engine;
pub mod error;
pub mod kv;
pub mod log;
pub mod log_limit;
pub mod metrics;
pub mod net;
pub mod shard;
pub mod snapshot;
pub mod tls;
pub mod types;

#[doc(hidden)]
pub mod chaos;
#[doc(hidden)]
pub mod check;
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod fuzzing;
#[doc(hidden)]
pub mod loadgen;
#[doc(hidden)]
pub mod procs;
#[doc(hidden)]
pub mod sim;

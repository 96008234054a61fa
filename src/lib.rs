//! ringraft: a thread-per-core Raft log-replication engine on io_uring.
//!
//! Each node runs one shard per core; a shard is one thread with its own glommio executor, its
//! own log and snapshot store, its own peer and client ports, and hosts many Raft groups. An
//! embedder starts an [`api::Node`] with one [`api::StateMachine`] per shard and proposes
//! through it; the node replicates, persists and commits, and the state machine applies the
//! committed entries in log order. Remote programs use [`client::Client`].
//!
//! # Features
//!
//! Without features the library is the replication engine alone: consensus, storage,
//! snapshots, peer and client transport (TLS included), the embedding API and the Rust client.
//! Depend on it with `default-features = false` and add what you use:
//!
//! | feature | adds | pulls in |
//! |---|---|---|
//! | `metrics` | `metrics`: the Prometheus metrics and health HTTP endpoint | Tokio (one runtime on its own thread), prometheus-client, httparse |
//! | `kv` | `kv`: the replicated key-value service with its RESP (Redis protocol) port; implies `metrics` | Tokio, tokio-rustls, serde and toml (users file), hmac and sha2 |
//! | `internals` | the harnesses of the binary and the tests (simulator, checkers, fuzzing entry points, process spawning, load generator with plots, chaos harness, certificate generation), and the internal layers made public for them; implies `kv` | clap, plotters, indicatif, rcgen, ... |
//! | `cli` (default) | the command line of the `ringraft` binary; implies `internals` | tracing-subscriber, signal-hook |
//!
//! Everything under `internals` is hidden from the documentation and is not part of the API:
//! it changes whenever the tests and tools need it to.
//!
//! # Layers
//!
//! The public modules are the embedding surface: [`api`] (the node, the state machine trait and
//! their types), [`client`], [`config`], [`error`] (with the log, snapshot and engine errors a
//! [`error::NodeError`] carries), [`types`] (ids, terms, indexes, peer addresses, sessions) and
//! [`tls`] (certificates and keys of members and clients). Below them sit the internal layers,
//! lowest first: `batch` (the entry batch format), `constants` (wire limits), `core` (the
//! IO-free Raft state machine of one group), `log` (the segmented write-ahead log), `snapshot`
//! (the snapshot store), `net` (frame and message codecs), `engine` (a shard's groups driven
//! over its log, without IO of its own) and `shard` (the glommio runtime of one shard). Every
//! import between top-level modules points down, and no module of the lean library imports
//! one behind a feature (both checked by `tests/layering.rs`).
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
//! log ([`api::StateMachine::snapshot_job`] writes snapshots off the shard's thread from a
//! copy of the state); [`api::Node::change_membership`] adds and removes members.
//!
//! Outcomes: a proposal answered `Ok` was committed and applied; an error for which
//! [`api::ProposalError::certainly_not_applied`] holds was not applied and never will be; any
//! other error (a timeout, a lost leadership, a shutdown) leaves the outcome unknown: the entry
//! may still commit. Retry such a proposal only in a client session
//! ([`api::Node::propose_in_session`]), which applies it at most once.
//!
//! # Client sessions
//!
//! A proposal whose answer is lost (a timeout, a leader that crashed) has an unknown outcome:
//! proposing it again may apply it twice. A client session makes retries safe.
//! [`api::Node::register_session`] registers one in a group; each request then carries the
//! session and a sequence number ([`types::SessionRequest`]), the same on every retry, and
//! [`api::Node::propose_in_session`] applies it at most once: a retry of a request that was
//! applied is answered with the saved output instead of being applied again. The table of
//! sessions is replicated with the log and kept in every snapshot, so every replica decides
//! the same.
//!
//! Sessions do not live forever ([`api::SessionLimits`], decided by the log alone so that
//! replicas agree): a session unused for `idle_expiry` (by the clock of the leaders that placed
//! its entries) expires; registering more than `sessions_max` sessions evicts the least
//! recently used; so does holding more than `saved_bytes_max` bytes of saved outputs over all
//! the group's sessions (each output counted with [`api::SAVED_OUTPUT_OVERHEAD_BYTES`] besides
//! its own bytes). A session holds at most [`api::SESSION_UNANSWERED_MAX`] answers its client
//! has not acknowledged. A request of an expired or evicted session is refused
//! ([`types::SessionRefusal::Unknown`]), never applied twice: its outcome is then unknown to
//! the client, which must say so to its user.
//!
//! # The binary
//!
//! The `ringraft` binary (feature `cli`) runs nodes, the key-value service, benchmarks and the
//! chaos harness on top of this library; `cargo run --release -- --help` lists its commands.

// Every public item of the library is documented. With `internals` the harnesses and layers
// made public for the tests are not API, so the check is for builds without it.
#![cfg_attr(not(feature = "internals"), warn(missing_docs))]

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

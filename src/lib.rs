//! ringraft: a thread-per-core Raft log-replication engine.
//!
//! Embedders start a [`api::Node`] with a [`api::StateMachine`] per shard and propose through
//! it; remote programs use [`client::Client`]; [`kv`] is the replicated key-value service built
//! on the same API; [`metrics`] serves a node's Prometheus metrics and health checks. The
//! layers below (`types`, `batch`, `core`, `log`, `snapshot`, `net`, `engine`, `shard`) are
//! public for tests and tools that work at their level; every import between them points down
//! (checked by `tests/layering.rs`).
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

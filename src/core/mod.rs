//! The sans-IO Raft core: one group's consensus as a pure, deterministic state machine.
//!
//! [`Raft::step`] takes one [`Input`] (a tick, a proposal, a message, a durability report) and
//! appends the [`Action`]s it causes. The core never touches the clock, files, sockets or a
//! global random source: time arrives as ticks, randomness comes from a generator seeded by the
//! configuration, durability arrives as [`Input::Persisted`]. The same core therefore runs in
//! the glommio shard, in the deterministic simulator and in benchmarks.
//!
//! Durability rules the core follows (the storage contract is in [`io`]):
//! - a vote is granted only in a reply held until the vote is durable (`after_persist`);
//! - a candidate asks for votes only once its own vote is durable;
//! - a follower acknowledges only entries that are durable (it answers on `Persisted`);
//! - a leader counts its own **durable** index towards the commit, never its appended index,
//!   and sends to followers while its own write is still being synced (thesis §10.2.1);
//! - entries are applied only once committed and durable locally.

pub mod config;
mod config_history;
pub mod io;
pub mod lease;
pub mod log_view;
pub mod membership;
pub mod message;
pub mod progress;
pub mod quorum;
mod raft;
mod reads;

pub use config::{BrokenRule, Config};
pub use config_history::ConfigEntry;
pub use io::{Action, Input, ProposeError, Role};
pub use lease::ReadLease;
pub use membership::{Membership, MembershipChange, MembershipError};
pub use message::{AppendOutcome, AppendRequest, Message, RejectHint, SnapshotMeta};
pub use raft::{Raft, Recovered};

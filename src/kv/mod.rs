//! `ringraft kv`: a replicated key-value store that speaks the Redis protocol: RESP2, and
//! RESP3 after `HELLO 3`.
//!
//! ```text
//!  client ──RESP──► server ──► command table ──► router ──► gather ──► Node::run_batch (leader here)
//!                   (per connection,  (plan: one entry      │   (the batches of all connections
//!                    in-order jobs,    per group)           │    ready at once, one message
//!                    a batch per read)                      │    per shard)
//!                                                           └──► RINGRAFT.PROPOSE/READ on the
//!                                                                leader's RESP port (forward)
//!                                                  shard thread: KvStore::apply / query
//! ```
//!
//! - Keys hash to groups ([`hashing`]); each group is a Raft log whose entries are [`op`]
//!   entries applied by the [`store::KvStore`] state machine; a write is answered with the
//!   entry's output once it is committed and applied on the node that proposed it.
//! - Multi-key commands (MSET, MGET, DEL, EXISTS, DBSIZE) are split into one entry per group.
//!   Each group's part is atomic; the command as a whole is not (a client may see one group's
//!   part of an MSET before another's). Keys with the same hash tag (`{user42}:a`,
//!   `{user42}:b`) share a group, so an MSET of such keys is atomic.
//! - Any node serves any key: parts for groups led elsewhere are forwarded ([`route`],
//!   [`forward`]), in the forwarding node's client session of the group
//!   ([`forwarding_sessions`]), so a forwarded write whose reply was lost is sent again and
//!   applied once.
//! - Inside the kv every reply is RESP2 (the store's outputs, forwarded answers); a
//!   connection that chose RESP3 gets it rewritten on the way out ([`resp`]), so forwarding is
//!   the same for every client.
//! - Each connection has a [`session`]: with passwords configured ([`users`]) it must AUTH
//!   first; forwarding connections prove the cluster secret ([`peer_proof`]) before the
//!   internal commands are taken from them.

pub mod combine;
pub mod command;
pub mod forward;
pub mod forwarding_sessions;
pub mod gather;
pub mod hashing;
pub mod in_order;
pub mod info;
pub mod keyspace;
pub mod op;
pub mod parse;
pub mod peer_proof;
pub mod resp;
pub mod route;
pub mod secret_file;
pub mod server;
pub mod session;
pub mod stats;
pub mod store;
pub mod users;

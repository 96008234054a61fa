//! The metrics and health endpoint of `ringraft node` and `ringraft kv`
//! (`--metrics-listen ADDR`), or of an embedder's node ([`MetricsServer`]): an HTTP server on a
//! thread of its own, with a Tokio runtime of its own, serving
//!
//! - `GET /metrics`: Prometheus metrics as OpenMetrics text;
//! - `GET /livez`: 200 while the process serves (503 once a shard has stopped on a fatal
//!   error);
//! - `GET /readyz`: 200 when storage is recovered, every group has a known leader and this
//!   node has applied everything it knows committed; 503 otherwise, naming each failing
//!   condition;
//! - anything else: 404.
//!
//! An embedder (feature `metrics`) starts one with [`MetricsServer::start`] and hands it the
//! node once started: `server.sources().node_started(node.observer())`.
//!
//! The figures come from the shards through [`crate::api::NodeObserver`]: each scrape asks
//! every shard for a snapshot, which the shard builds between two turns of its event loop
//! (`shard::metrics` in the source). Nothing is collected while nobody scrapes.
//!
//! # Metrics
//!
//! Per group (label `group`):
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `ringraft_group_role` (label `role`: `follower`, `precandidate`, `candidate`, `leader`) | gauge | 1 for this node's role in the group, 0 for the others |
//! | `ringraft_group_term` | gauge | current term |
//! | `ringraft_group_leader` | gauge | node id of the leader this node knows (0: none) |
//! | `ringraft_group_commit_index` | gauge | highest index known committed |
//! | `ringraft_group_applied_index` | gauge | highest index applied to the state machine |
//! | `ringraft_group_last_index` | gauge | last index of the log here |
//! | `ringraft_group_leader_changes_total` | counter | times this node saw the leader change to another node |
//! | `ringraft_group_follower_match_index` (label `peer`) | gauge | on the leader: each follower's index known durable there |
//!
//! Per shard (label `shard`):
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `ringraft_shard_up` | gauge | 1 when the shard answered the scrape in time (its other metrics are missing otherwise) |
//! | `ringraft_proposals_total`, `ringraft_reads_total` | counter | proposals and reads that reached the shard (API and client port) |
//! | `ringraft_proposals_failed_total`, `ringraft_reads_failed_total` | counter | those answered with an error (not leader, timeout, overloaded, shutting down, ...) |
//! | `ringraft_proposal_duration_seconds`, `ringraft_read_duration_seconds` | histogram | from reaching the shard to the answer (for a proposal: committed and applied) |
//! | `ringraft_batch_stage_seconds` (label `stage`: `leader_durable`, `committed`, `applied`) | histogram | for each batch a leader places: from placing it to the stage (sum estimated from the mean) |
//! | `ringraft_log_flushes_total` | counter | log flushes (one write and one `fdatasync` each) |
//! | `ringraft_log_entries_written_total` | counter | entries appended to the log |
//! | `ringraft_log_written_bytes_total` | counter | encoded bytes appended to the log |
//! | `ringraft_log_flush_entries` | histogram | entries per flush |
//! | `ringraft_log_fdatasync_seconds` | histogram | duration of each flush's data syncs of log segments |
//! | `ringraft_log_compactions_total` | counter | log prefixes dropped behind a snapshot |
//! | `ringraft_snapshot_pause_seconds` | histogram | how long each snapshot held up the shard's thread (the state machine writing it, or copying its state for a snapshot job) |
//! | `ringraft_shard_tick_lateness_seconds` | histogram | how late each tick of the shard's timer ran: how long the shard's thread stood still (blocked, or without CPU); one of half an election timeout or more is also logged as a warning |
//! | `ringraft_snapshots_created_total` | counter | snapshots of the local state machine made durable |
//! | `ringraft_snapshots_installed_total` | counter | snapshots received from a leader and restored |
//! | `ringraft_snapshots_sent_total` | counter | snapshot transfers to followers started |
//! | `ringraft_session_duplicates_total` | counter | retries of client session requests that had been applied, answered with the saved output instead of being applied again ([client sessions](crate#client-sessions)) |
//!
//! Per peer link of a shard (labels `shard`, `peer`):
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `ringraft_peer_connected` | gauge | 1 while the outgoing connection is up |
//! | `ringraft_peer_connections_total` | counter | outgoing connections made |
//! | `ringraft_peer_sent_bytes_total` | counter | bytes handed to the outgoing connection |
//! | `ringraft_peer_received_bytes_total` | counter | bytes of frames read from the peer's connections |
//!
//! `ringraft kv` adds, per command (label `command`: the command's name, `unknown` for names
//! it does not know, `protocol_error` for bytes that are not RESP):
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `ringraft_resp_commands_total` | counter | commands received |
//! | `ringraft_resp_command_errors_total` | counter | those answered with an error reply |

mod exposition;
mod health;
mod http;

pub use http::{MetricsServer, Sources};

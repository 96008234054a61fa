//! Configuration of a node, with documented defaults, and its validation.
//!
//! Addresses: a node listens for peers on `listen` and for clients on `client_listen`; shard
//! `s` uses the given port plus `s` (so a node with 2 shards and `listen = 127.0.0.1:7000`
//! accepts shard 0's peer traffic on port 7000 and shard 1's on 7001). Peers are named by their
//! base addresses in the same way, so every node must run the same number of shards.

#![warn(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::tls::{NodeTls, TlsPorts};
use crate::types::{GroupId, NodeId, PeerConfig, ShardId};

/// Everything a node needs to run. Build it with [`NodeConfig::new`] (the documented
/// defaults) and set the fields to change; [`NodeConfig::validate`] checks it. Marked
/// `#[non_exhaustive]` so that new settings (with defaults) can be added.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NodeConfig {
    /// This node's id; `peers` must list it.
    pub id: NodeId,
    /// Refuses peers and data files of any other cluster.
    pub cluster_id: u64,
    /// Base address for peer traffic.
    pub listen: SocketAddr,
    /// Base address for clients; `None` serves no client port (embedding only).
    pub client_listen: Option<SocketAddr>,
    /// Address of the metrics and health endpoint (`metrics::MetricsServer`, feature `metrics`, serves it;
    /// `ringraft node` and `ringraft kv` start it); `None` serves none.
    pub metrics_listen: Option<SocketAddr>,
    /// Every member, this node included.
    pub peers: Vec<PeerConfig>,
    /// TLS for the ports it names (`None`: every port is plain TCP).
    pub tls: Option<Arc<NodeTls>>,
    /// Where the log, hard state, snapshots and the node's marker live
    /// ([`crate::api::data_dir`]).
    pub data_dir: PathBuf,
    /// Shards (one executor thread each). Default: the number of cores.
    pub shards: u32,
    /// Raft groups; group `g` lives on shard `g mod shards`. Default: one per shard.
    pub groups: u32,
    /// Call `fdatasync` for every flush (default). `false` is for measurements only: it gives up
    /// durability.
    pub fsync: bool,
    /// Length of one core tick. Default 10 ms.
    pub tick: Duration,
    /// Base election timeout; the effective one is drawn from `[t, 2t)`. Default 100 ms.
    pub election_timeout: Duration,
    /// Leader heartbeat interval. Default 20 ms.
    pub heartbeat: Duration,
    /// Proposals not committed within this are answered "timeout". Default 5 s.
    pub proposal_timeout: Duration,
    /// How long a graceful stop (`ringraft node`/`kv` on SIGTERM or SIGINT) may take to hand
    /// leadership over and answer what it took ([`crate::api::Node::drain`]). Default 2 s:
    /// twenty election timeouts at the defaults, where a handover takes a few milliseconds.
    pub drain_timeout: Duration,
    /// Most API requests (proposals, reads, ...) a shard holds, queued or awaiting their
    /// answer, and most queued in its channel beyond those, before `propose` waits. Default
    /// 65,536.
    pub proposals_queued_max: usize,
    /// How much faster one node's clock may run than another's, in percent, as lease reads
    /// assume it ([`crate::api::ReadConsistency::Lease`]). Default 10 %. See
    /// [`NodeConfig::read_lease`].
    pub clock_drift_percent: u32,
    /// Most bytes of log entries one group may hold that its state machine has not applied;
    /// beyond it the group's leader refuses proposals as overloaded (a leader without a working
    /// majority would otherwise grow at its clients' rate). Default 64 MiB.
    pub uncommitted_bytes_max: usize,
    /// How many client sessions each group keeps and for how long (the expiry policy of
    /// exactly-once proposals, [client sessions](crate#client-sessions)). Default
    /// [`SessionLimits::default`](crate::engine::sessions::SessionLimits): 4,096 sessions per
    /// group, expired after an hour unused, 64 MiB of saved answers per group.
    pub sessions: crate::engine::sessions::SessionLimits,
    /// Snapshot each group's state machine after this many applied entries and compact the
    /// log behind it (0: never). Default 100,000. Only for state machines that implement
    /// [`crate::api::StateMachine::snapshot`].
    pub snapshot_entries: u64,
    /// Snapshot only once the entries applied since the last snapshot also hold this many
    /// times its size in bytes (0: by entry count alone). Default 4: snapshots then cost at most
    /// a quarter of the log's writes, however large the state machine's state is compared to
    /// its entries.
    /// After a restart or an installed snapshot the next one is due by the entry count alone
    /// (the size of the last one is not known then).
    pub snapshot_log_ratio: u64,
    /// After a snapshot, how many entries before its index stay in the log (so that followers
    /// slightly behind catch up from the log rather than by a snapshot transfer). Default
    /// 100,000: at 300 K commits/s a follower a third of a second behind still catches up from
    /// the log (with 4,096, ordinary hiccups under load sent it snapshots).
    pub compaction_trailing_entries: u64,
    /// Snapshot file bytes per chunk frame of a snapshot transfer; a sender keeps at most four
    /// chunks unacknowledged. Default 1 MiB (the most a chunk may carry).
    pub snapshot_chunk_bytes: usize,
    /// Pin each shard's thread to a core.
    pub pin: bool,
    /// io_uring buffer memory per shard executor. Default 1 MiB (this engine does buffered
    /// file IO; the executor's DMA memory serves only sockets).
    pub io_memory_bytes: usize,
    /// Create the data directory if it holds no node yet. Without it a node refuses to start
    /// on an empty or missing data directory: a member whose disk was wiped has forgotten its
    /// votes and could vote twice in one term, so bringing one back must be a deliberate act.
    pub init: bool,
    /// Join an existing cluster: start with an empty configuration and learn the members from
    /// the leader's log or snapshot once an operator adds this node (as a learner). Until then
    /// the node never campaigns. `peers` must list this node and should list the current
    /// members, so that it can answer the leader before it has learned the configuration.
    pub join: bool,
    /// Size of new log segment files. Default 64 MiB
    /// (`log::SEGMENT_BYTES_DEFAULT`); at least
    /// [`SEGMENT_BYTES_NODE_MIN`] and a multiple of 4096. Smaller segments are for tests (the
    /// fault harness runs nodes on a small filesystem).
    pub segment_bytes: u64,
    /// A test facility: the log sleeps this long before each data sync (a slow disk). Zero by
    /// default.
    pub fsync_delay: Duration,
    /// Largest flush (bytes of log records) that a shard leading no group writes and syncs
    /// on its own thread instead of the log's writer thread: two cross-thread wake-ups fewer
    /// per flush, a large part of a follower's CPU per commit at light load, for a shard
    /// blocked during the write and sync. A sync slower than 5 ms sends the following flushes
    /// back to the writer thread until one is fast again, so a stalling disk blocks the shard
    /// once. 0 turns it off. Default 16 KiB (`log::INLINE_FLUSH_BYTES_DEFAULT`).
    pub inline_flush_bytes_max: usize,
}

/// Most shards a node runs.
pub const SHARDS_MAX: u32 = 256;

/// Longest [`NodeConfig::fsync_delay`] accepted.
pub const FSYNC_DELAY_MAX: Duration = Duration::from_secs(10);

/// Smallest segment size a node accepts: room for two records of the largest batch
/// (`constants::BATCH_BYTES_MAX`) with their headers and the
/// segment header, rounded to 4096.
pub const SEGMENT_BYTES_NODE_MIN: u64 = 2 * crate::constants::BATCH_BYTES_MAX as u64 + 4096;

impl NodeConfig {
    /// The node's TLS when the port that `uses` picks out speaks it.
    pub fn tls_on(&self, uses: impl Fn(&TlsPorts) -> bool) -> Option<Arc<NodeTls>> {
        self.tls.clone().filter(|tls| uses(&tls.ports))
    }

    /// A configuration with the documented defaults.
    pub fn new(id: NodeId, listen: SocketAddr, peers: Vec<PeerConfig>, data_dir: PathBuf) -> Self {
        let shards = std::thread::available_parallelism()
            .map(|cores| cores.get() as u32)
            .unwrap_or(1);
        NodeConfig {
            id,
            cluster_id: 1,
            listen,
            client_listen: None,
            metrics_listen: None,
            peers,
            tls: None,
            data_dir,
            shards,
            groups: shards,
            fsync: true,
            tick: Duration::from_millis(10),
            election_timeout: Duration::from_millis(100),
            heartbeat: Duration::from_millis(20),
            proposal_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(2),
            proposals_queued_max: 65_536,
            clock_drift_percent: 10,
            uncommitted_bytes_max: crate::engine::UNCOMMITTED_BYTES_MAX_DEFAULT,
            sessions: crate::engine::sessions::SessionLimits::default(),
            snapshot_entries: 100_000,
            snapshot_log_ratio: crate::engine::snapshot_due::LOG_RATIO_DEFAULT,
            compaction_trailing_entries: 100_000,
            snapshot_chunk_bytes: crate::constants::SNAPSHOT_CHUNK_BYTES_MAX,
            pin: false,
            io_memory_bytes: 1 << 20,
            init: false,
            join: false,
            segment_bytes: crate::log::SEGMENT_BYTES_DEFAULT,
            fsync_delay: Duration::ZERO,
            inline_flush_bytes_max: crate::log::INLINE_FLUSH_BYTES_DEFAULT,
        }
    }

    /// Checks the settings, alone and against each other; the error names the offending
    /// field ([`ConfigError::field`]). [`crate::api::Node::start`] calls it first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.peers.iter().any(|peer| peer.id == self.id) {
            return Err(ConfigError::PeersLackThisNode { id: self.id });
        }
        let mut ids: Vec<NodeId> = self.peers.iter().map(|peer| peer.id).collect();
        ids.sort();
        if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(ConfigError::PeerListedTwice { id: pair[0] });
        }
        if self.shards == 0 || self.shards > SHARDS_MAX {
            return Err(ConfigError::Shards {
                shards: self.shards,
            });
        }
        if self.groups < self.shards {
            return Err(ConfigError::FewerGroupsThanShards {
                groups: self.groups,
                shards: self.shards,
            });
        }
        if self.clock_drift_percent >= 100 {
            return Err(ConfigError::ClockDrift {
                percent: self.clock_drift_percent,
            });
        }
        if self.segment_bytes < SEGMENT_BYTES_NODE_MIN || self.segment_bytes % 4096 != 0 {
            return Err(ConfigError::SegmentBytes {
                bytes: self.segment_bytes,
            });
        }
        if self.uncommitted_bytes_max == 0 {
            return Err(ConfigError::UncommittedBytesMax);
        }
        if self.fsync_delay > FSYNC_DELAY_MAX {
            return Err(ConfigError::FsyncDelay {
                delay: self.fsync_delay,
            });
        }
        if !(4096..=crate::constants::SNAPSHOT_CHUNK_BYTES_MAX).contains(&self.snapshot_chunk_bytes)
        {
            return Err(ConfigError::SnapshotChunkBytes {
                bytes: self.snapshot_chunk_bytes,
            });
        }
        if self.sessions.sessions_max == 0 {
            return Err(ConfigError::SessionsMax);
        }
        if self.sessions.idle_expiry.is_zero() {
            return Err(ConfigError::SessionIdleExpiry);
        }
        if self.sessions.saved_bytes_max == 0 {
            return Err(ConfigError::SessionSavedBytesMax);
        }
        if self.tick.is_zero() {
            return Err(ConfigError::Tick);
        }
        let ticks = |d: Duration| d.as_nanos() / self.tick.as_nanos();
        if ticks(self.heartbeat) < 1 {
            return Err(ConfigError::Heartbeat {
                heartbeat: self.heartbeat,
                tick: self.tick,
            });
        }
        if ticks(self.election_timeout) <= ticks(self.heartbeat) {
            return Err(ConfigError::ElectionTimeout {
                election_timeout: self.election_timeout,
                heartbeat: self.heartbeat,
            });
        }
        let last_shard = self.shards - 1;
        for (field, base) in [
            ("listen", Some(self.listen)),
            ("client_listen", self.client_listen),
        ] {
            if let Some(base) = base {
                let port = base.port() as u32 + last_shard;
                if port > u16::MAX as u32 {
                    return Err(ConfigError::PortOverflow {
                        field,
                        shard: last_shard,
                        port,
                    });
                }
            }
        }
        Ok(())
    }

    /// How long after a majority acknowledged a leader's heartbeat round the leader may serve
    /// lease reads. A follower refuses to vote for `election timeout` ticks after it heard from
    /// the leader, but its first tick may come right after that, so it is quiet for one tick
    /// less than the timeout; the lease is that, shortened by the assumed clock drift.
    pub fn read_lease(&self) -> Duration {
        let quiet_ticks = self.ticks(self.election_timeout).saturating_sub(1);
        self.tick * quiet_ticks * (100 - self.clock_drift_percent.min(99)) / 100
    }

    /// Ticks in a duration (at least one).
    pub fn ticks(&self, duration: Duration) -> u32 {
        (duration.as_nanos() / self.tick.as_nanos()).max(1) as u32
    }

    /// The shard that holds `group`.
    pub fn shard_of(&self, group: GroupId) -> ShardId {
        ShardId((group.0 % self.shards as u64) as u32)
    }

    /// The groups held by `shard`.
    pub fn groups_of(&self, shard: ShardId) -> impl Iterator<Item = GroupId> + '_ {
        (0..self.groups as u64)
            .map(GroupId)
            .filter(move |&group| self.shard_of(group) == shard)
    }

    /// `base` shifted to `shard`'s port.
    pub fn shard_addr(base: SocketAddr, shard: ShardId) -> SocketAddr {
        let mut addr = base;
        addr.set_port(base.port() + shard.0 as u16);
        addr
    }
}

/// Why [`NodeConfig::validate`] refused a configuration. [`ConfigError::field`] names the
/// offending field of [`NodeConfig`]; the message starts with it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `peers` does not list this node's `id`.
    PeersLackThisNode {
        /// This node's id.
        id: NodeId,
    },
    /// `peers` lists a node id twice.
    PeerListedTwice {
        /// The id listed twice.
        id: NodeId,
    },
    /// `shards` is 0 or above [`SHARDS_MAX`].
    Shards {
        /// The value given.
        shards: u32,
    },
    /// `groups` is below `shards`: every shard must hold a group.
    FewerGroupsThanShards {
        /// The groups given.
        groups: u32,
        /// The shards given.
        shards: u32,
    },
    /// `clock_drift_percent` is 100 or more.
    ClockDrift {
        /// The value given.
        percent: u32,
    },
    /// `segment_bytes` is below [`SEGMENT_BYTES_NODE_MIN`] or not a multiple of 4096.
    SegmentBytes {
        /// The value given.
        bytes: u64,
    },
    /// `uncommitted_bytes_max` is zero.
    UncommittedBytesMax,
    /// `fsync_delay` exceeds [`FSYNC_DELAY_MAX`].
    FsyncDelay {
        /// The value given.
        delay: Duration,
    },
    /// `snapshot_chunk_bytes` is outside 4096 bytes to 1 MiB.
    SnapshotChunkBytes {
        /// The value given.
        bytes: usize,
    },
    /// `sessions.sessions_max` is zero.
    SessionsMax,
    /// `sessions.idle_expiry` is zero.
    SessionIdleExpiry,
    /// `sessions.saved_bytes_max` is zero.
    SessionSavedBytesMax,
    /// `tick` is zero.
    Tick,
    /// `heartbeat` is shorter than one tick.
    Heartbeat {
        /// The heartbeat interval given.
        heartbeat: Duration,
        /// The tick given.
        tick: Duration,
    },
    /// `election_timeout` does not exceed the heartbeat interval by at least one tick.
    ElectionTimeout {
        /// The election timeout given.
        election_timeout: Duration,
        /// The heartbeat interval given.
        heartbeat: Duration,
    },
    /// `field` (`listen` or `client_listen`) shifted to the last shard's port is beyond 65535.
    PortOverflow {
        /// `listen` or `client_listen`.
        field: &'static str,
        /// The last shard.
        shard: u32,
        /// The port it would need.
        port: u32,
    },
}

impl ConfigError {
    /// The [`NodeConfig`] field at fault (`sessions.sessions_max` for a field of
    /// [`NodeConfig::sessions`]).
    pub fn field(&self) -> &'static str {
        match self {
            ConfigError::PeersLackThisNode { .. } | ConfigError::PeerListedTwice { .. } => "peers",
            ConfigError::Shards { .. } => "shards",
            ConfigError::FewerGroupsThanShards { .. } => "groups",
            ConfigError::ClockDrift { .. } => "clock_drift_percent",
            ConfigError::SegmentBytes { .. } => "segment_bytes",
            ConfigError::UncommittedBytesMax => "uncommitted_bytes_max",
            ConfigError::FsyncDelay { .. } => "fsync_delay",
            ConfigError::SnapshotChunkBytes { .. } => "snapshot_chunk_bytes",
            ConfigError::SessionsMax => "sessions.sessions_max",
            ConfigError::SessionIdleExpiry => "sessions.idle_expiry",
            ConfigError::SessionSavedBytesMax => "sessions.saved_bytes_max",
            ConfigError::Tick => "tick",
            ConfigError::Heartbeat { .. } => "heartbeat",
            ConfigError::ElectionTimeout { .. } => "election_timeout",
            ConfigError::PortOverflow { field, .. } => field,
        }
    }

    /// What the field must satisfy, and what it is: the message after the field's name.
    pub fn requirement(&self) -> String {
        match self {
            ConfigError::PeersLackThisNode { id } => format!("does not list this node ({id})"),
            ConfigError::PeerListedTwice { id } => format!("lists node {id} twice"),
            ConfigError::Shards { shards } => format!("must be 1..={SHARDS_MAX}, not {shards}"),
            ConfigError::FewerGroupsThanShards { groups, shards } => format!(
                "({groups}) must be at least the number of shards ({shards}): every shard holds \
                 a group"
            ),
            ConfigError::ClockDrift { percent } => format!("must be below 100, not {percent}"),
            ConfigError::SegmentBytes { bytes } => format!(
                "must be a multiple of 4096 and at least {SEGMENT_BYTES_NODE_MIN} (two records \
                 of the largest batch), not {bytes}"
            ),
            ConfigError::UncommittedBytesMax
            | ConfigError::SessionsMax
            | ConfigError::SessionSavedBytesMax => "must be positive".into(),
            ConfigError::SessionIdleExpiry | ConfigError::Tick => "must be longer than zero".into(),
            ConfigError::FsyncDelay { delay } => {
                format!("must be at most {FSYNC_DELAY_MAX:?}, not {delay:?}")
            }
            ConfigError::SnapshotChunkBytes { bytes } => format!(
                "must be 4096..={}, not {bytes}",
                crate::constants::SNAPSHOT_CHUNK_BYTES_MAX
            ),
            ConfigError::Heartbeat { heartbeat, tick } => {
                format!("({heartbeat:?}) must be at least one tick ({tick:?})")
            }
            ConfigError::ElectionTimeout {
                election_timeout,
                heartbeat,
            } => format!(
                "({election_timeout:?}) must exceed the heartbeat interval ({heartbeat:?}) by at \
                 least one tick"
            ),
            ConfigError::PortOverflow { shard, port, .. } => {
                format!("is too high: shard {shard} would need port {port}")
            }
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.field(), self.requirement())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_node() -> NodeConfig {
        let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let peers = vec![PeerConfig {
            id: NodeId(1),
            addr: addr.into(),
            client_addr: None,
        }];
        let mut config = NodeConfig::new(NodeId(1), addr, peers, "/nowhere".into());
        config.shards = 2;
        config.groups = 2;
        config
    }

    #[test]
    fn each_refusal_names_the_field_at_fault() {
        assert_eq!(one_node().validate(), Ok(()));
        type Change = fn(&mut NodeConfig);
        let cases: [(Change, &str); 7] = [
            (|c| c.id = NodeId(2), "peers does not list this node"),
            (
                |c| c.groups = 1,
                "groups (1) must be at least the number of shards (2)",
            ),
            (
                |c| c.clock_drift_percent = 100,
                "clock_drift_percent must be below 100",
            ),
            (
                |c| c.sessions.sessions_max = 0,
                "sessions.sessions_max must be positive",
            ),
            (
                |c| c.heartbeat = c.election_timeout,
                "election_timeout (100ms) must exceed the heartbeat interval (100ms)",
            ),
            (|c| c.tick = Duration::ZERO, "tick must be longer than zero"),
            (
                |c| c.client_listen = Some("127.0.0.1:65535".parse().unwrap()),
                "client_listen is too high: shard 1 would need port 65536",
            ),
        ];
        for (change, message) in cases {
            let mut config = one_node();
            change(&mut config);
            let error = config.validate().unwrap_err();
            assert!(error.to_string().starts_with(message), "{error}");
            assert!(message.starts_with(error.field()), "{error:?}");
        }
    }
}

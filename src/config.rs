//! Configuration of a node, with documented defaults, and its validation.
//!
//! Addresses: a node listens for peers on `listen` and for clients on `client_listen`; shard
//! `s` uses the given port plus `s` (so a node with 2 shards and `listen = 127.0.0.1:7000`
//! accepts shard 0's peer traffic on port 7000 and shard 1's on 7001). Peers are named by their
//! base addresses in the same way, so every node must run the same number of shards.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::tls::{NodeTls, TlsPorts};
use crate::types::{GroupId, NodeId, PeerConfig, ShardId};

/// Everything a node needs to run.
#[derive(Clone, Debug)]
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
}

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
            compaction_trailing_entries: 100_000,
            snapshot_chunk_bytes: crate::constants::SNAPSHOT_CHUNK_BYTES_MAX,
            pin: false,
            io_memory_bytes: 1 << 20,
            init: false,
            join: false,
            segment_bytes: crate::log::SEGMENT_BYTES_DEFAULT,
            fsync_delay: Duration::ZERO,
        }
    }

    /// Checks the settings against each other; the message names the offending setting.
    pub fn validate(&self) -> Result<(), String> {
        if !self.peers.iter().any(|peer| peer.id == self.id) {
            return Err(format!("--peers does not list this node ({})", self.id));
        }
        let mut ids: Vec<NodeId> = self.peers.iter().map(|peer| peer.id).collect();
        ids.sort();
        ids.dedup();
        if ids.len() != self.peers.len() {
            return Err("--peers lists a node id twice".into());
        }
        if self.shards == 0 || self.shards > 256 {
            return Err(format!("--shards must be 1..=256, not {}", self.shards));
        }
        if self.groups < self.shards {
            return Err(format!(
                "--groups ({}) must be at least --shards ({}): every shard holds a group",
                self.groups, self.shards
            ));
        }
        if self.clock_drift_percent >= 100 {
            return Err("--clock-drift-percent must be below 100".into());
        }
        if self.segment_bytes < SEGMENT_BYTES_NODE_MIN || self.segment_bytes % 4096 != 0 {
            return Err(format!(
                "--segment-bytes must be a multiple of 4096 and at least {SEGMENT_BYTES_NODE_MIN} \
                 (two records of the largest batch), not {}",
                self.segment_bytes
            ));
        }
        if self.uncommitted_bytes_max == 0 {
            return Err("--uncommitted-bytes-max must be positive".into());
        }
        if self.fsync_delay > Duration::from_secs(10) {
            return Err("--fsync-delay-ms must be at most 10000".into());
        }
        if !(4096..=crate::constants::SNAPSHOT_CHUNK_BYTES_MAX).contains(&self.snapshot_chunk_bytes)
        {
            return Err(format!(
                "--snapshot-chunk-bytes must be 4096..={}",
                crate::constants::SNAPSHOT_CHUNK_BYTES_MAX
            ));
        }
        if self.tick.is_zero() {
            return Err("tick must be positive".into());
        }
        let ticks = |d: Duration| d.as_nanos() / self.tick.as_nanos();
        if ticks(self.heartbeat) < 1 {
            return Err("--heartbeat-ms must be at least one tick".into());
        }
        if ticks(self.election_timeout) <= ticks(self.heartbeat) {
            return Err("--election-timeout-ms must exceed --heartbeat-ms".into());
        }
        for shard in 0..self.shards {
            for port in [Some(self.listen), self.client_listen]
                .into_iter()
                .flatten()
                .map(|addr| addr.port() as u32 + shard)
            {
                if port > u16::MAX as u32 {
                    return Err(format!("shard {shard} would need port {port}"));
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

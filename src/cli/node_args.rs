//! `ringraft node` flags and config file, and their conversion into a [`NodeConfig`].
//!
//! A TOML file given with `--config` holds the same settings under the flags' names with
//! underscores (`data_dir = "..."`, `peers = "1=127.0.0.1:7000,..."`); flags given on the
//! command line override the file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::config::NodeConfig;
use crate::procs::{parse_members, FsyncMode, LogFormat};
use crate::tls::{ClientCerts, NodeTls, TlsFiles, TlsPorts};
use crate::types::NodeId;
use crate::types::PeerConfig;

#[derive(Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeArgs {
    /// Read settings from this TOML file (flags override it).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This node's id (one of --peers).
    #[arg(long)]
    pub id: Option<u64>,
    /// Base address for peer traffic (shard s listens on port + s).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Base address for clients (shard s listens on port + s).
    #[arg(long)]
    pub client_listen: Option<SocketAddr>,
    /// Address of the HTTP endpoint serving /metrics (Prometheus), /livez and /readyz.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Log line format on stderr (default text; colours only when stderr is a terminal).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Every member: ID=ADDR,... with each node's base peer address.
    #[arg(long)]
    pub peers: Option<String>,
    /// Members' client addresses, ID=ADDR,... (used to point clients at the leader).
    #[arg(long)]
    pub peer_clients: Option<String>,
    /// Where the log and hard state live.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Create the data directory if it holds no node yet (see README: wiped nodes).
    #[arg(long)]
    #[serde(default)]
    pub init: bool,
    /// Join an existing cluster with an empty configuration, learning the members from the
    /// leader once an operator adds this node (`ringraft admin add-learner`). --peers lists this
    /// node and the current members.
    #[arg(long)]
    #[serde(default)]
    pub join: bool,
    /// Shards (executor threads); default: one per core.
    #[arg(long)]
    pub shards: Option<u32>,
    /// Raft groups; default: one per shard.
    #[arg(long)]
    pub groups: Option<u32>,
    /// fdatasync policy.
    #[arg(long, value_enum)]
    pub fsync: Option<FsyncMode>,
    /// Base election timeout in milliseconds (effective: [t, 2t)).
    #[arg(long)]
    pub election_timeout_ms: Option<u64>,
    /// Leader heartbeat interval in milliseconds.
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Length of one core tick in milliseconds.
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// On SIGTERM or SIGINT, how long the node may take to hand its groups' leadership to
    /// followers and answer every request it took before exiting (default 2000).
    #[arg(long)]
    pub drain_timeout_ms: Option<u64>,
    /// Cluster id: peers and data files of other clusters are refused.
    #[arg(long)]
    pub cluster_id: Option<u64>,
    /// How much faster one node's clock may run than another's, in percent, as lease reads
    /// assume it (default 10).
    #[arg(long)]
    pub clock_drift_percent: Option<u32>,
    /// Snapshot each group's state machine after this many applied entries and compact the
    /// log behind it (default 100000; 0: never).
    #[arg(long)]
    pub snapshot_entries: Option<u64>,
    /// Snapshot only once the entries applied since the last snapshot also hold this many
    /// times its size in bytes (default 4; 0: by entry count alone).
    #[arg(long)]
    pub snapshot_log_ratio: Option<u64>,
    /// Most bytes of log entries one group may hold unapplied before its leader refuses
    /// proposals as overloaded (default 67108864, 64 MiB).
    #[arg(long)]
    pub uncommitted_bytes_max: Option<usize>,
    /// Client sessions each group keeps (exactly-once proposals); registering one more evicts
    /// the least recently used (default 4096).
    #[arg(long)]
    pub sessions_max: Option<usize>,
    /// A client session unused for this many milliseconds, by its group's clock, expires
    /// (default 3600000, an hour).
    #[arg(long)]
    pub session_idle_expiry_ms: Option<u64>,
    /// Bytes of saved answers one group keeps over all its client sessions; beyond it least
    /// recently used sessions are evicted (default 67108864, 64 MiB).
    #[arg(long)]
    pub session_saved_bytes_max: Option<usize>,
    /// Entries kept in the log before a snapshot's index when compacting (default 100000).
    #[arg(long, hide = true)]
    pub compaction_trailing_entries: Option<u64>,
    /// Bytes per snapshot transfer chunk, 4096 to 1 MiB (default 1 MiB; small values slow
    /// transfers down, for tests).
    #[arg(long, hide = true)]
    pub snapshot_chunk_bytes: Option<usize>,
    /// Pin each shard's thread to a core.
    #[arg(long)]
    #[serde(default)]
    pub pin: bool,
    /// Size of new log segment files in bytes (tests only; default 64 MiB).
    #[arg(long, hide = true)]
    pub segment_bytes: Option<u64>,
    /// Sleep this many milliseconds before each data sync of the log (tests only: a slow disk).
    #[arg(long, hide = true)]
    pub fsync_delay_ms: Option<u64>,
    /// Largest flush in bytes that a shard leading no group writes and syncs on its own
    /// thread instead of the log's writer thread (fewer wake-ups; 0: never). Default 16384.
    #[arg(long)]
    pub inline_flush_bytes_max: Option<usize>,
    /// This node's TLS certificate chain (PEM). Its subject alternative names must include the
    /// DNS name node-ID.ringraft (ID: --id). With --tls-key and --tls-ca it turns TLS on.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// The CA certificate(s) that sign every member's certificate (PEM).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Which ports speak TLS when it is on: a comma-separated subset of peer, client, resp
    /// [default: peer,client,resp]. Peer connections use mutual TLS.
    #[arg(long)]
    pub tls_ports: Option<String>,
    /// Whether the client and RESP ports ask clients for a certificate: none, optional or
    /// required [default: none].
    #[arg(long, value_parser = ["none", "optional", "required"])]
    pub client_certs: Option<String>,
    /// The CA that signs client certificates (PEM) [default: --tls-ca].
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
}

impl NodeArgs {
    /// Merges the config file (if any) under the flags and builds the node configuration.
    pub fn resolve(self) -> Result<NodeConfig, String> {
        self.merged()?.into_config()
    }

    /// The flags over the config file (if any).
    pub fn merged(self) -> Result<NodeArgs, String> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--config {}: {e}", path.display()))?;
                toml::from_str::<NodeArgs>(&text)
                    .map_err(|e| format!("--config {}: {e}", path.display()))?
            }
            None => NodeArgs::default(),
        };
        Ok(NodeArgs {
            config: None,
            id: self.id.or(file.id),
            listen: self.listen.or(file.listen),
            client_listen: self.client_listen.or(file.client_listen),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            log_format: self.log_format.or(file.log_format),
            peers: self.peers.or(file.peers),
            peer_clients: self.peer_clients.or(file.peer_clients),
            data_dir: self.data_dir.or(file.data_dir),
            init: self.init || file.init,
            join: self.join || file.join,
            shards: self.shards.or(file.shards),
            groups: self.groups.or(file.groups),
            fsync: self.fsync.or(file.fsync),
            election_timeout_ms: self.election_timeout_ms.or(file.election_timeout_ms),
            heartbeat_ms: self.heartbeat_ms.or(file.heartbeat_ms),
            tick_ms: self.tick_ms.or(file.tick_ms),
            drain_timeout_ms: self.drain_timeout_ms.or(file.drain_timeout_ms),
            cluster_id: self.cluster_id.or(file.cluster_id),
            clock_drift_percent: self.clock_drift_percent.or(file.clock_drift_percent),
            snapshot_entries: self.snapshot_entries.or(file.snapshot_entries),
            snapshot_log_ratio: self.snapshot_log_ratio.or(file.snapshot_log_ratio),
            uncommitted_bytes_max: self.uncommitted_bytes_max.or(file.uncommitted_bytes_max),
            sessions_max: self.sessions_max.or(file.sessions_max),
            session_idle_expiry_ms: self.session_idle_expiry_ms.or(file.session_idle_expiry_ms),
            session_saved_bytes_max: self
                .session_saved_bytes_max
                .or(file.session_saved_bytes_max),
            compaction_trailing_entries: self
                .compaction_trailing_entries
                .or(file.compaction_trailing_entries),
            snapshot_chunk_bytes: self.snapshot_chunk_bytes.or(file.snapshot_chunk_bytes),
            pin: self.pin || file.pin,
            segment_bytes: self.segment_bytes.or(file.segment_bytes),
            fsync_delay_ms: self.fsync_delay_ms.or(file.fsync_delay_ms),
            inline_flush_bytes_max: self.inline_flush_bytes_max.or(file.inline_flush_bytes_max),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_ca: self.tls_ca.or(file.tls_ca),
            tls_ports: self.tls_ports.or(file.tls_ports),
            client_certs: self.client_certs.or(file.client_certs),
            client_ca: self.client_ca.or(file.client_ca),
        })
    }

    /// The node configuration these settings describe.
    pub fn into_config(self) -> Result<NodeConfig, String> {
        let id = NodeId(self.id.ok_or("--id is required")?);
        let tls = self.tls(id)?.map(Arc::new);
        let listen = self.listen.ok_or("--listen is required")?;
        let data_dir = self.data_dir.ok_or("--data-dir is required")?;
        let peer_addrs = parse_members(&self.peers.ok_or("--peers is required")?, "--peers")?;
        let client_addrs = match &self.peer_clients {
            Some(list) => parse_members(list, "--peer-clients")?,
            None => Vec::new(),
        };
        let peers = peer_addrs
            .into_iter()
            .map(|(id, addr)| PeerConfig {
                id,
                addr,
                client_addr: client_addrs
                    .iter()
                    .find(|(client_id, _)| *client_id == id)
                    .map(|&(_, addr)| addr),
            })
            .collect();
        let mut config = NodeConfig::new(id, listen, peers, data_dir);
        config.client_listen = self.client_listen;
        config.metrics_listen = self.metrics_listen;
        config.tls = tls;
        config.init = self.init;
        config.join = self.join;
        config.pin = self.pin;
        if let Some(shards) = self.shards {
            config.shards = shards;
            config.groups = shards;
        }
        if let Some(groups) = self.groups {
            config.groups = groups;
        }
        config.fsync = self.fsync != Some(FsyncMode::Never);
        if let Some(ms) = self.tick_ms {
            config.tick = Duration::from_millis(ms);
        }
        if let Some(ms) = self.election_timeout_ms {
            config.election_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = self.heartbeat_ms {
            config.heartbeat = Duration::from_millis(ms);
        }
        if let Some(ms) = self.drain_timeout_ms {
            config.drain_timeout = Duration::from_millis(ms);
        }
        if let Some(cluster_id) = self.cluster_id {
            config.cluster_id = cluster_id;
        }
        if let Some(percent) = self.clock_drift_percent {
            config.clock_drift_percent = percent;
        }
        if let Some(bytes) = self.segment_bytes {
            config.segment_bytes = bytes;
        }
        if let Some(ms) = self.fsync_delay_ms {
            config.fsync_delay = Duration::from_millis(ms);
        }
        if let Some(bytes) = self.inline_flush_bytes_max {
            config.inline_flush_bytes_max = bytes;
        }
        if let Some(entries) = self.snapshot_entries {
            config.snapshot_entries = entries;
        }
        if let Some(ratio) = self.snapshot_log_ratio {
            config.snapshot_log_ratio = ratio;
        }
        if let Some(bytes) = self.uncommitted_bytes_max {
            config.uncommitted_bytes_max = bytes;
        }
        if let Some(entries) = self.compaction_trailing_entries {
            config.compaction_trailing_entries = entries;
        }
        if let Some(bytes) = self.snapshot_chunk_bytes {
            config.snapshot_chunk_bytes = bytes;
        }
        if let Some(sessions) = self.sessions_max {
            config.sessions.sessions_max = sessions;
        }
        if let Some(ms) = self.session_idle_expiry_ms {
            config.sessions.idle_expiry = Duration::from_millis(ms);
        }
        if let Some(bytes) = self.session_saved_bytes_max {
            config.sessions.saved_bytes_max = bytes;
        }
        config
            .validate()
            .map_err(|error| format!("{} {}", flag_of(error.field()), error.requirement()))?;
        Ok(config)
    }

    /// The node's TLS, when its certificate, key and CA are all given.
    fn tls(&self, id: NodeId) -> Result<Option<NodeTls>, String> {
        let files = match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            },
            (None, None, None) => {
                if self.tls_ports.is_some()
                    || self.client_certs.is_some()
                    || self.client_ca.is_some()
                {
                    return Err(
                        "--tls-ports, --client-certs and --client-ca need --tls-cert, --tls-key \
                         and --tls-ca"
                            .into(),
                    );
                }
                return Ok(None);
            }
            _ => return Err("--tls-cert, --tls-key and --tls-ca go together".into()),
        };
        let ports = match &self.tls_ports {
            Some(list) => parse_tls_ports(list)?,
            None => TlsPorts {
                peer: true,
                client: true,
                resp: true,
            },
        };
        let client_certs = match &self.client_certs {
            Some(name) => name
                .parse::<ClientCerts>()
                .map_err(|_| format!("--client-certs {name}: use none, optional or required"))?,
            None => ClientCerts::None,
        };
        NodeTls::load(id, &files, client_certs, self.client_ca.as_deref(), ports)
            .map(Some)
            .map_err(|error| error.to_string())
    }
}

/// The flag that sets the [`NodeConfig`] field `field` (as [`ConfigError::field`](crate::config::ConfigError::field) names it),
/// so that a refused configuration is reported in the command line's terms.
fn flag_of(field: &'static str) -> &'static str {
    match field {
        "peers" => "--peers",
        "shards" => "--shards",
        "groups" => "--groups",
        "listen" => "--listen",
        "client_listen" => "--client-listen",
        "clock_drift_percent" => "--clock-drift-percent",
        "segment_bytes" => "--segment-bytes",
        "uncommitted_bytes_max" => "--uncommitted-bytes-max",
        "fsync_delay" => "--fsync-delay-ms",
        "snapshot_chunk_bytes" => "--snapshot-chunk-bytes",
        "sessions.sessions_max" => "--sessions-max",
        "sessions.idle_expiry" => "--session-idle-expiry-ms",
        "sessions.saved_bytes_max" => "--session-saved-bytes-max",
        "tick" => "--tick-ms",
        "heartbeat" => "--heartbeat-ms",
        "election_timeout" => "--election-timeout-ms",
        // A setting without a flag cannot be wrong on the command line; name the field.
        other => other,
    }
}

/// Parses `--tls-ports`: a comma-separated subset of peer, client, resp.
fn parse_tls_ports(list: &str) -> Result<TlsPorts, String> {
    let mut ports = TlsPorts {
        peer: false,
        client: false,
        resp: false,
    };
    for name in list
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        match name {
            "peer" => ports.peer = true,
            "client" => ports.client = true,
            "resp" => ports.resp = true,
            other => {
                return Err(format!(
                    "--tls-ports: unknown port {other:?} (use peer, client, resp)"
                ))
            }
        }
    }
    Ok(ports)
}

//! Real `ringraft node` processes on loopback for the multi-process tests (a
//! [`LocalCluster`] of this build's binary), and reading a stopped node's log from disk.
#![allow(dead_code)]

pub mod resp;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use ringraft::batch::{BatchKind, EntryBatch, SESSION_HEADER_BYTES};
use ringraft::log::{shard_dir, DiskLog, LogConfig, LogStore};
use ringraft::procs::free_port_block;
use ringraft::procs::local_cluster::{LocalCluster, LocalClusterSpec};
use ringraft::tls::ClusterCerts;
use ringraft::types::{GroupId, LogIndex, NodeId, ShardId};

/// Cluster ids of test clusters start here (each cluster adds its port base, so clusters of
/// concurrent tests can never accept each other's nodes).
pub const CLUSTER_ID_BASE: u64 = 4242 << 16;

pub struct ProcCluster {
    cluster: LocalCluster,
    _root: tempfile::TempDir,
}

impl Deref for ProcCluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        &self.cluster
    }
}

impl DerefMut for ProcCluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        &mut self.cluster
    }
}

impl ProcCluster {
    /// Starts `size` nodes with `shards` shards and `groups` groups each.
    pub fn start(size: u64, shards: u32, groups: u32, extra_flags: &[&str]) -> ProcCluster {
        Self::launch_all(size, shards, groups, extra_flags, false, None)
    }

    /// Starts `size` nodes (`kv` ones when asked) with TLS on every port, certified by a new
    /// CA whose files are in `certs`.
    pub fn start_tls(
        size: u64,
        kv: bool,
        certs: ClusterCerts,
        extra_flags: &[&str],
    ) -> ProcCluster {
        Self::launch_all(size, 1, 1, extra_flags, kv, Some(certs))
    }

    /// Starts `size` key-value nodes (`ringraft kv`, serving RESP on their `resp_addr`).
    pub fn start_kv(size: u64, shards: u32, groups: u32, extra_flags: &[&str]) -> ProcCluster {
        Self::launch_all(size, shards, groups, extra_flags, true, None)
    }

    fn launch_all(
        size: u64,
        shards: u32,
        groups: u32,
        extra_flags: &[&str],
        kv: bool,
        tls: Option<ClusterCerts>,
    ) -> ProcCluster {
        let mut root = tempfile::tempdir().unwrap();
        if std::env::var_os("RINGRAFT_KEEP_TEST_DATA").is_some() {
            root.disable_cleanup(true);
            eprintln!("test cluster data kept in {}", root.path().display());
        }
        let base_port = free_port_block();
        let spec = LocalClusterSpec {
            exe: env!("CARGO_BIN_EXE_ringraft").into(),
            nodes: size,
            shards,
            groups,
            base_port,
            cluster_id: CLUSTER_ID_BASE + base_port as u64,
            data_root: root.path().to_path_buf(),
            extra_flags: extra_flags.iter().map(|flag| flag.to_string()).collect(),
            log_level: std::env::var("RINGRAFT_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            kv,
            tls,
        };
        let cluster = LocalCluster::start(spec).expect("cluster starts");
        ProcCluster {
            cluster,
            _root: root,
        }
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster.spec.cluster_id
    }

    pub fn shards(&self) -> u32 {
        self.cluster.spec.shards
    }

    /// Starts node `id` again (panics if it does not come up).
    pub fn relaunch(&mut self, id: NodeId, init: bool) {
        self.cluster.launch(id, init).expect("node starts");
    }

    /// Every entry `(index, term, payload)` of `group` in node `id`'s log on disk (the node
    /// must be stopped). The payload of a client session's entry is the command it carries
    /// (none for a registration): its session header is left out.
    pub fn read_log(&self, id: NodeId, group: GroupId) -> Vec<(LogIndex, u64, Vec<u8>)> {
        let shard = ShardId((group.0 % self.shards() as u64) as u32);
        let config = LogConfig::new(
            shard_dir(self.data_dir(id), shard),
            self.cluster_id(),
            shard,
        );
        let log = DiskLog::open(config).expect("open stopped node's log");
        let report = log.recovery_report();
        assert!(
            report.torn_tail.is_none(),
            "a gracefully stopped node left a torn tail: {report:?}"
        );
        let last = log.last_index(group);
        if last == LogIndex::ZERO {
            return Vec::new();
        }
        let batches: Vec<EntryBatch> = log.read(group, log.first_index(group), last).unwrap();
        batches
            .iter()
            .flat_map(|batch| {
                batch
                    .payloads()
                    .enumerate()
                    .map(|(offset, payload)| {
                        let command = match batch.kind() {
                            BatchKind::Session => &payload[SESSION_HEADER_BYTES..],
                            _ => payload,
                        };
                        (
                            batch.first_index().plus(offset as u64),
                            batch.term().0,
                            command.to_vec(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// `(status code, body)` of `GET path` at `addr` (a node's metrics and health endpoint).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}

/// The output of `child` (a client program run by a test) once it exits; killed, and the test
/// failed, if it runs longer than `limit`.
pub fn output_within(
    mut child: std::process::Child,
    limit: Duration,
    what: &str,
) -> std::process::Output {
    let deadline = std::time::Instant::now() + limit;
    while child
        .try_wait()
        .expect("wait for a child process")
        .is_none()
    {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} took over {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("a child's output")
}

//! Real `ringraft node` processes on loopback for the multi-process tests: start, kill -9,
//! restart, wait for a leader, and read each node's log from its data directory afterwards.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringraft::batch::EntryBatch;
use ringraft::log::{shard_dir, DiskLog, LogConfig, LogStore};
use ringraft::types::{GroupId, LogIndex, NodeId, ShardId};

pub const CLUSTER_ID: u64 = 4242;

/// A free loopback port with `span` free ports after it (best effort: bound then released).
pub fn free_port_block(span: u16) -> u16 {
    loop {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        if base as u32 + span as u32 >= u16::MAX as u32 {
            continue;
        }
        if (0..span).all(|offset| TcpListener::bind(("127.0.0.1", base + offset)).is_ok()) {
            return base;
        }
    }
}

pub struct ProcNode {
    pub id: NodeId,
    pub peer_addr: SocketAddr,
    pub client_addr: SocketAddr,
    pub data_dir: PathBuf,
    child: Option<Child>,
}

pub struct ProcCluster {
    pub nodes: Vec<ProcNode>,
    pub shards: u32,
    pub groups: u32,
    _root: tempfile::TempDir,
    extra_flags: Vec<String>,
}

impl ProcCluster {
    /// Starts `size` nodes with `shards` shards and `groups` groups each.
    pub fn start(size: u64, shards: u32, groups: u32, extra_flags: &[&str]) -> ProcCluster {
        let root = tempfile::tempdir().unwrap();
        let base = free_port_block((size as u16) * 20 + 20);
        let nodes = (1..=size)
            .map(|id| ProcNode {
                id: NodeId(id),
                peer_addr: format!("127.0.0.1:{}", base + (id as u16) * 20)
                    .parse()
                    .unwrap(),
                client_addr: format!("127.0.0.1:{}", base + (id as u16) * 20 + 10)
                    .parse()
                    .unwrap(),
                data_dir: root.path().join(format!("node-{id}")),
                child: None,
            })
            .collect();
        let mut cluster = ProcCluster {
            nodes,
            shards,
            groups,
            _root: root,
            extra_flags: extra_flags.iter().map(|s| s.to_string()).collect(),
        };
        for id in 1..=size {
            cluster.launch(NodeId(id), true);
        }
        cluster
    }

    fn node(&self, id: NodeId) -> &ProcNode {
        &self.nodes[id.0 as usize - 1]
    }

    pub fn command(&self, id: NodeId, init: bool) -> Command {
        let node = self.node(id);
        let peers: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}={}", n.id.0, n.peer_addr))
            .collect();
        let clients: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}={}", n.id.0, n.client_addr))
            .collect();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringraft"));
        command
            .arg("node")
            .args(["--id", &id.0.to_string()])
            .args(["--listen", &node.peer_addr.to_string()])
            .args(["--client-listen", &node.client_addr.to_string()])
            .args(["--peers", &peers.join(",")])
            .args(["--peer-clients", &clients.join(",")])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--shards", &self.shards.to_string()])
            .args(["--groups", &self.groups.to_string()])
            .args(["--cluster-id", &CLUSTER_ID.to_string()])
            .args(&self.extra_flags)
            .env("RUST_LOG", "warn");
        if init {
            command.arg("--init");
        }
        command
    }

    /// Starts node `id` and waits for its "ready" line.
    pub fn launch(&mut self, id: NodeId, init: bool) {
        let mut child = self
            .command(id, init)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ringraft node");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert!(line.contains("ready"), "node {id} did not start: {line:?}");
        self.nodes[id.0 as usize - 1].child = Some(child);
    }

    /// kill -9.
    pub fn kill(&mut self, id: NodeId) {
        if let Some(mut child) = self.nodes[id.0 as usize - 1].child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self, id: NodeId) {
        if let Some(mut child) = self.nodes[id.0 as usize - 1].child.take() {
            // SAFETY: kill(2) on a child we spawned.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn stop_all(&mut self) {
        for id in 1..=self.nodes.len() as u64 {
            self.stop(NodeId(id));
        }
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.node(id).child.is_some()
    }

    pub fn client_addrs(&self) -> Vec<(NodeId, SocketAddr)> {
        self.nodes.iter().map(|n| (n.id, n.client_addr)).collect()
    }

    pub fn data_dir(&self, id: NodeId) -> &Path {
        &self.node(id).data_dir
    }

    /// Every entry `(index, term, payload)` of `group` in node `id`'s log on disk (the node
    /// must be stopped).
    pub fn read_log(&self, id: NodeId, group: GroupId) -> Vec<(LogIndex, u64, Vec<u8>)> {
        let shard = ShardId((group.0 % self.shards as u64) as u32);
        let config = LogConfig::new(shard_dir(self.data_dir(id), shard), CLUSTER_ID, shard);
        let log = DiskLog::open(config).expect("open stopped node's log");
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
                        (
                            batch.first_index().plus(offset as u64),
                            batch.term().0,
                            payload.to_vec(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Drop for ProcCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

//! The harness's cluster: `ringraft kv` processes on their own loopback addresses, wired to
//! each other only through one [`Proxy`] pair per directed link.
//!
//! Node `i` listens on `127.0.0.(10+i)` (peer port `p`, client port `p+1`, RESP port `p+2`,
//! the same ports on every node's address). For every ordered pair `i → j` there is a peer
//! proxy and a RESP proxy on `127.0.0.1` forwarding to node `j`; node `i`'s `--peers` and
//! `--resp-peers` name those proxies for every `j ≠ i`. So Raft traffic and forwarded commands
//! from `i` to `j` both cross the link `i → j`, and a fault on the link breaks both.
//!
//! Invariants: nodes run with one shard (one proxy per link suffices); a node's stderr is
//! appended to `node-<i>.log` beside its data directory; the nodes share a fresh cluster
//! secret in `cluster-secret` there; children are started from the thread that owns the
//! cluster and die with the harness (`PR_SET_PDEATHSIG`) or on drop.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::chaos::proxy::{LinkState, Proxy};
use crate::chaos::resp_client::RespConnection;
use crate::kv::peer_proof::ClusterSecret;
use crate::kv::resp::Value;
use crate::procs::local_cluster::{die_with_parent, stop_gracefully};

/// Raft groups of every harness node.
pub const GROUPS: u32 = 3;
/// How long a node may take to print its "ready" line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How the cluster runs.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub exe: PathBuf,
    pub nodes: u64,
    pub cluster_id: u64,
    pub root: PathBuf,
    /// `--fsync never` on every node.
    pub no_fsync: bool,
    /// `--segment-bytes` of every node (small, so a node fits a small filesystem).
    pub segment_bytes: u64,
    /// `--snapshot-entries` of every node (0: never); compaction keeps a quarter of that
    /// behind each snapshot.
    pub snapshot_entries: u64,
}

/// The two proxies of one directed link.
struct Link {
    peer: Proxy,
    resp: Proxy,
}

/// A running cluster (nodes may be down).
pub struct ChaosCluster {
    spec: ClusterSpec,
    port: u16,
    links: BTreeMap<(u64, u64), Link>,
    children: BTreeMap<u64, Child>,
    paused: BTreeMap<u64, bool>,
    /// `--fsync-delay-ms` of nodes started with one.
    fsync_delays: BTreeMap<u64, Duration>,
}

/// Node `id`'s loopback address.
pub fn node_ip(id: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + id as u8))
}

/// A port `p` such that `p`, `p+1`, `p+2` are free on every node address.
fn free_ports(nodes: u64, seed: u64) -> Result<u16, String> {
    for attempt in 0..200u64 {
        let port = 30_000 + ((seed.wrapping_mul(7919) + attempt * 104_729) % 25_000) as u16;
        let free = (1..=nodes)
            .all(|id| (0..3).all(|offset| TcpListener::bind((node_ip(id), port + offset)).is_ok()));
        if free {
            return Ok(port);
        }
    }
    Err("no free ports on the node addresses".into())
}

impl ChaosCluster {
    /// Starts the proxies and every node (with `--init`).
    pub fn start(spec: ClusterSpec) -> Result<ChaosCluster, String> {
        let port = free_ports(spec.nodes, spec.cluster_id)?;
        std::fs::create_dir_all(&spec.root).map_err(|e| format!("{}: {e}", spec.root.display()))?;
        ClusterSecret::create_file(&spec.root.join("cluster-secret"))?;
        let mut links = BTreeMap::new();
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        for from in 1..=spec.nodes {
            for to in (1..=spec.nodes).filter(|&to| to != from) {
                let proxy = |offset| {
                    Proxy::start(any, SocketAddr::new(node_ip(to), port + offset))
                        .map_err(|e| format!("proxy {from}->{to}: {e}"))
                };
                links.insert(
                    (from, to),
                    Link {
                        peer: proxy(0)?,
                        resp: proxy(2)?,
                    },
                );
            }
        }
        let mut cluster = ChaosCluster {
            spec,
            port,
            links,
            children: BTreeMap::new(),
            paused: BTreeMap::new(),
            fsync_delays: BTreeMap::new(),
        };
        for id in cluster.ids() {
            cluster.launch(id, true)?;
        }
        Ok(cluster)
    }

    pub fn ids(&self) -> std::ops::RangeInclusive<u64> {
        1..=self.spec.nodes
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.spec.root.join(format!("node-{id}"))
    }

    fn log_path(&self, id: u64) -> PathBuf {
        self.spec.root.join(format!("node-{id}.log"))
    }

    /// Where clients reach node `id` directly.
    pub fn resp_addr(&self, id: u64) -> SocketAddr {
        SocketAddr::new(node_ip(id), self.port + 2)
    }

    fn command(&self, id: u64, init: bool) -> Command {
        let list = |own: u16, proxied: fn(&Link) -> &Proxy| {
            self.ids()
                .map(|peer| {
                    let addr = if peer == id {
                        SocketAddr::new(node_ip(id), self.port + own)
                    } else {
                        proxied(&self.links[&(id, peer)]).addr()
                    };
                    format!("{peer}={addr}")
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut command = Command::new(&self.spec.exe);
        command
            .arg("kv")
            .args(["--id", &id.to_string()])
            .args([
                "--listen",
                &SocketAddr::new(node_ip(id), self.port).to_string(),
            ])
            .args([
                "--client-listen",
                &SocketAddr::new(node_ip(id), self.port + 1).to_string(),
            ])
            .args(["--resp-listen", &self.resp_addr(id).to_string()])
            .args(["--peers", &list(0, |link| &link.peer)])
            .args(["--resp-peers", &list(2, |link| &link.resp)])
            .arg("--cluster-secret-file")
            .arg(self.spec.root.join("cluster-secret"))
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--shards", "1", "--groups", &GROUPS.to_string()])
            .args(["--cluster-id", &self.spec.cluster_id.to_string()])
            .args(["--segment-bytes", &self.spec.segment_bytes.to_string()])
            .args([
                "--snapshot-entries",
                &self.spec.snapshot_entries.to_string(),
            ])
            .args([
                "--compaction-trailing-entries",
                &(self.spec.snapshot_entries / 4).to_string(),
            ])
            .env("RUST_LOG", "warn");
        if let Some(delay) = self.fsync_delays.get(&id) {
            command.args(["--fsync-delay-ms", &delay.as_millis().to_string()]);
        }
        if self.spec.no_fsync {
            command.args(["--fsync", "never"]);
        }
        if init {
            command.arg("--init");
        }
        die_with_parent(&mut command);
        command
    }

    /// Starts node `id` and waits for its "ready" line. On failure returns the tail of its
    /// log (the node's own explanation).
    pub fn launch(&mut self, id: u64, init: bool) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .map_err(|e| format!("node {id} log: {e}"))?;
        let mut child = self
            .command(id, init)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start node {id}: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = ready_tx.send(first);
            // Keep draining so the node never blocks on a full pipe.
            for _ in lines {}
        });
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(line) if line.contains("ready") => {
                self.children.insert(id, child);
                self.paused.insert(id, false);
                Ok(())
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "node {id} did not start: {}",
                    self.log_tail(id).trim_end()
                ))
            }
        }
    }

    /// Starts of node `id` from now on get `--fsync-delay-ms` (`None`: no delay).
    pub fn set_fsync_delay(&mut self, id: u64, delay: Option<Duration>) {
        match delay {
            Some(delay) => self.fsync_delays.insert(id, delay),
            None => self.fsync_delays.remove(&id),
        };
    }

    /// The exit status of node `id` if it exited by itself (it then counts as down).
    pub fn take_exit(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let status = self.children.get_mut(&id)?.try_wait().ok()??;
        self.children.remove(&id);
        self.paused.remove(&id);
        Some(status)
    }

    /// The last lines of node `id`'s log.
    pub fn log_tail(&self, id: u64) -> String {
        let text = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// kill -9 of node `id` (also when paused).
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused.remove(&id);
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self, id: u64) {
        self.resume(id);
        if let Some(child) = self.children.remove(&id) {
            stop_gracefully(child);
        }
    }

    fn signal(&mut self, id: u64, signal: i32, paused: bool) {
        if let Some(child) = self.children.get(&id) {
            // SAFETY: kill(2) on our own child with a valid signal.
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
            self.paused.insert(id, paused);
        }
    }

    /// SIGSTOP.
    pub fn pause(&mut self, id: u64) {
        self.signal(id, libc::SIGSTOP, true);
    }

    /// SIGCONT (if paused).
    pub fn resume(&mut self, id: u64) {
        if self.paused.get(&id) == Some(&true) {
            self.signal(id, libc::SIGCONT, false);
        }
    }

    pub fn is_up(&self, id: u64) -> bool {
        self.children.contains_key(&id)
    }

    /// A node that exited on its own, with its status and log tail.
    pub fn exited(&mut self) -> Option<String> {
        let mut dead = None;
        for (id, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                dead = Some((*id, status));
                break;
            }
        }
        let (id, status) = dead?;
        self.children.remove(&id);
        Some(format!(
            "node {id} exited ({status}): {}",
            self.log_tail(id).trim_end()
        ))
    }

    /// Sets both proxies of link `from → to`.
    pub fn set_link(&self, from: u64, to: u64, state: LinkState) {
        let link = &self.links[&(from, to)];
        link.peer.set_state(state);
        link.resp.set_state(state);
    }

    pub fn set_delay(&self, from: u64, to: u64, delay: Duration) {
        let link = &self.links[&(from, to)];
        link.peer.set_delay(delay);
        link.resp.set_delay(delay);
    }

    pub fn reset_link(&self, from: u64, to: u64) {
        let link = &self.links[&(from, to)];
        link.peer.reset_connections();
        link.resp.reset_connections();
    }

    /// Every link up without delay.
    pub fn heal_links(&self) {
        for link in self.links.values() {
            for proxy in [&link.peer, &link.resp] {
                proxy.set_state(LinkState::Up);
                proxy.set_delay(Duration::ZERO);
            }
        }
    }

    /// The node that node `asked` believes leads group 0 (by INFO), if it is up and knows.
    fn leader_seen_by(&self, asked: u64) -> Option<u64> {
        if !self.is_up(asked) || self.paused.get(&asked) == Some(&true) {
            return None;
        }
        let mut connection =
            RespConnection::connect(self.resp_addr(asked), Duration::from_millis(500)).ok()?;
        let Value::Bulk(text) = connection.call(&[b"INFO"]).ok()? else {
            return None;
        };
        let text = String::from_utf8_lossy(&text).into_owned();
        let line = text.lines().find(|line| line.starts_with("group0:"))?;
        let leader = line.split(',').find_map(|f| f.strip_prefix("leader="))?;
        leader.parse().ok()
    }

    /// The leader of group 0 as some running node sees it.
    pub fn leader(&self) -> Option<u64> {
        self.ids()
            .find_map(|id| self.leader_seen_by(id))
            .filter(|&id| self.is_up(id))
    }

    /// Waits up to `limit` for a leader of group 0.
    pub fn await_leader(&self, limit: Duration) -> Option<u64> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(leader) = self.leader() {
                return Some(leader);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The harness's root directory.
    pub fn root(&self) -> &Path {
        &self.spec.root
    }
}

impl Drop for ChaosCluster {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

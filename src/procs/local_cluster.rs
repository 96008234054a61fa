//! A cluster of `ringraft node` processes on loopback, as `ringraft cluster`, `ringraft bench`
//! and the multi-process tests start it.
//!
//! Node `i` listens for peers on `base_port + 20 i` and for clients on `base_port + 20 i + 10`
//! (shard `s` adds `s`, so up to 10 shards fit); a key-value cluster's node `i` serves RESP on
//! `base_port + 200 + i`; every node serves metrics and health checks on `base_port + 220 + i`.
//! Children are killed when the value is dropped, and die with the starting process if it is
//! killed. A key-value cluster's nodes share a fresh cluster secret, written to
//! `cluster-secret` in the data root (readable by its owner only).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kv::peer_proof::ClusterSecret;
use crate::tls::ClusterCerts;
use crate::types::NodeId;

/// Makes the child started by `command` die with the process that starts it, even when that
/// one is killed outright (an interrupted bench, test or chaos run must not leave nodes holding
/// ports). The child gets a process group of its own, so a terminal's Ctrl-C reaches only the
/// parent, which stops its children with one SIGTERM each: a node that got the terminal's
/// SIGINT too would take the parent's SIGTERM as a second signal and skip its graceful stop.
pub fn die_with_parent(command: &mut Command) {
    command.process_group(0);
    // SAFETY: prctl(2) is async-signal-safe and touches only the child being started.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// SIGTERM to `child`, SIGKILL if it has not exited within 10 s.
pub fn stop_gracefully(mut child: Child) {
    // SAFETY: kill(2) on a child this process spawned, with a valid signal.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Node `i`'s metrics port is `base_port + METRICS_OFFSET + i`.
pub const METRICS_OFFSET: u64 = 220;

fn metrics_addr(base_port: u16, id: u64) -> SocketAddr {
    SocketAddr::from((
        [127, 0, 0, 1],
        (base_port as u64 + METRICS_OFFSET + id) as u16,
    ))
}

/// How to start the cluster.
#[derive(Clone, Debug)]
pub struct LocalClusterSpec {
    /// The `ringraft` binary.
    pub exe: PathBuf,
    pub nodes: u64,
    pub shards: u32,
    pub groups: u32,
    pub base_port: u16,
    pub cluster_id: u64,
    /// Parent of the nodes' data directories.
    pub data_root: PathBuf,
    /// More flags for every node (e.g. `--fsync never`).
    pub extra_flags: Vec<String>,
    /// `RUST_LOG` of the nodes.
    pub log_level: String,
    /// Start `ringraft kv` nodes (serving RESP) instead of `ringraft node`.
    pub kv: bool,
    /// Certificates to turn TLS on with (every port).
    pub tls: Option<ClusterCerts>,
}

pub struct LocalNode {
    pub id: NodeId,
    pub peer_addr: SocketAddr,
    pub client_addr: SocketAddr,
    /// Where a `ringraft kv` node serves RESP clients.
    pub resp_addr: SocketAddr,
    /// Where the node serves `/metrics`, `/livez` and `/readyz`.
    pub metrics_addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Started with `--join` (an empty configuration, learned from the leader).
    pub join: bool,
    child: Option<Child>,
}

pub struct LocalCluster {
    pub spec: LocalClusterSpec,
    pub nodes: Vec<LocalNode>,
    /// The kv nodes' `--cluster-secret-file`.
    cluster_secret: Option<PathBuf>,
}

impl LocalCluster {
    /// Starts every node and waits until each reports ready.
    pub fn start(spec: LocalClusterSpec) -> Result<LocalCluster, String> {
        if spec.shards > 10 {
            return Err("at most 10 shards per node in a local cluster".into());
        }
        let top =
            spec.base_port as u64 + (20 * spec.nodes + 20).max(METRICS_OFFSET + 1 + spec.nodes);
        if top > u16::MAX as u64 {
            return Err(format!(
                "base port {} leaves no room for the nodes",
                spec.base_port
            ));
        }
        let nodes = (1..=spec.nodes)
            .map(|id| {
                let peer = spec.base_port + 20 * id as u16;
                LocalNode {
                    id: NodeId(id),
                    peer_addr: SocketAddr::from(([127, 0, 0, 1], peer)),
                    client_addr: SocketAddr::from(([127, 0, 0, 1], peer + 10)),
                    resp_addr: SocketAddr::from(([127, 0, 0, 1], spec.base_port + 200 + id as u16)),
                    metrics_addr: metrics_addr(spec.base_port, id),
                    data_dir: spec.data_root.join(format!("node-{id}")),
                    join: false,
                    child: None,
                }
            })
            .collect();
        let cluster_secret = if spec.kv {
            let path = spec.data_root.join("cluster-secret");
            std::fs::create_dir_all(&spec.data_root)
                .map_err(|e| format!("{}: {e}", spec.data_root.display()))?;
            ClusterSecret::create_file(&path)?;
            Some(path)
        } else {
            None
        };
        let mut cluster = LocalCluster {
            spec,
            nodes,
            cluster_secret,
        };
        for id in 1..=cluster.spec.nodes {
            cluster.launch(NodeId(id), true)?;
        }
        Ok(cluster)
    }

    /// Adds node `nodes + 1` (not started) that joins with `--join`; every node started from
    /// now on lists it in `--peers`. Returns its id.
    pub fn add_node(&mut self) -> Result<NodeId, String> {
        let id = self.nodes.len() as u64 + 1;
        let peer = self.spec.base_port as u64 + 20 * id;
        if id > 9 || peer + 10 + self.spec.shards as u64 > u16::MAX as u64 {
            return Err(format!("no room for node {id}"));
        }
        let peer = peer as u16;
        self.nodes.push(LocalNode {
            id: NodeId(id),
            peer_addr: SocketAddr::from(([127, 0, 0, 1], peer)),
            client_addr: SocketAddr::from(([127, 0, 0, 1], peer + 10)),
            resp_addr: SocketAddr::from(([127, 0, 0, 1], self.spec.base_port + 200 + id as u16)),
            metrics_addr: metrics_addr(self.spec.base_port, id),
            data_dir: self.spec.data_root.join(format!("node-{id}")),
            join: true,
            child: None,
        });
        Ok(NodeId(id))
    }

    /// Whether node `id` starts with `--join` from now on.
    pub fn set_join(&mut self, id: NodeId, join: bool) {
        self.nodes[id.0 as usize - 1].join = join;
    }

    fn node(&self, id: NodeId) -> &LocalNode {
        &self.nodes[id.0 as usize - 1]
    }

    /// The command line that starts node `id`.
    pub fn command(&self, id: NodeId, init: bool) -> Command {
        let node = self.node(id);
        let list = |addr: fn(&LocalNode) -> SocketAddr| {
            self.nodes
                .iter()
                .map(|n| format!("{}={}", n.id.0, addr(n)))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut command = Command::new(&self.spec.exe);
        if self.spec.kv {
            command
                .arg("kv")
                .args(["--resp-listen", &node.resp_addr.to_string()])
                .args(["--resp-peers", &list(|n| n.resp_addr)]);
            if let Some(path) = &self.cluster_secret {
                command.arg("--cluster-secret-file").arg(path);
            }
        } else {
            command.arg("node");
        }
        command
            .args(["--id", &id.0.to_string()])
            .args(["--listen", &node.peer_addr.to_string()])
            .args(["--client-listen", &node.client_addr.to_string()])
            .args(["--metrics-listen", &node.metrics_addr.to_string()])
            .args(["--peers", &list(|n| n.peer_addr)])
            .args(["--peer-clients", &list(|n| n.client_addr)])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--shards", &self.spec.shards.to_string()])
            .args(["--groups", &self.spec.groups.to_string()])
            .args(["--cluster-id", &self.spec.cluster_id.to_string()])
            .args(&self.spec.extra_flags)
            .env("RUST_LOG", &self.spec.log_level);
        if let Some(certs) = &self.spec.tls {
            let files = certs.node(id);
            command
                .arg("--tls-cert")
                .arg(&files.cert)
                .arg("--tls-key")
                .arg(&files.key)
                .arg("--tls-ca")
                .arg(&files.ca);
        }
        if init {
            command.arg("--init");
        }
        if node.join {
            command.arg("--join");
        }
        die_with_parent(&mut command);
        command
    }

    /// Starts node `id` and waits for its "ready" line.
    pub fn launch(&mut self, id: NodeId, init: bool) -> Result<(), String> {
        self.launch_with_stderr(id, init, Stdio::inherit())
    }

    /// [`LocalCluster::launch`] with the node's standard error going to `stderr` (e.g. a file
    /// a test reads).
    pub fn launch_with_stderr(
        &mut self,
        id: NodeId,
        init: bool,
        stderr: Stdio,
    ) -> Result<(), String> {
        let mut child = self
            .command(id, init)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("start node {id}: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        if !line.contains("ready") {
            // No "ready" line: the node exited (its message, on the inherited stderr, is
            // above), or printed something else; it is killed in that case.
            let _ = child.kill();
            let status = child
                .wait()
                .map_or_else(|e| e.to_string(), |status| status.to_string());
            return Err(format!(
                "node {id} did not start ({status}; see its message above)"
            ));
        }
        self.nodes[id.0 as usize - 1].child = Some(child);
        Ok(())
    }

    /// kill -9 of node `id`.
    pub fn kill(&mut self, id: NodeId) {
        if let Some(mut child) = self.nodes[id.0 as usize - 1].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM to node `id`, SIGKILL if it has not exited within 10 s.
    pub fn stop(&mut self, id: NodeId) {
        if let Some(child) = self.nodes[id.0 as usize - 1].child.take() {
            stop_gracefully(child);
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

    /// Node `id`'s process id, while it runs.
    pub fn pid(&self, id: NodeId) -> Option<u32> {
        self.node(id).child.as_ref().map(Child::id)
    }

    /// Node `id`'s exit status once its process has exited (it then counts as down); `None`
    /// while it runs.
    pub fn reap(&mut self, id: NodeId) -> Option<std::process::ExitStatus> {
        let node = &mut self.nodes[id.0 as usize - 1];
        let status = node.child.as_mut()?.try_wait().ok()??;
        node.child = None;
        Some(status)
    }

    /// The first node that exited on its own, if any, with its status.
    pub fn exited(&mut self) -> Option<(NodeId, String)> {
        for node in &mut self.nodes {
            if let Some(child) = &mut node.child {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some((node.id, status.to_string()));
                }
            }
        }
        None
    }

    pub fn client_addrs(&self) -> Vec<(NodeId, SocketAddr)> {
        self.nodes.iter().map(|n| (n.id, n.client_addr)).collect()
    }

    /// Every node's RESP address (served by `ringraft kv` nodes).
    pub fn resp_addrs(&self) -> Vec<(NodeId, SocketAddr)> {
        self.nodes.iter().map(|n| (n.id, n.resp_addr)).collect()
    }

    pub fn data_dir(&self, id: NodeId) -> &Path {
        &self.node(id).data_dir
    }

    /// The kv nodes' `--cluster-secret-file` (a node reads it when it starts).
    pub fn cluster_secret_file(&self) -> Option<&Path> {
        self.cluster_secret.as_deref()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

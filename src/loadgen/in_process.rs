//! `ringraft bench --in-process`: every node of the cluster runs inside the bench process
//! (through the embedding API), and the load goes straight into [`Node::propose`] instead of
//! through client sockets. What remains between the nodes is the peer transport over loopback
//! TCP, exactly as in production; what is gone is the client protocol and the process
//! boundaries, so the figures show the engine's own cost.
//!
//! Each load "connection" is a thread with a small glommio executor carrying its logical
//! clients together: closed loop runs clients × `pipeline` tasks that each propose, await the
//! commit and propose again; open loop starts one task per due proposal at the clients'
//! combined rate and measures from its intended send time. The nodes keep their client ports,
//! so leader discovery and node statistics work as for node processes. A refusal naming
//! another leader moves the connection there, as over sockets.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};

use crate::api::{LogOnly, Node, NodeConfig, PeerConfig, ProposalError};
use crate::loadgen::load::{ConnectionResult, LoadCounters, Pace, Schedule, OUTSTANDING_MAX};
use crate::types::{GroupId, NodeId};

/// io_uring memory of a load thread's executor (it does no file IO).
const LOAD_EXECUTOR_IO_MEMORY: usize = 64 << 10;
/// How long answers are awaited after the load stops.
const DRAIN: Duration = Duration::from_secs(5);

/// Nodes started in this process.
pub struct InProcessCluster {
    nodes: Vec<Arc<Node>>,
}

/// How to start it.
pub struct InProcessSpec<'a> {
    pub nodes: u64,
    pub shards: u32,
    pub groups: u32,
    pub base_port: u16,
    pub data_root: &'a Path,
    pub fsync: bool,
}

impl InProcessCluster {
    /// Starts the nodes with the same port layout as a local cluster of processes (peers on
    /// `base + 20 i`, clients on `base + 20 i + 10`).
    pub fn start(spec: InProcessSpec<'_>) -> Result<InProcessCluster, String> {
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let peers: Vec<PeerConfig> = (1..=spec.nodes)
            .map(|id| {
                let peer = spec.base_port + 20 * id as u16;
                PeerConfig {
                    id: NodeId(id),
                    addr: addr(peer).into(),
                    client_addr: Some(addr(peer + 10)),
                }
            })
            .collect();
        let mut nodes = Vec::new();
        for peer in &peers {
            let data_dir = spec.data_root.join(format!("node-{}", peer.id.0));
            let mut config = NodeConfig::new(
                peer.id,
                addr(peer.id.0 as u16 * 20 + spec.base_port),
                peers.clone(),
                data_dir,
            );
            config.client_listen = peer.client_addr;
            config.shards = spec.shards;
            config.groups = spec.groups;
            config.fsync = spec.fsync;
            config.init = true;
            let node = Node::start(config, |_shard| LogOnly)
                .map_err(|error| format!("node {} did not start: {error}", peer.id))?;
            nodes.push(Arc::new(node));
        }
        Ok(InProcessCluster { nodes })
    }

    /// Client addresses, for leader discovery and statistics.
    pub fn client_addrs(&self) -> Vec<(NodeId, SocketAddr)> {
        self.nodes
            .iter()
            .map(|node| {
                let peer = node
                    .config()
                    .peers
                    .iter()
                    .find(|peer| peer.id == node.id())
                    .expect("a node is among its peers");
                (
                    node.id(),
                    peer.client_addr.expect("in-process nodes serve clients"),
                )
            })
            .collect()
    }

    pub fn node(&self, id: NodeId) -> Option<Arc<Node>> {
        self.nodes.iter().find(|node| node.id() == id).cloned()
    }
}

/// Runs one connection's clients (`pace` is theirs together) against `leader` until the
/// schedule's end, moving to the new leader whenever a refusal names one. A reconnected
/// open-loop connection counts its intended send times from the move.
pub fn run_connection(
    nodes: &[Arc<Node>],
    mut leader: NodeId,
    group: GroupId,
    payload: Bytes,
    pace: Pace,
    mut schedule: Schedule,
    counters: Arc<LoadCounters>,
) -> std::io::Result<ConnectionResult> {
    let mut total = ConnectionResult::new();
    loop {
        let node = nodes.iter().find(|node| node.id() == leader);
        let node = node.ok_or_else(|| std::io::Error::other(format!("no node {leader}")))?;
        let (payload, counters) = (payload.clone(), counters.clone());
        total.absorb(run_embedded(
            node.clone(),
            group,
            payload,
            pace,
            schedule,
            counters,
        )?);
        let Some(next) = total.redirect.take() else {
            return Ok(total);
        };
        if Instant::now() >= schedule.stop {
            return Ok(total);
        }
        if next == leader {
            // Named itself while refusing: wait for the election to settle.
            std::thread::sleep(Duration::from_millis(20));
        }
        leader = next;
        schedule.started = Instant::now();
    }
}

/// Drives proposals into `node` for `group` until `stop`.
fn run_embedded(
    node: Arc<Node>,
    group: GroupId,
    payload: Bytes,
    pace: Pace,
    schedule: Schedule,
    counters: Arc<LoadCounters>,
) -> std::io::Result<ConnectionResult> {
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("ringraft-bench-load")
        .io_memory(LOAD_EXECUTOR_IO_MEMORY)
        .make()
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    let result = executor.run(async move {
        let load = Rc::new(EmbeddedLoad {
            node,
            group,
            payload,
            schedule,
            counters,
            result: RefCell::new(ConnectionResult::new()),
            outstanding: RefCell::new(0),
        });
        match pace {
            Pace::Closed { pipeline } => closed_loop(&load, pipeline).await,
            Pace::Open { per_second } => open_loop(&load, per_second).await,
        }
        load.result.take()
    });
    Ok(result)
}

struct EmbeddedLoad {
    node: Arc<Node>,
    group: GroupId,
    payload: Bytes,
    schedule: Schedule,
    counters: Arc<LoadCounters>,
    result: RefCell<ConnectionResult>,
    outstanding: RefCell<usize>,
}

impl EmbeddedLoad {
    /// Whether a refusal named another leader (the caller moves there).
    fn redirected(&self) -> bool {
        self.result.borrow().redirect.is_some()
    }

    /// Proposes once; records the latency from `since` if the answer comes inside the window.
    async fn propose_once(&self, since: Instant) {
        *self.outstanding.borrow_mut() += 1;
        let answer = self.node.propose(self.group, self.payload.clone()).await;
        *self.outstanding.borrow_mut() -= 1;
        let arrived = Instant::now();
        let mut result = self.result.borrow_mut();
        match answer {
            Ok(_) => {
                self.counters.add(1, 0);
                let micros = (arrived - since).as_micros() as u64;
                let phase = self
                    .counters
                    .phase
                    .load(std::sync::atomic::Ordering::Relaxed);
                result.committed(&self.schedule, arrived, micros, phase);
            }
            Err(ProposalError::NotLeader { leader }) => {
                result.not_leader(leader.unwrap_or(self.node.id()))
            }
            Err(ProposalError::Transferring) => result.not_leader(self.node.id()),
            Err(error) => {
                self.counters.add(0, 1);
                result.refused(&self.schedule, arrived, error.to_string());
            }
        }
    }
}

async fn closed_loop(load: &Rc<EmbeddedLoad>, pipeline: usize) {
    let tasks: Vec<_> = (0..pipeline)
        .map(|_| {
            let load = load.clone();
            glommio::spawn_local(async move {
                while Instant::now() < load.schedule.stop && !load.redirected() {
                    load.propose_once(Instant::now()).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await;
    }
}

async fn open_loop(load: &Rc<EmbeddedLoad>, per_second: f64) {
    let Schedule { started, stop, .. } = load.schedule;
    let interval = Duration::from_secs_f64(1.0 / per_second);
    let mut next = 0u32;
    loop {
        let intended = started + interval * next;
        if intended >= stop || load.redirected() {
            break;
        }
        if let Some(wait) = intended.checked_duration_since(Instant::now()) {
            glommio::timer::sleep(wait).await;
        }
        if *load.outstanding.borrow() >= OUTSTANDING_MAX {
            glommio::timer::sleep(Duration::from_millis(1)).await;
            continue;
        }
        let task_load = load.clone();
        glommio::spawn_local(async move { task_load.propose_once(intended).await }).detach();
        next += 1;
    }
    let drain_until = stop + DRAIN;
    while *load.outstanding.borrow() > 0 && Instant::now() < drain_until {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

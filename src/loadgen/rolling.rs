//! `ringraft bench --rolling-restart`: every node of the local cluster, one after the other,
//! stopped with SIGTERM (a graceful stop that hands its leaderships over), started again on its
//! data directory and caught up, while the load runs.
//!
//! The run is cut into phases ([`LoadCounters::phase`]): phase 1 is steady load, phase `1 + k`
//! the restart of the `k`-th node, from its SIGTERM until every running node has applied what
//! each group's leader had committed when the node came back. Latencies are recorded per phase,
//! so a restart's spike shows next to the steady figures. Between restarts the load runs
//! steadily for [`RollingRestart::new`]'s `gap`.
//!
//! Invariants: one node at most is down at a time; the phase the counters show is the phase
//! the cluster is in (set before the SIGTERM, reset after the catch-up).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::Client;
use crate::loadgen::load::LoadCounters;
use crate::loadgen::report::Percentiles;
use crate::procs::local_cluster::LocalCluster;
use crate::types::{GroupId, LogIndex, NodeId};

/// How long a stopped node may take to exit, or a restarted one to catch up.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The phase of steady load.
pub const STEADY: usize = 1;

enum State {
    Steady { until: Instant },
    Stopping { node: NodeId, since: Instant },
    CatchingUp { node: NodeId, since: Instant },
    Done,
}

/// What one node's restart took.
#[derive(Clone, Debug, Serialize)]
pub struct Restart {
    pub node: u64,
    /// Groups the node led when it was stopped.
    pub led_groups: usize,
    /// From SIGTERM to the process's exit (the drain).
    pub stop_ms: f64,
    /// From SIGTERM until the restarted node and every other had caught up.
    pub phase_ms: f64,
}

/// The latency of one phase.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseFigures {
    /// "steady", or "restart of node N".
    pub phase: String,
    pub answered: u64,
    pub latency_us: Percentiles,
}

/// See the module documentation.
pub struct RollingRestart {
    order: Vec<NodeId>,
    groups: u32,
    gap: Duration,
    state: State,
    pub restarts: Vec<Restart>,
}

impl RollingRestart {
    /// Restarts `nodes` in order, the first after `gap` of steady load from `start`, each
    /// next `gap` after the previous caught up.
    pub fn new(nodes: Vec<NodeId>, groups: u32, start: Instant, gap: Duration) -> Self {
        RollingRestart {
            order: nodes,
            groups,
            gap,
            state: State::Steady { until: start + gap },
            restarts: Vec::new(),
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Moves the restart on as far as it can without waiting (starting a node again waits for
    /// its "ready" line).
    pub fn step(
        &mut self,
        cluster: &mut LocalCluster,
        client: &mut Client,
        counters: &LoadCounters,
    ) -> Result<(), String> {
        let now = Instant::now();
        match self.state {
            State::Steady { until } if now >= until => {
                let Some(&node) = self.order.get(self.restarts.len()) else {
                    self.state = State::Done;
                    return Ok(());
                };
                let led_groups = (0..self.groups as u64)
                    .filter(|&group| client.leader_of(GroupId(group)) == Some(node))
                    .count();
                let pid = cluster.pid(node).ok_or(format!("{node} is not running"))?;
                counters
                    .phase
                    .store(STEADY + 1 + self.restarts.len(), Ordering::Relaxed);
                println!("rolling restart: SIGTERM to {node} (leader of {led_groups} groups)");
                // SAFETY: kill(2) on a child process of this one with a valid signal.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                self.restarts.push(Restart {
                    node: node.0,
                    led_groups,
                    stop_ms: 0.0,
                    phase_ms: 0.0,
                });
                self.state = State::Stopping { node, since: now };
            }
            State::Stopping { node, since } => {
                if let Some(status) = cluster.reap(node) {
                    if !status.success() {
                        return Err(format!("{node} exited with {status} after SIGTERM"));
                    }
                    self.current().stop_ms = millis(since.elapsed());
                    cluster.launch(node, false)?;
                    self.state = State::CatchingUp { node, since };
                } else if since.elapsed() > STEP_TIMEOUT {
                    return Err(format!("{node} did not exit within {STEP_TIMEOUT:?}"));
                }
            }
            State::CatchingUp { node, since } => {
                if caught_up(cluster, client, self.groups) {
                    self.current().phase_ms = millis(since.elapsed());
                    counters.phase.store(STEADY, Ordering::Relaxed);
                    println!("rolling restart: {node} back and caught up");
                    self.state = State::Steady {
                        until: Instant::now() + self.gap,
                    };
                } else if since.elapsed() > STEP_TIMEOUT {
                    return Err(format!("{node} did not catch up within {STEP_TIMEOUT:?}"));
                }
            }
            State::Steady { .. } | State::Done => {}
        }
        Ok(())
    }

    fn current(&mut self) -> &mut Restart {
        self.restarts.last_mut().expect("a restart is running")
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Whether every running node has applied each group up to its leader's commit index.
fn caught_up(cluster: &LocalCluster, client: &mut Client, groups: u32) -> bool {
    let running: Vec<NodeId> = cluster
        .nodes
        .iter()
        .map(|node| node.id)
        .filter(|&id| cluster.is_up(id))
        .collect();
    let mut statuses = Vec::new();
    for &id in &running {
        match client.status(id) {
            Ok(status) => statuses.push((id, status)),
            Err(_) => return false,
        }
    }
    (0..groups as u64).map(GroupId).all(|group| {
        let of = |id: NodeId| {
            statuses
                .iter()
                .find(|(node, _)| *node == id)
                .and_then(|(_, status)| status.iter().find(|s| s.group == group))
        };
        let Some(commit) = running
            .iter()
            .filter_map(|&id| of(id).filter(|s| s.leader == Some(id)))
            .max_by_key(|s| s.term)
            .map(|s| s.commit)
        else {
            return false;
        };
        running
            .iter()
            .all(|&id| of(id).map_or(LogIndex::ZERO, |s| s.applied) >= commit)
    })
}

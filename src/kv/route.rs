//! Routing: running each part of a command where its group is led, from any node.
//!
//! A part is an encoded [`crate::kv::op::Entry`] for one group. It is proposed (or read) on
//! this node if this node leads the group or does not know who does, and always when it is a
//! stale read; otherwise it is forwarded
//! to the leader's RESP port as `RINGRAFT.PROPOSE group entry` or
//! `RINGRAFT.READ group mode entry`. The node that receives such a request tries it once,
//! locally, and answers the entry's output or a routing error (`-NOTLEADER id` or
//! `-TRYAGAIN …`), so a request is forwarded at most once per attempt and
//! never bounces between nodes.
//!
//! Invariants:
//! - An attempt is repeated only when it certainly did nothing (the node was not leader, an
//!   entry of another term was applied at the entry's index, the forwarding connection never
//!   sent it) or when it only read ([`decide`]). A write whose fate is unknown (commit
//!   timeout, entry cut from the leader's log, connection lost after sending, shutdown) is
//!   answered with an error that says so, never retried.
//! - Attempts stop after [`ROUTE_DEADLINE`]; the client then gets `-TRYAGAIN`.
//! - A write a leader refuses as overloaded (its group holds too much unapplied) is not
//!   retried: the client gets `-ERR overloaded: … the write was not applied` at once, so the
//!   backpressure reaches it instead of being absorbed by retries here.
//! - The leader cache is only a hint: a wrong entry costs one redirect.
//! - A forward the leader refuses (this node could not prove the cluster secret) fails at once
//!   with an error that says so: nothing was sent, and retrying would not help.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::api::{GroupStatus, Node, ProposalError, ReadConsistency};
use crate::kv::combine::combine;
use crate::kv::command::Routed;
use crate::kv::forward::{ForwardError, ForwardPool, PeerKey};
use crate::kv::in_order::{join_in_order, BoxFuture};
use crate::kv::parse::BULK_BYTES_MAX;
use crate::kv::peer_proof::ClusterSecret;
use crate::kv::resp::{self, put_array_header, put_bulk};
use crate::kv::stats::RespStats;
use crate::types::{GroupId, NodeId, PeerAddr};

/// How long a command keeps looking for its groups' leaders.
pub const ROUTE_DEADLINE: Duration = Duration::from_secs(5);

const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_millis(200);
const UNKNOWN: u64 = u64::MAX;

/// How reads are served (`--read`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, strum::IntoStaticStr, strum::EnumString,
)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum ReadMode {
    /// On the leader, after confirming leadership with a quorum (ReadIndex).
    Linearizable,
    /// On the leader, without a round trip while its leader lease holds (ReadIndex
    /// otherwise); assumes bounded clock drift.
    Lease,
    /// On whichever node the client is connected to, as it is: may miss recent writes, even
    /// the connection's own.
    Stale,
}

impl ReadMode {
    pub fn name(self) -> &'static str {
        self.into()
    }

    pub fn consistency(self) -> ReadConsistency {
        match self {
            ReadMode::Linearizable => ReadConsistency::Linearizable,
            ReadMode::Lease => ReadConsistency::Lease,
            ReadMode::Stale => ReadConsistency::Stale,
        }
    }

    pub fn from_name(name: &str) -> Option<ReadMode> {
        name.parse().ok()
    }
}

/// The outcome of one attempt at one part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The entry's output (or the read's answer).
    Done(Bytes),
    /// Not the leader; this one is.
    Redirect(NodeId),
    /// Nothing happened; try again after a pause.
    Retry,
    /// A write whose outcome is unknown: it may or may not be applied. Never retried; the
    /// error reply says so.
    Unknown(Bytes),
    /// A final error reply; the entry certainly was not applied.
    Failed(Bytes),
}

/// The kv service's one retry policy: what an attempt that ended with `result` on this node
/// (`this_node`) means. A write is tried again only when it certainly was not applied
/// ([`ProposalError::certainly_not_applied`]); a read whenever it failed for want of a leader
/// or in time. The simulator's clients decide with this same function.
pub fn decide(result: Result<Bytes, ProposalError>, write: bool, this_node: NodeId) -> Attempt {
    let error = match result {
        Ok(output) => return Attempt::Done(output),
        Err(error) => error,
    };
    match error {
        ProposalError::NotLeader {
            leader: Some(leader),
        } if leader != this_node => Attempt::Redirect(leader),
        ProposalError::NotLeader { .. }
        | ProposalError::Transferring
        | ProposalError::Superseded { .. } => Attempt::Retry,
        // Certainly not applied, but the leader is short of a working majority or applying
        // slower than it is written to: retrying here would keep up the load it pushes back
        // on, so the client is told at once and paces itself.
        error @ ProposalError::Overloaded { .. } => Attempt::Failed(resp::error(&format!(
            "ERR {error}; the write was not applied"
        ))),
        error if !error.certainly_not_applied() && !write => Attempt::Retry,
        ProposalError::Timeout => Attempt::Unknown(resp::error(
            "ERR timeout: no commit within the proposal timeout; the write may still be applied",
        )),
        ProposalError::ShuttingDown => Attempt::Unknown(resp::error(
            "ERR this node is shutting down; the write may still be applied",
        )),
        error if !error.certainly_not_applied() => {
            Attempt::Unknown(resp::error(&format!("ERR {error}")))
        }
        error => Attempt::Failed(resp::error(&format!("ERR {error}"))),
    }
}

pub struct Router {
    node: Arc<Node>,
    /// What the RESP server counts, by command.
    stats: Arc<RespStats>,
    /// Per group: the leader last heard of, or [`UNKNOWN`].
    leaders: Vec<AtomicU64>,
    pool: ForwardPool,
    read_mode: ReadMode,
}

impl Router {
    /// A router for `node`, reaching other nodes' RESP ports at `resp_addrs` and proving to
    /// them with `secret` that it is a member.
    pub fn new(
        node: Arc<Node>,
        resp_addrs: HashMap<NodeId, PeerAddr>,
        secret: Option<Arc<ClusterSecret>>,
        read_mode: ReadMode,
    ) -> Router {
        let groups = node.config().groups as usize;
        let key = PeerKey {
            node: node.id(),
            secret,
        };
        // Every member's RESP port speaks TLS when this one's does.
        let tls = node
            .config()
            .tls_on(|ports| ports.resp)
            .map(|tls| tls.as_client());
        Router {
            node,
            stats: Arc::new(RespStats::default()),
            leaders: (0..groups).map(|_| AtomicU64::new(UNKNOWN)).collect(),
            pool: ForwardPool::new(resp_addrs, key, tls),
            read_mode,
        }
    }

    /// The RESP server's command counts.
    pub fn stats(&self) -> &Arc<RespStats> {
        &self.stats
    }

    pub fn read_mode(&self) -> ReadMode {
        self.read_mode
    }

    pub fn node_id(&self) -> NodeId {
        self.node.id()
    }

    /// Raft groups of the cluster.
    pub fn groups(&self) -> u32 {
        self.node.config().groups
    }

    /// Runs every part of `routed` (concurrently, first attempted in order) and merges the
    /// replies. `lane` picks the forwarding connection (one per client connection).
    pub async fn run(self: Arc<Self>, routed: Routed, lane: usize) -> Bytes {
        let read = (!routed.write).then_some(self.read_mode);
        let parts: Vec<BoxFuture<Bytes>> = routed
            .parts
            .into_iter()
            .map(|(group, entry)| {
                let router = self.clone();
                Box::pin(async move { router.part(group, entry, read, lane).await })
                    as BoxFuture<Bytes>
            })
            .collect();
        combine(&routed.combine, join_in_order(parts).await)
    }

    /// Tries `entry` once on this node, for another node that forwarded it: the output, or a
    /// routing error for the forwarding node to act on.
    pub async fn here(&self, group: GroupId, entry: Bytes, read: Option<ReadMode>) -> Bytes {
        match self.local(group, entry, read).await {
            Attempt::Done(reply) | Attempt::Unknown(reply) | Attempt::Failed(reply) => reply,
            Attempt::Redirect(leader) => resp::error(&format!("NOTLEADER {}", leader.0)),
            Attempt::Retry => resp::error("TRYAGAIN no leader known here"),
        }
    }

    /// This node's view of every group (blocking work kept off the async threads).
    pub async fn status(&self) -> Vec<GroupStatus> {
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || node.status())
            .await
            .unwrap_or_default()
    }

    async fn part(
        &self,
        group: GroupId,
        entry: Bytes,
        read: Option<ReadMode>,
        lane: usize,
    ) -> Bytes {
        if entry.len() > BULK_BYTES_MAX {
            return resp::error(&format!(
                "ERR command too large: {} bytes in one group's entry, the limit is {BULK_BYTES_MAX}",
                entry.len()
            ));
        }
        let deadline = Instant::now() + ROUTE_DEADLINE;
        let mut backoff = BACKOFF_MIN;
        let mut redirects = 0;
        loop {
            let target = self
                .leader(group)
                .filter(|&leader| leader != self.node.id() && read != Some(ReadMode::Stale));
            let attempt = match target {
                Some(leader) => self.forward(leader, group, &entry, read, lane).await,
                None => self.local(group, entry.clone(), read).await,
            };
            match attempt {
                Attempt::Done(reply) | Attempt::Unknown(reply) | Attempt::Failed(reply) => {
                    return reply
                }
                Attempt::Redirect(leader) => {
                    self.remember(group, Some(leader));
                    redirects += 1;
                    if redirects == 1 {
                        continue;
                    }
                }
                Attempt::Retry => self.remember(group, None),
            }
            if Instant::now() + backoff > deadline {
                return resp::error(&format!(
                    "TRYAGAIN no leader for group {} within {} s",
                    group.0,
                    ROUTE_DEADLINE.as_secs()
                ));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn leader(&self, group: GroupId) -> Option<NodeId> {
        let slot = self.leaders.get(group.0 as usize)?;
        Some(slot.load(Ordering::Relaxed))
            .filter(|&id| id != UNKNOWN)
            .map(NodeId)
    }

    fn remember(&self, group: GroupId, leader: Option<NodeId>) {
        if let Some(slot) = self.leaders.get(group.0 as usize) {
            slot.store(leader.map_or(UNKNOWN, |id| id.0), Ordering::Relaxed);
        }
    }

    async fn local(&self, group: GroupId, entry: Bytes, read: Option<ReadMode>) -> Attempt {
        let result = match read {
            None => self
                .node
                .propose(group, entry)
                .await
                .map(|done| done.output),
            Some(mode) => self.node.read(group, entry, mode.consistency()).await,
        };
        decide(result, read.is_none(), self.node.id())
    }

    async fn forward(
        &self,
        to: NodeId,
        group: GroupId,
        entry: &[u8],
        read: Option<ReadMode>,
        lane: usize,
    ) -> Attempt {
        let mut request = Vec::with_capacity(entry.len() + 64);
        let group_text = group.0.to_string();
        match read {
            None => {
                put_array_header(&mut request, 3);
                put_bulk(&mut request, b"RINGRAFT.PROPOSE");
                put_bulk(&mut request, group_text.as_bytes());
            }
            Some(mode) => {
                put_array_header(&mut request, 4);
                put_bulk(&mut request, b"RINGRAFT.READ");
                put_bulk(&mut request, group_text.as_bytes());
                put_bulk(&mut request, mode.name().as_bytes());
            }
        }
        put_bulk(&mut request, entry);
        match self.pool.call(to, lane, Bytes::from(request)).await {
            Ok(reply) => routing_reply(reply),
            Err(ForwardError::Unreachable) => Attempt::Retry,
            Err(ForwardError::Refused) => Attempt::Failed(resp::error(&format!(
                "ERR kv node {} (leader of group {}) does not accept commands forwarded by this \
                 node: their cluster secrets differ (--cluster-secret-file); the command was not \
                 run",
                to.0, group.0
            ))),
            Err(ForwardError::Lost) if read.is_some() => Attempt::Retry,
            Err(ForwardError::Lost) => Attempt::Unknown(resp::error(
                "ERR connection to the leader lost; the write may or may not have been applied",
            )),
        }
    }
}

/// Reads the answer of a node that tried a forwarded entry.
fn routing_reply(reply: Bytes) -> Attempt {
    if let Some(rest) = reply.strip_prefix(b"-NOTLEADER ") {
        let id = std::str::from_utf8(rest)
            .ok()
            .and_then(|text| text.trim_end().parse::<u64>().ok());
        return match id {
            Some(id) => Attempt::Redirect(NodeId(id)),
            None => Attempt::Retry,
        };
    }
    if reply.starts_with(b"-TRYAGAIN") {
        return Attempt::Retry;
    }
    Attempt::Done(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write refused as overloaded was never placed: the client is told so at once (no
    /// retry here), unlike a timeout, whose write may still apply.
    #[test]
    fn an_overloaded_write_fails_at_once_and_says_it_was_not_applied() {
        let overloaded = ProposalError::Overloaded {
            bytes: 70 << 20,
            max: 64 << 20,
        };
        let Attempt::Failed(reply) = decide(Err(overloaded), true, NodeId(1)) else {
            panic!("an overloaded write must fail at once");
        };
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.starts_with("-ERR overloaded") && text.contains("was not applied"),
            "{text}"
        );
        assert!(matches!(
            decide(Err(ProposalError::Timeout), true, NodeId(1)),
            Attempt::Unknown(_)
        ));
    }
}

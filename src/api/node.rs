//! [`Node`]: a running member of a cluster, as an embedding program holds it.
//!
//! `Node::start` checks that the platform allows io_uring and enough locked memory
//! (`shard::platform` in the source; otherwise [`NodeError::Platform`] says how to fix it), opens the data directory, starts one executor thread per shard and returns once
//! every shard has recovered its log and bound its ports. The handle is `Send + Sync`: any
//! thread (or any async runtime) may propose; answers come back through channels.
//!
//! Backpressure: each shard holds at most `proposals_queued_max` requests (queued or awaiting
//! their answer, `shard::gate` in the source) and queues at most as many more in its channel; beyond
//! that [`Node::propose`] waits for room. It fails for being busy only when the group's leader
//! holds too many bytes not yet applied ([`ProposalError::Overloaded`]).
//!
//! Stopping: [`Node::shutdown`] stops at once (requests still waiting are answered "shutting
//! down", an unknown outcome). [`Node::shutdown_gracefully`] first hands every group this node
//! leads to its most caught-up follower and waits, bounded, until every request the node took
//! has its real answer (`shard::drain` in the source): the way to stop a member for a restart
//! without failing its clients' requests or waiting for an election.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::api::data_dir;
use crate::api::observer::{NodeObserver, METRICS_QUEUED_MAX};
use crate::config::NodeConfig;
use crate::core::MembershipChange;
use crate::engine::state_machine::StateMachine;
use crate::engine::{Committed, GroupStatus, ProposalError};
use crate::error::{ExecutorError, NodeError};
use crate::shard::admin::ChangeRequest;
use crate::shard::metrics::ShardMetrics;
use crate::shard::platform;
use crate::shard::runtime::{self, ApiRequest, Control, ShardContext};
use crate::shard::work::Work;
use crate::types::ReadConsistency;
use crate::types::{GroupId, LogIndex, NodeId, PeerAddr, SessionId, SessionRequest, ShardId};

/// Works [`Node::run_batch`] hands a shard in one message at most (a longer batch goes in
/// several): also the most by which a batch may take a shard past its bound on requests held.
pub const BATCH_WORKS_MAX: usize = 1024;

/// A running node. Dropping it shuts it down.
pub struct Node {
    config: Arc<NodeConfig>,
    shards: Vec<flume::Sender<ApiRequest>>,
    /// One per shard: drains or stops it (a path of its own, since `shards` may be full).
    controls: Vec<flume::Sender<Control>>,
    /// One per shard: asks it for its metrics ([`NodeObserver`]).
    metrics: Vec<flume::Sender<flume::Sender<ShardMetrics>>>,
    threads: Vec<JoinHandle<Result<(), NodeError>>>,
}

impl Node {
    /// Starts a node whose shards each build their state machine with `make_state_machine`
    /// (called on the shard's own thread).
    pub fn start<S, F>(config: NodeConfig, make_state_machine: F) -> Result<Node, NodeError>
    where
        S: StateMachine,
        F: Fn(ShardId) -> S + Send + Sync + 'static,
    {
        config.validate()?;
        platform::check()?;
        data_dir::claim(&config.data_dir, config.cluster_id, config.id, config.init)?;
        let config = Arc::new(config);
        let make_state_machine = Arc::new(make_state_machine);
        let mut node = Node {
            config: config.clone(),
            shards: Vec::new(),
            controls: Vec::new(),
            metrics: Vec::new(),
            threads: Vec::new(),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        for shard in (0..config.shards).map(ShardId) {
            let (requests_tx, requests_rx) = flume::bounded(config.proposals_queued_max);
            let (control_tx, control_rx) = flume::unbounded();
            let (metrics_tx, metrics_rx) = flume::bounded(METRICS_QUEUED_MAX);
            let context = ShardContext {
                config: config.clone(),
                shard,
                requests: requests_rx,
                control: control_rx,
                metrics: metrics_rx,
                ready: ready_tx.clone(),
            };
            let make = make_state_machine.clone();
            let pin_to = config
                .pin
                .then(|| cores.get(shard.0 as usize % cores.len().max(1)).copied())
                .flatten();
            let thread = std::thread::Builder::new()
                .name(format!("ringraft-n{}-s{}", config.id.0, shard.0))
                .spawn(move || {
                    if let Some(core) = pin_to {
                        core_affinity::set_for_current(core);
                    }
                    runtime::run_shard_thread(context, move || make(shard))
                })
                .map_err(|source| NodeError::Io {
                    shard,
                    what: "spawn shard thread".into(),
                    source,
                })?;
            node.shards.push(requests_tx);
            node.controls.push(control_tx);
            node.metrics.push(metrics_tx);
            node.threads.push(thread);
        }
        drop(ready_tx);
        for _ in 0..config.shards {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    node.stop_threads();
                    return Err(error);
                }
                Err(_) => {
                    let failure = node.stop_threads();
                    return Err(failure.unwrap_or(NodeError::ShardGone { shard: ShardId(0) }));
                }
            }
        }
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Whether every shard is still running (a shard stops on a fatal storage error).
    pub fn is_running(&self) -> bool {
        self.threads.iter().all(|thread| !thread.is_finished())
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Proposes `payload` to `group`. Resolves once the entry is committed and applied here,
    /// with its index and the state machine's output.
    pub async fn propose(
        &self,
        group: GroupId,
        payload: impl Into<Bytes>,
    ) -> Result<Committed, ProposalError> {
        self.propose_work(group, payload.into(), None).await
    }

    /// Opens a client session of `group` (this node must lead it): resolves with the new
    /// session's id once its registration is committed and applied here. A session makes
    /// retries safe: see [`Node::propose_in_session`].
    ///
    /// A registration whose outcome is unknown (a timeout) may have opened a session nobody
    /// uses; it expires like any idle session, so register again.
    pub async fn register_session(&self, group: GroupId) -> Result<SessionId, ProposalError> {
        let (reply, answer) = flume::bounded(1);
        let request = ApiRequest::Work {
            work: Work::RegisterSession { group },
            reply,
        };
        let registered = self.request(group, request, answer).await?;
        Ok(SessionId(registered.index.0))
    }

    /// Proposes `payload` to `group` as `request` of a client session
    /// ([`Node::register_session`]): like [`Node::propose`], but applied at most once however
    /// often the same request (same session and `seq`) is proposed, on this node or any other.
    ///
    /// Number a session's requests 1, 2, 3, ... and give each request's retries its number.
    /// After an unknown outcome ([`ProposalError::certainly_not_applied`] is false: a timeout,
    /// a shutdown, a lost leader) propose it again with the same number, on whichever node
    /// leads the group then: if it was applied, the answer is the output it had, at the index
    /// where it was applied. `lowest_unanswered` is the lowest number whose answer the caller
    /// has not received; the group forgets the outputs below it, and refuses requests beyond
    /// [`SESSION_UNANSWERED_MAX`](crate::engine::sessions::SESSION_UNANSWERED_MAX)
    /// unacknowledged ones. A session the group no longer knows (expired, evicted) is refused
    /// with [`SessionRefusal::Unknown`](crate::types::SessionRefusal): if an earlier attempt
    /// of the request may have been applied, its outcome stays unknown; otherwise register a
    /// new session and send it there. The expiry policy is in [client sessions](crate#client-sessions) and
    /// [`NodeConfig::sessions`].
    pub async fn propose_in_session(
        &self,
        group: GroupId,
        request: SessionRequest,
        payload: impl Into<Bytes>,
    ) -> Result<Committed, ProposalError> {
        self.propose_work(group, payload.into(), Some(request))
            .await
    }

    /// One proposal, in a session or not, handed to the group's shard.
    async fn propose_work(
        &self,
        group: GroupId,
        payload: Bytes,
        session: Option<SessionRequest>,
    ) -> Result<Committed, ProposalError> {
        let (reply, answer) = flume::bounded(1);
        let work = Work::Propose {
            group,
            payload,
            session,
        };
        self.request(group, ApiRequest::Work { work, reply }, answer)
            .await
    }

    /// Runs many works at once: each is what [`Node::propose`], [`Node::propose_in_session`],
    /// [`Node::register_session`] or [`Node::read`] would do with it alone, and the answers come
    /// back in the order of `works`. The works of one shard go to it as one message (one per
    /// [`BATCH_WORKS_MAX`] works), are taken in one turn of its event loop in the order given
    /// (so proposals to one group are placed in its log in that order), and are answered
    /// together once the last of them is: one hand-over and one wake-up each way for the lot,
    /// instead of one per work. A work answered early waits for the rest of its message.
    pub async fn run_batch(&self, works: Vec<Work>) -> Vec<Result<Committed, ProposalError>> {
        let count = works.len();
        // Per shard, in order: the positions of its works and the works, a message each.
        let mut messages: Vec<(ShardId, Vec<usize>, Vec<Work>)> = Vec::new();
        for (position, work) in works.into_iter().enumerate() {
            let shard = self.config.shard_of(work.group());
            let open = messages
                .iter_mut()
                .find(|(to, positions, _)| *to == shard && positions.len() < BATCH_WORKS_MAX);
            match open {
                Some((_, positions, works)) => {
                    positions.push(position);
                    works.push(work);
                }
                None => messages.push((shard, vec![position], vec![work])),
            }
        }
        // Every message is sent before any answer is awaited, so the shards work at once.
        let mut waiting = Vec::with_capacity(messages.len());
        for (shard, positions, works) in messages {
            let (reply, answer) = flume::bounded(1);
            let request = ApiRequest::Batch { works, reply };
            let sent = self.shards[shard.0 as usize].send_async(request).await;
            waiting.push((positions, sent.ok().map(|()| answer)));
        }
        let mut answers: Vec<Option<Result<Committed, ProposalError>>> = Vec::new();
        answers.resize_with(count, || None);
        for (positions, answer) in waiting {
            let received = match answer {
                Some(answer) => answer.recv_async().await.unwrap_or_default(),
                None => Vec::new(),
            };
            if positions.len() == count && received.len() == count {
                // One message held every work, in order.
                return received;
            }
            for (position, answer) in positions.into_iter().zip(received) {
                answers[position] = Some(answer);
            }
        }
        answers
            .into_iter()
            .map(|answer| answer.unwrap_or(Err(ProposalError::ShuttingDown)))
            .collect()
    }

    /// Reads `group`'s state machine: `query` is answered by [`StateMachine::query`] on the
    /// group's shard once `consistency` allows. A linearizable or lease read on a node that does
    /// not lead the group fails with [`ProposalError::NotLeader`] (naming the leader if known).
    pub async fn read(
        &self,
        group: GroupId,
        query: impl Into<Bytes>,
        consistency: ReadConsistency,
    ) -> Result<Bytes, ProposalError> {
        let (reply, answer) = flume::bounded(1);
        let request = ApiRequest::Work {
            work: Work::Read {
                group,
                query: query.into(),
                consistency,
            },
            reply,
        };
        self.request(group, request, answer)
            .await
            .map(|read| read.output)
    }

    /// [`Node::read`] for a thread outside any async runtime.
    pub fn read_blocking(
        &self,
        group: GroupId,
        query: impl Into<Bytes>,
        consistency: ReadConsistency,
    ) -> Result<Bytes, ProposalError> {
        futures_lite::future::block_on(self.read(group, query, consistency))
    }

    /// Sends `request` to `group`'s shard and awaits its answer.
    async fn request(
        &self,
        group: GroupId,
        request: ApiRequest,
        answer: flume::Receiver<Result<Committed, ProposalError>>,
    ) -> Result<Committed, ProposalError> {
        let shard = self.config.shard_of(group);
        if self.shards[shard.0 as usize]
            .send_async(request)
            .await
            .is_err()
        {
            return Err(ProposalError::ShuttingDown);
        }
        answer
            .recv_async()
            .await
            .unwrap_or(Err(ProposalError::ShuttingDown))
    }

    /// [`Node::propose`] for a thread outside any async runtime.
    pub fn propose_blocking(
        &self,
        group: GroupId,
        payload: impl Into<Bytes>,
    ) -> Result<Committed, ProposalError> {
        futures_lite::future::block_on(self.propose(group, payload))
    }

    /// Status of every group of this node, in group order: its role, term, leader, commit and
    /// applied indexes, and (where it leads) its followers' progress. Resolves once every
    /// running shard has answered; a stopped shard's groups are missing.
    pub async fn status(&self) -> Vec<GroupStatus> {
        let mut answers = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            let (reply, answer) = flume::bounded(1);
            if shard.send_async(ApiRequest::Status { reply }).await.is_ok() {
                answers.push(answer);
            }
        }
        let mut all = Vec::new();
        for answer in answers {
            all.extend(answer.recv_async().await.unwrap_or_default());
        }
        all.sort_by_key(|status| status.summary.group);
        all
    }

    /// [`Node::status`] for a thread outside any async runtime.
    pub fn status_blocking(&self) -> Vec<GroupStatus> {
        futures_lite::future::block_on(self.status())
    }

    /// A handle for the node's metrics and health endpoint.
    pub fn observer(&self) -> NodeObserver {
        NodeObserver {
            node: self.config.id,
            shards: self.metrics.clone(),
        }
    }

    /// Asks this node, which must lead `group`, to hand leadership to the voter `to`. Resolves
    /// once the transfer has started (the new leader's election follows within a round trip
    /// once `to` holds the whole log); refused with [`ProposalError::NotLeader`] (naming the
    /// leader if known), [`ProposalError::ChangeNotAllowed`] when `to` is not a voter, or
    /// [`ProposalError::UnknownGroup`].
    pub async fn transfer_leadership(
        &self,
        group: GroupId,
        to: NodeId,
    ) -> Result<(), ProposalError> {
        let (reply, answer) = flume::bounded(1);
        let request = ApiRequest::Transfer { group, to, reply };
        self.request(group, request, answer).await.map(|_| ())
    }

    /// Changes `group`'s members; this node must lead the group. `addr` and `client_addr` are
    /// a new learner's base peer and client addresses (needed unless this node's peer list
    /// names it). Resolves once the configuration entry (for a voter change, the joint one, after
    /// which the leader finishes the change by itself) is committed and applied here, with its
    /// index. One change at a time: [`ProposalError::ChangeInProgress`] until the previous one
    /// is complete.
    pub async fn change_membership(
        &self,
        group: GroupId,
        change: MembershipChange,
        addr: Option<PeerAddr>,
        client_addr: Option<SocketAddr>,
    ) -> Result<Committed, ProposalError> {
        let (reply, answer) = flume::bounded(1);
        let request = ApiRequest::ChangeMembership {
            request: ChangeRequest {
                group,
                change,
                addr,
                client_addr,
            },
            reply,
        };
        self.request(group, request, answer).await
    }

    /// Snapshots `group`'s state machine now and compacts the log behind it. Returns the
    /// snapshot's index (0 when nothing was applied since the last one or the state machine
    /// does not support snapshots).
    pub async fn snapshot(&self, group: GroupId) -> Result<LogIndex, ProposalError> {
        let (reply, answer) = flume::bounded(1);
        let request = ApiRequest::Snapshot { group, reply };
        self.request(group, request, answer)
            .await
            .map(|done| done.index)
    }

    /// Stops every shard: outstanding proposals are answered "shutting down", the log's last
    /// flush completes, client connections write their answers and close. Returns the first
    /// shard failure, if any.
    pub fn shutdown(mut self) -> Result<(), NodeError> {
        match self.stop_threads() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Prepares this node to stop without failing anybody's request: every group it leads is
    /// handed to its most caught-up follower (whose election then starts at once, without an
    /// election timeout), new proposals and reads for groups it still leads are refused
    /// ([`ProposalError::Transferring`], certainly not applied), and every request taken
    /// before waits for its real answer (committed under the new leader, or certainly not
    /// applied). Returns true once that holds on every shard, false if `timeout` passed first.
    ///
    /// The node keeps running as a follower afterwards, redirecting clients to the new leaders
    /// (an embedder with front ends of its own, like `ringraft kv`, closes them now); stop it
    /// with [`Node::shutdown`]. A group without another voter stays led here. If another member
    /// is down or slow, the handover may not complete within `timeout`; a few election
    /// timeouts is enough on a healthy cluster.
    pub fn drain(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let answers: Vec<flume::Receiver<()>> = self
            .controls
            .iter()
            .map(|control| {
                let (done, answer) = flume::bounded(1);
                let _ = control.send(Control::Drain(done));
                answer
            })
            .collect();
        answers.iter().all(|answer| {
            let left = deadline.saturating_duration_since(Instant::now());
            answer.recv_timeout(left).is_ok()
        })
    }

    /// [`Node::drain`] (bounded by `timeout`), then [`Node::shutdown`]. Returns whether the
    /// drain completed in time (if not, requests still waiting are answered "shutting down").
    pub fn shutdown_gracefully(self, timeout: Duration) -> Result<bool, NodeError> {
        let drained = self.drain(timeout);
        self.shutdown().map(|()| drained)
    }

    fn stop_threads(&mut self) -> Option<NodeError> {
        for control in self.controls.drain(..) {
            let _ = control.send(Control::Stop);
        }
        self.shards.clear();
        let mut first_error = None;
        for (shard, thread) in self.threads.drain(..).enumerate() {
            let result = thread.join().unwrap_or(Err(NodeError::Executor {
                shard: ShardId(shard as u32),
                source: ExecutorError::Panicked,
            }));
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        first_error
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

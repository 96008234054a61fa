//! A blocking Rust client for the client protocol, used by tests and tools.
//!
//! It keeps one connection per (node, shard) it talks to, pipelines requests (many per frame),
//! and follows "not leader" answers to the group's leader, retrying until its deadline.
//!
//! Delivery of proposals: exactly once, through a client session per group
//! ([`crate::engine::sessions`]). The first proposal to a group registers a session there;
//! every proposal then gets the next sequence number of that session and keeps it on every
//! retry. Whatever happens to an attempt — "not leader", a timeout, a broken connection, a
//! leader that crashed, a leadership change — the proposal is sent again with the same number
//! until it is answered or the call's deadline passes, and the group applies it at most once
//! (a retry of an applied proposal is answered with the output it had, at the index where it
//! was applied). So a proposal answered `Ok` was applied exactly once, and one answered
//! [`CallError::Refused`] not at all; only [`CallError::Deadline`] and
//! [`CallError::SessionLost`] leave the outcome unknown (applied once or not at all, never
//! twice). A session the group forgot (idle past its expiry, or evicted) is replaced by a new
//! one as long as no attempt under it may have been applied; proposals that may have been are
//! answered [`CallError::SessionLost`].
//!
//! A client pipelines at most
//! [`SESSION_UNANSWERED_MAX`](crate::engine::sessions::SESSION_UNANSWERED_MAX) proposals per
//! group: larger [`Client::propose_many`] calls go in windows of that many.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::constants::FRAME_BYTES_MAX;
use crate::core::MembershipChange;
use crate::engine::sessions::SESSION_UNANSWERED_MAX;
use crate::engine::stages::StageHistograms;
use crate::engine::Committed;
use crate::net::client_wire::{
    decode_responses_frame, encode_requests, request_wire_bytes, ClientError, ClientRequest,
    ClientResponse, GroupAdminStatus, GroupSummary, ShardStats, ShardStatus, StageBuckets,
};
use crate::net::frame::READ_SPARE_BYTES;
use crate::net::{FrameDecoder, FrameKind};
use crate::tls::{BlockingIo, ClientTls};
use crate::types::ReadConsistency;
use crate::types::{
    GroupId, LogIndex, NodeId, PeerAddr, SessionId, SessionRefusal, SessionRequest, ShardId,
};

/// What a node reports about its work, summed over its shards.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct NodeStats {
    /// Log work counters (flushes, entries and bytes written), summed over the shards.
    pub log: ShardStats,
    /// Latency by stage of the batches the node placed as leader, since it started.
    pub stages: StageHistograms,
    /// Every group of the node, in group order.
    pub groups: Vec<GroupSummary>,
}

/// A node's answer to an admin status request, over all its shards.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeAdminStatus {
    /// The node that answered.
    pub node: NodeId,
    /// How many shards it runs.
    pub shard_count: u32,
    /// Every group of the node, in group order.
    pub groups: Vec<GroupAdminStatus>,
}

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// Certain: the server refused the request, and a proposal was not applied.
    #[error("server refused: {0}")]
    Refused(ClientError),
    /// No answer before the deadline: a proposal may have been applied (once) or not.
    #[error("no answer before the deadline: {last_problem}")]
    Deadline {
        /// What went wrong with the last attempt.
        last_problem: String,
    },
    /// The call named a node the client does not know ([`Client::add_node`]).
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    /// The group forgot the client session (idle past its expiry, or evicted) while a
    /// proposal that an earlier attempt may have applied was being retried: it was applied
    /// once or not at all, and which cannot be known any more.
    #[error("client session {session} of {group} expired while a proposal was retried; it may have been applied")]
    SessionLost {
        /// The group the proposal was for.
        group: GroupId,
        /// The session the group forgot.
        session: SessionId,
    },
}

/// The error of a call whose answer did not come (or was of another kind).
fn no_answer(what: &str) -> CallError {
    CallError::Deadline {
        last_problem: format!("no {what} answer"),
    }
}

impl CallError {
    /// Whether the request certainly was not carried out ([`CallError::Refused`]); otherwise
    /// a proposal's outcome is unknown.
    pub fn certainly_not_applied(&self) -> bool {
        matches!(self, CallError::Refused(_))
    }
}

/// This client's session of one group: its id and the next sequence number.
struct ClientSession {
    id: SessionId,
    next_seq: u64,
}

struct Connection {
    stream: Box<dyn BlockingIo>,
    decoder: FrameDecoder,
}

/// See the module documentation.
pub struct Client {
    nodes: Vec<(NodeId, SocketAddr)>,
    shards: u32,
    deadline: Duration,
    connections: BTreeMap<(NodeId, ShardId), Connection>,
    leaders: BTreeMap<GroupId, NodeId>,
    sessions: BTreeMap<GroupId, ClientSession>,
    next_id: u64,
    out: Vec<u8>,
    tls: Option<ClientTls>,
}

/// Whether a server's refusal says for certain that the attempt it answers did nothing (as
/// opposed to a timeout or a shutdown, after which the entry may still commit).
fn certain(error: &ClientError) -> bool {
    !matches!(
        error,
        ClientError::Timeout | ClientError::ShuttingDown | ClientError::Internal(_)
    )
}

const POLL: Duration = Duration::from_millis(100);
/// How long connecting (and a TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before asking again while no node claims the group's leadership (an election is
/// running): short, so a client sees the new leader within a few milliseconds of its election.
const RETRY_PAUSE: Duration = Duration::from_millis(5);

impl Client {
    /// A client of the nodes at these base client addresses, each running `shards` shards.
    /// Each call gives up after `deadline`.
    pub fn connect(nodes: Vec<(NodeId, SocketAddr)>, shards: u32, deadline: Duration) -> Client {
        Client {
            nodes,
            shards,
            deadline,
            connections: BTreeMap::new(),
            leaders: BTreeMap::new(),
            sessions: BTreeMap::new(),
            next_id: 1,
            out: Vec::new(),
            tls: None,
        }
    }

    /// Speaks TLS to every node (whose certificates must name them, see
    /// [`crate::tls::node_name`]), or plain TCP when given `None`.
    pub fn with_tls(mut self, tls: impl Into<Option<ClientTls>>) -> Client {
        self.tls = tls.into();
        self
    }

    /// Adds node `id` at base client address `addr` (or moves it there), so that "not leader"
    /// answers naming it can be followed.
    pub fn add_node(&mut self, id: NodeId, addr: SocketAddr) {
        match self.nodes.iter_mut().find(|(node, _)| *node == id) {
            Some(entry) if entry.1 == addr => {}
            Some(entry) => {
                entry.1 = addr;
                self.connections.retain(|(node, _), _| *node != id);
            }
            None => self.nodes.push((id, addr)),
        }
    }

    /// The nodes this client knows, with their base client addresses.
    pub fn nodes(&self) -> &[(NodeId, SocketAddr)] {
        &self.nodes
    }

    /// Sets the number of shards per node (learned from an admin status, for instance).
    pub fn set_shards(&mut self, shards: u32) {
        self.shards = shards.max(1);
    }

    /// Admin status of `node`: every group with its configuration, members' addresses, leader,
    /// term, commit and applied indexes, snapshot index and log base. Asks shard 0 first and
    /// learns the node's shard count from it.
    pub fn admin_status(&mut self, node: NodeId) -> Result<NodeAdminStatus, CallError> {
        let first = self.admin_status_of_shard(node, ShardId(0))?;
        let mut all = NodeAdminStatus {
            node: first.0,
            shard_count: first.1,
            groups: first.2,
        };
        for shard in (1..all.shard_count.min(self.shards)).map(ShardId) {
            all.groups
                .extend(self.admin_status_of_shard(node, shard)?.2);
        }
        all.groups.sort_by_key(|group| group.summary.group);
        Ok(all)
    }

    fn admin_status_of_shard(
        &mut self,
        node: NodeId,
        shard: ShardId,
    ) -> Result<(NodeId, u32, Vec<GroupAdminStatus>), CallError> {
        match self.ask(node, shard, |id| ClientRequest::AdminStatus { id })? {
            ClientResponse::AdminStatus {
                node,
                shard_count,
                groups,
                ..
            } => Ok((node, shard_count, groups)),
            _ => Err(no_answer("admin status")),
        }
    }

    /// Changes `group`'s members at its leader (following "not leader" answers). Returns once
    /// the configuration entry (the joint one, for a voter change) is committed and applied
    /// there. Refused with [`ClientError::ChangeInProgress`] while a previous change is not
    /// complete.
    pub fn change_membership(
        &mut self,
        group: GroupId,
        change: MembershipChange,
        addr: Option<PeerAddr>,
        client_addr: Option<SocketAddr>,
    ) -> Result<Committed, CallError> {
        let deadline = Instant::now() + self.deadline;
        self.call_leader_once(group, deadline, |id| ClientRequest::ChangeMembership {
            id,
            group,
            change,
            addr: addr.clone(),
            client_addr,
        })
    }

    /// Asks `group`'s leader (following "not leader" answers) to hand leadership to `to`.
    /// Returns once the leader started the transfer; watch the status for its outcome.
    pub fn transfer_leader(&mut self, group: GroupId, to: NodeId) -> Result<(), CallError> {
        let deadline = Instant::now() + self.deadline;
        self.call_leader_once(group, deadline, |id| ClientRequest::TransferLeader {
            id,
            group,
            to,
        })
        .map(drop)
    }

    /// Snapshots `group` on `node` now; returns the snapshot's index (0: none taken).
    pub fn snapshot(&mut self, node: NodeId, group: GroupId) -> Result<LogIndex, CallError> {
        let shard = self.shard_of(group);
        match self.ask(node, shard, |id| ClientRequest::Snapshot { id, group })? {
            ClientResponse::Committed { index, .. } => Ok(index),
            _ => Err(no_answer("snapshot")),
        }
    }

    fn shard_of(&self, group: GroupId) -> ShardId {
        ShardId((group.0 % self.shards as u64) as u32)
    }

    /// The leader of `group`, as the nodes say now.
    ///
    /// Every node is asked; among those that call themselves leader, the one of the highest
    /// term wins (a deposed leader may not know yet that a newer one exists).
    pub fn leader_of(&mut self, group: GroupId) -> Option<NodeId> {
        let started = Instant::now();
        while started.elapsed() < self.deadline {
            let nodes: Vec<NodeId> = self.nodes.iter().map(|(id, _)| *id).collect();
            let mut claims = Vec::new();
            for node in nodes {
                let Ok((_, statuses, _)) = self.status_of_shard(node, self.shard_of(group)) else {
                    continue;
                };
                if let Some(status) = statuses.iter().find(|status| status.group == group) {
                    if status.leader == Some(node) {
                        claims.push((status.term, node));
                    }
                }
            }
            if let Some(&(_, leader)) = claims.iter().max() {
                self.leaders.insert(group, leader);
                return Some(leader);
            }
            std::thread::sleep(RETRY_PAUSE);
        }
        None
    }

    /// Proposes one payload, exactly once (see the module documentation).
    pub fn propose(&mut self, group: GroupId, payload: &[u8]) -> Result<Committed, CallError> {
        self.propose_many(group, &[payload.to_vec()])
            .pop()
            .expect("one answer per payload")
    }

    /// Proposes every payload, pipelined, each exactly once (see the module documentation);
    /// one result per payload, in order. Each window of
    /// [`SESSION_UNANSWERED_MAX`](crate::engine::sessions::SESSION_UNANSWERED_MAX) payloads
    /// has the client's deadline.
    pub fn propose_many(
        &mut self,
        group: GroupId,
        payloads: &[Vec<u8>],
    ) -> Vec<Result<Committed, CallError>> {
        payloads
            .chunks(SESSION_UNANSWERED_MAX)
            .flat_map(|window| self.propose_window(group, window))
            .collect()
    }

    /// Proposes `payloads` (at most [`SESSION_UNANSWERED_MAX`]) in the client's session of
    /// `group`, each with its sequence number on every attempt, until each is answered or the
    /// deadline passes.
    fn propose_window(
        &mut self,
        group: GroupId,
        payloads: &[Vec<u8>],
    ) -> Vec<Result<Committed, CallError>> {
        let deadline = Instant::now() + self.deadline;
        let mut calls = SessionProposals {
            group,
            payloads,
            seqs: vec![0; payloads.len()],
            in_doubt: vec![false; payloads.len()],
            numbered_in: None,
            lowest_unanswered: 0,
            session_lost: false,
        };
        self.call_leader(group, deadline, &mut calls)
    }

    /// This client's session of `group`, registered at the group's leader if it has none.
    fn session_of(&mut self, group: GroupId, deadline: Instant) -> Result<SessionId, CallError> {
        while !self.sessions.contains_key(&group) {
            let registered = self.call_leader_once(group, deadline, |id| {
                ClientRequest::RegisterSession { id, group }
            });
            match registered {
                Ok(committed) => {
                    let id = SessionId(committed.index.0);
                    self.sessions
                        .insert(group, ClientSession { id, next_seq: 1 });
                }
                // A registration whose outcome is unknown leaves at most an unused session,
                // which expires: register again.
                Err(CallError::Refused(error)) if !certain(&error) => {
                    std::thread::sleep(RETRY_PAUSE)
                }
                Err(error) => return Err(error),
            }
        }
        Ok(self.sessions[&group].id)
    }

    /// The next sequence number of this client's session of `group` (which must exist).
    fn take_seq(&mut self, group: GroupId) -> u64 {
        let session = self.sessions.get_mut(&group).expect("a session");
        session.next_seq += 1;
        session.next_seq - 1
    }

    /// The node to send `group`'s next request to: its leader if known, else the next node in
    /// turn.
    fn target(&mut self, group: GroupId, rotation: &mut usize) -> NodeId {
        match self.leaders.get(&group) {
            Some(&leader) => leader,
            None => {
                *rotation += 1;
                self.nodes[*rotation % self.nodes.len()].0
            }
        }
    }

    /// Remembers the leader a "not leader" answer named (or forgets the group's leader).
    fn follow(&mut self, group: GroupId, leader: Option<NodeId>) {
        match leader {
            Some(leader) => self.leaders.insert(group, leader),
            None => self.leaders.remove(&group),
        };
    }

    /// Reads `group`'s state machine with `query` at the leader; the answer carries the index
    /// the read reflects.
    pub fn read(
        &mut self,
        group: GroupId,
        query: &[u8],
        consistency: ReadConsistency,
    ) -> Result<Committed, CallError> {
        let deadline = Instant::now() + self.deadline;
        let query = Bytes::copy_from_slice(query);
        self.call_leader_once(group, deadline, |id| ClientRequest::Read {
            id,
            group,
            consistency,
            query: query.clone(),
        })
    }

    /// Sends one request (built by `request` from its id) to the leader of `group`, following
    /// "not leader" answers until `deadline`. Any other refusal is final.
    fn call_leader_once(
        &mut self,
        group: GroupId,
        deadline: Instant,
        request: impl Fn(u64) -> ClientRequest,
    ) -> Result<Committed, CallError> {
        self.call_leader(group, deadline, &mut PlainCall { request })
            .pop()
            .expect("one answer")
    }

    /// Sends `calls`' requests to the leader of `group`, pipelined, following "not leader"
    /// answers and trying the nodes in turn while no leader is known, until each request is
    /// decided or `deadline` passes (then [`CallError::Deadline`], naming the last problem);
    /// `calls` decides what every other answer means. One result per request, in order.
    fn call_leader(
        &mut self,
        group: GroupId,
        deadline: Instant,
        calls: &mut impl LeaderCalls,
    ) -> Vec<Result<Committed, CallError>> {
        let mut results: Vec<Option<Result<Committed, CallError>>> = vec![None; calls.count()];
        let mut todo: Vec<usize> = (0..results.len()).collect();
        let mut last_problem = String::from("no attempt");
        let mut rotation = 0;
        while !todo.is_empty() {
            if Instant::now() >= deadline {
                for position in todo.drain(..) {
                    results[position] = Some(Err(CallError::Deadline {
                        last_problem: last_problem.clone(),
                    }));
                }
                break;
            }
            if let Err(error) = calls.prepare(self, &todo, deadline) {
                for position in todo.drain(..) {
                    results[position] = Some(Err(error.clone()));
                }
                break;
            }
            let target = self.target(group, &mut rotation);
            let requests: Vec<(u64, usize)> = todo
                .iter()
                .map(|&position| {
                    self.next_id += 1;
                    (self.next_id, position)
                })
                .collect();
            let batch: Vec<ClientRequest> = requests
                .iter()
                .map(|&(id, position)| calls.request(id, position))
                .collect();
            let answers = match self.exchange(target, self.shard_of(group), &batch) {
                Ok(answers) => answers,
                Err(problem) => {
                    // The requests may have reached the node before the connection broke.
                    last_problem = format!("n{}: {problem}", target.0);
                    self.leaders.remove(&group);
                    todo.iter().for_each(|&position| calls.unanswered(position));
                    std::thread::sleep(RETRY_PAUSE);
                    continue;
                }
            };
            let mut retry = Vec::new();
            let mut pause = false;
            for (id, position) in requests {
                match answers.get(&id) {
                    Some(ClientResponse::Committed { index, output, .. }) => {
                        results[position] = Some(Ok(Committed {
                            index: *index,
                            output: output.clone(),
                        }));
                        continue;
                    }
                    Some(ClientResponse::Error {
                        error: ClientError::NotLeader { leader, .. },
                        ..
                    }) => {
                        self.follow(group, *leader);
                        last_problem = format!("n{} is not the leader", target.0);
                    }
                    Some(ClientResponse::Error { error, .. }) => {
                        match calls.refused(position, error) {
                            Refused::Final(error) => {
                                results[position] = Some(Err(error));
                                continue;
                            }
                            Refused::Again { problem } => {
                                last_problem = format!("n{}: {problem}", target.0)
                            }
                            Refused::AfterPause { problem } => {
                                pause = true;
                                last_problem = problem.into();
                            }
                            Refused::Renumber => {}
                        }
                    }
                    Some(ClientResponse::Status { .. } | ClientResponse::AdminStatus { .. })
                    | None => calls.unanswered(position),
                }
                retry.push(position);
            }
            calls.after_round(self, &mut retry, &mut results);
            if !retry.is_empty() && (pause || !self.leaders.contains_key(&group)) {
                std::thread::sleep(RETRY_PAUSE);
            }
            todo = retry;
        }
        results
            .into_iter()
            .map(|result| result.expect("every request decided"))
            .collect()
    }

    /// Status of every group of `node` (all shards).
    pub fn status(&mut self, node: NodeId) -> Result<Vec<GroupSummary>, CallError> {
        let mut all = Vec::new();
        for shard in (0..self.shards).map(ShardId) {
            all.extend(self.status_of_shard(node, shard)?.1);
        }
        all.sort_by_key(|status| status.group);
        Ok(all)
    }

    /// Work counters and stage latencies of `node`, summed over its shards.
    pub fn node_stats(&mut self, node: NodeId) -> Result<NodeStats, CallError> {
        let mut total = NodeStats::default();
        for shard in (0..self.shards).map(ShardId) {
            let (stats, groups, stages) = self.status_of_shard(node, shard)?;
            total.groups.extend(groups);
            total.log.flushes += stats.flushes;
            total.log.entries_written += stats.entries_written;
            total.log.bytes_written += stats.bytes_written;
            total.stages.add_buckets(&stages);
        }
        total.groups.sort_by_key(|status| status.group);
        Ok(total)
    }

    fn status_of_shard(
        &mut self,
        node: NodeId,
        shard: ShardId,
    ) -> Result<(ShardStats, Vec<GroupSummary>, StageBuckets), CallError> {
        match self.ask(node, shard, |id| ClientRequest::Status { id })? {
            ClientResponse::Status { status, .. } => {
                let ShardStatus {
                    shard,
                    groups,
                    stages,
                    ..
                } = *status;
                Ok((shard, groups, stages))
            }
            _ => Err(no_answer("status")),
        }
    }

    /// Sends one request, numbered by `request`, to (node, shard) and returns its answer; a
    /// refusal is [`CallError::Refused`], a node the client does not know
    /// [`CallError::UnknownNode`].
    fn ask(
        &mut self,
        node: NodeId,
        shard: ShardId,
        request: impl FnOnce(u64) -> ClientRequest,
    ) -> Result<ClientResponse, CallError> {
        if !self.nodes.iter().any(|(id, _)| *id == node) {
            return Err(CallError::UnknownNode(node));
        }
        self.next_id += 1;
        let id = self.next_id;
        let mut answers = self
            .exchange(node, shard, &[request(id)])
            .map_err(|last_problem| CallError::Deadline { last_problem })?;
        match answers.remove(&id) {
            Some(ClientResponse::Error { error, .. }) => Err(CallError::Refused(error)),
            Some(answer) => Ok(answer),
            None => Err(no_answer("any")),
        }
    }

    /// Sends `requests` to (node, shard) and reads until each has an answer.
    fn exchange(
        &mut self,
        node: NodeId,
        shard: ShardId,
        requests: &[ClientRequest],
    ) -> Result<BTreeMap<u64, ClientResponse>, String> {
        let result = self.try_exchange(node, shard, requests);
        if result.is_err() {
            self.connections.remove(&(node, shard));
        }
        result
    }

    fn try_exchange(
        &mut self,
        node: NodeId,
        shard: ShardId,
        requests: &[ClientRequest],
    ) -> Result<BTreeMap<u64, ClientResponse>, String> {
        let deadline = Instant::now() + self.deadline;
        self.out.clear();
        let mut start = 0;
        while start < requests.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < requests.len()
                && (end == start
                    || bytes + request_wire_bytes(&requests[end]) < FRAME_BYTES_MAX / 2)
            {
                bytes += request_wire_bytes(&requests[end]);
                end += 1;
            }
            encode_requests(&requests[start..end], &mut self.out).map_err(|e| e.to_string())?;
            start = end;
        }
        let connection = self.connection(node, shard)?;
        let mut out = std::mem::take(&mut self.out);
        let connection = self.connections.get_mut(&connection).expect("just made");
        let written = connection.stream.write_all(&out).map_err(|e| e.to_string());
        out.clear();
        self.out = out;
        written?;
        let mut answers = BTreeMap::new();
        while answers.len() < requests.len() {
            match connection.decoder.next_frame().map_err(|e| e.to_string())? {
                Some(frame) if frame.kind == FrameKind::ClientResponses => {
                    for response in decode_responses_frame(&frame).map_err(|e| e.to_string())? {
                        answers.insert(response.id(), response);
                    }
                    continue;
                }
                Some(frame) => return Err(format!("unexpected {:?} frame", frame.kind)),
                None => {}
            }
            if Instant::now() >= deadline {
                return Err("no answer in time".into());
            }
            let spare = connection.decoder.spare(READ_SPARE_BYTES);
            match connection.stream.read(spare) {
                Ok(0) => return Err("connection closed".into()),
                Ok(read) => connection.decoder.filled(read),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(answers)
    }

    fn connection(&mut self, node: NodeId, shard: ShardId) -> Result<(NodeId, ShardId), String> {
        let key = (node, shard);
        if !self.connections.contains_key(&key) {
            let base = self
                .nodes
                .iter()
                .find(|(id, _)| *id == node)
                .map(|(_, addr)| *addr)
                .ok_or_else(|| format!("unknown node {node}"))?;
            let mut addr = base;
            addr.set_port(base.port() + shard.0 as u16);
            let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
                .map_err(|e| format!("connect {addr}: {e}"))?;
            let _ = stream.set_nodelay(true);
            let set_timeout = |timeout| {
                stream
                    .set_read_timeout(Some(timeout))
                    .map_err(|e| e.to_string())
            };
            set_timeout(CONNECT_TIMEOUT)?;
            let stream: Box<dyn BlockingIo> = match &self.tls {
                None => {
                    set_timeout(POLL)?;
                    Box::new(stream)
                }
                Some(tls) => {
                    let stream = tls
                        .connect_blocking(stream, node)
                        .map_err(|e| format!("TLS with node {node} at {addr}: {e}"))?;
                    stream
                        .sock
                        .set_read_timeout(Some(POLL))
                        .map_err(|e| e.to_string())?;
                    Box::new(stream)
                }
            };
            self.connections.insert(
                key,
                Connection {
                    stream,
                    decoder: FrameDecoder::new(),
                },
            );
        }
        Ok(key)
    }
}

/// What a refusal (other than "not leader") means for one request of [`Client::call_leader`].
enum Refused {
    /// The request's outcome is decided: this error.
    Final(CallError),
    /// Try again; `problem` is what went wrong.
    Again { problem: String },
    /// Try again after a pause (the server asks for one); `problem` says why.
    AfterPause { problem: &'static str },
    /// Try again once the round is over, under a new session ([`LeaderCalls::after_round`]).
    Renumber,
}

/// The requests of one [`Client::call_leader`] call and what their answers mean: where plain
/// requests and proposals in a client session differ.
trait LeaderCalls {
    /// How many requests there are.
    fn count(&self) -> usize;

    /// Readies the requests at positions `todo` before a round (registers a session, numbers
    /// the proposals); an error decides every one of them.
    fn prepare(
        &mut self,
        _client: &mut Client,
        _todo: &[usize],
        _deadline: Instant,
    ) -> Result<(), CallError> {
        Ok(())
    }

    /// The request at `position`, with request id `id`.
    fn request(&self, id: u64, position: usize) -> ClientRequest;

    /// An attempt of the request at `position` got no answer: it may have reached the server.
    fn unanswered(&mut self, _position: usize) {}

    /// What `error`, the answer to the request at `position`, means.
    fn refused(&mut self, position: usize, error: &ClientError) -> Refused;

    /// After a round: may decide requests about to be retried (`retry`), in `results`.
    fn after_round(
        &mut self,
        _client: &mut Client,
        _retry: &mut Vec<usize>,
        _results: &mut [Option<Result<Committed, CallError>>],
    ) {
    }
}

/// One request without a session (a read, an admin call, a session registration): every
/// refusal but "not leader" is final.
struct PlainCall<F> {
    request: F,
}

impl<F: Fn(u64) -> ClientRequest> LeaderCalls for PlainCall<F> {
    fn count(&self) -> usize {
        1
    }

    fn request(&self, id: u64, _position: usize) -> ClientRequest {
        (self.request)(id)
    }

    fn refused(&mut self, _position: usize, error: &ClientError) -> Refused {
        Refused::Final(CallError::Refused(error.clone()))
    }
}

/// Proposals in the client's session of `group` (see the module documentation): each keeps its
/// sequence number on every attempt, so the group applies it at most once.
struct SessionProposals<'a> {
    group: GroupId,
    payloads: &'a [Vec<u8>],
    /// Per payload: its number in `numbered_in`.
    seqs: Vec<u64>,
    /// Per payload: whether an attempt may have applied it.
    in_doubt: Vec<bool>,
    numbered_in: Option<SessionId>,
    /// The lowest number not yet answered, sent with this round's requests.
    lowest_unanswered: u64,
    /// Whether this round was told that the group forgot the session.
    session_lost: bool,
}

impl LeaderCalls for SessionProposals<'_> {
    fn count(&self) -> usize {
        self.payloads.len()
    }

    fn prepare(
        &mut self,
        client: &mut Client,
        todo: &[usize],
        deadline: Instant,
    ) -> Result<(), CallError> {
        let session = client.session_of(self.group, deadline)?;
        if self.numbered_in != Some(session) {
            // A new session: nothing still to do was possibly applied under the last one.
            for &position in todo {
                self.seqs[position] = client.take_seq(self.group);
            }
            self.numbered_in = Some(session);
        }
        let lowest_unanswered = todo.iter().map(|&position| self.seqs[position]).min();
        self.lowest_unanswered = lowest_unanswered.expect("something to do");
        self.session_lost = false;
        Ok(())
    }

    fn request(&self, id: u64, position: usize) -> ClientRequest {
        let session = self.numbered_in.expect("prepared");
        ClientRequest::ProposeInSession {
            id,
            group: self.group,
            request: SessionRequest::new(session, self.seqs[position], self.lowest_unanswered)
                .expect("the lowest unanswered number is the lowest of those sent"),
            payload: Bytes::copy_from_slice(&self.payloads[position]),
        }
    }

    fn unanswered(&mut self, position: usize) {
        self.in_doubt[position] = true;
    }

    fn refused(&mut self, position: usize, error: &ClientError) -> Refused {
        match error {
            ClientError::Session(SessionRefusal::Unknown(_)) => {
                self.session_lost = true;
                Refused::Renumber
            }
            ClientError::Session(SessionRefusal::Busy(_)) => Refused::AfterPause {
                problem: "the session's answers are not acknowledged yet",
            },
            // A certain refusal of a payload no attempt may have applied is final; of one that
            // may have been applied, only this attempt is refused: try again.
            error if certain(error) && !self.in_doubt[position] => {
                Refused::Final(CallError::Refused(error.clone()))
            }
            error => {
                self.in_doubt[position] |= !certain(error);
                Refused::Again {
                    problem: error.to_string(),
                }
            }
        }
    }

    fn after_round(
        &mut self,
        client: &mut Client,
        retry: &mut Vec<usize>,
        results: &mut [Option<Result<Committed, CallError>>],
    ) {
        if !self.session_lost {
            return;
        }
        // The group forgot the session: whatever may have been applied under it stays
        // unknown; the rest gets new numbers in a new session.
        let (group, session) = (self.group, self.numbered_in.expect("prepared"));
        client.sessions.remove(&group);
        retry.retain(|&position| {
            if self.in_doubt[position] {
                results[position] = Some(Err(CallError::SessionLost { group, session }));
            }
            !self.in_doubt[position]
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_naming_a_node_the_client_does_not_know_fails_at_once() {
        // Nothing listens there: the client must not even try to connect.
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut client = Client::connect(vec![(NodeId(1), addr)], 1, Duration::from_secs(30));
        assert_eq!(
            client.status(NodeId(7)),
            Err(CallError::UnknownNode(NodeId(7)))
        );
        assert_eq!(
            client.admin_status(NodeId(7)),
            Err(CallError::UnknownNode(NodeId(7)))
        );
        assert_eq!(
            client.snapshot(NodeId(7), GroupId(0)),
            Err(CallError::UnknownNode(NodeId(7)))
        );
        // A known node that does not answer is a deadline, not an unknown node.
        assert!(matches!(
            client.status(NodeId(1)),
            Err(CallError::Deadline { .. })
        ));
    }
}

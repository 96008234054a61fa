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
    ClientResponse, GroupAdminStatus, GroupSummary, ShardStats, StageBuckets,
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
        self.next_id += 1;
        let id = self.next_id;
        let answers = self
            .exchange(node, shard, &[ClientRequest::AdminStatus { id }])
            .map_err(|last_problem| CallError::Deadline { last_problem })?;
        match answers.get(&id) {
            Some(ClientResponse::AdminStatus {
                node,
                shard_count,
                groups,
                ..
            }) => Ok((*node, *shard_count, groups.clone())),
            Some(ClientResponse::Error { error, .. }) => Err(CallError::Refused(error.clone())),
            _ => Err(CallError::Deadline {
                last_problem: "no admin status answer".into(),
            }),
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
        self.call_leader(group, deadline, &[Vec::new()], |id, _| {
            ClientRequest::ChangeMembership {
                id,
                group,
                change,
                addr: addr.clone(),
                client_addr,
            }
        })
        .pop()
        .expect("one answer")
    }

    /// Asks `group`'s leader (following "not leader" answers) to hand leadership to `to`.
    /// Returns once the leader started the transfer; watch the status for its outcome.
    pub fn transfer_leader(&mut self, group: GroupId, to: NodeId) -> Result<(), CallError> {
        let deadline = Instant::now() + self.deadline;
        self.call_leader(group, deadline, &[Vec::new()], |id, _| {
            ClientRequest::TransferLeader { id, group, to }
        })
        .pop()
        .expect("one answer")
        .map(drop)
    }

    /// Snapshots `group` on `node` now; returns the snapshot's index (0: none taken).
    pub fn snapshot(&mut self, node: NodeId, group: GroupId) -> Result<LogIndex, CallError> {
        self.next_id += 1;
        let id = self.next_id;
        let request = ClientRequest::Snapshot { id, group };
        let answers = self
            .exchange(node, self.shard_of(group), &[request])
            .map_err(|last_problem| CallError::Deadline { last_problem })?;
        match answers.get(&id) {
            Some(ClientResponse::Committed { index, .. }) => Ok(*index),
            Some(ClientResponse::Error { error, .. }) => Err(CallError::Refused(error.clone())),
            _ => Err(CallError::Deadline {
                last_problem: "no snapshot answer".into(),
            }),
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
        let mut results: Vec<Option<Result<Committed, CallError>>> = vec![None; payloads.len()];
        let mut todo: Vec<usize> = (0..payloads.len()).collect();
        // Per payload: its number in `numbered_in`, and whether an attempt may have applied it.
        let mut seqs = vec![0u64; payloads.len()];
        let mut in_doubt = vec![false; payloads.len()];
        let mut numbered_in: Option<SessionId> = None;
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
            let session = match self.session_of(group, deadline) {
                Ok(session) => session,
                Err(error) => {
                    for position in todo.drain(..) {
                        results[position] = Some(Err(error.clone()));
                    }
                    break;
                }
            };
            if numbered_in != Some(session) {
                // A new session: nothing still to do was possibly applied under the last one.
                for &position in &todo {
                    seqs[position] = self.take_seq(group);
                }
                numbered_in = Some(session);
            }
            let lowest_unanswered = todo.iter().map(|&position| seqs[position]).min();
            let lowest_unanswered = lowest_unanswered.expect("something to do");
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
                .map(|&(id, position)| ClientRequest::ProposeInSession {
                    id,
                    group,
                    request: SessionRequest::new(session, seqs[position], lowest_unanswered)
                        .expect("the lowest unanswered number is the lowest of those sent"),
                    payload: Bytes::copy_from_slice(&payloads[position]),
                })
                .collect();
            let answers = match self.exchange(target, self.shard_of(group), &batch) {
                Ok(answers) => answers,
                Err(problem) => {
                    // The requests may have reached the node before the connection broke.
                    last_problem = format!("n{}: {problem}", target.0);
                    self.leaders.remove(&group);
                    todo.iter().for_each(|&position| in_doubt[position] = true);
                    std::thread::sleep(RETRY_PAUSE);
                    continue;
                }
            };
            let mut retry = Vec::new();
            let mut session_lost = false;
            let mut busy = false;
            for (id, position) in requests {
                let answer = answers.get(&id);
                match answer {
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
                    Some(ClientResponse::Error {
                        error: ClientError::Session(SessionRefusal::Unknown(_)),
                        ..
                    }) => session_lost = true,
                    Some(ClientResponse::Error {
                        error: ClientError::Session(SessionRefusal::Busy(_)),
                        ..
                    }) => {
                        busy = true;
                        last_problem = "the session's answers are not acknowledged yet".into();
                    }
                    // A certain refusal of a payload no attempt may have applied is final; of
                    // one that may have been applied, only this attempt is refused: try again.
                    Some(ClientResponse::Error { error, .. })
                        if certain(error) && !in_doubt[position] =>
                    {
                        results[position] = Some(Err(CallError::Refused(error.clone())));
                        continue;
                    }
                    Some(ClientResponse::Error { error, .. }) => {
                        in_doubt[position] |= !certain(error);
                        last_problem = format!("n{}: {error}", target.0);
                    }
                    Some(ClientResponse::Status { .. } | ClientResponse::AdminStatus { .. })
                    | None => in_doubt[position] = true,
                }
                retry.push(position);
            }
            if session_lost {
                // The group forgot the session: whatever may have been applied under it stays
                // unknown; the rest gets new numbers in a new session.
                self.sessions.remove(&group);
                retry.retain(|&position| {
                    if in_doubt[position] {
                        results[position] = Some(Err(CallError::SessionLost { group, session }));
                    }
                    !in_doubt[position]
                });
            }
            if !retry.is_empty() && (busy || !self.leaders.contains_key(&group)) {
                std::thread::sleep(RETRY_PAUSE);
            }
            todo = retry;
        }
        results
            .into_iter()
            .map(|result| result.expect("every payload decided"))
            .collect()
    }

    /// This client's session of `group`, registered at the group's leader if it has none.
    fn session_of(&mut self, group: GroupId, deadline: Instant) -> Result<SessionId, CallError> {
        while !self.sessions.contains_key(&group) {
            let registered = self
                .call_leader(group, deadline, &[Vec::new()], |id, _| {
                    ClientRequest::RegisterSession { id, group }
                })
                .pop()
                .expect("one answer");
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
        self.call_leader(group, deadline, &[query.to_vec()], |id, query| {
            ClientRequest::Read {
                id,
                group,
                consistency,
                query,
            }
        })
        .pop()
        .expect("one answer per query")
    }

    /// Sends one request per item (built by `request` from an id and the item) to the leader
    /// of `group`, pipelined, following "not leader" answers until `deadline`; one result
    /// per item, in order.
    fn call_leader(
        &mut self,
        group: GroupId,
        deadline: Instant,
        items: &[Vec<u8>],
        request: impl Fn(u64, Bytes) -> ClientRequest,
    ) -> Vec<Result<Committed, CallError>> {
        let mut results: Vec<Option<Result<Committed, CallError>>> = vec![None; items.len()];
        let mut todo: Vec<usize> = (0..items.len()).collect();
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
                .map(|&(id, position)| request(id, Bytes::copy_from_slice(&items[position])))
                .collect();
            let answers = match self.exchange(target, self.shard_of(group), &batch) {
                Ok(answers) => answers,
                Err(problem) => {
                    last_problem = format!("n{}: {problem}", target.0);
                    self.leaders.remove(&group);
                    std::thread::sleep(RETRY_PAUSE);
                    continue;
                }
            };
            let mut retry = Vec::new();
            for (id, position) in requests {
                match answers.get(&id) {
                    Some(ClientResponse::Committed { index, output, .. }) => {
                        results[position] = Some(Ok(Committed {
                            index: *index,
                            output: output.clone(),
                        }));
                    }
                    Some(ClientResponse::Error {
                        error: ClientError::NotLeader { leader, .. },
                        ..
                    }) => {
                        self.follow(group, *leader);
                        last_problem = format!("n{} is not the leader", target.0);
                        retry.push(position);
                    }
                    Some(ClientResponse::Error { error, .. }) => {
                        results[position] = Some(Err(CallError::Refused(error.clone())));
                    }
                    Some(ClientResponse::Status { .. } | ClientResponse::AdminStatus { .. })
                    | None => retry.push(position),
                }
            }
            if !retry.is_empty() && !self.leaders.contains_key(&group) {
                std::thread::sleep(RETRY_PAUSE);
            }
            todo = retry;
        }
        results
            .into_iter()
            .map(|result| result.expect("every item decided"))
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
        self.next_id += 1;
        let id = self.next_id;
        let answers = self
            .exchange(node, shard, &[ClientRequest::Status { id }])
            .map_err(|last_problem| CallError::Deadline { last_problem })?;
        match answers.get(&id) {
            Some(ClientResponse::Status {
                shard,
                groups,
                stages,
                ..
            }) => Ok((*shard, groups.clone(), stages.clone())),
            Some(ClientResponse::Error { error, .. }) => Err(CallError::Refused(error.clone())),
            _ => Err(CallError::Deadline {
                last_problem: "no status answer".into(),
            }),
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

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
//! Writes that leave this node go in its client session of the group
//! ([`crate::kv::forwarding_sessions`]): the first forwarded attempt of a write takes the next
//! sequence number of that session, and every later attempt of it (forwarded, or proposed here
//! if this node leads the group by then) carries the same number, so the group applies the
//! write at most once however often it is sent. A write proposed here first goes without a
//! session (the path of clients connected to the leader, as fast as before sessions existed).
//!
//! Invariants:
//! - An attempt without a session is repeated only when it certainly did nothing (the node was
//!   not leader, an entry of another term was applied at the entry's index, the forwarding
//!   connection never sent it) or when it only read ([`decide`]). A write whose fate is
//!   unknown (commit timeout, entry cut from the leader's log, shutdown) is answered with an
//!   error that says so, never retried.
//! - An attempt in a session is repeated, with the same number, whatever happened to it
//!   ([`decide_in_session`]), including when its fate is unknown (the leader timed out, the
//!   connection to it broke after sending, the leader crashed): the client then gets the write
//!   applied exactly once. It fails only on a certain refusal before any attempt may have
//!   applied it, and is answered "unknown" only if the deadline passes, or the group forgot the
//!   session, after an attempt whose fate is unknown.
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
use futures_lite::future::zip;

use crate::api::{GroupStatus, Node, ProposalError, ReadConsistency, Work};
use crate::kv::combine::{combine, Combine};
use crate::kv::command::{Here, Routed};
use crate::kv::forward::{ForwardError, ForwardPool, PeerKey};
use crate::kv::forwarding_sessions::{ForwardingSessions, InFlight};
use crate::kv::gather::Gatherer;
use crate::kv::in_order::{join_in_order, BoxFuture};
use crate::kv::parse::{parse_value, BULK_BYTES_MAX, REPLY_LIMITS};
use crate::kv::peer_proof::ClusterSecret;
use crate::kv::resp::{self, put_array_header, put_bulk, Value};
use crate::kv::stats::RespStats;
use crate::types::{GroupId, NodeId, PeerAddr, SessionId, SessionRefusal, SessionRequest};

/// How long a command keeps looking for its groups' leaders.
pub const ROUTE_DEADLINE: Duration = Duration::from_secs(5);

const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_millis(200);
const UNKNOWN: u64 = u64::MAX;

/// How reads are served (`--read`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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
    /// The mode's name as `--read` and `RINGRAFT.READ` take it, in lowercase.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The [`ReadConsistency`] the node serves a read in this mode with.
    pub fn consistency(self) -> ReadConsistency {
        match self {
            ReadMode::Linearizable => ReadConsistency::Linearizable,
            ReadMode::Lease => ReadConsistency::Lease,
            ReadMode::Stale => ReadConsistency::Stale,
        }
    }

    /// The mode named `name` (any case); `None` if there is no such mode.
    pub fn from_name(name: &str) -> Option<ReadMode> {
        name.parse().ok()
    }
}

/// The outcome of one attempt at one part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The client session is unknown to the group and no attempt so far may have applied the
    /// write: register a new session and try again with a new number.
    NewSession,
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

/// The node's work for `entry` of `group`: a proposal (in `session`, if it has one) when `read`
/// is `None`, else a read in that mode.
fn work_for(
    group: GroupId,
    entry: Bytes,
    read: Option<ReadMode>,
    session: Option<SessionRequest>,
) -> Work {
    match read {
        None => Work::Propose {
            group,
            payload: entry,
            session,
        },
        Some(mode) => Work::Read {
            group,
            query: entry,
            consistency: mode.consistency(),
        },
    }
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

/// What one attempt of a write in a client session came to, wherever it ran: on this node
/// ([`SessionAnswer::of`]) or on the node it was forwarded to, which answers with
/// [`SessionAnswer::into_reply`] and is read back with [`SessionAnswer::of_reply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionAnswer {
    /// The entry's output: applied now, or earlier by another attempt.
    Done(Bytes),
    /// Not the leader; this one is.
    Redirect(NodeId),
    /// This attempt certainly did nothing (no leader, a leadership transfer, another entry at
    /// its index, a session holding too many unacknowledged answers): try again.
    NothingDone,
    /// This attempt may have applied the write or not (a commit timeout, a shutdown, an entry
    /// cut from the leader's log, a connection lost after sending).
    InDoubt,
    /// The group does not know the session.
    SessionUnknown,
    /// A final refusal of this attempt (the error text), which certainly did nothing.
    NotApplied(String),
}

impl SessionAnswer {
    /// The answer of an attempt made on this node (`this_node`).
    pub fn of(result: Result<Bytes, ProposalError>, this_node: NodeId) -> SessionAnswer {
        match result {
            Ok(output) => SessionAnswer::Done(output),
            Err(ProposalError::NotLeader {
                leader: Some(leader),
            }) if leader != this_node => SessionAnswer::Redirect(leader),
            Err(
                ProposalError::NotLeader { .. }
                | ProposalError::Transferring
                | ProposalError::Superseded { .. }
                | ProposalError::Session(SessionRefusal::Busy(_)),
            ) => SessionAnswer::NothingDone,
            Err(ProposalError::Session(SessionRefusal::Unknown(_))) => {
                SessionAnswer::SessionUnknown
            }
            Err(error) if !error.certainly_not_applied() => SessionAnswer::InDoubt,
            Err(error) => SessionAnswer::NotApplied(error.to_string()),
        }
    }

    /// The reply a node sends to the node that forwarded the attempt.
    pub fn into_reply(self) -> Bytes {
        match self {
            SessionAnswer::Done(output) => output,
            SessionAnswer::Redirect(leader) => resp::error(&format!("NOTLEADER {}", leader.0)),
            SessionAnswer::NothingDone => resp::error("TRYAGAIN nothing was done"),
            SessionAnswer::InDoubt => resp::error("INDOUBT the write may or may not be applied"),
            SessionAnswer::SessionUnknown => {
                resp::error("SESSIONUNKNOWN the group does not know the client session")
            }
            SessionAnswer::NotApplied(text) => resp::error(&format!("NOTAPPLIED {text}")),
        }
    }

    /// Reads the reply of a node that tried a forwarded attempt (anything else is an output).
    pub fn of_reply(reply: Bytes) -> SessionAnswer {
        let text = |prefix: &[u8]| {
            reply
                .strip_prefix(prefix)
                .map(|rest| String::from_utf8_lossy(rest).trim_end().to_string())
        };
        if let Some(leader) = text(b"-NOTLEADER ") {
            return match leader.parse() {
                Ok(id) => SessionAnswer::Redirect(NodeId(id)),
                Err(_) => SessionAnswer::NothingDone,
            };
        }
        if reply.starts_with(b"-TRYAGAIN") {
            return SessionAnswer::NothingDone;
        }
        if reply.starts_with(b"-INDOUBT") {
            return SessionAnswer::InDoubt;
        }
        if reply.starts_with(b"-SESSIONUNKNOWN") {
            return SessionAnswer::SessionUnknown;
        }
        match text(b"-NOTAPPLIED ") {
            Some(refusal) => SessionAnswer::NotApplied(refusal),
            None => SessionAnswer::Done(reply),
        }
    }
}

/// The retry policy of a write in a client session: what to do after an attempt that came to
/// `answer`. `in_doubt` says whether some attempt of the write may have applied it; it is set
/// here when this one may have. Everything but a final refusal is tried again with the same
/// sequence number; a refusal or a lost session is final only while nothing is in doubt, and
/// turns into an unknown outcome otherwise. The simulator's clients decide with this same
/// function.
pub fn decide_in_session(answer: SessionAnswer, in_doubt: &mut bool) -> Attempt {
    match answer {
        SessionAnswer::Done(output) => Attempt::Done(output),
        SessionAnswer::Redirect(leader) => Attempt::Redirect(leader),
        SessionAnswer::NothingDone => Attempt::Retry,
        SessionAnswer::InDoubt => {
            *in_doubt = true;
            Attempt::Retry
        }
        SessionAnswer::SessionUnknown if !*in_doubt => Attempt::NewSession,
        SessionAnswer::SessionUnknown => Attempt::Unknown(resp::error(
            "ERR the group forgot this node's client session while the write was retried; it \
             may or may not have been applied",
        )),
        SessionAnswer::NotApplied(text) if !*in_doubt => Attempt::Failed(resp::error(&format!(
            "ERR {text}; the write was not applied"
        ))),
        SessionAnswer::NotApplied(text) => Attempt::Unknown(resp::error(&format!(
            "ERR {text}; an earlier attempt may have applied the write"
        ))),
    }
}

/// A write's place in this node's client session of its group, once it has one.
struct SessionWrite<'a> {
    /// The session and the write's number in it.
    numbered: Option<(SessionId, InFlight<'a>)>,
    /// Whether an attempt may have applied the write.
    in_doubt: bool,
}

/// Runs the parts of commands for one node: here where this node leads the group (or knows
/// no leader, or the read is stale), otherwise forwarded to the leader (see the module docs).
pub struct Router {
    node: Arc<Node>,
    /// Hands the batches of every connection ready at once to `node` together.
    gatherer: Arc<Gatherer>,
    /// What the RESP server counts, by command.
    stats: Arc<RespStats>,
    /// Per group: the leader last heard of, or [`UNKNOWN`].
    leaders: Vec<AtomicU64>,
    pool: ForwardPool,
    read_mode: ReadMode,
    sessions: ForwardingSessions,
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
            gatherer: Gatherer::new(node.clone()),
            node,
            stats: Arc::new(RespStats::default()),
            leaders: (0..groups).map(|_| AtomicU64::new(UNKNOWN)).collect(),
            pool: ForwardPool::new(resp_addrs, key, tls),
            read_mode,
            sessions: ForwardingSessions::new(groups as u32),
        }
    }

    /// The RESP server's command counts.
    pub fn stats(&self) -> &Arc<RespStats> {
        &self.stats
    }

    /// How this node serves reads (`--read`).
    pub fn read_mode(&self) -> ReadMode {
        self.read_mode
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node.id()
    }

    /// Raft groups of the cluster.
    pub fn groups(&self) -> u32 {
        self.node.config().groups
    }

    /// Runs every part of every command in `commands` and merges each command's replies: the
    /// commands' replies, in order. `lane` picks the forwarding connection (one per client
    /// connection).
    ///
    /// The first attempts of all parts this node tries itself (it leads the group or knows no
    /// leader, or the read is stale) go to the node as one batch ([`Node::run_batch`]: one
    /// hand-over to each shard and one answer back, the parts in command order; together with
    /// the batches of other connections ready at the same moment, [`Gatherer`]), while the
    /// parts for groups led elsewhere are forwarded at the same time, each in order. A part
    /// whose batched attempt must be tried again (not the leader after all, no leader yet)
    /// goes on alone, exactly as if its first attempt had been made alone.
    pub async fn run_batch(self: &Arc<Self>, commands: Vec<Routed>, lane: usize) -> Vec<Bytes> {
        let mut parts = Vec::with_capacity(commands.len());
        let mut works = Vec::with_capacity(commands.len());
        let mut forwarded: Vec<BoxFuture<Bytes>> = Vec::new();
        for (command, routed) in commands.iter().enumerate() {
            let read = (!routed.write).then_some(self.read_mode);
            for (group, entry) in &routed.parts {
                let (group, entry) = (*group, entry.clone());
                let first = if let Some(refusal) = too_large(&entry) {
                    First::Reply(refusal)
                } else if self.tried_here_first(group, read) {
                    works.push(work_for(group, entry.clone(), read, None));
                    First::Here
                } else {
                    let router = self.clone();
                    let entry = entry.clone();
                    forwarded.push(Box::pin(async move {
                        router.part(group, entry, read, lane, None).await
                    }));
                    First::Forwarded
                };
                parts.push(Part {
                    command,
                    group,
                    entry,
                    read,
                    first,
                });
            }
        }
        let tried = async {
            match works.is_empty() {
                true => Vec::new(),
                false => self.gatherer.run(works).await,
            }
        };
        let (tried, forwarded) = zip(tried, join_in_order(forwarded)).await;
        let (mut tried, mut forwarded) = (tried.into_iter(), forwarded.into_iter());
        // Each part's reply, or the place of its retry among `retries`.
        let mut replies = Vec::with_capacity(parts.len());
        let mut retries: Vec<BoxFuture<Bytes>> = Vec::new();
        for part in &parts {
            let reply = match &part.first {
                First::Reply(refusal) => Some(refusal.clone()),
                First::Forwarded => forwarded.next(),
                First::Here => {
                    let result = tried
                        .next()
                        .unwrap_or(Err(ProposalError::ShuttingDown))
                        .map(|done| done.output);
                    match decide(result, part.read.is_none(), self.node.id()) {
                        Attempt::Done(reply) | Attempt::Unknown(reply) | Attempt::Failed(reply) => {
                            Some(reply)
                        }
                        attempt => {
                            let router = self.clone();
                            let (group, entry, read) = (part.group, part.entry.clone(), part.read);
                            retries.push(Box::pin(async move {
                                router.part(group, entry, read, lane, Some(attempt)).await
                            }));
                            None
                        }
                    }
                }
            };
            replies.push(reply);
        }
        let mut retried = join_in_order(retries).await.into_iter();
        let mut replies = replies
            .into_iter()
            .map(|reply| reply.or_else(|| retried.next()).unwrap_or_else(lost_reply));
        let mut parts = parts.iter().peekable();
        commands
            .iter()
            .enumerate()
            .map(|(command, routed)| {
                if let (Combine::Single, [_]) = (&routed.combine, &routed.parts[..]) {
                    // The one part's reply is the command's (`combine` would return it too).
                    parts.next();
                    return replies.next().unwrap_or_else(lost_reply);
                }
                let mut own = Vec::with_capacity(routed.parts.len());
                while parts.next_if(|part| part.command == command).is_some() {
                    own.extend(replies.next());
                }
                combine(&routed.combine, own)
            })
            .collect()
    }

    /// Whether the first attempt of a part for `group` is made on this node: it leads the
    /// group or knows no leader, or the read is stale.
    fn tried_here_first(&self, group: GroupId, read: Option<ReadMode>) -> bool {
        read == Some(ReadMode::Stale)
            || self
                .leader(group)
                .is_none_or(|leader| leader == self.node.id())
    }

    /// Tries entries other nodes forwarded here ([`Here`]), on this node only and together (one
    /// batch through the node, gathered with the other connections' commands); their
    /// replies, in order. A forwarded write in a session is answered as
    /// [`SessionAnswer::into_reply`] says; anything else as a command of this node's own
    /// clients would be, except that a redirect or a missing leader is an error reply for the
    /// forwarding node to act on.
    pub async fn here(&self, requests: Vec<Here>) -> Vec<Bytes> {
        let works = requests
            .iter()
            .map(|here| work_for(here.group, here.entry.clone(), here.read, here.session))
            .collect();
        let results = self.gatherer.run(works).await;
        let this_node = self.node.id();
        requests
            .iter()
            .zip(results)
            .map(|(here, result)| {
                let result = result.map(|done| done.output);
                if here.session.is_some() {
                    return SessionAnswer::of(result, this_node).into_reply();
                }
                match decide(result, here.read.is_none(), this_node) {
                    Attempt::Done(reply) | Attempt::Unknown(reply) | Attempt::Failed(reply) => {
                        reply
                    }
                    Attempt::Redirect(leader) => resp::error(&format!("NOTLEADER {}", leader.0)),
                    Attempt::Retry | Attempt::NewSession => {
                        resp::error("TRYAGAIN no leader known here")
                    }
                }
            })
            .collect()
    }

    /// Registers a client session of `group` on this node, for another node that asked: the
    /// session's id as an integer reply, or a routing error ([`SessionAnswer::into_reply`]).
    pub async fn register_here(&self, group: GroupId) -> Bytes {
        match self.node.register_session(group).await {
            Ok(session) => Bytes::from(Value::Integer(session.0 as i64).encode()),
            Err(error) => SessionAnswer::of(Err(error), self.node.id()).into_reply(),
        }
    }

    /// This node's view of every group.
    pub async fn status(&self) -> Vec<GroupStatus> {
        self.node.status().await
    }

    /// Runs one part until it has a reply (see the module docs). `first` is the outcome of an
    /// attempt already made on this node (in a batch), if any: the part goes on from it as
    /// from any attempt of its own.
    async fn part(
        &self,
        group: GroupId,
        entry: Bytes,
        read: Option<ReadMode>,
        lane: usize,
        mut first: Option<Attempt>,
    ) -> Bytes {
        let deadline = Instant::now() + ROUTE_DEADLINE;
        let mut backoff = BACKOFF_MIN;
        let mut redirects = 0;
        let mut write = SessionWrite {
            numbered: None,
            in_doubt: false,
        };
        loop {
            let target = self
                .leader(group)
                .filter(|&leader| leader != self.node.id() && read != Some(ReadMode::Stale));
            let attempt = match (first.take(), target, read) {
                (Some(attempt), _, _) => attempt,
                (None, Some(leader), Some(_)) => {
                    self.forward(leader, group, &entry, read, lane).await
                }
                (None, None, Some(_)) => self.local(group, entry.clone(), read).await,
                // A write for a group this node leads (or knows no leader of) goes without a
                // session until an attempt of it has been forwarded.
                (None, None, None) if write.numbered.is_none() => {
                    self.local(group, entry.clone(), None).await
                }
                (None, target, None) => {
                    self.write_in_session(group, &entry, target, lane, &mut write, deadline)
                        .await
                }
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
                Attempt::NewSession => {
                    if let Some((session, _)) = write.numbered.take() {
                        self.sessions.forget(group, session);
                    }
                }
            }
            if Instant::now() + backoff > deadline {
                if write.in_doubt {
                    return resp::error(&format!(
                        "ERR no leader of group {} answered within {} s after an attempt whose \
                         outcome is unknown; the write may or may not have been applied",
                        group.0,
                        ROUTE_DEADLINE.as_secs()
                    ));
                }
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

    /// One attempt of a write in this node's client session of `group`, on `target` (or here,
    /// when this node leads the group or knows no leader), numbered on its first attempt.
    async fn write_in_session<'a>(
        &'a self,
        group: GroupId,
        entry: &Bytes,
        target: Option<NodeId>,
        lane: usize,
        write: &mut SessionWrite<'a>,
        deadline: Instant,
    ) -> Attempt {
        if write.numbered.is_none() {
            // Nothing is in doubt yet: no attempt was numbered.
            let session = match self.session(group, lane, deadline).await {
                Ok(session) => session,
                Err(attempt) => return attempt,
            };
            write.numbered = Some((session, self.sessions.start(group).await));
        }
        let (session, in_flight) = write.numbered.as_ref().expect("numbered above");
        let request = SessionRequest::new(
            *session,
            in_flight.seq(),
            self.sessions.lowest_unanswered(group),
        )
        .expect("the lowest number in flight is at most this write's");
        let answer = match target {
            Some(leader) => {
                self.forward_in_session(leader, group, entry, request, lane)
                    .await
            }
            None => {
                let result = self
                    .node
                    .propose_in_session(group, request, entry.clone())
                    .await;
                SessionAnswer::of(result.map(|done| done.output), self.node.id())
            }
        };
        decide_in_session(answer, &mut write.in_doubt)
    }

    /// This node's client session of `group`, registered (on the group's leader) if it has
    /// none. Otherwise what the write comes to: `Retry` if no leader registered one before
    /// `deadline`, `Failed` if the leader refused this node's forwarding (nothing was sent).
    async fn session(
        &self,
        group: GroupId,
        lane: usize,
        deadline: Instant,
    ) -> Result<SessionId, Attempt> {
        let _registering = self.sessions.registering(group).await;
        let mut backoff = BACKOFF_MIN;
        loop {
            if let Some(session) = self.sessions.current(group) {
                return Ok(session);
            }
            let target = self
                .leader(group)
                .filter(|&leader| leader != self.node.id());
            let registered = match target {
                None => self
                    .node
                    .register_session(group)
                    .await
                    .map_err(|error| SessionAnswer::of(Err(error), self.node.id())),
                Some(leader) => {
                    let mut request = Vec::new();
                    put_array_header(&mut request, 2);
                    put_bulk(&mut request, b"RINGRAFT.SESSION");
                    put_bulk(&mut request, group.0.to_string().as_bytes());
                    match self.pool.call(leader, lane, Bytes::from(request)).await {
                        Ok(reply) => registered_session(reply),
                        Err(ForwardError::Refused) => {
                            let refusal = refused_forward(leader, group);
                            return Err(Attempt::Failed(resp::error(&format!("ERR {refusal}"))));
                        }
                        Err(ForwardError::Unreachable | ForwardError::Lost) => {
                            Err(SessionAnswer::NothingDone)
                        }
                    }
                }
            };
            match registered {
                Ok(session) => self.sessions.set(group, session),
                Err(SessionAnswer::Redirect(leader)) => self.remember(group, Some(leader)),
                // Whatever else happened, at most an unused session was registered: it expires.
                Err(_) => self.remember(group, None),
            }
            if self.sessions.current(group).is_none() {
                if Instant::now() + backoff > deadline {
                    return Err(Attempt::Retry);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
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

    /// Forwards `entry`, a write numbered `request` in this node's client session, to `to`.
    async fn forward_in_session(
        &self,
        to: NodeId,
        group: GroupId,
        entry: &[u8],
        request: SessionRequest,
        lane: usize,
    ) -> SessionAnswer {
        let mut bytes = Vec::with_capacity(entry.len() + 128);
        put_array_header(&mut bytes, 6);
        put_bulk(&mut bytes, b"RINGRAFT.PROPOSE");
        put_bulk(&mut bytes, group.0.to_string().as_bytes());
        put_bulk(&mut bytes, entry);
        for number in [
            request.session().0,
            request.seq(),
            request.lowest_unanswered(),
        ] {
            put_bulk(&mut bytes, number.to_string().as_bytes());
        }
        match self.pool.call(to, lane, Bytes::from(bytes)).await {
            Ok(reply) => SessionAnswer::of_reply(reply),
            Err(ForwardError::Unreachable) => SessionAnswer::NothingDone,
            Err(ForwardError::Lost) => SessionAnswer::InDoubt,
            Err(ForwardError::Refused) => SessionAnswer::NotApplied(refused_forward(to, group)),
        }
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
            Err(ForwardError::Refused) => {
                Attempt::Failed(resp::error(&format!("ERR {}", refused_forward(to, group))))
            }
            Err(ForwardError::Lost) if read.is_some() => Attempt::Retry,
            Err(ForwardError::Lost) => Attempt::Unknown(resp::error(
                "ERR connection to the leader lost; the write may or may not have been applied",
            )),
        }
    }
}

/// One part of a command in a batch ([`Router::run_batch`]).
struct Part {
    /// The command's place in the batch.
    command: usize,
    group: GroupId,
    entry: Bytes,
    read: Option<ReadMode>,
    first: First,
}

/// How a part of a batch is first attempted.
enum First {
    /// Not at all: its reply is this refusal.
    Reply(Bytes),
    /// On this node, in the batch handed to it.
    Here,
    /// On the group's leader, in order with the other forwarded parts.
    Forwarded,
}

/// The refusal of an entry too large to propose or forward, if it is.
fn too_large(entry: &[u8]) -> Option<Bytes> {
    (entry.len() > BULK_BYTES_MAX).then(|| {
        resp::error(&format!(
            "ERR command too large: {} bytes in one group's entry, the limit is {BULK_BYTES_MAX}",
            entry.len()
        ))
    })
}

/// What a part whose reply went missing is answered (never expected: every part's future
/// yields one).
fn lost_reply() -> Bytes {
    resp::error(
        "ERR internal: a part of the command got no reply; it may or may not have been applied",
    )
}

/// Why a forward to `to` was refused.
fn refused_forward(to: NodeId, group: GroupId) -> String {
    format!(
        "kv node {} (leader of group {}) does not accept commands forwarded by this node: \
         their cluster secrets differ (--cluster-secret-file); the command was not run",
        to.0, group.0
    )
}

/// Reads a node's answer to RINGRAFT.SESSION: the new session, or why there is none.
fn registered_session(reply: Bytes) -> Result<SessionId, SessionAnswer> {
    match parse_value(&reply, &REPLY_LIMITS) {
        Ok(Some((Value::Integer(id), _))) => u64::try_from(id)
            .map(SessionId)
            .map_err(|_| SessionAnswer::NothingDone),
        _ => Err(SessionAnswer::of_reply(reply)),
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
    use crate::types::LogIndex;

    /// What the node a write was forwarded to answers reads back as the same answer, and an
    /// output that merely looks like an error is an output.
    #[test]
    fn session_answers_cross_the_forwarding_connection_unchanged() {
        for answer in [
            SessionAnswer::Done(Bytes::from_static(b":7\r\n")),
            SessionAnswer::Done(Bytes::from_static(b"-ERR value is not an integer\r\n")),
            SessionAnswer::Redirect(NodeId(3)),
            SessionAnswer::NothingDone,
            SessionAnswer::InDoubt,
            SessionAnswer::SessionUnknown,
            SessionAnswer::NotApplied("overloaded: retry later".into()),
        ] {
            assert_eq!(SessionAnswer::of_reply(answer.clone().into_reply()), answer);
        }
        let this = NodeId(1);
        let of = |error| SessionAnswer::of(Err(error), this);
        assert_eq!(of(ProposalError::Timeout), SessionAnswer::InDoubt);
        assert_eq!(of(ProposalError::OutcomeUnknown), SessionAnswer::InDoubt);
        assert_eq!(
            of(ProposalError::Superseded { index: LogIndex(4) }),
            SessionAnswer::NothingDone
        );
        assert_eq!(
            of(ProposalError::NotLeader { leader: Some(this) }),
            SessionAnswer::NothingDone
        );
        assert_eq!(
            of(ProposalError::Session(SessionRefusal::Unknown(SessionId(
                2
            )))),
            SessionAnswer::SessionUnknown
        );
    }

    /// Once an attempt may have applied the write, nothing but its output ends it as done or
    /// not applied: a refusal or a lost session leaves it unknown.
    #[test]
    fn a_write_in_doubt_is_retried_and_never_reported_not_applied() {
        let mut in_doubt = false;
        let refused = || SessionAnswer::NotApplied("overloaded".into());
        assert!(matches!(
            decide_in_session(refused(), &mut in_doubt),
            Attempt::Failed(_)
        ));
        assert_eq!(
            decide_in_session(SessionAnswer::SessionUnknown, &mut in_doubt),
            Attempt::NewSession
        );
        assert_eq!(
            decide_in_session(SessionAnswer::NothingDone, &mut in_doubt),
            Attempt::Retry
        );
        assert!(!in_doubt);
        assert_eq!(
            decide_in_session(SessionAnswer::InDoubt, &mut in_doubt),
            Attempt::Retry
        );
        assert!(in_doubt);
        assert!(matches!(
            decide_in_session(refused(), &mut in_doubt),
            Attempt::Unknown(_)
        ));
        assert!(matches!(
            decide_in_session(SessionAnswer::SessionUnknown, &mut in_doubt),
            Attempt::Unknown(_)
        ));
        assert_eq!(
            decide_in_session(
                SessionAnswer::Done(Bytes::from_static(b"+OK\r\n")),
                &mut in_doubt
            ),
            Attempt::Done(Bytes::from_static(b"+OK\r\n"))
        );
    }

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

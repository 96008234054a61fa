//! The client protocol: pipelined requests and responses carried in frames of their own kinds
//! ([`FrameKind::ClientRequests`], [`FrameKind::ClientResponses`]) on the frame layer of
//! [`crate::net::frame`].
//!
//! A client tags every request with an id of its choice and may send many before the first
//! answer; the server answers each request exactly once, with the same id, in any order. One
//! frame may carry any number of requests or responses.
//!
//! # Body layouts (little-endian; variable-length fields follow their record directly)
//!
//! ```text
//! frame:      count: u32 | reserved: u32 (0) | count × item
//! request:    tag: u8 | reserved: 7 B | id: u64 | …
//!   1 Propose   group: u64 | payload_len: u32 | reserved: u32 | payload
//!   2 Status    (nothing)
//!   3 Read      group: u64 | query_len: u32 | consistency: u8 | reserved: 3 B | query
//!               (consistency 0 linearizable, 1 lease, 2 stale)
//!   4 ChangeMembership group: u64 | change: u8 (1 add learner, 2 promote, 3 remove)
//!               | flags: u8 (bit0 peer address, bit1 client address; bit1 needs bit0)
//!               | reserved: 6 B | node: u64 | [peer address] | [client address]
//!               (address: family: u8 (4 or 6) | reserved: u8 | port: u16 | 4 or 16 B)
//!   5 TransferLeader group: u64 | to: u64
//!   6 Snapshot  group: u64
//!   7 AdminStatus (nothing)
//!   8 RegisterSession group: u64
//!   9 ProposeInSession group: u64 | payload_len: u32 | reserved: u32 | session: u64 | seq: u64
//!               | lowest_unanswered: u64 (at most seq) | payload
//! response:   tag: u8 | code: u8 | reserved: 6 B | id: u64 | …
//!   1 Committed index: u64 | output_len: u32 | reserved: u32 | output
//!               (for a read: the index it reflects and the query's answer)
//!   2 Status    node: u64 | flushes: u64 | entries_written: u64 | bytes_written: u64
//!               | group_count: u32 | reserved: u32 | group_count × group (56 B):
//!               group: u64 | role: u8 | has_leader: u8 | reserved: 6 B | term: u64 | leader: u64
//!               | commit: u64 | applied: u64 | last_index: u64
//!               | 3 × stage (leader durable, committed, applied): bucket_count: u32
//!               | reserved: u32 | bucket_count × (latency_us: u64 | count: u64)
//!   4 AdminStatus node: u64 | shard_count: u32 | group_count: u32 | group_count × (
//!               group (56 B, as in Status) | snapshot_index: u64 | log_base: u64
//!               | config_index: u64
//!               | voters: u16 | outgoing: u16 | learners: u16 | reserved: u16 | ids: u64 each
//!               | members_len: u32 | reserved: u32 | members ([`crate::net::members`]))
//!   3 Error     (code = error kind)
//!     1 NotLeader    flags: u8 (bit0 leader, bit1 address) | reserved: 5 B | addr_len: u16
//!                    | leader: u64 | address (UTF-8)
//!     2 Timeout, 3 ShuttingDown, 5 Overloaded: nothing
//!     4 TooLarge     bytes: u64 | max: u64
//!     6 UnknownGroup group: u64
//!     7 Internal     text_len: u32 | reserved: u32 | text (UTF-8)
//!     8 ChangeInProgress, 9 ChangeNotAllowed: nothing
//!     10 Session     refusal: u8 (1 unknown, 2 busy, 3 acknowledged) | reserved: 7 B
//!                    | session: u64 | seq: u64 (acknowledged only; else 0)
//!     11 LearnerBehind: nothing
//! ```
//!
//! A `RegisterSession` is answered `Committed` at the index of the registration, which is the
//! new session's id; a `ProposeInSession` like a `Propose` ([`crate::engine::sessions`]).
//!
//! # Invariants
//!
//! - Payload, output, address and text lengths are checked against their caps
//!   ([`CLIENT_PAYLOAD_BYTES_MAX`] and friends) and against the bytes present before anything
//!   is sliced; payloads and outputs are zero-copy slices of the frame body.
//! - An oversized proposal is reported as [`ProtocolError::PayloadTooLarge`] carrying the
//!   request id, so a server can answer [`ClientError::TooLarge`] before closing.
//! - The encoding is canonical (reserved bytes and unused fields zero, flags known, strings
//!   valid UTF-8); decoders reject anything else, and never panic.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::constants::{
    CLIENT_ADDR_BYTES_MAX, CLIENT_ERROR_TEXT_BYTES_MAX, CLIENT_OUTPUT_BYTES_MAX,
    CLIENT_PAYLOAD_BYTES_MAX, FRAME_BYTES_MAX,
};
use crate::core::membership::MEMBERS_MAX;
use crate::core::{Membership, MembershipChange, Role};
use crate::net::codec::{
    patch_u32, put_u16, put_u32, put_u64, put_u8, put_zeros, Reader, Truncated,
};
use crate::net::frame::{begin_frame, Frame, FrameError, FrameKind};
use crate::net::members::{
    decode_members, encode_members, put_peer_addr, put_socket_addr, read_peer_addr,
    read_socket_addr, MembersError,
};
use crate::types::ReadConsistency;
use crate::types::{GroupId, LogIndex, NodeId, SessionId, SessionRefusal, SessionRequest, Term};
use crate::types::{PeerAddr, PeerConfig};

const REQUEST_PROPOSE: u8 = 1;
const REQUEST_STATUS: u8 = 2;
const REQUEST_READ: u8 = 3;
const REQUEST_CHANGE_MEMBERSHIP: u8 = 4;
const REQUEST_TRANSFER_LEADER: u8 = 5;
const REQUEST_SNAPSHOT: u8 = 6;
const REQUEST_ADMIN_STATUS: u8 = 7;
const REQUEST_REGISTER_SESSION: u8 = 8;
const REQUEST_PROPOSE_IN_SESSION: u8 = 9;
const RESPONSE_COMMITTED: u8 = 1;
const RESPONSE_STATUS: u8 = 2;
const RESPONSE_ERROR: u8 = 3;
const RESPONSE_ADMIN_STATUS: u8 = 4;

const CHANGE_ADD_LEARNER: u8 = 1;
const CHANGE_PROMOTE: u8 = 2;
const CHANGE_REMOVE: u8 = 3;
const CHANGE_FLAG_ADDR: u8 = 1;
const CHANGE_FLAG_CLIENT_ADDR: u8 = 2;
/// Longest encoded member list: header, and per member an id, flags and two IPv6 addresses.
const MEMBERS_BYTES_MAX: usize = 4 + MEMBERS_MAX * (9 + 2 * 20);

const ERROR_NOT_LEADER: u8 = 1;
const ERROR_TIMEOUT: u8 = 2;
const ERROR_SHUTTING_DOWN: u8 = 3;
const ERROR_TOO_LARGE: u8 = 4;
const ERROR_OVERLOADED: u8 = 5;
const ERROR_UNKNOWN_GROUP: u8 = 6;
const ERROR_INTERNAL: u8 = 7;
const ERROR_CHANGE_IN_PROGRESS: u8 = 8;
const ERROR_CHANGE_NOT_ALLOWED: u8 = 9;
const ERROR_SESSION: u8 = 10;
const ERROR_LEARNER_BEHIND: u8 = 11;

const REFUSAL_UNKNOWN: u8 = 1;
const REFUSAL_BUSY: u8 = 2;
const REFUSAL_ACKNOWLEDGED: u8 = 3;

const FLAG_LEADER: u8 = 1;
const FLAG_ADDR: u8 = 2;

/// Smallest encoded request and response (tag, reserved, id).
const ITEM_BYTES_MIN: usize = 16;
const GROUP_STATUS_BYTES: usize = 56;
/// Smallest encoded group of an admin status (no members, an empty member list).
const ADMIN_GROUP_BYTES_MIN: usize = GROUP_STATUS_BYTES + 32 + 8 + 4;

/// A client's request; `id` is echoed in its response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientRequest {
    /// Replicate `payload` in `group`; answered after commit and apply.
    Propose {
        id: u64,
        group: GroupId,
        payload: Bytes,
    },
    /// The node's view of each of its groups.
    Status { id: u64 },
    /// Ask `group`'s state machine `query`; answered like a proposal, once `consistency`
    /// allows.
    Read {
        id: u64,
        group: GroupId,
        consistency: ReadConsistency,
        query: Bytes,
    },
    /// Change `group`'s members (the node must lead it); answered like a proposal once the
    /// configuration entry (the joint one, for a voter change) is committed and applied.
    /// `addr` and `client_addr` are where a new member listens (needed to add a learner the
    /// cluster does not know yet).
    ChangeMembership {
        id: u64,
        group: GroupId,
        change: MembershipChange,
        addr: Option<PeerAddr>,
        client_addr: Option<SocketAddr>,
    },
    /// Hand leadership of `group` to voter `to` (the node must lead it); answered at once with
    /// an empty `Committed` at index 0. Watch the status for the outcome.
    TransferLeader { id: u64, group: GroupId, to: NodeId },
    /// Snapshot `group`'s state machine now; answered `Committed` with the snapshot's index
    /// (0: nothing to snapshot, or no snapshot support).
    Snapshot { id: u64, group: GroupId },
    /// The node's groups with their configuration, members' addresses and log bounds.
    AdminStatus { id: u64 },
    /// Open a client session of `group`; answered `Committed` at the registration's index,
    /// the session's id.
    RegisterSession { id: u64, group: GroupId },
    /// Replicate `payload` in `group` as `request` of a client session: applied at most once
    /// however often it is sent ([`crate::engine::sessions`]).
    ProposeInSession {
        id: u64,
        group: GroupId,
        request: SessionRequest,
        payload: Bytes,
    },
}

impl ClientRequest {
    pub fn id(&self) -> u64 {
        match self {
            ClientRequest::Propose { id, .. }
            | ClientRequest::Status { id }
            | ClientRequest::Read { id, .. }
            | ClientRequest::ChangeMembership { id, .. }
            | ClientRequest::TransferLeader { id, .. }
            | ClientRequest::Snapshot { id, .. }
            | ClientRequest::AdminStatus { id }
            | ClientRequest::RegisterSession { id, .. }
            | ClientRequest::ProposeInSession { id, .. } => *id,
        }
    }
}

/// One group as an admin status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupAdminStatus {
    /// Role, term, leader and indexes, as a status request reports them.
    pub summary: GroupSummary,
    /// Index of the newest snapshot this node holds (0: none).
    pub snapshot_index: LogIndex,
    /// The log starts after this index (compacted behind a snapshot).
    pub log_base: LogIndex,
    /// Index of the entry of the configuration in force (0: the bootstrap configuration).
    pub config_index: LogIndex,
    /// The configuration in force on this node.
    pub membership: Membership,
    /// Addresses of the members, as the configuration's context (or the node's own peer list)
    /// gives them.
    pub members: Vec<PeerConfig>,
}

/// One group as seen by the answering node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupSummary {
    /// The group.
    pub group: GroupId,
    /// The answering node's role in it.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit: LogIndex,
    /// Index of the last entry its state machine applied.
    pub applied: LogIndex,
    /// Index of the last entry of its log.
    pub last_index: LogIndex,
}

/// What a shard answers a status request with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardStatus {
    pub node: NodeId,
    pub shard: ShardStats,
    pub groups: Vec<GroupSummary>,
    pub stages: StageBuckets,
}

/// Work counters of the shard that answers a status request, since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Log flushes completed (each one write and one `fdatasync` of the log).
    pub flushes: u64,
    /// Entries appended to the shard's log.
    pub entries_written: u64,
    /// Encoded batch bytes appended to the shard's log.
    pub bytes_written: u64,
}

/// The shard's latency histograms by stage (placed to durable on the leader, committed, applied) as
/// `(latency in µs, count)` buckets, non-empty buckets only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StageBuckets {
    /// From placing a batch to its being durable on the leader.
    pub leader_durable: Vec<(u64, u64)>,
    /// From placing a batch to its being committed.
    pub committed: Vec<(u64, u64)>,
    /// From placing a batch to its being applied.
    pub applied: Vec<(u64, u64)>,
}

/// Bytes of one histogram bucket on the wire.
const BUCKET_BYTES: usize = 16;

/// The server's answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientResponse {
    /// The proposal is committed at `index` and applied; `output` is the state machine's result.
    Committed {
        id: u64,
        index: LogIndex,
        output: Bytes,
    },
    /// Boxed so that the answers on the hot path (committed, error) stay small: every
    /// response is moved by value through queues on both sides.
    Status {
        id: u64,
        status: Box<ShardStatus>,
    },
    Error {
        id: u64,
        error: ClientError,
    },
    AdminStatus {
        id: u64,
        node: NodeId,
        /// Shards of the answering node (each serves its own client port).
        shard_count: u32,
        groups: Vec<GroupAdminStatus>,
    },
}

impl ClientResponse {
    pub fn id(&self) -> u64 {
        match self {
            ClientResponse::Committed { id, .. }
            | ClientResponse::Status { id, .. }
            | ClientResponse::Error { id, .. }
            | ClientResponse::AdminStatus { id, .. } => *id,
        }
    }
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node does not lead the group (or is handing leadership over): ask the leader.
    #[error("this node is not the group's leader (leader: {leader:?}, client address: {leader_client_addr:?})")]
    NotLeader {
        /// The leader the node knows of.
        leader: Option<NodeId>,
        /// The leader's client port, when the node knows it.
        leader_client_addr: Option<String>,
    },
    /// The outcome is unknown: the request may or may not have been committed.
    #[error("the request timed out; it may or may not have been committed")]
    Timeout,
    /// The node is stopping.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The payload is larger than one entry may be.
    #[error("payload of {bytes} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the payload.
        bytes: u64,
        /// Largest payload an entry holds.
        max: u64,
    },
    /// The group holds too much that is not yet applied: retry after a pause.
    #[error("too many requests outstanding; retry later")]
    Overloaded,
    /// The node serves no such group.
    #[error("unknown group {0}")]
    UnknownGroup(GroupId),
    /// The server failed in a way the protocol has no code for (its message).
    #[error("internal error: {0}")]
    Internal(String),
    /// A membership change is refused while an earlier one has not completed.
    #[error("a configuration change is still in progress")]
    ChangeInProgress,
    /// The membership change does not apply to the current members.
    #[error("the configuration change does not apply to the current members")]
    ChangeNotAllowed,
    /// The learner to promote has not caught up with the log yet.
    #[error("the learner has not caught up with the log yet")]
    LearnerBehind,
    /// The request's client session refused it: this attempt was not applied.
    #[error(transparent)]
    Session(SessionRefusal),
}

/// Why client frames could not be decoded or encoded. A decoding error means the stream is
/// unusable: the connection must be closed (after answering a [`Self::PayloadTooLarge`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of kind {found:?} where {expected:?} was expected")]
    WrongKind {
        expected: FrameKind,
        found: FrameKind,
    },
    #[error("client frame truncated: {need} bytes needed at offset {at} of a {len}-byte body")]
    Truncated { at: usize, need: usize, len: usize },
    #[error("{count} items announced at offset {at}, but only {room} bytes remain")]
    CountTooLarge { count: u32, at: usize, room: usize },
    #[error("unknown {what} code {code} at offset {at}")]
    UnknownCode {
        what: &'static str,
        code: u8,
        at: usize,
    },
    #[error("non-canonical client message at offset {at}: {what} must be zero")]
    NotZero { what: &'static str, at: usize },
    #[error("request {id}: payload of {bytes} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge { id: u64, bytes: u64, max: usize },
    #[error("{what} of {bytes} bytes exceeds the limit of {max} bytes")]
    FieldTooLarge {
        what: &'static str,
        bytes: u64,
        max: usize,
    },
    #[error("{what} at offset {at} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str, at: usize },
    #[error("{trailing} trailing bytes after the last client message")]
    TrailingBytes { trailing: usize },
    #[error("bad address at offset {at}: {reason}")]
    BadAddress { at: usize, reason: String },
    #[error(
        "session request at offset {at}: its lowest unanswered request {lowest_unanswered} is \
         above the request {seq}"
    )]
    BadSessionRequest {
        at: usize,
        seq: u64,
        lowest_unanswered: u64,
    },
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl From<Truncated> for ProtocolError {
    fn from(t: Truncated) -> Self {
        ProtocolError::Truncated {
            at: t.at,
            need: t.need,
            len: t.len,
        }
    }
}

fn role_code(role: Role) -> u8 {
    match role {
        Role::Follower => 1,
        Role::PreCandidate => 2,
        Role::Candidate => 3,
        Role::Leader => 4,
    }
}

fn role_from_code(code: u8) -> Option<Role> {
    Some(match code {
        1 => Role::Follower,
        2 => Role::PreCandidate,
        3 => Role::Candidate,
        4 => Role::Leader,
        _ => return None,
    })
}

fn check_len(what: &'static str, bytes: usize, max: usize) -> Result<(), ProtocolError> {
    if bytes > max {
        return Err(ProtocolError::FieldTooLarge {
            what,
            bytes: bytes as u64,
            max,
        });
    }
    Ok(())
}

/// Appends `text` cut to at most `max` bytes on a character boundary.
fn truncated_text(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn consistency_code(consistency: ReadConsistency) -> u8 {
    match consistency {
        ReadConsistency::Linearizable => 0,
        ReadConsistency::Lease => 1,
        ReadConsistency::Stale => 2,
    }
}

fn consistency_from_code(code: u8) -> Option<ReadConsistency> {
    match code {
        0 => Some(ReadConsistency::Linearizable),
        1 => Some(ReadConsistency::Lease),
        2 => Some(ReadConsistency::Stale),
        _ => None,
    }
}

/// A request addressed to a group and carrying bytes (Propose, Read, ProposeInSession), with
/// `fields` between its fixed fields and the bytes.
fn put_group_request(
    tag: u8,
    id: u64,
    group: GroupId,
    flavour: u8,
    fields: &[u64],
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), ProtocolError> {
    if bytes.len() > CLIENT_PAYLOAD_BYTES_MAX {
        return Err(ProtocolError::PayloadTooLarge {
            id,
            bytes: bytes.len() as u64,
            max: CLIENT_PAYLOAD_BYTES_MAX,
        });
    }
    put_u8(out, tag);
    put_zeros(out, 7);
    put_u64(out, id);
    put_u64(out, group.0);
    put_u32(out, bytes.len() as u32);
    put_u8(out, flavour);
    put_zeros(out, 3);
    for &field in fields {
        put_u64(out, field);
    }
    out.extend_from_slice(bytes);
    Ok(())
}

fn put_request(request: &ClientRequest, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    match request {
        ClientRequest::Propose { id, group, payload } => {
            put_group_request(REQUEST_PROPOSE, *id, *group, 0, &[], payload, out)?
        }
        ClientRequest::Read {
            id,
            group,
            consistency,
            query,
        } => put_group_request(
            REQUEST_READ,
            *id,
            *group,
            consistency_code(*consistency),
            &[],
            query,
            out,
        )?,
        ClientRequest::ProposeInSession {
            id,
            group,
            request,
            payload,
        } => {
            let fields = [
                request.session().0,
                request.seq(),
                request.lowest_unanswered(),
            ];
            put_group_request(
                REQUEST_PROPOSE_IN_SESSION,
                *id,
                *group,
                0,
                &fields,
                payload,
                out,
            )?
        }
        ClientRequest::RegisterSession { id, group } => {
            put_request_head(REQUEST_REGISTER_SESSION, *id, out);
            put_u64(out, group.0);
        }
        ClientRequest::Status { id } => put_request_head(REQUEST_STATUS, *id, out),
        ClientRequest::AdminStatus { id } => put_request_head(REQUEST_ADMIN_STATUS, *id, out),
        ClientRequest::Snapshot { id, group } => {
            put_request_head(REQUEST_SNAPSHOT, *id, out);
            put_u64(out, group.0);
        }
        ClientRequest::TransferLeader { id, group, to } => {
            put_request_head(REQUEST_TRANSFER_LEADER, *id, out);
            put_u64(out, group.0);
            put_u64(out, to.0);
        }
        ClientRequest::ChangeMembership {
            id,
            group,
            change,
            addr,
            client_addr,
        } => {
            let (code, node) = match *change {
                MembershipChange::AddLearner(node) => (CHANGE_ADD_LEARNER, node),
                MembershipChange::Promote(node) => (CHANGE_PROMOTE, node),
                MembershipChange::Remove(node) => (CHANGE_REMOVE, node),
            };
            let client_addr = client_addr.filter(|_| addr.is_some());
            put_request_head(REQUEST_CHANGE_MEMBERSHIP, *id, out);
            put_u64(out, group.0);
            put_u8(out, code);
            put_u8(
                out,
                if addr.is_some() { CHANGE_FLAG_ADDR } else { 0 }
                    | if client_addr.is_some() {
                        CHANGE_FLAG_CLIENT_ADDR
                    } else {
                        0
                    },
            );
            put_zeros(out, 6);
            put_u64(out, node.0);
            if let Some(addr) = addr {
                put_peer_addr(out, addr);
            }
            if let Some(client_addr) = client_addr {
                put_socket_addr(out, client_addr);
            }
        }
    }
    Ok(())
}

fn put_request_head(tag: u8, id: u64, out: &mut Vec<u8>) {
    put_u8(out, tag);
    put_zeros(out, 7);
    put_u64(out, id);
}

fn put_group_summary(status: &GroupSummary, out: &mut Vec<u8>) {
    put_u64(out, status.group.0);
    put_u8(out, role_code(status.role));
    put_u8(out, status.leader.is_some() as u8);
    put_zeros(out, 6);
    put_u64(out, status.term.0);
    put_u64(out, status.leader.map_or(0, |n| n.0));
    put_u64(out, status.commit.0);
    put_u64(out, status.applied.0);
    put_u64(out, status.last_index.0);
}

fn put_admin_group(status: &GroupAdminStatus, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let membership = &status.membership;
    let ids = membership.voters.len() + membership.outgoing.len() + membership.learners.len();
    check_len("membership", ids, MEMBERS_MAX)?;
    check_len("member addresses", status.members.len(), MEMBERS_MAX)?;
    put_group_summary(&status.summary, out);
    put_u64(out, status.snapshot_index.0);
    put_u64(out, status.log_base.0);
    put_u64(out, status.config_index.0);
    for list in [
        &membership.voters,
        &membership.outgoing,
        &membership.learners,
    ] {
        put_u16(out, list.len() as u16);
    }
    put_u16(out, 0);
    for id in membership
        .voters
        .iter()
        .chain(&membership.outgoing)
        .chain(&membership.learners)
    {
        put_u64(out, id.0);
    }
    let members = encode_members(&status.members);
    put_u32(out, members.len() as u32);
    put_u32(out, 0);
    out.extend_from_slice(&members);
    Ok(())
}

/// The count field of `items` records of `item_bytes` each, if they fit in a frame.
fn wire_count(what: &'static str, items: usize, item_bytes: usize) -> Result<u32, ProtocolError> {
    u32::try_from(items)
        .ok()
        .filter(|&n| n as usize * item_bytes <= FRAME_BYTES_MAX)
        .ok_or(ProtocolError::FieldTooLarge {
            what,
            bytes: (items * item_bytes) as u64,
            max: FRAME_BYTES_MAX,
        })
}

fn put_response(response: &ClientResponse, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    match response {
        ClientResponse::Committed { id, index, output } => {
            check_len("output", output.len(), CLIENT_OUTPUT_BYTES_MAX)?;
            put_u8(out, RESPONSE_COMMITTED);
            put_zeros(out, 7);
            put_u64(out, *id);
            put_u64(out, index.0);
            put_u32(out, output.len() as u32);
            put_u32(out, 0);
            out.extend_from_slice(output);
        }
        ClientResponse::Status { id, status } => {
            let ShardStatus {
                node,
                shard,
                groups,
                stages,
            } = &**status;
            let count = wire_count("status", groups.len(), GROUP_STATUS_BYTES)?;
            put_u8(out, RESPONSE_STATUS);
            put_zeros(out, 7);
            put_u64(out, *id);
            put_u64(out, node.0);
            put_u64(out, shard.flushes);
            put_u64(out, shard.entries_written);
            put_u64(out, shard.bytes_written);
            put_u32(out, count);
            put_u32(out, 0);
            for status in groups {
                put_group_summary(status, out);
            }
            for buckets in [&stages.leader_durable, &stages.committed, &stages.applied] {
                let count = wire_count("stage histogram", buckets.len(), BUCKET_BYTES)?;
                put_u32(out, count);
                put_u32(out, 0);
                for &(latency_us, count) in buckets {
                    put_u64(out, latency_us);
                    put_u64(out, count);
                }
            }
        }
        ClientResponse::AdminStatus {
            id,
            node,
            shard_count,
            groups,
        } => {
            let count = wire_count("admin status", groups.len(), ADMIN_GROUP_BYTES_MIN)?;
            put_u8(out, RESPONSE_ADMIN_STATUS);
            put_zeros(out, 7);
            put_u64(out, *id);
            put_u64(out, node.0);
            put_u32(out, *shard_count);
            put_u32(out, count);
            for status in groups {
                put_admin_group(status, out)?;
            }
        }
        ClientResponse::Error { id, error } => {
            let code = match error {
                ClientError::NotLeader { .. } => ERROR_NOT_LEADER,
                ClientError::Timeout => ERROR_TIMEOUT,
                ClientError::ShuttingDown => ERROR_SHUTTING_DOWN,
                ClientError::TooLarge { .. } => ERROR_TOO_LARGE,
                ClientError::Overloaded => ERROR_OVERLOADED,
                ClientError::UnknownGroup(_) => ERROR_UNKNOWN_GROUP,
                ClientError::Internal(_) => ERROR_INTERNAL,
                ClientError::ChangeInProgress => ERROR_CHANGE_IN_PROGRESS,
                ClientError::ChangeNotAllowed => ERROR_CHANGE_NOT_ALLOWED,
                ClientError::LearnerBehind => ERROR_LEARNER_BEHIND,
                ClientError::Session(_) => ERROR_SESSION,
            };
            if let ClientError::NotLeader {
                leader_client_addr: Some(addr),
                ..
            } = error
            {
                check_len("leader address", addr.len(), CLIENT_ADDR_BYTES_MAX)?;
            }
            put_u8(out, RESPONSE_ERROR);
            put_u8(out, code);
            put_zeros(out, 6);
            put_u64(out, *id);
            match error {
                ClientError::NotLeader {
                    leader,
                    leader_client_addr,
                } => {
                    let flags = if leader.is_some() { FLAG_LEADER } else { 0 }
                        | if leader_client_addr.is_some() {
                            FLAG_ADDR
                        } else {
                            0
                        };
                    let addr = leader_client_addr.as_deref().unwrap_or("");
                    put_u8(out, flags);
                    put_zeros(out, 5);
                    put_u16(out, addr.len() as u16);
                    put_u64(out, leader.map_or(0, |n| n.0));
                    out.extend_from_slice(addr.as_bytes());
                }
                ClientError::Timeout
                | ClientError::ShuttingDown
                | ClientError::Overloaded
                | ClientError::ChangeInProgress
                | ClientError::ChangeNotAllowed
                | ClientError::LearnerBehind => {}
                ClientError::TooLarge { bytes, max } => {
                    put_u64(out, *bytes);
                    put_u64(out, *max);
                }
                ClientError::UnknownGroup(group) => put_u64(out, group.0),
                ClientError::Session(refusal) => {
                    let (code, session, seq) = match *refusal {
                        SessionRefusal::Unknown(session) => (REFUSAL_UNKNOWN, session, 0),
                        SessionRefusal::Busy(session) => (REFUSAL_BUSY, session, 0),
                        SessionRefusal::Acknowledged { session, seq } => {
                            (REFUSAL_ACKNOWLEDGED, session, seq)
                        }
                    };
                    put_u8(out, code);
                    put_zeros(out, 7);
                    put_u64(out, session.0);
                    put_u64(out, seq);
                }
                ClientError::Internal(text) => {
                    let text = truncated_text(text, CLIENT_ERROR_TEXT_BYTES_MAX);
                    put_u32(out, text.len() as u32);
                    put_u32(out, 0);
                    out.extend_from_slice(text.as_bytes());
                }
            }
        }
    }
    Ok(())
}

/// Appends one frame of `kind` holding `items` to `out`, or nothing on error.
fn encode_items<T>(
    kind: FrameKind,
    items: &[T],
    out: &mut Vec<u8>,
    put: fn(&T, &mut Vec<u8>) -> Result<(), ProtocolError>,
) -> Result<usize, ProtocolError> {
    let frame = begin_frame(out, kind);
    let count_at = frame.body_start();
    put_u32(out, 0);
    put_u32(out, 0);
    for item in items {
        if let Err(error) = put(item, out) {
            frame.abandon(out);
            return Err(error);
        }
        if frame.body_len(out) > FRAME_BYTES_MAX {
            break; // `finish` reports it
        }
    }
    let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
    patch_u32(out, count_at, count);
    Ok(frame.finish(out)?)
}

/// Appends one [`FrameKind::ClientRequests`] frame holding `requests` to `out`; returns its wire
/// length. On error (an oversized payload, or a frame over [`FRAME_BYTES_MAX`]) `out` is left
/// as it was.
pub fn encode_requests(
    requests: &[ClientRequest],
    out: &mut Vec<u8>,
) -> Result<usize, ProtocolError> {
    encode_items(FrameKind::ClientRequests, requests, out, put_request)
}

/// Appends one [`FrameKind::ClientResponses`] frame holding `responses` to `out`; returns its
/// wire length. `Internal` error texts longer than [`CLIENT_ERROR_TEXT_BYTES_MAX`] are cut; an
/// oversized output or leader address is an error, and then `out` is left as it was.
pub fn encode_responses(
    responses: &[ClientResponse],
    out: &mut Vec<u8>,
) -> Result<usize, ProtocolError> {
    encode_items(FrameKind::ClientResponses, responses, out, put_response)
}

/// Bytes [`encode_requests`] spends on `request` (to split requests over frames).
pub fn request_wire_bytes(request: &ClientRequest) -> usize {
    match request {
        ClientRequest::Propose { payload: bytes, .. }
        | ClientRequest::Read { query: bytes, .. } => 32 + bytes.len(),
        ClientRequest::ProposeInSession { payload, .. } => 56 + payload.len(),
        ClientRequest::RegisterSession { .. } => ITEM_BYTES_MIN + 8,
        ClientRequest::Status { .. } | ClientRequest::AdminStatus { .. } => ITEM_BYTES_MIN,
        ClientRequest::Snapshot { .. } => ITEM_BYTES_MIN + 8,
        ClientRequest::TransferLeader { .. } => ITEM_BYTES_MIN + 16,
        ClientRequest::ChangeMembership { .. } => ITEM_BYTES_MIN + 24 + 2 * 20,
    }
}

fn expect_kind(frame: &Frame, expected: FrameKind) -> Result<(), ProtocolError> {
    if frame.kind != expected {
        return Err(ProtocolError::WrongKind {
            expected,
            found: frame.kind,
        });
    }
    Ok(())
}

/// Reads the frame prefix, checks the item count against the bytes present, then each item.
fn decode_items<T>(
    body: &Bytes,
    read: fn(&Bytes, &mut Reader<'_>) -> Result<T, ProtocolError>,
) -> Result<Vec<T>, ProtocolError> {
    let mut reader = Reader::new(body);
    let count = reader.u32()?;
    if !reader.zeros(4)? {
        return Err(ProtocolError::NotZero {
            what: "frame reserved bytes",
            at: 4,
        });
    }
    if (count as usize).saturating_mul(ITEM_BYTES_MIN) > reader.remaining() {
        return Err(ProtocolError::CountTooLarge {
            count,
            at: 0,
            room: reader.remaining(),
        });
    }
    let mut items = Vec::with_capacity(count as usize);
    for _ in 0..count {
        items.push(read(body, &mut reader)?);
    }
    if reader.remaining() != 0 {
        return Err(ProtocolError::TrailingBytes {
            trailing: reader.remaining(),
        });
    }
    Ok(items)
}

fn require_zero(
    reader: &mut Reader<'_>,
    n: usize,
    what: &'static str,
) -> Result<(), ProtocolError> {
    let at = reader.pos();
    if !reader.zeros(n)? {
        return Err(ProtocolError::NotZero { what, at });
    }
    Ok(())
}

fn read_request(body: &Bytes, reader: &mut Reader<'_>) -> Result<ClientRequest, ProtocolError> {
    let at = reader.pos();
    let tag = reader.u8()?;
    require_zero(reader, 7, "request reserved bytes")?;
    let id = reader.u64()?;
    match tag {
        REQUEST_PROPOSE | REQUEST_READ | REQUEST_PROPOSE_IN_SESSION => {
            let group = GroupId(reader.u64()?);
            let len = reader.u32()?;
            let flavour_at = reader.pos();
            let flavour = reader.u8()?;
            require_zero(reader, 3, "request reserved bytes")?;
            if len as usize > CLIENT_PAYLOAD_BYTES_MAX {
                return Err(ProtocolError::PayloadTooLarge {
                    id,
                    bytes: len as u64,
                    max: CLIENT_PAYLOAD_BYTES_MAX,
                });
            }
            let session = match tag {
                REQUEST_PROPOSE_IN_SESSION => Some(read_session_request(reader)?),
                _ => None,
            };
            let bytes = body.slice(reader.range(len as usize)?);
            if tag != REQUEST_READ && flavour != 0 {
                return Err(ProtocolError::NotZero {
                    what: "request reserved bytes",
                    at: flavour_at,
                });
            }
            if let Some(request) = session {
                return Ok(ClientRequest::ProposeInSession {
                    id,
                    group,
                    request,
                    payload: bytes,
                });
            }
            if tag == REQUEST_PROPOSE {
                return Ok(ClientRequest::Propose {
                    id,
                    group,
                    payload: bytes,
                });
            }
            let consistency = consistency_from_code(flavour).ok_or(ProtocolError::UnknownCode {
                what: "read consistency",
                code: flavour,
                at: flavour_at,
            })?;
            Ok(ClientRequest::Read {
                id,
                group,
                consistency,
                query: bytes,
            })
        }
        REQUEST_STATUS => Ok(ClientRequest::Status { id }),
        REQUEST_REGISTER_SESSION => Ok(ClientRequest::RegisterSession {
            id,
            group: GroupId(reader.u64()?),
        }),
        REQUEST_ADMIN_STATUS => Ok(ClientRequest::AdminStatus { id }),
        REQUEST_SNAPSHOT => Ok(ClientRequest::Snapshot {
            id,
            group: GroupId(reader.u64()?),
        }),
        REQUEST_TRANSFER_LEADER => Ok(ClientRequest::TransferLeader {
            id,
            group: GroupId(reader.u64()?),
            to: NodeId(reader.u64()?),
        }),
        REQUEST_CHANGE_MEMBERSHIP => {
            let group = GroupId(reader.u64()?);
            let code_at = reader.pos();
            let code = reader.u8()?;
            let flags = reader.u8()?;
            require_zero(reader, 6, "request reserved bytes")?;
            if flags & !(CHANGE_FLAG_ADDR | CHANGE_FLAG_CLIENT_ADDR) != 0
                || flags == CHANGE_FLAG_CLIENT_ADDR
            {
                return Err(ProtocolError::NotZero {
                    what: "unknown membership change flags",
                    at: code_at + 1,
                });
            }
            let node = NodeId(reader.u64()?);
            let change = match code {
                CHANGE_ADD_LEARNER => MembershipChange::AddLearner(node),
                CHANGE_PROMOTE => MembershipChange::Promote(node),
                CHANGE_REMOVE => MembershipChange::Remove(node),
                code => {
                    return Err(ProtocolError::UnknownCode {
                        what: "membership change",
                        code,
                        at: code_at,
                    })
                }
            };
            let addr = match flags & CHANGE_FLAG_ADDR {
                0 => None,
                _ => Some(read_address(reader, read_peer_addr)?),
            };
            let client_addr = match flags & CHANGE_FLAG_CLIENT_ADDR {
                0 => None,
                _ => Some(read_address(reader, read_socket_addr)?),
            };
            Ok(ClientRequest::ChangeMembership {
                id,
                group,
                change,
                addr,
                client_addr,
            })
        }
        code => Err(ProtocolError::UnknownCode {
            what: "request",
            code,
            at,
        }),
    }
}

/// The session fields of a `ProposeInSession`.
fn read_session_request(reader: &mut Reader<'_>) -> Result<SessionRequest, ProtocolError> {
    let at = reader.pos();
    let session = SessionId(reader.u64()?);
    let seq = reader.u64()?;
    let lowest_unanswered = reader.u64()?;
    SessionRequest::new(session, seq, lowest_unanswered).ok_or(ProtocolError::BadSessionRequest {
        at,
        seq,
        lowest_unanswered,
    })
}

/// One of the members' layout readers: an address and the bytes after it.
type AddressReader<T> = fn(&[u8]) -> Result<(T, &[u8]), MembersError>;

/// Reads an address with `read` from `reader`.
fn read_address<T>(reader: &mut Reader<'_>, read: AddressReader<T>) -> Result<T, ProtocolError> {
    let at = reader.pos();
    let bytes = reader.take(reader.remaining())?;
    let (addr, rest) = read(bytes).map_err(|error| ProtocolError::BadAddress {
        at,
        reason: error.to_string(),
    })?;
    reader.seek(at + bytes.len() - rest.len());
    Ok(addr)
}

fn read_group_summary(reader: &mut Reader<'_>) -> Result<GroupSummary, ProtocolError> {
    let at = reader.pos();
    let group = GroupId(reader.u64()?);
    let role_at = reader.pos();
    let role = reader.u8()?;
    let role = role_from_code(role).ok_or(ProtocolError::UnknownCode {
        what: "role",
        code: role,
        at: role_at,
    })?;
    let has_leader = reader.u8()?;
    require_zero(reader, 6, "group status reserved bytes")?;
    let term = Term(reader.u64()?);
    let leader = reader.u64()?;
    let leader = match has_leader {
        0 if leader == 0 => None,
        1 => Some(NodeId(leader)),
        _ => {
            return Err(ProtocolError::NotZero {
                what: "leader fields without a leader",
                at,
            })
        }
    };
    Ok(GroupSummary {
        group,
        role,
        term,
        leader,
        commit: LogIndex(reader.u64()?),
        applied: LogIndex(reader.u64()?),
        last_index: LogIndex(reader.u64()?),
    })
}

fn read_admin_group(reader: &mut Reader<'_>) -> Result<GroupAdminStatus, ProtocolError> {
    let summary = read_group_summary(reader)?;
    let snapshot_index = LogIndex(reader.u64()?);
    let log_base = LogIndex(reader.u64()?);
    let config_index = LogIndex(reader.u64()?);
    let counts_at = reader.pos();
    let counts = [
        reader.u16()? as usize,
        reader.u16()? as usize,
        reader.u16()? as usize,
    ];
    require_zero(reader, 2, "admin status reserved bytes")?;
    let total: usize = counts.iter().sum();
    check_len("membership", total, MEMBERS_MAX)?;
    let mut ids = |n: usize| -> Result<Vec<NodeId>, ProtocolError> {
        (0..n).map(|_| Ok(NodeId(reader.u64()?))).collect()
    };
    let membership = Membership {
        voters: ids(counts[0])?,
        outgoing: ids(counts[1])?,
        learners: ids(counts[2])?,
    };
    if membership.validate().is_err() {
        return Err(ProtocolError::NotZero {
            what: "a valid membership (sorted, unique, disjoint lists)",
            at: counts_at,
        });
    }
    let members_len = reader.u32()? as usize;
    require_zero(reader, 4, "admin status reserved bytes")?;
    check_len("member addresses", members_len, MEMBERS_BYTES_MAX)?;
    let members_at = reader.pos();
    let bytes = reader.take(members_len)?;
    let members = decode_members(bytes)
        .ok()
        .filter(|members| encode_members(members) == bytes)
        .ok_or(ProtocolError::NotZero {
            what: "a canonical member list",
            at: members_at,
        })?;
    Ok(GroupAdminStatus {
        summary,
        snapshot_index,
        log_base,
        config_index,
        membership,
        members,
    })
}

fn read_buckets(reader: &mut Reader<'_>) -> Result<Vec<(u64, u64)>, ProtocolError> {
    let count = reader.u32()?;
    require_zero(reader, 4, "histogram reserved bytes")?;
    if (count as usize).saturating_mul(BUCKET_BYTES) > reader.remaining() {
        return Err(ProtocolError::CountTooLarge {
            count,
            at: reader.pos(),
            room: reader.remaining(),
        });
    }
    (0..count)
        .map(|_| Ok((reader.u64()?, reader.u64()?)))
        .collect()
}

fn read_session_refusal(reader: &mut Reader<'_>) -> Result<SessionRefusal, ProtocolError> {
    let at = reader.pos();
    let code = reader.u8()?;
    require_zero(reader, 7, "session refusal reserved bytes")?;
    let session = SessionId(reader.u64()?);
    let seq_at = reader.pos();
    let seq = reader.u64()?;
    let refusal = match code {
        REFUSAL_UNKNOWN => SessionRefusal::Unknown(session),
        REFUSAL_BUSY => SessionRefusal::Busy(session),
        REFUSAL_ACKNOWLEDGED => return Ok(SessionRefusal::Acknowledged { session, seq }),
        code => {
            return Err(ProtocolError::UnknownCode {
                what: "session refusal",
                code,
                at,
            })
        }
    };
    if seq != 0 {
        return Err(ProtocolError::NotZero {
            what: "the sequence number of this session refusal",
            at: seq_at,
        });
    }
    Ok(refusal)
}

fn read_text(
    reader: &mut Reader<'_>,
    len: usize,
    max: usize,
    what: &'static str,
) -> Result<String, ProtocolError> {
    check_len(what, len, max)?;
    let at = reader.pos();
    let bytes = reader.take(len)?;
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| ProtocolError::InvalidUtf8 { what, at })
}

fn read_response(body: &Bytes, reader: &mut Reader<'_>) -> Result<ClientResponse, ProtocolError> {
    let at = reader.pos();
    let tag = reader.u8()?;
    let code = reader.u8()?;
    require_zero(reader, 6, "response reserved bytes")?;
    let id = reader.u64()?;
    if tag != RESPONSE_ERROR && code != 0 {
        return Err(ProtocolError::NotZero {
            what: "error code of a non-error response",
            at: at + 1,
        });
    }
    match tag {
        RESPONSE_COMMITTED => {
            let index = LogIndex(reader.u64()?);
            let len = reader.u32()? as usize;
            require_zero(reader, 4, "response reserved bytes")?;
            check_len("output", len, CLIENT_OUTPUT_BYTES_MAX)?;
            let output = body.slice(reader.range(len)?);
            Ok(ClientResponse::Committed { id, index, output })
        }
        RESPONSE_STATUS => {
            let node = NodeId(reader.u64()?);
            let shard = ShardStats {
                flushes: reader.u64()?,
                entries_written: reader.u64()?,
                bytes_written: reader.u64()?,
            };
            let count = reader.u32()?;
            require_zero(reader, 4, "response reserved bytes")?;
            if (count as usize).saturating_mul(GROUP_STATUS_BYTES) > reader.remaining() {
                return Err(ProtocolError::CountTooLarge {
                    count,
                    at: reader.pos(),
                    room: reader.remaining(),
                });
            }
            let mut groups = Vec::with_capacity(count as usize);
            for _ in 0..count {
                groups.push(read_group_summary(reader)?);
            }
            let stages = StageBuckets {
                leader_durable: read_buckets(reader)?,
                committed: read_buckets(reader)?,
                applied: read_buckets(reader)?,
            };
            Ok(ClientResponse::Status {
                id,
                status: Box::new(ShardStatus {
                    node,
                    shard,
                    groups,
                    stages,
                }),
            })
        }
        RESPONSE_ADMIN_STATUS => {
            let node = NodeId(reader.u64()?);
            let shard_count = reader.u32()?;
            let count = reader.u32()?;
            if (count as usize).saturating_mul(ADMIN_GROUP_BYTES_MIN) > reader.remaining() {
                return Err(ProtocolError::CountTooLarge {
                    count,
                    at: reader.pos(),
                    room: reader.remaining(),
                });
            }
            let groups = (0..count)
                .map(|_| read_admin_group(reader))
                .collect::<Result<_, _>>()?;
            Ok(ClientResponse::AdminStatus {
                id,
                node,
                shard_count,
                groups,
            })
        }
        RESPONSE_ERROR => {
            let error = match code {
                ERROR_NOT_LEADER => {
                    let fields_at = reader.pos();
                    let flags = reader.u8()?;
                    require_zero(reader, 5, "error reserved bytes")?;
                    let addr_len = reader.u16()? as usize;
                    let leader = reader.u64()?;
                    if flags & !(FLAG_LEADER | FLAG_ADDR) != 0
                        || (flags & FLAG_LEADER == 0 && leader != 0)
                        || (flags & FLAG_ADDR == 0 && addr_len != 0)
                    {
                        return Err(ProtocolError::NotZero {
                            what: "unset NotLeader fields",
                            at: fields_at,
                        });
                    }
                    let addr =
                        read_text(reader, addr_len, CLIENT_ADDR_BYTES_MAX, "leader address")?;
                    ClientError::NotLeader {
                        leader: (flags & FLAG_LEADER != 0).then_some(NodeId(leader)),
                        leader_client_addr: (flags & FLAG_ADDR != 0).then_some(addr),
                    }
                }
                ERROR_TIMEOUT => ClientError::Timeout,
                ERROR_SHUTTING_DOWN => ClientError::ShuttingDown,
                ERROR_OVERLOADED => ClientError::Overloaded,
                ERROR_CHANGE_IN_PROGRESS => ClientError::ChangeInProgress,
                ERROR_CHANGE_NOT_ALLOWED => ClientError::ChangeNotAllowed,
                ERROR_LEARNER_BEHIND => ClientError::LearnerBehind,
                ERROR_TOO_LARGE => ClientError::TooLarge {
                    bytes: reader.u64()?,
                    max: reader.u64()?,
                },
                ERROR_UNKNOWN_GROUP => ClientError::UnknownGroup(GroupId(reader.u64()?)),
                ERROR_SESSION => ClientError::Session(read_session_refusal(reader)?),
                ERROR_INTERNAL => {
                    let len = reader.u32()? as usize;
                    require_zero(reader, 4, "error reserved bytes")?;
                    ClientError::Internal(read_text(
                        reader,
                        len,
                        CLIENT_ERROR_TEXT_BYTES_MAX,
                        "error text",
                    )?)
                }
                code => {
                    return Err(ProtocolError::UnknownCode {
                        what: "error",
                        code,
                        at: at + 1,
                    })
                }
            };
            Ok(ClientResponse::Error { id, error })
        }
        code => Err(ProtocolError::UnknownCode {
            what: "response",
            code,
            at,
        }),
    }
}

/// Decodes a frame that must be [`FrameKind::ClientRequests`].
pub fn decode_requests_frame(frame: &Frame) -> Result<Vec<ClientRequest>, ProtocolError> {
    expect_kind(frame, FrameKind::ClientRequests)?;
    decode_requests(&frame.body)
}

/// Decodes the body of a requests frame; payloads are zero-copy slices of `body`.
pub fn decode_requests(body: &Bytes) -> Result<Vec<ClientRequest>, ProtocolError> {
    decode_items(body, read_request)
}

/// Decodes a frame that must be [`FrameKind::ClientResponses`].
pub fn decode_responses_frame(frame: &Frame) -> Result<Vec<ClientResponse>, ProtocolError> {
    expect_kind(frame, FrameKind::ClientResponses)?;
    decode_responses(&frame.body)
}

/// Decodes the body of a responses frame; outputs are zero-copy slices of `body`.
pub fn decode_responses(body: &Bytes) -> Result<Vec<ClientResponse>, ProtocolError> {
    decode_items(body, read_response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::frame::FrameDecoder;

    fn one_frame(out: &[u8]) -> Frame {
        let mut decoder = FrameDecoder::new();
        decoder.push(out);
        decoder.next_frame().unwrap().unwrap()
    }

    /// Responses move by value through queues on both ends of a connection, one per request:
    /// a status answer's figures are boxed so that the others stay this small.
    #[test]
    fn a_response_is_as_small_as_a_committed_answer() {
        assert!(std::mem::size_of::<ClientResponse>() <= 56);
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let requests = vec![
            ClientRequest::Propose {
                id: 1,
                group: GroupId(3),
                payload: Bytes::from_static(b"set x 1"),
            },
            ClientRequest::Status { id: 2 },
        ];
        let mut out = Vec::new();
        encode_requests(&requests, &mut out).unwrap();
        assert_eq!(decode_requests_frame(&one_frame(&out)).unwrap(), requests);

        let responses = vec![
            ClientResponse::Committed {
                id: 1,
                index: LogIndex(9),
                output: Bytes::from_static(b"ok"),
            },
            ClientResponse::Status {
                id: 2,
                status: Box::new(ShardStatus {
                    node: NodeId(1),
                    shard: ShardStats {
                        flushes: 5,
                        entries_written: 40,
                        bytes_written: 4096,
                    },
                    groups: vec![GroupSummary {
                        group: GroupId(3),
                        role: Role::Leader,
                        term: Term(4),
                        leader: Some(NodeId(1)),
                        commit: LogIndex(9),
                        applied: LogIndex(9),
                        last_index: LogIndex(10),
                    }],
                    stages: StageBuckets {
                        leader_durable: vec![(120, 3), (250, 1)],
                        committed: vec![],
                        applied: vec![(900, 4)],
                    },
                }),
            },
            ClientResponse::Error {
                id: 3,
                error: ClientError::NotLeader {
                    leader: Some(NodeId(2)),
                    leader_client_addr: Some("127.0.0.2:7000".into()),
                },
            },
            ClientResponse::Error {
                id: 4,
                error: ClientError::Internal("disk on fire".into()),
            },
        ];
        let mut out = Vec::new();
        encode_responses(&responses, &mut out).unwrap();
        assert_eq!(decode_responses_frame(&one_frame(&out)).unwrap(), responses);
    }

    #[test]
    fn oversized_payload_is_refused_with_its_id() {
        let big = ClientRequest::Propose {
            id: 77,
            group: GroupId(0),
            payload: Bytes::from(vec![0; CLIENT_PAYLOAD_BYTES_MAX + 1]),
        };
        let mut out = vec![1];
        assert!(matches!(
            encode_requests(&[big], &mut out),
            Err(ProtocolError::PayloadTooLarge { id: 77, .. })
        ));
        assert_eq!(out, vec![1]);
        let text = "é".repeat(CLIENT_ERROR_TEXT_BYTES_MAX);
        assert_eq!(
            truncated_text(&text, CLIENT_ERROR_TEXT_BYTES_MAX - 1).len(),
            CLIENT_ERROR_TEXT_BYTES_MAX - 2
        );
    }
}

//! Codec tests for `net` (frames, Raft wire format, handshake) and the client protocol:
//! property-based round trips of every encoded type, and hostile input (random bytes, truncation
//! at every length, mutations of valid encodings, giant lengths, bad checksums, wrong magic,
//! version and kind, batch descriptors pointing outside, misaligned, overlapping or leaving
//! gaps). Hostile input must give an error (or `Ok(None)` for a partial frame), never a panic,
//! and must not make the decoder allocate beyond its caps: a counting allocator records the
//! largest single allocation made by the test's own thread.
//!
//! Random cases come from proptest; a failing case is printed with its seed and minimised.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use std::net::SocketAddr;

use bytes::Bytes;
use proptest::prelude::*;
use rkyv::util::AlignedVec;

use ringraft::api::{PeerConfig, ReadConsistency};
use ringraft::batch::{BatchKind, EntryBatch};
use ringraft::constants::{
    CLIENT_PAYLOAD_BYTES_MAX, FRAME_ALIGN, FRAME_BYTES_MAX, FRAME_HEADER_BYTES, INDEX_MAX,
    PROTOCOL_VERSION, SNAPSHOT_CHUNK_BYTES_MAX,
};
use ringraft::core::{
    AppendOutcome, AppendRequest, Membership, MembershipChange, Message, RejectHint, Role,
};
use ringraft::net::client_wire::{
    decode_requests, decode_requests_frame, decode_responses, decode_responses_frame,
    encode_requests, encode_responses, ClientError, ClientRequest, ClientResponse,
    GroupAdminStatus, GroupSummary, ProtocolError, ShardStats, ShardStatus, StageBuckets,
};
use ringraft::net::frame::{encode_frame, frame_wire_len, Frame, FRAME_MAGIC};
use ringraft::net::handshake::{check_hello, HandshakeError, Hello, HelloReply, LocalIdentity};
use ringraft::net::members::{decode_members, encode_members};
use ringraft::net::snapshot_wire::{SnapshotAck, SnapshotChunk, SnapshotWireError};
use ringraft::net::wire::{
    decode_raft, decode_raft_frame, encode_raft, message_wire_bytes, WireError,
};
use ringraft::net::{FrameDecoder, FrameError, FrameKind};
use ringraft::types::{
    GroupId, LogIndex, NodeId, PeerAddr, SessionId, SessionRefusal, SessionRequest, ShardId, Term,
};

// ---- allocation tracking --------------------------------------------------------------------

struct TrackingAllocator;

thread_local! {
    static LARGEST_ALLOCATION: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation(size: usize) {
    let _ = LARGEST_ALLOCATION.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: forwards to the system allocator; only records sizes in a const-initialised,
// destructor-free thread-local (which never allocates).
unsafe impl GlobalAlloc for TrackingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: TrackingAllocator = TrackingAllocator;

/// Runs `f` and returns its result with the largest single allocation it made on this thread.
fn largest_allocation_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST_ALLOCATION.with(|largest| largest.set(0));
    let result = f();
    (result, LARGEST_ALLOCATION.with(Cell::get))
}

// ---- helpers --------------------------------------------------------------------------------

/// Copies `bytes` into a 16-byte aligned buffer (as the frame decoder delivers bodies).
fn aligned(bytes: &[u8]) -> Bytes {
    let mut buffer = AlignedVec::<FRAME_ALIGN>::with_capacity(bytes.len());
    buffer.extend_from_slice(bytes);
    Bytes::from_owner(buffer)
}

/// Decodes every frame of `stream`, delivered in one piece.
fn frames_of(stream: &[u8]) -> Result<Vec<Frame>, FrameError> {
    let mut decoder = FrameDecoder::new();
    decoder.push(stream);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.next_frame()? {
        frames.push(frame);
    }
    Ok(frames)
}

fn single_frame(stream: &[u8]) -> Frame {
    let mut frames = frames_of(stream).expect("valid stream");
    assert_eq!(frames.len(), 1);
    frames.pop().unwrap()
}

/// A frame header with the given fields and a correct header checksum.
fn header(magic: [u8; 4], version: u16, kind: u16, len: u64, body_crc: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(FRAME_HEADER_BYTES);
    h.extend_from_slice(&magic);
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&kind.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&body_crc.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

fn raft_body(messages: &[(GroupId, NodeId, &Message)]) -> Bytes {
    let mut out = Vec::new();
    encode_raft(NodeId(1), messages, &mut out).unwrap();
    single_frame(&out).body
}

fn append_with(batches: Vec<EntryBatch>) -> Message {
    Message::Append(AppendRequest {
        term: Term(5),
        prev_index: LogIndex(9),
        prev_term: Term(4),
        commit: LogIndex(8),
        read_round: 3,
        batches,
    })
}

fn batch(first_index: u64, payloads: &[&[u8]]) -> EntryBatch {
    EntryBatch::encode(
        BatchKind::Command,
        Term(5),
        LogIndex(first_index),
        payloads.iter().copied(),
    )
}

// Offsets inside a Raft frame body (see `net::wire`).
const RECORD_AT: usize = 16;
const DESCRIPTORS_AT: usize = RECORD_AT + 64;
const DESCRIPTOR_BYTES: usize = 32;

fn descriptor_field(body: &mut [u8], batch: usize, field_at: usize, value: &[u8]) {
    let at = DESCRIPTORS_AT + batch * DESCRIPTOR_BYTES + field_at;
    body[at..at + value.len()].copy_from_slice(value);
}

// ---- strategies -----------------------------------------------------------------------------

fn arb_batch() -> impl Strategy<Value = EntryBatch> {
    (
        prop_oneof![
            Just(BatchKind::Command),
            Just(BatchKind::Noop),
            Just(BatchKind::Config)
        ],
        1u64..u32::MAX as u64,
        1u64..1 << 40,
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..8),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(kind, term, first, payloads, a, b)| {
            let batch = EntryBatch::encode(
                kind,
                Term(term),
                LogIndex(first),
                payloads.iter().map(Vec::as_slice),
            );
            // A window of the batch, as a leader sends when catching a follower up mid-batch.
            let n = payloads.len();
            let (x, y) = (a.index(n) as u64, b.index(n) as u64);
            batch.slice(LogIndex(first + x.min(y)), LogIndex(first + x.max(y)))
        })
}

/// Terms and indexes as peers may send them (up to the protocol's limits).
fn arb_term() -> impl Strategy<Value = Term> {
    (0..=ringraft::constants::TERM_MAX).prop_map(Term)
}

fn arb_index() -> impl Strategy<Value = LogIndex> {
    (0..=ringraft::constants::INDEX_MAX).prop_map(LogIndex)
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            arb_term(),
            arb_index(),
            arb_term(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(term, last_index, last_term, pre_vote, transfer)| {
                Message::VoteRequest {
                    term,
                    last_index,
                    last_term,
                    pre_vote,
                    transfer,
                }
            }),
        (arb_term(), any::<bool>(), any::<bool>()).prop_map(|(term, pre_vote, granted)| {
            Message::VoteResponse {
                term,
                pre_vote,
                granted,
            }
        }),
        (
            arb_term(),
            arb_index(),
            arb_term(),
            arb_index(),
            any::<u64>(),
            prop::collection::vec(arb_batch(), 0..5)
        )
            .prop_map(
                |(term, prev_index, prev_term, commit, read_round, batches)| {
                    Message::Append(AppendRequest {
                        term,
                        prev_index,
                        prev_term,
                        commit,
                        read_round,
                        batches,
                    })
                }
            ),
        (arb_term(), arb_index(), any::<u64>()).prop_map(|(term, match_index, read_round)| {
            Message::AppendResponse {
                term,
                outcome: AppendOutcome::Accepted {
                    match_index,
                    read_round,
                },
            }
        }),
        (
            arb_term(),
            arb_index(),
            arb_index(),
            prop::option::of((arb_term(), arb_index()))
        )
            .prop_map(|(term, prev_index, last_index, conflict)| {
                Message::AppendResponse {
                    term,
                    outcome: AppendOutcome::Rejected {
                        prev_index,
                        hint: RejectHint {
                            last_index,
                            conflict,
                        },
                    },
                }
            }),
        arb_term().prop_map(|term| Message::TimeoutNow { term }),
    ]
}

fn arb_routed() -> impl Strategy<Value = Vec<(GroupId, NodeId, Message)>> {
    prop::collection::vec(
        (any::<u64>(), any::<u64>(), arb_message())
            .prop_map(|(group, to, message)| (GroupId(group), NodeId(to), message)),
        0..12,
    )
}

fn arb_hello() -> impl Strategy<Value = Hello> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
    )
        .prop_map(
            |(cluster_id, node, shard, shard_count, protocol_version)| Hello {
                cluster_id,
                node_id: NodeId(node),
                shard: ShardId(shard),
                shard_count,
                protocol_version,
            },
        )
}

/// Rejection reasons that have a wire code (the others are sent as "malformed").
fn arb_reject_reason() -> impl Strategy<Value = HandshakeError> {
    prop_oneof![
        (any::<u64>(), any::<u64>())
            .prop_map(|(expected, found)| HandshakeError::WrongCluster { expected, found }),
        any::<u64>().prop_map(|n| HandshakeError::UnknownNode { node: NodeId(n) }),
        any::<u64>().prop_map(|n| HandshakeError::SelfConnection { node: NodeId(n) }),
        (any::<u16>(), any::<u16>(), any::<u16>())
            .prop_map(|(found, min, max)| HandshakeError::IncompatibleVersion { found, min, max }),
        (any::<u32>(), any::<u32>()).prop_map(|(expected, found)| {
            HandshakeError::ShardCountMismatch { expected, found }
        }),
        (any::<u32>(), any::<u32>()).prop_map(|(shard, shard_count)| {
            HandshakeError::ShardOutOfRange {
                shard: ShardId(shard),
                shard_count,
            }
        }),
    ]
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn arb_socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
    ]
}

fn arb_change() -> impl Strategy<Value = MembershipChange> {
    (0u8..3, any::<u64>()).prop_map(|(kind, id)| match kind {
        0 => MembershipChange::AddLearner(NodeId(id)),
        1 => MembershipChange::Promote(NodeId(id)),
        _ => MembershipChange::Remove(NodeId(id)),
    })
}

/// A peer address: an IP address or a host name.
fn arb_peer_addr() -> impl Strategy<Value = PeerAddr> {
    prop_oneof![
        arb_socket_addr().prop_map(PeerAddr::Ip),
        (
            "[a-z][a-z0-9-]{0,12}[a-z0-9](\\.[a-z0-9]{1,12}){0,4}",
            any::<u16>()
        )
            .prop_map(|(name, port)| PeerAddr::Host { name, port }),
    ]
}

/// Distinct members with addresses (sorted by id, as the decoder returns them).
fn arb_members() -> impl Strategy<Value = Vec<PeerConfig>> {
    prop::collection::btree_map(
        any::<u64>(),
        (arb_peer_addr(), prop::option::of(arb_socket_addr())),
        0..8,
    )
    .prop_map(|members| {
        members
            .into_iter()
            .map(|(id, (addr, client_addr))| PeerConfig {
                id: NodeId(id),
                addr,
                client_addr,
            })
            .collect()
    })
}

/// A valid membership: distinct ids split into voters, outgoing voters and learners.
fn arb_membership() -> impl Strategy<Value = Membership> {
    prop::collection::btree_map(any::<u64>(), 0u8..4, 0..10).prop_map(|ids| {
        let mut membership = Membership::default();
        for (id, role) in ids {
            let id = NodeId(id);
            match role {
                0 => membership.voters.push(id),
                1 => membership.outgoing.push(id),
                2 => {
                    membership.voters.push(id);
                    membership.outgoing.push(id);
                }
                _ => membership.learners.push(id),
            }
        }
        membership
    })
}

fn arb_request() -> impl Strategy<Value = ClientRequest> {
    prop_oneof![
        (
            any::<u64>(),
            any::<u64>(),
            arb_change(),
            prop::option::of((arb_peer_addr(), prop::option::of(arb_socket_addr())))
        )
            .prop_map(
                |(id, group, change, addrs)| ClientRequest::ChangeMembership {
                    id,
                    group: GroupId(group),
                    change,
                    addr: addrs.as_ref().map(|(addr, _)| addr.clone()),
                    client_addr: addrs.and_then(|(_, client)| client),
                }
            ),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(id, group, to)| {
            ClientRequest::TransferLeader {
                id,
                group: GroupId(group),
                to: NodeId(to),
            }
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(id, group)| ClientRequest::Snapshot {
            id,
            group: GroupId(group)
        }),
        any::<u64>().prop_map(|id| ClientRequest::AdminStatus { id }),
        (any::<u64>(), any::<u64>(), arb_bytes(300)).prop_map(|(id, group, payload)| {
            ClientRequest::Propose {
                id,
                group: GroupId(group),
                payload,
            }
        }),
        any::<u64>().prop_map(|id| ClientRequest::Status { id }),
        (any::<u64>(), any::<u64>()).prop_map(|(id, group)| ClientRequest::RegisterSession {
            id,
            group: GroupId(group)
        }),
        (
            any::<u64>(),
            any::<u64>(),
            arb_session_request(),
            arb_bytes(300)
        )
            .prop_map(
                |(id, group, request, payload)| ClientRequest::ProposeInSession {
                    id,
                    group: GroupId(group),
                    request,
                    payload,
                }
            ),
        (any::<u64>(), any::<u64>(), 0u8..3, arb_bytes(300)).prop_map(
            |(id, group, consistency, query)| ClientRequest::Read {
                id,
                group: GroupId(group),
                consistency: match consistency {
                    0 => ReadConsistency::Linearizable,
                    1 => ReadConsistency::Lease,
                    _ => ReadConsistency::Stale,
                },
                query,
            }
        ),
    ]
}

fn arb_session_request() -> impl Strategy<Value = SessionRequest> {
    (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(session, seq, lowest)| {
        SessionRequest::new(SessionId(session), seq, lowest.min(seq)).unwrap()
    })
}

fn arb_session_refusal() -> impl Strategy<Value = SessionRefusal> {
    prop_oneof![
        any::<u64>().prop_map(|session| SessionRefusal::Unknown(SessionId(session))),
        any::<u64>().prop_map(|session| SessionRefusal::Busy(SessionId(session))),
        (any::<u64>(), any::<u64>()).prop_map(|(session, seq)| SessionRefusal::Acknowledged {
            session: SessionId(session),
            seq
        }),
    ]
}

fn arb_role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Follower),
        Just(Role::PreCandidate),
        Just(Role::Candidate),
        Just(Role::Leader),
    ]
}

fn arb_client_error() -> impl Strategy<Value = ClientError> {
    prop_oneof![
        (
            prop::option::of(any::<u64>().prop_map(NodeId)),
            prop::option::of("[a-z0-9.:é]{0,40}")
        )
            .prop_map(|(leader, leader_client_addr)| ClientError::NotLeader {
                leader,
                leader_client_addr,
            }),
        Just(ClientError::Timeout),
        Just(ClientError::ShuttingDown),
        (any::<u64>(), any::<u64>()).prop_map(|(bytes, max)| ClientError::TooLarge { bytes, max }),
        Just(ClientError::Overloaded),
        Just(ClientError::ChangeInProgress),
        Just(ClientError::ChangeNotAllowed),
        Just(ClientError::LearnerBehind),
        any::<u64>().prop_map(|g| ClientError::UnknownGroup(GroupId(g))),
        ".{0,60}".prop_map(ClientError::Internal),
        arb_session_refusal().prop_map(ClientError::Session),
    ]
}

fn arb_group_summary() -> impl Strategy<Value = GroupSummary> {
    (
        any::<u64>(),
        arb_role(),
        arb_term(),
        prop::option::of(any::<u64>().prop_map(NodeId)),
        arb_index(),
        arb_index(),
        arb_index(),
    )
        .prop_map(
            |(group, role, term, leader, commit, applied, last_index)| GroupSummary {
                group: GroupId(group),
                role,
                term,
                leader,
                commit,
                applied,
                last_index,
            },
        )
}

fn arb_response() -> impl Strategy<Value = ClientResponse> {
    let admin_group = (
        arb_group_summary(),
        (arb_index(), arb_index(), arb_index()),
        arb_membership(),
        arb_members(),
    )
        .prop_map(
            |(summary, (snapshot_index, log_base, config_index), membership, members)| {
                GroupAdminStatus {
                    summary,
                    snapshot_index,
                    log_base,
                    config_index,
                    membership,
                    members,
                }
            },
        );
    prop_oneof![
        (any::<u64>(), arb_index(), arb_bytes(300))
            .prop_map(|(id, index, output)| ClientResponse::Committed { id, index, output }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            prop::collection::vec(admin_group, 0..4)
        )
            .prop_map(
                |(id, node, shard_count, groups)| ClientResponse::AdminStatus {
                    id,
                    node: NodeId(node),
                    shard_count,
                    groups,
                }
            ),
        (
            any::<u64>(),
            any::<u64>(),
            any::<(u64, u64, u64)>(),
            prop::collection::vec(arb_group_summary(), 0..6)
        )
            .prop_map(
                |(id, node, (flushes, entries_written, bytes_written), groups)| {
                    ClientResponse::Status {
                        id,
                        status: Box::new(ShardStatus {
                            node: NodeId(node),
                            shard: ShardStats {
                                flushes,
                                entries_written,
                                bytes_written,
                            },
                            groups,
                            stages: StageBuckets {
                                leader_durable: vec![(flushes % 1000, 1)],
                                committed: vec![],
                                applied: vec![(7, entries_written), (9, bytes_written)],
                            },
                        }),
                    }
                }
            ),
        (any::<u64>(), arb_client_error())
            .prop_map(|(id, error)| ClientResponse::Error { id, error }),
    ]
}

/// A way of damaging an encoding.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: prop::sample::Index, bit: u8 },
    Set { at: prop::sample::Index, value: u8 },
    Truncate { at: prop::sample::Index },
    Append { bytes: Vec<u8> },
}

fn arb_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(
        prop_oneof![
            4 => (any::<prop::sample::Index>(), 0u8..8)
                .prop_map(|(at, bit)| Mutation::Flip { at, bit }),
            4 => (any::<prop::sample::Index>(), any::<u8>())
                .prop_map(|(at, value)| Mutation::Set { at, value }),
            1 => any::<prop::sample::Index>().prop_map(|at| Mutation::Truncate { at }),
            1 => prop::collection::vec(any::<u8>(), 1..40).prop_map(|bytes| Mutation::Append { bytes }),
        ],
        1..4,
    )
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for mutation in mutations {
        match mutation {
            _ if bytes.is_empty() => bytes.push(0xa5),
            Mutation::Flip { at, bit } => {
                let i = at.index(bytes.len());
                bytes[i] ^= 1 << bit;
            }
            Mutation::Set { at, value } => {
                let i = at.index(bytes.len());
                bytes[i] = *value;
            }
            Mutation::Truncate { at } => {
                let i = at.index(bytes.len());
                bytes.truncate(i);
            }
            Mutation::Append { bytes: extra } => bytes.extend_from_slice(extra),
        }
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

// ---- round trips ----------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// Frames survive any split of the stream into reads, and bodies come out aligned.
    #[test]
    fn frames_round_trip_across_any_read_split(
        frames in prop::collection::vec(
            (prop_oneof![
                Just(FrameKind::Hello),
                Just(FrameKind::HelloReply),
                Just(FrameKind::Raft),
                Just(FrameKind::SnapshotChunk),
                Just(FrameKind::SnapshotAck),
                Just(FrameKind::ClientRequests),
                Just(FrameKind::ClientResponses),
            ], prop::collection::vec(any::<u8>(), 0..600)),
            1..10,
        ),
        reads in prop::collection::vec(1usize..300, 1..50),
        chunk in 32usize..2048,
    ) {
        let mut stream = Vec::new();
        for (kind, body) in &frames {
            let len = encode_frame(*kind, body, &mut stream).unwrap();
            prop_assert_eq!(len, frame_wire_len(body.len()));
        }
        prop_assert_eq!(stream.len() % FRAME_ALIGN, 0);
        let mut decoder = FrameDecoder::with_limits(FRAME_BYTES_MAX, chunk);
        let mut decoded = Vec::new();
        let mut at = 0;
        let mut read = 0;
        while at < stream.len() {
            let n = reads[read % reads.len()].min(stream.len() - at);
            read += 1;
            decoder.spare(n)[..n].copy_from_slice(&stream[at..at + n]);
            decoder.filled(n);
            at += n;
            while let Some(frame) = decoder.next_frame().unwrap() {
                decoded.push(frame);
            }
        }
        prop_assert_eq!(decoder.buffered(), 0);
        prop_assert_eq!(decoded.len(), frames.len());
        for (frame, (kind, body)) in decoded.iter().zip(&frames) {
            prop_assert_eq!(frame.kind, *kind);
            prop_assert_eq!(&frame.body[..], &body[..]);
            prop_assert!(body.is_empty() || frame.body.as_ptr() as usize % FRAME_ALIGN == 0);
        }
    }

    /// Every Message variant, with random batches and windows, round trips; the encoding is
    /// canonical (re-encoding the decoded messages gives the same bytes); batch bodies are
    /// zero-copy slices of the frame body.
    #[test]
    fn raft_messages_round_trip(from in any::<u64>(), routed in arb_routed()) {
        let items: Vec<_> = routed.iter().map(|(g, to, m)| (*g, *to, m)).collect();
        let mut out = Vec::new();
        let wire_len = encode_raft(NodeId(from), &items, &mut out).unwrap();
        // `message_wire_bytes` is an upper bound the runtime can split frames by.
        let bound: usize = 16 + routed.iter().map(|(_, _, m)| message_wire_bytes(m)).sum::<usize>();
        prop_assert!(wire_len <= frame_wire_len(bound));
        let frame = single_frame(&out);
        let decoded = decode_raft_frame(&frame).unwrap();
        prop_assert_eq!(decoded.from, NodeId(from));
        prop_assert_eq!(decoded.messages.len(), routed.len());
        let body = frame.body.as_ptr() as usize..frame.body.as_ptr() as usize + frame.body.len();
        for (envelope, (group, to, message)) in decoded.messages.iter().zip(&routed) {
            prop_assert_eq!(envelope.group, *group);
            prop_assert_eq!(envelope.to, *to);
            prop_assert_eq!(&envelope.message, message);
            if let (Message::Append(got), Message::Append(sent)) = (&envelope.message, message) {
                for (g, s) in got.batches.iter().zip(&sent.batches) {
                    prop_assert!(body.contains(&(g.body().as_ptr() as usize)));
                    prop_assert_eq!(g.skip(), s.skip());
                    prop_assert_eq!(g.body(), s.body());
                }
            }
        }
        let again: Vec<_> = decoded.messages.iter().map(|e| (e.group, e.to, &e.message)).collect();
        let mut out2 = Vec::new();
        encode_raft(NodeId(from), &again, &mut out2).unwrap();
        prop_assert_eq!(out, out2);
    }

    #[test]
    fn hellos_and_replies_round_trip(
        hello in arb_hello(),
        reason in arb_reject_reason(),
    ) {
        let mut out = Vec::new();
        hello.encode(&mut out);
        prop_assert_eq!(Hello::decode(&single_frame(&out)).unwrap(), hello);
        for reply in [HelloReply::Accepted(hello), HelloReply::Rejected(reason)] {
            let mut out = Vec::new();
            reply.encode(&mut out);
            prop_assert_eq!(HelloReply::decode(&single_frame(&out)).unwrap(), reply);
        }
    }

    #[test]
    fn client_requests_and_responses_round_trip(
        requests in prop::collection::vec(arb_request(), 0..10),
        responses in prop::collection::vec(arb_response(), 0..10),
    ) {
        let mut out = Vec::new();
        encode_requests(&requests, &mut out).unwrap();
        encode_responses(&responses, &mut out).unwrap();
        let frames = frames_of(&out).unwrap();
        prop_assert_eq!(frames.len(), 2);
        prop_assert_eq!(decode_requests_frame(&frames[0]).unwrap(), requests);
        prop_assert_eq!(decode_responses_frame(&frames[1]).unwrap(), responses);
    }
}

// ---- snapshot transfer frames ----------------------------------------------------------------

fn arb_chunk() -> impl Strategy<Value = SnapshotChunk> {
    (
        any::<u64>(),
        any::<u64>(),
        arb_term(),
        1..=INDEX_MAX,
        prop::collection::vec(any::<u8>(), 1..3000),
        0u64..1 << 40,
        0u64..1 << 40,
    )
        .prop_map(
            |(from, group, term, index, bytes, offset, extra)| SnapshotChunk {
                from: NodeId(from),
                group: GroupId(group),
                term,
                index: LogIndex(index),
                offset,
                total_len: offset + bytes.len() as u64 + extra,
                bytes: Bytes::from(bytes),
            },
        )
}

fn arb_ack() -> impl Strategy<Value = SnapshotAck> {
    (
        any::<u64>(),
        any::<u64>(),
        1..=INDEX_MAX,
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(from, group, index, received, done)| SnapshotAck {
            from: NodeId(from),
            group: GroupId(group),
            index: LogIndex(index),
            received,
            done,
        })
}

proptest! {
    #![proptest_config(config())]

    /// Chunks and acknowledgements round trip through frames, canonically; chunk bytes are
    /// zero-copy slices of the frame body.
    #[test]
    fn snapshot_frames_round_trip(chunk in arb_chunk(), ack in arb_ack()) {
        let mut out = Vec::new();
        chunk.encode(&mut out).unwrap();
        ack.encode(&mut out).unwrap();
        let frames = frames_of(&out).unwrap();
        prop_assert_eq!(frames.len(), 2);
        let decoded = SnapshotChunk::decode_frame(&frames[0]).unwrap();
        prop_assert_eq!(&decoded, &chunk);
        let body = frames[0].body.as_ptr() as usize..frames[0].body.as_ptr() as usize + frames[0].body.len();
        prop_assert!(body.contains(&(decoded.bytes.as_ptr() as usize)));
        prop_assert_eq!(SnapshotAck::decode_frame(&frames[1]).unwrap(), ack);
        prop_assert!(matches!(
            SnapshotAck::decode_frame(&frames[0]),
            Err(SnapshotWireError::WrongKind(FrameKind::SnapshotChunk))
        ));
        let mut again = Vec::new();
        decoded.encode(&mut again).unwrap();
        SnapshotAck::decode_frame(&frames[1]).unwrap().encode(&mut again).unwrap();
        prop_assert_eq!(again, out);
    }

    /// Damaged chunk and acknowledgement bodies: an error, or a body that re-encodes to the
    /// same bytes; truncation at every length is an error.
    #[test]
    fn mutated_snapshot_bodies_fail_cleanly_or_stay_canonical(
        chunk in arb_chunk(),
        ack in arb_ack(),
        mutations in arb_mutations(),
    ) {
        let mut out = Vec::new();
        chunk.encode(&mut out).unwrap();
        ack.encode(&mut out).unwrap();
        for frame in frames_of(&out).unwrap() {
            for cut in 0..frame.body.len().min(80) {
                let short = aligned(&frame.body[..cut]);
                prop_assert!(SnapshotChunk::decode(&short).is_err());
                prop_assert!(SnapshotAck::decode(&short).is_err());
            }
            let mut bytes = frame.body.to_vec();
            mutate(&mut bytes, &mutations);
            let body = aligned(&bytes);
            let mut again = Vec::new();
            if frame.kind == FrameKind::SnapshotChunk {
                if let Ok(c) = SnapshotChunk::decode(&body) { c.encode(&mut again).unwrap(); }
            } else if let Ok(a) = SnapshotAck::decode(&body) {
                a.encode(&mut again).unwrap();
            }
            if !again.is_empty() {
                prop_assert_eq!(&single_frame(&again).body[..], &bytes[..]);
            }
        }
    }
}

#[test]
fn snapshot_chunks_over_the_cap_or_beyond_the_file_are_refused() {
    let mut body = Vec::new();
    for field in [1u64, 2, 3, 4, 0, 1 << 30] {
        body.extend_from_slice(&field.to_le_bytes());
    }
    let too_long = (SNAPSHOT_CHUNK_BYTES_MAX + 1) as u32;
    body.extend_from_slice(&too_long.to_le_bytes());
    body.extend_from_slice(&[0; 4]);
    body.resize(body.len() + too_long as usize, 7);
    assert!(matches!(
        SnapshotChunk::decode(&aligned(&body)),
        Err(SnapshotWireError::ChunkLength { .. })
    ));
    // A valid chunk whose end lies past the announced file length.
    let chunk = SnapshotChunk {
        from: NodeId(1),
        group: GroupId(2),
        term: Term(3),
        index: LogIndex(4),
        offset: 0,
        total_len: 5,
        bytes: Bytes::from_static(b"abcde"),
    };
    let mut out = Vec::new();
    chunk.encode(&mut out).unwrap();
    let mut body = single_frame(&out).body.to_vec();
    body[40..48].copy_from_slice(&4u64.to_le_bytes());
    assert!(matches!(
        SnapshotChunk::decode(&aligned(&body)),
        Err(SnapshotWireError::BeyondFile { .. })
    ));
    // Index zero names no snapshot.
    body[40..48].copy_from_slice(&5u64.to_le_bytes());
    body[24..32].copy_from_slice(&0u64.to_le_bytes());
    assert_eq!(
        SnapshotChunk::decode(&aligned(&body)),
        Err(SnapshotWireError::BeyondLimits)
    );
}

// ---- hostile input --------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// Random bytes on a connection: an error or a wait for more, never a panic, and never an
    /// allocation beyond the frame cap.
    #[test]
    fn random_streams_never_panic_or_overallocate(
        stream in prop::collection::vec(any::<u8>(), 0..4096),
        magic_prefix in any::<bool>(),
    ) {
        let mut stream = stream;
        if magic_prefix && stream.len() >= 4 {
            stream[..4].copy_from_slice(&FRAME_MAGIC);
        }
        let (result, largest) = largest_allocation_of(|| {
            let mut decoder = FrameDecoder::new();
            for piece in stream.chunks(97) {
                let n = piece.len();
                decoder.spare(n)[..n].copy_from_slice(piece);
                decoder.filled(n);
                loop {
                    match decoder.next_frame() {
                        Ok(Some(_)) => continue,
                        Ok(None) => break,
                        Err(error) => return Err(error),
                    }
                }
            }
            Ok(())
        });
        let _ = result;
        prop_assert!(largest <= FRAME_BYTES_MAX + FRAME_HEADER_BYTES + 2 * FRAME_ALIGN + 4096);
    }

    /// Random bytes as bodies of every body kind: errors, never panics, and no allocation
    /// beyond a small multiple of the body's own size.
    #[test]
    fn random_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let body = aligned(&body);
        let (_, largest) = largest_allocation_of(|| {
            let _ = decode_raft(&body);
            let _ = Hello::decode_body(&body);
            let _ = HelloReply::decode_body(&body);
            let _ = decode_requests(&body);
            let _ = decode_responses(&body);
            let _ = SnapshotChunk::decode(&body);
            let _ = SnapshotAck::decode(&body);
        });
        prop_assert!(largest <= 64 * (body.len() + 64), "allocated {largest}");
    }

    /// Damaged valid Raft bodies: an error, or (rarely) a different valid body that then
    /// re-encodes to exactly the same bytes (the decoder accepts only canonical encodings).
    #[test]
    fn mutated_raft_bodies_fail_cleanly_or_stay_canonical(
        routed in arb_routed(),
        mutations in arb_mutations(),
    ) {
        let items: Vec<_> = routed.iter().map(|(g, to, m)| (*g, *to, m)).collect();
        let mut bytes = raft_body(&items).to_vec();
        mutate(&mut bytes, &mutations);
        let body = aligned(&bytes);
        if let Ok(decoded) = decode_raft(&body) {
            let again: Vec<_> =
                decoded.messages.iter().map(|e| (e.group, e.to, &e.message)).collect();
            let reencoded = raft_body(&again);
            // Batch windows may differ only where the archive allows it; the bytes must not.
            prop_assert_eq!(&reencoded[8..], &bytes[8..]);
        }
    }

    /// Damaged handshake and client bodies: errors or canonical re-encodings, never panics.
    #[test]
    fn mutated_handshake_and_client_bodies_fail_cleanly(
        hello in arb_hello(),
        reason in arb_reject_reason(),
        requests in prop::collection::vec(arb_request(), 0..6),
        responses in prop::collection::vec(arb_response(), 0..6),
        mutations in arb_mutations(),
    ) {
        let mut out = Vec::new();
        hello.encode(&mut out);
        HelloReply::Rejected(reason).encode(&mut out);
        HelloReply::Accepted(hello).encode(&mut out);
        encode_requests(&requests, &mut out).unwrap();
        encode_responses(&responses, &mut out).unwrap();
        for frame in frames_of(&out).unwrap() {
            let mut bytes = frame.body.to_vec();
            mutate(&mut bytes, &mutations);
            let body = aligned(&bytes);
            let mut again = Vec::new();
            match frame.kind {
                FrameKind::Hello => {
                    if let Ok(h) = Hello::decode_body(&body) { h.encode(&mut again) }
                }
                FrameKind::HelloReply => {
                    if let Ok(r) = HelloReply::decode_body(&body) { r.encode(&mut again) }
                }
                FrameKind::ClientRequests => {
                    if let Ok(r) = decode_requests(&body) { encode_requests(&r, &mut again).unwrap(); }
                }
                FrameKind::ClientResponses => {
                    if let Ok(r) = decode_responses(&body) { encode_responses(&r, &mut again).unwrap(); }
                }
                _ => unreachable!("only handshake and client frames were encoded"),
            }
            if !again.is_empty() {
                prop_assert_eq!(&single_frame(&again).body[..], &bytes[..]);
            }
        }
    }

    /// Damaged frame streams (headers included): errors or waits, never panics.
    #[test]
    fn mutated_frame_streams_never_panic(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100), 1..5),
        mutations in arb_mutations(),
    ) {
        let mut stream = Vec::new();
        for body in &bodies {
            encode_frame(FrameKind::Raft, body, &mut stream).unwrap();
        }
        mutate(&mut stream, &mutations);
        let mut decoder = FrameDecoder::new();
        decoder.push(&stream);
        while let Ok(Some(_)) = decoder.next_frame() {}
    }
}

/// Every proper prefix of a valid stream is a wait (`Ok(None)` after the complete frames), never
/// an error; the full stream gives every frame.
#[test]
fn truncation_at_every_length_is_a_wait() {
    let payloads: [&[u8]; 3] = [b"x", b"yy", &[7; 300]];
    let message = append_with(vec![batch(10, &payloads)]);
    let mut stream = Vec::new();
    encode_raft(NodeId(1), &[(GroupId(1), NodeId(2), &message)], &mut stream).unwrap();
    encode_frame(FrameKind::Hello, b"", &mut stream).unwrap();
    let first_len = stream.len() - FRAME_HEADER_BYTES;
    for cut in 0..stream.len() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&stream[..cut]);
        let mut complete = 0;
        while let Some(frame) = decoder.next_frame().unwrap() {
            if frame.kind == FrameKind::Raft {
                assert_eq!(
                    decode_raft(&frame.body).unwrap().messages[0].message,
                    message
                );
            }
            complete += 1;
        }
        assert_eq!(complete, usize::from(cut >= first_len), "cut at {cut}");
    }
    assert_eq!(frames_of(&stream).unwrap().len(), 2);
}

/// Every proper prefix of a valid body is an error for every body decoder.
#[test]
fn truncated_bodies_are_errors() {
    let message = append_with(vec![batch(10, &[b"abc", b"de"]), batch(12, &[b"f"])]);
    let raft = raft_body(&[
        (GroupId(1), NodeId(2), &message),
        (
            GroupId(2),
            NodeId(2),
            &Message::TimeoutNow { term: Term(3) },
        ),
    ]);
    for cut in 0..raft.len() {
        assert!(decode_raft(&raft.slice(..cut)).is_err(), "raft cut {cut}");
    }
    let mut out = Vec::new();
    Hello {
        cluster_id: 1,
        node_id: NodeId(2),
        shard: ShardId(0),
        shard_count: 1,
        protocol_version: PROTOCOL_VERSION,
    }
    .encode(&mut out);
    encode_requests(
        &[ClientRequest::Propose {
            id: 1,
            group: GroupId(1),
            payload: Bytes::from_static(b"payload"),
        }],
        &mut out,
    )
    .unwrap();
    encode_responses(
        &[ClientResponse::Error {
            id: 1,
            error: ClientError::NotLeader {
                leader: Some(NodeId(2)),
                leader_client_addr: Some("127.0.0.1:9000".into()),
            },
        }],
        &mut out,
    )
    .unwrap();
    let frames = frames_of(&out).unwrap();
    for cut in 0..frames[0].body.len() {
        assert!(Hello::decode_body(&frames[0].body.slice(..cut)).is_err());
    }
    for cut in 0..frames[1].body.len() {
        assert!(decode_requests(&frames[1].body.slice(..cut)).is_err());
    }
    for cut in 0..frames[2].body.len() {
        assert!(decode_responses(&frames[2].body.slice(..cut)).is_err());
    }
}

/// The session fields of a request and the session refusals decode to errors, never panics,
/// when they break the rules: a request that acknowledges itself, an unknown refusal, a
/// sequence number where none belongs, any cut.
#[test]
fn malformed_session_requests_and_refusals_are_errors() {
    let request = ClientRequest::ProposeInSession {
        id: 7,
        group: GroupId(2),
        request: SessionRequest::new(SessionId(40), 9, 9).unwrap(),
        payload: Bytes::from_static(b"incr"),
    };
    let mut out = Vec::new();
    encode_requests(std::slice::from_ref(&request), &mut out).unwrap();
    let frame = frames_of(&out).unwrap().remove(0);
    assert_eq!(decode_requests(&frame.body).unwrap(), vec![request]);
    for cut in 0..frame.body.len() {
        assert!(
            decode_requests(&frame.body.slice(..cut)).is_err(),
            "cut {cut}"
        );
    }
    // Body: count, reserved, tag, reserved, id, group, len, flavour, reserved (40 bytes),
    // then session, seq, lowest unanswered.
    let mut body = frame.body.to_vec();
    body[56..64].copy_from_slice(&10u64.to_le_bytes());
    assert!(matches!(
        decode_requests(&Bytes::from(body)),
        Err(ProtocolError::BadSessionRequest {
            seq: 9,
            lowest_unanswered: 10,
            ..
        })
    ));
    let refusal = ClientResponse::Error {
        id: 3,
        error: ClientError::Session(SessionRefusal::Busy(SessionId(40))),
    };
    let mut out = Vec::new();
    encode_responses(std::slice::from_ref(&refusal), &mut out).unwrap();
    let frame = frames_of(&out).unwrap().remove(0);
    assert_eq!(decode_responses(&frame.body).unwrap(), vec![refusal]);
    // Body: count, reserved, tag, code, reserved, id (24 bytes), then the refusal's code,
    // reserved bytes, session and sequence number.
    for (at, value) in [(24, 9u8), (25, 1), (40, 1)] {
        let mut body = frame.body.to_vec();
        body[at] = value;
        assert!(
            decode_responses(&Bytes::from(body)).is_err(),
            "byte {at} = {value}"
        );
    }
}

#[test]
fn giant_lengths_are_refused_before_allocating() {
    for len in [
        1u64 << 63,
        u64::MAX,
        u32::MAX as u64,
        FRAME_BYTES_MAX as u64 + 1,
    ] {
        let (result, largest) = largest_allocation_of(|| {
            let mut decoder = FrameDecoder::new();
            decoder.push(&header(FRAME_MAGIC, 1, FrameKind::Raft.code(), len, 0));
            let result = decoder.next_frame();
            // A caller that keeps reading must not make the decoder grow towards `len`.
            let spare = decoder.spare(4096).len();
            (result, spare)
        });
        assert_eq!(
            result.0,
            Err(FrameError::TooLarge {
                len,
                max: FRAME_BYTES_MAX
            })
        );
        assert!(result.1 < 1 << 20, "spare region of {} bytes", result.1);
        assert!(
            largest < 1 << 20,
            "allocated {largest} bytes for length {len}"
        );
    }
    // A smaller per-connection cap applies in the same way.
    let mut decoder = FrameDecoder::with_limits(1024, 256);
    decoder.push(&header(
        FRAME_MAGIC,
        1,
        FrameKind::ClientRequests.code(),
        1025,
        0,
    ));
    assert_eq!(
        decoder.next_frame(),
        Err(FrameError::TooLarge {
            len: 1025,
            max: 1024
        })
    );
    // At the cap, the decoder grows exactly once to hold the frame.
    let mut decoder = FrameDecoder::new();
    decoder.push(&header(
        FRAME_MAGIC,
        1,
        FrameKind::Raft.code(),
        FRAME_BYTES_MAX as u64,
        0,
    ));
    assert_eq!(decoder.next_frame(), Ok(None));
    let ((), largest) = largest_allocation_of(|| {
        decoder.spare(1);
    });
    assert!(largest <= frame_wire_len(FRAME_BYTES_MAX) + FRAME_ALIGN);
    assert!(decoder.capacity() >= frame_wire_len(FRAME_BYTES_MAX));
}

#[test]
fn each_header_fault_has_its_own_error() {
    let body = b"some body";
    let crc = crc32fast::hash(body);
    let frame = |h: Vec<u8>| {
        let mut stream = h;
        stream.extend_from_slice(body);
        stream.resize(frame_wire_len(body.len()), 0);
        let mut decoder = FrameDecoder::new();
        decoder.push(&stream);
        decoder.next_frame()
    };
    let kind = FrameKind::Raft.code();
    assert!(frame(header(FRAME_MAGIC, 1, kind, body.len() as u64, crc))
        .unwrap()
        .is_some());
    assert_eq!(
        frame(header(*b"GET ", 1, kind, body.len() as u64, crc)),
        Err(FrameError::BadMagic { found: *b"GET " })
    );
    assert_eq!(
        frame(header(FRAME_MAGIC, 2, kind, body.len() as u64, crc)),
        Err(FrameError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    );
    assert_eq!(
        frame(header(FRAME_MAGIC, 1, 99, body.len() as u64, crc)),
        Err(FrameError::UnknownKind(99))
    );
    assert!(matches!(
        frame(header(FRAME_MAGIC, 1, kind, body.len() as u64, crc ^ 1)),
        Err(FrameError::BodyChecksum { .. })
    ));
    let mut corrupt = header(FRAME_MAGIC, 1, kind, body.len() as u64, crc);
    corrupt[9] ^= 0x40; // a length bit, caught by the header checksum
    assert!(matches!(
        frame(corrupt),
        Err(FrameError::HeaderChecksum { .. })
    ));
    let mut reserved = header(FRAME_MAGIC, 1, kind, body.len() as u64, crc);
    reserved[21] = 1;
    let header_crc = crc32fast::hash(&reserved[..28]);
    reserved[28..].copy_from_slice(&header_crc.to_le_bytes());
    assert_eq!(frame(reserved), Err(FrameError::ReservedNotZero));
    // Non-zero padding.
    let mut stream = header(FRAME_MAGIC, 1, kind, body.len() as u64, crc);
    stream.extend_from_slice(body);
    stream.resize(frame_wire_len(body.len()), 0);
    *stream.last_mut().unwrap() = 1;
    let mut decoder = FrameDecoder::new();
    decoder.push(&stream);
    assert_eq!(decoder.next_frame(), Err(FrameError::PaddingNotZero));
    // Errors are sticky: the stream cannot be resynchronised.
    assert_eq!(decoder.next_frame(), Err(FrameError::PaddingNotZero));
}

#[test]
fn wrong_frame_kinds_are_refused_by_body_decoders() {
    let frame = Frame {
        kind: FrameKind::Hello,
        body: Bytes::new(),
    };
    assert_eq!(
        decode_raft_frame(&frame),
        Err(WireError::WrongKind(FrameKind::Hello))
    );
    assert!(matches!(
        decode_requests_frame(&frame),
        Err(ProtocolError::WrongKind { .. })
    ));
    assert!(matches!(
        HelloReply::decode(&frame),
        Err(HandshakeError::UnexpectedFrame { .. })
    ));
}

#[test]
fn batch_descriptors_pointing_astray_are_rejected() {
    let message = append_with(vec![batch(10, &[b"abc", b"de"]), batch(12, &[b"fgh"])]);
    let good = raft_body(&[(GroupId(1), NodeId(2), &message)]).to_vec();
    let offset_of = |body: &[u8], i: usize| {
        let at = DESCRIPTORS_AT + i * DESCRIPTOR_BYTES + 24;
        u32::from_le_bytes(body[at..at + 4].try_into().unwrap())
    };
    let first = offset_of(&good, 0);
    let second = offset_of(&good, 1);
    let tampered = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut body = good.clone();
        f(&mut body);
        decode_raft(&aligned(&body))
    };

    // Outside the body: offset past the end, length past the end, offset + length overflowing.
    let end = good.len() as u32;
    for (offset, len) in [
        (end, 16),
        (second, end),
        (u32::MAX - 15, 32),
        (u32::MAX, u32::MAX),
    ] {
        let result = tampered(&|b| {
            descriptor_field(b, 1, 24, &offset.to_le_bytes());
            descriptor_field(b, 1, 28, &len.to_le_bytes());
        });
        assert!(
            matches!(result, Err(WireError::BatchOutOfBounds { .. })),
            "{offset}+{len}: {result:?}"
        );
    }
    // Misaligned.
    let result = tampered(&|b| descriptor_field(b, 1, 24, &(second - 15).to_le_bytes()));
    assert!(matches!(result, Err(WireError::BatchMisaligned { .. })));
    // Overlapping the previous body, and pointing back into the metadata.
    let result = tampered(&|b| descriptor_field(b, 1, 24, &first.to_le_bytes()));
    assert!(matches!(result, Err(WireError::BatchOverlaps { .. })));
    let result = tampered(&|b| descriptor_field(b, 0, 24, &(RECORD_AT as u32).to_le_bytes()));
    assert!(matches!(result, Err(WireError::BatchOverlaps { .. })));
    // Leaving a gap.
    let result = tampered(&|b| descriptor_field(b, 1, 24, &(second + 16).to_le_bytes()));
    assert!(
        matches!(
            result,
            Err(WireError::BatchGap { .. }) | Err(WireError::BatchOutOfBounds { .. })
        ),
        "{result:?}"
    );
    // A body cut short, or extended over the next body: not a valid archive.
    let result = tampered(&|b| {
        let len = second - first;
        descriptor_field(b, 0, 28, &(len - 16).to_le_bytes());
    });
    assert!(matches!(result, Err(WireError::Batch { .. })), "{result:?}");
    // Window outside the archive, empty window, index overflow.
    let result = tampered(&|b| descriptor_field(b, 0, 16, &5u32.to_le_bytes()));
    assert!(matches!(result, Err(WireError::Batch { .. })), "{result:?}");
    let result = tampered(&|b| descriptor_field(b, 0, 20, &0u32.to_le_bytes()));
    assert!(matches!(result, Err(WireError::BatchRange { .. })));
    let result = tampered(&|b| descriptor_field(b, 0, 8, &u64::MAX.to_le_bytes()));
    assert!(matches!(result, Err(WireError::BatchRange { .. })));
    let result = tampered(&|b| descriptor_field(b, 0, 8, &0u64.to_le_bytes()));
    assert!(matches!(result, Err(WireError::BatchRange { .. })));
    // Counts larger than the body.
    let result = tampered(&|b| b[8..12].copy_from_slice(&u32::MAX.to_le_bytes()));
    assert!(matches!(result, Err(WireError::CountTooLarge { .. })));
    let result =
        tampered(&|b| b[RECORD_AT + 20..RECORD_AT + 24].copy_from_slice(&u32::MAX.to_le_bytes()));
    assert!(matches!(result, Err(WireError::CountTooLarge { .. })));
    // A batch body at an unaligned address (a body not delivered by the frame decoder).
    let mut shifted = AlignedVec::<FRAME_ALIGN>::new();
    shifted.push(0);
    shifted.extend_from_slice(&good);
    let unaligned = Bytes::from_owner(shifted).slice(1..);
    assert!(matches!(
        decode_raft(&unaligned),
        Err(WireError::Batch { .. })
    ));
    // Garbage archive bytes inside a well-placed body.
    let result = tampered(&|b| {
        let at = second as usize;
        b[at..at + 8].fill(0xff);
        let end = b.len();
        b[end - 8..].fill(0xff);
    });
    assert!(matches!(result, Err(WireError::Batch { .. })), "{result:?}");
    // Trailing bytes.
    let result = tampered(&|b| b.push(0));
    assert!(matches!(result, Err(WireError::TrailingBytes { .. })));
    // The untouched body still decodes.
    assert!(decode_raft(&aligned(&good)).is_ok());
}

#[test]
fn non_canonical_raft_records_are_rejected() {
    let vote = Message::VoteResponse {
        term: Term(1),
        pre_vote: false,
        granted: true,
    };
    let good = raft_body(&[(GroupId(1), NodeId(2), &vote)]).to_vec();
    let check = |at: usize, value: u8| {
        let mut body = good.clone();
        body[at] = value;
        decode_raft(&aligned(&body))
    };
    assert!(matches!(
        check(RECORD_AT + 16, 9),
        Err(WireError::UnknownTag { tag: 9, .. })
    ));
    assert!(matches!(
        check(RECORD_AT + 17, 0x80),
        Err(WireError::NotZero { .. })
    ));
    assert!(matches!(
        check(RECORD_AT + 18, 1),
        Err(WireError::NotZero { .. })
    ));
    assert!(matches!(
        check(RECORD_AT + 40, 1),
        Err(WireError::NotZero { .. })
    ));
    assert!(matches!(check(12, 1), Err(WireError::NotZero { .. })));
}

#[test]
fn client_caps_are_checked_before_slicing() {
    // A propose announcing a payload over the cap, in a small body.
    let mut body = Vec::new();
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&[0; 4]);
    body.push(1);
    body.extend_from_slice(&[0; 7]);
    body.extend_from_slice(&42u64.to_le_bytes());
    body.extend_from_slice(&3u64.to_le_bytes());
    body.extend_from_slice(&(CLIENT_PAYLOAD_BYTES_MAX as u32 + 1).to_le_bytes());
    body.extend_from_slice(&[0; 4]);
    assert_eq!(
        decode_requests(&Bytes::from(body.clone())),
        Err(ProtocolError::PayloadTooLarge {
            id: 42,
            bytes: CLIENT_PAYLOAD_BYTES_MAX as u64 + 1,
            max: CLIENT_PAYLOAD_BYTES_MAX
        })
    );
    // Within the cap but beyond the body: truncated.
    body[32..36].copy_from_slice(&100u32.to_le_bytes());
    assert!(matches!(
        decode_requests(&Bytes::from(body.clone())),
        Err(ProtocolError::Truncated { .. })
    ));
    // A count far beyond the body.
    body[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let (result, largest) = largest_allocation_of(|| decode_requests(&Bytes::from(body.clone())));
    assert!(matches!(result, Err(ProtocolError::CountTooLarge { .. })));
    assert!(largest < 4096);
    // Invalid UTF-8 in an error text.
    let mut out = Vec::new();
    encode_responses(
        &[ClientResponse::Error {
            id: 1,
            error: ClientError::Internal("ab".into()),
        }],
        &mut out,
    )
    .unwrap();
    let mut bytes = single_frame(&out).body.to_vec();
    let last = bytes.len() - 1;
    bytes[last] = 0xff;
    assert!(matches!(
        decode_responses(&Bytes::from(bytes)),
        Err(ProtocolError::InvalidUtf8 { .. })
    ));
}

#[test]
fn handshake_rejects_strangers_before_any_raft_frame() {
    let local = LocalIdentity {
        cluster_id: 7,
        node_id: NodeId(1),
        peers: vec![NodeId(2), NodeId(3)],
        shard_count: 4,
    };
    let peer = LocalIdentity {
        node_id: NodeId(2),
        ..local.clone()
    };
    let mut stream = Vec::new();
    peer.hello(ShardId(3)).encode(&mut stream);
    let hello = Hello::decode(&single_frame(&stream)).unwrap();
    assert_eq!(check_hello(&hello, &local), Ok(()));
    let stranger = Hello {
        cluster_id: 8,
        ..hello
    };
    let error = check_hello(&stranger, &local).unwrap_err();
    assert_eq!(
        error.to_string(),
        "peer belongs to cluster 0x8, this node to cluster 0x7"
    );
    // A Raft frame where a hello is expected is refused.
    let mut stream = Vec::new();
    encode_raft(NodeId(2), &[], &mut stream).unwrap();
    assert!(matches!(
        Hello::decode(&single_frame(&stream)),
        Err(HandshakeError::UnexpectedFrame { .. })
    ));
}

/// Terms and indexes beyond the documented limits are refused, so `term + 1` and
/// `index + count` can never overflow on input from a peer.
#[test]
fn terms_and_indexes_beyond_the_limits_are_refused() {
    use ringraft::constants::{INDEX_MAX, TERM_MAX};
    let decode = |message: &Message| {
        let mut out = Vec::new();
        encode_raft(NodeId(1), &[(GroupId(0), NodeId(2), message)], &mut out).unwrap();
        let mut decoder = FrameDecoder::new();
        decoder.push(&out);
        let frame = decoder.next_frame().unwrap().unwrap();
        decode_raft_frame(&frame)
    };
    let at_limit = Message::VoteRequest {
        term: Term(TERM_MAX),
        last_index: LogIndex(INDEX_MAX),
        last_term: Term(TERM_MAX),
        pre_vote: false,
        transfer: false,
    };
    assert!(decode(&at_limit).is_ok());
    for message in [
        Message::TimeoutNow {
            term: Term(TERM_MAX + 1),
        },
        Message::AppendResponse {
            term: Term(1),
            outcome: AppendOutcome::Accepted {
                match_index: LogIndex(u64::MAX),
                read_round: 0,
            },
        },
    ] {
        assert!(
            matches!(decode(&message), Err(WireError::BeyondLimits { .. })),
            "{message:?}"
        );
    }
}

proptest! {
    #![proptest_config(config())]

    /// Member address lists (configuration contexts) round-trip, and any damage to an encoding
    /// is an error or decodes to a list that encodes back to the damaged bytes (canonical).
    #[test]
    fn member_lists_round_trip_canonically(
        members in arb_members(),
        mutations in arb_mutations(),
    ) {
        let bytes = encode_members(&members);
        prop_assert_eq!(decode_members(&bytes).unwrap(), members);
        let mut damaged = bytes.clone();
        for mutation in &mutations {
            match mutation {
                Mutation::Flip { at, bit } if !damaged.is_empty() => {
                    let at = at.index(damaged.len());
                    damaged[at] ^= 1 << (bit % 8);
                }
                Mutation::Set { at, value } if !damaged.is_empty() => {
                    let at = at.index(damaged.len());
                    damaged[at] = *value;
                }
                Mutation::Truncate { at } => {
                    let at = at.index(damaged.len() + 1);
                    damaged.truncate(at);
                }
                Mutation::Append { bytes } => damaged.extend_from_slice(bytes),
                _ => {}
            }
        }
        if let Ok(decoded) = decode_members(&damaged) {
            if !damaged.is_empty() {
                prop_assert_eq!(encode_members(&decoded), damaged);
            }
        }
    }
}

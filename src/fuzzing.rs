//! Entry points for fuzzing the decoders of everything that arrives from the network or the
//! disk. Each takes arbitrary bytes and must neither panic nor allocate beyond the caps; where
//! an encoding is canonical it also checks that what decodes re-encodes to the same bytes.
//! [`core_messages`] goes one layer up: it feeds the consensus core messages no correct peer
//! would send, which it must drop without a panic and with its invariants intact.
//!
//! The libFuzzer targets in `fuzz/` call these, and `tests/fuzz_corpus.rs` replays the
//! committed seed corpus through them on the stable toolchain, so CI covers every target.

use bytes::Bytes;

use crate::batch::{BatchKind, EntryBatch};
use crate::constants::{INDEX_MAX, TERM_MAX};
use crate::core::{
    AppendOutcome, AppendRequest, Config, Input, Membership, Message, Raft, Recovered, RejectHint,
    Role, SnapshotMeta,
};
use crate::log::hard_state::decode_slot;
use crate::log::segment::{SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::net::client_wire::{decode_requests, decode_responses};
use crate::net::snapshot_wire::{SnapshotAck, SnapshotChunk};
use crate::net::wire::{decode_raft, encode_raft};
use crate::net::{FrameDecoder, FrameKind};
use crate::types::{HardState, LogIndex, NodeId, ShardId, Term};

/// Feeds `data` to a frame decoder in chunks whose sizes come from the data's first byte, and
/// decodes every complete frame by its kind.
pub fn frames(data: &[u8]) {
    let Some((&chunking, stream)) = data.split_first() else {
        return;
    };
    let chunk = 1 + chunking as usize * 7;
    let mut decoder = FrameDecoder::new();
    for piece in stream.chunks(chunk) {
        let spare = decoder.spare(piece.len());
        spare[..piece.len()].copy_from_slice(piece);
        decoder.filled(piece.len());
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => match frame.kind {
                    FrameKind::Raft => raft_body(&frame.body),
                    FrameKind::SnapshotChunk => snapshot_body(true, &frame.body),
                    FrameKind::SnapshotAck => snapshot_body(false, &frame.body),
                    FrameKind::ClientRequests | FrameKind::ClientResponses => {
                        client_body(&frame.body)
                    }
                    _ => {}
                },
                Ok(None) => break,
                // A stream with a bad frame is closed by the node: nothing more to read.
                Err(_) => return,
            }
        }
    }
}

/// Decodes a Raft frame body; a body that decodes must re-encode to the same bytes.
pub fn raft_body(body: &[u8]) {
    let body = Bytes::copy_from_slice(body);
    let Ok(decoded) = decode_raft(&body) else {
        return;
    };
    let messages: Vec<_> = decoded
        .messages
        .iter()
        .map(|envelope| (envelope.group, envelope.to, &envelope.message))
        .collect();
    let mut out = Vec::new();
    encode_raft(decoded.from, &messages, &mut out).expect("a decoded frame re-encodes");
    let mut decoder = FrameDecoder::new();
    let spare = decoder.spare(out.len());
    spare[..out.len()].copy_from_slice(&out);
    decoder.filled(out.len());
    let frame = decoder
        .next_frame()
        .expect("re-encoded frame is valid")
        .expect("re-encoded frame is complete");
    assert_eq!(&frame.body[..], &body[..], "Raft encoding is not canonical");
}

/// Decodes a snapshot chunk (`chunk`) or acknowledgement body; one that decodes must
/// re-encode to the same bytes.
pub fn snapshot_body(chunk: bool, body: &[u8]) {
    let body = Bytes::copy_from_slice(body);
    let mut out = Vec::new();
    if chunk {
        let Ok(decoded) = SnapshotChunk::decode(&body) else {
            return;
        };
        decoded
            .encode(&mut out)
            .expect("a decoded chunk re-encodes");
    } else {
        let Ok(decoded) = SnapshotAck::decode(&body) else {
            return;
        };
        decoded.encode(&mut out).expect("a decoded ack re-encodes");
    }
    let mut decoder = FrameDecoder::new();
    decoder.push(&out);
    let frame = decoder
        .next_frame()
        .expect("re-encoded frame is valid")
        .expect("re-encoded frame is complete");
    assert_eq!(
        &frame.body[..],
        &body[..],
        "snapshot encoding is not canonical"
    );
}

/// Decodes a client frame body both as requests and as responses.
pub fn client_body(body: &[u8]) {
    let body = Bytes::copy_from_slice(body);
    let _ = decode_requests(&body);
    let _ = decode_responses(&body);
}

/// Scans a segment whose records are `data`: a valid segment header is put in front (so the
/// fuzzer spends its time on records, not on the header's checksum), of a recycled segment
/// when the first byte is odd (bytes of earlier lives may follow its end).
pub fn segment_records(data: &[u8]) {
    let size = SEGMENT_HEADER_BYTES as usize + data.len();
    let header = SegmentHeader {
        cluster_id: 1,
        shard: ShardId(0),
        sequence: 1,
        size: size as u64,
        recycled: data.first().is_some_and(|b| b & 1 == 1),
    };
    let mut image = Vec::with_capacity(size);
    image.extend_from_slice(&header.encode());
    image.extend_from_slice(data);
    let _ = crate::log::scan::scan_segment(&image);
}

/// Decodes a hard-state slot.
pub fn hard_state_slot(data: &[u8]) {
    let _ = decode_slot(data, None);
    let _ = decode_slot(data, Some((1, ShardId(0))));
}

/// Most inputs one [`core_messages`] run steps, whatever the data's length.
const CORE_STEPS_MAX: usize = 256;

/// Drives one core of a three-node group (node 1, a log of terms `1 1 2 2`, two entries
/// committed) into the role the data's first byte picks (follower, pre-candidate, candidate
/// or leader), then steps it with ticks, durability reports and messages from members decoded
/// from the rest of the data. The core checks its invariants after every step (and panics if
/// one breaks); no input may panic it.
pub fn core_messages(data: &[u8]) {
    let mut input = FuzzBytes(data);
    let mut core = core_in_role(input.byte());
    let mut out = Vec::new();
    for _ in 0..CORE_STEPS_MAX {
        let Some(op) = input.next() else {
            break;
        };
        let step = match op % 8 {
            0 => Input::Tick,
            1 => Input::Persisted {
                index: core.last_index(),
                term: core.last_term(),
            },
            _ => {
                // Mostly the two other members; now and then the node itself or a stranger.
                let from = NodeId(match input.byte() % 8 {
                    0 => 1,
                    1 => 4,
                    pick => 2 + u64::from(pick % 2),
                });
                let message = input.message(&core);
                Input::Message { from, message }
            }
        };
        out.clear();
        core.step(step, &mut out);
        if let Err(problem) = core.invariants() {
            panic!("invariant broken by peer input: {problem}");
        }
    }
}

/// Node 1 in the role `pick` names, reached by ticks and grants from node 2.
fn core_in_role(pick: u8) -> Raft {
    let wanted = match pick % 4 {
        0 => Role::Follower,
        1 => Role::PreCandidate,
        2 => Role::Candidate,
        _ => Role::Leader,
    };
    let mut config = Config::new(NodeId(1), vec![NodeId(1), NodeId(2), NodeId(3)]);
    config.check_expensive_invariants = true;
    config.quiet_start = false;
    config.pre_vote = wanted == Role::PreCandidate || pick & 4 == 0;
    let batches = [(1, 1), (1, 2), (2, 3), (2, 4)]
        .map(|(term, index)| {
            EntryBatch::encode(BatchKind::Command, Term(term), LogIndex(index), [&b"x"[..]])
        })
        .to_vec();
    let recovered = Recovered {
        hard_state: HardState {
            term: Term(2),
            vote: None,
            commit: LogIndex(2),
        },
        batches,
        ..Recovered::default()
    };
    let mut core = Raft::new(config, recovered);
    let mut out = Vec::new();
    while core.role() == Role::Follower && wanted != Role::Follower {
        core.step(Input::Tick, &mut out);
    }
    while core.role() != wanted && core.role() != Role::Leader {
        let pre_vote = core.role() == Role::PreCandidate;
        let term = if pre_vote {
            core.term().next()
        } else {
            core.term()
        };
        let grant = Message::VoteResponse {
            term,
            pre_vote,
            granted: true,
        };
        core.step(
            Input::Message {
                from: NodeId(2),
                message: grant,
            },
            &mut out,
        );
    }
    core
}

/// The fuzz data, read a byte at a time; once it runs out every read is zero.
struct FuzzBytes<'a>(&'a [u8]);

impl FuzzBytes<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |value, _| value << 8 | u64::from(self.byte()))
    }

    fn flag(&mut self) -> bool {
        self.byte() % 2 == 1
    }

    /// A value within a few of `around` most of the time, else one at or just beyond `cap`,
    /// the largest `u64`, or any value.
    fn near(&mut self, around: u64, cap: u64) -> u64 {
        let pick = self.byte();
        match pick % 16 {
            0 => cap,
            1 => cap.saturating_add(1),
            2 => u64::MAX,
            3 => self.u64(),
            _ => around
                .saturating_add(u64::from(pick / 16))
                .saturating_sub(4),
        }
    }

    fn term(&mut self, core: &Raft) -> Term {
        Term(self.near(core.term().0, TERM_MAX))
    }

    fn index(&mut self, core: &Raft) -> LogIndex {
        LogIndex(self.near(core.last_index().0, INDEX_MAX))
    }

    fn message(&mut self, core: &Raft) -> Message {
        let term = self.term(core);
        match self.byte() % 6 {
            0 => Message::VoteRequest {
                term,
                last_index: self.index(core),
                last_term: self.term(core),
                pre_vote: self.flag(),
                transfer: self.flag(),
            },
            1 => Message::VoteResponse {
                term,
                pre_vote: self.flag(),
                granted: self.flag(),
            },
            2 => Message::Append(self.append(core, term)),
            3 => Message::AppendResponse {
                term,
                outcome: if self.flag() {
                    AppendOutcome::Accepted {
                        match_index: self.index(core),
                        read_round: self.near(core.read_round(), u64::MAX),
                    }
                } else {
                    AppendOutcome::Rejected {
                        prev_index: self.index(core),
                        hint: RejectHint {
                            last_index: self.index(core),
                            conflict: self.flag().then(|| (self.term(core), self.index(core))),
                        },
                    }
                },
            },
            4 => Message::TimeoutNow { term },
            _ => Message::InstallSnapshot {
                term,
                snapshot: SnapshotMeta {
                    index: self.index(core),
                    term: self.term(core),
                    membership: self.membership(core),
                    context: Bytes::new(),
                },
            },
        }
    }

    fn append(&mut self, core: &Raft, term: Term) -> AppendRequest {
        let prev_index = self.index(core);
        let mut request = AppendRequest {
            term,
            prev_index,
            prev_term: self.term(core),
            commit: self.index(core),
            read_round: self.near(0, u64::MAX),
            batches: Vec::new(),
        };
        // Batches follow `prev_index` unless the data asks for a gap; a batch cannot describe
        // indexes past `u64::MAX`, so none is made that would.
        let mut first = prev_index.0.saturating_add(1);
        for _ in 0..self.byte() % 4 {
            if self.byte() % 8 == 0 {
                first = self.index(core).0;
            }
            let count = 1 + u64::from(self.byte() % 3);
            if first.checked_add(count).is_none() {
                break;
            }
            let payload = if self.byte() % 8 == 0 {
                Some(self.membership(core).encode(b""))
            } else {
                None
            };
            let kind = match payload {
                Some(_) => BatchKind::Config,
                None => BatchKind::Command,
            };
            let payload = payload.unwrap_or_else(|| b"y".to_vec());
            let batch_term = self.term(core);
            request.batches.push(EntryBatch::encode(
                kind,
                batch_term,
                LogIndex(first),
                vec![&payload[..]; count as usize],
            ));
            first += count;
        }
        request
    }

    fn membership(&mut self, core: &Raft) -> Membership {
        match self.byte() % 4 {
            0 => Membership::default(),
            1 => Membership::with_voters([NodeId(1), NodeId(2)]),
            2 => Membership::with_voters((1..=4).map(NodeId)),
            _ => core.membership().clone(),
        }
    }
}

//! Raft traffic inside a [`FrameKind::Raft`] frame: messages of any number of groups, sent by
//! one node.
//!
//! # Body layout (explicit little-endian, offsets relative to the frame body)
//!
//! ```text
//! frame header (16 B): from: u64 | message_count: u32 | reserved: u32 (0)
//! message_count × {
//!   record (64 B): group: u64 | to: u64 | tag: u8 | flags: u8 | reserved: u16 (0)
//!                  | batch_count: u32 | f0..f4: 5 × u64
//!   batch_count × descriptor (32 B): term: u64 | first_index: u64 | skip: u32 | count: u32
//!                                   | offset: u32 | len: u32
//!   the batch bodies: body i at `offset_i` (16-byte aligned), `len_i` bytes, zero padding
//!   between bodies; the next record starts right after the last body (or the descriptors)
//! }
//! ```
//!
//! | tag | message | flags | f0 | f1 | f2 | f3 | f4 |
//! |----:|---------|-------|----|----|----|----|----|
//! | 1 | VoteRequest | bit0 pre_vote, bit1 transfer | term | last_index | last_term | 0 | 0 |
//! | 2 | VoteResponse | bit0 pre_vote, bit1 granted | term | 0 | 0 | 0 | 0 |
//! | 3 | Append | 0 | term | prev_index | prev_term | commit | read_round |
//! | 4 | AppendResponse, accepted | 0 | term | match_index | read_round | 0 | 0 |
//! | 4 | AppendResponse, rejected | bit0 rejected, bit1 has conflict | term | prev_index | hint last_index | conflict term | conflict index |
//! | 5 | TimeoutNow | 0 | term | 0 | 0 | 0 | 0 |
//! | 6 | InstallSnapshot | 0 | term | index | last term | 0 | 0 |
//!
//! InstallSnapshot carries exactly one batch: the snapshot's configuration as a one-entry
//! configuration batch at the snapshot's index and term (see `core::membership` for its
//! payload). The snapshot's data does not travel in Raft frames.
//!
//! # Invariants
//!
//! - The encoding is canonical: unused fields, flag bits, reserved bytes and padding are zero,
//!   and the decoder rejects anything else, so decode(encode(x)) == x and a body that decodes
//!   re-encodes to the same bytes.
//! - Every count and length read from the wire is checked against the bytes that remain before
//!   it is used (so a count cannot make the decoder allocate more than the frame's size).
//! - Batch bodies are 16-byte aligned, lie inside the frame body, come in increasing order and
//!   do not overlap each other or the metadata; each starts at the first aligned offset after
//!   what precedes it (no gaps; the padding is zero). The decoder hands them out as zero-copy slices
//!   of the frame body to [`EntryBatch::from_body`], which validates each archive once. A batch
//!   must also have `first_index >= 1` and its last index must not overflow.
//! - The whole body is consumed: trailing bytes are an error.
//!
//! Decoding never panics on any input; the property tests in `tests/net_codec.rs` check that.

use bytes::Bytes;

use crate::batch::{BatchError, BatchKind, EntryBatch};
use crate::constants::{
    FRAME_ALIGN, FRAME_BYTES_MAX, INDEX_MAX, TERM_MAX, WIRE_BATCH_OVERHEAD_BYTES,
    WIRE_FRAME_OVERHEAD_BYTES, WIRE_MESSAGE_OVERHEAD_BYTES,
};
use crate::core::membership::Membership;
use crate::core::message::{AppendOutcome, AppendRequest, Message, RejectHint, SnapshotMeta};
use crate::net::codec::{patch_u32, put_u32, put_u64, put_u8, put_zeros, Reader, Truncated};
use crate::net::frame::{align_up, begin_frame, Frame, FrameBuilder, FrameError, FrameKind};
use crate::types::{GroupId, LogIndex, NodeId, Term};

const RECORD_BYTES: usize = WIRE_MESSAGE_OVERHEAD_BYTES;
const DESCRIPTOR_BYTES: usize = 32;

const _: () = {
    assert!(WIRE_FRAME_OVERHEAD_BYTES == 16);
    assert!(WIRE_BATCH_OVERHEAD_BYTES == DESCRIPTOR_BYTES + FRAME_ALIGN - 1);
};

const TAG_VOTE_REQUEST: u8 = 1;
const TAG_VOTE_RESPONSE: u8 = 2;
const TAG_APPEND: u8 = 3;
const TAG_APPEND_RESPONSE: u8 = 4;
const TAG_TIMEOUT_NOW: u8 = 5;
const TAG_INSTALL_SNAPSHOT: u8 = 6;

const FLAG_PRE_VOTE: u8 = 1;
const FLAG_TRANSFER: u8 = 2;
const FLAG_GRANTED: u8 = 2;
const FLAG_REJECTED: u8 = 1;
const FLAG_CONFLICT: u8 = 2;

/// Why a Raft frame body could not be decoded (or a frame not encoded). Any decoding error means
/// the peer is broken or hostile: close the connection; no message of the frame was delivered.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of kind {0:?} where a Raft frame was expected")]
    WrongKind(FrameKind),
    #[error("Raft frame truncated: {need} bytes needed at offset {at} of a {len}-byte body")]
    Truncated { at: usize, need: usize, len: usize },
    #[error("{count} {what} announced at offset {at}, but only {room} bytes remain")]
    CountTooLarge {
        what: &'static str,
        count: u32,
        at: usize,
        room: usize,
    },
    #[error("InstallSnapshot at offset {at} does not carry one valid configuration entry at its index and term")]
    BadSnapshotConfig { at: usize },
    #[error("unknown Raft message tag {tag} at offset {at}")]
    UnknownTag { tag: u8, at: usize },
    #[error("non-canonical Raft message at offset {at}: {what} must be zero")]
    NotZero { what: &'static str, at: usize },
    #[error("batch body {offset}+{len} lies outside the {body_len}-byte frame body")]
    BatchOutOfBounds {
        offset: u32,
        len: u32,
        body_len: usize,
    },
    #[error("batch body offset {offset} is not {FRAME_ALIGN}-byte aligned")]
    BatchMisaligned { offset: u32 },
    #[error("batch body offset {offset} overlaps data that ends at {end}")]
    BatchOverlaps { offset: u32, end: usize },
    #[error("batch body offset {offset} leaves a gap: the next aligned offset is {expected}")]
    BatchGap { offset: u32, expected: usize },
    #[error("batch of {count} entries from index {first_index} is not a valid index range")]
    BatchRange { first_index: u64, count: u32 },
    #[error("batch body at offset {offset}: {source}")]
    Batch { offset: u32, source: BatchError },
    #[error(
        "Raft message at offset {at} carries a term above {TERM_MAX} or an index above {INDEX_MAX}"
    )]
    BeyondLimits { at: usize },
    #[error("{trailing} trailing bytes after the last Raft message")]
    TrailingBytes { trailing: usize },
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl From<Truncated> for WireError {
    fn from(t: Truncated) -> Self {
        WireError::Truncated {
            at: t.at,
            need: t.need,
            len: t.len,
        }
    }
}

/// One message with its routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub group: GroupId,
    /// The destination node (receivers may check that it is themselves).
    pub to: NodeId,
    pub message: Message,
}

/// A decoded Raft frame: messages from `from`, in the order they were written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftFrame {
    pub from: NodeId,
    pub messages: Vec<Envelope>,
}

/// Upper bound of the body bytes [`RaftFrameWriter::push`] adds for `message` (to decide when
/// to start a new frame).
pub fn message_wire_bytes(message: &Message) -> usize {
    let config_batch = snapshot_config_batch(message);
    let batches = match message {
        Message::Append(request) => &request.batches[..],
        _ => config_batch.as_slice(),
    };
    RECORD_BYTES
        + batches
            .iter()
            .map(|batch| WIRE_BATCH_OVERHEAD_BYTES + batch.encoded_len())
            .sum::<usize>()
}

/// For InstallSnapshot, its configuration as the one batch it carries on the wire.
fn snapshot_config_batch(message: &Message) -> Option<EntryBatch> {
    let Message::InstallSnapshot { snapshot, .. } = message else {
        return None;
    };
    let payload = snapshot.membership.encode(&snapshot.context);
    Some(EntryBatch::encode(
        BatchKind::Config,
        snapshot.term,
        snapshot.index,
        [&payload[..]],
    ))
}

/// Writes Raft messages of one sender into one frame at the end of an output buffer.
#[derive(Debug)]
pub struct RaftFrameWriter<'a> {
    out: &'a mut Vec<u8>,
    frame: FrameBuilder,
    count: u32,
}

impl<'a> RaftFrameWriter<'a> {
    /// Starts a Raft frame from node `from` at the end of `out`.
    pub fn begin(out: &'a mut Vec<u8>, from: NodeId) -> RaftFrameWriter<'a> {
        let frame = begin_frame(out, FrameKind::Raft);
        put_u64(out, from.0);
        put_u32(out, 0); // message count, patched by `finish`
        put_u32(out, 0);
        RaftFrameWriter {
            out,
            frame,
            count: 0,
        }
    }

    /// Messages written so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Body bytes written so far.
    pub fn body_len(&self) -> usize {
        self.frame.body_len(self.out)
    }

    /// Whether `message` still fits in this frame under [`FRAME_BYTES_MAX`].
    pub fn fits(&self, message: &Message) -> bool {
        self.body_len() + message_wire_bytes(message) <= FRAME_BYTES_MAX
    }

    /// Appends one message for `group` to node `to`.
    pub fn push(&mut self, group: GroupId, to: NodeId, message: &Message) {
        let out = &mut *self.out;
        put_u64(out, group.0);
        put_u64(out, to.0);
        let config_batch = snapshot_config_batch(message);
        let (tag, flags, fields, batches): (u8, u8, [u64; 5], &[EntryBatch]) = match message {
            Message::VoteRequest {
                term,
                last_index,
                last_term,
                pre_vote,
                transfer,
            } => (
                TAG_VOTE_REQUEST,
                flag(*pre_vote, FLAG_PRE_VOTE) | flag(*transfer, FLAG_TRANSFER),
                [term.0, last_index.0, last_term.0, 0, 0],
                &[],
            ),
            Message::VoteResponse {
                term,
                pre_vote,
                granted,
            } => (
                TAG_VOTE_RESPONSE,
                flag(*pre_vote, FLAG_PRE_VOTE) | flag(*granted, FLAG_GRANTED),
                [term.0, 0, 0, 0, 0],
                &[],
            ),
            Message::Append(request) => (
                TAG_APPEND,
                0,
                [
                    request.term.0,
                    request.prev_index.0,
                    request.prev_term.0,
                    request.commit.0,
                    request.read_round,
                ],
                &request.batches[..],
            ),
            Message::AppendResponse { term, outcome } => match outcome {
                AppendOutcome::Accepted {
                    match_index,
                    read_round,
                } => (
                    TAG_APPEND_RESPONSE,
                    0,
                    [term.0, match_index.0, *read_round, 0, 0],
                    &[],
                ),
                AppendOutcome::Rejected { prev_index, hint } => {
                    let (flags, conflict_term, conflict_index) = match hint.conflict {
                        Some((t, i)) => (FLAG_REJECTED | FLAG_CONFLICT, t.0, i.0),
                        None => (FLAG_REJECTED, 0, 0),
                    };
                    (
                        TAG_APPEND_RESPONSE,
                        flags,
                        [
                            term.0,
                            prev_index.0,
                            hint.last_index.0,
                            conflict_term,
                            conflict_index,
                        ],
                        &[],
                    )
                }
            },
            Message::TimeoutNow { term } => (TAG_TIMEOUT_NOW, 0, [term.0, 0, 0, 0, 0], &[]),
            Message::InstallSnapshot { term, snapshot } => (
                TAG_INSTALL_SNAPSHOT,
                0,
                [term.0, snapshot.index.0, snapshot.term.0, 0, 0],
                config_batch.as_slice(),
            ),
        };
        put_u8(out, tag);
        put_u8(out, flags);
        put_zeros(out, 2);
        put_u32(
            out,
            u32::try_from(batches.len()).expect("batch count fits u32"),
        );
        for field in fields {
            put_u64(out, field);
        }
        // Descriptors first, with the offsets the bodies will get right after them.
        let body_start = self.frame.body_start();
        let mut next = align_up(out.len() - body_start + batches.len() * DESCRIPTOR_BYTES);
        for batch in batches {
            put_u64(out, batch.term().0);
            put_u64(out, batch.first_index().0);
            put_u32(out, batch.skip());
            put_u32(out, batch.len() as u32);
            put_u32(out, wire_u32(next));
            put_u32(out, wire_u32(batch.encoded_len()));
            next = align_up(next + batch.encoded_len());
        }
        for batch in batches {
            self.frame.align_body(out);
            out.extend_from_slice(batch.body());
        }
        self.count += 1;
    }

    /// Completes the frame; returns its wire length. A frame over [`FRAME_BYTES_MAX`] is an
    /// error and is then removed from the output buffer.
    pub fn finish(self) -> Result<usize, WireError> {
        patch_u32(self.out, self.frame.body_start() + 8, self.count);
        Ok(self.frame.finish(self.out)?)
    }

    /// Removes the partly written frame from the output buffer.
    pub fn abandon(self) {
        self.frame.abandon(self.out);
    }
}

fn flag(set: bool, bit: u8) -> u8 {
    if set {
        bit
    } else {
        0
    }
}

/// Offsets and lengths inside a frame are u32; past that the frame is over the cap anyway and
/// `finish` rejects it, so saturating here only keeps the doomed encoding well-formed.
fn wire_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Appends one Raft frame from `from` carrying `messages` (group, destination, message) to `out`;
/// returns its wire length. Fails (leaving `out` as it was) if the frame would exceed
/// [`FRAME_BYTES_MAX`].
pub fn encode_raft(
    from: NodeId,
    messages: &[(GroupId, NodeId, &Message)],
    out: &mut Vec<u8>,
) -> Result<usize, WireError> {
    let mut writer = RaftFrameWriter::begin(out, from);
    for &(group, to, message) in messages {
        if !writer.fits(message) {
            let len = writer.body_len() + message_wire_bytes(message);
            writer.abandon();
            return Err(FrameError::TooLarge {
                len: len as u64,
                max: FRAME_BYTES_MAX,
            }
            .into());
        }
        writer.push(group, to, message);
    }
    writer.finish()
}

/// Decodes a frame that must be of kind [`FrameKind::Raft`].
pub fn decode_raft_frame(frame: &Frame) -> Result<RaftFrame, WireError> {
    if frame.kind != FrameKind::Raft {
        return Err(WireError::WrongKind(frame.kind));
    }
    decode_raft(&frame.body)
}

/// Decodes the body of a Raft frame. Batch bodies are zero-copy slices of `body`, which must be
/// 16-byte aligned in memory (as [`crate::net::frame::FrameDecoder`] guarantees) for batches to
/// validate.
pub fn decode_raft(body: &Bytes) -> Result<RaftFrame, WireError> {
    let mut reader = Reader::new(body);
    let from = NodeId(reader.u64()?);
    let count_at = reader.pos();
    let count = reader.u32()?;
    if !reader.zeros(4)? {
        return Err(WireError::NotZero {
            what: "frame reserved bytes",
            at: count_at + 4,
        });
    }
    check_count("messages", count, RECORD_BYTES, &reader)?;
    let mut messages = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let at = reader.pos();
        let envelope = decode_message(body, &mut reader)?;
        if !within_limits(&envelope.message) {
            return Err(WireError::BeyondLimits { at });
        }
        messages.push(envelope);
    }
    if reader.remaining() != 0 {
        return Err(WireError::TrailingBytes {
            trailing: reader.remaining(),
        });
    }
    Ok(RaftFrame { from, messages })
}

/// Whether every term of `message` is at most [`TERM_MAX`] and every index at most
/// [`INDEX_MAX`].
fn within_limits(message: &Message) -> bool {
    let term_ok = |term: Term| term.0 <= TERM_MAX;
    let index_ok = |index: LogIndex| index.0 <= INDEX_MAX;
    match message {
        Message::VoteRequest {
            term,
            last_index,
            last_term,
            ..
        } => term_ok(*term) && index_ok(*last_index) && term_ok(*last_term),
        Message::VoteResponse { term, .. } | Message::TimeoutNow { term } => term_ok(*term),
        Message::InstallSnapshot { term, snapshot } => {
            term_ok(*term) && index_ok(snapshot.index) && term_ok(snapshot.term)
        }
        Message::Append(request) => {
            term_ok(request.term)
                && index_ok(request.prev_index)
                && term_ok(request.prev_term)
                && index_ok(request.commit)
                && request
                    .batches
                    .iter()
                    .all(|batch| term_ok(batch.term()) && index_ok(batch.last_index()))
        }
        Message::AppendResponse { term, outcome } => {
            term_ok(*term)
                && match outcome {
                    AppendOutcome::Accepted { match_index, .. } => index_ok(*match_index),
                    AppendOutcome::Rejected { prev_index, hint } => {
                        index_ok(*prev_index)
                            && index_ok(hint.last_index)
                            && hint
                                .conflict
                                .is_none_or(|(term, first)| term_ok(term) && index_ok(first))
                    }
                }
        }
    }
}

fn check_count(
    what: &'static str,
    count: u32,
    item_bytes: usize,
    reader: &Reader<'_>,
) -> Result<(), WireError> {
    if (count as usize).saturating_mul(item_bytes) > reader.remaining() {
        return Err(WireError::CountTooLarge {
            what,
            count,
            at: reader.pos(),
            room: reader.remaining(),
        });
    }
    Ok(())
}

fn decode_message(body: &Bytes, reader: &mut Reader<'_>) -> Result<Envelope, WireError> {
    let at = reader.pos();
    let group = GroupId(reader.u64()?);
    let to = NodeId(reader.u64()?);
    let tag = reader.u8()?;
    let flags = reader.u8()?;
    if !reader.zeros(2)? {
        return Err(WireError::NotZero {
            what: "record reserved bytes",
            at,
        });
    }
    let batch_count = reader.u32()?;
    let mut f = [0u64; 5];
    for field in &mut f {
        *field = reader.u64()?;
    }
    let require = |ok: bool, what: &'static str| -> Result<(), WireError> {
        if ok {
            Ok(())
        } else {
            Err(WireError::NotZero { what, at })
        }
    };
    if !(TAG_VOTE_REQUEST..=TAG_INSTALL_SNAPSHOT).contains(&tag) {
        return Err(WireError::UnknownTag { tag, at: at + 16 });
    }
    if tag == TAG_INSTALL_SNAPSHOT {
        require(
            batch_count == 1,
            "batch count of InstallSnapshot other than one",
        )?;
    } else if tag != TAG_APPEND {
        require(
            batch_count == 0,
            "batch count of a message other than Append",
        )?;
    }
    let message = match tag {
        TAG_VOTE_REQUEST => {
            require(
                flags & !(FLAG_PRE_VOTE | FLAG_TRANSFER) == 0,
                "unknown flags",
            )?;
            require(f[3] == 0 && f[4] == 0, "unused fields")?;
            Message::VoteRequest {
                term: Term(f[0]),
                last_index: LogIndex(f[1]),
                last_term: Term(f[2]),
                pre_vote: flags & FLAG_PRE_VOTE != 0,
                transfer: flags & FLAG_TRANSFER != 0,
            }
        }
        TAG_VOTE_RESPONSE => {
            require(
                flags & !(FLAG_PRE_VOTE | FLAG_GRANTED) == 0,
                "unknown flags",
            )?;
            require(f[1..].iter().all(|&x| x == 0), "unused fields")?;
            Message::VoteResponse {
                term: Term(f[0]),
                pre_vote: flags & FLAG_PRE_VOTE != 0,
                granted: flags & FLAG_GRANTED != 0,
            }
        }
        TAG_APPEND => {
            require(flags == 0, "flags")?;
            let batches = decode_batches(body, reader, batch_count)?;
            Message::Append(AppendRequest {
                term: Term(f[0]),
                prev_index: LogIndex(f[1]),
                prev_term: Term(f[2]),
                commit: LogIndex(f[3]),
                read_round: f[4],
                batches,
            })
        }
        TAG_APPEND_RESPONSE => {
            require(
                flags & !(FLAG_REJECTED | FLAG_CONFLICT) == 0,
                "unknown flags",
            )?;
            let outcome = if flags & FLAG_REJECTED == 0 {
                require(flags == 0, "conflict flag of an accepted response")?;
                require(f[3..].iter().all(|&x| x == 0), "unused fields")?;
                AppendOutcome::Accepted {
                    match_index: LogIndex(f[1]),
                    read_round: f[2],
                }
            } else {
                let conflict = if flags & FLAG_CONFLICT != 0 {
                    Some((Term(f[3]), LogIndex(f[4])))
                } else {
                    require(f[3] == 0 && f[4] == 0, "conflict fields without conflict")?;
                    None
                };
                AppendOutcome::Rejected {
                    prev_index: LogIndex(f[1]),
                    hint: RejectHint {
                        last_index: LogIndex(f[2]),
                        conflict,
                    },
                }
            };
            Message::AppendResponse {
                term: Term(f[0]),
                outcome,
            }
        }
        TAG_TIMEOUT_NOW => {
            require(flags == 0, "flags")?;
            require(f[1..].iter().all(|&x| x == 0), "unused fields")?;
            Message::TimeoutNow { term: Term(f[0]) }
        }
        TAG_INSTALL_SNAPSHOT => {
            require(flags == 0, "flags")?;
            require(f[3] == 0 && f[4] == 0, "unused fields")?;
            let batches = decode_batches(body, reader, batch_count)?;
            let config = &batches[0];
            let (membership, context) = match config.kind() {
                BatchKind::Config if config.len() == 1 => {
                    Membership::decode(config.payload(config.first_index()))
                        .map_err(|_| WireError::BadSnapshotConfig { at })?
                }
                _ => return Err(WireError::BadSnapshotConfig { at }),
            };
            if config.first_index() != LogIndex(f[1]) || config.term() != Term(f[2]) {
                return Err(WireError::BadSnapshotConfig { at });
            }
            Message::InstallSnapshot {
                term: Term(f[0]),
                snapshot: SnapshotMeta {
                    index: LogIndex(f[1]),
                    term: Term(f[2]),
                    membership,
                    context,
                },
            }
        }
        tag => return Err(WireError::UnknownTag { tag, at: at + 16 }),
    };
    Ok(Envelope { group, to, message })
}

fn decode_batches(
    body: &Bytes,
    reader: &mut Reader<'_>,
    count: u32,
) -> Result<Vec<EntryBatch>, WireError> {
    check_count("batches", count, DESCRIPTOR_BYTES, reader)?;
    let descriptors_at = reader.pos();
    // Everything up to here (and the descriptors) is metadata that bodies must not overlap.
    let mut end = descriptors_at + count as usize * DESCRIPTOR_BYTES;
    let mut batches = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let term = Term(reader.u64()?);
        let first_index = reader.u64()?;
        let skip = reader.u32()?;
        let entries = reader.u32()?;
        let offset = reader.u32()?;
        let len = reader.u32()?;
        let start = offset as usize;
        let stop = start + len as usize; // both below 2^32: no overflow on 64-bit
        if stop > body.len() {
            return Err(WireError::BatchOutOfBounds {
                offset,
                len,
                body_len: body.len(),
            });
        }
        if start % FRAME_ALIGN != 0 {
            return Err(WireError::BatchMisaligned { offset });
        }
        if start < end {
            return Err(WireError::BatchOverlaps { offset, end });
        }
        if start != align_up(end) {
            return Err(WireError::BatchGap {
                offset,
                expected: align_up(end),
            });
        }
        if body[end..start].iter().any(|&b| b != 0) {
            return Err(WireError::NotZero {
                what: "padding before a batch body",
                at: end,
            });
        }
        if first_index == 0 || entries == 0 || first_index.checked_add(entries as u64 - 1).is_none()
        {
            return Err(WireError::BatchRange {
                first_index,
                count: entries,
            });
        }
        let batch = EntryBatch::from_body(
            term,
            LogIndex(first_index),
            body.slice(start..stop),
            skip,
            entries,
        )
        .map_err(|source| WireError::Batch { offset, source })?;
        batches.push(batch);
        end = stop;
    }
    reader.seek(end);
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchKind;
    use crate::net::frame::FrameDecoder;

    fn frame_body(out: &[u8]) -> Bytes {
        let mut decoder = FrameDecoder::new();
        decoder.push(out);
        let frame = decoder.next_frame().unwrap().unwrap();
        assert_eq!(frame.kind, FrameKind::Raft);
        frame.body
    }

    #[test]
    fn every_variant_round_trips_zero_copy() {
        let batch = EntryBatch::encode(
            BatchKind::Command,
            Term(2),
            LogIndex(5),
            [b"x".as_slice(), b"yy", b"zzz"],
        );
        let append = Message::Append(AppendRequest {
            term: Term(2),
            prev_index: LogIndex(4),
            prev_term: Term(1),
            commit: LogIndex(3),
            read_round: 11,
            batches: vec![batch.slice(LogIndex(6), LogIndex(7)), batch.clone()],
        });
        let messages = [
            Message::VoteRequest {
                term: Term(3),
                last_index: LogIndex(9),
                last_term: Term(2),
                pre_vote: true,
                transfer: false,
            },
            Message::VoteResponse {
                term: Term(3),
                pre_vote: false,
                granted: true,
            },
            append,
            Message::AppendResponse {
                term: Term(2),
                outcome: AppendOutcome::Rejected {
                    prev_index: LogIndex(4),
                    hint: RejectHint {
                        last_index: LogIndex(3),
                        conflict: Some((Term(1), LogIndex(2))),
                    },
                },
            },
            Message::AppendResponse {
                term: Term(2),
                outcome: AppendOutcome::Accepted {
                    match_index: LogIndex(7),
                    read_round: 11,
                },
            },
            Message::TimeoutNow { term: Term(4) },
        ];
        let items: Vec<_> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (GroupId(i as u64), NodeId(7), m))
            .collect();
        let mut out = Vec::new();
        encode_raft(NodeId(1), &items, &mut out).unwrap();
        let body = frame_body(&out);
        let decoded = decode_raft(&body).unwrap();
        assert_eq!(decoded.from, NodeId(1));
        assert_eq!(decoded.messages.len(), messages.len());
        for (i, (envelope, message)) in decoded.messages.iter().zip(&messages).enumerate() {
            assert_eq!(envelope.group, GroupId(i as u64));
            assert_eq!(envelope.to, NodeId(7));
            assert_eq!(&envelope.message, message);
        }
        let Message::Append(request) = &decoded.messages[2].message else {
            panic!("not an append");
        };
        let range = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
        for batch in &request.batches {
            assert!(range.contains(&(batch.body().as_ptr() as usize)), "copied");
        }
    }

    #[test]
    fn overlapping_batch_bodies_are_rejected() {
        let batch = EntryBatch::encode(BatchKind::Noop, Term(1), LogIndex(1), [b"".as_slice()]);
        let message = Message::Append(AppendRequest {
            term: Term(1),
            prev_index: LogIndex(0),
            prev_term: Term(0),
            commit: LogIndex(0),
            read_round: 0,
            batches: vec![batch.clone(), batch.placed_at(Term(1), LogIndex(2))],
        });
        let mut out = Vec::new();
        encode_raft(NodeId(1), &[(GroupId(1), NodeId(2), &message)], &mut out).unwrap();
        let body = frame_body(&out);
        let mut bytes = body.to_vec();
        // Second descriptor's offset := first descriptor's offset.
        let first = 16 + 64;
        let second = first + 32;
        let offset: [u8; 4] = bytes[first + 24..first + 28].try_into().unwrap();
        bytes[second + 24..second + 28].copy_from_slice(&offset);
        let mut tampered = rkyv::util::AlignedVec::<16>::new();
        tampered.extend_from_slice(&bytes);
        let tampered = Bytes::from_owner(tampered);
        assert!(matches!(
            decode_raft(&tampered),
            Err(WireError::BatchOverlaps { .. })
        ));
    }
}

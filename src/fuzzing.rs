//! Entry points for fuzzing the decoders of everything that arrives from the network or the
//! disk. Each takes arbitrary bytes and must neither panic nor allocate beyond the caps; where
//! an encoding is canonical it also checks that what decodes re-encodes to the same bytes.
//!
//! The libFuzzer targets in `fuzz/` call these, and `tests/fuzz_corpus.rs` replays the
//! committed seed corpus through them on the stable toolchain, so CI covers every target.

use bytes::Bytes;

use crate::client::protocol::{decode_requests, decode_responses};
use crate::log::hard_state::decode_slot;
use crate::log::segment::{SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::net::snapshot_wire::{SnapshotAck, SnapshotChunk};
use crate::net::wire::{decode_raft, encode_raft};
use crate::net::{FrameDecoder, FrameKind};
use crate::types::ShardId;

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
/// fuzzer spends its time on records, not on the header's checksum).
pub fn segment_records(data: &[u8]) {
    let size = SEGMENT_HEADER_BYTES as usize + data.len();
    let header = SegmentHeader {
        cluster_id: 1,
        shard: ShardId(0),
        sequence: 1,
        size: size as u64,
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

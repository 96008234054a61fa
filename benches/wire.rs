//! Raft wire codec cost: one AppendEntries carrying N × 128-byte entries (N = 1, 64, 1024),
//! encoded into a reused output buffer, passed through the frame decoder (one copy, standing in
//! for the socket read into the decoder's buffer, plus the CRC) and decoded, which validates the
//! batch archive once and hands out its body without copying.
//!
//! Benchmarks (`cargo bench --bench wire`), each with `Throughput::Elements(N)`:
//! - `one_batch/N`: the N entries in one batch (how proposals are batched);
//! - `batch_per_entry/N`: N batches of one entry (worst case for per-batch overhead);
//! - `encode_only/N` and `decode_only/N` split the one-batch case.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use ringraft::batch::{BatchKind, EntryBatch};
use ringraft::core::{AppendRequest, Message};
use ringraft::net::frame::{Frame, FrameDecoder};
use ringraft::net::wire::{decode_raft, encode_raft};
use ringraft::types::{GroupId, LogIndex, NodeId, Term};

const ENTRY_BYTES: usize = 128;
const COUNTS: [u64; 3] = [1, 64, 1024];

fn append(batches: Vec<EntryBatch>) -> Message {
    Message::Append(AppendRequest {
        term: Term(3),
        prev_index: LogIndex(99),
        prev_term: Term(3),
        commit: LogIndex(98),
        read_round: 0,
        batches,
    })
}

fn one_batch(count: u64) -> Message {
    let payload = [0xabu8; ENTRY_BYTES];
    append(vec![EntryBatch::encode(
        BatchKind::Command,
        Term(3),
        LogIndex(100),
        (0..count).map(|_| payload.as_slice()),
    )])
}

fn batch_per_entry(count: u64) -> Message {
    let payload = [0xabu8; ENTRY_BYTES];
    append(
        (0..count)
            .map(|i| {
                EntryBatch::encode(
                    BatchKind::Command,
                    Term(3),
                    LogIndex(100 + i),
                    [payload.as_slice()],
                )
            })
            .collect(),
    )
}

/// Encodes, frames, decodes; returns the number of decoded batches (kept alive by the caller's
/// `black_box` so nothing is optimised away).
fn round_trip(message: &Message, out: &mut Vec<u8>, decoder: &mut FrameDecoder) -> usize {
    out.clear();
    encode_raft(NodeId(1), &[(GroupId(7), NodeId(2), message)], out).unwrap();
    let spare = decoder.spare(out.len());
    spare[..out.len()].copy_from_slice(out);
    decoder.filled(out.len());
    let frame = decoder.next_frame().unwrap().unwrap();
    let decoded = decode_raft(&frame.body).unwrap();
    match &decoded.messages[0].message {
        Message::Append(request) => request.batches.len(),
        _ => unreachable!(),
    }
}

fn frame_of(message: &Message) -> Frame {
    let mut out = Vec::new();
    encode_raft(NodeId(1), &[(GroupId(7), NodeId(2), message)], &mut out).unwrap();
    let mut decoder = FrameDecoder::new();
    decoder.push(&out);
    decoder.next_frame().unwrap().unwrap()
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire_append");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(300));
    group.measurement_time(Duration::from_secs(1));
    for &count in &COUNTS {
        group.throughput(Throughput::Elements(count));
        for (name, message) in [
            ("one_batch", one_batch(count)),
            ("batch_per_entry", batch_per_entry(count)),
        ] {
            let mut out = Vec::new();
            let mut decoder = FrameDecoder::new();
            group.bench_function(BenchmarkId::new(name, count), |b| {
                b.iter(|| black_box(round_trip(black_box(&message), &mut out, &mut decoder)))
            });
        }
        let message = one_batch(count);
        let mut out = Vec::new();
        group.bench_function(BenchmarkId::new("encode_only", count), |b| {
            b.iter(|| {
                out.clear();
                encode_raft(NodeId(1), &[(GroupId(7), NodeId(2), &message)], &mut out).unwrap();
                black_box(out.len())
            })
        });
        let body: Bytes = frame_of(&message).body;
        group.bench_function(BenchmarkId::new("decode_only", count), |b| {
            b.iter(|| black_box(decode_raft(black_box(&body)).unwrap().messages.len()))
        });
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
}

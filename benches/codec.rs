//! Cost of the entry-batch codec for an AppendEntries body of N × 128-byte entries.
//!
//! Run with `cargo bench --bench codec` (`-- --test` runs each benchmark once).
//!
//! - `encode`: [`EntryBatch::encode`] of N distinct 128-byte payloads (collecting the payload
//!   slices and the rkyv serialization into a fresh aligned buffer, as a proposer does);
//! - `validate`: [`EntryBatch::from_body`] on that encoded body (alignment, bytecheck of the
//!   whole archive, window check), as a follower does once per received batch;
//! - `access`: iterate the payloads of a batch in place and sum their lengths (unchecked
//!   access; reads each entry's length and position, not the payload bytes).
//!
//! Throughput is in encoded body bytes (`EntryBatch::encoded_len`) for all three, so the
//! figures share one denominator; the payload bytes are N × 128.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringraft::batch::{BatchKind, EntryBatch};
use ringraft::types::{LogIndex, Term};

const ENTRY_BYTES: usize = 128;
const BATCH_SIZES: [usize; 3] = [1, 64, 1024];

fn payloads(count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| vec![(i % 251) as u8; ENTRY_BYTES])
        .collect()
}

fn encode(payloads: &[Vec<u8>]) -> EntryBatch {
    EntryBatch::encode(
        BatchKind::Command,
        Term(1),
        LogIndex(1),
        payloads.iter().map(Vec::as_slice),
    )
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for count in BATCH_SIZES {
        let payloads = payloads(count);
        let batch = encode(&payloads);
        let body = batch.body().clone();
        group.throughput(Throughput::Bytes(batch.encoded_len() as u64));
        group.bench_with_input(BenchmarkId::new("encode", count), &payloads, |b, p| {
            b.iter(|| encode(black_box(p)))
        });
        group.bench_with_input(BenchmarkId::new("validate", count), &body, |b, body| {
            b.iter(|| {
                EntryBatch::from_body(
                    Term(1),
                    LogIndex(1),
                    black_box(body).clone(),
                    0,
                    count as u32,
                )
                .expect("our own encoding validates")
            })
        });
        group.bench_with_input(BenchmarkId::new("access", count), &batch, |b, batch| {
            b.iter(|| black_box(batch).payloads().map(<[u8]>::len).sum::<usize>())
        });
        assert_eq!(
            batch.payloads().map(<[u8]>::len).sum::<usize>(),
            count * ENTRY_BYTES
        );
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);

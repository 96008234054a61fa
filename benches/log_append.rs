//! Durable append throughput of the segmented log versus the raw device, for 128-byte entries.
//!
//! Run with `cargo bench --bench log_append`. Before the criterion benchmarks it prints a
//! figure (markdown table): for each batch size (entries per appended batch) the durable
//! entries/s, MB/s, fsyncs/s and entries per fsync of
//! - `raw write+fdatasync`: a plain `pwrite` + `fdatasync` loop of one record-sized write per
//!   sync into a pre-zeroed file (the device baseline);
//! - `raw DMA`: the same through glommio DMA files (O_DIRECT, 4 KiB-aligned) + `fdatasync`;
//! - `log, 1 batch/flush`: `DiskLog` appending one batch and syncing it, on a glommio executor
//!   (directly comparable to the baseline: same bytes per sync);
//! - `log, group commit`: `DiskLog` with W groups each keeping one batch outstanding, staging
//!   while the previous flush is in flight (W = 64 up to 64 entries per batch, fewer above so a
//!   flush stays near 10 MB).
//!
//! `LOG_APPEND_SECS` sets the seconds per figure cell (default 1.5); `LOG_APPEND_FIGURE=0`
//! skips the figure.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use glommio::{LocalExecutorBuilder, Placement};
use ringraft::batch::{BatchKind, EntryBatch};
use ringraft::log::record::{pad_to_align, RECORD_HEADER_BYTES};
use ringraft::log::{DiskLog, LogConfig, LogStore};
use ringraft::types::{GroupId, LogIndex, ShardId, Term};

const ENTRY_BYTES: usize = 128;
const BATCH_SIZES: [u64; 4] = [1, 64, 1024, 8192];
const RAW_FILE_BYTES: u64 = 64 << 20;

fn template(count: u64) -> EntryBatch {
    let payload = vec![0xabu8; ENTRY_BYTES];
    EntryBatch::encode(
        BatchKind::Command,
        Term(1),
        LogIndex(1),
        (0..count).map(|_| payload.as_slice()),
    )
}

fn record_bytes(batch: &EntryBatch) -> usize {
    RECORD_HEADER_BYTES + pad_to_align(batch.encoded_len())
}

#[derive(Clone, Copy, Default)]
struct Cell {
    entries: u64,
    bytes: u64,
    syncs: u64,
    elapsed: Duration,
}

impl Cell {
    fn per_sec(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64()
    }
}

fn prezeroed(path: &Path, len: u64) -> File {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        file.write_all_at(&zeros, at).unwrap();
        at += zeros.len() as u64;
    }
    file.sync_all().unwrap();
    file
}

fn raw_std(dir: &Path, write_len: usize, entries_per_write: u64, secs: f64) -> Cell {
    let file = prezeroed(&dir.join("raw-std"), RAW_FILE_BYTES);
    let buf = vec![0x5au8; write_len];
    let mut cell = Cell::default();
    let mut at = 0u64;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        if at + write_len as u64 > RAW_FILE_BYTES {
            at = 0;
        }
        file.write_all_at(&buf, at).unwrap();
        file.sync_data().unwrap();
        at += write_len as u64;
        cell.entries += entries_per_write;
        cell.bytes += write_len as u64;
        cell.syncs += 1;
    }
    cell.elapsed = start.elapsed();
    cell
}

fn on_glommio<T: Send + 'static>(f: impl AsyncFnOnce() -> T + Send + 'static) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(16 << 20)
        .name("log-bench")
        .spawn(move || async move { f().await })
        .unwrap()
        .join()
        .unwrap()
}

fn raw_dma(dir: &Path, write_len: usize, entries_per_write: u64, secs: f64) -> Cell {
    let path = dir.join("raw-dma");
    drop(prezeroed(&path, RAW_FILE_BYTES));
    let aligned = write_len.div_ceil(4096) * 4096;
    on_glommio(async move || {
        let file = glommio::io::OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(&path)
            .await
            .unwrap();
        let mut cell = Cell::default();
        let mut at = 0u64;
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < secs {
            if at + aligned as u64 > RAW_FILE_BYTES {
                at = 0;
            }
            let mut buf = file.alloc_dma_buffer(aligned);
            buf.as_bytes_mut().fill(0x5a);
            file.write_at(buf, at).await.unwrap();
            file.fdatasync().await.unwrap();
            at += aligned as u64;
            cell.entries += entries_per_write;
            cell.bytes += write_len as u64;
            cell.syncs += 1;
        }
        cell.elapsed = start.elapsed();
        file.close().await.unwrap();
        cell
    })
}

fn log_config(dir: &Path) -> LogConfig {
    LogConfig::new(dir, 1, ShardId(0))
}

/// `writers` groups, each with one batch outstanding; staging overlaps the flush in flight.
fn log_run(dir: &Path, count: u64, writers: u64, secs: f64) -> Cell {
    let config = log_config(dir);
    on_glommio(async move || {
        let template = template(count);
        let rec = record_bytes(&template) as u64;
        let mut log = DiskLog::open(config).unwrap();
        let mut next = vec![1u64; writers as usize];
        let mut cell = Cell::default();
        let mut pending = None;
        let start = Instant::now();
        loop {
            let running = start.elapsed().as_secs_f64() < secs;
            if running {
                for (g, first) in next.iter_mut().enumerate() {
                    let batch = template.clone().placed_at(Term(1), LogIndex(*first));
                    log.append(GroupId(g as u64), &batch).unwrap();
                    *first += count;
                }
            }
            if let Some(p) = pending.take() {
                let report = log.finish_flush(p.await).unwrap();
                let durable: u64 = report.log.len() as u64;
                cell.entries += durable * count;
                cell.bytes += durable * rec;
                cell.syncs += 1;
            }
            if !running {
                break;
            }
            pending = log.start_flush().unwrap();
            if writers == 1 {
                // One batch per flush: wait for it before staging the next.
                if let Some(p) = pending.take() {
                    let report = log.finish_flush(p.await).unwrap();
                    cell.entries += report.log.len() as u64 * count;
                    cell.bytes += report.log.len() as u64 * rec;
                    cell.syncs += 1;
                }
            }
        }
        cell.elapsed = start.elapsed();
        cell
    })
}

fn group_writers(count: u64) -> u64 {
    (65536 / count).clamp(1, 64)
}

fn row(name: &str, batch: u64, cell: &Cell) -> String {
    format!(
        "| {name} | {batch} | {:.0} | {:.1} | {:.0} | {:.0} |",
        cell.per_sec(cell.entries),
        cell.per_sec(cell.bytes) / 1e6,
        cell.per_sec(cell.syncs),
        cell.entries as f64 / cell.syncs.max(1) as f64,
    )
}

fn figure(secs: f64) {
    let root = tempfile::tempdir().unwrap();
    println!("\n| path | entries/batch | durable entries/s | MB/s | fsyncs/s | entries/fsync |");
    println!("|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for &count in &BATCH_SIZES {
        let template = template(count);
        let write_len = record_bytes(&template);
        let raw = raw_std(root.path(), write_len, count, secs);
        println!("{}", row("raw write+fdatasync", count, &raw));
        let dma = raw_dma(root.path(), write_len, count, secs);
        println!("{}", row("raw DMA write+fdatasync", count, &dma));
        let dir = root.path().join(format!("serial-{count}"));
        let serial = log_run(&dir, count, 1, secs);
        println!("{}", row("log, 1 batch/flush", count, &serial));
        std::fs::remove_dir_all(&dir).unwrap();
        let writers = group_writers(count);
        let dir = root.path().join(format!("group-{count}"));
        let group = log_run(&dir, count, writers, secs);
        println!(
            "{}",
            row(
                &format!("log, group commit ({writers} groups)"),
                count,
                &group
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
        ratios.push((count, raw, dma, serial, group));
    }
    println!("\n| entries/batch | raw / log (1 batch/flush), entries/s | DMA / buffered raw, syncs/s | group commit entries/s ÷ raw fsyncs/s |");
    println!("|---|---|---|---|");
    for (count, raw, dma, serial, group) in ratios {
        println!(
            "| {count} | {:.2} | {:.2} | {:.1} |",
            raw.per_sec(raw.entries) / serial.per_sec(serial.entries),
            dma.per_sec(dma.syncs) / raw.per_sec(raw.syncs),
            group.per_sec(group.entries) / raw.per_sec(raw.syncs),
        );
    }
    println!();
}

fn criterion_benches(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("log_append");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for &count in &[1u64, 64, 1024] {
        group.throughput(Throughput::Elements(count));
        let template = template(count);
        let write_len = record_bytes(&template);
        let file = prezeroed(&root.path().join("criterion-raw"), RAW_FILE_BYTES);
        let buf = vec![0x5au8; write_len];
        let mut at = 0u64;
        group.bench_function(BenchmarkId::new("raw_write_fdatasync", count), |b| {
            b.iter(|| {
                if at + write_len as u64 > RAW_FILE_BYTES {
                    at = 0;
                }
                file.write_all_at(&buf, at).unwrap();
                file.sync_data().unwrap();
                at += write_len as u64;
            })
        });
        let dir = root.path().join(format!("criterion-log-{count}"));
        let mut log = DiskLog::open(log_config(&dir)).unwrap();
        let mut next = 1u64;
        group.bench_function(BenchmarkId::new("log_append_sync", count), |b| {
            b.iter(|| {
                let batch = template.clone().placed_at(Term(1), LogIndex(next));
                log.append(GroupId(0), &batch).unwrap();
                next += count;
                futures_lite_block_on(log.sync()).unwrap();
            })
        });
    }
    group.finish();
}

/// Minimal blocking executor for the criterion loop (the log's futures need no reactor).
fn futures_lite_block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let secs: f64 = std::env::var("LOG_APPEND_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.5);
    if benching && std::env::var("LOG_APPEND_FIGURE").as_deref() != Ok("0") {
        figure(secs);
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
}

//! Helpers shared by the log test suites.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use ringraft::batch::{BatchKind, EntryBatch};
use ringraft::log::record::{RecordHeader, RECORD_HEADER_BYTES};
use ringraft::log::segment::{segment_file_name, SEGMENT_HEADER_BYTES};
use ringraft::log::{DiskLog, LogConfig, LogStore, MemLog};
use ringraft::types::{GroupId, LogIndex, ShardId, Term};

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread (the logs' futures need no executor).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// The payload of entry `index` of `group` written with `salt`.
pub fn payload(group: GroupId, index: u64, term: Term, salt: u64) -> Vec<u8> {
    format!("{group}/{index}/{term}/{salt:04}-payload").into_bytes()
}

/// A batch of `count` entries of `group` starting at `first`.
pub fn batch(group: GroupId, first: u64, count: u64, term: u64, salt: u64) -> EntryBatch {
    let payloads: Vec<Vec<u8>> = (first..first + count)
        .map(|i| payload(group, i, Term(term), salt))
        .collect();
    EntryBatch::encode(
        BatchKind::Command,
        Term(term),
        LogIndex(first),
        payloads.iter().map(|p| p.as_slice()),
    )
}

/// Every (index, term, payload) of `from..=to` read through `log`.
pub fn read_all<L: LogStore>(
    log: &L,
    group: GroupId,
    from: u64,
    to: u64,
) -> Vec<(u64, u64, Vec<u8>)> {
    let mut out = Vec::new();
    for b in log.read(group, LogIndex(from), LogIndex(to)).expect("read") {
        for (k, p) in b.payloads().enumerate() {
            out.push((b.first_index().0 + k as u64, b.term().0, p.to_vec()));
        }
    }
    out
}

pub const CLUSTER: u64 = 0x5eed;

pub fn config(dir: &Path, segment_bytes: u64) -> LogConfig {
    let mut config = LogConfig::new(dir, CLUSTER, ShardId(0));
    config.segment_bytes = segment_bytes;
    config
}

pub fn segment_path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(segment_file_name(sequence))
}

/// (offset, length without padding) of every record of a segment file, read by walking the
/// headers.
pub fn record_spans(path: &Path) -> Vec<(u64, u64)> {
    let bytes = std::fs::read(path).expect("read segment");
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES as usize;
    while at + RECORD_HEADER_BYTES <= bytes.len() {
        match RecordHeader::decode(&bytes[at..at + RECORD_HEADER_BYTES]) {
            Ok(h) => {
                out.push((
                    at as u64,
                    (RECORD_HEADER_BYTES + h.body_len as usize) as u64,
                ));
                at += h.record_len();
            }
            Err(_) => break,
        }
    }
    out
}

/// A log under test plus how to restart it.
pub trait Fixture {
    type Log: LogStore;
    fn log(&mut self) -> &mut Self::Log;
    /// Clean restart: drops what was not synced, keeps what was.
    fn reopen(&mut self);
    fn sync(&mut self) -> ringraft::log::SyncReport {
        block_on(self.log().sync()).expect("sync")
    }
}

pub struct MemFixture(pub MemLog);

impl MemFixture {
    pub fn new() -> MemFixture {
        MemFixture(MemLog::new())
    }
}

impl Fixture for MemFixture {
    type Log = MemLog;
    fn log(&mut self) -> &mut MemLog {
        &mut self.0
    }
    fn reopen(&mut self) {
        self.0.crash();
        self.0.reopen();
    }
}

pub struct DiskFixture {
    pub dir: tempfile::TempDir,
    pub config: LogConfig,
    pub log: Option<DiskLog>,
}

impl DiskFixture {
    pub fn new(segment_bytes: u64) -> DiskFixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path(), segment_bytes);
        let log = DiskLog::open(config.clone()).expect("open");
        DiskFixture {
            dir,
            config,
            log: Some(log),
        }
    }
}

impl Fixture for DiskFixture {
    type Log = DiskLog;
    fn log(&mut self) -> &mut DiskLog {
        self.log.as_mut().expect("open")
    }
    fn reopen(&mut self) {
        self.log.take();
        self.log = Some(DiskLog::open(self.config.clone()).expect("reopen"));
    }
}

//! Where a disk log flush does its I/O: small flushes of a shard that leads no group run in the
//! task that awaits them (no write happens before the first poll), everything else on the
//! writer thread (the write happens without any poll); a slow sync sends the next flushes back
//! to the writer thread; a deferred flush dropped unpolled neither writes nor hangs the log.

mod log_helpers;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use log_helpers::{batch, block_on, config, payload, read_all};
use ringraft::log::{DiskLog, FaultOp, FaultPlan, FlushDone, LogConfig, LogStore, PendingFlush};
use ringraft::types::{GroupId, LogIndex, Term};

const G: GroupId = GroupId(1);

/// A disk log whose writes are counted.
fn open(tweak: impl FnOnce(&mut LogConfig)) -> (tempfile::TempDir, DiskLog, FaultPlan) {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultPlan::new();
    let mut cfg = config(dir.path(), 1 << 20);
    cfg.faults = Some(faults.clone());
    tweak(&mut cfg);
    let log = DiskLog::open(cfg).unwrap();
    (dir, log, faults)
}

fn poll_once(pending: &mut PendingFlush) -> Poll<FlushDone> {
    Pin::new(pending).poll(&mut Context::from_waker(Waker::noop()))
}

/// Stages entries `first..first + count`, flushes them and asserts that the flush ran in the
/// awaiting task: nothing is written until it is polled, and one poll completes it.
fn flush_when_polled(log: &mut DiskLog, faults: &FaultPlan, first: u64, count: u64) {
    let writes = faults.count(FaultOp::Write);
    log.append(G, &batch(G, first, count, 1, 0)).unwrap();
    let mut pending = log.start_flush().unwrap().expect("something to flush");
    assert!(pending.runs_when_polled());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        faults.count(FaultOp::Write),
        writes,
        "the flush wrote before anyone polled it: it went to the writer thread"
    );
    assert!(!pending.is_done());
    let done = match poll_once(&mut pending) {
        Poll::Ready(done) => done,
        Poll::Pending => panic!("the flush was handed to the writer thread when polled"),
    };
    assert!(faults.count(FaultOp::Write) > writes);
    log.finish_flush(done).unwrap();
    assert_eq!(log.durable(G).index, LogIndex(first + count - 1));
}

/// Stages entries `first..first + count`, flushes them and asserts that the flush ran on the
/// writer thread: its write happens without a poll.
fn flush_on_writer_thread(log: &mut DiskLog, faults: &FaultPlan, first: u64, count: u64) {
    let writes = faults.count(FaultOp::Write);
    log.append(G, &batch(G, first, count, 1, 0)).unwrap();
    let pending = log.start_flush().unwrap().expect("something to flush");
    assert!(!pending.runs_when_polled());
    let deadline = Instant::now() + Duration::from_secs(10);
    while faults.count(FaultOp::Write) == writes {
        assert!(
            Instant::now() < deadline,
            "nothing was written without a poll: the flush waits for its awaiting task"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    log.finish_flush(block_on(pending)).unwrap();
    assert_eq!(log.durable(G).index, LogIndex(first + count - 1));
}

#[test]
fn a_small_flush_of_a_shard_leading_no_group_runs_when_awaited() {
    let (_dir, mut log, faults) = open(|_| {});
    flush_when_polled(&mut log, &faults, 1, 3);
}

#[test]
fn a_shard_that_leads_a_group_flushes_on_the_writer_thread() {
    let (_dir, mut log, faults) = open(|_| {});
    log.allow_blocking_flush(false);
    flush_on_writer_thread(&mut log, &faults, 1, 3);
    // And back to running small flushes itself once it leads nothing.
    log.allow_blocking_flush(true);
    flush_when_polled(&mut log, &faults, 4, 1);
}

#[test]
fn flushes_above_the_limit_or_with_the_limit_off_go_to_the_writer_thread() {
    let (_dir, mut log, faults) = open(|cfg| cfg.inline_flush_bytes_max = 4096);
    // A few hundred bytes fit; 200 entries of ~20 bytes plus headers do not.
    flush_when_polled(&mut log, &faults, 1, 2);
    flush_on_writer_thread(&mut log, &faults, 3, 200);

    let (_dir, mut log, faults) = open(|cfg| cfg.inline_flush_bytes_max = 0);
    flush_on_writer_thread(&mut log, &faults, 1, 1);
}

#[test]
fn after_a_slow_sync_flushes_go_to_the_writer_thread() {
    // Every sync takes 20 ms, slower than `INLINE_SYNC_SLOW`.
    let (_dir, mut log, faults) = open(|cfg| cfg.sync_delay = Duration::from_millis(20));
    flush_when_polled(&mut log, &faults, 1, 1);
    flush_on_writer_thread(&mut log, &faults, 2, 1);
    flush_on_writer_thread(&mut log, &faults, 3, 1);
}

#[test]
fn a_deferred_flush_dropped_unpolled_writes_nothing_and_the_log_still_closes() {
    let (dir, mut log, faults) = open(|_| {});
    flush_when_polled(&mut log, &faults, 1, 2);
    let writes = faults.count(FaultOp::Write);
    log.append(G, &batch(G, 3, 2, 1, 0)).unwrap();
    let never_polled = log.start_flush().unwrap().expect("something to flush");
    assert!(never_polled.runs_when_polled());
    // Closing the log joins its writer thread; a leaked deferred flush must not keep it alive.
    std::mem::forget(never_polled);
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(log);
        let _ = closed_tx.send(());
    });
    closed_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("dropping the log hung on its writer thread");
    assert_eq!(faults.count(FaultOp::Write), writes);
    let log = DiskLog::open(config(dir.path(), 1 << 20)).unwrap();
    assert_eq!(log.last_index(G), LogIndex(2));
    let read: Vec<_> = read_all(&log, G, 1, 2).into_iter().map(|e| e.2).collect();
    assert_eq!(
        read,
        vec![payload(G, 1, Term(1), 0), payload(G, 2, Term(1), 0)]
    );
}

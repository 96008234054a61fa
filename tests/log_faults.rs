//! Write and sync failures are fatal: a typed error, no acknowledgement of the failed flush,
//! the log refuses further work, and what was synced before survives a restart.

mod log_helpers;

use std::path::{Path, PathBuf};
use std::process::Command;

use log_helpers::{batch, block_on, config, payload, read_all};
use ringraft::log::{DiskLog, Error, FaultOp, FaultPlan, LogStore, MemLog};
use ringraft::types::{GroupId, LogIndex, Term};

const G: GroupId = GroupId(3);
const EIO: i32 = 5;
const ENOSPC: i32 = 28;

fn assert_synced_prefix(log: &DiskLog, at_least: u64) {
    let last = log.last_index(G).0;
    assert!(last >= at_least, "acked {at_least}, recovered only {last}");
    for (i, term, p) in read_all(log, G, 1, last) {
        assert_eq!(p, payload(G, i, Term(term), 0));
    }
}

/// The failure is fatal whether the flush runs on the writer thread or in the awaiting task
/// (`blocking`: a shard leading no group, small flushes).
fn fails_with(op: FaultOp, errno: i32) {
    for blocking in [true, false] {
        fails_with_flushes(op, errno, blocking);
    }
}

fn fails_with_flushes(op: FaultOp, errno: i32, blocking: bool) {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultPlan::new();
    let mut cfg = config(dir.path(), 64 << 10);
    cfg.faults = Some(faults.clone());
    let mut log = DiskLog::open(cfg).unwrap();
    log.allow_blocking_flush(blocking);
    for k in 0..5u64 {
        log.append(G, &batch(G, 1 + 2 * k, 2, 1, 0)).unwrap();
        block_on(log.sync()).unwrap();
    }
    assert_eq!(log.durable(G).index, LogIndex(10));
    faults.fail(op, 0, errno);
    log.append(G, &batch(G, 11, 2, 1, 0)).unwrap();
    let err = block_on(log.sync()).unwrap_err();
    assert!(err.is_fatal(), "{err}");
    match &err {
        Error::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(errno)),
        other => panic!("unexpected {other}"),
    }
    // Nothing of the failed flush was acknowledged, and the log refuses further work.
    assert_eq!(log.durable(G).index, LogIndex(10));
    assert!(log.is_stopped());
    assert!(matches!(
        log.append(G, &batch(G, 13, 1, 1, 0)),
        Err(Error::Stopped(_))
    ));
    assert!(matches!(block_on(log.sync()), Err(Error::Stopped(_))));
    assert!(matches!(
        log.read(G, LogIndex(1), LogIndex(2)),
        Err(Error::Stopped(_))
    ));
    drop(log);
    let log = DiskLog::open(config(dir.path(), 64 << 10)).unwrap();
    assert_synced_prefix(&log, 10);
}

#[test]
fn eio_on_fdatasync_is_fatal() {
    fails_with(FaultOp::Sync, EIO);
}

#[test]
fn eio_on_write_is_fatal() {
    fails_with(FaultOp::Write, EIO);
}

#[test]
fn enospc_on_write_is_fatal() {
    fails_with(FaultOp::Write, ENOSPC);
}

#[test]
fn mem_log_failure_is_fatal_until_restart() {
    let mut log = MemLog::new();
    log.append(G, &batch(G, 1, 2, 1, 0)).unwrap();
    block_on(log.sync()).unwrap();
    log.append(G, &batch(G, 3, 2, 1, 0)).unwrap();
    log.fail_next_flush(EIO);
    assert!(block_on(log.sync()).unwrap_err().is_fatal());
    assert_eq!(log.durable(G).index, LogIndex(2));
    assert!(matches!(
        log.append(G, &batch(G, 5, 1, 1, 0)),
        Err(Error::Stopped(_))
    ));
    log.crash();
    log.reopen();
    assert_eq!(log.last_index(G), LogIndex(2));
    // A torn crash keeps a prefix of the in-flight flush, durable once reopened.
    log.append(G, &batch(G, 3, 1, 1, 0)).unwrap();
    log.append(G, &batch(G, 4, 1, 1, 0)).unwrap();
    let pending = log.start_flush().unwrap().unwrap();
    drop(pending);
    assert_eq!(log.inflight_ops(), 2);
    log.crash_with(1);
    log.reopen();
    assert_eq!(log.last_index(G), LogIndex(3));
    assert_eq!(log.durable(G).index, LogIndex(3));
}

/// A 1 MiB tmpfs mounted for the test and unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?.keep();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(Tmpfs(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn full_filesystem_stops_the_log_without_losing_synced_data() {
    let Some(fs) = Tmpfs::mount("1m") else {
        eprintln!("SKIPPED full_filesystem test: cannot mount a tmpfs here (needs root and mount)");
        return;
    };
    let dir = fs.path().join("shard-000");
    let segment = 256 << 10;
    let mut log = DiskLog::open(config(&dir, segment)).unwrap();
    let mut acked = 0u64;
    let mut next = 1u64;
    let err = loop {
        log.append(G, &batch(G, next, 20, 1, 0)).unwrap();
        next += 20;
        match block_on(log.sync()) {
            Ok(report) => acked = report.log[0].1.index.0,
            Err(e) => break e,
        }
        assert!(next < 1_000_000, "the filesystem never filled up");
    };
    assert!(err.is_fatal());
    assert!(
        matches!(&err, Error::Io { source, .. } if source.raw_os_error() == Some(ENOSPC)),
        "{err}"
    );
    assert_eq!(log.durable(G).index.0, acked);
    assert!(matches!(
        log.append(G, &batch(G, next, 1, 1, 0)),
        Err(Error::Stopped(_))
    ));
    drop(log);
    // Restart: the incomplete segment creation is discarded, everything acked is there.
    let log = DiskLog::open(config(&dir, segment)).unwrap();
    assert!(!log.recovery_report().removed_temporaries.is_empty());
    assert_synced_prefix(&log, acked);
    assert!(acked > 1000);
}

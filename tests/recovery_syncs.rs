//! Recovery trusts only what is durable. A killed process leaves writes in the page cache that
//! were never synced; a restarted node reads them back and would acknowledge them, so opening a
//! log or a snapshot store must sync every file it read and relies on (and the directories
//! listing them) before reporting anything. The simulator's in-memory log models that page
//! cache: data that survived a crash unsynced is visible but not durable until a reopen syncs it.

mod log_helpers;

use std::io::Write;
use std::path::PathBuf;

use log_helpers::{batch, block_on, config, payload, read_all, segment_path};
use ringraft::log::hard_state::HARD_STATE_FILE;
use ringraft::log::{DiskLog, Error, FaultPlan, LogStore, MemLog};
use ringraft::snapshot::format::TEMP_SUFFIX;
use ringraft::snapshot::{SnapshotInfo, SnapshotStore};
use ringraft::types::{GroupId, HardState, LogIndex, NodeId, Term};

const G: GroupId = GroupId(4);

fn hard(term: u64) -> HardState {
    HardState {
        term: Term(term),
        vote: Some(NodeId(2)),
        commit: LogIndex(1),
    }
}

fn assert_all_synced(synced: &[PathBuf], expected: &[PathBuf]) {
    for path in expected {
        assert!(
            synced.contains(path),
            "{} was not synced on open; synced: {synced:?}",
            path.display()
        );
    }
}

#[test]
fn opening_a_log_syncs_every_segment_the_hard_state_and_the_directories() {
    let dir = tempfile::tempdir().unwrap();
    let shard = dir.path().join("shard-000");
    // Written and never synced, as in the page cache of a killed process.
    let mut unsynced = config(&shard, 4096);
    unsynced.fsync = false;
    let mut log = DiskLog::open(unsynced).unwrap();
    for k in 0..40 {
        log.append(G, &batch(G, 1 + 10 * k, 10, 1, 0)).unwrap();
        log.save_hard_state(G, hard(1 + k)).unwrap();
        block_on(log.sync()).unwrap();
    }
    let sequences = log.segment_sequences();
    assert!(sequences.len() >= 3, "only {} segments", sequences.len());
    drop(log);

    let faults = FaultPlan::new();
    let mut reopened = config(&shard, 4096);
    reopened.faults = Some(faults.clone());
    let log = DiskLog::open(reopened).unwrap();
    let mut expected: Vec<PathBuf> = sequences
        .iter()
        .map(|&sequence| segment_path(&shard, sequence))
        .collect();
    expected.push(shard.join(HARD_STATE_FILE));
    expected.push(shard.clone());
    expected.push(dir.path().to_path_buf());
    assert_all_synced(&faults.synced_paths(), &expected);
    assert_eq!(log.durable(G).index, LogIndex(400));
    assert_eq!(log.hard_state(G), hard(40));
}

#[test]
fn a_failed_sync_on_open_refuses_to_recover() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = DiskLog::open(config(dir.path(), 8192)).unwrap();
    log.append(G, &batch(G, 1, 10, 1, 0)).unwrap();
    block_on(log.sync()).unwrap();
    drop(log);
    let faults = FaultPlan::new();
    faults.fail(ringraft::log::FaultOp::Sync, 0, 5);
    let mut reopened = config(dir.path(), 8192);
    reopened.faults = Some(faults);
    match DiskLog::open(reopened) {
        Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(5)),
        Err(other) => panic!("unexpected {other}"),
        Ok(_) => panic!("recovered although a sync failed"),
    }
}

fn write_snapshot(store: &SnapshotStore, group: GroupId, index: u64) {
    let mut writer = store
        .create(SnapshotInfo {
            group,
            index: LogIndex(index),
            term: Term(1),
            membership: b"voters n1".to_vec(),
        })
        .unwrap();
    writer.write_all(&vec![index as u8; 5000]).unwrap();
    writer.finish().unwrap();
}

#[test]
fn opening_a_snapshot_store_syncs_every_snapshot_and_the_directories() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    let store = SnapshotStore::open(&snapshots, None).unwrap();
    let kept = [(G, 10), (G, 20), (GroupId(9), 5)];
    for (group, index) in kept {
        write_snapshot(&store, group, index);
    }
    let temporary = snapshots.join(format!("interrupted{TEMP_SUFFIX}"));
    std::fs::write(&temporary, b"half a snapshot").unwrap();
    drop(store);

    let faults = FaultPlan::new();
    let store = SnapshotStore::open(&snapshots, Some(faults.clone())).unwrap();
    let mut expected: Vec<PathBuf> = kept
        .iter()
        .map(|&(group, index)| store.path(group, LogIndex(index)))
        .collect();
    expected.push(snapshots.clone());
    expected.push(dir.path().to_path_buf());
    let synced = faults.synced_paths();
    assert_all_synced(&synced, &expected);
    assert!(!temporary.exists());
    assert!(!synced.contains(&temporary));
}

/// A log whose entries 1..=2 are durable and whose entries 3..=4 and hard state were written by
/// a flush whose sync never returned; it crashed keeping both in the page cache and was
/// reopened (trusting them unsynced if `trust_unsynced`).
fn reopened_after_a_crash_with_unsynced_writes(trust_unsynced: bool) -> MemLog {
    let mut log = MemLog::new();
    log.set_trust_unsynced_recovery(trust_unsynced);
    log.append(G, &batch(G, 1, 2, 1, 0)).unwrap();
    block_on(log.sync()).unwrap();
    log.append(G, &batch(G, 3, 2, 1, 0)).unwrap();
    log.save_hard_state(G, hard(1)).unwrap();
    drop(log.start_flush().unwrap().expect("something staged"));
    assert_eq!(log.unsynced_ops(), 2);
    log.crash_with(2);
    // Visible after the crash, not durable, and the log refuses work until reopened.
    assert_eq!(log.last_index(G), LogIndex(4));
    assert_eq!(log.hard_state(G), hard(1));
    assert_eq!(log.durable(G).index, LogIndex(2));
    assert!(matches!(
        log.append(G, &batch(G, 5, 1, 1, 0)),
        Err(Error::Stopped(_))
    ));
    log.reopen();
    log
}

fn entries(log: &MemLog) -> Vec<(u64, u64, Vec<u8>)> {
    read_all(log, G, 1, log.last_index(G).0)
}

fn expected_entries(last: u64) -> Vec<(u64, u64, Vec<u8>)> {
    (1..=last)
        .map(|i| (i, 1, payload(G, i, Term(1), 0)))
        .collect()
}

#[test]
fn mem_log_reopen_syncs_what_it_reports_durable() {
    let mut log = reopened_after_a_crash_with_unsynced_writes(false);
    assert_eq!(log.durable(G).index, LogIndex(4));
    assert_eq!(log.unsynced_ops(), 0);
    log.crash();
    log.reopen();
    assert_eq!(entries(&log), expected_entries(4));
    assert_eq!(log.hard_state(G), hard(1));
}

#[test]
fn mem_log_trusting_unsynced_recovery_loses_what_it_reported_durable() {
    let mut log = reopened_after_a_crash_with_unsynced_writes(true);
    assert_eq!(log.durable(G).index, LogIndex(4));
    assert_eq!(log.unsynced_ops(), 2);
    // A second flush in flight: the unsynced writes are the two that survived the first crash,
    // then entry 5. A crash keeps a prefix of them, in that order.
    log.append(G, &batch(G, 5, 1, 1, 0)).unwrap();
    drop(log.start_flush().unwrap().expect("something staged"));
    assert_eq!(log.unsynced_ops(), 3);
    log.crash_with(1);
    log.reopen();
    assert_eq!(entries(&log), expected_entries(4));
    assert_eq!(log.hard_state(G), HardState::default());
    // Entries 3..=4 were reported durable twice, and are lost in the next crash.
    assert_eq!(log.durable(G).index, LogIndex(4));
    log.crash();
    log.reopen();
    assert_eq!(entries(&log), expected_entries(2));
}

#[test]
fn mem_log_flush_makes_earlier_volatile_writes_durable() {
    let mut log = reopened_after_a_crash_with_unsynced_writes(true);
    log.append(G, &batch(G, 5, 1, 1, 0)).unwrap();
    let report = block_on(log.sync()).unwrap();
    assert_eq!(report.log[0].1.index, LogIndex(5));
    assert_eq!(log.unsynced_ops(), 0);
    log.crash();
    log.reopen();
    assert_eq!(entries(&log), expected_entries(5));
    assert_eq!(log.hard_state(G), hard(1));
}

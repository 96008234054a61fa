//! The same cases against the in-memory log and the disk log.

mod log_helpers;

use log_helpers::{batch, block_on, payload, read_all, DiskFixture, Fixture, MemFixture};
use ringraft::log::{Error, LogPosition, LogStore};
use ringraft::types::{GroupId, HardState, LogIndex, NodeId, Term};

const G1: GroupId = GroupId(1);
const G2: GroupId = GroupId(2);

fn pos(index: u64, term: u64) -> LogPosition {
    LogPosition {
        index: LogIndex(index),
        term: Term(term),
    }
}

fn expected(
    group: GroupId,
    range: std::ops::RangeInclusive<u64>,
    term: u64,
    salt: u64,
) -> Vec<(u64, u64, Vec<u8>)> {
    range
        .map(|i| (i, term, payload(group, i, Term(term), salt)))
        .collect()
}

fn append_and_read_back<F: Fixture>(f: &mut F) {
    let log = f.log();
    log.append(G1, &batch(G1, 1, 3, 1, 0)).unwrap();
    log.append(G2, &batch(G2, 1, 5, 2, 0)).unwrap();
    log.append(G1, &batch(G1, 4, 4, 1, 0)).unwrap();
    log.append(G1, &batch(G1, 8, 1, 3, 0)).unwrap();
    // Readable at once, before any sync.
    assert_eq!(log.last_index(G1), LogIndex(8));
    assert_eq!(log.durable(G1), LogPosition::default());
    let mut want = expected(G1, 1..=7, 1, 0);
    want.extend(expected(G1, 8..=8, 3, 0));
    assert_eq!(read_all(log, G1, 1, 8), want);
    assert_eq!(read_all(log, G1, 3, 5), want[2..5].to_vec());
    assert_eq!(log.term_at(G1, LogIndex(0)), Some(Term(0)));
    assert_eq!(log.term_at(G1, LogIndex(8)), Some(Term(3)));
    assert_eq!(log.term_at(G1, LogIndex(9)), None);
    assert!(log.read(G1, LogIndex(5), LogIndex(4)).unwrap().is_empty());
    assert!(matches!(
        log.read(G1, LogIndex(1), LogIndex(9)),
        Err(Error::Unavailable { .. })
    ));
    let report = f.sync();
    assert_eq!(report.log, vec![(G1, pos(8, 3)), (G2, pos(5, 2))]);
    assert_eq!(f.log().durable(G1), pos(8, 3));
    f.reopen();
    let log = f.log();
    assert_eq!(read_all(log, G1, 1, 8), want);
    assert_eq!(read_all(log, G2, 1, 5), expected(G2, 1..=5, 2, 0));
    assert_eq!(log.groups(), vec![G1, G2]);
    assert_eq!(log.durable(G2), pos(5, 2));
}

fn rejects_bad_appends<F: Fixture>(f: &mut F) {
    let log = f.log();
    log.append(G1, &batch(G1, 1, 3, 2, 0)).unwrap();
    assert!(matches!(
        log.append(G1, &batch(G1, 5, 1, 2, 0)),
        Err(Error::NotContiguous {
            expected: LogIndex(4),
            ..
        })
    ));
    assert!(matches!(
        log.append(G1, &batch(G1, 4, 1, 1, 0)),
        Err(Error::TermRegression { .. })
    ));
    assert!(matches!(
        log.append(G2, &batch(G2, 2, 1, 1, 0)),
        Err(Error::NotContiguous { .. })
    ));
    // The log is still usable.
    log.append(G1, &batch(G1, 4, 1, 2, 0)).unwrap();
    assert_eq!(f.sync().log, vec![(G1, pos(4, 2))]);
}

fn group_commit_takes_everything_staged_meanwhile<F: Fixture>(f: &mut F) {
    let log = f.log();
    log.append(G1, &batch(G1, 1, 2, 1, 0)).unwrap();
    let pending = log.start_flush().unwrap().expect("something to flush");
    assert!(matches!(log.start_flush(), Err(Error::FlushInFlight)));
    // Staged while the first flush is in flight: goes into the next one.
    log.append(G1, &batch(G1, 3, 2, 1, 0)).unwrap();
    log.append(G2, &batch(G2, 1, 1, 1, 0)).unwrap();
    log.save_hard_state(
        G2,
        HardState {
            term: Term(1),
            vote: Some(NodeId(3)),
            commit: LogIndex(0),
        },
    )
    .unwrap();
    let first = log.finish_flush(block_on(pending)).unwrap();
    assert_eq!(first.log, vec![(G1, pos(2, 1))]);
    assert!(first.hard_states.is_empty());
    assert_eq!(log.durable(G1), pos(2, 1));
    let second = f.sync();
    assert_eq!(second.log, vec![(G1, pos(4, 1)), (G2, pos(1, 1))]);
    assert_eq!(second.hard_states.len(), 1);
    assert!(second.flush > first.flush);
    assert!(f.sync().is_empty(), "nothing left to flush");
}

fn truncate_suffix<F: Fixture>(f: &mut F) {
    let log = f.log();
    log.append(G1, &batch(G1, 1, 4, 1, 0)).unwrap();
    log.append(G1, &batch(G1, 5, 6, 1, 0)).unwrap();
    f.sync();
    let log = f.log();
    // Cut inside the second batch, and replace the suffix with entries of a newer term.
    log.truncate(G1, LogIndex(7)).unwrap();
    assert_eq!(log.last_index(G1), LogIndex(6));
    log.append(G1, &batch(G1, 7, 2, 2, 1)).unwrap();
    // Truncating beyond the end removes nothing.
    log.truncate(G1, LogIndex(20)).unwrap();
    let mut want = expected(G1, 1..=6, 1, 0);
    want.extend(expected(G1, 7..=8, 2, 1));
    assert_eq!(read_all(log, G1, 1, 8), want);
    assert_eq!(f.sync().log, vec![(G1, pos(8, 2))]);
    f.reopen();
    assert_eq!(read_all(f.log(), G1, 1, 8), want);
    // Truncate across a batch boundary and everything, then start over.
    let log = f.log();
    log.truncate(G1, LogIndex(5)).unwrap();
    assert_eq!(read_all(log, G1, 1, 4), want[..4].to_vec());
    log.truncate(G1, LogIndex(1)).unwrap();
    assert_eq!(log.last_index(G1), LogIndex(0));
    log.append(G1, &batch(G1, 1, 1, 3, 2)).unwrap();
    assert_eq!(f.sync().log, vec![(G1, pos(1, 3))]);
    f.reopen();
    assert_eq!(read_all(f.log(), G1, 1, 1), expected(G1, 1..=1, 3, 2));
}

fn compact_prefix<F: Fixture>(f: &mut F) {
    let log = f.log();
    for k in 0..20 {
        log.append(G1, &batch(G1, 1 + k * 5, 5, 1 + k / 10, 0))
            .unwrap();
        log.append(G2, &batch(G2, 1 + k, 1, 1, 0)).unwrap();
    }
    f.sync();
    let log = f.log();
    log.compact(G1, LogIndex(42), Term(1)).unwrap();
    assert!(matches!(
        log.compact(G1, LogIndex(60), Term(9)),
        Err(Error::CompactTermMismatch { .. })
    ));
    assert_eq!(log.first_index(G1), LogIndex(43));
    assert_eq!(log.term_at(G1, LogIndex(42)), Some(Term(1)));
    assert_eq!(log.term_at(G1, LogIndex(41)), None);
    assert!(matches!(
        log.read(G1, LogIndex(42), LogIndex(50)),
        Err(Error::Compacted { .. })
    ));
    assert!(matches!(
        log.truncate(G1, LogIndex(40)),
        Err(Error::Compacted { .. })
    ));
    f.sync();
    f.reopen();
    let log = f.log();
    assert_eq!(log.first_index(G1), LogIndex(43));
    assert_eq!(log.term_at(G1, LogIndex(42)), Some(Term(1)));
    let mut want = expected(G1, 43..=50, 1, 0);
    want.extend(expected(G1, 51..=100, 2, 0));
    assert_eq!(read_all(log, G1, 43, 100), want);
    // Snapshot install: compact beyond the end, then continue from there.
    log.compact(G2, LogIndex(30), Term(4)).unwrap();
    log.compact(G1, LogIndex(100), Term(2)).unwrap();
    assert_eq!(log.last_index(G2), LogIndex(30));
    assert_eq!(log.term_at(G2, LogIndex(30)), Some(Term(4)));
    log.append(G2, &batch(G2, 31, 2, 4, 0)).unwrap();
    f.sync();
    f.sync();
    f.reopen();
    let log = f.log();
    assert_eq!(log.first_index(G1), LogIndex(101));
    assert_eq!(log.last_index(G1), LogIndex(100));
    assert_eq!(log.term_at(G1, LogIndex(100)), Some(Term(2)));
    assert_eq!(log.first_index(G2), LogIndex(31));
    assert_eq!(read_all(log, G2, 31, 32), expected(G2, 31..=32, 4, 0));
    assert_eq!(log.term_at(G2, LogIndex(30)), Some(Term(4)));
}

fn unsynced_work_is_lost_on_restart<F: Fixture>(f: &mut F) {
    let log = f.log();
    log.append(G1, &batch(G1, 1, 3, 1, 0)).unwrap();
    log.save_hard_state(
        G1,
        HardState {
            term: Term(1),
            vote: None,
            commit: LogIndex(0),
        },
    )
    .unwrap();
    f.sync();
    let log = f.log();
    log.append(G1, &batch(G1, 4, 3, 1, 0)).unwrap();
    log.truncate(G1, LogIndex(2)).unwrap();
    log.save_hard_state(
        G1,
        HardState {
            term: Term(2),
            vote: Some(NodeId(1)),
            commit: LogIndex(1),
        },
    )
    .unwrap();
    f.reopen();
    let log = f.log();
    assert_eq!(log.last_index(G1), LogIndex(3));
    assert_eq!(read_all(log, G1, 1, 3), expected(G1, 1..=3, 1, 0));
    assert_eq!(log.hard_state(G1).term, Term(1));
    assert_eq!(log.durable(G1), pos(3, 1));
}

fn hard_state_round_trips<F: Fixture>(f: &mut F) {
    let log = f.log();
    assert_eq!(log.hard_state(G1), HardState::default());
    for term in 1..=5u64 {
        for g in 1..=3u64 {
            let state = HardState {
                term: Term(term + g),
                vote: (term % 2 == 0).then_some(NodeId(g)),
                commit: LogIndex(term * 10),
            };
            f.log().save_hard_state(GroupId(g), state).unwrap();
        }
        let report = f.sync();
        assert_eq!(report.hard_states.len(), 3);
        assert!(report.log.is_empty());
        f.reopen();
        for g in 1..=3u64 {
            let state = f.log().hard_state(GroupId(g));
            assert_eq!(state.term, Term(term + g));
            assert_eq!(state.vote, (term % 2 == 0).then_some(NodeId(g)));
            assert_eq!(state.commit, LogIndex(term * 10));
        }
    }
    // Many groups: outgrows the first slot size.
    for g in 0..300u64 {
        f.log()
            .save_hard_state(
                GroupId(1000 + g),
                HardState {
                    term: Term(g),
                    vote: None,
                    commit: LogIndex(g),
                },
            )
            .unwrap();
    }
    f.sync();
    f.reopen();
    assert_eq!(f.log().hard_state(GroupId(1299)).commit, LogIndex(299));
    assert_eq!(f.log().hard_state(GroupId(3)).term, Term(8));
}

/// Batches whose bodies the disk log writes in place rather than copying (1 KiB and more),
/// between small ones, over several flushes (and, with small segments, segment rolls), read
/// back before and after a restart.
fn large_batches_round_trip<F: Fixture>(f: &mut F) {
    let mut next = 1;
    for (round, count) in [40, 1, 120, 2, 60, 90].into_iter().enumerate() {
        let log = f.log();
        log.append(G1, &batch(G1, next, count, 1, 7)).unwrap();
        log.append(G2, &batch(G2, next, count, 1, 7)).unwrap();
        next += count;
        if round % 2 == 1 {
            f.sync();
        }
    }
    let last = next - 1;
    assert_eq!(f.log().durable(G1), pos(last, 1));
    for group in [G1, G2] {
        assert_eq!(
            read_all(f.log(), group, 1, last),
            expected(group, 1..=last, 1, 7)
        );
    }
    f.reopen();
    for group in [G1, G2] {
        assert_eq!(
            read_all(f.log(), group, 1, last),
            expected(group, 1..=last, 1, 7)
        );
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod mem {
            $(#[test] fn $case() { super::$case(&mut super::MemFixture::new()); })*
        }
        mod disk {
            $(#[test] fn $case() { super::$case(&mut super::DiskFixture::new(8192)); })*
        }
        mod disk_large_segments {
            $(#[test] fn $case() { super::$case(&mut super::DiskFixture::new(1 << 20)); })*
        }
    };
}

conformance!(
    append_and_read_back,
    rejects_bad_appends,
    group_commit_takes_everything_staged_meanwhile,
    truncate_suffix,
    compact_prefix,
    unsynced_work_is_lost_on_restart,
    hard_state_round_trips,
    large_batches_round_trip,
);

#[test]
fn disk_compaction_deletes_whole_segments_oldest_first() {
    let mut f = DiskFixture::new(4096);
    for k in 0..150u64 {
        f.log().append(G1, &batch(G1, 1 + k * 4, 4, 1, 0)).unwrap();
        f.sync();
    }
    f.log().append(G2, &batch(G2, 1, 1, 1, 0)).unwrap();
    f.sync();
    let before = f.log().segment_sequences();
    assert!(before.len() > 5, "{before:?}");
    // G2 pins only the last segment; compacting G1 frees everything older.
    f.log().compact(G1, LogIndex(560), Term(1)).unwrap();
    f.sync();
    let after = f.log().segment_sequences();
    assert!(after.len() < before.len() / 2, "{before:?} -> {after:?}");
    assert_eq!(
        after.first().copied().unwrap(),
        *after.iter().min().unwrap()
    );
    for seq in &before {
        assert_eq!(
            log_helpers::segment_path(f.dir.path(), *seq).exists(),
            after.contains(seq),
            "segment {seq}"
        );
    }
    f.reopen();
    assert_eq!(f.log().first_index(G1), LogIndex(561));
    assert_eq!(
        read_all(f.log(), G1, 561, 600),
        expected(G1, 561..=600, 1, 0)
    );
    assert_eq!(f.log().term_at(G1, LogIndex(560)), Some(Term(1)));
    assert_eq!(read_all(f.log(), G2, 1, 1), expected(G2, 1..=1, 1, 0));
}

#[test]
fn disk_reads_evicted_batches_back_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = log_helpers::config(dir.path(), 1 << 20);
    config.cache_bytes_max = 0;
    let mut log = ringraft::log::DiskLog::open(config).unwrap();
    for k in 0..10u64 {
        log.append(G1, &batch(G1, 1 + k * 10, 10, 1, 7)).unwrap();
    }
    block_on(log.sync()).unwrap();
    assert_eq!(read_all(&log, G1, 5, 95), expected(G1, 5..=95, 1, 7));
}

#[test]
fn disk_log_runs_on_a_glommio_executor() {
    use glommio::{LocalExecutorBuilder, Placement};
    let dir = tempfile::tempdir().unwrap();
    let config = log_helpers::config(dir.path(), 1 << 16);
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(256 << 10)
        .make()
        .expect("executor");
    ex.run(async move {
        let mut log = ringraft::log::DiskLog::open(config).unwrap();
        let mut next = 1u64;
        let mut acked = 0u64;
        let mut pending = None;
        for _round in 0..50 {
            for _ in 0..4 {
                log.append(G1, &batch(G1, next, 8, 1, 0)).unwrap();
                next += 8;
            }
            if let Some(p) = pending.take() {
                let report = log.finish_flush(p.await).unwrap();
                let (_, position) = report.log[0];
                assert!(position.index.0 > acked);
                acked = position.index.0;
            }
            pending = log.start_flush().unwrap();
        }
        let report = log.finish_flush(pending.unwrap().await).unwrap();
        assert_eq!(report.log[0].1.index, LogIndex(next - 1));
        assert_eq!(read_all(&log, G1, 1, next - 1).len() as u64, next - 1);
    });
}

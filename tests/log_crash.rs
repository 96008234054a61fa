//! Crash and corruption cases on real files: each asserts exactly what recovery does.

mod log_helpers;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use log_helpers::{batch, block_on, config, payload, read_all, record_spans, segment_path};
use ringraft::log::hard_state::HARD_STATE_FILE;
use ringraft::log::inspect::Severity;
use ringraft::log::{inspect, DiskLog, Error, LogStore};
use ringraft::types::{GroupId, HardState, LogIndex, NodeId, Term};

const G: GroupId = GroupId(7);
const SEGMENT: u64 = 64 << 10;

/// Writes 5 batches of 3 entries (indexes 1..=15), each in its own flush.
fn five_flushes(dir: &Path) {
    let mut log = DiskLog::open(config(dir, SEGMENT)).unwrap();
    for k in 0..5u64 {
        log.append(G, &batch(G, 1 + 3 * k, 3, 1 + k / 2, 0))
            .unwrap();
        block_on(log.sync()).unwrap();
    }
}

fn zero(path: &Path, from: u64, len: u64) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&vec![0u8; len as usize], from).unwrap();
}

fn flip_bit(path: &Path, at: u64) {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x10;
    file.write_all_at(&b, at).unwrap();
}

fn expect_entries(log: &DiskLog, last: u64) {
    assert_eq!(log.last_index(G), LogIndex(last));
    let got = read_all(log, G, 1, last);
    for (i, term, p) in got {
        assert_eq!(p, payload(G, i, Term(term), 0));
    }
}

#[test]
fn cut_last_record_at_every_byte_is_a_torn_tail() {
    let pristine = tempfile::tempdir().unwrap();
    five_flushes(pristine.path());
    let seg = segment_path(pristine.path(), 1);
    let records = record_spans(&seg);
    assert_eq!(records.len(), 5);
    let (last_off, last_len) = records[4];
    let image = std::fs::read(&seg).unwrap();
    let work = tempfile::tempdir().unwrap();
    let work_seg = segment_path(work.path(), 1);
    for written in 0..last_len {
        std::fs::write(&work_seg, &image).unwrap();
        // The write reached only `written` bytes of the last record.
        zero(&work_seg, last_off + written, last_len - written);
        let mut log = DiskLog::open(config(work.path(), SEGMENT)).unwrap();
        let report = log.recovery_report().clone();
        let lost = &image[(last_off + written) as usize..(last_off + last_len) as usize];
        if lost.iter().all(|&b| b == 0) {
            // Only bytes that were zero anyway are missing: the record is intact.
            assert_eq!(report.torn_tail, None);
            expect_entries(&log, 15);
            continue;
        }
        if written == 0 {
            assert_eq!(report.torn_tail, None, "an unwritten record is a clean end");
        } else {
            let torn = report.torn_tail.expect("torn tail");
            assert_eq!(
                (torn.file.as_path(), torn.offset),
                (work_seg.as_path(), last_off),
                "written {written}"
            );
            assert_eq!(torn.records_discarded, 0);
        }
        expect_entries(&log, 12);
        // The log continues where the torn record was.
        log.append(G, &batch(G, 13, 1, 9, 0)).unwrap();
        block_on(log.sync()).unwrap();
        drop(log);
        let log = DiskLog::open(config(work.path(), SEGMENT)).unwrap();
        assert_eq!(log.recovery_report().torn_tail, None);
        expect_entries(&log, 13);
        drop(log);
        std::fs::remove_file(&work_seg).unwrap();
    }
}

#[test]
fn shortened_last_segment_file_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    five_flushes(dir.path());
    let seg = segment_path(dir.path(), 1);
    let (last_off, last_len) = record_spans(&seg)[4];
    let file = OpenOptions::new().write(true).open(&seg).unwrap();
    file.set_len(last_off + last_len / 2).unwrap();
    drop(file);
    let log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
    assert_eq!(
        log.recovery_report().torn_tail.as_ref().unwrap().offset,
        last_off
    );
    expect_entries(&log, 12);
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        SEGMENT,
        "restored to full size"
    );
}

#[test]
fn zeroed_tail_of_last_record_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    five_flushes(dir.path());
    let seg = segment_path(dir.path(), 1);
    let (last_off, last_len) = record_spans(&seg)[4];
    zero(&seg, last_off + last_len - 8, 8);
    let before = inspect(dir.path()).unwrap();
    println!("{before}");
    assert!(!before.is_clean() && !before.has_fatal(), "{before}");
    let log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
    let torn = log.recovery_report().torn_tail.clone().unwrap();
    assert_eq!(torn.offset, last_off);
    assert!(torn.bytes_discarded > 0 && torn.bytes_discarded <= last_len - 8);
    expect_entries(&log, 12);
    drop(log);
    assert!(inspect(dir.path()).unwrap().is_clean());
}

#[test]
fn flipped_bit_in_a_middle_record_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    five_flushes(dir.path());
    let seg = segment_path(dir.path(), 1);
    let (off, len) = record_spans(&seg)[2];
    let image = std::fs::read(&seg).unwrap();
    // A bit in the body, then a bit in the header: both refuse to open, naming the spot.
    for at in [off + len - 20, off + 20] {
        std::fs::write(&seg, &image).unwrap();
        flip_bit(&seg, at);
        let err = DiskLog::open(config(dir.path(), SEGMENT))
            .err()
            .expect("refuses to open");
        let c = err.corruption().unwrap_or_else(|| panic!("{err}"));
        assert_eq!(c.file, seg);
        assert_eq!(c.offset, off);
        if at > off + 64 {
            // The header is intact, so the report names the group and the indexes.
            assert_eq!(c.group, Some(G));
            assert_eq!(c.indexes, Some((LogIndex(7), LogIndex(9))));
        }
        assert!(err.to_string().contains(&format!("offset {off}")), "{err}");
        let report = inspect(dir.path()).unwrap();
        assert!(report.has_fatal(), "{report}");
        let f = report
            .findings()
            .find(|f| f.severity == Severity::Fatal)
            .unwrap();
        assert_eq!((f.file.as_path(), f.offset), (seg.as_path(), Some(off)));
        // Nothing was modified.
        let mut expect = image.clone();
        expect[at as usize] ^= 0x10;
        assert_eq!(std::fs::read(&seg).unwrap(), expect);
    }
}

#[test]
fn torn_multi_page_final_write_is_cut_with_everything_after_it() {
    // One flush writes three records; the page cache persisted the later ones but not the
    // first: a torn final write, not corruption.
    let dir = tempfile::tempdir().unwrap();
    let mut log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
    log.append(G, &batch(G, 1, 3, 1, 0)).unwrap();
    block_on(log.sync()).unwrap();
    for k in 0..3u64 {
        log.append(G, &batch(G, 4 + 3 * k, 3, 1, 0)).unwrap();
    }
    block_on(log.sync()).unwrap();
    drop(log);
    let seg = segment_path(dir.path(), 1);
    let (off, _) = record_spans(&seg)[1];
    flip_bit(&seg, off + 100);
    let log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
    let torn = log.recovery_report().torn_tail.clone().unwrap();
    assert_eq!((torn.offset, torn.records_discarded), (off, 2));
    expect_entries(&log, 3);
}

/// A directory holding 80 synced 3-entry batches in 4 KiB segments (several segments).
fn several_segments_written() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut log = DiskLog::open(config(dir.path(), 4096)).unwrap();
    for k in 0..80u64 {
        log.append(G, &batch(G, 1 + 3 * k, 3, 1, 0)).unwrap();
        block_on(log.sync()).unwrap();
    }
    dir
}

#[test]
fn bad_record_at_the_end_of_an_earlier_segment_is_corruption() {
    let dir = several_segments_written();
    let seg = segment_path(dir.path(), 2);
    assert!(segment_path(dir.path(), 3).exists());
    let records = record_spans(&seg);
    let (off, len) = *records.last().unwrap();
    zero(&seg, off + len - 8, 8);
    let err = DiskLog::open(config(dir.path(), 4096)).err().unwrap();
    let c = err.corruption().unwrap();
    assert_eq!((c.file.as_path(), c.offset), (seg.as_path(), off));
    assert!(c.reason.contains("later segments"), "{err}");
}

#[test]
fn removed_segment_is_corruption_naming_it() {
    let dir = several_segments_written();
    let missing = segment_path(dir.path(), 2);
    std::fs::remove_file(&missing).unwrap();
    let err = DiskLog::open(config(dir.path(), 4096)).err().unwrap();
    assert_eq!(err.corruption().unwrap().file, missing, "{err}");
    let report = inspect(dir.path()).unwrap();
    assert!(report.has_fatal());
    assert!(report.findings().any(|f| f.file == missing));
}

fn hard(term: u64) -> HardState {
    HardState {
        term: Term(term),
        vote: Some(NodeId(term)),
        commit: LogIndex(term * 2),
    }
}

/// Saves terms 1, 2, 3 in three flushes: slot 0 ends with term 3 (newest), slot 1 with term 2.
fn three_hard_states(dir: &Path) -> (std::path::PathBuf, u64) {
    let mut log = DiskLog::open(config(dir, SEGMENT)).unwrap();
    for term in 1..=3 {
        log.save_hard_state(G, hard(term)).unwrap();
        block_on(log.sync()).unwrap();
    }
    drop(log);
    let path = dir.join(HARD_STATE_FILE);
    let slot_bytes = std::fs::metadata(&path).unwrap().len() / 2;
    (path, slot_bytes)
}

#[test]
fn corrupt_newest_hard_state_slot_falls_back_to_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (path, slot_bytes) = three_hard_states(dir.path());
    let log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
    assert_eq!(log.hard_state(G), hard(3));
    drop(log);
    // Which slot holds term 3? Damage it: recovery must return term 2.
    for slot in 0..2u64 {
        let image = std::fs::read(&path).unwrap();
        flip_bit(&path, slot * slot_bytes + 50);
        let log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
        let state = log.hard_state(G);
        assert_eq!(
            log.recovery_report().damaged_hard_state_slots,
            vec![slot as usize]
        );
        assert!(state == hard(2) || state == hard(3));
        let newest_damaged = state == hard(2);
        drop(log);
        let report = inspect(dir.path()).unwrap();
        assert!(!report.is_clean() && !report.has_fatal(), "{report}");
        std::fs::write(&path, &image).unwrap();
        if newest_damaged {
            // Saving again overwrites the damaged slot and leaves term 2 as the fallback.
            let mut log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
            log.save_hard_state(G, hard(4)).unwrap();
            block_on(log.sync()).unwrap();
            drop(log);
            let log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
            assert_eq!(log.hard_state(G), hard(4));
            assert!(log.recovery_report().damaged_hard_state_slots.is_empty());
            return;
        }
    }
    panic!("no slot held the newest state");
}

#[test]
fn both_hard_state_slots_corrupt_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let (path, slot_bytes) = three_hard_states(dir.path());
    flip_bit(&path, 50);
    flip_bit(&path, slot_bytes + 50);
    let err = DiskLog::open(config(dir.path(), SEGMENT)).err().unwrap();
    assert!(
        matches!(&err, Error::HardStateCorrupt { path: p, .. } if *p == path),
        "{err}"
    );
    assert!(inspect(dir.path()).unwrap().has_fatal());
}

#[test]
fn hard_state_file_too_short_for_two_slots_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    five_flushes(dir.path());
    let path = dir.path().join(HARD_STATE_FILE);
    std::fs::write(&path, [0u8; 100]).unwrap();
    let err = DiskLog::open(config(dir.path(), SEGMENT)).err().unwrap();
    assert!(
        matches!(&err, Error::HardStateCorrupt { path: p, .. } if *p == path),
        "{err}"
    );
    let report = inspect(dir.path()).unwrap();
    assert!(
        report
            .findings()
            .any(|f| f.severity == Severity::Fatal && f.file == path),
        "{report}"
    );
}

#[test]
fn leftover_temporary_segment_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    five_flushes(dir.path());
    let temp = dir.path().join("00000000000000000002.seg.tmp");
    std::fs::write(&temp, [1u8; 100]).unwrap();
    assert!(!inspect(dir.path()).unwrap().is_clean());
    let log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
    assert_eq!(
        log.recovery_report().removed_temporaries,
        vec![temp.clone()]
    );
    assert!(!temp.exists());
    expect_entries(&log, 15);
}

#[test]
fn inspect_reports_groups_terms_and_hard_state() {
    let data = tempfile::tempdir().unwrap();
    let shard = ringraft::log::shard_dir(data.path(), ringraft::types::ShardId(0));
    let mut log = DiskLog::open(config(&shard, 4096)).unwrap();
    for k in 0..30u64 {
        log.append(G, &batch(G, 1 + 3 * k, 3, 1 + k / 10, 0))
            .unwrap();
        log.append(GroupId(8), &batch(GroupId(8), 1 + k, 1, 5, 0))
            .unwrap();
        block_on(log.sync()).unwrap();
    }
    log.truncate(G, LogIndex(80)).unwrap();
    log.save_hard_state(G, hard(3)).unwrap();
    block_on(log.sync()).unwrap();
    drop(log);
    let report = inspect(data.path()).unwrap();
    println!("{report}");
    assert!(report.is_clean(), "{report}");
    let shard = &report.shards[0];
    assert_eq!(shard.cluster_id, Some(log_helpers::CLUSTER));
    let g = shard.groups.iter().find(|s| s.group == G).unwrap();
    assert_eq!((g.first, g.last), (LogIndex(1), LogIndex(79)));
    assert_eq!(
        g.terms
            .iter()
            .map(|r| (r.term.0, r.first.0, r.last.0))
            .collect::<Vec<_>>(),
        vec![(1, 1, 30), (2, 31, 60), (3, 61, 79)]
    );
    assert_eq!(g.records, 31);
    assert_eq!(g.hard_state, Some(hard(3)));
    let text = report.to_string();
    assert!(
        text.contains(
            "group g7: indexes i1..=i79, 31 records, terms t1@i1..=i30 t2@i31..=i60 t3@i61..=i79"
        ),
        "{text}"
    );
    assert!(text.contains("verdict: OK"), "{text}");
}

//! Segment recycling: compaction keeps deleted segment files for reuse, and a recycled file's
//! records of earlier lives never count as part of the log, whatever recovery finds there.

mod log_helpers;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use log_helpers::{batch, block_on, config, payload, read_all, record_spans, segment_path};
use ringraft::log::gather::GatherWrite;
use ringraft::log::inspect::Severity;
use ringraft::log::record::{encode_record, RecordHeader, RecordKind};
use ringraft::log::segment::{
    parse_segment_name, SegmentHeader, RETIRED_KEEP, SEGMENT_FORMAT_VERSION, SEGMENT_HEADER_BYTES,
};
use ringraft::log::{inspect, DiskLog, Error, LogStore};
use ringraft::types::{GroupId, LogIndex, Term};

const G: GroupId = GroupId(3);
const SEGMENT: u64 = 4096;
const TERM: u64 = 2;

/// The segment files of `dir` by sequence.
fn segments(dir: &Path) -> BTreeMap<u64, PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            parse_segment_name(&name).map(|seq| (seq, e.path()))
        })
        .collect()
}

fn header_of(path: &Path) -> SegmentHeader {
    let mut h = [0u8; SEGMENT_HEADER_BYTES as usize];
    File::open(path).unwrap().read_exact_at(&mut h, 0).unwrap();
    SegmentHeader::decode(&h).unwrap()
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// Appends 3 entries after `last` in their own flush, first compacting all but the last 3
/// entries when `compact`; returns the new last index.
fn flush_three(log: &mut DiskLog, last: u64, compact: bool) -> u64 {
    if compact && last > 3 {
        log.compact(G, LogIndex(last - 3), Term(TERM)).unwrap();
    }
    log.append(G, &batch(G, last + 1, 3, TERM, 0)).unwrap();
    block_on(log.sync()).unwrap();
    last + 3
}

fn expect_entries(log: &DiskLog, first: u64, last: u64) {
    assert_eq!(log.last_index(G), LogIndex(last));
    expect_range(log, first, last);
}

/// Entries `first..=last` read back as written (salt 0).
fn expect_range(log: &DiskLog, first: u64, last: u64) {
    let got = read_all(log, G, first, last);
    assert_eq!(got.len() as u64, last + 1 - first);
    for (k, (i, term, p)) in got.into_iter().enumerate() {
        assert_eq!((i, term), (first + k as u64, TERM));
        assert_eq!(p, payload(G, i, Term(TERM), 0));
    }
}

#[test]
fn compaction_recycles_segment_files_and_everything_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
    // An open handle per file ever seen keeps its inode allocated, so distinct inodes are
    // distinct files (the file system cannot hand a freed number to a new file).
    let mut handles: BTreeMap<u64, File> = BTreeMap::new();
    let mut recycled: BTreeMap<u64, bool> = BTreeMap::new();
    let mut last = 0;
    for _ in 0..600 {
        last = flush_three(&mut log, last, true);
        for (seq, path) in segments(dir.path()) {
            let file = File::open(&path).unwrap();
            handles
                .entry(file.metadata().unwrap().ino())
                .or_insert(file);
            recycled.insert(seq, header_of(&path).recycled);
        }
        // Live segments (at most the active one and the one before), a spare being prepared,
        // the kept retired files, the hard-state file.
        assert!(files_in(dir.path()) <= 2 + 1 + RETIRED_KEEP + 1);
    }
    let created = *recycled.keys().last().unwrap();
    assert!(created >= 30, "only {created} segments");
    let zero_filled: Vec<u64> = recycled
        .iter()
        .filter(|&(&seq, &r)| seq >= 5 && !r)
        .map(|(&seq, _)| seq)
        .collect();
    // The writer prepares its spare while idle, from a kept file if one is there and by
    // zero-fill otherwise; when compaction has not yet retired a file at that moment (a
    // matter of timing on a loaded machine) a segment is still zero-filled. Without recycling
    // every one of them would be.
    let after_warm_up = created as usize - 4;
    assert!(
        zero_filled.len() * 4 <= after_warm_up,
        "{} of {after_warm_up} segments zero-filled after warm-up: {zero_filled:?}",
        zero_filled.len()
    );
    // Each zero-filled segment is a new file; every other one reuses a kept file.
    assert!(
        handles.len() <= 2 + 1 + RETIRED_KEEP + 2 + zero_filled.len(),
        "{} distinct files for {created} segments ({} zero-filled after warm-up)",
        handles.len(),
        zero_filled.len()
    );
    let first = log.first_index(G).0;
    expect_entries(&log, first, last);
    drop(log);
    let mut log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
    assert_eq!(log.recovery_report().torn_tail, None);
    assert!(inspect(dir.path()).unwrap().is_clean());
    assert_eq!(log.first_index(G).0, first);
    expect_entries(&log, first, last);
    // It goes on after the restart (spares were deleted on open; zero-fill until the next
    // compaction retires a file), and still reads back.
    for _ in 0..100 {
        last = flush_three(&mut log, last, true);
    }
    drop(log);
    let log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
    expect_entries(&log, log.first_index(G).0, last);
}

/// A log whose last segment is recycled and holds `fresh` 3-entry records of its new life, the
/// last three without compaction; returns (last index, the last segment, its sequence).
fn recycled_tail(dir: &Path, fresh: usize) -> (u64, PathBuf, u64) {
    let mut log = DiskLog::open(config(dir, SEGMENT)).unwrap();
    let mut last = 0;
    let mut before = 1;
    for _ in 0..1000 {
        last = flush_three(&mut log, last, true);
        let (seq, path) = segments(dir).pop_last().unwrap();
        let rolled = std::mem::replace(&mut before, seq) != seq;
        if rolled && header_of(&path).recycled {
            for _ in 0..fresh {
                last = flush_three(&mut log, last, false);
            }
            assert_eq!(
                *segments(dir).keys().last().unwrap(),
                seq,
                "still the last one"
            );
            return (last, path, seq);
        }
    }
    panic!("no segment was recycled");
}

/// A record of `G` holding entries `first..first+3`, as written to segment `segment` by
/// flush `flush`.
fn entries_record(first: u64, flush: u64, segment: u64) -> Vec<u8> {
    let b = batch(G, first, 3, TERM, 0);
    let header = RecordHeader {
        kind: RecordKind::Entries,
        body_len: b.body().len() as u32,
        count: 3,
        group: G,
        first: LogIndex(first),
        term: Term(TERM),
        flush,
        skip: b.skip(),
        segment,
    };
    let mut out = GatherWrite::with_capacity(0);
    encode_record(&mut out, &header, b.body());
    out.to_vec()
}

/// The end of the last record of `path` (where its end marker is) and that record's flush.
fn tail_of(path: &Path) -> (u64, u64) {
    let (off, _) = *record_spans(path).last().unwrap();
    let image = std::fs::read(path).unwrap();
    let h = RecordHeader::decode(&image[off as usize..]).unwrap();
    (off + h.record_len() as u64, h.flush)
}

fn write_at(path: &Path, at: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, at).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_recycled_segment_recovers_exactly_its_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let (last, seg, seq) = recycled_tail(dir.path(), 3);
    let (end, flush) = tail_of(&seg);
    let image = std::fs::read(&seg).unwrap();
    // Behind the end marker lie records of an earlier life.
    assert!(image[end as usize..(end + 64) as usize]
        .iter()
        .all(|&b| b == 0));
    assert!(image[(end + 64) as usize..].iter().any(|&b| b != 0));
    let log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
    assert_eq!(log.recovery_report().torn_tail, None);
    let first = log.first_index(G).0;
    expect_entries(&log, first, last);
    drop(log);
    assert!(inspect(dir.path()).unwrap().is_clean());
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        image,
        "a clean open changes nothing"
    );

    // The flush after the last one was torn: it wrote its first `w` bytes over the end marker
    // and no more, so bytes of an earlier life follow what it wrote.
    let next = entries_record(last + 1, flush + 1, seq);
    // (The last bytes of a record are padding, which the checksum does not cover.)
    let unpadded = 64 + RecordHeader::decode(&next).unwrap().body_len as usize;
    for w in 1..unpadded {
        std::fs::write(&seg, &image).unwrap();
        write_at(&seg, end, &next[..w]);
        let at = end as usize;
        if image[at + w..at + unpadded] == next[w..unpadded] {
            // The bytes not written were there already (the earlier life held a record of
            // the same shape there): the record is whole.
            continue;
        }
        let log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
        let torn = log.recovery_report().torn_tail.clone().expect("torn tail");
        assert_eq!((torn.offset, torn.records_discarded), (end, 0), "w {w}");
        expect_entries(&log, first, last);
        drop(log);
        let log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
        assert_eq!(log.recovery_report().torn_tail, None, "repaired, w {w}");
        expect_entries(&log, first, last);
    }
    // The whole record reached the disk but not its end marker: the record counts, the bytes
    // of the earlier life after it do not.
    std::fs::write(&seg, &image).unwrap();
    write_at(&seg, end, &next);
    let log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
    let torn = log.recovery_report().torn_tail.clone().expect("torn tail");
    assert_eq!(torn.offset, end + next.len() as u64);
    expect_entries(&log, first, last + 3);
}

#[test]
fn a_stale_record_with_the_next_index_right_after_the_tail_is_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    let (last, seg, seq) = recycled_tail(dir.path(), 3);
    let (end, flush) = tail_of(&seg);
    let image = std::fs::read(&seg).unwrap();
    // Right where the new life ends (its end marker lost in a torn write), a record of the
    // file's earlier life holding exactly the next indexes, of the same term and a later
    // flush: valid in every way but its segment sequence.
    for (segment, taken) in [(seq - 1, false), (seq, true)] {
        std::fs::write(&seg, &image).unwrap();
        write_at(&seg, end, &entries_record(last + 1, flush + 1, segment));
        let work = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), work.path());
        let mut log = DiskLog::open(config(work.path(), SEGMENT)).unwrap();
        let first = log.first_index(G).0;
        if taken {
            // The control: written in this life, the same record is part of the log, so only
            // the segment sequence tells the stale one apart.
            expect_entries(&log, first, last + 3);
            continue;
        }
        let torn = log.recovery_report().torn_tail.clone().expect("torn tail");
        assert_eq!((torn.offset, torn.records_discarded), (end, 0));
        expect_entries(&log, first, last);
        // The log goes on from there, and reads back after a restart.
        log.append(G, &batch(G, last + 1, 3, TERM, 7)).unwrap();
        block_on(log.sync()).unwrap();
        drop(log);
        let log = DiskLog::open(config(work.path(), SEGMENT)).unwrap();
        assert_eq!(log.recovery_report().torn_tail, None);
        assert_eq!(log.last_index(G), LogIndex(last + 3));
        expect_range(&log, first, last);
        let tail = read_all(&log, G, last + 1, last + 3);
        assert_eq!(tail[0].2, payload(G, last + 1, Term(TERM), 7));
    }
}

#[test]
fn a_flipped_byte_in_a_recycled_segment_is_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let (last, seg, _) = recycled_tail(dir.path(), 3);
    let spans = record_spans(&seg);
    let image = std::fs::read(&seg).unwrap();
    let flip = |at: u64| {
        let mut bytes = image.clone();
        bytes[at as usize] ^= 0x10;
        std::fs::write(&seg, &bytes).unwrap();
    };
    // In the last record (the final write): a torn tail, cut as in a zero-filled segment.
    let (off, len) = *spans.last().unwrap();
    flip(off + len - 8);
    let log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
    let torn = log.recovery_report().torn_tail.clone().expect("torn tail");
    assert_eq!((torn.offset, torn.records_discarded), (off, 0));
    expect_entries(&log, log.first_index(G).0, last - 3);
    drop(log);
    // In a record followed by records of two later flushes: corruption, nothing modified.
    let (off, len) = spans[spans.len() - 3];
    for at in [off + 20, off + len - 8] {
        flip(at);
        let err = DiskLog::open(config(dir.path(), SEGMENT))
            .err()
            .expect("refused");
        let c = err.corruption().unwrap_or_else(|| panic!("{err}"));
        assert_eq!((c.file.as_path(), c.offset), (seg.as_path(), off), "{err}");
        assert!(inspect(dir.path()).unwrap().has_fatal());
        let mut expect = image.clone();
        expect[at as usize] ^= 0x10;
        assert_eq!(std::fs::read(&seg).unwrap(), expect);
    }
}

#[test]
fn a_bad_record_in_an_earlier_recycled_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (mut last, seg, seq) = recycled_tail(dir.path(), 1);
    let mut log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
    while *segments(dir.path()).keys().last().unwrap() == seq {
        last = flush_three(&mut log, last, false);
    }
    drop(log);
    assert!(header_of(&seg).recycled);
    let log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
    expect_entries(&log, log.first_index(G).0, last);
    drop(log);
    let (off, len) = *record_spans(&seg).last().unwrap();
    let image = std::fs::read(&seg).unwrap();
    let mut bytes = image.clone();
    bytes[(off + len - 8) as usize] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let err = DiskLog::open(config(dir.path(), SEGMENT))
        .err()
        .expect("refused");
    let c = err.corruption().unwrap_or_else(|| panic!("{err}"));
    assert_eq!((c.file.as_path(), c.offset), (seg.as_path(), off), "{err}");
    // Its end marker wiped by a record of an earlier life: corruption too (it is not last).
    let (end, flush) = tail_of(&seg);
    std::fs::write(&seg, &image).unwrap();
    write_at(&seg, end, &entries_record(last + 1, flush, seq - 1));
    let err = DiskLog::open(config(dir.path(), SEGMENT))
        .err()
        .expect("refused");
    let c = err.corruption().unwrap_or_else(|| panic!("{err}"));
    assert_eq!((c.file.as_path(), c.offset), (seg.as_path(), end), "{err}");
}

#[test]
fn a_segment_of_another_format_version_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
    flush_three(&mut log, 0, false);
    drop(log);
    let seg = segment_path(dir.path(), 1);
    let mut h = std::fs::read(&seg).unwrap()[..64].to_vec();
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32fast::hash(&h[..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    write_at(&seg, 0, &h);
    let err = DiskLog::open(config(dir.path(), SEGMENT))
        .err()
        .expect("refused");
    match &err {
        Error::UnsupportedFormat {
            path,
            found,
            supported,
        } => assert_eq!(
            (path.as_path(), *found, *supported),
            (seg.as_path(), 1, SEGMENT_FORMAT_VERSION)
        ),
        other => panic!("{other}"),
    }
    let report = inspect(dir.path()).unwrap();
    assert!(report.has_fatal(), "{report}");
}

#[test]
fn an_earlier_segment_shorter_than_its_header_refuses_to_open() {
    // Group G's records fill segment 1 and end there; group H's fill the later ones. Cut
    // segment 1 at a record boundary: read zero-extended it would end cleanly there, and G's
    // synced entries after the cut would be gone without a trace.
    const H: GroupId = GroupId(4);
    let dir = tempfile::tempdir().unwrap();
    let mut log = DiskLog::open(config(dir.path(), SEGMENT)).unwrap();
    let seg = segment_path(dir.path(), 1);
    let mut last = 0;
    loop {
        log.append(G, &batch(G, last + 1, 3, TERM, 0)).unwrap();
        block_on(log.sync()).unwrap();
        last += 3;
        let (off, len) = *record_spans(&seg).last().unwrap();
        if off + 3 * len > SEGMENT {
            break;
        }
    }
    for k in 0..40 {
        log.append(H, &batch(H, 1 + 3 * k, 3, TERM, 0)).unwrap();
        block_on(log.sync()).unwrap();
    }
    drop(log);
    let spans = record_spans(&seg);
    assert!(spans.len() > 3 && segments(dir.path()).len() > 2);
    let (off, _) = spans[spans.len() - 2];
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(off)
        .unwrap();
    let err = DiskLog::open(config(dir.path(), SEGMENT))
        .err()
        .expect("refused");
    let c = err.corruption().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(c.file, seg);
    assert!(c.reason.contains("shorter than its header"), "{err}");
    let report = inspect(dir.path()).unwrap();
    let f = report.findings().next().unwrap();
    assert_eq!(
        (f.severity, f.file.as_path()),
        (Severity::Fatal, seg.as_path())
    );
}

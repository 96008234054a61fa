//! The snapshot store: streamed round trips, choice of the latest snapshot, retention, raw
//! transfer between stores, detection of damaged and truncated files, and crash and fault
//! behaviour (an interrupted or failed write leaves the previous snapshot as the latest).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ringraft::log::{FaultOp, FaultPlan};
use ringraft::snapshot::format::{
    header_len, SNAPSHOT_VERSION, SNAPSHOT_VERSION_WITHOUT_SESSIONS, TRAILER_BYTES,
};
use ringraft::snapshot::{
    RawSnapshotFile, RawSnapshotWriter, SnapshotError, SnapshotInfo, SnapshotRead, SnapshotStore,
};
use ringraft::types::{GroupId, LogIndex, Term};

const G: GroupId = GroupId(7);
const EIO: i32 = 5;
const ENOSPC: i32 = 28;
const MEMBERSHIP: &[u8] = b"voters n1 n2 n3; learners n4";

fn meta(group: GroupId, index: u64) -> SnapshotInfo {
    SnapshotInfo {
        group,
        index: LogIndex(index),
        term: Term(index / 10 + 1),
        membership: MEMBERSHIP.to_vec(),
    }
}

/// Deterministic, non-repeating body bytes.
fn body(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `bytes` into `out` in pieces of varying small sizes.
fn write_pieces(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let mut at = 0;
    let mut piece = 1;
    while at < bytes.len() {
        let end = (at + piece).min(bytes.len());
        out.write_all(&bytes[at..end])?;
        at = end;
        piece = piece * 7 % 4099 + 1;
    }
    Ok(())
}

/// Writes `bytes` into a new snapshot in small pieces and finishes it.
fn write_snapshot(store: &SnapshotStore, meta: SnapshotInfo, bytes: &[u8]) -> SnapshotInfo {
    let mut writer = store.create(meta).unwrap();
    write_pieces(&mut writer, bytes).unwrap();
    writer.finish().unwrap()
}

fn read_body(store: &SnapshotStore, group: GroupId, index: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    store
        .open_body(group, LogIndex(index))
        .unwrap()
        .read_to_end(&mut out)?;
    Ok(out)
}

fn temporaries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect()
}

fn flip_bit(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x04;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_multi_mib_body_written_in_small_pieces_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(&dir.path().join("snapshots"), None).unwrap();
    let bytes = body(5 << 20, 1);
    let written = write_snapshot(&store, meta(G, 1234), &bytes);
    assert_eq!(written, meta(G, 1234));
    assert_eq!(store.latest(G).unwrap(), Some(meta(G, 1234)));
    let mut reader = store.open_body(G, LogIndex(1234)).unwrap();
    assert_eq!(reader.meta(), &meta(G, 1234));
    assert_eq!(reader.remaining(), bytes.len() as u64);
    let mut back = Vec::new();
    // Small reads, so the stream is exercised piece by piece.
    let mut buf = [0u8; 3001];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        back.extend_from_slice(&buf[..n]);
    }
    assert!(back == bytes, "body differs after the round trip");
    let file_len = std::fs::metadata(store.path(G, LogIndex(1234)))
        .unwrap()
        .len();
    assert_eq!(
        file_len,
        (header_len(MEMBERSHIP.len()) + bytes.len() + TRAILER_BYTES) as u64
    );
    assert!(temporaries(store.dir()).is_empty());
}

/// A file written before client sessions existed (format version 1) still opens, and says its
/// body holds no sessions; the current version's does.
#[test]
fn snapshots_of_the_version_before_sessions_open_without_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), None).unwrap();
    let bytes = body(1000, 3);
    write_snapshot(&store, meta(G, 10), &bytes);
    assert!(store.open_body(G, LogIndex(10)).unwrap().holds_sessions());
    let path = store.path(G, LogIndex(10));
    let mut file = std::fs::read(&path).unwrap();
    assert_eq!(file[8..12], SNAPSHOT_VERSION.to_le_bytes());
    file[8..12].copy_from_slice(&SNAPSHOT_VERSION_WITHOUT_SESSIONS.to_le_bytes());
    let crc_at = header_len(MEMBERSHIP.len()) - 4;
    let crc = crc32fast::hash(&file[..crc_at]);
    file[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, file).unwrap();
    assert_eq!(store.latest(G).unwrap(), Some(meta(G, 10)));
    assert!(!store.open_body(G, LogIndex(10)).unwrap().holds_sessions());
    assert_eq!(read_body(&store, G, 10).unwrap(), bytes);
}

#[test]
fn empty_bodies_and_the_largest_membership_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), None).unwrap();
    let mut big = meta(G, 3);
    big.membership = body(64 << 10, 9);
    assert_eq!(store.create(big.clone()).unwrap().finish().unwrap(), big);
    assert_eq!(store.latest(G).unwrap(), Some(big.clone()));
    assert!(read_body(&store, G, 3).unwrap().is_empty());

    big.membership.push(0);
    match store.create(big) {
        Err(SnapshotError::MembershipTooLarge { bytes, max }) => {
            assert_eq!((bytes, max), ((64 << 10) + 1, 64 << 10))
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn latest_is_the_highest_index_of_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), None).unwrap();
    assert_eq!(store.latest(G).unwrap(), None);
    for index in [9, 100, 10, 99] {
        write_snapshot(&store, meta(G, index), &body(1000, index));
    }
    write_snapshot(&store, meta(GroupId(8), 500), &body(10, 0));
    assert_eq!(store.latest(G).unwrap(), Some(meta(G, 100)));
    assert_eq!(
        store.latest(GroupId(8)).unwrap(),
        Some(meta(GroupId(8), 500))
    );
    assert_eq!(store.latest(GroupId(6)).unwrap(), None);
    assert_eq!(
        store.list(G).unwrap(),
        [9, 10, 99, 100].map(LogIndex).to_vec()
    );
    assert_eq!(read_body(&store, G, 10).unwrap(), body(1000, 10));
    // A reopened store sees the same.
    drop(store);
    let store = SnapshotStore::open(dir.path(), None).unwrap();
    assert_eq!(store.latest(G).unwrap(), Some(meta(G, 100)));
}

#[test]
fn retain_keeps_only_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), None).unwrap();
    for index in 1..=5 {
        write_snapshot(&store, meta(G, index * 10), &body(100, index));
    }
    write_snapshot(&store, meta(GroupId(1), 10), &body(100, 0));
    assert!(matches!(store.retain(G, 0), Err(SnapshotError::KeepNone)));
    assert_eq!(store.list(G).unwrap().len(), 5);
    store.retain(G, 2).unwrap();
    assert_eq!(store.list(G).unwrap(), vec![LogIndex(40), LogIndex(50)]);
    store.retain(G, 5).unwrap();
    assert_eq!(store.list(G).unwrap(), vec![LogIndex(40), LogIndex(50)]);
    store.retain(G, 1).unwrap();
    assert_eq!(store.list(G).unwrap(), vec![LogIndex(50)]);
    assert_eq!(store.latest(G).unwrap(), Some(meta(G, 50)));
    assert_eq!(store.list(GroupId(1)).unwrap(), vec![LogIndex(10)]);
    assert!(matches!(
        store.open_body(G, LogIndex(40)),
        Err(SnapshotError::NotFound { .. })
    ));
}

/// Sends the file of `group`'s snapshot at `index` from `from` to `to` in chunks of `chunk`.
fn transfer(
    from: &SnapshotStore,
    to: &SnapshotStore,
    group: GroupId,
    index: u64,
    chunk: usize,
) -> Result<SnapshotInfo, SnapshotError> {
    let source = from.open_raw(group, LogIndex(index))?;
    let mut receiver = to.receive(group)?;
    send_chunks(&source, &mut receiver, 0, chunk)?;
    receiver.finish()
}

/// Writes the chunks of `source` from `offset` to its end into `receiver`, `chunk` bytes at a
/// time.
fn send_chunks(
    source: &RawSnapshotFile,
    receiver: &mut RawSnapshotWriter,
    mut offset: u64,
    chunk: usize,
) -> Result<(), SnapshotError> {
    loop {
        let bytes = source.read_chunk(offset, chunk)?;
        if bytes.is_empty() {
            assert_eq!(offset, source.total_len());
            return Ok(());
        }
        receiver.write_chunk(offset, &bytes)?;
        offset += bytes.len() as u64;
    }
}

#[test]
fn a_raw_transfer_yields_an_identical_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = SnapshotStore::open(&dir.path().join("a"), None).unwrap();
    let b = SnapshotStore::open(&dir.path().join("b"), None).unwrap();
    let bytes = body(3 << 20, 2);
    let sent = write_snapshot(&a, meta(G, 77), &bytes);
    let received = transfer(&a, &b, G, 77, 100_003).unwrap();
    assert_eq!(received, sent);
    assert!(
        std::fs::read(a.path(G, LogIndex(77))).unwrap()
            == std::fs::read(b.path(G, LogIndex(77))).unwrap(),
        "transferred file differs"
    );
    assert_eq!(b.latest(G).unwrap(), Some(sent));
    assert!(read_body(&b, G, 77).unwrap() == bytes);
    assert!(temporaries(b.dir()).is_empty());

    // read_chunk never returns more than asked, nor past the end.
    let source = a.open_raw(G, LogIndex(77)).unwrap();
    let total = source.total_len();
    assert_eq!(source.read_chunk(10, 5).unwrap().len(), 5);
    assert_eq!(source.read_chunk(total - 3, 1000).unwrap().len(), 3);
    assert!(source.read_chunk(total + 9, 10).unwrap().is_empty());
}

/// A transfer started before retention prunes its snapshot (two newer snapshots taken while it
/// runs, each followed by `retain(2)` as the engine does) still sends the whole file, and the
/// receiver verifies it.
#[test]
fn a_transfer_finishes_although_its_snapshot_is_pruned_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let a = SnapshotStore::open(&dir.path().join("a"), None).unwrap();
    let b = SnapshotStore::open(&dir.path().join("b"), None).unwrap();
    let bytes = body(1 << 20, 3);
    let sent = write_snapshot(&a, meta(G, 100), &bytes);
    let chunk = 64 << 10;
    let source = a.open_raw(G, LogIndex(100)).unwrap();
    let mut receiver = b.receive(G).unwrap();
    let first = source.read_chunk(0, chunk).unwrap();
    receiver.write_chunk(0, &first).unwrap();
    for index in [200, 300] {
        write_snapshot(&a, meta(G, index), &body(1000, index));
        a.retain(G, 2).unwrap();
    }
    assert_eq!(a.list(G).unwrap(), vec![LogIndex(200), LogIndex(300)]);
    assert!(!a.path(G, LogIndex(100)).exists());
    send_chunks(&source, &mut receiver, first.len() as u64, chunk).unwrap();
    assert_eq!(receiver.finish().unwrap(), sent);
    assert_eq!(b.latest(G).unwrap(), Some(sent));
    assert!(read_body(&b, G, 100).unwrap() == bytes);
}

#[test]
fn a_snapshot_of_another_group_is_refused_on_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let a = SnapshotStore::open(&dir.path().join("a"), None).unwrap();
    let b = SnapshotStore::open(&dir.path().join("b"), None).unwrap();
    write_snapshot(&a, meta(G, 5), &body(1000, 5));
    let mut receiver = b.receive(GroupId(8)).unwrap();
    let bytes = a
        .open_raw(G, LogIndex(5))
        .unwrap()
        .read_chunk(0, usize::MAX)
        .unwrap();
    receiver.write_chunk(0, &bytes).unwrap();
    match receiver.finish() {
        Err(SnapshotError::WrongGroup {
            expected, found, ..
        }) => assert_eq!((expected, found), (GroupId(8), G)),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(b.latest(GroupId(8)).unwrap(), None);
    assert_eq!(b.latest(G).unwrap(), None);
    assert!(temporaries(b.dir()).is_empty());
}

#[test]
fn non_contiguous_chunks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = SnapshotStore::open(&dir.path().join("a"), None).unwrap();
    let b = SnapshotStore::open(&dir.path().join("b"), None).unwrap();
    write_snapshot(&a, meta(G, 5), &body(10_000, 5));
    let source = a.open_raw(G, LogIndex(5)).unwrap();
    let (bytes, total) = (
        source.read_chunk(0, usize::MAX).unwrap(),
        source.total_len(),
    );
    let mut receiver = b.receive(G).unwrap();
    receiver.write_chunk(0, &bytes[..4000]).unwrap();
    for bad in [4001, 3999, 0, total] {
        match receiver.write_chunk(bad, &bytes[bad.min(4000) as usize..]) {
            Err(SnapshotError::NotContiguous { expected, got, .. }) => {
                assert_eq!((expected, got), (4000, bad))
            }
            other => panic!("offset {bad}: unexpected {other:?}"),
        }
    }
    // The refused chunks changed nothing: the transfer can continue.
    assert_eq!(receiver.received(), 4000);
    receiver.write_chunk(4000, &bytes[4000..]).unwrap();
    assert_eq!(receiver.finish().unwrap(), meta(G, 5));
}

/// Where to damage a finished file.
#[derive(Clone, Copy, Debug)]
enum Spot {
    Header(u64),
    Body(u64),
    Trailer(u64),
}

fn check_flip(spot: Spot) {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(&dir.path().join("a"), None).unwrap();
    let other = SnapshotStore::open(&dir.path().join("b"), None).unwrap();
    let bytes = body(200_000, 3);
    write_snapshot(&store, meta(G, 10), &bytes);
    write_snapshot(&store, meta(G, 20), &bytes);
    let path = store.path(G, LogIndex(20));
    let header = header_len(MEMBERSHIP.len()) as u64;
    let offset = match spot {
        Spot::Header(at) => at,
        Spot::Body(at) => header + at,
        Spot::Trailer(at) => header + bytes.len() as u64 + at,
    };
    flip_bit(&path, offset);

    let err = store.latest(G).unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{spot:?}: error does not name the file: {err}"
    );
    let expected_kind = |e: &SnapshotError| match spot {
        Spot::Header(_) => matches!(e, SnapshotError::CorruptHeader { .. }),
        Spot::Body(_) => matches!(e, SnapshotError::BodyChecksum { .. }),
        Spot::Trailer(at) if at >= 16 => matches!(e, SnapshotError::Truncated { .. }),
        Spot::Trailer(_) => matches!(e, SnapshotError::CorruptTrailer { .. }),
    };
    assert!(expected_kind(&err), "{spot:?}: latest() said {err}");

    match spot {
        Spot::Body(_) => {
            let e = read_body(&store, G, 20).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        }
        _ => {
            let e = store.open_body(G, LogIndex(20)).unwrap_err();
            assert!(expected_kind(&e), "{spot:?}: open_body said {e}");
        }
    }
    // The older snapshot is still readable on its own.
    assert!(read_body(&store, G, 10).unwrap() == bytes);

    // The receiver refuses the damaged file and installs nothing.
    let err = transfer(&store, &other, G, 20, 65_536).unwrap_err();
    assert!(expected_kind(&err), "{spot:?}: receiver said {err}");
    assert_eq!(other.latest(G).unwrap(), None);
    assert!(temporaries(other.dir()).is_empty());
}

#[test]
fn a_flipped_bit_in_the_header_is_detected() {
    let membership_byte = 40 + 3;
    let crc_byte = header_len(MEMBERSHIP.len()) as u64 - 2;
    for at in [0, 9, 13, 17, 25, 33, membership_byte, crc_byte] {
        check_flip(Spot::Header(at));
    }
}

#[test]
fn a_flipped_bit_in_the_body_is_detected() {
    for at in [0, 65_536, 199_999] {
        check_flip(Spot::Body(at));
    }
}

#[test]
fn a_flipped_bit_in_the_trailer_is_detected() {
    for at in 0..TRAILER_BYTES as u64 {
        check_flip(Spot::Trailer(at));
    }
}

#[test]
fn a_header_that_disagrees_with_the_file_name_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), None).unwrap();
    write_snapshot(&store, meta(G, 5), &body(100, 1));
    std::fs::rename(store.path(G, LogIndex(5)), store.path(G, LogIndex(6))).unwrap();
    let err = store.latest(G).unwrap_err();
    assert!(
        matches!(&err, SnapshotError::CorruptHeader { reason, .. } if reason.contains("file name")),
        "{err}"
    );
}

#[test]
fn a_truncated_file_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), None).unwrap();
    let bytes = body(50_000, 4);
    write_snapshot(&store, meta(G, 10), &bytes);
    let path = store.path(G, LogIndex(10));
    let full = std::fs::read(&path).unwrap();
    let header = header_len(MEMBERSHIP.len());
    for cut in [
        0,
        20,
        header - 1,
        header + 10,
        header + bytes.len() - 1,
        header + bytes.len() + 5,
        full.len() - 1,
    ] {
        std::fs::write(&path, &full[..cut]).unwrap();
        let err = store.latest(G).unwrap_err();
        assert!(
            matches!(err, SnapshotError::Truncated { .. }),
            "cut at {cut}: {err}"
        );
        assert!(err.is_corrupt());
        assert!(err.to_string().contains(&path.display().to_string()));
    }
    std::fs::write(&path, &full).unwrap();
    assert_eq!(store.latest(G).unwrap(), Some(meta(G, 10)));
}

#[test]
fn an_interrupted_write_leaves_the_previous_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    let store = SnapshotStore::open(&snapshots, None).unwrap();
    let old = body(10_000, 1);
    write_snapshot(&store, meta(G, 10), &old);

    // Dropped unfinished: the temporary disappears at once.
    let mut writer = store.create(meta(G, 20)).unwrap();
    writer.write_all(&body(1 << 20, 2)).unwrap();
    assert_eq!(temporaries(&snapshots).len(), 1);
    drop(writer);
    assert!(temporaries(&snapshots).is_empty());
    assert_eq!(store.latest(G).unwrap(), Some(meta(G, 10)));

    // Dropped unfinished receipt.
    let mut receiver = store.receive(G).unwrap();
    receiver.write_chunk(0, b"partial").unwrap();
    drop(receiver);
    assert!(temporaries(&snapshots).is_empty());

    // A crash mid-write: the writer never runs its destructor, and another process left a
    // half-copied file behind.
    let mut writer = store.create(meta(G, 30)).unwrap();
    writer.write_all(&body(1 << 20, 3)).unwrap();
    writer.flush().unwrap();
    std::mem::forget(writer);
    let full = std::fs::read(store.path(G, LogIndex(10))).unwrap();
    let stray = snapshots.join("00000000000000000007.99-1.tmp");
    std::fs::write(&stray, &full[..full.len() / 2]).unwrap();
    assert_eq!(temporaries(&snapshots).len(), 2);
    assert_eq!(store.latest(G).unwrap(), Some(meta(G, 10)));
    assert_eq!(store.list(G).unwrap(), vec![LogIndex(10)]);
    drop(store);

    let store = SnapshotStore::open(&snapshots, None).unwrap();
    assert!(temporaries(&snapshots).is_empty());
    assert_eq!(store.latest(G).unwrap(), Some(meta(G, 10)));
    assert!(read_body(&store, G, 10).unwrap() == old);
}

/// Arms `op` to fail with `errno` after `skip` operations of that kind, writes a snapshot of
/// `len` body bytes at index 20 over an existing one at 10, and checks that the write fails
/// with that error and leaves everything as it was.
fn fails_with(op: FaultOp, skip: u64, errno: i32, len: usize) {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultPlan::new();
    let store = SnapshotStore::open(dir.path(), Some(faults.clone())).unwrap();
    let old = body(10_000, 1);
    write_snapshot(&store, meta(G, 10), &old);

    faults.fail(op, skip, errno);
    let mut writer = store.create(meta(G, 20)).unwrap();
    let bytes = body(len, 2);
    let written = write_pieces(&mut writer, &bytes);
    // A failure in the middle of the body surfaces from the write already.
    assert_eq!(written.is_err(), len > 1 << 20, "{written:?}");
    let err = writer.finish().unwrap_err();
    assert_eq!(
        err.io_source().and_then(std::io::Error::raw_os_error),
        Some(errno),
        "{err}"
    );
    if let Err(e) = written {
        assert!(e.to_string().contains(".tmp"), "{e}");
    }
    assert!(err.to_string().contains(".tmp"), "{err}");
    assert_eq!(store.latest(G).unwrap(), Some(meta(G, 10)));
    assert_eq!(store.list(G).unwrap(), vec![LogIndex(10)]);
    assert!(read_body(&store, G, 10).unwrap() == old);
    assert!(temporaries(dir.path()).is_empty());

    // The failure was one-off: the next attempt succeeds.
    assert_eq!(write_snapshot(&store, meta(G, 20), &bytes), meta(G, 20));
    assert_eq!(store.latest(G).unwrap(), Some(meta(G, 20)));
}

#[test]
fn a_write_error_fails_finish_and_keeps_the_previous_snapshot() {
    // A body that fits in the buffer: the write happens in finish.
    fails_with(FaultOp::Write, 0, EIO, 1000);
    // A multi-buffer body: the failure comes from a write in the middle.
    fails_with(FaultOp::Write, 3, EIO, 2 << 20);
}

#[test]
fn enospc_fails_finish_and_keeps_the_previous_snapshot() {
    fails_with(FaultOp::Write, 0, ENOSPC, 100);
    fails_with(FaultOp::Write, 2, ENOSPC, 3 << 20);
}

#[test]
fn a_sync_error_fails_finish_and_keeps_the_previous_snapshot() {
    // The file's fdatasync is the first sync of finish.
    fails_with(FaultOp::Sync, 0, EIO, 300_000);
}

#[test]
fn a_failed_receipt_installs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultPlan::new();
    let a = SnapshotStore::open(&dir.path().join("a"), None).unwrap();
    let b = SnapshotStore::open(&dir.path().join("b"), Some(faults.clone())).unwrap();
    write_snapshot(&a, meta(G, 10), &body(1000, 1));
    write_snapshot(&a, meta(G, 20), &body(200_000, 2));
    transfer(&a, &b, G, 10, 4096).unwrap();

    faults.fail(FaultOp::Sync, 0, EIO);
    let err = transfer(&a, &b, G, 20, 4096).unwrap_err();
    assert_eq!(err.io_source().and_then(|e| e.raw_os_error()), Some(EIO));
    faults.fail(FaultOp::Write, 5, ENOSPC);
    let err = transfer(&a, &b, G, 20, 4096).unwrap_err();
    assert_eq!(err.io_source().and_then(|e| e.raw_os_error()), Some(ENOSPC));
    assert_eq!(b.latest(G).unwrap(), Some(meta(G, 10)));
    assert!(temporaries(b.dir()).is_empty());

    assert_eq!(transfer(&a, &b, G, 20, 4096).unwrap(), meta(G, 20));
    assert_eq!(b.latest(G).unwrap(), Some(meta(G, 20)));
}

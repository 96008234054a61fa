//! Disk faults the harness applies to a **stopped** node's log files (shard 0, the only shard
//! of a harness node).
//!
//! - [`tear_tail`]: appends, after the last record, a copy of that record missing its last
//!   bytes — what a crash in the middle of the next (never acknowledged) write leaves behind.
//!   Recovery must recognise the torn tail and cut it. (Tearing the last real record instead
//!   would lose a write that was fsynced and perhaps acknowledged, which no crash can do.)
//! - [`flip_bit`]: flips one bit in the body of a record that many later flushes follow, so
//!   the record was committed long ago. Recovery must refuse to start (corruption, not a torn
//!   tail).
//! - [`mark_end`] and [`lose_after`]: the power loss a node running with `--fsync never` is
//!   exposed to — every byte written after the mark is gone. Only sound for nodes that never
//!   fsync (nothing written since the mark was ever made durable).
//!
//! Invariants: records are walked with the on-disk framing (64-byte header, `body_len` at 8,
//! bodies padded to 16); a walk stops at the first position without the record magic, which
//! is where written data ends in a pre-zeroed segment. Nothing here runs on a live node's
//! files except [`mark_end`], which only reads.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::log::record::{RECORD_ALIGN, RECORD_HEADER_BYTES, RECORD_MAGIC};
use crate::log::segment::{SEGMENT_EXT, SEGMENT_HEADER_BYTES};
use crate::log::shard_dir;
use crate::types::ShardId;

/// Where a node's written log data ended at some moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogMark {
    pub segment: PathBuf,
    pub end: u64,
}

/// The segment files of a node's shard 0, oldest first.
fn segments(data_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(shard_dir(data_dir, ShardId(0)))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == SEGMENT_EXT))
        .collect();
    files.sort();
    Ok(files)
}

/// Start offsets of the records of a segment's bytes, and where written data ends.
fn records(bytes: &[u8]) -> (Vec<(usize, usize)>, usize) {
    let mut found = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES as usize;
    while offset + RECORD_HEADER_BYTES <= bytes.len() {
        let magic = u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"));
        if magic != RECORD_MAGIC {
            break;
        }
        let body = u32::from_le_bytes(bytes[offset + 8..offset + 12].try_into().expect("4"));
        let len = (RECORD_HEADER_BYTES + body as usize).next_multiple_of(RECORD_ALIGN);
        if offset + len > bytes.len() {
            break;
        }
        found.push((offset, body as usize));
        offset += len;
    }
    (found, offset)
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::other(message)
}

/// Appends a torn copy of the last record: its header and body up to, not including, the
/// `cut`-th last non-zero byte of the body (at least the last one), zeros after. The missing
/// byte guarantees the copy fails its checksum. Returns the offset of the torn bytes.
pub fn tear_tail(data_dir: &Path, cut: usize) -> std::io::Result<u64> {
    let last = segments(data_dir)?
        .pop()
        .ok_or_else(|| invalid(format!("{}: no segment", data_dir.display())))?;
    let bytes = std::fs::read(&last)?;
    let (found, end) = records(&bytes);
    let &(start, body) = found
        .last()
        .ok_or_else(|| invalid(format!("{}: no record", last.display())))?;
    let body_bytes = &bytes[start + RECORD_HEADER_BYTES..start + RECORD_HEADER_BYTES + body];
    let keep = body_bytes
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, byte)| **byte != 0)
        .map(|(at, _)| at)
        .nth(cut.max(1) - 1)
        .ok_or_else(|| invalid(format!("{}: record too short to tear", last.display())))?;
    let copy = &bytes[start..start + RECORD_HEADER_BYTES + keep];
    if end + RECORD_HEADER_BYTES + body > bytes.len() {
        return Err(invalid(format!("{}: segment full", last.display())));
    }
    let file = OpenOptions::new().write(true).open(&last)?;
    file.write_all_at(copy, end as u64)?;
    file.sync_data()?;
    Ok(end as u64)
}

/// Flips one bit in the middle of the body of a record of the oldest segment that at least
/// `followers` records follow. Returns the file and offset flipped.
pub fn flip_bit(data_dir: &Path, followers: usize) -> std::io::Result<(PathBuf, u64)> {
    let files = segments(data_dir)?;
    let first = files
        .first()
        .ok_or_else(|| invalid(format!("{}: no segment", data_dir.display())))?;
    let bytes = std::fs::read(first)?;
    let (found, _) = records(&bytes);
    if found.len() <= followers && files.len() < 2 {
        return Err(invalid(format!(
            "{}: only {} records",
            first.display(),
            found.len()
        )));
    }
    let &(start, body) = found
        .first()
        .ok_or_else(|| invalid(format!("{}: no record", first.display())))?;
    let at = (start + RECORD_HEADER_BYTES + body / 2) as u64;
    let file = OpenOptions::new().read(true).write(true).open(first)?;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, at)?;
    byte[0] ^= 0x10;
    file.write_all_at(&byte, at)?;
    file.sync_data()?;
    Ok((first.clone(), at))
}

/// Removes everything inside a stopped node's data directory, keeping the directory itself
/// (it may be a mount point).
pub fn wipe(data_dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(data_dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(path)?;
        } else {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

/// Where the written data of a node's newest segment ends now (the node may be running).
pub fn mark_end(data_dir: &Path) -> std::io::Result<LogMark> {
    let last = segments(data_dir)?
        .pop()
        .ok_or_else(|| invalid(format!("{}: no segment", data_dir.display())))?;
    let (_, end) = records(&std::fs::read(&last)?);
    Ok(LogMark {
        segment: last,
        end: end as u64,
    })
}

/// Discards everything written after `mark`: zeroes the rest of its segment's written data and
/// removes later segments. Returns the bytes discarded.
pub fn lose_after(data_dir: &Path, mark: &LogMark) -> std::io::Result<u64> {
    let mut lost = 0;
    for later in segments(data_dir)?
        .into_iter()
        .filter(|s| *s > mark.segment)
    {
        lost += std::fs::metadata(&later)?.len();
        std::fs::remove_file(later)?;
    }
    let bytes = std::fs::read(&mark.segment)?;
    let (_, end) = records(&bytes);
    if end as u64 > mark.end {
        let file = OpenOptions::new().write(true).open(&mark.segment)?;
        file.write_all_at(&vec![0u8; end - mark.end as usize], mark.end)?;
        file.sync_data()?;
        lost += end as u64 - mark.end;
    }
    Ok(lost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchKind, EntryBatch};
    use crate::log::{DiskLog, LogConfig, LogStore};
    use crate::types::{GroupId, LogIndex, Term};

    const CLUSTER: u64 = 7;

    fn config(data_dir: &Path) -> LogConfig {
        let mut config = LogConfig::new(shard_dir(data_dir, ShardId(0)), CLUSTER, ShardId(0));
        config.segment_bytes = 1 << 20;
        config
    }

    /// A log of `flushes` one-entry records, one flush each.
    fn write_log(data_dir: &Path, flushes: u64) {
        let mut log = DiskLog::open(config(data_dir)).unwrap();
        for index in 1..=flushes {
            let payload = format!("entry {index}");
            let batch = EntryBatch::encode(
                BatchKind::Command,
                Term(1),
                LogIndex(index),
                [payload.as_bytes()],
            );
            log.append(GroupId(0), &batch).unwrap();
            futures_lite::future::block_on(log.sync()).unwrap();
        }
    }

    fn last_index(data_dir: &Path) -> crate::log::Result<LogIndex> {
        DiskLog::open(config(data_dir)).map(|log| log.last_index(GroupId(0)))
    }

    #[test]
    fn a_torn_tail_is_cut_and_a_flipped_bit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 20);
        tear_tail(dir.path(), 3).unwrap();
        let log = DiskLog::open(config(dir.path())).unwrap();
        assert!(log.recovery_report().torn_tail.is_some());
        assert_eq!(log.last_index(GroupId(0)), LogIndex(20));
        drop(log);

        flip_bit(dir.path(), 10).unwrap();
        let error = last_index(dir.path()).unwrap_err();
        assert!(error.corruption().is_some(), "{error}");
    }

    #[test]
    fn a_power_loss_discards_what_followed_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 5);
        let mark = mark_end(dir.path()).unwrap();
        let mut log = DiskLog::open(config(dir.path())).unwrap();
        let batch = EntryBatch::encode(
            BatchKind::Command,
            Term(1),
            LogIndex(6),
            [b"late".as_slice()],
        );
        log.append(GroupId(0), &batch).unwrap();
        futures_lite::future::block_on(log.sync()).unwrap();
        drop(log);
        assert!(lose_after(dir.path(), &mark).unwrap() > 0);
        assert_eq!(last_index(dir.path()).unwrap(), LogIndex(5));
    }
}

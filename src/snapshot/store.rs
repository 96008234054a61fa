//! The snapshot directory: listing, verification, reading and retention.
//!
//! Invariants (besides those of [`crate::snapshot`]):
//! - [`SnapshotStore::open`] makes everything it will trust durable before it returns: every
//!   file under a final name is fdatasynced, the directory and its parent fsynced. A writer
//!   syncs a snapshot before renaming it, but a process killed between the rename and the
//!   directory sync (or a received file's install) leaves a name only the page cache knows;
//!   the engine restores from it and compacts its log behind it, so it must not vanish in a
//!   later power loss.
//! - A [`RawSnapshotFile`] reads through the handle it opened, never by path again: retention
//!   may delete the file meanwhile (newer snapshots arrive during a long transfer), and an
//!   unlinked file stays readable through an open handle.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::body::SnapshotBody;
use super::format::{
    announced_header_len, decode_header, decode_trailer, header_version, parse_snapshot_name,
    snapshot_file_name, HeaderProblem, TrailerProblem, HEADER_FIXED_BYTES, MAX_MEMBERSHIP_BYTES,
    TEMP_SUFFIX, TRAILER_BYTES,
};
use super::writer::{RawSnapshotWriter, SnapshotWriter};
use super::{Result, SnapshotError, SnapshotInfo, MAX_RAW_CHUNK_BYTES};
use crate::log::io::{open_read, Files};
use crate::log::FaultPlan;
use crate::types::{GroupId, LogIndex};

/// Bytes read at a time when verifying a body.
const VERIFY_CHUNK_BYTES: usize = 64 << 10;

/// Distinguishes the temporary files of concurrent writers in one process.
static TEMP_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// The snapshots of every group of a node, in one directory. See the module documentation of
/// [`crate::snapshot`] for the guarantees.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    files: Files,
}

/// Where the parts of a structurally valid snapshot file lie.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub meta: SnapshotInfo,
    /// The header's format version ([`super::format::SNAPSHOT_VERSION`]).
    pub version: u32,
    pub header_len: u64,
    pub body_len: u64,
    pub body_crc: u32,
}

impl SnapshotStore {
    /// Opens the snapshot directory `dir` (creating it, see [`super::snapshot_dir`]), deletes
    /// the temporary files of interrupted writes and syncs what remains (see the module
    /// documentation). `faults` fails chosen writes and syncs (tests).
    pub fn open(dir: &Path, faults: Option<FaultPlan>) -> Result<SnapshotStore> {
        let files = Files {
            faults,
            ..Files::default()
        };
        files.create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir).map_err(|e| SnapshotError::io("list", dir, e))? {
            let entry = entry.map_err(|e| SnapshotError::io("list", dir, e))?;
            let name = entry.file_name();
            let path = entry.path();
            if name.to_string_lossy().ends_with(TEMP_SUFFIX) {
                files.remove(&path)?;
            } else if name.to_str().and_then(parse_snapshot_name).is_some() {
                files.sync_data(&open_read(&path)?, &path)?;
            }
        }
        files.sync_dir_and_parent(dir)?;
        Ok(SnapshotStore {
            dir: dir.to_path_buf(),
            files,
        })
    }

    /// The directory of this store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the snapshot of `group` at `index` (whether or not it exists).
    pub fn path(&self, group: GroupId, index: LogIndex) -> PathBuf {
        self.dir.join(snapshot_file_name(group, index))
    }

    /// Starts a new snapshot described by `meta`; write the body into the returned writer and
    /// call [`SnapshotWriter::finish`]. Nothing is visible until then.
    pub fn create(&self, meta: SnapshotInfo) -> Result<SnapshotWriter> {
        if meta.membership.len() > MAX_MEMBERSHIP_BYTES {
            return Err(SnapshotError::MembershipTooLarge {
                bytes: meta.membership.len(),
                max: MAX_MEMBERSHIP_BYTES,
            });
        }
        let (temp, file) = self.create_temp(meta.group)?;
        Ok(SnapshotWriter::new(
            self.files.clone(),
            self.dir.clone(),
            temp,
            file,
            meta,
        ))
    }

    /// Starts receiving a snapshot of `group` as the raw bytes of another node's snapshot file.
    pub fn receive(&self, group: GroupId) -> Result<RawSnapshotWriter> {
        let (temp, file) = self.create_temp(group)?;
        Ok(RawSnapshotWriter::new(
            self.files.clone(),
            self.dir.clone(),
            group,
            temp,
            file,
        ))
    }

    fn create_temp(&self, group: GroupId) -> Result<(PathBuf, File)> {
        let sequence = TEMP_SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{:020}.{}-{sequence}{TEMP_SUFFIX}",
            group.0,
            std::process::id()
        );
        let temp = self.dir.join(name);
        let file = self.files.create_new(&temp)?;
        Ok((temp, file))
    }

    /// The indexes of `group`'s snapshots (by file name, unverified), ascending.
    pub fn list(&self, group: GroupId) -> Result<Vec<LogIndex>> {
        let dir = &self.dir;
        let mut indexes = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| SnapshotError::io("list", dir, e))? {
            let entry = entry.map_err(|e| SnapshotError::io("list", dir, e))?;
            let name = entry.file_name();
            if let Some((g, index)) = name.to_str().and_then(parse_snapshot_name) {
                if g == group {
                    indexes.push(index);
                }
            }
        }
        indexes.sort();
        Ok(indexes)
    }

    /// The newest snapshot of `group` after verifying its header, trailer and body checksum, or
    /// `None` if the group has none. A damaged newest snapshot is an error naming the file; older
    /// snapshots are not consulted (the caller decides what to do).
    pub fn latest(&self, group: GroupId) -> Result<Option<SnapshotInfo>> {
        let Some(&index) = self.list(group)?.last() else {
            return Ok(None);
        };
        let path = self.path(group, index);
        let file = self.open_existing(group, index)?;
        let layout = read_layout(&file, &path)?;
        check_name(&layout, group, index, &path)?;
        verify_body(&file, &path, &layout)?;
        Ok(Some(layout.meta))
    }

    /// Opens the body of `group`'s snapshot at `index` as a stream. The header and trailer are
    /// checked now; the body checksum is checked as the stream reaches its end (an
    /// `InvalidData` read error on mismatch).
    pub fn open_body(&self, group: GroupId, index: LogIndex) -> Result<SnapshotBody> {
        let path = self.path(group, index);
        let file = self.open_existing(group, index)?;
        let layout = read_layout(&file, &path)?;
        check_name(&layout, group, index, &path)?;
        Ok(SnapshotBody::new(file, path, layout))
    }

    /// Opens the file of `group`'s snapshot at `index` for sending its raw bytes. Nothing is
    /// verified here: the receiver verifies the whole file. The handle keeps reading the file
    /// even after [`SnapshotStore::retain`] deletes it.
    pub fn open_raw(&self, group: GroupId, index: LogIndex) -> Result<RawSnapshotFile> {
        let path = self.path(group, index);
        let file = self.open_existing(group, index)?;
        let len = file_len(&file, &path)?;
        Ok(RawSnapshotFile { file, path, len })
    }

    /// Deletes all but the newest `keep` (at least one) snapshots of `group`, oldest first,
    /// then fsyncs the directory. Snapshots are chosen by file name and not verified.
    pub fn retain(&self, group: GroupId, keep: usize) -> Result<()> {
        if keep == 0 {
            return Err(SnapshotError::KeepNone);
        }
        let indexes = self.list(group)?;
        let doomed = indexes.len().saturating_sub(keep);
        if doomed == 0 {
            return Ok(());
        }
        for &index in &indexes[..doomed] {
            self.files.remove(&self.path(group, index))?;
        }
        self.files.sync_dir(&self.dir)?;
        Ok(())
    }

    fn open_existing(&self, group: GroupId, index: LogIndex) -> Result<File> {
        let path = self.path(group, index);
        match open_read(&path) {
            Ok(file) => Ok(file),
            Err(crate::log::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(SnapshotError::NotFound {
                    dir: self.dir.clone(),
                    group,
                    index,
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// An open snapshot file read as raw bytes (a transfer's source). See the module
/// documentation.
#[derive(Debug)]
pub struct RawSnapshotFile {
    file: File,
    path: PathBuf,
    len: u64,
}

impl RawSnapshotFile {
    /// The file's length when it was opened (snapshot files never change under a final name).
    pub fn total_len(&self) -> u64 {
        self.len
    }

    /// Up to `max` bytes (and never more than [`MAX_RAW_CHUNK_BYTES`]) from `offset`. An offset
    /// at or past the end reads nothing.
    pub fn read_chunk(&self, offset: u64, max: usize) -> Result<Vec<u8>> {
        let n = (self.len.saturating_sub(offset)).min(max.min(MAX_RAW_CHUNK_BYTES) as u64) as usize;
        let mut bytes = vec![0u8; n];
        self.file
            .read_exact_at(&mut bytes, offset)
            .map_err(|e| SnapshotError::io("read", &self.path, e))?;
        Ok(bytes)
    }
}

fn file_len(file: &File, path: &Path) -> Result<u64> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| SnapshotError::io("stat", path, e))
}

/// Reads and checks the header and trailer of the snapshot file `file` (named `path` in
/// errors), and that the body length recorded in the trailer matches the file.
pub(crate) fn read_layout(file: &File, path: &Path) -> Result<Layout> {
    let corrupt = |reason: String| SnapshotError::CorruptHeader {
        path: path.to_path_buf(),
        reason,
    };
    let truncated = |reason: String| SnapshotError::Truncated {
        path: path.to_path_buf(),
        reason,
    };
    let len = file_len(file, path)?;
    if len < HEADER_FIXED_BYTES as u64 {
        return Err(truncated(format!(
            "file is {len} bytes long, shorter than the fixed header of {HEADER_FIXED_BYTES}"
        )));
    }
    let read = |buf: &mut [u8], at: u64| {
        file.read_exact_at(buf, at)
            .map_err(|e| SnapshotError::io("read", path, e))
    };
    let mut fixed = [0u8; HEADER_FIXED_BYTES];
    read(&mut fixed, 0)?;
    let header_len = match announced_header_len(&fixed) {
        Ok(n) => n,
        Err(HeaderProblem::Corrupt(reason)) => return Err(corrupt(reason)),
        Err(HeaderProblem::Short { .. }) => unreachable!("the fixed header was read whole"),
    };
    let least = (header_len + TRAILER_BYTES) as u64;
    if len < least {
        return Err(truncated(format!(
            "file is {len} bytes long, its header and trailer alone need {least}"
        )));
    }
    let mut header = vec![0u8; header_len];
    read(&mut header, 0)?;
    let meta = match decode_header(&header) {
        Ok((meta, _)) => meta,
        Err(HeaderProblem::Corrupt(reason)) => return Err(corrupt(reason)),
        Err(HeaderProblem::Short { needed }) => {
            return Err(truncated(format!("header needs {needed} bytes")))
        }
    };
    let mut trailer = [0u8; TRAILER_BYTES];
    read(&mut trailer, len - TRAILER_BYTES as u64)?;
    let (body_len, body_crc) =
        match decode_trailer(&trailer) {
            Ok(t) => t,
            Err(TrailerProblem::Missing) => return Err(truncated(
                "the file does not end with a snapshot trailer (cut short, or its end is damaged)"
                    .into(),
            )),
            Err(TrailerProblem::Corrupt) => {
                return Err(SnapshotError::CorruptTrailer {
                    path: path.to_path_buf(),
                    reason: "trailer checksum mismatch".into(),
                })
            }
        };
    let present = len - least;
    if body_len != present {
        let reason =
            format!("trailer records a body of {body_len} bytes, the file holds {present}");
        return Err(if body_len > present {
            truncated(reason)
        } else {
            SnapshotError::CorruptTrailer {
                path: path.to_path_buf(),
                reason,
            }
        });
    }
    Ok(Layout {
        meta,
        version: header_version(&header),
        header_len: header_len as u64,
        body_len,
        body_crc,
    })
}

/// Checks that the header agrees with the file name.
fn check_name(layout: &Layout, group: GroupId, index: LogIndex, path: &Path) -> Result<()> {
    if layout.meta.group != group || layout.meta.index != index {
        return Err(SnapshotError::CorruptHeader {
            path: path.to_path_buf(),
            reason: format!(
                "header says group {} index {}, the file name says group {group} index {index}",
                layout.meta.group, layout.meta.index
            ),
        });
    }
    Ok(())
}

/// Streams the body of a file whose layout was read and compares its checksum.
pub(crate) fn verify_body(file: &File, path: &Path, layout: &Layout) -> Result<()> {
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; VERIFY_CHUNK_BYTES.min(layout.body_len as usize)];
    let mut at = 0u64;
    while at < layout.body_len {
        let n = (layout.body_len - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], layout.header_len + at)
            .map_err(|e| SnapshotError::io("read", path, e))?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    let computed = hasher.finalize();
    if computed != layout.body_crc {
        return Err(SnapshotError::BodyChecksum {
            path: path.to_path_buf(),
            recorded: layout.body_crc,
            computed,
        });
    }
    Ok(())
}

//! Writing snapshots: locally produced ([`SnapshotWriter`]) and received as raw file bytes
//! ([`RawSnapshotWriter`]). Both write to a temporary file and install it with
//! fdatasync, rename and a directory fsync; dropping either unfinished deletes the temporary.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::format::{encode_header, encode_trailer, snapshot_file_name};
use super::store::{read_layout, verify_body};
use super::{Result, SnapshotError, SnapshotInfo, WRITE_BUFFER_BYTES};
use crate::log::io::Files;
use crate::types::GroupId;

/// Syncs a complete temporary file, renames it to `final_name` and fsyncs the directory.
fn install(files: &Files, dir: &Path, file: &File, temp: &Path, final_name: &str) -> Result<()> {
    files.sync_data(file, temp)?;
    files.rename(temp, &dir.join(final_name))?;
    files.sync_dir(dir)?;
    Ok(())
}

/// A snapshot being written: the header is written first, then the body as it is written into
/// this [`io::Write`], then [`SnapshotWriter::finish`] adds the trailer and installs the file.
///
/// Writes are buffered (at most [`WRITE_BUFFER_BYTES`]). The first failed write poisons the
/// writer: every later write fails and `finish` returns the original error (with its OS error
/// code). Dropping the writer without `finish` deletes the temporary file.
#[derive(Debug)]
pub struct SnapshotWriter {
    files: Files,
    dir: PathBuf,
    temp: PathBuf,
    file: File,
    meta: SnapshotInfo,
    buffer: Vec<u8>,
    /// Bytes of the file written so far (not counting `buffer`).
    written: u64,
    body_len: u64,
    hasher: crc32fast::Hasher,
    failed: Option<SnapshotError>,
    installed: bool,
}

impl SnapshotWriter {
    pub(crate) fn new(
        files: Files,
        dir: PathBuf,
        temp: PathBuf,
        file: File,
        meta: SnapshotInfo,
    ) -> SnapshotWriter {
        let mut buffer = Vec::with_capacity(WRITE_BUFFER_BYTES);
        buffer.extend_from_slice(&encode_header(&meta));
        SnapshotWriter {
            files,
            dir,
            temp,
            file,
            meta,
            buffer,
            written: 0,
            body_len: 0,
            hasher: crc32fast::Hasher::new(),
            failed: None,
            installed: false,
        }
    }

    /// What the snapshot will describe.
    pub fn meta(&self) -> &SnapshotInfo {
        &self.meta
    }

    /// Body bytes accepted so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    /// Writes `bytes` at the current end of the file, poisoning the writer on failure.
    fn write_out(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Err(e) = self
            .files
            .write_at(&self.file, &self.temp, bytes, self.written)
        {
            let e = SnapshotError::from(e);
            let reported = poisoned(&e);
            self.failed = Some(e);
            return Err(reported);
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn flush_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let buffer = std::mem::take(&mut self.buffer);
        let result = self.write_out(&buffer);
        self.buffer = buffer;
        self.buffer.clear();
        result
    }

    /// Writes the trailer, fdatasyncs, renames the file into place and fsyncs the directory.
    /// Returns the meta of the installed snapshot. On error nothing is installed and the
    /// temporary file is deleted; the previous snapshots are untouched. (If only the final
    /// directory fsync fails, the complete new file may be visible.)
    pub fn finish(mut self) -> Result<SnapshotInfo> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let trailer = encode_trailer(self.body_len, self.hasher.clone().finalize());
        self.buffer.extend_from_slice(&trailer);
        if self.flush_buffer().is_err() {
            return Err(self
                .failed
                .take()
                .expect("a failed write poisons the writer"));
        }
        let name = snapshot_file_name(self.meta.group, self.meta.index);
        install(&self.files, &self.dir, &self.file, &self.temp, &name)?;
        self.installed = true;
        Ok(self.meta.clone())
    }
}

/// The error a poisoned writer reports through [`io::Write`].
fn poisoned(e: &SnapshotError) -> io::Error {
    let kind = e.io_source().map_or(io::ErrorKind::Other, io::Error::kind);
    io::Error::new(kind, format!("snapshot write failed: {e}"))
}

impl io::Write for SnapshotWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(poisoned(e));
        }
        if self.buffer.len() + bytes.len() <= WRITE_BUFFER_BYTES {
            self.buffer.extend_from_slice(bytes);
            if self.buffer.len() == WRITE_BUFFER_BYTES {
                self.flush_buffer()?;
            }
        } else {
            self.flush_buffer()?;
            if bytes.len() >= WRITE_BUFFER_BYTES {
                self.write_out(bytes)?;
            } else {
                self.buffer.extend_from_slice(bytes);
            }
        }
        self.hasher.update(bytes);
        self.body_len += bytes.len() as u64;
        Ok(bytes.len())
    }

    /// Writes the buffered bytes to the file (not a sync: durability comes with `finish`).
    fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = &self.failed {
            return Err(poisoned(e));
        }
        self.flush_buffer()
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.installed {
            // Best effort: `SnapshotStore::open` deletes whatever is left.
            let _ = self.files.remove(&self.temp);
        }
    }
}

/// A snapshot being received from another node as the exact bytes of its snapshot file, in
/// contiguous chunks. [`RawSnapshotWriter::finish`] verifies the whole file before installing
/// it. Dropping the writer without `finish` deletes the temporary file.
#[derive(Debug)]
pub struct RawSnapshotWriter {
    files: Files,
    dir: PathBuf,
    group: GroupId,
    temp: PathBuf,
    file: File,
    len: u64,
    installed: bool,
}

impl RawSnapshotWriter {
    pub(crate) fn new(
        files: Files,
        dir: PathBuf,
        group: GroupId,
        temp: PathBuf,
        file: File,
    ) -> RawSnapshotWriter {
        RawSnapshotWriter {
            files,
            dir,
            group,
            temp,
            file,
            len: 0,
            installed: false,
        }
    }

    /// Bytes received so far (the offset the next chunk must start at).
    pub fn received(&self) -> u64 {
        self.len
    }

    /// Writes `bytes` at `offset`, which must equal the bytes received so far
    /// ([`SnapshotError::NotContiguous`] otherwise, leaving the writer unchanged). A failed
    /// write leaves the offset where it was, so the chunk may be sent again.
    pub fn write_chunk(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        if offset != self.len {
            return Err(SnapshotError::NotContiguous {
                path: self.temp.clone(),
                expected: self.len,
                got: offset,
            });
        }
        self.files.write_at(&self.file, &self.temp, bytes, offset)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Verifies the received file (header checksum, trailer, body checksum, group), then
    /// fdatasyncs it, renames it into place and fsyncs the directory. Returns its meta. On
    /// error nothing is installed and the temporary file is deleted.
    pub fn finish(mut self) -> Result<SnapshotInfo> {
        let layout = read_layout(&self.file, &self.temp)?;
        if layout.meta.group != self.group {
            return Err(SnapshotError::WrongGroup {
                path: self.temp.clone(),
                expected: self.group,
                found: layout.meta.group,
            });
        }
        verify_body(&self.file, &self.temp, &layout)?;
        let name = snapshot_file_name(layout.meta.group, layout.meta.index);
        install(&self.files, &self.dir, &self.file, &self.temp, &name)?;
        self.installed = true;
        Ok(layout.meta)
    }
}

impl Drop for RawSnapshotWriter {
    fn drop(&mut self) {
        if !self.installed {
            let _ = self.files.remove(&self.temp);
        }
    }
}

//! Reading a snapshot body as a stream that verifies its checksum at the end.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::format::SNAPSHOT_VERSION_WITHOUT_SESSIONS;
use super::store::Layout;
use super::{SnapshotInfo, SnapshotRead};

/// The body of a snapshot as an [`io::Read`]. The read that delivers the last body byte also
/// checks the body checksum: on mismatch it fails with [`io::ErrorKind::InvalidData`] (and so
/// does every later read), so a reader never sees the whole body without the check.
#[derive(Debug)]
pub struct SnapshotBody {
    file: File,
    path: PathBuf,
    meta: SnapshotInfo,
    version: u32,
    /// Absolute file offsets of the next body byte and of the end of the body.
    at: u64,
    end: u64,
    recorded: u32,
    hasher: crc32fast::Hasher,
    mismatch: bool,
}

impl SnapshotBody {
    pub(crate) fn new(file: File, path: PathBuf, layout: Layout) -> SnapshotBody {
        SnapshotBody {
            file,
            path,
            meta: layout.meta,
            version: layout.version,
            at: layout.header_len,
            end: layout.header_len + layout.body_len,
            recorded: layout.body_crc,
            hasher: crc32fast::Hasher::new(),
            mismatch: false,
        }
    }

    /// The snapshot's meta (from its verified header).
    pub fn meta(&self) -> &SnapshotInfo {
        &self.meta
    }

    /// Body bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.end - self.at
    }

    /// The snapshot file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn mismatch_error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "snapshot {}: body checksum mismatch (trailer records {:#010x})",
                self.path.display(),
                self.recorded
            ),
        )
    }
}

impl io::Read for SnapshotBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.mismatch {
            return Err(self.mismatch_error());
        }
        let n = (self.end - self.at).min(buf.len() as u64) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self
            .file
            .read_at(&mut buf[..n], self.at)
            .map_err(|e| io::Error::new(e.kind(), format!("read {}: {e}", self.path.display())))?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "snapshot {}: file ended {} bytes before its body",
                    self.path.display(),
                    self.end - self.at
                ),
            ));
        }
        self.hasher.update(&buf[..got]);
        self.at += got as u64;
        if self.at == self.end && self.hasher.clone().finalize() != self.recorded {
            self.mismatch = true;
            return Err(self.mismatch_error());
        }
        Ok(got)
    }
}

impl SnapshotRead for SnapshotBody {
    fn holds_sessions(&self) -> bool {
        self.version != SNAPSHOT_VERSION_WITHOUT_SESSIONS
    }
}

//! The narrow file layer through which every log and snapshot write, sync, create and delete
//! passes, with an optional fault plan for tests.
//!
//! Invariants:
//! - Every mutation of a log file goes through a function here, so a [`FaultPlan`] can fail
//!   any of them deterministically (`EIO`, `ENOSPC`, ...) and tests can prove that a failure
//!   acknowledges nothing and damages nothing already synced.
//! - Every sync goes through a function here too, and a [`FaultPlan`] records the path of each,
//!   so tests can prove *which* files and directories were made durable, not just how many syncs
//!   ran (recovery must sync everything it trusts).
//! - A directory is fsynced after every create, rename or delete in it.
//! - Errors carry the operation and path ([`Error::Io`]).
//! - A configured sync delay ([`LogConfig::sync_delay`](super::LogConfig::sync_delay), a test
//!   facility for a slow disk) is slept here, in `Files::sync_data`, the one place every
//!   data sync of a segment or the hard-state file passes, and nowhere else.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::{Error, Result};
use super::gather::GatherWrite;

/// Kinds of file operation a [`FaultPlan`] can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOp {
    /// A positional write to a segment, the hard-state file or a snapshot file.
    Write,
    /// An `fdatasync`/`fsync` of a file or directory.
    Sync,
}

/// Deterministic I/O faults: fail the `n`-th next operation of a kind with an OS error.
/// Cloning shares the plan.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    inner: Arc<FaultInner>,
}

#[derive(Debug, Default)]
struct FaultInner {
    writes: AtomicU64,
    syncs: AtomicU64,
    armed: Mutex<Vec<(FaultOp, u64, i32)>>,
    synced_paths: Mutex<Vec<PathBuf>>,
}

impl FaultPlan {
    /// A plan that fails nothing until armed.
    pub fn new() -> FaultPlan {
        FaultPlan::default()
    }

    /// Fails the `nth` (0 = the very next) operation of kind `op` from now on with OS error
    /// `errno` (e.g. `libc`'s `EIO` = 5, `ENOSPC` = 28). Later operations succeed again.
    pub fn fail(&self, op: FaultOp, nth: u64, errno: i32) {
        let done = self.counter(op).load(Ordering::SeqCst);
        self.inner
            .armed
            .lock()
            .expect("fault plan lock")
            .push((op, done + nth, errno));
    }

    /// Operations of kind `op` performed so far.
    pub fn count(&self, op: FaultOp) -> u64 {
        self.counter(op).load(Ordering::SeqCst)
    }

    /// The files and directories synced so far (whether or not the sync succeeded), in order.
    pub fn synced_paths(&self) -> Vec<PathBuf> {
        self.inner
            .synced_paths
            .lock()
            .expect("fault plan lock")
            .clone()
    }

    fn counter(&self, op: FaultOp) -> &AtomicU64 {
        match op {
            FaultOp::Write => &self.inner.writes,
            FaultOp::Sync => &self.inner.syncs,
        }
    }

    fn check(&self, op: FaultOp, path: &Path) -> io::Result<()> {
        if op == FaultOp::Sync {
            let mut synced = self.inner.synced_paths.lock().expect("fault plan lock");
            synced.push(path.to_path_buf());
        }
        let n = self.counter(op).fetch_add(1, Ordering::SeqCst);
        let mut armed = self.inner.armed.lock().expect("fault plan lock");
        if let Some(pos) = armed.iter().position(|&(o, at, _)| o == op && at == n) {
            let (_, _, errno) = armed.remove(pos);
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(())
    }
}

/// File operations with an optional fault plan.
#[derive(Clone, Debug)]
pub(crate) struct Files {
    pub faults: Option<FaultPlan>,
    /// When false, file syncs are skipped (measurements only: nothing is durable).
    pub fsync: bool,
    /// Slept before every data sync (tests only: a slow disk).
    pub sync_delay: Duration,
}

impl Default for Files {
    fn default() -> Self {
        Files {
            faults: None,
            fsync: true,
            sync_delay: Duration::ZERO,
        }
    }
}

/// Most slices one `pwritev` takes (`IOV_MAX` on Linux).
const SLICES_PER_CALL_MAX: usize = 1024;

/// `pwritev` until every byte of `slices` is written at `offset` on.
fn write_all_vectored_at(file: &File, mut slices: &mut [IoSlice<'_>], mut offset: u64) -> io::Result<()> {
    while !slices.is_empty() {
        let count = slices.len().min(SLICES_PER_CALL_MAX);
        let offset_arg = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset out of range"))?;
        // SAFETY: `IoSlice` is ABI-compatible with `iovec`, and the first `count` slices are
        // valid for reads for the duration of the call.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                slices.as_ptr().cast::<libc::iovec>(),
                count as libc::c_int,
                offset_arg,
            )
        };
        match written {
            -1 => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => {
                let n = n as usize;
                offset += n as u64;
                IoSlice::advance_slices(&mut slices, n);
            }
        }
    }
    Ok(())
}

impl Files {
    fn check(&self, op: FaultOp, path: &Path) -> io::Result<()> {
        match &self.faults {
            Some(plan) => plan.check(op, path),
            None => Ok(()),
        }
    }

    pub fn write_at(&self, file: &File, path: &Path, buf: &[u8], offset: u64) -> Result<()> {
        self.check(FaultOp::Write, path)
            .and_then(|()| file.write_all_at(buf, offset))
            .map_err(|e| Error::io("write", path, e))
    }

    /// Writes `write`'s pieces at `offset` with `pwritev` (one operation for the fault plan).
    pub fn write_gathered_at(
        &self,
        file: &File,
        path: &Path,
        write: &GatherWrite,
        offset: u64,
    ) -> Result<()> {
        self.check(FaultOp::Write, path)
            .and_then(|()| write_all_vectored_at(file, &mut write.slices(), offset))
            .map_err(|e| Error::io("write", path, e))
    }

    /// `fdatasync`, after sleeping the configured sync delay (if any).
    pub fn sync_data(&self, file: &File, path: &Path) -> Result<()> {
        if !self.sync_delay.is_zero() {
            std::thread::sleep(self.sync_delay);
        }
        self.check(FaultOp::Sync, path)
            .and_then(|()| if self.fsync { file.sync_data() } else { Ok(()) })
            .map_err(|e| Error::io("fdatasync", path, e))
    }

    pub fn sync_all(&self, file: &File, path: &Path) -> Result<()> {
        self.check(FaultOp::Sync, path)
            .and_then(|()| if self.fsync { file.sync_all() } else { Ok(()) })
            .map_err(|e| Error::io("fsync", path, e))
    }

    pub fn sync_dir(&self, dir: &Path) -> Result<()> {
        self.check(FaultOp::Sync, dir)
            .and_then(|()| File::open(dir)?.sync_all())
            .map_err(|e| Error::io("fsync directory", dir, e))
    }

    /// Creates `path` (which must not exist) for reading and writing.
    pub fn create_new(&self, path: &Path) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io("create", path, e))
    }

    /// Writes `len` zero bytes from offset 0, so later writes into the file overwrite
    /// allocated, written blocks and `fdatasync` has no metadata to flush.
    pub fn zero_fill(&self, file: &File, path: &Path, len: u64) -> Result<()> {
        self.zero_range(file, path, 0, len)
    }

    /// Overwrites `len` bytes from `offset` with zeros.
    pub fn zero_range(&self, file: &File, path: &Path, offset: u64, len: u64) -> Result<()> {
        const CHUNK: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK.min(len) as usize];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK);
            self.write_at(file, path, &zeros[..n as usize], offset + done)?;
            done += n;
        }
        Ok(())
    }

    /// Creates `dir` (and missing parents) unless it exists. Not durable by itself: the store
    /// that opens `dir` calls [`Files::sync_dir_and_parent`] before trusting it.
    pub fn create_dir_all(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))
    }

    /// Fsyncs `dir` and the directory holding it. A store does this when it opens, after its
    /// clean-up and before it reports anything: after a process crash the page cache may still
    /// hold creates, renames and deletes in `dir` (or `dir`'s own creation) that never reached
    /// the disk, and whatever the store lists must not vanish in a later power loss.
    pub fn sync_dir_and_parent(&self, dir: &Path) -> Result<()> {
        self.sync_dir(dir)?;
        match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => self.sync_dir(parent),
            _ => self.sync_dir(Path::new(".")),
        }
    }

    pub fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        std::fs::rename(from, to).map_err(|e| Error::io("rename", from, e))
    }

    pub fn remove(&self, path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", path, e)),
        }
    }
}

/// Opens an existing file for reading only.
pub(crate) fn open_read(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::io("open", path, e))
}

/// Opens an existing file for reading and writing.
pub(crate) fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))
}

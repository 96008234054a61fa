//! A small tmpfs under one node's data directory, so the harness can fill that node's disk
//! (the disk-full fault) without touching any real filesystem.
//!
//! Invariants: a [`Tmpfs`] is mounted from [`Tmpfs::mount`] until it is dropped (every return
//! and unwind of the run unmounts it; a lazy detach is the fallback when the mount is busy);
//! mounting is tried once per run and a refusal (not root, a container without
//! `CAP_SYS_ADMIN`) is an answer, not an error of the run; the filesystem grows (a remount with
//! a larger size) whenever its free space falls below [`Tmpfs::HEADROOM`] outside a fault, so a
//! long run never fills it by itself; the filler file lives at the mount's root, beside the
//! node's files, and is removed when the fault heals.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A mounted tmpfs.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
    size: u64,
}

fn c_path(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

fn mount_tmpfs(path: &Path, size: u64, flags: libc::c_ulong) -> std::io::Result<()> {
    let target = c_path(path)?;
    let options = CString::new(format!("size={size},mode=0755")).expect("no NUL");
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let status = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            flags,
            options.as_ptr().cast(),
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Tmpfs {
    /// Free space kept outside the disk-full fault.
    pub const HEADROOM: u64 = 24 << 20;
    /// How much a remount adds.
    const GROWTH: u64 = 64 << 20;
    /// The filler file's name.
    const FILLER: &'static str = "chaos-filler";

    /// Mounts a tmpfs of `size` bytes on the directory `path` (created if missing).
    pub fn mount(path: &Path, size: u64) -> std::io::Result<Tmpfs> {
        std::fs::create_dir_all(path)?;
        mount_tmpfs(path, size, 0)?;
        Ok(Tmpfs {
            path: path.to_path_buf(),
            size,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes free on the filesystem.
    pub fn free_bytes(&self) -> std::io::Result<u64> {
        let path = c_path(&self.path)?;
        // SAFETY: statvfs fills the zeroed struct; the path is a valid C string.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
    }

    /// Grows the filesystem when less than [`Tmpfs::HEADROOM`] is free. Returns the new size
    /// when it grew.
    pub fn keep_headroom(&mut self) -> std::io::Result<Option<u64>> {
        if self.free_bytes()? >= Self::HEADROOM {
            return Ok(None);
        }
        let size = self.size + Self::GROWTH;
        mount_tmpfs(&self.path, size, libc::MS_REMOUNT)?;
        self.size = size;
        Ok(Some(size))
    }

    /// Fills the filesystem until at most `leave` bytes are free (or it is full). Returns the
    /// filler's size.
    pub fn fill(&self, leave: u64) -> std::io::Result<u64> {
        let mut file = File::create(self.path.join(Self::FILLER))?;
        let chunk = vec![0x5Au8; 1 << 20];
        let mut written = 0u64;
        loop {
            let free = self.free_bytes()?;
            if free <= leave {
                break;
            }
            let n = (free - leave).min(chunk.len() as u64) as usize;
            match file.write(&chunk[..n]) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// Removes the filler file (if any).
    pub fn unfill(&self) -> std::io::Result<()> {
        match std::fs::remove_file(self.path.join(Self::FILLER)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Copies the filesystem's contents into `to` (for a run whose data is kept).
    pub fn copy_out(&self, to: &Path) -> std::io::Result<()> {
        copy_tree(&self.path, to)
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let Ok(path) = c_path(&self.path) else {
            return;
        };
        // SAFETY: umount2 on a valid C string.
        unsafe {
            if libc::umount2(path.as_ptr(), 0) != 0 {
                libc::umount2(path.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_grows_and_unmounts_where_mounting_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("fs");
        let Ok(mut fs) = Tmpfs::mount(&at, 8 << 20) else {
            return; // Not permitted here: nothing to test.
        };
        std::fs::write(at.join("file"), b"data").unwrap();
        assert!(fs.fill(1 << 20).unwrap() > 0);
        assert!(fs.free_bytes().unwrap() <= 1 << 20);
        assert_eq!(fs.keep_headroom().unwrap(), Some(72 << 20));
        assert!(fs.free_bytes().unwrap() >= Tmpfs::HEADROOM);
        fs.unfill().unwrap();
        fs.copy_out(&dir.path().join("copy")).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("copy/file")).unwrap(),
            b"data"
        );
        drop(fs);
        assert!(!at.join("file").exists(), "unmounted");
    }
}

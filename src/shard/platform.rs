//! Checks, before any shard starts, that the platform gives glommio what it needs, so that a
//! refusal becomes a message naming the failure and the fix ([`NodeError::Platform`]) rather
//! than an executor error or a panic deep inside glommio.
//!
//! - **io_uring**: where a container's seccomp profile or `kernel.io_uring_disabled` refuses
//!   it, `io_uring_setup` fails with `EPERM` (`ENOSYS` where the kernel lacks it, `EACCES`
//!   under some security modules, `ENOMEM` on kernels before 5.12, which charge the rings to
//!   the locked-memory limit). glommio panics on the first of these instead of returning an
//!   error, so [`check`] sets up (and closes) a one-entry ring first.
//! - **Locked memory**: glommio refuses to build an executor when `RLIMIT_MEMLOCK` is below
//!   [`GLOMMIO_MEMLOCK_MIN_BYTES`], whoever the user is (root included), and reports it as an
//!   opaque I/O error; [`check`] reads the limit first.

use crate::error::NodeError;

/// The smallest `RLIMIT_MEMLOCK` glommio 0.9 accepts (its reactor's `MIN_MEMLOCK_LIMIT`).
pub const GLOMMIO_MEMLOCK_MIN_BYTES: u64 = 512 << 10;

const IO_URING_FIX: &str = "ringraft runs on io_uring (Linux 5.8 or later). In a container, \
allow the io_uring_setup, io_uring_enter and io_uring_register system calls in its seccomp \
profile (the default profiles of Docker and Podman block them: run with --security-opt \
seccomp=PROFILE, a profile that allows them, or seccomp=unconfined); on the host, \
`sysctl kernel.io_uring_disabled` must be 0 (or 1 with the user in kernel.io_uring_group).";

const MEMLOCK_FIX: &str = "raise the locked-memory limit of the process: `ulimit -l unlimited` \
(glommio refuses less than 512 KiB; its buffers take about 1 MiB per shard), \
`docker run --ulimit memlock=-1`, systemd `LimitMEMLOCK=infinity`, or `memlock` in \
/etc/security/limits.conf.";

/// Fails with [`NodeError::Platform`] when the locked-memory limit is below what glommio
/// accepts or io_uring cannot be set up.
pub fn check() -> Result<(), NodeError> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid resource and a pointer to a live value.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } == 0
        && limit.rlim_cur < GLOMMIO_MEMLOCK_MIN_BYTES
    {
        return Err(NodeError::Platform {
            what: "the locked-memory limit (RLIMIT_MEMLOCK) is too low for io_uring".into(),
            detail: format!(
                "{} bytes allowed, at least {GLOMMIO_MEMLOCK_MIN_BYTES} needed",
                limit.rlim_cur
            ),
            fix: MEMLOCK_FIX,
        });
    }
    let error = match probe_io_uring() {
        Ok(()) => return Ok(()),
        Err(error) => error,
    };
    let (what, fix) = match error.raw_os_error() {
        Some(libc::ENOMEM) => ("io_uring could not lock the memory it needs", MEMLOCK_FIX),
        _ => ("io_uring is not available to this process", IO_URING_FIX),
    };
    Err(NodeError::Platform {
        what: what.into(),
        detail: format!("io_uring_setup failed: {error}"),
        fix,
    })
}

/// Sets up a one-entry io_uring and closes it.
fn probe_io_uring() -> std::io::Result<()> {
    // struct io_uring_params: 120 bytes, all zero asks for the defaults.
    let mut params = [0u64; 15];
    // SAFETY: io_uring_setup(2) with a valid pointer to a zeroed io_uring_params; the
    // descriptor it returns is ours to close.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: closing the descriptor io_uring_setup just returned.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

//! Start-up failures caused by the platform: `ringraft node` and `ringraft kv` started where
//! io_uring is refused (a seccomp filter that makes `io_uring_setup` fail with `EPERM`, as
//! container runtimes' default profiles do) or where the locked-memory limit is too low say
//! what failed and how to fix it, and exit with code 2.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use ringraft::procs::free_port_block;

/// The arguments that start a one-member cluster of `command` (`node` or `kv`) in `dir`.
fn one_member(command: &str, dir: &std::path::Path) -> Vec<String> {
    let port = free_port_block();
    let mut args: Vec<String> = vec![
        command.into(),
        "--id".into(),
        "1".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--peers".into(),
        format!("1=127.0.0.1:{port}"),
        "--shards".into(),
        "1".into(),
        "--init".into(),
        "--data-dir".into(),
        dir.display().to_string(),
    ];
    if command == "kv" {
        let resp = format!("127.0.0.1:{}", port + 5);
        args.extend(["--resp-listen".into(), resp.clone()]);
        args.extend(["--resp-peers".into(), format!("1={resp}")]);
    }
    args
}

/// Runs `ringraft <args>` with `restrict` applied in the child before it executes.
fn run_restricted(args: &[String], restrict: fn() -> std::io::Result<()>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ringraft"));
    command.args(args).env("RUST_LOG", "warn");
    // SAFETY: `restrict` only makes async-signal-safe system calls (prctl, setrlimit).
    unsafe {
        command.pre_exec(restrict);
    }
    command.output().expect("run ringraft")
}

/// Installs a seccomp filter that makes `io_uring_setup` fail with EPERM and allows every other
/// system call (x86_64 only: the filter checks the architecture and allows everything else).
fn refuse_io_uring() -> std::io::Result<()> {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const IO_URING_SETUP: u32 = 425;
    let statement = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let mut program = [
        statement(load, 4), // seccomp_data.arch
        jump(AUDIT_ARCH_X86_64, 0, 3),
        statement(load, 0), // seccomp_data.nr
        jump(IO_URING_SETUP, 0, 1),
        statement(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        statement(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let filter = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: prctl with valid arguments; `filter` outlives the calls.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &filter as *const libc::sock_fprog,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Lowers RLIMIT_MEMLOCK to 64 KiB (a limit lowered by anybody, root included, binds glommio,
/// which refuses to start below 512 KiB).
fn low_memlock() -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: 64 << 10,
        rlim_max: 64 << 10,
    };
    // SAFETY: setrlimit with a valid resource and a pointer to a live value.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn assert_platform_failure(output: &Output, command: &str, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "ringraft {command} should exit 2; stderr:\n{stderr}"
    );
    for text in expected {
        assert!(
            stderr.contains(text),
            "ringraft {command}: {text:?} missing from:\n{stderr}"
        );
    }
}

#[test]
fn io_uring_refused_by_seccomp_is_explained_and_exits_2() {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("SKIPPED: the seccomp filter of this test is written for x86_64 only");
        return;
    }
    for command in ["node", "kv"] {
        let dir = tempfile::tempdir().unwrap();
        let output = run_restricted(&one_member(command, dir.path()), refuse_io_uring);
        assert_platform_failure(
            &output,
            command,
            &[
                "io_uring is not available",
                "Operation not permitted",
                "seccomp",
                "kernel.io_uring_disabled",
            ],
        );
    }
}

#[test]
fn a_locked_memory_limit_too_low_is_explained_and_exits_2() {
    for command in ["node", "kv"] {
        let dir = tempfile::tempdir().unwrap();
        let output = run_restricted(&one_member(command, dir.path()), low_memlock);
        assert_platform_failure(
            &output,
            command,
            &[
                "RLIMIT_MEMLOCK",
                "65536 bytes allowed",
                "--ulimit memlock=-1",
            ],
        );
    }
}

/// The control: the same commands without restrictions start (and are stopped by SIGTERM).
#[test]
fn the_same_commands_start_without_restrictions() {
    for command in ["node", "kv"] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringraft"))
            .args(one_member(command, dir.path()))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run ringraft");
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        assert!(line.contains("ready"), "ringraft {command}: {line:?}");
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        assert!(child.wait().unwrap().success());
    }
}

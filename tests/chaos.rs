//! `ringraft chaos` end to end: a short run under faults (every disk fault among them) finds
//! nothing, and the negative control (no fsync, every node killed after a burst of
//! acknowledged writes, their unsynced writes lost) is caught.

use std::process::Command;

use ringraft::chaos::faults::{schedule, Fault};

/// Runs the harness; returns (exit code, stdout).
fn chaos(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .arg("chaos")
        .args(args)
        .output()
        .expect("run ringraft chaos");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), stdout)
}

/// The normal run's seed: its first faults include every disk fault, the disk-full one first
/// (it needs the most time left in the run).
const SEED: u64 = 5417;

#[test]
fn a_short_run_under_faults_finds_no_violation() {
    let early: Vec<Fault> = schedule(SEED, 3).take(4).map(|s| s.fault).collect();
    assert!(
        early[0] == Fault::DiskFull
            && early.iter().any(|f| matches!(f, Fault::TornTail { .. }))
            && early.iter().any(|f| matches!(f, Fault::BitFlip { .. }))
            && early.iter().any(|f| matches!(f, Fault::SlowDisk { .. })),
        "{early:?}"
    );
    let (code, stdout) = chaos(&["--minutes", "0.67", "--seed", &SEED.to_string()]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("violations: 0"), "{stdout}");
    assert!(stdout.contains("torn log tail: 1"), "{stdout}");
    assert!(stdout.contains("slow fsync: 1"), "{stdout}");
    // Where a tmpfs may not be mounted the fault is left out, and the summary says so.
    if !stdout.contains("disk full: left out") {
        assert!(stdout.contains("  disk full: 1"), "{stdout}");
        // The node stopped with its no-space error (another reason would be a violation).
        assert!(!stdout.contains("still ran"), "{stdout}");
    }
}

#[test]
fn losing_acknowledged_writes_is_caught() {
    let (code, stdout) = chaos(&[
        "--minutes",
        "0.3",
        "--seed",
        "7",
        "--unsafe-no-fsync",
        "--lose-unsynced",
        // Whole logs, so the log checker itself must find the lost writes (with compaction it
        // excuses writes compacted away and the final reads catch them instead).
        "--snapshot-entries",
        "0",
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("kill -9 all + power loss: 1"), "{stdout}");
    assert!(stdout.contains("is in no log"), "{stdout}");
}

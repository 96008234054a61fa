//! `ringraft chaos`: the fault harness on real processes (see [`crate::chaos::runner`]).
//!
//! Exit status: 0 when nothing was violated, 1 on any violation, 2 when the harness itself
//! could not run.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::chaos::runner::{self, ChaosOptions, Summary};

#[derive(Args, Debug)]
pub struct ChaosArgs {
    /// Length of the run in minutes (fractions allowed).
    #[arg(long, default_value_t = 5.0)]
    pub minutes: f64,
    /// Seed of the fault schedule and the workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Cluster size.
    #[arg(long, default_value_t = 3, value_parser = nodes_3_or_5)]
    pub nodes: u64,
    /// Run the nodes with `--fsync never` (acknowledged writes may be lost: a negative control).
    #[arg(long)]
    pub unsafe_no_fsync: bool,
    /// Instead of the schedule: kill -9 every node right after a burst of acknowledged writes
    /// and discard what they wrote during it, as a power loss would without fsync.
    #[arg(long, requires = "unsafe_no_fsync")]
    pub lose_unsynced: bool,
    /// Nodes snapshot each group after this many applied entries and compact their logs
    /// behind it, keeping a quarter of that (0: no snapshots, whole logs kept).
    #[arg(long, default_value_t = runner::SNAPSHOT_ENTRIES)]
    pub snapshot_entries: u64,
}

fn nodes_3_or_5(text: &str) -> Result<u64, String> {
    match text {
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err("3 or 5".into()),
    }
}

impl ChaosArgs {
    /// The command line that replays this run.
    fn replay(&self) -> String {
        let mut command = format!(
            "ringraft chaos --minutes {} --seed {} --nodes {}",
            self.minutes, self.seed, self.nodes
        );
        if self.unsafe_no_fsync {
            command.push_str(" --unsafe-no-fsync");
        }
        if self.lose_unsynced {
            command.push_str(" --lose-unsynced");
        }
        if self.snapshot_entries != runner::SNAPSHOT_ENTRIES {
            command.push_str(&format!(" --snapshot-entries {}", self.snapshot_entries));
        }
        command
    }
}

fn print_summary(args: &ChaosArgs, summary: &Summary) {
    println!(
        "ringraft chaos: seed {}, {} nodes, fsync {}, {:.1} min",
        args.seed,
        args.nodes,
        if args.unsafe_no_fsync {
            "never"
        } else {
            "always"
        },
        summary.elapsed.as_secs_f64() / 60.0
    );
    println!(
        "operations checked: {} ({} writes ok, {} writes unknown, {} reads) on {} keys",
        summary.writes_ok + summary.writes_unknown + summary.reads,
        summary.writes_ok,
        summary.writes_unknown,
        summary.reads,
        summary.keys
    );
    println!("log entries checked: {}", summary.log_entries);
    let total: u64 = summary.faults.values().sum();
    println!("faults injected: {total}");
    for (kind, count) in &summary.faults {
        println!("  {kind}: {count}");
    }
    for skipped in &summary.skipped {
        println!("  skipped: {skipped}");
    }
    println!("violations: {}", summary.violations.len());
    for violation in &summary.violations {
        println!("  {violation}");
    }
    if !summary.violations.is_empty() {
        println!("data kept in {}", summary.data_dir.display());
    }
    println!("replay: {}", args.replay());
}

pub fn run_chaos(args: &ChaosArgs) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => {
            eprintln!("ringraft chaos: own executable: {error}");
            return ExitCode::from(2);
        }
    };
    if !(args.minutes > 0.0 && args.minutes <= 24.0 * 60.0) {
        eprintln!("ringraft chaos: --minutes must be in (0, 1440]");
        return ExitCode::from(2);
    }
    let options = ChaosOptions {
        exe,
        length: Duration::from_secs_f64(args.minutes * 60.0),
        seed: args.seed,
        nodes: args.nodes,
        no_fsync: args.unsafe_no_fsync,
        lose_unsynced: args.lose_unsynced,
        snapshot_entries: args.snapshot_entries,
    };
    match runner::run(&options) {
        Ok(summary) => {
            print_summary(args, &summary);
            if summary.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(problem) => {
            eprintln!("ringraft chaos: {problem}");
            eprintln!("replay: {}", args.replay());
            ExitCode::from(2)
        }
    }
}

//! Command-line interface of the `ringraft` binary.

pub mod admin;
pub mod certs;
pub mod chaos;
pub mod kv;
pub mod node_args;
pub mod serve;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::LazyLock;

use clap::{Args, Parser, Subcommand};

use crate::core::BrokenRule;
use crate::sim::{self, SimOptions};

/// `ringraft --version`: the package's version and the commit the binary was built from.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} ({})",
        env!("CARGO_PKG_VERSION"),
        crate::loadgen::BUILD_COMMIT
    )
});

#[derive(Parser, Debug)]
#[command(
    name = "ringraft",
    version = VERSION.as_str(),
    about = "A thread-per-core Raft log-replication engine"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load a local 3-node cluster (or --target) and report throughput and latency.
    Bench(crate::loadgen::BenchArgs),
    /// Run one cluster member until SIGINT/SIGTERM.
    Node(node_args::NodeArgs),
    /// Run one member of the replicated key-value store, serving Redis (RESP2 and RESP3) clients.
    Kv(kv::KvArgs),
    /// Start a local cluster of node processes on loopback; Ctrl-C stops them all.
    Cluster(serve::ClusterArgs),
    /// Run the deterministic cluster simulator over many seeds and report any safety violation.
    Sim(SimArgs),
    /// Verify a node's data directory: every segment, record and hard-state slot. Exits
    /// non-zero when anything is torn or corrupt.
    Inspect(InspectArgs),
    /// Fault injection on real processes: a register workload against a kv cluster while
    /// nodes are killed, paused and cut off and their disks fill up or slow down, then a
    /// linearizability and a log check.
    Chaos(chaos::ChaosArgs),
    /// Administer a running cluster through a node's client port: status, membership changes
    /// (add-learner, promote, remove), leadership transfer, snapshots.
    Admin(admin::AdminArgs),
    /// Write a CA and TLS certificates for a cluster's members and a client (PEM files).
    Certs(certs::CertsArgs),
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The node's data directory (holding one `shard-NNN` directory per shard).
    pub data_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Run only this seed (replay).
    #[arg(long, conflicts_with_all = ["seeds", "start"])]
    pub seed: Option<u64>,
    /// Number of seeds to run.
    #[arg(long, default_value_t = 1000)]
    pub seeds: u64,
    /// First seed of the sweep.
    #[arg(long, default_value_t = 0)]
    pub start: u64,
    /// Cluster size; by default seeds mix 3- and 5-node clusters.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: Option<u64>,
    /// Ticks of the safety phase (faults on).
    #[arg(long, default_value_t = 400)]
    pub safety_ticks: u64,
    /// Ticks allowed for recovery after healing.
    #[arg(long, default_value_t = 300)]
    pub liveness_ticks: u64,
    /// Print every event of the run (use with --seed).
    #[arg(long, requires = "seed")]
    pub trace: bool,
    /// Also take snapshots, compact logs, install snapshots and change the group's members
    /// (five nodes by default, three of them the initial group).
    #[arg(long)]
    pub reconfigure: bool,
    /// Break this rule on every node and expect a violation (exit 1 when one is found, 0
    /// otherwise); `--broken list` prints every rule.
    #[arg(long)]
    pub broken: Option<String>,
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Bench(args) => match crate::loadgen::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(crate::loadgen::BenchError::Usage(problem)) => {
                eprintln!("ringraft bench: {problem}");
                ExitCode::from(2)
            }
            Err(crate::loadgen::BenchError::Failed(problem)) => {
                eprintln!("ringraft bench: {problem}");
                ExitCode::FAILURE
            }
        },
        Command::Node(args) => serve::run_node(args),
        Command::Kv(args) => kv::run_kv(args),
        Command::Cluster(args) => serve::run_cluster(&args),
        Command::Sim(args) => run_sim(&args),
        Command::Inspect(args) => run_inspect(&args),
        Command::Chaos(args) => chaos::run_chaos(&args),
        Command::Admin(args) => admin::run_admin(&args),
        Command::Certs(args) => certs::run_certs(&args),
    }
}

fn run_inspect(args: &InspectArgs) -> ExitCode {
    match crate::log::inspect(&args.data_dir) {
        Ok(report) if report.shards.is_empty() => {
            eprintln!(
                "ringraft inspect: {}: not a data directory (no shard directories or log files)",
                args.data_dir.display()
            );
            ExitCode::from(2)
        }
        Ok(report) => {
            print!("{report}");
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("ringraft inspect: {}: {error}", args.data_dir.display());
            ExitCode::from(2)
        }
    }
}

fn run_sim(args: &SimArgs) -> ExitCode {
    let broken_rule = match args.broken.as_deref() {
        Some("list") => {
            for rule in BrokenRule::all() {
                println!("{}", rule.name());
            }
            return ExitCode::SUCCESS;
        }
        Some(name) => match BrokenRule::from_name(name) {
            Some(rule) => Some(rule),
            None => {
                eprintln!("ringraft sim: no broken rule named {name} (see --broken list)");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let mut base = if args.reconfigure {
        SimOptions::reconfiguring(5)
    } else {
        SimOptions::new(3)
    };
    base.safety_ticks = args.safety_ticks;
    base.liveness_ticks = args.liveness_ticks;
    base.trace = args.trace;
    base.broken_rule = broken_rule;
    let seeds = match args.seed {
        Some(seed) => seed..seed + 1,
        None => args.start..args.start + args.seeds,
    };
    let started = std::time::Instant::now();
    let (mut passed, mut events, mut acknowledged, mut reads) = (0u64, 0u64, 0usize, 0u64);
    let mut duplicates = 0u64;
    for seed in seeds.clone() {
        let options = match args.nodes {
            Some(nodes) => SimOptions {
                nodes: nodes as usize,
                initial_voters: if args.reconfigure {
                    (nodes as usize).min(3)
                } else {
                    nodes as usize
                },
                ..base.clone()
            },
            None if args.reconfigure => base.clone(),
            None => sim::mixed_options(seed, &base),
        };
        match sim::run_seed(seed, &options) {
            Ok(summary) => {
                passed += 1;
                events += summary.events;
                acknowledged += summary.acknowledged_writes;
                reads += summary.reads_served;
                duplicates += summary.session_duplicates;
                if args.seed.is_some() {
                    println!("seed {seed}: {summary:?}");
                }
            }
            Err(violation) => {
                println!(
                    "seed {seed} ({} nodes): VIOLATION: {}",
                    options.nodes, violation.0
                );
                println!(
                    "replay: cargo run --release -- sim --seed {seed}{} \
                     --safety-ticks {} --liveness-ticks {} --trace{}{}",
                    args.nodes
                        .map_or(String::new(), |nodes| format!(" --nodes {nodes}")),
                    args.safety_ticks,
                    args.liveness_ticks,
                    if args.reconfigure {
                        " --reconfigure"
                    } else {
                        ""
                    },
                    broken_rule.map_or(String::new(), |rule| format!(" --broken {}", rule.name()))
                );
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "{passed} seeds ({}..{}) passed, 0 violations: {events} events, {acknowledged} \
         acknowledged writes and {reads} reads checked, {duplicates} retries of applied writes \
         answered without applying them again, {:.1}s",
        seeds.start,
        seeds.end,
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

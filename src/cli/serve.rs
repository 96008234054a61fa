//! `ringraft node` and `ringraft cluster`: running nodes until told to stop.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::api::node::Node;
use crate::cli::node_args::NodeArgs;
use crate::config::NodeConfig;
use crate::engine::state_machine::LogOnly;
use crate::error::{DataDirError, NodeError};
use crate::metrics::MetricsServer;
use crate::procs::local_cluster::{LocalCluster, LocalClusterSpec};
use crate::procs::LogFormat;
use crate::tls::{generate_cluster_certs, CertValidity};
use crate::types::NodeId;

/// Installs the log subscriber: stderr, level from `RUST_LOG` (default `info`), lines in
/// `format`. Text lines are coloured only when stderr is a terminal and `NO_COLOR` is unset,
/// so log files hold no escape sequences.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Settings of a node process beyond its [`NodeConfig`]: the flags over the config file,
/// with the log subscriber installed in the format they ask for.
pub fn node_settings(args: NodeArgs) -> Result<NodeConfig, String> {
    let merged = args.merged()?;
    init_tracing(merged.log_format.unwrap_or_default());
    merged.into_config()
}

/// Starts the metrics endpoint when `config` asks for one.
pub fn start_metrics(config: &NodeConfig) -> Result<Option<MetricsServer>, String> {
    config.metrics_listen.map(MetricsServer::start).transpose()
}

/// `, metrics on http://ADDR` for a node's ready line, when it serves metrics.
pub fn metrics_note(server: Option<&MetricsServer>) -> String {
    server.map_or_else(String::new, |server| {
        format!(", metrics on http://{}", server.addr())
    })
}

/// Exit status when a second SIGINT or SIGTERM ends the process during a graceful stop.
pub const EXIT_SECOND_SIGNAL: i32 = 130;

/// A flag raised by the first SIGINT or SIGTERM; a second one (the flag already raised) ends
/// the process at once with [`EXIT_SECOND_SIGNAL`], without draining. That loses nothing
/// acknowledged: every answer a node gave is on disk.
pub fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        let _ = signal_hook::flag::register_conditional_shutdown(
            signal,
            EXIT_SECOND_SIGNAL,
            flag.clone(),
        );
        let _ = signal_hook::flag::register(signal, flag.clone());
    }
    flag
}

pub fn run_node(args: NodeArgs) -> ExitCode {
    let usage = |problem: String| {
        eprintln!("ringraft node: {problem}");
        ExitCode::from(2)
    };
    let config = match node_settings(args) {
        Ok(config) => config,
        Err(problem) => return usage(problem),
    };
    let metrics = match start_metrics(&config) {
        Ok(metrics) => metrics,
        Err(problem) => return usage(problem),
    };
    let stop = stop_flag();
    let summary = format!(
        "node {} ready: peers on {} (+shard), clients on {}{}, {} shards, {} groups, data in {}",
        config.id,
        config.listen,
        config
            .client_listen
            .map_or_else(|| "none".to_string(), |addr| addr.to_string()),
        metrics_note(metrics.as_ref()),
        config.shards,
        config.groups,
        config.data_dir.display()
    );
    let node = match Node::start(config, |_| LogOnly) {
        Ok(node) => node,
        Err(error) => return start_failure("node", &error),
    };
    if let Some(metrics) = &metrics {
        metrics.sources().node_started(node.observer());
    }
    println!("{summary}");
    while !stop.load(Ordering::Relaxed) && node.is_running() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped_by_signal = stop.load(Ordering::Relaxed);
    if stopped_by_signal {
        drain(&node, "node");
    }
    finish(node, stopped_by_signal, "node")
}

/// Reports why `ringraft <command>` could not start its node, in the command line's terms,
/// and returns the exit code: 2 when the platform is the problem (like a usage error, the
/// operator must change something before trying again), 1 otherwise.
pub fn start_failure(command: &str, error: &NodeError) -> ExitCode {
    eprintln!("ringraft {command}: {error}");
    if let NodeError::DataDir {
        source: DataDirError::NotInitialised,
        ..
    } = error
    {
        eprintln!("ringraft {command}: to initialise the data directory, pass --init");
    }
    if error.is_platform() {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// The first part of a graceful stop: [`Node::drain`] within the node's `drain_timeout`,
/// saying so if it did not complete.
pub fn drain(node: &Node, command: &str) {
    let timeout = node.config().drain_timeout;
    if !node.drain(timeout) {
        eprintln!(
            "ringraft {command}: leadership hand-off and answers not complete within {timeout:?} \
             (--drain-timeout-ms); stopping anyway"
        );
    }
}

/// Shuts `node` down after it was stopped by a signal (`stopped_by_signal`; the caller drained
/// it first) or because a shard stopped, and reports the outcome as `ringraft <command>`'s
/// exit code.
pub fn finish(node: Node, stopped_by_signal: bool, command: &str) -> ExitCode {
    match node.shutdown() {
        Ok(()) if stopped_by_signal => ExitCode::SUCCESS,
        Ok(()) => {
            eprintln!("ringraft {command}: a shard stopped");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("ringraft {command}: {error}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Number of node processes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,
    /// Parent of the nodes' data directories (default: a new temporary directory, removed on
    /// exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Node i listens for peers on base + 20 i, for clients on base + 20 i + 10, and serves
    /// metrics and health checks on base + 220 + i.
    #[arg(long, default_value_t = 17000)]
    pub base_port: u16,
    /// Shards per node.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub shards: u32,
    /// Groups per node (default: one per shard).
    #[arg(long)]
    pub groups: Option<u32>,
    /// Extra flags passed to every node (e.g. "--fsync never", or "--read lease" with --kv).
    #[arg(long, allow_hyphen_values = true)]
    pub node_flags: Option<String>,
    /// Start key-value nodes (`ringraft kv`): node i serves RESP on base + 200 + i.
    #[arg(long)]
    pub kv: bool,
    /// Log line format of every node (passed on to them).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// TLS on every port, with a throwaway CA and certificates written to `certs/` under the
    /// data directory (printed at start).
    #[arg(long)]
    pub tls: bool,
}

pub fn run_cluster(args: &ClusterArgs) -> ExitCode {
    let temporary = match tempfile::Builder::new()
        .prefix("ringraft-cluster-")
        .tempdir()
    {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("ringraft cluster: temporary directory: {error}");
            return ExitCode::FAILURE;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => {
            eprintln!("ringraft cluster: cannot find own binary: {error}");
            return ExitCode::FAILURE;
        }
    };
    let data_root = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let tls = if args.tls {
        let nodes: Vec<NodeId> = (1..=args.nodes).map(NodeId).collect();
        let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
        match generate_cluster_certs(
            &data_root.join("certs"),
            &nodes,
            &hosts,
            CertValidity::days_from_now(30),
        ) {
            Ok(certs) => Some(certs),
            Err(error) => {
                eprintln!("ringraft cluster: {error}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let spec = LocalClusterSpec {
        exe,
        nodes: args.nodes,
        shards: args.shards,
        groups: args.groups.unwrap_or(args.shards),
        base_port: args.base_port,
        cluster_id: 1,
        data_root,
        extra_flags: args
            .node_flags
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .chain(
                args.log_format
                    .into_iter()
                    .flat_map(|format| ["--log-format".into(), format.name().into()]),
            )
            .collect(),
        log_level: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        kv: args.kv,
        tls: tls.clone(),
    };
    let stop = stop_flag();
    let mut cluster = match LocalCluster::start(spec) {
        Ok(cluster) => cluster,
        Err(problem) => {
            eprintln!("ringraft cluster: {problem}");
            return ExitCode::FAILURE;
        }
    };
    for node in &cluster.nodes {
        let resp = if args.kv {
            format!(", RESP {}", node.resp_addr)
        } else {
            String::new()
        };
        println!(
            "node {}: peers {}, clients {}{resp}, metrics http://{}, data {}",
            node.id,
            node.peer_addr,
            node.client_addr,
            node.metrics_addr,
            node.data_dir.display()
        );
    }
    if let Some(certs) = &tls {
        let (cert, key) = certs.client();
        println!(
            "TLS on every port: CA {}, client certificate {} (key {})",
            certs.ca().display(),
            cert.display(),
            key.display()
        );
    }
    println!("Ctrl-C stops every node");
    let mut code = ExitCode::SUCCESS;
    while !stop.load(Ordering::Relaxed) {
        if let Some((id, status)) = cluster.exited() {
            eprintln!("ringraft cluster: node {id} exited ({status}); stopping the others");
            code = ExitCode::FAILURE;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.stop_all();
    code
}

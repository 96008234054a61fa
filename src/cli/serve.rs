//! `ringraft node` and `ringraft cluster`: running nodes until told to stop.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::api::node::Node;
use crate::api::state_machine::LogOnly;
use crate::cli::node_args::NodeArgs;

/// Installs the log subscriber: stderr, level from `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A flag raised by SIGINT or SIGTERM.
fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(signal, flag.clone());
    }
    flag
}

pub fn run_node(args: NodeArgs) -> ExitCode {
    init_tracing();
    let config = match args.resolve() {
        Ok(config) => config,
        Err(problem) => {
            eprintln!("ringraft node: {problem}");
            return ExitCode::from(2);
        }
    };
    let stop = stop_flag();
    let summary = format!(
        "node {} ready: peers on {} (+shard), clients on {}, {} shards, {} groups, data in {}",
        config.id,
        config.listen,
        config
            .client_listen
            .map_or_else(|| "none".to_string(), |addr| addr.to_string()),
        config.shards,
        config.groups,
        config.data_dir.display()
    );
    let node = match Node::start(config, |_| LogOnly) {
        Ok(node) => node,
        Err(error) => {
            eprintln!("ringraft node: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("{summary}");
    while !stop.load(Ordering::Relaxed) && node.is_running() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped_by_signal = stop.load(Ordering::Relaxed);
    match node.shutdown() {
        Ok(()) if stopped_by_signal => ExitCode::SUCCESS,
        Ok(()) => {
            eprintln!("ringraft node: a shard stopped");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("ringraft node: {error}");
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
    /// Node i listens for peers on base + 10*i and for clients on base + 1000 + 10*i.
    #[arg(long, default_value_t = 17000)]
    pub base_port: u16,
    /// Shards per node.
    #[arg(long, default_value_t = 1)]
    pub shards: u32,
    /// Groups per node.
    #[arg(long)]
    pub groups: Option<u32>,
    /// Extra flags passed to every node (e.g. "--fsync never").
    #[arg(long, allow_hyphen_values = true)]
    pub node_flags: Option<String>,
}

/// The local addresses of node `id` in a cluster started at `base_port`.
pub fn cluster_addrs(base_port: u16, id: u64) -> (String, String) {
    let peer = base_port as u64 + 10 * id;
    (
        format!("127.0.0.1:{peer}"),
        format!("127.0.0.1:{}", peer + 1000),
    )
}

pub fn run_cluster(args: &ClusterArgs) -> ExitCode {
    let temporary;
    let parent = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => match tempfile::Builder::new()
            .prefix("ringraft-cluster-")
            .tempdir()
        {
            Ok(dir) => {
                temporary = dir;
                temporary.path().to_path_buf()
            }
            Err(error) => {
                eprintln!("ringraft cluster: temporary directory: {error}");
                return ExitCode::FAILURE;
            }
        },
    };
    let ids: Vec<u64> = (1..=args.nodes).collect();
    let peers: Vec<String> = ids
        .iter()
        .map(|&id| format!("{id}={}", cluster_addrs(args.base_port, id).0))
        .collect();
    let clients: Vec<String> = ids
        .iter()
        .map(|&id| format!("{id}={}", cluster_addrs(args.base_port, id).1))
        .collect();
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => {
            eprintln!("ringraft cluster: cannot find own binary: {error}");
            return ExitCode::FAILURE;
        }
    };
    let stop = stop_flag();
    let mut children: Vec<(u64, Child)> = Vec::new();
    for &id in &ids {
        let (listen, client) = cluster_addrs(args.base_port, id);
        let mut command = Command::new(&exe);
        command
            .arg("node")
            .args(["--id", &id.to_string(), "--listen", &listen])
            .args(["--client-listen", &client, "--peers", &peers.join(",")])
            .args(["--peer-clients", &clients.join(",")])
            .arg("--data-dir")
            .arg(parent.join(format!("node-{id}")))
            .args(["--shards", &args.shards.to_string(), "--init"]);
        if let Some(groups) = args.groups {
            command.args(["--groups", &groups.to_string()]);
        }
        if let Some(flags) = &args.node_flags {
            command.args(flags.split_whitespace());
        }
        match command.spawn() {
            Ok(child) => children.push((id, child)),
            Err(error) => {
                eprintln!("ringraft cluster: start node {id}: {error}");
                stop_children(&mut children);
                return ExitCode::FAILURE;
            }
        }
        println!("node {id}: peers {listen}, clients {client}");
    }
    println!("data in {}; Ctrl-C stops every node", parent.display());
    let mut code = ExitCode::SUCCESS;
    'watch: while !stop.load(Ordering::Relaxed) {
        for (id, child) in &mut children {
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("ringraft cluster: node {id} exited ({status}); stopping the others");
                code = ExitCode::FAILURE;
                break 'watch;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_children(&mut children);
    code
}

/// SIGTERM to every child, then wait (SIGKILL after 5 s).
fn stop_children(children: &mut [(u64, Child)]) {
    for (_, child) in children.iter() {
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    for (_, child) in children.iter_mut() {
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

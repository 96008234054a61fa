//! `ringraft kv`: one member of the replicated key-value store, serving RESP2 and RESP3 clients.
//!
//! It takes every `ringraft node` flag (the same [`NodeArgs`]), plus the RESP address of this
//! node and of every other member: a command for a group led elsewhere is forwarded to the
//! leader's RESP port, so `--resp-peers` must name each member's RESP address.
//!
//! Clients authenticate when `--requirepass-file` or `--users-file` is given; the nodes prove
//! to each other that they hold the `--cluster-secret-file` before forwarding, which is
//! therefore required when the cluster has more than one member (README: Authentication).
//! Every secret is read from a file, never from the command line.
//!
//! Threads: the node's shard threads, plus a Tokio runtime with one worker per shard for the
//! RESP connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::api::node::Node;
use crate::cli::node_args::NodeArgs;
use crate::cli::serve::{
    drain, finish, metrics_note, node_settings, start_failure, start_metrics, stop_flag,
};
use crate::kv::peer_proof::ClusterSecret;
use crate::kv::route::{ReadMode, Router};
use crate::kv::server;
use crate::kv::session::Gatekeeper;
use crate::kv::store::KvStore;
use crate::kv::users::Users;
use crate::procs::parse_members;

#[derive(Args, Debug)]
pub struct KvArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Address for Redis-protocol (RESP2 and RESP3) clients.
    #[arg(long)]
    pub resp_listen: SocketAddr,
    /// Every member's RESP address, ID=ADDR,... (where commands are forwarded to leaders).
    #[arg(long)]
    pub resp_peers: String,
    /// How reads (GET, MGET, EXISTS, STRLEN, DBSIZE) are served.
    #[arg(long, value_enum, default_value_t = ReadMode::Linearizable)]
    pub read: ReadMode,
    /// File holding the default user's password (one trailing newline is ignored): clients
    /// must then AUTH before any other command.
    #[arg(long)]
    pub requirepass_file: Option<PathBuf>,
    /// TOML file of named users: `[[users]]` tables with name, password and access
    /// ("read-write" or "read-only"). Clients must then AUTH; without --requirepass-file the
    /// default user is disabled.
    #[arg(long)]
    pub users_file: Option<PathBuf>,
    /// File holding the secret shared by every kv node of the cluster (at least 16 bytes, e.g.
    /// `openssl rand -hex 32`), with which nodes prove to each other that they may forward
    /// commands. Required when the cluster has more than one member.
    #[arg(long)]
    pub cluster_secret_file: Option<PathBuf>,
}

pub fn run_kv(args: KvArgs) -> ExitCode {
    let fail = |problem: String| {
        eprintln!("ringraft kv: {problem}");
        ExitCode::from(2)
    };
    let config = match node_settings(args.node) {
        Ok(config) => config,
        Err(problem) => return fail(problem),
    };
    let resp_peers: HashMap<_, _> = match parse_members(&args.resp_peers, "--resp-peers") {
        Ok(members) => members.into_iter().collect(),
        Err(problem) => return fail(problem),
    };
    if let Some(missing) = config
        .peers
        .iter()
        .find(|peer| peer.id != config.id && !resp_peers.contains_key(&peer.id))
    {
        return fail(format!("--resp-peers lacks member {}", missing.id.0));
    }
    let metrics = match start_metrics(&config) {
        Ok(metrics) => metrics,
        Err(problem) => return fail(problem),
    };
    let users = match Users::load(args.requirepass_file.as_deref(), args.users_file.as_deref()) {
        Ok(users) => users,
        Err(problem) => return fail(problem),
    };
    let secret = match &args.cluster_secret_file {
        Some(path) => match ClusterSecret::from_file(path) {
            Ok(secret) => Some(Arc::new(secret)),
            Err(problem) => return fail(problem),
        },
        None if config.peers.len() > 1 => {
            return fail(
                "--cluster-secret-file is required when the cluster has more than one member: \
                 kv nodes forward commands to each other's RESP ports and prove with it that they \
                 are members. Give every kv node the same file (e.g. made with \
                 `openssl rand -hex 32 > FILE`)"
                    .into(),
            )
        }
        None => None,
    };
    let auth = if users.required() {
        "password required"
    } else {
        "no password"
    };
    let summary = format!(
        "kv node {} ready: RESP on {} ({auth}), peers on {} (+shard){}, {} shards, {} groups, {} reads, data in {}",
        config.id.0,
        args.resp_listen,
        config.listen,
        metrics_note(metrics.as_ref()),
        config.shards,
        config.groups,
        args.read.name(),
        config.data_dir.display()
    );
    let workers = config.shards as usize;
    let tls = config.tls_on(|ports| ports.resp);
    let stop = stop_flag();
    let node = match Node::start(config, |_| KvStore::default()) {
        Ok(node) => Arc::new(node),
        Err(error) => return start_failure("kv", &error),
    };
    let runtime = match resp_runtime(workers) {
        Ok(runtime) => runtime,
        Err(error) => return fail(format!("RESP runtime: {error}")),
    };
    let listener = match runtime.block_on(tokio::net::TcpListener::bind(args.resp_listen)) {
        Ok(listener) => listener,
        Err(error) => return fail(format!("--resp-listen {}: {error}", args.resp_listen)),
    };
    let gate = Arc::new(Gatekeeper::new(users, secret.clone()));
    let router = Arc::new(Router::new(node.clone(), resp_peers, secret, args.read));
    if let Some(metrics) = &metrics {
        metrics.sources().node_started(node.observer());
        metrics.sources().add_collector(router.stats().clone());
    }
    println!("{summary}");
    let watched = node.clone();
    let stopped = stop.clone();
    // A graceful stop drains the node while RESP clients are still served (their commands
    // for groups this node no longer leads are forwarded to the new leaders); then the server
    // stops reading and each connection writes its last answers and closes.
    runtime.block_on(server::serve(listener, router, gate, tls, async move {
        while !stopped.load(Ordering::Relaxed) && watched.is_running() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if stopped.load(Ordering::Relaxed) {
            let _ = tokio::task::spawn_blocking(move || drain(&watched, "kv")).await;
        }
    }));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match Arc::try_unwrap(node) {
        Ok(node) => finish(node, stop.load(Ordering::Relaxed), "kv"),
        Err(_) => {
            eprintln!("ringraft kv: the node is still in use at shutdown");
            ExitCode::FAILURE
        }
    }
}

/// The runtime of the RESP server: `workers` threads; with one, the thread that serves
/// everything is this one (a current-thread runtime), so connections, the accept loop and the
/// answers the shards hand back meet on one thread with no scheduler between them.
fn resp_runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers <= 1 {
        return tokio::runtime::Builder::new_current_thread()
            .thread_name("ringraft-resp")
            .enable_all()
            .build();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("ringraft-resp")
        .enable_all()
        .build()
}

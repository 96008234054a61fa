//! `ringraft bench`: the load generator.
//!
//! With no arguments it starts a local 3-node cluster (separate processes, loopback, real
//! fsync, data in a temporary directory removed afterwards), warms up, loads it for a fixed
//! time and prints throughput and latency percentiles; every run also writes a result
//! directory (see [`report`]).
//!
//! Invariants:
//! - `--clients` logical clients are assigned round-robin to `--conns` connections (client
//!   `c` to connection `c mod conns`); a connection carries all its clients' requests, sent
//!   together in one write per turn ([`connection`]), and the clients' credits or due times
//!   decide what is ready ([`clients`]), whatever the protocol ([`codec`], [`resp`]).
//! - Connections are spread over the groups (connection `i` to group `i mod groups`) and talk
//!   to the group's leader; a refusal naming another leader moves the connection there.
//! - Only answers that arrive in the measured window (after the warm-up, before the stop)
//!   give latencies; open-loop latency runs from the intended send time.
//! - Socket load runs on one tokio runtime with at most one worker thread per core (and at
//!   most [`connection::LOAD_THREADS_MAX`]); no thread per connection. `--in-process` keeps
//!   one glommio thread per connection ([`in_process`]).
//! - The bench process's own CPU time over the measured window is reported as the load
//!   generator's cost, except with `--in-process`, where that process also runs the nodes.

pub mod clients;
pub mod codec;
pub mod connection;
pub mod in_process;
pub mod inflight;
pub mod load;
pub mod machine;
pub mod node_figures;
pub mod plot;
pub mod report;
pub mod resp;
pub mod rolling;
pub mod sweep;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::client::Client;
use crate::loadgen::codec::{Codec, NativeCodec};
use crate::loadgen::connection::{ConnectionPlan, Load};
use crate::loadgen::in_process::{InProcessCluster, InProcessSpec};
use crate::loadgen::load::{ConnectionResult, LoadCounters, Pace, Schedule, OUTSTANDING_MAX};
use crate::loadgen::machine::{cpu_seconds, Machine};
use crate::loadgen::node_figures::{
    elections, log_figures, node_counters, stage_figures, NodeLogFigures, StagePercentiles,
};
use crate::loadgen::report::{hgrm, write_file, Percentiles};
use crate::loadgen::resp::RespCodec;
use crate::procs::local_cluster::{LocalCluster, LocalClusterSpec};
use crate::procs::{free_port_block, parse_members, FsyncMode};
use crate::tls::{generate_cluster_certs, CertValidity, ClientTls, ClusterCerts};
use crate::types::{GroupId, NodeId};

#[derive(Args, Debug, Clone, Serialize)]
pub struct BenchArgs {
    /// Nodes of the local cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,
    /// Shards per node.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub shards: u32,
    /// Raft groups (default: one per shard).
    #[arg(long)]
    pub groups: Option<u32>,
    /// Bytes per proposal.
    #[arg(long, default_value_t = 128)]
    pub payload: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// fdatasync policy of the nodes.
    #[arg(long, value_enum, default_value_t = FsyncMode::Always)]
    pub fsync: FsyncMode,
    /// Logical clients, each with --pipeline requests in flight (or a share of --rate).
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Connections carrying the clients, assigned round-robin (default: one per client, at
    /// most 256).
    #[arg(long)]
    pub conns: Option<usize>,
    /// Requests in flight per client (closed loop). The default 4 × 1,024 gave about three
    /// quarters of the engine's best throughput on a small machine at a third of its p99;
    /// 4 × 4,096 gave 1.36× the commits at three times the latency (the most per second).
    #[arg(long, default_value_t = 1024)]
    pub pipeline: usize,
    /// Open loop: requests per second in total, shared evenly by the clients (latency from
    /// the intended send time).
    #[arg(long)]
    pub rate: Option<f64>,
    /// native: proposals over the client protocol to `ringraft node`s; resp: SET/GET over
    /// RESP2 to `ringraft kv` nodes.
    #[arg(long, value_enum, default_value_t = Protocol::Native)]
    pub protocol: Protocol,
    /// --protocol resp: percentage of requests that are GETs (the rest are SETs of
    /// --payload bytes). A GET counts as a commit when answered.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub get_percent: u8,
    /// --protocol resp: distinct keys (`key:0` ..), drawn uniformly.
    #[arg(long, default_value_t = 100_000)]
    pub keyspace: u64,
    /// Load an existing cluster instead: its client addresses, ID=ADDR,... (base ports; with
    /// --protocol resp, the RESP addresses).
    #[arg(long)]
    pub target: Option<String>,
    /// Where the result directory goes.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// A short name for the result directory.
    #[arg(long, default_value = "bench")]
    pub label: String,
    /// Keep the nodes' data directories here instead of a temporary directory.
    #[arg(long)]
    pub keep_data: Option<PathBuf>,
    /// kill -9 the leader of group 0 halfway and report the time until a client that committed
    /// before the kill (its session registered) commits again.
    #[arg(long)]
    pub failover: bool,
    /// Restart every node in turn while the load runs: SIGTERM (a graceful stop, handing its
    /// leaderships over), start again on the same data, wait until caught up, the next after
    /// --rolling-gap seconds of steady load. Latency is reported per phase; --duration must
    /// leave room for every restart.
    #[arg(long)]
    pub rolling_restart: bool,
    /// --rolling-restart: seconds of steady load before the first restart and between two.
    #[arg(long, default_value_t = 5.0)]
    pub rolling_gap: f64,
    /// Run every node inside this process and propose through the embedding API (no client
    /// sockets, no process boundaries; peers still talk TCP over loopback).
    #[arg(long)]
    pub in_process: bool,
    /// A throughput/latency curve: saturation first (closed loop), then open loop at 10, 25,
    /// 50, 75, 90 and 100 % of it; each point is a full warm-up + duration.
    #[arg(long)]
    pub sweep: bool,
    /// First port of the local cluster (default: a free block).
    #[arg(long)]
    pub base_port: Option<u16>,
    /// TLS on every port of the local cluster (a throwaway CA and certificates in its data
    /// directory) and on the load's connections.
    #[arg(long, conflicts_with_all = ["in_process", "target"])]
    pub tls: bool,
    /// With --target: the CA that signs the target's nodes; the load speaks TLS.
    #[arg(long, requires = "target")]
    pub tls_ca: Option<PathBuf>,
    /// With --tls-ca: a client certificate to present (PEM).
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// What the load speaks.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Native,
    Resp,
}

/// Default connections: one per client up to this many.
pub const CONNS_DEFAULT_MAX: usize = 256;

/// Why a bench run failed.
#[derive(Debug)]
pub enum BenchError {
    /// The flags do not make a run (exit code 2).
    Usage(String),
    /// The run could not be done.
    Failed(String),
}

#[derive(Serialize)]
pub(crate) struct BenchResult {
    config: BenchArgs,
    commit: String,
    date: String,
    machine: Machine,
    measured_seconds: f64,
    commits: u64,
    commits_per_second: f64,
    payload_megabytes_per_second: f64,
    /// Open loop: the proposals per second offered.
    offered_per_second: Option<f64>,
    failed: u64,
    /// Requests refused with "not leader" (certainly not applied) and sent again.
    redirected: u64,
    latency_us: Percentiles,
    cpu_seconds_per_node: Vec<(u64, f64)>,
    cpu_microseconds_per_commit: Option<f64>,
    /// Connections the clients were carried over.
    connections: usize,
    /// Connections that got at least one commit (a check that the load was spread).
    connections_answered: usize,
    /// The bench process's own CPU seconds in the measured window (`None` with
    /// `--in-process`: see `loadgen_cpu_note`).
    loadgen_cpu_seconds: Option<f64>,
    /// The same per answer received in the measured window.
    loadgen_cpu_microseconds_per_request: Option<f64>,
    loadgen_cpu_note: Option<&'static str>,
    log_per_node: Vec<NodeLogFigures>,
    /// Server-side latency by stage, from a batch's placement in the leader's log.
    stages_us: Option<StagePercentiles>,
    failover_ms: Option<f64>,
    /// Commits the load made after the failover's first one: connections to the killed
    /// leader move to the new one instead of ending.
    failover_commits_after: Option<u64>,
    /// Elections begun during the measured window, over all groups (see
    /// [`node_figures::elections`]); a failover run counts its own.
    elections: Option<u64>,
    /// `--rolling-restart`: each restart, and the latency of each phase.
    rolling_restart: Option<RollingFigures>,
    errors: Vec<String>,
}

#[derive(Serialize)]
struct RollingFigures {
    restarts: Vec<rolling::Restart>,
    phases: Vec<rolling::PhaseFigures>,
}

/// Runs the benchmark; the error is a message for the user.
pub fn run(args: BenchArgs) -> Result<(), BenchError> {
    validate(&args).map_err(BenchError::Usage)?;
    let groups = args.groups.unwrap_or(args.shards);
    let keys = match args.protocol {
        Protocol::Resp => resp::group_keys(args.keyspace, groups).map_err(BenchError::Usage)?,
        Protocol::Native => Vec::new(),
    };
    run_valid(&args, groups, keys).map_err(BenchError::Failed)
}

fn run_valid(args: &BenchArgs, groups: u32, keys: Vec<Arc<Vec<Bytes>>>) -> Result<(), String> {
    let temporary = tempfile::Builder::new()
        .prefix("ringraft-bench-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let data_root = args
        .keep_data
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let certs = match args.tls {
        true => Some(
            generate_cluster_certs(
                &data_root.join("certs"),
                &(1..=args.nodes).map(NodeId).collect::<Vec<_>>(),
                &["127.0.0.1".to_string()],
                CertValidity::days_from_now(1),
            )
            .map_err(|e| e.to_string())?,
        ),
        false => None,
    };
    let tls = match (&certs, &args.tls_ca) {
        (Some(certs), _) => {
            let (cert, key) = certs.client();
            Some(ClientTls::load(&certs.ca(), Some((&cert, &key))))
        }
        (None, Some(ca)) => Some(ClientTls::load(
            ca,
            args.tls_cert.as_deref().zip(args.tls_key.as_deref()),
        )),
        (None, None) => None,
    }
    .transpose()
    .map_err(|e| e.to_string())?;
    let mut target = Target::start(args, groups, &data_root, certs)?;
    let nodes = target.client_addrs();
    let resp_nodes = target.resp_addrs();
    let mut client =
        Client::connect(nodes.clone(), args.shards, Duration::from_secs(15)).with_tls(tls.clone());
    let leaders = match args.protocol {
        Protocol::Native => (0..groups as u64)
            .map(GroupId)
            .map(|group| {
                let leader = client.leader_of(group);
                leader
                    .map(|leader| (group, leader))
                    .ok_or_else(|| format!("no leader for {group} within 15 s"))
            })
            .collect::<Result<Vec<_>, String>>()?,
        Protocol::Resp => {
            resp::leaders(&resp_nodes, groups, Duration::from_secs(15), tls.as_ref())?
        }
    };
    println!(
        "ringraft bench: {} nodes{}, {} shards, {} groups, {} B payloads, {} clients over {} \
         connections ({:?}), {}",
        nodes.len().max(resp_nodes.len()),
        if args.in_process {
            " in this process"
        } else {
            ""
        },
        args.shards,
        groups,
        args.payload,
        args.clients,
        args.connections(),
        args.protocol,
        match (args.sweep, args.rate) {
            (true, _) => "sweep: saturation, then open loop at rising fractions of it".into(),
            (false, Some(rate)) => format!("open loop at {rate}/s"),
            (false, None) => format!("closed loop, {} in flight per client", args.pipeline),
        }
    );
    let mut bench = Bench {
        args,
        target: &mut target,
        nodes,
        resp_nodes,
        keys,
        leaders,
        client,
        data_root: data_root.clone(),
        tls,
    };
    let outcome = if args.sweep {
        sweep::run(&mut bench)
    } else {
        bench
            .measure(bench.args.pace(), args.failover)
            .and_then(|run| bench.report(run, &args.label).map(|_| ()))
    };
    target.stop();
    drop(temporary);
    outcome
}

fn validate(args: &BenchArgs) -> Result<(), String> {
    if args.payload == 0 || args.payload > crate::constants::CLIENT_PAYLOAD_BYTES_MAX {
        return Err(format!(
            "--payload must be 1..={} bytes",
            crate::constants::CLIENT_PAYLOAD_BYTES_MAX
        ));
    }
    if args.clients == 0 || args.pipeline == 0 || args.duration <= 0.0 || args.warmup < 0.0 {
        return Err("--clients, --pipeline and --duration must be positive".into());
    }
    if args
        .conns
        .is_some_and(|conns| conns == 0 || conns > args.clients)
    {
        return Err("--conns must be 1..=--clients".into());
    }
    let per_connection = args.clients.div_ceil(args.connections());
    if args.rate.is_none() && per_connection.saturating_mul(args.pipeline) > OUTSTANDING_MAX {
        return Err(format!(
            "{per_connection} clients per connection × --pipeline {} is more than the \
             {OUTSTANDING_MAX} requests a connection keeps in flight; use more --conns",
            args.pipeline
        ));
    }
    if args
        .rate
        .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
    {
        return Err("--rate must be a positive number of proposals per second".into());
    }
    if args.in_process && args.target.is_some() {
        return Err("--in-process starts its own nodes; it cannot load --target".into());
    }
    if args.protocol == Protocol::Resp && args.in_process {
        return Err("--in-process proposes through Node::propose; it has no RESP".into());
    }
    if args.failover && (args.in_process || args.target.is_some()) {
        return Err(
            "--failover kills a node process: it needs the local cluster of processes".into(),
        );
    }
    if args.failover && args.protocol == Protocol::Resp {
        return Err("--failover probes with native proposals: not with --protocol resp".into());
    }
    if args.rolling_restart
        && (args.in_process
            || args.target.is_some()
            || args.failover
            || args.sweep
            || args.protocol == Protocol::Resp)
    {
        return Err(
            "--rolling-restart restarts the local cluster's node processes: not with \
             --in-process, --target, --failover, --sweep or --protocol resp"
                .into(),
        );
    }
    if args.rolling_restart && !(args.rolling_gap >= 0.0 && args.rolling_gap.is_finite()) {
        return Err("--rolling-gap must be a number of seconds".into());
    }
    if args.sweep && (args.failover || args.rate.is_some()) {
        return Err(
            "--sweep chooses its own rates and cannot be combined with --rate or --failover".into(),
        );
    }
    Ok(())
}

impl BenchArgs {
    /// The pace of one client that the flags ask for.
    fn pace(&self) -> Pace {
        match self.rate {
            Some(rate) => Pace::Open {
                per_second: rate / self.clients as f64,
            },
            None => Pace::Closed {
                pipeline: self.pipeline,
            },
        }
    }

    /// Connections carrying the clients.
    fn connections(&self) -> usize {
        self.conns
            .unwrap_or_else(|| self.clients.min(CONNS_DEFAULT_MAX))
    }

    /// The clients of each connection (round-robin).
    fn clients_by_connection(&self) -> Vec<Vec<usize>> {
        let conns = self.connections();
        (0..conns)
            .map(|connection| (connection..self.clients).step_by(conns).collect())
            .collect()
    }
}

/// What the load runs against.
enum Target {
    Processes(LocalCluster),
    InProcess(InProcessCluster),
    /// Native client addresses, or RESP addresses with `--protocol resp`.
    Remote(Protocol, Vec<(NodeId, SocketAddr)>),
}

impl Target {
    fn start(
        args: &BenchArgs,
        groups: u32,
        data_root: &std::path::Path,
        tls: Option<ClusterCerts>,
    ) -> Result<Target, String> {
        if let Some(list) = &args.target {
            return Ok(Target::Remote(
                args.protocol,
                parse_members(list, "--target")?,
            ));
        }
        let base_port = args.base_port.unwrap_or_else(free_port_block);
        if args.in_process {
            return InProcessCluster::start(InProcessSpec {
                nodes: args.nodes,
                shards: args.shards,
                groups,
                base_port,
                data_root,
                fsync: args.fsync == FsyncMode::Always,
            })
            .map(Target::InProcess);
        }
        let spec = LocalClusterSpec {
            exe: std::env::current_exe().map_err(|e| format!("own binary: {e}"))?,
            nodes: args.nodes,
            shards: args.shards,
            groups,
            base_port,
            cluster_id: 1,
            data_root: data_root.to_path_buf(),
            extra_flags: match args.fsync {
                FsyncMode::Always => vec![],
                FsyncMode::Never => vec!["--fsync".into(), "never".into()],
            },
            // The nodes log warnings only, unless the operator set RUST_LOG for the run.
            log_level: std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            kv: args.protocol == Protocol::Resp,
            tls,
        };
        LocalCluster::start(spec).map(Target::Processes)
    }

    /// Native client addresses (for leaders, node statistics and native load).
    fn client_addrs(&self) -> Vec<(NodeId, SocketAddr)> {
        match self {
            Target::Processes(cluster) => cluster.client_addrs(),
            Target::InProcess(cluster) => cluster.client_addrs(),
            Target::Remote(Protocol::Native, nodes) => nodes.clone(),
            Target::Remote(Protocol::Resp, _) => Vec::new(),
        }
    }

    /// RESP addresses (`ringraft kv` nodes only).
    fn resp_addrs(&self) -> Vec<(NodeId, SocketAddr)> {
        match self {
            Target::Processes(cluster) if cluster.spec.kv => cluster.resp_addrs(),
            Target::Remote(Protocol::Resp, nodes) => nodes.clone(),
            _ => Vec::new(),
        }
    }

    /// Processes whose CPU time is measured, by node (0: the bench process itself, which
    /// holds every node and the load generator with `--in-process`).
    fn pids(&self) -> Vec<(u64, u32)> {
        match self {
            Target::Processes(cluster) => (1..=cluster.spec.nodes)
                .filter_map(|id| Some((id, cluster.pid(NodeId(id))?)))
                .collect(),
            Target::InProcess(_) => vec![(0, std::process::id())],
            Target::Remote(..) => Vec::new(),
        }
    }

    fn stop(&mut self) {
        match self {
            Target::Processes(cluster) => cluster.stop_all(),
            Target::InProcess(_) | Target::Remote(..) => {}
        }
    }
}

/// Everything one bench invocation shares between its measurements.
pub(crate) struct Bench<'a> {
    args: &'a BenchArgs,
    target: &'a mut Target,
    /// Native client addresses (empty for a RESP `--target`).
    nodes: Vec<(NodeId, SocketAddr)>,
    /// RESP addresses (`--protocol resp`).
    resp_nodes: Vec<(NodeId, SocketAddr)>,
    /// `--protocol resp`: the keys of each group.
    keys: Vec<Arc<Vec<Bytes>>>,
    leaders: Vec<(GroupId, NodeId)>,
    client: Client,
    data_root: PathBuf,
    /// The load's TLS, when the target speaks it.
    tls: Option<ClientTls>,
}

/// What one measurement produced.
pub(crate) struct Measurement {
    pace: Pace,
    latency: Histogram<u64>,
    throughput: Vec<(f64, f64)>,
    cpu_seconds_per_node: Vec<(u64, f64)>,
    /// The bench process's CPU seconds in the window (`None` with `--in-process`).
    loadgen_cpu_seconds: Option<f64>,
    answered_in_window: u64,
    connections_answered: usize,
    log_per_node: Vec<NodeLogFigures>,
    stages_us: Option<StagePercentiles>,
    failover_ms: Option<f64>,
    failover_commits_after: Option<u64>,
    elections: Option<u64>,
    failed: u64,
    redirected: u64,
    rolling_restart: Option<RollingFigures>,
    errors: Vec<String>,
}

impl Measurement {
    fn commits_per_second(&self, seconds: f64) -> f64 {
        self.latency.len() as f64 / seconds
    }
}

/// The load of one measurement while it runs.
enum Running {
    Sockets(Load),
    /// `--in-process`: one thread per connection.
    Threads(Vec<std::thread::JoinHandle<std::io::Result<ConnectionResult>>>),
}

impl Running {
    fn finish(self) -> Vec<Result<ConnectionResult, String>> {
        match self {
            Running::Sockets(load) => load.finish(),
            Running::Threads(threads) => threads
                .into_iter()
                .map(|thread| match thread.join() {
                    Ok(Ok(result)) => Ok(result),
                    Ok(Err(error)) => Err(format!("connection: {error}")),
                    Err(_) => Err("a load thread panicked".into()),
                })
                .collect(),
        }
    }
}

impl Bench<'_> {
    /// Starts every connection, each client at `pace`.
    fn start_load(
        &self,
        pace: Pace,
        schedule: Schedule,
        counters: &Arc<LoadCounters>,
    ) -> Result<Running, String> {
        let args = self.args;
        let payload = Bytes::from(vec![0x5a; args.payload]);
        let assignments = args.clients_by_connection();
        if let Target::InProcess(cluster) = &*self.target {
            let nodes: Vec<_> = self
                .nodes
                .iter()
                .filter_map(|&(id, _)| cluster.node(id))
                .collect();
            let threads = assignments
                .iter()
                .enumerate()
                .map(|(connection, clients)| {
                    let (group, leader) = self.leaders[connection % self.leaders.len()];
                    let (nodes, payload, counters) =
                        (nodes.clone(), payload.clone(), counters.clone());
                    let pace = pace.times(clients.len());
                    std::thread::spawn(move || {
                        in_process::run_connection(
                            &nodes, leader, group, payload, pace, schedule, counters,
                        )
                    })
                })
                .collect();
            return Ok(Running::Threads(threads));
        }
        let load = match args.protocol {
            Protocol::Native => Load::start(
                self.plans(&assignments, pace, |_, group| {
                    NativeCodec::new(group, payload.clone())
                }),
                schedule,
                counters.clone(),
            ),
            Protocol::Resp => Load::start(
                self.plans(&assignments, pace, |connection, group| {
                    let keys = self.keys[group.0 as usize].clone();
                    RespCodec::new(keys, payload.clone(), args.get_percent, connection as u64)
                }),
                schedule,
                counters.clone(),
            ),
        };
        load.map(Running::Sockets)
    }

    /// One plan per connection: its clients, its group's leader and a codec from `codec_of`
    /// (given the connection's number and group).
    fn plans<C: Codec>(
        &self,
        assignments: &[Vec<usize>],
        pace: Pace,
        mut codec_of: impl FnMut(usize, GroupId) -> C,
    ) -> Vec<ConnectionPlan<C>> {
        assignments
            .iter()
            .enumerate()
            .map(|(connection, clients)| {
                let (group, leader) = self.leaders[connection % self.leaders.len()];
                ConnectionPlan {
                    codec: codec_of(connection, group),
                    leader,
                    nodes: self.nodes.iter().map(|&(id, _)| id).collect(),
                    addr_of: self.addr_of(group),
                    clients: clients.clone(),
                    total_clients: self.args.clients,
                    pace,
                    tls: self.tls.clone(),
                }
            })
            .collect()
    }

    /// Where the connections of `group` reach each node.
    fn addr_of(&self, group: GroupId) -> Arc<dyn Fn(NodeId) -> Option<SocketAddr> + Send + Sync> {
        let (nodes, shard_offset) = match self.args.protocol {
            Protocol::Native => (
                self.nodes.clone(),
                (group.0 % self.args.shards as u64) as u16,
            ),
            Protocol::Resp => (self.resp_nodes.clone(), 0),
        };
        Arc::new(move |id| {
            let (_, addr) = nodes.iter().find(|(node, _)| *node == id)?;
            Some(SocketAddr::new(addr.ip(), addr.port() + shard_offset))
        })
    }

    /// Loads the target with every client at `pace` for the warm-up and the measured
    /// duration.
    fn measure(&mut self, pace: Pace, failover: bool) -> Result<Measurement, String> {
        let args = self.args;
        let counters = Arc::new(LoadCounters::default());
        let started = Instant::now();
        let measure_from = started + Duration::from_secs_f64(args.warmup);
        let stop = measure_from + Duration::from_secs_f64(args.duration);
        let schedule = Schedule {
            started,
            measure_from,
            stop,
        };
        let running = self.start_load(pace, schedule, &counters)?;
        let in_process = matches!(&*self.target, Target::InProcess(_));
        let own_cpu = || {
            (!in_process)
                .then(|| cpu_seconds(std::process::id()))
                .flatten()
        };
        let mut own_cpu_at_start = None;

        let pids = self.target.pids();
        let progress = indicatif::ProgressBar::new((args.warmup + args.duration).ceil() as u64);
        progress.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {elapsed}/{len}s {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let mut cpu_at_start = Vec::new();
        let mut stats_client =
            Client::connect(self.nodes.clone(), args.shards, Duration::from_secs(2))
                .with_tls(self.tls.clone());
        let mut counters_at_start = Vec::new();
        let mut measuring = false;
        let mut failover_ms = None;
        let mut committed_at_failover = None;
        let failover_at = measure_from + Duration::from_secs_f64(args.duration / 2.0);
        let mut rolling = args.rolling_restart.then(|| {
            counters.phase.store(rolling::STEADY, Ordering::Relaxed);
            let nodes = self.nodes.iter().map(|&(id, _)| id).collect();
            let gap = Duration::from_secs_f64(args.rolling_gap);
            rolling::RollingRestart::new(nodes, self.leaders.len() as u32, measure_from, gap)
        });
        let sample_every = Duration::from_millis(if rolling.is_some() { 50 } else { 200 });
        let mut last_count = 0;
        let mut last_tick = Instant::now();
        let mut throughput = Vec::new();
        while Instant::now() < stop {
            std::thread::sleep(sample_every);
            let now = Instant::now();
            if !measuring && now >= measure_from {
                measuring = true;
                own_cpu_at_start = own_cpu();
                cpu_at_start = pids
                    .iter()
                    .map(|&(id, pid)| (id, cpu_seconds(pid)))
                    .collect();
                counters_at_start = node_counters(&mut stats_client, &self.nodes);
            }
            if failover && failover_ms.is_none() && now >= failover_at {
                if let Target::Processes(cluster) = &mut *self.target {
                    failover_ms = Some(kill_leader_and_wait(cluster, &mut self.client, &self.tls)?);
                    committed_at_failover = Some(counters.committed.load(Ordering::Relaxed));
                }
            }
            if let (Some(rolling), Target::Processes(cluster)) = (&mut rolling, &mut *self.target) {
                if now >= measure_from {
                    rolling.step(cluster, &mut self.client, &counters)?;
                }
            }
            let count = counters.committed.load(Ordering::Relaxed);
            let elapsed = now.duration_since(last_tick).as_secs_f64();
            let rate = (count - last_count) as f64 / elapsed;
            throughput.push((now.duration_since(started).as_secs_f64(), rate));
            progress.set_position(now.duration_since(started).as_secs());
            progress.set_message(format!("{rate:>10.0} commits/s"));
            last_count = count;
            last_tick = now;
        }
        let own_cpu_at_end = own_cpu();
        let cpu_at_end: Vec<(u64, Option<f64>)> = pids
            .iter()
            .map(|&(id, pid)| (id, cpu_seconds(pid)))
            .collect();
        let counters_at_end = node_counters(&mut stats_client, &self.nodes);
        progress.finish_and_clear();

        let mut total = ConnectionResult::new();
        let mut connections_answered = 0;
        for connection in running.finish() {
            match connection {
                Ok(result) => {
                    connections_answered += usize::from(result.committed > 0);
                    total.absorb(result);
                }
                Err(error) => total.errors.push(error),
            }
        }
        let failover_commits_after = committed_at_failover.map(|at| {
            counters
                .committed
                .load(Ordering::Relaxed)
                .saturating_sub(at)
        });
        let mut errors = total.errors;
        errors.sort();
        errors.dedup();
        let rolling_restart = match rolling {
            Some(rolling) if !rolling.is_done() => {
                return Err(format!(
                    "the rolling restart did not finish within --duration {} s ({} of {} nodes \
                     restarted); give it more time",
                    args.duration,
                    rolling.restarts.len(),
                    self.nodes.len()
                ))
            }
            Some(rolling) => Some(RollingFigures {
                phases: total
                    .by_phase
                    .iter()
                    .enumerate()
                    .map(|(index, latency)| rolling::PhaseFigures {
                        phase: match index + 1 {
                            rolling::STEADY => "steady".into(),
                            phase => rolling
                                .restarts
                                .get(phase - rolling::STEADY - 1)
                                .map_or_else(
                                    || format!("phase {phase}"),
                                    |restart| format!("restart of node {}", restart.node),
                                ),
                        },
                        answered: latency.len(),
                        latency_us: Percentiles::of(latency),
                    })
                    .collect(),
                restarts: rolling.restarts,
            }),
            None => None,
        };
        Ok(Measurement {
            pace,
            latency: total.latency_us,
            throughput,
            cpu_seconds_per_node: cpu_at_start
                .iter()
                .zip(&cpu_at_end)
                .filter_map(|(&(id, start), &(_, end))| Some((id, end? - start?)))
                .collect(),
            loadgen_cpu_seconds: own_cpu_at_end
                .zip(own_cpu_at_start)
                .map(|(end, start)| end - start),
            answered_in_window: total.answered_in_window,
            connections_answered,
            log_per_node: log_figures(&counters_at_start, &counters_at_end, args.duration),
            stages_us: stage_figures(&counters_at_start, &counters_at_end),
            elections: elections(&counters_at_start, &counters_at_end),
            failover_ms,
            failover_commits_after,
            failed: total.failed,
            redirected: total.redirected,
            rolling_restart,
            errors,
        })
    }

    /// Prints a measurement and writes its result directory (named after `label`); returns
    /// the result.
    fn report(&self, run: Measurement, label: &str) -> Result<BenchResult, String> {
        let args = self.args;
        let measured_seconds = args.duration;
        let commits = run.latency.len();
        let commits_per_second = run.commits_per_second(measured_seconds);
        let cpu_total: f64 = run.cpu_seconds_per_node.iter().map(|(_, s)| s).sum();
        let result = BenchResult {
            commit: BUILD_COMMIT.to_string(),
            date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            machine: Machine::describe(&self.data_root),
            measured_seconds,
            commits,
            commits_per_second,
            payload_megabytes_per_second: commits_per_second * args.payload as f64 / 1e6,
            offered_per_second: match run.pace {
                Pace::Open { per_second } => Some(per_second * args.clients as f64),
                Pace::Closed { .. } => None,
            },
            failed: run.failed,
            redirected: run.redirected,
            latency_us: Percentiles::of(&run.latency),
            cpu_microseconds_per_commit: (commits > 0 && !run.cpu_seconds_per_node.is_empty())
                .then(|| cpu_total * 1e6 / commits as f64),
            cpu_seconds_per_node: run.cpu_seconds_per_node,
            connections: args.connections(),
            connections_answered: run.connections_answered,
            loadgen_cpu_seconds: run.loadgen_cpu_seconds,
            loadgen_cpu_microseconds_per_request: run
                .loadgen_cpu_seconds
                .filter(|_| run.answered_in_window > 0)
                .map(|seconds| seconds * 1e6 / run.answered_in_window as f64),
            loadgen_cpu_note: args.in_process.then_some(
                "not measured: with --in-process the bench process also runs every node \
                 (its whole CPU is node 0 in cpu_seconds_per_node)",
            ),
            log_per_node: run.log_per_node,
            stages_us: run.stages_us,
            failover_ms: run.failover_ms,
            failover_commits_after: run.failover_commits_after,
            elections: run.elections,
            rolling_restart: run.rolling_restart,
            errors: run.errors,
            config: args.clone(),
        };
        print_summary(&result);
        let dir = self.result_dir(&result, label);
        let json = serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?;
        write_file(&dir, "result.json", &json).map_err(|e| format!("{}: {e}", dir.display()))?;
        write_file(&dir, "latency.hgrm", &hgrm(&run.latency)).map_err(|e| e.to_string())?;
        write_file(&dir, "summary.md", &summary_markdown(&result)).map_err(|e| e.to_string())?;
        plot::latency_percentiles(&run.latency, &dir.join("latency.svg"))?;
        plot::throughput_over_time(&run.throughput, &dir.join("throughput.svg"))?;
        println!("results in {}", dir.display());
        Ok(result)
    }

    fn result_dir(&self, result: &BenchResult, label: &str) -> PathBuf {
        self.args.out.join(format!(
            "{}-{}-{}",
            &result.date[..10],
            result.commit,
            label
        ))
    }
}

/// Kills the leader of group 0 and returns the milliseconds until a client's next proposal
/// commits. The probing client commits one proposal before the kill, so it meets the failover
/// as an established client does: with its session registered, it needs one commit after it.
fn kill_leader_and_wait(
    cluster: &mut LocalCluster,
    client: &mut Client,
    tls: &Option<ClientTls>,
) -> Result<f64, String> {
    let leader = client
        .leader_of(GroupId(0))
        .ok_or("no leader to kill for --failover")?;
    let mut probe = Client::connect(
        cluster.client_addrs(),
        cluster.spec.shards,
        Duration::from_secs(10),
    )
    .with_tls(tls.clone());
    probe
        .propose(GroupId(0), b"failover-probe-session")
        .map_err(|e| format!("the failover probe could not commit before the kill: {e}"))?;
    cluster.kill(leader);
    let killed = Instant::now();
    println!("killed leader {leader} (kill -9)");
    let committed = probe.propose(GroupId(0), b"failover-probe");
    let elapsed = killed.elapsed().as_secs_f64() * 1e3;
    committed.map_err(|e| format!("no commit after killing the leader: {e}"))?;
    Ok(elapsed)
}

fn print_summary(result: &BenchResult) {
    println!(
        "commits: {:.0}/s  ({:.1} MB/s of payload, {} commits in {:.1} s, {} failed)",
        result.commits_per_second,
        result.payload_megabytes_per_second,
        result.commits,
        result.measured_seconds,
        result.failed
    );
    println!("latency: {}", result.latency_us.line());
    if let Some(stages) = &result.stages_us {
        println!("  by stage, from placement in the leader's log (server side):");
        println!("    leader durable {}", stages.leader_durable.line());
        println!("    committed      {}", stages.committed.line());
        println!("    applied        {}", stages.applied.line());
    }
    for (node, seconds) in &result.cpu_seconds_per_node {
        let who = match node {
            0 => "this process (every node and the load)".to_string(),
            node => format!("node {node}"),
        };
        println!(
            "{who}: {:.2} CPU s ({:.0}% of one core)",
            seconds,
            seconds / result.measured_seconds * 100.0
        );
    }
    for log in &result.log_per_node {
        println!(
            "node {} log: {:.0} flushes/s (fdatasync each), {:.1} entries per flush, {:.1} MB/s written",
            log.node, log.flushes_per_second, log.entries_per_flush, log.megabytes_written_per_second
        );
    }
    if let Some(per_commit) = result.cpu_microseconds_per_commit {
        println!("CPU per commit (all nodes): {per_commit:.2} µs");
    }
    println!("load generator CPU: {}", loadgen_cpu_line(result));
    if let Some(elections) = result.elections.filter(|&count| count > 0) {
        println!("elections during the measured window: {elections}");
    }
    if let Some(ms) = result.failover_ms {
        println!(
            "failover: next commit {ms:.0} ms after kill -9 of the leader; {} commits after it",
            result.failover_commits_after.unwrap_or(0)
        );
    }
    if result.redirected > 0 {
        println!(
            "{} requests refused with \"not leader\" and sent again (not failures)",
            result.redirected
        );
    }
    if let Some(rolling) = &result.rolling_restart {
        for restart in &rolling.restarts {
            println!(
                "restart of node {} (leader of {} groups): stopped in {:.0} ms, caught up {:.0} ms \
                 after SIGTERM",
                restart.node, restart.led_groups, restart.stop_ms, restart.phase_ms
            );
        }
        for phase in &rolling.phases {
            println!("{}: {}", phase.phase, phase.latency_us.line());
        }
    }
    for error in &result.errors {
        println!("error seen: {error}");
    }
}

/// The load generator's own CPU, or why it is not measured.
fn loadgen_cpu_line(result: &BenchResult) -> String {
    match (
        result.loadgen_cpu_seconds,
        result.loadgen_cpu_microseconds_per_request,
    ) {
        (Some(seconds), per_request) => format!(
            "{seconds:.2} CPU s ({:.0}% of one core), {} µs per request",
            seconds / result.measured_seconds * 100.0,
            per_request.map_or_else(|| "n/a".into(), |v| format!("{v:.2}"))
        ),
        (None, _) => result
            .loadgen_cpu_note
            .unwrap_or("not measured")
            .to_string(),
    }
}

/// The `--rolling-restart` section of the summary: failures, each restart, latency per phase.
fn rolling_markdown(result: &BenchResult) -> String {
    let Some(rolling) = &result.rolling_restart else {
        return String::new();
    };
    let mut text = format!(
        "\n## Rolling restart\n\nFailed requests: {}; refused with \"not leader\" and sent again: {} \
         (throughput over time: `throughput.svg`).\n\n\
         | node | leader of groups | SIGTERM → exit ms | SIGTERM → caught up ms |\n|---|---|---|---|\n",
        result.failed, result.redirected
    );
    for restart in &rolling.restarts {
        text.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} |\n",
            restart.node, restart.led_groups, restart.stop_ms, restart.phase_ms
        ));
    }
    text.push_str("\n| phase | answered | p50 µs | p99 µs | max µs |\n|---|---|---|---|---|\n");
    for phase in &rolling.phases {
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            phase.phase,
            phase.answered,
            phase.latency_us.p50,
            phase.latency_us.p99,
            phase.latency_us.max
        ));
    }
    text
}

fn summary_markdown(result: &BenchResult) -> String {
    let mut logs = String::new();
    for log in &result.log_per_node {
        logs.push_str(&format!(
            "| node {} | {:.0} | {:.1} | {:.1} |\n",
            log.node,
            log.flushes_per_second,
            log.entries_per_flush,
            log.megabytes_written_per_second
        ));
    }
    let logs = if logs.is_empty() {
        logs
    } else {
        format!(
            "\n| log | flushes/s (one fdatasync each) | entries per flush | MB/s written |\n\
             |---|---|---|---|\n{logs}"
        )
    };
    let stages = match &result.stages_us {
        Some(stages) => {
            let row = |name: &str, p: &Percentiles| {
                format!(
                    "| {name} | {} | {} | {} | {} | {} |\n",
                    p.p50, p.p90, p.p99, p.p999, p.max
                )
            };
            format!(
                "\nServer-side latency by stage, from placement in the leader's log (µs):\n\n\
                 | stage | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|\n{}{}{}",
                row("leader durable", &stages.leader_durable),
                row("committed", &stages.committed),
                row("applied", &stages.applied)
            )
        }
        None => String::new(),
    };
    let config = &result.config;
    format!(
        "# ringraft bench: {label}\n\n\
         - date {date}, commit `{commit}`\n\
         - machine: {cpu}, {cores} cores, {mem:.0} GiB, Linux {kernel}, data on {fs}, \
         1-minute load average {load:.1}\n\
         - {nodes} nodes, {shards} shards, {groups} groups, {payload} B payloads, fsync {fsync:?}, \
         {clients} clients over {connections} connections ({protocol:?}), {pace}\n\
         - command: `cargo run --release -- bench {flags}`\n\n\
         | commits/s | MB/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | CPU µs/commit (nodes) | load generator CPU µs/request |\n\
         |---|---|---|---|---|---|---|---|---|\n\
         | {cps:.0} | {mbps:.1} | {p50} | {p90} | {p99} | {p999} | {max} | {cpu_per_commit} | {loadgen_per_request} |\n\n\
         Load generator: {loadgen}.\n{stages}{logs}{rolling}",
        rolling = rolling_markdown(result),
        label = config.label,
        date = result.date,
        commit = result.commit,
        cpu = result.machine.cpu_model,
        cores = result.machine.cores,
        mem = result.machine.memory_gib,
        kernel = result.machine.kernel,
        fs = result.machine.data_filesystem,
        load = result.machine.load_average,
        nodes = config.nodes,
        shards = config.shards,
        groups = config.groups.unwrap_or(config.shards),
        payload = config.payload,
        fsync = config.fsync,
        clients = config.clients,
        connections = result.connections,
        protocol = config.protocol,
        loadgen_per_request = result
            .loadgen_cpu_microseconds_per_request
            .map_or_else(|| "n/a".into(), |v| format!("{v:.2}")),
        loadgen = loadgen_cpu_line(result),
        pace = match config.rate {
            Some(rate) => format!("open loop {rate}/s"),
            None => format!("closed loop, pipeline {}", config.pipeline),
        },
        flags = std::env::args().skip(2).collect::<Vec<_>>().join(" "),
        cps = result.commits_per_second,
        mbps = result.payload_megabytes_per_second,
        p50 = result.latency_us.p50,
        p90 = result.latency_us.p90,
        p99 = result.latency_us.p99,
        p999 = result.latency_us.p999,
        max = result.latency_us.max,
        cpu_per_commit = result
            .cpu_microseconds_per_commit
            .map_or_else(|| "n/a".into(), |v| format!("{v:.2}")),
    )
}

/// The commit this binary was built from, with `-dirty` when tracked files differed from it,
/// or `unknown` outside a git checkout. It is fixed at build time, so a result names the code
/// that ran, not whatever is checked out where the binary happens to run.
pub const BUILD_COMMIT: &str = git_version::git_version!(
    args = ["--always", "--abbrev=7", "--dirty=-dirty", "--exclude=*"],
    fallback = "unknown"
);

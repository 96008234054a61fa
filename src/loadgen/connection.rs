//! Load-generating connections on a tokio runtime with at most one worker thread per core.
//!
//! Each connection is one task carrying the requests of all its logical clients
//! ([`Clients`]); request ids keep them apart ([`InFlight`]). A turn of the task:
//! 1. if the last write is done, take every request that is ready (credits or due times) and
//!    encode them all into one buffer (open loop: at most one batch per
//!    `OPEN_LOOP_BATCH_GAP`, 200 µs, so that due requests are not sent a few at a time);
//! 2. wait for whichever comes first: bytes to read, the socket taking some of that buffer,
//!    the next open-loop request falling due (timer granularity ~1 ms), or the run's stop;
//! 3. on bytes read, match every complete answer to its request.
//!
//! Reading never waits for writing, so a server that answers while it reads cannot deadlock
//! against the load. After `stop` nothing new is sent and answers are awaited for at most
//! `DRAIN` (5 s). A "not leader" refusal (certainly not applied, so not a failure) ends the
//! connection's use of its current socket: nothing more is sent there, the answers of the
//! requests still in flight on it are awaited (at most `DRAIN`), then its clients reconnect to
//! the leader the node named (or to the same node, after a pause, while it names none) with
//! fresh credits (open loop: intended send times count from the reconnection). A leadership
//! change thus costs a reconnection, not the rest of the run, and a node that hands its
//! leadership over before stopping (answering everything it took) fails no request. Requests
//! whose answer never comes (a socket lost, or `DRAIN` passed) count as failed.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::loadgen::clients::Clients;
use crate::loadgen::codec::{Codec, Outcome};
use crate::loadgen::inflight::{InFlight, Pending};
use crate::loadgen::load::{ConnectionResult, LoadCounters, Pace, Schedule, OUTSTANDING_MAX};
use crate::tls::{ClientTls, TokioIo};
use crate::types::NodeId;

/// How long answers are awaited after the load stops.
const DRAIN: Duration = Duration::from_secs(5);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Open loop: the least time between two batches of one connection's due requests. Sending
/// each request as it fell due made a write every few requests (about 100 K writes/s at
/// 1 M requests/s, each also paid by the leader); batching them this far apart adds at most
/// this much to a request's latency, which the results show (latency counts from the
/// intended send time).
const OPEN_LOOP_BATCH_GAP: Duration = Duration::from_micros(200);
/// Most worker threads of the load runtime (and never more than the cores).
pub const LOAD_THREADS_MAX: usize = 4;

/// Worker threads of the load runtime on this machine: one per core, at most
/// [`LOAD_THREADS_MAX`].
pub fn load_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min(LOAD_THREADS_MAX)
}

/// One connection's share of the load.
pub struct ConnectionPlan<C> {
    pub codec: C,
    /// The node to talk to first, every node that may lead the group (tried in turn when a
    /// socket is lost), and where each node is reached.
    pub leader: NodeId,
    pub nodes: Vec<NodeId>,
    pub addr_of: Arc<dyn Fn(NodeId) -> Option<SocketAddr> + Send + Sync>,
    /// Numbers of this connection's clients among `total_clients`.
    pub clients: Vec<usize>,
    pub total_clients: usize,
    /// Each client's pace.
    pub pace: Pace,
    /// Speak TLS (checking each node is the member it should be).
    pub tls: Option<ClientTls>,
}

/// Connections running on their own runtime.
pub struct Load {
    runtime: tokio::runtime::Runtime,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<ConnectionResult>>>,
}

impl Load {
    /// Starts every planned connection.
    pub fn start<C: Codec>(
        plans: Vec<ConnectionPlan<C>>,
        schedule: Schedule,
        counters: Arc<LoadCounters>,
    ) -> Result<Load, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(load_threads())
            .thread_name("ringraft-bench-load")
            .enable_all()
            .build()
            .map_err(|e| format!("load runtime: {e}"))?;
        let tasks = plans
            .into_iter()
            .map(|plan| runtime.spawn(run(plan, schedule, counters.clone())))
            .collect();
        Ok(Load { runtime, tasks })
    }

    /// Waits for every connection (each ends by itself at most `DRAIN` (5 s) after the stop).
    pub fn finish(self) -> Vec<Result<ConnectionResult, String>> {
        let Load { runtime, tasks } = self;
        runtime.block_on(async {
            let mut results = Vec::new();
            for task in tasks {
                results.push(match task.await {
                    Ok(Ok(result)) => Ok(result),
                    Ok(Err(error)) => Err(format!("connection: {error}")),
                    Err(_) => Err("a load task panicked".into()),
                });
            }
            results
        })
    }
}

/// Runs one connection's clients until the schedule's end, following redirects.
async fn run<C: Codec>(
    mut plan: ConnectionPlan<C>,
    mut schedule: Schedule,
    counters: Arc<LoadCounters>,
) -> std::io::Result<ConnectionResult> {
    let mut total = ConnectionResult::new();
    let mut leader = plan.leader;
    loop {
        let addr = (plan.addr_of)(leader)
            .ok_or_else(|| std::io::Error::other(format!("no address for node {leader}")))?;
        let clients = Clients::new(plan.pace, &plan.clients, plan.total_clients);
        let inflight = InFlight::new(capacity(plan.pace.times(plan.clients.len())));
        let endpoint = Endpoint {
            node: leader,
            addr,
            tls: plan.tls.as_ref(),
        };
        let (part, end) = drive(
            endpoint,
            &mut plan.codec,
            clients,
            inflight,
            schedule,
            &counters,
        )
        .await?;
        total.absorb(part);
        let next = match (total.redirect.take(), end) {
            (Some(next), _) => next,
            // The node went away (killed, restarting): ask the next one, which answers with
            // a redirect to the leader once there is one.
            (None, SocketEnd::Lost) => next_after(&plan.nodes, leader),
            (None, SocketEnd::Closed) => return Ok(total),
        };
        if Instant::now() >= schedule.stop {
            return Ok(total);
        }
        if next == leader || end == SocketEnd::Lost {
            // Named itself while refusing, or an election is likely running: let it settle.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        leader = next;
        schedule.started = Instant::now();
    }
}

/// In-flight capacity of a connection whose clients together run at `pace`.
fn capacity(pace: Pace) -> usize {
    match pace {
        Pace::Closed { pipeline } => pipeline.min(OUTSTANDING_MAX),
        Pace::Open { .. } => OUTSTANDING_MAX,
    }
}

/// The node after `current` in `nodes`, round the ring.
fn next_after(nodes: &[NodeId], current: NodeId) -> NodeId {
    let at = nodes.iter().position(|&node| node == current);
    at.map_or(current, |at| nodes[(at + 1) % nodes.len()])
}

/// How a socket's life ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SocketEnd {
    /// At the schedule's end, with everything answered (or drained), or on a redirect.
    Closed,
    /// Before that: the connection could not be made, failed or was closed by the node. Its
    /// requests in flight count as failed (their outcome is unknown).
    Lost,
}

/// One socket's life: until the schedule's end, a redirect, or the socket's loss. Only a
/// malformed answer is an error.
async fn drive<C: Codec>(
    endpoint: Endpoint<'_>,
    codec: &mut C,
    clients: Clients,
    mut inflight: InFlight,
    schedule: Schedule,
    counters: &LoadCounters,
) -> std::io::Result<(ConnectionResult, SocketEnd)> {
    let mut result = ConnectionResult::new();
    let addr = endpoint.addr;
    let lost = match exchange(
        endpoint,
        codec,
        clients,
        &mut inflight,
        schedule,
        counters,
        &mut result,
    )
    .await
    {
        Ok(()) => return Ok((result, SocketEnd::Closed)),
        Err(Loss::Protocol(error)) => return Err(error),
        Err(Loss::Socket(error)) => error,
    };
    let unknown = inflight.len() as u64;
    result.failed += unknown;
    counters.add(0, unknown);
    result.note_error(format!(
        "connection to {addr} lost ({lost}); requests in flight there count as failed"
    ));
    Ok((result, SocketEnd::Lost))
}

/// Where a socket goes: a node, its address for this connection, and the TLS to speak.
struct Endpoint<'a> {
    node: NodeId,
    addr: SocketAddr,
    tls: Option<&'a ClientTls>,
}

impl Endpoint<'_> {
    async fn connect(&self) -> std::io::Result<Box<dyn TokioIo>> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        Ok(match self.tls {
            Some(tls) => Box::new(tls.connect_tokio(stream, self.node).await?),
            None => Box::new(stream),
        })
    }
}

/// Why [`exchange`] stopped early.
enum Loss {
    /// The socket: the node may be gone; the connection moves on.
    Socket(std::io::Error),
    /// A malformed or unexpected answer: the run's own error.
    Protocol(std::io::Error),
}

/// Sends and matches answers on one socket until the schedule's end (or a redirect, once the
/// requests in flight are answered).
async fn exchange<C: Codec>(
    endpoint: Endpoint<'_>,
    codec: &mut C,
    mut clients: Clients,
    inflight: &mut InFlight,
    schedule: Schedule,
    counters: &LoadCounters,
    result: &mut ConnectionResult,
) -> Result<(), Loss> {
    let socket = |error: std::io::Error| Loss::Socket(error);
    let protocol = |error: String| Loss::Protocol(std::io::Error::other(error));
    let (node, addr) = (endpoint.node, endpoint.addr);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect())
        .await
        .map_err(|_| {
            socket(std::io::Error::new(
                ErrorKind::TimedOut,
                "connect timed out",
            ))
        })?
        .map_err(socket)?;
    let (mut reader, mut writer) = tokio::io::split(stream);
    codec.reset();
    let (mut out, mut written) = (Vec::new(), 0);
    // When the next batch may be taken (open loop; a closed loop sends whenever it may).
    let mut next_batch = schedule.started;
    // Until when answers are awaited: `DRAIN` after the stop, or after a redirect.
    let mut drain_until = schedule.stop + DRAIN;
    let since_start =
        |at: Instant| at.saturating_duration_since(schedule.started).as_nanos() as u64;
    let timer = tokio::time::sleep_until(schedule.stop.into());
    tokio::pin!(timer);
    loop {
        let now = Instant::now();
        let moving = result.redirect.is_some();
        if now >= drain_until || ((moving || now >= schedule.stop) && inflight.is_empty()) {
            result.unknown(
                inflight.len() as u64,
                format!(
                    "no answer from {addr} within {DRAIN:?}; requests in flight count as failed"
                ),
            );
            return Ok(());
        }
        let sending = now < schedule.stop && !moving;
        if sending && written == out.len() && now >= next_batch {
            written = 0;
            out.clear();
            let first = inflight.next_id();
            clients.take_ready(since_start(now), |client, stamp_ns| {
                inflight.push(Pending { client, stamp_ns })
            });
            if inflight.next_id() > first && clients.next_due_ns().is_some() {
                next_batch = now + OPEN_LOOP_BATCH_GAP;
            }
            if inflight.next_id() > first {
                codec
                    .encode(first..inflight.next_id(), &mut out)
                    .map_err(protocol)?;
            }
        }
        let unsent = written < out.len();
        let wake = match clients.next_due_ns() {
            Some(due) if sending && !unsent && inflight.has_room() => {
                let due = schedule.started + Duration::from_nanos(due);
                due.max(next_batch).min(schedule.stop)
            }
            _ if sending => schedule.stop,
            _ => drain_until,
        };
        if timer.deadline() != wake.into() {
            timer.as_mut().reset(wake.into());
        }
        // Reads and writes of a TcpStream are cancel-safe: a branch that loses moved no bytes.
        let event = tokio::select! {
            read = reader.read(codec.read_buffer()) => Event::Read(read.map_err(socket)?),
            wrote = writer.write(&out[written..]), if unsent => {
                Event::Wrote(wrote.map_err(socket)?)
            }
            () = &mut timer => Event::Timer,
        };
        match event {
            Event::Timer => {}
            Event::Wrote(n) => written += n,
            Event::Read(0) if sending || !inflight.is_empty() => {
                return Err(socket(ErrorKind::UnexpectedEof.into()));
            }
            Event::Read(0) => return Ok(()),
            Event::Read(n) => {
                codec.filled(n);
                let arrived = Instant::now();
                let arrived_ns = since_start(arrived);
                let (committed, failed) = (result.committed, result.failed);
                let phase = counters.phase.load(std::sync::atomic::Ordering::Relaxed);
                while let Some(answer) = codec.next_answer().map_err(protocol)? {
                    let pending = inflight.take(answer.id).ok_or_else(|| {
                        protocol(format!("answer to unknown request {}", answer.id))
                    })?;
                    clients.answered(pending.client);
                    match answer.outcome {
                        Outcome::Done => {
                            let micros = arrived_ns.saturating_sub(pending.stamp_ns) / 1_000;
                            result.committed(&schedule, arrived, micros, phase);
                        }
                        Outcome::NotLeader { leader } => {
                            if !moving {
                                drain_until = arrived + DRAIN;
                            }
                            result.not_leader(leader.unwrap_or(node));
                        }
                        Outcome::Refused { error } => result.refused(&schedule, arrived, error),
                    }
                }
                counters.add(result.committed - committed, result.failed - failed);
            }
        }
    }
}

/// What woke a connection's turn.
enum Event {
    Read(usize),
    Wrote(usize),
    Timer,
}

//! The glommio side of a shard: one executor thread running the event loop around a
//! [`ShardEngine`], plus the tasks that feed it (ticks, peer connections, clients, the
//! embedding API, flush completions).
//!
//! One loop turn: wait for events, take **all** queued events, step them through the engine,
//! place the turn's proposals (one batch per group), start a flush if none is in flight (group
//! commit: everything staged while a flush runs goes into the next one), send each peer its
//! messages as one frame, start the snapshot transfers the cores asked for
//! ([`crate::shard::transfer`]), and answer finished proposals. Nothing in the loop blocks.
//! File writes and syncs run on the log's writer thread, except that a small one runs in the
//! task awaiting the flush, on this thread, after the turn's messages went out
//! (`LogConfig::inline_flush_bytes_max`).
//!
//! The timer task says how late each tick ran, which is how long the thread stood still
//! (blocked, or without CPU): every tick's lateness goes into the shard's metrics, and one of
//! half an election timeout or more is logged as a warning, since a leader that stands still
//! for an election timeout may lose its leadership.
//!
//! Requests of the embedding API enter through [`crate::shard::gate`]: the shard holds at most
//! `proposals_queued_max` of them (queued, in the engine, or awaiting their answer), so the
//! bounded channel from [`crate::api::Node`] is what proposers wait on, and a shard that cannot
//! commit stops taking requests instead of queueing them without limit. Draining and stopping
//! do not go through that channel (it may be full): they have a channel of their own
//! ([`Control`]). A drain ([`crate::shard::drain`]) hands leadership over and waits for the
//! answers of everything taken; a stop ends the loop, answers what is left "shutting down",
//! and lets every client connection write its answers before the shard exits.

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glommio::{LocalExecutorBuilder, Placement};

use crate::config::NodeConfig;
use crate::core::{Config, Message, Role};
use crate::engine::snapshot_due::SnapshotPolicy;
use crate::engine::state_machine::StateMachine;
use crate::engine::{
    Committed, EngineConfig, EngineError, GroupStatus, ProposalError, ShardEngine,
};
use crate::error::{ExecutorError, NodeError};
use crate::log::{shard_dir, DiskLog, FlushDone, LogConfig};
use crate::log_limit::LogLimiter;
use crate::net::client_wire::ClientRequest;
use crate::shard::admin::{self, ChangeRequest};
use crate::shard::answers::{Answer, BatchAnswers};
use crate::shard::clients::{self, ClientConnection, ClientHub};
use crate::shard::drain::Drain;
use crate::shard::gate::{Permit, RequestGate};
use crate::shard::mailbox::Mailbox;
use crate::shard::metrics::{AnswerTally, Arrival, RequestKind, RequestTimes, ShardMetrics};
use crate::shard::peers::Peers;
use crate::shard::tasks::TaskSet;
use crate::shard::work::Work;
use crate::snapshot::{snapshot_dir, SnapshotError, SnapshotStore};
use crate::types::ReadConsistency;
use crate::types::{GroupId, LogIndex, NodeId, ShardId, Term};

// `Work` (crate::shard::work) is what the embedding program and client connections both ask of
// a group, served by one path (`Work::submit`) whoever asked.
impl Work {
    /// Hands the work to the engine, or, while the shard drains, refuses it if the shard still
    /// leads its group (stale reads are always served).
    fn submit_unless_draining<S: StateMachine>(
        self,
        engine: &mut Engine<S>,
        drain: &Option<Drain>,
        reply: ReplyTo,
        config: &NodeConfig,
    ) {
        let stale = matches!(
            self,
            Work::Read {
                consistency: ReadConsistency::Stale,
                ..
            }
        );
        if drain.is_some() && !stale && Drain::refuses(engine, self.group()) {
            reply.answer(Err(Drain::refusal()), config);
        } else {
            self.submit(engine, reply);
        }
    }

    /// The work a client request asks for, with the request's id; other requests come back.
    fn of_client(request: ClientRequest) -> Result<(u64, Work), ClientRequest> {
        match request {
            ClientRequest::Propose { id, group, payload } => Ok((
                id,
                Work::Propose {
                    group,
                    payload,
                    session: None,
                },
            )),
            ClientRequest::ProposeInSession {
                id,
                group,
                request,
                payload,
            } => Ok((
                id,
                Work::Propose {
                    group,
                    payload,
                    session: Some(request),
                },
            )),
            ClientRequest::RegisterSession { id, group } => {
                Ok((id, Work::RegisterSession { group }))
            }
            ClientRequest::Read {
                id,
                group,
                consistency,
                query,
            } => Ok((
                id,
                Work::Read {
                    group,
                    query,
                    consistency,
                },
            )),
            other => Err(other),
        }
    }

    /// What kind of request it is, arriving at `at_us`.
    fn arrival(&self, at_us: u64) -> Arrival {
        let kind = match self {
            Work::Propose { .. } | Work::RegisterSession { .. } => RequestKind::Propose,
            Work::Read { .. } => RequestKind::Read,
        };
        Arrival { kind, at_us }
    }

    /// Hands the work to the engine; `reply` gets its answer.
    fn submit<S: StateMachine>(self, engine: &mut Engine<S>, reply: ReplyTo) {
        match self {
            Work::Propose {
                group,
                payload,
                session: None,
            } => engine.propose(group, payload, reply),
            Work::Propose {
                group,
                payload,
                session: Some(request),
            } => engine.propose_in_session(group, request, payload, reply),
            Work::RegisterSession { group } => engine.register_session(group, reply),
            Work::Read {
                group,
                query,
                consistency,
            } => engine.read(group, query, consistency, reply),
        }
    }
}

/// A request from the embedding program to one shard.
pub enum ApiRequest {
    Work {
        work: Work,
        reply: flume::Sender<Result<Committed, ProposalError>>,
    },
    /// Many works, submitted in order and answered together ([`BatchAnswers`]).
    Batch {
        works: Vec<Work>,
        reply: flume::Sender<Vec<Answer>>,
    },
    Status {
        reply: flume::Sender<Vec<GroupStatus>>,
    },
    /// Hand leadership of a group to another voter; answered at once (see
    /// [`admin::transfer_leadership`]).
    Transfer {
        group: GroupId,
        to: NodeId,
        reply: flume::Sender<Result<Committed, ProposalError>>,
    },
    /// A membership change ([`crate::shard::admin`]); answered like a proposal.
    ChangeMembership {
        request: ChangeRequest,
        reply: flume::Sender<Result<Committed, ProposalError>>,
    },
    /// Snapshot a group now; answered with the snapshot's index (0: none taken).
    Snapshot {
        group: GroupId,
        reply: flume::Sender<Result<Committed, ProposalError>>,
    },
}

/// Where the answer to a proposal goes, and for proposals and reads when they arrived.
pub enum ReplyTo {
    /// An API caller; its request's place in the shard ([`Permit`]) is freed with the answer.
    Api(
        flume::Sender<Result<Committed, ProposalError>>,
        Permit,
        Option<Arrival>,
    ),
    Client {
        connection: Rc<ClientConnection>,
        request_id: u64,
        arrival: Option<Arrival>,
    },
    /// One work of a batched API request: its place among the batch's answers.
    Batch {
        answers: Rc<BatchAnswers>,
        slot: usize,
        arrival: Option<Arrival>,
    },
}

impl ReplyTo {
    /// Sends `result` to whoever is waiting for it (an API caller gone away is ignored).
    pub fn answer(self, result: Result<Committed, ProposalError>, config: &NodeConfig) {
        match self {
            ReplyTo::Api(sender, _permit, _) => {
                let _ = sender.send(result);
            }
            ReplyTo::Client {
                connection,
                request_id,
                ..
            } => connection.answer(request_id, result, config),
            ReplyTo::Batch { answers, slot, .. } => answers.answer(slot, result),
        }
    }

    fn arrival(&self) -> Option<Arrival> {
        match self {
            ReplyTo::Api(_, _, arrival)
            | ReplyTo::Client { arrival, .. }
            | ReplyTo::Batch { arrival, .. } => *arrival,
        }
    }
}

/// Everything the event loop reacts to.
pub enum ShardEvent {
    /// The core's clock advances one tick; `late` is how long after its due time the timer's
    /// task ran (the thread was blocked or had no CPU meanwhile).
    Tick {
        late: Duration,
    },
    Raft {
        from: NodeId,
        messages: Vec<(GroupId, Message)>,
    },
    PeerDown(NodeId),
    /// A snapshot of `group` at `index` was made durable (or failed to be).
    SnapshotStored {
        group: GroupId,
        index: LogIndex,
        term: Term,
        /// The snapshot body's size, or why it could not be stored.
        result: Result<u64, SnapshotError>,
    },
    /// Sending a snapshot of `group` to `peer` failed; its core is to offer it again.
    SnapshotFailed {
        peer: NodeId,
        group: GroupId,
    },
    /// A request of the embedding API, holding its place in the shard.
    Api(ApiRequest, Permit),
    /// The node's metrics endpoint asks for a snapshot of the shard's figures.
    Metrics(flume::Sender<ShardMetrics>),
    /// Start draining ([`crate::shard::drain`]); the sender hears once the shard is drained.
    Drain(flume::Sender<()>),
    /// The node is stopping.
    Shutdown,
    ClientRequests {
        connection: Rc<ClientConnection>,
        requests: Vec<ClientRequest>,
    },
    FlushDone(FlushDone),
}

/// How the node tells a shard to drain or stop (beside the request channel, which may be full).
pub enum Control {
    /// Drain ([`crate::shard::drain`]); the sender hears once the shard is drained.
    Drain(flume::Sender<()>),
    /// Stop now. A disconnected control channel stops the shard too.
    Stop,
}

/// What a shard thread is given.
pub struct ShardContext {
    pub config: Arc<NodeConfig>,
    pub shard: ShardId,
    pub requests: flume::Receiver<ApiRequest>,
    pub control: flume::Receiver<Control>,
    /// Requests for a [`ShardMetrics`] snapshot, each with where to send it; a path of their
    /// own, so that a full request channel does not hold up the metrics endpoint.
    pub metrics: flume::Receiver<flume::Sender<ShardMetrics>>,
    pub ready: mpsc::Sender<Result<(), NodeError>>,
}

/// Body of a shard thread: builds the executor and runs the shard until shutdown or a fatal
/// error.
pub fn run_shard_thread<S, F>(context: ShardContext, make_state_machine: F) -> Result<(), NodeError>
where
    S: StateMachine,
    F: FnOnce() -> S,
{
    let shard = context.shard;
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name(&format!("ringraft-s{}", shard.0))
        .io_memory(context.config.io_memory_bytes)
        .make()
        .map_err(|error| NodeError::Executor {
            shard,
            source: ExecutorError::Build(error.to_string()),
        });
    let executor = match executor {
        Ok(executor) => executor,
        Err(error) => {
            let _ = context.ready.send(Err(error));
            return Err(NodeError::ShardGone { shard });
        }
    };
    executor.run(run_shard(context, make_state_machine()))
}

/// The wall clock in ms since the Unix epoch (0 if the clock is set before it).
fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn core_config(config: &NodeConfig, group: GroupId) -> Config {
    let voters = if config.join {
        Vec::new()
    } else {
        config.peers.iter().map(|peer| peer.id).collect()
    };
    let mut core = Config::new(config.id, voters);
    core.election_timeout_ticks = config.ticks(config.election_timeout);
    core.heartbeat_interval_ticks = config.ticks(config.heartbeat);
    core.compaction_trailing_entries = config.compaction_trailing_entries;
    let clock = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    core.rng_seed = clock ^ group.0.rotate_left(17) ^ config.id.0.rotate_left(41);
    core
}

async fn run_shard<S: StateMachine>(
    context: ShardContext,
    state_machine: S,
) -> Result<(), NodeError> {
    let ShardContext {
        config,
        shard,
        requests,
        control,
        metrics,
        ready,
    } = context;
    let tasks = TaskSet::default();
    let started = start_shard(&config, shard, state_machine, &tasks).await;
    let (mut engine, mut peers, hub, mailbox) = match started {
        Ok(parts) => parts,
        Err(error) => {
            // A listener bound before the failure is closed before the thread ends.
            tasks.stop_all().await;
            // `Node::start` reports this error; the thread's own result only says it ended.
            let _ = ready.send(Err(error));
            return Err(NodeError::ShardGone { shard });
        }
    };
    spawn_ticker(&config, mailbox.clone(), &tasks);
    let gate = RequestGate::new(config.proposals_queued_max);
    spawn_api_forwarder(requests, control, gate, mailbox.clone());
    spawn_metrics_forwarder(metrics, mailbox.clone());
    tracing::info!(node = %config.id, %shard, groups = engine.groups().count(), "shard started");
    let _ = ready.send(Ok(()));

    let (dial, accept) = admin::wanted_peers(&config, &engine);
    peers.set_members(&dial, accept);
    let mut requests = RequestTimes::default();
    let mut result = event_loop(
        &config,
        shard,
        &mut engine,
        &mut requests,
        &mut peers,
        &hub,
        &mailbox,
    )
    .await;
    if result.is_ok() {
        result = final_flush(&mut engine, &mailbox)
            .await
            .map_err(|source| NodeError::Shard { shard, source });
    }
    engine.shut_down();
    dispatch_completions(&mut engine, &config, &mut requests);
    hub.flush();
    hub.finish_all(CLIENT_FINISH_WAIT).await;
    peers.close();
    mailbox.close();
    tasks.stop_all().await;
    if let Err(error) = &result {
        tracing::error!(node = %config.id, %shard, %error, "shard stopped");
    }
    result
}

type Engine<S> = ShardEngine<DiskLog, S, ReplyTo>;

/// Stalls of shard threads (late ticks), logged at most this often.
static STALLS: LogLimiter = LogLimiter::new(Duration::from_secs(10));

/// At a stop, how long client connections may take to write their last answers.
const CLIENT_FINISH_WAIT: Duration = Duration::from_secs(1);

async fn start_shard<S: StateMachine>(
    config: &Arc<NodeConfig>,
    shard: ShardId,
    state_machine: S,
    tasks: &TaskSet,
) -> Result<(Engine<S>, Peers, Rc<ClientHub>, Rc<Mailbox<ShardEvent>>), NodeError> {
    let mut log_config =
        LogConfig::new(shard_dir(&config.data_dir, shard), config.cluster_id, shard);
    log_config.fsync = config.fsync;
    log_config.segment_bytes = config.segment_bytes;
    log_config.sync_delay = config.fsync_delay;
    log_config.inline_flush_bytes_max = config.inline_flush_bytes_max;
    let log = DiskLog::open(log_config).map_err(|source| NodeError::Log { shard, source })?;
    tracing::info!(node = %config.id, %shard, recovery = ?log.recovery_report(), "log recovered");
    let engine_config = EngineConfig {
        proposal_timeout_ticks: config.ticks(config.proposal_timeout) as u64,
        read_lease: Some(config.read_lease()),
        snapshots: SnapshotPolicy {
            entries: config.snapshot_entries,
            log_ratio: config.snapshot_log_ratio,
        },
        uncommitted_bytes_max: config.uncommitted_bytes_max,
        sessions: config.sessions,
        broken_rule: None,
    };
    let shard_error = |source: EngineError| NodeError::Shard { shard, source };
    let dir = snapshot_dir(&shard_dir(&config.data_dir, shard));
    let snapshots = SnapshotStore::open(&dir, None).map_err(|error| shard_error(error.into()))?;
    // A second handle on the same directory for the transfers, which read and write it off
    // the event loop (a clone: opening again would repeat the clean-up and the syncs).
    let transfer_store = snapshots.clone();
    let engine = ShardEngine::new(
        config.id,
        config.groups_of(shard),
        log,
        state_machine,
        Some(snapshots),
        engine_config,
        |group| core_config(config, group),
    )
    .map_err(shard_error)?;
    let mailbox = Rc::new(Mailbox::default());
    let peers = Peers::start(
        config.clone(),
        shard,
        mailbox.clone(),
        Some(Arc::new(transfer_store)),
        tasks.clone(),
    )?;
    let hub = Rc::new(ClientHub::default());
    clients::start(config.clone(), shard, mailbox.clone(), hub.clone(), tasks)?;
    Ok((engine, peers, hub, mailbox))
}

fn spawn_ticker(config: &NodeConfig, mailbox: Rc<Mailbox<ShardEvent>>, tasks: &TaskSet) {
    let tick = config.tick;
    tasks.spawn(async move {
        loop {
            let asked = Instant::now();
            glommio::timer::sleep(tick).await;
            let late = asked.elapsed().saturating_sub(tick);
            mailbox.push(ShardEvent::Tick { late });
        }
    });
}

/// Records how late a tick ran and warns (rate-limited) when the shard's thread stood still
/// for half an election timeout or more: a leader that stalls that long may lose its
/// leadership, and a follower's acknowledgements stop meanwhile.
fn note_tick_lateness(
    config: &NodeConfig,
    shard: ShardId,
    requests: &mut RequestTimes,
    late: Duration,
) {
    requests.tick_ran_late(late);
    if late >= config.election_timeout / 2 {
        if let Some(stalls) = STALLS.note(Instant::now()) {
            tracing::warn!(
                node = %config.id,
                %shard,
                late_ms = late.as_millis() as u64,
                election_timeout_ms = config.election_timeout.as_millis() as u64,
                stalls,
                "the shard's thread stood still (blocked, or no CPU): its timer ran late"
            );
        }
    }
}

/// Moves API requests into the mailbox, each once the gate has room for it (see the module
/// docs), and drain orders as they come, until the node stops or drops its end of the
/// channels; then queues a shutdown.
fn spawn_api_forwarder(
    requests: flume::Receiver<ApiRequest>,
    control: flume::Receiver<Control>,
    gate: Rc<RequestGate>,
    mailbox: Rc<Mailbox<ShardEvent>>,
) {
    glommio::spawn_local(async move {
        loop {
            let controlled = async {
                match control.recv_async().await {
                    Ok(Control::Drain(done)) => Some(ShardEvent::Drain(done)),
                    Ok(Control::Stop) | Err(_) => None,
                }
            };
            let next = async {
                let mut permit = gate.acquire().await;
                let request = requests.recv_async().await.ok()?;
                if let ApiRequest::Batch { works, .. } = &request {
                    permit.widen(works.len());
                }
                Some(ShardEvent::Api(request, permit))
            };
            match futures_lite::future::or(controlled, next).await {
                Some(event) => mailbox.push(event),
                None => break,
            }
        }
        mailbox.push(ShardEvent::Shutdown);
    })
    .detach();
}

/// Moves the metrics endpoint's requests into the mailbox until the node drops its end.
fn spawn_metrics_forwarder(
    requests: flume::Receiver<flume::Sender<ShardMetrics>>,
    mailbox: Rc<Mailbox<ShardEvent>>,
) {
    glommio::spawn_local(async move {
        while let Ok(reply) = requests.recv_async().await {
            mailbox.push(ShardEvent::Metrics(reply));
        }
    })
    .detach();
}

async fn event_loop<S: StateMachine>(
    config: &Arc<NodeConfig>,
    shard: ShardId,
    engine: &mut Engine<S>,
    requests: &mut RequestTimes,
    peers: &mut Peers,
    hub: &ClientHub,
    mailbox: &Rc<Mailbox<ShardEvent>>,
) -> Result<(), NodeError> {
    let fatal = |source| NodeError::Shard { shard, source };
    let mut events = VecDeque::new();
    let mut drain: Option<Drain> = None;
    // The engine has no clock: each turn is given its start on this monotonic one (the one
    // requests are timed with).
    let clock_origin = requests.clock_origin();
    loop {
        if !mailbox.take_all(&mut events).await {
            return Ok(());
        }
        let mut shutdown = false;
        let turn_us = clock_origin.elapsed().as_micros() as u64;
        engine.begin_turn(turn_us, wall_clock_ms());
        for event in events.drain(..) {
            match event {
                ShardEvent::Tick { late } => {
                    note_tick_lateness(config, shard, requests, late);
                    engine.tick().map_err(fatal)?
                }
                ShardEvent::Raft { from, messages } => {
                    for (group, message) in messages {
                        engine.receive(from, group, message).map_err(fatal)?;
                    }
                }
                ShardEvent::PeerDown(peer) => engine.unreachable(peer).map_err(fatal)?,
                ShardEvent::SnapshotFailed { peer, group } => {
                    tracing::debug!(%peer, %group, "snapshot send failed; offering it again");
                    engine.unreachable(peer).map_err(fatal)?
                }
                ShardEvent::Api(ApiRequest::Work { work, reply }, permit) => {
                    let arrival = work.arrival(turn_us);
                    let reply = ReplyTo::Api(reply, permit, Some(arrival));
                    work.submit_unless_draining(engine, &drain, reply, config)
                }
                ShardEvent::Api(ApiRequest::Batch { works, reply }, permit) => {
                    let answers = BatchAnswers::new(works.len(), reply, permit);
                    for (slot, work) in works.into_iter().enumerate() {
                        let reply = ReplyTo::Batch {
                            answers: answers.clone(),
                            slot,
                            arrival: Some(work.arrival(turn_us)),
                        };
                        work.submit_unless_draining(engine, &drain, reply, config)
                    }
                }
                // The others are answered (or done) within the turn; their permits go with
                // the event.
                ShardEvent::Api(ApiRequest::Status { reply }, _) => {
                    let _ = reply.send(engine.status());
                }
                ShardEvent::Api(ApiRequest::Transfer { group, to, reply }, _) => {
                    let _ =
                        reply.send(admin::transfer_leadership(engine, group, to).map_err(fatal)?);
                }
                ShardEvent::Api(ApiRequest::ChangeMembership { request, reply }, permit) => {
                    let reply = ReplyTo::Api(reply, permit, None);
                    admin::change_membership(config, engine, request, reply).map_err(fatal)?
                }
                ShardEvent::Api(ApiRequest::Snapshot { group, reply }, _) => {
                    let _ = reply.send(admin::snapshot(engine, group).map_err(fatal)?);
                }
                ShardEvent::Metrics(reply) => {
                    let _ = reply.send(ShardMetrics {
                        shard,
                        groups: engine.status(),
                        log: engine.stats(),
                        counters: engine.counters().clone(),
                        stages: engine.stage_histograms().clone(),
                        requests: requests.clone(),
                        peers: peers.metrics(),
                    });
                }
                ShardEvent::Drain(done) => {
                    tracing::info!(node = %config.id, %shard, "draining");
                    drain = Some(Drain::new(done));
                }
                ShardEvent::Shutdown => shutdown = true,
                ShardEvent::ClientRequests {
                    connection,
                    requests,
                } => {
                    for request in requests {
                        match Work::of_client(request) {
                            Ok((request_id, work)) => {
                                let connection = connection.clone();
                                let arrival = Some(work.arrival(turn_us));
                                let reply = ReplyTo::Client {
                                    connection,
                                    request_id,
                                    arrival,
                                };
                                work.submit_unless_draining(engine, &drain, reply, config)
                            }
                            Err(ClientRequest::Status { id }) => connection.status(
                                id,
                                config.id,
                                engine.stats(),
                                &engine.status(),
                                engine.stage_histograms().to_buckets(),
                            ),
                            Err(admin_request) => {
                                admin::serve_client(config, engine, &connection, &admin_request)
                                    .map_err(fatal)?;
                            }
                        }
                    }
                }
                ShardEvent::FlushDone(done) => engine.flush_done(done).map_err(fatal)?,
                ShardEvent::SnapshotStored {
                    group,
                    index,
                    term,
                    result,
                } => engine
                    .snapshot_stored(group, index, term, result)
                    .map_err(fatal)?,
            }
        }
        engine.end_turn().map_err(fatal)?;
        if let Some(drain) = &mut drain {
            let quiet = hub.quiet_for(crate::shard::drain::CLIENTS_QUIET);
            drain.advance(engine, quiet).map_err(fatal)?;
        }
        for pending in engine.take_pending_snapshots() {
            let mailbox = mailbox.clone();
            glommio::spawn_local(async move {
                let (group, index, term) = (pending.group, pending.index, pending.term);
                let result = glommio::executor()
                    .spawn_blocking(move || pending.store())
                    .await;
                mailbox.push(ShardEvent::SnapshotStored {
                    group,
                    index,
                    term,
                    result,
                });
            })
            .detach();
        }
        admin::follow_membership(config, engine, peers);
        if shutdown {
            return Ok(());
        }
        if engine.wants_flush() {
            if let Some(pending) = engine.start_flush().map_err(fatal)? {
                let mailbox = mailbox.clone();
                glommio::spawn_local(async move {
                    // A small flush does its write and sync when first polled, on this
                    // thread: yield once, so that the tasks this turn wakes to send its
                    // messages (queued after this one) send before it blocks.
                    if pending.runs_when_polled() {
                        futures_lite::future::yield_now().await;
                    }
                    let done = pending.await;
                    mailbox.push(ShardEvent::FlushDone(done));
                })
                .detach();
            }
        }
        for (peer, messages) in engine.take_outbox() {
            peers.send(peer, &messages);
        }
        for send in engine.take_snapshot_sends() {
            peers.send_snapshot(send);
        }
        dispatch_completions(engine, config, requests);
        hub.flush();
        for (group, role, term, leader) in engine.take_role_changes() {
            requests.role_changed(group, leader);
            if role == Role::Leader || role == Role::Follower {
                tracing::info!(node = %config.id, %group, ?role, %term, ?leader, "role changed");
            } else {
                tracing::debug!(node = %config.id, %group, ?role, %term, "campaigning");
            }
        }
    }
}

/// On a graceful stop: waits for the flush in flight, then flushes what is still staged, so
/// that everything the node accepted is on disk when it exits.
async fn final_flush<S: StateMachine>(
    engine: &mut Engine<S>,
    mailbox: &Mailbox<ShardEvent>,
) -> Result<(), EngineError> {
    let mut events = VecDeque::new();
    while engine.flush_in_flight() {
        if !mailbox.take_all(&mut events).await {
            break;
        }
        for event in events.drain(..) {
            if let ShardEvent::FlushDone(done) = event {
                engine.flush_done(done)?;
            }
        }
    }
    if let Some(pending) = engine.start_flush()? {
        engine.flush_done(pending.await)?;
    }
    Ok(())
}

/// Answers the engine's completions, recording each timed request's latency and outcome.
fn dispatch_completions<S: StateMachine>(
    engine: &mut Engine<S>,
    config: &NodeConfig,
    requests: &mut RequestTimes,
) {
    let mut completions = engine.drain_completions().peekable();
    if completions.peek().is_none() {
        return;
    }
    let now_us = requests.clock_us();
    let mut tally = AnswerTally::new(requests, now_us);
    for (reply, result) in completions {
        if let Some(arrival) = reply.arrival() {
            tally.answered(arrival, result.is_ok());
        }
        reply.answer(result, config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Issue 13, finding 5a: proposers flood a shard whose requests are never answered (a
    /// node without quorum). The shard must stop taking requests once it holds its bound, so
    /// that the bounded channel fills and proposers wait, rather than moving everything into
    /// its unbounded mailbox. Answering some lets as many more in; stopping works with the
    /// channel full.
    #[test]
    fn a_flood_of_requests_fills_the_channel_not_the_mailbox() {
        const CHANNEL: usize = 8;
        const HELD_MAX: usize = 16;
        const ATTEMPTS: usize = 400;
        const ANSWERED: usize = 5;
        let pause = || glommio::timer::sleep(Duration::from_micros(50));
        let executor = LocalExecutorBuilder::new(Placement::Unbound)
            .make()
            .unwrap();
        executor.run(async {
            let (sender, requests) = flume::bounded(CHANNEL);
            let (stopper, control) = flume::bounded(1);
            let gate = RequestGate::new(HELD_MAX);
            let mailbox = Rc::new(Mailbox::default());
            spawn_api_forwarder(requests, control, gate.clone(), mailbox.clone());
            let mut sent = 0;
            let mut answers = Vec::new();
            let mut flood = |sent: &mut usize| {
                let (reply, answer) = flume::bounded(1);
                let request = ApiRequest::Work {
                    work: Work::Propose {
                        group: GroupId(0),
                        payload: Bytes::new(),
                        session: None,
                    },
                    reply,
                };
                if sender.try_send(request).is_ok() {
                    *sent += 1;
                    answers.push(answer);
                }
            };
            for _ in 0..ATTEMPTS {
                flood(&mut sent);
                pause().await;
            }
            let mut held = VecDeque::new();
            mailbox.take_all(&mut held).await;
            assert_eq!(held.len(), HELD_MAX, "the mailbox took {}", held.len());
            assert_eq!(sent, HELD_MAX + CHANNEL, "{sent} requests went in");
            assert_eq!(gate.held(), HELD_MAX);
            // Answering (here: dropping) some requests frees their places, and no more.
            held.drain(..ANSWERED);
            for _ in 0..ATTEMPTS {
                flood(&mut sent);
                pause().await;
            }
            let mut more = VecDeque::new();
            mailbox.take_all(&mut more).await;
            assert_eq!(more.len(), ANSWERED);
            assert_eq!(sent, HELD_MAX + CHANNEL + ANSWERED);
            stopper.send(Control::Stop).unwrap();
            mailbox.take_all(&mut more).await;
            assert!(matches!(more.back(), Some(ShardEvent::Shutdown)));
        });
    }
}

//! The client port of one shard: pipelined requests in, answers out.
//!
//! A connection's reader decodes whole request frames and hands each frame's requests to the
//! event loop as one event. Answers are gathered per connection during a loop turn and encoded
//! into one response frame per connection at the end of the turn ([`ClientHub::flush`]); the
//! connection's writer sends everything queued with one write.
//!
//! Proposals for a group this node does not lead are answered `NotLeader` with the leader's id
//! and client address when known: clients redirect themselves (the Rust client in
//! [`crate::client`] does). A malformed frame, an oversized payload (answered `TooLarge` first)
//! or a peer that stops reading closes that connection only.
//!
//! When the shard stops, [`ClientHub::finish_all`] lets every connection write the answers it
//! holds and close its sending side before the shard's executor (and with it every connection
//! task) ends: a client is never left without an answer the node had decided.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::io::{ReadHalf, WriteHalf};
use futures_lite::{AsyncReadExt, AsyncWriteExt, StreamExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{Latency, Shares};

use crate::config::NodeConfig;
use crate::constants::CLIENT_PAYLOAD_BYTES_MAX;
use crate::engine::{Committed, GroupStatus, ProposalError};
use crate::error::{ExecutorError, NodeError};
use crate::log_limit::LogLimiter;
use crate::net::client_wire::{
    decode_requests_frame, encode_responses, ClientError, ClientRequest, ClientResponse,
    GroupAdminStatus, ProtocolError, StageBuckets,
};
use crate::net::client_wire::{ShardStats, ShardStatus};
use crate::net::frame::READ_SPARE_BYTES;
use crate::net::{FrameDecoder, FrameKind};
use crate::shard::link::Outgoing;
use crate::shard::mailbox::Mailbox;
use crate::shard::runtime::ShardEvent;
use crate::shard::tasks::TaskSet;
use crate::tls::{FuturesIo, NodeTls, TLS_HANDSHAKE_TIMEOUT};
use crate::types::{NodeId, ShardId};

/// Failed TLS handshakes of clients, logged at most this often.
static HANDSHAKE_FAILURES: LogLimiter = LogLimiter::new(Duration::from_secs(10));

/// Most bytes queued for one client before it is disconnected as not reading.
const OUTGOING_BYTES_MAX: usize = 64 << 20;
/// Requests of one connection in the engine at once; its reader pauses beyond this.
const OUTSTANDING_MAX: usize = 65_536;
/// CPU shares of the client task queue; the default queue (event loop, peers) has 1,000.
const CLIENT_QUEUE_SHARES: usize = 250;

/// Connections with answers waiting for the end of the turn, and every open connection.
#[derive(Default)]
pub struct ClientHub {
    dirty: RefCell<Vec<Rc<ClientConnection>>>,
    open: RefCell<Vec<Weak<ClientConnection>>>,
    /// Writer tasks still running.
    writers: Cell<usize>,
}

impl ClientHub {
    /// Encodes each connection's gathered answers into one frame and wakes its writer.
    pub fn flush(&self) {
        for connection in self.dirty.borrow_mut().drain(..) {
            // Cleared rather than taken: the buffer keeps its capacity for the next turn.
            let mut responses = connection.pending.borrow_mut();
            connection.outgoing.append(|out| {
                for chunk in responses.chunks(4096) {
                    if let Err(error) = encode_responses(chunk, out) {
                        tracing::error!(%error, "client answer could not be encoded");
                    }
                }
            });
            responses.clear();
        }
    }

    /// Lets every open connection write what it holds (call [`Self::flush`] first) and close
    /// its sending side; waits for that, at most `within`.
    pub async fn finish_all(&self, within: Duration) {
        for connection in self.open.borrow_mut().drain(..) {
            if let Some(connection) = connection.upgrade() {
                connection.outgoing.finish();
            }
        }
        let deadline = std::time::Instant::now() + within;
        while self.writers.get() > 0 && std::time::Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Whether every open connection has had no request unanswered and sent none for `period`
    /// (what a draining shard waits for before it reports drained: a client that was just
    /// answered may be sending its next request).
    pub fn quiet_for(&self, period: Duration) -> bool {
        self.open.borrow().iter().all(|connection| {
            connection.upgrade().is_none_or(|connection| {
                connection.outgoing.is_closed()
                    || (connection.outstanding.get() == 0
                        && connection.last_request.get().elapsed() >= period)
            })
        })
    }

    fn register(&self, connection: &Rc<ClientConnection>) {
        let mut open = self.open.borrow_mut();
        open.retain(|connection| connection.strong_count() > 0);
        open.push(Rc::downgrade(connection));
        self.writers.set(self.writers.get() + 1);
    }
}

/// One client connection as the event loop sees it.
pub struct ClientConnection {
    hub: Rc<ClientHub>,
    outgoing: Outgoing,
    pending: RefCell<Vec<ClientResponse>>,
    outstanding: Cell<usize>,
    /// When the last request frame arrived.
    last_request: Cell<std::time::Instant>,
}

impl ClientConnection {
    fn queue(self: &Rc<Self>, response: ClientResponse) {
        let mut pending = self.pending.borrow_mut();
        if pending.is_empty() {
            self.hub.dirty.borrow_mut().push(self.clone());
        }
        pending.push(response);
    }

    /// Answers proposal `request_id`.
    pub fn answer(
        self: &Rc<Self>,
        request_id: u64,
        result: Result<Committed, ProposalError>,
        config: &NodeConfig,
    ) {
        self.outstanding
            .set(self.outstanding.get().saturating_sub(1));
        let response = match result {
            Ok(committed) => ClientResponse::Committed {
                id: request_id,
                index: committed.index,
                output: committed.output,
            },
            Err(error) => ClientResponse::Error {
                id: request_id,
                error: client_error(error, config),
            },
        };
        self.queue(response);
    }

    /// Answers status request `request_id`.
    pub fn status(
        self: &Rc<Self>,
        request_id: u64,
        node: NodeId,
        shard: ShardStats,
        statuses: &[GroupStatus],
        stages: StageBuckets,
    ) {
        let groups = statuses.iter().map(|status| status.summary).collect();
        self.queue(ClientResponse::Status {
            id: request_id,
            status: Box::new(ShardStatus {
                node,
                shard,
                groups,
                stages,
            }),
        });
    }

    /// Answers admin status request `request_id`.
    pub fn admin_status(
        self: &Rc<Self>,
        request_id: u64,
        config: &NodeConfig,
        groups: Vec<GroupAdminStatus>,
    ) {
        self.queue(ClientResponse::AdminStatus {
            id: request_id,
            node: config.id,
            shard_count: config.shards,
            groups,
        });
    }

    /// Counts a request handed to the engine.
    pub fn started(&self) {
        self.outstanding.set(self.outstanding.get() + 1);
    }
}

fn client_error(error: ProposalError, config: &NodeConfig) -> ClientError {
    match error {
        ProposalError::NotLeader { leader } => ClientError::NotLeader {
            leader,
            leader_client_addr: leader
                .and_then(|id| config.peers.iter().find(|peer| peer.id == id))
                .and_then(|peer| peer.client_addr)
                .map(|addr| addr.to_string()),
        },
        ProposalError::Transferring => ClientError::NotLeader {
            leader: None,
            leader_client_addr: None,
        },
        ProposalError::UnknownGroup(group) => ClientError::UnknownGroup(group),
        ProposalError::TooLarge { bytes, max } => ClientError::TooLarge {
            bytes: bytes as u64,
            max: max as u64,
        },
        ProposalError::Timeout
        | ProposalError::Superseded { .. }
        | ProposalError::OutcomeUnknown => ClientError::Timeout,
        ProposalError::ShuttingDown => ClientError::ShuttingDown,
        ProposalError::ChangeInProgress => ClientError::ChangeInProgress,
        ProposalError::ChangeNotAllowed => ClientError::ChangeNotAllowed,
        ProposalError::LearnerBehind => ClientError::LearnerBehind,
        ProposalError::Overloaded { .. } => ClientError::Overloaded,
        ProposalError::Session(refusal) => ClientError::Session(refusal),
    }
}

/// Binds the shard's client port (if the node has one) and serves it.
pub fn start(
    config: Arc<NodeConfig>,
    shard: ShardId,
    mailbox: Rc<Mailbox<ShardEvent>>,
    hub: Rc<ClientHub>,
    tasks: &TaskSet,
) -> Result<(), NodeError> {
    let Some(base) = config.client_listen else {
        return Ok(());
    };
    let addr: SocketAddr = NodeConfig::shard_addr(base, shard);
    let listener = TcpListener::bind(addr).map_err(|error| NodeError::Io {
        shard,
        what: format!("listen for clients on {addr}"),
        source: std::io::Error::other(error.to_string()),
    })?;
    // Client traffic runs in a task queue of its own with a smaller share of the CPU than the
    // event loop and the peer connections (the default queue), and without asking them to
    // preempt: a flood of client requests cannot delay heartbeats and votes. Tasks inherit
    // the queue of the task that spawns them, so every connection lands here.
    let queue = glommio::executor().create_task_queue(
        Shares::Static(CLIENT_QUEUE_SHARES),
        Latency::NotImportant,
        "clients",
    );
    let tls = config.tls_on(|ports| ports.client);
    let connection_tasks = tasks.clone();
    let accept = async move {
        let tasks = connection_tasks;
        let mut incoming = listener.incoming();
        while let Some(stream) = incoming.next().await {
            match stream {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let (mailbox, hub) = (mailbox.clone(), hub.clone());
                    match tls.clone() {
                        None => serve(Box::new(stream), shard, mailbox, hub, &tasks),
                        Some(tls) => {
                            let handshake =
                                serve_tls(tls, stream, shard, mailbox, hub, tasks.clone());
                            tasks.spawn(handshake);
                        }
                    }
                }
                Err(error) => tracing::warn!(%shard, %error, "accepting a client failed"),
            }
        }
    };
    tasks
        .spawn_into(accept, queue)
        .map_err(|error| NodeError::Executor {
            shard,
            source: ExecutorError::TaskQueue {
                queue: "client",
                reason: error.to_string(),
            },
        })
}

/// Completes a client's TLS handshake (bounded in time) and serves the connection.
async fn serve_tls(
    tls: Arc<NodeTls>,
    stream: TcpStream,
    shard: ShardId,
    mailbox: Rc<Mailbox<ShardEvent>>,
    hub: Rc<ClientHub>,
    tasks: TaskSet,
) {
    let remote = stream.peer_addr().ok();
    let handshake = glommio::timer::timeout(TLS_HANDSHAKE_TIMEOUT, async {
        Ok(tls.accept_client(stream).await.map_err(|e| e.to_string()))
    });
    match handshake.await.unwrap_or_else(|_| Err("timed out".into())) {
        Ok(stream) => serve(Box::new(stream), shard, mailbox, hub, &tasks),
        Err(error) => {
            if let Some(failures) = HANDSHAKE_FAILURES.note(Instant::now()) {
                tracing::warn!(?remote, %shard, %error, failures, "client TLS handshake failed");
            }
        }
    }
}

fn serve(
    stream: Box<dyn FuturesIo>,
    shard: ShardId,
    mailbox: Rc<Mailbox<ShardEvent>>,
    hub: Rc<ClientHub>,
    tasks: &TaskSet,
) {
    let connection = Rc::new(ClientConnection {
        hub,
        outgoing: Outgoing::new(OUTGOING_BYTES_MAX),
        pending: RefCell::new(Vec::new()),
        outstanding: Cell::new(0),
        last_request: Cell::new(std::time::Instant::now()),
    });
    connection.outgoing.set_connected(true);
    connection.hub.register(&connection);
    let (reader, writer) = futures_lite::io::split(stream);
    tasks.spawn(read_requests(reader, connection.clone(), shard, mailbox));
    tasks.spawn(write_answers(writer, connection));
}

async fn read_requests(
    mut reader: ReadHalf<Box<dyn FuturesIo>>,
    connection: Rc<ClientConnection>,
    shard: ShardId,
    mailbox: Rc<Mailbox<ShardEvent>>,
) {
    let mut decoder = FrameDecoder::new();
    loop {
        while connection.outstanding.get() >= OUTSTANDING_MAX {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        let frame = match decoder.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                let read = reader.read(decoder.spare(READ_SPARE_BYTES)).await;
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(read) => decoder.filled(read),
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(%shard, %error, "bad client frame; closing the connection");
                break;
            }
        };
        if frame.kind != FrameKind::ClientRequests {
            tracing::warn!(%shard, kind = ?frame.kind, "unexpected client frame; closing");
            break;
        }
        connection.last_request.set(std::time::Instant::now());
        match decode_requests_frame(&frame) {
            Ok(requests) => {
                for request in &requests {
                    if let ClientRequest::Propose { .. } = request {
                        connection.started();
                    }
                }
                mailbox.push(ShardEvent::ClientRequests {
                    connection: connection.clone(),
                    requests,
                });
            }
            Err(ProtocolError::PayloadTooLarge { id, bytes, .. }) => {
                connection.queue(ClientResponse::Error {
                    id,
                    error: ClientError::TooLarge {
                        bytes,
                        max: CLIENT_PAYLOAD_BYTES_MAX as u64,
                    },
                });
                connection.hub.flush();
                tracing::warn!(%shard, bytes, "oversized client payload; closing");
                break;
            }
            Err(error) => {
                tracing::warn!(%shard, %error, "malformed client requests; closing");
                break;
            }
        }
    }
    connection.outgoing.close();
}

async fn write_answers(
    mut writer: WriteHalf<Box<dyn FuturesIo>>,
    connection: Rc<ClientConnection>,
) {
    let mut spare = Vec::new();
    while connection.outgoing.take(&mut spare).await {
        if writer.write_all(&spare).await.is_err() {
            break;
        }
        spare.clear();
    }
    // Finished by the shard (not closed by the reader or for a client that stopped reading):
    // everything is written; tell the client so.
    if !connection.outgoing.is_closed() {
        let _ = writer.close().await;
    }
    connection.outgoing.close();
    connection.hub.writers.set(connection.hub.writers.get() - 1);
}

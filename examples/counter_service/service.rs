//! The service: a ringraft [`Node`] replicating the [`Counter`], and a TCP server that answers
//! the line protocol ([`crate::protocol`]) with the node's API.
//!
//! Every connection gets a thread, which calls the node's blocking API and answers each request
//! once the node has answered it: an increment once it is committed and applied here, a read
//! once it is linearizable, a membership change once its configuration entry is committed.
//! Only the group's leader commits and serves reads; other members answer `REDIRECT <leader>`.
//!
//! Increments use plain [`Node::propose`]: when its outcome is unknown (a timeout, a lost
//! leadership, a shutdown: [`ProposalError::certainly_not_applied`] is false) the client is told
//! `UNKNOWN`, never `ERR`, since the increment may still be applied. A service that retries on
//! its clients' behalf would propose in a client session instead
//! ([`Node::propose_in_session`]), which applies each request at most once however often it is
//! sent.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future::block_on;
use ringraft::api::{
    MembershipChange, Node, NodeConfig, NodeError, PeerConfig, ProposalError, ReadConsistency,
};
use ringraft::types::{GroupId, NodeId};

use crate::counter::{self, Counter};
use crate::protocol::{self, Reply, Request, LINE_BYTES_MAX};

/// The one group that holds the counter.
pub const GROUP: GroupId = GroupId(0);

/// How often idle connections and the acceptor look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// The node configuration of a member of the service: one shard holding the one group,
/// snapshots every `SNAPSHOT_ENTRIES` entries.
///
/// The log keeps no entries behind a snapshot, so a member that falls behind, or joins, catches
/// up by a snapshot transfer: a real service would keep some (the default keeps 100,000) so that
/// a follower briefly behind catches up from the log instead.
pub fn node_config(
    id: NodeId,
    listen: SocketAddr,
    peers: Vec<PeerConfig>,
    data_dir: PathBuf,
) -> NodeConfig {
    let mut config = NodeConfig::new(id, listen, peers, data_dir);
    config.shards = 1;
    config.groups = 1;
    config.snapshot_entries = SNAPSHOT_ENTRIES;
    config.compaction_trailing_entries = 0;
    // A small service needs little io_uring buffer memory (it is locked memory).
    config.io_memory_bytes = 256 << 10;
    config
}

/// Applied entries between two automatic snapshots (`SNAPSHOT` takes one at once).
pub const SNAPSHOT_ENTRIES: u64 = 1000;

/// A running member of the service. Dropping it without [`CounterService::shutdown`] stops the
/// server but leaves the connection threads to end on their own.
pub struct CounterService {
    node: Arc<Node>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: JoinHandle<()>,
}

impl CounterService {
    /// Starts the node with `config` (see [`node_config`]) and serves the protocol on
    /// `listener`. Returns once the node has recovered its state (from its snapshot and log).
    pub fn start(config: NodeConfig, listener: TcpListener) -> Result<CounterService, NodeError> {
        let node = Arc::new(Node::start(config, |_shard| Counter::default())?);
        let io_error = |source| NodeError::Io {
            shard: ringraft::types::ShardId(0),
            what: "service listener".into(),
            source,
        };
        let addr = listener.local_addr().map_err(io_error)?;
        // Not blocking, so that the acceptor sees the stop flag.
        listener.set_nonblocking(true).map_err(io_error)?;
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (node, stop) = (node.clone(), stop.clone());
            std::thread::spawn(move || accept(listener, node, stop))
        };
        Ok(CounterService {
            node,
            addr,
            stop,
            acceptor,
        })
    }

    /// Where the service answers the protocol.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the server still accepts connections: until [`CounterService::shutdown`], or
    /// until the node stops on a fatal error.
    pub fn is_serving(&self) -> bool {
        !self.acceptor.is_finished()
    }

    /// Stops serving (each connection ends after its current request), then stops the node.
    /// Every increment answered `OK` is durable: a restart on the same data directory recovers
    /// it.
    pub fn shutdown(self) -> Result<(), NodeError> {
        self.stop.store(true, Ordering::Relaxed);
        // The acceptor joins the connection threads, the last other holders of the node.
        let _ = self.acceptor.join();
        match Arc::try_unwrap(self.node) {
            Ok(node) => node.shutdown(),
            Err(_) => unreachable!("every thread holding the node was joined"),
        }
    }
}

/// Accepts connections until the stop flag is raised or the node stops, then waits for their
/// threads.
fn accept(listener: TcpListener, node: Arc<Node>, stop: Arc<AtomicBool>) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) && node.is_running() {
        match listener.accept() {
            Ok((stream, _)) => {
                let (node, stop) = (node.clone(), stop.clone());
                connections.push(std::thread::spawn(move || {
                    if let Err(error) = serve(&node, stream, &stop) {
                        eprintln!("counter service: connection ended: {error}");
                    }
                }));
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(error) => {
                eprintln!("counter service: accept: {error}");
                std::thread::sleep(POLL);
            }
        }
        connections.retain(|connection| !connection.is_finished());
    }
    for connection in connections {
        let _ = connection.join();
    }
}

/// Answers one connection's requests, in order, until it closes or the service stops.
fn serve(node: &Node, stream: TcpStream, stop: &AtomicBool) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let room = LINE_BYTES_MAX - line.len() as u64;
        match reader.by_ref().take(room).read_until(b'\n', &mut line) {
            // Closed (an unterminated last line is not a request).
            Ok(0) => return Ok(()),
            Ok(_) if line.ends_with(b"\n") => {
                let reply = match std::str::from_utf8(&line) {
                    Ok(text) => answer(node, text.trim()),
                    Err(_) => Reply::Err("the request is not UTF-8".into()),
                };
                writeln!(writer, "{reply}")?;
                line.clear();
            }
            Ok(_) if line.len() as u64 >= LINE_BYTES_MAX => {
                let reply = Reply::Err(format!("request longer than {LINE_BYTES_MAX} bytes"));
                return writeln!(writer, "{reply}");
            }
            // A partial line: the rest follows.
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// The reply to one request line.
pub fn answer(node: &Node, line: &str) -> Reply {
    match protocol::parse(line) {
        Ok(request) => execute(node, request),
        Err(problem) => Reply::Err(problem),
    }
}

/// Carries out `request` with the node's API.
fn execute(node: &Node, request: Request) -> Reply {
    let change = |change, addr: Option<SocketAddr>| {
        block_on(node.change_membership(GROUP, change, addr.map(Into::into), None))
            .map(|committed| Reply::Ok(format!("configuration at {}", committed.index.0)))
            .unwrap_or_else(refusal)
    };
    match request {
        Request::Incr(amount) => node
            .propose_blocking(GROUP, counter::increment(amount))
            .map(|committed| count_reply(&committed.output))
            .unwrap_or_else(refusal),
        Request::Get => node
            .read_blocking(GROUP, Bytes::new(), ReadConsistency::Linearizable)
            .map(|output| count_reply(&output))
            .unwrap_or_else(refusal),
        Request::Status => status(node),
        Request::Snapshot => block_on(node.snapshot(GROUP))
            .map(|index| Reply::Ok(index.0.to_string()))
            .unwrap_or_else(refusal),
        Request::AddLearner { id, addr } => change(MembershipChange::AddLearner(id), Some(addr)),
        Request::Promote(id) => change(MembershipChange::Promote(id), None),
        Request::Remove(id) => change(MembershipChange::Remove(id), None),
    }
}

fn count_reply(output: &[u8]) -> Reply {
    match counter::decode(output) {
        Some(count) => Reply::Ok(count.to_string()),
        None => Reply::Err(format!("the state machine answered {} bytes", output.len())),
    }
}

/// How a request the node did not carry out is answered: a redirection to the leader, a
/// certain failure, or an unknown outcome (reads and snapshots change nothing, so for them
/// "unknown" only means "not done now": they are retried like failures).
fn refusal(error: ProposalError) -> Reply {
    match error {
        ProposalError::NotLeader {
            leader: Some(leader),
        } => Reply::Redirect(leader),
        ProposalError::NotLeader { leader: None } => {
            Reply::Err("no leader is known yet (an election is running): retry".into())
        }
        error if error.certainly_not_applied() => Reply::Err(error.to_string()),
        error => Reply::Unknown(error.to_string()),
    }
}

/// `STATUS`: this node's view of the group, and its local (possibly stale) count.
fn status(node: &Node) -> Reply {
    let Some(group) = node.status_blocking().into_iter().next() else {
        return Reply::Err("the node is stopping".into());
    };
    let count = node
        .read_blocking(GROUP, Bytes::new(), ReadConsistency::Stale)
        .ok()
        .and_then(|output| counter::decode(&output));
    let ids = |ids: &[NodeId]| {
        let ids: Vec<String> = ids.iter().map(|id| id.0.to_string()).collect();
        ids.join(",")
    };
    let summary = &group.summary;
    Reply::Ok(format!(
        "node={} role={:?} term={} leader={} commit={} applied={} snapshot={} log_base={} \
         voters={} learners={} count={}",
        node.id().0,
        summary.role,
        summary.term.0,
        summary.leader.map_or(0, |leader| leader.0),
        summary.commit.0,
        summary.applied.0,
        group.snapshot_index.0,
        group.log_base.0,
        ids(&group.membership.voters),
        ids(&group.membership.learners),
        count.map_or_else(|| "?".into(), |count| count.to_string()),
    ))
}
